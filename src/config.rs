//! Configuration: the YAML file an administrator writes, read with serde-saphyr into raw
//! structs (unknown keys and wrong types are errors), then validated into [`Config`], the form
//! the rest of authwatch uses (durations, addresses, paths resolved, secrets loaded).
//!
//! Every problem found is reported, not just the first: each top-level section is parsed on its
//! own (with its real line numbers), so an error in `mail:` does not hide one in `detect:`, and
//! semantic checks (durations, ranges, addresses, files) collect all their errors. Each error
//! names the file, the line and column, and the field.

use jiff::tz::TimeZone;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The configuration shipped with authwatch, used when `--config` is not given.
pub const EXAMPLE_CONFIG: &str = include_str!("../config.example.yaml");
/// The name the embedded configuration is reported under.
pub const EXAMPLE_CONFIG_NAME: &str = "config.example.yaml (embedded)";

// ---------------------------------------------------------------------------------------------
// Validated configuration

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config came from (for messages).
    pub origin: String,
    /// The file it was read from (`None` for the embedded one); SIGHUP reads it again.
    pub path: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub host: HostConfig,
    pub sources: Vec<SourceConfig>,
    pub follow: FollowConfig,
    /// Zone for log stamps that carry none.
    pub time_zone: TimeZone,
    pub detect: DetectConfig,
    pub allowlist: AllowlistConfig,
    pub alerts: AlertsConfig,
    pub health: HealthConfig,
    /// Where the Prometheus endpoint listens (loopback only), if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Rules written by the administrator.
    pub custom_rules: Vec<crate::rules::custom::CustomRule>,
    /// Folder with the administrator's own templates; `None` uses the built-in ones.
    pub templates_dir: Option<PathBuf>,
    /// Commands run for alerts (block the IP, ...).
    pub actions: Vec<ActionConfig>,
    /// How many action commands run at once.
    pub actions_max_concurrent: usize,
    pub mail: MailConfig,
}

#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    pub name: Option<String>,
    pub ip: Option<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    Beginning,
    End,
}

/// Where a source's lines come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// A log file, followed across rotations.
    File(PathBuf),
    /// The systemd journal, read through `journalctl -f -o json`.
    Journal(JournalSourceConfig),
    /// Standard input (`authwatch run --stdin`).
    Stdin,
}

/// A journal source: which units, and (for tests or other machines' journals) which files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSourceConfig {
    /// `-u` units; empty follows every entry.
    pub units: Vec<String>,
    /// The journalctl program.
    pub journalctl: PathBuf,
    /// Read the journal files in this folder (`--directory`) instead of the system journal.
    pub directory: Option<PathBuf>,
    /// Read these journal files (`--file`) instead of the system journal.
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub kind: SourceKind,
    pub start: Start,
    /// Rules applied to this source's lines (built-in or custom names); empty means all.
    pub services: Vec<String>,
}

impl SourceConfig {
    /// How the source is named in logs, alerts, metrics and `state.json`: the file's path,
    /// `journal:UNIT,UNIT` (plus the files or folder read, if any), or `stdin`.
    pub fn name(&self) -> String {
        match &self.kind {
            SourceKind::File(p) => p.display().to_string(),
            SourceKind::Journal(j) => {
                let mut s = if j.units.is_empty() {
                    "journal:*".to_string()
                } else {
                    format!("journal:{}", j.units.join(","))
                };
                if let Some(d) = &j.directory {
                    s.push_str(&format!(" (directory {})", d.display()));
                }
                for f in &j.files {
                    s.push_str(&format!(" (file {})", f.display()));
                }
                s
            }
            SourceKind::Stdin => "stdin".to_string(),
        }
    }

    /// The file followed, for file sources.
    pub fn file(&self) -> Option<&Path> {
        match &self.kind {
            SourceKind::File(p) => Some(p),
            _ => None,
        }
    }

    /// Standard input, all rules.
    pub fn stdin() -> SourceConfig {
        SourceConfig {
            kind: SourceKind::Stdin,
            start: Start::Beginning,
            services: Vec::new(),
        }
    }
}

/// One action: a command run for alerts of the listed kinds.
#[derive(Debug, Clone)]
pub struct ActionConfig {
    pub spec: crate::actions::ActionSpec,
    /// Alert kinds that run it (`ip_burst`, `subnet_burst`, `compromised`).
    pub on: Vec<String>,
}

/// Alert kinds an action may run for: each names an attacking address.
pub const ACTION_KINDS: &[&str] = &["ip_burst", "subnet_burst", "compromised"];

#[derive(Debug, Clone)]
pub struct FollowConfig {
    pub poll_interval: Duration,
    pub max_line_bytes: usize,
    /// How often checkpoints and windows are saved to `state_dir/state.json`.
    pub checkpoint_interval: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct Threshold {
    pub attempts: u32,
    pub window: Duration,
}

#[derive(Debug, Clone)]
pub struct DetectConfig {
    pub per_ip: Threshold,
    /// Cap on tracked keys per map (IPs, subnets, accounts); the least recently seen is
    /// evicted beyond it.
    pub max_tracked_ips: usize,
    pub per_subnet: Option<SubnetConfig>,
    pub per_account: Option<AccountConfig>,
    /// Failures within `per_ip.window` before a successful login that make it urgent.
    /// `None`: compromised-account alerts are off.
    pub compromised_min_failures: Option<u64>,
}

/// When problems of authwatch itself are reported by mail (and in the log).
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// A source that cannot be read for this long is reported.
    pub source_unreadable_after: Duration,
    /// A source without any new line for this long is reported (`None`: never).
    pub source_silent_after: Option<Duration>,
    /// SMTP failing for this long is reported (by mail once it works again).
    pub smtp_failing_after: Duration,
}

/// Attempts summed over a prefix.
#[derive(Debug, Clone)]
pub struct SubnetConfig {
    pub threshold: Threshold,
    pub ipv6_prefix: u8,
    /// `None`: IPv4 addresses are not grouped.
    pub ipv4_prefix: Option<u8>,
    /// Distinct addresses within the window needed for a subnet alert.
    pub min_addresses: usize,
}

/// Many IPs against one account.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    pub threshold: Threshold,
    pub distinct_ips: usize,
}

/// Addresses that are never counted.
#[derive(Debug, Clone, Default)]
pub struct AllowlistConfig {
    pub nets: Vec<ipnet::IpNet>,
    /// A successful login from an IP clears its failure count (for users who mistype).
    pub reset_on_success: bool,
}

impl AllowlistConfig {
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }
}

#[derive(Debug, Clone)]
pub struct AlertsConfig {
    pub cooldown: Duration,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    /// 0: no cap.
    pub max_per_hour: u32,
    /// Open incidents remembered at most (the quietest are closed early beyond it).
    pub max_open_incidents: usize,
    /// How many accounts are listed by name in an alert.
    pub top_accounts: usize,
    /// How many recent log lines an alert quotes.
    pub log_lines: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    None,
    Starttls,
    Tls,
}

/// A secret: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MASKED")
    }
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Where the password was read from (checked for loose permissions).
    pub password_file: Option<PathBuf>,
    /// Extra CA certificate (PEM) to trust, for a relay with a private CA.
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    /// Name sent in EHLO; defaults to the host name.
    pub helo_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct MailConfig {
    pub from: String,
    pub to: Vec<String>,
    pub subject_prefix: String,
    pub smtp: Option<SmtpConfig>,
    /// Folder where `.eml` files are written when no SMTP server is configured.
    pub outbox_dir: PathBuf,
    /// How delivery is retried.
    pub retry: crate::mail::RetryPolicy,
    /// Add an HTML part (multipart/alternative) to each alert.
    pub html: bool,
}

