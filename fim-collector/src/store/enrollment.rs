//! The enrollment half of the storage contract ([`EnrollmentStore`]): enrollment tokens and
//! the certificates agents were issued ([`crate::enrollment`] says why each rule exists).
//! The decisions are made here once ([`decide`]); each backend only reads and writes rows,
//! inside one transaction per enrollment so two agents racing for a token's last use cannot
//! both get it.
use fim_engine::state::Digest;

use crate::{
    ca::IssuedCertificate,
    enrollment::{AgentCertificate, EnrollingMachine, EnrollmentToken, REVOKED_BY_OWNER},
    error::CollectorError,
};

/// The tables, in the SQL both backends accept (integers are 64-bit in both; blobs are
/// `bytea` in PostgreSQL, hence the placeholder). `IF NOT EXISTS`: added to workspaces made
/// before enrollment existed when they are opened.
const TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS enrollment_token (
    name        TEXT    PRIMARY KEY,
    token_hash  {BLOB}  NOT NULL UNIQUE,
    max_uses    BIGINT  NOT NULL,
    uses_left   BIGINT  NOT NULL,
    created_ns  BIGINT  NOT NULL,
    expires_ns  BIGINT  NOT NULL,
    revoked_ns  BIGINT
);
-- Every certificate the workspace CA issued to an agent; never deleted, so revocations
-- and supersessions stay on record.
CREATE TABLE IF NOT EXISTS agent_certificate (
    fingerprint    TEXT    PRIMARY KEY,
    computer_id    TEXT    NOT NULL,
    computer       TEXT    NOT NULL,
    serial         TEXT    NOT NULL,
    token_name     TEXT    NOT NULL,
    issued_ns      BIGINT  NOT NULL,
    not_after_ns   BIGINT  NOT NULL,
    revoked_ns     BIGINT,
    revoked_reason TEXT
);
CREATE INDEX IF NOT EXISTS agent_certificate_computer ON agent_certificate (computer_id);
"#;

/// The tables for SQLite (`sqlite`) or PostgreSQL.
pub(super) fn tables(sqlite: bool) -> String {
    TABLES.replace("{BLOB}", if sqlite { "BLOB" } else { "BYTEA" })
}

/// The token table's columns, in [`token_from`]'s order.
pub(super) const TOKEN_COLUMNS: &str =
    "name, max_uses, uses_left, created_ns, expires_ns, revoked_ns";

/// The certificate table's columns, in [`AgentCertificate`]'s field order.
pub(super) const CERTIFICATE_COLUMNS: &str = "fingerprint, computer_id, computer, serial, \
     token_name, issued_ns, not_after_ns, revoked_ns, revoked_reason";

/// What readmission leaves as the reason of an owner's revocation: still revoked (the old
/// certificates stay dead), no longer barring a new enrollment.
pub(super) fn readmitted_reason() -> String {
    format!("{REVOKED_BY_OWNER} (the machine was readmitted since)")
}

pub trait EnrollmentStore {
    /// Stores a new enrollment token under its hash; a name already used is refused.
    fn add_enrollment_token(
        &self,
        token: &EnrollmentToken,
        hash: &Digest,
    ) -> Result<(), CollectorError>;

    /// Every enrollment token, by name.
    fn enrollment_tokens(&self) -> Result<Vec<EnrollmentToken>, CollectorError>;

    /// Revokes the named token; false when there is none (or it was revoked already).
    fn revoke_enrollment_token(&self, name: &str, now_ns: i64) -> Result<bool, CollectorError>;

    /// In one transaction: finds the token with this hash, [`decide`]s, and when allowed
    /// calls `issue`, records the certificate, supersedes the machine's older ones and
    /// counts the token's use. The inner error is the refusal, for the agent.
    fn enroll(
        &self,
        hash: &Digest,
        machine: &EnrollingMachine,
        now_ns: i64,
        issue: &dyn Fn() -> Result<IssuedCertificate, String>,
    ) -> Result<Result<AgentCertificate, String>, CollectorError>;

    /// The certificate with this fingerprint, revoked ones included.
    fn agent_certificate(
        &self,
        fingerprint: &str,
    ) -> Result<Option<AgentCertificate>, CollectorError>;

    /// Every certificate issued, by computer id then issue time.
    fn agent_certificates(&self) -> Result<Vec<AgentCertificate>, CollectorError>;

    /// Revokes every live certificate of the machine and bars it from enrolling again;
    /// returns how many certificates were live.
    fn revoke_machine(&self, computer_id: &str, now_ns: i64) -> Result<usize, CollectorError>;

    /// Lets a revoked machine enroll again (its old certificates stay revoked); returns how
    /// many revocations it lifted the bar of.
    fn readmit_machine(&self, computer_id: &str) -> Result<usize, CollectorError>;
}

/// The token `machine` may enroll with (None: no token has that hash), given whether an
/// owner revoked the machine and has not readmitted it; or why it may not.
pub(super) fn decide(
    token: Option<EnrollmentToken>,
    barred: bool,
    machine: &EnrollingMachine,
    now_ns: i64,
) -> Result<EnrollmentToken, String> {
    let Some(token) = token else {
        return Err("unknown enrollment token".to_string());
    };
    if let Some(reason) = token.refusal(now_ns) {
        return Err(reason);
    }
    if barred {
        return Err(format!(
            "computer {} was revoked by an owner; it may enroll again only once an owner \
             runs `fim-collector enroll readmit-machine {}`",
            machine.computer_id, machine.computer_id
        ));
    }
    Ok(token)
}

/// The record of a certificate just issued.
pub(super) fn issued_record(
    issued: IssuedCertificate,
    machine: &EnrollingMachine,
    token: &EnrollmentToken,
    now_ns: i64,
) -> AgentCertificate {
    AgentCertificate {
        fingerprint: issued.fingerprint,
        computer_id: machine.computer_id.clone(),
        computer: machine.computer.clone(),
        serial: issued.serial,
        token_name: token.name.clone(),
        issued_ns: now_ns,
        not_after_ns: issued.not_after_ns,
        revoked_ns: None,
        revoked_reason: None,
    }
}

/// A token row (counts are stored as BIGINT; a negative one reads as 0).
pub(super) fn token_from(
    name: String,
    max_uses: i64,
    uses_left: i64,
    created_ns: i64,
    expires_ns: i64,
    revoked_ns: Option<i64>,
) -> EnrollmentToken {
    EnrollmentToken {
        name,
        max_uses: u32::try_from(max_uses).unwrap_or(0),
        uses_left: u32::try_from(uses_left).unwrap_or(0),
        created_ns,
        expires_ns,
        revoked_ns,
    }
}
