//! Policy to [`CompiledPolicy`]: what the Linux engine matches paths against.
//!
//! Compilation re-runs validation (a policy edited in code could be invalid) and reuses what it
//! built, so the two can never disagree. Only enabled Linux kinds are compiled; the Windows
//! kinds stay in the [`Policy`] for the companion. The output keeps policy order, so the same
//! policy always compiles to the same result.
use super::{
    diagnostic::{Diagnostic, Severity},
    paths::{self, EnvLookup},
    validate, CompiledEntity, CompiledPolicy, EntityKind, Policy, PolicyError,
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
    Ok(CompiledPolicy {
        entities,
        settings: policy.settings.clone(),
    })
}
