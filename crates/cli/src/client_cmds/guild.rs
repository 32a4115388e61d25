//! `fugue guild`: create, list, show, join, leave, invite to, and list the members of chat
//! guilds; kick, ban and unban members; hand a guild over or delete it.
//!
//! The chat API has no route that lists an actor's guilds, so `guild list` shows the guilds
//! this key store created or joined (kept beside it: `keystore.json` → `keystore.guilds.json`),
//! each as the server describes it now; one the server no longer shows you is dropped from
//! the list.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use clap::Subcommand;

use fugue_client::Chat;
use fugue_proto::FederationId;
use fugue_proto::api::{create_guild, create_invite, list_members, update_guild};
use fugue_proto::chat::{Guild, channel_type};

use super::{ChatOpts, chat, date, e, keystore_path, secret};
use crate::terminal::out;

#[derive(Subcommand)]
pub enum GuildCmd {
    /// Create a guild (private unless --public); it comes with a `general` channel.
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// Anyone may join without an invite.
        #[arg(long)]
        public: bool,
        /// An image to show as the guild's icon (uploaded public to your home server).
        #[arg(long, value_name = "FILE")]
        icon: Option<PathBuf>,
    },
    /// Set GUILD's icon to the image FILE (MANAGE_GUILD); `--clear` removes it.
    Icon {
        guild: u64,
        #[arg(required_unless_present = "clear")]
        file: Option<PathBuf>,
        #[arg(long, conflicts_with = "file")]
        clear: bool,
    },
    /// The guilds you created or joined from this key store.
    List,
    /// One guild and its channels.
    Show { guild: u64 },
    /// Join GUILD, with an invite code unless it is public.
    Join {
        guild: u64,
        #[arg(long)]
        invite: Option<String>,
    },
    /// Leave GUILD.
    Leave { guild: u64 },
    /// Create an invite to GUILD and print the command that uses it.
    Invite {
        guild: u64,
        /// The channel it points at (default: the guild's first text channel).
        #[arg(long)]
        channel: Option<u64>,
        /// How many joins it allows (default: unlimited).
        #[arg(long)]
        max_uses: Option<u64>,
        /// Seconds until it expires (default: the server's; 0 = never).
        #[arg(long)]
        max_age: Option<u64>,
    },
    /// The members of GUILD.
    Members {
        guild: u64,
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Remove FID from GUILD (they may come back with an invite).
    Kick { guild: u64, fid: String },
    /// Ban FID from GUILD: removed, and kept out whatever invite they hold.
    Ban {
        guild: u64,
        fid: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift the ban of FID.
    Unban { guild: u64, fid: String },
    /// The bans of GUILD.
    Bans { guild: u64 },
    /// Hand GUILD to another member, FID (the owner only).
    Transfer { guild: u64, fid: String },
    /// Delete GUILD with everything in it (the owner; asks for your password).
    Delete {
        guild: u64,
        /// Confirm: the guild's channels and messages are gone for everyone.
        #[arg(long)]
        yes: bool,
    },
}

pub(super) fn parse_fid(fid: &str) -> Result<FederationId, String> {
    fid.parse().map_err(|err| format!("{fid}: {err}"))
}

/// The guilds this key store joined, by account and server.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Known {
    #[serde(default)]
    guilds: BTreeMap<String, BTreeSet<u64>>,
}

struct KnownGuilds {
    path: PathBuf,
    key: String,
    known: Known,
}

impl KnownGuilds {
    fn open(opts: &ChatOpts, chat: &Chat) -> Result<Self, String> {
        let path = keystore_path(&opts.client)?.with_extension("guilds.json");
        let known = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|err| format!("{}: {err}", path.display()))?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Known::default(),
            Err(err) => return Err(format!("cannot read {}: {err}", path.display())),
        };
        let key = format!("{} {}", chat.fid(), chat.client().base_url());
        Ok(Self { path, key, known })
    }

    fn ids(&self) -> Vec<u64> {
        self.known
            .guilds
            .get(&self.key)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default()
    }

    fn set(&mut self, guild: u64, member: bool) -> Result<(), String> {
        let ids = self.known.guilds.entry(self.key.clone()).or_default();
        let changed = if member {
            ids.insert(guild)
        } else {
            ids.remove(&guild)
        };
        if !changed {
            return Ok(());
        }
        let text = serde_json::to_vec_pretty(&self.known).map_err(|err| err.to_string())?;
        std::fs::write(&self.path, text)
            .map_err(|err| format!("cannot write {}: {err}", self.path.display()))
    }
}

fn guild_line(g: &Guild) -> String {
    let visibility = if g.private { "private" } else { "public" };
    let icon = g
        .icon
        .as_deref()
        .map(|i| format!(", icon {i}"))
        .unwrap_or_default();
    format!(
        "{}  {}  ({visibility}, {} members, owner {}{icon})",
        g.id, g.name, g.member_count, g.owner_id
    )
}

/// The guild's first text channel, where invites point by default.
async fn first_text_channel(chat: &Chat, guild: u64) -> Result<u64, String> {
    let mut channels = chat.channels(guild).await.map_err(e)?;
    channels.sort_by_key(|c| (c.position, c.id));
    channels
        .iter()
        .find(|c| c.kind == channel_type::TEXT)
        .map(|c| c.id)
        .ok_or_else(|| format!("guild {guild} has no text channel you can see; use --channel"))
}

