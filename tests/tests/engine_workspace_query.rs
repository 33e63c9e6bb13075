//! `fim --workspace` (host only, like every engine_* suite): a real fimd reports to a real collector (SQLite, then PostgreSQL), and
//! the `fim` CLI reads the fleet back over the Workspace API with an API token.
//!
//! Expected values come from the agent's own journal (its SQLite file): the documented
//! summary counts its Files records, `changes` lists its paths, processes and times in
//! order, CSV holds the same cells. Refusals are checked by their exact reasons: no token,
//! an unknown one, a revoked one, a connection that is not loopback.
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use fim_kql::pg_test::TestServer;
use fim_model::{ChangeRecord, ConfigChangeType};
use fim_tests::{
    collector::{
        agent_rows, as_args, ca_path, collector_bin, enrolled_agent_args_in, free_address,
        settled_head, wait_until, Collector,
    },
    engine::{fim_bin, Engine, Workspace},
};

const SUMMARY: &str = "ConfigurationChange | where TimeGenerated > ago(14d) \
    | where ConfigChangeType in ('Registry', 'Files') \
    | summarize count() by Computer, ConfigChangeType";

/// Where `fim --workspace` goes: the URL, and the workspace CA for https.
struct Target {
    url: String,
    ca: Option<PathBuf>,
}

impl Target {
    /// The TLS collector whose state directory is `state`, at `address`.
    fn tls(address: &str, state: &Path) -> Target {
        Target {
            url: format!("https://{address}"),
            ca: Some(ca_path(state)),
        }
    }
}

