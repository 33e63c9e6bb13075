//! The assembler driven with hand-made records over a real directory tree: the events it
//! reports and the follow-ups it hands the event source.
use std::{
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    time::Instant,
};

use fim_common::event::{flag, op, path_flag, EventHeader, PathDesc, HEADER_SIZE, LOGINUID_UNSET};
use fim_engine::daemon::WatchRoot;

use super::{Assembler, Followup};
use crate::{
    record::{FileEvent, Operation, SourceItem},
    roots::plan_with_links,
};

const TID: u32 = 4242;

/// A fresh directory for one test, removed when it ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("fim-assemble-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(std::fs::canonicalize(&dir).unwrap())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A scratch directory with the root `watched` made in it.
fn watched(name: &str) -> (Scratch, PathBuf) {
    let scratch = Scratch::new(name);
    let root = scratch.0.join("watched");
    std::fs::create_dir_all(&root).unwrap();
    (scratch, root)
}

fn assembler_for(roots: &[&Path]) -> Assembler {
    let specs: Vec<WatchRoot> = roots.iter().map(WatchRoot::recursive).collect();
    Assembler::new(plan_with_links(&specs, &[]))
}

/// A record naming `paths` as a walk that reached `/` with the rest as the string.
fn record(op: u8, flags: u8, paths: &[&Path]) -> Vec<u8> {
    let mut header = EventHeader {
        op,
        flags,
        pid: TID,
        tgid: TID,
        ppid: 1,
        loginuid: LOGINUID_UNSET,
        ..Default::default()
    };
    let mut data = Vec::new();
    for (slot, path) in paths.iter().enumerate() {
        let text = path.as_os_str().as_bytes();
        header.paths[slot] = PathDesc {
            flags: path_flag::PRESENT | path_flag::REACHED_TOP,
            str_off: data.len() as u16,
            str_len: text.len() as u16,
            ..Default::default()
        };
        data.extend_from_slice(text);
    }
    header.data_len = data.len() as u32;
    let mut bytes = vec![0u8; HEADER_SIZE];
    // SAFETY: EventHeader is repr(C) plain data and `bytes` holds HEADER_SIZE bytes.
    unsafe { std::ptr::write_unaligned(bytes.as_mut_ptr().cast(), header) };
    bytes.extend_from_slice(&data);
    bytes
}

/// The syscall result of the thread's pending entry event.
fn result(value: i64) -> Vec<u8> {
    let header = EventHeader {
        op: op::SYSCALL_RESULT,
        pid: TID,
        tgid: TID,
        arg: value as u64,
        ..Default::default()
    };
    let mut bytes = vec![0u8; HEADER_SIZE];
    // SAFETY: as above.
    unsafe { std::ptr::write_unaligned(bytes.as_mut_ptr().cast(), header) };
    bytes
}

fn changes(ready: &[SourceItem]) -> Vec<&FileEvent> {
    ready
        .iter()
        .filter_map(|item| match item {
            SourceItem::Change(event) => Some(event),
            SourceItem::Gap(_) | SourceItem::Object(_) => None,
        })
        .collect()
}

#[test]
fn a_change_inside_a_root_needs_no_followup() {
    let (scratch, root) = watched("plain");
    let mut assembler = assembler_for(&[&root]);
    let mut ready = Vec::new();
    assembler.handle_record(&record(op::CHMOD, 0, &[&root.join("f")]), &mut ready);
    assembler.handle_record(
        &record(op::CHMOD, 0, &[&scratch.0.join("outside")]),
        &mut ready,
    );
    let events = changes(&ready);
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].op, &events[0].path),
        (Operation::Chmod, &root.join("f"))
    );
    assert_eq!(assembler.take_followups(), []);
}

