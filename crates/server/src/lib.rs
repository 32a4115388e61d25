//! The Fugue home server as a library.
//!
//! [`Server::new`] wires the services over a [`Store`]; [`Server::router`] is the axum app
//! apart from serving; [`Server::serve`] takes a bound listener and a shutdown future, so
//! tests bind `127.0.0.1:0`. The library reads no file and no environment variable.

pub mod chat;
pub mod clock;
pub mod config;
pub mod discovery;
pub mod events;
pub mod federation;
pub mod gateway;
pub mod http;
pub mod identity;
pub mod ids;
mod listener;
pub mod media;
pub mod migration;
pub mod mls;
pub mod principal;
mod ratelimit;
mod routes;
pub mod sessions;
pub mod tasks;
pub mod time;

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ed25519_dalek::SigningKey;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use fugue_proto::api;
use fugue_store::Store;

pub use clock::Clock;
pub use config::{Config, Registration};
pub use events::{Events, Publish};
pub use gateway::Gateway;
pub use identity::{Identity, KeySink};
pub use sessions::Sessions;
pub use tasks::Tasks;

use crate::http::ok;
use crate::ratelimit::Limiter;
use crate::routes::Routes;

/// How long shutdown waits for gateway connections to close.
const GATEWAY_GRACE: Duration = Duration::from_secs(5);

/// How long shutdown waits for background writes.
const TASKS_GRACE: Duration = Duration::from_secs(5);

/// Per-client request limiters (their quotas are `config::RateLimits`).
pub struct RateLimiters {
    pub login: Limiter<IpAddr>,
    pub register: Limiter<IpAddr>,
    pub sensitive: Limiter<IpAddr>,
}

pub struct Inner {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Store,
    pub(crate) identity: Identity,
    pub(crate) sessions: Sessions,
    pub(crate) events: Events,
    pub(crate) gateway: Gateway,
    pub(crate) federation: federation::Federation,
    pub(crate) discovery: discovery::Discovery,
    pub(crate) chat: chat::Chat,
    pub(crate) media: media::Media,
    pub(crate) migration: migration::Migration,
    pub(crate) mls: mls::Mls,
    /// Kept here: `sessions` holds it weakly (it holds `mls`, which holds `sessions`).
    _revocations: Arc<dyn sessions::RevocationObserver>,
    pub(crate) limits: RateLimiters,
    pub(crate) tasks: Tasks,
}

/// Shared state of every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Identity(#[from] identity::Error),
    #[error(transparent)]
    Sessions(#[from] sessions::Error),
    #[error("cannot serve: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Bus(#[from] events::bus::BusError),
}

pub struct Server {
    state: AppState,
}

