//! Mail: builds the alert message (From, To, Subject, Date, Message-ID, Auto-Submitted) and
//! delivers it, over SMTP with lettre (plain, STARTTLS or implicit TLS, optional AUTH) or, when
//! no SMTP server is configured, as an `.eml` file in the outbox folder. Every part is 7-bit
//! (ASCII as it is, else quoted-printable), so a relay without 8BITMIME takes it too; files an
//! alert carries (the digest's CSV) go in a multipart/mixed after the text.
//!
//! Every alert is first written to the spool (`<state_dir>/spool`: temp file, fsync, rename),
//! then delivered by its own task, so a slow or absent relay never holds up log reading and a
//! restart sends what is still spooled. Transient SMTP failures (timeouts, refused connections,
//! 4xx) are retried with exponential backoff and full jitter for `mail.retry_for`; a permanent
//! refusal (5xx), or a message undelivered for that long, is moved to `<state_dir>/failed/` and
//! logged loudly, never silently dropped. The SMTP password is never logged.
//!
//! Duplicates: a message is removed from the spool only after the server accepted it. If
//! authwatch dies between the server's acceptance and that removal, the message is sent again
//! at the next start (with the same Message-ID, so mail software can tell). We prefer this rare
//! duplicate to a loss.
//!
//! This file holds the file helpers the parts share; `mail/compose.rs` builds messages
//! ([`Composer`]), `mail/spool.rs` keeps them durable ([`Spool`], [`SpoolWriter`],
//! [`AlertIds`]) and `mail/send.rs` delivers them ([`Sender`], [`run_mailer`]).

mod compose;
mod send;
mod spool;

#[cfg(test)]
use compose::seven_bit_body;
pub use compose::Composer;
pub use send::{run_mailer, smtp_hint, with_hint, MailStatus, RetryPolicy, Sender};
pub use spool::{AlertIds, Spool, SpoolWriter};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static FILE_SEQ: AtomicU64 = AtomicU64::new(0);

/// Write `bytes` to `dir/name` atomically: temp file, fsync, rename.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    crate::state::create_private_dir(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let dst = dir.join(name);
    {
        let mut f = crate::state::create_private(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &dst)?;
    Ok(dst)
}

/// A file name that sorts in creation order and is unique across processes and restarts.
fn unique_name(prefix: &str) -> String {
    let now = jiff::Timestamp::now();
    let seq = FILE_SEQ.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}-{:010}-{}-{seq:06}.eml",
        now.strftime("%Y%m%dT%H%M%S%.6fZ"),
        std::process::id(),
        prefix
    )
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Move (or copy, across file systems) a file into a folder. A rename within one file system
/// is atomic, also across a power cut: the message is in one folder or the other, so the
/// folders are synced once per pass of the mail task (`sync_dirs`), not per message. A copy is
/// synced (file and folder) before the original is removed.
fn move_into(src: &Path, dir: &Path) -> std::io::Result<PathBuf> {
    crate::state::create_private_dir(dir)?;
    let dst = dir.join(src.file_name().unwrap_or_default());
    if std::fs::rename(src, &dst).is_ok() {
        return Ok(dst);
    }
    let bytes = std::fs::read(src)?;
    let name = dst
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    write_atomic(dir, &name, &bytes)?;
    sync_dir(dir);
    std::fs::remove_file(src)?;
    Ok(dst)
}

#[cfg(test)]
#[path = "mail_tests.rs"]
mod tests;
