//! The Sendmail rule: failed SMTP AUTH (`AUTH failure (<mech>): … , relay=<client>`, logged per
//! attempt at the default LogLevel 9), the AUTH flood notice (`<client>: possible SMTP attack:
//! command=AUTH, count=<n>`, attempts = n), and successful AUTH (`AUTH=server, relay=<client>,
//! authid=<user>, mech=…, bits=…`).
//!
//! `<client>` is Sendmail's `$_`: `[ident@]host [ip][ (may be forged)]`, IPv6 as
//! `[IPv6:2001:db8::1]`. Sendmail's `cleanstrcpy()` keeps only letters, digits and a few
//! marks of the ident (no blanks, commas, brackets or `=`) and the host comes from the
//! resolver, so the last bracket of the field is the address; it is read from the right end of
//! the field. The failure line's field is
//! truncated at 100 bytes (`relay=%.100s`), so a field of that length is not trusted. The
//! SASL user name (8.16+ with `AUTH_FAIL_LOG_USER`) comes before `relay=` and may contain
//! anything, including `, relay=[…]`: the field used is the last one.
//!
//! Only lines whose syslog tag is Sendmail's (`sendmail[pid]:`, `sm-mta[pid]:`, …) and whose
//! message (after the queue id) starts with these words count: the same words in another
//! service's line are the client's text.
//!
//! Sendmail writes the flood notice once per session, when the AUTH count reaches the number
//! of mechanisms + 1, after the earlier failures were logged one by one. So the notice counts
//! only when no per-attempt failure of the same session (queue id) was seen; the last few
//! thousand session ids are remembered.

use super::courier::shared::{count, first_token, hit, ip_literal, split, Parts};
use super::{Hit, HitKind, ParseCtx, Rule};
use lru::LruCache;
use memchr::memmem::Finder;
use std::net::IpAddr;
use std::num::NonZeroUsize;

const SERVICE: &str = "sendmail";

/// Sessions (queue ids) remembered as having logged per-attempt failures.
const SESSIONS: usize = 4096;

const ATTACK: &str = ": possible SMTP attack: command=AUTH, count=";

/// Recognises Sendmail AUTH failures, AUTH flood notices and successful AUTH.
#[derive(Debug)]
pub struct SendmailRule {
    attack: Finder<'static>,
    failure: Finder<'static>,
    success: Finder<'static>,
    /// Queue ids of sessions whose failures are logged one by one.
    per_attempt: LruCache<Box<str>, ()>,
}

impl Default for SendmailRule {
    fn default() -> Self {
        Self::new()
    }
}

impl SendmailRule {
    pub fn new() -> Self {
        SendmailRule {
            attack: Finder::new(ATTACK.as_bytes()),
            failure: Finder::new(b"AUTH failure ("),
            success: Finder::new(b"AUTH=server, relay="),
            per_attempt: LruCache::new(NonZeroUsize::new(SESSIONS).expect("non-zero")),
        }
    }

    fn attack(&mut self, line: &str, ctx: &ParseCtx) -> Option<Hit> {
        let p = parts(line, ctx)?;
        let (qid, body) = queue_id(p.msg);
        // The client field fills the text before the notice (see `client_ip`).
        let i = body.find(ATTACK)?;
        let attempts = count(&body[i + ATTACK.len()..])?;
        let addr = client_ip(&body[..i])?;
        if qid.is_some_and(|q| self.per_attempt.contains(q)) {
            return None;
        }
        Some(hit(SERVICE, p.time, addr, None, attempts, HitKind::Failure))
    }

    fn failure(&mut self, line: &str, ctx: &ParseCtx) -> Option<Hit> {
        let p = parts(line, ctx)?;
        let (qid, body) = queue_id(p.msg);
        let rest = body.strip_prefix("AUTH failure (")?;
        let i = rest.rfind(", relay=")?;
        let field = &rest[i + ", relay=".len()..];
        // "relay=%.100s": a field this long may have lost its address to the cut.
        if field.len() >= 100 {
            return None;
        }
        let addr = client_ip(field)?;
        let head = &rest[..i];
        let user = head.find(", user=").map(|j| &head[j + ", user=".len()..]);
        if let Some(q) = qid {
            self.per_attempt.put(q.into(), ());
        }
        Some(hit(SERVICE, p.time, addr, user, 1, HitKind::Failure))
    }
}

impl Rule for SendmailRule {
    fn service(&self) -> &'static str {
        SERVICE
    }
    fn literals(&self) -> Option<Vec<Vec<u8>>> {
        super::literal_list(&["AUTH failure (", ATTACK, "AUTH=server, relay="])
    }

    fn parse(&mut self, line: &str, ctx: &ParseCtx) -> Option<Hit> {
        let b = line.as_bytes();
        if self.failure.find(b).is_some() {
            return self.failure(line, ctx);
        }
        if self.attack.find(b).is_some() {
            return self.attack(line, ctx);
        }
        if self.success.find(b).is_some() {
            return success(line, ctx);
        }
        None
    }
}

/// The line cut at its syslog header, when the tag is Sendmail's: `sendmail`, or a process
/// title Sendmail sets (`sm-mta`, `sm-acceptingconnections`, `sm-msp-queue`).
fn parts<'a>(line: &'a str, ctx: &ParseCtx) -> Option<Parts<'a>> {
    Some(split(line, ctx))
        .filter(|p| p.program_is(|n| n.starts_with("sendmail") || n.starts_with("sm-")))
}

fn success(line: &str, ctx: &ParseCtx) -> Option<Hit> {
    let p = parts(line, ctx)?;
    let (_, body) = queue_id(p.msg);
    let rest = body.strip_prefix("AUTH=server, relay=")?;
    // The client field holds no ", " (see the module notes); the authenticated id follows it.
    let (field, rest) = rest.split_once(", ")?;
    let addr = client_ip(field)?;
    let rest = rest.strip_prefix("authid=")?;
    let user = match rest.rfind(", mech=") {
        Some(i) => &rest[..i],
        None => rest,
    };
    Some(hit(SERVICE, p.time, addr, Some(user), 1, HitKind::Success))
}

/// `<qid>: <text>` → (qid, text); lines without a queue id (NOQID) → (None, msg).
fn queue_id(msg: &str) -> (Option<&str>, &str) {
    let (tok, rest) = first_token(msg);
    match tok.strip_suffix(':') {
        Some(q) if (8..=24).contains(&q.len()) && q.bytes().all(|c| c.is_ascii_alphanumeric()) => {
            (Some(q).filter(|q| *q != "NOQUEUE"), rest)
        }
        _ => (None, msg),
    }
}

/// The address of a whole `[ident@]host [ip][ (may be forged)]` field. The ident and host
/// hold no blank (see the module notes), so a field with more words is not a client field:
/// it is other text, such as a remote server's reply at the end of a delivery line.
fn client_ip(field: &str) -> Option<IpAddr> {
    let field = field.strip_suffix(" (may be forged)").unwrap_or(field);
    let inner = field.strip_suffix(']')?;
    let (name, addr) = match inner.rsplit_once(" [") {
        Some((name, addr)) => (name, addr),
        None => ("", inner.strip_prefix('[')?),
    };
    if name
        .bytes()
        .any(|c| matches!(c, b' ' | b'\t' | b'[' | b']'))
    {
        return None;
    }
    ip_literal(addr)
}

#[cfg(test)]
#[path = "sendmail_tests.rs"]
mod tests;
