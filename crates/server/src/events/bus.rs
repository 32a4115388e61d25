//! The event bus: how nodes tell each other (and themselves) what happened.
//!
//! In-process (a tokio broadcast channel) when the server runs alone; NATS core pub/sub when
//! `cluster.nats_url` is set. The bus carries announcements, never the truth: every event is
//! in the database before it is announced, so a lost message delays delivery (receivers see
//! the gap in positions and read the database) but loses nothing. That is why JetStream is
//! not needed here.
//!
//! The bus is trusted: whoever can publish on it can reach every client. A bus on another
//! machine must be authenticated and encrypted (docs/deployment.md); the server says so at
//! start when it is not.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::config::{Cluster, NatsAuth, NatsTls};
use crate::ids::{ActorId, SessionPk};
use crate::tasks::Tasks;
use crate::time::UnixTime;

/// Announcements buffered per subscriber before it counts as lagging (then it resyncs).
const CAPACITY: usize = 65_536;
/// How long a node waits for another node to hand over a connection's state.
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(2);

/// What travels on the bus.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BusMsg {
    /// An event was appended to an actor's stream.
    Event(Arc<super::Event>),
    /// A session ended (revoked, or its certificate revoked): its connections close (4003).
    SessionEnded {
        actor_id: ActorId,
        session_pk: SessionPk,
    },
    /// The server root changed (op 6 to everyone).
    ServerCertChange {
        cert: String,
        old_invalid_since: UnixTime,
        root_serial: i64,
    },
    /// Announcements may have been lost (bus reconnect, slow consumer): every receiver
    /// re-reads the database. Never sent to other nodes.
    Resync,
}

/// What a subscriber receives.
pub enum Incoming {
    Msg(Arc<BusMsg>),
    /// Announcements were lost (a slow subscriber, a bus reconnect): read the database.
    Lagged,
}

/// A request from another node for the state of a connection it is resuming.
pub struct HandoffRequest {
    pub session_pk: SessionPk,
    pub reply: oneshot::Sender<Option<Vec<u8>>>,
}

#[derive(Clone)]
pub struct Bus {
    local: broadcast::Sender<Arc<BusMsg>>,
    nats: Option<Nats>,
    node: Arc<str>,
}

#[derive(Clone)]
struct Nats {
    client: async_nats::Client,
    events_subject: String,
    prefix: String,
}

/// Receives announcements; see [`Incoming`].
pub struct BusRx(broadcast::Receiver<Arc<BusMsg>>);

impl BusRx {
    pub async fn recv(&mut self) -> Option<Incoming> {
        match self.0.recv().await {
            Ok(m) => Some(Incoming::Msg(m)),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "event bus subscriber lagged; resyncing");
                Some(Incoming::Lagged)
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// Why the bus could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to NATS at {url}: {reason}")]
pub struct BusError {
    /// Without the password or token it may carry.
    url: String,
    reason: String,
}

/// `url` with its user information (a password, a token) replaced by `***`, for logs.
/// Without a scheme too: async-nats reads `user:pass@host` as `nats://user:pass@host`.
fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (&url[..scheme.len() + 3], rest),
        None => ("", url),
    };
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// What is wrong with a bus at `url` that other machines can reach, if anything: the
/// warning to log at start. A loopback bus is as private as the machine.
fn exposure(url: &str, cluster: &Cluster) -> Option<&'static str> {
    let addr: async_nats::ServerAddr = url.parse().ok()?;
    let host = addr.host().trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        return None;
    }
    let authenticated = addr.username().is_some() || !matches!(cluster.nats_auth, NatsAuth::None);
    let encrypted = addr.tls_required() || cluster.nats_tls.is_some();
    if !authenticated {
        Some(
            "the event bus is unauthenticated on a non-loopback address: whoever reaches NATS can forge events to every client; give it credentials and TLS (docs/deployment.md)",
        )
    } else if !encrypted {
        Some(
            "the event bus is not encrypted on a non-loopback address: its credentials and events cross the network in clear; require TLS (docs/deployment.md)",
        )
    } else {
        None
    }
}

