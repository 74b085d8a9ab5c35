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

use crate::config::{MailConfig, TlsMode};
use crate::message::Rendered;
use anyhow::{Context, Result};
use lettre::address::Envelope;
use lettre::message::header::{
    ContentTransferEncoding, ContentType, Header, HeaderName, HeaderValue,
};
use lettre::message::Mailbox;
use lettre::message::{Body, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tracing::{error, info, warn};

/// `Auto-Submitted: auto-generated` (RFC 3834): tells mail software not to auto-reply.
#[derive(Debug, Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(_: &str) -> std::result::Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_string())
    }
}

/// The longest line a message may hold (RFC 5322 2.1.1: 998 characters before the CRLF).
const MAX_LINE_BYTES: usize = 998;

/// A body part that every relay takes, also one without 8BITMIME (RFC 6152): `7bit` as it is
/// when the text is ASCII in lines of at most [`MAX_LINE_BYTES`] without NUL or bare CR (so an
/// alert stays readable as a plain `.eml` file, and quoted log lines are not broken at 76
/// characters), otherwise `quoted-printable`, which keeps ASCII readable and encodes the rest.
/// Never `8bit`: lettre refuses to send an 8-bit body to a server that does not offer
/// 8BITMIME (and a strict relay refuses the data), and the spooled message was built before
/// the server was known.
fn seven_bit_body(text: &str) -> Body {
    let mut out = String::with_capacity(text.len() + text.len() / 40);
    for line in text.strip_suffix('\n').unwrap_or(text).split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.len() > MAX_LINE_BYTES || line.bytes().any(|b| b == 0 || b == b'\r' || b >= 0x80) {
            return Body::new_with_encoding(
                text.to_string(),
                ContentTransferEncoding::QuotedPrintable,
            )
            .unwrap_or_else(Body::new);
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    Body::dangerous_pre_encoded(out.into_bytes(), ContentTransferEncoding::SevenBit)
}

/// Where messages go.
enum Delivery {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(PathBuf),
}

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

/// Builds alert mails.
pub struct Composer {
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Composer {
    pub fn new(cfg: &MailConfig) -> Result<Composer> {
        let from: Mailbox = cfg
            .from
            .parse()
            .with_context(|| format!("mail.from is not a mail address: {:?}", cfg.from))?;
        let to = cfg
            .to
            .iter()
            .map(|t| {
                t.parse::<Mailbox>()
                    .with_context(|| format!("mail.to: not a mail address: {t:?}"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Composer { from, to })
    }

    /// Build the mail for a rendered alert.
    pub fn build(&self, r: &Rendered) -> Result<Message> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(crate::text::clean_subject(&r.subject))
            .date_now()
            .message_id(None)
            .header(AutoSubmitted);
        for t in &self.to {
            b = b.to(t.clone());
        }
        let part = SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .body(seven_bit_body(&r.text));
        let html = r.html.as_ref().map(|html| {
            MultiPart::alternative()
                .singlepart(part.clone())
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(seven_bit_body(html)),
                )
        });
        if r.attachments.is_empty() {
            return match html {
                None => b.singlepart(part),
                Some(alt) => b.multipart(alt),
            }
            .context("building the alert mail");
        }
        // The text (or text and HTML) first, then each file, in a multipart/mixed.
        let mut mixed = match html {
            None => MultiPart::mixed().singlepart(part),
            Some(alt) => MultiPart::mixed().multipart(alt),
        };
        for a in &r.attachments {
            let ct = ContentType::parse(&a.content_type).unwrap_or_else(|_| {
                ContentType::parse("text/plain; charset=utf-8").expect("valid")
            });
            mixed = mixed.singlepart(
                lettre::message::Attachment::new(a.file_name.clone())
                    .body(seven_bit_body(&a.text), ct),
            );
        }
        b.multipart(mixed).context("building the alert mail")
    }

    fn envelope(&self) -> Result<Envelope> {
        Envelope::new(
            Some(self.from.email.clone()),
            self.to.iter().map(|m| m.email.clone()).collect(),
        )
        .context("mail envelope")
    }
}

/// The durable outbox: every alert is written here first (temp file, fsync, rename, fsync of
/// the folder) and removed only once the SMTP server accepted it (or it was moved into the
/// outbox folder). Files are named so that sorting them gives the order they were made in.
pub struct Spool {
    dir: PathBuf,
    failed: PathBuf,
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
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
    fn done(&self, p: &Path) {
        // In outbox mode the file has already been moved away.
        if let Err(e) = std::fs::remove_file(p).or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(e),
        }) {
            error!(file = %p.display(), error = %e, "cannot remove a sent message from the spool; it may be sent again");
        }
    }

    fn sync(&self) {
        sync_dir(&self.dir);
    }

    fn fail(&self, p: &Path) {
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
pub struct AlertIds {
    path: PathBuf,
    ids: std::collections::HashSet<String>,
    order: std::collections::VecDeque<String>,
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
        };
        for l in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            me.remember(l.to_string());
        }
        me
    }

    fn remember(&mut self, id: String) {
        if self.ids.insert(id.clone()) {
            self.order.push_back(id);
            if self.order.len() > Self::KEEP {
                if let Some(old) = self.order.pop_front() {
                    self.ids.remove(&old);
                }
            }
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
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

/// Delivers spooled messages: over SMTP, or into the outbox folder.
pub struct Sender {
    delivery: Delivery,
    envelope: Envelope,
    /// A short description of the delivery target for logs (never the password).
    target: String,
}

impl Sender {
    pub fn new(cfg: &MailConfig, host_name: &str) -> Result<Sender> {
        let envelope = Composer::new(cfg)?.envelope()?;
        let (delivery, target) = match &cfg.smtp {
            None => (
                Delivery::Outbox(cfg.outbox_dir.clone()),
                format!("outbox folder {}", cfg.outbox_dir.display()),
            ),
            Some(s) => {
                let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.clone())
                    .port(s.port)
                    .timeout(Some(s.timeout))
                    .hello_name(ClientId::Domain(
                        s.helo_name.clone().unwrap_or_else(|| host_name.to_string()),
                    ));
                if s.tls != TlsMode::None {
                    let mut tp = TlsParameters::builder(s.host.clone());
                    if let Some(ca) = &s.ca_file {
                        let pem = std::fs::read(ca).with_context(|| {
                            format!("cannot read mail.smtp.ca_file {}", ca.display())
                        })?;
                        let cert = Certificate::from_pem(&pem).with_context(|| {
                            format!(
                                "mail.smtp.ca_file {} is not a PEM certificate",
                                ca.display()
                            )
                        })?;
                        tp = tp.add_root_certificate(cert);
                    }
                    let params = tp.build_rustls().context("TLS setup for mail.smtp")?;
                    b = b.tls(match s.tls {
                        TlsMode::Tls => Tls::Wrapper(params),
                        _ => Tls::Required(params),
                    });
                }
                if let (Some(u), Some(p)) = (&s.username, &s.password) {
                    b = b.credentials(Credentials::new(u.clone(), p.0.clone()));
                }
                let tls = match s.tls {
                    TlsMode::None => "plain",
                    TlsMode::Starttls => "STARTTLS",
                    TlsMode::Tls => "TLS",
                };
                (
                    Delivery::Smtp(b.build()),
                    format!("SMTP {}:{} ({tls})", s.host, s.port),
                )
            }
        };
        Ok(Sender {
            delivery,
            envelope,
            target,
        })
    }

    /// Where mail goes, for logs.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Sync the outbox folder (after messages were renamed into it; see `move_into`).
    fn sync_outbox(&self) {
        if let Delivery::Outbox(dir) = &self.delivery {
            sync_dir(dir);
        }
    }

    /// Deliver one spooled file once.
    async fn deliver_once(&self, path: &Path) -> std::result::Result<(), SendError> {
        match &self.delivery {
            Delivery::Outbox(dir) => {
                let (src, dir) = (path.to_path_buf(), dir.clone());
                tokio::task::spawn_blocking(move || move_into(&src, &dir))
                    .await
                    .map_err(|e| SendError::Permanent(format!("outbox writer failed: {e}")))?
                    .map(|p| info!(file = %p.display(), "alert written to the outbox"))
                    .map_err(|e| SendError::Transient(format!("cannot write to the outbox: {e}")))
            }
            Delivery::Smtp(t) => {
                let bytes = tokio::fs::read(path).await.map_err(|e| {
                    SendError::Transient(format!("cannot read the spooled alert: {e}"))
                })?;
                match t.send_raw(&self.envelope, &bytes).await {
                    Ok(resp) => {
                        info!(server = %self.target, code = %resp.code(), file = %path.display(), "alert accepted by the SMTP server");
                        Ok(())
                    }
                    Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
                    Err(e) => Err(SendError::Transient(e.to_string())),
                }
            }
        }
    }
}

#[derive(Debug)]
enum SendError {
    Transient(String),
    Permanent(String),
}

/// How long and how often delivery is retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// A message still undelivered this long after it was spooled is moved to `failed/`.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(300),
            give_up_after: Duration::from_secs(86_400),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with full jitter: a random delay in [0, min(max, first * 2^n)].
    pub fn delay(&self, failures: u32) -> Duration {
        let cap = self
            .first_delay
            .saturating_mul(1u32 << failures.min(20))
            .min(self.max_delay);
        let ms = cap.as_millis().min(u128::from(u64::MAX)) as u64;
        Duration::from_millis(fastrand::u64(0..=ms))
    }
}

fn spooled_age(p: &Path) -> Duration {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .unwrap_or_default()
}

/// How delivery is going, for health reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailStatus {
    /// Since when delivery has been failing (wall clock), if it is.
    pub failing_since: Option<jiff::Timestamp>,
    pub last_error: Option<String>,
    /// Messages waiting in the spool.
    pub spooled: usize,
}