/// `fim --workspace URL ARGS` with `token` in FIM_WORKSPACE_TOKEN (None: no token).
fn fim(target: &Target, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(fim_bin());
    command.arg("--workspace").arg(&target.url).args(args);
    if let Some(ca) = &target.ca {
        command.arg("--workspace-ca").arg(ca);
    }
    command.env_remove("FIM_WORKSPACE_TOKEN");
    if let Some(token) = token {
        command.env("FIM_WORKSPACE_TOKEN", token);
    }
    command.output().expect("run fim")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "fim failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn refused(output: &Output, reason: &str) {
    assert!(!output.status.success(), "expected a refusal: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(reason), "expected {reason:?} in: {stderr}");
}

/// `fim-collector token ...` against the collector's database.
fn token(database: &[&str], args: &[&str]) -> String {
    let output = Command::new(collector_bin())
        .arg("token")
        .args(database)
        .args(args)
        .output()
        .expect("run fim-collector token");
    assert!(
        output.status.success(),
        "fim-collector token {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn journal(state: &Path) -> Vec<ChangeRecord> {
    agent_rows(state)
        .iter()
        .map(|row| serde_json::from_str(&row.record).expect("a journal record"))
        .collect()
}

/// Waits until the workspace has every record of the agent's journal.
fn wait_for_workspace(target: &Target, token: &str, head: u64) {
    wait_until(
        "the workspace to hold the journal",
        Duration::from_secs(120),
        || {
            let output = fim(target, Some(token), &["machines", "--json"]);
            output.status.success()
                && String::from_utf8_lossy(&output.stdout)
                    .contains(&format!("\"acknowledged_sequence\":{head}"))
        },
    );
}

/// The whole scenario on one backend; `database` are the collector's store arguments.
fn scenario(name: &str, database: &[&str]) {
    let workspace = Workspace::new(name);
    let address = free_address();
    let state = workspace.base.join("collector");
    let url = Target::tls(&address, &state);
    let state_arg = state.display().to_string();
    let mut store_args: Vec<&str> = vec!["--state-dir", &state_arg];
    store_args.extend_from_slice(database);
    let collector = Collector::start(&state, &address, database);
    let agent = enrolled_agent_args_in(&state, &address, database);
    let engine = Engine::start_with(&workspace, &as_args(&agent));
    for index in 0..7 {
        std::fs::write(workspace.tree.join(format!("report-{index}.conf")), b"x").unwrap();
    }
    let (head, _) = settled_head(&workspace.state, 7, Duration::from_secs(60));

    // No token, a malformed one, an unknown one: refused, with the reason.
    refused(&fim(&url, None, &["query", SUMMARY]), "needs an API token");
    let unknown = format!("fimw_{}", "0".repeat(64));
    refused(
        &fim(&url, Some(&unknown), &["query", SUMMARY]),
        "unknown API token",
    );
    refused(
        &fim(&url, Some("not-a-token"), &["query", SUMMARY]),
        "does not hold a workspace token",
    );

    let reader = token(
        &store_args,
        &["create", "--name", "analyst", "--role", "reader"],
    );
    assert!(
        reader.starts_with("fimw_") && reader.len() == 69,
        "{reader}"
    );
    wait_for_workspace(&url, &reader, head);
    let records = journal(&workspace.state);
    let computer = records[0].computer.clone();

    // The documented summary: the Files records of the journal, by computer.
    let files = records
        .iter()
        .filter(|r| r.config_change_type == ConfigChangeType::Files)
        .count();
    let summary: serde_json::Value = serde_json::from_str(&stdout(&fim(
        &url,
        Some(&reader),
        &["query", SUMMARY, "--format", "json"],
    )))
    .unwrap();
    assert_eq!(
        summary,
        serde_json::json!([{ "Computer": computer, "ConfigChangeType": "Files", "count_": files }])
    );
    // `fim summary` says the same through its own options.
    let by_type = stdout(&fim(
        &url,
        Some(&reader),
        &[
            "summary", "--since", "14d", "--type", "Files", "--format", "csv",
        ],
    ));
    assert_eq!(
        by_type,
        format!("Computer,ConfigChangeType,count_\n{computer},Files,{files}\n")
    );

    // `fim changes`: every Files record of the journal, in time order, with its process.
    let listed: Vec<serde_json::Value> = stdout(&fim(
        &url,
        Some(&reader),
        &["changes", "--type", "Files", "--format", "jsonl"],
    ))
    .lines()
    .map(|line| serde_json::from_str(line).unwrap())
    .collect();
    let mut expected: Vec<&ChangeRecord> = records
        .iter()
        .filter(|r| r.config_change_type == ConfigChangeType::Files)
        .collect();
    expected.sort_by_key(|r| (r.time_generated, r.sequence));
    assert_eq!(listed.len(), expected.len());
    for (got, want) in listed.iter().zip(&expected) {
        let file = want.file.as_ref().expect("a file record");
        assert_eq!(
            got["FileSystemPath"],
            file.file_system_path.as_str(),
            "{got}"
        );
        assert_eq!(got["Sequence"], want.sequence, "{got}");
        assert_eq!(
            got["ChangeCategory"],
            want.change_category.as_str(),
            "{got}"
        );
        // PostgreSQL keeps times to the microsecond (the record JSON keeps nanoseconds).
        let time = got["TimeGenerated"].as_str().expect("a time");
        let time = fim_model::Timestamp::parse_rfc3339(time).expect("RFC 3339");
        assert_eq!(
            time.unix_nanos() / 1000,
            want.time_generated.unix_nanos() / 1000,
            "{got}"
        );
        match &want.actor {
            Some(actor) => {
                assert_eq!(got["ProcessName"], actor.process_name.as_str(), "{got}");
                assert_eq!(got["ProcessId"], actor.process_id, "{got}");
            }
            None => assert!(got["ProcessName"].is_null(), "{got}"),
        }
    }
    assert!(
        listed
            .iter()
            .any(|r| r["FileSystemPath"]
                == workspace.tree.join("report-6.conf").display().to_string()),
        "{listed:?}"
    );

    // CSV of a query equals its rows; a formula-like cell is neutralised.
    let csv = stdout(&fim(
        &url,
        Some(&reader),
        &[
            "query",
            "ConfigurationChange | where FileSystemPath endswith 'report-3.conf' \
             | extend Formula = strcat('=', 'HYPERLINK(1)') | project FileSystemPath, Formula",
            "--format",
            "csv",
        ],
    ));
    let path = workspace.tree.join("report-3.conf").display().to_string();
    assert!(
        csv.starts_with(&format!("FileSystemPath,Formula\n{path},'=HYPERLINK(1)\n")),
        "{csv}"
    );

    // A syntax error says where; a write is not a query.
    refused(
        &fim(
            &url,
            Some(&reader),
            &["query", "ConfigurationChange | where"],
        ),
        "1:28",
    );
    refused(
        &fim(
            &url,
            Some(&reader),
            &["query", "ConfigurationChange | where Nope == 1"],
        ),
        "unknown column 'Nope'",
    );
    refused(
        &fim(
            &url,
            Some(&reader),
            &["query", ".drop table ConfigurationChange"],
        ),
        "1:1",
    );

    // Machines: the agent with its head and chain status.
    let machines = stdout(&fim(&url, Some(&reader), &["machines", "--json"]));
    let machine: serde_json::Value = serde_json::from_str(machines.trim()).unwrap();
    assert_eq!(machine["computer"], computer.as_str());
    assert_eq!(machine["records"], head);
    assert_eq!(machine["chain_status"], "intact");

    // Revoked: refused from the next call, with the reason.
    assert_eq!(
        token(&store_args, &["revoke", "analyst"]),
        "revoked analyst"
    );
    refused(
        &fim(&url, Some(&reader), &["query", SUMMARY]),
        "the API token \"analyst\" was revoked",
    );
    let listed = token(&store_args, &["list"]);
    assert!(listed.starts_with("analyst\treader\tcreated "), "{listed}");
    assert!(listed.contains("\trevoked "), "{listed}");
    assert!(!listed.contains(&reader), "a secret is never listed");
    drop(collector);
    engine.stop();
}

#[test]
fn the_workspace_answers_fim_over_sqlite() {
    scenario("workspace-query-sqlite", &[]);
}

#[test]
fn the_workspace_answers_fim_over_postgresql() {
    let server = TestServer::start().expect("a PostgreSQL 15 test server");
    let url = server.url();
    scenario("workspace-query-pg", &["--database", &url]);
}

/// This machine's own non-loopback IPv4 address, so a connection to it arrives from it.
fn own_address() -> String {
    let hosts = Command::new("hostname")
        .arg("-I")
        .output()
        .expect("hostname -I");
    String::from_utf8_lossy(&hosts.stdout)
        .split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .expect("a non-loopback IPv4 address on this machine")
        .to_string()
}

#[test]
fn the_workspace_api_answers_other_hosts_only_over_tls() {
    let workspace = Workspace::new("workspace-remote");
    let address = own_address();
    for (name, extra) in [("tls", &[][..]), ("plain", &["--insecure-plaintext"][..])] {
        let state = workspace.base.join(format!("collector-{name}"));
        let port = free_address().rsplit(':').next().unwrap().to_string();
        let listen = format!("0.0.0.0:{port}");
        let _collector = Collector::start(&state, &listen, extra);
        let state_arg = state.display().to_string();
        let reader = token(
            &["--state-dir", &state_arg],
            &["create", "--name", "remote"],
        );
        let (remote, local) = match name {
            "tls" => (
                Target::tls(&format!("{address}:{port}"), &state),
                Target::tls(&format!("127.0.0.1:{port}"), &state),
            ),
            _ => (
                Target {
                    url: format!("http://{address}:{port}"),
                    ca: None,
                },
                Target {
                    url: format!("http://127.0.0.1:{port}"),
                    ca: None,
                },
            ),
        };
        let from_afar = fim(&remote, Some(&reader), &["query", SUMMARY]);
        if name == "tls" {
            stdout(&from_afar);
            // Plain HTTP/2 to a TLS collector gets nowhere, token or not (the failure is
            // the transport's, at connect or at the call).
            let plain = Target {
                url: format!("http://127.0.0.1:{port}"),
                ca: None,
            };
            let output = fim(&plain, Some(&reader), &["query", SUMMARY]);
            refused(&output, "");
            assert!(output.stdout.is_empty(), "no rows over plain HTTP/2");
        } else {
            refused(
                &from_afar,
                "runs without TLS (--insecure-plaintext): the workspace API answers only on loopback",
            );
        }
        // Over loopback it answers either way.
        stdout(&fim(&local, Some(&reader), &["query", SUMMARY]));
    }
}
