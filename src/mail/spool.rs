//! The durable spool (`<state_dir>/spool`, `failed/`), the ids of alerts already spooled
//! (`alert-ids`) so a restart sends no alert twice, and the batch writer that makes a batch's
//! alerts durable before the checkpoint passes their lines.

use crate::message::Rendered;
use crate::policy::id::is_legacy;
use lettre::Message;
use std::io::Write;
use std::path::{Path, PathBuf};
use tracing::{error, warn};

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
/// [`SpoolWriter::stage`] writes an alert to a hidden temp file in the spool (not synced yet:
/// the mail task ignores hidden files, and [`Spool::open`] removes them after a crash).
/// [`SpoolWriter::commit`] then makes the whole batch durable, in this order:
///
/// 1. `fdatasync` each temp file (back to back: the disk flushes are merged as far as the file
///    system can; one per alert, but no longer three);
/// 2. rename each into place (now the mail task may send it), then one fsync of the folder, so
///    the names are durable too;
/// 3. append the batch's ids to `alert-ids` in one write and fsync it once.
///
/// A crash before 2 leaves only temp files: the alerts' lines were not checkpointed, so they
/// are read and alerted again after the restart (nothing lost). Between 2 and 3 the alerts are
/// safe in the spool, and re-read lines may make them once more (a rare duplicate, never a
/// loss). After 3 a restart repeats nothing. The caller commits before it lets the checkpoint
/// move past the batch's lines, so an alert is durable before the checkpoint that passes its
/// line is saved. Renaming only after the data is synced matters: on ext4 a rename can reach
/// the disk before the data of a new file does, and an empty spool file whose id is recorded
/// would be a lost alert.
pub struct SpoolWriter {
    spool: Spool,
    ids: AlertIds,
    staged: Vec<Staged>,
}

/// An alert written to a temp file, waiting for [`SpoolWriter::commit`].
struct Staged {
    file: std::fs::File,
    tmp: PathBuf,
    dst: PathBuf,
    id: Option<String>,
    /// For the error log if it cannot be made durable.
    subject: String,
    text: String,
}

impl SpoolWriter {
    /// Open the spool and the id file of `state_dir`.
    pub fn open(state_dir: &Path) -> std::io::Result<SpoolWriter> {
        Ok(SpoolWriter {
            spool: Spool::open(state_dir)?,
            ids: AlertIds::open(state_dir),
            staged: Vec::new(),
        })
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
        let tmp = self.spool.dir.join(format!(".{name}.tmp"));
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
        if self.staged.is_empty() {
            return 0;
        }
        let staged = std::mem::take(&mut self.staged);
        let fail = |st: &Staged, e: &std::io::Error| {
            let _ = std::fs::remove_file(&st.tmp);
            error!(dir = %self.spool.dir.display(), error = %e, subject = %st.subject,
                body = %st.text, "cannot write the alert to the spool");
        };
        let mut synced = Vec::with_capacity(staged.len());
        for st in staged {
            match st.file.sync_data() {
                Ok(()) => synced.push(st),
                Err(e) => fail(&st, &e),
            }
        }
        let mut done = Vec::with_capacity(synced.len());
        for st in synced {
            match std::fs::rename(&st.tmp, &st.dst) {
                Ok(()) => done.push(st),
                Err(e) => fail(&st, &e),
            }
        }
        sync_dir(&self.spool.dir);
        let ids: Vec<&str> = done.iter().filter_map(|st| st.id.as_deref()).collect();
        self.ids.persist(&ids);
        done.len()
    }
}