/// The delivery task: sends what is in the spool, oldest first, until `shutdown` turns true.
/// New messages are announced through `notify`. When the server is unreachable, it waits with
/// backoff and full jitter and tries again; each message is given up (moved to `failed/`) only
/// after `retry.give_up_after`. At shutdown, what is still spooled stays for the next start.
pub async fn run_mailer(
    sender: Sender,
    spool: Spool,
    notify: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
    retry: RetryPolicy,
    status: watch::Sender<MailStatus>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let mut failures: u32 = 0;
    let mut down_since: Option<tokio::time::Instant> = None;
    loop {
        let pending = match spool.pending() {
            Ok(p) => p,
            Err(e) => {
                error!(dir = %spool.dir().display(), error = %e, "cannot read the spool");
                Vec::new()
            }
        };
        let mut transient = false;
        let mut delivered = false;
        for p in &pending {
            if *shutdown.borrow() {
                break;
            }
            match sender.deliver_once(p).await {
                Ok(()) => {
                    spool.done(p);
                    delivered = true;
                    if let Some(since) = down_since.take() {
                        info!(server = %sender.target(), down_for = ?since.elapsed(), "mail delivery works again");
                    }
                    failures = 0;
                    metrics.inc_alerts_sent();
                    status.send_modify(|s| {
                        s.failing_since = None;
                        s.spooled = s.spooled.saturating_sub(1);
                    });
                }
                Err(SendError::Permanent(e)) => {
                    metrics.inc_send_failures();
                    error!(server = %sender.target(), file = %p.display(), error = %e, "alert refused permanently");
                    spool.fail(p);
                }
                Err(SendError::Transient(e)) => {
                    if spooled_age(p) >= retry.give_up_after {
                        error!(server = %sender.target(), file = %p.display(), error = %e, "alert undelivered for too long; giving up");
                        spool.fail(p);
                        continue;
                    }
                    down_since.get_or_insert_with(tokio::time::Instant::now);
                    metrics.inc_send_failures();
                    status.send_modify(|s| {
                        s.failing_since.get_or_insert_with(jiff::Timestamp::now);
                        s.last_error = Some(e.clone());
                        s.spooled = pending.len();
                    });
                    let delay = retry.delay(failures);
                    failures = failures.saturating_add(1);
                    warn!(server = %sender.target(), error = %e, pending = pending.len(), retry_in = ?delay, "alert delivery failed; will retry");
                    transient = true;
                    // Keep the order: try the oldest again before the newer ones.
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => {}
                    }
                    break;
                }
            }
        }
        if delivered {
            // Once per pass: the messages moved into the outbox and the removals from the spool.
            sender.sync_outbox();
            spool.sync();
        }
        if *shutdown.borrow() {
            let left = spool.pending().map(|v| v.len()).unwrap_or(0);
            if left > 0 {
                warn!(pending = left, dir = %spool.dir().display(), "stopping with alerts still spooled; they are sent at the next start");
            }
            return;
        }
        if transient {
            continue;
        }
        tokio::select! {
            _ = notify.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
}

#[cfg(test)]
#[path = "mail_tests.rs"]
mod tests;
