//! The Exim rule: turns an Exim mainlog line (plain, with `+all` log selectors, or behind a
//! syslog/journal prefix) into a [`Hit`]. A failure is the server-side line
//! `<auth> authenticator failed for <host> [ip]…: 535 Incorrect authentication data…`; a
//! success is a `<=` (message received) line carrying ` A=<auth>:<user>`.
//!
//! **Anchoring.** Both shapes are read only where Exim writes them: as the whole message, right
//! after Exim's own stamp (and `[pid]`), or after an `exim…[pid]:` syslog/journal tag. The
//! authenticator name must be a configuration name (letters, digits, `_`, `-`), so a syslog
//! continuation record (`[2\2] …`, Exim splits messages over 870 bytes) that starts inside
//! attacker text is not a failure. Lines of other programs (a Postfix `message-id=`, a Dovecot
//! `user=<…>`) never reach the parser's position.
//!
//! **Blame** is positional. Exim writes (`smtp_in.c`, `log_write(… "%s authenticator failed
//! for %s: %s", au->name, host_and_ident(FALSE), ss)`), in this order: the authenticator
//! name, `authenticator failed for `, an optional rDNS host name, an optional `(helo)`, the
//! peer `[ip]`, an optional `:port`, an optional ` I=[local]:port`, an optional ` U=ident`,
//! then `: 535 Incorrect authentication data`, and last the attacker-chosen `(set_id=…)` (or,
//! before 4.86, `: N Time(s)`). The IP is taken only from that position, never from text
//! after `: 535`. The grammar is the regex `FAIL_GRAMMAR`; it is implemented by hand (the
//! regex crate with captures took ~1.3 µs a line, this parser ~0.1 µs), and a differential
//! test checks that both agree. What follows `: 535 Incorrect authentication data` must be one
//! of those tails, or the position is not Exim's.
//!
//! HELO names are attacker-chosen too. Exim's default HELO check allows no spaces, brackets
//! or parentheses in them, so the peer normally follows a one-token `(helo)`. With
//! `helo_accept_junk_hosts` the HELO is any text, and Exim writes it verbatim (measured with
//! Exim 4.96): `(a) [198.51.100.123]:2: 535 Incorrect authentication data x) [127.0.0.1]:
//! 535 …`. When the one-token reading fails, every `) [ip]` whose text before it is a
//! `[host ](…)` and whose tail is valid is a candidate; they must all name one address, else
//! the line does not match. One case stays ambiguous: a junk HELO and a `set_id` crafted
//! together so that two complete failures fit, the first after a one-token HELO. That text is
//! also what a `set_id` alone produces under the default HELO check (the common case), so the
//! one-token reading wins; only a server with `helo_accept_junk_hosts` can be made to blame the
//! HELO's address that way.
//!
//! Exim 4.97+ `log_selector = +connection_id` (in `+all`) adds ` Ci=<n>` to connection and
//! `<=` lines (spec, "Log files": "added to connection start and end lines and to message
//! accept lines"); it is skipped after the `[pid]` and among the `<=` host fields.

use super::time::parse_leading_time;
use super::{canonical_ip, Hit, HitKind, ParseCtx};
use jiff::Timestamp;
use memchr::memmem::Finder;
use std::net::IpAddr;
use std::str::FromStr;

const SERVICE: &str = "exim";

/// What follows the authenticator name at the start of an Exim failure message.
const FAILED_FOR: &str = " authenticator failed for ";

/// The fixed response text that ends the host part of a failure line.
const INCORRECT: &str = ": 535 Incorrect authentication data";

/// Grammar of the host part after `authenticator failed for ` (ASCII `\S`), up to the fixed
/// response text; group 1 is the peer address. `U=` (RFC 1413 ident) may follow the interface.
/// `failure_peer` implements it by hand.
#[cfg(test)]
pub(crate) const FAIL_GRAMMAR: &str = r"(?-u)^(?:H=)?(?:\S+ )?(?:\(\S*\) )?\[([0-9A-Fa-f:.]+)\](?:[:.][0-9]+)?(?: I=\[[0-9A-Fa-f:.]+\](?:[:.][0-9]+)?)?(?: U=\S*)?: 535 Incorrect authentication data";

