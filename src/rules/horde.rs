//! The Horde rule: `FAILED LOGIN` and `Login success` lines of Horde and IMP, in the Horde log
//! file (PEAR Log `Dec 15 08:59:59 HORDE [error] [imp] …`, Horde_Log
//! `2013-11-11T18:57:57+00:00 ERR: HORDE [horde] …`) or syslog.
//!
//! The keyword must open the message, right after Horde's prefix in the position its layout
//! puts it (`HORDE [level] [app] `, `LEVEL: HORDE [app] ` after the stamp, or `[app] ` after a
//! `HORDE[pid]:` syslog tag): the same words in another service's line are client text.
//!
//! Two layouts exist: Horde 3 / IMP 4 write
//! `FAILED LOGIN for <user> [<ip>][ (forwarded for [<xff>])] to <Horde|{server}>`, Horde 4+
//! `FAILED LOGIN for <user> to <app> (<ip>)[ (forwarded for [<xff>])]`; both may end with
//! ` [pid <n> on line <n> of "<file>"]`. `<ip>` is `REMOTE_ADDR`. The user name (any text)
//! comes before the address and the client's `X-Forwarded-For` after it, so every bracketed or
//! parenthesised address in a position the layouts allow is a candidate, and the line is blamed
//! only when all candidates agree (the real one is always among them). When `REMOTE_ADDR` is
//! internal (a reverse proxy) and the forwarded list is logged, the rightmost non-internal
//! entry of that list is the client: this trusts the proxy to append to the header.

use super::courier::shared::{
    first_token, hit, ip, ip_run, is_internal, rightmost_client, sole, split, Parts,
};
use super::{Hit, HitKind, ParseCtx, Rule};
use memchr::memmem::Finder;
use std::net::IpAddr;

const SERVICE: &str = "horde";

const FAILED: &str = "FAILED LOGIN for ";
const SUCCESS: &str = "Login success for ";
const FORWARDED: &str = " (forwarded for [";

/// Recognises Horde/IMP failed and successful logins.
#[derive(Debug, Clone)]
pub struct HordeRule {
    failed: Finder<'static>,
    success: Finder<'static>,
}

impl Default for HordeRule {
    fn default() -> Self {
        Self::new()
    }
}

impl HordeRule {
    pub fn new() -> Self {
        HordeRule {
            failed: Finder::new(FAILED.as_bytes()),
            success: Finder::new(SUCCESS.as_bytes()),
        }
    }
}

impl Rule for HordeRule {
    fn service(&self) -> &'static str {
        SERVICE
    }
    fn literals(&self) -> Option<Vec<Vec<u8>>> {
        super::literal_list(&[FAILED, SUCCESS])
    }
    fn stateless(&self) -> bool {
        true
    }

    fn parse(&mut self, line: &str, ctx: &ParseCtx) -> Option<Hit> {
        let line = line.trim_end();
        let b = line.as_bytes();
        if self.failed.find(b).is_none() && self.success.find(b).is_none() {
            return None;
        }
        let p = split(line, ctx);
        let msg = horde_message(&p)?;
        let (body, kind) = if let Some(body) = msg.strip_prefix(FAILED) {
            (body, HitKind::Failure)
        } else if let Some(body) = msg.strip_prefix(SUCCESS) {
            (body, HitKind::Success)
        } else {
            return None;
        };
        let (addr, user) = blame(strip_pid(body))?;
        Some(hit(SERVICE, p.time, addr, Some(user), 1, kind))
    }
}

/// Tags Horde writes before a message: the PEAR level and the application (`[error] [imp] `).
const MAX_TAGS: usize = 2;

/// The message after Horde's own prefix, which is where the line's layout puts it:
/// syslog `HORDE[pid]: [app] `, PEAR Log `HORDE [level] [app] ` or Horde_Log
/// `LEVEL: HORDE [app] ` right after the stamp.
fn horde_message<'a>(p: &Parts<'a>) -> Option<&'a str> {
    if p.program_is(|n| n.eq_ignore_ascii_case("horde")) {
        return after_tags(p.msg, 1);
    }
    let mut s = p.rest;
    let (level, after) = first_token(s);
    if level
        .strip_suffix(':')
        .is_some_and(|l| !l.is_empty() && l.bytes().all(|c| c.is_ascii_uppercase()))
    {
        s = after;
    }
    let (ident, after) = first_token(s);
    if !ident.eq_ignore_ascii_case("horde") {
        return None;
    }
    after_tags(after, MAX_TAGS)
}

/// The text after one to `max` `[word] ` tags at the start of `s`.
fn after_tags(mut s: &str, max: usize) -> Option<&str> {
    let mut n = 0;
    while n < max {
        let Some((word, after)) = s.strip_prefix('[').and_then(|r| r.split_once("] ")) else {
            break;
        };
        if word.is_empty()
            || !word
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        {
            break;
        }
        s = after;
        n += 1;
    }
    (n > 0).then_some(s)
}

/// ` [pid 1234 on line 96 of "/var/www/horde/login.php"]` at the end.
fn strip_pid(body: &str) -> &str {
    if body.ends_with(']') {
        for key in [" [pid ", " [on line "] {
            if let Some(k) = body.rfind(key) {
                if body[k..].contains(" on line ") {
                    return &body[..k];
                }
            }
        }
    }
    body
}

struct Candidate<'a> {
    addr: IpAddr,
    user: &'a str,
    /// `(forwarded for [<xff>])` group following the address, when logged.
    forwarded: Option<&'a str>,
}

/// (client, user) of `<user> [<ip>]… to …` or `<user> to <app> (<ip>)…`.
fn blame(body: &str) -> Option<(IpAddr, &str)> {
    let mut cands = Vec::new();
    for (q, c) in body.char_indices() {
        let (open, close) = match c {
            '[' => ('[', ']'),
            '(' => ('(', ')'),
            _ => continue,
        };
        if q > 0 && body.as_bytes()[q - 1] != b' ' {
            continue;
        }
        let (run, after) = ip_run(&body[q + 1..]);
        let Some(after) = after.strip_prefix(close) else {
            continue;
        };
        let before = body[..q].strip_suffix(' ').unwrap_or(&body[..q]);
        let (user, forwarded) = if open == '[' {
            // Horde 3: " [ip] to …" or " [ip] (forwarded for [xff]) to …".
            let fwd = match after.strip_prefix(FORWARDED) {
                Some(f) => f.rfind("]) to ").map(|end| &f[..end]),
                None if after.starts_with(" to ") => None,
                None => continue,
            };
            (before, fwd)
        } else {
            // Horde 4+: " to <app> (ip)" at the end, or followed by the forwarded group.
            let fwd = match after.strip_prefix(FORWARDED) {
                Some(f) => f.strip_suffix("])"),
                None if after.is_empty() || after.starts_with(" [") => None,
                None => continue,
            };
            let user = match before.rfind(" to ") {
                Some(i) => &before[..i],
                None => before,
            };
            (user, fwd)
        };
        if let Some(addr) = ip(run) {
            cands.push(Candidate {
                addr,
                user,
                forwarded,
            });
        }
    }
    let remote = sole(cands.iter().map(|c| c.addr))?;
    let first = &cands[0];
    let client = match first.forwarded {
        Some(list) if is_internal(remote) && cands.len() == 1 => rightmost_client(list)
            .filter(|a| !is_internal(*a))
            .unwrap_or(remote),
        _ => remote,
    };
    Some((client, first.user))
}

#[cfg(test)]
#[path = "horde_tests.rs"]
mod tests;
