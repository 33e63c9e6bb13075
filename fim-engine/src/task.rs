//! Small helpers for event loops that hand work to blocking threads.
use tokio::task::{JoinError, JoinHandle};

/// The task's result once it ends; never, while there is none. For a `select!` branch that
/// waits on work that may or may not be under way.
pub async fn finished<T>(task: &mut Option<JoinHandle<T>>) -> Result<T, JoinError> {
    match task {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}
