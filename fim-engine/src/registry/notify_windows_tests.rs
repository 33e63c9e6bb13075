//! [`KeyNotifier`] against the real registry (run under Wine by `cargo xtask wine-test`), keys
//! written with raw Win32 calls by the reader tests' guard.
use std::time::{Duration, Instant};

use windows_sys::Win32::System::Registry::REG_DWORD;

use super::*;
use crate::registry::read_windows::tests::{under_wine, TestKey};

const ONE: Option<&[u8]> = Some(&[1, 0, 0, 0]);

fn notifier(key: &str, subtree: bool) -> KeyNotifier {
    let mut notifier = KeyNotifier::open(key, RegistryView::Native, subtree)
        .unwrap()
        .expect("the key exists");
    notifier.arm().unwrap();
    notifier
}

#[test]
fn a_change_from_another_thread_wakes_the_wait() {
    let t = TestKey::new("notify-changed");
    let watch = notifier(&t.key(), false);
    let started = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            t.set("", "v", REG_DWORD, ONE);
        });
        assert_eq!(
            watch.wait(Duration::from_secs(5)).unwrap(),
            Notified::Changed
        );
    });
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    // Auto-reset and one-shot: nothing more until re-armed.
    assert_eq!(
        watch.wait(Duration::from_millis(100)).unwrap(),
        Notified::TimedOut
    );
}

#[test]
fn nothing_changing_times_out() {
    let t = TestKey::new("notify-quiet");
    let watch = notifier(&t.key(), true);
    let started = Instant::now();
    assert_eq!(
        watch.wait(Duration::from_millis(300)).unwrap(),
        Notified::TimedOut
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_subtree_watch_sees_changes_two_levels_down() {
    let t = TestKey::new("notify-subtree");
    t.create("a\\b");
    let watch = notifier(&t.key(), true);
    t.set("a\\b", "deep", REG_DWORD, ONE);
    assert_eq!(
        watch.wait(Duration::from_secs(5)).unwrap(),
        Notified::Changed
    );
}

#[test]
fn a_key_only_watch_ignores_changes_two_levels_down() {
    let t = TestKey::new("notify-flat");
    t.create("a\\b");
    let watch = notifier(&t.key(), false);
    t.set("a\\b", "deep", REG_DWORD, ONE);
    assert_eq!(
        watch.wait(Duration::from_millis(500)).unwrap(),
        Notified::TimedOut
    );
    // Still armed: a change of the key itself fires.
    t.set("", "own", REG_DWORD, ONE);
    assert_eq!(
        watch.wait(Duration::from_secs(5)).unwrap(),
        Notified::Changed
    );
}

#[test]
fn re_arming_catches_the_next_change() {
    let t = TestKey::new("notify-rearm");
    let mut watch = notifier(&t.key(), false);
    t.set("", "first", REG_DWORD, ONE);
    assert_eq!(
        watch.wait(Duration::from_secs(5)).unwrap(),
        Notified::Changed
    );
    watch.arm().unwrap();
    t.create("NewChild");
    assert_eq!(
        watch.wait(Duration::from_secs(5)).unwrap(),
        Notified::Changed
    );
}

#[test]
fn deleting_the_watched_key_fires() {
    let t = TestKey::new("notify-delete");
    t.create("watched\\below");
    let key = t.sub("watched");
    let mut watch = notifier(&key, false);
    t.delete_tree("watched");
    assert_eq!(
        watch.wait(Duration::from_secs(5)).unwrap(),
        Notified::Changed
    );
    // The handle is now a deleted key's: arming it again fails, and re-opening finds nothing.
    match watch.arm() {
        Err(RegistryError::Os { code, .. }) => assert_eq!(code, 1018, "ERROR_KEY_DELETED"),
        other => panic!("{other:?}"),
    }
    assert!(KeyNotifier::open(&key, RegistryView::Native, false)
        .unwrap()
        .is_none());
}

#[test]
fn wait_any_names_the_key_that_changed() {
    let t = TestKey::new("notify-any");
    t.create("one");
    t.create("two");
    let one = notifier(&t.sub("one"), false);
    let two = notifier(&t.sub("two"), false);
    assert_eq!(
        wait_any(&[&one, &two], Duration::from_millis(200)).unwrap(),
        None
    );
    t.set("two", "v", REG_DWORD, ONE);
    assert_eq!(
        wait_any(&[&one, &two], Duration::from_secs(5)).unwrap(),
        Some(1)
    );
    assert_eq!(wait_any(&[], Duration::from_millis(10)).unwrap(), None);
}

#[test]
fn wait_any_refuses_more_than_64_keys() {
    let t = TestKey::new("notify-many");
    let many: Vec<KeyNotifier> = (0..=MAX_WAIT).map(|_| notifier(&t.key(), false)).collect();
    let refs: Vec<&KeyNotifier> = many.iter().collect();
    match wait_any(&refs, Duration::from_millis(10)) {
        Err(RegistryError::Os { code, message, .. }) => {
            assert_eq!(code, 87);
            assert!(message.contains("64"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        wait_any(&refs[..MAX_WAIT], Duration::from_millis(10)).unwrap(),
        None
    );
}

#[test]
fn opening_a_missing_key_or_no_hive() {
    let t = TestKey::new("notify-missing");
    let missing = KeyNotifier::open(&t.sub("absent"), RegistryView::Native, true).unwrap();
    assert!(missing.is_none());
    assert!(matches!(
        KeyNotifier::open("Software\\x", RegistryView::Native, true),
        Err(RegistryError::NoHive { .. })
    ));
    let short = KeyNotifier::open(
        &format!("HKCU\\{}", &t.key()["HKEY_CURRENT_USER\\".len()..]),
        RegistryView::Native,
        false,
    )
    .unwrap()
    .expect("the short hive spelling opens the key");
    assert!(short.key().starts_with("HKCU\\"));
}

#[test]
fn a_security_change_fires() {
    let t = TestKey::new("notify-security");
    let watch = notifier(&t.key(), false);
    t.set_dacl("", "D:(A;;KA;;;BA)(A;;KR;;;WD)");
    // Wine 8.0 does not notify REG_NOTIFY_CHANGE_SECURITY (RegSetKeySecurity changes the
    // descriptor silently), so under Wine a DACL change is only seen by the next read.
    let (wanted, timeout) = if under_wine() {
        (Notified::TimedOut, Duration::from_millis(500))
    } else {
        (Notified::Changed, Duration::from_secs(5))
    };
    assert_eq!(watch.wait(timeout).unwrap(), wanted);
    // Still armed under Wine: the next value change fires.
    t.set("", "v", REG_DWORD, ONE);
    if wanted == Notified::TimedOut {
        assert_eq!(
            watch.wait(Duration::from_secs(5)).unwrap(),
            Notified::Changed
        );
    }
}
