//! Name and attribute operations: unlink, rename, link, symlink, mkdir, rmdir, chmod, chown,
//! truncate, xattrs and timestamps, by absolute path, relative path, dirfd, `..` and fd.
use std::{ffi::CString, path::Path};

use fim_tests::*;

fn pair(op: &str, path: &Path) -> (String, String) {
    (op.to_string(), path.to_string_lossy().to_string())
}

fn touch(path: &Path) {
    std::fs::write(path, b"x").expect("create fixture");
}

#[test]
fn unlink_by_absolute_relative_dirfd_and_dotdot_paths() {
    let scratch = Scratch::new("unlink");
    let w = &scratch.watched;
    for name in ["abs", "rel", "dirfd", "dotdot"] {
        touch(&w.join(name));
    }
    touch(&scratch.other.join("abs"));
    let daemon = Daemon::start(&[w], &[]);
    let (abs, other_abs, dir, other) = (
        c(&w.join("abs")),
        c(&scratch.other.join("abs")),
        c(w),
        c(&scratch.other),
    );
    let (rel, dirfd_name, dotdot, missing) = (
        cs("rel"),
        cs("dirfd"),
        cs("../watched/dotdot"),
        cs("no-such-file"),
    );
    let pid = in_child(|| unsafe {
        let mut status = libc::unlink(other_abs.as_ptr()).abs();
        status += libc::unlink(abs.as_ptr()).abs();
        libc::chdir(dir.as_ptr());
        status += libc::unlink(rel.as_ptr()).abs();
        // A failing unlink in the root is not a change.
        status += (libc::unlink(missing.as_ptr()) == 0) as i32;
        libc::chdir(other.as_ptr());
        let fd = libc::open(dir.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY);
        status += libc::unlinkat(fd, dirfd_name.as_ptr(), 0).abs();
        status += libc::unlink(dotdot.as_ptr()).abs();
        status
    });
    let events = daemon.settle(&scratch.base, 4);
    assert_eq!(
        ops(&events),
        vec![
            pair("unlink", &w.join("abs")),
            pair("unlink", &w.join("rel")),
            pair("unlink", &w.join("dirfd")),
            pair("unlink", &w.join("dotdot"))
        ]
    );
    assert_actor(&events, pid);
    daemon.stop();
}

