//! Parsing and validation: every rule, with the exact `FILE:LINE:COLUMN: message` users see.
use std::path::Path;

use super::{entity, linux, parse_err, parse_ok, parse_text, warnings};
use crate::policy::{
    compile, default_policy, default_policy_toml, load, parse, EntityKind, Policy, PolicyError,
    Settings,
};

const FILE: &str = "/etc/fim/policy.toml";

#[test]
fn settings_default_when_absent_and_read_when_present() {
    assert_eq!(parse_ok("").policy, Policy::default());
    let text = "[settings]\nscan_workers = 3\nscan_bytes_per_second = 1000\nscan_idle_io = false\n\
                cross_filesystems = true\ncontent_limit = 10\nsweep_interval_secs = 60\n\
                rehash_interval_secs = 3600\ncoalesce_ms = 0\njournal_keep_days = 90\n\
                journal_keep_records = 1000000\njournal_hard_cap_records = 2000000\n";
    let expected = Settings {
        scan_workers: 3,
        scan_bytes_per_second: Some(1000),
        scan_idle_io: false,
        cross_filesystems: true,
        content_limit: 10,
        sweep_interval_secs: 60,
        rehash_interval_secs: 3600,
        coalesce_ms: 0,
        journal_keep_days: Some(90),
        journal_keep_records: Some(1_000_000),
        journal_hard_cap_records: Some(2_000_000),
    };
    assert_eq!(parse_ok(text).policy.settings, expected);
    let partial = parse_ok("settings = { coalesce_ms = 7 }\n").policy.settings;
    assert_eq!(
        partial,
        Settings {
            coalesce_ms: 7,
            ..Settings::default()
        }
    );
}

#[test]
fn entity_fields_take_their_defaults() {
    let text = linux("etc", "/etc") + &linux("conf", "/etc/ssh/*.conf");
    let policy = parse_ok(&text).policy;
    let etc = &policy.entities[0];
    assert_eq!(
        (etc.kind, etc.recursive, etc.enabled),
        (EntityKind::LinuxFile, true, true)
    );
    assert!(etc.ignore.is_empty());
    assert!(
        !policy.entities[1].recursive,
        "wildcard in the last segment"
    );
    let explicit = entity(
        "x",
        "file-content",
        "/x/*",
        "recursive = true\nenabled = false\nignore = ['a']",
    );
    let x = &parse_ok(&explicit).policy.entities[0];
    assert_eq!(
        (x.kind, x.recursive, x.enabled),
        (EntityKind::FileContent, true, false)
    );
    assert_eq!(x.ignore, ["a"]);
}

#[test]
fn syntax_errors_point_at_the_spot() {
    assert_eq!(
        parse_err("[[entity]]\nname = \"a\"\n[entity\n"),
        format!("{FILE}:3:8: invalid table header: expected `.`, `]`")
    );
    assert_eq!(
        parse_err("[settings]\ncoalesce_ms =\n"),
        format!("{FILE}:2:14: invalid string: expected `\"`, `'`")
    );
    // toml_edit gives no message for a value cut off by the end of the file.
    assert_eq!(
        parse_err("[settings]\ncoalesce_ms = "),
        format!("{FILE}:2:15: invalid TOML")
    );
    assert_eq!(
        parse_err("[settings]\ncoalesce_ms = 1\ncoalesce_ms = 2\n"),
        format!("{FILE}:3:1: duplicate key `coalesce_ms` in table `settings`")
    );
}

#[test]
fn unknown_keys_are_errors() {
    assert_eq!(
        parse_err("entities = 1\n"),
        format!("{FILE}:1:1: unknown key \"entities\" (expected \"settings\" or \"entity\")")
    );
    assert_eq!(
        parse_err("[settings]\nscan_worker = 2\n"),
        format!(
            "{FILE}:2:1: settings: unknown key \"scan_worker\" (expected scan_workers, \
             scan_bytes_per_second, scan_idle_io, cross_filesystems, content_limit, \
             sweep_interval_secs, rehash_interval_secs, coalesce_ms, journal_keep_days, \
             journal_keep_records, journal_hard_cap_records)"
        )
    );
    assert_eq!(
        parse_err(&entity("etc", "linux-file", "/etc", "  recurse = true")),
        format!(
            "{FILE}:5:3: entity \"etc\": unknown key \"recurse\" \
             (expected name, kind, path, recursive, enabled, ignore)"
        )
    );
}