/// Grammar of a `<=` line after the sender, up to the protocol: optional `R=` (bounce
/// reference) and ` DS` (DNSSEC), `H=<host part>`, optional interface, connection id (4.97+),
/// TCP Fast Open flag, ident and connection id, then ` P=<protocol>`; group 1 is the peer
/// address. `received_peer` implements it.
#[cfg(test)]
pub(crate) const RECEIVED_GRAMMAR: &str = r"(?-u)^(?: R=\S+)?(?: DS)? H=(?:\S+ )?(?:\(\S*\) )?\[([0-9A-Fa-f:.]+)\](?:[:.][0-9]+)?(?: I=\[[0-9A-Fa-f:.]+\](?:[:.][0-9]+)?)?(?: Ci=[0-9]+)?(?: TFO\*?)?(?: U=\S*)?(?: Ci=[0-9]+)? P=\S+";

/// Recognises Exim's failed SMTP AUTH (server side) and successful AUTH (`A=` on `<=`).
#[derive(Debug, Clone)]
pub struct EximRule {
    failed_for: Finder<'static>,
    received: Finder<'static>,
    auth_field: Finder<'static>,
}

impl Default for EximRule {
    fn default() -> Self {
        Self::new()
    }
}

impl super::Rule for EximRule {
    fn service(&self) -> &'static str {
        SERVICE
    }
    fn literals(&self) -> Option<Vec<Vec<u8>>> {
        super::literal_list(&[FAILED_FOR, " A="])
    }
    fn stateless(&self) -> bool {
        true
    }
    fn parse(&mut self, line: &str, ctx: &ParseCtx) -> Option<Hit> {
        EximRule::parse(self, line, ctx)
    }
}

impl EximRule {
    pub fn new() -> Self {
        EximRule {
            failed_for: Finder::new(FAILED_FOR.as_bytes()),
            received: Finder::new(b" <= "),
            auth_field: Finder::new(b" A="),
        }
    }

    /// One line (without its newline) to a hit, or `None` when the line is not a server-side
    /// AUTH failure nor an authenticated `<=` line. Lines that fail the literal prefilters
    /// return without allocating; a hit allocates only its user name.
    pub fn parse(&self, line: &str, ctx: &ParseCtx) -> Option<Hit> {
        let bytes = line.as_bytes();
        if self.failed_for.find(bytes).is_some() {
            if let Some(hit) = parse_failure(line, ctx) {
                return Some(hit);
            }
        }
        if self.received.find(bytes).is_some() && self.auth_field.find(bytes).is_some() {
            return parse_success(line, ctx);
        }
        None
    }
}

fn parse_failure(line: &str, ctx: &ParseCtx) -> Option<Hit> {
    let (time, body) = split_prefix(line, ctx);
    // The message must start with "<authenticator> authenticator failed for ": the same words
    // anywhere else (a subject, a set_id, another program, a syslog continuation) are not
    // Exim's.
    let name_len = driver_name_len(body);
    if name_len == 0 {
        return None;
    }
    let host_part = body[name_len..].strip_prefix(FAILED_FOR)?;
    let (ip, tail) = match failure_peer(host_part) {
        Some((ip, tail)) if valid_tail(tail) => (IpAddr::from_str(ip).ok()?, tail),
        _ => junk_helo_peer(host_part)?,
    };
    let (attempts, user) = failure_tail(tail);
    Some(Hit {
        time,
        ip: canonical_ip(ip),
        user: user.map(str::to_owned),
        service: SERVICE,
        attempts,
        kind: HitKind::Failure,
    })
}

fn parse_success(line: &str, ctx: &ParseCtx) -> Option<Hit> {
    let (time, body) = split_prefix(line, ctx);
    // "<message id> <= <sender> H=… P=… … A=<auth>:<user> … S=<size> …"
    let (id, rest) = body.split_once(' ')?;
    if !is_message_id(id) {
        return None;
    }
    let rest = rest.strip_prefix("<= ")?;
    // The sender is attacker-chosen and may hold spaces inside quotes.
    let (ip, fields) = received_peer(&rest[sender_end(rest)?..])?;
    let ip = IpAddr::from_str(ip).ok()?;
    let auth = auth_field(fields)?;
    // `<auth>:<user>`: the user runs from the first colon to the next space.
    let auth = &auth[..token_len(auth)];
    let user = auth
        .split_once(':')
        .map(|(_, u)| u)
        .filter(|u| !u.is_empty());
    Some(Hit {
        time,
        ip: canonical_ip(ip),
        user: user.map(str::to_owned),
        service: SERVICE,
        attempts: 1,
        kind: HitKind::Success,
    })
}

