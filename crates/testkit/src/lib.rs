#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "dev-only test kit: a failed setup should abort the test loudly"
)]
//! Test kit (dev-only): a real Fugue server on `127.0.0.1:0` with a fresh database, and
//! actors driven through the real client.
//!
//! The database is a temporary SQLite file, or a fresh PostgreSQL schema when
//! `TEST_DATABASE_URL` is set, so the same tests run on both engines.
//!
//! Also the helpers that the server's tests and the binary's tests share: problem
//! assertions, a federated pair of servers, logins, TOTP codes ([`totp`]) and fake servers
//! ([`fakes`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use ed25519_dalek::SigningKey;
use rand_core::{OsRng, RngCore};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use fugue_client::{Client, Error, IdentityKey, Session};
use fugue_proto::{DomainName, ErrorCode, FederationId, SessionId};
use fugue_server::{
    Clock, Config, Events, Gateway, Identity, KeySink, Registration, Server, Sessions,
};
use fugue_store::{SqliteSync, Store};

pub mod fakes;
pub mod garage;
pub mod totp;
pub mod ws;

/// A loopback port that was free a moment ago (for processes a test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Password every test actor gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// Keeps a rotated server key in memory.
#[derive(Default)]
pub struct MemoryKeySink(pub Mutex<Option<SigningKey>>);

impl KeySink for MemoryKeySink {
    fn persist(&self, key: &SigningKey) -> std::io::Result<()> {
        *self
            .0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))? = Some(key.clone());
        Ok(())
    }
}

/// A clock a test moves: the system clock plus an offset in seconds, shared by every
/// [`Clock`] made from it (so several servers can move together).
#[derive(Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A server clock that reads this one.
    pub fn clock(&self) -> Clock {
        let offset = self.0.clone();
        Clock::from_fn(move || {
            fugue_server::clock::unix_now().saturating_add_signed(offset.load(Ordering::SeqCst))
        })
    }

    /// Moves the clock `secs` ahead of (or, negative, behind) the system clock.
    pub fn set_offset(&self, secs: i64) {
        self.0.store(secs, Ordering::SeqCst);
    }

    /// Moves the clock `secs` further ahead.
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

/// Opens a fresh store: PostgreSQL (new schema) if `TEST_DATABASE_URL` is set, else SQLite
/// in `dir`.
pub async fn fresh_store(dir: &std::path::Path) -> Store {
    fresh_shared_db(dir).await.open().await
}

/// The NATS server for multi-node tests (`TEST_NATS_URL`, default the local one).
pub fn nats_url() -> String {
    std::env::var("TEST_NATS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into())
}

/// A database several nodes can open: the SQLite store itself (shared in-process), or the
/// PostgreSQL URL and schema each node connects to on its own.
#[derive(Clone)]
pub enum SharedDb {
    Sqlite(Store),
    Postgres { url: String, schema: String },
}

impl SharedDb {
    pub async fn open(&self) -> Store {
        match self {
            SharedDb::Sqlite(store) => store.clone(),
            SharedDb::Postgres { url, schema } => Store::open_postgres(url, Some(schema), 4)
                .await
                .expect("PostgreSQL test database"),
        }
    }
}

/// A fresh database for a cluster of test nodes.
pub async fn fresh_shared_db(dir: &std::path::Path) -> SharedDb {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => SharedDb::Postgres {
            url,
            schema: format!("t_{:016x}", OsRng.next_u64()),
        },
        _ => SharedDb::Sqlite(
            Store::open_sqlite(&dir.join("fugue.db"), SqliteSync::Normal)
                .await
                .expect("SQLite test database"),
        ),
    }
}

