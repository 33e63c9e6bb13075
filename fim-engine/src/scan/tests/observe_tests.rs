//! `observe`: one path, every file type, content, xattrs, races.
use std::{
    fs::{self, File},
    io::Write,
    os::unix::{fs::symlink, fs::MetadataExt, fs::PermissionsExt, net::UnixListener},
    path::Path,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use super::{is_root, mkfifo, run, skip_unless_root, tool_available};
use crate::{
    scan::{observe, ObserveOptions},
    state::{FileState, FileType},
};

fn observe_default(path: &Path) -> FileState {
    observe(path, &ObserveOptions::default())
        .expect("observe")
        .expect("exists")
}

/// Deterministic, incompressible-looking bytes.
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|index| (index as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2] ^ seed)
        .collect()
}

#[test]
fn regular_file_state_is_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("file");
    fs::write(&path, b"hello world\n").expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
    let meta = fs::symlink_metadata(&path).expect("lstat");
    let state = observe_default(&path);
    assert_eq!(
        state,
        FileState {
            file_type: FileType::Regular,
            size: 12,
            mode: 0o640,
            uid: meta.uid(),
            gid: meta.gid(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            ino: meta.ino(),
            dev: meta.dev(),
            nlink: 1,
            symlink_target: None,
            hash: Some(*blake3::hash(b"hello world\n").as_bytes()),
            acl: None,
            selinux: None,
            capability: None,
            attributes: 0,
            content: None,
            content_truncated: false,
            error: None,
            unstable: false,
        }
    );
    // SAFETY: geteuid has no preconditions.
    assert_eq!(state.uid, unsafe { libc::geteuid() });
}

#[test]
fn directory_state_is_metadata_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dir");
    fs::create_dir(&path).expect("mkdir");
    fs::create_dir(path.join("child")).expect("mkdir");
    fs::write(path.join("file"), b"x").expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o1750)).expect("chmod");
    let meta = fs::symlink_metadata(&path).expect("lstat");
    let state = observe_default(&path);
    assert_eq!(state.file_type, FileType::Directory);
    assert_eq!(state.mode, 0o1750);
    assert_eq!((state.nlink, state.size), (3, meta.size()));
    assert_eq!((state.ino, state.dev), (meta.ino(), meta.dev()));
    assert_eq!(
        (state.hash, state.symlink_target, state.error),
        (None, None, None)
    );
}

#[test]
fn large_and_empty_files_hash_like_blake3() {
    let dir = tempfile::tempdir().expect("tempdir");
    for len in [0, 1, 65_535, 65_536, 65_537, (3 << 20) + 17] {
        let content = pattern(len, 7);
        let path = dir.path().join(format!("f{len}"));
        fs::write(&path, &content).expect("write");
        let state = observe_default(&path);
        assert_eq!(state.size, len as u64);
        assert_eq!(
            state.hash,
            Some(*blake3::hash(&content).as_bytes()),
            "{len}"
        );
        assert!(!state.unstable);
    }
}

#[test]
fn content_is_kept_up_to_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big");
    let content = pattern((2 << 20) + 5, 1);
    fs::write(&path, &content).expect("write");
    for (limit, truncated) in [(1000, true), ((2 << 20) + 5, false), (u64::MAX, false)] {
        let options = ObserveOptions {
            keep_content: Some(limit),
            ..ObserveOptions::default()
        };
        let state = observe(&path, &options).expect("observe").expect("exists");
        let kept = content.len().min(limit as usize);
        assert_eq!(state.content.as_deref(), Some(&content[..kept]));
        assert_eq!(state.content_truncated, truncated, "{limit}");
        assert_eq!(state.hash, Some(*blake3::hash(&content).as_bytes()));
    }
    let small = dir.path().join("small");
    fs::write(&small, b"abc").expect("write");
    let options = ObserveOptions {
        keep_content: Some(2),
        ..ObserveOptions::default()
    };
    let state = observe(&small, &options).expect("observe").expect("exists");
    assert_eq!(state.content.as_deref(), Some(&b"ab"[..]));
    assert!(state.content_truncated);
}

#[test]
fn symlinks_are_recorded_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("target"), b"secret").expect("write");
    let link = dir.path().join("link");
    symlink("target", &link).expect("symlink");
    let dangling = dir.path().join("dangling");
    symlink("/nonexistent/x", &dangling).expect("symlink");
    let to_dir = dir.path().join("to_dir");
    symlink("/", &to_dir).expect("symlink");
    for (path, target) in [
        (&link, &b"target"[..]),
        (&dangling, &b"/nonexistent/x"[..]),
        (&to_dir, &b"/"[..]),
    ] {
        let state = observe_default(path);
        assert_eq!(state.file_type, FileType::Symlink);
        assert_eq!(state.symlink_target.as_deref(), Some(target));
        assert_eq!(state.size, target.len() as u64);
        assert_eq!(state.hash, None);
        assert_eq!(state.error, None);
        assert_eq!(state.mode, 0o777);
    }
}

