//! Configuration errors: [`ConfigIssue`] is one problem with its place (file, line, column,
//! dotted field), [`ConfigError`] all the problems of one configuration, printed one a line.

use std::fmt;

/// One problem in the configuration, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub file: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
    /// Dotted path of the field, e.g. `detect.per_ip.window`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All the problems found in one configuration.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        writeln!(
            f,
            "{n} configuration error{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for (i, issue) in self.issues.iter().enumerate() {
            if i + 1 < n {
                writeln!(f, "  {issue}")?;
            } else {
                write!(f, "  {issue}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