/// Configuration for tests: open registration, cheap Argon2, generous rate limits.
pub fn test_config(addr: SocketAddr) -> Config {
    let domain: DomainName = "localhost".parse().expect("valid domain");
    let mut config = Config::new(domain, format!("http://{addr}"));
    config.registration = Registration::Open;
    config.password_hashing.memory_kib = 256;
    config.password_hashing.iterations = 1;
    config.rate_limits.login_per_minute = 100_000;
    config.rate_limits.failed_logins_per_minute = 100_000;
    config.rate_limits.register_per_minute = 100_000;
    config.rate_limits.sensitive_per_minute = 100_000;
    config.rate_limits.chat_messages_per_5s = 0;
    config.rate_limits.chat_channels_per_5min = 0;
    config.rate_limits.chat_guild_ops_per_minute = 0;
    config
}

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub url: String,
    pub store: Store,
    pub domain: DomainName,
    /// Where tests publish events, as a service would.
    pub events: Events,
    pub gateway: Gateway,
    pub identity: Identity,
    /// Accounts and sessions, for administration as `fugue admin account` does it.
    pub sessions: Sessions,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    _dirs: Vec<tempfile::TempDir>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `tweak` adjusted the test configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = fresh_store(dir.path()).await;
        let key = SigningKey::generate(&mut OsRng);
        Self::start_node(store, key, dir, tweak).await
    }

    /// Starts a server whose clock the test moves with the returned [`ManualClock`].
    pub async fn start_with_clock() -> (Self, ManualClock) {
        let manual = ManualClock::default();
        let clock = manual.clock();
        (Self::start_with(move |c| c.clock = clock).await, manual)
    }

    /// Starts `n` nodes sharing one database and server key, connected through NATS with a
    /// subject prefix of their own.
    pub async fn start_cluster(n: usize, tweak: impl Fn(&mut Config)) -> Vec<Self> {
        let prefix = format!("fugue-test-{:016x}", OsRng.next_u64());
        let key = SigningKey::generate(&mut OsRng);
        let dir = tempfile::tempdir().expect("temp dir");
        let db = fresh_shared_db(dir.path()).await;
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            let node_dir = tempfile::tempdir().expect("temp dir");
            let store = db.open().await;
            let prefix = prefix.clone();
            let node = Self::start_node(store, key.clone(), node_dir, |c| {
                c.cluster.nats_url = Some(nats_url());
                c.cluster.subject_prefix = prefix;
                tweak(c);
            })
            .await;
            nodes.push(node);
        }
        // The SQLite file lives in `dir`; keep it as long as the first node.
        if let Some(first) = nodes.first_mut() {
            first._dirs.push(dir);
        }
        nodes
    }

    async fn start_node(
        store: Store,
        key: SigningKey,
        dir: tempfile::TempDir,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let mut config = test_config(addr);
        // Each node its own media directory, as each machine has its own disk.
        config.media.dir = Some(dir.path().join("media"));
        tweak(&mut config);
        let domain = config.domain.clone();
        let server = Server::new(
            config,
            store.clone(),
            key,
            Arc::new(MemoryKeySink::default()),
        )
        .await
        .expect("server starts");
        let events = server.events().clone();
        let gateway = server.gateway().clone();
        let identity = server.identity().clone();
        let sessions = server.sessions().clone();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server.serve(listener, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            url: format!("http://{addr}"),
            store,
            domain,
            events,
            gateway,
            identity,
            sessions,
            shutdown: Some(tx),
            task: Some(task),
            _dirs: vec![dir],
        }
    }

    /// The gateway's WebSocket URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.addr, fugue_proto::gateway::PATH)
    }

    /// Publishes a core-namespace test event to every session of `local_name` (as a service
    /// would); returns its stream position.
    pub async fn publish(&self, local_name: &str, op: u16, d: serde_json::Value) -> u64 {
        self.publish_in(local_name, fugue_proto::gateway::CORE, op, d, None)
            .await
    }

    /// Publishes an event in namespace `n`, optionally with a collapse key.
    pub async fn publish_in(
        &self,
        local_name: &str,
        n: &str,
        op: u16,
        d: serde_json::Value,
        collapse_key: Option<&str>,
    ) -> u64 {
        let actor = self
            .store
            .actor_by_name(local_name)
            .await
            .expect("store")
            .expect("actor exists");
        self.events
            .publish({
                let p = fugue_server::Publish::to_actor(
                    fugue_server::ids::ActorId::from_store(actor.id),
                    n,
                    op,
                    d,
                );
                match collapse_key {
                    Some(k) => p.collapse(k),
                    None => p,
                }
            })
            .await
            .expect("publish")
            .seq
    }

    /// Where this server keeps its resource files.
    pub fn media_dir(&self) -> std::path::PathBuf {
        self._dirs[0].path().join("media")
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url).expect("client")
    }

    pub fn fid(&self, local_name: &str) -> FederationId {
        format!("{local_name}@{}", self.domain)
            .parse()
            .expect("valid fid")
    }

    /// Registers `local_name` with [`PASSWORD`] and logs in as session `main`.
    pub async fn register(&self, local_name: &str) -> Session {
        self.client()
            .register(local_name, PASSWORD, None, None)
            .await
            .expect("register");
        self.login(local_name, "main").await.expect("login")
    }

    /// Logs in as a new session with a fresh key.
    pub async fn login(&self, local_name: &str, session_id: &str) -> fugue_client::Result<Session> {
        let sid: SessionId = session_id.parse().expect("valid session id");
        let fid = self.fid(local_name);
        self.client()
            .login(
                local_name,
                PASSWORD,
                None,
                &IdentityKey::generate(),
                &fid,
                &sid,
            )
            .await
    }

    /// `GET` of a path (with query) on this server, without a token: for tests that check raw
    /// responses.
    pub async fn get(&self, path_and_query: &str) -> reqwest::Response {
        self.client()
            .raw()
            .get(format!("{}{path_and_query}", self.url))
            .send()
            .await
            .expect("GET")
    }

    /// The server's current root certificate, parsed (not verified).
    pub async fn root_cert(&self) -> fugue_proto::certs::IdCert {
        let cacheable = self.client().server_cert(None).await.expect("server cert");
        fugue_proto::certs::IdCert::parse(cacheable.id_cert_pem.as_bytes()).expect("root parses")
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Asserts that `result` failed with `status` and problem code `code`.
#[track_caller]
pub fn assert_problem<T: std::fmt::Debug>(result: Result<T, Error>, status: u16, code: ErrorCode) {
    match result {
        Err(e) => {
            assert_eq!(e.status(), Some(status), "unexpected status: {e}");
            assert_eq!(e.code(), Some(code), "unexpected code: {e}");
        }
        Ok(v) => panic!("expected {status} {code:?}, got Ok({v:?})"),
    }
}

/// alpha.test and beta.test; beta resolves alpha.test to alpha.
pub async fn federated_pair() -> (TestServer, TestServer) {
    let alpha = TestServer::start_with(|c| c.domain = "alpha.test".parse().unwrap()).await;
    let alpha_url = alpha.url.clone();
    let beta = TestServer::start_with(move |c| {
        c.domain = "beta.test".parse().unwrap();
        c.federation.resolve.insert("alpha.test".into(), alpha_url);
    })
    .await;
    (alpha, beta)
}

/// A loopback address that forwards connections to a server started later: for servers
/// that must resolve each other, one of which starts first.
pub struct Forward {
    pub url: String,
    listener: tokio::net::TcpListener,
}

impl Forward {
    pub async fn bind() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        Self { url, listener }
    }

    /// Forwards every connection to the server at `target_url` from now on.
    pub fn to(self, target_url: &str) {
        let target = target_url.trim_start_matches("http://").to_owned();
        let listener = self.listener;
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
    }
}

