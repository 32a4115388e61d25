//! Server configuration. The `fugue` binary reads files, flags and environment and hands a
//! finished [`Config`] to the library, which reads no file and no environment variable.

use serde::{Deserialize, Serialize};

use fugue_proto::DomainName;
pub use ipnet::IpNet;

/// Who may create an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    Open,
    Invite,
    Closed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest JSON request body, bytes (413 beyond).
    pub json_body_bytes: usize,
    /// Longest local name a new account may choose.
    pub local_name_max: usize,
    /// Shortest accepted password.
    pub password_min: usize,
    /// Largest encrypted private key element, bytes.
    pub key_material_bytes: usize,
    /// Key material slots per actor.
    pub key_material_slots: usize,
    /// Open TCP connections at most, gateway included (503 `OVERLOADED` beyond).
    pub max_connections: usize,
    /// Time a client has to send a request head, also between requests on a kept-alive
    /// connection, seconds.
    pub header_timeout_s: u64,
    /// Time a client has to send a request body, seconds.
    pub body_timeout_s: u64,
    /// Live sessions per actor at most: every session has a certificate, and all of them
    /// are in the public `GET /idcert/actor/{fid}` answer (409 beyond; end one first).
    pub max_sessions_per_actor: usize,
    /// How long `GET /data` waits for an archive being built before it answers 204 with
    /// `Retry-After`, milliseconds.
    pub export_wait_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            json_body_bytes: 1024 * 1024,
            local_name_max: 32,
            password_min: 8,
            key_material_bytes: 10_000,
            key_material_slots: 64,
            max_connections: 20_000,
            header_timeout_s: 10,
            body_timeout_s: 30,
            max_sessions_per_actor: 100,
            export_wait_ms: 2000,
        }
    }
}

/// Requests per minute and client address (429 with `Retry-After` beyond).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    pub login_per_minute: u32,
    /// Failed logins per account name and client address (IPv4 /32, IPv6 /64) per minute.
    /// Only failures count, so a stranger elsewhere cannot lock a person out.
    pub failed_logins_per_minute: u32,
    pub register_per_minute: u32,
    pub sensitive_per_minute: u32,
    /// Wrong sensitive-action solutions per actor within `failure_window_s` before 429.
    pub max_failed_solutions: u32,
    pub failure_window_s: u64,
    /// Chat messages per actor and channel per 5 seconds (chat.md: 5; 0 = no limit).
    pub chat_messages_per_5s: u32,
    /// Channels created per actor and guild per 5 minutes (chat.md: 5).
    pub chat_channels_per_5min: u32,
    /// Guild operations (create, change, delete, transfer) per actor per minute (chat.md: 5).
    pub chat_guild_ops_per_minute: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            login_per_minute: 10,
            failed_logins_per_minute: 10,
            register_per_minute: 5,
            sensitive_per_minute: 20,
            max_failed_solutions: 10,
            failure_window_s: 600,
            chat_messages_per_5s: 5,
            chat_channels_per_5min: 5,
            chat_guild_ops_per_minute: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Certs {
    /// Lifetime of actor ID-Certs, days (at most 60, OP-44).
    pub actor_validity_days: u64,
    /// Lifetime of a new server root cert, days.
    pub server_validity_days: u64,
    /// Length of the signed cache window, seconds (1–12 h, OP-13).
    pub cache_ttl_s: u64,
}

impl Default for Certs {
    fn default() -> Self {
        Self {
            actor_validity_days: 30,
            server_validity_days: 365,
            cache_ttl_s: 6 * 3600,
        }
    }
}

/// Argon2id cost. The defaults are OWASP's recommendation (19 MiB, 2 passes, 1 lane).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordHashing {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for PasswordHashing {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// The WebSocket gateway and the event log (docs/gateway.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gateway {
    /// Heartbeat interval announced in Hello, milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Payloads a client may send within `rate_window_s` (4008 beyond).
    pub client_payloads_per_window: u32,
    pub rate_window_s: u64,
    /// Frames queued for one connection before it counts as too slow (4000).
    pub queue_len: usize,
    /// Largest frame a client may send, bytes.
    pub max_frame_bytes: usize,
    /// Events are kept this long for resuming and polling.
    pub event_retention_s: u64,
    /// Most events one Resume replays (4010 beyond).
    pub max_replay_events: u64,
    /// How long a node keeps a closed connection's state for an exact resume.
    pub resume_window_s: u64,
    /// Op 6 is spread over this many milliseconds across connections.
    pub server_change_spread_ms: u64,
    /// Gateway connections at most on this node (closed with 4000 beyond, so clients
    /// reconnect elsewhere or later).
    pub max_connections: usize,
    /// Time a new connection has to identify or resume, milliseconds (at most the
    /// heartbeat interval).
    pub identify_timeout_ms: u64,
}

