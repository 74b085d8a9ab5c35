//! Rule names a source may use: the built-in rule sets and the administrator's custom rules
//! (`custom_rules:`), each checked here with the location of its error.
//!
//! A custom rule is checked by compiling it ([`CustomRule::new`]): the compiled rule is what the
//! rules stage runs, so compiling it once at load both validates it and hands it over ready.

use super::raw::RawCustomRule;
use super::{CustomRule, CustomRuleError, Validator};

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
