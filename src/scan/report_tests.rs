//! Tests of the scan report: the chart, times in the zone, table layout and inert attacker text.

use super::*;

#[test]
fn sparkline_scales_to_the_peak_and_blanks_zero() {
    assert_eq!(sparkline(&[0, 1, 4, 8, 2]), " ▁▄█▂");
    assert_eq!(sparkline(&[1000, 1]), "█▁");
    assert_eq!(sparkline(&[0, 0]), "  ");
    assert_eq!(sparkline(&[]), "");
}

#[test]
fn rfc3339_uses_the_zone_offset_and_tables_show_wall_time() {
    let ts: Timestamp = "2026-07-01T12:00:00Z".parse().unwrap();
    let tz = TimeZone::get("Europe/Berlin").unwrap();
    let s = rfc3339(ts, &tz);
    assert_eq!(s, "2026-07-01T14:00:00+02:00");
    assert_eq!(wall(&s), "2026-07-01 14:00:00");
    assert_eq!(rfc3339(ts, &TimeZone::UTC), "2026-07-01T12:00:00+00:00");
    for t in [
        "2026-07-01T12:00:00Z",
        "2026-01-15T23:59:59Z",
        "2026-03-29T01:00:00Z",
    ] {
        let ts: Timestamp = t.parse().unwrap();
        let st = Stamp::new(ts, &tz);
        assert_eq!(st.to_string(), rfc3339(ts, &tz));
        assert_eq!(
            serde_json::to_value(st).unwrap(),
            serde_json::Value::String(rfc3339(ts, &tz))
        );
    }
    assert_eq!(wall_opt(&Some(Stamp::new(ts, &tz))), "2026-07-01 14:00:00");
    assert_eq!(wall_opt::<Stamp>(&None), "-");
}

#[test]
fn table_columns_align_and_the_last_is_not_padded() {
    let mut t = Table::new(&[
        ("A", Align::Left),
        ("NUM", Align::Right),
        ("Z", Align::Left),
    ]);
    t.rows
        .push(vec!["long text".into(), "7".into(), "x".into()]);
    t.rows.push(vec!["s".into(), "12345".into(), "".into()]);
    let mut out = String::new();
    t.render(&mut out);
    assert_eq!(
        out,
        "  A            NUM  Z\n  long text      7  x\n  s          12345\n"
    );
}

#[test]
fn attacker_text_is_inert_and_cut() {
    assert_eq!(shown("a\u{1b}[2Jb", 100), "a<U+001B>[2Jb");
    assert_eq!(shown("abcdef", 3), "abc…");
}
