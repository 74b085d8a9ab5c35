//! The Postfix rule: failed SMTP AUTH (SASL) reported by `smtpd`, and authenticated mail
//! (`sasl_username=` on the `client=` line) as [`HitKind::Success`].
//!
//! **Lines** (syslog, journal, or Postfix's own `maillog_file`, all with the same
//! `[stamp ][host ]<syslog_name>/smtpd[pid]: ` prefix; `syslog_name` may be `postfix`,
//! `postfix/submission`, `postfix/smtps`, `postfix-out`, …, the program must be `smtpd`):
//! - `warning: host[IP]: SASL LOGIN authentication failed: <reason>[, sasl_username=<user>]`,
//!   one attempt. Newer Postfix (3.7 measured) appends `sasl_username` when the client sent
//!   one; older Postfix does not. The reason is the SASL server's: `authentication failure` (Cyrus),
//!   `(reason unavailable)` or a base64 challenge (Dovecot), empty, or `Connection lost to
//!   authentication server` (Dovecot's auth process died or is overloaded: this is what
//!   happens under real attack, the client is still guessing, so it counts as an attempt;
//!   Postfix then writes `sasl_username=(unavailable)`, which is not a user).
//! - `<queue id>: client=host[IP], sasl_method=PLAIN, sasl_username=alice[, sasl_sender=…]`:
//!   a message accepted after AUTH, one successful login.
//! - Not matched: Cyrus `warning: SASL authentication failure: Password verification failed`
//!   (no address), `lost connection after AUTH from …`, `too many errors after AUTH …`.
//!
//! **Blame.** The address is the bracketed one right after `warning: ` (or `client=`): Postfix
//! writes `name[addr]` (`name[addr]:port` with `smtpd_client_port_logging`), where the name
//! is a verified DNS name or `unknown` and cannot hold spaces or brackets; after it must come
//! `: SASL <mechanism> authentication failed`. The user comes after that, from the first
//! `, sasl_username=` to the end of the line (the SASL reason before it is the server's text),
//! so a username holding `[9.9.9.9]`, `, sasl_username=root` or `535` stays in the user.

use super::courier::shared::{is_host, stamp};
use super::{canonical_ip, Hit, HitKind, ParseCtx};
use jiff::Timestamp;
use memchr::memmem::Finder;
use std::net::IpAddr;
use std::str::FromStr;

const SERVICE: &str = "postfix";

const FAILED: &str = " authentication failed";
const SASL_USERNAME: &str = ", sasl_username=";

/// Recognises Postfix smtpd SASL failures and authenticated `client=` lines.
#[derive(Debug, Clone)]
pub struct PostfixRule {
    failed: Finder<'static>,
    client: Finder<'static>,
}

impl Default for PostfixRule {
    fn default() -> Self {
        Self::new()
    }
}

impl super::Rule for PostfixRule {
    fn service(&self) -> &'static str {
        SERVICE
    }
    fn literals(&self) -> Option<Vec<Vec<u8>>> {
        super::literal_list(&[FAILED, ": client="])
    }
    fn stateless(&self) -> bool {
        true
    }
    fn parse(&mut self, line: &str, ctx: &ParseCtx) -> Option<Hit> {
        PostfixRule::parse(self, line, ctx)
    }
}

impl PostfixRule {
    pub fn new() -> Self {
        PostfixRule {
            failed: Finder::new(FAILED.as_bytes()),
            client: Finder::new(b": client="),
        }
    }

    /// One line (without its newline) to a hit, or `None`. Lines that fail the literal
    /// prefilters return without allocating.
    pub fn parse(&self, line: &str, ctx: &ParseCtx) -> Option<Hit> {
        let bytes = line.as_bytes();
        if self.failed.find(bytes).is_some() {
            let (time, msg) = split_prefix(line, ctx)?;
            return failure(msg.strip_prefix("warning: ")?, time);
        }
        if self.client.find(bytes).is_some() {
            let (time, msg) = split_prefix(line, ctx)?;
            return success(msg, time);
        }
        None
    }
}

fn hit(time: Option<Timestamp>, ip: IpAddr, user: Option<&str>, kind: HitKind) -> Hit {
    Hit {
        time,
        ip: canonical_ip(ip),
        user: user.filter(|u| !u.is_empty()).map(str::to_owned),
        service: SERVICE,
        attempts: 1,
        kind,
    }
}

