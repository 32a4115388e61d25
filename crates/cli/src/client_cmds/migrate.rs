//! `fugue migrate`: moving an identity (core §7), step by step, each step safe to run again
//! — `start` (a redirect from the old identity to the new one, asked for by the old one
//! proving every key it holds, and `accept`ed by the new one on the old one's home server),
//! `grant` and `resign` (the old identity's messages re-signed by the new one, batch by
//! batch, where they are), `export` (the old identity's archive), `import` (its DMs and
//! files into the new home server) and `finish` (the old identity's data deleted).

use clap::Subcommand;

use fugue_client::archive::{Rebuilt, Signer, Summary, rebuild_for_import, summarize};
use fugue_client::migration::{
    Exported, commit_resigned_on, confirm_redirect, delete_data_on, export_data_on,
    grant_resigning, messages_to_resign_on, proof_trial_on, prove_keys, resign_batch,
    withdraw_redirect,
};
use fugue_client::{IdentityKey, KeyStore, Session};
use fugue_proto::{FederationId, Serial};

use super::federation::server_url;
use super::{ClientOpts, current, e, open_store, restore_session};
use crate::terminal::out;

#[derive(Subcommand)]
pub enum MigrateCmd {
    /// As the old identity, first step of a move: ask your home server to redirect lookups
    /// of you to NEW_FID, proving every key this key store holds for you (the current one
    /// and older ones). Asking again changes nothing.
    #[command(alias = "redirect")]
    Start { new_fid: String },
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
    /// As the old identity: write the archive of your data on the server (`--on`, or your
    /// home server) tied to the keys this key store holds to FILE — messages, files and, from
    /// your home server, certificates and key backups (core §7.3.2). Waits while the server
    /// builds it; run it again after an interruption.
    Export {
        file: std::path::PathBuf,
        #[arg(long)]
        on: Option<String>,
        /// Seconds to wait for the archive at most.
        #[arg(long, default_value_t = 600)]
        wait: u64,
    },
    /// As the new identity: import the archive FILE of your old identity into your home
    /// server: your DMs (signed anew for your DMs here, each old signature checked first) and
    /// your files under their IDs. Importing again stores nothing twice. Sensitive: asks for
    /// your password (FUGUE_PASSWORD) unless --totp.
    Import {
        file: std::path::PathBuf,
        #[arg(long)]
        totp: Option<String>,
    },
    /// As the old identity, last step of a move: delete your data on the server (`--on`, or
    /// your home server) tied to the keys this key store holds — messages, files, key
    /// backups. With --break-redirect the redirect ends too.
    Finish {
        #[arg(long)]
        on: Option<String>,
        #[arg(long)]
        break_redirect: bool,
    },
}

fn fid(s: &str) -> Result<FederationId, String> {
    s.parse().map_err(|err| format!("{s}: {err}"))
}

