//! Who changed the policy through the API, for the journal's policy-change records.
//!
//! A local caller is named as the kernel gave it (SO_PEERCRED at connect), with what /proc
//! still says about its process; a named pipe caller by its token's SID and account (the
//! process only by its pid: nothing here reads another process's image); a TLS client only by
//! its certificate, without an actor.
use fim_engine::{
    change::{Actor, UnixUser, UserIdentity, WindowsUser},
    daemon::PolicyAuthor,
    users,
};

use crate::auth::Caller;

pub fn policy_author(caller: Option<&Caller>) -> PolicyAuthor {
    let Some(caller) = caller else {
        return PolicyAuthor {
            actor: None,
            by: "an unknown caller".to_string(),
        };
    };
    if let Some(peer) = &caller.windows {
        return PolicyAuthor {
            actor: Some(Actor {
                process_id: peer.pid.unwrap_or(0),
                thread_id: 0,
                process_name: String::new(),
                executable: None,
                parent_process_id: 0,
                user: UserIdentity::Windows(WindowsUser {
                    user_sid: peer.sid.clone(),
                    logon_id: None,
                    account_name: peer.account.clone(),
                }),
            }),
            by: caller.identity.clone(),
        };
    }
    let actor = caller.unix.as_ref().map(|peer| {
        let pid = peer
            .pid
            .and_then(|pid| u32::try_from(pid).ok())
            .unwrap_or(0);
        let proc = |file: &str| std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok();
        let parent = proc("stat").and_then(|stat| parent_of(&stat)).unwrap_or(0);
        Actor {
            process_id: pid,
            thread_id: pid,
            process_name: proc("comm")
                .map(|comm| comm.trim_end().to_string())
                .unwrap_or_default(),
            executable: std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .map(|exe| exe.to_string_lossy().into_owned()),
            parent_process_id: parent,
            user: UserIdentity::Unix(UnixUser {
                user_id: peer.uid,
                user_name: users::user_name(peer.uid),
                group_id: peer.gid,
                login_user_id: proc("loginuid")
                    .and_then(|text| text.trim().parse::<u32>().ok())
                    .filter(|&uid| uid != u32::MAX),
                cgroup_id: 0,
                cgroup: proc("cgroup").and_then(|text| {
                    text.lines()
                        .find_map(|line| line.strip_prefix("0::"))
                        .map(str::to_string)
                }),
            }),
        }
    });
    PolicyAuthor {
        actor,
        by: caller.identity.clone(),
    }
}

/// The parent pid from /proc/PID/stat: the fourth field, after the command in parentheses
/// (which may itself hold spaces and parentheses).
fn parent_of(stat: &str) -> Option<u32> {
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_parent_is_read_past_a_command_with_parentheses() {
        assert_eq!(super::parent_of("42 (a) b) S 7 42 42 0"), Some(7));
    }
}