#[test]
fn a_hard_link_is_registered_once_under_its_root() {
    let (_scratch, root) = watched("link");
    let (file, link) = (root.join("a"), root.join("b"));
    std::fs::write(&file, b"x").unwrap();
    // Linked after planning: a plan registers the links that exist already.
    let mut assembler = assembler_for(&[&root]);
    std::fs::hard_link(&file, &link).unwrap();
    let mut ready = Vec::new();
    assembler.handle_record(&record(op::LINK, 0, &[&file, &link]), &mut ready);
    let events = changes(&ready);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].op, Operation::Link);
    assert_eq!((&events[0].path, &events[0].old_path), (&link, &Some(file)));
    let followups = assembler.take_followups();
    assert_eq!(followups, [Followup::RegisterLink(events[0].clone())]);
    assert_eq!(assembler.take_followups(), [], "handed out once");

    let Followup::RegisterLink(made) = &followups[0] else {
        unreachable!()
    };
    let mut inserted = Vec::new();
    assembler.register_link(made, |key, entry| {
        inserted.push((*key, *entry));
        Ok::<_, String>(())
    });
    assert_eq!(inserted.len(), 1);
    assert_eq!(inserted[0].1.id, 1, "under root 1");
    assert!(assembler.plan().inodes.contains_key(&inserted[0].0));
    // The plan has the inode now: a second report of the same link writes nothing.
    assembler.register_link(made, |_, _| Err("written twice"));
}

#[test]
fn a_failed_link_registration_leaves_the_plan_alone() {
    let (_scratch, root) = watched("link-fails");
    std::fs::write(root.join("a"), b"x").unwrap();
    let mut assembler = assembler_for(&[&root]);
    std::fs::hard_link(root.join("a"), root.join("b")).unwrap();
    let mut ready = Vec::new();
    assembler.handle_record(
        &record(op::LINK, 0, &[&root.join("a"), &root.join("b")]),
        &mut ready,
    );
    let [Followup::RegisterLink(made)] = &assembler.take_followups()[..] else {
        panic!("no link to register");
    };
    let before = assembler.plan().inodes.len();
    let mut tried = false;
    assembler.register_link(made, |_, _| {
        tried = true;
        Err("map full")
    });
    assert!(tried);
    assert_eq!(assembler.plan().inodes.len(), before);
}

#[test]
fn creating_a_missing_root_asks_for_a_replan() {
    let scratch = Scratch::new("missing");
    let root = scratch.0.join("later");
    let mut assembler = assembler_for(&[&root]);
    assert!(!assembler.plan().roots[&1].exists);
    std::fs::create_dir(&root).unwrap();
    let mut ready = Vec::new();
    assembler.handle_record(&record(op::MKDIR, 0, &[&root]), &mut ready);
    assert_eq!(changes(&ready)[0].op, Operation::Mkdir);
    assert_eq!(
        assembler.take_followups(),
        [Followup::Replan(vec![WatchRoot::recursive(&root)])]
    );
    assert_eq!(assembler.take_followups(), []);
}

#[test]
fn an_entry_event_replans_only_once_its_syscall_succeeded() {
    let scratch = Scratch::new("awaits");
    let root = scratch.0.join("later");
    let mut assembler = assembler_for(&[&root]);
    let mkdir = record(op::MKDIR, flag::AWAITS_RESULT, &[&root]);
    let mut ready = Vec::new();

    assembler.handle_record(&mkdir, &mut ready);
    assert!(ready.is_empty(), "waits for the result");
    assert_eq!(assembler.take_followups(), []);
    assembler.handle_record(&result(-17), &mut ready);
    assert!(ready.is_empty(), "a failed mkdir changed nothing");
    assert_eq!(assembler.take_followups(), []);

    assembler.handle_record(&mkdir, &mut ready);
    assembler.handle_record(&result(0), &mut ready);
    let events = changes(&ready);
    assert_eq!(events.len(), 1);
    assert!(!events[0].result_unknown);
    assert!(matches!(
        &assembler.take_followups()[..],
        [Followup::Replan(_)]
    ));
}

