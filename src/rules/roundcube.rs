//! The Roundcube rule: the `userlogins` log (`log_logins = true`) and the `IMAP Error: Login
//! failed` lines of the `errors` log, as files (`[23-Nov-2026 15:59:08 +0100]: …`), through
//! syslog, or on stdout (`userlogins: …`), with or without the `<session>` prefix of 1.4+.
//!
//! **Anchoring.** A message is read only where Roundcube writes one: after its file stamp
//! `[…]: `, as the message of a syslog line whose tag is Roundcube's ident (`syslog_id`,
//! default `roundcube`), after the stdout driver's `userlogins: `/`errors: `, or as a line of
//! its own without any syslog header. The same words in another program's message (an Exim
//! sender, a Postfix message-id, a Dovecot user name) are that program's text: no hit, so they
//! can neither add failures nor fake a success. A custom `syslog_id` that does not start with
//! `roundcube` is not recognised.
//!
//! Lines (program/include/rcmail.php, program/lib/Roundcube/rcube_imap.php):
//! `Failed login for <user> from <addr> in session <id> (error: <n>)`,
//! `Successful login for <user> (ID: <n>) from <addr> in session <id>`,
//! `IMAP Error: Login failed for <user> against <host> from <addr>. <IMAP error> in … (POST …)`,
//! and the old fail2ban plugin's `FAILED login for <user> from <addr>`.
//! `<addr>` is `rcube_utils::remote_ip()`: `REMOTE_ADDR`, followed by
//! ` (X-Real-IP: …,X-Forwarded-For: …)` when the request carried those headers.
//!
//! The user name (up to 256 bytes, any text) comes before the address, and the headers and the
//! IMAP error after it, so the address is found positionally: in the userlogins lines the tail
//! ` in session <id> (error: <n>)` is fixed, so without headers `<addr>` ends the rest; otherwise
//! every ` from <ip>` followed by the headers (or, in IMAP errors, by `.`/end of line) is a
//! candidate and all candidates must name the same address (a user name may forge one, but the
//! real one is always among them). `REMOTE_ADDR` is the blamed address, except in userlogins
//! lines where it is an internal one (a reverse proxy) and the headers are logged: then the
//! rightmost non-internal `X-Forwarded-For` entry (proxies append to it), else `X-Real-IP`. This
//! trusts the proxy to append or overwrite those headers. IMAP error lines always name
//! `REMOTE_ADDR`: their headers are followed by more client text, so where they end is not
//! known. Only IMAP errors that are a refused login (`AUTHENTICATE …`, `LOGIN: …`) count, not
//! "Could not connect" and the like.
//! The old fail2ban plugin writes `X-Forwarded-For` in place of the address when the client
//! sent one; such a line names whatever the client wrote.

use super::courier::shared::{
    clock, digits, hit, instant, ip, ip_run, is_internal, month, numeric_offset, rightmost_client,
    sole, split,
};
use super::{Hit, HitKind, ParseCtx, Rule};
use jiff::Timestamp;
use memchr::memmem::{self, Finder};
use std::net::IpAddr;

const SERVICE: &str = "roundcube";

/// Recognises Roundcube failed and successful logins.
#[derive(Debug, Clone)]
pub struct RoundcubeRule {
    login_for: Finder<'static>,
    login_failed: Finder<'static>,
}

impl Default for RoundcubeRule {
    fn default() -> Self {
        Self::new()
    }
}

impl RoundcubeRule {
    pub fn new() -> Self {
        RoundcubeRule {
            login_for: Finder::new(b" login for "),
            login_failed: Finder::new(b"Login failed for "),
        }
    }
}

