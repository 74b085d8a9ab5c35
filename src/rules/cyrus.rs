//! The Cyrus rule: `badlogin:` / `login:` lines of Cyrus imapd, pop3d, nntpd and timsieved
//! (ManageSieve), and the logfmt `event=login.bad` / `event=login.good` lines of Cyrus 3.12+.
//!
//! Cyrus writes `badlogin: <clienthost> <mech> <detail>` where `<clienthost>` is `[ip]`,
//! `name [ip]` or `name[ip]` (the name from reverse DNS) and `<detail>` varies with version:
//! `plaintext user SASL(-13): …` (2.x), `plaintext (user) [SASL(-13): …]` and
//! `PLAIN (user) [SASL(-13): …]` (3.x), `DIGEST-MD5 [SASL(-13): …]`, `PLAIN authentication
//! failure` (timsieved), `plaintext (user) invalid user`, `anonymous login refused`. The
//! address is the bracket of the clienthost, right after `badlogin: `; the user comes after it,
//! so user text cannot move it. Host names are accepted only in the shape resolvers return
//! (letters, digits, `-._`), so a crafted PTR record cannot put a bracket of its own first.
//! Successful logins: `login: <clienthost> <user> <mech>[+TLS] …`. Every line must come from
//! a Cyrus program's syslog tag (`cyrus/imap[pid]:`, `imapd[pid]:`, `sieve[pid]:`, …) and its
//! message must start with the keyword, so the words in another service's line (a sender
//! address, a user name) are never read.
//! In logfmt lines every value is quoted and escaped by Cyrus, so `r.clienthost=` is read as
//! one value. Cyrus 2.0's pop3d logged each failure twice (`… PLAIN -13` then the client's
//! data); the bare result-code line is skipped so the attempt counts once.

use super::courier::shared::{first_token, hit, ip, is_hostname, split, Parts};
use super::{Hit, HitKind, ParseCtx, Rule};
use memchr::memmem::Finder;
use std::net::IpAddr;

const SERVICE: &str = "cyrus";

/// Recognises Cyrus failed (`badlogin`, `login.bad`) and successful (`login`, `login.good`)
/// logins.
#[derive(Debug, Clone)]
pub struct CyrusRule {
    badlogin: Finder<'static>,
    login: Finder<'static>,
    logfmt: Finder<'static>,
}

impl Default for CyrusRule {
    fn default() -> Self {
        Self::new()
    }
}

impl CyrusRule {
    pub fn new() -> Self {
        CyrusRule {
            badlogin: Finder::new(b"badlogin: "),
            login: Finder::new(b"login: "),
            logfmt: Finder::new(b"event=login."),
        }
    }
}

impl Rule for CyrusRule {
    fn service(&self) -> &'static str {
        SERVICE
    }
    fn literals(&self) -> Option<Vec<Vec<u8>>> {
        super::literal_list(&["event=login.", "login: "])
    }
    fn stateless(&self) -> bool {
        true
    }

    fn parse(&mut self, line: &str, ctx: &ParseCtx) -> Option<Hit> {
        let b = line.as_bytes();
        let p = || Some(split(line, ctx)).filter(|p| p.program_is(cyrus_program));
        if self.logfmt.find(b).is_some() {
            return parse_logfmt(&p()?);
        }
        if self.badlogin.find(b).is_some() {
            return parse_badlogin(&p()?);
        }
        if self.login.find(b).is_some() {
            return parse_login(&p()?);
        }
        None
    }
}

/// Cyrus programs as syslog names them: `imap`, `imapd`, `imaps`, `pop3`, `pop3d`, `sieve`,
/// `timsieved`, `nntpd`, `lmtpd`, `httpd`, or the master's `cyrus/<service>` (only the part
/// after the last `/` is passed here). "badlogin:" and "login:" are common words, and the
/// message must start with them, so only lines of such programs count.
fn cyrus_program(name: &str) -> bool {
    ["imap", "pop", "sieve", "cyrus", "nntp", "lmtp", "http"]
        .iter()
        .any(|n| name.contains(n))
}

fn parse_badlogin(p: &Parts) -> Option<Hit> {
    let body = p.msg.strip_prefix("badlogin: ")?;
    let (addr, rest) = clienthost(body)?;
    let (mech, detail) = first_token(rest);
    if mech.is_empty() || mech.starts_with('[') {
        return None;
    }
    // Cyrus 2.0 pop3d: "badlogin: host [ip] PLAIN -13", followed by a second line for the
    // same attempt.
    let code = detail.strip_prefix('-').unwrap_or(detail);
    if !code.is_empty() && code.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let user = badlogin_user(mech, detail);
    Some(hit(SERVICE, p.time, addr, user, 1, HitKind::Failure))
}