impl Server {
    /// Builds the server: loads or creates the root certificate for `key`.
    pub async fn new(
        config: Config,
        store: Store,
        key: SigningKey,
        sink: Arc<dyn KeySink>,
    ) -> Result<Self, StartError> {
        let config = Arc::new(config);
        let node: Arc<str> = format!(
            "{:016x}",
            rand_core::RngCore::next_u64(&mut rand_core::OsRng)
        )
        .into();
        let tasks = Tasks::new();
        let (bus, handoffs) = match &config.cluster.nats_url {
            Some(url) => {
                let (bus, rx) = events::Bus::nats(url, &config.cluster, node, &tasks).await?;
                (bus, Some(rx))
            }
            None => (events::Bus::in_process(node), None),
        };
        let events = Events::new(store.clone(), bus, config.clock.clone());
        let identity = Identity::bootstrap(
            store.clone(),
            config.domain.clone(),
            config.certs.clone(),
            config.limits.clone(),
            key,
            sink,
            config.clock.now(),
        )
        .await?
        .with_events(events.clone());
        let federation =
            federation::Federation::new(config.domain.clone(), config.federation.clone());
        let sessions = Sessions::new(
            store.clone(),
            identity.clone(),
            events.clone(),
            federation.clone(),
            config.clone(),
        )?;
        let gateway = Gateway::new(
            config.clone(),
            events.clone(),
            sessions.clone(),
            identity.clone(),
            store.clone(),
            tasks.clone(),
        );
        gateway.start(handoffs);
        let discovery = discovery::Discovery::new(
            store.clone(),
            sessions.clone(),
            config.domain.clone(),
            &config.public_url,
        );
        let media = media::Media::open(
            store.clone(),
            config.domain.clone(),
            &config.public_url,
            config.media.clone(),
        )
        .await?;
        let chat = chat::Chat::new(
            chat::Deps {
                store: store.clone(),
                events: events.clone(),
                federation: federation.clone(),
                sessions: sessions.clone(),
                media: media.clone(),
                tasks: tasks.clone(),
            },
            config.domain.clone(),
            &config.rate_limits,
        );
        let migration = migration::Migration::new(
            migration::Deps {
                store: store.clone(),
                sessions: sessions.clone(),
                federation: federation.clone(),
                chat: chat.clone(),
                media: media.clone(),
                identity: identity.clone(),
                export_wait: Duration::from_millis(config.limits.export_wait_ms),
            },
            config.domain.clone(),
            &config.public_url,
        );
        let mls = mls::Mls::new(
            store.clone(),
            events.clone(),
            federation.clone(),
            chat.clone(),
            config.domain.clone(),
        );
        gateway.register_service(Arc::new(chat.clone()));
        gateway.register_service(Arc::new(chat::FugueChatChannel(chat.clone())));
        gateway.register_service(Arc::new(mls.clone()));
        let revocations: Arc<dyn sessions::RevocationObserver> = Arc::new(mls.clone());
        sessions.observe_revocations(&revocations);
        gateway.register_service(Arc::new(mls::FugueMlsChannel(chat.clone())));
        let rl = &config.rate_limits;
        let limits = RateLimiters {
            login: Limiter::per_minute(rl.login_per_minute),
            register: Limiter::per_minute(rl.register_per_minute),
            sensitive: Limiter::per_minute(rl.sensitive_per_minute),
        };
        Ok(Self {
            state: AppState(Arc::new(Inner {
                config,
                store,
                identity,
                sessions,
                events,
                gateway,
                federation,
                discovery,
                chat,
                media,
                migration,
                mls,
                _revocations: revocations,
                limits,
                tasks,
            })),
        })
    }

    pub fn identity(&self) -> &Identity {
        &self.state.identity
    }

    /// Where services publish events.
    pub fn events(&self) -> &Events {
        &self.state.events
    }

    /// Accounts and sessions (administration goes through it).
    /// Ends the background work (its loops stop, the writes they started finish) and sends
    /// what is queued for the bus. `serve` does this on its way out; a process that built a
    /// server without serving (the admin commands) calls it before exiting.
    pub async fn stop(&self) {
        self.state.tasks.shut_down(TASKS_GRACE).await;
        self.state.chat.forget_presence().await;
        self.state.events.bus().flush().await;
    }

    pub fn sessions(&self) -> &Sessions {
        &self.state.sessions
    }

    /// Other home servers, as this server sees them.
    pub fn federation(&self) -> &federation::Federation {
        &self.state.federation
    }

    /// The gateway, for registering service channels.
    pub fn gateway(&self) -> &Gateway {
        &self.state.gateway
    }

