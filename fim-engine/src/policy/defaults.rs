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
        .map(|(name, path)| recommended(name, EntityKind::LinuxFile, path, !path.contains('*')))
        .collect();
    Policy {
        entities,
        settings: Settings::default(),
    }
}

/// One recommended entity: enabled, nothing ignored.
fn recommended(name: &str, kind: EntityKind, path: &str, recursive: bool) -> Entity {
    Entity {
        name: name.to_string(),
        kind,
        path: path.to_string(),
        recursive,
        enabled: true,
        ignore: Vec::new(),
    }
}

/// (name, key) of each recommended Windows registry key, in the order PRODUCT.md lists them
/// (autostart, shell, Winlogon, signature-verification and firewall keys, native and
/// WOW6432Node), monitored recursively.
const RECOMMENDED_REGISTRY: &[(&str, &str)] = &[
    (
        "sip-remove-signed-c689aab8",
        r"HKLM\SOFTWARE\Microsoft\Cryptography\OID\EncodingType 0\CryptSIPDllRemoveSignedDataMsg\{C689AAB8-8E78-11D0-8C47-00C04FC295EE}",
    ),
    (
        "sip-remove-signed-603bcc1f",
        r"HKLM\SOFTWARE\Microsoft\Cryptography\OID\EncodingType 0\CryptSIPDllRemoveSignedDataMsg\{603BCC1F-4B59-4E08-B724-D2C6297EF351}",
    ),
    (
        "ini-mapping-system-boot",
        r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\IniFileMapping\SYSTEM.ini\boot",
    ),
    (
        "nt-windows",
        r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Windows",
    ),
    (
        "winlogon",
        r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon",
    ),
    (
        "shell-folders",
        r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Explorer\Shell Folders",
    ),
    (
        "user-shell-folders",
        r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Explorer\User Shell Folders",
    ),
    ("run", r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run"),
    (
        "run-once",
        r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\RunOnce",
    ),
    (
        "run-once-ex",
        r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\RunOnceEx",
    ),
    (
        "run-services",
        r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\RunServices",
    ),
    (
        "run-services-once",
        r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\RunServicesOnce",
    ),
    (
        "wow64-sip-remove-signed-c689aab8",
        r"HKLM\SOFTWARE\WOW6432Node\Microsoft\Cryptography\OID\EncodingType 0\CryptSIPDllRemoveSignedDataMsg\{C689AAB8-8E78-11D0-8C47-00C04FC295EE}",
    ),
    (
        "wow64-sip-remove-signed-603bcc1f",
        r"HKLM\SOFTWARE\WOW6432Node\Microsoft\Cryptography\OID\EncodingType 0\CryptSIPDllRemoveSignedDataMsg\{603BCC1F-4B59-4E08-B724-D2C6297EF351}",
    ),
    (
        "wow64-ini-mapping-system-boot",
        r"HKLM\SOFTWARE\WOW6432Node\Microsoft\Windows NT\CurrentVersion\IniFileMapping\system.ini\boot",
    ),
    (
        "wow64-nt-windows",
        r"HKLM\SOFTWARE\WOW6432Node\Microsoft\Windows NT\CurrentVersion\Windows",
    ),
    (
        "wow64-winlogon",
        r"HKLM\SOFTWARE\WOW6432Node\Microsoft\Windows NT\CurrentVersion\Winlogon",
    ),
    (
        "wow64-shell-folders",
        r"HKLM\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Explorer\Shell Folders",
    ),
    (
        "wow64-user-shell-folders",
        r"HKLM\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Explorer\User Shell Folders",
    ),
    (
        "wow64-run",
        r"HKLM\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Run",
    ),
    (
        "wow64-run-once",
        r"HKLM\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\RunOnce",
    ),
    (
        "wow64-run-once-ex",
        r"HKLM\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\RunOnceEx",
    ),
    (
        "wow64-run-services",
        r"HKLM\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\RunServices",
    ),
    (
        "wow64-run-services-once",
        r"HKLM\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\RunServicesOnce",
    ),
    (
        "hivelist",
        r"HKLM\SYSTEM\CurrentControlSet\Control\hivelist",
    ),
    (
        "known-dlls",
        r"HKLM\SYSTEM\CurrentControlSet\Control\Session Manager\KnownDLLs",
    ),
    (
        "firewall-domain-profile",
        r"HKLM\SYSTEM\CurrentControlSet\Services\SharedAccess\Parameters\FirewallPolicy\DomainProfile",
    ),
    (
        "firewall-public-profile",
        r"HKLM\SYSTEM\CurrentControlSet\Services\SharedAccess\Parameters\FirewallPolicy\PublicProfile",
    ),
    (
        "firewall-standard-profile",
        r"HKLM\SYSTEM\CurrentControlSet\Services\SharedAccess\Parameters\FirewallPolicy\StandardProfile",
    ),
];

/// (name, path) of each recommended Windows file, as PRODUCT.md lists them.
const RECOMMENDED_WINDOWS_FILES: &[(&str, &str)] = &[
    ("autoexec-bat", r"C:\autoexec.bat"),
    ("boot-ini", r"C:\boot.ini"),
    ("config-sys", r"C:\config.sys"),
    ("system-ini", r"C:\Windows\system.ini"),
    ("win-ini", r"C:\Windows\win.ini"),
    ("regedit", r"C:\Windows\regedit.exe"),
    ("userinit", r"C:\Windows\System32\userinit.exe"),
    ("explorer", r"C:\Windows\explorer.exe"),
    (
        "msseces",
        r"C:\Program Files\Microsoft Security Client\msseces.exe",
    ),
];

/// The recommended Windows entities, all enabled: the registry keys (recursive, as the
/// recommended hives are checked recursively) and the files. The built-in policy of the
/// Windows companion.
pub fn windows_default_policy() -> Policy {
    let registry = RECOMMENDED_REGISTRY
        .iter()
        .map(|(name, key)| (name, key, EntityKind::WindowsRegistry, true));
    let files = RECOMMENDED_WINDOWS_FILES
        .iter()
        .map(|(name, path)| (name, path, EntityKind::WindowsFile, false));
    let entities = registry
        .chain(files)
        .map(|(name, path, kind, recursive)| recommended(name, kind, path, recursive))
        .collect();
    Policy {
        entities,
        settings: Settings::default(),
    }
}

/// The built-in policy of the agent on this platform: the recommended Windows entities for
/// the Windows companion, the Linux ones everywhere else.
pub fn platform_default_policy() -> Policy {
    if cfg!(windows) {
        windows_default_policy()
    } else {
        default_policy()
    }
}
