//! Tests of the decisions store: targets as typed, matching of silences / allows / acks,
//! expiry on load and on use, the cap, and the file (mode, atomic replace, version, links).

use super::*;
use std::os::unix::fs::PermissionsExt;

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

#[test]
fn targets_as_typed() {
    let table: &[(&str, Result<&str, &str>)] = &[
        ("203.0.113.7", Ok("203.0.113.7")),
        ("::ffff:203.0.113.7", Ok("203.0.113.7")),
        ("203.0.113.0/24", Ok("203.0.113.0/24")),
        ("2001:db8:1:2::/64", Ok("2001:db8:1:2::/64")),
        (
            "203.0.113.7/24",
            Err("host bits are set; the network is 203.0.113.0/24"),
        ),
        ("alice@example.com", Ok("account alice@example.com")),
        ("abc/def", Ok("account abc/def")),
        ("203.0.113.0/33", Err("not an IP address or a CIDR network")),
        ("", Err("empty")),
        (
            "alice smith",
            Err("spaces and control characters are refused"),
        ),
        (
            "ali\u{1b}[31mce",
            Err("spaces and control characters are refused"),
        ),
    ];
    for (input, want) in table {
        let got = Target::parse(input).map(|t| t.to_string());
        match (got, want) {
            (Ok(g), Ok(w)) => assert_eq!(&g, w, "{input:?}"),
            (Err(g), Err(w)) => assert!(g.contains(w), "{input:?}: {g}"),
            (g, w) => panic!("{input:?}: got {g:?}, want {w:?}"),
        }
    }
    let long = "a".repeat(MAX_ACCOUNT_LEN + 1);
    assert!(Target::parse(&long).unwrap_err().contains("at most 256"));
}

#[test]
fn a_silence_matches_the_ip_its_network_and_the_account_but_never_a_compromise() {
    let mut d = Decisions::default();
    let ip = Target::parse("203.0.113.7").unwrap();
    let net = Target::parse("198.51.100.0/24").unwrap();
    let acct = Target::parse("alice").unwrap();
    for target in [ip, net, acct] {
        d.silence(target, t(3600), Some("known".into()), "root", t(0))
            .unwrap();
    }
    let now = t(10);
    assert!(d.silenced("ip_burst", "203.0.113.7", now).is_some());
    assert!(d.silenced("ip_burst", "203.0.113.8", now).is_none());
    assert!(d.silenced("ip_burst", "198.51.100.9", now).is_some());
    assert!(d.silenced("subnet_burst", "198.51.100.0/24", now).is_some());
    assert!(d.silenced("subnet_burst", "198.51.0.0/16", now).is_none());
    assert!(d.silenced("account_attack", "alice", now).is_some());
    assert!(d.silenced("account_attack", "bob", now).is_none());
    assert!(d
        .silenced("compromised", "203.0.113.7 alice", now)
        .is_none());
    // Expired on use.
    assert!(d.silenced("ip_burst", "203.0.113.7", t(3600)).is_none());
    assert!(d.unsilence(&Target::parse("203.0.113.7").unwrap()));
    assert!(!d.unsilence(&Target::parse("203.0.113.7").unwrap()));
    assert!(d.silenced("ip_burst", "203.0.113.7", now).is_none());
}

#[test]
fn an_allow_covers_its_network_until_it_expires() {
    let mut d = Decisions::default();
    d.allow(
        parse_net("192.0.2.0/24").unwrap(),
        Some(t(60)),
        "root",
        t(0),
    )
    .unwrap();
    d.allow(parse_net("2001:db8::1").unwrap(), None, "root", t(0))
        .unwrap();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(d.allows(&ip("192.0.2.77"), t(1)).is_some());
    assert!(d.allows(&ip("::ffff:192.0.2.77"), t(1)).is_some());
    assert!(d.allows(&ip("192.0.3.1"), t(1)).is_none());
    assert!(d.allows(&ip("192.0.2.77"), t(60)).is_none());
    assert!(d.allows(&ip("2001:db8::1"), t(1_000_000)).is_some());
    assert!(d.remove_allow(&parse_net("2001:db8::1").unwrap()));
    assert!(d.allows(&ip("2001:db8::1"), t(1)).is_none());
}

