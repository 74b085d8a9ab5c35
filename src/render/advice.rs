//! What an alert tells the administrator to do, added by [`super::Renderer`] to the context of
//! every alert about an attacker (`ip_burst`, `subnet_burst`, `account_attack`,
//! `compromised`): the ready `authwatch` and firewall commands with the address, network or
//! account filled in and shell-quoted (`commands`), whether an action already blocked the
//! address (`blocked`, `block_tag`, `block_status`), the service in one word for the Subject
//! (`service_name`) and advice chosen by the attacked service (`advice`): Exim, Postfix and
//! Dovecot each get their own, other services a generic text, so an Exim setting never shows in
//! a Postfix or Dovecot alert. Everything is computed from the context's own values and the
//! configured actions, so no caller builds it, and a custom template may use or ignore it.
//! `alert-templates/README.md` documents every field.

use crate::config::{parse_template, ActionConfig, Piece};
use crate::text::parse_duration;
use ipnet::IpNet;
use serde_json::{json, Map, Value};
use std::net::IpAddr;

/// How long `commands.silence` silences: a day covers a night's attack without hiding a new
/// one for long.
pub const SILENCE_FOR: &str = "24h";
/// The timeout of the nftables example block when no action is configured: an hour, like the
/// shipped `nft-block` example, so blocks do not pile up.
pub const EXAMPLE_BLOCK_FOR: &str = "1h";

/// A configured action as the alert shows it: its name, the kinds it runs for, and its
/// command line with the placeholders still in.
#[derive(Debug, Clone)]
pub struct BlockAction {
    name: String,
    kinds: Vec<String>,
    program: String,
    args: Vec<Vec<Piece>>,
}

impl BlockAction {
    /// The configured actions (those whose templates parse: `check` refused the others).
    pub fn from_config(actions: &[ActionConfig]) -> Vec<BlockAction> {
        actions
            .iter()
            .filter_map(|a| {
                let args = a
                    .spec
                    .args
                    .iter()
                    .map(|t| parse_template(t).ok())
                    .collect::<Option<Vec<_>>>()?;
                Some(BlockAction {
                    name: a.spec.name.clone(),
                    kinds: a.on.clone(),
                    program: a.spec.program.display().to_string(),
                    args,
                })
            })
            .collect()
    }

    /// The arguments with the alert's values in.
    fn expand(&self, v: &Target) -> Vec<String> {
        self.args
            .iter()
            .map(|pieces| {
                let mut s = String::new();
                for p in pieces {
                    match p {
                        Piece::Text(t) => s.push_str(t),
                        Piece::Ip => s.push_str(&v.ip.map(|i| i.to_string()).unwrap_or_default()),
                        Piece::Network => s.push_str(&v.network_text()),
                        Piece::Prefix => {
                            if let Some(n) = v.network {
                                s.push_str(&n.to_string());
                            }
                        }
                        Piece::Account => s.push_str(&v.account),
                        Piece::Count => s.push_str(&v.count.to_string()),
                        Piece::Service => s.push_str(&v.service),
                    }
                }
                s
            })
            .collect()
    }

    /// The first argument that reads as a duration (`1h` in `["{network}", "1h"]`): how long
    /// the block lasts, as far as authwatch can tell.
    fn duration(&self, v: &Target) -> Option<String> {
        self.expand(v)
            .into_iter()
            .find(|a| parse_duration(a).is_ok())
    }
}

/// What an alert blames, read from its context.
#[derive(Debug, Default)]
struct Target {
    ip: Option<IpAddr>,
    network: Option<IpNet>,
    /// The account (already inert in the context).
    account: String,
    count: u64,
    service: String,
}

impl Target {
    fn network_text(&self) -> String {
        match (self.network, self.ip) {
            (Some(n), _) => n.to_string(),
            (None, Some(ip)) => IpNet::from(ip).to_string(),
            (None, None) => String::new(),
        }
    }

    /// The address or network, as `authwatch allow`/`unblock`/`silence` take it.
    fn address(&self) -> Option<String> {
        match (self.network, self.ip) {
            (Some(n), _) => Some(n.to_string()),
            (None, Some(ip)) => Some(ip.to_string()),
            _ => None,
        }
    }
}

