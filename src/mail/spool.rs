//! The durable spool (`<state_dir>/spool`, `failed/`), the ids of alerts already spooled
//! (`alert-ids`) so a restart sends no alert twice, and the batch writer that makes a batch's
//! alerts durable before the checkpoint passes their lines, recording their ids before any of
//! them can be sent (and finishing, at the next start, a batch a crash interrupted).

use crate::message::Rendered;
use crate::policy::id::is_legacy;
use lettre::Message;
use std::io::Write;
use std::path::{Path, PathBuf};
use tracing::{error, info, warn};

use super::{sync_dir, unique_name, write_atomic};

/// The durable outbox: every alert is written here first (temp file, fsync, rename, fsync of
/// the folder) and removed only once the SMTP server accepted it (or it was moved into the
/// outbox folder). Files are named so that sorting them gives the order they were made in.
pub struct Spool {
    dir: PathBuf,
    failed: PathBuf,
}

impl Spool {
    /// Open (and create) `<state_dir>/spool` and `<state_dir>/failed`; leftovers of an
    /// interrupted write (hidden temp files) are removed.
    pub fn open(state_dir: &Path) -> std::io::Result<Spool> {
        let dir = state_dir.join("spool");
        let failed = state_dir.join("failed");
        crate::state::create_private_dir(&dir)?;
        crate::state::create_private_dir(&failed)?;
        for e in std::fs::read_dir(&dir)?.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(Spool { dir, failed })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Store one message durably; returns its path.
    pub fn put(&self, msg: &Message) -> std::io::Result<PathBuf> {
        let p = write_atomic(&self.dir, &unique_name("alert"), &msg.formatted())?;
        sync_dir(&self.dir);
        Ok(p)
    }

    /// Messages waiting, oldest first.
    pub fn pending(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "eml")
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        v.sort();
        Ok(v)
    }

    /// A message was delivered: remove it. The folder is synced once per pass of the mail
    /// task ([`Spool::sync`]), not per message: a removal lost in a power cut only means the
    /// message is sent again, never that one is lost.
    pub(super) fn done(&self, p: &Path) {
        // In outbox mode the file has already been moved away.
        if let Err(e) = std::fs::remove_file(p).or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(e),
        }) {
            error!(file = %p.display(), error = %e, "cannot remove a sent message from the spool; it may be sent again");
        }
    }

    pub(super) fn sync(&self) {
        sync_dir(&self.dir);
    }

    pub(super) fn fail(&self, p: &Path) {
        let dst = self.failed.join(p.file_name().unwrap_or_default());
        match std::fs::rename(p, &dst) {
            Ok(()) => error!(file = %dst.display(), "undelivered alert kept under failed/"),
            Err(e) => {
                error!(file = %p.display(), error = %e, "cannot move an undelivered alert to failed/")
            }
        }
        sync_dir(&self.dir);
        sync_dir(&self.failed);
    }
}

/// Ids of the alerts already spooled (`<state_dir>/alert-ids`, one per line, appended and
/// fsynced when an alert is spooled). After a crash, the lines since the last saved state are
/// read again and make the same alerts with the same ids; those are not sent a second time.
/// The file keeps the last [`AlertIds::KEEP`] ids.
///
/// Ids of versions before `v2` (see [`crate::policy::id`]) may be in the file after an
/// upgrade; while any is, [`SpoolWriter::seen_alert`] also checks an alert's legacy id.
pub struct AlertIds {
    path: PathBuf,
    ids: std::collections::HashSet<String>,
    order: std::collections::VecDeque<String>,
    /// How many of `ids` have the form of versions before `v2`.
    legacy: usize,
}

impl AlertIds {
    pub const KEEP: usize = 10_000;

