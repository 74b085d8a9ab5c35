//! Files named by the config: small files read safely (a password, an allowlist), and the
//! permission warnings on secrets and action programs.

use super::Config;
use std::path::Path;

/// `O_NONBLOCK`: an open of a FIFO returns at once instead of waiting for a writer.
pub(crate) const O_NONBLOCK: i32 = 0o4000;

/// Read a small regular file named in the config (a password, an allowlist): anything else (a
/// device such as /dev/zero, a pipe that would block) or a file over `limit` bytes is an error,
/// never an unbounded read. The file is opened with `O_NONBLOCK` and its type checked on the
/// open descriptor before any read: a plain open of a FIFO waits for a writer, and froze the
/// agent (issue 14.8).
pub(super) fn read_small_file(p: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(p)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > limit {
        return Err(std::io::Error::other(format!("larger than {limit} bytes")));
    }
    let mut s = String::new();
    f.take(limit).read_to_string(&mut s)?;
    Ok(s)
}

/// Files whose permissions let other users read a secret or change what authwatch runs: a
/// `password_file` readable by group or others, an action `program` (or its folder) writable by
/// group or others. Warnings, not errors (`check` lists them, `run` logs them at start): an
/// administrator may have reasons, but should know.
pub fn permission_warnings(cfg: &Config) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).ok().map(|m| m.permissions().mode());
    let mut out = Vec::new();
    if let Some(p) = cfg
        .mail
        .smtp
        .as_ref()
        .and_then(|s| s.password_file.as_ref())
    {
        if let Some(m) = mode(p).filter(|m| m & 0o044 != 0) {
            out.push(format!(
                "mail.smtp.password_file {} is readable by {} (mode {:04o}): make it 0600, owned by the user authwatch runs as",
                p.display(),
                if m & 0o004 != 0 { "every user" } else { "its group" },
                m & 0o7777
            ));
        }
    }
    for a in &cfg.actions {
        let p = &a.spec.program;
        if let Some(m) = mode(p).filter(|m| m & 0o022 != 0) {
            out.push(format!(
                "action {}: program {} is writable by group or others (mode {:04o}): whoever can change it runs commands as authwatch",
                a.spec.name,
                p.display(),
                m & 0o7777
            ));
        }
        if let Some(dir) = p.parent() {
            if let Some(m) = mode(dir).filter(|m| m & 0o022 != 0) {
                out.push(format!(
                    "action {}: the folder {} of its program is writable by group or others (mode {:04o}): whoever can write there can replace the program",
                    a.spec.name,
                    dir.display(),
                    m & 0o7777
                ));
            }
        }
    }
    out
}

/// Log [`permission_warnings`] (at start of `run`).
pub fn log_permission_warnings(cfg: &Config) {
    for w in permission_warnings(cfg) {
        tracing::warn!("{w}");
    }
}