#[test]
fn an_ack_holds_for_its_class_only() {
    let mut d = Decisions::default();
    let id = incident_id("ip_burst", "203.0.113.7");
    assert_eq!(parse_incident_id(&id), Ok("ip_burst"));
    d.ack(&id, "root", t(0)).unwrap();
    assert!(d.acked("ip_burst", "203.0.113.7").is_some());
    // A login after failures from the same address is a new class: not acked.
    assert!(d.acked("compromised", "203.0.113.7 alice").is_none());
    assert!(d.acked("ip_burst", "203.0.113.8").is_none());
    for bad in [
        "ip_burst",
        "ip_burst-xyz",
        "health-0123456789ab",
        "ip_burst-0123456789AB",
    ] {
        assert!(d.ack(bad, "root", t(0)).is_err(), "{bad}");
    }
    // Acks end after a week.
    d.prune(t(ACK_TTL_SECS + 1));
    assert!(d.acked("ip_burst", "203.0.113.7").is_none());
}

#[test]
fn incident_ids_are_stable() {
    // Pinned: the id is printed in mails and typed back days later, by another build.
    assert_eq!(
        incident_id("ip_burst", "203.0.113.7"),
        incident_id("ip_burst", "203.0.113.7")
    );
    // FNV-1a of nothing is its offset basis; the id keeps the low 48 bits.
    assert_eq!(incident_id("ip_burst", ""), "ip_burst-9ce484222325");
    assert_ne!(
        incident_id("ip_burst", "a"),
        incident_id("compromised", "a")
    );
}

#[test]
fn the_cap_refuses_with_a_clear_error_and_expired_entries_make_room() {
    let mut d = Decisions::default();
    for i in 0..MAX_ENTRIES {
        let net = IpNet::from(IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]));
        d.allow(net, Some(t(10)), "root", t(0)).unwrap();
    }
    let e = d
        .allow(parse_net("192.0.2.1").unwrap(), None, "root", t(5))
        .unwrap_err();
    assert_eq!(e, DecisionError::Full);
    assert!(
        e.to_string().contains("10000 decisions are kept already"),
        "{e}"
    );
    // Replacing an existing entry is not growth.
    d.allow(parse_net("10.0.0.1").unwrap(), Some(t(20)), "root", t(5))
        .unwrap();
    // Once they expire, there is room again.
    d.allow(parse_net("192.0.2.1").unwrap(), None, "root", t(11))
        .unwrap();
    assert_eq!(d.len(), 2);
}

#[test]
fn durations_must_lie_ahead() {
    let mut d = Decisions::default();
    let e = d
        .silence(Target::parse("alice").unwrap(), t(0), None, "root", t(0))
        .unwrap_err();
    assert!(e.to_string().contains("above 0"), "{e}");
}

#[test]
fn the_file_round_trips_private_and_drops_expired_entries_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Decisions::default();
    d.silence(
        Target::parse("203.0.113.7").unwrap(),
        t(100),
        Some("x".repeat(500)),
        "root",
        t(0),
    )
    .unwrap();
    d.allow(parse_net("192.0.2.0/24").unwrap(), None, "root", t(0))
        .unwrap();
    d.save(dir.path()).unwrap();
    let path = dir.path().join(FILE);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let back = Decisions::load(dir.path(), t(1)).unwrap();
    assert_eq!(back, d);
    assert_eq!(
        back.silences[0].reason.as_ref().unwrap().chars().count(),
        MAX_REASON_CHARS
    );
    let later = Decisions::load(dir.path(), t(100)).unwrap();
    assert!(later.silences.is_empty());
    assert_eq!(later.allows.len(), 1);
    // No temp file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(FILE)]);
}

#[test]
fn a_missing_file_is_no_decisions_and_a_bad_one_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Decisions::load(dir.path(), t(0)).unwrap().is_empty());
    std::fs::write(dir.path().join(FILE), br#"{"version": 9}"#).unwrap();
    let e = Decisions::load(dir.path(), t(0)).unwrap_err().to_string();
    assert!(
        e.contains("decisions.json") && e.contains("version 9"),
        "{e}"
    );
    std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
    let e = Decisions::load(dir.path(), t(0)).unwrap_err().to_string();
    assert!(e.contains("not a decisions file"), "{e}");
}

#[test]
fn a_planted_symlink_at_the_temp_name_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"keep").unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join(format!(".{FILE}.tmp"))).unwrap();
    let e = Decisions::default()
        .save(dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("symbolic link"), "{e}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
}