/// Length of the authenticator (driver instance) name at the start of `s`: Exim's
/// configuration names are letters, digits and `_` (`-` accepted too); `0` when the first
/// token holds anything else.
fn driver_name_len(s: &str) -> usize {
    let n = token_len(s);
    let ok = s[..n]
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
    if ok {
        n
    } else {
        0
    }
}

/// Whether `tail` (the text after `: 535 Incorrect authentication data`) is one Exim writes:
/// nothing, ` (set_id=…)` to the end of the line, or (before 4.86) `: N Time(s)`.
fn valid_tail(tail: &str) -> bool {
    let mut t = tail.trim_end();
    if let Some(r) = t.strip_prefix(": ") {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n > 0 {
            if let Some(after) = r[n..].strip_prefix(" Time(s)") {
                t = after;
            }
        }
    }
    t.is_empty() || (t.starts_with(" (set_id=") && t.ends_with(')'))
}

/// The peer of a failure whose HELO is junk (`helo_accept_junk_hosts`): every `) [ip]` that
/// follows `[H=][<host> ](…` and is followed by `[:port][ I=…][ U=…]: 535 Incorrect
/// authentication data` and a valid tail is a candidate; all candidates must name the same
/// address. (address, tail of the first candidate).
fn junk_helo_peer(host_part: &str) -> Option<(IpAddr, &str)> {
    let head = host_part.strip_prefix("H=").unwrap_or(host_part);
    let mut found: Option<(IpAddr, &str)> = None;
    for at in memchr::memmem::find_iter(head.as_bytes(), b") [") {
        // `(…)` or `<host> (…)`: the rDNS name is one token (Exim checks DNS names).
        let before = &head[..=at];
        if !before.starts_with('(') {
            let n = token_len(before);
            if before.starts_with('[') || !before[n..].starts_with(" (") {
                continue;
            }
        }
        let Some((ip, tail)) = peer_then_incorrect(&head[at + 2..]) else {
            continue;
        };
        if !valid_tail(tail) {
            continue;
        }
        let Ok(ip) = IpAddr::from_str(ip) else {
            continue;
        };
        match found {
            None => found = Some((ip, tail)),
            Some((first, _)) if first == ip => {}
            Some(_) => return None,
        }
    }
    found
}

/// Whitespace as the ASCII `\s` of the grammars.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\x0B' | b'\x0C' | b'\r')
}

/// Length of the run of non-whitespace bytes at the start of `s` (ends on a char boundary).
fn token_len(s: &str) -> usize {
    s.bytes().take_while(|&c| !is_space(c)).count()
}

fn is_ip_char(c: &u8) -> bool {
    c.is_ascii_hexdigit() || *c == b':' || *c == b'.'
}

