//! `fugue migrate`: moving an identity (core §7) — a redirect from the old identity to the
//! new one, asked for by the old one (proving every key it holds) and confirmed by the new
//! one on the old one's home server; and re-signing the old identity's messages, granted by
//! the old one and done by the new one, batch by batch.

use clap::Subcommand;

use fugue_client::migration::{
    commit_resigned_on, confirm_redirect, grant_resigning, messages_to_resign_on, proof_trial_on,
    prove_keys, resign_batch, withdraw_redirect,
};
use fugue_client::{IdentityKey, KeyStore, Session};
use fugue_proto::{FederationId, Serial};

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
    /// As the new identity: print your current public key (PEM), for the old identity's
    /// `fugue migrate grant --key`.
    PublicKey,
    /// As the old identity: let NEW_FID re-sign the messages you signed on the server (`--on`,
    /// or your home server) with the keys this key store holds, signing with the public key
    /// in FILE.
    Grant {
        new_fid: String,
        #[arg(long, value_name = "FILE")]
        key: std::path::PathBuf,
        #[arg(long)]
        on: Option<String>,
    },
    /// As the new identity: re-sign every message you were granted on the server (`--on`,
    /// or your home server), checking each old signature first.
    Resign {
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
            let old = old_keys(&store, pass.as_deref())?;
            let keys = held_keys(&session, &old)?;
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
        MigrateCmd::PublicKey => {
            use ed25519_dalek::pkcs8::EncodePublicKey;
            let pem = session
                .key()
                .verifying_key()
                .to_public_key_pem(Default::default())
                .map_err(|err| err.to_string())?;
            for line in pem.lines() {
                out!("{line}");
            }
        }
        MigrateCmd::Grant { new_fid, key, on } => {
            let new = fid(&new_fid)?;
            let allowed =
                std::fs::read_to_string(&key).map_err(|err| format!("{}: {err}", key.display()))?;
            let (client, token) = signed_in_on(&store, &session, on.as_deref())?;
            let old = old_keys(&store, pass.as_deref())?;
            let keys = held_keys(&session, &old)?;
            let trial = proof_trial_on(&client, &token, session.fid())
                .await
                .map_err(e)?;
            let proof = prove_keys(&trial, &keys);
            let expires = grant_resigning(&client, &token, &proof, &new, &[allowed])
                .await
                .map_err(e)?;
            out!(
                "{new} may re-sign your messages on {} signed with {} of your keys until {}",
                client.base_url(),
                keys.len(),
                super::date(expires)
            );
        }
        MigrateCmd::Resign { on } => {
            let (client, token) = signed_in_on(&store, &session, on.as_deref())?;
            let mut batches = messages_to_resign_on(&client, &token, None, None)
                .await
                .map_err(e)?;
            let mut done = 0usize;
            // Bounded: each round commits what it got, and the server offers none twice.
            for _ in 0..10_000 {
                if batches.is_empty() {
                    break;
                }
                let resigned = batches
                    .iter()
                    .map(|b| resign_batch(b, session.fid(), session.key(), session.cert_pem()))
                    .collect::<fugue_client::Result<Vec<_>>>()
                    .map_err(e)?;
                done += resigned.iter().map(|b| b.messages.len()).sum::<usize>();
                let (next, wait) = commit_resigned_on(&client, &token, &resigned)
                    .await
                    .map_err(e)?;
                if wait > 0 && !next.is_empty() {
                    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
                }
                batches = next;
            }
            out!("re-signed {done} messages on {}", client.base_url());
        }
    }
    Ok(())
}

/// The older keys this key store holds for the current account.
fn old_keys(store: &KeyStore, pass: Option<&str>) -> Result<Vec<(IdentityKey, Serial)>, String> {
    current(store)?
        .old_keys
        .iter()
        .map(|k| Ok((k.key(pass)?, k.serial)))
        .collect::<fugue_client::Result<_>>()
        .map_err(e)
}

/// Every key this key store holds for the current account: the session's and `old`.
fn held_keys<'a>(
    session: &'a Session,
    old: &'a [(IdentityKey, Serial)],
) -> Result<Vec<(&'a IdentityKey, Serial)>, String> {
    let mut keys = vec![(session.key(), session.current_serial().map_err(e)?)];
    keys.extend(old.iter().map(|(k, s)| (k, *s)));
    Ok(keys)
}

/// The server `on` names (signed in there before), or the home server, with the token there.
fn signed_in_on(
    store: &KeyStore,
    session: &Session,
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
