//! Turns SIGINT/SIGTERM into a cancellation token every task watches, and
//! holds a service's background tasks ([`BackgroundTasks`]) so that its
//! shutdown can stop them and wait for them.

use std::future::Future;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A service's background tasks and the token that stops them: each task is
/// spawned with [`spawn`](Self::spawn) and watches [`token`](Self::token);
/// [`stop`](Self::stop) cancels the token and waits until every task has
/// returned (each finishes its own last step: a flush, a last pass).
pub struct BackgroundTasks {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl BackgroundTasks {
    pub fn new() -> Self {
        Self {
            tracker: TaskTracker::new(),
            stop: CancellationToken::new(),
        }
    }

    /// The token the tasks watch; cancelled by [`stop`](Self::stop).
    pub fn token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Spawns a tracked task.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(task)
    }

    /// Cancels the token and waits for every task to return.
    pub async fn stop(&self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Default for BackgroundTasks {
    fn default() -> Self {
        Self::new()
    }
}

/// Returns a token cancelled on the first SIGINT or SIGTERM.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received, draining");
        trigger.cancel();
    });
    token
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
