//! Delivery: the [`Sender`] (SMTP with lettre, or the outbox folder), the retry policy
//! (exponential backoff with full jitter, give up after `retry_for`), the health it reports
//! ([`MailStatus`]) and the task that drains the spool ([`run_mailer`]).

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
                    Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
                    Err(e) => Err(SendError::Transient(e.to_string())),
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
