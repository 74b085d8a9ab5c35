//! The rendered alert as a value: subject, text, optional HTML, id and attachments.
//! [`crate::render`] makes it once the alert policy has let the alert go (the policy works on
//! unrendered alerts, [`crate::policy::Notice`]) and [`crate::mail`] sends or spools it. It
//! imports no other module of the crate, so neither of those two has to import the other.

use serde::{Deserialize, Serialize};

/// A rendered alert, ready for the mailer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    /// The same alert as HTML, when `mail.html` is on (sent as multipart/alternative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// A stable identity of the alert (kind, key, alert number, log time), so that an alert
    /// made again after a crash (lines re-read since the last saved state) is not sent twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The id versions before `v2` gave the alert: checked too while `alert-ids` still holds
    /// ids of that form (see [`crate::policy::id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_id: Option<String>,
    /// The ids of the alerts this mail follows up (the first alert of each incident it is
    /// about), parent first: the mail's `In-Reply-To` and `References`, so a mail client shows
    /// a repeat alert or a digest in the thread of the alert it follows. Empty for a first alert.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thread: Vec<String>,
    /// Files sent with the mail (the digest's CSV of held-back alerts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// A text file sent with a mail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub file_name: String,
    /// `text/csv; charset=utf-8`.
    pub content_type: String,
    pub text: String,
}