    pub fn open(state_dir: &Path) -> AlertIds {
        let path = state_dir.join("alert-ids");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut me = AlertIds {
            path,
            ids: Default::default(),
            order: Default::default(),
            legacy: 0,
        };
        for l in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            me.remember(l.to_string());
        }
        me
    }

    fn remember(&mut self, id: String) {
        if self.ids.insert(id.clone()) {
            self.legacy += usize::from(is_legacy(&id));
            self.order.push_back(id);
            if self.order.len() > Self::KEEP {
                if let Some(old) = self.order.pop_front() {
                    self.ids.remove(&old);
                    self.legacy -= usize::from(is_legacy(&old));
                }
            }
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// Whether ids of the form before `v2` are still remembered.
    pub fn has_legacy(&self) -> bool {
        self.legacy > 0
    }

    /// Remember an id durably; the file is rewritten when it has grown to twice what is kept.
    pub fn record(&mut self, id: &str) {
        self.remember(id.to_string());
        self.persist(&[id]);
    }

    /// Write ids already remembered to the file, in one write and one fsync.
    fn persist(&mut self, ids: &[&str]) {
        if ids.is_empty() {
            return;
        }
        let res = if self.order.len() == Self::KEEP
            && std::fs::metadata(&self.path).map_or(0, |m| m.len()) > 64 * 2 * Self::KEEP as u64
        {
            let all: Vec<&str> = self.order.iter().map(String::as_str).collect();
            let dir = self.path.parent().unwrap_or(Path::new("."));
            write_atomic(dir, "alert-ids", format!("{}\n", all.join("\n")).as_bytes()).map(|_| ())
        } else {
            crate::state::open_private_append(&self.path).and_then(|mut f| {
                let mut text = ids.join("\n");
                text.push('\n');
                f.write_all(text.as_bytes())?;
                f.sync_data()
            })
        };
        if let Err(e) = res {
            warn!(file = %self.path.display(), error = %e, "cannot record the alert id; after a crash it might be sent twice");
        }
    }
}

/// Puts alerts into the spool a batch at a time and remembers their ids ([`AlertIds`]).
///
/// [`SpoolWriter::stage`] writes an alert to a hidden temp file in the spool,
/// `.<final name>+<id>.staged` (the id escaped, see [`staged_name`]; the mail task ignores
/// hidden files). [`SpoolWriter::commit`] then makes the whole batch durable, in this order:
///
/// 1. `fdatasync` each temp file (back to back: the disk flushes are merged as far as the file
///    system can; one per alert);
/// 2. one fsync of the folder, so the temp files' names are durable too;
/// 3. append the batch's ids to `alert-ids` in one write and fsync it once: from now on the
///    batch counts as spooled, also across a crash;
/// 4. rename each temp file into place (now the mail task may send it).
///
/// A crash before 3 leaves temp files whose ids are not recorded: [`SpoolWriter::open`]
/// removes them, and the alerts' lines, not checkpointed, are read and alerted again (nothing
/// lost, nothing twice). A crash after 3 (during 4, or before a rename reached the disk)
/// leaves temp files whose ids are recorded: [`SpoolWriter::open`] renames them into place, and
/// the alerts the re-read lines make again are known by their ids (nothing twice, nothing
/// lost). Ids were once recorded after the renames; a `kill -9` between the two (a whole
/// catch-up batch of alerts, under a loaded disk's slow folder fsync) sent every alert of that
/// batch twice (issue 14).
///
/// The caller commits before it lets the checkpoint move past the batch's lines, so an alert
/// is durable before the checkpoint that passes its line is saved. Recording an id only after
/// the data and the temp name are synced matters: on ext4 metadata can reach the disk before
/// the data of a new file does, and an id recorded for an empty or missing file would be a
/// lost alert.
pub struct SpoolWriter {
    spool: Spool,
    ids: AlertIds,
    staged: Vec<Staged>,
}

/// An alert written to a temp file, waiting for [`SpoolWriter::commit`].
pub(super) struct Staged {
    file: std::fs::File,
    tmp: PathBuf,
    dst: PathBuf,
    id: Option<String>,
    /// For the error log if it cannot be made durable.
    subject: String,
    text: String,
}

/// Suffix of the temp files [`SpoolWriter::stage`] writes (see [`staged_name`]).
const STAGED_SUFFIX: &str = ".staged";

/// The hidden name an alert is staged under: `.<final name>+<id>.staged`, or
/// `.<final name>.staged` without an id. In the id every byte but ASCII letters, digits, `_`
/// and `-` is written `%XX`, so the name is one path component and the id reads back exactly
/// ([`parse_staged`]). Final names ([`unique_name`]) hold no `+`.
fn staged_name(name: &str, id: Option<&str>) -> String {
    let Some(id) = id else {
        return format!(".{name}{STAGED_SUFFIX}");
    };
    let mut esc = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            esc.push(char::from(b));
        } else {
            esc.push_str(&format!("%{b:02X}"));
        }
    }
    format!(".{name}+{esc}{STAGED_SUFFIX}")
}