/// Credentials and TLS for NATS, from the URL and what the binary read.
fn secure(
    options: async_nats::ConnectOptions,
    url: &str,
    cluster: &Cluster,
) -> Result<async_nats::ConnectOptions, String> {
    let addr: async_nats::ServerAddr = url.parse().map_err(|e| format!("{e}"))?;
    // async-nats ignores user information in the URL given to `connect_with_options`.
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| "the user information in the URL is not UTF-8".to_owned())
    };
    let in_url = match (addr.username(), addr.password()) {
        (None, _) => None,
        (Some(user), Some(pass)) => Some(NatsAuth::UserPassword(decode(user)?, decode(pass)?)),
        // `nats://TOKEN@host`, as the NATS tools write it.
        (Some(token), None) => Some(NatsAuth::Token(decode(token)?)),
    };
    let auth = match (in_url, &cluster.nats_auth) {
        (None, auth) => auth.clone(),
        (Some(auth), NatsAuth::None) => auth,
        (Some(_), _) => {
            return Err("credentials both in the URL and in the cluster settings".into());
        }
    };
    let options = match &auth {
        NatsAuth::None => options,
        NatsAuth::UserPassword(user, pass) => options.user_and_password(user.clone(), pass.clone()),
        NatsAuth::Token(token) => options.token(token.clone()),
        NatsAuth::NKeySeed(seed) => options.nkey(seed.clone()),
        NatsAuth::Credentials(creds) => options
            .credentials(creds)
            .map_err(|e| format!("the credentials file is not usable: {e}"))?,
    };
    Ok(match &cluster.nats_tls {
        None => options,
        Some(tls) if tls.ca_pem.is_none() && tls.client_cert_pem.is_none() => {
            // The system's roots, as async-nats finds them.
            options.require_tls(true)
        }
        Some(tls) => options
            .require_tls(true)
            .tls_client_config(tls_config(tls)?),
    })
}

/// A rustls configuration trusting the CAs in `tls.ca_pem`, with the client certificate if
/// there is one.
fn tls_config(tls: &NatsTls) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let ca = tls
        .ca_pem
        .as_deref()
        .ok_or("a client certificate for NATS needs the CA file too")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        let cert = cert.map_err(|e| format!("the NATS CA file: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("the NATS CA file: {e}"))?;
    }
    if roots.is_empty() {
        return Err("the NATS CA file holds no certificate".into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match (&tls.client_cert_pem, &tls.client_key_pem) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("the NATS client certificate: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|e| format!("the NATS client key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("the NATS client certificate and key: {e}"))
        }
        _ => Err("a NATS client certificate needs its key, and a key its certificate".into()),
    }
}

impl Bus {
    /// A bus for one process.
    pub fn in_process(node: Arc<str>) -> Self {
        let (local, _) = broadcast::channel(CAPACITY);
        Self {
            local,
            nats: None,
            node,
        }
    }

