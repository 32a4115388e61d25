//! Servers written for one test: small axum apps on `127.0.0.1:0` that stand in for a home
//! server (hostile, slow, relaying or canned), stopped when the test drops them.

use axum::Router;
use tokio::task::JoinHandle;

/// A server written for one test; stopped when dropped.
pub struct Fake {
    /// Its base URL, `http://127.0.0.1:port`.
    pub url: String,
    pub task: JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `router` on a fresh loopback port.
pub async fn serve(router: Router) -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Fake { url, task }
}
