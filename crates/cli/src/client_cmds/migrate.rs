//! `fugue migrate`: moving an identity (core §7) — a redirect from the old identity to the
//! new one, asked for by the old one (proving every key it holds) and confirmed by the new
//! one on the old one's home server.

use clap::Subcommand;

use fugue_client::migration::{confirm_redirect, withdraw_redirect};
use fugue_proto::FederationId;

use super::federation::server_url;
use super::{ClientOpts, current, e, open_store, restore_session};
use crate::terminal::out;

#[derive(Subcommand)]
pub enum MigrateCmd {
    /// As the old identity: ask your home server to redirect lookups of you to NEW_FID,
    /// proving every key this key store holds for you (the current one and older ones).
    Redirect { new_fid: String },
    /// As the old identity: give up the redirect to NEW_FID.
    Cancel { new_fid: String },
    /// As the new identity: confirm that OLD_FID moves to you, on OLD_FID's home server
    /// (`--on`, where you signed in with `fugue federation login`; without it, your own).
    Accept {
        old_fid: String,
        #[arg(long)]
        on: Option<String>,
    },
    /// As the new identity: withdraw that confirmation.
    Withdraw {
        old_fid: String,
        #[arg(long)]
        on: Option<String>,
    },
}

fn fid(s: &str) -> Result<FederationId, String> {
    s.parse().map_err(|err| format!("{s}: {err}"))
}

pub async fn run(opts: ClientOpts, cmd: MigrateCmd) -> Result<(), String> {
    let store = open_store(&opts)?;
    let (session, pass) = restore_session(&store)?;
    match cmd {
        MigrateCmd::Redirect { new_fid } => {
            let target = fid(&new_fid)?;
            let account = current(&store)?;
            let old: Vec<_> = account
                .old_keys
                .iter()
                .map(|k| Ok((k.key(pass.as_deref())?, k.serial)))
                .collect::<fugue_client::Result<_>>()
                .map_err(e)?;
            let mut keys = vec![(session.key(), session.current_serial().map_err(e)?)];
            keys.extend(old.iter().map(|(k, s)| (k, *s)));
            let proof = session.prove(&keys).await.map_err(e)?;
            let confirmed = session.set_up_redirect(&target, &proof).await.map_err(e)?;
            if confirmed {
                out!("{} now redirects to {target}", session.fid());
            } else {
                out!(
                    "redirect to {target} asked for ({} keys proven); it takes effect once \
                     {target} runs `fugue migrate accept {}`",
                    keys.len(),
                    session.fid()
                );
            }
        }
        MigrateCmd::Cancel { new_fid } => {
            session.remove_redirect(&fid(&new_fid)?).await.map_err(e)?;
            out!("no redirect to {new_fid} any more");
        }
        MigrateCmd::Accept { old_fid, on } => {
            let (client, token) = signed_in_on(&store, &session, on.as_deref())?;
            let source = fid(&old_fid)?;
            if confirm_redirect(&client, &token, &source)
                .await
                .map_err(e)?
            {
                out!("{source} now redirects to {}", session.fid());
            } else {
                out!(
                    "confirmed; it takes effect once {source} runs `fugue migrate redirect {}`",
                    session.fid()
                );
            }
        }
        MigrateCmd::Withdraw { old_fid, on } => {
            let (client, token) = signed_in_on(&store, &session, on.as_deref())?;
            withdraw_redirect(&client, &token, &fid(&old_fid)?)
                .await
                .map_err(e)?;
            out!("{old_fid} no longer redirects to {}", session.fid());
        }
    }
    Ok(())
}

/// The server `on` names (signed in there before), or the home server, with the token there.
fn signed_in_on(
    store: &fugue_client::KeyStore,
    session: &fugue_client::Session,
    on: Option<&str>,
) -> Result<(fugue_client::Client, String), String> {
    let Some(server) = on else {
        return Ok((session.client().clone(), session.token().to_owned()));
    };
    let url = server_url(server);
    let foreign = current(store)?
        .foreign_session(&url)
        .map_err(e)?
        .ok_or_else(|| {
            format!("not signed in on {url}: run `fugue federation login {server}` first")
        })?;
    Ok((foreign.client().clone(), foreign.token().to_owned()))
}
