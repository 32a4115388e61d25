//! The polyproto gateway (DIGEST §3, docs/gateway.md): WebSocket connections that deliver
//! each session's events exactly once and in order, with heartbeats, re-sends and resume.
//!
//! [`Gateway`] owns this node's connections (the hub), the states of recently closed
//! connections (for exact resumes) and the registry of service channels. Events come from
//! [`Events`] through the bus; one task per connection (`conn.rs`) numbers and writes them.
//! Connection states move between nodes through the bus on resume.

mod conn;
pub mod routes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use fugue_proto::gateway::{CORE, Envelope};
use fugue_store::Store;

use crate::config::Config;
use crate::events::{BusMsg, Event, Events, HandoffRequest, Incoming, RootChange};
use crate::identity::Identity;
use futures_util::future::BoxFuture;

use crate::http::ApiError;
use crate::ids::{ActorId, SessionPk, StreamId, from_store, to_store};
use crate::principal::Actor;
use crate::sessions::{Authed, Sessions};
use crate::tasks::Tasks;

/// Frames kept per connection for heartbeat re-sends and exact resumes.
const KEPT_FRAMES: usize = 1024;
/// Most events one poll of `GET /events` returns (OP-37).
pub const POLL_LIMIT: u64 = 1000;

/// A service that offers a gateway channel (op 8). Its events are published through
/// [`Events`] with `n` = its name. A connection subscribed to it follows, beside the actor's
/// own stream, the streams [`Service::follows`] names, and asks [`Service::view`] again
/// after each access-changing event of such a stream (docs/ARCHITECTURE.md, "Delivery").
pub trait Service: Send + Sync {
    fn name(&self) -> &str;

    /// The streams the actor follows while subscribed to this channel.
    fn follows<'a>(&'a self, actor: &'a Actor) -> BoxFuture<'a, Result<Vec<Follow>, ApiError>> {
        let _ = actor;
        Box::pin(async { Ok(Vec::new()) })
    }

    /// The actor's view of one stream now; `None` when it may no longer follow it.
    fn view<'a>(
        &'a self,
        actor: &'a Actor,
        stream: StreamId,
    ) -> BoxFuture<'a, Result<Option<Follow>, ApiError>> {
        let _ = (actor, stream);
        Box::pin(async { Ok(None) })
    }

    /// The actor's first connection on this node subscribed to this channel opened
    /// (`online`), or its last one closed (presence). Called on the connection's task: a
    /// service that writes spawns.
    fn connected(&self, actor: &Actor, online: bool) {
        let _ = (actor, online);
    }

    /// A payload a client sent in this service's namespace (typing, say).
    fn client_op<'a>(
        &'a self,
        authed: &'a Authed,
        op: u16,
        d: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), OpRefused>> {
        let _ = (authed, d);
        Box::pin(async move { Err(OpRefused::Unknown(op)) })
    }
}

/// Why a service did not take a client's payload.
#[derive(Debug)]
pub enum OpRefused {
    /// The service defines no such client opcode (close 4001).
    Unknown(u16),
    /// The payload was refused (close 4002 with the problem's detail; 5xx: 4000).
    Refused(ApiError),
}

/// A stream a session follows, and what it may see there.
#[derive(Clone)]
pub struct Follow {
    pub stream: StreamId,
    /// The first position the actor may see (where its membership began).
    pub since: u64,
    pub view: Arc<dyn View>,
}

/// Which channel-scoped events of a stream a follower may see.
pub trait View: Send + Sync {
    fn sees(&self, channel: i64) -> bool;
}

/// A view that sees every channel.
pub struct SeesAll;

impl View for SeesAll {
    fn sees(&self, _channel: i64) -> bool {
        true
    }
}

/// Messages to one connection that must not wait behind its event queue.
enum Ctl {
    /// Its queue overflowed: it reads too slowly.
    Overflow,
    /// Its session ended.
    SessionEnded,
    /// The server root changed.
    ServerCertChange(Arc<RootChange>),
    /// Events may have been missed: read the log.
    Resync,
    /// A newer connection of the same session resumes: hand over the state and stop.
    TakeOver(oneshot::Sender<Resumable>),
    /// This node is shutting down.
    Shutdown,
}

