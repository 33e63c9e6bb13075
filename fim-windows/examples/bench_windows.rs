//! `cargo xtask bench windows`: fimsvc's registry path under Wine (figures are Wine's, not a
//! Windows machine's).
//!
//! 1. Latency: one value write (RegSetValueExW from this process) to its record on fimsvc's
//!    stdout, p50/p99 over `--writes` writes spaced 100 ms apart, beside the limit: the same
//!    write to a bare RegNotifyChangeKeyValue wake-up in this process (what any watcher gets
//!    at best), and the coalescing window fimsvc waits on purpose.
//! 2. Storm: `--storm` value writes as fast as they go (100 per subkey) under a recursive
//!    entity; how many Added value records reach the journal (target: all of them, whatever
//!    notifications coalesced), and how long until the last (polled every 100 ms).
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[cfg(not(windows))]
fn main() {
    eprintln!("bench_windows runs under Windows or Wine: `cargo xtask bench windows`");
    std::process::exit(2);
}

#[cfg(windows)]
fn main() {
    bench::main();
}

#[cfg(windows)]
mod bench {
    use std::{
        io::{BufRead, BufReader},
        process::{Child, Command, Stdio},
        ptr::{null, null_mut},
        sync::{mpsc, Arc, Mutex},
        time::{Duration, Instant},
    };

    use windows_sys::Win32::{
        Foundation::{CloseHandle, WAIT_OBJECT_0},
        System::{
            Registry::{
                RegCloseKey, RegCreateKeyExW, RegDeleteTreeW, RegNotifyChangeKeyValue,
                RegSetValueExW, HKEY, HKEY_CURRENT_USER, KEY_ALL_ACCESS, REG_DWORD,
                REG_NOTIFY_CHANGE_LAST_SET, REG_NOTIFY_CHANGE_NAME, REG_OPTION_NON_VOLATILE,
            },
            Threading::{CreateEventW, WaitForSingleObject},
        },
    };

    const COALESCE_MS: u64 = 50;

    fn wide(text: &str) -> Vec<u16> {
        text.encode_utf16().chain([0]).collect()
    }

    fn create(path: &str) -> HKEY {
        let path = wide(path);
        let mut key: HKEY = null_mut();
        // SAFETY: HKCU, a NUL-terminated path, default security, an out pointer.
        let status = unsafe {
            RegCreateKeyExW(
                HKEY_CURRENT_USER,
                path.as_ptr(),
                0,
                null(),
                REG_OPTION_NON_VOLATILE,
                KEY_ALL_ACCESS,
                null(),
                &mut key,
                null_mut(),
            )
        };
        assert_eq!(status, 0, "RegCreateKeyExW");
        key
    }

    fn set(key: HKEY, name: &str, value: u32) {
        let name = wide(name);
        let data = value.to_le_bytes();
        // SAFETY: an open key, a NUL-terminated name, 4 bytes of data.
        let status = unsafe { RegSetValueExW(key, name.as_ptr(), 0, REG_DWORD, data.as_ptr(), 4) };
        assert_eq!(status, 0, "RegSetValueExW");
    }

    struct Fimsvc {
        child: Child,
        lines: mpsc::Receiver<(Instant, String)>,
        log: Arc<Mutex<String>>,
    }

