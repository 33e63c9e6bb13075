//! Who is on the other end of a local connection, as the operating system proved it at
//! connect time: a Unix socket's peer credentials ([`UnixPeer`], read by `peer_unix.rs`) or a
//! named pipe client's token ([`WindowsPeer`], read by `pipe_windows.rs`). These are plain
//! data on every platform, so the role decision ([`crate::auth`]) is one code path, tested
//! everywhere on constructed peers. The transport puts `Option<UnixPeer>` or
//! `Option<WindowsPeer>` into every request's extensions (None: the OS would not say).
use crate::limits::PeerKey;
#[cfg(unix)]
pub use crate::peer_unix::{group_id, PeerStream};

/// The credentials of a local client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixPeer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// Supplementary groups (SO_PEERGROUPS); empty when the kernel cannot say.
    pub groups: Vec<u32>,
}

impl UnixPeer {
    /// Is the peer in `gid`, as its primary or a supplementary group?
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    /// For logs and error messages.
    pub fn describe(&self) -> String {
        match self.pid {
            Some(pid) => format!("uid {} (gid {}, pid {pid})", self.uid, self.gid),
            None => format!("uid {} (gid {})", self.uid, self.gid),
        }
    }
}

/// A named pipe client, from its token at connect time. The memberships are what
/// CheckTokenMembership said for the token (enabled groups only: a filtered UAC token's
/// deny-only Administrators does not count), so a later change of the account's groups does
/// not change a connection's role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowsPeer {
    /// The token user's SID, e.g. "S-1-5-21-...-1001".
    pub sid: String,
    /// DOMAIN\name, when LookupAccountSid could resolve it.
    pub account: Option<String>,
    /// GetNamedPipeClientProcessId; for logs and the policy-change actor only (a pid can be
    /// reused, the token cannot).
    pub pid: Option<u32>,
    /// The token is LocalSystem (S-1-5-18).
    pub system: bool,
    /// BUILTIN\Administrators is enabled in the token (an elevated administrator).
    pub administrator: bool,
    /// The configured owner group is enabled in the token.
    pub owner_group: bool,
    /// The configured reader group is enabled in the token.
    pub reader_group: bool,
}

impl WindowsPeer {
    /// SYSTEM or an elevated administrator: the Windows counterpart of root.
    pub fn is_admin(&self) -> bool {
        self.system || self.administrator
    }

    /// For logs and error messages.
    pub fn describe(&self) -> String {
        let who = match &self.account {
            Some(account) => format!("{account} ({})", self.sid),
            None => self.sid.clone(),
        };
        match self.pid {
            Some(pid) => format!("{who}, pid {pid}"),
            None => who,
        }
    }

    /// Who the connection and its streams count against ([`crate::limits`]).
    pub fn key(&self) -> PeerKey {
        PeerKey::Account {
            sid: self.sid.clone(),
            admin: self.is_admin(),
        }
    }
}
