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

    pub(super) fn envelope(&self) -> Result<Envelope> {
        Envelope::new(
            Some(self.from.email.clone()),
            self.to.iter().map(|m| m.email.clone()).collect(),
        )
        .context("mail envelope")
    }
}
