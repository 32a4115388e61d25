//! The client commands of `fugue`: accounts, sessions, certificates, key backups, the
//! event stream and sign-in on other servers.
//!
//! Everything goes through `fugue-client`; this module only parses arguments, asks for
//! secrets and prints results. Secrets come from `FUGUE_PASSWORD` / `FUGUE_PASSPHRASE` when
//! set (scripts), otherwise from a hidden prompt.

mod federation;
mod services;

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::terminal::{note, out};
use fugue_client::{
    Account, Client, Gateway, GatewayEvent, GatewayOptions, IdentityKey, KeyStore, Session,
};
use fugue_proto::api::keymaterial::EncryptedPkm;
use fugue_proto::certs::IdCert;
use fugue_proto::gateway::Style;
use fugue_proto::{FederationId, SessionId};

/// PBES2 (RFC 8018): the scheme of PKCS#8 `EncryptedPrivateKeyInfo`, used for key backups.
const PBES2_OID: &str = "1.2.840.113549.1.5.13";

#[derive(Args, Clone)]
pub struct ClientOpts {
    /// Base URL of the home server.
    #[arg(
        long,
        global = true,
        env = "FUGUE_SERVER",
        default_value = "http://127.0.0.1:3000"
    )]
    server: String,
    /// Key store file (default: $XDG_CONFIG_HOME/fugue/keystore.json).
    #[arg(long, global = true, env = "FUGUE_KEYSTORE")]
    keystore: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Register, log in, show who you are.
    Account {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: AccountCmd,
    },
    /// Your sessions: spot one you did not create and revoke it.
    Sessions {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: SessionsCmd,
    },
    /// Certificates of an actor, verified against its home server.
    Certs {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: CertsCmd,
    },
    /// Encrypted backups of your private identity keys on your home server.
    Keys {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// Follow your account's events (new sessions, revoked certificates, server key changes)
    /// over the gateway, one line each, until Ctrl-C.
    Events {
        #[command(flatten)]
        opts: ClientOpts,
        /// Print each event's envelope as one line of JSON instead of a description.
        #[arg(long)]
        json: bool,
    },
    /// Your discoverable services (core §9) and those of others.
    Services {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: services::ServicesCmd,
    },
    /// Sign in on other home servers with your identity key (key trials).
    Federation {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: federation::FederationCmd,
    },
}

#[derive(Subcommand)]
pub enum AccountCmd {
    /// Create an account (password from FUGUE_PASSWORD or a prompt).
    Register {
        local_name: String,
        #[arg(long)]
        invite: Option<String>,
        /// Accept the server's terms of service.
        #[arg(long)]
        accept_tos: bool,
    },
    /// Log in: a new identity key, an ID-Cert for it and a session token, kept in the key store.
    Login {
        local_name: String,
        /// Session ID shown to your other sessions (default: a random one).
        #[arg(long)]
        session_id: Option<String>,
        /// Current TOTP code, if the account uses two-factor authentication.
        #[arg(long)]
        totp: Option<String>,
        /// Encrypt the key in the key store with a passphrase (FUGUE_PASSPHRASE or a prompt).
        #[arg(long)]
        encrypt: bool,
    },
    /// Show the current account and check that its session is still valid.
    Whoami,
    /// Change your password (the new one from FUGUE_NEW_PASSWORD or a prompt).
    Password {
        /// Also end every other session of the account.
        #[arg(long)]
        end_sessions: bool,
        /// A current TOTP code as the second factor, if the account uses TOTP (otherwise
        /// the current password is asked for, or taken from FUGUE_PASSWORD).
        #[arg(long)]
        totp: Option<String>,
    },
    /// Delete your account for good: every session ends, certificates are revoked, and the
    /// name can never be registered again.
    Delete {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// A current TOTP code as the second factor, if the account uses TOTP.
        #[arg(long)]
        totp: Option<String>,
    },
    /// Two-factor authentication with TOTP codes.
    #[command(subcommand)]
    Totp(TotpCmd),
}