#[test]
fn fifos_sockets_and_devices_are_never_opened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let socket = dir.path().join("socket");
    let _listener = UnixListener::bind(&socket).expect("bind");
    let (sender, receiver) = std::sync::mpsc::channel();
    let paths = [
        fifo.clone(),
        socket.clone(),
        "/dev/zero".into(),
        "/dev/null".into(),
    ];
    thread::spawn(move || {
        let states: Vec<_> = paths.iter().map(|path| observe_default(path)).collect();
        let _ = sender.send(states);
    });
    // Opening the FIFO would block (no writer), reading /dev/zero would never end.
    let states = receiver
        .recv_timeout(Duration::from_secs(10))
        .expect("observe must not block on special files");
    let types: Vec<_> = states.iter().map(|state| state.file_type).collect();
    assert_eq!(
        types,
        [
            FileType::Fifo,
            FileType::Socket,
            FileType::CharDevice,
            FileType::CharDevice
        ]
    );
    for state in &states {
        assert_eq!(state.hash, None);
        assert_eq!(state.error, None);
        assert_eq!(state.content, None);
    }
    let fifo_meta = fs::symlink_metadata(&fifo).expect("lstat");
    assert_eq!(states[0].mode, fifo_meta.mode() & 0o7777);
    assert_eq!(states[0].ino, fifo_meta.ino());
}

#[test]
fn missing_paths_are_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("file");
    fs::write(&file, b"x").expect("write");
    let options = ObserveOptions::default();
    assert_eq!(
        observe(&dir.path().join("nope"), &options).expect("ok"),
        None
    );
    // ENOTDIR: a parent is a regular file.
    assert_eq!(observe(&file.join("child"), &options).expect("ok"), None);
}

#[test]
fn unreadable_file_keeps_metadata_and_error() {
    // Root reads everything on disk, so use a regular file whose read fails: /proc/self/mem at
    // offset 0 (the unmapped zero page) returns EIO.
    let state = observe_default(Path::new("/proc/self/mem"));
    assert_eq!(state.file_type, FileType::Regular);
    assert_eq!(state.hash, None);
    assert_eq!(
        state.error.as_deref(),
        Some("Input/output error (os error 5)")
    );
    assert_eq!(state.mode, 0o600);
    if is_root() {
        return;
    }
    // Not root: EACCES on an ordinary file.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("locked");
    fs::write(&path, b"x").expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).expect("chmod");
    let state = observe_default(&path);
    assert_eq!(state.hash, None);
    assert_eq!(state.size, 1);
    assert_eq!(
        state.error.as_deref(),
        Some("Permission denied (os error 13)")
    );
}

#[test]
fn previous_state_is_reused_while_quick_metadata_matches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("file");
    fs::write(&path, b"one").expect("write");
    let mut previous = observe_default(&path);
    previous.hash = Some([9; 32]); // Proof that nothing was read.
    let options = ObserveOptions {
        previous: Some(&previous),
        ..ObserveOptions::default()
    };
    assert_eq!(
        observe(&path, &options).expect("ok"),
        Some(previous.clone())
    );
    // Same size, mtime put back: ctime still moves, so the file is read again.
    let mtime = fs::metadata(&path)
        .expect("stat")
        .modified()
        .expect("mtime");
    thread::sleep(Duration::from_millis(20));
    fs::write(&path, b"two").expect("write");
    File::options()
        .write(true)
        .open(&path)
        .expect("open")
        .set_modified(mtime)
        .expect("utimensat");
    let state = observe(&path, &options).expect("ok").expect("exists");
    assert_eq!(state.mtime_ns, previous.mtime_ns);
    assert_ne!(state.ctime_ns, previous.ctime_ns);
    assert_eq!(state.hash, Some(*blake3::hash(b"two").as_bytes()));
    // A previous state without the content now asked for is not reused either.
    let fresh = observe_default(&path);
    let options = ObserveOptions {
        previous: Some(&fresh),
        keep_content: Some(100),
        ..ObserveOptions::default()
    };
    let state = observe(&path, &options).expect("ok").expect("exists");
    assert_eq!(state.content.as_deref(), Some(&b"two"[..]));
}

