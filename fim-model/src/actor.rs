//! Who made a change: the process and the user it ran as.
//!
//! The process fields are the same on every platform; the user is a Unix identity (uid, gid,
//! login uid, cgroup) or a Windows one (SID, logon session, account). Both are flattened into
//! the actor's JSON, so a Linux record reads exactly as it did before Windows existed
//! (`UserId`, `UserName`, ... next to `ProcessId`), and a Windows record carries `UserSid`,
//! `LogonId` and `AccountName` in their place.
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Who made the change, from a real-time event. Serialised as the string "unknown" when a
/// scan found the change (see [`serialize_actor`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Actor {
    pub process_id: u32,
    pub thread_id: u32,
    pub process_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    pub parent_process_id: u32,
    #[serde(flatten)]
    pub user: UserIdentity,
}

/// The user a process ran as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UserIdentity {
    Unix(UnixUser),
    Windows(WindowsUser),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UnixUser {
    pub user_id: u32,
    pub user_name: String,
    pub group_id: u32,
    /// None: the process has no login session (daemons); not the same as root.
    pub login_user_id: Option<u32>,
    pub cgroup_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WindowsUser {
    /// The token user's SID, e.g. "S-1-5-18".
    pub user_sid: String,
    /// The logon session (LUID as one number); None when the source does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logon_id: Option<u64>,
    /// DOMAIN\name, as LookupAccountSid gives it; None when it could not be resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
}

impl Actor {
    /// The user's name as a table shows it: the Unix name, or the Windows account (its SID
    /// when the account could not be resolved).
    pub fn user_display(&self) -> &str {
        match &self.user {
            UserIdentity::Unix(user) => &user.user_name,
            UserIdentity::Windows(user) => user.account_name.as_deref().unwrap_or(&user.user_sid),
        }
    }

    pub fn unix(&self) -> Option<&UnixUser> {
        match &self.user {
            UserIdentity::Unix(user) => Some(user),
            UserIdentity::Windows(_) => None,
        }
    }

    pub fn windows(&self) -> Option<&WindowsUser> {
        match &self.user {
            UserIdentity::Windows(user) => Some(user),
            UserIdentity::Unix(_) => None,
        }
    }
}

/// `None` as "unknown", as records have always said when a scan found the change.
pub fn serialize_actor<S: Serializer>(
    actor: &Option<Actor>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match actor {
        Some(actor) => actor.serialize(serializer),
        None => serializer.serialize_str("unknown"),
    }
}

/// The inverse of [`serialize_actor`]: anything that is not an actor reads as unknown.
pub fn deserialize_actor<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Actor>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Known(Actor),
        Unknown(serde::de::IgnoredAny),
    }
    Ok(match Either::deserialize(deserializer)? {
        Either::Known(actor) => Some(actor),
        Either::Unknown(_) => None,
    })
}
