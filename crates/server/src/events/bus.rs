//! The event bus: how nodes tell each other (and themselves) what happened.
//!
//! In-process (a tokio broadcast channel) when the server runs alone; NATS core pub/sub when
//! `cluster.nats_url` is set. The bus carries announcements, never the truth: every event is
//! in the database before it is announced, so a lost message delays delivery (receivers see
//! the gap in positions and read the database) but loses nothing. That is why JetStream is
//! not needed here.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};

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
    SessionEnded { actor_id: i64, session_pk: i64 },
    /// The server root changed (op 6 to everyone).
    ServerCertChange {
        cert: String,
        old_invalid_since: u64,
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
    pub session_pk: i64,
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
    url: String,
    reason: String,
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

    /// Connects to NATS; subjects start with `prefix` so clusters can share a NATS server.
    /// Returns the bus and the stream of handoff requests this node must answer.
    pub async fn nats(
        url: &str,
        prefix: &str,
        node: Arc<str>,
    ) -> Result<(Self, mpsc::Receiver<HandoffRequest>), BusError> {
        let err = |e: &dyn std::fmt::Display| BusError {
            url: url.to_owned(),
            reason: e.to_string(),
        };
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
        tokio::spawn(async move {
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
        tokio::spawn(async move {
            loop {
                lagged.notified().await;
                let _ = lag_tx.send(Arc::new(BusMsg::Resync));
            }
        });
        let (req_tx, req_rx) = mpsc::channel(64);
        let replier = client.clone();
        tokio::spawn(async move {
            while let Some(msg) = handoffs.next().await {
                let Some(reply_to) = msg.reply.clone() else {
                    continue;
                };
                let Some(session_pk) = std::str::from_utf8(&msg.payload)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
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
                tokio::spawn(async move {
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

    /// Asks `node` for the state of `session_pk`'s connection. None when there is no other
    /// node, it does not answer in time, or it holds nothing.
    pub async fn handoff(&self, node: &str, session_pk: i64) -> Option<Vec<u8>> {
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
