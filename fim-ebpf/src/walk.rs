//! From a dentry to "which monitored root is this under, and by which names".
//!
//! The walk follows `d_parent`, and at the top of each mount crosses to the mount point, so a
//! file is recognised by its inode's ancestors whichever path, bind mount, chroot or mount
//! namespace the writer used. The names it passes are appended to the record (leaf first) so
//! user space can rebuild the full path from the root's known path.
//!
//! The loop runs under `bpf_loop` (kernel 5.17+): an unrolled or open-coded loop of this size
//! makes the verifier explore every combination of branches and exceed its 1M-instruction
//! budget, while a `bpf_loop` callback is verified once.
use core::ffi::c_void;

use aya_ebpf::helpers::generated::{bpf_loop, bpf_probe_read_kernel_str};
use fim_common::{
    event::{path_flag, DATA_SIZE, EXE_SLOT, MAX_NAME, MAX_WALK_DEPTH},
    roots::{InodeKey, INODE_ANCESTOR, INODE_ROOT},
};

use crate::{
    emit::data_at,
    kernel::{dentry_ids, offset, read_u64, KPath},
    maps::{INODES, SCRATCH, WALK_SCRATCH},
};
use fim_common::event::EventBuf;

/// What the walk found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Nothing monitored: no root above, and the start is not an ancestor of one.
    Nothing,
    /// Under a monitored root (`id` is the root id).
    Root(u32),
    /// The start directory itself is an ancestor of roots (`id` is the ancestor id): the
    /// path string decides, through the prefix trie.
    BaseAncestor(u32),
    /// The depth limit was hit first: the event must be sent and resolved in user space.
    Truncated,
}

const STATE_WALKING: u32 = 0;
const STATE_NOTHING: u32 = 1;
const STATE_ROOT: u32 = 2;
const STATE_BASE_ANCESTOR: u32 = 3;

/// The walk's state lives in a per-CPU map, not on the stack: the verifier then treats its
/// fields as unknown scalars and checks the callback once, instead of once per value range.
#[repr(C)]
pub struct WalkState {
    dentry: u64,
    mnt: u64,
    off: u64,
    anchor_ino: u64,
    anchor_dev: u32,
    depth: u32,
    state: u32,
    id: u32,
    flags: u32,
    to_top: u32,
}

/// Walks up from `start`, recording names into `buf.data` from `*off` and the outcome into
/// `buf.header.paths[slot]`. With `to_top`, keeps going past ancestors to the namespace top
/// (for strings that user space must normalise).
#[inline(always)]
pub fn walk(buf: &mut EventBuf, slot: usize, start: KPath, off: &mut usize, to_top: bool) -> Found {
    let begin = *off;
    let Some(state) = WALK_SCRATCH.get_ptr_mut(0) else {
        return Found::Nothing;
    };
    let state = unsafe { &mut *state };
    *state = WalkState {
        dentry: start.dentry,
        mnt: start.mnt,
        off: *off as u64,
        anchor_ino: 0,
        anchor_dev: 0,
        depth: 0,
        state: STATE_WALKING,
        id: 0,
        flags: path_flag::PRESENT as u32,
        to_top: to_top as u32,
    };
    unsafe {
        bpf_loop(
            (MAX_WALK_DEPTH + 4) as u32,
            walk_step as *mut c_void,
            core::ptr::null_mut(),
            0,
        );
    }
    let found = match state.state {
        STATE_NOTHING => Found::Nothing,
        STATE_ROOT => Found::Root(state.id),
        STATE_BASE_ANCESTOR => Found::BaseAncestor(state.id),
        _ => Found::Truncated,
    };
    let mut flags = state.flags as u8;
    let desc = &mut buf.header.paths[if slot >= EXE_SLOT { EXE_SLOT } else { slot }];
    if found == Found::Truncated {
        flags |= path_flag::WALK_TRUNCATED;
        desc.top_dev = state.anchor_dev;
        desc.top_ino = state.anchor_ino;
    } else if flags & path_flag::REACHED_TOP == 0 {
        desc.anchor_dev = state.anchor_dev;
        desc.anchor_ino = state.anchor_ino;
    }
    if let Found::Root(id) = found {
        desc.root_id = id;
    }
    let end = (state.off as usize) & (2 * DATA_SIZE - 1);
    desc.flags |= flags;
    desc.depth = state.depth as u8;
    desc.names_off = begin as u16;
    desc.names_len = end.saturating_sub(begin) as u16;
    *off = end;
    found
}

/// One level of the walk. Returns 1 to stop the loop.
extern "C" fn walk_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some(state) = WALK_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    let state = unsafe { &mut *state };
    let dentry = state.dentry;
    if dentry == 0 {
        state.state = STATE_NOTHING;
        return 1;
    }
    let (dev, ino, _) = dentry_ids(dentry);
    let key = InodeKey { dev, _pad: 0, ino };
    state.anchor_dev = dev;
    state.anchor_ino = ino;
    if let Some(entry) = unsafe { INODES.get(&key) } {
        if entry.kind == INODE_ROOT
            && (entry.max_depth == u8::MAX || state.depth <= entry.max_depth as u32)
        {
            state.state = STATE_ROOT;
            state.id = entry.id;
            return 1;
        }
        if entry.kind == INODE_ANCESTOR {
            if state.depth == 0 {
                state.state = STATE_BASE_ANCESTOR;
                state.id = entry.id;
                return 1;
            }
            if state.to_top == 0 {
                // Above an ancestor there are only ancestors: nothing monitored. The names so
                // far still make a full path from this anchor.
                state.state = STATE_NOTHING;
                return 1;
            }
        }
    }
    let parent = read_u64(dentry, offset!(dentry_parent));
    let mnt = state.mnt;
    let mnt_root = if mnt == 0 {
        0
    } else {
        read_u64(mnt, offset!(vfsmount_root))
    };
    if dentry == mnt_root || parent == dentry || parent == 0 {
        if mnt == 0 {
            state.flags |= path_flag::REACHED_TOP as u32;
            state.state = STATE_NOTHING;
            return 1;
        }
        let mount = mnt - offset!(mount_mnt);
        let parent_mount = read_u64(mount, offset!(mount_parent));
        if parent_mount == mount || parent_mount == 0 {
            state.flags |= path_flag::REACHED_TOP as u32;
            state.state = STATE_NOTHING;
            return 1;
        }
        state.dentry = read_u64(mount, offset!(mount_mountpoint));
        state.mnt = parent_mount + offset!(mount_mnt);
        return 0;
    }
    let off = state.off as usize;
    if state.depth as usize >= MAX_WALK_DEPTH {
        return 1;
    }
    let Some(buf) = SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    let Some(dst) = data_at(unsafe { &mut *buf }, off, MAX_NAME) else {
        return 1;
    };
    let name = read_u64(dentry, offset!(dentry_name_ptr));
    let n = unsafe { bpf_probe_read_kernel_str(dst.cast(), MAX_NAME as u32, name as *const _) };
    if n <= 0 {
        return 1;
    }
    state.off = (off + ((n as usize) & (2 * MAX_NAME - 1))) as u64;
    state.depth += 1;
    state.dentry = parent;
    0
}
