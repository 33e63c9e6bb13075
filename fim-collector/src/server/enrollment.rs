//! fim.collector.v1 Enrollment: an agent with an enrollment token gets a certificate.
//!
//! Served only over TLS (a token must not cross a network in clear). The request is checked
//! for shape before the database is asked (sizes, the token's form), the token and the
//! machine are judged and the certificate recorded in one transaction
//! ([`crate::store::EnrollmentStore::enroll`]), and every refusal is logged with the
//! computer it was for: a run of refused enrollments is what an owner wants to see.
use std::sync::Arc;

use fim_api::collector_pb::{enrollment_server::Enrollment, EnrollRequest, EnrollResponse};
use fim_model::Timestamp;
use tonic::{Request, Response, Status};

use crate::{
    auth,
    ca::WorkspaceCa,
    enrollment::{self, EnrollingMachine},
    store::CollectorStore,
};

/// The longest computer id or name accepted (as in a Hello).
const MAX_NAME_BYTES: usize = 256;

pub struct EnrollmentService {
    store: Arc<dyn CollectorStore>,
    ca: Arc<WorkspaceCa>,
}

impl EnrollmentService {
    pub fn new(store: Arc<dyn CollectorStore>, ca: Arc<WorkspaceCa>) -> Self {
        EnrollmentService { store, ca }
    }
}

#[tonic::async_trait]
impl Enrollment for EnrollmentService {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let peer = request.remote_addr();
        let request = request.into_inner();
        check_shape(&request)?;
        let machine = EnrollingMachine {
            computer_id: request.computer_id,
            computer: request.computer,
        };
        let hash = auth::secret_hash(&request.token);
        let (store, ca) = (Arc::clone(&self.store), Arc::clone(&self.ca));
        let enrolling = machine.clone();
        let csr = request.certificate_request_pem;
        let outcome = tokio::task::spawn_blocking(move || {
            // The PEM is the agent's; the store keeps the certificate's record.
            let pem = std::cell::RefCell::new(String::new());
            let issue = || {
                let issued = ca.sign_agent(&csr, &enrolling.computer_id)?;
                pem.replace(issued.pem.clone());
                Ok(issued)
            };
            let outcome = store.enroll(&hash, &enrolling, Timestamp::now().unix_nanos(), &issue);
            outcome.map(|decided| decided.map(|certificate| (certificate, pem.take())))
        })
        .await
        .map_err(|error| Status::internal(format!("the enrollment task failed: {error}")))?;
        match outcome {
            Ok(Ok((certificate, pem))) => {
                tracing::info!(
                    computer_id = %machine.computer_id,
                    computer = %machine.computer,
                    token = %certificate.token_name,
                    fingerprint = %certificate.fingerprint,
                    ?peer,
                    "machine enrolled"
                );
                Ok(Response::new(EnrollResponse {
                    certificate_pem: pem,
                    ca_pem: self.ca.ca_pem().to_string(),
                    not_after_ns: certificate.not_after_ns,
                }))
            }
            Ok(Err(refusal)) => {
                tracing::warn!(computer_id = %machine.computer_id, ?peer, "enrollment refused: {refusal}");
                Err(Status::permission_denied(refusal))
            }
            Err(error) => {
                tracing::error!("enrollment failed: {error}");
                Err(Status::unavailable(
                    "the workspace database failed; try again later",
                ))
            }
        }
    }
}

fn check_shape(request: &EnrollRequest) -> Result<(), Status> {
    if !enrollment::well_formed(&request.token) {
        return Err(Status::unauthenticated(
            "the enrollment token is not one (fime_ and 64 hex digits, made by \
             `fim-collector enroll create`)",
        ));
    }
    for (what, value) in [
        ("computer id", &request.computer_id),
        ("computer name", &request.computer),
    ] {
        if value.len() > MAX_NAME_BYTES {
            return Err(Status::invalid_argument(format!(
                "the {what} is {} bytes, more than the {MAX_NAME_BYTES} allowed",
                value.len()
            )));
        }
    }
    if request.computer_id.trim().is_empty() {
        return Err(Status::invalid_argument("the computer id is empty"));
    }
    if request.certificate_request_pem.len() > crate::ca::MAX_REQUEST_BYTES {
        return Err(Status::invalid_argument(
            "the certificate request is too large",
        ));
    }
    Ok(())
}
