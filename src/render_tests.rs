//! Tests of the template environment: the built-in templates pass `check` and render every
//! kind's sample, errors name file and line, HTML escapes attacker text, and the digest's
//! held-back alerts table and CSV.

use super::*;

#[test]
fn builtin_templates_pass_check() {
    let r = Renderer::new(None).unwrap();
    assert_eq!(r.check(), Vec::<String>::new());
}

#[test]
fn default_alert_has_what_the_admin_needs() {
    let r = Renderer::new(None).unwrap();
    let out = r.render_ip_alert(&IpAlertContext::sample()).unwrap();
    assert!(out
        .text
        .starts_with("Automatic alert from authwatch - DO NOT reply\n"));
    for needle in [
        "Host Name:  mx1.example.com",
        "IP Address: 192.0.2.25",
        "Attacking IP:          203.0.113.47",
        "Total attempts so far: 48",
        "threshold: 5 in 10m",
        "info@example.com",
        "nft add element inet authwatch blocked4 { 203.0.113.47 timeout 1h }",
        "iptables -I INPUT -s 203.0.113.47 -j DROP",
        "apf -d 203.0.113.47",
        "SMTP AUTH on port 25",
    ] {
        assert!(
            out.text.contains(needle),
            "missing {needle:?} in\n{}",
            out.text
        );
    }
    assert_eq!(
        out.subject,
        "[authwatch] mx1.example.com: 203.0.113.47 5 failed Exim logins in 10m"
    );
}

#[test]
fn every_kind_renders_its_sample() {
    let r = Renderer::new(None).unwrap();
    for kind in KINDS {
        let ctx = sample_context(kind).unwrap();
        let out = r.render(kind, &ctx).unwrap();
        assert!(
            out.text
                .starts_with("Automatic alert from authwatch - DO NOT reply\n"),
            "{kind}"
        );
        assert!(!out.subject.contains('\n'), "{kind}");
    }
    let sub = r
        .render("subnet_burst", &sample_context("subnet_burst").unwrap())
        .unwrap();
    assert!(
        sub.text
            .contains("blocked6 { 2001:db8:a11:77::/64 timeout 1h }"),
        "{}",
        sub.text
    );
    let acc = r
        .render("account_attack", &sample_context("account_attack").unwrap())
        .unwrap();
    assert!(acc
        .subject
        .contains("account info@example.com attacked from 5 addresses"));
    let c = r
        .render("compromised", &sample_context("compromised").unwrap())
        .unwrap();
    assert_eq!(
        c.subject,
        "[authwatch] mx1.example.com: URGENT: 203.0.113.7 BLOCKED - logged in as alice via Dovecot after 37 failed attempts"
    );
}

#[test]
fn ipv6_gets_ip6_commands() {
    let r = Renderer::new(None).unwrap();
    let mut ctx = IpAlertContext::sample();
    ctx.ip = "2001:db8::7".into();
    ctx.ip_version = 6;
    let out = r.render_ip_alert(&ctx).unwrap();
    assert!(out
        .text
        .contains("nft add element inet authwatch blocked6 { 2001:db8::7 timeout 1h }"));
    assert!(out
        .text
        .contains("ip6tables -I INPUT -s 2001:db8::7 -j DROP"));
}

#[test]
fn undefined_variable_is_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ip_burst.body.txt"),
        "line one\n{% if alert_number > 99 %}{{ attacker_country }}{% endif %}\n",
    )
    .unwrap();
    let r = Renderer::new(Some(dir.path())).unwrap();
    let problems = r.check();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("ip_burst.body.txt"), "{problems:?}");
    assert!(problems[0].contains("attacker_country"), "{problems:?}");
}

#[test]
fn syntax_error_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ip_burst.subject.txt"), "ok\n{{ ip }\n").unwrap();
    let e = Renderer::new(Some(dir.path())).err().expect("syntax error");
    assert!(e.0.contains("ip_burst.subject.txt:2"), "{}", e.0);
}