struct ConnHandle {
    id: u64,
    session_pk: SessionPk,
    queue: mpsc::Sender<Arc<Event>>,
    ctl: mpsc::UnboundedSender<Ctl>,
    overflowed: std::sync::atomic::AtomicBool,
    /// The streams whose hub entries hold this connection.
    streams: Mutex<HashSet<StreamId>>,
}

/// A stream position per stream.
pub type Positions = BTreeMap<StreamId, u64>;

/// What a closed connection leaves behind so that a new one can continue it exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resumable {
    pub session_pk: SessionPk,
    /// Position per stream before the first frame of that stream on the connection.
    pub base: Vec<(StreamId, u64)>,
    /// `(s, stream, position)` of every kept event frame, ascending.
    pub sent: Vec<(u64, StreamId, u64)>,
    /// Frames up to this `s` are no longer kept; the positions there were `evicted`.
    pub evicted_s: Option<u64>,
    pub evicted: Vec<(StreamId, u64)>,
    /// The highest `s` the connection sent.
    pub last_s: u64,
    pub services: Vec<String>,
    pub root_serial: i64,
    /// `(s, root serial before it)` of every op 6 the connection sent.
    #[serde(default)]
    pub root_changes: Vec<(u64, i64)>,
}

impl Resumable {
    /// The stream positions a client is at that received everything up to `s`. None when
    /// `s` was never sent or is older than what is kept.
    pub fn positions_at(&self, s: u64) -> Option<Positions> {
        let base: Positions = self.base.iter().copied().collect();
        let evicted: Positions = self.evicted.iter().copied().collect();
        positions_at(
            self.sent.iter().copied(),
            &base,
            self.evicted_s.map(|e| (e, &evicted)),
            self.last_s,
            s,
        )
    }

    /// The root serial a client knows that received everything up to `s`.
    pub fn root_at(&self, s: u64) -> i64 {
        self.root_changes
            .iter()
            .find(|(at, _)| *at > s)
            .map_or(self.root_serial, |(_, before)| *before)
    }
}

/// The stream positions of a client that received every frame up to `s`: per stream, the
/// position of the last event frame at or before `s` (`sent`: `(s, stream, position)`
/// ascending), else where the stream started on the connection (or where its forgotten
/// frames ended). None when `s` was never sent or lies among the forgotten frames. One rule
/// for live connections and closed ones.
fn positions_at(
    sent: impl Iterator<Item = (u64, StreamId, u64)>,
    base: &Positions,
    evicted: Option<(u64, &Positions)>,
    last_s: u64,
    s: u64,
) -> Option<Positions> {
    if s > last_s || evicted.is_some_and(|(e, _)| s < e) {
        return None;
    }
    let mut at = base.clone();
    for (stream, seq) in evicted.into_iter().flat_map(|(_, p)| p.iter()) {
        let p = at.entry(*stream).or_default();
        *p = (*p).max(*seq);
    }
    for (fs, stream, seq) in sent {
        if fs > s {
            break;
        }
        at.insert(stream, seq);
    }
    Some(at)
}

