//! The recommended Linux entities, all enabled: the paths attackers modify to persist or to
//! hide (login and password binaries, system binaries, boot files, init scripts, cron, and
//! `/etc` configuration), as listed in PRODUCT.md.
//!
//! Names are stable and readable because users refer to them on the command line
//! (`fim entities disable usr-bin`) and change records carry them.
//!
//! Only the data lives here: the file format of the defaults (`default_policy_toml`, a new
//! policy document) is built from it in `document`, which owns how entities are written.
use super::{Entity, EntityKind, Policy, Settings};

/// (name, path) of each recommended entity, in the order PRODUCT.md lists them.
const RECOMMENDED: &[(&str, &str)] = &[
    ("bin-login", "/bin/login"),
    ("bin-passwd", "/bin/passwd"),
    ("etc-conf", "/etc/*.conf"),
    ("usr-bin", "/usr/bin"),
    ("usr-sbin", "/usr/sbin"),
    ("bin", "/bin"),
    ("sbin", "/sbin"),
    ("boot", "/boot"),
    ("usr-local-bin", "/usr/local/bin"),
    ("usr-local-sbin", "/usr/local/sbin"),
    ("opt-bin", "/opt/bin"),
    ("opt-sbin", "/opt/sbin"),
    ("etc-crontab", "/etc/crontab"),
    ("etc-init-d", "/etc/init.d"),
    ("etc-cron-hourly", "/etc/cron.hourly"),
    ("etc-cron-daily", "/etc/cron.daily"),
    ("etc-cron-weekly", "/etc/cron.weekly"),
    ("etc-cron-monthly", "/etc/cron.monthly"),
];

/// The comment that opens a policy file written from the defaults.
pub(super) const DEFAULT_FILE_HEADER: &str = "\
# fim policy: the monitored entities and the engine settings.
# policy.example.toml in the fim sources documents every key. These are the recommended
# Linux entities; disable the ones you don't want (`enabled = false`) and add your own.
# Wildcards (`/etc/*.conf`) are not recursive unless `recursive = true` is set.
";

/// The recommended entities: kind linux-file, enabled, recursive except the `*.conf` wildcard.
pub fn default_policy() -> Policy {
    let entities = RECOMMENDED
        .iter()
        .map(|(name, path)| Entity {
            name: (*name).to_string(),
            kind: EntityKind::LinuxFile,
            path: (*path).to_string(),
            recursive: !path.contains('*'),
            enabled: true,
            ignore: Vec::new(),
        })
        .collect();
    Policy {
        entities,
        settings: Settings::default(),
    }
}