    /// Connects to NATS at `url` with the credentials and TLS of `cluster`; subjects start
    /// with its prefix so clusters can share a NATS server. Returns the bus and the stream of
    /// handoff requests this node must answer.
    pub async fn nats(
        url: &str,
        cluster: &Cluster,
        node: Arc<str>,
        tasks: &Tasks,
    ) -> Result<(Self, mpsc::Receiver<HandoffRequest>), BusError> {
        let prefix = cluster.subject_prefix.as_str();
        let err = |e: &dyn std::fmt::Display| BusError {
            url: redact(url),
            reason: e.to_string(),
        };
        if let Some(warning) = exposure(url, cluster) {
            tracing::warn!(url = %redact(url), "{warning}");
        }
        let (local, _) = broadcast::channel(CAPACITY);
        let lag_tx = local.clone();
        let lagged = Arc::new(tokio::sync::Notify::new());
        let lagged_cb = lagged.clone();
        let options = async_nats::ConnectOptions::new()
            .name(format!("fugue-{node}"))
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(HANDOFF_TIMEOUT))
            .subscription_capacity(CAPACITY)
            .event_callback(move |event| {
                let lagged = lagged_cb.clone();
                async move {
                    match event {
                        async_nats::Event::Connected | async_nats::Event::SlowConsumer(_) => {
                            tracing::info!(%event, "NATS");
                            lagged.notify_one();
                        }
                        other => tracing::warn!(event = %other, "NATS"),
                    }
                }
            });
        let options = secure(options, url, cluster).map_err(|e| err(&e))?;
        let client = async_nats::connect_with_options(url, options)
            .await
            .map_err(|e| err(&e))?;
        let events_subject = format!("{prefix}.events");
        let mut events = client
            .subscribe(events_subject.clone())
            .await
            .map_err(|e| err(&e))?;
        let mut handoffs = client
            .subscribe(format!("{prefix}.handoff.{node}"))
            .await
            .map_err(|e| err(&e))?;
        client.flush().await.map_err(|e| err(&e))?;

