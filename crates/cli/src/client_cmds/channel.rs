//! `fugue channel`: create, list, change and delete the channels of a guild, and set who may
//! do what in one (permission overwrites).

use clap::Subcommand;

use fugue_proto::api::{create_channel, set_overwrite, update_channel};
use fugue_proto::chat::{Channel, Overwrite, OverwriteTarget, channel_type};

use super::role::parse_permissions;
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
    /// Rename CHANNEL or change its topic.
    Update {
        channel: u64,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        topic: Option<String>,
    },
    /// Delete CHANNEL and its messages.
    Delete { channel: u64 },
    /// Encrypt CHANNEL (also a DM or group) end to end, for good: a new MLS group of this
    /// device; others ask to join with `fugue join` (needs the permission to manage it).
    Encrypt { channel: u64 },
    /// The permission overwrites of CHANNEL.
    Overwrites { channel: u64 },
    /// Allow and deny permissions in CHANNEL for TARGET: a role id (the guild's id for
    /// `@everyone`) or a member's FID.
    Overwrite {
        channel: u64,
        target: String,
        /// Comma-separated permission names.
        #[arg(long, default_value = "")]
        allow: String,
        #[arg(long, default_value = "")]
        deny: String,
        /// Remove TARGET's overwrite instead.
        #[arg(long, conflicts_with_all = ["allow", "deny"])]
        remove: bool,
    },
}

fn overwrite_line(o: &Overwrite) -> String {
    format!(
        "{} {}  allow {}  deny {}",
        o.kind,
        o.target,
        shown(o.allow),
        shown(o.deny)
    )
}

fn shown(p: fugue_proto::chat::Permissions) -> String {
    match p.names() {
        names if names.is_empty() => "-".to_owned(),
        names => names.join("|"),
    }
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
    if let ChannelCmd::Encrypt { channel } = cmd {
        return super::e2ee::encrypt(opts, channel).await;
    }
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
        ChannelCmd::Update {
            channel,
            name,
            topic,
        } => {
            let request = update_channel::Request {
                name,
                topic,
                ..Default::default()
            };
            let c = chat.update_channel(channel, &request).await.map_err(e)?;
            out!("changed channel {}", line(&c));
        }
        ChannelCmd::Delete { channel } => {
            chat.delete_channel(channel).await.map_err(e)?;
            out!("deleted channel {channel}");
        }
        ChannelCmd::Encrypt { .. } => unreachable!("handled above"),
        ChannelCmd::Overwrites { channel } => {
            for o in chat.overwrites(channel).await.map_err(e)? {
                out!("{}", overwrite_line(&o));
            }
        }
        ChannelCmd::Overwrite {
            channel,
            target,
            allow,
            deny,
            remove,
        } => {
            let parsed: OverwriteTarget = target
                .parse()
                .map_err(|_| format!("{target}: neither a role id nor a FID"))?;
            if remove {
                chat.delete_overwrite(channel, &parsed).await.map_err(e)?;
                out!("removed the overwrite of {target} in channel {channel}");
            } else {
                let request = set_overwrite::Request {
                    allow: parse_permissions(&allow)?,
                    deny: parse_permissions(&deny)?,
                };
                let o = chat
                    .set_overwrite(channel, &parsed, &request)
                    .await
                    .map_err(e)?;
                out!("channel {channel}: {}", overwrite_line(&o));
            }
        }
    }
    Ok(())
}