impl Rule for RoundcubeRule {
    fn service(&self) -> &'static str {
        SERVICE
    }
    fn literals(&self) -> Option<Vec<Vec<u8>>> {
        super::literal_list(&[" login for ", "Login failed for "])
    }
    fn stateless(&self) -> bool {
        true
    }

    fn parse(&mut self, line: &str, ctx: &ParseCtx) -> Option<Hit> {
        let b = line.as_bytes();
        if self.login_for.find(b).is_none() && self.login_failed.find(b).is_none() {
            return None;
        }
        let line = line.trim_end();
        let (time, text) = match bracket_stamp(line, ctx) {
            Some((time, after)) => (time, after),
            None => {
                let p = split(line, ctx);
                let text = match p.program {
                    // No syslog header: the message starts the line (after any stamp).
                    None => p.rest,
                    // Roundcube's own syslog ident, or its stdout driver's `<log name>: `.
                    Some(prog) if is_roundcube_tag(prog) || is_log_name(prog) => p.msg,
                    // The stdout driver behind a supervisor that tags lines its own way.
                    Some(_) if LOG_NAMES.iter().any(|n| p.msg.starts_with(n)) => p.msg,
                    // Another program's message: Roundcube's words there are its text.
                    Some(_) => return None,
                };
                (p.time, text)
            }
        };
        message(text, time)
    }
}

/// The log names `rcube::write_log()` puts in front of a message with the stdout driver.
const LOG_NAMES: [&str; 2] = ["userlogins: ", "errors: "];

/// Roundcube's syslog ident: `syslog_id`, by default `roundcube` (`roundcubemail` and the like
/// are taken too).
fn is_roundcube_tag(program: &str) -> bool {
    program
        .get(.."roundcube".len())
        .is_some_and(|p| p.eq_ignore_ascii_case("roundcube"))
}

/// `userlogins` / `errors`: the stdout driver's `<log name>: ` read as a tag by `split`.
fn is_log_name(program: &str) -> bool {
    LOG_NAMES
        .iter()
        .any(|n| n.strip_suffix(": ") == Some(program))
}

fn message(text: &str, time: Option<Timestamp>) -> Option<Hit> {
    let m = LOG_NAMES
        .iter()
        .find_map(|d| text.strip_prefix(d))
        .unwrap_or(text);
    let m = skip_session(m);
    let (addr, user, kind) = if let Some(b) = m
        .strip_prefix("Failed login for ")
        .or_else(|| m.strip_prefix("FAILED login for "))
    {
        let (addr, user) = userlogins(b)?;
        (addr, user, HitKind::Failure)
    } else if let Some(b) = m.strip_prefix("Successful login for ") {
        let (addr, user) = userlogins(b)?;
        let user = strip_id(user);
        (addr, user, HitKind::Success)
    } else if let Some(b) = m.strip_prefix("IMAP Error: Login failed for ") {
        let (addr, user) = imap_error(b)?;
        (addr, user, HitKind::Failure)
    } else {
        return None;
    };
    Some(hit(SERVICE, time, addr, Some(user), 1, kind))
}

/// `<1a2b3c4d> ` (log_session_id) at the start.
fn skip_session(m: &str) -> &str {
    if let Some(r) = m.strip_prefix('<') {
        if let Some((id, after)) = r.split_once("> ") {
            if !id.is_empty() && id.len() <= 64 && id.bytes().all(|c| c.is_ascii_alphanumeric()) {
                return after;
            }
        }
    }
    m
}

/// `<user> (ID: <n>)` → `<user>`.
fn strip_id(user: &str) -> &str {
    if let Some(i) = user.rfind(" (ID: ") {
        if let Some(n) = user[i + " (ID: ".len()..].strip_suffix(')') {
            if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) {
                return &user[..i];
            }
        }
    }
    user
}

/// `<user> from <addr>[ in session <id>[ (error: <n>)]]`: (client, user).
fn userlogins(b: &str) -> Option<(IpAddr, &str)> {
    let mut t = b;
    if let Some(i) = t.rfind(" (error: ") {
        if let Some(n) = t[i + " (error: ".len()..].strip_suffix(')') {
            let n = n.strip_prefix('-').unwrap_or(n);
            if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) {
                t = &t[..i];
            }
        }
    }
    if let Some(i) = t.rfind(" in session ") {
        let id = &t[i + " in session ".len()..];
        if !id.is_empty() && !id.contains(' ') {
            t = &t[..i];
        }
    }
    if !t.ends_with(')') {
        // No headers: the address ends the text.
        let i = t.rfind(" from ")?;
        return Some((ip(&t[i + " from ".len()..])?, &t[..i]));
    }
    let cands = candidates(t, |after| {
        after.starts_with(" (X-") || after.starts_with("(X-")
    });
    let remote = sole(cands.iter().map(|c| c.1))?;
    let (pos, _, after) = cands[0];
    Some((client(remote, &cands, after), &t[..pos]))
}

