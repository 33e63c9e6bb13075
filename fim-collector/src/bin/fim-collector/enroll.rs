//! `fim-collector enroll`: enrollment tokens, the certificates machines were issued, and
//! throwing a machine out. Run by whoever can open the workspace database and the CA's
//! directory (the collector's owner). A token's secret is shown once and only its hash kept.
use std::path::{Path, PathBuf};

use clap::Subcommand;
use fim_collector::{
    ca::WorkspaceCa,
    enrollment::{self, EnrollmentToken},
};
use fim_model::Timestamp;

#[derive(Subcommand, Debug)]
pub(crate) enum EnrollCommand {
    /// Make an enrollment token and print its secret (shown this once), with the flags an
    /// agent needs. Makes the workspace CA if there is none yet.
    Create {
        /// A unique name, to list and revoke it by.
        #[arg(long)]
        name: String,
        /// How many machines may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Hours until it expires.
        #[arg(long, default_value_t = 24)]
        expires_hours: u32,
        /// Write the secret to this file (created 0600) instead of stdout.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
    /// List enrollment tokens (never their secrets).
    List,
    /// Revoke an enrollment token by name: no machine enrolls with it from now on
    /// (machines enrolled with it stay enrolled).
    Revoke { name: String },
    /// Every certificate issued to a machine, with its state.
    Certificates,
    /// Throw a machine out: its certificates stop working at its next connection, and it
    /// cannot enroll again until readmitted.
    RevokeMachine { computer_id: String },
    /// Let a revoked machine enroll again (with a new token).
    ReadmitMachine { computer_id: String },
}

const HOUR_NS: i64 = 3_600_000_000_000;

pub(crate) fn run(
    database: &crate::DatabaseArgs,
    tls_dir: &Path,
    command: EnrollCommand,
) -> anyhow::Result<()> {
    let (store, _) = database.open(false)?;
    let now = Timestamp::now().unix_nanos();
    let at = |ns: i64| Timestamp::from_unix_nanos(ns).to_rfc3339();
    match command {
        EnrollCommand::Create {
            name,
            uses,
            expires_hours,
            out,
        } => {
            if uses == 0 || expires_hours == 0 {
                anyhow::bail!("--uses and --expires-hours must be at least 1");
            }
            let ca = WorkspaceCa::load_or_create(tls_dir)?;
            let (secret, hash) = enrollment::new_secret()?;
            let token = EnrollmentToken {
                name,
                max_uses: uses,
                uses_left: uses,
                created_ns: now,
                expires_ns: now + i64::from(expires_hours) * HOUR_NS,
                revoked_ns: None,
            };
            store.add_enrollment_token(&token, &hash)?;
            let token_file = match out {
                Some(path) => {
                    fim_engine::platform::write_private_file(&path, secret.as_bytes())?;
                    path.display().to_string()
                }
                None => {
                    println!("{secret}");
                    "FILE".to_string()
                }
            };
            tracing::info!(
                name = %token.name,
                uses,
                expires = %at(token.expires_ns),
                "enrollment token created; agents join with --collector ADDR --collector-ca {} \
                 --enroll-token-file {token_file}",
                ca.ca_path().display()
            );
        }
        EnrollCommand::List => {
            for token in store.enrollment_tokens()? {
                let state = token.refusal(now).unwrap_or_else(|| "usable".to_string());
                println!(
                    "{}\t{} of {} uses left\tcreated {}\texpires {}\t{state}",
                    token.name,
                    token.uses_left,
                    token.max_uses,
                    at(token.created_ns),
                    at(token.expires_ns)
                );
            }
        }
        EnrollCommand::Revoke { name } => {
            if !store.revoke_enrollment_token(&name, now)? {
                anyhow::bail!("no active enrollment token named {name:?}");
            }
            println!("revoked {name}");
        }
        EnrollCommand::Certificates => {
            for certificate in store.agent_certificates()? {
                let state = certificate
                    .refusal(now)
                    .unwrap_or_else(|| "valid".to_string());
                println!(
                    "{} ({})\tSHA256:{}\tissued {} with {:?}\tuntil {}\t{state}",
                    certificate.computer,
                    certificate.computer_id,
                    certificate.fingerprint,
                    at(certificate.issued_ns),
                    certificate.token_name,
                    at(certificate.not_after_ns)
                );
            }
        }
        EnrollCommand::RevokeMachine { computer_id } => {
            let certificates = store.agent_certificates()?;
            if !certificates
                .iter()
                .any(|certificate| certificate.computer_id == computer_id)
            {
                anyhow::bail!("no certificate was ever issued to computer {computer_id:?}");
            }
            let live = store.revoke_machine(&computer_id, now)?;
            println!(
                "revoked computer {computer_id} ({live} live certificates); it is refused from \
                 its next connection"
            );
        }
        EnrollCommand::ReadmitMachine { computer_id } => {
            match store.readmit_machine(&computer_id)? {
                0 => anyhow::bail!("computer {computer_id:?} is not revoked"),
                _ => println!("computer {computer_id} may enroll again"),
            }
        }
    }
    Ok(())
}
