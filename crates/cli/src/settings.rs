//! Where `fugue serve` gets its settings: flags, `FUGUE_*` environment variables, a TOML
//! file, defaults — in that order of precedence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use fugue_server::config::{
    Certs, Cluster, Federation, Gateway, Limits, Media, NatsAuth, NatsTls, PasswordHashing,
    RateLimits,
};
use fugue_server::{Config, Registration};

/// The TOML configuration file. Every key is optional.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileSettings {
    pub listen: Option<SocketAddr>,
    pub domain: Option<String>,
    pub public_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub registration: Option<Registration>,
    pub tos_url: Option<String>,
    /// `"full"` (default: fsync every commit) or `"normal"` (survives process crashes only).
    pub sqlite_synchronous: Option<String>,
    pub limits: Limits,
    pub rate_limits: RateLimits,
    pub certs: Certs,
    pub password_hashing: PasswordHashing,
    pub gateway: Gateway,
    pub cluster: ClusterSettings,
    pub federation: Federation,
    pub media: Media,
    /// CIDRs of reverse proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<fugue_server::config::IpNet>,
}

/// `[cluster]` as written: files where the library takes their contents (it reads no file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    pub nats_url: Option<String>,
    pub subject_prefix: String,
    /// `nats-server --auth TOKEN`.
    pub nats_token: Option<String>,
    /// A file holding an NKey user seed (`SU…`).
    pub nats_nkey_seed_file: Option<PathBuf>,
    /// A `.creds` file (user JWT and NKey seed).
    pub nats_creds_file: Option<PathBuf>,
    /// PEM CA certificates for the NATS server's certificate (default: the system's roots).
    pub nats_tls_ca_file: Option<PathBuf>,
    /// PEM certificate and key of this node, for a NATS server that verifies clients.
    pub nats_tls_cert_file: Option<PathBuf>,
    pub nats_tls_key_file: Option<PathBuf>,
    /// Refuse to talk to NATS without TLS (implied by any TLS file and by `tls://`).
    pub nats_tls_required: bool,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            nats_url: None,
            subject_prefix: Cluster::default().subject_prefix,
            nats_token: None,
            nats_nkey_seed_file: None,
            nats_creds_file: None,
            nats_tls_ca_file: None,
            nats_tls_cert_file: None,
            nats_tls_key_file: None,
            nats_tls_required: false,
        }
    }
}

impl ClusterSettings {
    /// Reads the files named here into what the library needs.
    fn into_cluster(self) -> Result<Cluster, String> {
        let auth = match (
            self.nats_token,
            &self.nats_nkey_seed_file,
            &self.nats_creds_file,
        ) {
            (None, None, None) => NatsAuth::None,
            (Some(token), None, None) => NatsAuth::Token(token),
            (None, Some(path), None) => NatsAuth::NKeySeed(read_secret(path)?.trim().to_owned()),
            (None, None, Some(path)) => NatsAuth::Credentials(read_secret(path)?),
            _ => {
                return Err(
                    "cluster: give at most one of nats_token, nats_nkey_seed_file and nats_creds_file"
                        .into(),
                );
            }
        };
        let read = |path: &Option<PathBuf>| path.as_deref().map(read_text).transpose();
        let tls = NatsTls {
            ca_pem: read(&self.nats_tls_ca_file)?,
            client_cert_pem: read(&self.nats_tls_cert_file)?,
            client_key_pem: self
                .nats_tls_key_file
                .as_deref()
                .map(read_secret)
                .transpose()?,
        };
        if tls.client_cert_pem.is_some() != tls.client_key_pem.is_some() {
            return Err("cluster: nats_tls_cert_file and nats_tls_key_file go together".into());
        }
        if tls.client_cert_pem.is_some() && tls.ca_pem.is_none() {
            return Err("cluster: a NATS client certificate needs nats_tls_ca_file".into());
        }
        let wants_tls =
            self.nats_tls_required || tls.ca_pem.is_some() || tls.client_cert_pem.is_some();
        Ok(Cluster {
            nats_url: self.nats_url,
            subject_prefix: self.subject_prefix,
            nats_auth: auth,
            nats_tls: wants_tls.then_some(tls),
        })
    }
}

fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A credential file: refused when every local user can read it.
fn read_secret(path: &Path) -> Result<String, String> {
    refuse_world_readable(path)?;
    read_text(path)
}

