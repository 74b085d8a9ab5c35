//! Private files in `state_dir`: everything authwatch writes there goes through
//! [`create_private`] / [`open_private_append`] / [`write_private`] / [`create_private_dir`]:
//! files `0600` and folders `0700` whatever the umask, opened with `O_NOFOLLOW` (a symbolic link
//! planted in the folder is refused, never followed). [`lock_state_dir`] keeps a second agent off
//! the same folder.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The lock file in `state_dir` (see [`lock_state_dir`]).
pub const LOCK_FILE: &str = "lock";

/// `O_NOFOLLOW` (Linux; the same value on x86-64 and arm64): fail on a symbolic link.
const O_NOFOLLOW: i32 = 0o400_000;
/// Mode of every file authwatch creates in `state_dir`.
const FILE_MODE: u32 = 0o600;
/// Mode of every folder authwatch creates in `state_dir`.
const DIR_MODE: u32 = 0o700;

/// A clearer error for an open refused by `O_NOFOLLOW` (ELOOP).
fn nofollow_error(path: &Path, e: std::io::Error) -> std::io::Error {
    const ELOOP: i32 = 40;
    if e.raw_os_error() == Some(ELOOP) {
        std::io::Error::other(format!(
            "{} is a symbolic link; refusing to write through it (remove it)",
            path.display()
        ))
    } else {
        e
    }
}

/// Create (or truncate) a file for writing: `O_NOFOLLOW`, close-on-exec (std's default), mode
/// `0600` whatever the umask (set again with fchmod on the open file, also for a file that
/// existed with another mode).
pub(crate) fn create_private(path: &Path) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .custom_flags(O_NOFOLLOW)
        .open(path)
        .map_err(|e| nofollow_error(path, e))?;
    f.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(f)
}

/// Open a file for appending (created `0600` when missing), refusing a symbolic link.
pub(crate) fn open_private_append(path: &Path) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .custom_flags(O_NOFOLLOW)
        .open(path)
        .map_err(|e| nofollow_error(path, e))?;
    f.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(f)
}

/// Write a whole file atomically (temp file beside it, fsync, rename), `0600`, never through
/// a symbolic link (a link at the final name is replaced by the rename, not followed).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = create_private(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Create a folder (and its parents) with mode `0700` whatever the umask; an existing folder
/// is left as it is. A symbolic link where the folder should be is refused.
pub(crate) fn create_private_dir(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(std::io::Error::other(format!(
                "{} is a symbolic link; refusing to use it as authwatch's folder",
                path.display()
            )))
        }
        Ok(m) if m.is_dir() => return Ok(()),
        _ => {}
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)?;
    std::fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
}

/// The lock on `state_dir`, held while it lives (and by the kernel until the process dies).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

/// Take the lock on `state_dir` (`flock` on `state_dir/lock`, which then holds our pid). When
/// another process holds it, the error names that process's pid: two agents on one folder
/// would overwrite each other's checkpoints and send every alert twice.
pub fn lock_state_dir(state_dir: &Path) -> std::io::Result<StateLock> {
    let path = state_dir.join(LOCK_FILE);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .custom_flags(O_NOFOLLOW)
        .open(&path)
        .map_err(|e| nofollow_error(&path, e))?;
    f.set_permissions(Permissions::from_mode(FILE_MODE))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = f.take(32).read_to_string(&mut text);
            let pid = text.trim();
            return Err(std::io::Error::other(format!(
                "state_dir {} is in use by another authwatch (pid {}); stop it first, or give this one another state_dir",
                state_dir.display(),
                if pid.is_empty() { "unknown" } else { pid }
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    f.set_len(0)?;
    f.rewind()?;
    writeln!(f, "{}", std::process::id())?;
    f.sync_data()?;
    Ok(StateLock { _file: f })
}