impl Default for Gateway {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 45_000,
            client_payloads_per_window: 120,
            rate_window_s: 60,
            queue_len: 1024,
            max_frame_bytes: 64 * 1024,
            event_retention_s: 7 * 24 * 3600,
            max_replay_events: 1000,
            resume_window_s: 600,
            server_change_spread_ms: 10_000,
            max_connections: 16_384,
            identify_timeout_ms: 10_000,
        }
    }
}

/// Talking to other home servers (DIGEST §4.8, §5.4, §5.6).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Federation {
    /// Lifetime of a key trial, seconds.
    pub key_trial_lifetime_s: u64,
    /// Timeout of one request to another server, milliseconds.
    pub request_timeout_ms: u64,
    /// Largest certificate or discovery answer accepted from another server, bytes.
    pub max_response_bytes: usize,
    /// Requests in flight to one other server at most.
    pub max_in_flight_per_server: usize,
    /// Development and tests only: domain → base URL (plain HTTP allowed), e.g.
    /// `"alpha.test" = "http://127.0.0.1:8081"`. Everything else is reached over HTTPS.
    pub resolve: std::collections::BTreeMap<String, String>,
    /// Tests only: host name → addresses, answered instead of DNS but filtered like a DNS
    /// answer (only public addresses), so tests can prove that filter. Not for operators:
    /// `resolve` is the development map.
    pub hosts: std::collections::BTreeMap<String, Vec<std::net::IpAddr>>,
}

impl Default for Federation {
    fn default() -> Self {
        Self {
            key_trial_lifetime_s: 300,
            request_timeout_ms: 10_000,
            max_response_bytes: 1024 * 1024,
            max_in_flight_per_server: 8,
            resolve: Default::default(),
            hosts: Default::default(),
        }
    }
}

/// Uploaded resources (RawR, core §7.3.1).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Media {
    /// Directory of the resource files (an `objects/` and a `tmp/` below it). The binary
    /// sets `<data_dir>/media`; without one the resource routes answer 404, as core §7.3.1
    /// says a server without RawR does.
    pub dir: Option<std::path::PathBuf>,
    /// Largest single upload, bytes (413 beyond).
    pub max_upload_bytes: u64,
    /// Bytes of resources one actor may store (413 with `remainingStorageBytes` beyond).
    pub quota_bytes: u64,
    /// An S3-compatible object store (Garage, MinIO, AWS S3, …) for the bytes instead of
    /// `dir`: what several nodes need, since they share no disk. Its URL, e.g.
    /// `http://127.0.0.1:3900`; with it `s3_bucket`, `s3_access_key` and `s3_secret_key`
    /// are required.
    pub s3_endpoint: Option<String>,
    pub s3_bucket: Option<String>,
    /// The store's region (Garage's default is `garage`).
    pub s3_region: String,
    pub s3_access_key: Option<String>,
    pub s3_secret_key: Option<String>,
    /// Buckets addressed as `<endpoint>/<bucket>/…` (Garage, MinIO) rather than
    /// `<bucket>.<endpoint host>/…`.
    pub s3_path_style: bool,
}

impl Default for Media {
    fn default() -> Self {
        Self {
            dir: None,
            max_upload_bytes: 256 * 1024 * 1024,
            quota_bytes: 2 * 1024 * 1024 * 1024,
            s3_endpoint: None,
            s3_bucket: None,
            s3_region: "us-east-1".into(),
            s3_access_key: None,
            s3_secret_key: None,
            s3_path_style: true,
        }
    }
}

/// An S3-compatible bucket, as [`Media::s3`] checks it.
#[derive(Debug, Clone)]
pub struct S3 {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    pub path_style: bool,
}

