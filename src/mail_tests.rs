//! Tests of the mailer: message ids, dates and encoded subjects, 7-bit bodies and short header
//! lines, HTML and attachment parts, the spool and outbox (order, batches, crash safety, ids
//! across restarts) and the retry backoff.

use super::*;
use crate::config::MailConfig;
use crate::message::Rendered;
use lettre::message::header::ContentTransferEncoding;
use std::time::Duration;

fn cfg(dir: &Path) -> MailConfig {
    MailConfig {
        from: "authwatch <aw@mx1.example.com>".into(),
        to: vec!["a@example.com".into(), "b@example.com".into()],
        subject_prefix: "[authwatch]".into(),
        smtp: None,
        outbox_dir: dir.join("outbox"),
        retry: RetryPolicy::default(),
        html: false,
    }
}

#[test]
fn message_has_ids_dates_and_encoded_subject() {
    let dir = tempfile::tempdir().unwrap();
    let m = Composer::new(&cfg(dir.path())).unwrap();
    let msg = m
        .build(&Rendered {
            subject: "x\r\nBcc: victim@example.com".into(),
            text: "Automatic alert from authwatch - DO NOT reply\n".into(),
            html: None,
            id: None,
            ..Default::default()
        })
        .unwrap();
    let raw = String::from_utf8(msg.formatted()).unwrap();
    let headers = raw.split("\r\n\r\n").next().unwrap();
    assert!(headers.contains("\r\nMessage-ID: <"), "{headers}");
    assert!(headers.contains("\r\nDate: "), "{headers}");
    assert!(
        headers.contains("Auto-Submitted: auto-generated"),
        "{headers}"
    );
    assert!(
        headers.contains("To: a@example.com, b@example.com"),
        "{headers}"
    );
    assert!(
        !headers.contains("\r\nBcc:"),
        "CR/LF in a subject must not make a header: {headers}"
    );
    assert!(
        headers.contains("Content-Transfer-Encoding: 7bit"),
        "{headers}"
    );
    assert!(
        raw.contains("\r\n\r\nAutomatic alert from authwatch - DO NOT reply\r\n"),
        "{raw}"
    );
}

#[test]
fn html_goes_in_a_multipart_alternative() {
    let dir = tempfile::tempdir().unwrap();
    let msg = Composer::new(&cfg(dir.path()))
        .unwrap()
        .build(&Rendered {
            subject: "s".into(),
            text: "plain".into(),
            html: Some("<p>rich</p>".into()),
            id: None,
            ..Default::default()
        })
        .unwrap();
    let raw = String::from_utf8(msg.formatted()).unwrap();
    assert!(raw.contains("multipart/alternative"), "{raw}");
    assert!(
        raw.contains("text/plain") && raw.contains("text/html"),
        "{raw}"
    );
}

