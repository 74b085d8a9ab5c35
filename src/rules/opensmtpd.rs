//! The OpenSMTPD rule: SMTP AUTH results of `smtpd`, in the three log dialects it has had.
//!
//! - 6.4 and later: `<sid> smtp connected address=<ip> host=<name>`, then
//!   `<sid> smtp authentication user=<user> result=ok|permfail|tempfail` and, for the 535 reply,
//!   `<sid> smtp failed-command command="AUTH LOGIN (password)" result="535 …"`.
//! - 6.0 – 6.3: the same with `event=`: `<sid> smtp event=connected address=…`,
//!   `<sid> smtp event=authentication user=<user> address=<ip> host=<name> result=permfail`,
//!   `<sid> smtp event=failed-command address=<ip> host=<name> command="…" result="535 …"`.
//! - 5.x: `smtp-in: New session <sid> from host <name> [<ip>]`,
//!   `smtp-in: Authentication failed for user <user> on session <sid>`,
//!   `smtp-in: Accepted authentication for user <user> on session <sid>`,
//!   `smtp-in: Failed command on session <sid>: "<cmd>" => 535 …`.
//!
//! Where the authentication line carries no address, it comes from the session's connect line:
//! the rule keeps the address of the last few thousand sessions (dropped at disconnect). The
//! user name is `strnvis`-encoded by smtpd, so it holds no blanks and the fields are plain
//! tokens; the address is a field of its own and never taken from the command text. One failed
//! AUTH writes both an authentication line and a 535 failed-command line: the second counts
//! only when no authentication line of the session preceded it (some releases wrote only it).
//! Lines count only with the `smtpd[pid]:` syslog tag (`opensmtpd` too) or with no header at
//! all (`smtpd -d` on a terminal), the session id or `smtp-in:` first in the message: the same
//! words in another service's line are that client's text (Postfix's `postfix/smtpd` is not
//! OpenSMTPD).
//! `result=tempfail` is the server's own trouble (a table lookup), not a guess, and is skipped.

use super::courier::shared::{first_token, hit, ip_literal, split};
use super::{Hit, HitKind, ParseCtx, Rule};
use jiff::Timestamp;
use lru::LruCache;
use memchr::memmem::Finder;
use std::net::IpAddr;
use std::num::NonZeroUsize;

const SERVICE: &str = "opensmtpd";

/// Sessions whose address is remembered.
const SESSIONS: usize = 8192;

#[derive(Debug, Clone, Copy)]
struct Session {
    addr: Option<IpAddr>,
    /// Authentication failures whose 535 failed-command line is still to come.
    pending: u32,
}

/// Recognises OpenSMTPD AUTH failures and successes.
#[derive(Debug)]
pub struct OpenSmtpdRule {
    smtp: Finder<'static>,
    smtp_in: Finder<'static>,
    sessions: LruCache<u64, Session>,
}

impl Default for OpenSmtpdRule {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenSmtpdRule {
    pub fn new() -> Self {
        OpenSmtpdRule {
            smtp: Finder::new(b" smtp "),
            smtp_in: Finder::new(b"smtp-in: "),
            sessions: LruCache::new(NonZeroUsize::new(SESSIONS).expect("non-zero")),
        }
    }

    fn connected(&mut self, sid: u64, addr: Option<IpAddr>) -> Option<Hit> {
        self.sessions.put(sid, Session { addr, pending: 0 });
        None
    }

    /// An authentication result; `inline` is the address written on the line itself (6.0).
    fn authentication(
        &mut self,
        time: Option<Timestamp>,
        sid: u64,
        user: &str,
        inline: Option<IpAddr>,
        result: &str,
    ) -> Option<Hit> {
        let kind = match result {
            "permfail" => HitKind::Failure,
            "ok" => HitKind::Success,
            _ => return None,
        };
        let session = self.sessions.get_or_insert_mut(sid, || Session {
            addr: inline,
            pending: 0,
        });
        let addr = inline.or(session.addr)?;
        if kind == HitKind::Failure {
            session.pending += 1;
        }
        Some(hit(SERVICE, time, addr, Some(user), 1, kind))
    }

    /// A failed command: counts only as a 535 to AUTH not already counted.
    fn failed_command(
        &mut self,
        time: Option<Timestamp>,
        sid: u64,
        inline: Option<IpAddr>,
        command: &str,
        result: &str,
    ) -> Option<Hit> {
        if !command.starts_with("AUTH") || !result.starts_with("535") {
            return None;
        }
        let mut addr = inline;
        if let Some(s) = self.sessions.get_mut(&sid) {
            if s.pending > 0 {
                s.pending -= 1;
                return None;
            }
            addr = addr.or(s.addr);
        }
        Some(hit(SERVICE, time, addr?, None, 1, HitKind::Failure))
    }

