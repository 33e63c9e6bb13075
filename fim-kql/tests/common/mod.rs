//! Shared by the SQLite and PostgreSQL execution tests: the fixture records (Files, Registry
//! and WindowsServices from four computers over 30 days), the table they are stored in, and
//! every query with the rows it must return, so both backends are held to the same answers.
#![allow(dead_code)]

use fim_kql::{compile, Catalog, CompiledQuery, Dialect, Options, Rows, Value};
use fim_model::Timestamp;
use serde_json::{json, Value as Json};

mod cases;
pub use cases::cases;

/// The tests' clock: 2026-12-07T12:00:00Z.
pub fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-12-07T12:00:00Z").unwrap()
}

const MINUTE: i64 = 60_000_000_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

pub fn options() -> Options {
    Options {
        now: now(),
        row_cap: 1000,
        timeout: std::time::Duration::from_secs(10),
        ..Options::default()
    }
}

/// One stored record: the real columns and the JSON.
pub struct Fixture {
    pub sequence: i64,
    pub computer: &'static str,
    pub time: Timestamp,
    pub change_type: &'static str,
    pub category: &'static str,
    pub entity: &'static str,
    pub path: Option<&'static str>,
    pub record: Json,
}

fn actor(process: &str, user: &str) -> Json {
    json!({"ProcessId": 100, "ThreadId": 100, "ProcessName": process, "ParentProcessId": 1,
           "UserId": 0, "UserName": user, "GroupId": 0, "LoginUserId": null, "CgroupId": 1})
}

#[allow(clippy::too_many_arguments)]
fn fixture(
    sequence: i64,
    computer: &'static str,
    ago_nanos: i64,
    change_type: &'static str,
    category: &'static str,
    entity: &'static str,
    path: Option<&'static str>,
    fields: &[&str],
    actor: Json,
    group: (&str, Json),
) -> Fixture {
    let time = Timestamp::from_unix_nanos(now().unix_nanos() - ago_nanos);
    let mut record = json!({
        "Sequence": sequence,
        "TimeGenerated": time.to_rfc3339(),
        "Computer": computer,
        "ComputerId": format!("id-{computer}"),
        "ConfigChangeType": change_type,
        "ChangeCategory": category,
        "FieldsChanged": fields,
        "Entity": entity,
        "DetectedBy": "realtime",
        "Actor": actor,
    });
    record[group.0] = group.1;
    Fixture {
        sequence,
        computer,
        time,
        change_type,
        category,
        entity,
        path,
        record,
    }
}

pub const RUN_KEY: &str = r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Run";
pub const NETLOGON_KEY: &str =
    r"HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services\Netlogon\Parameters";
pub const WINLOGON_KEY: &str =
    r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon";
pub const RUNONCE_KEY: &str =
    r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\RunOnce";
/// A value an attacker wrote to be run by a spreadsheet that opens the export.
pub const FORMULA: &str = "=cmd|' /C calc'!A0";

fn file(path: &str, extra: Json) -> (&'static str, Json) {
    let mut group = json!({"FileSystemPath": path});
    if let (Some(group), Some(extra)) = (group.as_object_mut(), extra.as_object()) {
        group.extend(extra.clone());
    }
    ("File", group)
}

fn registry(key: &str, extra: Json) -> (&'static str, Json) {
    let mut group = json!({"RegistryKey": key, "Hive": "HKEY_LOCAL_MACHINE"});
    if let (Some(group), Some(extra)) = (group.as_object_mut(), extra.as_object()) {
        group.extend(extra.clone());
    }
    ("Registry", group)
}