// ---------------------------------------------------------------------------------------------
// Errors

/// One problem in the configuration, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub file: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
    /// Dotted path of the field, e.g. `detect.per_ip.window`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All the problems found in one configuration.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        writeln!(
            f,
            "{n} configuration error{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for (i, issue) in self.issues.iter().enumerate() {
            if i + 1 < n {
                writeln!(f, "  {issue}")?;
            } else {
                write!(f, "  {issue}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------------------------
// Raw structs: what the YAML may contain.

type S<T> = Option<Spanned<T>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: S<String>,
    host: Option<RawHost>,
    sources: Option<Spanned<Vec<RawSource>>>,
    follow: Option<RawFollow>,
    time_zone: S<String>,
    detect: Option<RawDetect>,
    allowlist: Option<RawAllowlist>,
    alerts: Option<RawAlerts>,
    health: Option<RawHealth>,
    metrics: Option<RawMetrics>,
    custom_rules: Option<Vec<RawCustomRule>>,
    templates_dir: S<String>,
    actions: Option<Vec<RawAction>>,
    actions_max_concurrent: S<u64>,
    mail: Option<Spanned<RawMail>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    name: Spanned<String>,
    program: Spanned<String>,
    args: Option<Vec<Spanned<String>>>,
    timeout: S<String>,
    include_in_alert: Option<bool>,
    on: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJournal {
    units: Option<Vec<Spanned<String>>>,
    journalctl: S<String>,
    directory: S<String>,
    files: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: S<String>,
    ip: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    path: S<String>,
    journal: Option<Spanned<RawJournal>>,
    start: Option<Start>,
    service: S<String>,
    services: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCustomRule {
    name: Spanned<String>,
    literal: Spanned<String>,
    regex: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFollow {
    poll_interval: S<String>,
    max_line_bytes: S<u64>,
    checkpoint_interval: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDetect {
    per_ip: Option<RawThreshold>,
    per_subnet: Option<RawSubnet>,
    per_account: Option<RawAccount>,
    compromised: Option<RawCompromised>,
    max_tracked_ips: S<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubnet {
    enabled: Option<bool>,
    attempts: S<u64>,
    window: S<String>,
    ipv6_prefix: S<u64>,
    ipv4_prefix: S<u64>,
    min_addresses: S<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    enabled: Option<bool>,
    attempts: S<u64>,
    window: S<String>,
    distinct_ips: S<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompromised {
    enabled: Option<bool>,
    min_failures: S<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    source_unreadable_after: S<String>,
    source_silent_after: S<String>,
    smtp_failing_after: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllowlist {
    addresses: Option<Vec<Spanned<String>>>,
    files: Option<Vec<Spanned<String>>>,
    reset_on_success: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThreshold {
    attempts: S<u64>,
    window: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    cooldown: S<String>,
    group_wait: S<String>,
    group_interval: S<String>,
    repeat_interval: S<String>,
    max_per_hour: S<u64>,
    max_open_incidents: S<u64>,
    top_accounts: S<u64>,
    log_lines: S<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMail {
    from: S<String>,
    to: Option<Spanned<Vec<Spanned<String>>>>,
    subject_prefix: Option<String>,
    smtp: Option<Spanned<RawSmtp>>,
    outbox_dir: S<String>,
    retry_for: S<String>,
    retry_first_delay: S<String>,
    retry_max_delay: S<String>,
    html: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: S<String>,
    port: S<u64>,
    tls: Option<TlsMode>,
    username: S<String>,
    password_file: S<String>,
    password_env: S<String>,
    ca_file: S<String>,
    timeout: S<String>,
    helo_name: S<String>,
}

// ---------------------------------------------------------------------------------------------
// Loading

/// Known services (rule sets) a source may name.
pub const SERVICES: &[&str] = crate::rules::BUILTIN;

impl Config {
    /// Read and validate a config file. Relative paths in it are taken relative to the file's
    /// folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            issues: vec![ConfigIssue {
                file: name.clone(),
                line: None,
                column: None,
                field: String::new(),
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        let mut cfg = Config::from_yaml(&text, &name, &base)?;
        cfg.path = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// The embedded example configuration; relative paths are taken from the current folder.
    pub fn embedded_example() -> Result<Config, ConfigError> {
        Config::from_yaml(EXAMPLE_CONFIG, EXAMPLE_CONFIG_NAME, Path::new("."))
    }

    /// Parse and validate YAML text. `file` names it in errors; `base` resolves relative paths.
    pub fn from_yaml(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw = parse_raw(text, file)?;
        let mut v = Validator {
            file: file.to_string(),
            base: base.to_path_buf(),
            issues: Vec::new(),
        };
        let cfg = v.build(raw);
        v.issues
            .sort_by_key(|i| (i.line.unwrap_or(0), i.column.unwrap_or(0)));
        match cfg {
            Some(cfg) if v.issues.is_empty() => Ok(cfg),
            _ => Err(ConfigError { issues: v.issues }),
        }
    }
}

fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        strict_booleans: true,
    }
}

fn serde_issue(file: &str, e: &serde_saphyr::Error) -> ConfigIssue {
    let loc = e.location();
    // The rendered message may carry a source snippet on later lines, and starts with its own
    // "error: line N column M:" that we give in our own form.
    let full = e.to_string();
    let mut first = full.lines().next().unwrap_or("invalid YAML").trim();
    first = first.strip_prefix("error:").unwrap_or(first).trim_start();
    if first.starts_with("line ") {
        if let Some(i) = first.find(": ") {
            first = &first[i + 2..];
        }
    }
    let first = first
        .replace("invalid u64", "expected a whole number")
        .replace("invalid bool", "expected true or false");
    ConfigIssue {
        file: file.to_string(),
        line: loc.map(|l| l.line()).filter(|&l| l > 0),
        column: loc.map(|l| l.column()).filter(|&c| c > 0),
        field: String::new(),
        message: first,
    }
}

/// Parse the whole document. When that fails, find every failing node: a node that fails is
/// split into its children (block mapping keys or sequence items), each parsed on its own with
/// its ancestors' header lines and padding that keeps the file's line numbers, so that one error
/// does not hide the others. The failing nodes are then blanked out and the rest is validated
/// too, so semantic errors elsewhere are reported in the same run.
fn parse_raw(text: &str, file: &str) -> Result<RawConfig, ConfigError> {
    let parse = |t: &str| {
        serde_saphyr::from_str_with_options::<Option<RawConfig>>(t, yaml_options())
            .map(Option::unwrap_or_default)
    };
    let err = match parse(text) {
        Ok(raw) => return Ok(raw),
        Err(e) => e,
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut failing: Vec<Failing> = Vec::new();
    let top = split_children(&lines, 0, lines.len());
    if top.is_empty() {
        return Err(ConfigError {
            issues: vec![serde_issue(file, &err)],
        });
    }
    for (s, e) in top {
        let path = key_of(lines[s]).to_string();
        find_failing(
            &lines,
            &mut Vec::new(),
            (s, e),
            path,
            0,
            &parse,
            &mut failing,
        );
    }
    let mut issues: Vec<ConfigIssue> = failing
        .iter()
        .map(|f| {
            let mut i = serde_issue(file, &f.err);
            i.field = f.path.clone();
            i
        })
        .collect();
    if issues.is_empty() {
        issues.push(serde_issue(file, &err));
    } else {
        // Blank the failing nodes and validate what is left, keeping only located issues.
        let mut kept: Vec<&str> = lines.clone();
        for f in &failing {
            for l in kept.iter_mut().take(f.end).skip(f.start) {
                *l = "";
            }
        }
        if let Ok(raw) = parse(&kept.join("\n")) {
            let mut v = Validator {
                file: file.to_string(),
                base: PathBuf::from("."),
                issues: Vec::new(),
            };
            v.build(raw);
            issues.extend(v.issues.into_iter().filter(|i| i.line.is_some()));
        }
    }
    issues.sort_by_key(|i| (i.line, i.column));
    issues.dedup_by(|a, b| a.line == b.line && a.column == b.column);
    Err(ConfigError { issues })
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// Children of the block between lines `s` and `e` (end exclusive): groups starting at the
/// shallowest indentation, of the same kind (mapping keys, or `-` sequence items) as the first.
fn split_children(lines: &[&str], s: usize, e: usize) -> Vec<(usize, usize)> {
    let Some(first) = (s..e).find(|&i| is_content(lines[i])) else {
        return Vec::new();
    };
    if lines[first].trim_start().starts_with("---") {
        return Vec::new();
    }
    let base = indent(lines[first]);
    let is_seq = lines[first].trim_start().starts_with('-');
    let mut starts = Vec::new();
    for (i, line) in lines.iter().enumerate().take(e).skip(first) {
        if !is_content(line) {
            continue;
        }
        let ind = indent(line);
        if ind < base {
            return Vec::new();
        }
        if ind == base && line.trim_start().starts_with('-') == is_seq {
            starts.push(i);
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(k, &st)| (st, starts.get(k + 1).copied().unwrap_or(e)))
        .collect()
}

/// A node of the YAML text that does not parse on its own.
struct Failing {
    start: usize,
    end: usize,
    path: String,
    err: serde_saphyr::Error,
}

/// The key a block line starts with (`  - path: x` gives `path`, `detect:` gives `detect`).
fn key_of(line: &str) -> &str {
    let t = line.trim_start().trim_start_matches('-').trim_start();
    t.split(':')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches(['"', '\''])
}

/// Parse node `s..e` with its ancestors' header lines; when it fails, recurse into its children
/// and record the deepest failing nodes (or this one, when no child fails on its own).
fn find_failing<F>(
    lines: &[&str],
    headers: &mut Vec<usize>,
    (s, e): (usize, usize),
    path: String,
    depth: usize,
    parse: &F,
    out: &mut Vec<Failing>,
) where
    F: Fn(&str) -> Result<RawConfig, serde_saphyr::Error>,
{
    let mut text = String::new();
    let mut next = 0;
    for &h in headers.iter() {
        text.push_str(&"\n".repeat(h - next));
        text.push_str(lines[h]);
        next = h;
    }
    text.push_str(&"\n".repeat(s - next));
    for l in &lines[s..e] {
        text.push_str(l);
        text.push('\n');
    }
    let Err(err) = parse(&text) else { return };
    let before = out.len();
    if depth < 6 {
        headers.push(s);
        for (k, (cs, ce)) in split_children(lines, s + 1, e).into_iter().enumerate() {
            let child = if lines[cs].trim_start().starts_with('-') {
                format!("{path}[{k}]")
            } else {
                format!("{path}.{}", key_of(lines[cs]))
            };
            find_failing(lines, headers, (cs, ce), child, depth + 1, parse, out);
        }
        headers.pop();
    }
    if out.len() == before {
        out.push(Failing {
            start: s,
            end: e,
            path,
            err,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Validation

struct Validator {
    file: String,
    base: PathBuf,
    issues: Vec<ConfigIssue>,
}

const MAX_MEMBERS: usize = crate::detect::MAX_MEMBERS_PER_KEY;

/// Read a small regular file named in the config (a password, an allowlist): anything else (a
/// device such as /dev/zero, a pipe that would block) or a file over `limit` bytes is an error,
/// never an unbounded read. The file is opened with `O_NONBLOCK` and its type checked on the
/// open descriptor before any read: a plain open of a FIFO waits for a writer, and froze the
/// agent (issue 14.8).
fn read_small_file(p: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(crate::state::O_NONBLOCK)
        .open(p)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > limit {
        return Err(std::io::Error::other(format!("larger than {limit} bytes")));
    }
    let mut s = String::new();
    f.take(limit).read_to_string(&mut s)?;
    Ok(s)
}

/// Files whose permissions let other users read a secret or change what authwatch runs: a
/// `password_file` readable by group or others, an action `program` (or its folder) writable by
/// group or others. Warnings, not errors (`check` lists them, `run` logs them at start): an
/// administrator may have reasons, but should know.
pub fn permission_warnings(cfg: &Config) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).ok().map(|m| m.permissions().mode());
    let mut out = Vec::new();
    if let Some(p) = cfg
        .mail
        .smtp
        .as_ref()
        .and_then(|s| s.password_file.as_ref())
    {
        if let Some(m) = mode(p).filter(|m| m & 0o044 != 0) {
            out.push(format!(
                "mail.smtp.password_file {} is readable by {} (mode {:04o}): make it 0600, owned by the user authwatch runs as",
                p.display(),
                if m & 0o004 != 0 { "every user" } else { "its group" },
                m & 0o7777
            ));
        }
    }
    for a in &cfg.actions {
        let p = &a.spec.program;
        if let Some(m) = mode(p).filter(|m| m & 0o022 != 0) {
            out.push(format!(
                "action {}: program {} is writable by group or others (mode {:04o}): whoever can change it runs commands as authwatch",
                a.spec.name,
                p.display(),
                m & 0o7777
            ));
        }
        if let Some(dir) = p.parent() {
            if let Some(m) = mode(dir).filter(|m| m & 0o022 != 0) {
                out.push(format!(
                    "action {}: the folder {} of its program is writable by group or others (mode {:04o}): whoever can write there can replace the program",
                    a.spec.name,
                    dir.display(),
                    m & 0o7777
                ));
            }
        }
    }
    out
}

/// Log [`permission_warnings`] (at start of `run`).
pub fn log_permission_warnings(cfg: &Config) {
    for w in permission_warnings(cfg) {
        tracing::warn!("{w}");
    }
}

/// An address (as a /32 or /128) or a CIDR range; `::ffff:a.b.c.d` counts as IPv4.
fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ipnet::IpNet::from(crate::rules::canonical_ip(ip)));
    }
    s.parse::<ipnet::IpNet>().ok().map(|n| n.trunc())
}

/// Parse a duration written like `30s`, `10m`, `1h`, `1h30m` or `2d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let err = || format!("expected a duration such as 30s, 10m, 1h or 1h30m, got {t:?}");
    if t.is_empty() {
        return Err(err());
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    let mut saw_unit = false;
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let mut unit = String::from(c);
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let mult: u64 = match unit.as_str() {
            "ms" => 0,
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(err()),
        };
        let n: u64 = num.parse().map_err(|_| err())?;
        num.clear();
        if unit == "ms" {
            // Sub-second values only make sense alone (poll intervals).
            if saw_unit || chars.peek().is_some() {
                return Err(err());
            }
            return Ok(Duration::from_millis(n));
        }
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
        saw_unit = true;
    }
    if !num.is_empty() || !saw_unit {
        return Err(err());
    }
    Ok(Duration::from_secs(total))
}

/// Render a duration the way the config writes it (`10m`, `1h`, `1h30m`).
pub fn format_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return format!("{}ms", d.as_millis());
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
        }
    }
    out
}

impl Validator {
    fn issue<T>(&mut self, at: Option<&Spanned<T>>, field: &str, message: impl Into<String>) {
        let loc = at.map(|s| s.referenced);
        self.issues.push(ConfigIssue {
            file: self.file.clone(),
            line: loc.map(|l| l.line()).filter(|&l| l > 0),
            column: loc.map(|l| l.column()).filter(|&c| c > 0),
            field: field.to_string(),
            message: message.into(),
        });
    }

    fn path(&self, s: &str) -> PathBuf {
        let p = PathBuf::from(s);
        if p.is_absolute() || self.base == Path::new(".") {
            p
        } else {
            self.base.join(p)
        }
    }

    fn duration(
        &mut self,
        v: &S<String>,
        field: &str,
        default: Duration,
        min: Duration,
    ) -> Duration {
        let Some(sp) = v else { return default };
        match parse_duration(&sp.value) {
            Ok(d) if d < min => {
                self.issue(
                    Some(sp),
                    field,
                    format!("must be at least {}", format_duration(min)),
                );
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.issue(Some(sp), field, e);
                default
            }
        }
    }

    fn count(&mut self, v: &S<u64>, field: &str, default: u64, min: u64, max: u64) -> u64 {
        let Some(sp) = v else { return default };
        if sp.value < min || sp.value > max {
            self.issue(
                Some(sp),
                field,
                format!("must be between {min} and {max}, got {}", sp.value),
            );
            return default;
        }
        sp.value
    }

    fn build(&mut self, raw: RawConfig) -> Option<Config> {
        let state_dir = match &raw.state_dir {
            Some(s) if s.value.trim().is_empty() => {
                self.issue(Some(s), "state_dir", "must not be empty");
                PathBuf::new()
            }
            Some(s) => self.path(&s.value),
            None => {
                self.issue::<()>(
                    None,
                    "state_dir",
                    "is required (a folder authwatch may write)",
                );
                PathBuf::new()
            }
        };

        let rh = raw.host.unwrap_or_default();
        let host = HostConfig {
            name: rh.name.map(|n| n.value),
            ip: match &rh.ip {
                None => None,
                Some(sp) => match sp.value.parse::<IpAddr>() {
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        self.issue(
                            Some(sp),
                            "host.ip",
                            format!("not an IP address: {:?}", sp.value),
                        );
                        None
                    }
                },
            },
        };

        let custom_rules = self.custom_rules(raw.custom_rules.as_deref().unwrap_or_default());
        let custom_names: Vec<String> = custom_rules.iter().map(|c| c.name().to_string()).collect();
        let mut sources = Vec::new();
        match &raw.sources {
            None => self.issue::<()>(None, "sources", "at least one source is required"),
            Some(list) if list.value.is_empty() => {
                self.issue(Some(list), "sources", "at least one source is required")
            }
            Some(list) => {
                for (i, s) in list.value.iter().enumerate() {
                    let field = format!("sources[{i}]");
                    let kind = self.source_kind(s, &field, list);
                    let mut services = Vec::new();
                    let named: Vec<&Spanned<String>> = match (&s.service, &s.services) {
                        (Some(one), Some(_)) => {
                            self.issue(
                                Some(one),
                                &format!("{field}.service"),
                                "give service or services, not both",
                            );
                            Vec::new()
                        }
                        (Some(one), None) => vec![one],
                        (None, Some(list)) => list.value.iter().collect(),
                        (None, None) => Vec::new(),
                    };
                    for (k, sv) in named.into_iter().enumerate() {
                        let known = SERVICES.contains(&sv.value.as_str())
                            || custom_names.iter().any(|c| c == &sv.value);
                        if known {
                            services.push(sv.value.clone());
                        } else {
                            let f = if s.service.is_some() {
                                format!("{field}.service")
                            } else {
                                format!("{field}.services[{k}]")
                            };
                            self.issue(
                                Some(sv),
                                &f,
                                format!(
                                    "unknown service {:?}; known: {}{}",
                                    sv.value,
                                    SERVICES.join(", "),
                                    if custom_names.is_empty() {
                                        String::new()
                                    } else {
                                        format!(" (custom: {})", custom_names.join(", "))
                                    }
                                ),
                            );
                        }
                    }
                    sources.push(SourceConfig {
                        kind,
                        start: s.start.unwrap_or(Start::End),
                        services,
                    });
                }
            }
        }

        let rf = raw.follow.unwrap_or_default();
        let follow = FollowConfig {
            poll_interval: self.duration(
                &rf.poll_interval,
                "follow.poll_interval",
                Duration::from_millis(250),
                Duration::from_millis(10),
            ),
            max_line_bytes: self.count(
                &rf.max_line_bytes,
                "follow.max_line_bytes",
                64 * 1024,
                256,
                16 * 1024 * 1024,
            ) as usize,
            checkpoint_interval: self.duration(
                &rf.checkpoint_interval,
                "follow.checkpoint_interval",
                Duration::from_secs(5),
                Duration::from_millis(10),
            ),
        };

        let time_zone = match &raw.time_zone {
            None => TimeZone::system(),
            Some(sp) => match TimeZone::get(&sp.value) {
                Ok(tz) => tz,
                Err(e) => {
                    self.issue(Some(sp), "time_zone", format!("unknown time zone: {e}"));
                    TimeZone::UTC
                }
            },
        };

        let rd = raw.detect.unwrap_or_default();
        let rt = rd.per_ip.unwrap_or_default();
        let detect = DetectConfig {
            per_ip: Threshold {
                attempts: self.count(&rt.attempts, "detect.per_ip.attempts", 5, 1, 1_000_000)
                    as u32,
                window: self.duration(
                    &rt.window,
                    "detect.per_ip.window",
                    Duration::from_secs(600),
                    Duration::from_secs(1),
                ),
            },
            max_tracked_ips: self.count(
                &rd.max_tracked_ips,
                "detect.max_tracked_ips",
                100_000,
                10,
                100_000_000,
            ) as usize,
            per_subnet: None,
            per_account: None,
            compromised_min_failures: None,
        };
        let mut detect = detect;
        let sn = rd.per_subnet.unwrap_or_default();
        if sn.enabled.unwrap_or(true) {
            detect.per_subnet = Some(SubnetConfig {
                threshold: Threshold {
                    attempts: self.count(
                        &sn.attempts,
                        "detect.per_subnet.attempts",
                        10,
                        1,
                        1_000_000,
                    ) as u32,
                    window: self.duration(
                        &sn.window,
                        "detect.per_subnet.window",
                        Duration::from_secs(600),
                        Duration::from_secs(1),
                    ),
                },
                ipv6_prefix: self.count(
                    &sn.ipv6_prefix,
                    "detect.per_subnet.ipv6_prefix",
                    64,
                    16,
                    128,
                ) as u8,
                ipv4_prefix: sn.ipv4_prefix.as_ref().map(|_| {
                    self.count(&sn.ipv4_prefix, "detect.per_subnet.ipv4_prefix", 24, 8, 32) as u8
                }),
                min_addresses: self.count(
                    &sn.min_addresses,
                    "detect.per_subnet.min_addresses",
                    2,
                    1,
                    MAX_MEMBERS as u64,
                ) as usize,
            });
        }
        let ac = rd.per_account.unwrap_or_default();
        if ac.enabled.unwrap_or(true) {
            detect.per_account = Some(AccountConfig {
                threshold: Threshold {
                    attempts: self.count(
                        &ac.attempts,
                        "detect.per_account.attempts",
                        20,
                        1,
                        1_000_000,
                    ) as u32,
                    window: self.duration(
                        &ac.window,
                        "detect.per_account.window",
                        Duration::from_secs(3600),
                        Duration::from_secs(1),
                    ),
                },
                distinct_ips: self.count(
                    &ac.distinct_ips,
                    "detect.per_account.distinct_ips",
                    5,
                    1,
                    MAX_MEMBERS as u64,
                ) as usize,
            });
        }
        let co = rd.compromised.unwrap_or_default();
        if co.enabled.unwrap_or(true) {
            detect.compromised_min_failures = Some(self.count(
                &co.min_failures,
                "detect.compromised.min_failures",
                u64::from(detect.per_ip.attempts),
                1,
                1_000_000,
            ));
        }

        let ral = raw.allowlist.unwrap_or_default();
        let mut allowlist = AllowlistConfig {
            nets: Vec::new(),
            reset_on_success: ral.reset_on_success.unwrap_or(false),
        };
        for (i, a) in ral.addresses.iter().flatten().enumerate() {
            match parse_net(&a.value) {
                Some(n) => allowlist.nets.push(n),
                None => self.issue(
                    Some(a),
                    &format!("allowlist.addresses[{i}]"),
                    format!("not an address or CIDR range: {:?}", a.value),
                ),
            }
        }
        for (i, f) in ral.files.iter().flatten().enumerate() {
            let p = self.path(&f.value);
            match read_small_file(&p, 16 << 20) {
                Ok(text) => {
                    for (n, line) in text.lines().enumerate() {
                        let entry = line.split('#').next().unwrap_or("").trim();
                        if entry.is_empty() {
                            continue;
                        }
                        match parse_net(entry) {
                            Some(net) => allowlist.nets.push(net),
                            None => self.issues.push(ConfigIssue {
                                file: p.display().to_string(),
                                line: Some(n as u64 + 1),
                                column: None,
                                field: format!("allowlist.files[{i}]"),
                                message: format!("not an address or CIDR range: {entry:?}"),
                            }),
                        }
                    }
                }
                Err(e) => self.issue(
                    Some(f),
                    &format!("allowlist.files[{i}]"),
                    format!("cannot read {}: {e}", p.display()),
                ),
            }
        }

        let ra = raw.alerts.unwrap_or_default();
        let cooldown = self.duration(
            &ra.cooldown,
            "alerts.cooldown",
            Duration::from_secs(3600),
            Duration::ZERO,
        );
        let alerts = AlertsConfig {
            cooldown,
            group_wait: self.duration(
                &ra.group_wait,
                "alerts.group_wait",
                Duration::ZERO,
                Duration::ZERO,
            ),
            group_interval: self.duration(
                &ra.group_interval,
                "alerts.group_interval",
                cooldown.max(Duration::from_secs(60)),
                Duration::from_secs(1),
            ),
            repeat_interval: self.duration(
                &ra.repeat_interval,
                "alerts.repeat_interval",
                Duration::from_secs(4 * 3600),
                Duration::from_secs(1),
            ),
            max_per_hour: self.count(&ra.max_per_hour, "alerts.max_per_hour", 30, 0, 100_000)
                as u32,
            max_open_incidents: self.count(
                &ra.max_open_incidents,
                "alerts.max_open_incidents",
                10_000,
                10,
                10_000_000,
            ) as usize,
            top_accounts: self.count(&ra.top_accounts, "alerts.top_accounts", 5, 1, 100) as usize,
            log_lines: self.count(&ra.log_lines, "alerts.log_lines", 5, 0, 100) as usize,
        };

        let rh = raw.health.unwrap_or_default();
        let health = HealthConfig {
            source_unreadable_after: self.duration(
                &rh.source_unreadable_after,
                "health.source_unreadable_after",
                Duration::from_secs(600),
                Duration::from_secs(1),
            ),
            source_silent_after: match &rh.source_silent_after {
                Some(v) if v.value.trim() == "off" => None,
                v => Some(self.duration(
                    v,
                    "health.source_silent_after",
                    Duration::from_secs(86_400),
                    Duration::from_secs(1),
                )),
            },
            smtp_failing_after: self.duration(
                &rh.smtp_failing_after,
                "health.smtp_failing_after",
                Duration::from_secs(900),
                Duration::from_secs(1),
            ),
        };

        let metrics_listen = match raw.metrics.and_then(|m| m.listen) {
            None => None,
            Some(l) => match crate::metrics::parse_listen(&l.value) {
                Ok(a) => Some(a),
                Err(e) => {
                    self.issue(Some(&l), "metrics.listen", e);
                    None
                }
            },
        };

        let templates_dir = raw.templates_dir.as_ref().map(|t| self.path(&t.value));
        if let (Some(sp), Some(dir)) = (&raw.templates_dir, &templates_dir) {
            if !dir.is_dir() {
                self.issue(
                    Some(sp),
                    "templates_dir",
                    format!("not a folder: {}", dir.display()),
                );
            }
        }

        let actions = self.actions(raw.actions.as_deref().unwrap_or_default());
        let actions_max_concurrent = self.count(
            &raw.actions_max_concurrent,
            "actions_max_concurrent",
            4,
            1,
            crate::actions::MAX_CONCURRENT as u64,
        ) as usize;

        let mail = self.mail(raw.mail, &state_dir);
        Some(Config {
            origin: self.file.clone(),
            path: None,
            state_dir,
            host,
            sources,
            follow,
            time_zone,
            detect,
            allowlist,
            alerts,
            health,
            metrics_listen,
            custom_rules,
            templates_dir,
            actions,
            actions_max_concurrent,
            mail,
        })
    }

    /// A source is a file (`path`) or the journal (`journal`), not both.
    fn source_kind(
        &mut self,
        s: &RawSource,
        field: &str,
        list: &Spanned<Vec<RawSource>>,
    ) -> SourceKind {
        match (&s.path, &s.journal) {
            (Some(p), None) => {
                if p.value.trim().is_empty() {
                    self.issue(Some(p), &format!("{field}.path"), "must not be empty");
                }
                SourceKind::File(self.path(&p.value))
            }
            (None, Some(j)) => {
                SourceKind::Journal(self.journal(&j.value, &format!("{field}.journal")))
            }
            (Some(p), Some(_)) => {
                self.issue(
                    Some(p),
                    field,
                    "give path (a log file) or journal (the systemd journal), not both",
                );
                SourceKind::Stdin
            }
            (None, None) => {
                self.issue(
                    Some(list),
                    field,
                    "each source needs path (a log file) or journal (the systemd journal)",
                );
                SourceKind::Stdin
            }
        }
    }

    fn journal(&mut self, j: &RawJournal, field: &str) -> JournalSourceConfig {
        let mut units = Vec::new();
        for (k, u) in j.units.iter().flatten().enumerate() {
            let ok = !u.value.is_empty()
                && u.value.len() <= 256
                && !u.value.starts_with('-')
                && u.value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ":-_.\\@*[]".contains(c));
            if ok {
                units.push(u.value.clone());
            } else {
                self.issue(
                    Some(u),
                    &format!("{field}.units[{k}]"),
                    format!(
                        "{:?} is not a systemd unit name (e.g. postfix@-.service, dovecot.service)",
                        u.value
                    ),
                );
            }
        }
        let journalctl = match &j.journalctl {
            Some(p) => {
                let path = self.path(&p.value);
                if !path.is_absolute() {
                    self.issue(
                        Some(p),
                        &format!("{field}.journalctl"),
                        "must be an absolute path",
                    );
                }
                path
            }
            None => PathBuf::from("journalctl"),
        };
        let directory = j.directory.as_ref().map(|d| self.path(&d.value));
        let files = j
            .files
            .iter()
            .flatten()
            .map(|f| self.path(&f.value))
            .collect();
        JournalSourceConfig {
            units,
            journalctl,
            directory,
            files,
        }
    }

    fn actions(&mut self, raw: &[RawAction]) -> Vec<ActionConfig> {
        use crate::actions::{validate_specs, ActionSpec};
        let mut out = Vec::new();
        for (i, a) in raw.iter().enumerate() {
            let field = format!("actions[{i}]");
            let timeout = self.duration(
                &a.timeout,
                &format!("{field}.timeout"),
                Duration::from_secs(10),
                Duration::from_millis(100),
            );
            if timeout > crate::actions::MAX_TIMEOUT {
                self.issue(
                    a.timeout.as_ref(),
                    &format!("{field}.timeout"),
                    format!(
                        "must be at most {}",
                        format_duration(crate::actions::MAX_TIMEOUT)
                    ),
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
            });
        }
        // `{ip}` of a subnet alert could only be the network's first address: a program given
        // it would block that one address and report success.
        for (i, a) in out.iter().enumerate() {
            if !a.on.iter().any(|k| k == "subnet_burst") {
                continue;
            }
            for (k, arg) in a.spec.args.iter().enumerate() {
                if crate::actions::uses_ip(arg) {
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

    fn custom_rules(&mut self, raw: &[RawCustomRule]) -> Vec<crate::rules::custom::CustomRule> {
        use crate::rules::custom::{CustomRule, CustomRuleError};
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

    fn mailbox(&mut self, sp: &Spanned<String>, field: &str) {
        if sp.value.parse::<lettre::message::Mailbox>().is_err() {
            self.issue(
                Some(sp),
                field,
                format!("not a mail address: {:?}", sp.value),
            );
        }
    }

    fn mail(&mut self, raw: Option<Spanned<RawMail>>, state_dir: &Path) -> MailConfig {
        let Some(rm) = raw else {
            self.issue::<()>(None, "mail", "is required (at least mail.to)");
            return MailConfig {
                from: String::new(),
                to: Vec::new(),
                subject_prefix: String::new(),
                smtp: None,
                outbox_dir: state_dir.join("outbox"),
                retry: crate::mail::RetryPolicy::default(),
                html: false,
            };
        };
        let rm_span = Spanned::new((), rm.referenced, rm.defined);
        let rm = rm.value;
        let mut to = Vec::new();
        match &rm.to {
            None => self.issue(
                Some(&rm_span),
                "mail.to",
                "at least one recipient is required",
            ),
            Some(list) if list.value.is_empty() => {
                self.issue(Some(list), "mail.to", "at least one recipient is required")
            }
            Some(list) => {
                for (i, a) in list.value.iter().enumerate() {
                    self.mailbox(a, &format!("mail.to[{i}]"));
                    to.push(a.value.clone());
                }
            }
        }
        let from = match &rm.from {
            Some(f) => {
                self.mailbox(f, "mail.from");
                f.value.clone()
            }
            None => {
                let host = hostname::get()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "localhost".into());
                format!("authwatch <authwatch@{host}>")
            }
        };
        let smtp = rm.smtp.map(|s| self.smtp(s));
        let outbox_dir = match &rm.outbox_dir {
            Some(p) => self.path(&p.value),
            None => state_dir.join("outbox"),
        };
        let d = crate::mail::RetryPolicy::default();
        let retry = crate::mail::RetryPolicy {
            first_delay: self.duration(
                &rm.retry_first_delay,
                "mail.retry_first_delay",
                d.first_delay,
                Duration::from_millis(10),
            ),
            max_delay: self.duration(
                &rm.retry_max_delay,
                "mail.retry_max_delay",
                d.max_delay,
                Duration::from_millis(10),
            ),
            give_up_after: self.duration(
                &rm.retry_for,
                "mail.retry_for",
                d.give_up_after,
                Duration::from_secs(1),
            ),
        };
        MailConfig {
            from,
            to,
            subject_prefix: rm.subject_prefix.unwrap_or_else(|| "[authwatch]".into()),
            smtp,
            outbox_dir,
            retry,
            html: rm.html.unwrap_or(false),
        }
    }

    fn smtp(&mut self, sp: Spanned<RawSmtp>) -> SmtpConfig {
        let span = Spanned::new((), sp.referenced, sp.defined);
        let rs = sp.value;
        let host = match &rs.host {
            Some(h) if !h.value.trim().is_empty() => h.value.trim().to_string(),
            Some(h) => {
                self.issue(Some(h), "mail.smtp.host", "must not be empty");
                String::new()
            }
            None => {
                self.issue(Some(&span), "mail.smtp.host", "is required");
                String::new()
            }
        };
        let tls = rs.tls.unwrap_or(TlsMode::Starttls);
        let default_port = match tls {
            TlsMode::None => 25,
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
        };
        let port = self.count(&rs.port, "mail.smtp.port", default_port, 1, 65535) as u16;
        let mut password_file = None;
        let password = match (&rs.password_file, &rs.password_env) {
            (Some(a), Some(_)) => {
                self.issue(
                    Some(a),
                    "mail.smtp.password_file",
                    "give password_file or password_env, not both",
                );
                None
            }
            (Some(f), None) => {
                let p = self.path(&f.value);
                password_file = Some(p.clone());
                match read_small_file(&p, 64 << 10) {
                    Ok(s) => {
                        let s = s.trim_end_matches(['\r', '\n']).to_string();
                        Some(Secret(s))
                    }
                    Err(e) => {
                        self.issue(
                            Some(f),
                            "mail.smtp.password_file",
                            format!("cannot read {}: {e}", p.display()),
                        );
                        None
                    }
                }
            }
            (None, Some(v)) => match std::env::var(&v.value) {
                Ok(s) => Some(Secret(s)),
                Err(_) => {
                    self.issue(
                        Some(v),
                        "mail.smtp.password_env",
                        format!("environment variable {} is not set", v.value),
                    );
                    None
                }
            },
            (None, None) => None,
        };
        let username = rs.username.map(|u| u.value);
        if username.is_some() != password.is_some() && self.issues.is_empty() {
            self.issue(
                Some(&span),
                "mail.smtp",
                "username and a password (password_file or password_env) go together",
            );
        }
        let ca_file = rs.ca_file.as_ref().map(|c| {
            let p = self.path(&c.value);
            if !p.is_file() {
                self.issue(
                    Some(c),
                    "mail.smtp.ca_file",
                    format!("no such file: {}", p.display()),
                );
            }
            p
        });
        SmtpConfig {
            host,
            port,
            tls,
            username,
            password,
            password_file,
            ca_file,
            timeout: self.duration(
                &rs.timeout,
                "mail.smtp.timeout",
                Duration::from_secs(30),
                Duration::from_secs(1),
            ),
            helo_name: rs.helo_name.map(|h| h.value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(text, "test.yaml", Path::new("/etc/authwatch"))
    }

    const MIN: &str = "state_dir: /var/lib/authwatch\nsources:\n  - path: /var/log/exim4/mainlog\nmail:\n  to: [admin@example.com]\n";

    #[test]
    fn embedded_example_is_valid() {
        let c = Config::embedded_example().expect("example config must load");
        assert!(!c.sources.is_empty());
        assert_eq!(c.detect.per_ip.attempts, 5);
        assert!(
            c.mail.smtp.is_none(),
            "the example writes to the outbox folder"
        );
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = load(MIN).unwrap();
        assert_eq!(c.detect.per_ip.attempts, 5);
        assert_eq!(c.detect.per_ip.window, Duration::from_secs(600));
        assert_eq!(c.alerts.cooldown, Duration::from_secs(3600));
        assert_eq!(c.sources[0].start, Start::End);
        assert_eq!(
            c.mail.outbox_dir,
            PathBuf::from("/var/lib/authwatch/outbox")
        );
    }

    #[test]
    fn relative_paths_resolve_against_config_folder() {
        let c = load("state_dir: state\nsources: [{path: log/mainlog}]\nmail: {to: [a@b.c]}\n")
            .unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/etc/authwatch/state"));
        assert_eq!(
            c.sources[0].file(),
            Some(Path::new("/etc/authwatch/log/mainlog"))
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        for bad in ["", "10", "ten", "10x", "m", "1h30", "-5m"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be rejected");
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(600)), "10m");
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let err = load(&format!("{MIN}detect:\n  per_ip:\n    atempts: 3\n")).unwrap_err();
        assert_eq!(err.issues.len(), 1, "{err}");
        let i = &err.issues[0];
        assert_eq!(i.line, Some(8), "{err}");
        assert!(i.message.contains("atempts"), "{err}");
    }

    #[test]
    fn errors_in_several_sections_are_all_reported() {
        let text = "state_dir: /x\nsources:\n  - path: /l\n    start: middle\ndetect:\n  per_ip:\n    attempts: many\nmail:\n  to: [a@b.c]\n  smtp: {host: h, tls: maybe}\n";
        let err = load(text).unwrap_err();
        let lines: Vec<_> = err.issues.iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![Some(4), Some(7), Some(10)], "{err}");
    }

    #[test]
    fn semantic_errors_are_all_reported_with_fields() {
        let text = "state_dir: /x\nsources: [{path: /l, service: nope}]\ndetect:\n  per_ip: {attempts: 0, window: ten}\nalerts: {cooldown: 1y}\nmail:\n  to: [not an address]\n";
        let err = load(text).unwrap_err();
        let fields: Vec<_> = err.issues.iter().map(|i| i.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "sources[0].service",
                "detect.per_ip.attempts",
                "detect.per_ip.window",
                "alerts.cooldown",
                "mail.to[0]"
            ],
            "{err}"
        );
        assert!(err.issues.iter().all(|i| i.line.is_some()), "{err}");
        assert_eq!(err.issues[2].line, Some(4));
    }

    #[test]
    fn missing_required_sections() {
        let err = load("detect: {per_ip: {attempts: 3}}\n").unwrap_err();
        let fields: Vec<_> = err.issues.iter().map(|i| i.field.as_str()).collect();
        assert_eq!(fields, vec!["state_dir", "sources", "mail"], "{err}");
    }

    #[test]
    fn password_is_read_from_env_and_masked() {
        std::env::set_var("AUTHWATCH_TEST_PW_1", "s3cret");
        let c = load(&format!(
            "{MIN}  smtp: {{host: relay, username: u, password_env: AUTHWATCH_TEST_PW_1}}\n"
        ))
        .unwrap();
        let smtp = c.mail.smtp.unwrap();
        assert_eq!(smtp.password.as_ref().unwrap().0, "s3cret");
        assert_eq!(smtp.port, 587);
        assert!(!format!("{smtp:?}").contains("s3cret"));
    }

    #[test]
    fn custom_rules_are_checked_and_usable_as_services() {
        let ok = load(&format!(
            "{MIN}custom_rules:\n  - name: myapp\n    literal: 'login failed'\n    regex: 'login failed from (?P<ip>\\S+)'\n"
        ))
        .unwrap();
        assert_eq!(ok.custom_rules.len(), 1);
        let bad = load(
            "state_dir: /x\nsources: [{path: /l, services: [exim, myapp, nope]}]\nmail: {to: [a@b.c]}\ncustom_rules:\n  - {name: myapp, literal: x, regex: 'from (?P<addr>\\S+)'}\n  - {name: exim, literal: x, regex: '(?P<ip>x)'}\n  - {name: other, literal: '', regex: '(?P<ip>x)'}\n",
        )
        .unwrap_err();
        let fields: Vec<_> = bad.issues.iter().map(|i| i.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "sources[0].services[1]",
                "sources[0].services[2]",
                "custom_rules[0].regex",
                "custom_rules[1].name",
                "custom_rules[2].literal"
            ],
            "{bad}"
        );
    }

    #[test]
    fn allowlist_addresses_ranges_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("allow.txt");
        std::fs::write(
            &f,
            "# office\n198.51.100.0/24\n\n2001:db8::/32 # v6\nnonsense\n",
        )
        .unwrap();
        let text = format!(
            "{MIN}allowlist:\n  addresses: [192.0.2.1, '10.0.0.0/8']\n  files: ['{}']\n",
            f.display()
        );
        let err = load(&text).unwrap_err();
        assert_eq!(err.issues.len(), 1, "{err}");
        assert_eq!(err.issues[0].line, Some(5));
        assert!(err.issues[0].file.ends_with("allow.txt"));
        std::fs::write(&f, "198.51.100.0/24\n2001:db8::/32\n").unwrap();
        let c = load(&text).unwrap();
        for yes in [
            "192.0.2.1",
            "10.1.2.3",
            "198.51.100.77",
            "2001:db8::5",
            "::ffff:10.0.0.1",
        ] {
            let ip = crate::rules::canonical_ip(yes.parse().unwrap());
            assert!(c.allowlist.contains(&ip), "{yes}");
        }
        assert!(!c.allowlist.contains(&"203.0.113.1".parse().unwrap()));
        let bad = load(&format!("{MIN}allowlist: {{addresses: ['300.1.1.1']}}\n")).unwrap_err();
        assert_eq!(bad.issues[0].field, "allowlist.addresses[0]");
    }

    #[test]
    fn detection_defaults_and_switches() {
        let c = load(MIN).unwrap();
        let sn = c.detect.per_subnet.unwrap();
        assert_eq!((sn.ipv6_prefix, sn.ipv4_prefix), (64, None));
        assert_eq!(c.detect.per_account.unwrap().distinct_ips, 5);
        assert_eq!(c.detect.compromised_min_failures, Some(5));
        let off = load(&format!(
            "{MIN}detect:\n  per_subnet: {{enabled: false}}\n  per_account: {{enabled: false}}\n  compromised: {{enabled: false}}\n"
        ))
        .unwrap();
        assert!(off.detect.per_subnet.is_none() && off.detect.per_account.is_none());
        assert_eq!(off.detect.compromised_min_failures, None);
        let v4 = load(&format!(
            "{MIN}detect: {{per_subnet: {{ipv4_prefix: 24}}}}\n"
        ))
        .unwrap();
        assert_eq!(v4.detect.per_subnet.unwrap().ipv4_prefix, Some(24));
    }

    #[test]
    fn metrics_listen_must_be_loopback() {
        let c = load(&format!("{MIN}metrics: {{listen: '127.0.0.1:9464'}}\n")).unwrap();
        assert_eq!(c.metrics_listen.unwrap().port(), 9464);
        let e = load(&format!("{MIN}metrics: {{listen: '0.0.0.0:9464'}}\n")).unwrap_err();
        assert_eq!(e.issues[0].field, "metrics.listen");
    }

    #[test]
    fn password_file_must_be_a_small_regular_file() {
        let e = load(&format!(
            "{MIN}  smtp: {{host: h, username: u, password_file: /dev/zero}}\n"
        ))
        .unwrap_err();
        assert!(e.issues[0].message.contains("not a regular file"), "{e}");
    }

    #[test]
    fn yes_is_not_a_boolean_and_wrong_type_is_reported() {
        let err = load(&format!("{MIN}follow: {{max_line_bytes: lots}}\n")).unwrap_err();
        assert_eq!(err.issues[0].line, Some(6), "{err}");
    }

    #[test]
    fn journal_sources_name_units_and_are_checked() {
        let c = load(
            "state_dir: /x\nsources:\n  - path: /var/log/exim4/mainlog\n  - journal: {units: [postfix@-.service, dovecot.service]}\n    services: [postfix, dovecot]\n    start: beginning\n  - journal: {units: [exim4.service], files: [j/mail.journal], journalctl: /usr/bin/journalctl}\nmail: {to: [a@b.c]}\n",
        )
        .unwrap();
        assert_eq!(c.sources.len(), 3);
        assert_eq!(c.sources[0].name(), "/var/log/exim4/mainlog");
        let SourceKind::Journal(j) = &c.sources[1].kind else {
            panic!("{:?}", c.sources[1]);
        };
        assert_eq!(j.units, ["postfix@-.service", "dovecot.service"]);
        assert_eq!(j.journalctl, PathBuf::from("journalctl"));
        assert_eq!(c.sources[1].start, Start::Beginning);
        assert_eq!(
            c.sources[1].name(),
            "journal:postfix@-.service,dovecot.service"
        );
        let SourceKind::Journal(j) = &c.sources[2].kind else {
            panic!("{:?}", c.sources[2]);
        };
        assert_eq!(j.files, [PathBuf::from("/etc/authwatch/j/mail.journal")]);

        let err = load(
            "state_dir: /x\nsources:\n  - {path: /l, journal: {units: [a.service]}}\n  - {start: end}\n  - journal: {units: ['-x', 'a b', 'ok.service'], journalctl: bin/journalctl}\nmail: {to: [a@b.c]}\n",
        )
        .unwrap_err();
        let mut fields: Vec<&str> = err.issues.iter().map(|i| i.field.as_str()).collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "sources[0]",
                "sources[1]",
                "sources[2].journal.units[0]",
                "sources[2].journal.units[1]",
            ],
            "{err}"
        );
        assert!(err.issues.iter().all(|i| i.line.is_some()), "{err}");
    }

    #[test]
    fn actions_are_checked_with_their_fields() {
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("block");
        std::fs::write(&prog, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        let p = prog.display();
        let c = load(&format!(
            "{MIN}actions:\n  - {{name: block, program: '{p}', args: ['{{ip}}', '--user={{account}}'], timeout: 5s, on: [ip_burst, compromised]}}\n  - {{name: note, program: '{p}', include_in_alert: false}}\nactions_max_concurrent: 2\n"
        ))
        .unwrap();
        assert_eq!(c.actions.len(), 2);
        assert_eq!(c.actions_max_concurrent, 2);
        assert_eq!(c.actions[0].spec.args, ["{ip}", "--user={account}"]);
        assert_eq!(c.actions[0].spec.timeout, Duration::from_secs(5));
        assert_eq!(c.actions[0].on, ["ip_burst", "compromised"]);
        assert_eq!(c.actions[1].on, ["ip_burst", "subnet_burst"]);
        assert!(!c.actions[1].spec.include_in_alert);

        let err = load(&format!(
            "{MIN}actions:\n  - {{name: block, program: 'sh', args: ['{{ip}} {{nope}}'], on: [account_attack]}}\n  - {{name: block, program: '{p}', timeout: 1h}}\nactions_max_concurrent: 0\n"
        ))
        .unwrap_err();
        let fields: Vec<&str> = err.issues.iter().map(|i| i.field.as_str()).collect();
        for f in [
            "actions[0].on[0]",
            "actions[0].program",
            "actions[0].args[0]",
            "actions[1].timeout",
            "actions[1].name",
            "actions_max_concurrent",
        ] {
            assert!(fields.contains(&f), "{f} missing: {err}");
        }
        assert!(err.issues.iter().all(|i| i.line.is_some()), "{err}");
    }

    /// Issue 14.8: a group/world-readable password file and a program (or its folder)
    /// writable by others are warned about.
    #[test]
    fn loose_permissions_are_warned_about_regression() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let prog = bin.join("block");
        std::fs::write(&prog, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o775)).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o775)).unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "secret\n").unwrap();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
        let yaml = format!(
            "state_dir: /var/lib/authwatch\nsources:\n  - path: /var/log/exim4/mainlog\nmail:\n  to: [admin@example.com]\n  smtp: {{host: h, username: u, password_file: '{}'}}\nactions:\n  - {{name: block, program: '{}', on: [ip_burst]}}\n",
            pw.display(),
            prog.display()
        );
        let c = load(&yaml).unwrap();
        let w = permission_warnings(&c).join("\n");
        assert!(
            w.contains("password_file") && w.contains("every user"),
            "{w}"
        );
        assert!(w.contains("program") && w.contains("0775"), "{w}");
        assert!(w.contains("folder"), "{w}");
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            permission_warnings(&load(&yaml).unwrap()),
            Vec::<String>::new()
        );
    }

    /// Issue 14.5: `{ip}` of a subnet alert was the network's first address, so an action
    /// blocked that one address and reported success. `{ip}` in an action that runs for
    /// `subnet_burst` (named, or by default) is refused with its location; `{network}` is not.
    #[test]
    fn subnet_actions_refuse_ip_placeholder_regression() {
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("block");
        std::fs::write(&prog, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        let p = prog.display();
        let err = load(&format!(
            "{MIN}actions:\n  - {{name: a, program: '{p}', args: ['x', '--ip={{ip}}'], on: [subnet_burst]}}\n  - name: b\n    program: '{p}'\n    args: ['{{ip}}']\n"
        ))
        .unwrap_err();
        let found: Vec<(&str, Option<u64>, Option<u64>)> = err
            .issues
            .iter()
            .map(|i| (i.field.as_str(), i.line, i.column))
            .collect();
        let first = format!("  - {{name: a, program: '{p}', args: ['x', '--ip={{ip}}']");
        let col = first.find("'--ip").unwrap() as u64 + 1;
        assert_eq!(
            found,
            vec![
                ("actions[0].args[1]", Some(7), Some(col)),
                ("actions[1].args[0]", Some(10), Some(12)),
            ],
            "{err}"
        );
        assert!(err.to_string().contains("{network}"), "{err}");
        let ok = load(&format!(
            "{MIN}actions:\n  - {{name: a, program: '{p}', args: ['{{network}}', '{{prefix}}']}}\n  - {{name: b, program: '{p}', args: ['{{ip}}'], on: [ip_burst, compromised]}}\n"
        ));
        assert!(ok.is_ok(), "{:?}", ok.err().map(|e| e.to_string()));
    }
}
