//! Enrollment: how a machine joins the workspace, once, and how it is thrown out.
//!
//! An owner makes an enrollment token (`fim-collector enroll create`): a secret shown once
//! as `fime_` and 64 hex digits, kept as its BLAKE3 hash (like API tokens, [`crate::auth`]),
//! that expires and allows a limited number of enrollments. An agent presents it once with a
//! certificate request for a key it generated; the CA ([`crate::ca`]) signs a client
//! certificate for the agent's computer id, the token's use is counted in the same
//! transaction as the certificate is recorded, and the agent reports over mutual TLS from
//! then on. Every Report stream is matched to its certificate's record by fingerprint, so a
//! revoked machine is refused at its next Hello, and the Hello's computer id must be the one
//! the certificate was issued to: one machine's certificate cannot write another's journal.
//!
//! A machine that enrolls again (reinstalled, its key lost) gets a new certificate, and its
//! older ones stop working ("superseded"): a copied key does not keep a clone reporting
//! beside the machine. A machine an owner revoked cannot enroll again, whatever token it
//! holds, until an owner readmits it.
use fim_engine::state::Digest;

/// A secret's prefix, so a token pasted in the wrong place is recognised.
pub const TOKEN_PREFIX: &str = "fime_";

/// Why a certificate stopped working.
pub const REVOKED_BY_OWNER: &str = "revoked by an owner";
pub const SUPERSEDED: &str = "superseded by a later enrollment of the machine";

/// An enrollment token as the workspace keeps it (never the secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrollmentToken {
    /// Unique; how owners list and revoke it.
    pub name: String,
    pub max_uses: u32,
    pub uses_left: u32,
    pub created_ns: i64,
    pub expires_ns: i64,
    pub revoked_ns: Option<i64>,
}

impl EnrollmentToken {
    /// Why the token may not enroll a machine at `now_ns`, None when it may.
    pub fn refusal(&self, now_ns: i64) -> Option<String> {
        if self.revoked_ns.is_some() {
            Some(format!("the enrollment token {:?} was revoked", self.name))
        } else if self.expires_ns <= now_ns {
            Some(format!("the enrollment token {:?} has expired", self.name))
        } else if self.uses_left == 0 {
            Some(format!(
                "the enrollment token {:?} has been used for all of its {} enrollments",
                self.name, self.max_uses
            ))
        } else {
            None
        }
    }
}

/// A certificate the CA issued to a machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentCertificate {
    /// SHA-256 of the DER, hex.
    pub fingerprint: String,
    pub computer_id: String,
    pub computer: String,
    pub serial: String,
    /// The enrollment token it was issued with.
    pub token_name: String,
    pub issued_ns: i64,
    pub not_after_ns: i64,
    pub revoked_ns: Option<i64>,
    pub revoked_reason: Option<String>,
}

impl AgentCertificate {
    /// Why a stream presenting it is refused at `now_ns`, None when it is not.
    pub fn refusal(&self, now_ns: i64) -> Option<String> {
        if let Some(reason) = &self.revoked_reason {
            return Some(format!(
                "the certificate of computer {} was {reason}",
                self.computer_id
            ));
        }
        (self.not_after_ns <= now_ns).then(|| {
            format!(
                "the certificate of computer {} has expired; enroll the machine again",
                self.computer_id
            )
        })
    }
}

/// What a machine asks for when it enrolls.
#[derive(Clone, Debug)]
pub struct EnrollingMachine {
    pub computer_id: String,
    pub computer: String,
}

/// A new secret and the hash to store.
pub fn new_secret() -> std::io::Result<(String, Digest)> {
    crate::auth::random_secret(TOKEN_PREFIX)
}

/// Whether `text` has the shape of an enrollment secret (checked before any lookup).
pub fn well_formed(text: &str) -> bool {
    let text = text.trim();
    text.len() == TOKEN_PREFIX.len() + 64
        && text.starts_with(TOKEN_PREFIX)
        && text[TOKEN_PREFIX.len()..]
            .bytes()
            .all(|byte| byte.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_refused_once_revoked_expired_or_used_up_and_says_which() {
        let token = EnrollmentToken {
            name: "fleet".into(),
            max_uses: 2,
            uses_left: 1,
            created_ns: 1,
            expires_ns: 100,
            revoked_ns: None,
        };
        assert_eq!(token.refusal(99), None);
        assert!(token.refusal(100).unwrap().contains("expired"));
        let used = EnrollmentToken {
            uses_left: 0,
            ..token.clone()
        };
        assert!(used.refusal(5).unwrap().contains("all of its 2"));
        let revoked = EnrollmentToken {
            revoked_ns: Some(3),
            ..token
        };
        assert!(revoked.refusal(5).unwrap().contains("revoked"));
    }

    #[test]
    fn secrets_have_their_own_prefix() {
        let (secret, hash) = new_secret().unwrap();
        assert!(well_formed(&secret), "{secret}");
        assert_eq!(crate::auth::secret_hash(&secret), hash);
        assert!(!well_formed(&secret.replace("fime_", "fimw_")));
        assert!(!well_formed("fime_zz"));
    }
}