fn refuse_world_readable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o004 != 0 {
        return Err(format!(
            "{} is readable by every user (mode {mode:o}); run `chmod o-r {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

/// Command-line overrides (each also read from its `FUGUE_*` variable by clap).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on, IPv4 or IPv6 (default 127.0.0.1:3000).
    #[arg(long, global = true, env = "FUGUE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The domain this home server is authoritative for (default localhost).
    #[arg(long, global = true, env = "FUGUE_DOMAIN")]
    pub domain: Option<String>,
    /// Base URL clients are told about (default derived from --listen, or https://DOMAIN).
    #[arg(long, global = true, env = "FUGUE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Directory for the SQLite database and the server key (default ./fugue-data).
    #[arg(long, global = true, env = "FUGUE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML configuration file.
    #[arg(long, global = true, env = "FUGUE_CONFIG")]
    pub config: Option<PathBuf>,
    /// `postgres://…` to use PostgreSQL instead of the embedded SQLite database.
    #[arg(long, global = true, env = "FUGUE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// open | invite | closed (default: open on localhost listening on loopback, invite
    /// elsewhere).
    #[arg(long, global = true, env = "FUGUE_REGISTRATION", value_parser = parse_registration)]
    pub registration: Option<Registration>,
    /// `nats://…` of the event bus shared by several nodes (default: one node, no bus).
    #[arg(long, global = true, env = "FUGUE_NATS_URL")]
    pub nats_url: Option<String>,
}

fn parse_registration(s: &str) -> Result<Registration, String> {
    match s {
        "open" => Ok(Registration::Open),
        "invite" => Ok(Registration::Invite),
        "closed" => Ok(Registration::Closed),
        other => Err(format!("expected open, invite or closed, not {other:?}")),
    }
}

/// Which database to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite { path: PathBuf, full_sync: bool },
    Postgres(String),
}

/// The database a URL names: `postgres://…` (or `postgresql://…`), or `sqlite:PATH`.
pub fn database(url: &str, full_sync: bool) -> Result<Database, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Database::Postgres(url.to_owned()));
    }
    match url.strip_prefix("sqlite:") {
        Some(path) => Ok(Database::Sqlite {
            path: PathBuf::from(path.trim_start_matches("//")),
            full_sync,
        }),
        None => Err(format!(
            "database URL must start with postgres:// or sqlite:, got {url:?}"
        )),
    }
}

/// Everything `serve` and the admin commands need.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database: Database,
    pub config: Config,
}

