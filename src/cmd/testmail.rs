//! `authwatch test-mail`: render a sample alert from the configured templates and send it
//! through the configured SMTP relay one step at a time (connect and EHLO, TLS, AUTH, send),
//! printing each step and, when one fails, what to change; without `mail.smtp` the message is
//! written to the outbox folder. Uses lettre's low-level client so each step is seen apart.

use super::{load, Exit};
use crate::config::{Config, SmtpConfig, TlsMode};
use crate::mail::Composer;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, SmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use std::path::PathBuf;

/// `authwatch test-mail [-c CONFIG]`: 0 when the relay accepted the message, 1 naming the
/// failing step, 78 for a config or template problem.
pub fn command(config: Option<PathBuf>) -> Exit {
    let cfg = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let msg = match sample_message(&cfg) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("authwatch test-mail: {e}");
            return Exit::Config;
        }
    };
    let id = msg
        .headers()
        .get_raw("Message-ID")
        .unwrap_or_default()
        .to_string();
    let Some(smtp) = &cfg.mail.smtp else {
        let name = format!("test-mail-{}.eml", jiff::Timestamp::now().as_second());
        return match crate::mail::write_atomic(&cfg.mail.outbox_dir, &name, &msg.formatted()) {
            Ok(p) => {
                println!(
                    "no mail.smtp in {}: the alert is written to the outbox",
                    cfg.origin
                );
                println!("written: {} (Message-ID {id})", p.display());
                Exit::Ok
            }
            Err(e) => {
                println!("write: FAILED: {}: {e}", cfg.mail.outbox_dir.display());
                Exit::Runtime
            }
        };
    };
    let host = crate::hostinfo::HostInfo::discover(&cfg.host);
    match send(smtp, &host.name, &msg, &id) {
        Ok(()) => Exit::Ok,
        Err(()) => Exit::Runtime,
    }
}

/// The sample `ip_burst` alert, its subject marked as a test.
fn sample_message(cfg: &Config) -> Result<lettre::Message, String> {
    let ctx = crate::render::sample_context("ip_burst").ok_or("no sample alert")?;
    let r = crate::render::Renderer::new(cfg.templates_dir.as_deref())
        .map_err(|e| e.0)?
        .with_html(cfg.mail.html);
    let mut out = r.render("ip_burst", &ctx).map_err(|e| e.0)?;
    out.subject = format!("TEST (authwatch test-mail): {}", out.subject);
    let composer = Composer::new(&cfg.mail).map_err(|e| format!("{e:#}"))?;
    composer.build(&out).map_err(|e| format!("{e:#}"))
}

fn step_failed(step: &str, e: impl std::fmt::Display, hint: &str) {
    println!("{step}: FAILED: {e}");
    if !hint.is_empty() {
        println!("  hint: {hint}");
    }
}

fn send(s: &SmtpConfig, host_name: &str, msg: &lettre::Message, id: &str) -> Result<(), ()> {
    let hello = ClientId::Domain(s.helo_name.clone().unwrap_or_else(|| host_name.to_string()));
    let params = if s.tls == TlsMode::None {
        None
    } else {
        let mut tp = TlsParameters::builder(s.host.clone());
        if let Some(ca) = &s.ca_file {
            let cert = std::fs::read(ca)
                .map_err(|e| e.to_string())
                .and_then(|pem| Certificate::from_pem(&pem).map_err(|e| e.to_string()));
            match cert {
                Ok(c) => tp = tp.add_root_certificate(c),
                Err(e) => {
                    step_failed(
                        "TLS setup",
                        format!("mail.smtp.ca_file {}: {e}", ca.display()),
                        "",
                    );
                    return Err(());
                }
            }
        }
        match tp.build_rustls() {
            Ok(p) => Some(p),
            Err(e) => {
                step_failed("TLS setup", e, "");
                return Err(());
            }
        }
    };
    let implicit = if s.tls == TlsMode::Tls {
        params.as_ref()
    } else {
        None
    };
    println!("connect: {}:{} ...", s.host, s.port);
    let mut conn = match SmtpConnection::connect(
        (s.host.as_str(), s.port),
        Some(s.timeout),
        &hello,
        implicit,
        None,
    ) {
        Ok(c) => c,
        Err(e) => {
            let hint = match s.tls {
                TlsMode::Tls => "tls: tls is implicit TLS (port 465); a server that starts in plain text wants tls: starttls (587) or none (25)",
                _ => "is the host and port right, and does a firewall let this host reach it? A server on 465 wants tls: tls",
            };
            step_failed("connect", e, hint);
            return Err(());
        }
    };
    println!("connect: ok ({})", conn.server_info().name());
    match (s.tls, &params) {
        (TlsMode::Starttls, Some(p)) => {
            if !conn.can_starttls() {
                step_failed(
                    "TLS",
                    "the server does not offer STARTTLS",
                    "use tls: tls for a server on port 465, or tls: none only on a trusted network",
                );
                return Err(());
            }
            if let Err(e) = conn.starttls(p, &hello) {
                step_failed("TLS", e, "the certificate must name mail.smtp.host; a private CA goes into mail.smtp.ca_file");
                return Err(());
            }
            println!("TLS: ok (STARTTLS)");
        }
        (TlsMode::Tls, _) => println!("TLS: ok (implicit TLS)"),
        _ => println!("TLS: off (tls: none)"),
    }
    match (&s.username, &s.password) {
        (Some(user), Some(pass)) => {
            let Some(mech) = conn
                .server_info()
                .get_auth_mechanism(&[Mechanism::Plain, Mechanism::Login])
            else {
                step_failed(
                    "AUTH",
                    "the server offers no AUTH PLAIN or LOGIN on this connection",
                    "many servers offer AUTH only after TLS: set tls: starttls (or tls) rather than none",
                );
                return Err(());
            };
            if let Err(e) = conn.auth(&[mech], &Credentials::new(user.clone(), pass.0.clone())) {
                step_failed(
                    "AUTH",
                    e,
                    "check mail.smtp.username and the password (password_file / password_env)",
                );
                return Err(());
            }
            println!("AUTH: ok ({mech} as {user})");
        }
        _ => println!("AUTH: skipped (no mail.smtp.username)"),
    }
    match conn.send(msg.envelope(), &msg.formatted()) {
        Ok(resp) => {
            let text: Vec<&str> = resp.message().collect();
            println!(
                "sent: ok, Message-ID {id} (server: {} {})",
                resp.code(),
                text.join(" ")
            );
            let _ = conn.quit();
            Ok(())
        }
        Err(e) => {
            step_failed("send", e, "the relay refused the message: may mail.from send through it, and may it relay to mail.to?");
            conn.abort();
            Err(())
        }
    }
}
