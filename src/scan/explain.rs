//! `authwatch explain`: how the rules see a log, in the manner of `fail2ban-regex`. For files:
//! lines matched per rule (failures, successes, attempts, hits without a readable time), and
//! the lines no rule matched that still mention authentication (grouped by shape, most common
//! first, one example each), which is where a missing rule or an unexpected format shows. For
//! `--line TEXT`: the stamp read, each rule's verdict, and for a line nothing matched, what it
//! resembles and what would make it match.

use super::input::{self, Stop};
use super::{say, ExplainOptions, Settings, StampTracker, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE};
use crate::rules::time::parse_leading_time;
use crate::rules::{Hit, HitKind, ParseCtx, RuleSet, BUILTIN};
use crate::text::inert;
use jiff::Timestamp;
use regex::Regex;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write};

/// Words that make an unmatched line worth showing.
const WORDS: &str = r"(?i)auth|login|logon|fail|passw|sasl|denied";
/// Distinct shapes of unmatched lines remembered.
const MAX_SHAPES: usize = 10_000;
/// Bytes of a line's shape that decide its group.
const SHAPE_CHARS: usize = 72;
/// Characters of an example line shown.
const EXAMPLE_CHARS: usize = 200;

/// Phrases typical of each service's login lines: when a line holds one and the rule still
/// does not match, that is worth saying.
const PHRASES: &[(&str, &[&str])] = &[
    (
        "exim",
        &["authenticator failed for", "535 incorrect authentication"],
    ),
    ("postfix", &["sasl", "authentication failed"]),
    ("dovecot", &["auth failed", "password mismatch", "-login:"]),
    ("courier", &["login failed", "courieresmtpd"]),
    ("cyrus", &["badlogin"]),
    ("sendmail", &["possible smtp attack", "authinfo"]),
    ("uwimap", &["login failed", "authentication failed"]),
    (
        "opensmtpd",
        &[
            "failed-command",
            "authentication user=",
            "event=authentication",
        ],
    ),
    ("roundcube", &["failed login", "login failed"]),
    ("sogo", &["might not have worked", "sogo"]),
    ("horde", &["failed login", "horde"]),
    ("squirrelmail", &["failed webmail login", "squirrelmail"]),
];

#[derive(Debug, Default, Clone)]
struct RuleCounts {
    lines: u64,
    failures: u64,
    successes: u64,
    attempts: u64,
    without_time: u64,
}

struct Shape {
    count: u64,
    example_file: usize,
    example_line: u64,
    example: String,
}

/// Lines of the files, matched and not.
struct FileStats {
    files: Vec<String>,
    lines: u64,
    matched: u64,
    per_rule: Vec<(&'static str, RuleCounts)>,
    unmatched_mentions: u64,
    shapes: HashMap<String, Shape>,
    shapes_full: bool,
}

/// The shape of a line, to group lines that differ only in their values: the stamp dropped,
/// then word by word: `key=value` becomes `key=#`, a word holding a digit, `@` or a bracket
/// (addresses, ports, names, ids) becomes `#`; other words stay. Cut to [`SHAPE_CHARS`].
fn shape_of(line: &str, ctx: &ParseCtx) -> String {
    let (_, rest) = parse_leading_time(line, ctx);
    let mut out = String::new();
    for word in rest.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        let valued = |w: &str| {
            w.bytes()
                .any(|b| b.is_ascii_digit() || matches!(b, b'@' | b'[' | b'(' | b'<' | b'"'))
        };
        match word.split_once('=') {
            Some((key, value)) if !key.is_empty() && !valued(key) => {
                out.push_str(key);
                out.push('=');
                if !value.is_empty() {
                    out.push('#');
                }
            }
            _ if valued(word) => out.push('#'),
            _ => out.push_str(word),
        }
        if out.len() >= SHAPE_CHARS {
            break;
        }
    }
    out
}