pub fn load(args: &ServeArgs) -> Result<Settings, String> {
    let file = match &args.config {
        Some(path) => read_file(path)?,
        None => FileSettings::default(),
    };
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3000)));
    let domain_text = args
        .domain
        .clone()
        .or(file.domain.clone())
        .unwrap_or_else(|| "localhost".into());
    let domain: fugue_proto::DomainName = domain_text
        .parse()
        .map_err(|e| format!("domain {domain_text:?}: {e}"))?;
    let public_url = args
        .public_url
        .clone()
        .or(file.public_url.clone())
        .unwrap_or_else(|| {
            if domain.as_str() == "localhost" {
                format!("http://{listen}")
            } else {
                format!("https://{domain}")
            }
        });
    if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
        return Err(format!(
            "public URL {public_url:?} must start with http:// or https://"
        ));
    }
    let data_dir = args
        .data_dir
        .clone()
        .or(file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("fugue-data"));
    let full_sync = match file.sqlite_synchronous.as_deref() {
        None | Some("full") => true,
        Some("normal") => false,
        Some(other) => {
            return Err(format!(
                "sqlite_synchronous must be \"full\" or \"normal\", not {other:?}"
            ));
        }
    };
    let database = match args.database_url.clone().or(file.database_url.clone()) {
        Some(url) => database(&url, full_sync)?,
        None => Database::Sqlite {
            path: data_dir.join("fugue.db"),
            full_sync,
        },
    };
    let mut config = Config::new(domain, public_url);
    // Open registration is a quick start on one's own machine: on localhost *and* reachable
    // from this machine only. `--listen 0.0.0.0:3000` alone is invite-only.
    if !listen.ip().is_loopback() {
        config.registration = Registration::Invite;
    }
    if let Some(r) = args.registration.or(file.registration) {
        config.registration = r;
    }
    config.tos_url = file.tos_url;
    config.limits = file.limits;
    config.rate_limits = file.rate_limits;
    config.certs = file.certs;
    config.password_hashing = file.password_hashing;
    config.gateway = file.gateway;
    config.cluster = file.cluster.into_cluster()?;
    config.federation = file.federation;
    config.media = file.media;
    if config.media.dir.is_none() {
        config.media.dir = Some(data_dir.join("media"));
    }
    config.media.s3().map_err(|e| e.to_string())?;
    if config.media.max_upload_bytes == 0 {
        return Err("media.max_upload_bytes must be positive".into());
    }
    config.trusted_proxies = file.trusted_proxies;
    let limits = &config.limits;
    if limits.max_connections == 0 || limits.header_timeout_s == 0 || limits.body_timeout_s == 0 {
        return Err(
            "limits.max_connections, header_timeout_s and body_timeout_s must be positive".into(),
        );
    }
    if limits.max_sessions_per_actor == 0 {
        return Err("limits.max_sessions_per_actor must be positive".into());
    }
    let fed = &config.federation;
    if !(1..=3600).contains(&fed.key_trial_lifetime_s) {
        return Err("federation.key_trial_lifetime_s must be 1 to 3600".into());
    }
    if fed.request_timeout_ms == 0
        || fed.max_response_bytes == 0
        || fed.max_in_flight_per_server == 0
    {
        return Err(
            "federation.request_timeout_ms, max_response_bytes and max_in_flight_per_server must be positive"
                .into(),
        );
    }
    for (domain, url) in &fed.resolve {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "federation.resolve.{domain} must be an http(s) URL"
            ));
        }
    }
    if let Some(url) = &args.nats_url {
        config.cluster.nats_url = Some(url.clone());
    }
    let gw = &config.gateway;
    if !(1000..=600_000).contains(&gw.heartbeat_interval_ms) {
        return Err("gateway.heartbeat_interval_ms must be 1000 to 600000".into());
    }
    if gw.queue_len == 0
        || gw.client_payloads_per_window == 0
        || gw.rate_window_s == 0
        || gw.max_connections == 0
        || gw.identify_timeout_ms == 0
    {
        return Err(
            "gateway.queue_len, client_payloads_per_window, rate_window_s, max_connections and identify_timeout_ms must be positive"
                .into(),
        );
    }
    if config.certs.actor_validity_days == 0 || config.certs.actor_validity_days > 60 {
        return Err("certs.actor_validity_days must be 1 to 60".into());
    }
    let server_days = config.certs.server_validity_days;
    if server_days <= config.certs.actor_validity_days || server_days > 3650 {
        return Err(
            "certs.server_validity_days must exceed actor_validity_days and be at most 3650".into(),
        );
    }
    if !(3600..=12 * 3600).contains(&config.certs.cache_ttl_s) {
        return Err("certs.cache_ttl_s must be between 3600 and 43200 (1 to 12 hours)".into());
    }
    Ok(Settings {
        listen,
        data_dir,
        database,
        config,
    })
}

fn read_file(path: &Path) -> Result<FileSettings, String> {
    let text = read_text(path)?;
    let file: FileSettings =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    // A bus credential written in the file makes the file a credential file too.
    let cluster = &file.cluster;
    if cluster.nats_token.is_some() || cluster.nats_url.as_deref().is_some_and(|u| u.contains('@'))
    {
        refuse_world_readable(path)?;
    }
    Ok(file)
}

/// `fugue config example`: every key with its default.
pub const EXAMPLE: &str = r#"# Fugue configuration. Every key is optional; shown are the defaults.
# Each top-level key can also be set with a flag of `fugue serve` or a FUGUE_* variable
# (FUGUE_LISTEN, FUGUE_DOMAIN, FUGUE_PUBLIC_URL, FUGUE_DATA_DIR, FUGUE_DATABASE_URL,
# FUGUE_REGISTRATION); flags win over variables, variables over this file.