impl Media {
    /// The bucket the `s3_*` settings name, if `s3_endpoint` is set; an error names what
    /// is missing.
    pub fn s3(&self) -> std::io::Result<Option<S3>> {
        let Some(endpoint) = &self.s3_endpoint else {
            return Ok(None);
        };
        let need = |value: &Option<String>, name: &str| {
            value.clone().filter(|v| !v.is_empty()).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("media.s3_endpoint is set, so media.{name} is required"),
                )
            })
        };
        Ok(Some(S3 {
            endpoint: endpoint.clone(),
            bucket: need(&self.s3_bucket, "s3_bucket")?,
            region: self.s3_region.clone(),
            access_key: need(&self.s3_access_key, "s3_access_key")?,
            secret_key: need(&self.s3_secret_key, "s3_secret_key")?,
            path_style: self.s3_path_style,
        }))
    }
}

/// Several nodes on one database.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// NATS server of the event bus, e.g. `nats://127.0.0.1:4222`; unset = one node. A user
    /// and password may be in it (`nats://fugue:secret@10.0.0.5:4222`); `tls://` requires TLS.
    pub nats_url: Option<String>,
    /// Subject prefix, so that several clusters can share one NATS server.
    pub subject_prefix: String,
    /// How this node proves itself to NATS, besides a user and password in the URL.
    pub nats_auth: NatsAuth,
    /// TLS towards NATS; `None`: as the URL and the server say.
    pub nats_tls: Option<NatsTls>,
}

impl Default for Cluster {
    fn default() -> Self {
        Self {
            nats_url: None,
            subject_prefix: "fugue".into(),
            nats_auth: NatsAuth::None,
            nats_tls: None,
        }
    }
}

/// NATS credentials. The binary reads the files; the library gets their contents.
#[derive(Clone, Default)]
pub enum NatsAuth {
    /// Nothing beyond what the URL carries.
    #[default]
    None,
    /// `nats-server --user U --pass P` (normally written in the URL).
    UserPassword(String, String),
    /// `nats-server --auth TOKEN`.
    Token(String),
    /// An NKey user seed (`SU…`).
    NKeySeed(String),
    /// The contents of a `.creds` file (a user JWT and its NKey seed).
    Credentials(String),
}

impl std::fmt::Debug for NatsAuth {
    /// Names the kind, never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NatsAuth::None => "None",
            NatsAuth::UserPassword(..) => "UserPassword(..)",
            NatsAuth::Token(_) => "Token(..)",
            NatsAuth::NKeySeed(_) => "NKeySeed(..)",
            NatsAuth::Credentials(_) => "Credentials(..)",
        })
    }
}

/// TLS towards NATS: always required when set.
#[derive(Clone, Default)]
pub struct NatsTls {
    /// PEM certificates of the CAs that may sign the NATS server's certificate; empty: the
    /// system's roots.
    pub ca_pem: Option<String>,
    /// PEM certificate chain and private key of this node, for servers that verify clients.
    pub client_cert_pem: Option<String>,
    pub client_key_pem: Option<String>,
}

impl std::fmt::Debug for NatsTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTls")
            .field("ca", &self.ca_pem.is_some())
            .field("client_cert", &self.client_cert_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// Everything the server library needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    pub domain: DomainName,
    /// Base URL clients are told about (`.well-known`), without trailing slash.
    pub public_url: String,
    pub registration: Registration,
    /// If set, registration requires `tosConsent: true`.
    pub tos_url: Option<String>,
    pub limits: Limits,
    pub rate_limits: RateLimits,
    pub certs: Certs,
    pub password_hashing: PasswordHashing,
    pub gateway: Gateway,
    pub cluster: Cluster,
    pub federation: Federation,
    pub media: Media,
    /// Reverse proxies whose `X-Forwarded-For`/`Forwarded` headers name the client
    /// (CIDRs); from any other peer those headers are ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// Where "now" comes from; the system clock outside tests.
    pub clock: crate::Clock,
}

impl Config {
    /// Defaults for `domain`: invite-only unless the domain is `localhost` (quick start). The
    /// binary also makes it invite-only when it listens on a non-loopback address.
    pub fn new(domain: DomainName, public_url: String) -> Self {
        let registration = if domain.as_str() == "localhost" {
            Registration::Open
        } else {
            Registration::Invite
        };
        Self {
            domain,
            public_url: public_url.trim_end_matches('/').to_owned(),
            registration,
            tos_url: None,
            limits: Limits::default(),
            rate_limits: RateLimits::default(),
            certs: Certs::default(),
            password_hashing: PasswordHashing::default(),
            gateway: Gateway::default(),
            cluster: Cluster::default(),
            federation: Federation::default(),
            media: Media::default(),
            trusted_proxies: Vec::new(),
            clock: crate::Clock::system(),
        }
    }
}
