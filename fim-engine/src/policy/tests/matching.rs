//! `covers`, `is_ignored`, `max_depth` and `entity_for` on compiled policies.
use std::path::Path;

use super::{compiled, entity, linux};

fn owner(policy: &super::CompiledPolicy, path: &str) -> Option<String> {
    policy
        .entity_for(Path::new(path))
        .map(|entity| entity.name.clone())
}

#[test]
fn a_wildcard_matches_direct_children_by_name_only() {
    let policy = compiled(&linux("conf", "/etc/*.conf"));
    let conf = &policy.entities[0];
    assert_eq!(conf.root, Path::new("/etc"));
    assert!(!conf.recursive, "a wildcard defaults to non-recursive");
    assert_eq!(conf.max_depth(), Some(1));
    assert!(conf.covers(Path::new("/etc/host.conf")));
    assert!(!conf.covers(Path::new("/etc/hosts")));
    assert!(
        !conf.covers(Path::new("/etc")),
        "the directory itself is not matched"
    );
    assert!(!conf.covers(Path::new("/etc/ssh/ssh.conf")));
    assert!(!conf.covers(Path::new("/etcx/a.conf")));
}

#[test]
fn a_recursive_wildcard_matches_at_any_depth() {
    let policy = compiled(&entity(
        "conf",
        "linux-file",
        "/etc/*.conf",
        "recursive = true",
    ));
    let conf = &policy.entities[0];
    assert_eq!(conf.max_depth(), None);
    assert!(conf.covers(Path::new("/etc/a.conf")));
    assert!(conf.covers(Path::new("/etc/ssh/deep/b.conf")));
    assert!(!conf.covers(Path::new("/etc/ssh/b.conf.bak")));
}

#[test]
fn wildcards_do_not_cross_slashes() {
    let policy = compiled(&linux("any", "/srv/*"));
    assert!(policy.entities[0].covers(Path::new("/srv/a")));
    assert!(!policy.entities[0].covers(Path::new("/srv/a/b")));
}

#[test]
fn recursive_and_non_recursive_directories() {
    let text =
        linux("deep", "/usr/bin") + &entity("flat", "linux-file", "/opt/x", "recursive = false");
    let policy = compiled(&text);
    let (deep, flat) = (&policy.entities[0], &policy.entities[1]);
    assert!(deep.covers(Path::new("/usr/bin")));
    assert!(deep.covers(Path::new("/usr/bin/a/b/c")));
    assert!(!deep.covers(Path::new("/usr/binx")));
    assert_eq!(flat.max_depth(), Some(1));
    assert!(flat.covers(Path::new("/opt/x")));
    assert!(flat.covers(Path::new("/opt/x/a")));
    assert!(!flat.covers(Path::new("/opt/x/a/b")));
}

#[test]
fn a_single_file_entity_covers_that_file() {
    let policy = compiled(&linux("login", "/bin/login"));
    assert!(policy.entities[0].covers(Path::new("/bin/login")));
    assert!(!policy.entities[0].covers(Path::new("/bin/login2")));
    assert!(!policy.entities[0].covers(Path::new("/bin")));
}

#[test]
fn ignore_by_name_by_full_path_and_below_an_ignored_directory() {
    let extra = r#"ignore = ["*.swp", "/var/www/cache/**", "tmp", "/var/www/logs"]"#;
    let policy = compiled(&entity("www", "linux-file", "/var/www", extra));
    let www = &policy.entities[0];
    let covered = |path: &str| www.covers(Path::new(path));
    assert!(covered("/var/www/index.html"));
    assert!(!covered("/var/www/a/.index.html.swp"), "by name");
    assert!(!covered("/var/www/cache/x/y"), "by full path with **");
    assert!(
        covered("/var/www/cache"),
        "cache/** matches below cache only"
    );
    assert!(!covered("/var/www/a/tmp"), "a directory by name");
    assert!(
        !covered("/var/www/a/tmp/file"),
        "below a directory ignored by name"
    );
    assert!(
        !covered("/var/www/logs/today.log"),
        "below a directory ignored by path"
    );
    assert!(covered("/var/www/logsx"));
    assert!(
        www.is_ignored(Path::new("/elsewhere/x.swp")),
        "outside root: the path itself"
    );
}

