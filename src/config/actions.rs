//! Actions (`actions:`, `actions_max_concurrent`): commands run for alerts. What a valid action
//! is (name, absolute executable program, argument templates with known placeholders, timeout,
//! the alert kinds it runs for) is decided here, with each error's location; the actions stage
//! runs the checked specs and expands the templates parsed by [`parse_template`].
//!
//! The checks are pure functions of the spec (and of the program file's metadata), so they
//! live with the config that they check rather than in the runner; the runner calls the same
//! functions when it is given specs directly.

use super::raw::{RawAction, S};
use super::{format_duration, Validator};
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One configured action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionSpec {
    /// Short name for logs and alerts (`[A-Za-z0-9_.-]`, unique).
    pub name: String,
    /// Absolute path of an executable file.
    pub program: PathBuf,
    /// Argument templates; see [`PLACEHOLDERS`]. `{{` and `}}` stand for literal braces.
    pub args: Vec<String>,
    /// The command and everything it started are killed after this long.
    pub timeout: Duration,
    /// Whether the result is quoted in the alert mail (it is always logged).
    pub include_in_alert: bool,
}

/// One action: a command run for alerts of the listed kinds.
#[derive(Debug, Clone)]
pub struct ActionConfig {
    pub spec: ActionSpec,
    /// Alert kinds that run it (`ip_burst`, `subnet_burst`, `compromised`).
    pub on: Vec<String>,
    /// What `authwatch unblock IP` runs to take the action back: an absolute program, then
    /// argument templates (`{ip}`, `{network}`), checked like `program` and `args`. Empty:
    /// the action has no undo.
    pub undo: Vec<String>,
}

impl ActionConfig {
    /// The undo as a spec to run (`NAME.undo`, same timeout), when the action has one.
    pub fn undo_spec(&self) -> Option<ActionSpec> {
        let (program, args) = self.undo.split_first()?;
        Some(ActionSpec {
            name: format!("{}.undo", self.spec.name),
            program: PathBuf::from(program),
            args: args.to_vec(),
            timeout: self.spec.timeout,
            include_in_alert: false,
        })
    }
}

/// Alert kinds an action may run for: each names an attacking address.
pub const ACTION_KINDS: &[&str] = &["ip_burst", "subnet_burst", "compromised"];

/// The placeholders an argument template may use.
pub const PLACEHOLDERS: &[&str] = &["ip", "network", "prefix", "account", "count", "service"];
/// Longest timeout a spec may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// Most commands allowed to run at once.
pub const MAX_CONCURRENT: usize = 64;

/// One problem with a spec. `field` is relative to the action: `name`, `program`, `args[2]`,
/// `timeout`; `arg` is the argument's index when the problem is in one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub field: String,
    pub arg: Option<usize>,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for SpecError {}

pub(crate) fn spec_error(field: &str, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.to_string(),
        arg: None,
        message: message.into(),
    }
}

/// A parsed argument template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Ip,
    Network,
    Prefix,
    Account,
    Count,
    Service,
}

/// Parse one argument template; the message says what is wrong and where.
pub fn parse_template(t: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = t.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|p| p.1) == Some('{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek().map(|p| p.1) == Some('}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let rest = &t[i + 1..];
                let Some(end) = rest.find('}') else {
                    return Err(format!(
                        "`{{` at character {} is not closed (write `{{{{` for a literal brace)",
                        t[..i].chars().count() + 1
                    ));
                };
                let name = &rest[..end];
                let piece = match name {
                    "ip" => Piece::Ip,
                    "network" => Piece::Network,
                    "prefix" => Piece::Prefix,
                    "account" => Piece::Account,
                    "count" => Piece::Count,
                    "service" => Piece::Service,
                    _ => {
                        return Err(format!(
                            "unknown placeholder `{{{name}}}` (known: {})",
                            PLACEHOLDERS
                                .iter()
                                .map(|p| format!("{{{p}}}"))
                                .collect::<Vec<_>>()
                                .join(" ")
                        ))
                    }
                };
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(piece);
                // Skip the name and the closing brace.
                for _ in 0..name.chars().count() + 1 {
                    chars.next();
                }
            }
            '}' => {
                return Err(format!(
                    "`}}` at character {} has no opening `{{` (write `}}}}` for a literal brace)",
                    t[..i].chars().count() + 1
                ))
            }
            _ => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// Check one argument template (for config validation).
pub fn validate_arg(template: &str) -> Result<(), String> {
    parse_template(template).map(|_| ())
}

/// Whether a (valid) argument template uses `{ip}`: refused for subnet alerts, where it could
/// only be the network's first address.
pub fn uses_ip(template: &str) -> bool {
    parse_template(template).is_ok_and(|p| p.contains(&Piece::Ip))
}

