//! The Courier rule: Courier-IMAP / POP3 / sqwebmail login lines and `courieresmtpd` AUTH
//! rejections.
//!
//! Courier writes (`imap/imaplogin.C`, `imap/pop3login.C`, sqwebmail), optionally after `INFO: `:
//! `LOGIN FAILED, user=<user>, ip=[<ip>][, port=[<port>]]`,
//! `LOGIN FAILED, method=<mech>, ip=[<ip>][, port=[<port>]]` (AUTHENTICATE), and on success
//! `LOGIN, user=<user>, ip=[<ip>][, port=[<port>], protocol=<p>][, starttls=1]`. The user name
//! is attacker text and comes first, so the fields are read from the right end of the line: the
//! last `ip=[…]` is always the server's. `courieresmtpd` writes
//! `error,relay=<ip>[,ident="…"],msg="535 Authentication failed.",cmd: <client text>`; the relay
//! comes first and is taken from there. Its `cmd:` is the client's base64 answer (possibly the
//! password), so it is never kept.
//!
//! This file also holds [`shared`], the small toolkit the other syslog-style rules use.

use super::{Hit, HitKind, ParseCtx, Rule};
use memchr::memmem::Finder;
use shared::{hit, ip, split};

const SERVICE: &str = "courier";

/// Recognises Courier IMAP/POP3 logins (failed and successful) and ESMTP AUTH failures.
#[derive(Debug, Clone)]
pub struct CourierRule {
    failed: Finder<'static>,
    login: Finder<'static>,
    smtp: Finder<'static>,
}

impl Default for CourierRule {
    fn default() -> Self {
        Self::new()
    }
}

impl CourierRule {
    pub fn new() -> Self {
        CourierRule {
            failed: Finder::new(b"LOGIN FAILED, "),
            login: Finder::new(b"LOGIN, user="),
            smtp: Finder::new(b"error,relay="),
        }
    }
}

impl Rule for CourierRule {
    fn service(&self) -> &'static str {
        SERVICE
    }
    fn literals(&self) -> Option<Vec<Vec<u8>>> {
        super::literal_list(&["LOGIN FAILED, ", "LOGIN, user=", "error,relay="])
    }
    fn stateless(&self) -> bool {
        true
    }

    fn parse(&mut self, line: &str, ctx: &ParseCtx) -> Option<Hit> {
        let b = line.as_bytes();
        if self.failed.find(b).is_some() {
            return parse_login(line, ctx, HitKind::Failure);
        }
        if self.login.find(b).is_some() {
            return parse_login(line, ctx, HitKind::Success);
        }
        if self.smtp.find(b).is_some() {
            return parse_smtp(line, ctx);
        }
        None
    }
}

/// Programs that write Courier's lines: `imapd`, `imapd-ssl`, `pop3d`, `pop3d-ssl`,
/// `courierpop3login`, `sqwebmaild`, `courieresmtpd`, … A line without a syslog tag (the
/// servers' stderr in a file) is read from its first word.
fn courier_program(name: &str) -> bool {
    name.contains("imap")
        || name.contains("pop3")
        || name.starts_with("courier")
        || name.starts_with("sqwebmail")
}

fn parse_login(line: &str, ctx: &ParseCtx, kind: HitKind) -> Option<Hit> {
    let p = split(line, ctx);
    if !p.program_is_none_or(courier_program) {
        return None;
    }
    let keyword = match kind {
        HitKind::Failure => "LOGIN FAILED, ",
        HitKind::Success => "LOGIN, ",
    };
    let body = p
        .after("INFO: ")
        .and_then(|b| b.strip_prefix(keyword))
        .or_else(|| p.after(keyword))?;
    let (ip, head) = login_tail(body, kind == HitKind::Success)?;
    let user = match head.strip_prefix("user=") {
        Some(u) => Some(u),
        None if kind == HitKind::Failure && head.starts_with("method=") => None,
        None => return None,
    };
    Some(hit(SERVICE, p.time, ip, user, 1, kind))
}

