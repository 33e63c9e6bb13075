//! `fim entities ...` and `fim policy check`: the policy file, edited in place.
//!
//! Edits go through the engine's policy document, which keeps the user's comments, validates
//! before writing and replaces the file atomically; a running daemon picks the change up
//! within a second and updates its kernel roots live.
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{bail, Context as _};
use fim_api::{convert, pb};

use crate::remote::{status_error, Client};
use clap::{Args, Subcommand};
use fim_engine::{
    path_text::display_path,
    policy::{self, Entity, EntityKind, EntityPatch, PolicyDocument},
};

#[derive(Subcommand, Debug)]
pub enum EntitiesCommand {
    /// List the entities of the policy (the built-in default when the file does not exist).
    List {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add an entity.
    Add(AddArgs),
    /// Change an entity's fields.
    Edit(EditArgs),
    /// Enable an entity.
    Enable { name: String },
    /// Disable an entity (kept in the policy, not monitored).
    Disable { name: String },
    /// Remove an entity.
    Remove { name: String },
}

fn parse_kind(text: &str) -> Result<EntityKind, String> {
    EntityKind::parse(text).ok_or_else(|| format!("unknown kind {text:?}: {}", EntityKind::names()))
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// A unique name.
    #[arg(long)]
    name: String,
    /// linux-file, file-content, windows-file, windows-registry or windows-service.
    #[arg(long, default_value = "linux-file", value_parser = parse_kind)]
    kind: EntityKind,
    /// The path (a wildcard may stand in the last segment: /etc/*.conf).
    #[arg(long)]
    path: String,
    /// Do not descend into subdirectories (default: recursive, except for wildcards).
    #[arg(long)]
    no_recursive: bool,
    /// Add it disabled.
    #[arg(long)]
    disabled: bool,
    /// A glob to leave out (repeatable).
    #[arg(long = "ignore")]
    ignore: Vec<String>,
}

#[derive(Args, Debug)]
pub struct EditArgs {
    /// The entity to change.
    name: String,
    /// A new name.
    #[arg(long)]
    rename: Option<String>,
    #[arg(long)]
    path: Option<String>,
    #[arg(long, value_parser = parse_kind)]
    kind: Option<EntityKind>,
    #[arg(long)]
    recursive: Option<bool>,
    /// Replace the ignore list (repeatable; pass --ignore '' to clear it).
    #[arg(long = "ignore")]
    ignore: Option<Vec<String>>,
}

fn document(path: &Path) -> anyhow::Result<PolicyDocument> {
    if path.exists() {
        Ok(PolicyDocument::load(path)?)
    } else {
        // The first edit writes the built-in default out, so the file shows what is monitored.
        Ok(PolicyDocument::from_default(path))
    }
}

fn save(document: PolicyDocument, path: &Path, what: String) -> anyhow::Result<ExitCode> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", display_path(parent)))?;
    }
    document.save()?;
    println!("{what}; saved {}", display_path(path));
    Ok(ExitCode::SUCCESS)
}

pub fn run(policy_path: &Path, command: EntitiesCommand) -> anyhow::Result<ExitCode> {
    match command {
        EntitiesCommand::List { json } => list(policy_path, json),
        EntitiesCommand::Add(args) => {
            let mut document = document(policy_path)?;
            let recursive = !args.no_recursive && args.kind.recursive_by_default(&args.path);
            document.add(Entity {
                name: args.name.clone(),
                kind: args.kind,
                path: args.path,
                recursive,
                enabled: !args.disabled,
                ignore: args.ignore,
            })?;
            save(document, policy_path, format!("added entity {}", args.name))
        }
        EntitiesCommand::Edit(args) => {
            let mut document = document(policy_path)?;
            let ignore = args
                .ignore
                .map(|list| list.into_iter().filter(|glob| !glob.is_empty()).collect());
            document.edit(
                &args.name,
                EntityPatch {
                    name: args.rename,
                    path: args.path,
                    kind: args.kind,
                    recursive: args.recursive,
                    enabled: None,
                    ignore,
                },
            )?;
            save(
                document,
                policy_path,
                format!("changed entity {}", args.name),
            )
        }
        EntitiesCommand::Enable { name } => {
            let mut document = document(policy_path)?;
            document.set_enabled(&name, true)?;
            save(document, policy_path, format!("enabled entity {name}"))
        }
        EntitiesCommand::Disable { name } => {
            let mut document = document(policy_path)?;
            document.set_enabled(&name, false)?;
            save(document, policy_path, format!("disabled entity {name}"))
        }
        EntitiesCommand::Remove { name } => {
            let mut document = document(policy_path)?;
            document.remove(&name)?;
            save(document, policy_path, format!("removed entity {name}"))
        }
    }
}

