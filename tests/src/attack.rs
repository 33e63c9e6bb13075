//! Attacks performed the way an attacker would, each in a process of its own.
//!
//! The test binary re-runs itself with `FIM_ATTACK` set and only the `attack_entry` test
//! selected: a fresh, single-purpose process that may allocate freely (unlike a child forked
//! from the multi-threaded test runner), whose pid the test knows. The attack prints the pid
//! that made the change last (`actor <pid>`) when that is not the process itself.
use std::{ffi::CString, os::unix::ffi::OsStrExt, path::Path, process::Command, time::Duration};

use io_uring::{opcode, types, IoUring};

/// Runs attack `kind` with `args` in a new process; returns the pid that acted last.
pub fn run(kind: &str, args: &[&Path]) -> u32 {
    let exe = std::env::current_exe().expect("current test executable");
    let joined: Vec<String> = args
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let output = Command::new(exe)
        .args(["--exact", "attack_entry", "--nocapture", "--test-threads=1"])
        .env("FIM_ATTACK", kind)
        .env("FIM_ATTACK_ARGS", joined.join("\n"))
        .output()
        .expect("spawn attack");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("attack done"),
        "attack {kind} failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // The harness prints "test attack_entry ... " in front of the first line: search, don't
    // match line starts.
    stdout
        .split("FIM-ATTACK-ACTOR=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .expect("attack printed its actor")
}

/// The body of `attack_entry`: does nothing unless `FIM_ATTACK` is set.
pub fn entry() {
    let Ok(kind) = std::env::var("FIM_ATTACK") else {
        return;
    };
    let args: Vec<CString> = std::env::var("FIM_ATTACK_ARGS")
        .unwrap_or_default()
        .split('\n')
        .map(|arg| CString::new(arg).expect("argument without NUL"))
        .collect();
    let me = std::process::id();
    let actor = match kind.as_str() {
        "uring_create" => uring_create(&args[0]),
        "uring_rename" => uring_rename(&args[0], &args[1]),
        "uring_unlink" => uring_unlink(&args[0]),
        "uring_storm" => uring_storm(&args[0]),
        "dup_tricks" => dup_tricks(&args[0]),
        "fork_child_writes" => fork_child_writes(&args[0]),
        "pass_over_socket" => pass_over_socket(&args[0]),
        "mmap_then_exit" => mmap_then_exit(&args[0], false),
        "mmap_then_munmap" => mmap_then_exit(&args[0], true),
        "many_descriptors" => many_descriptors(&args[0]),
        "map_huge_sparse" => map_huge_sparse(&args[0]),
        other => panic!("unknown attack {other}"),
    };
    println!("\nFIM-ATTACK-ACTOR={}", actor.unwrap_or(me));
    println!("attack done");
}

fn check(ret: i32, what: &str) -> i32 {
    assert!(ret >= 0, "{what}: {}", std::io::Error::last_os_error());
    ret
}

fn settle() {
    // Longer than the coalescing window: each step is judged on its own.
    std::thread::sleep(Duration::from_millis(200));
}

fn submit(ring: &mut IoUring, entry: io_uring::squeue::Entry) -> i32 {
    // SAFETY: every buffer and string the entry points to outlives the wait below.
    unsafe {
        ring.submission()
            .push(&entry)
            .expect("submission queue has room")
    };
    ring.submit_and_wait(1).expect("io_uring_enter");
    let cqe = ring.completion().next().expect("a completion");
    cqe.result()
}

/// openat + write + close, all through io_uring: no open(2), write(2) or close(2) at all.
fn uring_create(path: &CString) -> Option<u32> {
    let mut ring = IoUring::new(8).expect("io_uring_setup");
    let open = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr())
        .flags(libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)
        .mode(0o644)
        .build();
    let fd = check(submit(&mut ring, open), "IORING_OP_OPENAT");
    let text = b"planted by io_uring\n";
    let write = opcode::Write::new(types::Fd(fd), text.as_ptr(), text.len() as u32).build();
    check(submit(&mut ring, write), "IORING_OP_WRITE");
    check(
        submit(&mut ring, opcode::Close::new(types::Fd(fd)).build()),
        "IORING_OP_CLOSE",
    );
    None
}

fn uring_rename(old: &CString, new: &CString) -> Option<u32> {
    let mut ring = IoUring::new(8).expect("io_uring_setup");
    let at = types::Fd(libc::AT_FDCWD);
    let rename = opcode::RenameAt::new(at, old.as_ptr(), at, new.as_ptr()).build();
    check(submit(&mut ring, rename), "IORING_OP_RENAMEAT");
    None
}