struct Shared {
    config: Arc<Config>,
    events: Events,
    sessions: Sessions,
    identity: Identity,
    store: Store,
    tasks: Tasks,
    /// The connections following each stream.
    hub: RwLock<HashMap<StreamId, Vec<Arc<ConnHandle>>>>,
    /// Every identified connection of this node, by its id.
    conns: RwLock<HashMap<u64, Arc<ConnHandle>>>,
    /// Per actor and service channel, how many of this node's connections subscribe to it.
    subscribed: Mutex<HashMap<(ActorId, String), usize>>,
    retained: Mutex<HashMap<SessionPk, (Instant, Resumable)>>,
    services: RwLock<BTreeMap<String, Arc<dyn Service>>>,
    next_conn: AtomicU64,
    /// One permit per open connection (`gateway.max_connections`); all of them back means
    /// every connection task has ended.
    slots: Arc<Semaphore>,
    max_slots: u32,
    /// Set once the node shuts down: new connections close at once.
    closing: AtomicBool,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct Gateway(Arc<Shared>);

impl Gateway {
    pub(crate) fn new(
        config: Arc<Config>,
        events: Events,
        sessions: Sessions,
        identity: Identity,
        store: Store,
        tasks: Tasks,
    ) -> Self {
        let max_slots =
            u32::try_from(config.gateway.max_connections.clamp(1, 1 << 24)).unwrap_or(u32::MAX);
        Self(Arc::new(Shared {
            config,
            events,
            sessions,
            identity,
            store,
            tasks,
            hub: RwLock::default(),
            conns: RwLock::default(),
            subscribed: Mutex::default(),
            retained: Mutex::default(),
            services: RwLock::default(),
            next_conn: AtomicU64::new(1),
            slots: Arc::new(Semaphore::new(max_slots as usize)),
            max_slots,
            closing: AtomicBool::new(false),
        }))
    }

    /// A place for one more connection, unless the node is full or shutting down.
    pub(crate) fn slot(&self) -> Option<OwnedSemaphorePermit> {
        if self.0.closing.load(Ordering::SeqCst) {
            return None;
        }
        self.0.slots.clone().try_acquire_owned().ok()
    }

    fn closing(&self) -> bool {
        self.0.closing.load(Ordering::SeqCst)
    }

    /// Offers a service channel. Services register while the server is built.
    pub fn register_service(&self, service: Arc<dyn Service>) {
        let name = service.name().to_owned();
        self.0
            .services
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, service);
    }

    fn offers(&self, service: &str) -> bool {
        service == CORE
            || self
                .0
                .services
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(service)
    }

    /// Starts delivering bus announcements to this node's connections, and answering other
    /// nodes' handoff requests.
    pub(crate) fn start(&self, handoffs: Option<mpsc::Receiver<HandoffRequest>>) {
        let mut rx = self.0.events.bus().subscribe();
        let gw = self.clone();
        self.0.tasks.spawn_loop(async move {
            while let Some(incoming) = rx.recv().await {
                match incoming {
                    Incoming::Msg(msg) => gw.dispatch(&msg),
                    Incoming::Lagged => gw.dispatch(&BusMsg::Resync),
                }
            }
        });
        if let Some(mut handoffs) = handoffs {
            let gw = self.clone();
            self.0.tasks.spawn_loop(async move {
                while let Some(req) = handoffs.recv().await {
                    let gw2 = gw.clone();
                    gw.0.tasks.spawn_loop(async move {
                        let gw = gw2;
                        let state = gw.take_state(req.session_pk).await;
                        let body = state.and_then(|s| serde_json::to_vec(&s).ok());
                        let _ = req.reply.send(body);
                    });
                }
            });
        }
    }

    fn each(&self, f: impl Fn(&ConnHandle)) {
        let conns = self.0.conns.read().unwrap_or_else(|e| e.into_inner());
        conns.values().for_each(|h| f(h));
    }

    fn service(&self, name: &str) -> Option<Arc<dyn Service>> {
        self.0
            .services
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Counts a connection subscribing to (`up`) or leaving a service channel, and tells the
    /// service when the actor's first one opened or its last one closed on this node.
    fn note_subscription(&self, actor: &Actor, service: &str, up: bool) {
        if service == CORE {
            return;
        }
        let edge = {
            let mut map = self.0.subscribed.lock().unwrap_or_else(|e| e.into_inner());
            let key = (actor.id, service.to_owned());
            let n = map.entry(key.clone()).or_default();
            let before = *n;
            *n = if up {
                before + 1
            } else {
                before.saturating_sub(1)
            };
            let after = *n;
            if after == 0 {
                map.remove(&key);
            }
            (before == 0 && after == 1) || (before == 1 && after == 0)
        };
        if edge && let Some(s) = self.service(service) {
            s.connected(actor, up);
        }
    }

    /// Adds the connection to a stream's followers.
    fn follow(&self, h: &Arc<ConnHandle>, stream: StreamId) {
        let new = h
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stream);
        if new {
            self.0
                .hub
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .entry(stream)
                .or_default()
                .push(h.clone());
        }
    }

