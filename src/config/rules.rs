//! Rule names a source may use: the built-in rule sets and the administrator's custom rules
//! (`custom_rules:`), each checked here with the location of its error.
//!
//! A custom rule is checked by compiling it ([`CustomRule::new`]): the compiled rule is what the
//! rules stage runs, so compiling it once at load both validates it and hands it over ready.

use super::raw::RawCustomRule;
use super::Validator;
use memchr::memmem::Finder;
use regex::Regex;

/// Names of the built-in rules, in the order they are tried. Owned here: a source may name
/// them, and a custom rule may not take one of them; the rules stage builds one rule per name.
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

/// Known services (rule sets) a source may name.
pub const SERVICES: &[&str] = BUILTIN;

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

/// A custom rule, compiled.
#[derive(Debug, Clone)]
pub struct CustomRule {
    pub(crate) name: &'static str,
    pub(crate) literal: Finder<'static>,
    pub(crate) regex: Regex,
    pub(crate) ip: usize,
    pub(crate) user: Option<usize>,
    pub(crate) time: Option<usize>,
    pub(crate) attempts: Option<usize>,
}

/// Why a custom rule cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomRuleError {
    /// The regex does not compile (message from the regex crate).
    Regex(String),
    /// The regex has no `(?P<ip>...)` group.
    NoIpGroup,
    /// The literal is empty.
    EmptyLiteral,
}

impl std::fmt::Display for CustomRuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CustomRuleError::Regex(e) => write!(f, "the regex does not compile: {e}"),
            CustomRuleError::NoIpGroup => {
                write!(f, "the regex needs a named group `ip`, e.g. (?P<ip>\\S+)")
            }
            CustomRuleError::EmptyLiteral => {
                write!(
                    f,
                    "must not be empty: give text that every matching line contains"
                )
            }
        }
    }
}

impl CustomRule {
    /// Compile a rule. `name` is kept for the life of the process (rules are few and made at
    /// config load).
    pub fn new(name: &str, literal: &str, regex: &str) -> Result<CustomRule, CustomRuleError> {
        if literal.is_empty() {
            return Err(CustomRuleError::EmptyLiteral);
        }
        let re = regex::RegexBuilder::new(regex)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| CustomRuleError::Regex(e.to_string()))?;
        let group = |g: &str| re.capture_names().position(|n| n == Some(g));
        let ip = group("ip").ok_or(CustomRuleError::NoIpGroup)?;
        Ok(CustomRule {
            name: intern_service(name),
            literal: Finder::new(literal.as_bytes()).into_owned(),
            ip,
            user: group("user"),
            time: group("time"),
            attempts: group("attempts"),
            regex: re,
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl Validator {
    /// `custom_rules`: names unique and not built-in, literal not empty, regex compiles with an
    /// `ip` group.
    pub(super) fn custom_rules(&mut self, raw: &[RawCustomRule]) -> Vec<CustomRule> {
        let mut out: Vec<CustomRule> = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let field = format!("custom_rules[{i}]");
            let name = r.name.value.trim();
            let name_ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !name_ok {
                self.issue(
                    Some(&r.name),
                    &format!("{field}.name"),
                    "use letters, digits, - and _ only",
                );
                continue;
            }
            if SERVICES.contains(&name) || out.iter().any(|c| c.name() == name) {
                self.issue(
                    Some(&r.name),
                    &format!("{field}.name"),
                    format!("{name:?} is already a rule name"),
                );
                continue;
            }
            match CustomRule::new(name, &r.literal.value, &r.regex.value) {
                Ok(c) => out.push(c),
                Err(CustomRuleError::EmptyLiteral) => self.issue(
                    Some(&r.literal),
                    &format!("{field}.literal"),
                    CustomRuleError::EmptyLiteral.to_string(),
                ),
                Err(e) => self.issue(Some(&r.regex), &format!("{field}.regex"), e.to_string()),
            }
        }
        out
    }
}
