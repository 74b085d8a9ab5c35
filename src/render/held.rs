//! The digest's list of alerts the hourly cap held back: how many rows its body shows, and
//! the CSV attachment that lists them all, with fields that cannot run as spreadsheet formulas.

use crate::message::Attachment;
use crate::policy::HeldRecord;

/// Rows of held-back alerts shown in a digest's body, at most; all of them are in the attached
/// CSV. 500 lines of about 110 characters keep the body near 55 KB, readable in any client.
pub const DIGEST_TABLE_ROWS: usize = 500;

/// The name of the digest's attachment listing every held-back alert.
pub const HELD_CSV_NAME: &str = "held-alerts.csv";

/// One CSV field: quoted when it holds a comma, quote or line break (RFC 4180), and with a `'`
/// in front when it starts like a spreadsheet formula (`=`, `+`, `-`, `@`), so that opening the
/// file runs nothing an attacker wrote.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The CSV attachment listing held-back alerts, one line each (none when there are none).
pub fn held_csv(records: &[HeldRecord]) -> Option<Attachment> {
    if records.is_empty() {
        return None;
    }
    let mut text = String::with_capacity(records.len() * 96 + 64);
    text.push_str("kind,key,service,attempts,first_seen,last_seen\n");
    for r in records {
        let fields = [
            csv_field(r.kind.as_str()),
            csv_field(&r.key),
            csv_field(&r.service),
            r.attempts.to_string(),
            csv_field(&r.first_seen),
            csv_field(&r.last_seen),
        ];
        text.push_str(&fields.join(","));
        text.push('\n');
    }
    Some(Attachment {
        file_name: HELD_CSV_NAME.into(),
        content_type: "text/csv; charset=utf-8".into(),
        text,
    })
}
