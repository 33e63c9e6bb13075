//! `fim changes` and `fim summary`: the journal, filtered like the product's queries.
use std::{path::Path, process::ExitCode};

use anyhow::{bail, Context as _};
use clap::Args;
use fim_api::{convert, pb};
use fim_engine::{
    change::{ChangeCategory, ConfigChangeType},
    store::{ChangeFilter, GroupKey},
};

use crate::{
    output::{self, Format},
    status::open_store,
    timespec,
};

#[derive(Args, Debug, Clone)]
pub struct FilterArgs {
    /// Only changes at or after this time: a span back from now (14d, 2h) or a time.
    #[arg(long)]
    since: Option<String>,
    /// Only changes before this time.
    #[arg(long)]
    until: Option<String>,
    /// ConfigChangeType: Files, Registry, WindowsServices, Daemons (repeatable or comma list).
    #[arg(long = "type", value_delimiter = ',')]
    types: Vec<String>,
    /// ChangeCategory: Added, Modified, Removed (repeatable or comma list).
    #[arg(long = "category", value_delimiter = ',')]
    categories: Vec<String>,
    /// A glob over FileSystemPath, e.g. '/etc/**' or '*.conf'.
    #[arg(long)]
    pub(crate) path: Option<String>,
    /// Only this computer (host name).
    #[arg(long)]
    computer: Option<String>,
    /// Only this policy entity.
    #[arg(long)]
    entity: Option<String>,
}

impl FilterArgs {
    /// The same filter for the API (the daemon validates it again).
    pub fn to_proto(&self) -> anyhow::Result<pb::ChangeFilter> {
        let local = self.build()?;
        Ok(pb::ChangeFilter {
            since: local.since.map(|at| convert::timestamp(at.unix_nanos())),
            until: local.until.map(|at| convert::timestamp(at.unix_nanos())),
            types: local
                .types
                .iter()
                .map(|kind| convert::change_type(*kind) as i32)
                .collect(),
            categories: local
                .categories
                .iter()
                .map(|category| convert::category(*category) as i32)
                .collect(),
            path_glob: self.path.clone(),
            computer: self.computer.clone(),
            entity: self.entity.clone(),
        })
    }

    pub(crate) fn build(&self) -> anyhow::Result<ChangeFilter> {
        let now = time::OffsetDateTime::now_utc();
        let mut types = Vec::new();
        for text in &self.types {
            match ConfigChangeType::parse(text) {
                Some(kind) => types.push(kind),
                None => {
                    bail!("--type {text:?}: expected Files, Registry, WindowsServices or Daemons")
                }
            }
        }
        let mut categories = Vec::new();
        for text in &self.categories {
            match ChangeCategory::parse(text) {
                Some(category) => categories.push(category),
                None => bail!("--category {text:?}: expected Added, Modified or Removed"),
            }
        }
        let path_glob = self
            .path
            .as_deref()
            .map(|glob| {
                fim_engine::store::SubjectGlob::new(glob)
                    .with_context(|| format!("--path {glob:?}"))
            })
            .transpose()?;
        Ok(ChangeFilter {
            since: timespec::option("since", &self.since, now)?,
            until: timespec::option("until", &self.until, now)?,
            types,
            categories,
            path_glob,
            computer: self.computer.clone(),
            entity: self.entity.clone(),
            after_sequence: None,
        })
    }
}

#[derive(Args, Debug)]
pub struct ChangesArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// table, json, jsonl or csv.
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// At most this many records (the oldest first).
    #[arg(long, default_value_t = 10_000)]
    pub limit: usize,
    /// Only records after this sequence number.
    #[arg(long)]
    pub after: Option<u64>,
}

pub fn list(state_dir: &Path, args: ChangesArgs) -> anyhow::Result<ExitCode> {
    let mut filter = args.filter.build()?;
    filter.after_sequence = args.after;
    let store = open_store(state_dir)?;
    let records = store.query(&filter, args.limit)?;
    output::records(&records, args.format, &mut std::io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct SummaryArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Group by these, comma-separated: computer, type, category, entity.
    #[arg(long, value_delimiter = ',', default_value = "computer,type")]
    pub by: Vec<String>,
    /// table, json, jsonl or csv.
    #[arg(long, default_value = "table")]
    pub format: Format,
}

pub fn group_keys(by: &[String]) -> anyhow::Result<Vec<GroupKey>> {
    by.iter()
        .map(|name| {
            Ok(match name.trim().to_ascii_lowercase().as_str() {
                "computer" => GroupKey::Computer,
                "type" | "configchangetype" => GroupKey::Type,
                "category" | "changecategory" => GroupKey::Category,
                "entity" => GroupKey::Entity,
                other => bail!("--by {other:?}: expected computer, type, category or entity"),
            })
        })
        .collect()
}

pub fn summary(state_dir: &Path, args: SummaryArgs) -> anyhow::Result<ExitCode> {
    let filter = args.filter.build()?;
    let keys = group_keys(&args.by)?;
    let store = open_store(state_dir)?;
    let rows = store.summary(&filter, &keys)?;
    output::summary(&args.by, &rows, args.format, &mut std::io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}