    /// The application, apart from serving.
    pub fn router(&self) -> Router {
        app_routes()
            .into_router()
            .fallback(http::not_found)
            .method_not_allowed_fallback(http::method_not_allowed)
            .layer(DefaultBodyLimit::max(
                self.state.config.limits.json_body_bytes,
            ))
            // zstd and gzip by Accept-Encoding (OP-40); small bodies stay as they are, and
            // so do what is compressed already or a file as stored (its length kept, for the
            // client's check that it arrived whole).
            .layer(tower_http::compression::CompressionLayer::new().compress_when(compressible()))
            .layer(TraceLayer::new_for_http())
            .with_state(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` resolves, then finishes in-flight requests.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_with(Router::new(), listener, shutdown).await
    }

    /// [`Server::serve`] with `extra` routes merged in (benchmark and test drivers).
    pub async fn serve_with(
        self,
        extra: Router,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self.router().merge(extra);
        let state = self.state.clone();
        self.state.tasks.spawn_loop(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            let mut minutes = 0u64;
            loop {
                tick.tick().await;
                // Hourly, from the first minute on.
                if minutes.is_multiple_of(60) {
                    let now = state.config.clock.now();
                    match state.migration.drop_exports(None, now).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(exports = n, "deleted expired data exports"),
                        Err(e) => tracing::error!(error = %e, "deleting data exports failed"),
                    }
                    match state.migration.fail_stale_imports(now).await {
                        Ok(0) => {}
                        Ok(n) => tracing::warn!(imports = n, "imports stopped by a restart"),
                        Err(e) => tracing::error!(error = %e, "ending stale imports failed"),
                    }
                    match state.mls.sweep(time::UnixTime(now)).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(packages = n, "deleted ended KeyPackages"),
                        Err(e) => tracing::error!(error = %e, "sweeping KeyPackages failed"),
                    }
                    match state.media.sweep().await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(objects = n, "deleted unused media objects"),
                        Err(e) => tracing::error!(error = %e, "sweeping media objects failed"),
                    }
                }
                minutes += 1;
                for l in [
                    &state.limits.login,
                    &state.limits.register,
                    &state.limits.sensitive,
                ] {
                    l.shrink();
                }
                state.sessions.sweep_login_failures();
                state.gateway.sweep();
                state.chat.refresh_presence().await;
                if let Err(e) = state
                    .events
                    .sweep(state.config.gateway.event_retention_s)
                    .await
                {
                    tracing::error!(error = %e, "deleting expired events failed");
                }
                if let Err(e) = state.sessions.sweep_key_trials().await {
                    tracing::error!(error = %e, "deleting unanswered key trials failed");
                }
                if let Err(e) = state
                    .identity
                    .renew_root_if_expiring(state.config.clock.now())
                    .await
                {
                    tracing::error!(error = %e, "renewing the server root certificate failed");
                }
            }
        });
        let gateway = self.state.gateway.clone();
        // WebSockets are not part of hyper's graceful shutdown: they are told to resume
        // elsewhere (4000), and we wait until they have been.
        let drain_gateway = async move { gateway.shut_down(GATEWAY_GRACE).await };
        let result = listener::serve(
            app,
            listener,
            self.state.config.clone(),
            shutdown,
            drain_gateway,
        )
        .await;
        self.stop().await;
        result
    }
}

/// Which responses the compression layer compresses: not images (the default), archives,
/// audio, video or files served as downloads.
fn compressible() -> impl tower_http::compression::Predicate {
    use tower_http::compression::Predicate;
    use tower_http::compression::predicate::{DefaultPredicate, NotForContentType};
    DefaultPredicate::new()
        .and(NotForContentType::const_new("application/gzip"))
        .and(NotForContentType::const_new("application/octet-stream"))
        .and(NotForContentType::const_new("audio/"))
        .and(NotForContentType::const_new("video/"))
}

/// Every domain's routes, and the two at the origin. Each domain's router answers the
/// endpoints of its service; every endpoint of `fugue_proto::api` is routed exactly once
/// (tested in `routes.rs`).
fn app_routes() -> Routes {
    Routes::new()
        .at(&api::well_known::ENDPOINT, well_known)
        .at(&api::health::ENDPOINT, health)
        .merge(sessions::routes::router())
        .merge(identity::routes::router())
        .merge(discovery::routes::router())
        .merge(gateway::routes::router())
        .merge(chat::routes::router())
        .merge(media::routes::router())
        .merge(migration::routes::router())
        .merge(mls::routes::router())
}

/// `GET /.well-known/polyproto-core` (OP-27): the core API of this server, which is here.
async fn well_known(State(app): State<AppState>) -> Response {
    ok(api::well_known::Response {
        api: format!("{}{}", app.config.public_url, api::CORE_API),
    })
    .into_response()
}

/// `GET /health`: 200 when the database answers, 503 otherwise.
async fn health(State(app): State<AppState>) -> Response {
    let (status, db) = match app.store.ping().await {
        Ok(()) => (StatusCode::OK, app.store.engine_name().to_owned()),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "unreachable".to_owned())
        }
    };
    let body = api::health::Response {
        status: if status == StatusCode::OK {
            "ok"
        } else {
            "degraded"
        }
        .into(),
        database: db,
    };
    http::Canonical(status, body).into_response()
}
