//! Requests, fim.v1 → engine, validated: whoever can reach the socket sends these, so every
//! field is checked and a bad one answers INVALID_ARGUMENT naming it.
use fim_engine::{
    change::{ChangeCategory, ConfigChangeType, Timestamp},
    path_text::parse_display,
    policy::{Entity, EntityKind},
    store::{ChangeFilter, GroupKey, SubjectGlob},
};
use tonic::Status;

use crate::pb;

fn invalid(field: &str, what: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {what}"))
}

/// Linux's PATH_MAX, less the terminating NUL.
const PATH_MAX: usize = 4095;
/// Components in an entity path: far beyond any real tree.
const MAX_COMPONENTS: usize = 256;

/// An entity from an UpsertEntity request (`field` prefixes error messages).
pub fn entity_of(entity: &pb::Entity, field: &str) -> Result<Entity, Status> {
    if entity.name.trim().is_empty() {
        return Err(invalid(&format!("{field}.name"), "must not be empty"));
    }
    let kind = match pb::EntityKind::try_from(entity.kind) {
        Ok(pb::EntityKind::LinuxFile) => EntityKind::LinuxFile,
        Ok(pb::EntityKind::FileContent) => EntityKind::FileContent,
        Ok(pb::EntityKind::WindowsFile) => EntityKind::WindowsFile,
        Ok(pb::EntityKind::WindowsRegistry) => EntityKind::WindowsRegistry,
        Ok(pb::EntityKind::WindowsService) => EntityKind::WindowsService,
        Ok(pb::EntityKind::Unspecified) => {
            return Err(invalid(&format!("{field}.kind"), "must be set"))
        }
        Err(_) => {
            return Err(invalid(
                &format!("{field}.kind"),
                format_args!("{} is not an EntityKind", entity.kind),
            ))
        }
    };
    if entity.path.trim().is_empty() {
        return Err(invalid(&format!("{field}.path"), "must not be empty"));
    }
    // Hostile paths are refused here, before they reach the policy file or the kernel: a NUL
    // cannot be in a path (it would cut it short in every C call), and a path longer than
    // PATH_MAX or deeper than MAX_COMPONENTS cannot be opened, only walked at great cost.
    if entity.path.contains('\0') {
        return Err(invalid(
            &format!("{field}.path"),
            "must not contain a NUL byte",
        ));
    }
    let components = entity
        .path
        .split(['/', '\\'])
        .filter(|part| !part.is_empty())
        .count();
    if components > MAX_COMPONENTS {
        return Err(invalid(
            &format!("{field}.path"),
            format_args!("has {components} components; at most {MAX_COMPONENTS}"),
        ));
    }
    if entity.path.len() > PATH_MAX {
        return Err(invalid(
            &format!("{field}.path"),
            format_args!("is {} bytes long; at most {PATH_MAX}", entity.path.len()),
        ));
    }
    if entity.name.contains('\0') {
        return Err(invalid(
            &format!("{field}.name"),
            "must not contain a NUL byte",
        ));
    }
    Ok(Entity {
        name: entity.name.clone(),
        kind,
        path: entity.path.clone(),
        recursive: entity.recursive,
        enabled: entity.enabled,
        ignore: entity.ignore.clone(),
    })
}

/// A request timestamp as nanoseconds since the epoch, refused when it cannot be one.
pub(super) fn timestamp_of(
    timestamp: &prost_types::Timestamp,
    field: &str,
) -> Result<Timestamp, Status> {
    if !(0..1_000_000_000).contains(&timestamp.nanos) {
        return Err(invalid(
            field,
            format_args!("nanos {} is outside 0..1000000000", timestamp.nanos),
        ));
    }
    timestamp
        .seconds
        .checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(i64::from(timestamp.nanos)))
        .map(Timestamp::from_unix_nanos)
        .ok_or_else(|| invalid(field, "is out of range"))
}

