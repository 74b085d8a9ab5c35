//! Reading the YAML text into [`RawConfig`] so that one syntax or type error does not hide the
//! others: when the whole document fails, each failing node is found and reported on its own
//! (with the file's real line numbers), and the rest is still validated.
//!
//! Messages say what to write, for the mistakes people make in YAML: a tab in the indentation
//! ("tab characters are not allowed in YAML indentation; use spaces"), `yes`/`no`/`on`/`off`
//! for a boolean ("write true or false"), one value where a list is expected ("expected a
//! list, e.g. `to: [a@b]`"); and each names the leaf key (`mail.to`, not `mail`).

use super::raw::RawConfig;
use super::{ConfigError, ConfigIssue, Validator};
use std::path::PathBuf;

fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        strict_booleans: true,
    }
}

fn serde_issue(file: &str, e: &serde_saphyr::Error) -> ConfigIssue {
    let loc = e.location();
    // The rendered message may carry a source snippet on later lines, and starts with its own
    // "error: line N column M:" that we give in our own form.
    let full = e.to_string();
    let mut first = full.lines().next().unwrap_or("invalid YAML").trim();
    first = first.strip_prefix("error:").unwrap_or(first).trim_start();
    if first.starts_with("line ") {
        if let Some(i) = first.find(": ") {
            first = &first[i + 2..];
        }
    }
    let first = first
        .replace("invalid u64", "expected a whole number")
        .replace("invalid boolean", "expected true or false");
    ConfigIssue {
        file: file.to_string(),
        line: loc.map(|l| l.line()).filter(|&l| l > 0),
        column: loc.map(|l| l.column()).filter(|&c| c > 0),
        field: String::new(),
        message: first,
    }
}

/// Parse the whole document. When that fails, find every failing node: a node that fails is
/// split into its children (block mapping keys or sequence items), each parsed on its own with
/// its ancestors' header lines and padding that keeps the file's line numbers, so that one error
/// does not hide the others. The failing nodes are then blanked out and the rest is validated
/// too, so semantic errors elsewhere are reported in the same run.
pub(super) fn parse_raw(text: &str, file: &str) -> Result<RawConfig, ConfigError> {
    let parse = |t: &str| {
        serde_saphyr::from_str_with_options::<Option<RawConfig>>(t, yaml_options())
            .map(Option::unwrap_or_default)
    };
    let lines: Vec<&str> = text.lines().collect();
    let tabs = tab_issues(&lines, file);
    if !tabs.is_empty() {
        // A tab makes the indentation, and so the meaning of every later line, a guess:
        // report the tabs alone rather than errors that follow from them.
        return Err(ConfigError { issues: tabs });
    }
    let err = match parse(text) {
        Ok(raw) => return Ok(raw),
        Err(e) => e,
    };
    let friendly = |i: ConfigIssue| friendlier(i, &lines);
    let mut failing: Vec<Failing> = Vec::new();
    let top = split_children(&lines, 0, lines.len());
    if top.is_empty() {
        return Err(ConfigError {
            issues: vec![friendly(serde_issue(file, &err))],
        });
    }
    for (s, e) in top {
        let path = key_of(lines[s]).to_string();
        find_failing(
            &lines,
            &mut Vec::new(),
            (s, e),
            path,
            0,
            &parse,
            &mut failing,
        );
    }
    let mut issues: Vec<ConfigIssue> = failing
        .iter()
        .map(|f| {
            let mut i = serde_issue(file, &f.err);
            i.field = f.path.clone();
            friendly(i)
        })
        .collect();
    if issues.is_empty() {
        issues.push(friendly(serde_issue(file, &err)));
    } else {
        // Blank the failing nodes and validate what is left, keeping only located issues.
        let mut kept: Vec<&str> = lines.clone();
        for f in &failing {
            for l in kept.iter_mut().take(f.end).skip(f.start) {
                *l = "";
            }
        }
        if let Ok(raw) = parse(&kept.join("\n")) {
            let mut v = Validator {
                file: file.to_string(),
                base: PathBuf::from("."),
                issues: Vec::new(),
            };
            v.build(raw);
            issues.extend(v.issues.into_iter().filter(|i| i.line.is_some()));
        }
    }
    issues.sort_by_key(|i| (i.line, i.column));
    issues.dedup_by(|a, b| a.line == b.line && a.column == b.column);
    Err(ConfigError { issues })
}

/// The width a tab counts for when guessing which key a tab-indented line belongs to.
const TAB_WIDTH: usize = 8;

/// A tab in the indentation of a content line: one issue per line, with the key it is on.
fn tab_issues(lines: &[&str], file: &str) -> Vec<ConfigIssue> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let lead = &line[..line.len() - line.trim_start_matches([' ', '\t']).len()];
        if let Some(col) = lead.find('\t') {
            if !is_content(line) {
                continue;
            }
            out.push(ConfigIssue {
                file: file.to_string(),
                line: Some(i as u64 + 1),
                column: Some(col as u64 + 1),
                field: path_at(lines, i),
                message: "tab characters are not allowed in YAML indentation; use spaces".into(),
            });
        }
    }
    out
}

/// Indentation counting a tab as [`TAB_WIDTH`] columns (only to guess a key's parents).
fn width(line: &str) -> usize {
    let mut w = 0;
    for c in line.chars() {
        match c {
            ' ' | '-' => w += 1,
            '\t' => w += TAB_WIDTH,
            _ => break,
        }
    }
    w
}

