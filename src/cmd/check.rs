//! `authwatch check` and `authwatch render`: validate a loaded config beyond what loading
//! checks (the alert templates, the mail transport, that journalctl can run, permissions, what
//! each action would run, that every log file can be read by the user the agent runs as), and
//! preview an alert of one kind rendered from the configured templates.
//!
//! The rule for log files: `check` fails (78) when a source path does not exist, is a folder,
//! or cannot be read by the user the agent runs as (when `check` runs as root and a user
//! `authwatch` exists, that user, by the file's and its folders' owner, group and mode; else
//! the user running `check`, by opening the file). The running agent is more patient: a file
//! that is missing (between a rotation's rename and the new file's creation, or before the
//! service first logs) is waited for and reported by a health alert if it stays missing. So a
//! log that does not exist yet at setup is created first (`touch`, with the owner and mode of
//! the service's logs), or the service started, before `check` passes.

use super::{load, Exit};
use crate::actions::{ActionContext, ActionRunner};
use crate::config::{Config, SourceKind};
use crate::mail::Sender;
use crate::render::Renderer;
use std::net::IpAddr;
use std::path::PathBuf;

/// `authwatch check [--config FILE] [--probe]`: the summary on stdout (0), or every problem
/// (78). With `--probe`, then each log is opened and the SMTP server tried, one line per
/// step; a failed step (with its hint) is a configuration error too (78).
pub fn command(config: Option<PathBuf>, probe: bool) -> Exit {
    let cfg = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match check(&cfg) {
        Ok(summary) => {
            println!("{summary}");
            if !probe {
                return Exit::Ok;
            }
            let steps = probe_all(&cfg);
            let mut failed = 0;
            for (ok, line) in &steps {
                if *ok {
                    println!("probe OK    {line}");
                } else {
                    failed += 1;
                    eprintln!("probe FAIL  {line}");
                }
            }
            if failed == 0 {
                Exit::Ok
            } else {
                eprintln!("authwatch: {failed} probe step(s) failed; see the hints above");
                Exit::Config
            }
        }
        Err(problems) => {
            eprintln!("authwatch: {problems}");
            Exit::Config
        }
    }
}

/// `check --probe`: open every log file (read a byte) and connect to the SMTP server as
/// delivery would. Each step: (passed, one line with the hint when it failed).
pub fn probe_all(cfg: &Config) -> Vec<(bool, String)> {
    use std::io::Read;
    let mut out = Vec::new();
    let user = agent_user();
    for s in &cfg.sources {
        let SourceKind::File(p) = &s.kind else {
            continue;
        };
        let step = source_readable(p, user.as_ref()).and_then(|()| {
            let mut f = std::fs::File::open(p).map_err(|e| {
                format!(
                    "source {}: cannot open: {e}: add the user authwatch runs as to the file's group (on Debian: usermod -aG adm authwatch)",
                    p.display()
                )
            })?;
            let mut b = [0u8; 1];
            f.read(&mut b)
                .map_err(|e| format!("source {}: cannot read: {e}", p.display()))?;
            Ok(format!("source {}: opened and read", p.display()))
        });
        out.push(match step {
            Ok(l) => (true, l),
            Err(l) => (false, l),
        });
    }
    let host = crate::hostinfo::HostInfo::discover(&cfg.host);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            out.push((false, format!("mail: cannot start a runtime: {e}")));
            return out;
        }
    };
    let mail = rt.block_on(async {
        match Sender::new(&cfg.mail, &host.name) {
            Ok(s) => s.probe().await,
            Err(e) => Err(format!("mail: {e:#}")),
        }
    });
    out.push(match mail {
        Ok(l) => (true, format!("mail {l}")),
        Err(l) => (false, format!("mail {l}")),
    });
    out
}