/// The final name and the id of a file named by [`staged_name`]; None for other files (and for
/// an id that does not decode). The id is None when the final name is not one the spool gives
/// (a visible `.eml` name), so nothing is ever renamed to another kind of name.
fn parse_staged(file: &str) -> Option<(String, Option<String>)> {
    let inner = file.strip_prefix('.')?.strip_suffix(STAGED_SUFFIX)?;
    let Some((name, esc)) = inner.split_once('+') else {
        return Some((inner.to_string(), None));
    };
    if name.starts_with('.') || !name.ends_with(".eml") {
        return Some((name.to_string(), None));
    }
    let mut id = Vec::with_capacity(esc.len());
    let mut bytes = esc.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            id.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            id.push(b);
        }
    }
    Some((name.to_string(), Some(String::from_utf8(id).ok()?)))
}

impl SpoolWriter {
    /// Open the spool and the id file of `state_dir`, and settle the temp files of a commit a
    /// crash interrupted (see the type's docs): those whose ids were recorded are renamed into
    /// place, the others removed.
    pub fn open(state_dir: &Path) -> std::io::Result<SpoolWriter> {
        let w = SpoolWriter {
            spool: Spool::open(state_dir)?,
            ids: AlertIds::open(state_dir),
            staged: Vec::new(),
        };
        w.recover()?;
        Ok(w)
    }

    /// Finish or undo the commit a crash interrupted (see [`SpoolWriter::open`]).
    fn recover(&self) -> std::io::Result<()> {
        let dir = &self.spool.dir;
        let mut finished = 0;
        for e in std::fs::read_dir(dir)?.flatten() {
            let file = e.file_name();
            let Some((name, id)) = parse_staged(&file.to_string_lossy()) else {
                continue;
            };
            let recorded = id.as_deref().is_some_and(|id| self.ids.contains(id));
            if recorded && std::fs::rename(e.path(), dir.join(&name)).is_ok() {
                finished += 1;
                info!(file = %name, "an alert spooled just before a crash is sent now");
            } else {
                let _ = std::fs::remove_file(e.path());
            }
        }
        if finished > 0 {
            sync_dir(dir);
        }
        Ok(())
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Whether an alert with this id was spooled already (also earlier in this batch).
    pub fn seen(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// Whether this alert was spooled already: by its id, or, while `alert-ids` still holds
    /// ids of versions before `v2`, by the id such a version gave it (an alert made again just
    /// after an upgrade). Which of its ids matched, if one did.
    pub fn seen_alert<'r>(&self, r: &'r Rendered) -> Option<&'r str> {
        let id = r.id.as_deref().filter(|id| self.ids.contains(id));
        id.or_else(|| {
            r.legacy_id
                .as_deref()
                .filter(|l| self.ids.has_legacy() && self.ids.contains(l))
        })
    }

    /// Alerts staged and not yet committed.
    pub fn staged(&self) -> usize {
        self.staged.len()
    }