    impl Drop for Fimsvc {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn start(fimsvc: &str, dir: &std::path::Path, key: &str) -> Fimsvc {
        let policy = dir.join("policy.toml");
        std::fs::write(
            &policy,
            format!(
                "[settings]\ncoalesce_ms = {COALESCE_MS}\n\n[[entity]]\nname = \"bench\"\nkind = \"windows-registry\"\npath = 'HKCU\\{key}'\n"
            ),
        )
        .unwrap();
        let mut child = Command::new(fimsvc)
            .args(["run", "--print-records", "--policy"])
            .arg(&policy)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .env("FIM_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fimsvc");
        let (lines_in, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_in.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        let log = Arc::new(Mutex::new(String::new()));
        let into = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                into.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while !log.lock().unwrap().contains("start-up scan finished") {
            assert!(
                Instant::now() < deadline,
                "fimsvc did not start:\n{}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Fimsvc { child, lines, log }
    }

    fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
        let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
        sorted[index.min(sorted.len() - 1)]
    }

    /// The limit: a write to a bare notification's wake-up, in this process.
    fn bare_notification(key: HKEY, writes: usize) -> Vec<Duration> {
        // SAFETY: an auto-reset event, closed below.
        let event = unsafe { CreateEventW(null(), 0, 0, null()) };
        let mut samples = Vec::new();
        for index in 0..writes {
            // SAFETY: an open key and event; asynchronous registration.
            let armed = unsafe {
                RegNotifyChangeKeyValue(
                    key,
                    1,
                    REG_NOTIFY_CHANGE_NAME | REG_NOTIFY_CHANGE_LAST_SET,
                    event,
                    1,
                )
            };
            assert_eq!(armed, 0);
            let started = Instant::now();
            set(key, "limit", index as u32);
            // SAFETY: waiting on the event created above.
            let waited = unsafe { WaitForSingleObject(event, 5000) };
            assert_eq!(waited, WAIT_OBJECT_0, "the bare notification never fired");
            samples.push(started.elapsed());
        }
        // SAFETY: the event is not used after this.
        unsafe { CloseHandle(event) };
        samples
    }

    fn latency(fimsvc: &Fimsvc, key: HKEY, writes: usize) -> Vec<Duration> {
        let mut samples = Vec::new();
        for index in 0..writes {
            while fimsvc.lines.try_recv().is_ok() {}
            let started = Instant::now();
            set(key, "latency", 1_000_000 + index as u32);
            let needle = format!("\"ValueData\":\"{}\"", 1_000_000 + index);
            loop {
                let (at, line) = fimsvc
                    .lines
                    .recv_timeout(Duration::from_secs(10))
                    .expect("a record within 10 s");
                if line.contains(&needle) {
                    samples.push(at - started);
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        samples
    }

    /// Added value records for the storm's values in the journal (the stdout printer may fall
    /// behind a burst; the journal is the record of truth).
    fn storm_records(state: &std::path::Path) -> usize {
        let Ok(store) = fim_engine::store::Store::open_read_only(state.join("fim.db")) else {
            return 0;
        };
        store
            .query(&fim_engine::store::ChangeFilter::default(), 1_000_000)
            .unwrap_or_default()
            .iter()
            .filter(|record| record.change_category == fim_model::ChangeCategory::Added)
            .filter_map(|record| {
                record
                    .registry
                    .as_ref()?
                    .value_name
                    .as_deref()
                    .map(str::to_string)
            })
            .filter(|name| name.starts_with('v'))
            .count()
    }

    fn storm(state: &std::path::Path, root: &str, writes: usize) -> (usize, Duration, Duration) {
        let started = Instant::now();
        let subkeys = writes.div_ceil(100);
        let mut done = 0;
        for subkey in 0..subkeys {
            let key = create(&format!(r"{root}\storm{subkey}"));
            for value in 0..100 {
                if done == writes {
                    break;
                }
                set(key, &format!("v{value}"), value);
                done += 1;
            }
            // SAFETY: the key is not used after this.
            unsafe { RegCloseKey(key) };
        }
        let written = started.elapsed();
        // Until all are there, or nothing new came for 10 s.
        let (mut values, mut last, mut grew) = (0, started, Instant::now());
        while values < writes && grew.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
            let now = storm_records(state);
            if now > values {
                values = now;
                last = Instant::now();
                grew = Instant::now();
            }
        }
        (values, written, last - started)
    }

    fn ms(duration: Duration) -> String {
        format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
    }

    pub fn main() {
        let args: Vec<String> = std::env::args().collect();
        let value_of = |flag: &str, default: usize| {
            args.iter()
                .position(|arg| arg == flag)
                .and_then(|at| args.get(at + 1))
                .and_then(|text| text.parse().ok())
                .unwrap_or(default)
        };
        let writes = value_of("--writes", 200);
        let storm_writes = value_of("--storm", 10_000);
        let fimsvc_path = args
            .iter()
            .position(|arg| arg == "--fimsvc")
            .and_then(|at| args.get(at + 1))
            .cloned()
            .expect("--fimsvc PATH");
        let root = format!(r"Software\fim-bench-{}", std::process::id());
        let dir = tempfile::tempdir().unwrap();
        let key = create(&root);

        let mut limit = bare_notification(key, writes);
        let fimsvc = start(&fimsvc_path, dir.path(), &root);
        let mut ours = latency(&fimsvc, key, writes);
        limit.sort();
        ours.sort();
        let (p50, p99) = (percentile(&ours, 0.5), percentile(&ours, 0.99));
        let (limit50, limit99) = (percentile(&limit, 0.5), percentile(&limit, 0.99));
        println!("registry value write -> record ({writes} writes, under Wine 8.0):");
        println!("  fimsvc          p50 {}  p99 {}", ms(p50), ms(p99));
        println!(
            "  bare notify     p50 {}  p99 {}  (the limit)",
            ms(limit50),
            ms(limit99)
        );
        println!("  coalescing window {COALESCE_MS} ms (fimsvc waits it on purpose)");
        println!(
            "  fimsvc p50 - limit p50 = {} (window {COALESCE_MS} ms)",
            ms(p50.saturating_sub(limit50))
        );
        let (values, written, last) = storm(&dir.path().join("state"), &root, storm_writes);
        println!(
            "storm: {storm_writes} value writes in {} (100 per subkey), {values} Added value records, the last after {}: {}",
            ms(written),
            ms(last),
            if values == storm_writes { "ALL RECORDED" } else { "MISSED" }
        );
        if !fimsvc.log.lock().unwrap().is_empty() {
            let log = fimsvc.log.lock().unwrap();
            let warnings: Vec<&str> = log
                .lines()
                .filter(|line| line.contains("WARN") || line.contains("ERROR"))
                .collect();
            println!("fimsvc logged {} warnings or errors", warnings.len());
            for line in warnings.iter().take(5) {
                println!("  {line}");
            }
        }
        drop(fimsvc);
        let root_wide = wide(&root);
        // SAFETY: HKCU and a NUL-terminated subkey path.
        unsafe {
            RegCloseKey(key);
            RegDeleteTreeW(HKEY_CURRENT_USER, root_wide.as_ptr());
        }
    }
}