#[test]
fn wrong_types_and_shapes_are_errors() {
    assert_eq!(
        parse_err("[settings]\nscan_workers = \"2\"\ncontent_limit = -1\nscan_idle_io = 1\n"),
        [
            format!("{FILE}:2:16: settings: \"scan_workers\" must be a non-negative integer, not a string"),
            format!("{FILE}:3:17: settings: \"content_limit\" must be a non-negative integer, not a negative integer"),
            format!("{FILE}:4:16: settings: \"scan_idle_io\" must be true or false, not an integer"),
        ]
        .join("\n")
    );
    assert_eq!(
        parse_err(&entity(
            "etc",
            "linux-file",
            "/etc",
            "recursive = \"yes\"\nignore = [1]"
        )),
        [
            format!(
                "{FILE}:5:13: entity \"etc\": \"recursive\" must be true or false, not a string"
            ),
            format!("{FILE}:6:11: entity \"etc\": ignore patterns must be strings"),
        ]
        .join("\n")
    );
    assert_eq!(
        parse_err("[entity]\nname = \"a\"\n"),
        format!("{FILE}:1:1: \"entity\" must be an array of tables ([[entity]])")
    );
    assert_eq!(
        parse_err("settings = 5\n"),
        format!("{FILE}:1:12: \"settings\" must be a table ([settings])")
    );
}

#[test]
fn out_of_range_settings_are_errors() {
    assert_eq!(
        parse_err("[settings]\nscan_bytes_per_second = 0\nsweep_interval_secs = 0\n"),
        [
            format!("{FILE}:2:25: settings: \"scan_bytes_per_second\" must be at least 1 (leave it out for no limit)"),
            format!("{FILE}:3:23: settings: \"sweep_interval_secs\" must be at least 1"),
        ]
        .join("\n")
    );
    let capped =
        parse_err("[settings]\njournal_keep_records = 100\njournal_hard_cap_records = 10\n");
    assert!(
        capped.ends_with(
            "settings: \"journal_hard_cap_records\" must be at least journal_keep_records (the \
             cap is what is kept when the workspace is unreachable, beyond the usual retention)"
        ),
        "{capped}"
    );
}

#[test]
fn unknown_kind_names_the_entity() {
    assert_eq!(
        parse_err(&entity("etc", "linux-files", "/etc", "")),
        format!(
            "{FILE}:3:8: entity \"etc\": unknown kind \"linux-files\" (expected one of linux-file, \
             file-content, windows-file, windows-registry or windows-service)"
        )
    );
}

#[test]
fn missing_and_empty_fields() {
    assert_eq!(
        parse_err("\n[[entity]]\nkind = \"linux-file\"\n"),
        [
            format!("{FILE}:2:1: entity #1: missing key \"name\""),
            format!("{FILE}:2:1: entity #1: missing key \"path\""),
        ]
        .join("\n")
    );
    assert_eq!(
        parse_err(&(linux("ok", "/ok") + &entity(" ", "linux-file", "", ""))),
        [
            format!("{FILE}:7:8: entity #2: name is empty"),
            format!("{FILE}:9:8: entity #2: path is empty"),
        ]
        .join("\n")
    );
}

#[test]
fn duplicate_names_are_errors() {
    let text = linux("etc", "/etc") + &linux("etc", "/usr");
    assert_eq!(
        parse_err(&text),
        format!("{FILE}:7:8: entity \"etc\": duplicate name")
    );
}

