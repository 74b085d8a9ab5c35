//! The Horde rule: `FAILED LOGIN` and `Login success` lines of Horde and IMP, in the Horde log
//! file (PEAR Log `Dec 15 08:59:59 HORDE [error] [imp] …`, Horde_Log
//! `2013-11-11T18:57:57+00:00 ERR: HORDE [horde] …`) or syslog.
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

use super::courier::shared::{hit, ip, ip_run, is_internal, rightmost_client, sole, split};
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
        let (at, keyword, kind) = if let Some(i) = self.failed.find(b) {
            (i, FAILED, HitKind::Failure)
        } else if let Some(i) = self.success.find(b) {
            (i, SUCCESS, HitKind::Success)
        } else {
            return None;
        };
        // What precedes the message is Horde's: stamp, ident, level and the "[app] " tag.
        let head = &line[..at];
        if !(head.is_empty() || head.ends_with("] ")) {
            return None;
        }
        let body = strip_pid(&line[at + keyword.len()..]);
        let (addr, user) = blame(body)?;
        Some(hit(
            SERVICE,
            split(line, ctx).time,
            addr,
            Some(user),
            1,
            kind,
        ))
    }
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