/// Reads `…, ip=[<ip>][, port=[<port>]][, protocol=<p>][, starttls=1]` from the right end of
/// `s`: (address, the text before `, ip=[`).
fn login_tail(s: &str, success: bool) -> Option<(std::net::IpAddr, &str)> {
    let mut t = s;
    if success {
        for suffix in [", starttls=1", ", stls=1"] {
            if let Some(x) = t.strip_suffix(suffix) {
                t = x;
                break;
            }
        }
        if let Some(i) = t.rfind(", protocol=") {
            let v = &t[i + ", protocol=".len()..];
            if !v.is_empty() && v.bytes().all(|c| c.is_ascii_alphanumeric()) {
                t = &t[..i];
            }
        }
    }
    if let Some(i) = t.rfind(", port=[") {
        let v = &t[i + ", port=[".len()..];
        if let Some(v) = v.strip_suffix(']') {
            if v == "N/A" || (!v.is_empty() && v.bytes().all(|c| c.is_ascii_digit())) {
                t = &t[..i];
            }
        }
    }
    let inner = t.strip_suffix(']')?;
    let i = inner.rfind(", ip=[")?;
    let addr = ip(&inner[i + ", ip=[".len()..])?;
    Some((addr, &t[..i]))
}

fn parse_smtp(line: &str, ctx: &ParseCtx) -> Option<Hit> {
    let p = split(line, ctx);
    if !p.program_is_none_or(courier_program) {
        return None;
    }
    let body = p.after("error,relay=")?;
    let (relay, rest) = body.split_once(',')?;
    let addr = ip(relay)?;
    // Only a 535 is a rejected AUTH; 550 "User unknown" and the like are not logins.
    if !(rest.starts_with("msg=\"535 ") || rest.contains(",msg=\"535 ")) {
        return None;
    }
    Some(hit(SERVICE, p.time, addr, None, 1, HitKind::Failure))
}

/// Helpers shared by the syslog-style rules of this folder (Courier, Cyrus, Sendmail, UW-IMAP,
/// OpenSMTPD, Roundcube, SOGo, Horde, SquirrelMail): splitting a line into stamp, syslog tag
/// and message, strict address parsing, and the "every candidate must agree" rule used where
/// attacker text surrounds the address. They live in this file only because the files of
/// `rules/` are owned per service; nothing here is Courier-specific.
pub(crate) mod shared {
    use crate::rules::time::parse_leading_time;
    use crate::rules::{canonical_ip, Hit, HitKind, ParseCtx};
    use jiff::civil::DateTime;
    use jiff::tz::Offset;
    use jiff::Timestamp;
    use std::net::IpAddr;
    use std::str::FromStr;

