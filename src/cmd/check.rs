//! `authwatch check` and `authwatch render`: validate a loaded config beyond what loading
//! checks (the alert templates, the mail transport, that journalctl can run, permissions, what
//! each action would run), and preview an alert of one kind rendered from the configured
//! templates.

use super::{load, Exit};
use crate::actions::{ActionContext, ActionRunner};
use crate::config::{Config, SourceKind};
use crate::mail::Sender;
use crate::render::Renderer;
use std::net::IpAddr;
use std::path::PathBuf;

/// `authwatch check [--config FILE]`: the summary on stdout (0), or every problem (78).
pub fn command(config: Option<PathBuf>) -> Exit {
    let cfg = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match check(&cfg) {
        Ok(summary) => {
            println!("{summary}");
            Exit::Ok
        }
        Err(problems) => {
            eprintln!("authwatch: {problems}");
            Exit::Config
        }
    }
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
            "{} template problem{}:\n  {}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            problems.join("\n  ")
        ))
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