#[test]
fn rename_into_out_of_and_within_root() {
    let scratch = Scratch::new("rename");
    let (w, o) = (&scratch.watched, &scratch.other);
    touch(&w.join("a"));
    touch(&o.join("incoming"));
    touch(&w.join("leaving"));
    let daemon = Daemon::start(&[w], &[]);
    let names = [
        (c(&w.join("a")), c(&w.join("b"))),
        (c(&o.join("incoming")), c(&w.join("incoming"))),
        (c(&w.join("leaving")), c(&o.join("leaving"))),
    ];
    let pid = in_child(|| unsafe {
        names
            .iter()
            .map(|(from, to)| libc::rename(from.as_ptr(), to.as_ptr()).abs())
            .sum()
    });
    let events = daemon.settle(&scratch.base, 3);
    assert_eq!(
        ops(&events),
        vec![
            pair("rename", &w.join("b")),
            pair("rename", &w.join("incoming")),
            pair("rename", &o.join("leaving"))
        ]
    );
    let old: Vec<&str> = events
        .iter()
        .map(|event| event["old_path"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        old,
        vec![
            w.join("a").to_str().unwrap(),
            o.join("incoming").to_str().unwrap(),
            w.join("leaving").to_str().unwrap()
        ]
    );
    assert_actor(&events, pid);
    daemon.stop();
}

#[test]
fn link_symlink_mkdir_rmdir() {
    let scratch = Scratch::new("names");
    let w = &scratch.watched;
    touch(&w.join("orig"));
    let daemon = Daemon::start(&[w], &[]);
    let (orig, hard, soft, sub) = (
        c(&w.join("orig")),
        c(&w.join("hard")),
        c(&w.join("soft")),
        c(&w.join("sub")),
    );
    let target = cs("orig");
    let other_dir = c(&scratch.other.join("sub"));
    let pid = in_child(|| unsafe {
        libc::mkdir(other_dir.as_ptr(), 0o750).abs()
            + libc::rmdir(other_dir.as_ptr()).abs()
            + libc::link(orig.as_ptr(), hard.as_ptr()).abs()
            + libc::symlink(target.as_ptr(), soft.as_ptr()).abs()
            + libc::mkdir(sub.as_ptr(), 0o750).abs()
            + libc::rmdir(sub.as_ptr()).abs()
    });
    let events = daemon.settle(&scratch.base, 4);
    assert_eq!(
        ops(&events),
        vec![
            pair("link", &w.join("hard")),
            pair("symlink", &w.join("soft")),
            pair("mkdir", &w.join("sub")),
            pair("rmdir", &w.join("sub"))
        ]
    );
    assert_eq!(
        events[0]["old_path"].as_str(),
        Some(w.join("orig").to_str().unwrap())
    );
    assert_eq!(
        events[1]["old_path"].as_str(),
        Some("orig"),
        "symlink target text"
    );
    assert_eq!(events[2]["mode"].as_u64(), Some(0o750));
    assert_actor(&events, pid);
    daemon.stop();
}

#[test]
fn chmod_chown_by_path_and_fd() {
    let scratch = Scratch::new("attrs");
    let w = &scratch.watched;
    touch(&w.join("f"));
    let daemon = Daemon::start(&[w], &[]);
    touch(&scratch.other.join("f"));
    let path = c(&w.join("f"));
    let sibling = c(&scratch.other.join("f"));
    let pid = in_child(|| unsafe {
        // The unmonitored sibling gets the same treatment and must stay silent.
        let sibling_fd = libc::open(sibling.as_ptr(), libc::O_RDONLY);
        let quiet = libc::chmod(sibling.as_ptr(), 0o600).abs()
            + libc::fchmod(sibling_fd, 0o640).abs()
            + libc::chown(sibling.as_ptr(), 1, 2).abs()
            + libc::fchown(sibling_fd, 3, 4).abs();
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
        quiet
            + libc::chmod(path.as_ptr(), 0o600).abs()
            + libc::fchmod(fd, 0o640).abs()
            + libc::chown(path.as_ptr(), 1, 2).abs()
            + libc::fchown(fd, 3, 4).abs()
            + libc::fchmodat(libc::AT_FDCWD, path.as_ptr(), 0o644, 0).abs()
    });
    let events = daemon.settle(&scratch.base, 5);
    let f = w.join("f");
    assert_eq!(
        ops(&events),
        vec![
            pair("chmod", &f),
            pair("chmod", &f),
            pair("chown", &f),
            pair("chown", &f),
            pair("chmod", &f)
        ]
    );
    let modes: Vec<u64> = events
        .iter()
        .filter_map(|event| event["mode"].as_u64())
        .collect();
    assert_eq!(modes, vec![0o600, 0o640, 0o644]);
    assert_eq!(events[2]["owner"], serde_json::json!([1, 2]));
    assert_eq!(events[3]["owner"], serde_json::json!([3, 4]));
    assert_actor(&events, pid);
    daemon.stop();
}

#[test]
fn truncate_xattr_and_timestamps() {
    let scratch = Scratch::new("meta");
    let w = &scratch.watched;
    std::fs::write(w.join("f"), b"0123456789").unwrap();
    std::fs::write(scratch.other.join("f"), b"0123456789").unwrap();
    let daemon = Daemon::start(&[w], &[]);
    let path = c(&w.join("f"));
    let sibling = c(&scratch.other.join("f"));
    // trusted.*: tmpfs before 6.6 (the VM kernel) has no user.* xattrs.
    let (name, value) = (cs("trusted.fim"), b"v");
    let pid = in_child(|| unsafe {
        let mut status = libc::truncate(sibling.as_ptr(), 5).abs();
        status +=
            libc::setxattr(sibling.as_ptr(), name.as_ptr(), value.as_ptr().cast(), 1, 0).abs();
        status += libc::truncate(path.as_ptr(), 5).abs();
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
        status += libc::setxattr(path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), 1, 0).abs();
        status += libc::removexattr(path.as_ptr(), name.as_ptr()).abs();
        status += libc::fsetxattr(fd, name.as_ptr(), value.as_ptr().cast(), 1, 0).abs();
        let times = [
            libc::timespec {
                tv_sec: 1,
                tv_nsec: 0,
            },
            libc::timespec {
                tv_sec: 1,
                tv_nsec: 0,
            },
        ];
        status += libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), 0).abs();
        status += libc::futimens(fd, times.as_ptr()).abs();
        status
    });
    let events = daemon.settle(&scratch.base, 6);
    let f = w.join("f");
    assert_eq!(
        ops(&events),
        vec![
            pair("truncate", &f),
            pair("xattr", &f),
            pair("xattr", &f),
            pair("xattr", &f),
            pair("setattr", &f),
            pair("setattr", &f)
        ]
    );
    assert_eq!(events[0]["length"].as_u64(), Some(5));
    assert_actor(&events, pid);
    daemon.stop();
}