/// Check that `program` is an absolute path to an executable regular file that not everyone may
/// change (authwatch typically runs as root).
pub fn validate_program(program: &Path) -> Result<(), String> {
    if !program.is_absolute() {
        return Err(format!(
            "{} is not an absolute path (commands are run directly, without a shell or PATH look-up)",
            program.display()
        ));
    }
    let meta = std::fs::metadata(program).map_err(|e| format!("{}: {e}", program.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", program.display()));
    }
    let mode = meta.permissions().mode();
    if mode & 0o111 == 0 {
        return Err(format!(
            "{} is not executable (chmod +x it)",
            program.display()
        ));
    }
    if mode & 0o002 != 0 {
        return Err(format!(
            "{} is writable by every user; refusing to run it",
            program.display()
        ));
    }
    Ok(())
}

/// Every problem with one spec (empty when it is fine). Checks the file system for `program`.
pub fn validate_spec(spec: &ActionSpec) -> Vec<SpecError> {
    let mut errors = Vec::new();
    if spec.name.is_empty()
        || spec.name.len() > 64
        || !spec
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        errors.push(spec_error(
            "name",
            format!(
                "{:?}: use 1 to 64 of the characters A-Z a-z 0-9 _ . -",
                spec.name
            ),
        ));
    }
    if let Err(m) = validate_program(&spec.program) {
        errors.push(spec_error("program", m));
    }
    for (i, a) in spec.args.iter().enumerate() {
        if a.contains('\0') {
            errors.push(SpecError {
                field: format!("args[{i}]"),
                arg: Some(i),
                message: "contains a NUL character".into(),
            });
        } else if let Err(m) = validate_arg(a) {
            errors.push(SpecError {
                field: format!("args[{i}]"),
                arg: Some(i),
                message: m,
            });
        }
    }
    if spec.timeout.is_zero() || spec.timeout > MAX_TIMEOUT {
        errors.push(spec_error(
            "timeout",
            format!("must be more than 0 and at most {}s", MAX_TIMEOUT.as_secs()),
        ));
    }
    errors
}

/// Every problem with a list of specs: each spec's, as `(index, error)`, plus duplicate names.
pub fn validate_specs(specs: &[ActionSpec]) -> Vec<(usize, SpecError)> {
    let mut errors = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        errors.extend(validate_spec(s).into_iter().map(|e| (i, e)));
        if specs[..i].iter().any(|o| o.name == s.name) {
            errors.push((
                i,
                spec_error("name", format!("{:?} is used by an earlier action", s.name)),
            ));
        }
    }
    errors
}

/// Check `max_concurrent` (1 to [`MAX_CONCURRENT`]).
pub fn validate_max_concurrent(n: usize) -> Result<(), String> {
    if n == 0 || n > MAX_CONCURRENT {
        Err(format!("must be between 1 and {MAX_CONCURRENT}"))
    } else {
        Ok(())
    }
}

impl Validator {
    pub(super) fn actions(&mut self, raw: &[RawAction]) -> Vec<ActionConfig> {
        let mut out = Vec::new();
        for (i, a) in raw.iter().enumerate() {
            let field = format!("actions[{i}]");
            let timeout = self.duration(
                &a.timeout,
                &format!("{field}.timeout"),
                Duration::from_secs(10),
                Duration::from_millis(100),
            );
            if timeout > MAX_TIMEOUT {
                self.issue(
                    a.timeout.as_ref(),
                    &format!("{field}.timeout"),
                    format!("must be at most {}", format_duration(MAX_TIMEOUT)),
                );
            }
            let mut on = Vec::new();
            match &a.on {
                None => on.extend(["ip_burst", "subnet_burst"].map(String::from)),
                Some(list) if list.value.is_empty() => self.issue(
                    Some(list),
                    &format!("{field}.on"),
                    format!("name at least one alert kind: {}", ACTION_KINDS.join(", ")),
                ),
                Some(list) => {
                    for (k, kind) in list.value.iter().enumerate() {
                        if ACTION_KINDS.contains(&kind.value.as_str()) {
                            on.push(kind.value.clone());
                        } else {
                            self.issue(
                                Some(kind),
                                &format!("{field}.on[{k}]"),
                                format!(
                                    "unknown alert kind {:?}; actions run for: {}",
                                    kind.value,
                                    ACTION_KINDS.join(", ")
                                ),
                            );
                        }
                    }
                }
            }
            out.push(ActionConfig {
                spec: ActionSpec {
                    name: a.name.value.clone(),
                    program: PathBuf::from(&a.program.value),
                    args: a.args.iter().flatten().map(|s| s.value.clone()).collect(),
                    timeout,
                    include_in_alert: a.include_in_alert.unwrap_or(true),
                },
                on,
                undo: self.action_undo(a, &field),
            });
        }
        // `{ip}` of a subnet alert could only be the network's first address: a program given
        // it would block that one address and report success.
        for (i, a) in out.iter().enumerate() {
            if !a.on.iter().any(|k| k == "subnet_burst") {
                continue;
            }
            for (k, arg) in a.spec.args.iter().enumerate() {
                if uses_ip(arg) {
                    self.issue(
                        raw[i].args.as_ref().and_then(|v| v.get(k)),
                        &format!("actions[{i}].args[{k}]"),
                        format!(
                            "`{{ip}}` is refused in an action that runs for subnet_burst alerts{}: it would be only the network's first address. Use `{{network}}` (the subnet in CIDR for subnet alerts, the address as /32 or /128 for the others), or limit the action with `on: [ip_burst]`",
                            if raw[i].on.is_none() { " (the default `on`)" } else { "" }
                        ),
                    );
                }
            }
        }
        let specs: Vec<ActionSpec> = out.iter().map(|a| a.spec.clone()).collect();
        for (i, e) in validate_specs(&specs) {
            let a = &raw[i];
            let at = match (e.field.as_str(), e.arg) {
                (_, Some(k)) => a.args.as_ref().and_then(|v| v.get(k)),
                ("program", _) => Some(&a.program),
                _ => Some(&a.name),
            };
            self.issue(at, &format!("actions[{i}].{}", e.field), e.message);
        }
        out
    }

