//! Tests of `authwatch explain`: line shapes, addresses, and which rule matched and why not.

use super::*;
use jiff::tz::TimeZone;

fn settings() -> Settings {
    Settings {
        tz: TimeZone::UTC,
        progress: false,
        ..Settings::default()
    }
}

#[test]
fn shapes_group_lines_that_differ_in_numbers() {
    let ctx = ParseCtx::new(TimeZone::UTC, Timestamp::now());
    let a = shape_of(
        "2026-11-01 00:00:01 SMTP protocol error in \"AUTH LOGIN\" H=(User) [45.1.2.3]:1234 AUTH",
        &ctx,
    );
    let b = shape_of(
        "2026-11-02 10:20:01 SMTP protocol error in \"AUTH LOGIN\" H=(User) [5.61.200.3]:55 AUTH",
        &ctx,
    );
    assert_eq!(a, b);
    assert_eq!(a, "SMTP protocol error in # # H=# # AUTH");
    let c = shape_of(
            "2026-11-01 00:00:49 H=(win-clj1b0gq6jp.domain) [218.121.69.8]:30602 F=<sara958@corp34.example> rejected RCPT <test61@example.com>: Sender verify failed",
            &ctx,
        );
    let d = shape_of(
            "2026-11-01 00:05:31 H=(HELO) [31.252.165.104]:32422 F=<olivia433@corp49.example> rejected RCPT <nobody52@example.net>: Sender verify failed",
            &ctx,
        );
    assert_eq!(c, d);
}

#[test]
fn addresses_are_found_with_and_without_ports() {
    assert_eq!(
        addresses("x [192.0.2.1]:25 rip=2001:db8::1, lip=::ffff:10.0.0.1 y 10.1.2.3:587"),
        vec!["192.0.2.1", "2001:db8::1", "10.0.0.1", "10.1.2.3"]
    );
    assert!(addresses("Start queue run: pid=1234").is_empty());
}

#[test]
fn line_explanations_say_which_rule_matched_and_why_not() {
    let s = settings();
    let mut out = String::new();
    render_line(
            &s,
            "2026-11-23 15:59:08 PLAIN authenticator failed for (x) [203.0.113.5]: 535 Incorrect authentication data (set_id=alice)",
            &mut out,
        );
    assert!(out.contains("Result: matched by exim"), "{out}");
    assert!(out.contains("203.0.113.5"), "{out}");

    let mut out = String::new();
    render_line(
            &s,
            "2026-11-23 15:59:08 PLAIN authenticator failed for a b c [203.0.113.5]: 535 Incorrect authentication data",
            &mut out,
        );
    assert!(out.contains("Result: no rule matched."), "{out}");
    assert!(out.contains("\"authenticator failed for\""), "{out}");
    assert!(out.contains("addresses in it: 203.0.113.5"), "{out}");

    let mut only = settings();
    only.services = vec!["postfix".into()];
    let mut out = String::new();
    render_line(
            &only,
            "2026-11-23 15:59:08 PLAIN authenticator failed for (x) [203.0.113.5]: 535 Incorrect authentication data",
            &mut out,
        );
    assert!(out.contains("add --service exim"), "{out}");
}
