//! `fugue sessions`: the account's sessions, so that one it did not create can be spotted and
//! revoked with its certificate.

use clap::Subcommand;

use fugue_proto::SessionId;

use super::{ClientOpts, date, e, open_store, restore_session, secret};
use crate::terminal::out;

#[derive(Subcommand)]
pub enum SessionsCmd {
    /// List your active sessions.
    List,
    /// Revoke a session and its certificate (asks for your password).
    Revoke { session_id: String },
}

pub async fn run(opts: ClientOpts, cmd: SessionsCmd) -> Result<(), String> {
    let store = open_store(&opts)?;
    let (session, _) = restore_session(&store)?;
    match cmd {
        SessionsCmd::List => {
            for s in session.sessions().await.map_err(e)? {
                let cert = match (s.serial, s.cert_not_after) {
                    (Some(serial), Some(na)) => format!("cert {serial} until {}", date(na)),
                    _ => "no certificate yet".to_owned(),
                };
                let mark = if s.current { " (this one)" } else { "" };
                out!(
                    "{}{mark}  created {}  {cert}",
                    s.session_id,
                    date(s.created_at)
                );
            }
        }
        SessionsCmd::Revoke { session_id } => {
            let id: SessionId = session_id
                .parse()
                .map_err(|err| format!("session ID: {err}"))?;
            let solution = secret("FUGUE_PASSWORD", "Password (or TOTP code): ")?;
            session.revoke_session(&id, &solution).await.map_err(e)?;
            out!("revoked session {id} and its certificate");
        }
    }
    Ok(())
}
