//! Policy to [`CompiledPolicy`]: what the Linux engine matches paths against.
//!
//! Compilation re-runs validation (a policy edited in code could be invalid) and reuses what it
//! built, so the two can never disagree. Enabled Linux kinds compile to file entities and
//! enabled registry and service entities to [`KeyRoot`]s and [`ServiceRoot`]s; Windows files
//! stay in the [`Policy`] for the companion. The output keeps policy order, so the same
//! policy always compiles to the same result.
use super::{
    diagnostic::{Diagnostic, Severity},
    paths::{self, EnvLookup},
    validate, CompiledEntity, CompiledPolicy, EntityKind, Policy, PolicyError,
};
use crate::{
    registry::{KeyRoot, RegistryView},
    service::ServiceRoot,
};

/// Expands environment variables (from this process), normalises paths and builds the globs.
pub fn compile(policy: &Policy) -> Result<CompiledPolicy, PolicyError> {
    compile_with(policy, &paths::process_env)
}

pub(crate) fn compile_with(
    policy: &Policy,
    env: EnvLookup<'_>,
) -> Result<CompiledPolicy, PolicyError> {
    let checked = validate::check(policy, env);
    if checked.has_errors() {
        let errors = checked
            .issues
            .into_iter()
            .filter(|issue| issue.severity == Severity::Error)
            .map(|issue| Diagnostic {
                severity: Severity::Error,
                location: None,
                message: issue.message,
            })
            .collect();
        return Err(PolicyError::Invalid(errors));
    }
    let entities = policy
        .entities
        .iter()
        .zip(checked.prepared)
        .filter(|(entity, _)| entity.enabled && entity.kind.is_linux_file())
        .filter_map(|(entity, prepared)| {
            let prepared = prepared?;
            Some(CompiledEntity {
                name: entity.name.clone(),
                kind: entity.kind,
                root: prepared.root,
                recursive: entity.recursive,
                name_glob: prepared.name_glob,
                ignore: prepared.ignore,
                keep_content: entity.kind == EntityKind::FileContent,
                excluded: Vec::new(),
            })
        })
        .collect();
    let registry = policy
        .entities
        .iter()
        .filter(|entity| entity.enabled && entity.kind == EntityKind::WindowsRegistry)
        .map(key_root)
        .collect();
    let services = policy
        .entities
        .iter()
        .filter(|entity| entity.enabled && entity.kind == EntityKind::WindowsService)
        .map(|entity| ServiceRoot {
            entity: entity.name.clone(),
            pattern: entity.path.clone(),
        })
        .collect();
    Ok(CompiledPolicy {
        entities,
        registry,
        services,
        settings: policy.settings.clone(),
    })
}

/// A validated registry entity as the sweep walks it: the long hive first, no trailing
/// separator, and a wildcard last segment split off as the subkey pattern. A key naming
/// `WOW6432Node` is read as written, in the native view, where 64-bit Windows shows the
/// 32-bit keys under that name.
fn key_root(entity: &super::Entity) -> KeyRoot {
    let key = fim_model::object::long_hive_key(entity.path.trim_end_matches('\\')).into_owned();
    let (key, subkeys) = match key.rsplit_once('\\') {
        Some((parent, last)) if last.contains(['*', '?']) => {
            (parent.to_string(), Some(last.to_string()))
        }
        _ => (key, None),
    };
    KeyRoot {
        entity: entity.name.clone(),
        key,
        subkeys,
        recursive: entity.recursive,
        view: RegistryView::Native,
    }
}