#[test]
fn ignore_patterns_never_hide_the_root_through_its_own_name() {
    let policy = compiled(&entity(
        "www",
        "linux-file",
        "/var/www",
        r#"ignore = ["www"]"#,
    ));
    assert!(policy.entities[0].covers(Path::new("/var/www/index.html")));
    assert!(!policy.entities[0].covers(Path::new("/var/www/a/www/b")));
}

#[test]
fn ignore_star_stays_within_one_segment() {
    let policy = compiled(&entity(
        "www",
        "linux-file",
        "/var/www",
        r#"ignore = ["/var/www/*.log"]"#,
    ));
    let www = &policy.entities[0];
    assert!(www.is_ignored(Path::new("/var/www/a.log")));
    assert!(!www.is_ignored(Path::new("/var/www/sub/a.log")));
}

#[test]
fn the_most_specific_entity_wins() {
    let text = [
        linux("etc", "/etc"),
        linux("ssh", "/etc/ssh"),
        linux("conf", "/etc/*.conf"),
        entity("sshd", "file-content", "/etc/ssh/sshd_config", ""),
        linux("sshd-meta", "/etc/ssh/sshd_config"),
    ]
    .concat();
    let policy = compiled(&text);
    assert_eq!(owner(&policy, "/etc/passwd").as_deref(), Some("etc"));
    assert_eq!(owner(&policy, "/etc/ssh/moduli").as_deref(), Some("ssh"));
    // Same root: the wildcard is more specific than the plain directory.
    assert_eq!(owner(&policy, "/etc/host.conf").as_deref(), Some("conf"));
    // Same path, different kinds: file-content wins whatever the order.
    assert_eq!(
        owner(&policy, "/etc/ssh/sshd_config").as_deref(),
        Some("sshd")
    );
    assert!(policy
        .entity_for(Path::new("/etc/ssh/sshd_config"))
        .is_some_and(|e| e.keep_content));
    assert_eq!(owner(&policy, "/usr/bin/ls"), None);
}

#[test]
fn on_a_full_tie_the_first_entity_wins() {
    let text = linux("first", "/srv/*.a") + &linux("second", "/srv/*.b");
    let policy = compiled(&(text + &linux("third", "/srv/x*")));
    assert_eq!(owner(&policy, "/srv/x.a").as_deref(), Some("first"));
    assert_eq!(owner(&policy, "/srv/x.b").as_deref(), Some("second"));
}

/// Unix only: there names are bytes. A Windows name is UTF-16, and globset matches its lossy
/// UTF-8, so these bytes would be U+FFFD there.
#[cfg(unix)]
#[test]
fn non_utf8_paths_match_by_bytes() {
    use std::{ffi::OsStr, os::unix::ffi::OsStrExt};

    let text =
        linux("srv", "/srv") + &entity("logs", "linux-file", "/srv/*.log", r#"ignore = ["*.tmp"]"#);
    let policy = compiled(&text);
    let raw = |bytes: &[u8]| Path::new(OsStr::from_bytes(bytes)).to_path_buf();
    assert_eq!(
        policy
            .entity_for(&raw(b"/srv/\xff\xfe.log"))
            .map(|e| e.name.as_str()),
        Some("logs")
    );
    assert_eq!(
        policy
            .entity_for(&raw(b"/srv/\xff/x"))
            .map(|e| e.name.as_str()),
        Some("srv")
    );
    assert!(!policy.entities[1].covers(&raw(b"/srv/\xff.tmp")));
}

#[test]
fn compile_keeps_only_enabled_linux_entities_in_order() {
    let text = [
        linux("b", "/b"),
        entity("off", "linux-file", "/off", "enabled = false"),
        entity("win", "windows-file", r"C:\Windows\win.ini", ""),
        entity("content", "file-content", "/etc/motd", ""),
        linux("a", "/a/./x/../"),
    ]
    .concat();
    let policy = compiled(&text);
    let names: Vec<&str> = policy.entities.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["b", "content", "a"]);
    assert!(policy.entities[1].keep_content);
    assert!(!policy.entities[0].keep_content);
    assert_eq!(policy.entities[2].root, Path::new("/a"));
}

