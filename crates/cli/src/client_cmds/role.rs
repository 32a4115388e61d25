//! `fugue role`: the roles of a guild (`fugue-chat`): list, create with permissions, set them,
//! delete,
//! give to and take from members. Permissions are named as the server names them
//! (`SEND_MESSAGES,VIEW_CHANNEL`, see `fugue role list`).

use clap::Subcommand;

use fugue_proto::api::{create_role, update_role};
use fugue_proto::chat::{Permissions, Role};

use super::guild::parse_fid;
use super::{ChatOpts, chat, e};
use crate::terminal::out;

#[derive(Subcommand)]
pub enum RoleCmd {
    /// The roles of GUILD, `@everyone` (the guild's id) first, with their permissions.
    List { guild: u64 },
    /// Create a role in GUILD.
    Create {
        guild: u64,
        name: String,
        /// Comma-separated permission names, e.g. `SEND_MESSAGES,MANAGE_MESSAGES`.
        #[arg(long, default_value = "")]
        permissions: String,
    },
    /// Set the permissions of ROLE of GUILD (the guild's id for `@everyone`).
    Set {
        guild: u64,
        role: u64,
        /// Comma-separated permission names; empty for none.
        #[arg(long)]
        permissions: String,
    },
    /// Delete ROLE of GUILD.
    Delete { guild: u64, role: u64 },
    /// Give ROLE of GUILD to member FID.
    Give { guild: u64, fid: String, role: u64 },
    /// Take ROLE of GUILD from member FID.
    Take { guild: u64, fid: String, role: u64 },
}

/// `A,B` → the bits named; an unknown name is an error, not dropped.
pub(super) fn parse_permissions(names: &str) -> Result<Permissions, String> {
    let mut bits = Permissions::NONE;
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let wanted = name.to_ascii_uppercase();
        let bit = (0..64)
            .map(|i| Permissions::from_bits(1 << i))
            .find(|p| p.names() == [wanted.as_str()])
            .ok_or_else(|| {
                format!(
                    "unknown permission {name}; known: {}",
                    Permissions::ALL.names().join(", ")
                )
            })?;
        bits = bits | bit;
    }
    Ok(bits)
}

fn line(r: &Role) -> String {
    let permissions = match r.permissions {
        p if p == Permissions::NONE => "no permissions".to_owned(),
        p => p.to_string(),
    };
    format!("{}  {}  ({permissions})", r.id, r.name)
}

pub async fn run(opts: ChatOpts, cmd: RoleCmd) -> Result<(), String> {
    let chat = chat(&opts).await?;
    match cmd {
        RoleCmd::List { guild } => {
            for r in chat.roles(guild).await.map_err(e)? {
                out!("{}", line(&r));
            }
        }
        RoleCmd::Create {
            guild,
            name,
            permissions,
        } => {
            let request = create_role::Request {
                name,
                permissions: parse_permissions(&permissions)?,
                position: None,
                color: None,
            };
            let r = chat.create_role(guild, &request).await.map_err(e)?;
            out!("created role {}", line(&r));
        }
        RoleCmd::Set {
            guild,
            role,
            permissions,
        } => {
            let request = update_role::Request {
                permissions: Some(parse_permissions(&permissions)?),
                ..Default::default()
            };
            let r = chat.update_role(guild, role, &request).await.map_err(e)?;
            out!("role {}", line(&r));
        }
        RoleCmd::Delete { guild, role } => {
            chat.delete_role(guild, role).await.map_err(e)?;
            out!("deleted role {role}");
        }
        RoleCmd::Give { guild, fid, role } => {
            let m = chat
                .add_member_role(guild, &parse_fid(&fid)?, role)
                .await
                .map_err(e)?;
            out!("{} now has role {role}", m.fid);
        }
        RoleCmd::Take { guild, fid, role } => {
            chat.remove_member_role(guild, &parse_fid(&fid)?, role)
                .await
                .map_err(e)?;
            out!("{fid} no longer has role {role}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_are_parsed_by_name_and_unknown_ones_refused() {
        assert_eq!(
            parse_permissions("send_messages, VIEW_CHANNEL").unwrap(),
            Permissions::SEND_MESSAGES | Permissions::VIEW_CHANNEL
        );
        assert_eq!(parse_permissions("").unwrap(), Permissions::NONE);
        let err = parse_permissions("SEND_MESSAGES,FLY").unwrap_err();
        assert!(err.contains("unknown permission FLY"), "{err}");
    }
}
