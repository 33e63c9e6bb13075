//! fimd out of descriptors. When accept(2) fails with EMFILE the waiting connection stays in
//! the kernel's queue and the listener is ready again at once: a server that simply asks for
//! the next connection spins a core for as long as the shortage lasts. fimd's API listeners
//! pause after a failed accept and say so in a rate-limited warning; this runs a real fimd
//! whose descriptor limit is lowered (prlimit) until its TCP listener really gets EMFILE, and
//! checks what a user would: the daemon does not burn a core, it still answers, it warned,
//! and once descriptors are back a new client is served.
mod common_tls;

use std::{
    net::TcpStream,
    time::{Duration, Instant},
};

use common_tls::{client, leaf, start_tls, test_ca};
use fim_api::pb;
use fim_tests::{
    api::{block_on, code, unix_client},
    engine::Workspace,
};
use rcgen::ExtendedKeyUsagePurpose;

/// Descriptors left to fimd above what it holds when the shortage starts; connections take
/// them, and the ones after wait in the listen queue while every accept fails.
const SPARE: u64 = 4;
/// Connections opened: the spare descriptors' worth and more waiting.
const CONNECTIONS: u64 = SPARE + 8;
/// How long fimd's CPU time is watched during the shortage.
const WATCHED: Duration = Duration::from_secs(3);
/// A spinning accept loop uses a whole core (about 1.0); an idle daemon a few hundredths. Not
/// a performance target: anything near a core means the listener spins.
const MAX_CPU_SHARE: f64 = 0.2;
/// The text of the warning a failed accept logs.
const WARNING: &str = "accept failed";

fn open_descriptors(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count() as u64
}

/// The process's user plus system CPU time, all threads, from /proc/PID/stat.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The command name is in parentheses and may hold spaces: count fields after it.
    let after_name = &stat[stat.rfind(')').expect("stat has a name") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

/// Sets the soft descriptor limit of process `pid` (the hard one stays: raising it back would
/// need CAP_SYS_RESOURCE, which a container's root may lack); returns the soft limit it had.
fn set_open_file_limit(pid: u32, soft: u64) -> u64 {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a null new limit only reads the current one into `old`.
    let status = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            std::ptr::null(),
            &mut old,
        )
    };
    assert_eq!(status, 0, "prlimit: {}", std::io::Error::last_os_error());
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: old.rlim_max,
    };
    // SAFETY: both pointers are to live rlimit structs; root may set another process's limits.
    let status = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(status, 0, "prlimit: {}", std::io::Error::last_os_error());
    old.rlim_cur
}

#[test]
fn out_of_descriptors_the_api_pauses_instead_of_spinning() {
    let workspace = Workspace::new("api-emfile");
    let (ca_pem, issuer) = test_ca();
    let reader = leaf("reader", ExtendedKeyUsagePurpose::ClientAuth, Some(&issuer));
    let (engine, port) = start_tls(&workspace, &ca_pem, &issuer, &reader);
    let pid = engine.pid();

    block_on(async {
        // A client connected before the shortage keeps its connection through it.
        let mut local = unix_client(&workspace.socket).await;
        let status = local.get_status(pb::GetStatusRequest {}).await;
        assert_eq!(code(&status), "Ok", "{status:?}");

        let limit = open_descriptors(pid) + SPARE;
        let original = set_open_file_limit(pid, limit);
        let held: Vec<TcpStream> = (0..CONNECTIONS)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
            .collect();
        // The spare descriptors are taken: from here on every accept fails.
        let deadline = Instant::now() + Duration::from_secs(5);
        while open_descriptors(pid) < limit && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            open_descriptors(pid) >= limit,
            "fimd holds {} descriptors, never reaching its limit of {limit}",
            open_descriptors(pid)
        );

        let before = cpu_time(pid);
        let watching = Instant::now();
        std::thread::sleep(WATCHED);
        let share = (cpu_time(pid) - before).as_secs_f64() / watching.elapsed().as_secs_f64();
        eprintln!("fimd used {share:.3} of a core over {WATCHED:?} out of descriptors");
        assert!(
            share < MAX_CPU_SHARE,
            "fimd used {share:.2} of a core while out of descriptors (the accept loop spins)"
        );

        // Still responsive: the connection made before is served.
        let status = tokio::time::timeout(
            Duration::from_secs(5),
            local.get_status(pb::GetStatusRequest {}),
        )
        .await
        .expect("GetStatus answered during the shortage");
        assert_eq!(code(&status), "Ok", "{status:?}");

        // It said why, once: the warning is rate-limited (at most one per 10 s).
        let log = engine.log();
        let warnings = log.lines().filter(|line| line.contains(WARNING)).count();
        assert_eq!(warnings, 1, "warnings about failed accepts:\n{log}");
        assert!(
            log.lines()
                .any(|line| line.contains(WARNING) && line.contains("Too many open files")),
            "{log}"
        );

        // Descriptors come back: a new client over TLS is accepted and served.
        drop(held);
        set_open_file_limit(pid, original);
        let mut fresh = client(port, &ca_pem, &reader)
            .await
            .expect("connect once descriptors are back");
        let status = fresh.get_status(pb::GetStatusRequest {}).await;
        assert_eq!(code(&status), "Ok", "{status:?}");
    });
    engine.stop();
}