fn cut(s: &str, max: usize) -> String {
    let s = inert(s);
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

fn hit_summary(h: &Hit) -> String {
    let kind = match h.kind {
        HitKind::Failure => "failed login",
        HitKind::Success => "successful login",
    };
    let user = h.user.as_deref().map_or_else(
        || "no account named".to_string(),
        |u| format!("account {:?}", inert(u)),
    );
    let attempts = if h.attempts > 1 {
        format!(", {} attempts", h.attempts)
    } else {
        String::new()
    };
    format!("{kind} from {}, {user}{attempts}", h.ip)
}

fn scan_files(settings: &Settings, args: &ExplainOptions, words: &Regex) -> (FileStats, bool) {
    let mut rules = settings.rules();
    let mut st = FileStats {
        files: Vec::new(),
        lines: 0,
        matched: 0,
        per_rule: rules
            .services()
            .into_iter()
            .map(|s| (s, RuleCounts::default()))
            .collect(),
        unmatched_mentions: 0,
        shapes: HashMap::new(),
        shapes_full: false,
    };
    let mut failed = false;
    let mut buf = Vec::with_capacity(4096);
    for path in &args.files {
        let mut inp = match input::open(path, settings.progress) {
            Ok(i) => i,
            Err(e) => {
                say(format_args!("cannot read {}: {e}", path.display()));
                failed = true;
                continue;
            }
        };
        let file = st.files.len();
        st.files.push(inp.name.clone());
        let ctx = ParseCtx::new(
            settings.tz.clone(),
            inp.mtime.unwrap_or_else(Timestamp::now),
        );
        let mut stamps = StampTracker::new();
        let r = input::for_each_line(
            &mut *inp.reader,
            &mut buf,
            settings.max_line_bytes,
            |no, line| {
                st.lines += 1;
                match rules.parse(line, &ctx) {
                    Some(hit) => {
                        st.matched += 1;
                        let time = match hit.time {
                            Some(t) => {
                                stamps.stamped(t);
                                Some(t)
                            }
                            None => {
                                let t = stamps.previous(&ctx);
                                stamps.see(line.as_bytes());
                                t
                            }
                        };
                        if let Some((_, c)) =
                            st.per_rule.iter_mut().find(|(s, _)| *s == hit.service)
                        {
                            c.lines += 1;
                            match hit.kind {
                                HitKind::Failure => {
                                    c.failures += 1;
                                    c.attempts += u64::from(hit.attempts.max(1));
                                }
                                HitKind::Success => c.successes += 1,
                            }
                            if time.is_none() {
                                c.without_time += 1;
                            }
                        }
                    }
                    None => {
                        stamps.see(line.as_bytes());
                        if words.is_match(line) {
                            st.unmatched_mentions += 1;
                            let key = shape_of(line, &ctx);
                            if let Some(s) = st.shapes.get_mut(&key) {
                                s.count += 1;
                            } else if st.shapes.len() < MAX_SHAPES {
                                st.shapes.insert(
                                    key,
                                    Shape {
                                        count: 1,
                                        example_file: file,
                                        example_line: no,
                                        example: cut(line, EXAMPLE_CHARS),
                                    },
                                );
                            } else {
                                st.shapes_full = true;
                            }
                        }
                    }
                }
                Ok::<(), ()>(())
            },
        );
        inp.clear_progress();
        if let Err(Stop::Read { after_line, error }) = r {
            say(format_args!(
                "error reading {} after line {after_line}: {error}",
                path.display()
            ));
            failed = true;
        }
    }
    (st, failed)
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "0%".to_string()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

fn render_files(st: &FileStats, samples: usize, out: &mut String) {
    let services: Vec<&str> = st.per_rule.iter().map(|(s, _)| *s).collect();
    let _ = writeln!(
        out,
        "Rules, tried in this order (the first match counts): {}",
        services.join(", ")
    );
    let _ = writeln!(
        out,
        "Lines: {} in {} file{}; matched {} ({}), not matched {}.",
        st.lines,
        st.files.len(),
        if st.files.len() == 1 { "" } else { "s" },
        st.matched,
        pct(st.matched, st.lines),
        st.lines - st.matched
    );
    let _ = writeln!(out);
    let head = [
        "RULE",
        "LINES",
        "FAILED",
        "SUCCEEDED",
        "ATTEMPTS",
        "NO TIME",
    ];
    let rows: Vec<[String; 6]> = st
        .per_rule
        .iter()
        .map(|(s, c)| {
            [
                s.to_string(),
                c.lines.to_string(),
                c.failures.to_string(),
                c.successes.to_string(),
                c.attempts.to_string(),
                c.without_time.to_string(),
            ]
        })
        .collect();
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let mut line = |cells: [&str; 6]| {
        let mut s = format!("  {:<w0$}", cells[0], w0 = w[0]);
        for i in 1..6 {
            let _ = write!(s, "  {:>wi$}", cells[i], wi = w[i]);
        }
        let _ = writeln!(out, "{s}");
    };
    line(head);
    for r in &rows {
        line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]].map(|s| s.as_str()));
    }
    if st.per_rule.iter().any(|(_, c)| c.without_time > 0) {
        let _ = writeln!(
            out,
            "  (NO TIME: matched lines with no readable stamp and none before them; they count, but in no window)"
        );
    }

    let _ = writeln!(out);
    if st.unmatched_mentions == 0 {
        let _ = writeln!(
            out,
            "No unmatched line mentions auth, login, fail, password, SASL or denied."
        );
        return;
    }
    let mut shapes: Vec<&Shape> = st.shapes.values().collect();
    shapes.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then((a.example_file, a.example_line).cmp(&(b.example_file, b.example_line)))
    });
    let n = if samples == 0 {
        shapes.len()
    } else {
        shapes.len().min(samples)
    };
    let _ = writeln!(
        out,
        "UNMATCHED LINES THAT MENTION auth/login/fail/password/sasl/denied: {} in {}{} kinds (showing {n}, most common first)",
        st.unmatched_mentions,
        if st.shapes_full { "more than " } else { "" },
        shapes.len()
    );
    let cw = shapes
        .iter()
        .map(|s| s.count.to_string().len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(out, "  {:>cw$}  EXAMPLE (file:line: text)", "LINES");
    for s in &shapes[..n] {
        let file = st.files.get(s.example_file).map_or("", String::as_str);
        let _ = writeln!(
            out,
            "  {:>cw$}  {file}:{}: {}",
            s.count, s.example_line, s.example
        );
    }
    if n < shapes.len() {
        let rest: u64 = shapes[n..].iter().map(|s| s.count).sum();
        let _ = writeln!(
            out,
            "  … and {} more kinds with {rest} lines (--samples 0 shows all)",
            shapes.len() - n
        );
    }
}

