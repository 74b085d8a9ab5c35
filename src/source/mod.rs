//! Log sources: following log files as they grow, turning their bytes into lines for `rules`.
//!
//! [`Tailer`] is a synchronous, std-only polling follower of one path. It survives logrotate's
//! rename rotation (`create`; it follows the new file at once and keeps draining each old handle
//! until that has been quiet for a grace period, so a burst of rotations within the grace loses
//! no file), `copytruncate` (truncation is detected by size and by fingerprints of the first
//! bytes and of the bytes before the read offset, so a file truncated and regrown to or past the
//! offset is caught; the lines that only made it into the rotated copy, or into the copies of
//! later truncations, are read from there), deleted or replaced paths and permission errors
//! (logged once per change, retried on every poll). It never splits a line, never drops one for invalid UTF-8 (lossy conversion),
//! cuts over-long lines to a limit, and reports a [`Checkpoint`] (file identity plus the offset
//! after the last delivered line) so a restart resumes where it left off. The caller owns the
//! thread and the poll interval; see `DESIGN.md` §2 for why this is not `linemux`.
//!
//! `reader` puts the three kinds of source (file, journal, stdin) behind one [`Reader`] and
//! runs each on a thread of its own ([`spawn_reader`]), sending [`Batch`]es to the agent.

mod batch;
pub mod journal;
mod reader;
pub mod stdin;
mod tail;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use batch::LineBatch;
pub use reader::{spawn_reader, Batch, Position, Reader, MAX_BATCH_BYTES};
pub use tail::{Tailer, DEFAULT_ROTATION_GRACE, FINGERPRINT_LEN};

/// Where a [`Tailer`] starts in a file that already exists when it is created.
///
/// A file that does not exist yet (or cannot be opened) when the tailer is created is always
/// read from its beginning once it appears: everything in it is new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Read the existing content, then follow.
    Beginning,
    /// Skip the existing content and deliver only lines completed from now on (a line being
    /// written at that moment, i.e. an unterminated last line, is delivered whole once complete).
    End,
}

/// Where a [`Tailer`] was: enough to resume after a restart without re-reading or losing lines.
///
/// `offset` is the byte offset just after the last fully delivered line of the file identified
/// by `dev`/`inode` and `fingerprint` (a copy of its first bytes, up to [`FINGERPRINT_LEN`]; the
/// fingerprint tells a reused inode number or a truncated file apart from the same file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub dev: u64,
    pub inode: u64,
    /// The file's first bytes, serialised as lowercase hex.
    #[serde(with = "hex_bytes")]
    pub fingerprint: Vec<u8>,
    pub offset: u64,
}

mod hex_bytes {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            out.push(DIGITS[usize::from(b >> 4)] as char);
            out.push(DIGITS[usize::from(b & 0x0f)] as char);
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() % 2 != 0 {
            return Err(D::Error::custom("fingerprint: odd number of hex digits"));
        }
        text.as_bytes()
            .chunks(2)
            .map(|pair| {
                let digit = |c: u8| (c as char).to_digit(16);
                match (digit(pair[0]), digit(pair[1])) {
                    (Some(hi), Some(lo)) => Ok((hi * 16 + lo) as u8),
                    _ => Err(D::Error::custom("fingerprint: not a hex string")),
                }
            })
            .collect()
    }
}
