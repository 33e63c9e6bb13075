//! An in-memory service list implementing [`ServiceReader`], for the platform-neutral tests.
use std::sync::Mutex;

use super::{fold, ServiceError, ServiceReader, ServiceSnapshot};

#[derive(Default)]
pub struct MemoryServices {
    services: Mutex<Vec<ServiceSnapshot>>,
}

impl MemoryServices {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, change: impl FnOnce(&mut Vec<ServiceSnapshot>) -> T) -> T {
        let mut services = match self.services.lock() {
            Ok(services) => services,
            Err(poisoned) => poisoned.into_inner(),
        };
        change(&mut services)
    }

    /// Creates or replaces a service (by its name, without case).
    pub fn put(&self, service: ServiceSnapshot) {
        self.with(|services| {
            services.retain(|known| fold(&known.name) != fold(&service.name));
            services.push(service);
        });
    }

    pub fn delete(&self, name: &str) {
        self.with(|services| services.retain(|known| fold(&known.name) != fold(name)));
    }
}

impl ServiceReader for MemoryServices {
    fn list(&self) -> Result<Vec<ServiceSnapshot>, ServiceError> {
        Ok(self.with(|services| services.clone()))
    }
}