/// Why `line` matches or not, rule by rule.
fn render_line(settings: &Settings, line: &str, out: &mut String) {
    let line = line.trim_end_matches(['\n', '\r']);
    let ctx = ParseCtx::new(settings.tz.clone(), Timestamp::now());
    let _ = writeln!(out, "Line: {}", cut(line, 400));
    let (stamp, rest) = parse_leading_time(line, &ctx);
    match stamp {
        Some(t) => {
            let shown = super::report::rfc3339(t, &settings.tz);
            let _ = writeln!(
                out,
                "Time stamp: {:?} read as {shown} (stamps without a zone are read in {})",
                line[..line.len() - rest.len()].trim_end(),
                settings.zone_name()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "Time stamp: none recognised at the start of the line (read: YYYY-MM-DD HH:MM:SS, RFC 3339, syslog \"Mon DD HH:MM:SS\", TAI64N)"
            );
        }
    }

    let selected = settings.rules().services();
    let mut first: Option<(&'static str, Hit)> = None;
    for name in &selected {
        let mut one = RuleSet::for_services(&[*name], &settings.custom_rules);
        match one.parse(line, &ctx) {
            Some(h) => {
                let _ = writeln!(out, "  {name:<12} MATCH: {}", hit_summary(&h));
                match h.time {
                    Some(t) if stamp.is_none() => {
                        let _ = writeln!(
                            out,
                            "  {:<12}   (time {} read by the rule)",
                            "",
                            super::report::rfc3339(t, &settings.tz)
                        );
                    }
                    Some(_) => {}
                    None => {
                        let _ = writeln!(
                            out,
                            "  {:<12}   (no time read: in a file it takes the previous stamped line's time)",
                            ""
                        );
                    }
                }
                if first.is_none() {
                    first = Some((name, h));
                }
            }
            None => {
                let _ = writeln!(out, "  {name:<12} no match");
            }
        }
    }
    if let Some((name, h)) = &first {
        let _ = writeln!(
            out,
            "Result: matched by {name}: {} (rules are tried in the order above; the first match counts)",
            hit_summary(h)
        );
        return;
    }
    let _ = writeln!(out, "Result: no rule matched.");

    // What might explain it.
    let lower = line.to_ascii_lowercase();
    let mut why = Vec::new();
    for (service, phrases) in PHRASES {
        let found: Vec<&&str> = phrases.iter().filter(|p| lower.contains(**p)).collect();
        if found.is_empty() {
            continue;
        }
        let phrase_list = found
            .iter()
            .map(|p| format!("{p:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        if selected.contains(service) {
            why.push(format!(
                "it contains {phrase_list}, as {service} lines do, but the {service} rule does not accept the rest: the address must stand where {service} writes it, and text an attacker chose (user names, HELO) must not be able to move it"
            ));
        } else if BUILTIN.contains(service) {
            why.push(format!(
                "it contains {phrase_list}, as {service} lines do, but {service} is not among the rules selected (--service)"
            ));
        }
    }
    // Rules not selected that would match.
    for name in BUILTIN {
        if selected.contains(name) {
            continue;
        }
        let mut one = RuleSet::for_services(&[*name], &[]);
        if let Some(h) = one.parse(line, &ctx) {
            why.push(format!(
                "the {name} rule, not selected, matches it ({}): add --service {name}",
                hit_summary(&h)
            ));
        }
    }
    if stamp.is_none() {
        // A stamp put in front: does a rule accept it then?
        let probe = format!("2026-01-01 00:00:00 {line}");
        let mut all = settings.rules();
        if let Some(h) = all.parse(&probe, &ctx) {
            why.push(format!(
                "with a time stamp in front it matches ({} rule): that rule expects the line to start with a stamp it can read",
                h.service
            ));
        }
    }
    let addrs = addresses(line);
    if addrs.is_empty() {
        why.push("it contains no IP address, so there is no one to blame".to_string());
    } else {
        why.push(format!("addresses in it: {}", addrs.join(", ")));
    }
    for w in why {
        let _ = writeln!(out, "  - {w}");
    }
}

/// IP addresses written in `line` (in order, each once).
fn addresses(line: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tok in line.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':')) {
        let tok = tok.trim_end_matches(['.', ':']);
        let tok = tok.strip_prefix('.').unwrap_or(tok);
        if tok.len() < 2 {
            continue;
        }
        // `1.2.3.4:25` comes as one token: try the whole, then without a port.
        let ip = tok.parse::<std::net::IpAddr>().ok().or_else(|| {
            tok.rsplit_once(':')
                .and_then(|(a, _)| a.parse::<std::net::Ipv4Addr>().ok())
                .map(std::net::IpAddr::V4)
        });
        if let Some(ip) = ip {
            let s = crate::rules::canonical_ip(ip).to_string();
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out
}

/// Run `authwatch explain`.
pub(super) fn run(settings: &Settings, args: &ExplainOptions) -> u8 {
    if args.files.is_empty() && args.line.is_none() {
        say("explain needs a FILE or --line TEXT");
        return EXIT_USAGE;
    }
    let words = match Regex::new(WORDS) {
        Ok(r) => r,
        Err(e) => {
            say(e);
            return EXIT_RUNTIME;
        }
    };
    let mut out = String::new();
    let mut failed = false;
    if !args.files.is_empty() {
        let (st, f) = scan_files(settings, args, &words);
        failed = f;
        render_files(&st, args.samples, &mut out);
    }
    if let Some(line) = &args.line {
        if !out.is_empty() {
            out.push('\n');
        }
        render_line(settings, line, &mut out);
    }
    let mut stdout = io::stdout().lock();
    if let Err(e) = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if e.kind() != io::ErrorKind::BrokenPipe {
            say(format_args!("cannot write to standard output: {e}"));
            return EXIT_RUNTIME;
        }
    }
    if failed {
        EXIT_RUNTIME
    } else {
        EXIT_OK
    }
}

#[cfg(test)]
#[path = "explain_tests.rs"]
mod tests;