fn uring_unlink(path: &CString) -> Option<u32> {
    let mut ring = IoUring::new(8).expect("io_uring_setup");
    let unlink = opcode::UnlinkAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr()).build();
    check(submit(&mut ring, unlink), "IORING_OP_UNLINKAT");
    None
}

/// 100,000 writes to one file submitted in as few io_uring_enter calls as the ring allows.
fn uring_storm(path: &CString) -> Option<u32> {
    const ENTRIES: u32 = 4096;
    const TOTAL: usize = 100_000;
    let fd = check(
        unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
                0o644,
            )
        },
        "open",
    );
    let mut ring = IoUring::<io_uring::squeue::Entry, io_uring::cqueue::Entry>::builder()
        .setup_cqsize(ENTRIES * 4)
        .build(ENTRIES)
        .expect("io_uring_setup");
    let text = b"x";
    let mut submitted = 0;
    let mut completed = 0;
    while completed < TOTAL {
        {
            let mut queue = ring.submission();
            while submitted < TOTAL && !queue.is_full() {
                let write = opcode::Write::new(types::Fd(fd), text.as_ptr(), 1).build();
                // SAFETY: `text` is static.
                unsafe { queue.push(&write).expect("room") };
                submitted += 1;
            }
        }
        ring.submit_and_wait(1).expect("io_uring_enter");
        completed += ring.completion().count();
    }
    unsafe { libc::close(fd) };
    None
}

/// dup2 and F_DUPFD copies, the original closed first, the write through a copy.
fn dup_tricks(path: &CString) -> Option<u32> {
    unsafe {
        let fd = check(
            libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_APPEND),
            "open",
        );
        check(libc::dup2(fd, 50), "dup2");
        check(libc::fcntl(fd, libc::F_DUPFD, 60), "F_DUPFD");
        libc::close(fd);
        settle();
        let text = b"through a dup\n";
        check(
            libc::write(50, text.as_ptr().cast(), text.len()) as i32,
            "write",
        );
        libc::close(50);
        // fd 60 stays open until exit.
    }
    None
}

/// The parent opens and closes at once; the forked child writes later and exits unclosed.
fn fork_child_writes(path: &CString) -> Option<u32> {
    unsafe {
        let fd = check(
            libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_APPEND),
            "open",
        );
        let child = libc::fork();
        if child == 0 {
            libc::usleep(300_000);
            let text = b"from the child\n";
            libc::write(fd, text.as_ptr().cast(), text.len());
            libc::_exit(0);
        }
        libc::close(fd);
        let mut status = 0;
        libc::waitpid(child, &mut status, 0);
        Some(child as u32)
    }
}

/// A descriptor passed over a Unix socket to a process that never opened the file.
fn pass_over_socket(path: &CString) -> Option<u32> {
    unsafe {
        let mut pair = [0i32; 2];
        check(
            libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()),
            "socketpair",
        );
        let child = libc::fork();
        if child == 0 {
            libc::close(pair[0]);
            let fd = receive_fd(pair[1]);
            libc::usleep(300_000);
            let text = b"from the receiver\n";
            libc::write(fd, text.as_ptr().cast(), text.len());
            libc::close(fd);
            libc::_exit(0);
        }
        libc::close(pair[1]);
        let fd = check(
            libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_APPEND),
            "open",
        );
        send_fd(pair[0], fd);
        libc::close(fd);
        let mut status = 0;
        libc::waitpid(child, &mut status, 0);
        Some(child as u32)
    }
}

/// A one-byte message with room for one descriptor, pointing into its own buffers: call
/// `prepare` where it stays (no allocation: the receiver runs in a forked child).
struct FdMessage {
    byte: [u8; 1],
    iov: libc::iovec,
    control: [u8; 64],
    msg: libc::msghdr,
}

impl FdMessage {
    unsafe fn prepare(&mut self, controllen: usize) {
        self.iov.iov_base = self.byte.as_mut_ptr().cast();
        self.iov.iov_len = 1;
        self.msg.msg_iov = &mut self.iov;
        self.msg.msg_iovlen = 1;
        self.msg.msg_control = self.control.as_mut_ptr().cast();
        self.msg.msg_controllen = controllen as _;
    }
}

unsafe fn send_fd(socket: i32, fd: i32) {
    let mut frame: FdMessage = std::mem::zeroed();
    frame.prepare(libc::CMSG_SPACE(4) as usize);
    let cmsg = libc::CMSG_FIRSTHDR(&frame.msg);
    (*cmsg).cmsg_level = libc::SOL_SOCKET;
    (*cmsg).cmsg_type = libc::SCM_RIGHTS;
    (*cmsg).cmsg_len = libc::CMSG_LEN(4) as _;
    std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>(), fd);
    check(libc::sendmsg(socket, &frame.msg, 0) as i32, "sendmsg");
}

