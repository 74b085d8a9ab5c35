//! Tests of what alerts tell the administrator: the advice per service (a table over services:
//! never Exim text in a Postfix or Dovecot alert), the commands with the values in and
//! hostile account names quoted, the block status from action results, and the Subject.

use super::*;
use crate::config::{ActionConfig, ActionSpec};
use crate::render::{sample_context, Renderer};
use std::time::Duration;

fn nft_action(on: &[&str]) -> ActionConfig {
    ActionConfig {
        spec: ActionSpec {
            name: "nft-block".into(),
            program: "/usr/local/lib/authwatch/nft-block".into(),
            args: vec!["{network}".into(), "1h".into()],
            timeout: Duration::from_secs(10),
            include_in_alert: true,
        },
        on: on.iter().map(|s| s.to_string()).collect(),
        undo: Vec::new(),
    }
}

/// The ip_burst sample for `service`, with the given action results.
fn ip_ctx(service: &str, results: Value) -> Value {
    let mut v = sample_context("ip_burst").unwrap();
    v["service"] = service.into();
    v["actions"] = results;
    v
}

#[test]
fn advice_is_chosen_by_service_and_never_mixed() {
    // (service, text that must be there, texts that must not)
    let exim_only = "server_advertise_condition";
    let postfix_only = "smtpd_sasl_auth_enable";
    let dovecot_only = "auth_failure_delay";
    let table: &[(&str, &[&str], &[&str])] = &[
        (
            "exim",
            &[exim_only, "port 25"],
            &[postfix_only, dovecot_only],
        ),
        (
            "postfix",
            &[
                "smtpd_sasl_auth_enable = no",
                "-o smtpd_sasl_auth_enable=yes",
                "master.cf",
                "postfix reload",
            ],
            &[exim_only, dovecot_only],
        ),
        (
            "dovecot",
            &[dovecot_only, "doveadm kick USER"],
            &[exim_only, postfix_only],
        ),
        (
            "courier",
            &["strong, unique password"],
            &[exim_only, postfix_only, dovecot_only],
        ),
        (
            "roundcube",
            &["strong, unique password"],
            &[exim_only, postfix_only, dovecot_only],
        ),
    ];
    let r = Renderer::new(None).unwrap();
    for (service, want, never) in table {
        for kind in ["ip_burst", "subnet_burst", "account_attack", "compromised"] {
            let mut ctx = sample_context(kind).unwrap();
            ctx["service"] = (*service).into();
            let out = r.render(kind, &ctx).unwrap();
            for w in *want {
                assert!(
                    out.text.contains(w),
                    "{kind}/{service}: missing {w:?}:\n{}",
                    out.text
                );
            }
            for n in *never {
                assert!(
                    !out.text.contains(n),
                    "{kind}/{service}: has {n:?}:\n{}",
                    out.text
                );
                let html = out.html.as_deref().unwrap_or_default();
                assert!(!html.contains(n), "{kind}/{service} html: has {n:?}");
            }
            assert!(
                out.subject.contains(&service_name(service)),
                "{kind}/{service}: subject {:?}",
                out.subject
            );
        }
    }
}

#[test]
fn compromised_dovecot_account_gets_doveadm_kick_with_the_account_quoted() {
    let r = Renderer::new(None).unwrap();
    let mut ctx = sample_context("compromised").unwrap();
    ctx["service"] = "dovecot".into();
    ctx["account"] = "bob; rm -rf /".into();
    let out = r.render("compromised", &ctx).unwrap();
    assert!(
        out.text.contains("doveadm kick 'bob; rm -rf /'"),
        "{}",
        out.text
    );
    assert!(out.text.contains("Reset the password of bob; rm -rf /"));
}