/// The *at and newer syscall forms, all relative to a dirfd: openat2, renameat2, ftruncate,
/// linkat, symlinkat, mkdirat, fchmodat2 (where the kernel has it) and unlinkat(AT_REMOVEDIR).
#[test]
fn at_syscall_variants_relative_to_a_dirfd() {
    let scratch = Scratch::new("atvariants");
    let w = &scratch.watched;
    // fchmodat2 arrived in 6.6: probe it outside the root.
    let probe = scratch.other.join("probe");
    touch(&probe);
    let probe_c = c(&probe);
    let has_fchmodat2 =
        unsafe { libc::syscall(452, libc::AT_FDCWD, probe_c.as_ptr(), 0o644, 0) } == 0;
    let daemon = Daemon::start(&[w], &[]);
    let dir = c(w);
    let (o2, r2, l2, s2, d2) = (cs("o2"), cs("r2"), cs("l2"), cs("s2"), cs("d2"));
    let pid = in_child(|| unsafe {
        let dirfd = libc::open(dir.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY);
        // struct open_how { u64 flags; u64 mode; u64 resolve; }
        let how: [u64; 3] = [(libc::O_WRONLY | libc::O_CREAT) as u64, 0o644, 0];
        let fd = libc::syscall(
            libc::SYS_openat2,
            dirfd,
            o2.as_ptr(),
            &how,
            std::mem::size_of::<libc::open_how>(),
        ) as i32;
        if fd < 0 {
            return 30;
        }
        libc::write(fd, b"x".as_ptr().cast(), 1);
        libc::close(fd);
        let mut status = libc::renameat2(
            dirfd,
            o2.as_ptr(),
            dirfd,
            r2.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
        .abs();
        let fd = libc::openat(dirfd, r2.as_ptr(), libc::O_WRONLY);
        status += libc::ftruncate(fd, 1).abs();
        libc::close(fd);
        status += libc::linkat(dirfd, r2.as_ptr(), dirfd, l2.as_ptr(), 0).abs();
        status += libc::symlinkat(r2.as_ptr(), dirfd, s2.as_ptr()).abs();
        status += libc::mkdirat(dirfd, d2.as_ptr(), 0o700).abs();
        if has_fchmodat2 {
            status += (libc::syscall(452, dirfd, r2.as_ptr(), 0o600, 0) as i32).abs();
        }
        status + libc::unlinkat(dirfd, d2.as_ptr(), libc::AT_REMOVEDIR).abs()
    });
    let mut expected = vec![
        pair("create", &w.join("o2")),
        pair("write-closed", &w.join("o2")),
        pair("rename", &w.join("r2")),
        pair("truncate", &w.join("r2")),
        pair("write-closed", &w.join("r2")),
        pair("link", &w.join("l2")),
        pair("symlink", &w.join("s2")),
        pair("mkdir", &w.join("d2")),
    ];
    if has_fchmodat2 {
        expected.push(pair("chmod", &w.join("r2")));
    }
    expected.push(pair("rmdir", &w.join("d2")));
    let events = daemon.settle(&scratch.base, expected.len());
    assert_eq!(ops(&events), expected);
    assert_eq!(events[3]["length"].as_u64(), Some(1));
    assert_eq!(events[7]["mode"].as_u64(), Some(0o700));
    assert_actor(&events, pid);
    daemon.stop();
}

/// A root given as a symlink (like /bin -> /usr/bin) reports every change under the canonical
/// name, whichever spelling the process used; names that are not UTF-8 or contain a newline
/// come out escaped, never dropped.
#[test]
fn symlinked_root_and_odd_names() {
    let scratch = Scratch::new("alias");
    let alias = scratch.base.join("alias");
    std::os::unix::fs::symlink(&scratch.watched, &alias).unwrap();
    let daemon = Daemon::start(&[&alias], &[]);
    let w = &scratch.watched;
    let (via_alias, odd) = (
        c(&alias.join("via-alias")),
        CString::new(b"odd\xff\nname".to_vec()).unwrap(),
    );
    let (dir, via_alias_unlink) = (c(w), c(&alias.join("via-alias")));
    let pid = in_child(|| unsafe {
        let mut status = raw_write(&via_alias, libc::O_WRONLY | libc::O_CREAT, b"x");
        status += libc::unlink(via_alias_unlink.as_ptr()).abs();
        libc::chdir(dir.as_ptr());
        status + raw_write(&odd, libc::O_WRONLY | libc::O_CREAT, b"x")
    });
    let events = daemon.settle(&scratch.base, 5);
    let odd_path = format!("{}/odd\\xff\\x0aname", w.display());
    assert_eq!(
        ops(&events),
        vec![
            pair("create", &w.join("via-alias")),
            pair("write-closed", &w.join("via-alias")),
            pair("unlink", &w.join("via-alias")),
            ("create".to_string(), odd_path.clone()),
            ("write-closed".to_string(), odd_path),
        ]
    );
    assert_actor(&events, pid);
    daemon.stop();
}
