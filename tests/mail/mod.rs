//! Alert mail that every relay takes, end to end: a real SMTP server on loopback that offers no
//! 8BITMIME and refuses 8-bit data (`smtp_sink.py --no-8bitmime`) accepts alerts whose accounts
//! hold non-ASCII text, and the text decodes back; an account name of 5,000 characters makes
//! no header line of 998 bytes or more, and the decoded Subject carries no bidi override, CR or
//! LF. A digest about an incident threads to the incident's first alert (In-Reply-To and
//! References name its Message-ID, which uses `host.name`), read from the delivered `.eml`.
//! Also the MIME helpers the alert-storm test (`tests/policy/`) uses to read attachments.

use crate::harness::*;
use std::path::Path;

fn config(dir: &Path, log: &Path, port: u16) -> String {
    format!(
        r#"state_dir: '{state}'
host: {{name: mx1.test, ip: 192.0.2.25}}
time_zone: UTC
sources:
  - path: '{log}'
    start: end
follow: {{poll_interval: 50ms, checkpoint_interval: 100ms}}
detect:
  per_ip: {{attempts: 5, window: 10m}}
  per_subnet: {{enabled: false}}
  per_account: {{enabled: false}}
mail:
  from: "authwatch <authwatch@mx1.test>"
  to: [admin@example.test]
  smtp: {{host: 127.0.0.1, port: {port}, tls: none, timeout: 10s}}
"#,
        state = dir.join("state").display(),
        log = log.display(),
    )
}

/// Wait for `n` mails at the sink; fail at once (not after the deadline) when the agent gave
/// one up as refused (moved to `state/failed/`).
fn wait_delivered(sink: &Sink, dir: &Path, agent: &Agent, n: usize) -> Vec<SinkMail> {
    let failed = dir.join("state/failed");
    wait_for(&format!("{n} mail(s) accepted by the 7-bit relay"), || {
        let refused = eml_files(&failed);
        assert!(
            refused.is_empty(),
            "the relay refused the alert ({} in failed/):\n{}",
            refused.len(),
            agent.stderr_text()
        );
        let m = sink.mails();
        (m.len() >= n).then_some(m)
    })
}

/// The header block of a raw message, as it was sent (CRLF ends each line).
pub fn raw_header_lines(eml: &[u8]) -> Vec<Vec<u8>> {
    let end = eml
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a blank line after the headers");
    eml[..end]
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
        .collect()
}

/// Decode a header value with RFC 2047 encoded words (`=?utf-8?b?...?=`, `=?utf-8?q?...?=`);
/// white space between two encoded words is dropped, as the RFC says.
pub fn decode_rfc2047(v: &str) -> String {
    let mut out = String::new();
    let mut last_encoded = false;
    for (i, word) in v.split_whitespace().enumerate() {
        let enc = word
            .strip_prefix("=?")
            .and_then(|w| w.strip_suffix("?="))
            .and_then(|w| {
                let mut it = w.splitn(3, '?');
                Some((it.next()?, it.next()?, it.next()?))
            });
        match enc {
            Some((_charset, e, text)) => {
                if i > 0 && !last_encoded {
                    out.push(' ');
                }
                let bytes = if e.eq_ignore_ascii_case("b") {
                    decode_base64(text)
                } else {
                    decode_qp(text.replace('_', " ").as_bytes())
                };
                out.push_str(&String::from_utf8_lossy(&bytes));
                last_encoded = true;
            }
            None => {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(word);
                last_encoded = false;
            }
        }
    }
    out
}

/// The parts of a MIME message (recursively through multiparts): `(headers, decoded body)`.
pub fn mime_parts(raw: &str) -> Vec<(String, Vec<u8>)> {
    let raw = raw.replace("\r\n", "\n");
    let Some((head, body)) = raw.split_once("\n\n") else {
        return Vec::new();
    };
    let unfolded = head.replace("\n ", " ").replace("\n\t", " ");
    let ct = unfolded
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-type:"))
        .unwrap_or("")
        .to_string();
    if ct.to_ascii_lowercase().contains("multipart/") {
        let boundary = ct
            .split("boundary=")
            .nth(1)
            .map(|b| b.trim().trim_matches('"').to_string())
            .expect("multipart without boundary");
        let sep = format!("--{boundary}");
        return body
            .split(&sep)
            .skip(1)
            .take_while(|p| !p.starts_with("--"))
            .flat_map(|p| mime_parts(p.trim_start_matches('\n')))
            .collect();
    }
    let cte = unfolded
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-transfer-encoding:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    let bytes = match cte.as_str() {
        "quoted-printable" => decode_qp(body.as_bytes()),
        "base64" => decode_base64(body),
        _ => body.as_bytes().to_vec(),
    };
    vec![(unfolded, bytes)]
}