#[derive(Subcommand)]
pub enum TotpCmd {
    /// Start TOTP: prints the secret for your authenticator app, then asks for its first
    /// code (or confirm later with --confirm).
    Enable {
        /// Confirm a started enrolment with the app's current code.
        #[arg(long, value_name = "CODE")]
        confirm: Option<String>,
    },
    /// Turn TOTP off; login then needs your password only.
    Disable {
        /// A current TOTP code (asked for when missing).
        #[arg(long)]
        totp: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum SessionsCmd {
    /// List your active sessions.
    List,
    /// Revoke a session and its certificate (asks for your password).
    Revoke { session_id: String },
}

#[derive(Subcommand)]
pub enum CertsCmd {
    /// Fetch and verify every ID-Cert of FID.
    Show { fid: String },
}

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Encrypt your identity keys with a passphrase and upload them.
    Backup,
    /// Download your key backups, decrypt them and put them into the key store.
    Restore,
}

pub(crate) fn secret(var: &str, prompt: &str) -> Result<String, String> {
    if let Ok(v) = std::env::var(var) {
        return Ok(v);
    }
    rpassword::prompt_password(prompt)
        .map_err(|e| format!("cannot read {var}: {e} (set {var} when not on a terminal)"))
}

/// The second factor of a sensitive action: a TOTP code given on the command line, or the
/// password.
fn solution(totp: Option<String>) -> Result<String, String> {
    match totp {
        Some(code) => Ok(code),
        None => secret("FUGUE_PASSWORD", "Password (or TOTP code): "),
    }
}

/// A new password: FUGUE_NEW_PASSWORD, or typed twice.
fn new_password() -> Result<String, String> {
    if let Ok(v) = std::env::var("FUGUE_NEW_PASSWORD") {
        return Ok(v);
    }
    let first = secret("FUGUE_NEW_PASSWORD", "New password: ")?;
    let again = rpassword::prompt_password("New password again: ")
        .map_err(|e| format!("cannot read the password: {e}"))?;
    if first != again {
        return Err("the passwords differ; nothing was changed".into());
    }
    Ok(first)
}

/// One line from stdin after `prompt` on stderr; `None` at end of input.
fn read_line(prompt: &str) -> Result<Option<String>, String> {
    use std::io::Write;
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let n = std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    Ok((n > 0).then(|| line.trim().to_owned()))
}

fn keystore_path(opts: &ClientOpts) -> Result<PathBuf, String> {
    if let Some(p) = &opts.keystore {
        return Ok(p.clone());
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .ok_or("set --keystore, XDG_CONFIG_HOME or HOME")?;
    Ok(base.join("fugue").join("keystore.json"))
}

fn open_store(opts: &ClientOpts) -> Result<KeyStore, String> {
    let path = keystore_path(opts)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    KeyStore::load(&path).map_err(|e| e.to_string())
}

fn current(store: &KeyStore) -> Result<&Account, String> {
    store
        .current()
        .ok_or_else(|| "not logged in: run `fugue account login NAME` first".to_owned())
}

fn passphrase_if(encrypted: bool) -> Result<Option<String>, String> {
    encrypted
        .then(|| secret("FUGUE_PASSPHRASE", "Key store passphrase: "))
        .transpose()
}

fn restore_session(store: &KeyStore) -> Result<(Session, Option<String>), String> {
    let account = current(store)?;
    let pass = passphrase_if(account.encrypted)?;
    let session = account
        .session(pass.as_deref())
        .map_err(|e| e.to_string())?;
    Ok((session, pass))
}

fn e(err: fugue_client::Error) -> String {
    err.to_string()
}

pub(crate) fn date(unix: u64) -> String {
    // Days since the epoch → civil date (Howard Hinnant's algorithm), to avoid a time crate.
    let days = (unix / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let secs = unix % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60
    )
}

pub async fn run(cmd: ClientCommand) -> Result<(), String> {
    match cmd {
        ClientCommand::Account { opts, cmd } => account(opts, cmd).await,
        ClientCommand::Sessions { opts, cmd } => sessions(opts, cmd).await,
        ClientCommand::Certs {
            opts,
            cmd: CertsCmd::Show { fid },
        } => show_certs(opts, &fid).await,
        ClientCommand::Keys { opts, cmd } => keys(opts, cmd).await,
        ClientCommand::Events { opts, json } => events(opts, json).await,
        ClientCommand::Services { opts, cmd } => services::run(opts, cmd).await,
        ClientCommand::Federation { opts, cmd } => federation::run(opts, cmd).await,
    }
}

async fn account(opts: ClientOpts, cmd: AccountCmd) -> Result<(), String> {
    let client = Client::new(&opts.server).map_err(e)?;
    match cmd {
        AccountCmd::Register {
            local_name,
            invite,
            accept_tos,
        } => {
            let password = secret("FUGUE_PASSWORD", "New password: ")?;
            let tos = accept_tos.then_some(true);
            let fid = client
                .register(&local_name, &password, invite.as_deref(), tos)
                .await
                .map_err(e)?;
            out!(
                "registered {fid}; log in with `fugue account login {}`",
                fid.local_name()
            );
        }
        AccountCmd::Login {
            local_name,
            session_id,
            totp,
            encrypt,
        } => {
            let domain = client
                .server_cert(None)
                .await
                .map_err(e)
                .and_then(|c| {
                    fugue_proto::certs::IdCert::parse(c.id_cert_pem.as_bytes())
                        .map_err(|err| err.to_string())
                })?
                .subject
                .domain();
            let fid: FederationId = format!("{local_name}@{domain}")
                .parse()
                .map_err(|err| format!("{local_name}: {err}"))?;
            let session_id: SessionId = match session_id {
                Some(s) => s.parse().map_err(|err| format!("session ID: {err}"))?,
                None => random_session_id()?,
            };
            let password = secret("FUGUE_PASSWORD", "Password: ")?;
            let key = IdentityKey::generate();
            let session = client
                .login(
                    fid.local_name().as_str(),
                    &password,
                    totp.as_deref(),
                    &key,
                    &fid,
                    &session_id,
                )
                .await
                .map_err(e)?;
            let pass = passphrase_if(encrypt)?;
            let mut store = open_store(&opts)?;
            store
                .upsert(Account::from_session(&session, pass.as_deref()).map_err(e)?)
                .map_err(e)?;
            store.save().map_err(e)?;
            out!(
                "logged in as {fid}, session {session_id}; key saved to {}",
                store.path().display()
            );
        }
        AccountCmd::Whoami => {
            let store = open_store(&opts)?;
            let (session, _) = restore_session(&store)?;
            let serial = session.current_serial().map_err(e)?;
            let alive = session
                .sessions()
                .await
                .map(|_| "valid")
                .unwrap_or("rejected by the server");
            out!("{} on {}", session.fid(), session.client().base_url());
            out!(
                "session {} ({alive}), certificate serial {serial}",
                session.session_id()
            );
        }
        AccountCmd::Password { end_sessions, totp } => {
            let store = open_store(&opts)?;
            let (session, _) = restore_session(&store)?;
            let solution = solution(totp)?;
            let password = new_password()?;
            session
                .change_password(&password, end_sessions, &solution)
                .await
                .map_err(e)?;
            let others = if end_sessions {
                "; your other sessions have ended"
            } else {
                ""
            };
            println!("password changed{others}");
        }
        AccountCmd::Delete { yes, totp } => {
            let mut store = open_store(&opts)?;
            let (session, _) = restore_session(&store)?;
            let fid = session.fid().clone();
            if !yes {
                let typed = read_line(&format!(
                    "Delete {fid} for good? Its name can never be used again. Type {} to confirm: ",
                    fid.local_name()
                ))?;
                if typed.as_deref() != Some(fid.local_name().as_str()) {
                    return Err("not confirmed; nothing was deleted".into());
                }
            }
            let solution = solution(totp)?;
            session.delete_account(&solution).await.map_err(e)?;
            store.remove(&fid);
            store.save().map_err(e)?;
            println!("deleted {fid}; its key was removed from the key store");
        }
        AccountCmd::Totp(cmd) => totp(&opts, cmd).await?,
    }
    Ok(())
}

async fn totp(opts: &ClientOpts, cmd: TotpCmd) -> Result<(), String> {
    let store = open_store(opts)?;
    let (session, _) = restore_session(&store)?;
    match cmd {
        TotpCmd::Enable {
            confirm: Some(code),
        } => {
            session.totp_confirm(&code).await.map_err(e)?;
            println!("TOTP is on: log in with --totp CODE from now on");
        }
        TotpCmd::Enable { confirm: None } => {
            let password = secret("FUGUE_PASSWORD", "Password: ")?;
            let enrolment = session.totp_enroll(&password).await.map_err(e)?;
            println!("secret: {}", enrolment.secret);
            println!("otpauth URL: {}", enrolment.otpauth_url);
            match read_line("Code from your authenticator app (empty to confirm later): ")? {
                Some(code) if !code.is_empty() => {
                    session.totp_confirm(&code).await.map_err(e)?;
                    println!("TOTP is on: log in with --totp CODE from now on");
                }
                _ => {
                    println!("not on yet: confirm with `fugue account totp enable --confirm CODE`")
                }
            }
        }
        TotpCmd::Disable { totp } => {
            let code = match totp {
                Some(code) => code,
                None => read_line("Current TOTP code: ")?.ok_or("no TOTP code given")?,
            };
            session.totp_disable(&code).await.map_err(e)?;
            println!("TOTP is off: log in with your password only");
        }
    }
    Ok(())
}

fn random_session_id() -> Result<SessionId, String> {
    let key = IdentityKey::generate();
    let hex: String = key.verifying_key().as_bytes()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("cli-{hex}").parse().map_err(|err| format!("{err}"))
}

async fn sessions(opts: ClientOpts, cmd: SessionsCmd) -> Result<(), String> {
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

async fn show_certs(opts: ClientOpts, fid: &str) -> Result<(), String> {
    let fid: FederationId = fid.parse().map_err(|err| format!("{fid}: {err}"))?;
    let client = Client::new(&opts.server).map_err(e)?;
    let certs = client.verified_actor_certs(&fid).await.map_err(e)?;
    if certs.is_empty() {
        out!("{fid} has no certificates yet");
    }
    for c in certs {
        let status = match (c.revoked_at, c.expired) {
            (Some(at), _) => format!("REVOKED at {}", date(at)),
            (None, true) => "expired".to_owned(),
            (None, false) => "valid".to_owned(),
        };
        let session = c
            .cert
            .session_id()
            .map(|s| s.to_string())
            .unwrap_or_default();
        out!(
            "serial {}  session {session}  {} → {}  {status}  (signature and cache information verified)",
            c.cert.serial,
            date(c.cert.not_before),
            date(c.cert.not_after)
        );
    }
    Ok(())
}

async fn keys(opts: ClientOpts, cmd: KeysCmd) -> Result<(), String> {
    let mut store = open_store(&opts)?;
    let (session, pass) = restore_session(&store)?;
    match cmd {
        KeysCmd::Backup => {
            let backup_pass = secret("FUGUE_BACKUP_PASSPHRASE", "Backup passphrase: ")?;
            let account = current(&store)?;
            let mut items = vec![(session.current_serial().map_err(e)?, session.key().clone())];
            for old in &account.old_keys {
                items.push((old.serial, old.key(pass.as_deref()).map_err(e)?));
            }
            let existing = session.key_material(&[]).await.map_err(e)?;
            let mut upload = Vec::new();
            for (serial, key) in items {
                if existing.iter().any(|m| m.serial == serial) {
                    continue;
                }
                let key_data = key.to_encrypted_pem(&backup_pass).map_err(e)?.to_string();
                upload.push(EncryptedPkm {
                    key_data,
                    serial,
                    encryption_algorithms: vec![PBES2_OID.to_owned()],
                });
            }
            let n = upload.len();
            if n > 0 {
                session.upload_key_material(upload).await.map_err(e)?;
            }
            out!(
                "backed up {n} key(s); {} were already on the server",
                existing.len()
            );
        }
        KeysCmd::Restore => {
            let backup_pass = secret("FUGUE_BACKUP_PASSPHRASE", "Backup passphrase: ")?;
            let material = session.key_material(&[]).await.map_err(e)?;
            let current_serial = session.current_serial().map_err(e)?;
            let mut account = current(&store)?.clone();
            let mut restored = 0;
            for m in material {
                let key = IdentityKey::from_encrypted_pem(&m.key_data, &backup_pass).map_err(e)?;
                if m.serial == current_serial
                    || account.old_keys.iter().any(|o| o.serial == m.serial)
                {
                    continue;
                }
                let key_pem = match &pass {
                    Some(p) => key.to_encrypted_pem(p).map_err(e)?.to_string(),
                    None => key.to_pkcs8_pem().map_err(e)?.to_string(),
                };
                account.old_keys.push(fugue_client::OldKey {
                    serial: m.serial,
                    key_pem,
                });
                restored += 1;
            }
            store.upsert(account).map_err(e)?;
            store.save().map_err(e)?;
            out!("restored {restored} key(s) into {}", store.path().display());
        }
    }
    Ok(())
}

/// Prints events as they arrive (stdout); connection notices go to stderr so that stdout
/// holds exactly one line per event.
async fn events(opts: ClientOpts, json: bool) -> Result<(), String> {
    let store = open_store(&opts)?;
    let (session, _) = restore_session(&store)?;
    let mut gateway = session
        .gateway(GatewayOptions::default())
        .await
        .map_err(e)?;
    note!(
        "following the events of {} on {} (Ctrl-C to stop)",
        session.fid(),
        session.client().base_url()
    );
    let result = follow(&mut gateway, json).await;
    gateway.close().await;
    result
}

async fn follow(gateway: &mut Gateway, json: bool) -> Result<(), String> {
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let event = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            event = gateway.recv() => event,
        };
        let Some(event) = event else {
            return Ok(());
        };
        match (&event, event.envelope()) {
            (_, Some(envelope)) if json => out!("{}", envelope.render(Style::Numbers)),
            (GatewayEvent::Closed { code, reason }, _) => {
                let code = code.map_or_else(|| "no code".to_owned(), |c| c.to_string());
                return Err(format!("the gateway closed ({code}): {reason}"));
            }
            (GatewayEvent::Reconnected { resumed: true }, _) => {
                note!("reconnected; missed events follow")
            }
            (GatewayEvent::Reconnected { resumed: false }, _) => note!(
                "reconnected afresh (the server could not resume); unacknowledged events follow"
            ),
            (GatewayEvent::ChannelClosed { service, error }, _) => {
                note!(
                    "channel {service} closed{}",
                    reason_suffix(error.as_deref())
                )
            }
            _ => out!("{}", describe(&event)),
        }
    }
}

fn reason_suffix(reason: Option<&str>) -> String {
    reason.map(|r| format!(": {r}")).unwrap_or_default()
}

/// One line for an event, e.g. `new session laptop alice@example.com cert serial 12`.
fn describe(event: &GatewayEvent) -> String {
    match event {
        GatewayEvent::NewSession { cert_pem, .. } => match IdCert::parse(cert_pem.as_bytes()) {
            Ok(cert) => {
                let session = cert.session_id().map(|s| s.to_string());
                let fid = cert.fid().map(|f| f.to_string());
                format!(
                    "new session {} {} cert serial {}",
                    session.as_deref().unwrap_or("?"),
                    fid.as_deref().unwrap_or("?"),
                    cert.serial
                )
            }
            Err(err) => format!("new session (its certificate does not parse: {err})"),
        },
        GatewayEvent::CertInvalidated { invalidation, .. } => format!(
            "certificate {} revoked since {}",
            invalidation.serial,
            date(invalidation.invalid_since)
        ),
        GatewayEvent::ServerCertChanged { change, .. } => {
            let serial = IdCert::parse(change.cert.as_bytes())
                .map(|c| format!(" (new serial {})", c.serial))
                .unwrap_or_default();
            format!(
                "server certificate changed{serial}; the old one is invalid since {}",
                date(change.old_invalid_since)
            )
        }
        GatewayEvent::Service { envelope } => {
            format!("{} event op {}: {}", envelope.n, envelope.op, envelope.d)
        }
        GatewayEvent::Malformed { error, envelope } => {
            format!("unreadable op {} event: {error}", envelope.op)
        }
        GatewayEvent::ChannelClosed { service, error } => {
            format!(
                "channel {service} closed{}",
                reason_suffix(error.as_deref())
            )
        }
        GatewayEvent::Reconnected { resumed } => format!("reconnected (resumed: {resumed})"),
        GatewayEvent::Closed { code, reason } => format!("closed ({code:?}): {reason}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_rendered_in_utc() {
        assert_eq!(super::date(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::date(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(super::date(951_782_400), "2000-02-29 00:00 UTC");
    }
}
