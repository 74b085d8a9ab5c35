//! Mail: builds the alert message (From, To, Subject, Date, Message-ID, Auto-Submitted) and
//! delivers it, over SMTP with lettre (plain, STARTTLS or implicit TLS, optional AUTH) or, when
//! no SMTP server is configured, as an `.eml` file in the outbox folder.
//!
//! Delivery runs in its own task so a slow relay never holds up log reading. Transient SMTP
//! failures are retried with exponential backoff; a message that still cannot be sent (or is
//! refused permanently) is written to `<state_dir>/failed/` and logged, never silently dropped.
//! The SMTP password is never logged.

use crate::config::{MailConfig, TlsMode};
use crate::render::Rendered;
use anyhow::{Context, Result};
use lettre::message::header::{
    ContentTransferEncoding, ContentType, Header, HeaderName, HeaderValue,
};
use lettre::message::Mailbox;
use lettre::message::{Body, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
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

/// The body as 8bit text when it is valid as such (RFC 5322: lines of at most 998 bytes, no
/// NUL, no bare CR), so the mail stays readable as a plain file; `None` lets lettre pick
/// quoted-printable or base64 instead. lettre itself would quote any line over 76 characters,
/// which mangles the quoted log lines in an `.eml` opened in an editor.
fn eight_bit_body(text: &str) -> Option<Body> {
    let mut out = String::with_capacity(text.len() + text.len() / 40);
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.len() > 998 || line.bytes().any(|b| b == 0 || b == b'\r') {
            return None;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    Some(Body::dangerous_pre_encoded(
        out.into_bytes(),
        ContentTransferEncoding::EightBit,
    ))
}

/// Where messages go.
enum Delivery {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(PathBuf),
}

/// Builds and delivers alert mails.
pub struct Mailer {
    delivery: Delivery,
    from: Mailbox,
    to: Vec<Mailbox>,
    failed_dir: PathBuf,
    /// A short description of the delivery target for logs (never the password).
    target: String,
}

static FILE_SEQ: AtomicU64 = AtomicU64::new(0);

/// Write `bytes` to `dir/name` atomically: temp file, fsync, rename.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let dst = dir.join(name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &dst)?;
    Ok(dst)
}

fn unique_name(prefix: &str) -> String {
    let now = jiff::Timestamp::now();
    let seq = FILE_SEQ.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}-{}-{}-{seq}.eml",
        now.strftime("%Y%m%dT%H%M%S%.6fZ"),
        std::process::id(),
        prefix
    )
}

impl Mailer {
    pub fn new(cfg: &MailConfig, state_dir: &Path, host_name: &str) -> Result<Mailer> {
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
        Ok(Mailer {
            delivery,
            from,
            to,
            failed_dir: state_dir.join("failed"),
            target,
        })
    }

    /// Where mail goes, for logs.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Build the mail for a rendered alert.
    pub fn build(&self, r: &Rendered) -> Result<Message> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(r.subject.clone())
            .date_now()
            .message_id(None)
            .header(AutoSubmitted);
        for t in &self.to {
            b = b.to(t.clone());
        }
        let part = SinglePart::builder().header(ContentType::TEXT_PLAIN);
        let part = match eight_bit_body(&r.text) {
            Some(body) => part.body(body),
            None => part.body(r.text.clone()),
        };
        b.singlepart(part).context("building the alert mail")
    }

    /// Deliver once.
    async fn deliver_once(&self, msg: &Message) -> std::result::Result<(), SendError> {
        match &self.delivery {
            Delivery::Outbox(dir) => {
                let dir = dir.clone();
                let bytes = msg.formatted();
                let name = unique_name("alert");
                tokio::task::spawn_blocking(move || write_atomic(&dir, &name, &bytes))
                    .await
                    .map_err(|e| SendError::Permanent(format!("outbox writer failed: {e}")))?
                    .map(|p| info!(file = %p.display(), "alert written to the outbox"))
                    .map_err(|e| SendError::Transient(format!("cannot write to the outbox: {e}")))
            }
            Delivery::Smtp(t) => match t.send(msg.clone()).await {
                Ok(resp) => {
                    info!(server = %self.target, code = %resp.code(), "alert accepted by the SMTP server");
                    Ok(())
                }
                Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
                Err(e) => Err(SendError::Transient(e.to_string())),
            },
        }
    }

    /// Deliver with retries; returns whether the message was delivered. A message that could
    /// not be delivered is saved under `failed/`.
    pub async fn deliver(&self, msg: &Message, retry: &RetryPolicy) -> bool {
        let mut delay = retry.first_delay;
        let started = tokio::time::Instant::now();
        loop {
            match self.deliver_once(msg).await {
                Ok(()) => return true,
                Err(SendError::Permanent(e)) => {
                    error!(target_server = %self.target, error = %e, "alert refused permanently");
                    break;
                }
                Err(SendError::Transient(e)) => {
                    if started.elapsed() + delay > retry.give_up_after {
                        error!(target_server = %self.target, error = %e, "alert could not be delivered; giving up");
                        break;
                    }
                    warn!(target_server = %self.target, error = %e, retry_in = ?delay, "alert delivery failed; will retry");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(retry.max_delay);
                }
            }
        }
        self.save_failed(msg);
        false
    }

    fn save_failed(&self, msg: &Message) {
        match write_atomic(&self.failed_dir, &unique_name("failed"), &msg.formatted()) {
            Ok(p) => error!(file = %p.display(), "undelivered alert saved"),
            Err(e) => {
                error!(error = %e, dir = %self.failed_dir.display(), "undelivered alert could not even be saved")
            }
        }
    }
}

