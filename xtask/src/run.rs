//! `cargo xtask run [-- fimd args...]`: set up, build release, start the workspace collector,
//! and become fimd reporting to it.
//!
//! Why exec rather than spawn: fimd then owns the terminal and receives Ctrl-C directly, and its
//! exit status is the command's. With no arguments fimd runs the engine on its embedded default:
//! the built-in policy (while /etc/fim/policy.toml does not exist) and the SQLite store in
//! /var/lib/fim. The collector runs beside it (same process group, so Ctrl-C stops it too) on
//! its embedded SQLite store in /var/lib/fim-collector, and fimd reports to it over mutual
//! TLS: it gets `--collector ADDR`, the workspace CA, and (until it is enrolled) a one-use
//! enrollment token made here.

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};

use crate::{is_root, setup, show, target_dir};

/// Where `cargo xtask run`'s collector keeps its database, and where it listens.
const COLLECTOR_STATE: &str = "/var/lib/fim-collector";
const COLLECTOR_LISTEN: &str = "127.0.0.1:7700";

pub fn run(args: &[String]) -> Result<()> {
    if !is_root() {
        bail!("fimd loads BPF programs and needs root: run `cargo xtask run` as root");
    }
    setup::run()?;
    crate::build::run(true)?;
    let release = target_dir().join("release");
    let fimd = release.join("fimd");
    if !fimd.is_file() {
        bail!("{} was not built", fimd.display());
    }
    let address = start_collector(&release.join("fim-collector"))?;
    println!("xtask: the workspace collector listens on {address} (state in {COLLECTOR_STATE})");
    let ca = std::path::Path::new(COLLECTOR_STATE).join("tls/ca.pem");
    match local_owner_token(&release.join("fim-collector")) {
        Ok(token_file) => println!(
            "xtask: query the workspace: fim --workspace https://{address} --workspace-ca {} \
             --token-file {} changes   (or summary, query 'KQL', machines)",
            ca.display(),
            token_file.display()
        ),
        Err(error) => eprintln!("xtask: no workspace API token for the local owner: {error:#}"),
    }
    let mut cmd = Command::new(&fimd);
    cmd.arg("--collector")
        .arg(&address)
        .arg("--collector-ca")
        .arg(&ca);
    if !std::path::Path::new(FIMD_CERTIFICATE).exists() {
        let token = enrollment_token(&release.join("fim-collector"))?;
        cmd.arg("--enroll-token-file").arg(token);
    }
    cmd.args(args);
    eprintln!("xtask: exec {}", show(&cmd));
    // exec only returns on failure.
    let err = cmd.exec();
    Err(anyhow::Error::new(err).context(format!("exec {}", fimd.display())))
}

/// The certificate fimd keeps once it is enrolled (its default state directory).
const FIMD_CERTIFICATE: &str = "/var/lib/fim/collector-agent.pem";

/// A one-use enrollment token for the local fimd, in a root-only file beside the
/// collector's database.
fn enrollment_token(binary: &std::path::Path) -> Result<std::path::PathBuf> {
    let path = std::path::Path::new(COLLECTOR_STATE).join("local-fimd.token");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let output = Command::new(binary)
        .args(["enroll", "create", "--state-dir", COLLECTOR_STATE])
        .arg("--name")
        .arg(format!("local-fimd-{stamp}"))
        .arg("--out")
        .arg(&path)
        .output()
        .context("running fim-collector enroll create")?;
    if !output.status.success() {
        bail!(
            "fim-collector enroll create: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(path)
}

/// An owner API token for whoever ran `cargo xtask run`, in a root-only file beside the
/// collector's database (made once; a new one, under a new name, if the file was removed).
fn local_owner_token(binary: &std::path::Path) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = std::path::Path::new(COLLECTOR_STATE).join("local-owner.token");
    if path.is_file() {
        return Ok(path);
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let output = Command::new(binary)
        .args([
            "token",
            "--state-dir",
            COLLECTOR_STATE,
            "create",
            "--role",
            "owner",
        ])
        .arg("--name")
        .arg(format!("local-owner-{stamp}"))
        .output()
        .context("running fim-collector token create")?;
    if !output.status.success() {
        bail!(
            "fim-collector token create: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut file, &output.stdout)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Starts `fim-collector serve` and returns the address it printed.
fn start_collector(binary: &std::path::Path) -> Result<String> {
    let mut cmd = Command::new(binary);
    cmd.args([
        "serve",
        "--state-dir",
        COLLECTOR_STATE,
        "--listen",
        COLLECTOR_LISTEN,
    ]);
    cmd.stdout(Stdio::piped());
    eprintln!("xtask: $ {}", show(&cmd));
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stdout = child.stdout.take().context("the collector's stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .context("reading the collector's address")?;
    match line.trim().strip_prefix("fim-collector listening on ") {
        Some(address) => Ok(address.to_string()),
        None => {
            let status = child.wait().context("waiting for the collector")?;
            bail!("the collector did not start ({status}); its log is above")
        }
    }
}