#[test]
fn commands_carry_the_ip_network_or_account() {
    let r = Renderer::new(None).unwrap();
    let ip = r
        .render("ip_burst", &sample_context("ip_burst").unwrap())
        .unwrap();
    let html = Renderer::new(None)
        .unwrap()
        .with_html(true)
        .render("ip_burst", &sample_context("ip_burst").unwrap())
        .unwrap();
    for want in [
        "authwatch silence 203.0.113.47 --for 24h",
        "authwatch unsilence 203.0.113.47",
        "authwatch allow 203.0.113.47",
        "nft add element inet authwatch blocked4 { 203.0.113.47 timeout 1h }",
        "authwatch unblock 203.0.113.47",
        "authwatch ack ip_burst-3f2a9c0d1e4b5a67",
    ] {
        assert!(ip.text.contains(want), "missing {want:?}:\n{}", ip.text);
        let html = html.html.as_deref().unwrap_or_default();
        assert!(
            html.contains(&minijinja::HtmlEscape(want).to_string()),
            "html: {want:?}"
        );
    }
    let net = r
        .render("subnet_burst", &sample_context("subnet_burst").unwrap())
        .unwrap();
    for want in [
        "authwatch silence 2001:db8:a11:77::/64 --for 24h",
        "authwatch allow 2001:db8:a11:77::/64",
        "nft add element inet authwatch blocked6 { 2001:db8:a11:77::/64 timeout 1h }",
        "authwatch unblock 2001:db8:a11:77::/64",
    ] {
        assert!(net.text.contains(want), "missing {want:?}:\n{}", net.text);
    }
    let mut acc = sample_context("account_attack").unwrap();
    acc["target"] = "x'; reboot".into();
    let acc = r.render("account_attack", &acc).unwrap();
    assert!(
        acc.text
            .contains(r"authwatch silence 'x'\''; reboot' --for 24h"),
        "{}",
        acc.text
    );
    assert!(!acc.text.contains("authwatch allow"), "{}", acc.text);
}

#[test]
fn block_command_is_the_configured_action_with_values_in() {
    let r = Renderer::new(None)
        .unwrap()
        .with_actions(&[nft_action(&["ip_burst", "subnet_burst"])]);
    let out = r
        .render("ip_burst", &sample_context("ip_burst").unwrap())
        .unwrap();
    assert!(
        out.text
            .contains("/usr/local/lib/authwatch/nft-block 203.0.113.47/32 1h"),
        "{}",
        out.text
    );
    let out = r
        .render("subnet_burst", &sample_context("subnet_burst").unwrap())
        .unwrap();
    assert!(out
        .text
        .contains("/usr/local/lib/authwatch/nft-block 2001:db8:a11:77::/64 1h"));
}

#[test]
fn block_status_from_action_results_in_body_and_subject() {
    let r = Renderer::new(None)
        .unwrap()
        .with_actions(&[nft_action(&["ip_burst"])]);
    let ok = json!([{"name": "nft-block", "exit": 0, "timed_out": false, "error": null, "status": "exit 0", "output": ""}]);
    let failed = json!([{"name": "nft-block", "exit": 3, "timed_out": false, "error": null, "status": "exit 3", "output": ""}]);
    // (results, status line in the body, subject)
    let table = [
        (
            ok,
            "Status: BLOCKED by nft-block for 1h",
            "[authwatch] mx1.example.com: 203.0.113.47 BLOCKED - 5 failed Exim logins in 10m",
        ),
        (
            failed,
            "Status: block failed: nft-block: exit 3",
            "[authwatch] mx1.example.com: 203.0.113.47 BLOCK FAILED - 5 failed Exim logins in 10m",
        ),
        (
            json!([]),
            "Status: not blocked: authwatch only alerts",
            "[authwatch] mx1.example.com: 203.0.113.47 5 failed Exim logins in 10m",
        ),
    ];
    for (results, status, subject) in table {
        let out = r.render("ip_burst", &ip_ctx("exim", results)).unwrap();
        assert!(
            out.text.contains(status),
            "missing {status:?}:\n{}",
            out.text
        );
        assert_eq!(out.subject, subject);
    }
    // A result the alert does not quote (include_in_alert: false) still counts.
    let mut ctx = ip_ctx("postfix", json!([]));
    ctx["action_results"] = json!([{"name": "nft-block", "exit": 0, "status": "exit 0"}]);
    let out = r.render("ip_burst", &ctx).unwrap();
    assert_eq!(
        out.subject,
        "[authwatch] mx1.example.com: 203.0.113.47 BLOCKED - 5 failed Postfix logins in 10m"
    );
}

#[test]
fn shell_quote_leaves_plain_words_and_quotes_the_rest() {
    for (input, want) in [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8::/64", "2001:db8::/64"),
        ("alice@example.com", "alice@example.com"),
        ("", "''"),
        ("a b", "'a b'"),
        ("$(reboot)", "'$(reboot)'"),
        ("it's", r"'it'\''s'"),
    ] {
        assert_eq!(shell_quote(input), want, "{input:?}");
    }
}
