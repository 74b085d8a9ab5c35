//! The Dovecot rule: failed and successful IMAP/POP3/submission/ManageSieve logins from Dovecot
//! 2.2, 2.3 and 2.4 logs (Dovecot's own `log_path` file, or syslog/journal lines behind a
//! `host dovecot[pid]: ` prefix), and the per-attempt lines that `auth_verbose = yes` adds.
//!
//! **Lines.** A login process writes one summary line per connection when it closes:
//! `imap-login: Info: Disconnected: … (auth failed, N attempts in S secs): user=<u>,
//! method=PLAIN, rip=IP, lip=…, session=<id>` (2.4: `Login aborted: Connection closed (auth
//! failed, N attempts in S secs) (auth_failed): user=<u>, …`; submission-login: `Client has
//! quit the connection (auth failed, …)`, `Remote closed connection (auth failed, …)`); it
//! stands for N attempts. A login through a Dovecot proxy that the backend refused is `(proxy
//! dest auth failed)` (2.3, one attempt) or `(proxy dest auth failed, N attempts in S secs)`
//! (2.4): the client's credentials failed one hop further, so it counts against `rip=` like
//! `auth failed`. A successful login is `imap-login: Info: Login: user=<u>, …, rip=IP, …`
//! ([`HitKind::Success`]).
//!
//! **Anchoring.** The process tag (`imap-login:`, `auth:`, …) is read only where Dovecot
//! writes it: right after the stamp of its own log file, after a `[host ]dovecot[pid]: `
//! syslog/journal tag, or as the syslog tag itself (`host imap-login: `); see `split_prefix`.
//! The same text anywhere else (an Exim quoted sender, a Postfix
//! message-id, a Roundcube user name) is another program's line and never a hit, so attacker
//! text can neither add failures nor fake a `Login:` that resets counters.
//! Summaries that are not password guesses do not match: `(no auth attempts …)`, `(tried to use
//! disallowed plaintext auth)` / `(tried to use unsupported auth mechanism)` (no password was
//! checked: a client misconfiguration or a scanner, not a guess), `(disconnected before auth was
//! ready …)`, `(client didn't finish SASL auth …)`. With `auth_verbose = yes` the auth process
//! also writes one line per failed attempt: 2.2/2.3 `auth: Info: passwd-file(u,IP,<id>):
//! Password mismatch` (`auth-worker(pid): Info: pam(u,IP,<id>): pam_authenticate() failed: …`,
//! `unknown user`, `invalid credentials`), 2.4 `auth-worker(u,IP)<pid><id>: request [n]: Info:
//! passdb: Password mismatch`.
//!
//! **Counting each attempt once.** Per-attempt lines and the summary share the session id
//! (`<id>` / `session=<id>`). A per-attempt line counts 1 as it comes (so a long connection
//! that keeps guessing is seen before it closes), and the rule remembers per session how many
//! it counted; the summary then counts N minus that (no hit when nothing is left). Without
//! `auth_verbose` only the summary counts. One attempt that goes through several passdbs
//! (`result_failure = continue`, the default) logs one line per passdb; a line whose passdb
//! was already seen in the current attempt starts the next attempt, any other continues it,
//! and lines ending in ` - trying the next passdb` are skipped. Two passdbs with the same name
//! (two unnamed `passwd-file` passdbs) would still count one attempt twice: name them. When in
//! doubt a per-attempt line is dropped, never guessed: the summary then counts the attempt.
//! The map is bounded ([`SESSION_CAP`] sessions, least recently used evicted); an evicted
//! session's summary counts all its N attempts again (over-count, bounded by the cap).
//! Per-attempt lines *without* a session id are not counted: they come from SASL clients such
//! as Postfix or Exim (`smtpd_sasl_type = dovecot`), which log the failure themselves with the
//! client's address, and no summary would ever reconcile them (measured with Postfix 3.7 and
//! Dovecot 2.3: `auth: Info: passwd-file(alice,127.0.0.1): Password mismatch`).
//!
//! **Blame.** Usernames are attacker text; Dovecot replaces control bytes with `?` and cuts
//! them (64 chars in per-attempt lines, 80 in summaries) but keeps `<>,()=` and spaces, so a
//! username can hold `>, method=PLAIN, rip=9.9.9.9, lip=…, session=<…`. Dovecot writes the
//! user first and `rip=`, `lip=`, … `session=<…>` after it, so the summary's address is the
//! *last* `rip=` of the line and its session the last `session=<…>`; attacker copies can only
//! come before them. In a per-attempt line the ident `user,IP[,master][,<id>]` is closed by the
//! first `): ` Dovecot writes, but the user (and, with `auth_verbose_passwords`, the password
//! after it) may contain `): ` too: every place where a complete ident could end is tried, and
//! the line is dropped unless exactly one fits. Dovecot's login session id encodes the client
//! address (48-bit µs time, port, then the 4 or 16 address bytes, base64): a per-attempt line
//! whose address disagrees with its session id is dropped, and a summary whose session encodes
//! no address (a login over a UNIX socket, where any `rip=` can only be attacker text) does not
//! match. Summaries are not checked against the session otherwise: a trusted webmail's
//! `x-originating-ip` legitimately changes `rip=` after the session id was made.