/// After `warning: `: `name[addr][:port]: SASL <MECH> authentication failed: …`.
fn failure(s: &str, time: Option<Timestamp>) -> Option<Hit> {
    let (ip, rest) = name_addr(s)?;
    let rest = rest.strip_prefix(": SASL ")?;
    let mech_len = rest
        .bytes()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        .count();
    if mech_len == 0 {
        return None;
    }
    let rest = rest[mech_len..].strip_prefix(FAILED)?;
    if !(rest.is_empty() || rest.starts_with(':')) {
        return None;
    }
    let user = rest
        .find(SASL_USERNAME)
        .map(|at| rest[at + SASL_USERNAME.len()..].trim_end_matches(['\r', '\n']))
        .filter(|u| *u != "(unavailable)");
    Some(hit(time, ip, user, HitKind::Failure))
}

/// `<queue id>: client=name[addr][:port], sasl_method=M, sasl_username=U[, …]`.
fn success(msg: &str, time: Option<Timestamp>) -> Option<Hit> {
    let (id, rest) = msg.split_once(": client=")?;
    if id.is_empty() || !id.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let (ip, rest) = name_addr(rest)?;
    let rest = rest.strip_prefix(", sasl_method=")?;
    let user = rest.find(SASL_USERNAME).map(|at| {
        let u = &rest[at + SASL_USERNAME.len()..];
        // Postfix writes sasl_sender (attacker text) and the XFORWARD fields after the user.
        let end = [", sasl_sender=", ", orig_queue_id=", ", orig_client="]
            .iter()
            .filter_map(|m| u.find(m))
            .min()
            .unwrap_or(u.len());
        u[..end].trim_end_matches(['\r', '\n'])
    });
    Some(hit(time, ip, user, HitKind::Success))
}

/// `name[addr]` or `name[addr]:port` at the start of `s`: (addr, rest). The name is one
/// token without brackets (a verified DNS name or `unknown`).
fn name_addr(s: &str) -> Option<(IpAddr, &str)> {
    let open = s.find('[')?;
    let name = &s[..open];
    if name.is_empty()
        || name
            .bytes()
            .any(|c| matches!(c, b' ' | b'\t' | b']' | b','))
    {
        return None;
    }
    let inner = &s[open + 1..];
    let close = inner.find(']')?;
    let addr = &inner[..close];
    if addr.is_empty()
        || !addr
            .bytes()
            .all(|c| c.is_ascii_hexdigit() || c == b'.' || c == b':')
    {
        return None;
    }
    let ip = IpAddr::from_str(addr).ok()?;
    let mut rest = &inner[close + 1..];
    if let Some(r) = rest.strip_prefix(':') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n > 0 {
            rest = &r[n..];
        }
    }
    Some((ip, rest))
}

/// Strips the stamp and `[host ]<name>/smtpd[pid]: ` and returns the message after it. The
/// program must be `smtpd` (the last `/` part of the tag); the host, when present, must be a
/// host name or an address (so an Exim line whose junk HELO `H=(x postfix/smtpd[1]: …` comes
/// first is not read). A stamp authwatch cannot read is skipped (the hit has no time).
fn split_prefix<'a>(line: &'a str, ctx: &ParseCtx) -> Option<(Option<Timestamp>, &'a str)> {
    let (time, rest, unread) = stamp(line, ctx);
    if let Some(msg) = after_smtpd_tag(rest) {
        return Some((time, msg));
    }
    let (host, after) = rest.split_once(' ')?;
    // A host comes only after a stamp (see `shared::split`).
    if !(time.is_some() || unread) || !is_host(host) {
        return None;
    }
    Some((time, after_smtpd_tag(after)?))
}

/// `<syslog_name>/smtpd[pid]: ` at the start of `s`: the rest after it.
fn after_smtpd_tag(s: &str) -> Option<&str> {
    let tag_len = s
        .bytes()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'/' | b'-' | b'_' | b'.'))
        .count();
    let tag = &s[..tag_len];
    let program = tag.rsplit('/').next()?;
    if program != "smtpd" || !tag.contains('/') {
        return None;
    }
    let rest = s[tag_len..].strip_prefix('[')?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    rest[digits..].strip_prefix("]: ")
}

#[cfg(test)]
#[path = "postfix_tests.rs"]
mod tests;