#[test]
fn environment_variables_are_expanded_at_compile_time() {
    let text = linux("data", "$FIM_TEST_DIR/x") + &linux("braced", "${FIM_TEST_DIR}y/*.db");
    let policy = compiled(&text);
    assert_eq!(policy.entities[0].root, Path::new("/srv/data/x"));
    assert_eq!(policy.entities[1].root, Path::new("/srv/datay"));
    assert!(policy.entities[1].covers(Path::new("/srv/datay/a.db")));
}

#[test]
fn recursion_defaults_follow_each_kinds_wildcards() {
    use crate::policy::EntityKind as K;
    assert!(K::LinuxFile.recursive_by_default("/etc"));
    assert!(K::LinuxFile.recursive_by_default("/etc/"));
    assert!(!K::LinuxFile.recursive_by_default("/etc/*.conf"));
    assert!(!K::LinuxFile.recursive_by_default("/etc/cron.{d,daily}/"));
    // `{` and `[` are no registry wildcards: a key with braces stays recursive.
    assert!(K::WindowsRegistry.recursive_by_default(r"HKLM\SOFTWARE\{5F2B}"));
    assert!(!K::WindowsRegistry.recursive_by_default(r"HKLM\SOFTWARE\Run*"));
    assert!(!K::WindowsFile.recursive_by_default(r"%SystemRoot%\System32\*.dll"));
    assert_eq!(
        K::names(),
        "linux-file, file-content, windows-file, windows-registry or windows-service"
    );
}

#[test]
fn registry_entities_compile_to_key_roots_with_the_long_hive_and_their_wildcard() {
    use crate::registry::{KeyRoot, RegistryView};
    let text = [
        entity(
            "run",
            "windows-registry",
            r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run\",
            "",
        ),
        entity(
            "services",
            "windows-registry",
            r"HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services\Net*",
            "",
        ),
        entity(
            "off",
            "windows-registry",
            r"HKLM\SOFTWARE\Off",
            "enabled = false",
        ),
        entity(
            "deep",
            "windows-registry",
            r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run\Deeper",
            "recursive = false",
        ),
        entity("etc", "linux-file", "/etc", ""),
    ]
    .concat();
    let policy = compiled(&text);
    let run = r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Run";
    assert_eq!(
        policy.registry,
        vec![
            KeyRoot {
                entity: "run".into(),
                key: run.into(),
                subkeys: None,
                recursive: true,
                view: RegistryView::Native,
            },
            KeyRoot {
                entity: "services".into(),
                key: r"HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services".into(),
                subkeys: Some("Net*".into()),
                recursive: false,
                view: RegistryView::Native,
            },
            KeyRoot {
                entity: "deep".into(),
                key: format!(r"{run}\Deeper"),
                subkeys: None,
                recursive: false,
                view: RegistryView::Native,
            },
        ]
    );
    assert_eq!(
        policy.entities.len(),
        1,
        "only the Linux entity is a file entity"
    );
    let entity_of = |key: &str| policy.key_root_for(key).map(|root| root.entity.as_str());
    assert_eq!(entity_of(&format!(r"{run}\deeper")), Some("deep"));
    assert_eq!(entity_of(&format!(r"{run}\Other\Sub")), Some("run"));
    assert_eq!(entity_of(&format!(r"{run}\Deeper\Sub")), Some("run"));
    assert_eq!(
        entity_of(r"hklm\SOFTWARE\Microsoft\Windows\CurrentVersion\Run"),
        Some("run"),
        "either hive spelling"
    );
    assert_eq!(
        entity_of(r"HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services\NetLogon"),
        Some("services")
    );
    assert_eq!(
        entity_of(r"HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services\Spooler"),
        None
    );
    assert_eq!(entity_of(r"HKEY_LOCAL_MACHINE\SOFTWARE\Off"), None);
}
