//! Rendering: turns an alert into subject and body text with minijinja templates.
//!
//! The templates in `alert-templates/` are built into the binary; an administrator's
//! `templates_dir` overrides them file by file. Undefined variables are errors (strict mode),
//! and [`Renderer::check`] renders every template with sample values and also looks for
//! variables in branches a sample does not reach. Attacker-chosen text (account names, log
//! lines) is made inert by [`inert`](crate::text::inert) before it reaches any template, and the rendered subject is
//! cleaned and capped by [`clean_subject`] (both in [`crate::text`]).
//!
//! This file holds the template environment ([`Renderer`]); `render/context.rs` the template contexts
//! and their samples; `render/held.rs` the digest's CSV of held-back alerts. The rendered value,
//! [`Rendered`], lives in [`crate::message`].

mod advice;
mod context;
mod held;

pub use advice::{advice, service_name, shell_quote, BlockAction, SILENCE_FOR};

pub use context::{
    sample_context, AccountCount, AlertEnv, CompromiseContext, DigestContext, DigestIncident,
    GroupAlertContext, HealthContext, IpAlertContext,
};
pub use held::{held_csv, DIGEST_TABLE_ROWS, HELD_CSV_NAME};

use crate::alert_kind::AlertKind;
use crate::message::Rendered;
use crate::policy::AlertFacts;
use crate::text::clean_subject;
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::Path;

/// Built-in templates: (file name, text). A file `KIND.subject.txt` / `KIND.body.txt` belongs
/// to the alert kind `KIND`.
pub const BUILTIN_TEMPLATES: &[(&str, &str)] = &[
    (
        "ip_burst.subject.txt",
        include_str!("../alert-templates/ip_burst.subject.txt"),
    ),
    (
        "ip_burst.body.txt",
        include_str!("../alert-templates/ip_burst.body.txt"),
    ),
    (
        "ip_burst.body.html",
        include_str!("../alert-templates/ip_burst.body.html"),
    ),
    (
        "subnet_burst.subject.txt",
        include_str!("../alert-templates/subnet_burst.subject.txt"),
    ),
    (
        "subnet_burst.body.txt",
        include_str!("../alert-templates/subnet_burst.body.txt"),
    ),
    (
        "account_attack.subject.txt",
        include_str!("../alert-templates/account_attack.subject.txt"),
    ),
    (
        "account_attack.body.txt",
        include_str!("../alert-templates/account_attack.body.txt"),
    ),
    (
        "digest.subject.txt",
        include_str!("../alert-templates/digest.subject.txt"),
    ),
    (
        "digest.body.txt",
        include_str!("../alert-templates/digest.body.txt"),
    ),
    (
        "health.subject.txt",
        include_str!("../alert-templates/health.subject.txt"),
    ),
    (
        "health.body.txt",
        include_str!("../alert-templates/health.body.txt"),
    ),
    (
        "compromised.subject.txt",
        include_str!("../alert-templates/compromised.subject.txt"),
    ),
    (
        "compromised.body.txt",
        include_str!("../alert-templates/compromised.body.txt"),
    ),
];

/// The alert kinds, each with a subject and a body template (the names of
/// [`AlertKind::ALL`]).
pub const KINDS: &[&str] = &[
    AlertKind::IpBurst.as_str(),
    AlertKind::SubnetBurst.as_str(),
    AlertKind::AccountAttack.as_str(),
    AlertKind::Compromised.as_str(),
    AlertKind::Digest.as_str(),
    AlertKind::Health.as_str(),
];

/// The facts of an alert (for a digest's one-line record of an alert the hourly cap held
/// back) from its context: `service` and `first_seen`/`last_seen` (or `login_time`, for a
/// compromised account). Empty fields for a context without them.
pub fn alert_facts(ctx: &serde_json::Value) -> AlertFacts {
    let text = |k: &str| ctx.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let login = text("login_time");
    AlertFacts {
        service: text("service").unwrap_or_default(),
        first_seen: text("first_seen")
            .or_else(|| login.clone())
            .unwrap_or_default(),
        last_seen: text("last_seen").or(login).unwrap_or_default(),
    }
}

/// Errors from loading or rendering templates, with file and line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

fn describe(e: &minijinja::Error, origin: &str) -> String {
    let mut s = String::new();
    s.push_str(origin);
    if let Some(name) = e.name() {
        s.push_str(name);
    }
    if let Some(line) = e.line() {
        s.push_str(&format!(":{line}"));
    }
    s.push_str(&format!(": {}", e.kind()));
    if let Some(d) = e.detail() {
        s.push_str(&format!(": {d}"));
    }
    s
}

/// The text alert wrapped as HTML, for kinds without an HTML template.
fn pre_html(subject: &str, text: &str) -> String {
    let esc = |s: &str| minijinja::HtmlEscape(s).to_string();
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head><body><pre>{}</pre></body></html>\n",
        esc(subject),
        esc(text)
    )
}

/// The template environment.
pub struct Renderer {
    env: Environment<'static>,
    /// Also render an HTML part.
    html: bool,
    /// Folder prefix for messages (`/etc/authwatch/templates/` or `built-in `).
    origins: Vec<(String, String)>,
    /// The configured actions, for the block command and block status alerts show.
    actions: Vec<BlockAction>,
}