pub fn fixtures() -> Vec<Fixture> {
    let unknown = json!("unknown");
    vec![
        fixture(
            1,
            "web-01",
            HOUR,
            "Files",
            "Modified",
            "linux-etc",
            Some("/etc/ssh/sshd_config"),
            &["Size", "FileContentChecksum"],
            actor("vim", "root"),
            file(
                "/etc/ssh/sshd_config",
                json!({"Size": 300, "PreviousSize": 280,
                "DateModified": "2026-12-07T10:59:59.5Z", "Mode": "0644"}),
            ),
        ),
        fixture(
            2,
            "web-01",
            2 * DAY,
            "Files",
            "Added",
            "linux-bin",
            Some("/usr/bin/evil"),
            &[],
            actor("curl", "www-data"),
            file(
                "/usr/bin/evil",
                json!({"Size": 1000, "DateModified": "2026-12-05T12:00:00Z"}),
            ),
        ),
        fixture(
            3,
            "web-01",
            20 * DAY,
            "Files",
            "Removed",
            "linux-cron",
            Some("/etc/cron.daily/logrotate"),
            &[],
            actor("rm", "root"),
            file("/etc/cron.daily/logrotate", json!({})),
        ),
        fixture(
            4,
            "win-01",
            3 * HOUR,
            "Registry",
            "Modified",
            "run-keys",
            Some(RUN_KEY),
            &["ValueData"],
            unknown.clone(),
            registry(
                RUN_KEY,
                json!({"ValueName": "Updater", "ValueType": "REG_SZ",
                "ValueData": FORMULA, "PreviousValueData": "C:\\old.exe"}),
            ),
        ),
        fixture(
            5,
            "win-01",
            5 * DAY,
            "Registry",
            "Added",
            "netlogon",
            Some(NETLOGON_KEY),
            &[],
            unknown.clone(),
            registry(
                NETLOGON_KEY,
                json!({"ValueName": "RequireSignOrSeal", "ValueType": "REG_DWORD",
                "ValueData": "1"}),
            ),
        ),
        fixture(
            6,
            "win-02",
            DAY,
            "Registry",
            "Removed",
            "winlogon",
            Some(WINLOGON_KEY),
            &[],
            unknown.clone(),
            registry(WINLOGON_KEY, json!({"ValueName": "Shell"})),
        ),
        fixture(
            7,
            "win-02",
            30 * DAY,
            "Registry",
            "Modified",
            "run-keys",
            Some(RUNONCE_KEY),
            &["ValueData"],
            unknown.clone(),
            registry(RUNONCE_KEY, json!({"ValueName": "Once"})),
        ),
        fixture(
            8,
            "win-02",
            2 * HOUR,
            "WindowsServices",
            "Modified",
            "services",
            Some("Spooler"),
            &["SvcState"],
            unknown.clone(),
            (
                "Service",
                json!({"SvcName": "Spooler", "SvcState": "Running",
                "PreviousSvcState": "Stopped"}),
            ),
        ),
        fixture(
            9,
            "win-01",
            6 * DAY,
            "WindowsServices",
            "Added",
            "services",
            Some("EvilSvc"),
            &[],
            unknown.clone(),
            (
                "Service",
                json!({"SvcName": "EvilSvc", "SvcPath": "C:\\evil.exe",
                "SvcState": "Stopped"}),
            ),
        ),
        fixture(
            10,
            "db-01",
            30 * MINUTE,
            "Files",
            "Modified",
            "linux-etc",
            Some("/etc/passwd"),
            &["Mode"],
            unknown.clone(),
            file(
                "/etc/passwd",
                json!({"Size": 1500, "Mode": "0600", "PreviousMode": "0644"}),
            ),
        ),
        fixture(
            11,
            "db-01",
            10 * DAY,
            "Files",
            "Modified",
            "linux-etc",
            Some("/etc/hosts"),
            &["Size"],
            actor("@evil", "root"),
            file("/etc/hosts", json!({"Size": 20})),
        ),
    ]
}

/// The table of the catalog's module docs, per dialect.
pub fn create_table(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "CREATE TABLE configuration_change (sequence INTEGER NOT NULL, computer_id TEXT NOT NULL, \
             computer TEXT NOT NULL, time_generated INTEGER NOT NULL, change_type TEXT NOT NULL, \
             category TEXT NOT NULL, entity TEXT NOT NULL, path TEXT, record TEXT NOT NULL)"
        }
        Dialect::Postgres => {
            "CREATE TABLE configuration_change (sequence bigint NOT NULL, computer_id text NOT NULL, \
             computer text NOT NULL, time_generated timestamptz NOT NULL, change_type text NOT NULL, \
             category text NOT NULL, entity text NOT NULL, path text, record jsonb NOT NULL)"
        }
    }
}

pub fn compile_for(dialect: Dialect, query: &str, options: &Options) -> CompiledQuery {
    compile(query, &Catalog::configuration_change(), dialect, options)
        .unwrap_or_else(|err| panic!("{query}\n{err}"))
}

pub fn cells(rows: &Rows) -> Vec<Vec<String>> {
    rows.rows
        .iter()
        .map(|row| row.iter().map(Value::display).collect())
        .collect()
}

