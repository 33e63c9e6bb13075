//! Enrollment and mutual TLS against a real `fim-collector` (host only, like every
//! engine_* suite): agents made with fim-api's own enrollment code (the code fimd runs)
//! over real TLS on loopback, each refusal checked by its exact reason.
//!
//! - an agent with no certificate, or one from another CA, is refused;
//! - a token is refused when unknown, used up or revoked, and counts its uses;
//! - a certificate reports only for the computer it was issued to;
//! - a revoked machine is refused at its next Hello and cannot enroll again until readmitted;
//! - enrolling again supersedes the machine's older certificate.
use std::path::{Path, PathBuf};

use fim_api::{
    collector_pb::{
        agent_message, collector_client::CollectorClient, collector_message, AgentMessage, Hello,
    },
    push::{enroll::Credentials, AgentIdentity, TlsSettings},
};
use fim_tests::collector::{ca_path, free_address, run_collector, Collector};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

fn identity(computer_id: &str) -> AgentIdentity {
    AgentIdentity {
        computer_id: computer_id.to_string(),
        computer: format!("host-{computer_id}"),
        agent_version: "test".to_string(),
        platform: "test".to_string(),
    }
}

/// `fim-collector enroll ARGS`, which must succeed; its stdout.
fn enroll_command(state: &Path, args: &[&str]) -> String {
    let mut all = vec!["enroll"];
    all.extend_from_slice(args);
    let output = run_collector(&all, state);
    assert!(
        output.status.success(),
        "fim-collector enroll {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A new token named `name` for `uses` machines, written to a file; returns the file.
fn new_token(state: &Path, name: &str, uses: u32) -> PathBuf {
    let file = state.join(format!("{name}.token"));
    enroll_command(
        state,
        &[
            "create",
            "--name",
            name,
            "--uses",
            &uses.to_string(),
            "--out",
            file.to_str().unwrap(),
        ],
    );
    file
}

/// An agent's settings: its own credentials directory, the workspace CA, a token file.
fn agent(state: &Path, computer_id: &str, token: Option<PathBuf>) -> TlsSettings {
    let dir = state.join("agents").join(computer_id);
    std::fs::create_dir_all(&dir).unwrap();
    TlsSettings::new(&ca_path(state), token, &dir).expect("agent TLS settings")
}

/// Opens a Report stream with a Hello for `computer_id`; the collector's first answer, or
/// the status it refused the stream with.
async fn hello(channel: Channel, computer_id: &str) -> Result<collector_message::Kind, String> {
    let (requests, outgoing) = tokio::sync::mpsc::channel(1);
    requests
        .send(AgentMessage {
            kind: Some(agent_message::Kind::Hello(Hello {
                computer_id: computer_id.into(),
                computer: "test".into(),
                journal_id: "journal-1".into(),
                head_sequence: 0,
                head_hash: vec![0; 32],
                agent_version: "test".into(),
                platform: "test".into(),
                strategy: "replay".into(),
                ..Hello::default()
            })),
        })
        .await
        .unwrap();
    let mut replies = CollectorClient::new(channel)
        .report(ReceiverStream::new(outgoing))
        .await
        .map_err(|status| status.message().to_string())?
        .into_inner();
    match replies.message().await {
        Ok(Some(message)) => Ok(message.kind.expect("a message kind")),
        Ok(None) => Err("the stream ended".to_string()),
        Err(status) => Err(status.message().to_string()),
    }
}

/// Enrolls and reports a Hello as the machine itself.
async fn enroll_and_hello(
    address: &str,
    settings: &TlsSettings,
    computer_id: &str,
) -> Result<Credentials, String> {
    let credentials = settings
        .credentials(address, &identity(computer_id))
        .await
        .map_err(|error| error.to_string())?;
    let channel = settings
        .channel(address, Some(&credentials))
        .await
        .map_err(|error| error.to_string())?;
    match hello(channel, computer_id).await? {
        collector_message::Kind::Welcome(welcome) => {
            assert_eq!(welcome.resume_after_sequence, 0);
            Ok(credentials)
        }
        other => Err(format!("expected a Welcome, got {other:?}")),
    }
}

fn assert_refused<T: std::fmt::Debug>(outcome: Result<T, String>, reason: &str) {
    match outcome {
        Ok(value) => panic!("expected a refusal containing {reason:?}, got {value:?}"),
        Err(error) => assert!(error.contains(reason), "expected {reason:?} in: {error}"),
    }
}

fn base(name: &str) -> PathBuf {
    let base = std::env::temp_dir().join(format!("fim-enroll-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_enrolled_machines_report_and_only_as_themselves() {
    let state = base("only-enrolled");
    let address = free_address();
    let collector = Collector::start(&state, &address, &[]);

    // No certificate at all: TLS works (an agent must be able to enroll), Report does not.
    let stranger = agent(&state, "stranger", None);
    let bare = stranger.channel(&address, None).await.unwrap();
    assert_refused(hello(bare, "stranger").await, "this agent is not enrolled");
    assert_refused(
        stranger
            .credentials(&address, &identity("stranger"))
            .await
            .map(|_| ())
            .map_err(|error| error.to_string()),
        "has no enrollment token",
    );

    // A token that was never made.
    let fake = state.join("fake.token");
    std::fs::write(&fake, format!("fime_{}", "ab".repeat(32))).unwrap();
    let forger = agent(&state, "forger", Some(fake));
    assert_refused(
        enroll_and_hello(&address, &forger, "forger").await,
        "unknown enrollment token",
    );

    // A one-use token enrolls one machine, and its key stays on the machine, 0600.
    let token = new_token(&state, "one-use", 1);
    let first = agent(&state, "machine-a", Some(token.clone()));
    enroll_and_hello(&address, &first, "machine-a")
        .await
        .expect("machine-a enrolls and is welcomed");
    let key = state.join("agents/machine-a/collector-agent.key");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the agent's key is root's only");
    }
    let second = agent(&state, "machine-b", Some(token));
    assert_refused(
        enroll_and_hello(&address, &second, "machine-b").await,
        "has been used for all of its 1 enrollments",
    );
    let listed = enroll_command(&state, &["list"]);
    assert!(
        listed.contains("one-use\t0 of 1 uses left"),
        "the use is counted: {listed}"
    );

    // machine-a's certificate cannot write machine-b's journal.
    let credentials = first.stored().unwrap().expect("stored credentials");
    let channel = first.channel(&address, Some(&credentials)).await.unwrap();
    assert_refused(
        hello(channel, "machine-b").await,
        "this certificate was issued to computer machine-a; it cannot report for computer machine-b",
    );

    // A revoked token enrolls nobody.
    let revoked = new_token(&state, "revoked", 5);
    enroll_command(&state, &["revoke", "revoked"]);
    let third = agent(&state, "machine-c", Some(revoked));
    assert_refused(
        enroll_and_hello(&address, &third, "machine-c").await,
        "the enrollment token \"revoked\" was revoked",
    );
    let log = collector.log();
    assert!(
        log.contains("enrollment refused") && log.contains("machine-c"),
        "refusals are logged with the machine: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_machine_is_refused_until_readmitted_and_reenrolling_supersedes() {
    let state = base("revoke");
    let address = free_address();
    let _collector = Collector::start(&state, &address, &[]);
    let token = new_token(&state, "fleet", 10);

    let machine = agent(&state, "machine-r", Some(token.clone()));
    let credentials = enroll_and_hello(&address, &machine, "machine-r")
        .await
        .expect("enrolled");

    // Enrolling again (a reinstall) gives a new certificate; the old one stops working.
    std::fs::remove_dir_all(state.join("agents/machine-r")).unwrap();
    let reinstalled = agent(&state, "machine-r", Some(token.clone()));
    let fresh = enroll_and_hello(&address, &reinstalled, "machine-r")
        .await
        .expect("enrolled again");
    assert_ne!(fresh.certificate_pem, credentials.certificate_pem);
    let old = reinstalled
        .channel(&address, Some(&credentials))
        .await
        .unwrap();
    assert_refused(
        hello(old, "machine-r").await,
        "was superseded by a later enrollment of the machine",
    );

    // Revoked: refused at the next Hello, and barred from enrolling again.
    let printed = enroll_command(&state, &["revoke-machine", "machine-r"]);
    assert!(printed.contains("1 live certificates"), "{printed}");
    let channel = reinstalled.channel(&address, Some(&fresh)).await.unwrap();
    assert_refused(hello(channel, "machine-r").await, "was revoked by an owner");
    std::fs::remove_dir_all(state.join("agents/machine-r")).unwrap();
    let again = agent(&state, "machine-r", Some(token.clone()));
    assert_refused(
        enroll_and_hello(&address, &again, "machine-r").await,
        "computer machine-r was revoked by an owner",
    );
    let certificates = enroll_command(&state, &["certificates"]);
    assert!(
        certificates.contains("revoked by an owner") && certificates.contains("superseded"),
        "{certificates}"
    );

    // Readmitted: it may enroll again, with a new certificate.
    enroll_command(&state, &["readmit-machine", "machine-r"]);
    enroll_and_hello(&address, &again, "machine-r")
        .await
        .expect("enrolls once readmitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_gets_no_connection() {
    let state = base("other-ca");
    let address = free_address();
    let _collector = Collector::start(&state, &address, &[]);
    // A second workspace's CA signs a certificate for the same computer id.
    let elsewhere = base("other-ca-elsewhere");
    let other_address = free_address();
    let _other = Collector::start(&elsewhere, &other_address, &[]);
    let token = new_token(&elsewhere, "other", 1);
    let foreign = agent(&elsewhere, "machine-x", Some(token));
    let foreign_credentials = enroll_and_hello(&other_address, &foreign, "machine-x")
        .await
        .expect("enrolled in the other workspace");

    // Trusting this workspace's CA, presenting the other's certificate: no stream.
    let here = agent(&state, "machine-x", None);
    let outcome = match here.channel(&address, Some(&foreign_credentials)).await {
        Ok(channel) => hello(channel, "machine-x").await.map(|_| ()),
        Err(error) => Err(error.to_string()),
    };
    assert!(outcome.is_err(), "a foreign certificate must not report");

    // And an agent trusting the other CA will not talk to this collector at all.
    let fooled = foreign.channel(&address, None).await;
    let outcome = match fooled {
        Ok(channel) => hello(channel, "machine-x").await.map(|_| ()),
        Err(error) => Err(error.to_string()),
    };
    assert!(
        outcome.is_err(),
        "the agent refuses a collector its CA did not certify"
    );
}
