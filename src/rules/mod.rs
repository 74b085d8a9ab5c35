//! Rules turn one log line into a [`Hit`]: who (IP, taken only from the position the server
//! writes it), which account, which service, how many attempts, and when (log time).
//! Rules know nothing of thresholds; `detect` does the counting.
//!
//! Each rule reads only its own program's lines, with its words at the position that program
//! writes them (the syslog tag right after the stamp and host, a file's own layout), never a
//! keyword found anywhere: other services' lines carry client text (senders, HELO names,
//! message ids) that may copy any rule's words (`cross_tests.rs` plants them in every service).

use aho_corasick::{AhoCorasick, MatchKind};
use jiff::{tz::TimeZone, Timestamp};
use memchr::memmem;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Built-in rule names, the service-name interner and address canonicalisation are config's
/// (a source names services, and the allowlist matches canonical addresses).
pub use crate::config::{canonical_ip, intern_service, BUILTIN};

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
    /// Texts of which every line the rule can match (or learn from, for a rule with state)
    /// contains at least one: on a line holding none of them `parse` returns `None` and
    /// changes nothing. [`RuleSet`] searches them all at once, so most lines are skipped
    /// after one pass. `None`: any line may matter (no prefilter for the whole set).
    fn literals(&self) -> Option<Vec<Vec<u8>>> {
        None
    }
    /// Whether `parse` is a pure function of the line (no state carried between lines), so
    /// that parts of a log can be matched on different threads. Rules that pair lines of one
    /// session keep the default, `false`, and see their lines in order.
    fn stateless(&self) -> bool {
        false
    }
}

/// `literals` in the form [`Rule::literals`] returns.
pub(crate) fn literal_list(l: &[&str]) -> Option<Vec<Vec<u8>>> {
    Some(l.iter().map(|s| s.as_bytes().to_vec()).collect())
}

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

/// The rules applied to one source: each line is offered to each rule until one matches.
/// One combined prefilter (Aho-Corasick over every rule's [`Rule::literals`]) comes first:
/// a line holding none of them is not offered to any rule.
pub struct RuleSet {
    rules: Vec<Box<dyn Rule>>,
    /// Over all rules' literals; `None` when a rule has none (or one that is not ASCII: the
    /// search runs on raw bytes, rules see invalid UTF-8 replaced).
    prefilter: Option<AhoCorasick>,
    /// Per rule: its literals (empty: the rule may match any line).
    literals: Vec<Vec<memmem::Finder<'static>>>,
    stateless: Vec<bool>,
}

impl RuleSet {
    pub fn new(rules: Vec<Box<dyn Rule>>) -> Self {
        let mut literals = Vec::with_capacity(rules.len());
        let mut all: Vec<Vec<u8>> = Vec::new();
        let mut every_rule_has_some = true;
        for r in &rules {
            match r.literals() {
                Some(l) if !l.is_empty() && l.iter().all(|x| !x.is_empty() && x.is_ascii()) => {
                    literals.push(
                        l.iter()
                            .map(|x| memmem::Finder::new(x).into_owned())
                            .collect(),
                    );
                    all.extend(l);
                }
                _ => {
                    every_rule_has_some = false;
                    literals.push(Vec::new());
                }
            }
        }
        let prefilter = if every_rule_has_some && !all.is_empty() {
            all.sort();
            all.dedup();
            // Leftmost-first: the kind the vectorised (Teddy) search supports; any match will do.
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostFirst)
                .build(&all)
                .ok()
        } else {
            None
        };
        let stateless = rules.iter().map(|r| r.stateless()).collect();
        RuleSet {
            rules,
            prefilter,
            literals,
            stateless,
        }
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
        if let Some(pf) = &self.prefilter {
            if !pf.is_match(line.as_bytes()) {
                return None;
            }
        }
        let hit = self.rules.iter_mut().find_map(|r| r.parse(line, ctx));
        note_unread_stamp(hit, line, ctx)
    }

    /// The combined prefilter: a line in which it finds nothing matches no rule. `None` when
    /// some rule may match any line.
    pub fn prefilter(&self) -> Option<&AhoCorasick> {
        self.prefilter.as_ref()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether rule `i` keeps no state between lines (see [`Rule::stateless`]).
    pub fn is_stateless(&self, i: usize) -> bool {
        self.stateless[i]
    }

    /// Whether rule `i` may match `line`: it holds one of the rule's literals (or the rule
    /// has none).
    pub fn may_match(&self, i: usize, line: &[u8]) -> bool {
        let l = &self.literals[i];
        l.is_empty() || l.iter().any(|f| f.find(line).is_some())
    }

    /// Offer `line` to rule `i` alone.
    pub fn parse_with(&mut self, i: usize, line: &str, ctx: &ParseCtx) -> Option<Hit> {
        let hit = self.rules[i].parse(line, ctx);
        note_unread_stamp(hit, line, ctx)
    }

    /// Offer `line` to the rules from `first` on, in order, until one matches: the rest of
    /// [`RuleSet::parse`] once the rules before `first` have returned `None`.
    pub fn parse_from(&mut self, first: usize, line: &str, ctx: &ParseCtx) -> Option<Hit> {
        let hit = self
            .rules
            .iter_mut()
            .skip(first)
            .find_map(|r| r.parse(line, ctx));
        note_unread_stamp(hit, line, ctx)
    }

    /// The services in this set.
    pub fn services(&self) -> Vec<&'static str> {
        self.rules.iter().map(|r| r.service()).collect()
    }
}