pub async fn run(opts: ClientOpts, cmd: MigrateCmd) -> Result<(), String> {
    let store = open_store(&opts)?;
    let (session, pass) = restore_session(&store)?;
    match cmd {
        MigrateCmd::Start { new_fid } => {
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
            let proof = proof_on(&client, &token, session.fid(), &keys).await?;
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
        MigrateCmd::Export { file, on, wait } => {
            let (client, token) = signed_in_on(&store, &session, on.as_deref())?;
            let old = old_keys(&store, pass.as_deref())?;
            let keys = held_keys(&session, &old)?;
            export(&client, &token, session.fid(), &keys, &file, wait).await?;
        }
        MigrateCmd::Import { file, totp } => {
            import(&session, &file, totp).await?;
        }
        MigrateCmd::Finish { on, break_redirect } => {
            let (client, token) = signed_in_on(&store, &session, on.as_deref())?;
            let old = old_keys(&store, pass.as_deref())?;
            let keys = held_keys(&session, &old)?;
            let proof = proof_on(&client, &token, session.fid(), &keys).await?;
            delete_data_on(&client, &token, &proof, break_redirect)
                .await
                .map_err(e)?;
            out!(
                "deleted your data on {} tied to {} of your keys{}",
                client.base_url(),
                keys.len(),
                if break_redirect {
                    "; the redirect ended"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

/// The `X-P2-core-keytrial` value proving `keys` of `me` on the server of `client`, where
/// `token` is its session: a fresh trial, signed with each key.
async fn proof_on(
    client: &fugue_client::Client,
    token: &str,
    me: &FederationId,
    keys: &[(&IdentityKey, Serial)],
) -> Result<String, String> {
    let trial = proof_trial_on(client, token, me).await.map_err(e)?;
    Ok(prove_keys(&trial, keys))
}

/// `fugue migrate export`: asks for the archive until it is built (within `wait` seconds),
/// and writes it to `file` whole — through `<file>.part`, renamed when complete.
async fn export(
    client: &fugue_client::Client,
    token: &str,
    me: &FederationId,
    keys: &[(&IdentityKey, Serial)],
    file: &std::path::Path,
    wait: u64,
) -> Result<(), String> {
    let io = |err: std::io::Error| format!("{}: {err}", file.display());
    let part = file.with_extension("part");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait);
    // A trial is good for a while: a new one only when the server asks for it.
    let mut proof = proof_on(client, token, me, keys).await?;
    loop {
        let mut out = tokio::fs::File::create(&part).await.map_err(io)?;
        let answer = match export_data_on(client, token, &proof, &mut out).await {
            Err(err) if err.code() == Some(fugue_proto::ErrorCode::KeyTrialInvalid) => {
                proof = proof_on(client, token, me, keys).await?;
                continue;
            }
            other => other.map_err(e)?,
        };
        match answer {
            Exported::Written {
                download,
                file_name,
            } => {
                drop(out);
                tokio::fs::rename(&part, file).await.map_err(io)?;
                let summary = summary_of(file).await?;
                out!(
                    "wrote {} ({} bytes{}): {} messages, {} files, {} certificates",
                    file.display(),
                    download.bytes,
                    file_name.map(|n| format!(", {n}")).unwrap_or_default(),
                    summary.messages,
                    summary.resources,
                    summary.certs
                );
                return Ok(());
            }
            Exported::Building { retry_after } => {
                drop(out);
                let _ = tokio::fs::remove_file(&part).await;
                if std::time::Instant::now() >= deadline {
                    return Err(
                        "the archive is still being built; run this again later (the \
                                server keeps it for a day)"
                            .into(),
                    );
                }
                tokio::time::sleep(std::time::Duration::from_secs(retry_after.clamp(1, 60))).await;
            }
        }
    }
}

/// Runs `work` (file I/O) on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| err.to_string())?
}

/// What the archive `file` holds.
async fn summary_of(file: &std::path::Path) -> Result<Summary, String> {
    let path = file.to_owned();
    blocking(move || {
        let f = std::fs::File::open(&path).map_err(|err| format!("{}: {err}", path.display()))?;
        summarize(std::io::BufReader::new(f)).map_err(|err| err.to_string())
    })
    .await
}

/// `fugue migrate import`: signs the DMs of the export `file` anew for this identity's DMs
/// with the same actors here, sends the archive and waits for the outcome.
async fn import(
    session: &Session,
    file: &std::path::Path,
    totp: Option<String>,
) -> Result<(), String> {
    let summary = summary_of(file).await?;
    let old_fid = summary
        .owner
        .clone()
        .unwrap_or_else(|| session.fid().clone());
    // The DM with each actor the old identity wrote to, opened here.
    let chat = session.chat();
    let mut dms = std::collections::HashMap::new();
    let mut unreachable = Vec::new();
    for peer in &summary.peers {
        match chat.open_dm(peer).await {
            Ok(dm) => {
                dms.insert(peer.clone(), dm.id);
            }
            Err(err) => unreachable.push(format!("{peer}: {}", e(err))),
        }
    }
    let signed = file.with_extension("import.tar.gz");
    let (input, output) = (file.to_owned(), signed.clone());
    let (fid, domain, key, pem) = (
        session.fid().clone(),
        session.fid().domain().clone(),
        session.key().clone(),
        session.cert_pem().to_owned(),
    );
    let rebuilt: Rebuilt = blocking(move || {
        let io = |p: &std::path::Path, err: std::io::Error| format!("{}: {err}", p.display());
        let inp = std::fs::File::open(&input).map_err(|err| io(&input, err))?;
        let out = std::fs::File::create(&output).map_err(|err| io(&output, err))?;
        let signer = Signer {
            fid: &fid,
            domain: &domain,
            key: &key,
            cert_pem: &pem,
        };
        rebuild_for_import(
            std::io::BufReader::new(inp),
            std::io::BufWriter::new(out),
            &old_fid,
            &signer,
            &dms,
        )
        .map_err(|err| err.to_string())
    })
    .await?;
    let solution = super::solution(totp)?;
    let sent = session.import_data(&signed, &solution).await;
    let _ = tokio::fs::remove_file(&signed).await;
    sent.map_err(e)?;
    // The server checked the archive; it is stored in the background.
    let mut report = None;
    for _ in 0..600 {
        let newest = session.data_imports().await.map_err(e)?.into_iter().next();
        if let Some(r) = newest.filter(|r| r.state != "running") {
            report = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let Some(report) = report else {
        out!("the import is running; `fugue migrate import` again shows nothing twice");
        return Ok(());
    };
    out!(
        "import {}: {} messages, {} files; {} messages stay where they are (guilds and \
         groups: re-sign them there){}",
        report.state,
        report.messages,
        report.resources,
        rebuilt.bound,
        if rebuilt.trimmed > 0 {
            format!("; {} replies or attachments stayed behind", rebuilt.trimmed)
        } else {
            String::new()
        }
    );
    for line in unreachable.iter().chain(&report.notes) {
        out!("  {line}");
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