#[test]
fn file_growing_while_hashed_is_unstable_or_consistent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("growing");
    fs::write(&path, pattern(32 << 20, 3)).expect("write");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (path, stop) = (path.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            let mut file = File::options().append(true).open(&path).expect("open");
            let chunk = pattern(4096, 5);
            // Bounded: a writer faster than the hash (a loaded host) would otherwise grow the
            // file by each retry's read time until the disk is full.
            let mut written = 0usize;
            while !stop.load(Ordering::Relaxed) && written < 512 << 20 {
                file.write_all(&chunk).expect("append");
                written += chunk.len();
            }
        })
    };
    thread::sleep(Duration::from_millis(20));
    let state = observe_default(&path);
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    if !state.unstable {
        // It happened to hold still: the hash must then be that of the first `size` bytes.
        let content = fs::read(&path).expect("read");
        let prefix = &content[..state.size as usize];
        assert_eq!(state.hash, Some(*blake3::hash(prefix).as_bytes()));
    }
    assert!(state.hash.is_some());
    eprintln!("growing file: unstable = {}", state.unstable);
}

fn acl_entries_xattr(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut value = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        value.extend(tag.to_le_bytes());
        value.extend(perm.to_le_bytes());
        value.extend(id.to_le_bytes());
    }
    value
}

#[test]
fn posix_acls_are_decoded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("file");
    fs::write(&file, b"x").expect("write");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_eq!(observe_default(&file).acl, None);
    // The kernel checks the format, so this is what setfacl would have stored.
    let access = acl_entries_xattr(&[
        (0x01, 6, u32::MAX),
        (0x02, 4, 1000),
        (0x04, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 4, u32::MAX),
    ]);
    xattr::set(&file, "system.posix_acl_access", &access).expect("set ACL");
    let expected = "user::rw-,user:1000:r--,group::r--,mask::r--,other::r--";
    assert_eq!(observe_default(&file).acl.as_deref(), Some(expected));

    if !tool_available("setfacl") {
        eprintln!("posix_acls_are_decoded: setfacl part skipped (install the `acl` package)");
        return;
    }
    let other = dir.path().join("other");
    fs::write(&other, b"x").expect("write");
    fs::set_permissions(&other, fs::Permissions::from_mode(0o644)).expect("chmod");
    run(Command::new("setfacl").args(["-m", "u:1000:r"]).arg(&other));
    assert_eq!(observe_default(&other).acl.as_deref(), Some(expected));
    let subdir = dir.path().join("dir");
    fs::create_dir(&subdir).expect("mkdir");
    fs::set_permissions(&subdir, fs::Permissions::from_mode(0o755)).expect("chmod");
    run(Command::new("setfacl")
        .args(["-d", "-m", "u:1000:rx"])
        .arg(&subdir));
    assert_eq!(
        observe_default(&subdir).acl.as_deref(),
        Some(
            "default:user::rwx,default:user:1000:r-x,default:group::r-x,default:mask::r-x,\
             default:other::r-x"
        )
    );
}

/// `setcap cap_net_raw+ep`: vfs_cap_data revision 2 with the effective flag, CAP_NET_RAW (13)
/// permitted, nothing inheritable.
const CAP_NET_RAW_EP: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00,
];

#[test]
fn capabilities_are_read_raw() {
    if skip_unless_root("capabilities_are_read_raw") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("ping");
    fs::write(&file, b"\x7fELF").expect("write");
    xattr::set(&file, "security.capability", &CAP_NET_RAW_EP).expect("set capability");
    assert_eq!(
        observe_default(&file).capability.as_deref(),
        Some(&CAP_NET_RAW_EP[..])
    );

    if !tool_available("setcap") && !Path::new("/usr/sbin/setcap").exists() {
        eprintln!("capabilities_are_read_raw: setcap part skipped (install `libcap2-bin`)");
        return;
    }
    let other = dir.path().join("other");
    fs::write(&other, b"\x7fELF").expect("write");
    run(Command::new("setcap").arg("cap_net_raw+ep").arg(&other));
    assert_eq!(
        observe_default(&other).capability.as_deref(),
        Some(&CAP_NET_RAW_EP[..])
    );
}

#[test]
fn selinux_label_is_read_from_the_link_itself() {
    if skip_unless_root("selinux_label_is_read_from_the_link_itself") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("target");
    fs::write(&target, b"x").expect("write");
    let link = dir.path().join("link");
    symlink(&target, &link).expect("symlink");
    // Without SELinux loaded the filesystem stores security.* values as given.
    xattr::set(&target, "security.selinux", b"system_u:object_r:etc_t:s0\0").expect("label");
    xattr::set(&link, "security.selinux", b"system_u:object_r:link_t:s0\0").expect("label");
    assert_eq!(
        observe_default(&target).selinux.as_deref(),
        Some(&b"system_u:object_r:etc_t:s0\0"[..])
    );
    let state = observe_default(&link);
    assert_eq!(state.file_type, FileType::Symlink);
    assert_eq!(
        state.selinux.as_deref(),
        Some(&b"system_u:object_r:link_t:s0\0"[..])
    );
}
