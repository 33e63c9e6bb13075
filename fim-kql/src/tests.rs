//! Unit tests: lexing, parsing, the position and wording of errors, and what the compiler
//! writes (placeholders only, SELECT only). Execution against real databases is in tests/.
use std::time::Duration;

use fim_model::Timestamp;

use crate::ast::{ExprKind, OpKind};
use crate::csv::{cell, neutralise};
use crate::error::ErrorKind;
use crate::lexer::{lex, Tok};
use crate::parser::parse;
use crate::{compile, Catalog, CompiledQuery, Dialect, KqlError, Options, Param, Pos, Value};

const NS_PER_S: i64 = 1_000_000_000;

fn options() -> Options {
    Options {
        now: Timestamp::parse_rfc3339("2026-12-07T12:00:00Z").unwrap(),
        row_cap: 1000,
        timeout: Duration::from_secs(30),
        ..Options::default()
    }
}

fn try_compile(query: &str, dialect: Dialect) -> Result<CompiledQuery, KqlError> {
    compile(query, &Catalog::configuration_change(), dialect, &options())
}

fn error(query: &str) -> KqlError {
    match try_compile(query, Dialect::Sqlite) {
        Ok(compiled) => panic!("{query} compiled to {}", compiled.sql),
        Err(err) => err,
    }
}

/// The error's position and its displayed text.
fn error_at(query: &str) -> (u32, u32, String) {
    let err = error(query);
    (err.pos.line, err.pos.column, err.to_string())
}

#[test]
fn timespans_lex_to_nanoseconds() {
    let cases = [
        ("1d", 86_400 * NS_PER_S),
        ("14d", 14 * 86_400 * NS_PER_S),
        ("2h", 7_200 * NS_PER_S),
        ("30m", 1_800 * NS_PER_S),
        ("10s", 10 * NS_PER_S),
        ("1.5h", 5_400 * NS_PER_S),
        ("100ms", NS_PER_S / 10),
    ];
    for (text, nanos) in cases {
        assert_eq!(lex(text).unwrap()[0].tok, Tok::Timespan(nanos), "{text}");
    }
}

