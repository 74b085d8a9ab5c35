//! Delivery: the [`Sender`] (SMTP with lettre, or the outbox folder), the retry policy
//! (exponential backoff with full jitter, give up after `retry_for`), the health it reports
//! ([`MailStatus`]) and the task that drains the spool ([`run_mailer`]). An SMTP error is
//! logged and shown in `status` with the library's text and what to change ([`smtp_hint`]:
//! wrong TLS mode, no STARTTLS, no AUTH offered, login refused, untrusted certificate).

use crate::config::{MailConfig, TlsMode};
use anyhow::{Context, Result};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tracing::{error, info, warn};

use super::compose::Composer;
use super::spool::Spool;
use super::{move_into, sync_dir};

/// Where messages go.
enum Delivery {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(PathBuf),
}

/// Delivers spooled messages: over SMTP, or into the outbox folder.
pub struct Sender {
    delivery: Delivery,
    envelope: Envelope,
    /// A short description of the delivery target for logs (never the password).
    target: String,
    /// The TLS mode and port asked for (none for the outbox), for hints on SMTP errors.
    smtp: Option<(TlsMode, u16)>,
}

/// What to change for an SMTP error, from lettre's text and the configured TLS mode and port;
/// none when the error says enough by itself.
pub fn smtp_hint(error: &str, tls: TlsMode, port: u16) -> Option<String> {
    let e = error.to_ascii_lowercase();
    let has = |s: &str| e.contains(s);
    let hint = if has("starttls is not supported") {
        "the server does not offer STARTTLS: if it speaks TLS from the start (port 465) set mail.smtp.tls: tls; if it offers no TLS at all, tls: none (only on a trusted network)".to_string()
    } else if has("no compatible authentication mechanism") {
        let tls_first = if tls == TlsMode::None {
            " Many servers offer AUTH only after STARTTLS: set mail.smtp.tls: starttls (port 587)."
        } else {
            ""
        };
        format!("the server offers no AUTH (PLAIN or LOGIN) here: use the submission port (587 with tls: starttls, or 465 with tls: tls), or remove username and password if the relay accepts you without.{tls_first}")
    } else if has("(535)")
        || has("(534)")
        || has("authentication failed")
        || has("authentication credentials invalid")
    {
        "the server refused the login: check mail.smtp.username and the password (password_file or password_env)".to_string()
    } else if has("(530)") || has("authentication required") {
        "the server wants a login: set mail.smtp.username and password_file".to_string()
    } else if has("certificate") || has("unknownissuer") || has("notvalidforname") {
        "the server's TLS certificate is not trusted or not for this name: set mail.smtp.ca_file to its CA, or set mail.smtp.host to the name on the certificate".to_string()
    } else if has("tls error")
        || has("corrupt message")
        || has("invalidcontenttype")
        || has("wrong version")
    {
        match tls {
            TlsMode::Tls => format!("TLS from the start failed on port {port}: the server may expect STARTTLS there (ports 25 and 587): set mail.smtp.tls: starttls"),
            _ => "the TLS handshake failed: check mail.smtp.tls (starttls for ports 25/587, tls for 465) and the server's TLS setup".to_string(),
        }
    } else if has("timed out")
        || has("timeout")
        || has("unexpected eof")
        || has("incomplete response")
    {
        if tls != TlsMode::Tls && port == 465 {
            "no SMTP greeting: port 465 speaks TLS from the start: set mail.smtp.tls: tls"
                .to_string()
        } else {
            "no answer in time: check mail.smtp.host, port and firewalls; a server that speaks TLS from the start (usually port 465) needs tls: tls".to_string()
        }
    } else if has("connection refused") {
        "nothing accepts connections there: check mail.smtp.host and mail.smtp.port".to_string()
    } else {
        return None;
    };
    Some(hint)
}

/// The library's text, and what to change when known.
pub fn with_hint(error: &str, tls: TlsMode, port: u16) -> String {
    match smtp_hint(error, tls, port) {
        Some(h) => format!("{error} (hint: {h})"),
        None => error.to_string(),
    }
}

impl Sender {
    pub fn new(cfg: &MailConfig, host_name: &str) -> Result<Sender> {
        let envelope = Composer::new(cfg)?.envelope()?;
        let smtp = cfg.smtp.as_ref().map(|s| (s.tls, s.port));
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
            smtp,
        })
    }

    /// The error's text with a hint for SMTP errors.
    fn explain(&self, e: &lettre::transport::smtp::Error) -> String {
        let (tls, port) = self.smtp.unwrap_or((TlsMode::None, 25));
        with_hint(&e.to_string(), tls, port)
    }

    /// Connect to the SMTP server as delivery would (TLS as configured, AUTH with the
    /// credentials) and say goodbye: `Ok` with what was checked, or the error with a hint.
    /// The outbox folder: that it can be created and written.
    pub async fn probe(&self) -> std::result::Result<String, String> {
        match &self.delivery {
            Delivery::Outbox(dir) => {
                let probe = dir.join(".authwatch-probe");
                crate::state::create_private_dir(dir)
                    .and_then(|()| std::fs::write(&probe, b""))
                    .and_then(|()| std::fs::remove_file(&probe))
                    .map(|()| format!("{}: writable", self.target))
                    .map_err(|e| format!("{}: cannot write there: {e}", self.target))
            }
            Delivery::Smtp(t) => match t.test_connection().await {
                Ok(true) => Ok(format!(
                    "{}: connected, TLS and AUTH as configured",
                    self.target
                )),
                Ok(false) => Err(format!("{}: the connection closed at once", self.target)),
                Err(e) => Err(format!("{}: {}", self.target, self.explain(&e))),
            },
        }
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
    pub(super) async fn deliver_once(&self, path: &Path) -> std::result::Result<(), SendError> {
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
                    Err(e) if e.is_permanent() => Err(SendError::Permanent(self.explain(&e))),
                    Err(e) => Err(SendError::Transient(self.explain(&e))),
                }
            }
        }
    }
}

#[derive(Debug)]
pub(super) enum SendError {
    Transient(String),
    Permanent(String),
}

pub use crate::config::RetryPolicy;

/// Delivery-side behaviour of the retry policy (its settings are [`crate::config::RetryPolicy`]).
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
