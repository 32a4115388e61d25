//! `fugue services`: list, add, remove and choose the primary provider of one's services,
//! and discover the services of any actor.
//!
//! Changing or removing a primary provider is sensitive: the command first asks without a
//! second factor and asks for the password (FUGUE_PASSWORD or a prompt) only when the server
//! says it is needed.

use clap::Subcommand;

use fugue_client::{Client, Session};
use fugue_proto::ErrorCode;
use fugue_proto::FederationId;
use fugue_proto::services::{ProviderUrl, Service, ServiceName};

use super::{ClientOpts, e, open_store, restore_session, secret};
use crate::terminal::out;

#[derive(Subcommand)]
pub enum ServicesCmd {
    /// List the service providers of FID (default: yours) on your home server.
    List { fid: Option<String> },
    /// Make URL discoverable as a provider of service NAME (e.g. `chat`). The first provider
    /// of a service becomes its primary one.
    Add {
        name: String,
        url: String,
        /// Make it the primary provider, replacing the current one (asks for your password).
        #[arg(long)]
        primary: bool,
    },
    /// Make URL the primary provider of NAME (asks for your password).
    Primary { name: String, url: String },
    /// Stop listing URL as a provider of NAME (asks for your password if it is the primary
    /// one; the server then promotes the oldest remaining provider).
    Remove { name: String, url: String },
    /// Discover the service providers of FID on the server given by --server, optionally
    /// of service NAME only.
    Discover {
        fid: String,
        name: Option<String>,
        /// Only the primary provider of each service.
        #[arg(long)]
        primary: bool,
    },
}

fn parse_fid(fid: &str) -> Result<FederationId, String> {
    fid.parse().map_err(|err| format!("{fid}: {err}"))
}

fn provider(name: &str, url: &str) -> Result<(ServiceName, ProviderUrl), String> {
    let name = name.parse().map_err(|err| format!("{name}: {err}"))?;
    let url = url.parse().map_err(|err| format!("{url}: {err}"))?;
    Ok((name, url))
}

fn line(s: &Service) -> String {
    let mark = if s.primary { "  (primary)" } else { "" };
    format!("{}  {}{mark}", s.service, s.url)
}

fn print_all(fid: &FederationId, mut found: Vec<Service>) {
    if found.is_empty() {
        out!("{fid} has no discoverable services");
    }
    // By service, its primary provider first.
    found.sort_by(|a, b| (&a.service, !a.primary).cmp(&(&b.service, !b.primary)));
    for s in &found {
        out!("{}", line(s));
    }
}

/// Runs `call` without a second factor; if the server wants one, asks for the password and
/// runs it again with it.
async fn with_solution_if_needed<T, F, Fut>(call: F) -> Result<T, String>
where
    F: Fn(Option<String>) -> Fut,
    Fut: std::future::Future<Output = fugue_client::Result<T>>,
{
    match call(None).await {
        Err(err) if err.code() == Some(ErrorCode::SensitiveSolutionRequired) => {
            let solution = secret("FUGUE_PASSWORD", "Password (or TOTP code): ")?;
            call(Some(solution)).await.map_err(e)
        }
        other => other.map_err(e),
    }
}

/// The session of the current account in the key store.
fn logged_in(opts: &ClientOpts) -> Result<Session, String> {
    let store = open_store(opts)?;
    Ok(restore_session(&store)?.0)
}

pub async fn run(opts: ClientOpts, cmd: ServicesCmd) -> Result<(), String> {
    match cmd {
        ServicesCmd::Discover { fid, name, primary } => {
            let fid = parse_fid(&fid)?;
            let name = name
                .map(|n| {
                    n.parse::<ServiceName>()
                        .map_err(|err| format!("{n}: {err}"))
                })
                .transpose()?;
            let client = Client::new(&opts.server).map_err(e)?;
            let found = client
                .discover_services(&fid, name.as_ref(), primary.then_some(1))
                .await
                .map_err(e)?;
            print_all(&fid, found);
        }
        ServicesCmd::List { fid } => {
            let session = logged_in(&opts)?;
            let fid = match fid {
                Some(f) => parse_fid(&f)?,
                None => session.fid().clone(),
            };
            let found = session
                .client()
                .discover_services(&fid, None, None)
                .await
                .map_err(e)?;
            print_all(&fid, found);
        }
        ServicesCmd::Add { name, url, primary } => {
            let session = logged_in(&opts)?;
            let (name, url) = provider(&name, &url)?;
            let stored = with_solution_if_needed(|solution| {
                let (session, name, url) = (&session, &name, &url);
                async move {
                    session
                        .add_service(name, url, primary, solution.as_deref())
                        .await
                }
            })
            .await?;
            out!("added {}", line(&stored));
        }
        ServicesCmd::Primary { name, url } => {
            let session = logged_in(&opts)?;
            let (name, url) = provider(&name, &url)?;
            let solution = secret("FUGUE_PASSWORD", "Password (or TOTP code): ")?;
            let changed = session
                .set_primary_service(&name, &url, &solution)
                .await
                .map_err(e)?;
            for s in changed.iter().filter(|s| !s.primary) {
                out!("no longer primary: {}", line(s));
            }
            out!("{url} is now the primary provider of {name}");
        }
        ServicesCmd::Remove { name, url } => remove(&logged_in(&opts)?, &name, &url).await?,
    }
    Ok(())
}

async fn remove(session: &Session, name: &str, url: &str) -> Result<(), String> {
    let pair = [provider(name, url)?];
    let promoted = with_solution_if_needed(|solution| {
        let pair = &pair;
        async move { session.remove_services(pair, solution.as_deref()).await }
    })
    .await?;
    let [(name, url)] = &pair;
    out!("removed {name}  {url}");
    for p in promoted {
        out!(
            "{} is now the primary provider of {}",
            p.new_primary,
            p.service
        );
    }
    Ok(())
}
