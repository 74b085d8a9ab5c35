//! Pure text helpers shared by every stage: making attacker-chosen text inert ([`inert`],
//! [`is_hidden`]), times and durations for people ([`human_time`], [`format_duration`],
//! [`parse_duration`]), the mail Subject's cleaning and capping ([`clean_subject`],
//! [`fold_subject`]) and the small bar charts alerts and reports draw ([`sparkline`]).
//!
//! It imports no other module of the crate, so that config, render, mail, metrics, actions and
//! scan can all use it without importing each other.

use jiff::{tz::TimeZone, Timestamp};
use std::time::Duration;

/// Format a time for people: `2026-11-23 03:14:00 UTC`.
pub fn human_time(t: Timestamp, tz: &TimeZone) -> String {
    let zoned = t.to_zoned_datetime(tz.clone());
    zoned.strftime("%Y-%m-%d %H:%M:%S %Z").to_string()
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

/// A small Unicode bar chart (`▁▂▃▄▅▆▇█`) of counts, one character per count: a zero is a
/// blank, so quiet minutes stand out from active ones; the largest count is a full block and
/// any other non-zero count gets at least the lowest bar (alerts and `scan` reports use it).
pub fn sparkline(counts: &[u64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = counts.iter().copied().max().unwrap_or(0);
    counts
        .iter()
        .map(|&c| {
            if c == 0 || max == 0 {
                ' '
            } else {
                let level = (c as u128 * 8).div_ceil(max as u128) as usize;
                BARS[level.clamp(1, 8) - 1]
            }
        })
        .collect()
}

/// Whether `c` is a character a reader cannot see, or one that changes how the text around it
/// is shown: controls (C0, C1), line and paragraph separators, bidi marks, embeddings,
/// overrides and isolates, zero-width and joiner characters, the soft hyphen, fillers and
/// vowels that render as nothing (Hangul, Khmer, Mongolian), interlinear annotation marks,
/// musical formatting marks, and the tag characters (which can hide a whole message in what
/// looks like one flag). Attackers use them to make `gpj.exe`
/// read as `exe.jpg`, or to hide text in an account name.
pub fn is_hidden(c: char) -> bool {
    let cp = c as u32;
    c.is_control()
        || matches!(
            cp,
            0x00AD              // soft hyphen
            | 0x034F            // combining grapheme joiner
            | 0x061C            // Arabic letter mark
            | 0x115F | 0x1160   // Hangul choseong / jungseong fillers
            | 0x17B4 | 0x17B5   // Khmer inherent vowels (invisible)
            | 0x180B..=0x180F   // Mongolian variation selectors, vowel separator
            | 0x200B..=0x200F   // zero width space/joiners, LRM, RLM
            | 0x2028..=0x202E   // line/paragraph separator, bidi embeddings and overrides
            | 0x2060..=0x206F   // word joiner, invisible operators, bidi isolates, deprecated formats
            | 0x3164            // Hangul filler
            | 0xFEFF            // zero width no-break space (BOM)
            | 0xFFA0            // halfwidth Hangul filler
            | 0xFFF9..=0xFFFB   // interlinear annotation marks
            | 0x1D173..=0x1D17A // musical symbol formatting marks
            | 0xE0000..=0xE007F // tag characters
        )
}

/// Make attacker-chosen text harmless to show: characters a reader cannot see or that reorder
/// the text ([`is_hidden`]) become visible `<U+XXXX>` marks, and URL schemes are defanged
/// (`hxxp://`), so a mail client neither reorders the text nor turns it into links.
pub fn inert(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if is_hidden(c) {
            out.push_str(&format!("<U+{:04X}>", c as u32));
        } else {
            out.push(c);
        }
    }
    // Defang links, case-insensitively.
    let lower = out.to_ascii_lowercase();
    if !lower.contains("http") && !lower.contains("ftp") {
        return out;
    }
    let mut fixed = String::with_capacity(out.len() + 8);
    let mut i = 0;
    while i < out.len() {
        let rest = &lower[i..];
        let scheme_len = ["https://", "http://", "ftp://"]
            .iter()
            .find(|p| rest.starts_with(**p))
            .map(|p| p.len());
        if let Some(len) = scheme_len {
            // Replace the "tt" / "t" so "http" reads "hxxp", keep the original case elsewhere.
            let orig = &out[i..i + len];
            let defanged = orig
                .replacen("tt", "xx", 1)
                .replacen("TT", "XX", 1)
                .replacen("ftp", "fxp", 1)
                .replacen("FTP", "FXP", 1);
            fixed.push_str(&defanged);
            i += len;
        } else {
            let ch_len = out[i..].chars().next().map_or(1, char::len_utf8);
            fixed.push_str(&out[i..i + ch_len]);
            i += ch_len;
        }
    }
    fixed
}

/// Fold a rendered subject into one line with single spaces.
pub fn fold_subject(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Characters of a Subject, at most (the ellipsis included). RFC 5322 limits a header line to
/// 998 bytes and a 5,000-character account name once made a 5,002-byte Subject that a relay
/// refused for good; a subject is read in a mail list, where 200 characters is already more
/// than is shown. The body carries the whole text.
pub const MAX_SUBJECT_CHARS: usize = 200;

/// Characters of one word of a Subject, at most (the ellipsis included). An ASCII word is
/// written into the header as it is and can only be folded at the spaces around it: a word of
/// at most 60 characters keeps every folded line within the 78 that RFC 5322 recommends. A cut
/// word ends in `…`, which is not ASCII, so the mailer writes it as RFC 2047 encoded words,
/// and those are folded to fit.
pub const MAX_SUBJECT_WORD_CHARS: usize = 60;

/// Cut `s` to `max` characters, the last of them an ellipsis when anything was cut.
fn cut_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The Subject as it goes into the mail: one line (any white space, CR, LF, U+2028 made one
/// space), no character a reader cannot see or that reorders text (marked `<U+XXXX>`, see
/// [`inert`]), each word cut to [`MAX_SUBJECT_WORD_CHARS`] and the whole to
/// [`MAX_SUBJECT_CHARS`], with an ellipsis where cut. Applying it again changes nothing.
pub fn clean_subject(s: &str) -> String {
    let words: Vec<String> = s
        .split_whitespace()
        .map(|w| cut_chars(&inert(w), MAX_SUBJECT_WORD_CHARS))
        .collect();
    cut_chars(&words.join(" "), MAX_SUBJECT_CHARS)
}

#[cfg(test)]
#[path = "text_tests.rs"]
mod tests;
