//! `fugue federation`: signing the current account in on other home servers with a key
//! trial (core §4.1.1) and keeping those servers' tokens in the key store.

use clap::Subcommand;

use super::{ClientOpts, current, e, open_store, restore_session};
use crate::terminal::out;

#[derive(Subcommand)]
pub enum FederationCmd {
    /// Sign in on SERVER (a URL, or a host name for https://HOST) with your current session's
    /// key; its session token is kept in the key store next to your account.
    Login {
        server: String,
        /// The server's domain, when the host of SERVER is another (a delegated API host, or
        /// a development address): its key trials must name it.
        #[arg(long)]
        domain: Option<String>,
    },
    /// The servers your current session is signed in on.
    List,
}

/// `https://` unless the argument names its scheme.
pub(super) fn server_url(arg: &str) -> String {
    if arg.contains("://") {
        arg.to_owned()
    } else {
        format!("https://{arg}")
    }
}

pub async fn run(opts: ClientOpts, cmd: FederationCmd) -> Result<(), String> {
    let mut store = open_store(&opts)?;
    match cmd {
        FederationCmd::Login { server, domain } => {
            let (session, _) = restore_session(&store)?;
            let url = server_url(&server);
            let foreign = match domain {
                Some(d) => {
                    let domain = d.parse().map_err(|err| format!("--domain {d}: {err}"))?;
                    let client = fugue_client::Client::new(&url).map_err(e)?;
                    session.sign_in_on(client, &domain).await
                }
                None => session.sign_in_elsewhere(&url).await,
            }
            .map_err(e)?;
            let mut account = current(&store)?.clone();
            account.remember_foreign(&foreign);
            store.upsert(account).map_err(e)?;
            store.save().map_err(e)?;
            out!(
                "signed in on {} as {} (session {})",
                foreign.client().base_url(),
                session.fid(),
                session.session_id()
            );
        }
        FederationCmd::List => {
            let account = current(&store)?;
            if account.foreign_tokens.is_empty() {
                out!("{} is signed in on no other server", account.fid);
            }
            for server in account.foreign_tokens.keys() {
                out!("{server}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bare_host_means_https() {
        assert_eq!(super::server_url("beta.example"), "https://beta.example");
        assert_eq!(
            super::server_url("http://127.0.0.1:3001"),
            "http://127.0.0.1:3001"
        );
    }
}
