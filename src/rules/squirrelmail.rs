//! The SquirrelMail rule: login events written by the `squirrel_logger` plugin, in its
//! default formats.
//!
//! File log (`$sl_logs['FILE']`, `%6 [%1] %2 (%3) from %4: %7`):
//! `10/06/2013 15:50:41 [LOGIN_ERROR] <user> (<domain>) from <addr>: <comment>`, with the events
//! `LOGIN_ERROR` (or `INVALID`, the alternative the sample config offers) and `LOGIN`.
//! Syslog (`$sl_logs['SYSTEM…']`): `Failed webmail login: by <user> (<domain>) at <addr> on
//! <date>: <comment>` and `Successful webmail login: by …`. `<date>` is `$sl_dateformat`
//! (`m/d/Y H:i:s` by default) and is written in GMT when `$sl_use_GMT` is on (the default),
//! else in the user's zone; it has no zone mark, so it is read in the source's zone.
//!
//! The event must stand where squirrel_logger writes it: the file log's `[EVENT]` right after
//! the leading date (any `$sl_dateformat` that reads as a date and time), the syslog
//! message's first words right after the syslog tag. The same
//! words further on in a line are another service's client text (a sender address, say).
//!
//! The user name is client text before the address and the comment may carry text after it, so
//! every `) from <token>:` (or `) at <token> on `) is a candidate; each must be an address and
//! all must agree. With `$sl_namelookups` on, `<addr>` is a host name and nothing is blamed.

use super::courier::shared::{
    clock, digits, first_token, has_clock, hit, instant, ip, sole, split, stamp_like,
};
use super::{Hit, HitKind, ParseCtx, Rule};
use jiff::Timestamp;
use memchr::memmem::{self, Finder};
use std::net::IpAddr;

const SERVICE: &str = "squirrelmail";

/// The file log's events, as they open the text after the date.
const FILE_EVENTS: &[(&str, HitKind)] = &[
    ("[LOGIN_ERROR] ", HitKind::Failure),
    ("[INVALID] ", HitKind::Failure),
    ("[LOGIN] ", HitKind::Success),
];

const SYSLOG_EVENTS: &[(&str, HitKind)] = &[
    ("Failed webmail login: by ", HitKind::Failure),
    ("Successful webmail login: by ", HitKind::Success),
];

/// Recognises squirrel_logger failed and successful logins.
#[derive(Debug, Clone)]
pub struct SquirrelmailRule {
    file: Finder<'static>,
    invalid: Finder<'static>,
    syslog: Finder<'static>,
}

impl Default for SquirrelmailRule {
    fn default() -> Self {
        Self::new()
    }
}

impl SquirrelmailRule {
    pub fn new() -> Self {
        SquirrelmailRule {
            file: Finder::new(b" [LOGIN"),
            invalid: Finder::new(b" [INVALID] "),
            syslog: Finder::new(b"webmail login: by "),
        }
    }
}

impl Rule for SquirrelmailRule {
    fn service(&self) -> &'static str {
        SERVICE
    }
    fn literals(&self) -> Option<Vec<Vec<u8>>> {
        super::literal_list(&[" [LOGIN", " [INVALID] ", "webmail login: by "])
    }
    fn stateless(&self) -> bool {
        true
    }

    fn parse(&mut self, line: &str, ctx: &ParseCtx) -> Option<Hit> {
        let b = line.as_bytes();
        if self.file.find(b).is_some() || self.invalid.find(b).is_some() {
            return file_line(line.trim_end(), ctx);
        }
        if self.syslog.find(b).is_some() {
            return syslog_line(line, ctx);
        }
        None
    }
}

/// Words of a date PHP `date()` writes (`$sl_dateformat`): month and day names, long and
/// short, and `am`/`pm`. Zone abbreviations (`T`) are 2 to [`MAX_ZONE_LETTERS`] capitals.
const DATE_WORDS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "oct",
    "nov",
    "dec",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "mon",
    "tue",
    "wed",
    "thu",
    "fri",
    "sat",
    "sun",
    "am",
    "pm",
];

/// `CEST`, `AKST`, `WITA`: zone abbreviations `date('T')` writes are at most this long.
const MAX_ZONE_LETTERS: usize = 5;