#[test]
fn html_part_is_a_table_with_escaped_attacker_text() {
    let r = Renderer::new(None).unwrap().with_html(true);
    let mut ctx = IpAlertContext::sample();
    ctx.accounts[0].name = "<script>alert(1)</script>".into();
    let out = r.render_ip_alert(&ctx).unwrap();
    let html = out.html.unwrap();
    assert!(html.contains("<table"), "{html}");
    assert!(html.contains("&lt;script&gt;"), "{html}");
    assert!(!html.contains("<script>"), "{html}");
    let c = r
        .render("compromised", &sample_context("compromised").unwrap())
        .unwrap();
    assert!(c
        .html
        .unwrap()
        .contains("<pre>Automatic alert from authwatch"));
    assert_eq!(
        Renderer::new(None)
            .unwrap()
            .render_ip_alert(&ctx)
            .unwrap()
            .html,
        None
    );
}

#[test]
fn held_alerts_csv_quotes_and_defuses_fields() {
    let rec = |key: &str| crate::policy::HeldRecord {
        kind: AlertKind::AccountAttack,
        key: key.into(),
        service: "exim".into(),
        attempts: 7,
        first_seen: "2026-11-23 03:14:00 UTC".into(),
        last_seen: "2026-11-23 03:15:00 UTC".into(),
    };
    assert_eq!(held_csv(&[]), None);
    // (key, CSV field)
    let table = [
        ("203.0.113.5", "203.0.113.5"),
        ("a,b", "\"a,b\""),
        ("say \"hi\"", "\"say \"\"hi\"\"\""),
        ("=HYPERLINK(\"x\")", "\"'=HYPERLINK(\"\"x\"\")\""),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
    ];
    for (key, field) in table {
        let csv = held_csv(&[rec(key)]).unwrap();
        assert_eq!(csv.file_name, HELD_CSV_NAME);
        assert_eq!(
            csv.text,
            format!("kind,key,service,attempts,first_seen,last_seen\naccount_attack,{field},exim,7,2026-11-23 03:14:00 UTC,2026-11-23 03:15:00 UTC\n"),
            "{key:?}"
        );
    }
}

#[test]
fn digest_lists_held_records_in_a_table() {
    let r = Renderer::new(None).unwrap();
    let out = r
        .render("digest", &sample_context("digest").unwrap())
        .unwrap();
    assert!(
        out.text.contains("1 more alerts were held back by the hourly cap, one line each (also in the attached held-alerts.csv)"),
        "{}",
        out.text
    );
    assert!(out.text.contains("  198.51.100.23 "), "{}", out.text);
    assert!(out.subject.contains("2 new alerts"), "{}", out.subject);
}

#[test]
fn an_alerts_facts_come_from_its_context() {
    let ip = alert_facts(&sample_context("ip_burst").unwrap());
    assert_eq!(ip.service, "exim");
    assert_eq!(ip.first_seen, "2026-11-23 03:14:00 UTC");
    assert_eq!(ip.last_seen, "2026-11-23 03:14:00 UTC");
    let c = alert_facts(&sample_context("compromised").unwrap());
    assert_eq!(c.service, "dovecot");
    assert_eq!(c.first_seen, "2026-11-23 03:20:00 UTC");
    assert_eq!(c.last_seen, "2026-11-23 03:20:00 UTC");
    // A digest has none.
    assert_eq!(
        alert_facts(&sample_context("digest").unwrap()),
        crate::policy::AlertFacts::default()
    );
}

#[test]
fn digest_names_kinds_in_words() {
    let r = Renderer::new(None).unwrap();
    let out = r
        .render("digest", &sample_context("digest").unwrap())
        .unwrap();
    assert!(out.text.contains("203.0.113.47 (IP burst)"), "{}", out.text);
    assert!(!out.text.contains("ip_burst"), "{}", out.text);
}
