//! Writes, reached every way a process can reach a file: direct path, relative path after
//! chdir, dirfd, an fd kept across chdir, a hard link outside the root, mmap, a sed -i style
//! rename-over, and a bind mount in another mount namespace.
use fim_tests::*;
use libc::{O_CREAT, O_RDWR, O_TRUNC, O_WRONLY};

fn pair(op: &str, path: &std::path::Path) -> (String, String) {
    (op.to_string(), path.to_string_lossy().to_string())
}

#[test]
fn direct_write_creates_then_closes_and_sibling_is_silent() {
    let scratch = Scratch::new("direct");
    let daemon = Daemon::start(&[&scratch.watched], &[]);
    let file = scratch.watched.join("f.conf");
    let (target, sibling) = (c(&file), c(&scratch.other.join("f.conf")));
    let pid = in_child(|| {
        raw_write(&sibling, O_WRONLY | O_CREAT, b"x")
            + raw_write(&target, O_WRONLY | O_CREAT, b"hello")
    });
    let events = daemon.settle(&scratch.base, 2);
    assert_eq!(
        ops(&events),
        vec![pair("create", &file), pair("write-closed", &file)]
    );
    assert_actor(&events, pid);
    let loginuid = std::fs::read_to_string("/proc/self/loginuid").unwrap_or_default();
    let expected = match loginuid.trim().parse::<u32>() {
        Ok(u32::MAX) | Err(_) => serde_json::Value::Null,
        Ok(uid) => uid.into(),
    };
    assert_eq!(
        events[0]["loginuid"], expected,
        "unset login uid must be null, not 0"
    );
    assert_eq!(
        events[1]["ino"].as_u64(),
        Some(std::os::unix::fs::MetadataExt::ino(
            &std::fs::metadata(&file).unwrap()
        ))
    );
    daemon.stop();
}

#[test]
fn many_writes_coalesce_into_one_event_at_close() {
    let scratch = Scratch::new("coalesce");
    let file = scratch.watched.join("log");
    std::fs::write(&file, b"").unwrap();
    let daemon = Daemon::start(&[&scratch.watched], &[]);
    let path = c(&file);
    let pid = in_child(|| unsafe {
        let fd = libc::open(path.as_ptr(), O_WRONLY);
        for _ in 0..1000 {
            libc::write(fd, b"line\n".as_ptr().cast(), 5);
        }
        libc::close(fd);
        0
    });
    let events = daemon.settle(&scratch.base, 1);
    assert_eq!(ops(&events), vec![pair("write-closed", &file)]);
    assert_actor(&events, pid);
    daemon.stop();
}

#[test]
fn relative_path_after_chdir_and_dirfd_and_fd_across_chdir() {
    let scratch = Scratch::new("relative");
    let daemon = Daemon::start(&[&scratch.watched], &[]);
    let (dir, other) = (c(&scratch.watched), c(&scratch.other));
    let (rel, via_dirfd, kept) = (cs("rel"), cs("viadirfd"), cs("kept"));
    let pid = in_child(|| unsafe {
        // Relative path after chdir.
        libc::chdir(dir.as_ptr());
        let mut status = raw_write(&rel, O_WRONLY | O_CREAT, b"1");
        // openat with a dirfd, from an unmonitored cwd.
        libc::chdir(other.as_ptr());
        let dirfd = libc::open(dir.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY);
        let fd = libc::openat(dirfd, via_dirfd.as_ptr(), O_WRONLY | O_CREAT, 0o644);
        status += (fd < 0) as i32;
        libc::write(fd, b"2".as_ptr().cast(), 1);
        libc::close(fd);
        // An fd opened in the root, written after chdir elsewhere.
        libc::chdir(dir.as_ptr());
        let fd = libc::open(kept.as_ptr(), O_WRONLY | O_CREAT, 0o644);
        libc::chdir(other.as_ptr());
        libc::write(fd, b"3".as_ptr().cast(), 1);
        libc::close(fd);
        status
    });
    let events = daemon.settle(&scratch.base, 6);
    let w = &scratch.watched;
    assert_eq!(
        ops(&events),
        vec![
            pair("create", &w.join("rel")),
            pair("write-closed", &w.join("rel")),
            pair("create", &w.join("viadirfd")),
            pair("write-closed", &w.join("viadirfd")),
            pair("create", &w.join("kept")),
            pair("write-closed", &w.join("kept")),
        ]
    );
    assert_actor(&events, pid);
    daemon.stop();
}

#[test]
fn sed_i_style_rename_over_is_a_create_write_and_rename() {
    let scratch = Scratch::new("sed");
    let target = scratch.watched.join("hosts");
    std::fs::write(&target, b"old").unwrap();
    let daemon = Daemon::start(&[&scratch.watched], &[]);
    let temp = scratch.watched.join("sedAbC123");
    let (temp_c, target_c) = (c(&temp), c(&target));
    let pid = in_child(|| unsafe {
        let status = raw_write(&temp_c, O_WRONLY | O_CREAT | libc::O_EXCL, b"new");
        status + libc::rename(temp_c.as_ptr(), target_c.as_ptr()).abs()
    });
    let events = daemon.settle(&scratch.base, 3);
    assert_eq!(
        ops(&events),
        vec![
            pair("create", &temp),
            pair("write-closed", &temp),
            pair("rename", &target)
        ]
    );
    assert_eq!(events[2]["old_path"].as_str(), Some(temp.to_str().unwrap()));
    assert_actor(&events, pid);
    daemon.stop();
}