#[test]
fn a_relay_without_8bitmime_takes_alerts_with_non_ascii_accounts() {
    let tmp = tempdir();
    let dir = tmp.path();
    let sink = Sink::start(dir, &["--tls", "none", "--no-8bitmime"]);
    let log = LogWriter::new(dir.join("mainlog"));
    let cfg = write_file(dir, "a.yaml", &config(dir, &log.path, sink.port));
    let mut agent = Agent::run(&cfg);
    agent.wait_following(&log);
    let t = now_unix() - 60;
    let account = "jürgen.müller@exämple.de Ωμέγα Пётр 李雷";
    let lines: Vec<String> = (0..5)
        .map(|i| exim_fail(t + i, "203.0.113.61", account))
        .collect();
    log.append(&lines);
    let mails = wait_delivered(&sink, dir, &agent, 1);
    let m = &mails[0];
    let raw = std::fs::read(&m.mail.source).unwrap();
    assert!(
        raw.iter().all(|&b| b < 0x80),
        "the message holds 8-bit bytes"
    );
    assert_eq!(m.mail.attacking_ip(), "203.0.113.61");
    assert_eq!(
        m.mail.accounts(),
        vec![(5, account.to_string())],
        "the account decodes back to the same text:\n{}",
        m.mail.body
    );
    assert!(agent.stop().success());
}

#[test]
fn a_5000_character_account_makes_no_long_header_line_and_a_clean_subject() {
    let tmp = tempdir();
    let dir = tmp.path();
    let sink = Sink::start(dir, &["--tls", "none", "--no-8bitmime"]);
    let log = LogWriter::new(dir.join("mainlog"));
    let cfg = write_file(dir, "a.yaml", &config(dir, &log.path, sink.port));
    let mut agent = Agent::run(&cfg);
    agent.wait_following(&log);
    let t = now_unix() - 60;
    let ip = "203.0.113.62";
    // Bidi overrides, isolates, a line separator and non-ASCII text, 5,000 characters in all.
    let mut account = String::from("\u{202E}gpj.exe\u{2066}\u{2028}Ünïcødé-");
    while account.chars().count() < 5_000 {
        account.push_str("ab\u{200F}c");
    }
    let account: String = account.chars().take(5_000).collect();
    let mut lines: Vec<String> = (0..5).map(|i| exim_fail(t + i, ip, "guess")).collect();
    // A login as that account from the guessing IP: an URGENT alert naming it in the Subject.
    lines.push(format!(
        "{} 1vAbCd-0001Xy-Q1 <= x@example.test H=(laptop) [{ip}]:51544 P=esmtpsa A=dovecot_plain:{account} S=2121 id=x@example.test",
        stamp(t + 6)
    ));
    log.append(&lines);
    let mails = wait_delivered(&sink, dir, &agent, 2);
    let urgent = mails
        .iter()
        .find(|m| m.mail.subject().contains("URGENT"))
        .unwrap_or_else(|| panic!("no URGENT alert: {mails:?}"));
    for m in &mails {
        let raw = std::fs::read(&m.mail.source).unwrap();
        for l in raw_header_lines(&raw) {
            assert!(
                l.len() < 998,
                "a header line of {} bytes: {}",
                l.len(),
                String::from_utf8_lossy(&l[..200])
            );
            assert!(
                l.len() <= 78,
                "a header line over 78 bytes: {}",
                String::from_utf8_lossy(&l)
            );
        }
    }
    let subject = decode_rfc2047(urgent.mail.subject());
    assert!(
        subject.starts_with(&format!("[authwatch] mx1.test: URGENT: {ip} logged in as ")),
        "{subject}"
    );
    assert!(subject.contains('…'), "cut with an ellipsis: {subject}");
    assert!(
        subject.chars().count() <= 200,
        "{} characters",
        subject.chars().count()
    );
    for c in subject.chars() {
        let cp = c as u32;
        assert!(
            !c.is_control()
                && !(0x202A..=0x202E).contains(&cp)
                && !(0x2066..=0x2069).contains(&cp)
                && !matches!(cp, 0x200E | 0x200F | 0x2028 | 0x2029),
            "U+{cp:04X} in the decoded Subject: {subject:?}"
        );
    }
    assert!(agent.stop().success());
}

