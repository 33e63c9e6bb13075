//! `fim-collector token`: API tokens for the Workspace API, managed by whoever can open the
//! workspace database (the collector's owner). The secret is printed once, on stdout, and
//! only its hash is stored.
use clap::Subcommand;
use fim_collector::auth::{self, ApiToken, Role};
use fim_model::Timestamp;

#[derive(Subcommand, Debug)]
pub(crate) enum TokenCommand {
    /// Make a token and print its secret (shown this once).
    Create {
        /// A unique name, to list and revoke it by.
        #[arg(long)]
        name: String,
        /// reader (queries, machines) or owner.
        #[arg(long, default_value = "reader")]
        role: Role,
        /// Days until it expires (none: until revoked).
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by name; its holder is refused from the next call.
    Revoke { name: String },
}

const DAY_NS: i64 = 86_400_000_000_000;

pub(crate) fn run(database: &crate::DatabaseArgs, command: TokenCommand) -> anyhow::Result<()> {
    let (store, _) = database.open(false)?;
    let now = Timestamp::now().unix_nanos();
    match command {
        TokenCommand::Create {
            name,
            role,
            expires_days,
        } => {
            let (secret, hash) = auth::new_secret()?;
            let token = ApiToken {
                name,
                role,
                created_ns: now,
                expires_ns: expires_days.map(|days| now + i64::from(days) * DAY_NS),
                revoked_ns: None,
            };
            store.add_token(&token, &hash)?;
            println!("{secret}");
            tracing::info!(name = %token.name, role = %token.role, "API token created");
        }
        TokenCommand::List => {
            for token in store.tokens()? {
                let at = |ns: i64| Timestamp::from_unix_nanos(ns).to_rfc3339();
                let state = match (token.revoked_ns, token.refusal(now)) {
                    (Some(revoked), _) => format!("revoked {}", at(revoked)),
                    (None, Some(_)) => "expired".to_string(),
                    (None, None) => "active".to_string(),
                };
                println!(
                    "{}\t{}\tcreated {}\texpires {}\t{state}",
                    token.name,
                    token.role,
                    at(token.created_ns),
                    token.expires_ns.map_or_else(|| "never".to_string(), at)
                );
            }
        }
        TokenCommand::Revoke { name } => {
            if !store.revoke_token(&name, now)? {
                anyhow::bail!("no active API token named {name:?}");
            }
            println!("revoked {name}");
        }
    }
    Ok(())
}