/// Hits, so far in this process, from lines that start with a time stamp no rule could read
/// (`Aug 3 10:00:00`, one space; `2026/08/03 10:00:00`): they count at the time they are read
/// (the engine places a hit without a time at its clock's now) rather than being dropped.
static UNREAD_STAMPS: AtomicU64 = AtomicU64::new(0);

/// Longest part of an unread stamp quoted in the warning.
const MAX_QUOTED_STAMP: usize = 40;

/// Number of hits so far whose line's stamp could not be read (see [`RuleSet::parse`]).
pub fn unread_stamps() -> u64 {
    UNREAD_STAMPS.load(Ordering::Relaxed)
}

/// Counts a hit without a time whose line starts with a stamp we cannot read; the first one
/// in the process is logged as a warning, with the stamp (stamp-shaped characters only, see
/// `courier::shared::loose_stamp`, so no client text).
fn note_unread_stamp(hit: Option<Hit>, line: &str, ctx: &ParseCtx) -> Option<Hit> {
    let h = hit?;
    if h.time.is_none() {
        let (_, rest, unread) = courier::shared::stamp(line, ctx);
        if unread && UNREAD_STAMPS.fetch_add(1, Ordering::Relaxed) == 0 {
            let stamp = line[..line.len() - rest.len()].trim_end();
            let stamp = &stamp[..stamp.len().min(MAX_QUOTED_STAMP)];
            tracing::warn!(
                stamp,
                service = h.service,
                "log lines start with a time stamp authwatch cannot read; their hits carry no log time, and the agent places them at the time it reads them (warned once)"
            );
        }
    }
    Some(h)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of the fuzz corpus (real and crafted lines of every service).
    fn corpus_lines() -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse_line");
        let mut lines = Vec::new();
        for entry in std::fs::read_dir(dir).expect("fuzz/corpus/parse_line") {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            lines.extend(
                text.split('\n')
                    .map(|l| l.trim_end_matches('\r').to_string()),
            );
        }
        assert!(lines.len() > 500);
        lines
    }

    #[test]
    fn every_hit_holds_one_of_its_rules_literals_and_the_prefilter_changes_nothing() {
        let ctx = ParseCtx::new(TimeZone::UTC, "2026-11-24T00:00:00Z".parse().unwrap());
        let lines = corpus_lines();
        let mut hits = 0;
        for name in BUILTIN {
            let rule = builtin(name).unwrap();
            let literals = rule.literals().expect("built-in rules have literals");
            let mut rule = builtin(name).unwrap();
            for line in &lines {
                if rule.parse(line, &ctx).is_some() {
                    hits += 1;
                    assert!(
                        literals
                            .iter()
                            .any(|l| memmem::find(line.as_bytes(), l).is_some()),
                        "{name} matched a line without its literals: {line}"
                    );
                }
            }
        }
        assert!(hits > 100, "{hits}");
        // The whole set, with and without the combined prefilter, line by line in order.
        let mut with = RuleSet::all_builtin();
        assert!(with.prefilter().is_some());
        let mut without = RuleSet::all_builtin();
        without.prefilter = None;
        for line in &lines {
            assert_eq!(with.parse(line, &ctx), without.parse(line, &ctx), "{line}");
        }
    }

    #[test]
    fn a_rule_without_literals_turns_the_combined_prefilter_off() {
        struct Any;
        impl Rule for Any {
            fn service(&self) -> &'static str {
                "any"
            }
            fn parse(&mut self, _: &str, _: &ParseCtx) -> Option<Hit> {
                None
            }
        }
        let rules: Vec<Box<dyn Rule>> = vec![builtin("exim").unwrap(), Box::new(Any)];
        let set = RuleSet::new(rules);
        assert!(set.prefilter().is_none());
        assert!(set.is_stateless(0) && !set.is_stateless(1));
        assert!(set.may_match(1, b"anything"));
        assert!(!set.may_match(0, b"anything"));
    }
}

#[cfg(test)]
#[path = "cross_tests.rs"]
mod cross_tests;