#[test]
fn an_entry_event_without_a_result_is_reported_at_the_end() {
    let (_scratch, root) = watched("finish");
    let mut assembler = assembler_for(&[&root]);
    let mut ready = Vec::new();
    let unlink = record(op::UNLINK, flag::AWAITS_RESULT, &[&root.join("f")]);
    assembler.handle_record(&unlink, &mut ready);
    assembler.tick(Instant::now(), &mut ready);
    assert!(ready.is_empty(), "still within the wait");
    assembler.finish(&mut ready);
    let events = changes(&ready);
    assert_eq!(events.len(), 1);
    assert!(events[0].result_unknown);
}

#[test]
fn renaming_a_directory_above_a_root_moves_the_root_and_replans() {
    let scratch = Scratch::new("moved");
    let (app, moved) = (scratch.0.join("app"), scratch.0.join("app.old"));
    let root = app.join("conf");
    std::fs::create_dir_all(&root).unwrap();
    let mut assembler = assembler_for(&[&root]);
    let mut ready = Vec::new();
    assembler.handle_record(&record(op::RENAME, 0, &[&app, &moved]), &mut ready);
    let events = changes(&ready);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].op, Operation::Rename);
    assert_eq!(
        (&events[0].path, &events[0].old_path),
        (&moved.join("conf"), &Some(root.clone()))
    );
    assert_eq!(
        assembler.take_followups(),
        [Followup::Replan(vec![WatchRoot::recursive(&root)])]
    );
}

#[test]
fn a_symlink_into_the_roots_is_confirmed_on_a_tick_and_replans() {
    let (scratch, root) = watched("alias");
    let link = scratch.0.join("shortcut");
    let mut assembler = assembler_for(&[&root]);
    let mut ready = Vec::new();
    assembler.handle_record(
        &record(op::SYMLINK, flag::ALIAS, &[&link, &root]),
        &mut ready,
    );
    assert!(ready.is_empty());
    assert_eq!(assembler.take_followups(), [], "not made yet");
    std::os::unix::fs::symlink(&root, &link).unwrap();
    assembler.tick(Instant::now(), &mut ready);
    assert_eq!(assembler.symlink_aliases().len(), 1);
    assert!(matches!(
        &assembler.take_followups()[..],
        [Followup::Replan(_)]
    ));
}

#[test]
fn followups_come_links_first_then_the_replan() {
    let scratch = Scratch::new("order");
    let (root, later) = (scratch.0.join("watched"), scratch.0.join("later"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("a"), b"x").unwrap();
    std::fs::hard_link(root.join("a"), root.join("b")).unwrap();
    let mut assembler = assembler_for(&[&root, &later]);
    let mut ready = Vec::new();
    assembler.handle_record(&record(op::MKDIR, 0, &[&later]), &mut ready);
    assembler.handle_record(
        &record(op::LINK, 0, &[&root.join("a"), &root.join("b")]),
        &mut ready,
    );
    let followups = assembler.take_followups();
    assert!(
        matches!(
            &followups[..],
            [Followup::RegisterLink(_), Followup::Replan(roots)] if roots.len() == 2
        ),
        "{followups:?}"
    );
}

#[test]
fn a_plan_is_put_in_force_only_once_it_is_written() {
    let scratch = Scratch::new("replace");
    let (first, second) = (scratch.0.join("one"), scratch.0.join("two"));
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    let mut assembler = assembler_for(&[&first]);
    let specs = [WatchRoot::recursive(&first), WatchRoot::recursive(&second)];
    let both = assembler.plan_for(&specs);
    let refused = assembler.replace_plan(both, |current, next| {
        assert_eq!((current.roots.len(), next.roots.len()), (1, 2));
        Err("the map is full")
    });
    assert_eq!(refused, Err("the map is full"));
    assert_eq!(assembler.plan().roots.len(), 1, "the old plan stays");
    let written = assembler.replace_plan(assembler.plan_for(&specs), |_, _| Ok::<_, &str>(()));
    assert_eq!(written, Ok(Vec::new()));
    assert_eq!(assembler.plan().roots.len(), 2);
}