/// The dotted path of the key on line `i`, from the keys of the less indented lines above it
/// (`mail.to` for `to:` under `mail:`); list items count as their key's children.
fn path_at(lines: &[&str], i: usize) -> String {
    let mut parts = vec![key_of(lines[i]).to_string()];
    let mut w = width(lines[i]);
    for l in lines[..i].iter().rev() {
        if !is_content(l) {
            continue;
        }
        let lw = width(l);
        // Only a key without a value on its line (`mail:`) or a list item can hold children.
        let holds = value_on(l).is_empty() || l.trim_start().starts_with('-');
        if lw < w && holds {
            let k = key_of(l);
            if !k.is_empty() && l.contains(':') {
                parts.push(k.to_string());
            }
            w = lw;
            if w == 0 {
                break;
            }
        }
    }
    parts.retain(|p| !p.is_empty());
    parts.reverse();
    parts.join(".")
}

/// The value written after `key:` on a line (without comment and quotes).
fn value_on(line: &str) -> &str {
    let t = line.trim_start().trim_start_matches('-').trim_start();
    let v = t.split_once(':').map_or(t, |(_, v)| v);
    let v = v.split(" #").next().unwrap_or(v);
    v.trim().trim_matches(['"', '\''])
}

/// Say what to write for the usual mistakes, and name the leaf key.
fn friendlier(mut i: ConfigIssue, lines: &[&str]) -> ConfigIssue {
    let idx = i.line.and_then(|l| usize::try_from(l).ok()?.checked_sub(1));
    let Some(line) = idx.and_then(|n| lines.get(n)) else {
        return i;
    };
    if i.field.is_empty() || !i.field.contains('.') && key_of(line) != i.field {
        if let Some(n) = idx {
            let p = path_at(lines, n);
            if p.len() > i.field.len() && p.starts_with(i.field.as_str()) {
                i.field = p;
            }
        }
    }
    let leaf = i
        .field
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .split('[')
        .next()
        .unwrap_or_default()
        .to_string();
    let value = value_on(line);
    let m = i.message.to_ascii_lowercase();
    if m.contains("sequence start") || m.contains("expected a sequence") {
        let example = match (leaf.as_str(), value) {
            ("sources", v) if !v.is_empty() => format!("sources: [{{path: {v}}}]"),
            (_, "") => format!("{leaf}: [a@b]"),
            (_, v) => format!("{leaf}: [{v}]"),
        };
        i.message = format!("expected a list, e.g. `{example}`");
    } else if m.contains("true or false") || m.contains("bool") {
        i.message = format!(
            "{value:?} is not a boolean: write true or false (yes, no, on and off are not accepted)"
        );
    }
    i
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// Children of the block between lines `s` and `e` (end exclusive): groups starting at the
/// shallowest indentation, of the same kind (mapping keys, or `-` sequence items) as the first.
fn split_children(lines: &[&str], s: usize, e: usize) -> Vec<(usize, usize)> {
    let Some(first) = (s..e).find(|&i| is_content(lines[i])) else {
        return Vec::new();
    };
    if lines[first].trim_start().starts_with("---") {
        return Vec::new();
    }
    let base = indent(lines[first]);
    let is_seq = lines[first].trim_start().starts_with('-');
    let mut starts = Vec::new();
    for (i, line) in lines.iter().enumerate().take(e).skip(first) {
        if !is_content(line) {
            continue;
        }
        let ind = indent(line);
        if ind < base {
            return Vec::new();
        }
        if ind == base && line.trim_start().starts_with('-') == is_seq {
            starts.push(i);
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(k, &st)| (st, starts.get(k + 1).copied().unwrap_or(e)))
        .collect()
}

/// A node of the YAML text that does not parse on its own.
struct Failing {
    start: usize,
    end: usize,
    path: String,
    err: serde_saphyr::Error,
}

/// The key a block line starts with (`  - path: x` gives `path`, `detect:` gives `detect`).
fn key_of(line: &str) -> &str {
    let t = line.trim_start().trim_start_matches('-').trim_start();
    t.split(':')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches(['"', '\''])
}

/// Parse node `s..e` with its ancestors' header lines; when it fails, recurse into its children
/// and record the deepest failing nodes (or this one, when no child fails on its own).
fn find_failing<F>(
    lines: &[&str],
    headers: &mut Vec<usize>,
    (s, e): (usize, usize),
    path: String,
    depth: usize,
    parse: &F,
    out: &mut Vec<Failing>,
) where
    F: Fn(&str) -> Result<RawConfig, serde_saphyr::Error>,
{
    let mut text = String::new();
    let mut next = 0;
    for &h in headers.iter() {
        text.push_str(&"\n".repeat(h - next));
        text.push_str(lines[h]);
        next = h;
    }
    text.push_str(&"\n".repeat(s - next));
    for l in &lines[s..e] {
        text.push_str(l);
        text.push('\n');
    }
    let Err(err) = parse(&text) else { return };
    let before = out.len();
    if depth < 6 {
        headers.push(s);
        for (k, (cs, ce)) in split_children(lines, s + 1, e).into_iter().enumerate() {
            let child = if lines[cs].trim_start().starts_with('-') {
                format!("{path}[{k}]")
            } else {
                format!("{path}.{}", key_of(lines[cs]))
            };
            find_failing(lines, headers, (cs, ce), child, depth + 1, parse, out);
        }
        headers.pop();
    }
    if out.len() == before {
        out.push(Failing {
            start: s,
            end: e,
            path,
            err,
        });
    }
}