/// `authwatch render --sample KIND [--html]`: the sample on stdout (0); an unknown kind or a
/// broken template is a usage error (64).
pub fn render_command(config: Option<PathBuf>, sample: &str, html: bool) -> Exit {
    let cfg = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match render_sample(&cfg, sample, html) {
        Ok(text) => {
            println!("{text}");
            Exit::Ok
        }
        Err(e) => {
            eprintln!("authwatch: {e}");
            Exit::Usage
        }
    }
}

/// `authwatch check`: the config already loaded; now the templates and the state folder.
/// Returns a summary, or every problem found.
pub fn check(cfg: &Config) -> std::result::Result<String, String> {
    let mut problems = Vec::new();
    match Renderer::new(cfg.templates_dir.as_deref()) {
        Ok(r) => problems.extend(r.check()),
        Err(e) => problems.push(e.0),
    }
    // lettre's SMTP pool spawns (and, dropped, stops) a task: it needs a runtime to exist,
    // even one that never runs (without it `check` of a config with mail.smtp panicked).
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let _rt = rt.enter();
    if let Err(e) = Sender::new(&cfg.mail, "localhost") {
        problems.push(format!("{e:#}"));
    }
    let agent_user = agent_user();
    for s in &cfg.sources {
        if let SourceKind::File(p) = &s.kind {
            if let Err(e) = source_readable(p, agent_user.as_ref()) {
                problems.push(e);
            }
        }
    }
    if problems.is_empty() {
        let mail = match &cfg.mail.smtp {
            Some(s) => format!("SMTP {}:{}", s.host, s.port),
            None => format!("outbox folder {}", cfg.mail.outbox_dir.display()),
        };
        let mut out = format!(
            "{}: OK ({} source{}, alert at {} attempts in {}, mail to {} via {mail})",
            cfg.origin,
            cfg.sources.len(),
            if cfg.sources.len() == 1 { "" } else { "s" },
            cfg.detect.per_ip.attempts,
            crate::text::format_duration(cfg.detect.per_ip.window),
            cfg.mail.to.join(", "),
        );
        for s in &cfg.sources {
            out.push_str(&format!("\n  source {}", s.name()));
            if let SourceKind::Journal(j) = &s.kind {
                if let Err(e) = std::process::Command::new(&j.journalctl)
                    .arg("--version")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                {
                    out.push_str(&format!(
                        " (warning: {} cannot be run: {e})",
                        j.journalctl.display()
                    ));
                }
            }
        }
        for w in crate::config::permission_warnings(cfg) {
            out.push_str(&format!("\n  warning: {w}"));
        }
        // What each action would run for a sample alert, argument by argument.
        if !cfg.actions.is_empty() {
            let specs = cfg.actions.iter().map(|a| a.spec.clone()).collect();
            if let Ok(runner) = ActionRunner::new(specs, cfg.actions_max_concurrent) {
                let sample = ActionContext {
                    ip: IpAddr::from([203, 0, 113, 47]),
                    network: None,
                    prefix: "203.0.113.0/24".parse().ok(),
                    account: Some("info@example.com".into()),
                    count: 17,
                    service: "exim".into(),
                };
                for ((name, program, args), a) in
                    runner.preview(&sample).into_iter().zip(&cfg.actions)
                {
                    out.push_str(&format!(
                        "\n  action {name} (on {}): {} {:?}",
                        a.on.join(", "),
                        program.display(),
                        args
                    ));
                }
            }
        }
        for line in super::control::allow_lines(cfg) {
            out.push_str(&format!("\n  {line}"));
        }
        Ok(out)
    } else {
        Err(format!(
            "{} problem{} (templates, mail, sources):\n  {}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            problems.join("\n  ")
        ))
    }
}

/// The user `check` judges readability for: `authwatch` when `check` runs as root (the agent
/// runs as that user under the packaged unit) and that user exists; none otherwise (the
/// current user, by opening the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentUser {
    pub name: String,
    pub uid: u32,
    /// The primary group and every group listing the user.
    pub gids: Vec<u32>,
}