use super::time::parse_leading_time;
use super::{canonical_ip, Hit, HitKind, ParseCtx};
use jiff::Timestamp;
use lru::LruCache;
use memchr::memmem::Finder;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroUsize;
use std::str::FromStr;

const SERVICE: &str = "dovecot";

/// How many sessions with counted per-attempt lines are remembered.
pub const SESSION_CAP: usize = 10_000;

/// Longest passdb chain tracked for one attempt (longer chains only under-count, and the
/// summary then makes up the difference).
const MAX_CHAIN: usize = 8;

/// How a login process's summary starts: `Disconnected…` (2.0-2.3), `Aborted login…` (2.0,
/// 2.2), `Login aborted: …` (2.4), and the close reasons lib-smtp gives submission-login
/// (`smtp-server-command.c` "Client has quit the connection", EOF "Remote closed
/// connection"), which it writes without a `Disconnected: ` in front.
const SUMMARY_STARTS: [&str; 5] = [
    "Disconnected",
    "Aborted login",
    "Login aborted",
    "Client has quit the connection",
    "Remote closed connection",
];

/// What was counted for one session from its per-attempt lines.
#[derive(Debug, Default)]
struct Session {
    counted: u32,
    /// Passdbs seen in the current attempt, in order.
    chain: Vec<Box<str>>,
}

/// Recognises Dovecot login summaries, successful logins and `auth_verbose` per-attempt lines.
pub struct DovecotRule {
    sessions: LruCache<Box<str>, Session>,
    rip: Finder<'static>,
    auth: Finder<'static>,
}

impl std::fmt::Debug for DovecotRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DovecotRule")
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

impl Default for DovecotRule {
    fn default() -> Self {
        Self::new()
    }
}

impl super::Rule for DovecotRule {
    fn service(&self) -> &'static str {
        SERVICE
    }
    fn literals(&self) -> Option<Vec<Vec<u8>>> {
        super::literal_list(&["rip=", "auth"])
    }
    fn parse(&mut self, line: &str, ctx: &ParseCtx) -> Option<Hit> {
        DovecotRule::parse(self, line, ctx)
    }
}

