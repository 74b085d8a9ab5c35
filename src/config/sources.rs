//! Sources (`sources:`: log files, the systemd journal, stdin) and how files are followed
//! (`follow:`). A source names the rules applied to its lines, built-in or custom.

use super::raw::{RawFollow, RawJournal, RawSource};
use super::rules::SERVICES;
use super::{CustomRule, Validator};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    Beginning,
    End,
}

/// Where a source's lines come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// A log file, followed across rotations.
    File(PathBuf),
    /// The systemd journal, read through `journalctl -f -o json`.
    Journal(JournalSourceConfig),
    /// Standard input (`authwatch run --stdin`).
    Stdin,
}

/// A journal source: which units, and (for tests or other machines' journals) which files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSourceConfig {
    /// `-u` units; empty follows every entry.
    pub units: Vec<String>,
    /// The journalctl program.
    pub journalctl: PathBuf,
    /// Read the journal files in this folder (`--directory`) instead of the system journal.
    pub directory: Option<PathBuf>,
    /// Read these journal files (`--file`) instead of the system journal.
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub kind: SourceKind,
    pub start: Start,
    /// Rules applied to this source's lines (built-in or custom names); empty means all.
    pub services: Vec<String>,
}

impl SourceConfig {
    /// How the source is named in logs, alerts, metrics and `state.json`: the file's path,
    /// `journal:UNIT,UNIT` (plus the files or folder read, if any), or `stdin`.
    pub fn name(&self) -> String {
        match &self.kind {
            SourceKind::File(p) => p.display().to_string(),
            SourceKind::Journal(j) => {
                let mut s = if j.units.is_empty() {
                    "journal:*".to_string()
                } else {
                    format!("journal:{}", j.units.join(","))
                };
                if let Some(d) = &j.directory {
                    s.push_str(&format!(" (directory {})", d.display()));
                }
                for f in &j.files {
                    s.push_str(&format!(" (file {})", f.display()));
                }
                s
            }
            SourceKind::Stdin => "stdin".to_string(),
        }
    }

    /// The file followed, for file sources.
    pub fn file(&self) -> Option<&Path> {
        match &self.kind {
            SourceKind::File(p) => Some(p),
            _ => None,
        }
    }