    /// 6.0+: `<sid> smtp [event=]<event> <fields>`.
    fn current(&mut self, time: Option<Timestamp>, msg: &str) -> Option<Hit> {
        let (sid, rest) = first_token(msg);
        let sid = session_id(sid)?;
        let rest = rest.strip_prefix("smtp ")?;
        let rest = rest.strip_prefix("event=").unwrap_or(rest);
        let (event, fields) = first_token(rest);
        match event {
            "connected" => {
                let addr = leading(fields, "address=").and_then(address);
                self.connected(sid, addr)
            }
            "authentication" => {
                // "user=<vis-encoded, no blanks> [address=<ip> host=<name> ]result=<r>"
                let (user, after) = first_token(fields);
                let user = user.strip_prefix("user=")?;
                let inline = leading(after, "address=").and_then(address);
                let result = fields.rsplit(' ').next()?.strip_prefix("result=")?;
                self.authentication(time, sid, user, inline, result)
            }
            "failed-command" => {
                // 6.0 puts the address first; the command text is the client's.
                let inline = leading(fields, "address=").and_then(address);
                let i = fields.find("command=\"")?;
                let command = &fields[i + "command=\"".len()..];
                let j = fields.rfind(" result=\"")?;
                let result = &fields[j + " result=\"".len()..];
                self.failed_command(time, sid, inline, command, result)
            }
            "disconnected" | "closed" => {
                self.sessions.pop(&sid);
                None
            }
            _ => None,
        }
    }

    /// 5.x: `smtp-in: …`.
    fn legacy(&mut self, time: Option<Timestamp>, rest: &str) -> Option<Hit> {
        if let Some(r) = rest.strip_prefix("New session ") {
            let (sid, r) = first_token(r);
            let sid = session_id(sid)?;
            let r = r.strip_prefix("from host ")?;
            let addr = r
                .strip_suffix(']')
                .and_then(|x| x.rsplit_once(" ["))
                .and_then(|(_, a)| address(a));
            return self.connected(sid, addr);
        }
        for (prefix, result) in [
            ("Authentication failed for user ", "permfail"),
            ("Accepted authentication for user ", "ok"),
        ] {
            if let Some(r) = rest.strip_prefix(prefix) {
                let (user, sid) = r.rsplit_once(" on session ")?;
                return self.authentication(time, session_id(sid)?, user, None, result);
            }
        }
        if let Some(r) = rest.strip_prefix("Failed command on session ") {
            let (sid, r) = r.split_once(": \"")?;
            let (command, result) = r.rsplit_once("\" => ")?;
            return self.failed_command(time, session_id(sid)?, None, command, result);
        }
        if let Some(r) = rest.strip_prefix("Closing session ") {
            self.sessions.pop(&session_id(first_token(r).0)?);
        }
        None
    }
}

impl Rule for OpenSmtpdRule {
    fn service(&self) -> &'static str {
        SERVICE
    }
    fn literals(&self) -> Option<Vec<Vec<u8>>> {
        super::literal_list(&["smtp-in: ", " smtp "])
    }

    fn parse(&mut self, line: &str, ctx: &ParseCtx) -> Option<Hit> {
        let b = line.as_bytes();
        let in_smtp = self.smtp_in.find(b).is_some();
        if !in_smtp && self.smtp.find(b).is_none() {
            return None;
        }
        let p = split(line, ctx);
        if !p.program.is_none_or(|n| n == "smtpd" || n == "opensmtpd") {
            return None;
        }
        if in_smtp {
            return self.legacy(p.time, p.after("smtp-in: ")?);
        }
        self.current(p.time, p.msg)
    }
}

/// smtpd's 64-bit session id, written as 16 hex digits.
fn session_id(s: &str) -> Option<u64> {
    if s.len() != 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// The value of the first space-delimited field of `fields` when it is `key…`.
fn leading<'a>(fields: &'a str, key: &str) -> Option<&'a str> {
    first_token(fields).0.strip_prefix(key)
}

/// `ss_to_text()`: `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]` or `IPv6:…`; `local` for the
/// Unix socket (no address).
fn address(s: &str) -> Option<IpAddr> {
    let s = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(s);
    ip_literal(s)
}

#[cfg(test)]
#[path = "opensmtpd_tests.rs"]
mod tests;