/// Quote a word for a POSIX shell, so a command copied from the mail runs as shown even when
/// the value holds attacker text (`x; rm -rf /`): plain words stay as they are, anything else
/// goes into single quotes (a `'` inside written `'\''`).
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '@' | '%' | '+' | '=' | ':' | ',' | '.' | '/' | '_' | '-')
        });
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The service in one word, for the Subject (`Exim`, `Postfix`, `Dovecot`, ...).
pub fn service_name(service: &str) -> String {
    match service {
        "exim" => "Exim",
        "postfix" => "Postfix",
        "dovecot" => "Dovecot",
        "courier" => "Courier",
        "cyrus" => "Cyrus",
        "sendmail" => "Sendmail",
        "uwimap" => "UW-IMAP",
        "opensmtpd" => "OpenSMTPD",
        "roundcube" => "Roundcube",
        "sogo" => "SOGo",
        "horde" => "Horde",
        "squirrelmail" => "SquirrelMail",
        other => return crate::text::inert(other),
    }
    .to_string()
}

/// Advice for hardening the attacked service, line by line (no indentation): per service for
/// Exim, Postfix and Dovecot, generic otherwise. For `compromised`, what to do about the
/// account comes first.
pub fn advice(kind: &str, service: &str, account: &str) -> Vec<String> {
    let acc = shell_quote(account);
    let mut out: Vec<String> = Vec::new();
    if kind == "compromised" {
        out.push(format!("Reset the password of {account} now."));
        match service {
            "dovecot" => {
                out.push(
                    "Then end the sessions it has open (they stay logged in otherwise):".into(),
                );
                out.push(format!("  doveadm kick {acc}"));
            }
            "exim" => {
                out.push("Then look for mail it sent (spam runs start within minutes):".into());
                out.push(format!("  exiqgrep -f {acc}"));
            }
            "postfix" => {
                out.push("Then look for mail it sent (spam runs start within minutes):".into());
                out.push("  postqueue -p".into());
            }
            _ => out.push("Then end its open sessions and check what it sent.".into()),
        }
        out.push(String::new());
    }
    let lines: &[&str] = match service {
        "exim" => &[
            "Turn off SMTP AUTH on port 25 if no legitimate user logs in there: users",
            "submit on 587/465, and attackers lose the easiest door. For Exim, offer",
            "AUTH only on the submission ports, e.g. in each authenticator:",
            "  server_advertise_condition = ${if eq{$received_port}{25}{no}{yes}}",
        ],
        "postfix" => &[
            "Offer SASL AUTH only on the submission ports (587, 465), not on port 25,",
            "where users never need it. In /etc/postfix/main.cf:",
            "  smtpd_sasl_auth_enable = no",
            "and in /etc/postfix/master.cf, only under the submission and smtps services:",
            "  -o smtpd_sasl_auth_enable=yes",
            "then run: postfix reload",
        ],
        "dovecot" => &[
            "Make each failed login cost the attacker more time: in Dovecot's",
            "conf.d/10-auth.conf raise",
            "  auth_failure_delay = 5 secs",
            "(default 2 secs) and run: doveadm reload",
            "Make sure every account has a strong, unique password; for an account whose",
            "password may be known, reset it and end its sessions with: doveadm kick USER",
        ],
        _ => &[
            "Allow logins to this service only from where your users are (firewall the",
            "port, or restrict logins to known networks), and make sure every account",
            "has a strong, unique password.",
        ],
    };
    out.extend(lines.iter().map(|l| l.to_string()));
    out
}

fn str_of<'a>(m: &'a Map<String, Value>, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).unwrap_or_default()
}