/// Decode quoted-printable (soft breaks, `=XX`), for the tests.
fn decode_qp(b: &[u8]) -> Vec<u8> {
    let hex = |c: Option<&u8>| c.and_then(|c| (*c as char).to_digit(16));
    let (mut out, mut i) = (Vec::new(), 0);
    while i < b.len() {
        if b[i] == b'=' && b[i + 1..].starts_with(b"\r\n") {
            i += 3;
        } else if let (b'=', Some(h), Some(l)) = (b[i], hex(b.get(i + 1)), hex(b.get(i + 2))) {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn bodies_are_always_7bit_regression_relay_without_8bitmime() {
    // (body, transfer encoding): ASCII in short lines stays as it is; anything else is
    // quoted-printable, never 8bit, and decodes back to the same text.
    let long = "x".repeat(999);
    let table: &[(&str, ContentTransferEncoding)] = &[
        ("plain ascii\nline two\n", ContentTransferEncoding::SevenBit),
        (&long[..998], ContentTransferEncoding::SevenBit),
        (&long, ContentTransferEncoding::QuotedPrintable),
        ("a\0b", ContentTransferEncoding::QuotedPrintable),
        ("a\rb", ContentTransferEncoding::QuotedPrintable),
        ("jürgen", ContentTransferEncoding::QuotedPrintable),
        ("Пётр 李雷 ✓\n", ContentTransferEncoding::QuotedPrintable),
    ];
    for (text, enc) in table {
        let body = seven_bit_body(text);
        assert_eq!(body.encoding(), *enc, "{text:?}");
        let bytes = body.into_vec();
        assert!(bytes.iter().all(|&b| b < 0x80), "8-bit byte for {text:?}");
        assert!(
            bytes.split(|&b| b == b'\n').all(|l| l.len() <= 1000),
            "long line for {text:?}"
        );
        let back = if *enc == ContentTransferEncoding::SevenBit {
            bytes
        } else {
            decode_qp(&bytes)
        };
        // (the 7-bit form ends every line, also the last, with CRLF)
        assert_eq!(
            String::from_utf8(back)
                .unwrap()
                .replace("\r\n", "\n")
                .trim_end_matches('\n'),
            text.trim_end_matches('\n'),
            "{text:?}"
        );
    }
}

#[test]
fn whole_message_is_7bit_with_short_header_lines_regression_5000_char_account() {
    let dir = tempfile::tempdir().unwrap();
    let composer = Composer::new(&cfg(dir.path())).unwrap();
    let table = [
        "a".repeat(5_000),
        "ü".repeat(5_000),
        format!(
            "\u{202E}gpj.exe\r\nBcc: x@example.com {}",
            "李 ".repeat(2_500)
        ),
        "a b ".repeat(1_250),
    ];
    for account in &table {
        let msg = composer
            .build(&Rendered {
                subject: format!("[authwatch] URGENT: 203.0.113.7 logged in as {account}"),
                text: format!("Account: {account}\n"),
                html: Some(format!("<p>{account}</p>")),
                id: None,
                ..Default::default()
            })
            .unwrap();
        let raw = msg.formatted();
        assert!(raw.iter().all(|&b| b < 0x80), "8-bit byte in the message");
        let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        for line in raw[..head_end].split(|&b| b == b'\n') {
            assert!(
                line.len() <= 79,
                "header line of {} bytes: {}",
                line.len(),
                String::from_utf8_lossy(line)
            );
        }
        let head = String::from_utf8_lossy(&raw[..head_end]);
        assert!(!head.contains("\nBcc:"), "{head}");
    }
}

#[test]
fn attachments_go_in_a_multipart_mixed_after_the_text() {
    let dir = tempfile::tempdir().unwrap();
    let composer = Composer::new(&cfg(dir.path())).unwrap();
    for html in [None, Some("<p>rich</p>".to_string())] {
        let msg = composer
            .build(&Rendered {
                subject: "digest".into(),
                text: "see the list".into(),
                html: html.clone(),
                attachments: vec![crate::message::Attachment {
                    file_name: "held-alerts.csv".into(),
                    content_type: "text/csv; charset=utf-8".into(),
                    text: "kind,key\nip_burst,203.0.113.5\naccount_attack,jürgen\n".into(),
                }],
                ..Default::default()
            })
            .unwrap();
        let raw = String::from_utf8(msg.formatted()).unwrap();
        assert!(raw.contains("multipart/mixed"), "{raw}");
        assert_eq!(
            raw.contains("multipart/alternative"),
            html.is_some(),
            "{raw}"
        );
        assert!(
            raw.contains("Content-Disposition: attachment; filename=\"held-alerts.csv\""),
            "{raw}"
        );
        assert!(raw.contains("text/csv"), "{raw}");
        assert!(raw.contains("ip_burst,203.0.113.5"), "{raw}");
        assert!(raw.contains("account_attack,j=C3=BCrgen"), "{raw}");
        assert!(raw.is_ascii());
        assert!(raw.find("see the list").unwrap() < raw.find("held-alerts").unwrap());
    }
}

#[tokio::test]
async fn spooled_alert_moves_to_the_outbox_folder() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let spool = Spool::open(dir.path()).unwrap();
    let msg = Composer::new(&c)
        .unwrap()
        .build(&Rendered {
            subject: "s".into(),
            text: "body".into(),
            html: None,
            id: None,
            ..Default::default()
        })
        .unwrap();
    let p = spool.put(&msg).unwrap();
    assert_eq!(spool.pending().unwrap(), vec![p.clone()]);
    let sender = Sender::new(&c, "mx1").unwrap();
    sender.deliver_once(&p).await.unwrap();
    spool.done(&p);
    assert!(spool.pending().unwrap().is_empty());
    let files: Vec<_> = std::fs::read_dir(dir.path().join("outbox"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(".eml"));
    let text = std::fs::read_to_string(dir.path().join("outbox").join(&files[0])).unwrap();
    assert!(text.contains("Subject: s\r\n"));
}

#[test]
fn spool_keeps_order_and_drops_temp_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("spool")).unwrap();
    std::fs::write(dir.path().join("spool/.x.eml.tmp"), b"half").unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    assert!(!dir.path().join("spool/.x.eml.tmp").exists());
    let msg = Composer::new(&cfg(dir.path()))
        .unwrap()
        .build(&Rendered {
            subject: "s".into(),
            text: "b".into(),
            html: None,
            id: None,
            ..Default::default()
        })
        .unwrap();
    let a = spool.put(&msg).unwrap();
    let b = spool.put(&msg).unwrap();
    assert_eq!(spool.pending().unwrap(), vec![a.clone(), b]);
    spool.fail(&a);
    assert!(dir
        .path()
        .join("failed")
        .join(a.file_name().unwrap())
        .exists());
}

#[test]
fn a_batch_is_invisible_until_committed_and_a_crash_before_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let composer = Composer::new(&cfg(dir.path())).unwrap();
    let alert = |id: &str| Rendered {
        subject: format!("s {id}"),
        text: "b".into(),
        html: None,
        id: Some(id.into()),
        ..Default::default()
    };
    let mut w = SpoolWriter::open(dir.path()).unwrap();
    for id in ["ip_burst-1", "ip_burst-2", "ip_burst-3"] {
        let r = alert(id);
        w.stage(&composer.build(&r).unwrap(), &r).unwrap();
    }
    assert_eq!(w.staged(), 3);
    // Staged: remembered in memory (no duplicate within the batch), not yet in the spool
    // for the mail task, not yet recorded on disk.
    assert!(w.seen("ip_burst-2"));
    assert!(w.spool().pending().unwrap().is_empty());
    assert!(!AlertIds::open(dir.path()).contains("ip_burst-1"));
    // "Crash" before the commit: a restart finds no alert and no id, so the lines (not yet
    // checkpointed) make the alerts again.
    drop(w);
    let mut w = SpoolWriter::open(dir.path()).unwrap();
    assert!(!w.seen("ip_burst-1"));
    assert_eq!(
        std::fs::read_dir(dir.path().join("spool")).unwrap().count(),
        0
    );
    for id in ["ip_burst-1", "ip_burst-2"] {
        let r = alert(id);
        w.stage(&composer.build(&r).unwrap(), &r).unwrap();
    }
    assert_eq!(w.commit(), 2);
    assert_eq!(w.staged(), 0);
    let pending = w.spool().pending().unwrap();
    assert_eq!(pending.len(), 2);
    let first = std::fs::read_to_string(&pending[0]).unwrap();
    assert!(first.contains("s ip_burst-1"), "oldest first: {first}");
    let ids = AlertIds::open(dir.path());
    assert!(ids.contains("ip_burst-1") && ids.contains("ip_burst-2"));
    assert_eq!(w.commit(), 0, "nothing staged");
}

