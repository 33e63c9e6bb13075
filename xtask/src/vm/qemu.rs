//! Boots the guest under QEMU and reads its serial console.
//!
//! Why separate from vm.rs: this is the part that deals with a live process (streaming the
//! console to the terminal and a log while enforcing a hard time limit) and with judging the
//! markers /init prints; vm.rs only prepares what the guest runs.

use std::{
    fs::File,
    io::{BufRead as _, BufReader, Read, Write as _},
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};

use super::{Strategy, MARK_DONE, MARK_EXIT, MARK_KERNEL, MARK_LSM, MARK_START};
use crate::show;

/// `bpf` is in Debian 6.1's default LSM list too; naming the list keeps the guest independent
/// of the kernel's default and matches the host machines' set.
const KERNEL_CMDLINE: &str =
    "console=ttyS0 panic=-1 loglevel=5 lsm=lockdown,capability,landlock,bpf";

/// How a boot ended, with everything the guest and QEMU printed.
pub struct Boot {
    pub console: Vec<String>,
    /// Why the run failed before the guest could say so itself, if it did.
    pub problem: Option<String>,
}

/// Boots the guest, echoing its console live and into `log`. Starting QEMU or reading its
/// output failing is an error; a timeout or a QEMU failure is reported in [`Boot::problem`], so
/// the markers printed before it can still be judged.
pub fn boot(
    kernel: &Path,
    initrd: &Path,
    log: &Path,
    strategy: Strategy,
    timeout: Duration,
) -> Result<Boot> {
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args([
        "-accel",
        "tcg,thread=multi",
        "-cpu",
        "max",
        "-m",
        "2G",
        "-smp",
        "2",
    ])
    .arg("-kernel")
    .arg(kernel)
    .arg("-initrd")
    .arg(initrd)
    .args(["-append", KERNEL_CMDLINE])
    .args(["-nographic", "-no-reboot", "-nic", "none"])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    eprintln!("xtask: $ {}", show(&qemu));
    let mut child = qemu.spawn().context("starting qemu-system-x86_64")?;
    let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let log_file = Arc::new(Mutex::new(log_file));
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("qemu has no stdout"))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow!("qemu has no stderr"))?;
    let out_pump = {
        let (log, prefix) = (Arc::clone(&log_file), format!("[vm {strategy}] "));
        thread::spawn(move || pump(stdout, &prefix, &log))
    };
    let err_pump = {
        let (log, prefix) = (Arc::clone(&log_file), format!("[vm {strategy} qemu] "));
        thread::spawn(move || pump(stderr, &prefix, &log))
    };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for qemu")? {
            break Some(status);
        }
        if started.elapsed() > timeout {
            child.kill().context("killing qemu")?;
            child.wait().context("reaping qemu")?;
            break None;
        }
        thread::sleep(Duration::from_millis(200));
    };
    let join = |pump: thread::JoinHandle<std::io::Result<Vec<String>>>| {
        pump.join()
            .map_err(|_| anyhow!("console reader panicked"))?
            .context("reading the guest console")
    };
    let console = join(out_pump)?;
    let qemu_said = join(err_pump)?;
    let problem = match status {
        None => Some(format!(
            "timed out after {}s, qemu killed",
            timeout.as_secs()
        )),
        Some(status) if !status.success() => Some(format!("qemu exited with {status}")),
        // QEMU exits 0 when signalled from outside too; it says so on stderr.
        Some(_) => qemu_said
            .iter()
            .find(|line| line.contains("terminating on signal"))
            .map(|line| format!("qemu was stopped from outside ({})", line.trim())),
    };
    Ok(Boot { console, problem })
}

/// Copies a stream line by line to the terminal (prefixed) and the log; returns the lines.
/// Control characters are dropped so firmware escape sequences cannot clear the terminal.
fn pump(stream: impl Read, prefix: &str, log: &Mutex<File>) -> std::io::Result<Vec<String>> {
    let mut reader = BufReader::new(stream);
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    while reader.read_until(b'\n', &mut buf)? > 0 {
        let line: String = String::from_utf8_lossy(&buf)
            .chars()
            .filter(|c| !c.is_control() || *c == '\t')
            .collect();
        buf.clear();
        println!("{prefix}{line}");
        if let Ok(mut file) = log.lock() {
            writeln!(file, "{line}")?;
        }
        lines.push(line);
    }
    Ok(lines)
}

