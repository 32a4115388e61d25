//! Background work with an owner. Every task the server starts outside a request goes
//! through [`Tasks`]: on shutdown the loops are stopped, the writes they started are let
//! finish, and [`crate::Server::serve`] returns only after both.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Cheap to clone; clones share the tasks.
#[derive(Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    /// A loop or timer: stopped at shutdown wherever it is.
    pub fn spawn_loop(&self, work: impl Future<Output = ()> + Send + 'static) {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = work => {}
            }
        });
    }

    /// A piece of work that must not be cut short (a write): shutdown waits for it.
    pub fn spawn_to_end(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(work);
    }

    /// Stops the loops and waits for every task, at most `grace`.
    pub async fn shut_down(&self, grace: Duration) {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = self.tracker.len(),
                "background tasks still running at shutdown"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn shutdown_stops_loops_and_waits_for_writes() {
        let tasks = Tasks::new();
        let looped = Arc::new(AtomicBool::new(false));
        let wrote = Arc::new(AtomicBool::new(false));
        let l = looped.clone();
        tasks.spawn_loop(async move {
            l.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
        });
        let w = wrote.clone();
        tasks.spawn_to_end(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            w.store(true, Ordering::SeqCst);
        });
        tokio::task::yield_now().await;
        tokio::time::timeout(
            Duration::from_secs(2),
            tasks.shut_down(Duration::from_secs(5)),
        )
        .await
        .expect("a pending loop must not hold up shutdown");
        assert!(looped.load(Ordering::SeqCst));
        assert!(wrote.load(Ordering::SeqCst), "shutdown waits for writes");
        assert_eq!(tasks.tracker.len(), 0);
    }
}