/// The user the packaged unit runs the agent as.
pub const AGENT_USER: &str = "authwatch";

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// `authwatch` from /etc/passwd and /etc/group, when `check` runs as root.
fn agent_user() -> Option<AgentUser> {
    if effective_uid()? != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    user_from(AGENT_USER, &passwd, &group)
}

/// Look `name` up in the text of /etc/passwd and /etc/group.
pub fn user_from(name: &str, passwd: &str, group: &str) -> Option<AgentUser> {
    let f: Vec<&str> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name) && f.len() >= 4)?;
    let uid = f[2].parse().ok()?;
    let mut gids: Vec<u32> = vec![f[3].parse().ok()?];
    for l in group.lines() {
        let g: Vec<&str> = l.split(':').collect();
        if g.len() >= 4 && g[3].split(',').any(|m| m == name) {
            if let Ok(gid) = g[2].parse() {
                gids.push(gid);
            }
        }
    }
    Some(AgentUser {
        name: name.to_string(),
        uid,
        gids,
    })
}

/// The name of group `gid` (from /etc/group), or the number.
fn group_name(gid: u32) -> String {
    std::fs::read_to_string("/etc/group")
        .ok()
        .and_then(|t| {
            t.lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|g| g.len() >= 3 && g[2] == gid.to_string())
                .map(|g| g[0].to_string())
        })
        .unwrap_or_else(|| gid.to_string())
}

/// Whether `user` may do `want` (4 read, 1 search) on a file of this owner, group and mode.
fn may(user: &AgentUser, meta: &std::fs::Metadata, want: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode();
    if meta.uid() == user.uid {
        mode & (want << 6) != 0
    } else if user.gids.contains(&meta.gid()) {
        mode & (want << 3) != 0
    } else {
        mode & want != 0
    }
}

/// The fix for a file or folder `user` cannot read: join its group, when the group may.
fn access_hint(user: &str, meta: &std::fs::Metadata, want: u32) -> String {
    use std::os::unix::fs::MetadataExt;
    if meta.mode() & (want << 3) != 0 {
        let g = group_name(meta.gid());
        format!("add {user} to group {g} (usermod -aG {g} {user}), then restart authwatch")
    } else {
        format!(
            "let {user} read it (its group {} may not: mode {:04o}); on Debian the logs belong to group adm (usermod -aG adm {user})",
            group_name(meta.gid()),
            meta.mode() & 0o7777
        )
    }
}

/// A log file source: there, a file, and readable by the agent's user. The message names the
/// file and the fix.
pub fn source_readable(path: &std::path::Path, user: Option<&AgentUser>) -> Result<(), String> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "source {shown}: does not exist: check the path (Debian: /var/log/exim4/mainlog, /var/log/mail.log); if the service has not logged yet, start it or create the file with the owner and mode of its logs"
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(format!(
                "source {shown}: a folder on the way cannot be searched ({e}): add the user authwatch runs as to the folder's group (on Debian: usermod -aG adm authwatch)"
            ))
        }
        Err(e) => return Err(format!("source {shown}: {e}")),
    };
    if meta.is_dir() {
        return Err(format!(
            "source {shown}: is a folder: name the log file in it (e.g. {}/mainlog)",
            shown
        ));
    }
    match user {
        Some(u) => {
            let mut dir = path.parent();
            while let Some(d) = dir {
                if let Ok(m) = std::fs::metadata(d) {
                    if !may(u, &m, 1) {
                        return Err(format!(
                            "source {shown}: the user {} cannot enter the folder {}: {}",
                            u.name,
                            d.display(),
                            access_hint(&u.name, &m, 1)
                        ));
                    }
                }
                dir = d.parent();
            }
            if !may(u, &meta, 4) {
                return Err(format!(
                    "source {shown}: the user {} cannot read it: {}",
                    u.name,
                    access_hint(&u.name, &meta, 4)
                ));
            }
            Ok(())
        }
        None => match std::fs::File::open(path) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(format!(
                "source {shown}: cannot be read by this user ({e}): {}",
                access_hint("the user authwatch runs as", &meta, 4)
            )),
            Err(e) => Err(format!("source {shown}: cannot be opened: {e}")),
        },
    }
}