/// The markers /init printed.
#[derive(Debug, Default)]
pub struct Outcome {
    kernel: Option<String>,
    lsm: Option<String>,
    started: Vec<String>,
    exits: Vec<(String, Option<i32>)>,
    done: bool,
}

impl Outcome {
    pub fn parse(lines: &[String]) -> Self {
        let mut outcome = Self::default();
        let after = |line: &str, mark: &str| {
            line.find(mark)
                .map(|at| line[at + mark.len()..].trim().to_owned())
        };
        for line in lines {
            if let Some(kernel) = after(line, MARK_KERNEL) {
                outcome.kernel = Some(kernel);
            } else if let Some(lsm) = after(line, MARK_LSM) {
                outcome.lsm = Some(lsm);
            } else if let Some(rest) = after(line, MARK_START) {
                outcome.started.push(rest);
            } else if let Some(rest) = after(line, MARK_EXIT) {
                let mut words = rest.split_whitespace();
                let name = words.next().unwrap_or_default().to_owned();
                let status = words.next().and_then(|s| s.parse().ok());
                outcome.exits.push((name, status));
            } else if line.contains(MARK_DONE) {
                outcome.done = true;
            }
        }
        outcome
    }

    /// Prints the per-binary results and fails unless every expected binary exited 0, the
    /// guest reached the end of /init, and the boot itself had no `problem`.
    pub fn judge(
        &self,
        strategy: Strategy,
        expected: &[&str],
        problem: Option<&str>,
        log: &Path,
    ) -> Result<()> {
        let unknown = "?".to_owned();
        println!(
            "vm {strategy}: kernel {}, LSMs {}",
            self.kernel.as_ref().unwrap_or(&unknown),
            self.lsm.as_ref().unwrap_or(&unknown)
        );
        let mut failures: Vec<String> = problem.map(str::to_owned).into_iter().collect();
        for name in expected {
            let status = self.exits.iter().find(|(n, _)| n == name).map(|(_, s)| *s);
            let verdict = match status {
                Some(Some(0)) => "PASS".to_owned(),
                Some(Some(137)) => "FAIL (exit 137: SIGKILL, guest timeout?)".to_owned(),
                Some(Some(code)) => format!("FAIL (exit {code})"),
                Some(None) => "FAIL (unreadable status)".to_owned(),
                None if self.started.iter().any(|s| s == name) => {
                    "FAIL (started, never finished)".to_owned()
                }
                None => "FAIL (never started)".to_owned(),
            };
            println!("vm {strategy}:   {verdict:<42} {name}");
            if verdict != "PASS" {
                failures.push(format!("{name}: {verdict}"));
            }
        }
        if self.exits.is_empty() {
            failures.push("no FIM-VM-EXIT marker at all".to_owned());
        }
        if !self.done && problem.is_none() {
            failures.push("no FIM-VM-DONE marker (kernel panic, crash or init died)".into());
        }
        if failures.is_empty() {
            Ok(())
        } else {
            bail!(
                "vm {strategy} failed: {} (serial log {})",
                failures.join("; "),
                log.display()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Outcome, Strategy};
    use std::path::Path;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn judges_markers() {
        let log = Path::new("log");
        let ok = Outcome::parse(&lines(
            "FIM-VM-KERNEL 6.1.0\nFIM-VM-EXIT a 0\n[ 1.0] x FIM-VM-EXIT b 0\nFIM-VM-DONE\n",
        ));
        assert_eq!(ok.kernel.as_deref(), Some("6.1.0"));
        assert!(ok.judge(Strategy::Lsm, &["a", "b"], None, log).is_ok());
        let failed = Outcome::parse(&lines("FIM-VM-EXIT a 101\nFIM-VM-DONE\n"));
        assert!(failed.judge(Strategy::Lsm, &["a"], None, log).is_err());
        let missing = Outcome::parse(&lines("FIM-VM-EXIT a 0\nFIM-VM-DONE\n"));
        assert!(missing
            .judge(Strategy::Lsm, &["a", "b"], None, log)
            .is_err());
        let hung = Outcome::parse(&lines("FIM-VM-EXIT a 0\n"));
        assert!(hung.judge(Strategy::Lsm, &["a"], None, log).is_err());
        let empty = Outcome::parse(&lines("FIM-VM-DONE\n"));
        assert!(empty.judge(Strategy::Lsm, &[], None, log).is_err());
        assert!(ok
            .judge(Strategy::Lsm, &["a", "b"], Some("timed out"), log)
            .is_err());
    }
}