    /// Removes the connection from a stream's followers.
    fn unfollow(&self, h: &ConnHandle, stream: StreamId) {
        h.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&stream);
        let mut hub = self.0.hub.write().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = hub.get_mut(&stream) {
            list.retain(|x| x.id != h.id);
            if list.is_empty() {
                hub.remove(&stream);
            }
        }
    }

    fn dispatch(&self, msg: &BusMsg) {
        match msg {
            BusMsg::Event(e) => {
                let hub = self.0.hub.read().unwrap_or_else(|e| e.into_inner());
                for h in hub.get(&e.stream).into_iter().flatten() {
                    if h.queue.try_send(e.clone()).is_err()
                        && !h.overflowed.swap(true, Ordering::Relaxed)
                    {
                        let _ = h.ctl.send(Ctl::Overflow);
                    }
                }
            }
            BusMsg::SessionEnded {
                actor_id,
                session_pk,
            } => {
                let hub = self.0.hub.read().unwrap_or_else(|e| e.into_inner());
                for h in hub
                    .get(&StreamId::of_actor(*actor_id))
                    .into_iter()
                    .flatten()
                {
                    if h.session_pk == *session_pk {
                        let _ = h.ctl.send(Ctl::SessionEnded);
                    }
                }
                drop(hub);
                self.retained_map().remove(session_pk);
            }
            BusMsg::ServerCertChange {
                cert,
                old_invalid_since,
                root_serial,
            } => {
                let change = Arc::new(RootChange {
                    cert: cert.clone(),
                    old_invalid_since: *old_invalid_since,
                    root_serial: *root_serial,
                });
                self.spread_root_change(change);
            }
            BusMsg::Resync => self.each(|h| {
                let _ = h.ctl.send(Ctl::Resync);
            }),
        }
    }

    /// Op 6 to every connection, spread evenly over the configured time so that clients
    /// do not all come back at once (DIGEST §3.3).
    fn spread_root_change(&self, change: Arc<RootChange>) {
        let targets: Vec<mpsc::UnboundedSender<Ctl>> = {
            let conns = self.0.conns.read().unwrap_or_else(|e| e.into_inner());
            conns.values().map(|h| h.ctl.clone()).collect()
        };
        let spread = Duration::from_millis(self.0.config.gateway.server_change_spread_ms);
        self.0.tasks.spawn_loop(async move {
            let start = tokio::time::Instant::now();
            let n = targets.len().max(1) as u32;
            for (i, t) in targets.into_iter().enumerate() {
                tokio::time::sleep_until(start + spread * i as u32 / n).await;
                let _ = t.send(Ctl::ServerCertChange(change.clone()));
            }
        });
    }

    fn register(&self, actor_id: ActorId, session_pk: SessionPk) -> Registration {
        let (queue, queue_rx) = mpsc::channel(self.0.config.gateway.queue_len.max(1));
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let handle = Arc::new(ConnHandle {
            id: self.0.next_conn.fetch_add(1, Ordering::Relaxed),
            session_pk,
            queue,
            ctl,
            overflowed: Default::default(),
            streams: Mutex::default(),
        });
        self.0
            .conns
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(handle.id, handle.clone());
        self.follow(&handle, StreamId::of_actor(actor_id));
        Registration {
            gw: self.clone(),
            handle,
            queue: queue_rx,
            ctl: ctl_rx,
        }
    }

    fn retained_map(&self) -> std::sync::MutexGuard<'_, HashMap<SessionPk, (Instant, Resumable)>> {
        self.0.retained.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn retain(&self, state: Resumable) {
        self.retained_map()
            .insert(state.session_pk, (Instant::now(), state));
    }

    /// The state of the session's previous connection on this node: a live one is asked to
    /// hand over and stop; a closed one is taken from the retained states.
    async fn take_state(&self, session_pk: SessionPk) -> Option<Resumable> {
        // A closed connection's state first: a second live connection of the same session
        // is not the one being resumed.
        if let Some((_, s)) = self.retained_map().remove(&session_pk) {
            return Some(s);
        }
        let live: Vec<Arc<ConnHandle>> = {
            let conns = self.0.conns.read().unwrap_or_else(|e| e.into_inner());
            conns
                .values()
                .filter(|h| h.session_pk == session_pk)
                .cloned()
                .collect()
        };
        for h in live {
            let (tx, rx) = oneshot::channel();
            if h.ctl.send(Ctl::TakeOver(tx)).is_ok()
                && let Ok(Ok(state)) = tokio::time::timeout(Duration::from_secs(2), rx).await
            {
                return Some(state);
            }
        }
        self.retained_map().remove(&session_pk).map(|(_, s)| s)
    }

    /// The previous connection's state, wherever it is: this node, or the node that held it.
    async fn find_state(&self, session_pk: SessionPk, node: Option<&str>) -> Option<Resumable> {
        if let Some(s) = self.take_state(session_pk).await {
            return Some(s);
        }
        let node = node?;
        let body = self.0.events.bus().handoff(node, session_pk).await?;
        serde_json::from_slice::<Resumable>(&body)
            .ok()
            .filter(|s| s.session_pk == session_pk)
    }

    /// Forgets closed connections older than the resume window.
    pub(crate) fn sweep(&self) {
        let window = Duration::from_secs(self.0.config.gateway.resume_window_s);
        self.retained_map()
            .retain(|_, (at, _)| at.elapsed() < window);
    }

    /// Closes every connection (4000, resumable) and refuses new ones: this node is going
    /// away. Returns once every connection task has ended, or after `grace`.
    pub async fn shut_down(&self, grace: Duration) {
        self.0.closing.store(true, Ordering::SeqCst);
        self.each(|h| {
            let _ = h.ctl.send(Ctl::Shutdown);
        });
        let all = self.0.slots.acquire_many(self.0.max_slots);
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(
                open = self.0.max_slots as usize - self.0.slots.available_permits(),
                "gateway connections still open at shutdown"
            );
        }
    }

    /// Number of identified connections on this node.
    pub fn connections(&self) -> usize {
        self.0.conns.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The streams an actor follows on the given service channels: its own stream (every
    /// event visible) and what each service names, one entry per stream (the first service
    /// naming a stream keeps it).
    pub(crate) async fn follows_on(
        &self,
        actor: &Actor,
        services: impl IntoIterator<Item = &str>,
    ) -> Result<Vec<(Follow, Option<String>)>, ApiError> {
        let mut out = vec![(
            Follow {
                stream: StreamId::of_actor(actor.id),
                since: 0,
                view: Arc::new(SeesAll),
            },
            None,
        )];
        let mut seen = HashSet::from([StreamId::of_actor(actor.id)]);
        for name in services {
            let Some(service) = self.service(name) else {
                continue;
            };
            for f in service.follows(actor).await? {
                if seen.insert(f.stream) {
                    out.push((f, Some(name.to_owned())));
                }
            }
        }
        Ok(out)
    }

    /// Where a session stands in each stream it followed, as recorded.
    async fn stored_positions(&self, pk: SessionPk) -> Result<Positions, fugue_store::Error> {
        Ok(self
            .0
            .store
            .stream_positions(pk.to_store())
            .await?
            .into_iter()
            .map(|(s, p)| (StreamId::from_store(s), from_store(p)))
            .collect())
    }

    /// `GET /events`: what the session missed since its last acknowledged positions, in each
    /// stream it may follow now (on every service channel: a poller cannot subscribe).
    pub async fn poll(&self, authed: &Authed) -> Result<Vec<Envelope>, ApiError> {
        let pk = authed.session.pk;
        let store_err = |e: fugue_store::Error| ApiError::internal(&e);
        let stored = self.stored_positions(pk).await.map_err(store_err)?;
        let names: Vec<String> = self
            .0
            .services
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        let follows = self
            .follows_on(&authed.actor, names.iter().map(String::as_str))
            .await?;
        let mut out = Vec::new();
        let mut advanced = Vec::new();
        for (f, _) in follows {
            let from = match stored.get(&f.stream) {
                Some(p) => *p,
                None => self.0.events.head(f.stream).await?,
            }
            .max(f.since.saturating_sub(1));
            let rows = self
                .0
                .events
                .newest_after(f.stream, from, POLL_LIMIT)
                .await?;
            match rows.last() {
                Some(last) => advanced.push((f.stream.to_store(), to_store(last.seq))),
                // A stream polled for the first time starts here.
                None if !stored.contains_key(&f.stream) => {
                    advanced.push((f.stream.to_store(), to_store(from)));
                }
                None => {}
            }
            out.extend(
                rows.iter()
                    .filter(|e| {
                        e.for_session(authed.actor.id, pk)
                            && e.channel().is_none_or(|c| f.view.sees(c))
                    })
                    .map(|e| e.envelope(None)),
            );
        }
        self.0
            .store
            .advance_positions(pk.to_store(), &advanced)
            .await
            .map_err(store_err)?;
        Ok(out)
    }
}

/// A connection's place in the hub; leaving it (drop) removes the connection.
struct Registration {
    gw: Gateway,
    handle: Arc<ConnHandle>,
    queue: mpsc::Receiver<Arc<Event>>,
    ctl: mpsc::UnboundedReceiver<Ctl>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let streams: Vec<StreamId> = self
            .handle
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        for stream in streams {
            self.gw.unfollow(&self.handle, stream);
        }
        self.gw
            .0
            .conns
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.handle.id);
    }
}