pub async fn run(opts: ChatOpts, cmd: GuildCmd) -> Result<(), String> {
    let chat = chat(&opts).await?;
    let mut known = KnownGuilds::open(&opts, &chat)?;
    match cmd {
        GuildCmd::Create {
            name,
            description,
            public,
            icon,
        } => {
            let icon = match icon {
                Some(path) => Some(chat.upload_picture(&path).await.map_err(e)?),
                None => None,
            };
            let request = create_guild::Request {
                name,
                description,
                icon,
                private: Some(!public),
            };
            let guild = chat.create_guild(&request).await.map_err(e)?;
            known.set(guild.id, true)?;
            out!("created guild {}", guild_line(&guild));
            for c in chat.channels(guild.id).await.map_err(e)? {
                out!("channel {}  #{}", c.id, c.name);
            }
        }
        GuildCmd::Icon { guild, file, clear } => {
            let icon = match (file, clear) {
                (Some(path), false) => chat.upload_picture(&path).await.map_err(e)?,
                _ => String::new(),
            };
            let request = update_guild::Request {
                icon: Some(icon),
                ..update_guild::Request::default()
            };
            let g = chat.update_guild(guild, &request).await.map_err(e)?;
            out!("{}", guild_line(&g));
        }
        GuildCmd::List => {
            let ids = known.ids();
            if ids.is_empty() {
                out!("no guilds (create one, or join one with an invite)");
            }
            for id in ids {
                match chat.guild(id).await {
                    Ok(g) => out!("{}", guild_line(&g)),
                    Err(err) if err.status() == Some(404) => known.set(id, false)?,
                    Err(err) => out!("{id}  (unavailable: {err})"),
                }
            }
        }
        GuildCmd::Show { guild } => {
            let g = chat.guild(guild).await.map_err(e)?;
            out!("{}", guild_line(&g));
            if let Some(d) = &g.description {
                out!("{d}");
            }
            let mut channels = chat.channels(guild).await.map_err(e)?;
            channels.sort_by_key(|c| (c.position, c.id));
            for c in channels {
                out!("channel {}  #{}", c.id, c.name);
            }
        }
        GuildCmd::Join { guild, invite } => {
            let member = chat.join_guild(guild, invite.as_deref()).await.map_err(e)?;
            known.set(guild, true)?;
            let g = chat.guild(guild).await.map_err(e)?;
            out!("joined {} as {}", guild_line(&g), member.fid);
        }
        GuildCmd::Leave { guild } => {
            chat.leave_guild(guild).await.map_err(e)?;
            known.set(guild, false)?;
            out!("left guild {guild}");
        }
        GuildCmd::Invite {
            guild,
            channel,
            max_uses,
            max_age,
        } => {
            let channel = match channel {
                Some(c) => c,
                None => first_text_channel(&chat, guild).await?,
            };
            let request = create_invite::Request {
                max_age,
                max_uses,
                temporary: false,
            };
            let invite = chat.create_invite(channel, &request).await.map_err(e)?;
            let code = invite
                .code
                .ok_or("the server answered an invite without its code")?;
            let expires = invite
                .expires_at
                .map(|t| format!("expires {}", date(t)))
                .unwrap_or_else(|| "never expires".into());
            let uses = match invite.max_uses {
                0 => "unlimited uses".to_owned(),
                n => format!("{n} uses"),
            };
            out!("invite {code}  ({uses}, {expires})");
            out!(
                "join with: fugue guild join {} --invite {code}",
                invite.guild_id
            );
        }
        GuildCmd::Kick { guild, fid } => {
            chat.kick(guild, &parse_fid(&fid)?).await.map_err(e)?;
            out!("removed {fid} from guild {guild}");
        }
        GuildCmd::Ban { guild, fid, reason } => {
            let ban = chat
                .ban(guild, &parse_fid(&fid)?, reason.as_deref())
                .await
                .map_err(e)?;
            out!("banned {} from guild {guild}", ban.fid);
        }
        GuildCmd::Unban { guild, fid } => {
            chat.unban(guild, &parse_fid(&fid)?).await.map_err(e)?;
            out!("lifted the ban of {fid} in guild {guild}");
        }
        GuildCmd::Bans { guild } => {
            for b in chat.bans(guild).await.map_err(e)? {
                let reason = b.reason.map(|r| format!(": {r}")).unwrap_or_default();
                out!(
                    "{}  banned {} by {}{reason}",
                    b.fid,
                    date(b.created_at),
                    b.banned_by
                );
            }
        }
        GuildCmd::Transfer { guild, fid } => {
            let g = chat
                .transfer_guild(guild, &parse_fid(&fid)?)
                .await
                .map_err(e)?;
            out!("{}", guild_line(&g));
        }
        GuildCmd::Delete { guild, yes } => {
            if !yes {
                return Err(format!(
                    "not confirmed: deleting guild {guild} removes its channels and messages \
                     for everyone; run again with --yes"
                ));
            }
            let solution = secret("FUGUE_PASSWORD", "Password (or TOTP code): ")?;
            chat.delete_guild(guild, &solution).await.map_err(e)?;
            known.set(guild, false)?;
            out!("deleted guild {guild}");
        }
        GuildCmd::Members { guild, limit } => {
            let query = list_members::Query { limit, after: None };
            for m in chat.members(guild, &query).await.map_err(e)? {
                out!("{}  joined {}", m.fid, date(m.joined_at));
            }
        }
    }
    Ok(())
}