/// The bug: a commit renamed the batch's alerts into the spool and only then recorded their
/// ids, so a `kill -9` between the two (a loaded disk's folder fsync lies there) left alerts in
/// the spool whose ids the restart did not know, and the re-read lines made and sent every
/// alert of that batch again (18 and 40 duplicates in `tests/durability`). Now the ids are
/// recorded before any rename: a kill after that leaves temp files that the next start
/// renames into place, and the alerts made again are known as repeats.
#[test]
fn kill_after_ids_are_recorded_sends_each_alert_once_regression_issue_14() {
    let dir = tempfile::tempdir().unwrap();
    let composer = Composer::new(&cfg(dir.path())).unwrap();
    let alert = |id: Option<&str>, subject: &str| Rendered {
        subject: subject.into(),
        text: "b".into(),
        id: id.map(str::to_string),
        ..Default::default()
    };
    let batch = [
        alert(Some("ip_burst-v2-00000000000000a1"), "first"),
        alert(Some("digest-v2-00000000000000b2"), "second"),
        // An id with bytes that may not stand in a file name as they are.
        alert(Some("odd id/+%.\u{e9}"), "third"),
        alert(None, "without id"),
    ];
    let mut w = SpoolWriter::open(dir.path()).unwrap();
    for r in &batch {
        w.stage(&composer.build(r).unwrap(), r).unwrap();
    }
    let recorded = w.record();
    assert_eq!(recorded.len(), 4);
    // Ids are recorded before any alert is visible to the mail task.
    assert!(w.spool().pending().unwrap().is_empty());
    let ids = AlertIds::open(dir.path());
    for r in &batch[..3] {
        assert!(ids.contains(r.id.as_deref().unwrap()), "{:?}", r.id);
    }
    // `kill -9` after the first rename: the others stay temp files.
    let spool_dir = dir.path().join("spool");
    let hidden = |d: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('.'))
            .collect();
        v.sort();
        v
    };
    let first = hidden(&spool_dir)
        .into_iter()
        .find(|n| n.contains("ip_burst-v2-00000000000000a1"))
        .unwrap();
    let final_name = first.trim_start_matches('.').split('+').next().unwrap();
    std::fs::rename(spool_dir.join(&first), spool_dir.join(final_name)).unwrap();
    drop(recorded);
    drop(w);

    let w = SpoolWriter::open(dir.path()).unwrap();
    assert!(hidden(&spool_dir).is_empty(), "{:?}", hidden(&spool_dir));
    let pending = w.spool().pending().unwrap();
    let subjects: Vec<String> = pending
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            let line = text.lines().find(|l| l.starts_with("Subject: ")).unwrap();
            line["Subject: ".len()..].to_string()
        })
        .collect();
    // The recorded alerts, in the order they were made; the one without an id was not
    // recorded, so its lines (not checkpointed) make it again.
    assert_eq!(subjects, ["first", "second", "third"]);
    // Made again from the re-read lines: known, so not spooled a second time.
    for r in &batch[..3] {
        assert_eq!(w.seen_alert(r), r.id.as_deref());
    }
    assert_eq!(w.seen_alert(&batch[3]), None);
}

