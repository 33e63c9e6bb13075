//! The PostgreSQL backend's connections: a small fixed pool, each slot holding one client
//! or none. A client found closed after a failure (PostgreSQL restarted, a connection cut)
//! is dropped and the operation retried once on a new one, which is safe because every
//! store operation is idempotent (the chain check skips what is already stored).
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex, MutexGuard, TryLockError,
    },
    time::Duration,
};

use postgres::{Client, NoTls};

use crate::error::CollectorError;

/// Why an operation failed: the database, or a refusal to pass on as it is.
pub(super) enum Fail {
    Db(postgres::Error),
    Refused(CollectorError),
}

impl From<postgres::Error> for Fail {
    fn from(error: postgres::Error) -> Self {
        Fail::Db(error)
    }
}

/// The URL as it can be shown: user, hosts, ports and database, never the password.
fn redacted(config: &postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432u16)))
        .map(|(host, port)| match host {
            postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
            #[cfg(unix)]
            postgres::config::Host::Unix(path) => format!("{}:{port}", path.display()),
        })
        .collect();
    format!(
        "postgresql://{}@{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

pub(super) struct Pool {
    config: postgres::Config,
    /// The URL without its password, for messages.
    target: String,
    slots: Vec<Mutex<Option<Client>>>,
    next: AtomicUsize,
}

impl Pool {
    /// Parses `url` (a URL or a libpq string); connections are opened when first used.
    pub(super) fn connect(url: &str, connections: usize) -> Result<Pool, CollectorError> {
        let mut config: postgres::Config =
            url.parse()
                .map_err(|source: postgres::Error| CollectorError::Postgres {
                    target: "the --database URL".to_string(),
                    action: "parsing the URL",
                    source,
                })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("fim-collector");
        }
        Ok(Pool {
            target: redacted(&config),
            config,
            slots: (0..connections.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        })
    }

    pub(super) fn target(&self) -> &str {
        &self.target
    }

    fn slot(&self) -> MutexGuard<'_, Option<Client>> {
        for slot in &self.slots {
            match slot.try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        // A panic while holding a client cannot leave a transaction open on it: the
        // transaction is rolled back when dropped.
        self.slots[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn error(&self, action: &'static str, source: postgres::Error) -> CollectorError {
        CollectorError::Postgres {
            target: self.target.clone(),
            action,
            source,
        }
    }

    /// Runs `operation` on a pooled connection; a connection found closed is reopened and
    /// the operation retried once.
    pub(super) fn run<T>(
        &self,
        action: &'static str,
        mut operation: impl FnMut(&mut Client) -> Result<T, Fail>,
    ) -> Result<T, CollectorError> {
        let mut slot = self.slot();
        let mut retried = false;
        loop {
            let client = match &mut *slot {
                Some(client) => client,
                empty => empty.insert(
                    self.config
                        .connect(NoTls)
                        .map_err(|source| self.error("connecting", source))?,
                ),
            };
            match operation(client) {
                Ok(value) => return Ok(value),
                Err(Fail::Refused(error)) => return Err(error),
                Err(Fail::Db(source)) => {
                    if !client.is_closed() {
                        return Err(self.error(action, source));
                    }
                    *slot = None;
                    if retried {
                        return Err(self.error(action, source));
                    }
                    tracing::warn!(database = %self.target, "the connection was closed \
                        ({source}); reconnecting to retry {action}");
                    retried = true;
                }
            }
        }
    }
}
