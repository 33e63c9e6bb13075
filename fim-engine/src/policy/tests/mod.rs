//! Policy tests: matching (`matching`), parsing and validation with exact messages
//! (`validation`), and comment-preserving edits with atomic saves (`document`).
use std::{ffi::OsString, path::Path};

use super::{
    compile::{compile_for, FileKinds},
    parse::parse_with,
    CompiledPolicy, Parsed,
};

mod document;
mod matching;
mod validation;

/// The environment the tests see: fixed, so results never depend on the machine.
fn test_env(name: &str) -> Option<OsString> {
    match name {
        "FIM_TEST_DIR" => Some("/srv/data".into()),
        "FIM_TEST_REL" => Some("srv/data".into()),
        "FIM_TEST_STAR" => Some("/srv/*".into()),
        _ => None,
    }
}

fn parse_text(text: &str) -> Result<Parsed, super::PolicyError> {
    parse_with(text, Path::new("/etc/fim/policy.toml"), &test_env)
}

fn parse_ok(text: &str) -> Parsed {
    match parse_text(text) {
        Ok(parsed) => parsed,
        Err(err) => panic!("policy rejected:\n{err}"),
    }
}

/// The full error text for a rejected policy.
fn parse_err(text: &str) -> String {
    match parse_text(text) {
        Ok(parsed) => panic!("policy accepted: {parsed:?}"),
        Err(err) => err.to_string(),
    }
}

fn warnings(text: &str) -> Vec<String> {
    parse_ok(text)
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Compiles the Linux kinds on every platform (the Windows companion's compile has its tests
/// in `compile_windows.rs`).
fn compiled(text: &str) -> CompiledPolicy {
    let parsed = parse_ok(text);
    match compile_for(&parsed.policy, &test_env, FileKinds::Linux) {
        Ok(compiled) => compiled,
        Err(err) => panic!("policy did not compile:\n{err}"),
    }
}

/// One `[[entity]]` table.
fn entity(name: &str, kind: &str, path: &str, extra: &str) -> String {
    format!("[[entity]]\nname = \"{name}\"\nkind = \"{kind}\"\npath = '{path}'\n{extra}\n")
}

fn linux(name: &str, path: &str) -> String {
    entity(name, "linux-file", path, "")
}