        // Announcements from NATS go into the same local channel subscribers read.
        let pump = local.clone();
        tasks.spawn_loop(async move {
            while let Some(msg) = events.next().await {
                match serde_json::from_slice::<BusMsg>(&msg.payload) {
                    Ok(m) => {
                        let _ = pump.send(Arc::new(m));
                    }
                    Err(e) => tracing::warn!(error = %e, "ignoring a malformed bus message"),
                }
            }
        });
        // A reconnect or a slow-consumer report means announcements may be lost.
        tasks.spawn_loop(async move {
            loop {
                lagged.notified().await;
                let _ = lag_tx.send(Arc::new(BusMsg::Resync));
            }
        });
        let (req_tx, req_rx) = mpsc::channel(64);
        let replier = client.clone();
        let answers = tasks.clone();
        tasks.spawn_loop(async move {
            while let Some(msg) = handoffs.next().await {
                let Some(reply_to) = msg.reply.clone() else {
                    continue;
                };
                let Some(session_pk) = std::str::from_utf8(&msg.payload)
                    .ok()
                    .and_then(|s| s.parse::<SessionPk>().ok())
                else {
                    continue;
                };
                let (tx, rx) = oneshot::channel();
                if req_tx
                    .send(HandoffRequest {
                        session_pk,
                        reply: tx,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                let replier = replier.clone();
                answers.spawn_loop(async move {
                    let body = rx.await.ok().flatten().unwrap_or_default();
                    let _ = replier.publish(reply_to, Bytes::from(body)).await;
                });
            }
        });
        Ok((
            Self {
                local,
                nats: Some(Nats {
                    client,
                    events_subject,
                    prefix: prefix.to_owned(),
                }),
                node,
            },
            req_rx,
        ))
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn subscribe(&self) -> BusRx {
        BusRx(self.local.subscribe())
    }

    /// Announces to every node, this one included.
    pub async fn announce(&self, msg: BusMsg) {
        match &self.nats {
            None => {
                let _ = self.local.send(Arc::new(msg));
            }
            Some(n) => match serde_json::to_vec(&msg) {
                Ok(body) => {
                    if let Err(e) = n
                        .client
                        .publish(n.events_subject.clone(), Bytes::from(body))
                        .await
                    {
                        // The database has it; receivers catch up at their next gap check.
                        tracing::warn!(error = %e, "announcing on NATS failed");
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot encode a bus message"),
            },
        }
    }

    /// Sends what is queued for NATS (nothing to do in process).
    pub async fn flush(&self) {
        if let Some(n) = &self.nats
            && let Err(e) = n.client.flush().await
        {
            tracing::warn!(error = %e, "flushing the NATS connection failed");
        }
    }

    /// Asks `node` for the state of `session_pk`'s connection. None when there is no other
    /// node, it does not answer in time, or it holds nothing.
    pub async fn handoff(&self, node: &str, session_pk: SessionPk) -> Option<Vec<u8>> {
        let n = self.nats.as_ref()?;
        if node == &*self.node {
            return None;
        }
        let subject = format!("{}.handoff.{node}", n.prefix);
        match n
            .client
            .request(subject, Bytes::from(session_pk.to_string()))
            .await
        {
            Ok(reply) if !reply.payload.is_empty() => Some(reply.payload.to_vec()),
            Ok(_) => None,
            Err(e) => {
                tracing::info!(error = %e, %node, "no handoff from the previous node");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(auth: NatsAuth, tls: Option<NatsTls>) -> Cluster {
        Cluster {
            nats_auth: auth,
            nats_tls: tls,
            ..Cluster::default()
        }
    }

    #[test]
    fn a_loopback_bus_is_private_whatever_its_credentials() {
        let open = cluster(NatsAuth::None, None);
        for url in [
            "nats://127.0.0.1:4222",
            "nats://127.8.9.10:4222",
            "nats://[::1]:4222",
            "nats://localhost:4222",
            "127.0.0.1:4222",
        ] {
            assert_eq!(exposure(url, &open), None, "{url}");
        }
    }

    #[test]
    fn an_unauthenticated_bus_on_another_address_is_reported() {
        let open = cluster(NatsAuth::None, None);
        for url in [
            "nats://10.0.0.5:4222",
            "nats://0.0.0.0:4222",
            "nats://[2001:db8::1]:4222",
            "nats://nats.internal:4222",
            "tls://nats.internal:4222",
        ] {
            let warning = exposure(url, &open).unwrap_or_else(|| panic!("{url}: no warning"));
            assert!(warning.contains("unauthenticated"), "{url}: {warning}");
        }
        let tls_only = cluster(NatsAuth::None, Some(NatsTls::default()));
        assert!(exposure("nats://10.0.0.5:4222", &tls_only).is_some());
    }

    #[test]
    fn credentials_without_tls_on_another_address_are_reported_too() {
        let token = cluster(NatsAuth::Token("t".into()), None);
        let warning = exposure("nats://10.0.0.5:4222", &token).unwrap();
        assert!(warning.contains("not encrypted"), "{warning}");
        let in_url = cluster(NatsAuth::None, None);
        assert!(
            exposure("nats://fugue:secret@10.0.0.5:4222", &in_url)
                .unwrap()
                .contains("not encrypted")
        );
    }

    #[test]
    fn an_authenticated_encrypted_bus_is_fine() {
        let tls = Some(NatsTls::default());
        for auth in [
            NatsAuth::Token("t".into()),
            NatsAuth::NKeySeed("SU".into()),
            NatsAuth::Credentials("c".into()),
            NatsAuth::UserPassword("u".into(), "p".into()),
        ] {
            assert_eq!(
                exposure("nats://10.0.0.5:4222", &cluster(auth, tls.clone())),
                None
            );
        }
        let open = cluster(NatsAuth::None, None);
        assert_eq!(exposure("tls://fugue:secret@10.0.0.5:4222", &open), None);
    }

    #[test]
    fn urls_are_logged_without_their_secrets() {
        assert_eq!(
            redact("nats://fugue:s3cret@10.0.0.5:4222"),
            "nats://***@10.0.0.5:4222"
        );
        assert_eq!(redact("tls://T0KEN@nats:4222"), "tls://***@nats:4222");
        assert_eq!(redact("nats://10.0.0.5:4222"), "nats://10.0.0.5:4222");
        assert_eq!(redact("10.0.0.5:4222"), "10.0.0.5:4222");
        assert_eq!(redact("fugue:s3cret@10.0.0.5:4222"), "***@10.0.0.5:4222");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let c = cluster(
            NatsAuth::Token("s3cret".into()),
            Some(NatsTls {
                client_key_pem: Some("PRIVATE".into()),
                ..NatsTls::default()
            }),
        );
        let text = format!("{c:?}");
        assert!(
            !text.contains("s3cret") && !text.contains("PRIVATE"),
            "{text}"
        );
    }
}