/// Tokens in such a date (`D M j Y H:i:s T` is six).
const MAX_DATE_TOKENS: usize = 8;

fn file_line(line: &str, ctx: &ParseCtx) -> Option<Hit> {
    // The event tag right after the date squirrel_logger wrote, never further on: the date
    // holds no `[`, so the first ` [` ends it.
    let i = line.find(" [")?;
    let (head, rest) = (&line[..i], &line[i + 1..]);
    let (tag, kind) = FILE_EVENTS.iter().find(|(tag, _)| rest.starts_with(tag))?;
    if !is_date(head) {
        return None;
    }
    let time = mdy(head, ctx).or_else(|| split(head, ctx).time);
    let body = &rest[tag.len()..];
    let (addr, user) = blame(body, ") from ", false)?;
    Some(hit(SERVICE, time, addr, Some(user), 1, *kind))
}

/// Whether `head` reads as a date and time in some `$sl_dateformat`: a clock (`H:MM`) among a
/// few tokens of digits and date marks or date words (`10/06/2013 15:50:41`, `Sat Mar 10 2001
/// 15:16:08 CDT`, `March 10, 2001, 5:16 pm`). An Exim or Postfix line before a forged tag
/// fails: message ids, `<=`, program tags and quotes are none of these.
fn is_date(head: &str) -> bool {
    let word = |t: &str| {
        let w = t.strip_suffix(',').unwrap_or(t);
        DATE_WORDS.iter().any(|d| d.eq_ignore_ascii_case(w))
            || ((2..=MAX_ZONE_LETTERS).contains(&w.len())
                && w.bytes().all(|c| c.is_ascii_uppercase()))
    };
    let mut clock = false;
    for (n, t) in head
        .split([' ', '\t'])
        .filter(|t| !t.is_empty())
        .enumerate()
    {
        if n >= MAX_DATE_TOKENS || !(stamp_like(t) || word(t)) {
            return false;
        }
        clock |= has_clock(t.as_bytes());
    }
    clock
}

fn syslog_line(line: &str, ctx: &ParseCtx) -> Option<Hit> {
    let p = split(line, ctx);
    let (body, kind) = SYSLOG_EVENTS
        .iter()
        .find_map(|(k, kind)| p.after(k).map(|b| (b, *kind)))?;
    let (addr, user) = blame(body, ") at ", true)?;
    // The date after "on" is the user's text away from the syslog stamp: the stamp is used.
    Some(hit(SERVICE, p.time, addr, Some(user), 1, kind))
}

/// Every `<marker><token>` in `body` is a candidate and must be an address: `) from <ip>:` in
/// file lines, `) at <ip> on ` in syslog lines. All must agree: (address, user without its
/// ` (<domain>)`).
fn blame<'a>(body: &'a str, marker: &str, syslog: bool) -> Option<(IpAddr, &'a str)> {
    let mut first = None;
    let mut addrs = Vec::new();
    for pos in memmem::find_iter(body.as_bytes(), marker.as_bytes()) {
        let (token, rest) = first_token(&body[pos + marker.len()..]);
        let value = if syslog {
            rest.starts_with("on ").then_some(token)?
        } else {
            token.strip_suffix(':')?
        };
        addrs.push(ip(value)?);
        first.get_or_insert(pos);
    }
    let addr = sole(addrs)?;
    // "<user> (<domain>)": the marker starts at the ")" closing the domain.
    let before = &body[..first? + 1];
    let user = before.rfind(" (").map_or(before, |i| &before[..i]);
    Some((addr, user))
}

/// `MM/DD/YYYY HH:MM:SS` (squirrel_logger's default `m/d/Y H:i:s`), in the source's zone.
fn mdy(s: &str, ctx: &ParseCtx) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() != 19 || b[2] != b'/' || b[5] != b'/' || b[10] != b' ' {
        return None;
    }
    let month = digits(b, 0, 2)?;
    let day = digits(b, 3, 2)?;
    let year = digits(b, 6, 4)?;
    let hms = clock(b, 11)?;
    instant((year, month as i8, day as i8), hms, None, ctx)
}

#[cfg(test)]
#[path = "squirrelmail_tests.rs"]
mod tests;