#[test]
fn strings_take_both_quotes_and_escapes() {
    let tokens = lex(r#"'it''s' "a\"b" 'c\\d' @'e\f'"#).unwrap();
    let strings: Vec<&Tok> = tokens.iter().map(|t| &t.tok).collect();
    assert_eq!(
        strings,
        [
            &Tok::Str("it".into()),
            &Tok::Str("s".into()),
            &Tok::Str("a\"b".into()),
            &Tok::Str("c\\d".into()),
            &Tok::Str("e\\f".into()),
            &Tok::Eof
        ]
    );
}

#[test]
fn tokens_know_their_line_and_column() {
    let tokens = lex("ConfigurationChange\n  | take 5").unwrap();
    let positions: Vec<Pos> = tokens.iter().map(|t| t.pos).collect();
    assert_eq!(
        positions,
        [
            Pos::new(1, 1),
            Pos::new(2, 3),
            Pos::new(2, 5),
            Pos::new(2, 10),
            Pos::new(2, 11)
        ]
    );
}

#[test]
fn datetime_literals_in_the_usual_forms() {
    let at = |text: &str| match parse(&format!(
        "ConfigurationChange | where TimeGenerated > {text}"
    ))
    .unwrap()
    .ops[0]
        .kind
        .clone()
    {
        OpKind::Where(expr) => match expr.kind {
            ExprKind::Binary { rhs, .. } => match rhs.kind {
                ExprKind::DateTime(nanos) => Timestamp::from_unix_nanos(nanos).to_rfc3339(),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    assert_eq!(at("datetime(2026-12-03)"), "2026-12-03T00:00:00Z");
    assert_eq!(at("datetime(2026-12-03 10:05)"), "2026-12-03T10:05:00Z");
    assert_eq!(at("datetime(2026-12-03 10:05:07)"), "2026-12-03T10:05:07Z");
    assert_eq!(
        at("datetime('2026-12-03T10:05:07.25Z')"),
        "2026-12-03T10:05:07.25Z"
    );
    assert_eq!(
        at("datetime(\"2026-12-03T10:05:07+01:00\")"),
        "2026-12-03T09:05:07Z"
    );
}

#[test]
fn the_pipeline_parses_into_operators() {
    let query = parse(
        "ConfigurationChange | where A == 1 | project-away B | sort by C asc, D | top 3 by E \
         | summarize n = count() by bin(TimeGenerated, 1h) | take 7 | distinct F | count",
    )
    .unwrap();
    let kinds: Vec<&str> = query
        .ops
        .iter()
        .map(|op| match &op.kind {
            OpKind::Where(_) => "where",
            OpKind::ProjectAway(_) => "project-away",
            OpKind::Order(keys) => {
                assert!(
                    !keys[0].descending && keys[1].descending,
                    "KQL sorts desc by default"
                );
                "order"
            }
            OpKind::Top { count: 3, .. } => "top",
            OpKind::Summarize { by, .. } if by.len() == 1 => "summarize",
            OpKind::Take(7) => "take",
            OpKind::Distinct(_) => "distinct",
            OpKind::Count => "count",
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "where",
            "project-away",
            "order",
            "top",
            "summarize",
            "take",
            "distinct",
            "count"
        ]
    );
}

#[test]
fn syntax_errors_point_at_their_token() {
    let cases: &[(&str, u32, u32, &str)] = &[
        (
            "ConfigurationChange | wher Computer == 'a'",
            1,
            23,
            "unknown operator 'wher'",
        ),
        (
            "ConfigurationChange | where Computer == 'abc",
            1,
            41,
            "string literal is not closed",
        ),
        (
            "ConfigurationChange | where TimeGenerated > 14x",
            1,
            45,
            "unknown timespan unit 'x'",
        ),
        (
            "ConfigurationChange | summarize count() by",
            1,
            43,
            "found the end of the query",
        ),
        (
            "ConfigurationChange | order Computer",
            1,
            29,
            "expected 'by' after 'order'",
        ),
        (
            "ConfigurationChange | take 10 extra",
            1,
            31,
            "expected '|' or the end",
        ),
        (
            "ConfigurationChange | where Computer !foo 'x'",
            1,
            38,
            "unknown operator '!foo'",
        ),
        (
            "ConfigurationChange | where Computer == ",
            1,
            41,
            "expected an expression",
        ),
        (
            "ConfigurationChange | where (Computer == 'a'",
            1,
            45,
            "expected ')'",
        ),
        (
            "ConfigurationChange | where TimeGenerated > datetime(2026-13-45)",
            1,
            45,
            "bad datetime",
        ),
        (
            "ConfigurationChange | where Computer == 'a' #",
            1,
            45,
            "unexpected character '#'",
        ),
    ];
    for (query, line, column, message) in cases {
        let (l, c, text) = error_at(query);
        assert_eq!((l, c), (*line, *column), "{query}: {text}");
        assert!(text.contains(message), "{query}: {text}");
        assert!(text.starts_with(&format!("{line}:{column}: ")), "{text}");
    }
}

#[test]
fn writes_and_second_statements_are_refused_where_they_start() {
    let cases: &[(&str, u32, u32)] = &[
        (".drop table ConfigurationChange", 1, 1),
        ("ConfigurationChange | .set x <| ConfigurationChange", 1, 23),
        (
            "ConfigurationChange | where Computer == 'a'; .drop table x",
            1,
            44,
        ),
        ("ConfigurationChange\n| take 1\n;\n.delete", 3, 1),
    ];
    for (query, line, column) in cases {
        let err = error(query);
        assert_eq!(
            (err.pos.line, err.pos.column),
            (*line, *column),
            "{query}: {err}"
        );
        assert!(
            matches!(err.kind, ErrorKind::NotAllowed(_)),
            "{query}: {err}"
        );
    }
    assert!(error(".drop table x").to_string().contains("'.drop'"));
}

#[test]
fn unknown_names_are_named_with_their_position() {
    let err = error("ConfigurationChange\n| where Computr == 'a'");
    assert_eq!(err.to_string(), "2:9: unknown column 'Computr'");
    let err = error("ConfigurationChange | where computer == 'a'");
    assert_eq!(
        err.to_string(),
        "1:29: unknown column 'computer' (did you mean 'Computer'?)"
    );
    // A column projected away is out of scope.
    let (line, column, text) =
        error_at("ConfigurationChange | project Computer | where Entity == 'x'");
    assert_eq!((line, column), (1, 48), "{text}");
    assert!(text.contains("unknown column 'Entity'"));
    let (line, column, text) = error_at("ConfigurationChange | where foo(Computer)");
    assert_eq!(
        (line, column, text.as_str()),
        (1, 29, "1:29: unknown function 'foo'")
    );
    let (line, column, text) = error_at("Other | take 1");
    assert_eq!((line, column), (1, 1));
    assert!(text.contains("unknown table 'Other'"), "{text}");
    let (_, _, text) = error_at("ConfigurationChange | project-away Nope");
    assert!(text.contains("unknown column 'Nope'"), "{text}");
}

#[test]
fn type_mismatches_are_caught_before_any_sql_runs() {
    let cases: &[(&str, u32, u32, &str)] = &[
        (
            "ConfigurationChange | where Size contains 'a'",
            1,
            34,
            "needs a string on its left",
        ),
        (
            "ConfigurationChange | where Computer > 5",
            1,
            38,
            "left side is a string",
        ),
        (
            "ConfigurationChange | where Computer",
            1,
            29,
            "needs a bool predicate",
        ),
        (
            "ConfigurationChange | where TimeGenerated > ago(Computer)",
            1,
            49,
            "timespan literal",
        ),
        (
            "ConfigurationChange | where Computer startswith Entity",
            1,
            49,
            "string literal",
        ),
        (
            "ConfigurationChange | extend x = tolower(Size)",
            1,
            42,
            "needs a string",
        ),
        (
            "ConfigurationChange | where Size between ('a' .. 'b')",
            1,
            34,
            "'between' needs",
        ),
        (
            "ConfigurationChange | where count() > 1",
            1,
            29,
            "only be used in summarize",
        ),
        (
            "ConfigurationChange | summarize tolower(Computer)",
            1,
            33,
            "unknown function",
        ),
        (
            "ConfigurationChange | summarize x = Computer",
            1,
            37,
            "needs an aggregate",
        ),
        (
            "ConfigurationChange | extend x = 1d",
            1,
            34,
            "timespan can only be used",
        ),
        (
            "ConfigurationChange | summarize count() by bin(Computer, 1h)",
            1,
            44,
            "bin() rounds",
        ),
    ];
    for (query, line, column, message) in cases {
        let (l, c, text) = error_at(query);
        assert_eq!((l, c), (*line, *column), "{query}: {text}");
        assert!(text.contains(message), "{query}: {text}");
    }
    let (line, column, text) = error_at(
        "ConfigurationChange\n| where TimeGenerated > ago(14d)\n| where ConfigChangeType in ('Registry', 5)",
    );
    assert_eq!((line, column), (3, 42), "{text}");
    assert!(matches!(
        error("ConfigurationChange | where Size == 'a'").kind,
        ErrorKind::TypeMismatch(_)
    ));
}

#[test]
fn values_are_bound_never_spliced() {
    let query = "ConfigurationChange | where Computer == 'secret-host' and Size > 4096 \
                 and FileSystemPath contains 'x%y' | where TimeGenerated > ago(14d) | take 5";
    for dialect in [Dialect::Sqlite, Dialect::Postgres] {
        let compiled = try_compile(query, dialect).unwrap();
        assert!(compiled.sql.starts_with("SELECT "), "{}", compiled.sql);
        assert!(!compiled.sql.contains("secret"), "{}", compiled.sql);
        assert!(!compiled.sql.contains("4096"), "{}", compiled.sql);
        assert!(!compiled.sql.contains(';'), "{}", compiled.sql);
        let fourteen_days_ago = Timestamp::parse_rfc3339("2026-11-23T12:00:00Z").unwrap();
        assert_eq!(
            compiled.params,
            [
                Param::Text("secret-host".into()),
                Param::Int(4096),
                Param::Text("%x\\%y%".into()),
                Param::Time(fourteen_days_ago),
                Param::Int(5),
            ],
            "{}",
            compiled.sql
        );
        let placeholder = match dialect {
            Dialect::Sqlite => "?4",
            Dialect::Postgres => "$4::timestamptz",
        };
        assert!(compiled.sql.contains(placeholder), "{}", compiled.sql);
    }
}

#[test]
fn the_documented_summary_compiles_to_one_grouped_select() {
    let compiled = try_compile(
        "ConfigurationChange | where TimeGenerated > ago(14d) | where ConfigChangeType in ('Registry', 'Files') | summarize count() by Computer, ConfigChangeType",
        Dialect::Postgres,
    )
    .unwrap();
    assert_eq!(
        compiled.sql,
        "SELECT computer AS \"Computer\", change_type AS \"ConfigChangeType\", COUNT(*) AS \"count_\" \
         FROM configuration_change WHERE (time_generated > $1::timestamptz) AND \
         (change_type IN ($2::text, $3::text)) GROUP BY 1, 2 LIMIT $4::bigint"
    );
}

#[test]
fn every_query_carries_the_row_cap_and_a_time_limit() {
    let capped = Options {
        row_cap: 50,
        timeout: Duration::from_millis(2500),
        ..options()
    };
    let compile_capped = |query: &str| {
        compile(
            query,
            &Catalog::configuration_change(),
            Dialect::Postgres,
            &capped,
        )
        .unwrap()
    };
    let all = compile_capped("ConfigurationChange");
    assert_eq!((all.limit, all.cap_applies), (50, true));
    let small = compile_capped("ConfigurationChange | take 10");
    assert_eq!((small.limit, small.cap_applies), (10, false));
    let large = compile_capped("ConfigurationChange | take 100000");
    assert_eq!((large.limit, large.cap_applies), (50, true));
    assert_eq!(
        large.postgres_timeout_statement(),
        "SET LOCAL statement_timeout = 2500"
    );
    assert_eq!(large.sqlite_progress_hint().1, Duration::from_millis(2500));
}

#[test]
fn spreadsheet_formulas_are_neutralised() {
    for formula in ["=1+2", "+1", "-1+2", "@SUM(A1)", "\tx", "\rx"] {
        assert_eq!(neutralise(formula), format!("'{formula}"));
    }
    assert_eq!(neutralise("/etc/passwd"), "/etc/passwd");
    assert_eq!(neutralise(""), "");
    // Numbers are numbers: a negative size is not a formula.
    assert_eq!(cell(&Value::Int(-5)), "-5");
    assert_eq!(cell(&Value::Text("-5".into())), "'-5");
}

#[test]
fn a_subquery_computes_only_the_columns_read_after_it() {
    let compiled = try_compile("ConfigurationChange | take 100 | count", Dialect::Sqlite).unwrap();
    assert!(!compiled.sql.contains("json_extract"), "{}", compiled.sql);
    let compiled = try_compile(
        "ConfigurationChange | top 5 by Size | where Computer == 'a' | project Size",
        Dialect::Postgres,
    )
    .unwrap();
    assert!(!compiled.sql.contains("ValueData"), "{}", compiled.sql);
    // The order survives the wrap: the outer SELECT sorts again.
    assert!(
        compiled
            .sql
            .ends_with("ORDER BY q1.\"Size\" DESC NULLS LAST LIMIT $3::bigint"),
        "{}",
        compiled.sql
    );
}

#[test]
fn the_rollup_takes_only_the_shapes_it_answers_exactly() {
    let rollup = crate::Rollup::configuration_change_hourly();
    let with_rollup = |query: &str| {
        crate::compile_with_rollup(
            query,
            &Catalog::configuration_change(),
            &rollup,
            Dialect::Sqlite,
            &options(),
        )
    };
    for query in [
        "ConfigurationChange | where TimeGenerated > ago(14d) | summarize count() by Computer",
        "ConfigurationChange | where TimeGenerated >= now(-2h) and ConfigChangeType != 'Files' | summarize n = count() by bin(TimeGenerated, 1d)",
        "ConfigurationChange | summarize count()",
    ] {
        assert!(with_rollup(query).unwrap().used_rollup, "{query}");
    }
    for query in [
        "ConfigurationChange | where Size > 1 | summarize count() by Computer",
        "ConfigurationChange | where TimeGenerated < ago(1d) | summarize count() by Computer",
        "ConfigurationChange | summarize count() by bin(TimeGenerated, 30m)",
        "ConfigurationChange | summarize dcount(Computer) by ConfigChangeType",
        "ConfigurationChange | take 5 | summarize count() by Computer",
        "ConfigurationChange | where Computer == 'a'",
    ] {
        assert!(!with_rollup(query).unwrap().used_rollup, "{query}");
    }
    // Errors are the plain compiler's.
    let err =
        with_rollup("ConfigurationChange | summarize Computer = count() by Computer").unwrap_err();
    assert!(err.to_string().contains("named twice"), "{err}");
    let err =
        with_rollup("ConfigurationChange | where Computr == 'a' | summarize count()").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("1:29: unknown column 'Computr'"),
        "{err}"
    );
}
