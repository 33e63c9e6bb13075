//! [`EnrollmentStore`] on SQLite: each enrollment is one IMMEDIATE transaction, so the
//! token's remaining uses are read and spent under the database's write lock.
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::SqliteStore;
use crate::store::enrollment::{
    decide, issued_record, readmitted_reason, token_from, EnrollmentStore, CERTIFICATE_COLUMNS,
    TOKEN_COLUMNS,
};
use crate::{
    ca::IssuedCertificate,
    enrollment::{
        AgentCertificate, EnrollingMachine, EnrollmentToken, REVOKED_BY_OWNER, SUPERSEDED,
    },
    error::CollectorError,
};
use fim_engine::state::Digest;

fn token_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<EnrollmentToken> {
    Ok(token_from(
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn certificate_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AgentCertificate> {
    Ok(AgentCertificate {
        fingerprint: row.get(0)?,
        computer_id: row.get(1)?,
        computer: row.get(2)?,
        serial: row.get(3)?,
        token_name: row.get(4)?,
        issued_ns: row.get(5)?,
        not_after_ns: row.get(6)?,
        revoked_ns: row.get(7)?,
        revoked_reason: row.get(8)?,
    })
}

impl EnrollmentStore for SqliteStore {
    fn add_enrollment_token(
        &self,
        token: &EnrollmentToken,
        hash: &Digest,
    ) -> Result<(), CollectorError> {
        let conn = self.lock();
        let added = conn
            .execute(
                "INSERT INTO enrollment_token \
                 (name, token_hash, max_uses, uses_left, created_ns, expires_ns) \
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5) ON CONFLICT (name) DO NOTHING",
                params![
                    token.name,
                    hash.to_vec(),
                    i64::from(token.max_uses),
                    token.created_ns,
                    token.expires_ns
                ],
            )
            .map_err(self.fail("adding an enrollment token"))?;
        match added {
            0 => Err(CollectorError::TokenExists(token.name.clone())),
            _ => Ok(()),
        }
    }

    fn enrollment_tokens(&self) -> Result<Vec<EnrollmentToken>, CollectorError> {
        let conn = self.lock();
        let fail = self.fail("listing enrollment tokens");
        let mut statement = conn
            .prepare(&format!(
                "SELECT {TOKEN_COLUMNS} FROM enrollment_token ORDER BY name"
            ))
            .map_err(&fail)?;
        let tokens = statement
            .query_map([], token_row)
            .map_err(&fail)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(&fail)?;
        Ok(tokens)
    }

    fn revoke_enrollment_token(&self, name: &str, now_ns: i64) -> Result<bool, CollectorError> {
        let changed = self
            .lock()
            .execute(
                "UPDATE enrollment_token SET revoked_ns = ?2 \
                 WHERE name = ?1 AND revoked_ns IS NULL",
                params![name, now_ns],
            )
            .map_err(self.fail("revoking an enrollment token"))?;
        Ok(changed > 0)
    }

    fn enroll(
        &self,
        hash: &Digest,
        machine: &EnrollingMachine,
        now_ns: i64,
        issue: &dyn Fn() -> Result<IssuedCertificate, String>,
    ) -> Result<Result<AgentCertificate, String>, CollectorError> {
        let mut conn = self.lock();
        let fail = self.fail("enrolling a machine");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&fail)?;
        let token = tx
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM enrollment_token WHERE token_hash = ?1"),
                params![hash.to_vec()],
                token_row,
            )
            .optional()
            .map_err(&fail)?;
        let barred: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM agent_certificate \
                 WHERE computer_id = ?1 AND revoked_reason = ?2)",
                params![machine.computer_id, REVOKED_BY_OWNER],
                |row| row.get(0),
            )
            .map_err(&fail)?;
        let token = match decide(token, barred, machine, now_ns) {
            Ok(token) => token,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let issued = match issue() {
            Ok(issued) => issued_record(issued, machine, &token, now_ns),
            Err(refusal) => return Ok(Err(refusal)),
        };
        tx.execute(
            "UPDATE agent_certificate SET revoked_ns = ?2, revoked_reason = ?3 \
             WHERE computer_id = ?1 AND revoked_reason IS NULL",
            params![machine.computer_id, now_ns, SUPERSEDED],
        )
        .map_err(&fail)?;
        tx.execute(
            &format!(
                "INSERT INTO agent_certificate ({CERTIFICATE_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, NULL)"
            ),
            params![
                issued.fingerprint,
                issued.computer_id,
                issued.computer,
                issued.serial,
                issued.token_name,
                issued.issued_ns,
                issued.not_after_ns
            ],
        )
        .map_err(&fail)?;
        tx.execute(
            "UPDATE enrollment_token SET uses_left = uses_left - 1 WHERE name = ?1",
            params![token.name],
        )
        .map_err(&fail)?;
        tx.commit().map_err(&fail)?;
        Ok(Ok(issued))
    }

    fn agent_certificate(
        &self,
        fingerprint: &str,
    ) -> Result<Option<AgentCertificate>, CollectorError> {
        self.lock()
            .query_row(
                &format!(
                    "SELECT {CERTIFICATE_COLUMNS} FROM agent_certificate WHERE fingerprint = ?1"
                ),
                params![fingerprint],
                certificate_row,
            )
            .optional()
            .map_err(self.fail("looking up an agent certificate"))
    }

    fn agent_certificates(&self) -> Result<Vec<AgentCertificate>, CollectorError> {
        let conn = self.lock();
        let fail = self.fail("listing agent certificates");
        let mut statement = conn
            .prepare(&format!(
                "SELECT {CERTIFICATE_COLUMNS} FROM agent_certificate \
                 ORDER BY computer_id, issued_ns"
            ))
            .map_err(&fail)?;
        let certificates = statement
            .query_map([], certificate_row)
            .map_err(&fail)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(&fail)?;
        Ok(certificates)
    }

    fn revoke_machine(&self, computer_id: &str, now_ns: i64) -> Result<usize, CollectorError> {
        let mut conn = self.lock();
        let fail = self.fail("revoking a machine");
        let tx = conn.transaction().map_err(&fail)?;
        let live = tx
            .execute(
                "UPDATE agent_certificate SET revoked_ns = ?2, revoked_reason = ?3 \
                 WHERE computer_id = ?1 AND revoked_reason IS NULL",
                params![computer_id, now_ns, REVOKED_BY_OWNER],
            )
            .map_err(&fail)?;
        if live == 0 {
            // Already revoked or superseded: the bar is still set on the newest one.
            tx.execute(
                "UPDATE agent_certificate SET revoked_reason = ?2 WHERE fingerprint = \
                 (SELECT fingerprint FROM agent_certificate WHERE computer_id = ?1 \
                  ORDER BY issued_ns DESC LIMIT 1)",
                params![computer_id, REVOKED_BY_OWNER],
            )
            .map_err(&fail)?;
        }
        tx.commit().map_err(&fail)?;
        Ok(live)
    }

    fn readmit_machine(&self, computer_id: &str) -> Result<usize, CollectorError> {
        let lifted = self
            .lock()
            .execute(
                "UPDATE agent_certificate SET revoked_reason = ?3 \
                 WHERE computer_id = ?1 AND revoked_reason = ?2",
                params![computer_id, REVOKED_BY_OWNER, readmitted_reason()],
            )
            .map_err(self.fail("readmitting a machine"))?;
        Ok(lifted)
    }
}