/// Tries `f` where Exim's `[ip]` may start in `[H=][<host> ][(<helo>) ][ip]`: at `s` (or after
/// its `H=` when `allow_h`), after the first token, or after a first token and a `(…)` token.
/// At most one of them can be followed by the rest of either grammar: what follows `[ip]`
/// (`:port`, ` I=`, ` U=`, ` TFO`, `: 535`, ` P=`) never starts a token with `[` or `(`.
fn at_peer_position<'a, T>(
    s: &'a str,
    allow_h: bool,
    f: impl Fn(&'a str) -> Option<T>,
) -> Option<T> {
    let try_at = |c: &'a str| if c.starts_with('[') { f(c) } else { None };
    if let Some(t) = try_at(s) {
        return Some(t);
    }
    if allow_h {
        if let Some(t) = s.strip_prefix("H=").and_then(try_at) {
            return Some(t);
        }
    }
    let n1 = token_len(s);
    if n1 == 0 {
        return None;
    }
    let c1 = s[n1..].strip_prefix(' ')?;
    if let Some(t) = try_at(c1) {
        return Some(t);
    }
    let n2 = token_len(c1);
    let helo = &c1[..n2];
    if n2 >= 2 && helo.starts_with('(') && helo.ends_with(')') {
        return try_at(c1[n2..].strip_prefix(' ')?);
    }
    None
}

/// `:port` (or `.port`) at the start of `s`, skipped.
fn skip_port(s: &str) -> &str {
    match s.strip_prefix([':', '.']) {
        Some(r) => {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            if n > 0 {
                &r[n..]
            } else {
                s
            }
        }
        None => s,
    }
}

/// `[ip]` + optional port + optional ` I=[local]` + optional port at the start of `s`:
/// (ip text, rest).
fn bracketed_peer(s: &str) -> Option<(&str, &str)> {
    let r = s.strip_prefix('[')?;
    let n = r.bytes().take_while(is_ip_char).count();
    let rest = r[n..].strip_prefix(']').filter(|_| n > 0)?;
    let mut rest = skip_port(rest);
    if let Some(i) = rest.strip_prefix(" I=[") {
        let n = i.bytes().take_while(is_ip_char).count();
        if let Some(after) = i[n..].strip_prefix(']').filter(|_| n > 0) {
            rest = skip_port(after);
        }
    }
    Some((&r[..n], rest))
}

/// `FAIL_GRAMMAR` by hand: (peer ip text, text after `: 535 Incorrect authentication data`).
fn failure_peer(s: &str) -> Option<(&str, &str)> {
    at_peer_position(s, true, peer_then_incorrect)
}

/// `[ip][:port][ I=[local][:port]][ U=ident]: 535 Incorrect authentication data` at the start
/// of `c`: (peer ip text, the text after it).
fn peer_then_incorrect(c: &str) -> Option<(&str, &str)> {
    let (ip, mut rest) = bracketed_peer(c)?;
    if let Some(ident) = rest.strip_prefix(" U=") {
        // `U=\S*` then `: 535`: the ident token must end with the `:`.
        let n = token_len(ident);
        if n == 0 || !ident[..n].ends_with(':') {
            return None;
        }
        rest = &ident[n - 1..];
    }
    Some((ip, rest.strip_prefix(INCORRECT)?))
}

/// `RECEIVED_GRAMMAR` by hand, on the text after the sender: (peer ip text, text after the
/// ` P=<protocol>` field).
fn received_peer(s: &str) -> Option<(&str, &str)> {
    let mut r = s;
    if let Some(x) = r.strip_prefix(" R=") {
        let n = token_len(x);
        if n == 0 {
            return None;
        }
        r = &x[n..];
    }
    if r.starts_with(" DS ") {
        r = &r[3..];
    }
    let host = r.strip_prefix(" H=")?;
    at_peer_position(host, false, |c| {
        let (ip, mut rest) = bracketed_peer(c)?;
        rest = skip_connection_id(rest);
        if let Some(x) = rest.strip_prefix(" TFO") {
            rest = x.strip_prefix('*').unwrap_or(x);
        }
        if let Some(x) = rest.strip_prefix(" U=") {
            rest = &x[token_len(x)..];
        }
        rest = skip_connection_id(rest);
        let proto = rest.strip_prefix(" P=")?;
        let n = token_len(proto);
        (n > 0).then(|| (ip, &proto[n..]))
    })
}

/// Strips the stamp(s) and prefixes in front of Exim's message text and returns the time to
/// use: `[stamp ][host ]exim…[pid]: [exim stamp ][[pid] ]message`. Exim's own stamp wins over
/// the syslog/journal one.
fn split_prefix<'a>(line: &'a str, ctx: &ParseCtx) -> (Option<Timestamp>, &'a str) {
    let (mut time, mut rest) = parse_leading_time(line, ctx);
    if let Some(after) = skip_syslog_header(rest) {
        let (exim_time, after_stamp) = parse_leading_time(after, ctx);
        if exim_time.is_some() {
            time = exim_time;
        }
        rest = after_stamp;
    }
    (time, skip_pid(rest))
}

/// `HOST exim[1234]: ` or `exim4: ` (the tag must start with `exim`): the rest after it.
fn skip_syslog_header(s: &str) -> Option<&str> {
    if let Some(rest) = after_exim_tag(s) {
        return Some(rest);
    }
    // The host field syslog writes: a host name or an address, never text such as `H=(helo`
    // from an Exim line that quotes a client's HELO.
    let host_len = token_len(s);
    if host_len == 0 || !super::courier::shared::is_host(&s[..host_len]) {
        return None;
    }
    after_exim_tag(s[host_len..].strip_prefix(' ')?)
}

