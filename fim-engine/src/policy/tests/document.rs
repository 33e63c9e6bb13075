//! Editing through `PolicyDocument`: comments survive, invalid policies are never written.
use std::{fs, path::Path};

use crate::policy::{
    default_policy, default_policy_toml, Entity, EntityKind, EntityPatch, PolicyDocument,
    PolicyError,
};

const ORIGINAL: &str = "\
# My policy. Keep this comment.
[settings]
coalesce_ms = 20 # tuned for the build server

# System binaries.
[[entity]]
name = \"usr-bin\"
kind = \"linux-file\"
path = \"/usr/bin\"   # all of it

# Web content, noisy.
[[entity]]
name = \"www\"
kind = \"linux-file\"
path = \"/var/www\"
ignore = [\"*.swp\"]

# To be removed.
[[entity]]
name = \"old\"
kind = \"linux-file\"
path = \"/old\"
# Trailing comment.
";

fn write_policy(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("policy.toml");
    fs::write(&path, text).expect("write policy");
    path
}

fn new_entity(name: &str, kind: EntityKind, path: &str) -> Entity {
    Entity {
        name: name.into(),
        kind,
        path: path.into(),
        recursive: !path.contains('*'),
        enabled: true,
        ignore: Vec::new(),
    }
}

/// The directory's entries, to show no temp file is left behind.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn edits_keep_comments_and_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_policy(dir.path(), ORIGINAL);
    let mut document = PolicyDocument::load(&path).expect("load");
    document.set_enabled("www", false).expect("disable");
    let patch = EntityPatch {
        path: Some("/usr/local/bin".into()),
        ..EntityPatch::default()
    };
    document.edit("usr-bin", patch).expect("edit path");
    document.remove("old").expect("remove");
    let mut sshd = new_entity("sshd", EntityKind::FileContent, "/etc/ssh/sshd_config");
    sshd.ignore = vec!["*.bak".into()];
    document.add(sshd).expect("add");
    let parsed = document.save().expect("save");
    assert!(parsed.warnings.is_empty());
    let expected = "\
# My policy. Keep this comment.
[settings]
coalesce_ms = 20 # tuned for the build server

# System binaries.
[[entity]]
name = \"usr-bin\"
kind = \"linux-file\"
path = \"/usr/local/bin\"   # all of it

# Web content, noisy.
[[entity]]
name = \"www\"
kind = \"linux-file\"
path = \"/var/www\"
ignore = [\"*.swp\"]
enabled = false

[[entity]]
name = \"sshd\"
kind = \"file-content\"
path = \"/etc/ssh/sshd_config\"
ignore = [\"*.bak\"]
# Trailing comment.
";
    assert_eq!(fs::read_to_string(&path).expect("read back"), expected);
    assert_eq!(entries(dir.path()), ["policy.toml"]);
    let names: Vec<&str> = parsed
        .policy
        .entities
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, ["usr-bin", "www", "sshd"]);
    assert!(!parsed.policy.entities[1].enabled);
    assert_eq!(parsed.policy.settings.coalesce_ms, 20);
}

#[test]
fn implicit_recursive_follows_the_path_and_explicit_values_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_policy(dir.path(), ORIGINAL);
    let mut document = PolicyDocument::load(&path).expect("load");
    let to_wildcard = EntityPatch {
        path: Some("/usr/bin/*.sh".into()),
        ..EntityPatch::default()
    };
    document.edit("usr-bin", to_wildcard).expect("edit");
    let parsed = document.parsed().expect("valid");
    assert!(
        !parsed.policy.entities[0].recursive,
        "default for a wildcard"
    );
    // Setting the default value adds nothing; a non-default value is written.
    let recursive = |value| EntityPatch {
        recursive: Some(value),
        ..EntityPatch::default()
    };
    document.edit("usr-bin", recursive(false)).expect("edit");
    assert!(!document.text().contains("recursive"));
    document.edit("usr-bin", recursive(true)).expect("edit");
    assert!(document
        .text()
        .contains("path = \"/usr/bin/*.sh\"   # all of it\nrecursive = true\n"));
    // Enabling an entity that is enabled by default writes nothing either.
    document.set_enabled("old", true).expect("enable");
    assert!(!document.text().contains("enabled"));
}