/// alpha.test and beta.test resolving each other (a DM's answer goes the other way).
pub async fn two_way_pair() -> (TestServer, TestServer) {
    let (alpha, beta, _) = servers(&["alpha.test", "beta.test"]).await;
    (alpha, beta)
}

/// alpha.test, beta.test and gamma.test, each resolving the others.
pub async fn federated_trio() -> (TestServer, TestServer, TestServer) {
    let (alpha, beta, gamma) = servers(&["alpha.test", "beta.test", "gamma.test"]).await;
    (alpha, beta, gamma.unwrap())
}

/// Two or three servers of `domains`, each resolving the others through forwarders bound
/// before any starts.
async fn servers(domains: &[&str]) -> (TestServer, TestServer, Option<TestServer>) {
    let mut forwards = Vec::new();
    for _ in domains {
        forwards.push(Forward::bind().await);
    }
    let urls: Vec<String> = forwards.iter().map(|f| f.url.clone()).collect();
    let mut started = Vec::new();
    for (i, domain) in domains.iter().enumerate() {
        let (domain, urls) = (domain.to_string(), urls.clone());
        let others: Vec<(String, String)> = domains
            .iter()
            .zip(urls)
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, (d, u))| (d.to_string(), u))
            .collect();
        started.push(
            TestServer::start_with(move |c| {
                c.domain = domain.parse().unwrap();
                c.federation.resolve.extend(others);
            })
            .await,
        );
    }
    for (forward, server) in forwards.into_iter().zip(&started) {
        forward.to(&server.url);
    }
    let mut started = started.into_iter();
    let (a, b) = (started.next().unwrap(), started.next().unwrap());
    (a, b, started.next())
}

/// Logs in `local_name` with `password` (and `totp`) as a new session with a fresh key.
pub async fn login_with(
    server: &TestServer,
    local_name: &str,
    password: &str,
    totp: Option<&str>,
    session_id: &str,
) -> fugue_client::Result<fugue_client::Session> {
    let sid: SessionId = session_id.parse().unwrap();
    let fid: FederationId = format!("{}@{}", local_name.to_ascii_lowercase(), server.domain)
        .parse()
        .unwrap();
    server
        .client()
        .login(
            local_name,
            password,
            totp,
            &IdentityKey::generate(),
            &fid,
            &sid,
        )
        .await
}