/// A process tag and what follows it.
enum Tag<'a> {
    /// `imap-login: …`, `pop3-login: …`: the message after the tag.
    Login(&'a str),
    /// `auth: …`, `auth-worker(123): …` (2.2/2.3): the message after the tag.
    Auth(&'a str),
    /// `auth-worker(u,IP)<pid><session>: …` (2.4): the text after `auth-worker(`.
    AuthIdent(&'a str),
}

/// A per-attempt line, parsed.
struct Attempt<'a> {
    user: &'a str,
    ip: IpAddr,
    session: Option<&'a str>,
    passdb: &'a str,
    message: &'a str,
}

impl DovecotRule {
    pub fn new() -> Self {
        DovecotRule {
            sessions: LruCache::new(NonZeroUsize::new(SESSION_CAP).expect("non-zero")),
            rip: Finder::new(b"rip="),
            auth: Finder::new(b"auth"),
        }
    }

    /// Sessions currently remembered (for tests and diagnostics).
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// One line (without its newline) to a hit, or `None`. Lines without `rip=` or `auth`
    /// return after the literal prefilter, without allocating.
    pub fn parse(&mut self, line: &str, ctx: &ParseCtx) -> Option<Hit> {
        let bytes = line.as_bytes();
        let has_rip = self.rip.find(bytes).is_some();
        if !has_rip && self.auth.find(bytes).is_none() {
            return None;
        }
        let (time, body) = split_prefix(line, ctx);
        match process_tag(body)? {
            Tag::Login(msg) if has_rip => self.login_line(strip_info(msg)?, time),
            Tag::Login(_) => None,
            Tag::Auth(msg) => {
                let attempt = classic_attempt(strip_info(msg)?)?;
                self.attempt_line(attempt, time)
            }
            Tag::AuthIdent(rest) => {
                let attempt = ident_attempt(rest)?;
                self.attempt_line(attempt, time)
            }
        }
    }

    fn login_line(&mut self, msg: &str, time: Option<Timestamp>) -> Option<Hit> {
        if let Some(elements) = msg.strip_prefix("Login: ") {
            let login = parse_elements(elements)?;
            if let Some(s) = login.session {
                self.sessions.pop(s);
            }
            return Some(hit(time, login.ip, login.user, 1, HitKind::Success));
        }
        if !SUMMARY_STARTS.iter().any(|p| msg.starts_with(p)) {
            return None;
        }
        let (n, elements) = auth_failed(msg)?;
        let summary = parse_elements(elements)?;
        let counted = summary
            .session
            .and_then(|s| self.sessions.pop(s))
            .map_or(0, |s| s.counted);
        let attempts = n.saturating_sub(counted);
        (attempts > 0).then(|| hit(time, summary.ip, summary.user, attempts, HitKind::Failure))
    }

    fn attempt_line(&mut self, a: Attempt<'_>, time: Option<Timestamp>) -> Option<Hit> {
        let session = a.session?;
        let message = a.message.trim_end();
        if !is_failure_message(message) || message.ends_with(" - trying the next passdb") {
            return None;
        }
        if let Some(encoded) = session_ip(session) {
            if canonical_ip(encoded) != canonical_ip(a.ip) {
                return None;
            }
        }
        let state = self
            .sessions
            .get_or_insert_mut(Box::from(session), Session::default);
        let new_attempt = state.chain.is_empty() || state.chain.iter().any(|p| &**p == a.passdb);
        if new_attempt {
            state.counted = state.counted.saturating_add(1);
            state.chain.clear();
        }
        if state.chain.len() < MAX_CHAIN {
            state.chain.push(Box::from(a.passdb));
        }
        new_attempt.then(|| hit(time, a.ip, Some(a.user), 1, HitKind::Failure))
    }
}

fn hit(
    time: Option<Timestamp>,
    ip: IpAddr,
    user: Option<&str>,
    attempts: u32,
    kind: HitKind,
) -> Hit {
    Hit {
        time,
        ip: canonical_ip(ip),
        user: user.filter(|u| !u.is_empty()).map(str::to_owned),
        service: SERVICE,
        attempts,
        kind,
    }
}

/// Strips the stamp and an optional syslog/journal `[host ]dovecot[pid]: ` in front of
/// Dovecot's process tag.
fn split_prefix<'a>(line: &'a str, ctx: &ParseCtx) -> (Option<Timestamp>, &'a str) {
    let (time, rest) = parse_leading_time(line, ctx);
    if let Some(after) = after_dovecot_tag(rest) {
        return (time, after);
    }
    // The host field syslog writes: a host name or an address (not `H=(helo` of an Exim line).
    let host = token_len(rest);
    if host > 0 && super::courier::shared::is_host(&rest[..host]) {
        if let Some(after) = rest[host..].strip_prefix(' ') {
            if let Some(after) = after_dovecot_tag(after) {
                return (time, after);
            }
            // `host imap-login: …`: the process name as the syslog tag (Dovecot 1.x, and
            // setups that log each process under its own name); still the tag's position.
            if process_tag(after).is_some() {
                return (time, after);
            }
        }
    }
    (time, rest)
}