#[test]
fn renames_and_ignore_lists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_policy(dir.path(), ORIGINAL);
    let mut document = PolicyDocument::load(&path).expect("load");
    let patch = EntityPatch {
        name: Some("web".into()),
        kind: Some(EntityKind::FileContent),
        ignore: Some(Vec::new()),
        ..EntityPatch::default()
    };
    document.edit("www", patch).expect("rename");
    let parsed = document.save().expect("save");
    let web = &parsed.policy.entities[1];
    assert_eq!(
        (web.name.as_str(), web.kind),
        ("web", EntityKind::FileContent)
    );
    assert!(web.ignore.is_empty());
    assert!(fs::read_to_string(&path)
        .expect("read")
        .contains("# Web content, noisy.\n[[entity]]\nname = \"web\"\nkind = \"file-content\"\npath = \"/var/www\"\n\n"));
}

#[test]
fn unknown_and_duplicate_names_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_policy(dir.path(), ORIGINAL);
    let mut document = PolicyDocument::load(&path).expect("load");
    let err = document.set_enabled("nope", true).expect_err("unknown");
    assert!(matches!(err, PolicyError::NotFound(_)));
    assert_eq!(err.to_string(), "no entity named \"nope\"");
    assert_eq!(
        document.remove("nope").expect_err("unknown").to_string(),
        "no entity named \"nope\""
    );
    let twin = new_entity("www", EntityKind::LinuxFile, "/srv");
    assert_eq!(
        document.add(twin).expect_err("duplicate").to_string(),
        "an entity named \"www\" already exists"
    );
    let rename = EntityPatch {
        name: Some("usr-bin".into()),
        ..EntityPatch::default()
    };
    assert_eq!(
        document
            .edit("www", rename)
            .expect_err("duplicate")
            .to_string(),
        "an entity named \"usr-bin\" already exists"
    );
    assert_eq!(document.text(), ORIGINAL, "failed edits change nothing");
}

#[test]
fn an_invalid_policy_is_never_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_policy(dir.path(), ORIGINAL);
    let mut document = PolicyDocument::load(&path).expect("load");
    document
        .add(new_entity("bad", EntityKind::LinuxFile, "/etc/*/x"))
        .expect("add");
    let err = document.save().expect_err("invalid");
    assert_eq!(
        err.to_string(),
        format!(
            "{}:27:8: entity \"bad\": wildcard only allowed in the last segment of \"/etc/*/x\"",
            crate::path_text::display_path(&path)
        )
    );
    assert_eq!(fs::read_to_string(&path).expect("read"), ORIGINAL);
    assert_eq!(entries(dir.path()), ["policy.toml"]);
}

#[test]
fn an_invalid_file_is_not_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_policy(
        dir.path(),
        "[[entity]]\nname = 'a'\nkind = 'linux-file'\npath = '/a'\nbogus = 1\n",
    );
    let err = PolicyDocument::load(&path).expect_err("invalid");
    assert_eq!(
        err.to_string(),
        format!(
            "{}:5:1: entity \"a\": unknown key \"bogus\" (expected name, kind, path, recursive, enabled, ignore)",
            crate::path_text::display_path(&path)
        )
    );
}

#[test]
fn the_first_save_creates_the_file_from_the_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("etc/fim/policy.toml");
    let mut document = PolicyDocument::load_or_default(&path).expect("defaults");
    assert_eq!(document.text(), default_policy_toml());
    document
        .add(new_entity("motd", EntityKind::FileContent, "/etc/motd"))
        .expect("add");
    let parsed = document.save().expect("save");
    let mut expected = default_policy();
    expected
        .entities
        .push(new_entity("motd", EntityKind::FileContent, "/etc/motd"));
    assert_eq!(parsed.policy, expected);
    let written = fs::read_to_string(&path).expect("created");
    assert_eq!(
        written,
        format!(
            "{}\n[[entity]]\nname = \"motd\"\nkind = \"file-content\"\npath = \"/etc/motd\"\n",
            default_policy_toml()
        )
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }
    // The second time it is loaded from the file.
    let again = PolicyDocument::load_or_default(&path).expect("load");
    assert_eq!(again.text(), written);
}

/// Unix only: modes, and symlinks anyone may make.
#[cfg(unix)]
#[test]
fn saving_keeps_the_mode_and_a_symlink() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().expect("tempdir");
    let real = write_policy(dir.path(), ORIGINAL);
    fs::set_permissions(&real, fs::Permissions::from_mode(0o600)).expect("chmod");
    let link = dir.path().join("link.toml");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let mut document = PolicyDocument::load(&link).expect("load");
    document.remove("old").expect("remove");
    document.save().expect("save");
    assert!(fs::symlink_metadata(&link)
        .expect("meta")
        .file_type()
        .is_symlink());
    assert!(!fs::read_to_string(&real).expect("read").contains("/old"));
    let mode = fs::metadata(&real).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