    /// A log line cut into its leading stamp, syslog tag and message.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Parts<'a> {
        /// `None` also when the line starts with a stamp that `parse_leading_time` does not
        /// read (`Aug 3 10:00:00`, one space): it is skipped (see [`stamp`]).
        pub time: Option<Timestamp>,
        /// The line after the leading stamp (and blanks).
        pub rest: &'a str,
        /// Program of the syslog tag (`imapd` of `imapd[12]:`), when the line has a tag where
        /// syslog writes it: first after the stamp, or after one host name.
        pub program: Option<&'a str>,
        pub pid: Option<u32>,
        /// The text after the tag, or `rest` when no tag was found.
        pub msg: &'a str,
    }

    impl<'a> Parts<'a> {
        /// The text after `keyword` when the message starts with it; for lines without a syslog
        /// header, when the text after the stamp does.
        pub fn after(&self, keyword: &str) -> Option<&'a str> {
            self.msg
                .strip_prefix(keyword)
                .or_else(|| self.rest.strip_prefix(keyword))
        }

        /// Whether the line has no syslog tag, or one whose program (its last `/` part, so
        /// `cyrus/imap` is `imap`) passes `ok`.
        pub fn program_is_none_or(&self, ok: impl Fn(&str) -> bool) -> bool {
            self.program.is_none_or(|p| ok(program_base(p)))
        }

        /// Whether the line has a syslog tag whose program (its last `/` part) passes `ok`.
        pub fn program_is(&self, ok: impl Fn(&str) -> bool) -> bool {
            self.program.is_some_and(|p| ok(program_base(p)))
        }
    }

    /// `imap` of `cyrus/imap`, `smtpd` of `postfix/submission/smtpd`.
    fn program_base(program: &str) -> &str {
        program.rsplit('/').next().unwrap_or(program)
    }

    /// A stamp authwatch cannot read spans at most this many tokens: `Mon Nov 23 15:59:08
    /// 2026` (ctime) is five, and a host written as an address may follow.
    const MAX_LOOSE_STAMP_TOKENS: usize = 6;

    /// The leading stamp: `(time, rest after it, unread)`. A stamp `parse_leading_time` reads
    /// gives its time; one it does not read but that is shaped like a stamp (see
    /// [`loose_stamp`]) is skipped with `time` `None` and `unread` set, so the line still
    /// counts (at the time it is read); no stamp at all: `(None, line, false)`.
    pub(crate) fn stamp<'a>(line: &'a str, ctx: &ParseCtx) -> (Option<Timestamp>, &'a str, bool) {
        let (time, rest) = parse_leading_time(line, ctx);
        if time.is_some() {
            return (time, rest, false);
        }
        match loose_stamp(line) {
            Some(rest) => (None, rest, true),
            None => (None, line, false),
        }
    }

    /// The rest of `line` after a run of stamp-shaped tokens (month and day names, and tokens
    /// of digits and `:-/.,+TZ`) that holds a clock (`H:MM`): `Aug 3 10:00:00`,
    /// `2026/11/23 15:59:08`, `23.11.2026 15:59:08`. `None` when the line does not start so.
    pub(crate) fn loose_stamp(line: &str) -> Option<&str> {
        let mut s = line;
        let mut clock_seen = false;
        for _ in 0..MAX_LOOSE_STAMP_TOKENS {
            let n = token_len(s);
            let tok = &s[..n];
            if n == 0 || !stamp_like(tok) {
                break;
            }
            clock_seen |= has_clock(tok.as_bytes());
            s = s[n..].trim_start_matches([' ', '\t']);
        }
        clock_seen.then_some(s)
    }

    pub(crate) fn stamp_like(tok: &str) -> bool {
        const NAMES: [&str; 19] = [
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
            "mon", "tue", "wed", "thu", "fri", "sat", "sun",
        ];
        let word = tok.strip_suffix(',').unwrap_or(tok);
        if word.len() == 3 && NAMES.iter().any(|n| n.eq_ignore_ascii_case(word)) {
            return true;
        }
        tok.bytes().any(|c| c.is_ascii_digit())
            && tok
                .bytes()
                .all(|c| c.is_ascii_digit() || b":-/.,+TZ".contains(&c))
    }

    /// `D:DD` somewhere in the token.
    pub(crate) fn has_clock(b: &[u8]) -> bool {
        (1..b.len().saturating_sub(2)).any(|i| {
            b[i] == b':'
                && b[i - 1].is_ascii_digit()
                && b[i + 1].is_ascii_digit()
                && b[i + 2].is_ascii_digit()
        })
    }

    /// Splits `[stamp ][host ]tag[pid]: [[ID n fac.level] ]message`. The tag is looked for only
    /// where syslog writes it: the first token after the stamp, or the second after a host
    /// name (SOGo's own log writes `sogod [123]:`, the pid a token of its own). Anything else
    /// is taken as a line without a header (`program` `None`, `msg` the whole `rest`), so text
    /// further on (a sender address, a HELO name) can never pose as a program's message.
    pub(crate) fn split<'a>(line: &'a str, ctx: &ParseCtx) -> Parts<'a> {
        let line = line.trim_end();
        let (time, rest, unread) = stamp(line, ctx);
        let mut parts = Parts {
            time,
            rest,
            program: None,
            pid: None,
            msg: rest,
        };
        if let Some((program, pid, msg)) = header(rest, time.is_some() || unread) {
            parts.program = Some(program);
            parts.pid = pid;
            parts.msg = skip_solaris_id(msg);
        }
        parts
    }

    /// `tag: msg`, `host tag: msg`, `name [pid]: msg` or `host name [pid]: msg` at the start of
    /// `s`: (program, pid, message). The forms of more than one token only after a stamp:
    /// without one, `F From: <text>` is a message header in Exim's rejectlog, not a host and
    /// a program.
    fn header(s: &str, stamped: bool) -> Option<(&str, Option<u32>, &str)> {
        let (t1, a1) = first_token(s);
        if let Some(tag) = t1.strip_suffix(':') {
            let (name, pid) = parse_tag(tag)?;
            return (!name.is_empty()).then_some((name, pid, a1));
        }
        if !stamped {
            return None;
        }
        let (t2, a2) = first_token(a1);
        if let Some(tag) = t2.strip_suffix(':') {
            let (name, pid) = parse_tag(tag)?;
            if name.is_empty() {
                // "sogod [123]:"
                return program_name(t1).then_some((t1, pid, a2));
            }
            return is_host(t1).then_some((name, pid, a2));
        }
        // "host sogod [123]:"
        let (t3, a3) = first_token(a2);
        let (name, pid) = parse_tag(t3.strip_suffix(':')?)?;
        (name.is_empty() && pid.is_some() && is_host(t1) && program_name(t2))
            .then_some((t2, pid, a3))
    }

    /// `name`, `name[pid]` or `[pid]` (name empty): (name, pid).
    fn parse_tag(tag: &str) -> Option<(&str, Option<u32>)> {
        let (name, pid) = match tag.strip_suffix(']').and_then(|t| t.rsplit_once('[')) {
            Some((name, pid)) => (name, Some(pid.parse::<u32>().ok()?)),
            None => (tag, None),
        };
        ((name.is_empty() && pid.is_some()) || program_name(name)).then_some((name, pid))
    }

    fn program_name(name: &str) -> bool {
        !name.is_empty()
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-_./@".contains(&c))
    }

    /// The host field of a syslog header: a host name or an address.
    pub(crate) fn is_host(s: &str) -> bool {
        is_hostname(s) || ip(s).is_some()
    }

    /// Solaris syslog puts `[ID 123456 mail.info] ` after the tag.
    fn skip_solaris_id(s: &str) -> &str {
        match s.strip_prefix("[ID ").and_then(|r| r.split_once("] ")) {
            Some((_, after)) => after,
            None => s,
        }
    }

    /// Length of the run of bytes up to the first space or tab.
    pub(crate) fn token_len(s: &str) -> usize {
        s.bytes().take_while(|&c| c != b' ' && c != b'\t').count()
    }

    /// The first space-delimited token of `s` and the text after it (and its blanks).
    pub(crate) fn first_token(s: &str) -> (&str, &str) {
        let n = token_len(s);
        (&s[..n], s[n..].trim_start_matches([' ', '\t']))
    }

    /// A whole string that is an IPv4 or IPv6 address, canonicalised (`::ffff:a.b.c.d` is IPv4).
    /// Nothing else becomes an address: no host names, ports, brackets or zone ids.
    pub(crate) fn ip(s: &str) -> Option<IpAddr> {
        IpAddr::from_str(s).ok().map(canonical_ip)
    }

    /// Like [`ip`], also accepting the `IPv6:` tag of RFC 5321 address literals (Sendmail,
    /// OpenSMTPD write `[IPv6:2001:db8::1]`).
    pub(crate) fn ip_literal(s: &str) -> Option<IpAddr> {
        let s = s
            .strip_prefix("IPv6:")
            .or_else(|| s.strip_prefix("ipv6:"))
            .unwrap_or(s);
        ip(s)
    }

    /// Bytes an address can be written with.
    pub(crate) fn is_ip_char(c: u8) -> bool {
        c.is_ascii_hexdigit() || c == b':' || c == b'.'
    }

    /// The run of address characters at the start of `s`, and the rest.
    pub(crate) fn ip_run(s: &str) -> (&str, &str) {
        let n = s.bytes().take_while(|&c| is_ip_char(c)).count();
        s.split_at(n)
    }

    /// A DNS host name as resolvers hand them out (letters, digits, `-`, `.`, `_`). Servers
    /// that print `name [ip]` get the name from reverse DNS; insisting on this shape keeps a
    /// crafted PTR record from smuggling a bracketed address in front of the real one.
    pub(crate) fn is_hostname(s: &str) -> bool {
        !s.is_empty()
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_')
    }

    /// Loopback, private, link-local, shared (CGNAT), unique-local or unspecified: addresses a
    /// reverse proxy in front of a web mailer has, not the Internet clients behind it.
    pub(crate) fn is_internal(addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => {
                let o = a.octets();
                a.is_private()
                    || a.is_loopback()
                    || a.is_link_local()
                    || a.is_unspecified()
                    || (o[0] == 100 && (o[1] & 0xc0) == 64)
            }
            IpAddr::V6(a) => {
                let s0 = a.segments()[0];
                a.is_loopback()
                    || a.is_unspecified()
                    || (s0 & 0xfe00) == 0xfc00
                    || (s0 & 0xffc0) == 0xfe80
            }
        }
    }

    /// The client in an `X-Forwarded-For`-style list `a, b, c`: proxies append the address they
    /// received from, so the list is read from the right, passing over internal proxies, and
    /// stops at the first entry that is not an address (everything left of it may be the
    /// client's own text). When only internal addresses are found, the rightmost one.
    pub(crate) fn rightmost_client(list: &str) -> Option<IpAddr> {
        let mut internal = None;
        for entry in list.rsplit(',') {
            match ip(entry.trim()) {
                Some(a) if !is_internal(a) => return Some(a),
                Some(a) => {
                    internal.get_or_insert(a);
                }
                None => break,
            }
        }
        internal
    }

    /// The one address all candidates name, if there is at least one and they agree. Used where
    /// the server writes attacker text on both sides of the address: the real position is always
    /// among the candidates, so a forged one either agrees with it or the line is not blamed.
    pub(crate) fn sole(candidates: impl IntoIterator<Item = IpAddr>) -> Option<IpAddr> {
        let mut it = candidates.into_iter();
        let first = it.next()?;
        it.all(|a| a == first).then_some(first)
    }

    /// A [`Hit`]; empty user names become `None`.
    pub(crate) fn hit(
        service: &'static str,
        time: Option<Timestamp>,
        ip: IpAddr,
        user: Option<&str>,
        attempts: u32,
        kind: HitKind,
    ) -> Hit {
        Hit {
            time,
            ip,
            user: user
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            service,
            attempts: attempts.max(1),
            kind,
        }
    }

    /// A decimal count as attempts: at least 1, saturating at `u32::MAX`.
    pub(crate) fn count(s: &str) -> Option<u32> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        Some(s.parse::<u32>().unwrap_or(u32::MAX).max(1))
    }

    /// Exactly `n` ASCII digits at `at`.
    pub(crate) fn digits(b: &[u8], at: usize, n: usize) -> Option<i32> {
        let s = b.get(at..at + n)?;
        s.iter().try_fold(0i32, |v, &c| {
            c.is_ascii_digit().then(|| v * 10 + i32::from(c - b'0'))
        })
    }

    /// `Jan` … `Dec` (any case) to 1 … 12.
    pub(crate) fn month(s: &[u8]) -> Option<i8> {
        const NAMES: [&[u8; 3]; 12] = [
            b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
            b"dec",
        ];
        let m = s.get(..3)?;
        let lower = [
            m[0].to_ascii_lowercase(),
            m[1].to_ascii_lowercase(),
            m[2].to_ascii_lowercase(),
        ];
        NAMES.iter().position(|n| **n == lower).map(|i| i as i8 + 1)
    }

    /// `HH:MM:SS` at `at`.
    pub(crate) fn clock(b: &[u8], at: usize) -> Option<(i8, i8, i8)> {
        let h = digits(b, at, 2)?;
        let m = digits(b, at + 3, 2)?;
        let s = digits(b, at + 6, 2)?;
        if b[at + 2] != b':' || b[at + 5] != b':' || h > 23 || m > 59 || s > 60 {
            return None;
        }
        Some((h as i8, m as i8, s.min(59) as i8))
    }

    /// A civil date and time to an instant: at `offset` when the log wrote one, else in
    /// `ctx.tz`.
    pub(crate) fn instant(
        date: (i32, i8, i8),
        time: (i8, i8, i8),
        offset: Option<Offset>,
        ctx: &ParseCtx,
    ) -> Option<Timestamp> {
        let year = i16::try_from(date.0).ok()?;
        let dt = DateTime::new(year, date.1, date.2, time.0, time.1, time.2, 0).ok()?;
        match offset {
            Some(off) => off.to_timestamp(dt).ok(),
            None => ctx.tz.to_ambiguous_timestamp(dt).compatible().ok(),
        }
    }

    /// `+HHMM` / `-HHMM` / `+HH:MM`.
    pub(crate) fn numeric_offset(s: &str) -> Option<Offset> {
        let b = s.as_bytes();
        let sign = match b.first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let (h, m) = match b.len() {
            5 => (digits(b, 1, 2)?, digits(b, 3, 2)?),
            6 if b[3] == b':' => (digits(b, 1, 2)?, digits(b, 4, 2)?),
            _ => return None,
        };
        if h > 23 || m > 59 {
            return None;
        }
        Offset::from_seconds(sign * (h * 3600 + m * 60)).ok()
    }
}

