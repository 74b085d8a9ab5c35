//! Durations as the config writes them: `30s`, `10m`, `1h30m`, `2d`, `250ms`.

use std::time::Duration;

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