#[test]
fn digest_threads_to_the_first_alert_of_its_incident_by_message_id() {
    let tmp = tempdir();
    let dir = tmp.path();
    let sink = Sink::start(dir, &["--tls", "none"]);
    let log = LogWriter::new(dir.join("mainlog"));
    let text = config(dir, &log.path, sink.port)
        + "alerts: {cooldown: 1h, group_interval: 1s, max_per_hour: 0}\n";
    let cfg = write_file(dir, "a.yaml", &text);
    let mut agent = Agent::run(&cfg);
    agent.wait_following(&log);
    let t = now_unix() - 60;
    let ip = "203.0.113.63";
    log.append(
        &(0..5)
            .map(|i| exim_fail(t + i, ip, "guess"))
            .collect::<Vec<_>>(),
    );
    let first = wait_delivered(&sink, dir, &agent, 1).remove(0);
    // More attempts on the open incident: reported by the next digest, in the same thread.
    log.append(
        &(5..8)
            .map(|i| exim_fail(t + i, ip, "guess"))
            .collect::<Vec<_>>(),
    );
    let mails = wait_delivered(&sink, dir, &agent, 2);
    let digest = &mails[1].mail;
    let first_id = first
        .mail
        .header("Message-ID")
        .expect("a Message-ID")
        .to_string();
    assert!(
        first_id.starts_with("<ip_burst-") && first_id.ends_with("@mx1.test>"),
        "{first_id}"
    );
    assert_eq!(
        first.mail.header("In-Reply-To"),
        None,
        "a first alert follows nothing"
    );
    assert_eq!(
        digest.header("In-Reply-To"),
        Some(first_id.as_str()),
        "digest: {}\n{}",
        digest.subject(),
        digest.body
    );
    assert!(
        digest
            .header("References")
            .is_some_and(|r| r.split_whitespace().any(|id| id == first_id)),
        "{:?}",
        digest.header("References")
    );
    let digest_id = digest.header("Message-ID").unwrap();
    assert!(digest_id.starts_with("<digest-") && digest_id.ends_with("@mx1.test>"));
    assert!(agent.stop().success());
}

/// `check --probe` against a real SMTP server on loopback that offers no STARTTLS: with a
/// config asking for STARTTLS it fails (78) with the hint what to change; asking for plain SMTP
/// it passes, and each log is opened.
#[test]
fn check_probe_names_the_missing_starttls_and_passes_when_the_mode_is_right() {
    let tmp = tempdir();
    let dir = tmp.path();
    let sink = Sink::start(dir, &["--tls", "none"]);
    let log = LogWriter::new(dir.join("mainlog"));
    log.append(&["a line that is no login"]);
    let plain = config(dir, &log.path, sink.port);
    let starttls = plain.replace("tls: none", "tls: starttls");
    let cfg = write_file(dir, "starttls.yaml", &starttls);
    let (code, out, err) = run_to_end(
        &["check", "--probe", "--config", cfg.to_str().unwrap()],
        dir,
    );
    assert_eq!(code, Some(78), "{out}\n{err}");
    assert!(
        err.contains("probe FAIL  mail SMTP 127.0.0.1")
            && err.contains("does not offer STARTTLS")
            && err.contains("tls: none"),
        "{err}"
    );
    assert!(
        out.contains(&format!(
            "probe OK    source {}: opened and read",
            log.path.display()
        )),
        "{out}"
    );
    let cfg = write_file(dir, "plain.yaml", &plain);
    let (code, out, err) = run_to_end(
        &["check", "--probe", "--config", cfg.to_str().unwrap()],
        dir,
    );
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("probe OK    mail SMTP 127.0.0.1"), "{out}");
}
