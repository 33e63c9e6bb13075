//! API tokens for people and tools: who may query the workspace, and who may change it.
//!
//! A token is 32 random bytes shown once, as `fimw_` and 64 hex digits, when it is made;
//! the database keeps only its BLAKE3 hash, so a copy of the database does not hand out
//! working tokens. A fast hash is enough here (argon2 is for passwords people choose): the
//! secret has 256 bits of entropy, so there is nothing to guess offline. Tokens have a
//! role, may expire, and can be revoked; a revoked or expired token is refused like an
//! unknown one, and the refusal says which.
use std::{fmt, str::FromStr};

use fim_engine::state::Digest;

/// What a token lets its holder do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads changes, runs queries, lists machines.
    Reader,
    /// A reader who may also change the workspace (entities, tokens, enrollment).
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Owner => "owner",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "reader" => Ok(Role::Reader),
            "owner" => Ok(Role::Owner),
            other => Err(format!("unknown role {other:?} (reader or owner)")),
        }
    }
}

/// A token as the workspace keeps it (never the secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiToken {
    /// Unique; how owners list and revoke it.
    pub name: String,
    pub role: Role,
    pub created_ns: i64,
    pub expires_ns: Option<i64>,
    pub revoked_ns: Option<i64>,
}

impl ApiToken {
    /// Why the token may not be used at `now_ns`, None when it may.
    pub fn refusal(&self, now_ns: i64) -> Option<String> {
        if self.revoked_ns.is_some() {
            return Some(format!("the API token {:?} was revoked", self.name));
        }
        match self.expires_ns {
            Some(expires) if expires <= now_ns => {
                Some(format!("the API token {:?} has expired", self.name))
            }
            _ => None,
        }
    }
}

const PREFIX: &str = "fimw_";

/// A new secret and the hash to store.
pub fn new_secret() -> std::io::Result<(String, Digest)> {
    random_secret(PREFIX)
}

/// 32 random bytes as `prefix` and 64 hex digits, and the hash to store (enrollment tokens
/// are made the same way, under their own prefix).
pub(crate) fn random_secret(prefix: &str) -> std::io::Result<(String, Digest)> {
    let mut bytes = [0u8; 32];
    fim_engine::platform::random_bytes(&mut bytes)?;
    let secret = format!("{prefix}{}", crate::chain::hex(&bytes));
    let hash = secret_hash(&secret);
    Ok((secret, hash))
}

/// The stored form of a secret.
pub fn secret_hash(secret: &str) -> Digest {
    *blake3::hash(secret.trim().as_bytes()).as_bytes()
}

/// The secret carried by an `authorization` header value (`Bearer <secret>`).
pub fn bearer(header: &str) -> Option<&str> {
    let secret = header.strip_prefix("Bearer ")?.trim();
    (secret.starts_with(PREFIX) && secret.len() == PREFIX.len() + 64).then_some(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_distinct_well_formed_and_only_their_hash_is_kept() {
        let (first, first_hash) = new_secret().unwrap();
        let (second, _) = new_secret().unwrap();
        assert_ne!(first, second);
        assert_eq!(bearer(&format!("Bearer {first}")), Some(first.as_str()));
        assert_eq!(secret_hash(&first), first_hash);
        assert_eq!(bearer(&first), None, "the scheme is required");
        assert_eq!(bearer("Bearer fimw_short"), None);
        assert_eq!(bearer("Basic abc"), None);
    }

    #[test]
    fn a_revoked_or_expired_token_is_refused_with_the_reason() {
        let token = ApiToken {
            name: "ci".into(),
            role: Role::Reader,
            created_ns: 1,
            expires_ns: Some(100),
            revoked_ns: None,
        };
        assert_eq!(token.refusal(99), None);
        assert_eq!(
            token.refusal(100).as_deref(),
            Some("the API token \"ci\" has expired")
        );
        let revoked = ApiToken {
            revoked_ns: Some(5),
            ..token
        };
        assert_eq!(
            revoked.refusal(6).as_deref(),
            Some("the API token \"ci\" was revoked")
        );
        assert_eq!("owner".parse::<Role>(), Ok(Role::Owner));
        assert!("admin".parse::<Role>().is_err());
    }
}