    /// `actions[i].undo`: a program (absolute, executable, not writable by all), then
    /// argument templates with the placeholders of `args`; `{ip}` is refused when the action
    /// runs for subnet alerts, as in `args`.
    fn action_undo(&mut self, a: &RawAction, field: &str) -> Vec<String> {
        let Some(list) = &a.undo else {
            return Vec::new();
        };
        let Some((program, args)) = list.value.split_first() else {
            self.issue(
                Some(list),
                &format!("{field}.undo"),
                "give the program and its arguments, e.g. [/usr/local/lib/authwatch/nft-block, --remove, \"{network}\"], or leave undo out".to_string(),
            );
            return Vec::new();
        };
        if let Err(m) = validate_program(Path::new(&program.value)) {
            self.issue(Some(program), &format!("{field}.undo[0]"), m);
        }
        let subnet =
            a.on.as_ref()
                .is_none_or(|on| on.value.iter().any(|k| k.value == "subnet_burst"));
        for (k, arg) in args.iter().enumerate() {
            let at = format!("{field}.undo[{}]", k + 1);
            if arg.value.contains('\0') {
                self.issue(Some(arg), &at, "contains a NUL character".to_string());
            } else if let Err(m) = validate_arg(&arg.value) {
                self.issue(Some(arg), &at, m);
            } else if subnet && uses_ip(&arg.value) {
                self.issue(
                    Some(arg),
                    &at,
                    "`{ip}` is refused in the undo of an action that runs for subnet_burst alerts: use `{network}` (the address as /32 or /128, or the subnet)".to_string(),
                );
            }
        }
        list.value.iter().map(|s| s.value.clone()).collect()
    }

    /// `actions_max_concurrent`: 1 to [`MAX_CONCURRENT`].
    pub(super) fn actions_max_concurrent(&mut self, raw: &S<u64>) -> usize {
        self.count(raw, "actions_max_concurrent", 4, 1, MAX_CONCURRENT as u64) as usize
    }
}

#[cfg(test)]
mod undo_tests {
    use crate::config::Config;
    use std::path::Path;

    fn load(action: &str) -> Result<Config, String> {
        Config::from_yaml(
            &format!("state_dir: /tmp/unused\nsources: [{{path: /tmp/unused.log}}]\nmail: {{to: [a@b.c]}}\nactions:\n  - {action}\n"),
            "t.yaml",
            Path::new("/"),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn an_undo_is_checked_like_the_action() {
        let cfg = load(
            "{name: fw, program: /bin/true, args: ['{network}'], undo: [/bin/echo, --remove, '{network}']}",
        )
        .unwrap();
        let spec = cfg.actions[0].undo_spec().unwrap();
        assert_eq!(spec.name, "fw.undo");
        assert_eq!(spec.program, Path::new("/bin/echo"));
        assert_eq!(spec.args, ["--remove", "{network}"]);
        assert!(load("{name: fw, program: /bin/true}").unwrap().actions[0]
            .undo_spec()
            .is_none());
        let table: &[(&str, &str)] = &[
            ("undo: []", "actions[0].undo: give the program and its arguments"),
            ("undo: [echo, x]", "actions[0].undo[0]: echo is not an absolute path"),
            ("undo: [/bin/echo, '{nope}']", "actions[0].undo[1]: unknown placeholder `{nope}`"),
            (
                "undo: [/bin/echo, '{ip}']",
                "actions[0].undo[1]: `{ip}` is refused in the undo of an action that runs for subnet_burst",
            ),
        ];
        for (undo, want) in table {
            let e = load(&format!("{{name: fw, program: /bin/true, {undo}}}")).unwrap_err();
            assert!(e.contains(want), "{undo}: {e}");
        }
        // `{ip}` is fine for an action that runs for single addresses only.
        load("{name: fw, program: /bin/true, on: [ip_burst], undo: [/bin/echo, '{ip}']}").unwrap();
    }
}