#[test]
fn a_wildcard_is_allowed_only_in_the_last_segment() {
    assert_eq!(
        parse_err(&linux("bad", "/etc/*/x.conf")),
        format!("{FILE}:4:8: entity \"bad\": wildcard only allowed in the last segment of \"/etc/*/x.conf\"")
    );
    assert_eq!(
        parse_err(&linux("bad", "/{a,b}/x")),
        format!("{FILE}:4:8: entity \"bad\": wildcard only allowed in the last segment of \"/{{a,b}}/x\"")
    );
    assert_eq!(
        parse_err(&linux("var", "$FIM_TEST_STAR/x")),
        format!(
            "{FILE}:4:8: entity \"var\": wildcard only allowed in the last segment of \
             \"$FIM_TEST_STAR/x\" (expanded: \"/srv/*/x\")"
        )
    );
    assert_eq!(
        parse_err(&entity("win", "windows-file", r"C:\*\x.dll", "")),
        format!(
            r#"{FILE}:4:8: entity "win": wildcard only allowed in the last segment of "C:\*\x.dll""#
        )
    );
    assert_eq!(
        parse_err(&linux("bad", "/etc/[a")),
        format!("{FILE}:4:8: entity \"bad\": invalid wildcard \"[a\" in path \"/etc/[a\": unclosed character class; missing ']'")
    );
    // Wildcard in the last segment, braces inside ${...}: fine.
    parse_ok(&(linux("ok", "/etc/*.conf") + &linux("var", "${FIM_TEST_DIR}/*.{db,log}")));
}

#[test]
fn invalid_ignore_patterns_are_errors() {
    let extra = "ignore = [\"*.ok\",\n  \"{a\", \"\"]";
    assert_eq!(
        parse_err(&entity("etc", "linux-file", "/etc", extra)),
        [
            format!("{FILE}:6:3: entity \"etc\": invalid ignore pattern \"{{a\": unclosed alternate group; missing '}}' (maybe escape '{{' with '[{{]'?)"),
            format!("{FILE}:6:9: entity \"etc\": ignore pattern is empty"),
        ]
        .join("\n")
    );
}

#[test]
fn linux_paths_must_be_absolute() {
    assert_eq!(
        parse_err(&entity("rel", "file-content", "etc/motd", "")),
        format!("{FILE}:4:8: entity \"rel\": path \"etc/motd\" is not absolute (Linux paths start with \"/\")")
    );
    assert_eq!(
        parse_err(&linux("rel", "$FIM_TEST_REL")),
        format!(
            "{FILE}:4:8: entity \"rel\": path \"$FIM_TEST_REL\" (expanded: \"srv/data\") is not \
             absolute (Linux paths start with \"/\")"
        )
    );
}

#[test]
fn unset_or_malformed_variables_are_errors() {
    assert_eq!(
        parse_err(&linux("home", "$FIM_TEST_UNSET/.ssh")),
        format!("{FILE}:4:8: entity \"home\": environment variable \"FIM_TEST_UNSET\" is not set (in path \"$FIM_TEST_UNSET/.ssh\")")
    );
    assert_eq!(
        parse_err(&linux("home", "${FIM_TEST_DIR/x")),
        format!("{FILE}:4:8: entity \"home\": unterminated \"${{\" in path \"${{FIM_TEST_DIR/x\"")
    );
    assert_eq!(
        parse_err(&linux("home", "/${A.B}/x")),
        format!("{FILE}:4:8: entity \"home\": invalid variable name \"${{A.B}}\" in path \"/${{A.B}}/x\"")
    );
    // Windows kinds are not expanded here: %VAR% and $ are the companion's business.
    parse_ok(&entity(
        "win",
        "windows-file",
        r"%SystemRoot%\$x\win.ini",
        "",
    ));
}