/// `dovecot[pid]: ` or `dovecot: ` at the start of `s`: the rest after it.
fn after_dovecot_tag(s: &str) -> Option<&str> {
    let rest = s.strip_prefix("dovecot")?;
    let rest = match rest.strip_prefix('[') {
        Some(r) => r
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .strip_prefix(']')?,
        None => rest,
    };
    rest.strip_prefix(": ")
}

fn token_len(s: &str) -> usize {
    s.bytes().take_while(|&c| c != b' ' && c != b'\t').count()
}

/// The Dovecot process tag at the start of `s`.
fn process_tag(s: &str) -> Option<Tag<'_>> {
    let name_len = s
        .bytes()
        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        .count();
    let (name, rest) = s.split_at(name_len);
    if name.len() > "-login".len() && name.ends_with("-login") {
        return rest.strip_prefix(": ").map(Tag::Login);
    }
    if name != "auth" && name != "auth-worker" {
        return None;
    }
    if let Some(msg) = rest.strip_prefix(": ") {
        return Some(Tag::Auth(msg));
    }
    let inner = rest.strip_prefix('(')?;
    // `auth-worker(1234): ` / `auth(default): ` (2.0-2.3), else the 2.4 `(user,IP)<…>` form.
    let n = inner
        .bytes()
        .take_while(|c| c.is_ascii_alphanumeric())
        .count();
    if n > 0 {
        if let Some(msg) = inner[n..].strip_prefix("): ") {
            let tag = &inner[..n];
            if tag.bytes().all(|c| c.is_ascii_digit()) || tag == "default" {
                return Some(Tag::Auth(msg));
            }
        }
    }
    Some(Tag::AuthIdent(inner))
}

/// Dovecot's log levels as written to its own log file; only `Info: ` lines (and lines
/// without a level, from syslog) are login events.
fn strip_info(msg: &str) -> Option<&str> {
    if let Some(rest) = msg.strip_prefix("Info: ") {
        return Some(rest);
    }
    const OTHER: [&str; 5] = ["Debug: ", "Warning: ", "Error: ", "Fatal: ", "Panic: "];
    if OTHER.iter().any(|l| msg.starts_with(l)) {
        return None;
    }
    Some(msg)
}

/// The group that makes a summary a password guess, in the form Dovecot writes it
/// (`client_get_extra_disconnect_reason()`, `src/login-common/client-common.c`): 2.0-2.3
/// `(auth failed, N attempts[ in S secs])`, 2.3 `(proxy dest auth failed)` (the backend refused
/// the credentials the client gave the proxy; no count: one attempt), 2.4 `(proxy dest auth
/// failed, N attempts in S secs)`, and the `proxy dest authentication failure` wording.
const GROUPS: [(&str, bool); 4] = [
    (" (auth failed, ", true),
    (" (proxy dest auth failed, ", true),
    (" (proxy dest authentication failure, ", true),
    (" (proxy dest auth failed)", false),
];

/// The password-guess group in a summary: (N, the elements `user=<…>, …`). Only Dovecot's
/// reason, before the attacker-chosen user, is searched.
fn auth_failed(msg: &str) -> Option<(u32, &str)> {
    // Dovecot's own words end at the first "): " (the elements, with the attacker's user
    // name, follow it): a group quoted inside `user=<…>` of another summary is not looked at.
    let head = &msg[..msg.find("): ").map_or(msg.len(), |e| e + 1)];
    let (at, mark, counted) = GROUPS
        .iter()
        .filter_map(|&(mark, counted)| head.find(mark).map(|at| (at, mark, counted)))
        .min_by_key(|&(at, _, _)| at)?;
    let mut rest = &msg[at + mark.len()..];
    let n = if counted {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n = rest[..digits].parse::<u64>().ok()?.min(u64::from(u32::MAX)) as u32;
        rest = rest[digits..].strip_prefix(" attempts")?;
        n
    } else {
        // The mark's own `)` closes the group.
        rest = &msg[at + mark.len() - 1..];
        1
    };
    if n == 0 {
        return None;
    }
    // The elements follow the first "): " after the group (2.4 adds " (auth_failed)").
    let end = rest.find("): ")?;
    Some((n, &rest[end + 3..]))
}

