//! Tests of the text helpers: inert attacker text, the clean capped Subject, bar charts and
//! durations.

use super::*;

#[test]
fn attacker_text_is_inert() {
    assert_eq!(inert("alice"), "alice");
    assert_eq!(inert("a\r\nSubject: x"), "a<U+000D><U+000A>Subject: x");
    assert_eq!(inert("\u{202E}gpj.exe"), "<U+202E>gpj.exe");
    assert_eq!(inert("\x1b[31mred"), "<U+001B>[31mred");
    assert_eq!(
        inert("see https://evil.example/x and HTTP://X"),
        "see hxxps://evil.example/x and HXXP://X"
    );
    assert_eq!(inert("ünïcode ok"), "ünïcode ok");
}

#[test]
fn sparkline_scales_to_the_busiest_minute() {
    assert_eq!(sparkline(&[0, 1, 2, 4, 8]), " ▁▂▄█");
    assert_eq!(sparkline(&[3, 3]), "██");
    assert_eq!(sparkline(&[]), "");
}

#[test]
fn invisible_and_reordering_characters_are_marked_regression_issue_14() {
    // (input, inert output): each character a reader cannot see, or that reorders the
    // text, becomes a visible mark.
    let table: &[(&str, &str)] = &[
        ("a\u{2028}b", "a<U+2028>b"),
        ("a\u{2029}b", "a<U+2029>b"),
        ("a\u{061C}b", "a<U+061C>b"),
        ("a\u{3164}b", "a<U+3164>b"),
        ("a\u{115F}\u{1160}b", "a<U+115F><U+1160>b"),
        ("a\u{FFA0}b", "a<U+FFA0>b"),
        ("a\u{180E}b", "a<U+180E>b"),
        ("a\u{00AD}b", "a<U+00AD>b"),
        ("a\u{034F}b", "a<U+034F>b"),
        ("a\u{17B4}b", "a<U+17B4>b"),
        (
            "flag\u{E0067}\u{E0062}\u{E007F}",
            "flag<U+E0067><U+E0062><U+E007F>",
        ),
        ("\u{E0001}x", "<U+E0001>x"),
        ("a\u{2066}b\u{2069}", "a<U+2066>b<U+2069>"),
        ("a\u{200E}\u{200F}b", "a<U+200E><U+200F>b"),
        ("a\u{0085}b", "a<U+0085>b"),
        ("a\u{FFF9}b", "a<U+FFF9>b"),
        ("a\u{1D173}b", "a<U+1D173>b"),
        // Visible text of any script is kept.
        ("Пётр 李雷 Ωμέγα जुर्गन", "Пётр 李雷 Ωμέγα जुर्गन"),
        ("한국어", "한국어"),
    ];
    for (input, want) in table {
        assert_eq!(inert(input), *want, "{input:?}");
    }
}

#[test]
fn subject_is_one_clean_capped_line_regression_issue_14() {
    // (subject, cleaned): one line, no invisible or reordering characters, each word at
    // most MAX_SUBJECT_WORD_CHARS, the whole at most MAX_SUBJECT_CHARS.
    let w59 = "w".repeat(59);
    let table: Vec<(String, String)> = vec![
        (
            "a\r\nBcc: x@example.com".into(),
            "a Bcc: x@example.com".into(),
        ),
        ("a\u{2028}b\u{2029}c\u{85}d".into(), "a b c d".into()),
        ("\u{202E}gpj.exe".into(), "<U+202E>gpj.exe".into()),
        ("x\u{2066}y\u{200F}z".into(), "x<U+2066>y<U+200F>z".into()),
        ("a\u{1b}[31m".into(), "a<U+001B>[31m".into()),
        ("see http://evil".into(), "see hxxp://evil".into()),
        (format!("{w59}w"), format!("{w59}w")),
        (format!("{w59}ww"), format!("{w59}…")),
    ];
    for (input, want) in &table {
        assert_eq!(clean_subject(input), *want, "{input:?}");
        assert_eq!(clean_subject(want), *want, "applied twice: {want:?}");
    }
    for account in [
        "a".repeat(5_000),
        "ü".repeat(5_000),
        "ab ".repeat(2_000),
        "\u{202E}\n".repeat(2_000),
    ] {
        let s = clean_subject(&format!(
            "[authwatch] URGENT: 1.2.3.4 logged in as {account}"
        ));
        assert!(s.chars().count() <= MAX_SUBJECT_CHARS, "{s}");
        assert!(s.ends_with('…'), "{s}");
        assert!(s
            .split(' ')
            .all(|w| w.chars().count() <= MAX_SUBJECT_WORD_CHARS));
        assert!(!s.chars().any(is_hidden), "{s:?}");
        assert_eq!(clean_subject(&s), s);
    }
}

#[test]
fn subject_is_folded_to_one_line() {
    assert_eq!(fold_subject(" a\n b\r\n\tc "), "a b c");
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
fn human_time_shows_date_time_and_zone() {
    let t: Timestamp = "2026-11-23T03:14:00Z".parse().unwrap();
    assert_eq!(human_time(t, &TimeZone::UTC), "2026-11-23 03:14:00 UTC");
}
