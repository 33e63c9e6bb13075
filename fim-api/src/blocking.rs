//! Blocking store and file work, run off the async runtime, with its errors as statuses.
//!
//! Both the unary calls ([`crate::service`]) and the change streams ([`crate::watch`]) open
//! store connections and read the journal; that work blocks, so it goes to `spawn_blocking`
//! and must never stall the runtime that also carries live streams.
use fim_engine::store::StoreError;
use tonic::Status;

/// Runs blocking store work off the async runtime.
pub async fn blocking<T, E>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, Status>
where
    T: Send + 'static,
    E: Into<BlockingError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.into().0),
        Err(join) => Err(Status::internal(format!("a store task failed: {join}"))),
    }
}

/// A store failure as a status: the daemon's problem, not the request's.
pub fn store_status(error: StoreError) -> Status {
    Status::internal(format!("the store failed: {error}"))
}

/// A blocking task's error as a status.
pub struct BlockingError(pub Status);

impl From<StoreError> for BlockingError {
    fn from(error: StoreError) -> Self {
        BlockingError(store_status(error))
    }
}

impl From<Status> for BlockingError {
    fn from(status: Status) -> Self {
        BlockingError(status)
    }
}

impl From<std::convert::Infallible> for BlockingError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}
