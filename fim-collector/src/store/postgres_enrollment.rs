//! [`EnrollmentStore`] on PostgreSQL: an enrollment locks its token's row (`FOR UPDATE`),
//! so collectors sharing the database spend a token's uses one at a time.
use postgres::Row;

use super::PostgresStore;
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

fn token_row(row: &Row) -> Result<EnrollmentToken, postgres::Error> {
    Ok(token_from(
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
        row.try_get(5)?,
    ))
}

fn certificate_row(row: &Row) -> Result<AgentCertificate, postgres::Error> {
    Ok(AgentCertificate {
        fingerprint: row.try_get(0)?,
        computer_id: row.try_get(1)?,
        computer: row.try_get(2)?,
        serial: row.try_get(3)?,
        token_name: row.try_get(4)?,
        issued_ns: row.try_get(5)?,
        not_after_ns: row.try_get(6)?,
        revoked_ns: row.try_get(7)?,
        revoked_reason: row.try_get(8)?,
    })
}

impl EnrollmentStore for PostgresStore {
    fn add_enrollment_token(
        &self,
        token: &EnrollmentToken,
        hash: &Digest,
    ) -> Result<(), CollectorError> {
        let added = self.pool.run("adding an enrollment token", |client| {
            Ok(client.execute(
                "INSERT INTO enrollment_token \
                 (name, token_hash, max_uses, uses_left, created_ns, expires_ns) \
                 VALUES ($1, $2, $3, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
                &[
                    &token.name,
                    &hash.as_slice(),
                    &i64::from(token.max_uses),
                    &token.created_ns,
                    &token.expires_ns,
                ],
            )?)
        })?;
        match added {
            0 => Err(CollectorError::TokenExists(token.name.clone())),
            _ => Ok(()),
        }
    }

    fn enrollment_tokens(&self) -> Result<Vec<EnrollmentToken>, CollectorError> {
        self.pool.run("listing enrollment tokens", |client| {
            let rows = client.query(
                &format!("SELECT {TOKEN_COLUMNS} FROM enrollment_token ORDER BY name"),
                &[],
            )?;
            Ok(rows.iter().map(token_row).collect::<Result<_, _>>()?)
        })
    }

    fn revoke_enrollment_token(&self, name: &str, now_ns: i64) -> Result<bool, CollectorError> {
        let changed = self.pool.run("revoking an enrollment token", |client| {
            Ok(client.execute(
                "UPDATE enrollment_token SET revoked_ns = $2 \
                 WHERE name = $1 AND revoked_ns IS NULL",
                &[&name, &now_ns],
            )?)
        })?;
        Ok(changed > 0)
    }

    fn enroll(
        &self,
        hash: &Digest,
        machine: &EnrollingMachine,
        now_ns: i64,
        issue: &dyn Fn() -> Result<IssuedCertificate, String>,
    ) -> Result<Result<AgentCertificate, String>, CollectorError> {
        self.pool.run("enrolling a machine", |client| {
            let mut tx = client.transaction()?;
            let token = tx
                .query_opt(
                    &format!(
                        "SELECT {TOKEN_COLUMNS} FROM enrollment_token WHERE token_hash = $1 \
                         FOR UPDATE"
                    ),
                    &[&hash.as_slice()],
                )?
                .map(|row| token_row(&row))
                .transpose()?;
            let barred: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM agent_certificate \
                     WHERE computer_id = $1 AND revoked_reason = $2)",
                    &[&machine.computer_id, &REVOKED_BY_OWNER],
                )?
                .try_get(0)?;
            let token = match decide(token, barred, machine, now_ns) {
                Ok(token) => token,
                Err(refusal) => return Ok(Err(refusal)),
            };
            let issued = match issue() {
                Ok(issued) => issued_record(issued, machine, &token, now_ns),
                Err(refusal) => return Ok(Err(refusal)),
            };
            tx.execute(
                "UPDATE agent_certificate SET revoked_ns = $2, revoked_reason = $3 \
                 WHERE computer_id = $1 AND revoked_reason IS NULL",
                &[&machine.computer_id, &now_ns, &SUPERSEDED],
            )?;
            tx.execute(
                &format!(
                    "INSERT INTO agent_certificate ({CERTIFICATE_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL)"
                ),
                &[
                    &issued.fingerprint,
                    &issued.computer_id,
                    &issued.computer,
                    &issued.serial,
                    &issued.token_name,
                    &issued.issued_ns,
                    &issued.not_after_ns,
                ],
            )?;
            tx.execute(
                "UPDATE enrollment_token SET uses_left = uses_left - 1 WHERE name = $1",
                &[&token.name],
            )?;
            tx.commit()?;
            Ok(Ok(issued))
        })
    }

    fn agent_certificate(
        &self,
        fingerprint: &str,
    ) -> Result<Option<AgentCertificate>, CollectorError> {
        self.pool.run("looking up an agent certificate", |client| {
            let row = client.query_opt(
                &format!(
                    "SELECT {CERTIFICATE_COLUMNS} FROM agent_certificate WHERE fingerprint = $1"
                ),
                &[&fingerprint],
            )?;
            Ok(row.map(|row| certificate_row(&row)).transpose()?)
        })
    }

    fn agent_certificates(&self) -> Result<Vec<AgentCertificate>, CollectorError> {
        self.pool.run("listing agent certificates", |client| {
            let rows = client.query(
                &format!(
                    "SELECT {CERTIFICATE_COLUMNS} FROM agent_certificate \
                     ORDER BY computer_id, issued_ns"
                ),
                &[],
            )?;
            Ok(rows.iter().map(certificate_row).collect::<Result<_, _>>()?)
        })
    }

    fn revoke_machine(&self, computer_id: &str, now_ns: i64) -> Result<usize, CollectorError> {
        self.pool.run("revoking a machine", |client| {
            let mut tx = client.transaction()?;
            let live = tx.execute(
                "UPDATE agent_certificate SET revoked_ns = $2, revoked_reason = $3 \
                 WHERE computer_id = $1 AND revoked_reason IS NULL",
                &[&computer_id, &now_ns, &REVOKED_BY_OWNER],
            )?;
            if live == 0 {
                // Already revoked or superseded: the bar is still set on the newest one.
                tx.execute(
                    "UPDATE agent_certificate SET revoked_reason = $2 WHERE fingerprint = \
                     (SELECT fingerprint FROM agent_certificate WHERE computer_id = $1 \
                      ORDER BY issued_ns DESC LIMIT 1)",
                    &[&computer_id, &REVOKED_BY_OWNER],
                )?;
            }
            tx.commit()?;
            Ok(usize::try_from(live).unwrap_or(usize::MAX))
        })
    }

    fn readmit_machine(&self, computer_id: &str) -> Result<usize, CollectorError> {
        let lifted = self.pool.run("readmitting a machine", |client| {
            Ok(client.execute(
                "UPDATE agent_certificate SET revoked_reason = $3 \
                 WHERE computer_id = $1 AND revoked_reason = $2",
                &[&computer_id, &REVOKED_BY_OWNER, &readmitted_reason()],
            )?)
        })?;
        Ok(usize::try_from(lifted).unwrap_or(usize::MAX))
    }
}