#[test]
fn write_through_hard_link_outside_root_is_attributed_to_monitored_file() {
    let scratch = Scratch::new("hardlink");
    let file = scratch.watched.join("shadow");
    std::fs::write(&file, b"x").unwrap();
    let outside = scratch.other.join("alias");
    std::fs::hard_link(&file, &outside).unwrap();
    let daemon = Daemon::start(&[&scratch.watched], &[]);
    let alias = c(&outside);
    let pid = in_child(|| raw_write(&alias, O_WRONLY | libc::O_APPEND, b"y"));
    let events = daemon.settle(&scratch.watched, 1);
    assert_eq!(ops(&events), vec![pair("write-closed", &file)]);
    assert_actor(&events, pid);
    daemon.stop();
}

#[test]
fn mmap_write_without_write_syscall_is_reported_at_close() {
    let scratch = Scratch::new("mmap");
    let file = scratch.watched.join("mapped");
    std::fs::write(&file, vec![0u8; 4096]).unwrap();
    let daemon = Daemon::start(&[&scratch.watched], &[]);
    let path = c(&file);
    let pid = in_child(|| unsafe {
        let fd = libc::open(path.as_ptr(), O_RDWR);
        let map = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        if map == libc::MAP_FAILED {
            return 1;
        }
        *(map as *mut u8) = b'M';
        libc::msync(map, 4096, libc::MS_SYNC);
        libc::munmap(map, 4096);
        libc::close(fd);
        0
    });
    // msync and munmap of a mapper each say "look again", and so does the close.
    let events = daemon.settle(&scratch.base, 3);
    assert_eq!(ops(&events), vec![pair("write-closed", &file); 3]);
    assert_actor(&events, pid);
    assert_eq!(std::fs::read(&file).unwrap()[0], b'M');
    daemon.stop();
}

#[test]
fn write_from_other_mount_namespace_through_bind_mount_reports_host_path() {
    let scratch = Scratch::new("mntns");
    let daemon = Daemon::start(&[&scratch.watched], &[]);
    let bind_point = scratch.other.join("bind");
    std::fs::create_dir_all(&bind_point).unwrap();
    let (source, target, through) = (
        c(&scratch.watched),
        c(&bind_point),
        c(&bind_point.join("from-container")),
    );
    let (root, none) = (cs("/"), cs("none"));
    let pid = in_child(|| unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return 20;
        }
        if libc::mount(
            none.as_ptr(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return 21;
        }
        if libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        ) != 0
        {
            return 22;
        }
        raw_write(&through, O_WRONLY | O_CREAT | O_TRUNC, b"c")
    });
    let file = scratch.watched.join("from-container");
    let events = daemon.settle(&scratch.base, 2);
    assert_eq!(
        ops(&events),
        vec![pair("create", &file), pair("write-closed", &file)]
    );
    assert_actor(&events, pid);
    daemon.stop();
}

#[test]
fn process_exit_without_close_still_reports_write() {
    let scratch = Scratch::new("exit");
    let daemon = Daemon::start(&[&scratch.watched], &[]);
    let file = scratch.watched.join("unclosed");
    let path = c(&file);
    let pid = in_child(|| unsafe {
        let fd = libc::open(path.as_ptr(), O_WRONLY | O_CREAT, 0o644);
        libc::write(fd, b"z".as_ptr().cast(), 1);
        0 // _exit without close
    });
    let events = daemon.settle(&scratch.base, 2);
    assert_eq!(
        ops(&events),
        vec![pair("create", &file), pair("write-closed", &file)]
    );
    assert_actor(&events, pid);
    daemon.stop();
}

#[test]
fn long_lived_writer_gets_at_most_one_in_progress_event_per_second() {
    let scratch = Scratch::new("inprogress");
    let file = scratch.watched.join("growing.log");
    std::fs::write(&file, b"").unwrap();
    let daemon = Daemon::start(&[&scratch.watched], &[]);
    let path = c(&file);
    let pid = in_child(|| unsafe {
        let fd = libc::open(path.as_ptr(), O_WRONLY | libc::O_APPEND);
        for _ in 0..9 {
            libc::write(fd, b"tick\n".as_ptr().cast(), 5);
            libc::usleep(300_000);
        }
        libc::close(fd);
        0
    });
    let events = daemon.settle(&scratch.base, 2);
    let kinds: Vec<String> = ops(&events).into_iter().map(|(op, _)| op).collect();
    let in_progress = kinds.iter().filter(|op| *op == "write-in-progress").count();
    assert!(
        (1..=3).contains(&in_progress),
        "2.7 s of writing should give 1-3 in-progress events: {kinds:?}"
    );
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("write-closed"),
        "{kinds:?}"
    );
    assert_eq!(kinds.len(), in_progress + 1, "{kinds:?}");
    assert_actor(&events, pid);
    daemon.stop();
}

#[test]
fn hard_link_made_while_running_is_registered() {
    let scratch = Scratch::new("newlink");
    let file = scratch.watched.join("passwd");
    std::fs::write(&file, b"x").unwrap();
    let daemon = Daemon::start(&[&scratch.watched], &[]);
    let alias = scratch.other.join("sneaky");
    let (from, to) = (c(&file), c(&alias));
    in_child(|| unsafe { libc::link(from.as_ptr(), to.as_ptr()).abs() });
    daemon.settle(&scratch.base, 1);
    let pid = in_child(|| raw_write(&to, O_WRONLY | libc::O_APPEND, b"y"));
    let events = daemon.settle(&scratch.base, 2);
    assert_eq!(
        ops(&events),
        vec![pair("link", &alias), pair("write-closed", &file)]
    );
    assert_actor(&events[1..], pid);
    daemon.stop();
}