#[test]
fn alert_ids_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut ids = AlertIds::open(dir.path());
    assert!(!ids.contains("ip_burst-1"));
    ids.record("ip_burst-1");
    ids.record("ip_burst-2");
    let again = AlertIds::open(dir.path());
    assert!(again.contains("ip_burst-1") && again.contains("ip_burst-2"));
    assert!(!again.contains("ip_burst-3"));
}

/// After an upgrade from a version with `DefaultHasher` ids, `alert-ids` holds ids of the old
/// form. An alert made again from the lines read after the restart (the same alert the old
/// version spooled) is recognised by its legacy id and not sent twice; a new alert is sent.
#[test]
fn an_alert_spooled_under_an_old_format_id_is_not_sent_twice_after_upgrade_regression_issue_17() {
    use crate::alert_kind::AlertKind;
    use crate::policy::id::alert_id;
    let dir = tempfile::tempdir().unwrap();
    let composer = Composer::new(&cfg(dir.path())).unwrap();
    let at = jiff::Timestamp::from_second(1_795_400_000).unwrap();
    let old = alert_id(AlertKind::IpBurst, "203.0.113.9", 1, at);
    let other = alert_id(AlertKind::IpBurst, "198.51.100.4", 1, at);
    // What the old version wrote: its ids, of the old form (one per line).
    std::fs::write(
        dir.path().join("alert-ids"),
        format!("subnet_burst-0123456789abcdef\n{}\n", old.legacy),
    )
    .unwrap();
    let rendered = |id: &crate::policy::id::AlertId| Rendered {
        subject: format!("about {}", id.id),
        text: "b".into(),
        id: Some(id.id.clone()),
        legacy_id: Some(id.legacy.clone()),
        ..Default::default()
    };
    // The agent's repeat check (`queue` in agent/run.rs): spool what was not seen.
    let send = |w: &mut SpoolWriter, r: &Rendered| {
        if w.seen_alert(r).is_none() {
            w.stage(&composer.build(r).unwrap(), r).unwrap();
        }
        w.commit()
    };
    let mut w = SpoolWriter::open(dir.path()).unwrap();
    let again = rendered(&old);
    assert_eq!(w.seen_alert(&again), Some(old.legacy.as_str()));
    assert_eq!(
        send(&mut w, &again),
        0,
        "made again after the upgrade: not sent"
    );
    assert_eq!(send(&mut w, &rendered(&other)), 1, "a new alert is sent");
    assert_eq!(w.spool().pending().unwrap().len(), 1);
    // Its new id is recorded; once again, it is a repeat by that id.
    let w = SpoolWriter::open(dir.path()).unwrap();
    assert_eq!(w.seen_alert(&rendered(&other)), Some(other.id.as_str()));
    // Without old-form ids in the file, a legacy id is not looked up.
    let fresh = tempfile::tempdir().unwrap();
    std::fs::write(fresh.path().join("alert-ids"), format!("{}\n", other.id)).unwrap();
    let w = SpoolWriter::open(fresh.path()).unwrap();
    let mut r = rendered(&old);
    r.legacy_id = Some(other.id.clone());
    assert_eq!(w.seen_alert(&r), None);
    let ids = AlertIds::open(fresh.path());
    assert!(!ids.has_legacy());
}

