//! `cargo xtask run [-- fimd args...]`: set up, build release, and become fimd.
//!
//! Why exec rather than spawn: fimd then owns the terminal and receives Ctrl-C directly, and its
//! exit status is the command's. With no arguments fimd runs the engine on its embedded default:
//! the built-in policy (while /etc/fim/policy.toml does not exist) and the SQLite store in
//! /var/lib/fim.

use std::os::unix::process::CommandExt as _;
use std::process::Command;

use anyhow::{bail, Result};

use crate::{is_root, setup, show, target_dir};

pub fn run(args: &[String]) -> Result<()> {
    if !is_root() {
        bail!("fimd loads BPF programs and needs root: run `cargo xtask run` as root");
    }
    setup::run()?;
    crate::build::run(true)?;
    let fimd = target_dir().join("release").join("fimd");
    if !fimd.is_file() {
        bail!("{} was not built", fimd.display());
    }
    let mut cmd = Command::new(&fimd);
    cmd.args(args);
    eprintln!("xtask: exec {}", show(&cmd));
    // exec only returns on failure.
    let err = cmd.exec();
    Err(anyhow::Error::new(err).context(format!("exec {}", fimd.display())))
}