/// `exim…[pid]: ` at the start of `s`: the rest after it.
fn after_exim_tag(s: &str) -> Option<&str> {
    let rest = s.strip_prefix("exim")?;
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let rest = match rest.strip_prefix('[') {
        Some(r) => r
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .strip_prefix(']')?,
        None => rest,
    };
    let rest = rest.strip_prefix(':')?;
    Some(rest.strip_prefix(' ').unwrap_or(rest))
}

/// `[12345] ` (log_selector +pid), and a `Ci=<n> ` connection id after it.
fn skip_pid(s: &str) -> &str {
    let Some(r) = s.strip_prefix('[') else {
        return s;
    };
    let digits = r.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return s;
    }
    match r[digits..].strip_prefix("] ") {
        Some(after) => after_connection_id(after).unwrap_or(after),
        None => s,
    }
}

/// `Ci=<digits> ` at the start of `s`: the rest after it.
fn after_connection_id(s: &str) -> Option<&str> {
    let r = s.strip_prefix("Ci=")?;
    let n = r.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 {
        return None;
    }
    r[n..].strip_prefix(' ')
}

/// ` Ci=<digits>` (Exim 4.97+ `+connection_id`) at the start of `s`, skipped.
fn skip_connection_id(s: &str) -> &str {
    if let Some(r) = s.strip_prefix(" Ci=") {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n > 0 {
            return &r[n..];
        }
    }
    s
}

/// After `: 535 Incorrect authentication data`: `: N Time(s)` (older Exim), then
/// ` (set_id=<attacker text>)` up to the final `)` of the line. Unknown tails count as one
/// attempt without a user.
fn failure_tail(tail: &str) -> (u32, Option<&str>) {
    let mut rest = tail.trim_end();
    let mut attempts = 1;
    if let Some(r) = rest.strip_prefix(": ") {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n > 0 {
            if let Some(after) = r[n..].strip_prefix(" Time(s)") {
                attempts = r[..n].parse::<u32>().unwrap_or(u32::MAX).max(1);
                rest = after;
            }
        }
    }
    let user = rest
        .strip_prefix(" (set_id=")
        .map(|u| u.strip_suffix(')').unwrap_or(u))
        .filter(|u| !u.is_empty());
    (attempts, user)
}

/// Exim message ids: `1xNIze-0008bX-A5` (up to 4.96) and `1rZ3tN-00000000Jxy-0Tfa` (4.97+).
fn is_message_id(id: &str) -> bool {
    let b = id.as_bytes();
    let dashes: &[usize] = match b.len() {
        16 => &[6, 13],
        23 => &[6, 18],
        _ => return false,
    };
    b.iter().enumerate().all(|(i, &c)| {
        if dashes.contains(&i) {
            c == b'-'
        } else {
            c.is_ascii_alphanumeric()
        }
    })
}

/// Index of the space that ends the sender address at the start of `s`. Spaces inside
/// double quotes (with `\` escapes) belong to the address. `None` when no space ends it.
fn sender_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut quoted = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b' ' if !quoted => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Splits on spaces outside double quotes (so `DN="CN=a b"` stays one token).
fn tokens(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            return None;
        }
        let end = sender_end(rest).unwrap_or(rest.len());
        let (tok, r) = rest.split_at(end);
        rest = r;
        Some(tok)
    })
}

/// The value of the `A=` field after ` P=…`. Exim writes the fields in a fixed order:
/// `L`, `X=`, `CV=`, `DN="…"`, … then `A=<auth>[:<id>]`, optional `PRDR`/`PRX=`/`K`, then
/// ` S=<size>`; the attacker-chosen `id=`/`T="subject"` come after `S=`. So the answer is the
/// last `A=` token before the first `S=<digits>` token, with only those flags between.
fn auth_field(s: &str) -> Option<&str> {
    let mut candidate = None;
    for tok in tokens(s) {
        if let Some(size) = tok.strip_prefix("S=") {
            if !size.is_empty() && size.bytes().all(|c| c.is_ascii_digit()) {
                return candidate;
            }
        }
        if let Some(auth) = tok.strip_prefix("A=") {
            candidate = Some(auth);
        } else if !(tok == "PRDR" || tok == "K" || tok.starts_with("PRX=")) {
            candidate = None;
        }
    }
    None
}

#[cfg(test)]
#[path = "exim_tests.rs"]
mod tests;
