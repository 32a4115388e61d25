//! The accept loop: what a server facing the internet needs before a request reaches the
//! router.
//!
//! - a cap on open connections (`limits.max_connections`, upgraded gateway connections
//!   included: they keep their [`ConnectionSlot`]); beyond it a connection gets one 503
//!   `OVERLOADED` answer with `Retry-After` and is closed;
//! - a header read timeout (also for idle keep-alive connections) and a body read timeout,
//!   so slow clients cannot hold sockets without end;
//! - the client address per request: the socket peer, or the forwarded address when the peer
//!   is a trusted proxy (`trusted_proxies`, [`crate::http::client_addr`]);
//! - graceful shutdown: stop accepting, let in-flight requests finish.
//!
//! Upgraded connections (the gateway) leave hyper's bookkeeping here; the gateway owns them
//! and closes them on shutdown itself.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::http::{ApiError, ClientAddr, ConnectionSlot, client_addr, routed_uri};

/// Connections beyond the cap that may be answered 503 at once; further ones are dropped.
const REFUSALS_AT_ONCE: usize = 64;
/// How long a refused connection may take to send its request head.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

/// Accepts on `listener` until `shutdown` resolves, then stops accepting and waits for
/// in-flight requests and for `drain` (the upgraded connections' own shutdown).
pub(crate) async fn serve(
    app: Router,
    listener: TcpListener,
    config: Arc<Config>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(config.limits.max_connections.max(1)));
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let builder = builder(&config);
    let graceful = GracefulShutdown::new();
    let body_timeout = Duration::from_secs(config.limits.body_timeout_s.max(1));
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        body_timeout,
    ));
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Small gateway frames must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        let io = TokioIo::new(tcp);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refuse(&builder, &refusals, io);
            continue;
        };
        let slot = ConnectionSlot(Arc::new(slot));
        let trusted = config.trusted_proxies.clone();
        let app = app.clone();
        let request_slot = slot.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let client = client_addr(peer, req.headers(), &trusted);
            if let Some(uri) = routed_uri(req.uri()) {
                *req.uri_mut() = uri;
            }
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(ClientAddr(client));
            // An upgraded connection outlives this one: the gateway keeps the slot.
            req.extensions_mut().insert(request_slot.clone());
            tower::ServiceExt::oneshot(app.clone(), req)
        });
        let conn = builder
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::join!(graceful.shutdown(), drain);
    Ok(())
}

fn builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(config.limits.header_timeout_s.max(1)));
    // The CONNECT protocol carries WebSockets over HTTP/2 (RFC 8441).
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol();
    builder
}

/// One 503 answer for a connection beyond the cap, within a short deadline, if few enough
/// refusals are under way; otherwise the connection is closed without a word.
fn refuse(
    builder: &auto::Builder<TokioExecutor>,
    refusals: &Arc<Semaphore>,
    io: TokioIo<tokio::net::TcpStream>,
) {
    let Ok(permit) = refusals.clone().try_acquire_owned() else {
        return;
    };
    let service = hyper::service::service_fn(|_req: hyper::Request<Incoming>| async {
        let mut resp = ApiError::overloaded("too many connections; retry later").into_response();
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        Ok::<_, Infallible>(resp)
    });
    let conn = builder.serve_connection(io, service).into_owned();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, conn).await;
        drop(permit);
    });
}