/// The user of a `badlogin` detail, where the format shows one.
fn badlogin_user<'a>(mech: &str, detail: &'a str) -> Option<&'a str> {
    if mech == "anonymous" {
        return detail.starts_with("login refused").then_some("anonymous");
    }
    if let Some(r) = detail.strip_prefix('(') {
        // 3.x: "(user) [SASL(-13): …]", "(user) invalid user", "(-notset-) [...]".
        let end = match r.strip_suffix(") invalid user") {
            Some(u) => u.len(),
            None => r.rfind(") [SASL").or_else(|| r.rfind(") ["))?,
        };
        let user = &r[..end];
        return (user != "-notset-").then_some(user);
    }
    if mech.eq_ignore_ascii_case("plaintext") {
        // 2.x: "user SASL(-13): …", "user invalid user".
        if let Some(u) = detail.strip_suffix(" invalid user") {
            return Some(u);
        }
        return match detail.rfind(" SASL(") {
            Some(i) => Some(&detail[..i]),
            None => Some(first_token(detail).0),
        };
    }
    None
}

fn parse_login(p: &Parts) -> Option<Hit> {
    let body = p.msg.strip_prefix("login: ")?;
    let (addr, rest) = clienthost(body)?;
    let (user, rest) = first_token(rest);
    let (mech, _) = first_token(rest);
    if user.is_empty() || mech.is_empty() || mech.starts_with('[') {
        return None;
    }
    Some(hit(SERVICE, p.time, addr, Some(user), 1, HitKind::Success))
}

/// `[ip]`, `name [ip]` or `name[ip]` at the start of `s`: (address, text after it).
fn clienthost(s: &str) -> Option<(IpAddr, &str)> {
    let (t1, after1) = first_token(s);
    if let Some(inner) = t1.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return Some((ip(inner)?, after1));
    }
    if let Some((name, inner)) = t1.strip_suffix(']').and_then(|t| t.split_once('[')) {
        if !is_hostname(name) {
            return None;
        }
        return Some((ip(inner)?, after1));
    }
    if !is_hostname(t1) {
        return None;
    }
    let (t2, after2) = first_token(after1);
    let inner = t2.strip_prefix('[')?.strip_suffix(']')?;
    Some((ip(inner)?, after2))
}

fn parse_logfmt(p: &Parts) -> Option<Hit> {
    let fields = p.msg;
    let body = fields.strip_prefix("event=login.")?;
    let kind = if body.starts_with("bad ") {
        HitKind::Failure
    } else if body.starts_with("good ") {
        HitKind::Success
    } else {
        return None;
    };
    let mut host = None;
    let mut user = None;
    for (key, value, quoted) in logfmt_pairs(fields) {
        match key {
            "r.clienthost" => host = Some(value),
            "u.username" if quoted || value != "~null~" => user = Some(unescape(value)),
            _ => {}
        }
    }
    let host = host?;
    if host.contains('\\') {
        return None;
    }
    let (addr, rest) = clienthost(host)?;
    if !rest.is_empty() {
        return None;
    }
    Some(hit(SERVICE, p.time, addr, user.as_deref(), 1, kind))
}

/// `key=value key="quoted \" value"` pairs: (key, raw value without quotes, quoted).
/// Stops at the first malformed pair.
fn logfmt_pairs(s: &str) -> impl Iterator<Item = (&str, &str, bool)> {
    let mut rest = s;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches(' ');
        let (key, after) = rest.split_once('=')?;
        if key.is_empty() || key.contains(' ') {
            return None;
        }
        if let Some(q) = after.strip_prefix('"') {
            let b = q.as_bytes();
            let mut i = 0;
            while i < b.len() {
                match b[i] {
                    b'\\' => i += 2,
                    b'"' => {
                        rest = &q[i + 1..];
                        return Some((key, &q[..i], true));
                    }
                    _ => i += 1,
                }
            }
            None
        } else {
            let n = after.find(' ').unwrap_or(after.len());
            rest = &after[n..];
            Some((key, &after[..n], false))
        }
    })
}

/// Undoes logfmt escaping: `\\`, `\"`, `\n`, `\r`, `\t`, `\x{hh}`.
fn unescape(raw: &str) -> String {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 >= b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b[i + 1] {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'x' if b.get(i + 2) == Some(&b'{') && b.get(i + 5) == Some(&b'}') => {
                match std::str::from_utf8(&b[i + 3..i + 5])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 6;
                        continue;
                    }
                    None => out.extend_from_slice(&b[i..i + 2]),
                }
            }
            c => out.push(c),
        }
        i += 2;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[path = "cyrus_tests.rs"]
mod tests;