/// Only the named columns of the result.
pub fn pick(rows: &Rows, names: &[&str]) -> Vec<Vec<String>> {
    let indexes: Vec<usize> = names
        .iter()
        .map(|name| {
            rows.columns
                .iter()
                .position(|c| c.name == *name)
                .unwrap_or_else(|| panic!("no column {name}"))
        })
        .collect();
    rows.rows
        .iter()
        .map(|row| indexes.iter().map(|i| row[*i].display()).collect())
        .collect()
}

/// Runs every case through `run`, collecting every mismatch before failing.
pub fn check_cases(dialect: Dialect, mut run: impl FnMut(&CompiledQuery) -> Rows) {
    let mut failures = Vec::new();
    let total = cases().len();
    for case in cases() {
        let compiled = compile_for(dialect, case.query, &options());
        let rows = run(&compiled);
        let mut got = cells(&rows);
        let mut want: Vec<Vec<String>> = case
            .rows
            .iter()
            .map(|row| row.iter().map(|s| s.to_string()).collect())
            .collect();
        if !case.ordered {
            got.sort();
            want.sort();
        }
        if got != want {
            failures.push(format!(
                "{}\n  sql: {}\n  want {want:?}\n  got  {got:?}",
                case.query, compiled.sql
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{dialect:?}: {} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

pub const DOCUMENTED_SUMMARY: &str = "ConfigurationChange | where TimeGenerated > ago(14d) | where ConfigChangeType in ('Registry', 'Files') | summarize count() by Computer, ConfigChangeType";
pub const DOCUMENTED_REGISTRY: &str = "ConfigurationChange | where TimeGenerated > ago(14d) | where ConfigChangeType in ('Registry') | order by Computer, RegistryKey";

/// The two queries from the product documentation, verbatim.
pub fn check_documented(dialect: Dialect, mut run: impl FnMut(&CompiledQuery) -> Rows) {
    let summary = run(&compile_for(dialect, DOCUMENTED_SUMMARY, &options()));
    let names: Vec<&str> = summary.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["Computer", "ConfigChangeType", "count_"]);
    let mut got = cells(&summary);
    got.sort();
    let want = [
        ["db-01", "Files", "2"],
        ["web-01", "Files", "2"],
        ["win-01", "Registry", "2"],
        ["win-02", "Registry", "1"],
    ];
    assert_eq!(got, want.map(|row| row.map(String::from)));

    let registry = run(&compile_for(dialect, DOCUMENTED_REGISTRY, &options()));
    let catalog = Catalog::configuration_change();
    let names: Vec<&str> = registry.columns.iter().map(|c| c.name.as_str()).collect();
    let all: Vec<&str> = catalog.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, all, "no project: every catalog column");
    // KQL sorts descending by default: win-02 first, and within win-01 SYSTEM before SOFTWARE.
    assert_eq!(
        pick(
            &registry,
            &["Sequence", "Computer", "RegistryKey", "ValueName"]
        ),
        [
            ["6", "win-02", WINLOGON_KEY, "Shell"],
            ["5", "win-01", NETLOGON_KEY, "RequireSignOrSeal"],
            ["4", "win-01", RUN_KEY, "Updater"],
        ]
        .map(|row| row.map(String::from))
    );
}

pub const CSV_QUERY: &str = "ConfigurationChange | where ConfigChangeType == 'Registry' or ProcessName startswith '@' | project Sequence, TimeGenerated, Computer, RegistryKey, ValueData, FieldsChanged, ProcessName | order by Sequence asc";

/// The CSV a result must export to, built independently of the exporter.
pub fn expected_csv(rows: &Rows) -> String {
    let mut text = rows
        .columns
        .iter()
        .map(|c| c.name.clone())
        .collect::<Vec<_>>()
        .join(",");
    text.push('\n');
    for row in &rows.rows {
        let line: Vec<String> = row
            .iter()
            .map(|value| {
                let mut cell = value.display();
                if matches!(value, Value::Text(_) | Value::Json(_))
                    && cell.starts_with(['=', '+', '-', '@', '\t', '\r'])
                {
                    cell.insert(0, '\'');
                }
                if cell.contains([',', '"', '\n', '\r']) {
                    cell = format!("\"{}\"", cell.replace('"', "\"\""));
                }
                cell
            })
            .collect();
        text.push_str(&line.join(","));
        text.push('\n');
    }
    text
}

/// Checks an export against the query's rows, and that the attacker's cells are neutralised.
pub fn check_csv(rows: &Rows, csv: &str) {
    assert_eq!(csv, expected_csv(rows));
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("Sequence,TimeGenerated,Computer,RegistryKey,ValueData,FieldsChanged,ProcessName")
    );
    assert!(csv.contains("'=cmd|' /C calc'!A0"), "{csv}");
    assert!(csv.contains(",'@evil\n"), "{csv}");
    assert_eq!(
        rows.rows.len(),
        5,
        "4 registry records and one '@evil' process"
    );
}

/// The documented summary, as the hourly counts must give it: (computer, type, changes).
pub const SUMMARY_14D: [[&str; 3]; 4] = [
    ["db-01", "Files", "2"],
    ["web-01", "Files", "2"],
    ["win-01", "Registry", "2"],
    ["win-02", "Registry", "1"],
];

/// The hourly counts query both schema tests run (`{p}` is the placeholder of the start).
pub fn hourly_summary_sql(placeholder: &str) -> String {
    format!(
        "SELECT computer, change_type, CAST(SUM(changes) AS BIGINT) FROM configuration_change_hourly \
         WHERE hour >= {placeholder} AND change_type IN ('Registry', 'Files') \
         GROUP BY computer, change_type ORDER BY computer, change_type"
    )
}

pub fn fourteen_days_ago() -> Timestamp {
    Timestamp::from_unix_nanos(now().unix_nanos() - 14 * DAY)
}

/// Queries the hourly rollup can answer; each must return what the plain query returns.
pub const ROLLUP_QUERIES: &[&str] = &[
    DOCUMENTED_SUMMARY,
    "ConfigurationChange | where TimeGenerated > datetime(2026-12-07 11:15) | summarize count() by Computer, ConfigChangeType",
    "ConfigurationChange | where TimeGenerated > datetime(2026-12-07 09:00) | summarize n = count() by ConfigChangeType",
    "ConfigurationChange | where TimeGenerated >= datetime(2026-12-07 09:00) | summarize count() by ConfigChangeType",
    "ConfigurationChange | where TimeGenerated > ago(3d) and Computer startswith 'win' | summarize count() by bin(TimeGenerated, 1h), Computer | order by TimeGenerated asc, Computer asc",
    "ConfigurationChange | where TimeGenerated > ago(90m) | summarize count() by Computer",
    "ConfigurationChange | summarize count() by ChangeCategory",
    "ConfigurationChange | summarize total = count()",
    "ConfigurationChange | where Computer == 'nobody' | summarize count()",
    "ConfigurationChange | where TimeGenerated > ago(14d) | summarize count() by Computer | where count_ > 1 | order by Computer asc",
];

/// Every rollup query gives the plain query's rows; other shapes do not use the rollup.
pub fn check_rollup(dialect: Dialect, mut run: impl FnMut(&CompiledQuery) -> Rows) {
    let catalog = Catalog::configuration_change();
    let rollup = fim_kql::Rollup::configuration_change_hourly();
    for query in ROLLUP_QUERIES {
        let plain = compile_for(dialect, query, &options());
        let fast = fim_kql::compile_with_rollup(query, &catalog, &rollup, dialect, &options())
            .unwrap_or_else(|err| panic!("{query}\n{err}"));
        assert!(fast.used_rollup, "{query}");
        assert!(
            fast.sql.contains("configuration_change_hourly"),
            "{}",
            fast.sql
        );
        let (mut want, mut got) = (cells(&run(&plain)), cells(&run(&fast)));
        assert!(!want.is_empty(), "{query}");
        if query.contains("nobody") {
            assert_eq!(want, [["0"]], "an empty count is 0, not null");
        }
        if !query.contains("order by") {
            want.sort();
            got.sort();
        }
        assert_eq!(got, want, "{query}\n  rollup sql: {}", fast.sql);
    }
    let other = "ConfigurationChange | where Size > 1 | summarize count() by Computer";
    let fast = fim_kql::compile_with_rollup(other, &catalog, &rollup, dialect, &options()).unwrap();
    assert!(
        !fast.used_rollup && !fast.sql.contains("hourly"),
        "{}",
        fast.sql
    );
}

/// An in-memory SQLite database holding the fixtures.
pub fn sqlite_database() -> rusqlite::Connection {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.execute_batch(create_table(Dialect::Sqlite)).unwrap();
    for f in fixtures() {
        conn.execute(
            "INSERT INTO configuration_change VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            rusqlite::params![
                f.sequence,
                format!("id-{}", f.computer),
                f.computer,
                f.time.unix_nanos(),
                f.change_type,
                f.category,
                f.entity,
                f.path,
                f.record.to_string()
            ],
        )
        .unwrap();
    }
    conn
}
