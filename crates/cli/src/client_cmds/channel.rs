//! `fugue channel`: create and list the channels of a guild.

use clap::Subcommand;

use fugue_proto::api::create_channel;
use fugue_proto::chat::{Channel, channel_type};

use super::{ChatOpts, chat, e};
use crate::terminal::out;

#[derive(Subcommand)]
pub enum ChannelCmd {
    /// Create a text channel (or, with --category, a category) in GUILD.
    Create {
        guild: u64,
        name: String,
        #[arg(long)]
        topic: Option<String>,
        /// The category to put it in.
        #[arg(long)]
        parent: Option<u64>,
        /// Create a category instead of a text channel.
        #[arg(long)]
        category: bool,
    },
    /// The channels of GUILD you can see, in order.
    List { guild: u64 },
}

fn line(c: &Channel) -> String {
    let kind = match c.kind {
        channel_type::TEXT => "#",
        channel_type::CATEGORY => "category ",
        channel_type::THREAD => "thread ",
        channel_type::FORUM => "forum ",
        _ => "? ",
    };
    let topic = c
        .topic
        .as_deref()
        .map(|t| format!("  — {t}"))
        .unwrap_or_default();
    let parent = c
        .parent_id
        .map(|p| format!("  (in {p})"))
        .unwrap_or_default();
    format!("{}  {kind}{}{parent}{topic}", c.id, c.name)
}

pub async fn run(opts: ChatOpts, cmd: ChannelCmd) -> Result<(), String> {
    let chat = chat(&opts).await?;
    match cmd {
        ChannelCmd::Create {
            guild,
            name,
            topic,
            parent,
            category,
        } => {
            let request = create_channel::Request {
                name,
                kind: Some(if category {
                    channel_type::CATEGORY
                } else {
                    channel_type::TEXT
                }),
                topic,
                parent_id: parent,
                position: None,
            };
            let c = chat.create_channel(guild, &request).await.map_err(e)?;
            out!("created channel {}", line(&c));
        }
        ChannelCmd::List { guild } => {
            let mut channels = chat.channels(guild).await.map_err(e)?;
            channels.sort_by_key(|c| (c.position, c.id));
            for c in channels {
                out!("{}", line(&c));
            }
        }
    }
    Ok(())
}
