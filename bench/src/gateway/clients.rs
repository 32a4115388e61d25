//! The WebSocket clients: handshake (Hello, Identify, optionally the bench channel), one
//! read loop per connection counting what it receives, and groups of connections opened
//! together and stopped together.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use fugue_proto::gateway::{CORE, Envelope, Style, op};
use fugue_testkit::ws::{self, Ws};

use super::{CONNECT_CONCURRENCY, EVENT_PREFIX, SERVICE, unix_nanos};

/// What one client saw.
#[derive(Default)]
pub(crate) struct Stats {
    /// Frames received (the next frame's `s`).
    pub(crate) frames: AtomicU64,
    /// Bench event frames received.
    pub(crate) events: AtomicU64,
    /// When the last event arrived, nanoseconds after [`epoch`].
    pub(crate) last_event: AtomicU64,
    pub(crate) closed: AtomicBool,
    pub(crate) heartbeats: AtomicU64,
    pub(crate) frame_len: AtomicU64,
    /// Publish-to-receipt latencies in µs, while recording.
    pub(crate) latencies: Mutex<Vec<u32>>,
}

pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A set of connections that stop together.
pub(crate) struct Group {
    pub(crate) stats: Vec<Arc<Stats>>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Group {
    pub(crate) async fn close(self) {
        let _ = self.stop.send(true);
        let deadline = Instant::now() + Duration::from_secs(30);
        for t in self.tasks {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = tokio::time::timeout(left, t).await;
        }
    }

    pub(crate) fn closed(&self) -> usize {
        self.stats
            .iter()
            .filter(|s| s.closed.load(Ordering::Relaxed))
            .count()
    }
}

/// Longest wait for one handshake frame.
const HANDSHAKE_WAIT: Duration = Duration::from_secs(30);

fn frame(op: u16, d: serde_json::Value) -> Message {
    Message::text(Envelope::new(CORE, op, d).render(Style::Numbers))
}

/// Connects, identifies and (with `subscribe`) joins the bench channel; returns the socket
/// and the number of frames received so far.
async fn handshake(addr: SocketAddr, token: &str, subscribe: bool) -> Result<(Ws, u64), String> {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096);
    let (mut ws, _) = ws::try_connect(addr, Some(config), HANDSHAKE_WAIT).await?;
    ws.send(frame(op::IDENTIFY, json!({ "token": token })))
        .await
        .map_err(|e| e.to_string())?;
    ws::try_frame_with_op(&mut ws, op::IDENTIFY_ACK, HANDSHAKE_WAIT).await?;
    let mut frames = 2;
    if subscribe {
        let d = json!({ "action": "subscribe", "service": SERVICE });
        ws.send(frame(op::SERVICE_CHANNEL, d))
            .await
            .map_err(|e| e.to_string())?;
        ws::try_frame_with_op(&mut ws, op::SERVICE_CHANNEL_ACK, HANDSHAKE_WAIT).await?;
        frames += 1;
    }
    Ok((ws, frames))
}

async fn read_loop(
    mut ws: Ws,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
    record: Arc<AtomicBool>,
) {
    let mut frames = stats.frames.load(Ordering::Relaxed);
    loop {
        let msg = tokio::select! {
            biased;
            _ = stop.changed() => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                return;
            }
            m = ws.next() => m,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_)) | Err(_)) | None => {
                stats.closed.store(true, Ordering::Relaxed);
                return;
            }
            Some(Ok(_)) => continue,
        };
        frames += 1;
        stats.frames.store(frames, Ordering::Relaxed);
        if let Some(rest) = text.as_str().strip_prefix(EVENT_PREFIX) {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let at: u64 = rest[..digits].parse().unwrap_or(0);
            if record.load(Ordering::Relaxed) {
                let us = unix_nanos().saturating_sub(at) / 1000;
                stats
                    .latencies
                    .lock()
                    .unwrap()
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            if stats.frame_len.load(Ordering::Relaxed) == 0 {
                stats.frame_len.store(text.len() as u64, Ordering::Relaxed);
            }
            stats
                .last_event
                .store(epoch().elapsed().as_nanos() as u64, Ordering::Relaxed);
            stats.events.fetch_add(1, Ordering::Release);
        } else if let Ok((env, _)) = Envelope::parse(text.as_str())
            && env.n == CORE
            && env.op == op::HEARTBEAT_REQUEST
        {
            // Only when the server asks: the interval is longer than the run.
            let d = json!({ "from": "0", "to": (frames - 1).to_string() });
            if ws.send(frame(op::HEARTBEAT, d)).await.is_err() {
                stats.closed.store(true, Ordering::Relaxed);
                return;
            }
            stats.heartbeats.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Opens one identified connection per token (token `i` to `addrs[i % addrs.len()]`),
/// `CONNECT_CONCURRENCY` handshakes at a time. Returns the group and connections/s.
pub(crate) async fn connect_group(
    addrs: &[SocketAddr],
    tokens: &[String],
    subscribe: bool,
    record: &Arc<AtomicBool>,
) -> (Group, f64) {
    let (stop, _) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    let start = Instant::now();
    let mut stats = Vec::with_capacity(tokens.len());
    let mut tasks = Vec::with_capacity(tokens.len());
    for (i, token) in tokens.iter().enumerate() {
        let st = Arc::new(Stats::default());
        stats.push(st.clone());
        let (addr, token) = (addrs[i % addrs.len()], token.clone());
        let (permits, ready, stop, record) = (
            permits.clone(),
            ready_tx.clone(),
            stop.subscribe(),
            record.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let permit = permits.acquire_owned().await.unwrap();
            match handshake(addr, &token, subscribe).await {
                Ok((ws, frames)) => {
                    drop(permit);
                    st.frames.store(frames, Ordering::Relaxed);
                    let _ = ready.send(Ok(()));
                    read_loop(ws, st, stop, record).await;
                }
                Err(e) => {
                    st.closed.store(true, Ordering::Relaxed);
                    let _ = ready.send(Err(e));
                }
            }
        }));
    }
    drop(ready_tx);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut failed = 0;
    for _ in 0..tokens.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => {
                if failed == 0 {
                    eprintln!("a gateway connection failed: {e}");
                }
                failed += 1;
            }
            Ok(None) | Err(_) => {
                eprintln!("connecting took longer than 120 s");
                break;
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} gateway connections failed", tokens.len());
    }
    let rate = tokens.len() as f64 / start.elapsed().as_secs_f64();
    (Group { stats, stop, tasks }, rate)
}

/// Events every one of `stats` received since `base` (the slowest client's count).
pub(crate) fn received(stats: &[&Arc<Stats>], base: &[u64]) -> u64 {
    stats
        .iter()
        .zip(base)
        .map(|(s, b)| s.events.load(Ordering::Acquire) - b)
        .min()
        .unwrap_or(0)
}

/// Size of a bench event frame, as the clients saw it.
pub(crate) fn frame_len(stats: &[&Arc<Stats>]) -> u64 {
    stats
        .iter()
        .map(|s| s.frame_len.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0)
}

/// Heartbeats the clients sent (only when the server asked).
pub(crate) fn heartbeats(stats: &[&Arc<Stats>]) -> u64 {
    stats
        .iter()
        .map(|s| s.heartbeats.load(Ordering::Relaxed))
        .sum()
}
