//! Unit tests of the configuration: defaults, every error with its place, and the rule that
//! config depends on no stage module.

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
    let c =
        load("state_dir: state\nsources: [{path: log/mainlog}]\nmail: {to: [a@b.c]}\n").unwrap();
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
        let ip = canonical_ip(yes.parse().unwrap());
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

/// The stage modules of the flow (and the command layer): config may name none of them, so
/// that every stage can depend on config without a cycle (issue 17).
const STAGES: &[&str] = &[
    "actions", "agent", "cli", "cmd", "detect", "mail", "metrics", "policy", "render", "rules",
    "scan", "source", "state",
];

/// Files of `src/config/` allowed to name a stage module: none.
const IMPORT_EXCEPTIONS: &[&str] = &[];

/// Stage modules named by `crate::` paths in a line of Rust (`use crate::rules::X`,
/// `crate::mail::RetryPolicy`, `use crate::{detect, render}`); comments are skipped.
fn stages_named(line: &str) -> Vec<&'static str> {
    let code = line.split("//").next().unwrap_or("");
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or(group);
            group
                .split(',')
                .map(|n| n.trim().split("::").next().unwrap_or("").trim())
                .collect()
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            vec![&rest[..end]]
        };
        for n in names {
            if let Some(s) = STAGES.iter().find(|s| **s == n) {
                found.push(*s);
            }
        }
    }
    found
}

#[test]
fn import_check_finds_stage_paths() {
    assert_eq!(
        stages_named("use crate::rules::custom::CustomRule;"),
        ["rules"]
    );
    assert_eq!(stages_named("    x: crate::mail::RetryPolicy,"), ["mail"]);
    assert_eq!(
        stages_named("use crate::{clock::Clock, detect::X, render};"),
        ["detect", "render"]
    );
    assert!(stages_named("use crate::clock::Clock; // not crate::agent").is_empty());
    assert!(stages_named("use super::rules::SERVICES;").is_empty());
}

/// Config depends on no stage module: no file of `src/config/` names one (issue 17).
#[test]
fn config_depends_on_no_stage_module() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config");
    let mut bad = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.extension().is_none_or(|e| e != "rs") || IMPORT_EXCEPTIONS.contains(&name.as_str())
        {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            // This file spells the patterns it looks for inside string literals.
            if name == "tests.rs" && line.contains('"') {
                continue;
            }
            for stage in stages_named(line) {
                bad.push(format!(
                    "src/config/{name}:{}: names crate::{stage}: {}",
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(files >= 10, "read only {files} files in {}", dir.display());
    assert!(
        bad.is_empty(),
        "config must not depend on stage modules:\n{}",
        bad.join("\n")
    );
}

/// The mistakes people make in YAML, each with the message that says what to write, on the
/// leaf key. (config text after `state_dir` and `sources`, expected `field: message` part)
#[test]
fn yaml_mistakes_say_what_to_write_on_the_leaf_key() {
    let head = "state_dir: /var/lib/authwatch\nsources:\n  - path: /var/log/exim4/mainlog\n";
    let table: &[(&str, &str)] = &[
        (
            "mail:\n\tto: [admin@example.com]\n",
            "test.yaml:5:1: mail.to: tab characters are not allowed in YAML indentation; use spaces",
        ),
        (
            "mail:\n  to: [admin@example.com]\n  \thtml: true\n",
            "test.yaml:6:3: mail.html: tab characters are not allowed in YAML indentation; use spaces",
        ),
        (
            "mail:\n  to: [admin@example.com]\n  html: yes\n",
            "test.yaml:6:9: mail.html: \"yes\" is not a boolean: write true or false",
        ),
        (
            "mail:\n  to: [admin@example.com]\n  html: on\n",
            "mail.html: \"on\" is not a boolean: write true or false",
        ),
        (
            "mail:\n  to: admin@example.com\n",
            "test.yaml:5:7: mail.to: expected a list, e.g. `to: [admin@example.com]`",
        ),
    ];
    for (tail, want) in table {
        let e = load(&format!("{head}{tail}")).unwrap_err().to_string();
        // Each problem on a line of its own.
        let line = e
            .lines()
            .find(|l| l.contains(want))
            .unwrap_or_else(|| panic!("{tail:?}: no line with {want:?} in\n{e}"));
        assert!(line.trim_start().starts_with("test.yaml:"), "{e}");
    }
    let e = load("state_dir: /x\nsources: /var/log/x\nmail: {to: [a@b.c]}\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sources: expected a list, e.g. `sources: [{path: /var/log/x}]`"),
        "{e}"
    );
}
