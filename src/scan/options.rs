//! What `scan` and `explain` are asked to do, as plain values (the command layer fills these
//! from the command line; the library never sees the clap types).

use std::path::PathBuf;

/// Output format of `scan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanFormat {
    /// Aligned tables for people.
    Table,
    /// One JSON object.
    Json,
}

/// `authwatch scan`.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Only these rules (entries may hold comma-separated names); empty: all.
    pub services: Vec<String>,
    /// Config file: its detect.per_ip threshold, time_zone and custom_rules are used.
    pub config: Option<PathBuf>,
    pub format: ScanFormat,
    /// Rows per table (0: all). JSON always has all.
    pub top: usize,
    /// One JSON object per matching line instead of a report.
    pub events: bool,
    /// Log files, oldest first; `-` reads stdin.
    pub files: Vec<PathBuf>,
}

/// `authwatch explain`.
#[derive(Debug, Clone)]
pub struct ExplainOptions {
    /// Only these rules (entries may hold comma-separated names); empty: all.
    pub services: Vec<String>,
    /// Config file: its time_zone and custom_rules are used.
    pub config: Option<PathBuf>,
    /// Explain this one line.
    pub line: Option<String>,
    /// Kinds of unmatched lines shown (0: all).
    pub samples: usize,
    /// Log files; `-` reads stdin.
    pub files: Vec<PathBuf>,
}