unsafe fn receive_fd(socket: i32) -> i32 {
    let mut frame: FdMessage = std::mem::zeroed();
    frame.prepare(64);
    if libc::recvmsg(socket, &mut frame.msg, 0) < 0 {
        libc::_exit(3);
    }
    let cmsg = libc::CMSG_FIRSTHDR(&frame.msg);
    if cmsg.is_null() {
        libc::_exit(4);
    }
    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>())
}

/// A shared writable mapping, the descriptor closed first, then writes through the mapping.
fn mmap_then_exit(path: &CString, unmap: bool) -> Option<u32> {
    unsafe {
        let fd = check(libc::open(path.as_ptr(), libc::O_RDWR), "open");
        let map = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        assert_ne!(map, libc::MAP_FAILED, "mmap");
        libc::close(fd);
        settle();
        std::ptr::copy_nonoverlapping(b"MAPPED".as_ptr(), map.cast::<u8>(), 6);
        if unmap {
            libc::munmap(map, 4096);
        }
        // Exit with the mapping in place (or just unmapped): no msync, no close.
    }
    None
}

/// Path bytes for an argument.
pub fn arg(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("path without NUL")
}

/// 100,000 writable descriptors on one file held at once, one of them written, all left to
/// exit. One process holds them all where RLIMIT_NOFILE can be raised that far (as root with
/// CAP_SYS_RESOURCE, as in the VM); where it cannot (this project's machines cap it at
/// 20,000 without that capability), as few processes as the limit allows share them.
pub(crate) fn many_descriptors(path: &CString) -> Option<u32> {
    const TOTAL: usize = 100_000;
    const SPARE: usize = 64;
    unsafe {
        let wanted = libc::rlimit {
            rlim_cur: (TOTAL + SPARE) as u64,
            rlim_max: (TOTAL + SPARE) as u64,
        };
        let mut limit = wanted;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
            check(
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit),
                "getrlimit",
            );
            limit.rlim_cur = limit.rlim_max;
            check(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), "setrlimit");
        }
        let per_holder = (limit.rlim_cur as usize).saturating_sub(SPARE).max(1);
        let holders = TOTAL.div_ceil(per_holder);
        let per_holder = TOTAL.div_ceil(holders);
        eprintln!("{holders} process(es) hold {per_holder} writable descriptors each");
        let (mut ready, mut go) = ([0i32; 2], [0i32; 2]);
        check(libc::pipe(ready.as_mut_ptr()), "pipe");
        check(libc::pipe(go.as_mut_ptr()), "pipe");
        let mut children = Vec::with_capacity(holders);
        for _ in 0..holders {
            let child = libc::fork();
            if child == 0 {
                libc::close(go[1]);
                for _ in 0..per_holder {
                    if libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_APPEND) < 0 {
                        libc::_exit(5);
                    }
                }
                libc::write(ready[1], b"r".as_ptr().cast(), 1);
                let mut byte = 0u8;
                libc::read(go[0], (&mut byte as *mut u8).cast(), 1);
                libc::_exit(0);
            }
            children.push(child);
        }
        libc::close(go[0]);
        for _ in 0..holders {
            let mut byte = 0u8;
            check(
                libc::read(ready[0], (&mut byte as *mut u8).cast(), 1) as i32,
                "ready",
            );
        }
        let fd = check(
            libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_APPEND),
            "open",
        );
        let text = b"one of many\n";
        check(
            libc::write(fd, text.as_ptr().cast(), text.len()) as i32,
            "write",
        );
        libc::close(fd);
        libc::close(go[1]);
        for child in children {
            let mut status = 0;
            libc::waitpid(child, &mut status, 0);
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "holder failed"
            );
        }
    }
    None
}

/// A shared writable mapping of a 1 TB sparse file, written at both ends and unmapped.
pub(crate) fn map_huge_sparse(path: &CString) -> Option<u32> {
    const SIZE: usize = 1 << 40;
    unsafe {
        let fd = check(libc::open(path.as_ptr(), libc::O_RDWR), "open");
        check(libc::ftruncate(fd, SIZE as i64), "ftruncate");
        let map = libc::mmap(
            std::ptr::null_mut(),
            SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_NORESERVE,
            fd,
            0,
        );
        assert_ne!(map, libc::MAP_FAILED, "mmap of 1 TB");
        libc::close(fd);
        *(map as *mut u8) = b'A';
        *(map as *mut u8).add(SIZE - 1) = b'Z';
        libc::munmap(map, SIZE);
    }
    None
}