# Address to listen on (IPv4 "0.0.0.0:3000" or IPv6 "[::]:3000").
listen = "127.0.0.1:3000"
# Domain of this home server: actors are name@domain. Changing it later invalidates every ID.
domain = "localhost"
# Base URL clients are told about. Default: http://<listen> on localhost, https://<domain> elsewhere.
# public_url = "https://chat.example.com"
# SQLite database and the server key (server-key.pem, mode 0600) live here.
data_dir = "fugue-data"
# A postgres:// URL switches to PostgreSQL (needed for several nodes).
# database_url = "postgres://fugue@127.0.0.1/fugue"
# "open", "invite" or "closed". Default: open when the domain is localhost and `listen` is a
# loopback address, invite otherwise.
# registration = "invite"
# When set, registration requires accepting these terms.
# tos_url = "https://example.com/terms"
# "full": fsync on every commit (survives power loss). "normal": survives process crashes only.
sqlite_synchronous = "full"
# Reverse proxies (CIDRs) whose X-Forwarded-For / Forwarded headers name the client; every
# per-client limit then keys on that address. From other peers the headers are ignored.
# trusted_proxies = ["127.0.0.1/32", "::1/128"]
trusted_proxies = []

[limits]
json_body_bytes = 1048576     # 413 beyond
local_name_max = 32           # longest local name for new accounts
password_min = 8
key_material_bytes = 10000    # largest encrypted key backup element
key_material_slots = 64       # key backups per actor
max_connections = 20000       # open TCP connections, gateway included (503 beyond)
header_timeout_s = 10         # to send a request head, also between kept-alive requests
body_timeout_s = 30           # to send a request body
max_sessions_per_actor = 100  # live sessions per account (409 beyond)
export_wait_ms = 2000         # a data export request waits this long for its archive, then 204

[rate_limits]                 # per client address and minute; 0 disables
login_per_minute = 10
failed_logins_per_minute = 10 # per account name and client address (IPv6: its /64)
register_per_minute = 5
sensitive_per_minute = 20
max_failed_solutions = 10     # wrong sensitive-action solutions per actor ...
failure_window_s = 600        # ... within this window before 429
chat_messages_per_5s = 5      # chat messages per actor and channel (chat.md)
chat_channels_per_5min = 5    # channels created per actor and guild
chat_guild_ops_per_minute = 5 # guild creations, changes, deletions, transfers per actor

[certs]
actor_validity_days = 30      # at most 60
server_validity_days = 365
cache_ttl_s = 21600           # signed cache window, 1 to 12 hours

[password_hashing]            # Argon2id
memory_kib = 19456
iterations = 2
parallelism = 1

[gateway]                     # the WebSocket gateway, see docs/gateway.md
heartbeat_interval_ms = 45000
client_payloads_per_window = 120  # 4008 beyond this many payloads ...
rate_window_s = 60                # ... within this window
queue_len = 1024              # frames queued per connection before it counts as too slow
max_frame_bytes = 65536       # largest frame a client may send
event_retention_s = 604800    # events kept for resume and polling (7 days)
max_replay_events = 1000      # a Resume missing more gets 4010
resume_window_s = 600         # a node keeps a closed connection's state this long
server_change_spread_ms = 10000  # op 6 is spread over this long
max_connections = 16384       # gateway connections on this node (closed with 4000 beyond)
identify_timeout_ms = 10000   # a new connection must identify or resume within this time

[federation]                  # talking to other home servers
key_trial_lifetime_s = 300    # a key trial must be answered within this time
request_timeout_ms = 10000    # per request to another server
max_response_bytes = 1048576  # largest certificate or discovery answer accepted
max_in_flight_per_server = 8  # concurrent requests to one other server

# Development and tests only: reach these domains at these base URLs (plain HTTP allowed).
# Everything else is reached over HTTPS.
[federation.resolve]
# "alpha.test" = "http://127.0.0.1:8081"

[media]                       # uploaded resources (RawR)
# dir = "fugue-data/media"    # default: <data_dir>/media
max_upload_bytes = 268435456  # largest single upload (256 MiB)
quota_bytes = 2147483648      # storage per actor (2 GiB)
# An S3-compatible object store instead of the directory (what several nodes need):
# s3_endpoint = "http://127.0.0.1:3900"   # Garage, MinIO, AWS S3, …
# s3_bucket = "fugue"
# s3_region = "garage"                    # default us-east-1
# s3_access_key = "GK…"
# s3_secret_key = "…"
# s3_path_style = true                    # <endpoint>/<bucket>/…; false: <bucket>.<host>

