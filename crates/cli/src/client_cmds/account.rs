//! `fugue account`: registering, logging in (a new identity key, its ID-Cert and a session,
//! kept in the key store), the current account, and the sensitive actions on it (core §4.2):
//! a new password, deletion, and TOTP.

use clap::Subcommand;

use fugue_client::{Account, Client, IdentityKey};
use fugue_proto::{FederationId, SessionId};

use super::{
    ClientOpts, e, open_store, passphrase_if, read_line, restore_session, secret, solution,
};
use crate::terminal::{note, out};

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

pub async fn run(opts: ClientOpts, cmd: AccountCmd) -> Result<(), String> {
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
            // The device's KeyPackages, so that it can be added to encrypted conversations;
            // a server without polyproto-mls just has none.
            if let Err(err) = super::e2ee::enroll(&opts, &session).await {
                note!("no KeyPackages uploaded: {err}");
            }
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
            out!("secret: {}", enrolment.secret);
            out!("otpauth URL: {}", enrolment.otpauth_url);
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