    /// Standard input, all rules.
    pub fn stdin() -> SourceConfig {
        SourceConfig {
            kind: SourceKind::Stdin,
            start: Start::Beginning,
            services: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct FollowConfig {
    pub poll_interval: Duration,
    pub max_line_bytes: usize,
    /// How often checkpoints and windows are saved to `state_dir/state.json`.
    pub checkpoint_interval: Duration,
}

impl Validator {
    /// `sources`: at least one; each a file or the journal, with known service names
    /// (`custom_rules` are validated first so that sources may name them).
    pub(super) fn sources(
        &mut self,
        raw: &Option<Spanned<Vec<RawSource>>>,
        custom_rules: &[CustomRule],
    ) -> Vec<SourceConfig> {
        let custom_names: Vec<String> = custom_rules.iter().map(|c| c.name().to_string()).collect();
        let mut sources = Vec::new();
        match raw {
            None => self.issue::<()>(None, "sources", "at least one source is required"),
            Some(list) if list.value.is_empty() => {
                self.issue(Some(list), "sources", "at least one source is required")
            }
            Some(list) => {
                for (i, s) in list.value.iter().enumerate() {
                    let field = format!("sources[{i}]");
                    let kind = self.source_kind(s, &field, list);
                    let mut services = Vec::new();
                    let named: Vec<&Spanned<String>> = match (&s.service, &s.services) {
                        (Some(one), Some(_)) => {
                            self.issue(
                                Some(one),
                                &format!("{field}.service"),
                                "give service or services, not both",
                            );
                            Vec::new()
                        }
                        (Some(one), None) => vec![one],
                        (None, Some(list)) => list.value.iter().collect(),
                        (None, None) => Vec::new(),
                    };
                    for (k, sv) in named.into_iter().enumerate() {
                        let known = SERVICES.contains(&sv.value.as_str())
                            || custom_names.iter().any(|c| c == &sv.value);
                        if known {
                            services.push(sv.value.clone());
                        } else {
                            let f = if s.service.is_some() {
                                format!("{field}.service")
                            } else {
                                format!("{field}.services[{k}]")
                            };
                            self.issue(
                                Some(sv),
                                &f,
                                format!(
                                    "unknown service {:?}; known: {}{}",
                                    sv.value,
                                    SERVICES.join(", "),
                                    if custom_names.is_empty() {
                                        String::new()
                                    } else {
                                        format!(" (custom: {})", custom_names.join(", "))
                                    }
                                ),
                            );
                        }
                    }
                    sources.push(SourceConfig {
                        kind,
                        start: s.start.unwrap_or(Start::End),
                        services,
                    });
                }
            }
        }
        sources
    }

    /// A source is a file (`path`) or the journal (`journal`), not both.
    fn source_kind(
        &mut self,
        s: &RawSource,
        field: &str,
        list: &Spanned<Vec<RawSource>>,
    ) -> SourceKind {
        match (&s.path, &s.journal) {
            (Some(p), None) => {
                if p.value.trim().is_empty() {
                    self.issue(Some(p), &format!("{field}.path"), "must not be empty");
                }
                SourceKind::File(self.path(&p.value))
            }
            (None, Some(j)) => {
                SourceKind::Journal(self.journal(&j.value, &format!("{field}.journal")))
            }
            (Some(p), Some(_)) => {
                self.issue(
                    Some(p),
                    field,
                    "give path (a log file) or journal (the systemd journal), not both",
                );
                SourceKind::Stdin
            }
            (None, None) => {
                self.issue(
                    Some(list),
                    field,
                    "each source needs path (a log file) or journal (the systemd journal)",
                );
                SourceKind::Stdin
            }
        }
    }

    fn journal(&mut self, j: &RawJournal, field: &str) -> JournalSourceConfig {
        let mut units = Vec::new();
        for (k, u) in j.units.iter().flatten().enumerate() {
            let ok = !u.value.is_empty()
                && u.value.len() <= 256
                && !u.value.starts_with('-')
                && u.value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ":-_.\\@*[]".contains(c));
            if ok {
                units.push(u.value.clone());
            } else {
                self.issue(
                    Some(u),
                    &format!("{field}.units[{k}]"),
                    format!(
                        "{:?} is not a systemd unit name (e.g. postfix@-.service, dovecot.service)",
                        u.value
                    ),
                );
            }
        }
        let journalctl = match &j.journalctl {
            Some(p) => {
                let path = self.path(&p.value);
                if !path.is_absolute() {
                    self.issue(
                        Some(p),
                        &format!("{field}.journalctl"),
                        "must be an absolute path",
                    );
                }
                path
            }
            None => PathBuf::from("journalctl"),
        };
        let directory = j.directory.as_ref().map(|d| self.path(&d.value));
        let files = j
            .files
            .iter()
            .flatten()
            .map(|f| self.path(&f.value))
            .collect();
        JournalSourceConfig {
            units,
            journalctl,
            directory,
            files,
        }
    }

    /// `follow`: poll interval, longest line, checkpoint interval.
    pub(super) fn follow(&mut self, rf: RawFollow) -> FollowConfig {
        FollowConfig {
            poll_interval: self.duration(
                &rf.poll_interval,
                "follow.poll_interval",
                Duration::from_millis(250),
                Duration::from_millis(10),
            ),
            max_line_bytes: self.count(
                &rf.max_line_bytes,
                "follow.max_line_bytes",
                64 * 1024,
                256,
                16 * 1024 * 1024,
            ) as usize,
            checkpoint_interval: self.duration(
                &rf.checkpoint_interval,
                "follow.checkpoint_interval",
                Duration::from_secs(5),
                Duration::from_millis(10),
            ),
        }
    }
}