impl Renderer {
    /// Load the templates: each file from `dir` when it has one, else the built-in one.
    pub fn new(dir: Option<&Path>) -> Result<Renderer, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // `{{ i.kind|kind_label }}`: "IP burst" for `ip_burst`, and so on.
        env.add_filter("kind_label", |k: String| AlertKind::label_of(&k));
        let mut origins = Vec::new();
        let mut errors = Vec::new();
        for (name, builtin) in BUILTIN_TEMPLATES {
            let (text, origin) = match dir.map(|d| d.join(name)) {
                Some(p) if p.exists() => match std::fs::read_to_string(&p) {
                    Ok(t) => (
                        t,
                        format!("{}/", p.parent().unwrap_or(Path::new("")).display()),
                    ),
                    Err(e) => {
                        errors.push(format!("{}: cannot read: {e}", p.display()));
                        continue;
                    }
                },
                _ => ((*builtin).to_string(), "built-in ".to_string()),
            };
            if let Err(e) = env.add_template_owned(name.to_string(), text) {
                errors.push(describe(&e, &origin));
            }
            origins.push((name.to_string(), origin));
        }
        if !errors.is_empty() {
            return Err(TemplateError(errors.join("\n")));
        }
        Ok(Renderer {
            env,
            origins,
            html: false,
            actions: Vec::new(),
        })
    }

    /// Also render the HTML part (`KIND.body.html`, or the text in a `<pre>`).
    pub fn with_html(mut self, on: bool) -> Self {
        self.html = on;
        self
    }

    /// The configured actions: an alert shows the first one for its kind as the block
    /// command, and whether it blocked (with the duration from its arguments).
    pub fn with_actions(mut self, actions: &[crate::config::ActionConfig]) -> Self {
        self.actions = BlockAction::from_config(actions);
        self
    }

    /// The context as a template sees it: the caller's values plus the commands, block
    /// status and advice of `render/advice.rs`.
    fn context_value<C: Serialize>(&self, kind: &str, ctx: &C) -> minijinja::Value {
        let mut v = serde_json::to_value(ctx).unwrap_or(serde_json::Value::Null);
        advice::augment(kind, &mut v, &self.actions);
        minijinja::Value::from(minijinja::value::Serde(&v))
    }

    fn origin(&self, name: &str) -> &str {
        self.origins
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, o)| o.as_str())
    }

    fn render_one(&self, name: &str, ctx: &minijinja::Value) -> Result<String, TemplateError> {
        let t = self
            .env
            .get_template(name)
            .map_err(|e| TemplateError(describe(&e, self.origin(name))))?;
        t.render(ctx.clone())
            .map_err(|e| TemplateError(describe(&e, self.origin(name))))
    }

    /// Render the alert about one IP.
    pub fn render_ip_alert(&self, ctx: &IpAlertContext) -> Result<Rendered, TemplateError> {
        self.render(AlertKind::IpBurst, ctx)
    }

    /// Render an alert of `kind` (an [`AlertKind`] or one of [`KINDS`]) from its context.
    pub fn render<C: Serialize>(
        &self,
        kind: impl AsRef<str>,
        ctx: &C,
    ) -> Result<Rendered, TemplateError> {
        let kind = kind.as_ref();
        let value = self.context_value(kind, ctx);
        let subject = self.render_one(&format!("{kind}.subject.txt"), &value)?;
        let text = self.render_one(&format!("{kind}.body.txt"), &value)?;
        let html = if self.html {
            let name = format!("{kind}.body.html");
            Some(if self.env.get_template(&name).is_ok() {
                self.render_one(&name, &value)?
            } else {
                pre_html(&clean_subject(&subject), &text)
            })
        } else {
            None
        };
        Ok(Rendered {
            subject: clean_subject(&subject),
            text,
            html,
            id: None,
            legacy_id: None,
            attachments: Vec::new(),
            thread: Vec::new(),
        })
    }

    /// Check every template: render it with sample values, and look for variables that no
    /// alert provides (also in branches the sample does not reach). Returns every problem.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let globals: BTreeSet<String> = self.env.globals().map(|(k, _)| k.to_string()).collect();
        for (name, _) in BUILTIN_TEMPLATES {
            let kind = name.split('.').next().unwrap_or_default();
            let mut sample = sample_context(kind).unwrap_or(serde_json::Value::Null);
            advice::augment(kind, &mut sample, &self.actions);
            let known: BTreeSet<String> = match &sample {
                serde_json::Value::Object(m) => m.keys().cloned().collect(),
                _ => BTreeSet::new(),
            };
            let value = minijinja::Value::from(minijinja::value::Serde(&sample));
            match self.env.get_template(name) {
                Ok(t) => {
                    let mut unknown: Vec<String> = t
                        .undeclared_variables(false)
                        .into_iter()
                        .filter(|v| !known.contains(v) && !globals.contains(v))
                        .collect();
                    unknown.sort();
                    for v in unknown {
                        problems.push(format!(
                            "{}{name}: undefined variable `{v}` (see alert-templates/README.md for the list)",
                            self.origin(name)
                        ));
                    }
                    if let Err(e) = self.render_one(name, &value) {
                        problems.push(e.0);
                    }
                }
                Err(e) => problems.push(describe(&e, self.origin(name))),
            }
        }
        problems.dedup();
        problems
    }
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