/// The login elements of a summary or `Login:` line.
struct Elements<'a> {
    ip: IpAddr,
    user: Option<&'a str>,
    session: Option<&'a str>,
}

/// `user=<u>, method=M, rip=IP, lip=…, …, session=<id>`: the address from the last `rip=`,
/// the session from the last `session=<…>`, the user from what precedes the address.
fn parse_elements(elements: &str) -> Option<Elements<'_>> {
    let rip_at = last_element(elements, "rip=")?;
    let value = &elements[rip_at + 4..];
    let ip_len = value
        .bytes()
        .take_while(|&c| c != b',' && c != b' ')
        .count();
    let ip = IpAddr::from_str(&value[..ip_len]).ok()?;
    let after = &value[ip_len..];
    let session = last_element(after, "session=<").and_then(|at| {
        let s = &after[at + "session=<".len()..];
        s.find('>').map(|end| &s[..end])
    });
    if let Some(encoded) = session.and_then(session_ip) {
        if encoded.is_unspecified() {
            // A login without a client address (UNIX socket): any rip= is attacker text.
            return None;
        }
    }
    let user = user_before(&elements[..rip_at]);
    Some(Elements { ip, user, session })
}

/// Start of the last `name` in `s` that begins an element (at the start or after `, `).
fn last_element(s: &str, name: &str) -> Option<usize> {
    let mut end = s.len();
    while let Some(at) = s[..end].rfind(name) {
        if at == 0 || s[..at].ends_with(", ") {
            return Some(at);
        }
        end = at;
    }
    None
}

/// The user of `user=<u>, method=M, ` (the text in front of the real `rip=`).
fn user_before(head: &str) -> Option<&str> {
    let mut head = head.strip_suffix(", ")?;
    if let Some(at) = head.rfind(", method=") {
        let mech = &head[at + ", method=".len()..];
        if !mech.is_empty()
            && mech
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            head = &head[..at];
        }
    }
    head.strip_prefix("user=<")?.strip_suffix('>')
}

/// Whether a per-attempt message reports a failed password guess.
fn is_failure_message(m: &str) -> bool {
    m.starts_with("Password mismatch")
        || m.starts_with("unknown user")
        || m.starts_with("invalid credentials")
        || m.strip_prefix("pam_authenticate() failed: ")
            .is_some_and(|r| {
                r.starts_with("Authentication failure") || r.starts_with("User not known")
            })
}

/// 2.2/2.3: `passdb(user,IP[,master][,<session>]): message`. Every `): ` after the passdb
/// name could close the ident; exactly one of them must leave a well-formed ident.
fn classic_attempt(msg: &str) -> Option<Attempt<'_>> {
    let open = msg.find('(')?;
    let passdb = &msg[..open];
    if passdb.is_empty() || passdb.bytes().any(|c| c == b' ' || c == b':') {
        return None;
    }
    let inner = &msg[open + 1..];
    let mut found: Option<Attempt<'_>> = None;
    let mut from = 0;
    while let Some(rel) = inner[from..].find("): ") {
        let end = from + rel;
        if let Some((user, ip, session)) = parse_ident(&inner[..end]) {
            if found.is_some() {
                return None; // two places fit: the attacker wrote one of them
            }
            found = Some(Attempt {
                user,
                ip,
                session,
                passdb,
                message: &inner[end + 3..],
            });
        }
        from = end + 1;
    }
    found
}

