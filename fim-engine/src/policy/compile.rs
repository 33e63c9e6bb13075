//! Policy to [`CompiledPolicy`]: what the engine matches paths against.
//!
//! Compilation re-runs validation (a policy edited in code could be invalid) and reuses what it
//! built, so the two can never disagree. The host's file kinds compile to file entities: the
//! Linux kinds on Unix; `windows-file` on Windows (`compile_windows.rs`), where the Linux
//! kinds are not applicable and only named in [`CompiledPolicy::warnings`]. Enabled registry
//! and service entities compile to [`KeyRoot`]s and [`ServiceRoot`]s everywhere. The output
//! keeps policy order, so the same policy always compiles to the same result.
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

/// Which entity kinds compile to file entities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileKinds {
    /// linux-file and file-content (Windows kinds stay in the [`Policy`] for the companion).
    /// On Windows only the tests compile these (the policy tests run on both platforms).
    #[cfg_attr(all(windows, not(test)), allow(dead_code))]
    Linux,
    /// windows-file; the Linux kinds are not applicable.
    #[cfg(windows)]
    Windows,
}

impl FileKinds {
    /// The kinds this platform monitors.
    #[cfg(not(windows))]
    pub(crate) const HOST: FileKinds = FileKinds::Linux;
    #[cfg(windows)]
    pub(crate) const HOST: FileKinds = FileKinds::Windows;
}

pub(crate) fn compile_with(
    policy: &Policy,
    env: EnvLookup<'_>,
) -> Result<CompiledPolicy, PolicyError> {
    compile_for(policy, env, FileKinds::HOST)
}

/// [`compile_with`] for the file kinds of a given platform (tests compile the Linux kinds on
/// Windows too).
pub(crate) fn compile_for(
    policy: &Policy,
    env: EnvLookup<'_>,
    kinds: FileKinds,
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
    #[cfg_attr(not(windows), allow(unused_mut))]
    let mut warnings = Vec::new();
    let entities = match kinds {
        FileKinds::Linux => linux_entities(policy, checked.prepared),
        #[cfg(windows)]
        FileKinds::Windows => super::compile_windows::file_entities(policy, env, &mut warnings),
    };
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
        warnings,
    })
}

/// The enabled Linux entities, from what validation prepared.
fn linux_entities(
    policy: &Policy,
    prepared: Vec<Option<validate::Prepared>>,
) -> Vec<CompiledEntity> {
    policy
        .entities
        .iter()
        .zip(prepared)
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
        .collect()
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