/// A change filter from a request; `field` names it in errors (e.g. "filter").
pub fn filter_of(filter: Option<&pb::ChangeFilter>, field: &str) -> Result<ChangeFilter, Status> {
    let Some(filter) = filter else {
        return Ok(ChangeFilter::default());
    };
    let since = filter
        .since
        .as_ref()
        .map(|at| timestamp_of(at, &format!("{field}.since")))
        .transpose()?;
    let until = filter
        .until
        .as_ref()
        .map(|at| timestamp_of(at, &format!("{field}.until")))
        .transpose()?;
    if let (Some(since), Some(until)) = (since, until) {
        if since > until {
            return Err(invalid(
                &format!("{field}.since"),
                "is after filter.until: the range is empty",
            ));
        }
    }
    let types = change_types_of(&filter.types, field)?;
    let categories = categories_of(&filter.categories, field)?;
    let path_glob = filter
        .path_glob
        .as_deref()
        .map(|glob| {
            SubjectGlob::new(glob).map_err(|error| {
                invalid(
                    &format!("{field}.path_glob"),
                    format_args!("{glob:?} is not a valid glob: {}", error.kind()),
                )
            })
        })
        .transpose()?;
    Ok(ChangeFilter {
        since,
        until,
        types,
        categories,
        path_glob,
        computer: filter.computer.clone(),
        entity: filter.entity.clone(),
        after_sequence: None,
    })
}

/// A filter's `types`.
fn change_types_of(types: &[i32], field: &str) -> Result<Vec<ConfigChangeType>, Status> {
    enum_values(
        types,
        &format!("{field}.types"),
        "ConfigChangeType",
        |kind| match kind {
            pb::ConfigChangeType::Files => Some(ConfigChangeType::Files),
            pb::ConfigChangeType::Registry => Some(ConfigChangeType::Registry),
            pb::ConfigChangeType::WindowsServices => Some(ConfigChangeType::WindowsServices),
            pb::ConfigChangeType::Daemons => Some(ConfigChangeType::Daemons),
            pb::ConfigChangeType::Monitor => Some(ConfigChangeType::Monitor),
            pb::ConfigChangeType::Unspecified => None,
        },
    )
}

/// A filter's `categories`.
fn categories_of(categories: &[i32], field: &str) -> Result<Vec<ChangeCategory>, Status> {
    enum_values(
        categories,
        &format!("{field}.categories"),
        "ChangeCategory",
        |category| match category {
            pb::ChangeCategory::Added => Some(ChangeCategory::Added),
            pb::ChangeCategory::Modified => Some(ChangeCategory::Modified),
            pb::ChangeCategory::Removed => Some(ChangeCategory::Removed),
            pb::ChangeCategory::Unspecified => None,
        },
    )
}

/// A repeated enum field, value by value: `convert` maps a known value, None for the
/// unspecified one. An unspecified or unknown value is refused, naming its place
/// (`filter.types[1]`) and, when unknown, the enum (`kind`).
fn enum_values<P: TryFrom<i32>, T>(
    values: &[i32],
    field: &str,
    kind: &str,
    convert: impl Fn(P) -> Option<T>,
) -> Result<Vec<T>, Status> {
    values
        .iter()
        .enumerate()
        .map(|(index, &value)| {
            let name = format!("{field}[{index}]");
            match P::try_from(value) {
                Ok(known) => convert(known).ok_or_else(|| invalid(&name, "is unspecified")),
                Err(_) => Err(invalid(&name, format_args!("{value} is not a {kind}"))),
            }
        })
        .collect()
}

pub fn group_key(key: GroupKey) -> pb::GroupKey {
    match key {
        GroupKey::Computer => pb::GroupKey::Computer,
        GroupKey::Type => pb::GroupKey::Type,
        GroupKey::Category => pb::GroupKey::Category,
        GroupKey::Entity => pb::GroupKey::Entity,
    }
}

pub fn group_keys(keys: &[i32]) -> Result<Vec<GroupKey>, Status> {
    enum_values(keys, "group_by", "GroupKey", |key| match key {
        pb::GroupKey::Computer => Some(GroupKey::Computer),
        pb::GroupKey::Type => Some(GroupKey::Type),
        pb::GroupKey::Category => Some(GroupKey::Category),
        pb::GroupKey::Entity => Some(GroupKey::Entity),
        pb::GroupKey::Unspecified => None,
    })
}

/// A path as records show it (`\xNN` for non-UTF-8 bytes, `\\` for a backslash).
pub fn path_of(text: &str, field: &str) -> Result<std::path::PathBuf, Status> {
    if text.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    parse_display(text).ok_or_else(|| {
        invalid(
            field,
            format_args!(
                "{text:?} is not a path as records show it (a backslash must start \\\\ or \\xNN)"
            ),
        )
    })
}