#[test]
fn identical_entities_of_one_kind_overlap() {
    let text = linux("conf", "/etc/*.conf") + &linux("conf2", "/etc/./*.conf/");
    assert_eq!(
        parse_err(&text),
        format!(
            "{FILE}:9:8: entity \"conf2\": overlapping entities: \"conf\" has the same kind and \
             path \"/etc/*.conf\""
        )
    );
    let windows = entity("a", "windows-registry", r"HKLM\Software\Run", "")
        + &entity("b", "windows-registry", r"hklm\SOFTWARE\Run\", "");
    assert_eq!(
        parse_err(&windows),
        format!(
            r#"{FILE}:9:8: entity "b": overlapping entities: "a" has the same kind and path "hklm\SOFTWARE\Run\""#
        )
    );
    // A disabled twin, or a different kind, is no error.
    parse_ok(&(linux("a", "/x") + &entity("b", "linux-file", "/x", "enabled = false")));
    parse_ok(&(linux("a", "/x") + &entity("b", "file-content", "/x", "")));
}

#[test]
fn nested_and_shared_roots_are_warnings_naming_both() {
    let text = [
        linux("etc", "/etc"),
        linux("ssh", "/etc/ssh"),
        linux("conf", "/etc/*.conf"),
        linux("crontab", "/etc/crontab"),
        linux("logs", "/var/log/*.log"),
        linux("log-dir", "/var/log/app"),
    ]
    .concat();
    assert_eq!(
        warnings(&text),
        [
            format!("{FILE}:9:8: warning: entity \"ssh\" (\"/etc/ssh\") is nested inside entity \"etc\" (\"/etc\"); paths in both belong to \"ssh\""),
            format!("{FILE}:14:8: warning: entities \"etc\" (\"/etc\") and \"conf\" (\"/etc/*.conf\") overlap; paths in both belong to \"conf\""),
            format!("{FILE}:19:8: warning: entity \"crontab\" (\"/etc/crontab\") is nested inside entity \"etc\" (\"/etc\"); paths in both belong to \"crontab\""),
        ]
    );
}

/// The overlap check is indexed by root (it was all pairs, 380 s for 20,000 entities): a large
/// policy still gets every warning, exactly once, and unrelated siblings get none.
#[test]
fn a_large_policy_gets_exactly_its_overlap_warnings() {
    let mut parts = vec![linux("srv", "/srv")];
    for index in 0..2000 {
        parts.push(linux(&format!("app{index}"), &format!("/srv/app{index}")));
    }
    for index in 0..2000 {
        parts.push(linux(
            &format!("other{index}"),
            &format!("/opt/other{index}"),
        ));
    }
    parts.push(linux("conf", "/opt/other7/*.conf"));
    let text = parts.concat();
    let found = warnings(&text);
    let mut expected: Vec<String> = (0..2000)
        .map(|index| {
            format!(
                "{FILE}:{}:8: warning: entity \"app{index}\" (\"/srv/app{index}\") is nested inside entity \"srv\" (\"/srv\"); paths in both belong to \"app{index}\"",
                9 + 5 * index
            )
        })
        .collect();
    expected.push(format!(
        "{FILE}:{}:8: warning: entities \"other7\" (\"/opt/other7\") and \"conf\" (\"/opt/other7/*.conf\") overlap; paths in both belong to \"conf\"",
        9 + 5 * 4000
    ));
    assert_eq!(
        found.len(),
        expected.len(),
        "{:?}",
        &found[..found.len().min(3)]
    );
    assert_eq!(found, expected);
}

#[test]
fn overly_general_paths_are_warnings() {
    let text = [
        linux("root", "/"),
        linux("top", "/*"),
        entity("drive", "windows-file", r"C:\*.*", ""),
        entity("hive", "windows-registry", "HKLM", ""),
    ]
    .concat();
    assert_eq!(
        warnings(&text),
        [
            format!("{FILE}:4:8: warning: entity \"root\": path \"/\" is overly general"),
            format!("{FILE}:9:8: warning: entity \"top\": path \"/*\" is overly general"),
            format!("{FILE}:9:8: warning: entities \"root\" (\"/\") and \"top\" (\"/*\") overlap; paths in both belong to \"top\""),
            format!(r#"{FILE}:14:8: warning: entity "drive": path "C:\*.*" is overly general"#),
            format!(r#"{FILE}:19:8: warning: entity "hive": path "HKLM" is overly general"#),
        ]
    );
    // A wildcard at the top that is neither `*` nor recursive is narrow enough.
    assert!(warnings(&linux("dot", "/*.conf")).is_empty());
}

#[test]
fn windows_kinds_are_checked_loosely() {
    let text = [
        entity("f", "windows-file", "/etc/x", ""),
        entity("r", "windows-registry", r"SOFTWARE\x", ""),
        entity("s", "windows-service", r"a\b", ""),
    ]
    .concat();
    assert_eq!(
        parse_err(&text),
        [
            format!(r#"{FILE}:4:8: entity "f": "/etc/x" is not a Windows file path (a drive such as C:\ or a share such as \\server\share)"#),
            format!(r#"{FILE}:9:8: entity "r": "SOFTWARE\x" is not a registry key starting with a hive such as HKLM\"#),
            format!(r#"{FILE}:14:8: entity "s": "a\b" is not a service name (no \ or /, at most 256 characters)"#),
        ]
        .join("\n")
    );
    let guid = r"HKLM\SOFTWARE\Microsoft\Cryptography\OID\EncodingType 0\CryptSIPDllRemoveSignedDataMsg\{C689AAB8-8E78-11D0-8C47-00C04FC295EE}";
    let policy = parse_ok(&entity("reg", "windows-registry", guid, "")).policy;
    assert!(
        policy.entities[0].recursive,
        "braces are not registry wildcards"
    );
    assert!(compile(&policy).is_ok_and(|compiled| compiled.entities.is_empty()));
}

#[test]
fn a_path_that_does_not_exist_validates() {
    parse_ok(&linux("gone", "/nonexistent/fim/test/path"));
}

#[test]
fn compile_rejects_an_invalid_policy_built_in_code() {
    let mut policy = default_policy();
    policy.entities[1].name = "bin-login".into();
    policy.entities[2].path = "/etc/*/x".into();
    policy.entities[3].path = "$FIM_TEST_UNSET_VARIABLE/bin".into();
    let err = compile(&policy).err().map(|err| err.to_string());
    assert_eq!(
        err.as_deref(),
        Some(
            "entity \"bin-login\": duplicate name\n\
             entity \"etc-conf\": wildcard only allowed in the last segment of \"/etc/*/x\"\n\
             entity \"usr-bin\": environment variable \"FIM_TEST_UNSET_VARIABLE\" is not set \
             (in path \"$FIM_TEST_UNSET_VARIABLE/bin\")"
        )
    );
}

#[test]
fn the_defaults_validate_and_round_trip_through_the_file_format() {
    let policy = default_policy();
    assert_eq!(policy.entities.len(), 18);
    assert!(policy
        .entities
        .iter()
        .all(|e| e.enabled && e.kind == EntityKind::LinuxFile));
    let text = default_policy_toml();
    let parsed = parse(&text, Path::new("default.toml")).expect("defaults parse");
    assert_eq!(parsed.policy, policy);
    let names: Vec<&str> = policy.entities.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "bin-login",
            "bin-passwd",
            "etc-conf",
            "usr-bin",
            "usr-sbin",
            "bin",
            "sbin",
            "boot",
            "usr-local-bin",
            "usr-local-sbin",
            "opt-bin",
            "opt-sbin",
            "etc-crontab",
            "etc-init-d",
            "etc-cron-hourly",
            "etc-cron-daily",
            "etc-cron-weekly",
            "etc-cron-monthly",
        ]
    );
    let warned: Vec<String> = parsed.warnings.iter().map(|w| w.message.clone()).collect();
    assert_eq!(
        warned,
        [
            "entity \"bin-login\" (\"/bin/login\") is nested inside entity \"bin\" (\"/bin\"); paths in both belong to \"bin-login\"",
            "entity \"bin-passwd\" (\"/bin/passwd\") is nested inside entity \"bin\" (\"/bin\"); paths in both belong to \"bin-passwd\"",
        ]
    );
    let compiled = super::compile_for(
        &policy,
        &crate::policy::paths::process_env,
        super::FileKinds::Linux,
    )
    .expect("defaults compile");
    assert_eq!(compiled.entities.len(), 18);
    assert!(text.starts_with("# fim policy"));
}

#[test]
fn the_example_file_parses_and_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy.example.toml");
    let parsed = load(&path).expect("policy.example.toml is valid");
    assert_eq!(
        parsed.policy.settings,
        Settings::default(),
        "the example shows the defaults"
    );
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let kinds: Vec<EntityKind> = parsed.policy.entities.iter().map(|e| e.kind).collect();
    for kind in EntityKind::ALL {
        assert!(kinds.contains(&kind), "the example shows {kind:?}");
    }
    compile(&parsed.policy).expect("the example compiles");
}

#[test]
fn load_reports_unreadable_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("none.toml");
    let err = load(&missing).expect_err("missing file");
    assert!(matches!(err, PolicyError::Read { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            // The OS's own words for "not found" (ENOENT, ERROR_FILE_NOT_FOUND: both 2).
            "cannot read policy {}: {}",
            crate::path_text::display_path(&missing),
            std::io::Error::from_raw_os_error(2)
        )
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[entity]]\nname = 'x'\nkind = 'linux-file'\npath = 'x'\n",
    )
    .expect("write");
    assert_eq!(
        load(&bad).expect_err("relative").to_string(),
        format!(
            "{}:4:8: entity \"x\": path \"x\" is not absolute (Linux paths start with \"/\")",
            crate::path_text::display_path(&bad)
        )
    );
    assert!(parse_text("").is_ok());
}

#[test]
fn a_nul_byte_in_a_path_is_an_error_at_its_place() {
    assert_eq!(
        parse_err("[[entity]]\nname = \"a\"\nkind = \"linux-file\"\npath = \"/etc/a\\u0000b\"\n"),
        format!("{FILE}:4:8: entity \"a\": path contains a NUL byte")
    );
}

#[test]
fn settings_have_upper_bounds() {
    assert_eq!(
        parse_err("[settings]\ncoalesce_ms = 60001\n"),
        format!("{FILE}:2:15: settings: \"coalesce_ms\" must be at most 60000 (1 minute)")
    );
    assert_eq!(
        parse_err("[settings]\nscan_workers = 257\n"),
        format!("{FILE}:2:16: settings: \"scan_workers\" must be at most 256 (0 = automatic)")
    );
    assert_eq!(
        parse_err("[settings]\nrehash_interval_secs = 31536001\n"),
        format!(
            "{FILE}:2:24: settings: \"rehash_interval_secs\" must be at most 31536000 (1 year)"
        )
    );
    parse_ok("[settings]\ncoalesce_ms = 60000\nscan_workers = 256\ncontent_limit = 67108864\n");
}

#[test]
fn the_windows_defaults_validate_and_compile_every_recommended_key_recursively() {
    let policy = crate::policy::windows_default_policy();
    let compiled = compile(&policy).expect("the Windows defaults compile");
    assert_eq!(compiled.registry.len(), 29);
    assert!(compiled.registry.iter().all(|root| root.recursive));
    assert!(compiled
        .registry
        .iter()
        .all(|root| root.key.starts_with(r"HKEY_LOCAL_MACHINE\")));
    assert!(compiled.registry.iter().any(|root| root.key
        == r"HKEY_LOCAL_MACHINE\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Run"));
    assert_eq!(
        policy
            .entities
            .iter()
            .filter(|entity| entity.kind == EntityKind::WindowsFile)
            .count(),
        9
    );
    // Windows files are the companion's: compiled on Windows only.
    let files = if cfg!(windows) { 9 } else { 0 };
    assert_eq!(compiled.entities.len(), files);
}
