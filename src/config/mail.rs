//! Mail settings (`mail:`): recipients and sender (checked as mail addresses), the subject
//! prefix, the SMTP relay (TLS mode, port, credentials read from a file or the environment and
//! never printed), the outbox folder used without a relay, and the retry policy.

use super::files::read_small_file;
use super::raw::{RawMail, RawSmtp};
use super::Validator;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    None,
    Starttls,
    Tls,
}

/// A secret: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MASKED")
    }
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Where the password was read from (checked for loose permissions).
    pub password_file: Option<PathBuf>,
    /// Extra CA certificate (PEM) to trust, for a relay with a private CA.
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    /// Name sent in EHLO; defaults to the host name.
    pub helo_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct MailConfig {
    pub from: String,
    pub to: Vec<String>,
    pub subject_prefix: String,
    pub smtp: Option<SmtpConfig>,
    /// Folder where `.eml` files are written when no SMTP server is configured.
    pub outbox_dir: PathBuf,
    /// How delivery is retried.
    pub retry: RetryPolicy,
    /// Add an HTML part (multipart/alternative) to each alert.
    pub html: bool,
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

impl Validator {
    fn mailbox(&mut self, sp: &Spanned<String>, field: &str) {
        if sp.value.parse::<lettre::message::Mailbox>().is_err() {
            self.issue(
                Some(sp),
                field,
                format!("not a mail address: {:?}", sp.value),
            );
        }
    }

    pub(super) fn mail(&mut self, raw: Option<Spanned<RawMail>>, state_dir: &Path) -> MailConfig {
        let Some(rm) = raw else {
            self.issue::<()>(None, "mail", "is required (at least mail.to)");
            return MailConfig {
                from: String::new(),
                to: Vec::new(),
                subject_prefix: String::new(),
                smtp: None,
                outbox_dir: state_dir.join("outbox"),
                retry: RetryPolicy::default(),
                html: false,
            };
        };
        let rm_span = Spanned::new((), rm.referenced, rm.defined);
        let rm = rm.value;
        let mut to = Vec::new();
        match &rm.to {
            None => self.issue(
                Some(&rm_span),
                "mail.to",
                "at least one recipient is required",
            ),
            Some(list) if list.value.is_empty() => {
                self.issue(Some(list), "mail.to", "at least one recipient is required")
            }
            Some(list) => {
                for (i, a) in list.value.iter().enumerate() {
                    self.mailbox(a, &format!("mail.to[{i}]"));
                    to.push(a.value.clone());
                }
            }
        }
        let from = match &rm.from {
            Some(f) => {
                self.mailbox(f, "mail.from");
                f.value.clone()
            }
            None => {
                let host = hostname::get()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "localhost".into());
                format!("authwatch <authwatch@{host}>")
            }
        };
        let smtp = rm.smtp.map(|s| self.smtp(s));
        let outbox_dir = match &rm.outbox_dir {
            Some(p) => self.path(&p.value),
            None => state_dir.join("outbox"),
        };
        let d = RetryPolicy::default();
        let retry = RetryPolicy {
            first_delay: self.duration(
                &rm.retry_first_delay,
                "mail.retry_first_delay",
                d.first_delay,
                Duration::from_millis(10),
            ),
            max_delay: self.duration(
                &rm.retry_max_delay,
                "mail.retry_max_delay",
                d.max_delay,
                Duration::from_millis(10),
            ),
            give_up_after: self.duration(
                &rm.retry_for,
                "mail.retry_for",
                d.give_up_after,
                Duration::from_secs(1),
            ),
        };
        MailConfig {
            from,
            to,
            subject_prefix: rm.subject_prefix.unwrap_or_else(|| "[authwatch]".into()),
            smtp,
            outbox_dir,
            retry,
            html: rm.html.unwrap_or(false),
        }
    }

    fn smtp(&mut self, sp: Spanned<RawSmtp>) -> SmtpConfig {
        let span = Spanned::new((), sp.referenced, sp.defined);
        let rs = sp.value;
        let host = match &rs.host {
            Some(h) if !h.value.trim().is_empty() => h.value.trim().to_string(),
            Some(h) => {
                self.issue(Some(h), "mail.smtp.host", "must not be empty");
                String::new()
            }
            None => {
                self.issue(Some(&span), "mail.smtp.host", "is required");
                String::new()
            }
        };
        let tls = rs.tls.unwrap_or(TlsMode::Starttls);
        let default_port = match tls {
            TlsMode::None => 25,
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
        };
        let port = self.count(&rs.port, "mail.smtp.port", default_port, 1, 65535) as u16;
        let mut password_file = None;
        let password = match (&rs.password_file, &rs.password_env) {
            (Some(a), Some(_)) => {
                self.issue(
                    Some(a),
                    "mail.smtp.password_file",
                    "give password_file or password_env, not both",
                );
                None
            }
            (Some(f), None) => {
                let p = self.path(&f.value);
                password_file = Some(p.clone());
                match read_small_file(&p, 64 << 10) {
                    Ok(s) => {
                        let s = s.trim_end_matches(['\r', '\n']).to_string();
                        Some(Secret(s))
                    }
                    Err(e) => {
                        self.issue(
                            Some(f),
                            "mail.smtp.password_file",
                            format!("cannot read {}: {e}", p.display()),
                        );
                        None
                    }
                }
            }
            (None, Some(v)) => match std::env::var(&v.value) {
                Ok(s) => Some(Secret(s)),
                Err(_) => {
                    self.issue(
                        Some(v),
                        "mail.smtp.password_env",
                        format!("environment variable {} is not set", v.value),
                    );
                    None
                }
            },
            (None, None) => None,
        };
        let username = rs.username.map(|u| u.value);
        if username.is_some() != password.is_some() && self.issues.is_empty() {
            self.issue(
                Some(&span),
                "mail.smtp",
                "username and a password (password_file or password_env) go together",
            );
        }
        let ca_file = rs.ca_file.as_ref().map(|c| {
            let p = self.path(&c.value);
            if !p.is_file() {
                self.issue(
                    Some(c),
                    "mail.smtp.ca_file",
                    format!("no such file: {}", p.display()),
                );
            }
            p
        });
        SmtpConfig {
            host,
            port,
            tls,
            username,
            password,
            password_file,
            ca_file,
            timeout: self.duration(
                &rs.timeout,
                "mail.smtp.timeout",
                Duration::from_secs(30),
                Duration::from_secs(1),
            ),
            helo_name: rs.helo_name.map(|h| h.value),
        }
    }
}