fn target_of(kind: &str, m: &Map<String, Value>) -> Target {
    let service = str_of(m, "service").to_string();
    let count = m
        .get("attempts_window")
        .or_else(|| m.get("failures_from_ip"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    match kind {
        "ip_burst" => Target {
            ip: str_of(m, "ip").parse().ok(),
            account: m
                .get("accounts")
                .and_then(|a| a.get(0))
                .and_then(|a| a.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            count,
            service,
            ..Default::default()
        },
        "compromised" => Target {
            ip: str_of(m, "ip").parse().ok(),
            account: str_of(m, "account").to_string(),
            count,
            service,
            ..Default::default()
        },
        "subnet_burst" => {
            let network: Option<IpNet> = str_of(m, "target").parse().ok();
            Target {
                ip: network.map(|n| n.network()),
                network,
                count,
                service,
                ..Default::default()
            }
        }
        _ => Target {
            account: str_of(m, "target").to_string(),
            count,
            service,
            ..Default::default()
        },
    }
}

/// The block command: the first configured action for this kind, with the values in, or the
/// nftables example (the set of the shipped `examples/actions/authwatch.nft`).
fn block_command(kind: &str, t: &Target, actions: &[BlockAction]) -> String {
    if let Some(a) = actions.iter().find(|a| a.kinds.iter().any(|k| k == kind)) {
        let mut words = vec![shell_quote(&a.program)];
        words.extend(a.expand(t).iter().map(|w| shell_quote(w)));
        return words.join(" ");
    }
    let set = match t.ip {
        Some(IpAddr::V6(_)) => "blocked6",
        _ => "blocked4",
    };
    format!(
        "nft add element inet authwatch {set} {{ {} timeout {EXAMPLE_BLOCK_FOR} }}",
        t.address().unwrap_or_default()
    )
}

/// Whether the actions that ran blocked the address: (blocked, tag for the Subject, one line).
fn block_status(
    kind: &str,
    t: &Target,
    m: &Map<String, Value>,
    actions: &[BlockAction],
) -> (bool, String, String) {
    let results = m
        .get("action_results")
        .or_else(|| m.get("actions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ok = |r: &Value| {
        r.get("exit").and_then(Value::as_i64) == Some(0)
            && !r.get("timed_out").and_then(Value::as_bool).unwrap_or(false)
            && r.get("error").is_none_or(Value::is_null)
    };
    let name = |r: &Value| crate::text::inert(r.get("name").and_then(Value::as_str).unwrap_or("?"));
    if let Some(r) = results.iter().find(|r| ok(r)) {
        let n = name(r);
        let dur = actions
            .iter()
            .find(|a| a.name == n && a.kinds.iter().any(|k| k == kind))
            .and_then(|a| a.duration(t));
        let line = match dur {
            Some(d) => format!("BLOCKED by {n} for {d}"),
            None => format!("BLOCKED by {n}"),
        };
        return (true, "BLOCKED".into(), line);
    }
    if !results.is_empty() {
        let why: Vec<String> = results
            .iter()
            .map(|r| {
                let status = r.get("status").and_then(Value::as_str).unwrap_or("failed");
                format!("{}: {}", name(r), crate::text::inert(status))
            })
            .collect();
        return (
            false,
            "BLOCK FAILED".into(),
            format!("block failed: {}", why.join("; ")),
        );
    }
    (
        false,
        String::new(),
        "not blocked: authwatch only alerts".into(),
    )
}

/// Add `commands`, `blocked`, `block_tag`, `block_status`, `service_name`, `advice` and
/// `alert_id` (empty when the caller gave none; `commands.ack` names the `incident_id` when
/// the context has one) to the context of an alert about an attacker.
/// Other kinds are left as they are.
pub fn augment(kind: &str, ctx: &mut Value, actions: &[BlockAction]) {
    let Value::Object(m) = ctx else {
        return;
    };
    if !matches!(
        kind,
        "ip_burst" | "subnet_burst" | "account_attack" | "compromised"
    ) {
        return;
    }
    let t = target_of(kind, m);
    let alert_id = str_of(m, "alert_id").to_string();
    // `authwatch ack` takes the incident (kind and key, see `crate::control::incident_id`):
    // an ack holds for the incident's later alerts, which have ids of their own.
    let ack_id = match str_of(m, "incident_id") {
        "" => alert_id.clone(),
        id => id.to_string(),
    };
    let silence_target = match kind {
        "account_attack" => shell_quote(&t.account),
        _ => shell_quote(&t.address().unwrap_or_default()),
    };
    let addr = t.address().map(|a| shell_quote(&a));
    let (blocked, tag, status) = block_status(kind, &t, m, actions);
    let commands = json!({
        "silence": format!("authwatch silence {silence_target} --for {SILENCE_FOR}"),
        "unsilence": format!("authwatch unsilence {silence_target}"),
        "allow": addr.as_ref().map(|a| format!("authwatch allow {a}")).unwrap_or_default(),
        "block": if addr.is_some() { block_command(kind, &t, actions) } else { String::new() },
        "unblock": addr.as_ref().map(|a| format!("authwatch unblock {a}")).unwrap_or_default(),
        "ack": if ack_id.is_empty() { String::new() } else { format!("authwatch ack {}", shell_quote(&ack_id)) },
    });
    let account = match kind {
        "compromised" => t.account.clone(),
        _ => String::new(),
    };
    m.insert("alert_id".into(), Value::String(alert_id));
    m.insert("commands".into(), commands);
    m.insert("blocked".into(), Value::Bool(blocked));
    m.insert("block_tag".into(), Value::String(tag));
    m.insert("block_status".into(), Value::String(status));
    m.insert(
        "service_name".into(),
        Value::String(service_name(&t.service)),
    );
    m.insert("advice".into(), json!(advice(kind, &t.service, &account)));
    m.remove("action_results");
}

#[cfg(test)]
#[path = "advice_tests.rs"]
mod tests;