/// Table tests shared by the rules of this folder.
#[cfg(test)]
pub(crate) mod testkit {
    use crate::rules::{Hit, HitKind, ParseCtx, Rule};
    use jiff::tz::TimeZone;

    /// Expected: (ip, user, attempts, kind), or `None` for "no hit".
    pub(crate) type Want = Option<(&'static str, Option<&'static str>, u32, HitKind)>;

    pub(crate) const F: HitKind = HitKind::Failure;
    pub(crate) const S: HitKind = HitKind::Success;

    pub(crate) fn ctx() -> ParseCtx {
        ParseCtx::new(TimeZone::UTC, "2026-11-24T00:00:00Z".parse().unwrap())
    }

    /// Feeds the lines in order to one rule (stateful rules see the whole table) and compares
    /// ip, user, attempts, kind and service; all mismatches are reported together.
    pub(crate) fn check(rule: &mut dyn Rule, table: &[(&str, Want)]) {
        let ctx = ctx();
        let service = rule.service();
        let mut failed = Vec::new();
        for (line, want) in table {
            let got = rule
                .parse(line, &ctx)
                .map(|h| (h.ip, h.user, h.attempts, h.kind, h.service));
            let want = want.map(|(ip, user, attempts, kind)| {
                (
                    ip.parse().unwrap(),
                    user.map(str::to_owned),
                    attempts,
                    kind,
                    service,
                )
            });
            if got != want {
                failed.push(format!("line: {line}\n  got:  {got:?}\n  want: {want:?}"));
            }
        }
        assert!(failed.is_empty(), "{}", failed.join("\n"));
    }

    /// The log time of each line's hit, compared as RFC 3339.
    pub(crate) fn check_times(rule: &mut dyn Rule, table: &[(&str, Option<&str>)]) {
        let ctx = ctx();
        for (line, want) in table {
            let hit: Option<Hit> = rule.parse(line, &ctx);
            let got = hit.expect(line).time;
            let want = want.map(|t| t.parse().unwrap());
            assert_eq!(got, want, "{line}");
        }
    }
}

#[cfg(test)]
#[path = "courier_tests.rs"]
mod tests;
