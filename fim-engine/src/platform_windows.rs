//! [`crate::platform`] on Windows: std's Windows extensions and the Win32 API (windows-sys).
//!
//! std keeps a file's volume serial number, file index and link count behind unstable
//! features, so they come from `GetFileInformationByHandle` on a handle std opened, and the
//! change time (the closest thing to ctime) from `GetFileInformationByHandleEx(FileBasicInfo)`.
use std::{
    fs::{self, File, FileType, OpenOptions},
    io,
    os::windows::{fs::OpenOptionsExt, io::AsRawHandle},
    path::Path,
};

use windows_sys::Win32::{
    Foundation::{ERROR_DISK_FULL, ERROR_HANDLE_DISK_FULL},
    Security::Cryptography::{BCryptGenRandom, BCRYPT_USE_SYSTEM_PREFERRED_RNG},
    Storage::FileSystem::{
        FileBasicInfo, GetFileInformationByHandle, GetFileInformationByHandleEx,
        BY_HANDLE_FILE_INFORMATION, FILE_BASIC_INFO, FILE_FLAG_BACKUP_SEMANTICS,
        FILE_FLAG_OPEN_REPARSE_POINT, FILE_READ_ATTRIBUTES, FILE_SHARE_DELETE, FILE_SHARE_READ,
        FILE_SHARE_WRITE,
    },
    System::Threading::{
        GetCurrentThread, SetThreadPriority, THREAD_MODE_BACKGROUND_BEGIN,
        THREAD_PRIORITY_BELOW_NORMAL,
    },
};

use crate::platform::NotOnThisPlatform;

/// What one handle says about its file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FileInfo {
    pub attributes: u32,
    pub volume_serial: u64,
    pub file_index: u64,
    pub links: u64,
    pub size: u64,
    /// FILETIME units (100 ns since 1601).
    pub write_time: i64,
    pub change_time: i64,
}

impl FileInfo {
    pub(crate) fn of(file: &File) -> io::Result<FileInfo> {
        let handle = file.as_raw_handle();
        // SAFETY: both structs are plain data, written by the calls on a handle we own.
        let (by_handle, basic) = unsafe {
            let mut by_handle: BY_HANDLE_FILE_INFORMATION = std::mem::zeroed();
            if GetFileInformationByHandle(handle, &mut by_handle) == 0 {
                return Err(io::Error::last_os_error());
            }
            let mut basic: FILE_BASIC_INFO = std::mem::zeroed();
            let ok = GetFileInformationByHandleEx(
                handle,
                FileBasicInfo,
                (&raw mut basic).cast(),
                std::mem::size_of::<FILE_BASIC_INFO>() as u32,
            );
            if ok == 0 {
                return Err(io::Error::last_os_error());
            }
            (by_handle, basic)
        };
        let join = |high: u32, low: u32| (u64::from(high) << 32) | u64::from(low);
        Ok(FileInfo {
            attributes: by_handle.dwFileAttributes,
            volume_serial: u64::from(by_handle.dwVolumeSerialNumber),
            file_index: join(by_handle.nFileIndexHigh, by_handle.nFileIndexLow),
            links: u64::from(by_handle.nNumberOfLinks),
            size: join(by_handle.nFileSizeHigh, by_handle.nFileSizeLow),
            write_time: basic.LastWriteTime,
            change_time: basic.ChangeTime,
        })
    }
}

/// FILETIME (100 ns since 1601-01-01) to nanoseconds since the Unix epoch, saturating.
pub(crate) fn filetime_to_unix_ns(filetime: i64) -> i64 {
    const UNIX_EPOCH_AS_FILETIME: i64 = 116_444_736_000_000_000;
    filetime
        .saturating_sub(UNIX_EPOCH_AS_FILETIME)
        .saturating_mul(100)
}

/// Opens the object at `path` itself, never what a symlink or junction points to, for
/// `access` (FILE_READ_ATTRIBUTES to describe it; add GENERIC_READ to read it), sharing
/// everything so that a monitored file is never locked against its owners.
pub(crate) fn open_no_follow(path: &Path, access: u32) -> io::Result<File> {
    OpenOptions::new()
        .access_mode(access)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE)
        // Backup semantics: directories open too.
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)
}

pub(crate) fn file_id(path: &Path) -> io::Result<(u64, u64)> {
    // Follows links, as the Unix metadata() does.
    let file = OpenOptions::new()
        .access_mode(FILE_READ_ATTRIBUTES)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
        .open(path)?;
    let info = FileInfo::of(&file)?;
    Ok((info.volume_serial, info.file_index))
}

pub(crate) fn is_disk_full_error(code: i32) -> bool {
    u32::try_from(code).is_ok_and(|code| code == ERROR_DISK_FULL || code == ERROR_HANDLE_DISK_FULL)
}

pub(crate) fn random_bytes(bytes: &mut [u8]) -> io::Result<()> {
    for chunk in bytes.chunks_mut(u32::MAX as usize) {
        // SAFETY: the system RNG (no algorithm handle) writes exactly `chunk.len()` bytes.
        let status = unsafe {
            BCryptGenRandom(
                std::ptr::null_mut(),
                chunk.as_mut_ptr(),
                chunk.len() as u32,
                BCRYPT_USE_SYSTEM_PREFERRED_RNG,
            )
        };
        if status < 0 {
            return Err(io::Error::other(format!(
                "BCryptGenRandom failed with NTSTATUS {status:#x}"
            )));
        }
    }
    Ok(())
}

pub(crate) fn send_log_datagram(_socket: &Path, _message: &[u8]) -> io::Result<()> {
    // The Windows event log is the Windows issue's; there is no /dev/log.
    Err(NotOnThisPlatform("the system log socket").io())
}

pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    crate::trust_windows::create_dir(dir)
}

pub(crate) fn create_private_file(path: &Path) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map(drop)
}

pub(crate) fn keep_permissions(path: &Path, file: &File) -> io::Result<()> {
    // Windows permissions are the read-only attribute (the DACL is inherited): keep it; a
    // new file keeps the defaults it was created with.
    match fs::metadata(path) {
        Ok(meta) => file.set_permissions(meta.permissions()),
        Err(_) => Ok(()),
    }
}

pub(crate) fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

pub(crate) fn open_nonblocking(path: &Path) -> io::Result<File> {
    // Windows opens never block on a pipe name the way a FIFO open does on Unix.
    File::open(path)
}

pub(crate) fn special_kind(_kind: &FileType) -> Option<&'static str> {
    // Windows has no FIFOs, sockets or devices in the file system namespace.
    None
}

pub(crate) fn lower_thread_priority() -> io::Result<()> {
    // SAFETY: the pseudo handle of the calling thread needs no closing.
    if unsafe { SetThreadPriority(GetCurrentThread(), THREAD_PRIORITY_BELOW_NORMAL) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn set_idle_io_priority() -> io::Result<()> {
    // Background mode lowers the thread's IO (and memory) priority until it ends.
    // SAFETY: as above.
    if unsafe { SetThreadPriority(GetCurrentThread(), THREAD_MODE_BACKGROUND_BEGIN) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