    /// Write `msg` to a temp file in the spool; durable and visible after [`commit`](Self::commit).
    pub fn stage(&mut self, msg: &Message, r: &Rendered) -> std::io::Result<()> {
        let name = unique_name("alert");
        let tmp = self.spool.dir.join(staged_name(&name, r.id.as_deref()));
        let mut file = crate::state::create_private(&tmp)?;
        if let Err(e) = file.write_all(&msg.formatted()) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        if let Some(id) = &r.id {
            self.ids.remember(id.clone());
        }
        self.staged.push(Staged {
            file,
            tmp,
            dst: self.spool.dir.join(name),
            id: r.id.clone(),
            subject: r.subject.clone(),
            text: r.text.clone(),
        });
        Ok(())
    }

    /// Make every staged alert durable (see the type's docs for the order). Returns how many
    /// are now in the spool; the others are logged with their text (they cannot be written).
    pub fn commit(&mut self) -> usize {
        let recorded = self.record();
        self.publish(recorded)
    }

    /// Steps 1 to 3 of a commit: the staged alerts' data and temp names durable, then their
    /// ids recorded. What it returns is in the spool once [`publish`](Self::publish)ed, or,
    /// after a crash in between, once [`SpoolWriter::open`] has renamed it.
    pub(super) fn record(&mut self) -> Vec<Staged> {
        if self.staged.is_empty() {
            return Vec::new();
        }
        let staged = std::mem::take(&mut self.staged);
        let mut synced = Vec::with_capacity(staged.len());
        for st in staged {
            match st.file.sync_data() {
                Ok(()) => synced.push(st),
                Err(e) => self.fail(&st, &e),
            }
        }
        sync_dir(&self.spool.dir);
        let ids: Vec<&str> = synced.iter().filter_map(|st| st.id.as_deref()).collect();
        self.ids.persist(&ids);
        synced
    }

    /// Step 4 of a commit: rename the recorded alerts into place, where the mail task sends
    /// them. No folder fsync: a rename lost in a power cut leaves the temp file, whose id is
    /// recorded, and [`SpoolWriter::open`] renames it then.
    fn publish(&self, recorded: Vec<Staged>) -> usize {
        let mut done = 0;
        for st in recorded {
            match std::fs::rename(&st.tmp, &st.dst) {
                Ok(()) => done += 1,
                Err(e) => self.fail(&st, &e),
            }
        }
        done
    }

    /// An alert that cannot be made durable: its temp file removed, its text logged.
    fn fail(&self, st: &Staged, e: &std::io::Error) {
        let _ = std::fs::remove_file(&st.tmp);
        error!(dir = %self.spool.dir.display(), error = %e, subject = %st.subject,
            body = %st.text, "cannot write the alert to the spool");
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_staged, staged_name};

    #[test]
    fn staged_names_give_back_name_and_id() {
        let name = "20261205T235809.098734Z-0000032426-alert-000005.eml";
        for id in ["ip_burst-v2-1bc2822254a33561", "odd id/+%.\u{e9}", ""] {
            let staged = staged_name(name, Some(id));
            assert!(!staged.contains('/') && staged.starts_with('.'), "{staged}");
            assert_eq!(
                parse_staged(&staged),
                Some((name.to_string(), Some(id.to_string())))
            );
        }
        assert_eq!(
            parse_staged(&staged_name(name, None)),
            Some((name.to_string(), None))
        );
        // Not ours, or not a name to rename to: never a rename target.
        assert_eq!(parse_staged(".x.eml.tmp"), None);
        assert_eq!(parse_staged("x.eml"), None);
        assert_eq!(parse_staged(".x.eml+a%zz.staged"), None);
        assert_eq!(parse_staged("..+a.staged"), Some((".".into(), None)));
        assert_eq!(
            parse_staged(".x.txt+a.staged"),
            Some(("x.txt".into(), None))
        );
    }
}
