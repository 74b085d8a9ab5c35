//! Rules turn one log line into a [`Hit`]: who (IP, taken only from the position the server
//! writes it), which account, which service, how many attempts, and when (log time).
//! Rules know nothing of thresholds; `detect` does the counting.

use jiff::{tz::TimeZone, Timestamp};
use std::net::IpAddr;

pub mod courier;
pub mod custom;
pub mod cyrus;
pub mod dovecot;
pub mod exim;
pub mod horde;
pub mod opensmtpd;
pub mod postfix;
pub mod roundcube;
pub mod sendmail;
pub mod sogo;
pub mod squirrelmail;
pub mod time;
pub mod uwimap;

/// One service's recogniser. Rules may keep a little bounded state (Dovecot pairs per-attempt
/// lines with the summary line of the same session), hence `&mut self`.
pub trait Rule: Send {
    /// The service name, as in the config (`exim`, `dovecot`, ...).
    fn service(&self) -> &'static str;
    /// One line (without its newline) to a hit, or `None`. Must be cheap for lines that are not
    /// candidates: a literal prefilter before anything else, no allocation.
    fn parse(&mut self, line: &str, ctx: &ParseCtx) -> Option<Hit>;
}

/// Names of the built-in rules, in the order they are tried.
pub const BUILTIN: &[&str] = &[
    "exim",
    "postfix",
    "dovecot",
    "courier",
    "cyrus",
    "sendmail",
    "uwimap",
    "opensmtpd",
    "roundcube",
    "sogo",
    "horde",
    "squirrelmail",
];

/// A built-in rule by service name.
pub fn builtin(name: &str) -> Option<Box<dyn Rule>> {
    match name {
        "exim" => Some(Box::new(exim::EximRule::new())),
        "postfix" => Some(Box::new(postfix::PostfixRule::new())),
        "dovecot" => Some(Box::new(dovecot::DovecotRule::new())),
        "courier" => Some(Box::new(courier::CourierRule::new())),
        "cyrus" => Some(Box::new(cyrus::CyrusRule::new())),
        "sendmail" => Some(Box::new(sendmail::SendmailRule::new())),
        "uwimap" => Some(Box::new(uwimap::UwImapRule::new())),
        "opensmtpd" => Some(Box::new(opensmtpd::OpenSmtpdRule::new())),
        "roundcube" => Some(Box::new(roundcube::RoundcubeRule::new())),
        "sogo" => Some(Box::new(sogo::SogoRule::new())),
        "horde" => Some(Box::new(horde::HordeRule::new())),
        "squirrelmail" => Some(Box::new(squirrelmail::SquirrelmailRule::new())),
        _ => None,
    }
}

/// A service name as a `&'static str`: the built-in one, or a leaked copy for custom rules
/// (a handful per process, made at config load or state restore).
pub fn intern_service(name: &str) -> &'static str {
    use std::sync::Mutex;
    static CUSTOM: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    if let Some(b) = BUILTIN.iter().find(|b| **b == name) {
        return b;
    }
    let mut known = CUSTOM.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = known.iter().find(|k| **k == name) {
        return k;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    known.push(leaked);
    leaked
}

/// The rules applied to one source: each line is offered to each rule until one matches.
pub struct RuleSet {
    rules: Vec<Box<dyn Rule>>,
}

impl RuleSet {
    pub fn new(rules: Vec<Box<dyn Rule>>) -> Self {
        RuleSet { rules }
    }

    /// All built-in rules.
    pub fn all_builtin() -> Self {
        RuleSet::new(BUILTIN.iter().filter_map(|n| builtin(n)).collect())
    }

    /// The named built-in rules; unknown names are skipped (the config has checked them).
    pub fn named<S: AsRef<str>>(names: &[S]) -> Self {
        RuleSet::new(names.iter().filter_map(|n| builtin(n.as_ref())).collect())
    }

    /// The named rules, built-in or custom; an empty list means every built-in and custom rule.
    pub fn for_services<S: AsRef<str>>(names: &[S], custom: &[custom::CustomRule]) -> Self {
        let wanted = |n: &str| names.is_empty() || names.iter().any(|w| w.as_ref() == n);
        let mut rules: Vec<Box<dyn Rule>> = BUILTIN
            .iter()
            .filter(|n| wanted(n))
            .filter_map(|n| builtin(n))
            .collect();
        for c in custom {
            if wanted(c.name()) {
                rules.push(Box::new(c.clone()));
            }
        }
        RuleSet::new(rules)
    }

    pub fn parse(&mut self, line: &str, ctx: &ParseCtx) -> Option<Hit> {
        self.rules.iter_mut().find_map(|r| r.parse(line, ctx))
    }

    /// The services in this set.
    pub fn services(&self) -> Vec<&'static str> {
        self.rules.iter().map(|r| r.service()).collect()
    }
}

/// Whether the line reports a failed or a successful login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HitKind {
    Failure,
    Success,
}

/// One recognised event from one log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Log time of the line, when the line carries a stamp we could read.
    pub time: Option<Timestamp>,
    /// The peer address, canonical (`::ffff:a.b.c.d` becomes IPv4).
    pub ip: IpAddr,
    /// The account tried, as the server logged it (attacker-chosen text), if any.
    pub user: Option<String>,
    /// Name of the service rule that matched, e.g. `exim`.
    pub service: &'static str,
    /// Number of attempts this line stands for (at least 1).
    pub attempts: u32,
    pub kind: HitKind,
}

/// What a rule needs besides the line: the zone for stamps that carry none, and "now" to infer
/// the year of yearless syslog stamps.
#[derive(Debug, Clone)]
pub struct ParseCtx {
    pub tz: TimeZone,
    pub now: Timestamp,
}

impl ParseCtx {
    pub fn new(tz: TimeZone, now: Timestamp) -> Self {
        ParseCtx { tz, now }
    }
}

/// Canonicalise an address: IPv4-mapped IPv6 becomes plain IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}