/// `user,IP[,master][,<session>]`, read from the right: (user, IP, session).
fn parse_ident(ident: &str) -> Option<(&str, IpAddr, Option<&str>)> {
    let mut rest = ident;
    let mut session = None;
    if let Some(body) = rest.strip_suffix('>') {
        let open = body.rfind(",<")?;
        let s = &body[open + 2..];
        if !is_session_id(s) {
            return None;
        }
        session = Some(s);
        rest = &body[..open];
    }
    rest = rest.strip_suffix(",master").unwrap_or(rest);
    let comma = rest.rfind(',')?;
    let ip = parse_ip(&rest[comma + 1..])?;
    Some((&rest[..comma], ip, session))
}

/// 2.4: after `auth-worker(`: `user,IP)<pid>[<session>]: [request [n]: ][Info: ]passdb: msg`.
fn ident_attempt(rest: &str) -> Option<Attempt<'_>> {
    let mut found: Option<Attempt<'_>> = None;
    let mut from = 0;
    while let Some(rel) = rest[from..].find(")<") {
        let end = from + rel;
        if let Some(a) = ident_form(&rest[..end], &rest[end + 1..]) {
            if found.is_some() {
                return None;
            }
            found = Some(a);
        }
        from = end + 1;
    }
    found
}

/// One candidate of the 2.4 form: `ident` before `)`, `tail` from the first `<`.
fn ident_form<'a>(ident: &'a str, tail: &'a str) -> Option<Attempt<'a>> {
    let comma = ident.rfind(',')?;
    let ip = parse_ip(&ident[comma + 1..])?;
    let user = &ident[..comma];
    // One or two `<…>` groups: `<pid>` and/or `<session>`.
    let mut groups: Vec<&str> = Vec::with_capacity(2);
    let mut t = tail;
    while let Some(r) = t.strip_prefix('<') {
        let end = r.find('>')?;
        groups.push(&r[..end]);
        t = &r[end + 1..];
        if groups.len() > 2 {
            return None;
        }
    }
    let session = match groups.as_slice() {
        [pid, s] if is_digits(pid) => Some(*s),
        [one] if is_digits(one) => None,
        [one] => Some(*one),
        _ => return None,
    };
    if session.is_some_and(|s| !is_session_id(s)) {
        return None;
    }
    let mut msg = t.strip_prefix(": ")?;
    if let Some(r) = msg.strip_prefix("request [") {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        msg = r[n..].strip_prefix("]: ").filter(|_| n > 0)?;
    }
    let msg = strip_info(msg)?;
    let colon = msg.find(": ")?;
    let passdb = &msg[..colon];
    if passdb.is_empty() || passdb.contains(' ') {
        return None;
    }
    Some(Attempt {
        user,
        ip,
        session,
        passdb,
        message: &msg[colon + 2..],
    })
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    if s.is_empty()
        || !s
            .bytes()
            .all(|c| c.is_ascii_hexdigit() || c == b'.' || c == b':')
    {
        return None;
    }
    IpAddr::from_str(s).ok()
}

/// Dovecot session ids are base64 (`+/`); external ids (`x-session-ext-id`) may add a few
/// punctuation characters. Never `<`, `>`, `,` or spaces.
fn is_session_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'-' | b'_' | b'.' | b':')
        })
}

/// The client address inside a login-generated session id: base64 of 6 bytes of time, 2 of
/// port, then 4 (IPv4) or 16 (IPv6) address bytes. `None` for ids of any other shape.
fn session_ip(session: &str) -> Option<IpAddr> {
    let mut buf = [0u8; 24];
    let n = decode_base64(session, &mut buf)?;
    match n {
        12 => Some(IpAddr::V4(Ipv4Addr::new(buf[8], buf[9], buf[10], buf[11]))),
        24 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&buf[8..24]);
            Some(IpAddr::V6(Ipv6Addr::from(a)))
        }
        _ => None,
    }
}

/// Standard base64 without padding into `out`: the number of bytes, or `None` when `s` is
/// not base64 or does not fit.
fn decode_base64(s: &str, out: &mut [u8]) -> Option<usize> {
    let s = s.trim_end_matches('=');
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut n = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(n)? = (acc >> bits) as u8;
            n += 1;
        }
    }
    Some(n)
}

#[cfg(test)]
#[path = "dovecot_tests.rs"]
mod tests;
