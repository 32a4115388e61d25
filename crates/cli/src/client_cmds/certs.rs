//! `fugue certs`: an actor's ID-Certs, fetched and verified (chain, cache signature,
//! revocation) before anything is printed.

use clap::Subcommand;

use fugue_client::Client;
use fugue_proto::FederationId;

use super::{ClientOpts, date, e};
use crate::terminal::out;

#[derive(Subcommand)]
pub enum CertsCmd {
    /// Fetch and verify every ID-Cert of FID.
    Show { fid: String },
}

pub async fn run(opts: ClientOpts, cmd: CertsCmd) -> Result<(), String> {
    let CertsCmd::Show { fid } = cmd;
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