/// `authwatch render --sample KIND`: the alert of that kind rendered with sample values from
/// the configured templates (so an administrator can preview edits). `Err` lists the kinds, or
/// says what is wrong with the template.
pub fn render_sample(cfg: &Config, kind: &str, html: bool) -> std::result::Result<String, String> {
    use crate::render::{sample_context, KINDS};
    let Some(ctx) = sample_context(kind) else {
        return Err(format!(
            "unknown alert kind {kind:?}; known: {}",
            KINDS.join(", ")
        ));
    };
    let r = Renderer::new(cfg.templates_dir.as_deref())
        .map_err(|e| e.0)?
        .with_html(html);
    let out = r.render(kind, &ctx).map_err(|e| e.0)?;
    let mut text = format!("Subject: {}\n\n{}", out.subject, out.text);
    if let Some(h) = out.html {
        text.push_str("\n--- HTML part ---\n");
        text.push_str(&h);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn source_paths_missing_a_folder_or_unreadable_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let log = dir.path().join("mainlog");
        std::fs::write(&log, "x\n").unwrap();
        let me = AgentUser {
            name: "authwatch".into(),
            uid: 4242,
            gids: vec![4242, 4],
        };
        let meta = std::fs::metadata(&log).unwrap();
        use std::os::unix::fs::MetadataExt;
        let owned_by_other_group = AgentUser {
            gids: vec![4242],
            ..me.clone()
        };
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o640)).unwrap();
        let in_group = AgentUser {
            gids: vec![4242, meta.gid()],
            ..me.clone()
        };
        assert_eq!(source_readable(&log, Some(&in_group)), Ok(()));
        assert_eq!(source_readable(&log, None), Ok(()));
        let e = source_readable(&log, Some(&owned_by_other_group)).unwrap_err();
        assert!(
            e.contains("mainlog")
                && e.contains("cannot read it")
                && e.contains("add authwatch to group"),
            "{e}"
        );
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = source_readable(&log, Some(&in_group)).unwrap_err();
        assert!(e.contains("mode 0600") && e.contains("group adm"), "{e}");
        let e = source_readable(&dir.path().join("nope"), None).unwrap_err();
        assert!(e.contains("nope: does not exist"), "{e}");
        let e = source_readable(dir.path(), None).unwrap_err();
        assert!(e.contains("is a folder"), "{e}");
    }

    #[test]
    fn agent_user_is_read_from_passwd_and_group() {
        let passwd = "root:x:0:0::/root:/bin/sh\nauthwatch:x:998:997::/var/lib/authwatch:/usr/sbin/nologin\n";
        let group = "adm:x:4:syslog,authwatch\nauthwatch:x:997:\nmail:x:8:\n";
        assert_eq!(
            user_from("authwatch", passwd, group),
            Some(AgentUser {
                name: "authwatch".into(),
                uid: 998,
                gids: vec![997, 4]
            })
        );
        assert_eq!(user_from("nobody", passwd, group), None);
    }

    #[test]
    fn render_sample_previews_every_kind() {
        let cfg = Config::embedded_example().unwrap();
        for kind in crate::render::KINDS {
            let out = render_sample(&cfg, kind, false).unwrap();
            assert!(out.starts_with("Subject: [authwatch] "), "{kind}: {out}");
            assert!(out.contains("Automatic alert from authwatch - DO NOT reply"));
        }
        assert!(render_sample(&cfg, "ip_burst", true)
            .unwrap()
            .contains("<table"));
        let e = render_sample(&cfg, "nope", false).unwrap_err();
        assert!(e.contains("ip_burst") && e.contains("compromised"), "{e}");
    }
}