[cluster]                     # several nodes on one PostgreSQL database
# nats_url = "nats://127.0.0.1:4222"  # a user and password may go in it: nats://user:pass@host:4222
subject_prefix = "fugue"      # lets several clusters share one NATS server
# The bus must be private: authenticated, and encrypted when it leaves the machine
# (docs/deployment.md). At most one of these three:
# nats_token = "…"                             # nats-server --auth
# nats_nkey_seed_file = "/etc/fugue/nats.nk"   # an NKey user seed (SU…)
# nats_creds_file = "/etc/fugue/nats.creds"    # a user JWT and its seed
# nats_tls_ca_file = "/etc/fugue/nats-ca.pem"  # CAs for the NATS server's certificate
# nats_tls_cert_file = "/etc/fugue/nats-client.pem"  # with nats_tls_key_file: a client certificate
# nats_tls_key_file = "/etc/fugue/nats-client.key"
nats_tls_required = false     # true: never without TLS (implied by the files above and tls://)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses_and_matches_the_defaults() {
        let parsed: FileSettings = toml::from_str(EXAMPLE).unwrap();
        let defaults = FileSettings::default();
        assert_eq!(
            parsed.limits.json_body_bytes,
            defaults.limits.json_body_bytes
        );
        assert_eq!(
            parsed.rate_limits.login_per_minute,
            defaults.rate_limits.login_per_minute
        );
        assert_eq!(parsed.certs.cache_ttl_s, defaults.certs.cache_ttl_s);
        assert_eq!(
            parsed.password_hashing.memory_kib,
            defaults.password_hashing.memory_kib
        );
        assert_eq!(parsed.domain.as_deref(), Some("localhost"));
        assert_eq!(
            parsed.gateway.heartbeat_interval_ms,
            defaults.gateway.heartbeat_interval_ms
        );
        assert_eq!(parsed.gateway.queue_len, defaults.gateway.queue_len);
        assert_eq!(
            parsed.gateway.event_retention_s,
            defaults.gateway.event_retention_s
        );
        assert_eq!(
            parsed.cluster.subject_prefix,
            defaults.cluster.subject_prefix
        );
        assert_eq!(
            parsed.limits.max_connections,
            defaults.limits.max_connections
        );
        assert_eq!(
            parsed.limits.header_timeout_s,
            defaults.limits.header_timeout_s
        );
        assert_eq!(parsed.limits.body_timeout_s, defaults.limits.body_timeout_s);
        assert_eq!(
            parsed.limits.max_sessions_per_actor,
            defaults.limits.max_sessions_per_actor
        );
        assert_eq!(
            parsed.gateway.max_connections,
            defaults.gateway.max_connections
        );
        assert_eq!(
            parsed.gateway.identify_timeout_ms,
            defaults.gateway.identify_timeout_ms
        );
        assert!(parsed.trusted_proxies.is_empty());
        assert_eq!(parsed.media.quota_bytes, defaults.media.quota_bytes);
        assert_eq!(
            parsed.media.max_upload_bytes,
            defaults.media.max_upload_bytes
        );
    }

    #[test]
    fn trusted_proxies_are_cidrs() {
        let parsed: FileSettings =
            toml::from_str(r#"trusted_proxies = ["127.0.0.1/32", "fd00::/8"]"#).unwrap();
        assert_eq!(parsed.trusted_proxies.len(), 2);
        assert!(toml::from_str::<FileSettings>(r#"trusted_proxies = ["nonsense"]"#).is_err());
    }

    #[test]
    fn zero_configuration_is_open_localhost_on_port_3000() {
        let s = load(&ServeArgs::default()).unwrap();
        assert_eq!(s.listen, SocketAddr::from(([127, 0, 0, 1], 3000)));
        assert_eq!(s.config.domain.as_str(), "localhost");
        assert_eq!(s.config.public_url, "http://127.0.0.1:3000");
        assert_eq!(s.config.registration, Registration::Open);
        assert_eq!(
            s.database,
            Database::Sqlite {
                path: PathBuf::from("fugue-data/fugue.db"),
                full_sync: true
            }
        );
    }

    #[test]
    fn other_domains_default_to_invite_only_and_https() {
        let args = ServeArgs {
            domain: Some("Example.org".into()),
            listen: Some("[::1]:8080".parse().unwrap()),
            ..Default::default()
        };
        let s = load(&args).unwrap();
        assert_eq!(s.config.registration, Registration::Invite);
        assert_eq!(s.config.public_url, "https://example.org");
        assert!(s.listen.is_ipv6());
    }

    #[test]
    fn localhost_on_a_public_interface_defaults_to_invite_only() {
        for listen in ["0.0.0.0:3000", "[::]:3000", "192.0.2.7:3000"] {
            let args = ServeArgs {
                listen: Some(listen.parse().unwrap()),
                ..Default::default()
            };
            let s = load(&args).unwrap();
            assert_eq!(s.config.domain.as_str(), "localhost");
            assert_eq!(s.config.registration, Registration::Invite, "{listen}");
        }
        for listen in ["127.0.0.1:3000", "127.0.0.2:3000", "[::1]:3000"] {
            let args = ServeArgs {
                listen: Some(listen.parse().unwrap()),
                ..Default::default()
            };
            assert_eq!(load(&args).unwrap().config.registration, Registration::Open);
        }
        // Said explicitly, open registration on a public interface is the operator's choice.
        let args = ServeArgs {
            listen: Some("0.0.0.0:3000".parse().unwrap()),
            registration: Some(Registration::Open),
            ..Default::default()
        };
        assert_eq!(load(&args).unwrap().config.registration, Registration::Open);
    }

    #[test]
    fn a_config_file_holding_a_bus_credential_must_not_be_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str, mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        let token = "[cluster]\nnats_token = \"secret\"\n";
        let err = read_file(&write("a.toml", token, 0o644)).unwrap_err();
        assert!(err.contains("readable by every user"), "{err}");
        assert!(read_file(&write("b.toml", token, 0o640)).is_ok());
        let in_url = "[cluster]\nnats_url = \"nats://u:p@nats.example:4222\"\n";
        assert!(read_file(&write("c.toml", in_url, 0o644)).is_err());
        // Without a credential a readable file is fine.
        assert!(read_file(&write("d.toml", "listen = \"127.0.0.1:3000\"\n", 0o644)).is_ok());
    }

    #[test]
    fn cluster_credentials_are_read_from_files_and_checked_for_consistency() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
            path
        };
        let seed = file("nats.nk", "SUSEED\n");
        let ca = file("ca.pem", "CA");
        let cert = file("client.pem", "CERT");
        let key = file("client.key", "KEY");
        let with = |f: &dyn Fn(&mut ClusterSettings)| {
            let mut c = ClusterSettings::default();
            f(&mut c);
            c.into_cluster()
        };
        let c = with(&|c| c.nats_nkey_seed_file = Some(seed.clone())).unwrap();
        assert!(matches!(c.nats_auth, NatsAuth::NKeySeed(ref s) if s == "SUSEED"));
        assert!(c.nats_tls.is_none());
        let err = with(&|c| {
            c.nats_token = Some("t".into());
            c.nats_nkey_seed_file = Some(seed.clone());
        })
        .unwrap_err();
        assert!(err.contains("at most one"), "{err}");
        let err = with(&|c| c.nats_tls_cert_file = Some(cert.clone())).unwrap_err();
        assert!(err.contains("go together"), "{err}");
        let err = with(&|c| {
            c.nats_tls_cert_file = Some(cert.clone());
            c.nats_tls_key_file = Some(key.clone());
        })
        .unwrap_err();
        assert!(err.contains("nats_tls_ca_file"), "{err}");
        let c = with(&|c| {
            c.nats_tls_ca_file = Some(ca.clone());
            c.nats_tls_cert_file = Some(cert.clone());
            c.nats_tls_key_file = Some(key.clone());
        })
        .unwrap();
        let tls = c.nats_tls.unwrap();
        assert_eq!(tls.ca_pem.as_deref(), Some("CA"));
        assert_eq!(tls.client_key_pem.as_deref(), Some("KEY"));
        let c = with(&|c| c.nats_tls_required = true).unwrap();
        assert!(c.nats_tls.is_some_and(|t| t.ca_pem.is_none()));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<FileSettings>("lisen = \"x\"").is_err());
        let args = ServeArgs {
            database_url: Some("mysql://x".into()),
            ..Default::default()
        };
        assert!(load(&args).is_err());
    }
}