/// The entity table (or JSON), the same whether the entities came from the file or the daemon.
fn print_entities(entities: &[Entity], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(entities)?);
        return Ok(());
    }
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_header(["Name", "Kind", "Path", "Recursive", "Enabled", "Ignore"]);
    for entity in entities {
        table.add_row([
            entity.name.clone(),
            entity.kind.as_str().to_string(),
            entity.path.clone(),
            entity.recursive.to_string(),
            entity.enabled.to_string(),
            entity.ignore.join(" "),
        ]);
    }
    println!("{table}");
    Ok(())
}

fn list(policy_path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let policy = if policy_path.exists() {
        policy::load(policy_path)?.policy
    } else {
        policy::default_policy()
    };
    print_entities(&policy.entities, json)?;
    if !policy_path.exists() {
        println!(
            "(built-in default policy: {} does not exist)",
            display_path(policy_path)
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Validate a policy file: errors with FILE:LINE:COLUMN, warnings, and a summary.
    Check { file: PathBuf },
}

pub fn policy(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    let PolicyCommand::Check { file } = command;
    match policy::load(&file) {
        Ok(parsed) => {
            for warning in &parsed.warnings {
                println!("warning: {warning}");
            }
            policy::compile(&parsed.policy)?;
            let enabled = parsed
                .policy
                .entities
                .iter()
                .filter(|entity| entity.enabled)
                .count();
            println!(
                "{}: OK, {} entities ({} enabled), {} warning(s)",
                display_path(&file),
                parsed.policy.entities.len(),
                enabled,
                parsed.warnings.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("{error}");
            Ok(ExitCode::from(2))
        }
    }
}

/// The same commands through a running daemon (which checks the caller's role).
pub async fn run_remote(client: &mut Client, command: EntitiesCommand) -> anyhow::Result<ExitCode> {
    let entities = |client: &mut Client| {
        let mut client = client.clone();
        async move {
            client
                .list_entities(pb::ListEntitiesRequest {})
                .await
                .map(|response| response.into_inner().entities)
                .map_err(status_error)
        }
    };
    match command {
        EntitiesCommand::List { json } => {
            let entities = entities(client)
                .await?
                .iter()
                .map(|entity| convert::entity_of(entity, "entities").map_err(status_error))
                .collect::<anyhow::Result<Vec<Entity>>>()?;
            print_entities(&entities, json)?;
        }
        EntitiesCommand::Add(args) => {
            if entities(client)
                .await?
                .iter()
                .any(|entity| entity.name == args.name)
            {
                bail!(
                    "an entity named {:?} exists already: use `fim entities edit`",
                    args.name
                );
            }
            let recursive = !args.no_recursive && args.kind.recursive_by_default(&args.path);
            let entity = pb::Entity {
                name: args.name.clone(),
                kind: convert::entity_kind(args.kind) as i32,
                path: args.path,
                recursive,
                enabled: !args.disabled,
                ignore: args.ignore,
            };
            client
                .upsert_entity(pb::UpsertEntityRequest {
                    entity: Some(entity),
                })
                .await
                .map_err(status_error)?;
            println!(
                "added entity {}; the daemon applies it within a second or two",
                args.name
            );
        }
        EntitiesCommand::Edit(args) => {
            if args.rename.is_some() {
                bail!("renaming an entity goes through the policy file: use `fim --local entities edit --rename`");
            }
            let Some(mut entity) = entities(client)
                .await?
                .into_iter()
                .find(|entity| entity.name == args.name)
            else {
                bail!("no entity named {:?}", args.name);
            };
            if let Some(path) = args.path {
                entity.path = path;
            }
            if let Some(kind) = args.kind {
                entity.kind = convert::entity_kind(kind) as i32;
            }
            if let Some(recursive) = args.recursive {
                entity.recursive = recursive;
            }
            if let Some(ignore) = args.ignore {
                entity.ignore = ignore.into_iter().filter(|glob| !glob.is_empty()).collect();
            }
            client
                .upsert_entity(pb::UpsertEntityRequest {
                    entity: Some(entity),
                })
                .await
                .map_err(status_error)?;
            println!("changed entity {}", args.name);
        }
        EntitiesCommand::Enable { name } => {
            client
                .set_entity_enabled(pb::SetEntityEnabledRequest {
                    name: name.clone(),
                    enabled: true,
                })
                .await
                .map_err(status_error)?;
            println!("enabled entity {name}");
        }
        EntitiesCommand::Disable { name } => {
            client
                .set_entity_enabled(pb::SetEntityEnabledRequest {
                    name: name.clone(),
                    enabled: false,
                })
                .await
                .map_err(status_error)?;
            println!("disabled entity {name}");
        }
        EntitiesCommand::Remove { name } => {
            client
                .delete_entity(pb::DeleteEntityRequest { name: name.clone() })
                .await
                .map_err(status_error)?;
            println!("removed entity {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
