//! One entry of `journalctl -o json` turned into the syslog-style line the rules read: stamp
//! (RFC 3339, microseconds, the configured zone's offset), host, identifier, pid and the
//! message with control characters escaped as rsyslog writes them (see the [parent module's
//! docs](super) for the whole format).

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde_json::Value;
use std::borrow::Cow;

/// One parsed journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// `__CURSOR`.
    pub cursor: Option<String>,
    /// The syslog-style line (not yet cut to a maximum length); `None` when the entry has no
    /// `MESSAGE`.
    pub line: Option<String>,
}

/// One line of `journalctl -o json` to an entry: its cursor and its syslog-style line (see the
/// [module docs](super)); `tz` is the zone the stamp is written in.
pub fn parse_entry(json: &[u8], tz: &TimeZone) -> Result<JournalEntry, serde_json::Error> {
    let map: serde_json::Map<String, Value> = serde_json::from_slice(json)?;
    let text = |name: &str| map.get(name).and_then(field_bytes);
    let cursor = text("__CURSOR").map(|b| String::from_utf8_lossy(&b).into_owned());
    let Some(message) = text("MESSAGE") else {
        return Ok(JournalEntry { cursor, line: None });
    };
    let stamp = ["_SOURCE_REALTIME_TIMESTAMP", "__REALTIME_TIMESTAMP"]
        .iter()
        .find_map(|f| {
            let b = text(f)?;
            let us: i64 = std::str::from_utf8(&b).ok()?.trim().parse().ok()?;
            format_stamp(Timestamp::from_microsecond(us).ok()?, tz)
        });
    let host = text("_HOSTNAME")
        .map(|b| token(&b, |c| !c.is_whitespace() && !c.is_control()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "-".to_string());
    let ident = text("SYSLOG_IDENTIFIER")
        .or_else(|| text("_COMM"))
        .map(|b| token(&b, |c| c.is_ascii_alphanumeric() || "-_./@".contains(c)))
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    let pid = ["_PID", "SYSLOG_PID"].iter().find_map(|f| {
        let b = text(f)?;
        let p = std::str::from_utf8(&b).ok()?.trim();
        (!p.is_empty() && p.bytes().all(|c| c.is_ascii_digit())).then(|| p.to_string())
    });
    let mut line = String::with_capacity(message.len() + 80);
    if let Some(s) = stamp {
        line.push_str(&s);
        line.push(' ');
    }
    line.push_str(&host);
    line.push(' ');
    line.push_str(&ident);
    if let Some(p) = pid {
        line.push('[');
        line.push_str(&p);
        line.push(']');
    }
    line.push_str(": ");
    let mut msg: &[u8] = &message;
    while let Some(m) = msg.strip_suffix(b"\n") {
        msg = m;
    }
    push_escaped(&mut line, &String::from_utf8_lossy(msg));
    Ok(JournalEntry {
        cursor,
        line: Some(line),
    })
}

/// A field's value as bytes: a string; an array of numbers (a value that is not UTF-8); the
/// first value of a field the entry holds more than once (an array of those); `None` for
/// `null` (a value journalctl left out).
fn field_bytes(v: &Value) -> Option<Cow<'_, [u8]>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s.as_bytes())),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_number) => items
            .iter()
            .map(|n| n.as_u64().and_then(|n| u8::try_from(n).ok()))
            .collect::<Option<Vec<u8>>>()
            .map(Cow::Owned),
        Value::Array(items) => items.first().and_then(field_bytes),
        Value::Number(n) => Some(Cow::Owned(n.to_string().into_bytes())),
        _ => None,
    }
}

/// `b` as text with every character `keep` rejects replaced by `_`.
fn token(b: &[u8], keep: impl Fn(char) -> bool) -> String {
    String::from_utf8_lossy(b)
        .chars()
        .map(|c| if keep(c) { c } else { '_' })
        .collect()
}

/// Appends `msg` with control characters (except tab) written as `#` and three octal digits,
/// as rsyslog does: `\n` is `#012`.
fn push_escaped(out: &mut String, msg: &str) {
    for c in msg.chars() {
        if c.is_control() && c != '\t' && (c as u32) < 0x80 {
            out.push_str(&format!("#{:03o}", c as u32));
        } else {
            out.push(c);
        }
    }
}

/// `2026-11-23T15:59:08.123456+00:00`: RFC 3339, microseconds, the offset `tz` has then.
pub(super) fn format_stamp(ts: Timestamp, tz: &TimeZone) -> Option<String> {
    let offset = tz.to_offset(ts);
    let dt = offset.to_datetime(ts);
    if !(0..=9999).contains(&dt.year()) {
        return None;
    }
    let secs = offset.seconds();
    let sign = if secs < 0 { '-' } else { '+' };
    let abs = secs.unsigned_abs();
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}{sign}{:02}:{:02}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.subsec_nanosecond() / 1000,
        abs / 3600,
        abs / 60 % 60,
    ))
}
