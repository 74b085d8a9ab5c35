//! The UW-IMAP rule: login lines of the University of Washington `imapd`, `ipop3d` and
//! `ipop2d` (c-client).
//!
//! Every line ends with `host=<tcp_clienthost()>`, which is `name [ip]` or `[ip]` (`name` from
//! reverse DNS, which c-client validates), so the address is read from the right end of the
//! line; the user name (`user=%.64s`, attacker text, may hold spaces) comes before it.
//! Failures, from c-client's `server_login()` and the servers:
//! `Login failed|excessive login failures|disabled|SYSTEM BREAK-IN ATTEMPT user=U auth=A host=H`
//! (imap-2007), `Login failure user=U host=H`, `Excessive login failures|attempts user=U
//! host=H` (older), `System break-in attempt, host=H`, `Failed <x> override of user=U host=H`,
//! `AUTHENTICATE <mech> failure host=H`, `Authentication failure host=H`. Successes:
//! `Login user=U host=H[ nmsgs=n/m| no mailbox]`, `Authenticated user=U host=H[ mech=M]`,
//! `Auth user=U host=H[ nmsgs=n/m| no mailbox]`.
//!
//! Lines count only from those servers' syslog tags (`imapd[pid]:`, `ipop3d[pid]:`), with the
//! message starting with the words above: the words elsewhere are another service's client
//! text.
//!
//! An AUTHENTICATE PLAIN/LOGIN failure is logged twice: `Login failed …` by `server_login()`,
//! then `AUTHENTICATE PLAIN failure …` by the server. The second line of such a pair (same
//! process, same address) is not counted; AUTHENTICATE failures without a preceding `Login`
//! line (CRAM-MD5) are.

use super::courier::shared::{first_token, hit, ip, is_hostname, split};
use super::{Hit, HitKind, ParseCtx, Rule};
use lru::LruCache;
use memchr::memmem::Finder;
use std::net::IpAddr;
use std::num::NonZeroUsize;

const SERVICE: &str = "uwimap";

/// Processes remembered with a `Login …` failure that an AUTHENTICATE line may repeat.
const PENDING: usize = 1024;

/// Failures that name the user: `server_login()` lines, which an AUTHENTICATE line may follow.
const LOGIN_FAILURES: &[&str] = &[
    "Login failed user=",
    "Login excessive login failures user=",
    "Login disabled user=",
    "Login SYSTEM BREAK-IN ATTEMPT user=",
    "Login failure user=",
    "Excessive login failures user=",
    "Excessive login attempts user=",
];

/// Failures without a user.
const HOST_FAILURES: &[&str] = &[
    "System break-in attempt, host=",
    "SYSTEM BREAK-IN ATTEMPT, host=",
    "Authentication failure host=",
    "Excessive authentication failures host=",
];

const SUCCESSES: &[&str] = &["Login user=", "Authenticated user=", "Auth user="];

/// Recognises UW-IMAP failed and successful logins.
#[derive(Debug)]
pub struct UwImapRule {
    host: Finder<'static>,
    /// (pid, address) → `Login …` failures not yet repeated by an AUTHENTICATE line.
    pending: LruCache<(Option<u32>, IpAddr), u32>,
}

impl Default for UwImapRule {
    fn default() -> Self {
        Self::new()
    }
}

impl UwImapRule {
    pub fn new() -> Self {
        UwImapRule {
            host: Finder::new(b" host="),
            pending: LruCache::new(NonZeroUsize::new(PENDING).expect("non-zero")),
        }
    }
}

impl Rule for UwImapRule {
    fn service(&self) -> &'static str {
        SERVICE
    }
    fn literals(&self) -> Option<Vec<Vec<u8>>> {
        super::literal_list(&[" host="])
    }

    fn parse(&mut self, line: &str, ctx: &ParseCtx) -> Option<Hit> {
        self.host.find(line.as_bytes())?;
        let p = split(line, ctx);
        // c-client servers: imapd, ipop3d, ipop2d (and builds named imapd-ssl and the like).
        if !p.program_is(|n| n.contains("imap") || n.contains("pop")) {
            return None;
        }
        let key = |addr| (p.pid, addr);

        if let Some(fields) = LOGIN_FAILURES.iter().find_map(|k| p.after(k)) {
            let (head, addr) = host_tail(fields, false)?;
            let user = match head.rfind(" auth=") {
                Some(i) => &head[..i],
                None => head,
            };
            *self.pending.get_or_insert_mut(key(addr), || 0) += 1;
            return Some(hit(SERVICE, p.time, addr, Some(user), 1, HitKind::Failure));
        }
        if let Some(rest) = p.after("AUTHENTICATE ") {
            let (mech, rest) = first_token(rest);
            if mech.is_empty() {
                return None;
            }
            let (head, addr) = host_tail(rest.strip_prefix("failure ")?, false)?;
            if !head.is_empty() {
                return None;
            }
            if let Some(n) = self.pending.get_mut(&key(addr)) {
                if *n > 0 {
                    *n -= 1;
                    return None;
                }
            }
            return Some(hit(SERVICE, p.time, addr, None, 1, HitKind::Failure));
        }
        if let Some(fields) = HOST_FAILURES.iter().find_map(|k| p.after(k)) {
            let addr = host_value(fields.trim_end())?;
            return Some(hit(SERVICE, p.time, addr, None, 1, HitKind::Failure));
        }
        if let Some(rest) = p.after("Failed ") {
            let i = rest.find(" override of user=")?;
            let (user, addr) = host_tail(&rest[i + " override of user=".len()..], false)?;
            return Some(hit(SERVICE, p.time, addr, Some(user), 1, HitKind::Failure));
        }
        if let Some(fields) = SUCCESSES.iter().find_map(|k| p.after(k)) {
            let (user, addr) = host_tail(fields, true)?;
            self.pending.pop(&key(addr));
            return Some(hit(SERVICE, p.time, addr, Some(user), 1, HitKind::Success));
        }
        None
    }
}

/// `<head> host=<name [ip]|[ip]>[<success suffix>]` read from the right end: (head without
/// the blank before `host=`, address).
fn host_tail(s: &str, success: bool) -> Option<(&str, IpAddr)> {
    let mut t = s.trim_end();
    if success {
        if let Some(x) = t.strip_suffix(" no mailbox") {
            t = x;
        } else if let Some(i) = t.rfind(" nmsgs=") {
            let v = &t[i + " nmsgs=".len()..];
            if v.split_once('/')
                .is_some_and(|(a, b)| all_digits(a) && all_digits(b))
            {
                t = &t[..i];
            }
        } else if let Some(i) = t.rfind(" mech=") {
            if !t[i + 1..].contains(' ') {
                t = &t[..i];
            }
        }
    }
    let i = t.rfind("host=")?;
    let head = t[..i].trim_end();
    Some((head, host_value(&t[i + "host=".len()..])?))
}

/// The address of a `tcp_clienthost()` value: `name [ip]` or `[ip]`, nothing after it.
fn host_value(value: &str) -> Option<IpAddr> {
    let bracket = match value.split_once(' ') {
        Some((name, b)) if is_hostname(name) => b,
        Some(_) => return None,
        None => value,
    };
    ip(bracket.strip_prefix('[')?.strip_suffix(']')?)
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
#[path = "uwimap_tests.rs"]
mod tests;