#[cfg(test)]
mod tests {
    use super::{Positions, Resumable};
    use crate::ids::StreamId;

    const A: StreamId = StreamId::from_store(1);
    const G: StreamId = StreamId::from_store(2);

    fn state() -> Resumable {
        Resumable {
            session_pk: crate::ids::SessionPk::from_store(1),
            base: vec![(A, 10), (G, 40)],
            sent: vec![(2, A, 11), (3, G, 41), (4, A, 12), (6, A, 13)],
            evicted_s: None,
            evicted: vec![],
            last_s: 7,
            services: vec![],
            root_serial: 1,
            root_changes: vec![],
        }
    }

    fn at(pairs: &[(StreamId, u64)]) -> Option<Positions> {
        Some(pairs.iter().copied().collect())
    }

    #[test]
    fn positions_follow_the_last_event_frame_of_each_stream_at_or_before_s() {
        let s = state();
        assert_eq!(s.positions_at(0), at(&[(A, 10), (G, 40)]));
        assert_eq!(s.positions_at(2), at(&[(A, 11), (G, 40)]));
        assert_eq!(s.positions_at(3), at(&[(A, 11), (G, 41)]));
        assert_eq!(s.positions_at(5), at(&[(A, 12), (G, 41)]));
        assert_eq!(s.positions_at(7), at(&[(A, 13), (G, 41)]));
        assert_eq!(s.positions_at(8), None, "never sent");
    }

    #[test]
    fn positions_before_the_kept_frames_are_unknown() {
        let mut s = state();
        s.evicted_s = Some(3);
        s.evicted = vec![(A, 11), (G, 41)];
        s.sent.drain(..2);
        assert_eq!(s.positions_at(2), None);
        assert_eq!(s.positions_at(3), at(&[(A, 11), (G, 41)]));
        assert_eq!(s.positions_at(4), at(&[(A, 12), (G, 41)]));
    }

    #[test]
    fn a_stream_followed_later_starts_at_its_base() {
        let mut s = state();
        s.base.push((StreamId::from_store(3), 7));
        assert_eq!(s.positions_at(0).unwrap()[&StreamId::from_store(3)], 7);
    }
}
