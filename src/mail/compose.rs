//! Composing an alert mail: From, To, Subject (cleaned and capped), Date, Message-ID,
//! `Auto-Submitted`, and 7-bit parts (ASCII as it is, else quoted-printable), with the HTML
//! alternative and attachments in their multiparts.

use crate::config::MailConfig;
use crate::message::Rendered;
use anyhow::{Context, Result};
use lettre::address::Envelope;
use lettre::message::header::{
    ContentTransferEncoding, ContentType, Header, HeaderName, HeaderValue,
};
use lettre::message::Mailbox;
use lettre::message::{Body, MultiPart, SinglePart};
use lettre::Message;

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
pub(super) fn seven_bit_body(text: &str) -> Body {
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

/// Alert ids named in `References` at most: a digest about hundreds of incidents would
/// otherwise make a header of kilobytes; clients thread by the first ones (In-Reply-To is the
/// first) and ten ids fold into a few header lines.
pub const MAX_REFERENCES: usize = 10;

/// The right side of authwatch's Message-IDs: `host.name` (or the name found automatically)
/// with every character that may not stand there (RFC 5322 dot-atom) dropped, `localhost` if
/// nothing is left.
fn id_domain(host: &str) -> String {
    let d: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        .collect();
    let d = d.trim_matches('.').to_string();
    if d.is_empty() {
        "localhost".to_string()
    } else {
        d
    }
}

/// The Message-ID of the alert with id `id` (its kind and a hash: dot-atom text).
pub fn message_id(id: &str, domain: &str) -> String {
    let local: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    format!("<{local}@{domain}>")
}

/// Builds alert mails.
pub struct Composer {
    from: Mailbox,
    to: Vec<Mailbox>,
    /// The right side of Message-IDs (see [`Composer::with_domain`]).
    domain: String,
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
        Ok(Composer {
            from,
            to,
            domain: "localhost".to_string(),
        })
    }

    /// Message-IDs name this host (`<ALERT-ID@host.name>`): pass `host.name`, or the name
    /// found automatically.
    pub fn with_domain(mut self, host: &str) -> Self {
        self.domain = id_domain(host);
        self
    }

    /// The Message-ID of a mail: from the alert's id, so a follow-up can name it before it is
    /// sent and a mail made again after a crash keeps it; unique otherwise.
    fn message_id_of(&self, r: &Rendered) -> String {
        match &r.id {
            Some(id) => message_id(id, &self.domain),
            None => {
                use std::hash::{Hash, Hasher};
                let mut h = std::hash::DefaultHasher::new();
                (&r.subject, &r.text, std::process::id()).hash(&mut h);
                let now = jiff::Timestamp::now();
                message_id(
                    &format!("{}.{:016x}", now.as_nanosecond(), h.finish()),
                    &self.domain,
                )
            }
        }
    }

    /// Build the mail for a rendered alert.
    pub fn build(&self, r: &Rendered) -> Result<Message> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(crate::text::clean_subject(&r.subject))
            .date_now()
            .message_id(Some(self.message_id_of(r)))
            .header(AutoSubmitted);
        if let Some(parent) = r.thread.first() {
            b = b.in_reply_to(message_id(parent, &self.domain));
            let refs: Vec<String> = r
                .thread
                .iter()
                .take(MAX_REFERENCES)
                .map(|t| message_id(t, &self.domain))
                .collect();
            b = b.references(refs.join(" "));
        }
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

    pub(super) fn envelope(&self) -> Result<Envelope> {
        Envelope::new(
            Some(self.from.email.clone()),
            self.to.iter().map(|m| m.email.clone()).collect(),
        )
        .context("mail envelope")
    }
}