#[test]
fn backoff_has_full_jitter_under_a_cap() {
    let r = RetryPolicy {
        first_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(2),
        give_up_after: Duration::from_secs(60),
    };
    for n in 0..30 {
        let cap = Duration::from_millis(100u64 << n.min(20)).min(Duration::from_secs(2));
        let d = r.delay(n);
        assert!(d <= cap, "{n}: {d:?} > {cap:?}");
    }
    // Full jitter: delays spread over the range rather than sitting at the cap.
    let samples: Vec<_> = (0..200).map(|_| r.delay(10)).collect();
    assert!(samples.iter().any(|d| *d < Duration::from_millis(1000)));
    assert!(samples.iter().any(|d| *d > Duration::from_millis(1000)));
}

#[test]
fn message_id_names_the_alert_and_host_and_follow_ups_reply_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let m = Composer::new(&cfg(dir.path()))
        .unwrap()
        .with_domain("mx1.example.com");
    let r = Rendered {
        subject: "s".into(),
        text: "t".into(),
        id: Some("digest-00ff".into()),
        thread: vec!["ip_burst-0a".into(), "ip_burst-0b".into()],
        ..Default::default()
    };
    let raw = String::from_utf8(m.build(&r).unwrap().formatted()).unwrap();
    for want in [
        "Message-ID: <digest-00ff@mx1.example.com>\r\n",
        "In-Reply-To: <ip_burst-0a@mx1.example.com>\r\n",
        "References: <ip_burst-0a@mx1.example.com> <ip_burst-0b@mx1.example.com>\r\n",
    ] {
        assert!(raw.contains(want), "missing {want:?} in\n{raw}");
    }
    let first = m
        .build(&Rendered {
            id: Some("ip_burst-0a".into()),
            ..Default::default()
        })
        .unwrap();
    let raw = String::from_utf8(first.formatted()).unwrap();
    assert!(raw.contains("Message-ID: <ip_burst-0a@mx1.example.com>\r\n"));
    assert!(!raw.contains("In-Reply-To"), "{raw}");
}

#[test]
fn smtp_errors_get_a_hint_saying_what_to_change() {
    use crate::config::TlsMode::{None as Plain, Starttls, Tls};
    // (lettre's text, TLS mode, port, part of the hint; "" for no hint)
    let table = [
        (
            "internal client error: STARTTLS is not supported on this server",
            Starttls,
            587,
            "does not offer STARTTLS",
        ),
        (
            "internal client error: No compatible authentication mechanism was found",
            Plain,
            25,
            "set mail.smtp.tls: starttls",
        ),
        (
            "internal client error: No compatible authentication mechanism was found",
            Starttls,
            587,
            "offers no AUTH",
        ),
        (
            "permanent error (535): 5.7.8 Authentication credentials invalid",
            Starttls,
            587,
            "refused the login",
        ),
        (
            "permanent error (530): 5.7.0 Authentication required",
            Plain,
            25,
            "wants a login",
        ),
        (
            "tls error: received corrupt message of type InvalidContentType",
            Tls,
            587,
            "set mail.smtp.tls: starttls",
        ),
        (
            "tls error: invalid peer certificate: UnknownIssuer",
            Starttls,
            587,
            "ca_file",
        ),
        (
            "network error: timed out",
            Starttls,
            465,
            "port 465 speaks TLS from the start",
        ),
        (
            "Connection error: Connection refused (os error 111)",
            Plain,
            2525,
            "check mail.smtp.host and mail.smtp.port",
        ),
        (
            "permanent error (550): 5.1.1 no such user",
            Starttls,
            587,
            "",
        ),
    ];
    for (error, tls, port, want) in table {
        let hint = crate::mail::smtp_hint(error, tls, port);
        match want {
            "" => assert_eq!(hint, None, "{error}"),
            w => assert!(
                hint.as_deref().is_some_and(|h| h.contains(w)),
                "{error}: {hint:?} lacks {w:?}"
            ),
        }
        let shown = crate::mail::with_hint(error, tls, port);
        assert!(
            shown.starts_with(error),
            "the library's text is kept: {shown}"
        );
    }
}