/// `<user>[ against <host>] from <addr>[. <IMAP error> in <file> on line <n> (<method> <uri>)]`:
/// (client, user), when the IMAP error is a refused login.
fn imap_error(b: &str) -> Option<(IpAddr, &str)> {
    let cands = candidates(b, |after| {
        after.is_empty()
            || after.starts_with('.')
            || after.starts_with(" (X-")
            || after.starts_with("(X-")
    });
    let remote = sole(cands.iter().map(|c| c.1))?;
    let refused = |after: &str| {
        if after.starts_with(" (X-") || after.starts_with("(X-") {
            after.contains(". AUTHENTICATE ") || after.contains(". LOGIN: ")
        } else {
            after.is_empty()
                || after == "."
                || after.starts_with(". AUTHENTICATE ")
                || after.starts_with(". LOGIN: ")
        }
    };
    if !cands.iter().all(|c| refused(c.2)) {
        return None;
    }
    let user = &b[..cands[0].0];
    let user = match user.rfind(" against ") {
        Some(i) if !user[i + " against ".len()..].contains(' ') => &user[..i],
        _ => user,
    };
    Some((remote, user))
}

/// Every ` from <ip>` in `t` followed by text `follows` accepts: (position, address, text after
/// the address). A trailing `.` ends a sentence, not the address.
fn candidates(t: &str, follows: impl Fn(&str) -> bool) -> Vec<(usize, IpAddr, &str)> {
    let mut out = Vec::new();
    for pos in memmem::find_iter(t.as_bytes(), b" from ") {
        let a = &t[pos + " from ".len()..];
        let (mut run, _) = ip_run(a);
        if let Some(r) = run.strip_suffix('.') {
            run = r;
        }
        let after = &a[run.len()..];
        if run.is_empty() || !follows(after) {
            continue;
        }
        if let Some(addr) = ip(run) {
            out.push((pos, addr, after));
        }
    }
    out
}

/// `REMOTE_ADDR`, or the client a reverse proxy in front reported in its headers.
fn client(remote: IpAddr, cands: &[(usize, IpAddr, &str)], after: &str) -> IpAddr {
    if !is_internal(remote) || cands.len() != 1 {
        return remote;
    }
    forwarded(after).unwrap_or(remote)
}

/// ` (X-Real-IP: <r>,X-Forwarded-For: <f>)` ending the text: the non-internal client named by
/// the rightmost `X-Forwarded-For` entries (proxies append), else by `X-Real-IP`.
fn forwarded(after: &str) -> Option<IpAddr> {
    let inner = after.trim_start().strip_prefix('(')?.strip_suffix(')')?;
    if let Some(i) = inner.find("X-Forwarded-For: ") {
        let list = &inner[i + "X-Forwarded-For: ".len()..];
        if let Some(a) = rightmost_client(list).filter(|a| !is_internal(*a)) {
            return Some(a);
        }
    }
    let r = inner.strip_prefix("X-Real-IP: ")?;
    ip(r.split(',').next().unwrap_or(r).trim()).filter(|a| !is_internal(*a))
}

/// Roundcube's file stamp `[22-Jan-2013 22:28:21 +0200]: ` (`log_date_format` `d-M-Y H:i:s O`):
/// (time, text after it). Other date formats give no time.
fn bracket_stamp<'a>(line: &'a str, ctx: &ParseCtx) -> Option<(Option<Timestamp>, &'a str)> {
    let r = line.strip_prefix('[')?;
    let (inside, after) = r.split_once("]:")?;
    Some((dmy(inside, ctx), after.trim_start()))
}

fn dmy(s: &str, ctx: &ParseCtx) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() < 20 || b[2] != b'-' || b[6] != b'-' || b[11] != b' ' {
        return None;
    }
    let day = digits(b, 0, 2)?;
    let mon = month(&b[3..6])?;
    let year = digits(b, 7, 4)?;
    let hms = clock(b, 12)?;
    let zone = s[20..].trim_start();
    let offset = if zone.is_empty() {
        None
    } else {
        Some(numeric_offset(zone)?)
    };
    instant((year, mon, day as i8), hms, offset, ctx)
}

#[cfg(test)]
#[path = "roundcube_tests.rs"]
mod tests;