#[derive(Debug)]
enum SendError {
    Transient(String),
    Permanent(String),
}

/// How long delivery is retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            give_up_after: Duration::from_secs(600),
        }
    }
}

/// The delivery task: sends each message from the channel, in order, until the channel closes.
pub async fn run_mailer(mailer: Mailer, mut rx: mpsc::Receiver<Rendered>, retry: RetryPolicy) {
    while let Some(r) = rx.recv().await {
        match mailer.build(&r) {
            Ok(msg) => {
                mailer.deliver(&msg, &retry).await;
            }
            Err(e) => {
                error!(error = %format!("{e:#}"), subject = %r.subject, "cannot build the alert mail")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MailConfig;

    fn cfg(dir: &Path) -> MailConfig {
        MailConfig {
            from: "authwatch <aw@mx1.example.com>".into(),
            to: vec!["a@example.com".into(), "b@example.com".into()],
            subject_prefix: "[authwatch]".into(),
            smtp: None,
            outbox_dir: dir.join("outbox"),
        }
    }

    #[test]
    fn message_has_ids_dates_and_encoded_subject() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mailer::new(&cfg(dir.path()), dir.path(), "mx1").unwrap();
        let msg = m
            .build(&Rendered {
                subject: "x\r\nBcc: victim@example.com".into(),
                text: "Automatic alert from authwatch - DO NOT reply\n".into(),
            })
            .unwrap();
        let raw = String::from_utf8(msg.formatted()).unwrap();
        let headers = raw.split("\r\n\r\n").next().unwrap();
        assert!(headers.contains("\r\nMessage-ID: <"), "{headers}");
        assert!(headers.contains("\r\nDate: "), "{headers}");
        assert!(
            headers.contains("Auto-Submitted: auto-generated"),
            "{headers}"
        );
        assert!(
            headers.contains("To: a@example.com, b@example.com"),
            "{headers}"
        );
        assert!(
            !headers.contains("\r\nBcc:"),
            "CR/LF in a subject must not make a header: {headers}"
        );
        assert!(
            headers.contains("Content-Transfer-Encoding: 8bit"),
            "{headers}"
        );
        assert!(
            raw.contains("\r\n\r\nAutomatic alert from authwatch - DO NOT reply\r\n"),
            "{raw}"
        );
    }

    #[test]
    fn bodies_that_are_not_valid_8bit_are_encoded() {
        assert!(eight_bit_body(&"x".repeat(998)).is_some());
        assert!(eight_bit_body(&"x".repeat(999)).is_none());
        assert!(eight_bit_body("a\0b").is_none());
        assert!(eight_bit_body("a\rb").is_none());
    }

    #[tokio::test]
    async fn outbox_delivery_writes_an_eml_file() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mailer::new(&cfg(dir.path()), dir.path(), "mx1").unwrap();
        let msg = m
            .build(&Rendered {
                subject: "s".into(),
                text: "body".into(),
            })
            .unwrap();
        assert!(m.deliver(&msg, &RetryPolicy::default()).await);
        let files: Vec<_> = std::fs::read_dir(dir.path().join("outbox"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].ends_with(".eml"));
    }
}
