//! Table tests for the Exim rule: every line shape from DESIGN §3, hostile `set_id` and HELO
//! values (the blamed IP must always be the real peer), decoys that must not match, and lines
//! copied from `shared/bench/gen_exim_log.py --seed 7`.

use super::*;
use jiff::tz::TimeZone;

/// Expected: (ip, user, attempts, kind, time as RFC 3339).
type Want = Option<(
    &'static str,
    Option<&'static str>,
    u32,
    HitKind,
    Option<&'static str>,
)>;

const F: HitKind = HitKind::Failure;
const S: HitKind = HitKind::Success;

fn ctx() -> ParseCtx {
    ParseCtx::new(TimeZone::UTC, "2026-11-24T00:00:00Z".parse().unwrap())
}

fn check(table: &[(&str, Want)]) {
    let rule = EximRule::new();
    let ctx = ctx();
    let mut failed = Vec::new();
    for (line, want) in table {
        let got = rule.parse(line, &ctx);
        let want = want.map(|(ip, user, attempts, kind, time)| Hit {
            time: time.map(|t| t.parse().unwrap()),
            ip: ip.parse().unwrap(),
            user: user.map(str::to_owned),
            service: "exim",
            attempts,
            kind,
        });
        if got != want {
            failed.push(format!("line: {line}\n  got:  {got:?}\n  want: {want:?}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

const T: Option<&str> = Some("2026-11-23T15:59:08Z");

#[test]
fn failure_shapes() {
    check(&[
        // The DESIGN §3 line.
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for (attacker.example) [127.0.0.1]: 535 Incorrect authentication data (set_id=alice)",
            Some(("127.0.0.1", Some("alice"), 1, F, T)),
        ),
        // Host part shapes.
        (
            "2026-11-23 15:59:08 dovecot_plain authenticator failed for mail.example.net (helo.example) [192.0.2.7]: 535 Incorrect authentication data (set_id=bob@example.com)",
            Some(("192.0.2.7", Some("bob@example.com"), 1, F, T)),
        ),
        (
            "2026-11-23 15:59:08 fixed_login authenticator failed for mail.example.net [192.0.2.7]: 535 Incorrect authentication data (set_id=bob)",
            Some(("192.0.2.7", Some("bob"), 1, F, T)),
        ),
        (
            "2026-11-23 15:59:08 login authenticator failed for [192.0.2.7]: 535 Incorrect authentication data (set_id=bob)",
            Some(("192.0.2.7", Some("bob"), 1, F, T)),
        ),
        (
            "2026-11-23 15:59:08 login authenticator failed for H=(User) [192.0.2.7]: 535 Incorrect authentication data (set_id=bob)",
            Some(("192.0.2.7", Some("bob"), 1, F, T)),
        ),
        (
            "2026-11-23 15:59:08 login authenticator failed for H=[192.0.2.7]:25: 535 Incorrect authentication data (set_id=bob)",
            Some(("192.0.2.7", Some("bob"), 1, F, T)),
        ),
        (
            "2026-11-23 15:59:08 login authenticator failed for () [192.0.2.7]: 535 Incorrect authentication data",
            Some(("192.0.2.7", None, 1, F, T)),
        ),
        // Port, interface (log_selector +all), ident.
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for (attacker.example) [127.0.0.1]:48582 I=[127.0.0.1]:2525: 535 Incorrect authentication data (set_id=alice)",
            Some(("127.0.0.1", Some("alice"), 1, F, T)),
        ),
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for host.example (h) [198.51.100.4]:48582 I=[2001:db8::25]:587 U=nobody: 535 Incorrect authentication data (set_id=alice)",
            Some(("198.51.100.4", Some("alice"), 1, F, T)),
        ),
        // Milliseconds and pid.
        (
            "2026-11-23 15:40:35.047 [12345] PLAIN authenticator failed for (x) [203.0.113.9]:1234: 535 Incorrect authentication data (set_id=carol)",
            Some(("203.0.113.9", Some("carol"), 1, F, Some("2026-11-23T15:40:35.047Z"))),
        ),
        // log_timezone.
        (
            "2026-11-23 15:40:35.047 +0100 [12345] PLAIN authenticator failed for (x) [203.0.113.9]:1234: 535 Incorrect authentication data (set_id=carol)",
            Some(("203.0.113.9", Some("carol"), 1, F, Some("2026-11-23T14:40:35.047Z"))),
        ),
        // Older Exim: N Time(s), no set_id.
        (
            "2026-11-23 15:59:08 login authenticator failed for (User) [192.0.2.8]: 535 Incorrect authentication data: 1 Time(s)",
            Some(("192.0.2.8", None, 1, F, T)),
        ),
        (
            "2026-11-23 15:59:08 login authenticator failed for (User) [192.0.2.8]: 535 Incorrect authentication data: 3 Time(s)\r",
            Some(("192.0.2.8", None, 3, F, T)),
        ),
        (
            "2026-11-23 15:59:08 login authenticator failed for (User) [192.0.2.8]: 535 Incorrect authentication data: 0 Time(s)",
            Some(("192.0.2.8", None, 1, F, T)),
        ),
        // Syslog / journal prefixes, with and without Exim's own stamp.
        (
            "Nov 23 15:59:08 mx1 exim[1234]: PLAIN authenticator failed for (a) [192.0.2.9]: 535 Incorrect authentication data (set_id=dave)",
            Some(("192.0.2.9", Some("dave"), 1, F, T)),
        ),
        (
            "Nov 23 15:59:09 mx1 exim4[1234]: 2026-11-23 15:59:08 PLAIN authenticator failed for (a) [192.0.2.9]:25: 535 Incorrect authentication data (set_id=dave)",
            Some(("192.0.2.9", Some("dave"), 1, F, T)),
        ),
        (
            "Nov  3 15:59:08 mx1 exim: [77] PLAIN authenticator failed for (a) [192.0.2.9]: 535 Incorrect authentication data",
            Some(("192.0.2.9", None, 1, F, Some("2026-11-03T15:59:08Z"))),
        ),
        (
            "2026-11-23T16:59:08.123456+01:00 mx1 exim[1234]: PLAIN authenticator failed for (a) [192.0.2.9]: 535 Incorrect authentication data (set_id=dave)",
            Some(("192.0.2.9", Some("dave"), 1, F, Some("2026-11-23T15:59:08.123456Z"))),
        ),
        // No stamp at all: still a hit, without time.
        (
            "PLAIN authenticator failed for (a) [192.0.2.9]: 535 Incorrect authentication data (set_id=dave)",
            Some(("192.0.2.9", Some("dave"), 1, F, None)),
        ),
        // IPv6, with port, and IPv4-mapped (canonicalised).
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for (a) [2001:db8::1]:587: 535 Incorrect authentication data (set_id=erin)",
            Some(("2001:db8::1", Some("erin"), 1, F, T)),
        ),
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for (a) [::ffff:1.2.3.4]:587: 535 Incorrect authentication data (set_id=erin)",
            Some(("1.2.3.4", Some("erin"), 1, F, T)),
        ),
        // Empty set_id: no user.
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for (a) [192.0.2.10]: 535 Incorrect authentication data (set_id=)",
            Some(("192.0.2.10", None, 1, F, T)),
        ),
    ]);
}

#[test]
fn hostile_set_id_and_helo_never_move_the_blame() {
    check(&[
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for (User) [198.51.100.1]:4444: 535 Incorrect authentication data (set_id=x) [10.9.9.9]:25: 535 Incorrect authentication data)",
            Some(("198.51.100.1", Some("x) [10.9.9.9]:25: 535 Incorrect authentication data"), 1, F, T)),
        ),
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for (User) [198.51.100.1]: 535 Incorrect authentication data (set_id=john smith (x) [10.9.9.9])",
            Some(("198.51.100.1", Some("john smith (x) [10.9.9.9]"), 1, F, T)),
        ),
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for (User) [198.51.100.1]: 535 Incorrect authentication data (set_id=]:25: 535 [::1] )",
            Some(("198.51.100.1", Some("]:25: 535 [::1] "), 1, F, T)),
        ),
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for (User) [198.51.100.1]: 535 Incorrect authentication data (set_id=x): 99 Time(s)",
            Some(("198.51.100.1", Some("x): 99 Time(s"), 1, F, T)),
        ),
        // HELO is a bracketed IP literal; with and without a host name in front.
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for ([10.9.9.9]) [198.51.100.2]:1025: 535 Incorrect authentication data (set_id=a)",
            Some(("198.51.100.2", Some("a"), 1, F, T)),
        ),
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for rdns.example ([10.9.9.9]) [198.51.100.2]: 535 Incorrect authentication data (set_id=a)",
            Some(("198.51.100.2", Some("a"), 1, F, T)),
        ),
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for H=([10.9.9.9]:25:) [198.51.100.2]: 535 Incorrect authentication data",
            Some(("198.51.100.2", None, 1, F, T)),
        ),
        // A HELO with spaces (only with helo_accept_junk_hosts): see
        // `exim_helo_junk_never_moves_the_blame`.
        // The peer position holds something that is not an address.
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for (x) [999.1.1.1]: 535 Incorrect authentication data",
            None,
        ),
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for (x) [::g]: 535 Incorrect authentication data",
            None,
        ),
    ]);
}

#[test]
fn decoys_do_not_match() {
    check(&[
        // Exim as a client of a smarthost.
        (
            "2026-11-23 15:59:08 1xNIze-0008bX-A5 smarthost.example.net [1.2.3.4]:587 SMTP error from remote mail server after AUTH PLAIN ****: 535 5.7.8 Error: authentication failed",
            None,
        ),
        (
            "2026-11-23 15:59:08 1xNIze-0008bX-A5 smarthost_login authenticator failed H=smarthost.example.net [1.2.3.4] 535 5.7.8 Error: authentication failed",
            None,
        ),
        // Subjects quoting the failure text, even the whole failure line.
        (
            "2026-11-23 15:59:08 1xNIze-0008bX-A5 <= x@y.example H=mx.y.example [1.2.3.4] P=esmtp S=100 T=\"Re: 535 Incorrect authentication data (set_id=bob)\"",
            None,
        ),
        (
            "2026-11-23 15:59:08 1xNIze-0008bX-A5 <= x@y.example H=mx.y.example [1.2.3.4] P=esmtp S=100 T=\"PLAIN authenticator failed for (a) [10.9.9.9]: 535 Incorrect authentication data\"",
            None,
        ),
        // Other programs in syslog with the same words.
        (
            "Nov 23 15:59:08 mx1 myapp[1]: PLAIN authenticator failed for (a) [10.9.9.9]: 535 Incorrect authentication data",
            None,
        ),
        // A different response (temporary failure) is not a 535.
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for (a) [192.0.2.1]: 435 Unable to authenticate at present",
            None,
        ),
        // Connection noise from attackers.
        (
            "2026-11-23 15:59:08 SMTP protocol error in \"AUTH LOGIN\" H=(User) [192.0.2.1]:4 AUTH command used when not advertised",
            None,
        ),
        ("", None),
        ("garbage", None),
    ]);
}

#[test]
fn success_lines() {
    check(&[
        (
            "2026-11-23 15:59:08 1xNIzQ-0009Mz-Ns <= grace@example.com H=(DESKTOP-OREDX2R) [78.194.130.137]:22687 P=esmtpsa X=TLS1.3:ECDHE_X25519__RSA_PSS_RSAE_SHA256__AES_256_GCM:256 CV=no A=dovecot_plain:grace@example.com S=198000 id=e300952847@example.com",
            Some(("78.194.130.137", Some("grace@example.com"), 1, S, T)),
        ),
        // Exim 4.97+ message id, pid, IPv6, interface.
        (
            "2026-11-23 15:59:08.000 [99] 1rZ3tN-00000000Jxy-0Tfa <= a@example.com H=host.example [2001:db8::5]:587 I=[2001:db8::25]:587 P=esmtpa L A=plain:alice PRDR K S=10 id=x@y",
            Some(("2001:db8::5", Some("alice"), 1, S, T)),
        ),
        // Journal prefix.
        (
            "Nov 23 15:59:08 mx1 exim[5]: 1xNIzQ-0009Mz-Ns <= a@example.com H=([192.168.1.37]) [82.195.178.92]:46645 P=esmtpsa A=dovecot_login:tom S=1",
            Some(("82.195.178.92", Some("tom"), 1, S, T)),
        ),
        // Authenticated without an id: a success without user.
        (
            "2026-11-23 15:59:08 1xNIzQ-0009Mz-Ns <= a@example.com H=(x) [192.0.2.3] P=esmtpa A=cram S=1",
            Some(("192.0.2.3", None, 1, S, T)),
        ),
        // A quoted sender with spaces cannot forge H= or A=.
        (
            "2026-11-23 15:59:08 1xNIzQ-0009Mz-Ns <= \"x H=(a) [10.9.9.9] P=esmtpa A=plain:admin S=1\"@evil.example H=(evil) [198.51.100.66] P=esmtp S=100 id=1@evil.example",
            None,
        ),
        (
            "2026-11-23 15:59:08 1xNIzQ-0009Mz-Ns <= \"x \\\" H=(a) [10.9.9.9] P=esmtpa\"@evil.example H=(evil) [198.51.100.66] P=esmtpa A=plain:bob S=100",
            Some(("198.51.100.66", Some("bob"), 1, S, T)),
        ),
        // Neither can the message id nor the subject (they follow S=).
        (
            "2026-11-23 15:59:08 1xNIzQ-0009Mz-Ns <= x@evil.example H=(evil) [198.51.100.66] P=esmtp S=100 id=a A=plain:admin S=1 T=\"x A=plain:admin S=1\"",
            None,
        ),
        (
            "2026-11-23 15:59:08 1xNIzQ-0009Mz-Ns <= x@evil.example H=(evil) [198.51.100.66] P=esmtpa A=plain:bob S=100 id=a A=plain:admin S=1 T=\" A=plain:root S=1\"",
            Some(("198.51.100.66", Some("bob"), 1, S, T)),
        ),
        // Deliveries carry A= for client-side auth: not a login to us.
        (
            "2026-11-23 15:59:08 1xNIzQ-0009Mz-Ns => r@remote.example R=smarthost T=remote_smtp H=smarthost.example [192.0.2.30] A=smarthost_login:me C=\"250 OK\"",
            None,
        ),
        // Local submission: no H=, no IP.
        (
            "2026-11-23 15:59:08 1xNIzQ-0009Mz-Ns <= www@example.com U=www-data P=local A=plain:x S=100",
            None,
        ),
        // Not a message id before <=.
        (
            "2026-11-23 15:59:08 junk <= a@b H=(x) [192.0.2.3] P=esmtpa A=plain:x S=1",
            None,
        ),
    ]);
}

/// Lines copied from `gen_exim_log.py --lines 20000 --seed 7` (framer, hostile set_id, HELO IP
/// literals, rDNS + HELO, I=, H=, IPv6, old style tail, decoys, an authenticated submission).
#[test]
fn generated_lines() {
    let d = |t: &'static str| Some(t);
    check(&[
        (
            "2026-11-01 00:00:21 fixed_login authenticator failed for 109-198-104-222.static.isp.example (User) [109.198.104.222]: 535 Incorrect authentication data (set_id=admin) [92.169.89.19])",
            Some(("109.198.104.222", Some("admin) [92.169.89.19]"), 1, F, d("2026-11-01T00:00:21Z"))),
        ),
        (
            "2026-11-01 00:00:30 fixed_login authenticator failed for 109-198-104-222.static.isp.example (User) [109.198.104.222]: 535 Incorrect authentication data (set_id=x) [92.169.89.19])",
            Some(("109.198.104.222", Some("x) [92.169.89.19]"), 1, F, d("2026-11-01T00:00:30Z"))),
        ),
        (
            "2026-11-01 00:00:20 fixed_login authenticator failed for H=([192.168.0.10]) [181.165.79.150]:44321: 535 Incorrect authentication data (set_id=olivia.smith@example.com)",
            Some(("181.165.79.150", Some("olivia.smith@example.com"), 1, F, d("2026-11-01T00:00:20Z"))),
        ),
        (
            "2026-11-01 00:00:29 dovecot_plain authenticator failed for ([10.0.0.5]) [2001:db8:454:e857::1782]: 535 Incorrect authentication data (set_id=contact@example.net)",
            Some(("2001:db8:454:e857::1782", Some("contact@example.net"), 1, F, d("2026-11-01T00:00:29Z"))),
        ),
        (
            "2026-11-01 00:00:00 dovecot_login authenticator failed for ip82.184.242.45.dyn.example.net [45.242.184.82]:20515 I=[192.0.2.25]:587: 535 Incorrect authentication data (set_id=ivan.martin248@shop.example.org)",
            Some(("45.242.184.82", Some("ivan.martin248@shop.example.org"), 1, F, d("2026-11-01T00:00:00Z"))),
        ),
        (
            "2026-11-01 00:00:08 dovecot_plain authenticator failed for (win-clj1b0gq6jp.domain) [141.113.186.143]:37272 I=[192.0.2.25]:587: 535 Incorrect authentication data (set_id=carol.tanaka@shop.example.org)",
            Some(("141.113.186.143", Some("carol.tanaka@shop.example.org"), 1, F, d("2026-11-01T00:00:08Z"))),
        ),
        (
            "2026-11-01 00:00:06 dovecot_login authenticator failed for (08f2b4c7) [2001:db8:a11:77:fad5:f735:e85d:8b88]: 535 Incorrect authentication data (set_id=sara.smith@example.com)",
            Some(("2001:db8:a11:77:fad5:f735:e85d:8b88", Some("sara.smith@example.com"), 1, F, d("2026-11-01T00:00:06Z"))),
        ),
        (
            "2026-11-01 00:00:09 dovecot_login authenticator failed for ip253.171.189.113.dyn.example.net (WIN-SERL1TVNIWZ) [113.189.171.253]: 535 Incorrect authentication data (set_id=carol.kowalski242@shop.example.org)",
            Some(("113.189.171.253", Some("carol.kowalski242@shop.example.org"), 1, F, d("2026-11-01T00:00:09Z"))),
        ),
        (
            "2026-11-01 00:06:44 dovecot_plain authenticator failed for (mail.example.com) [31.80.160.127]:51000: 535 Incorrect authentication data (set_id=User) [192.0.2.1]:1: 535 Incorrect authentication data (set_id=x)",
            Some(("31.80.160.127", Some("User) [192.0.2.1]:1: 535 Incorrect authentication data (set_id=x"), 1, F, d("2026-11-01T00:06:44Z"))),
        ),
        (
            "2026-11-01 00:08:13 fixed_login authenticator failed for (User) [2001:db8:a11:77:7dd0:ffca:a859:8a8c]: 535 Incorrect authentication data (set_id=foo) [10.9.9.9])",
            Some(("2001:db8:a11:77:7dd0:ffca:a859:8a8c", Some("foo) [10.9.9.9]"), 1, F, d("2026-11-01T00:08:13Z"))),
        ),
        (
            "2026-11-01 00:00:22 fixed_plain authenticator failed for vps199155.hosting.example [77.84.199.155]: 535 Incorrect authentication data",
            Some(("77.84.199.155", None, 1, F, d("2026-11-01T00:00:22Z"))),
        ),
        (
            "2026-11-01 00:00:43 dovecot_plain authenticator failed for 89-111-170-72.static.isp.example ([127.0.0.1]) [89.111.170.72]:64302: 535 Incorrect authentication data",
            Some(("89.111.170.72", None, 1, F, d("2026-11-01T00:00:43Z"))),
        ),
        (
            "2026-11-01 00:02:24 1xNJ1k-0001Fw-X5 <= niaj668@corp7.example H=mail-162-216-98-54.outbound.orange.fr [162.216.98.54] P=esmtps X=TLS1.3:ECDHE_X25519__RSA_PSS_RSAE_SHA256__AES_256_GCM:256 CV=no S=65851 id=5b59ab9ef8@corp7.example T=\"Alert: 535 Incorrect authentication data [37.20.150.97]\"",
            None,
        ),
        (
            "2026-11-01 00:00:14 1xNIze-000FQr-Q5 smarthost.example.net [192.0.2.30]:587 SMTP error from remote mail server after AUTH PLAIN ****: 535 5.7.8 Error: authentication failed: authentication failure",
            None,
        ),
        (
            "2026-11-01 00:00:01 1xNIzR-0008QB-8L <= tom.rossi235@example.net H=([192.168.1.37]) [82.195.178.92]:46645 P=esmtpsa X=TLS1.3:ECDHE_X25519__RSA_PSS_RSAE_SHA256__AES_256_GCM:256 CV=no A=dovecot_plain:tom.rossi235@example.net S=164835 id=02fe138d96@example.net",
            Some(("82.195.178.92", Some("tom.rossi235@example.net"), 1, S, d("2026-11-01T00:00:01Z"))),
        ),
    ]);
}

#[test]
fn message_ids_and_helpers() {
    assert!(is_message_id("1xNIze-0008bX-A5"));
    assert!(is_message_id("1rZ3tN-00000000Jxy-0Tfa"));
    assert!(!is_message_id("1xNIze-0008bX_A5"));
    assert!(!is_message_id("1xNIze-0008bXA5"));
    assert_eq!(sender_end("a@b H=x"), Some(3));
    assert_eq!(sender_end("\"a b\"@c H=x"), Some(7));
    assert_eq!(sender_end("\"a b@c H=x"), None);
    assert_eq!(skip_pid("[12] x"), "x");
    assert_eq!(skip_pid("[x] y"), "[x] y");
    assert_eq!(skip_syslog_header("mx1 exim4[1]: x"), Some("x"));
    assert_eq!(skip_syslog_header("exim[1]: x"), Some("x"));
    assert_eq!(skip_syslog_header("mx1 postfix[1]: x"), None);
    assert_eq!(failure_tail(": 12 Time(s)"), (12, None));
    assert_eq!(failure_tail(" (set_id=a b) ) \r\n"), (1, Some("a b) ")));
}

/// Deterministic xorshift, so the differential tests need no extra crate.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// One of `heads` followed by 1..=max fragments, `cases` times; asserts the hand parser and
/// the grammar agree; returns how many inputs the grammar accepted.
fn differential(
    grammar: &str,
    heads: &[&str],
    fragments: &[&str],
    max: usize,
    cases: usize,
    seed: u64,
    hand: impl Fn(&str) -> Option<(&str, &str)>,
) -> usize {
    let re = regex::bytes::Regex::new(grammar).unwrap();
    let mut rng = Rng(seed);
    let mut accepted = 0;
    let mut s = String::new();
    for _ in 0..cases {
        s.clear();
        s.push_str(heads[rng.below(heads.len())]);
        for _ in 0..=rng.below(max) {
            s.push_str(fragments[rng.below(fragments.len())]);
        }
        let want = re.captures(s.as_bytes()).map(|c| {
            let ip = c.get(1).unwrap();
            (&s[ip.start()..ip.end()], c.get(0).unwrap().end())
        });
        let got = hand(&s).map(|(ip, rest)| (ip, s.len() - rest.len()));
        assert_eq!(got, want, "input: {s:?}");
        accepted += usize::from(want.is_some());
    }
    accepted
}

/// The hand parser of failure host parts accepts exactly what `FAIL_GRAMMAR` accepts and
/// captures the same address.
#[test]
fn failure_peer_matches_grammar() {
    let fragments = [
        "H=",
        "host.example ",
        "host.example",
        "(helo) ",
        "(helo)",
        "([10.9.9.9]) ",
        "() ",
        "(a b) ",
        "[1.2.3.4]",
        "[2001:db8::1]",
        "[::ffff:1.2.3.4]",
        "[10.9.9.9] ",
        "[]",
        ":25",
        ".25",
        ":",
        " I=[192.0.2.25]:587",
        " I=[192.0.2.25]",
        " I=[x]",
        " U=ident:",
        " U=:",
        " U=a b:",
        " ",
        "  ",
        "\t",
        "\u{a0}",
        "é",
        ": 535 Incorrect authentication data",
        ": 535 Incorrect authentication data (set_id=x) [10.9.9.9]:25",
        " (set_id=x) [10.9.9.9]:25: 535 Incorrect authentication data)",
        "[",
        "]",
        "(",
        ")",
    ];
    let heads = [
        "",
        "H=",
        "host.example ",
        "(helo) ",
        "host.example (helo) ",
        "H=(helo) ",
        "([10.9.9.9]) ",
        "[10.9.9.9] [1.2.3.4]",
        "[1.2.3.4]",
        "H=[1.2.3.4]:25",
        "h ([1.2.3.4]) [2001:db8::2]",
    ];
    let accepted = differential(
        FAIL_GRAMMAR,
        &heads,
        &fragments,
        6,
        200_000,
        0x9E37_79B9_7F4A_7C15,
        failure_peer,
    );
    assert!(accepted > 2_000, "only {accepted} positive cases");
}

/// Same for the host part of `<=` lines and `RECEIVED_GRAMMAR`.
#[test]
fn received_peer_matches_grammar() {
    let fragments = [
        " R=1xNIze-0008bX-A5",
        " R=",
        " DS",
        " H=",
        "host.example ",
        "(helo) ",
        "([10.9.9.9]) ",
        "[1.2.3.4]",
        "[2001:db8::1]",
        "[10.9.9.9] ",
        ":25",
        " I=[192.0.2.25]:587",
        " TFO",
        " TFO*",
        " Ci=4711",
        " Ci=",
        "*",
        " U=ident",
        " U=",
        " P=esmtpa",
        " P=",
        " A=plain:x S=1",
        " ",
        "\t",
        "[",
        "(",
        ")",
    ];
    let heads = [
        " H=",
        " R=1xNIze-0008bX-A5 H=",
        " DS H=",
        " R=x DS H=",
        "",
        " DS",
        " H=host.example (helo) ",
        " H=(helo) ",
        " H=[1.2.3.4]",
        " H=h ([1.2.3.4]) [2001:db8::2]:25",
    ];
    let accepted = differential(
        RECEIVED_GRAMMAR,
        &heads,
        &fragments,
        9,
        200_000,
        0x2545_F491_4F6C_DD1D,
        received_peer,
    );
    assert!(accepted > 2_000, "only {accepted} positive cases");
}

/// Issue 14 point 1: lines of other services (and Exim's own lines) that carry an Exim failure
/// or success inside attacker text (a quoted sender, a message-id, a HELO, a syslog
/// continuation record) give no hit. The rule reads a failure only where Exim writes one: as
/// the whole message, right after Exim's stamp/pid or its own `exim…:` syslog tag.
#[test]
fn lines_of_other_services_carrying_exim_patterns_give_no_hit() {
    let fail = "PLAIN authenticator failed for (x) [198.51.100.8]: 535 Incorrect authentication data (set_id=root)";
    let lines = [
        // Postfix cleanup: the message-id is the client's text.
        format!("Nov 23 15:59:08 mx1 postfix/cleanup[2231]: 4XyZ1p2Qr3z9: message-id=<\"a {fail}\"@x>"),
        "Nov 23 15:59:08 mx1 postfix/cleanup[2231]: 4XyZ1p2Qr3z9: message-id=<\"authenticator failed for (x) [198.51.100.8]: 535 Incorrect authentication data\"@x>".to_string(),
        // Postfix qmgr / smtpd: the sender and the HELO.
        format!("Nov 23 15:59:08 mx1 postfix/qmgr[880]: 4XyZ1p2Qr3z9: from=<\"{fail}\"@evil.example>, size=812, nrcpt=1 (queue active)"),
        format!("Nov 23 15:59:08 mx1 postfix/smtpd[2230]: NOQUEUE: reject: RCPT from unknown[203.0.113.50]: 554 5.7.1 <a@b>: Relay access denied; from=<x@y> to=<a@b> proto=ESMTP helo=<{fail}>"),
        // Dovecot: the user name.
        format!("Nov 23 15:59:39 imap-login: Info: Disconnected: Aborted login by logging out (auth failed, 1 attempts in 2 secs): user=<{fail}>, method=PLAIN, rip=203.0.113.50, lip=192.0.2.1, session=<nO2SsvRg5Ox/AAAB>"),
        format!("Nov 23 15:59:39 mx1 dovecot: auth: passwd-file({fail},203.0.113.50): unknown user"),
        // Exim's own lines: a quoted sender, a subject, a rejected HELO.
        format!("2026-11-23 15:59:08 1xNIzQ-0009Mz-Ns <= \"{fail}\"@evil.example H=(evil) [203.0.113.50] P=esmtp S=100 id=1@evil.example"),
        "2026-11-23 15:59:08 1xNIzQ-0009Mz-Ns <= \"x: 535 Incorrect authentication data (set_id=y)\"@evil.example H=(evil) [203.0.113.50] P=esmtp S=100".to_string(),
        format!("Nov 23 15:59:08 mx1 exim[77]: 1xNIzQ-0009Mz-Ns <= \"{fail}\"@evil.example H=(evil) [203.0.113.50] P=esmtp S=100"),
        format!("2026-11-23 15:59:08 rejected EHLO from [203.0.113.50]: syntactically invalid argument(s): {fail}"),
        // Exim splits a syslog message longer than 870 bytes into records `[n\\m] `; a
        // continuation record starts with whatever text was at the split, attacker text too.
        "Nov 23 15:59:08 mx1 exim[77]: [2\\2] authenticator failed for (x) [198.51.100.8]: 535 Incorrect authentication data (set_id=root)".to_string(),
        format!("Nov 23 15:59:08 mx1 exim[77]: [2\\2] {fail}"),
        // Other programs, with and without a host name.
        format!("Nov 23 15:59:08 mx1 roundcube: <a1b2c3d4> {fail}"),
        format!("Nov 23 15:59:08 roundcube: {fail}"),
        format!("[23-Nov-2026 15:59:08 +0000]: <a1b2c3d4> Failed login for {fail} from 203.0.113.50 in session a1b2c3d4e5f60718 (error: 0)"),
    ];
    // Fake successes: an authenticated `<=` line inside another service's attacker text.
    let ok = "1xNIzQ-0009Mz-Ns <= a@b.example H=(x) [198.51.100.9] P=esmtpa A=plain:alice S=1";
    let successes = [
        format!("Nov 23 15:59:08 mx1 postfix/cleanup[2231]: 4XyZ1p2Qr3z9: message-id=<\"{ok}\"@x>"),
        format!("Nov 23 15:59:08 mx1 postfix/qmgr[880]: 4XyZ1p2Qr3z9: from=<\"{ok}\"@evil.example>, size=812, nrcpt=1 (queue active)"),
        format!("Nov 23 15:59:39 imap-login: Info: Disconnected: Aborted login by logging out (auth failed, 1 attempts in 2 secs): user=<{ok}>, method=PLAIN, rip=203.0.113.50, lip=192.0.2.1"),
        format!("Nov 23 15:59:08 mx1 exim[77]: [2\\2] {ok}"),
        format!("Nov 23 15:59:08 mx1 roundcube: {ok}"),
    ];
    let table: Vec<(&str, Want)> = lines
        .iter()
        .chain(successes.iter())
        .map(|l| (l.as_str(), None))
        .collect();
    check(&table);
}

/// Issue 14 point 2: with `helo_accept_junk_hosts`, Exim writes any HELO text as `(HELO)` in
/// front of the peer. The blamed address is the `[ip]` Exim writes right before its own
/// `: 535 …`, whatever the HELO (or the `set_id` after it) holds. Lines as Exim 4.96 wrote them
/// with `helo_accept_junk_hosts = *` (`tests/services`, `real_exim_helo_junk_*`).
#[test]
fn exim_helo_junk_never_moves_the_blame() {
    check(&[
        // Default log selectors.
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for (a) [198.51.100.123]:2: 535 Incorrect authentication data x) [127.0.0.1]: 535 Incorrect authentication data (set_id=alice)",
            Some(("127.0.0.1", Some("alice"), 1, F, T)),
        ),
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for (a) [198.51.100.123]: 535 Incorrect authentication data x) [127.0.0.1]: 535 Incorrect authentication data (set_id=alice)",
            Some(("127.0.0.1", Some("alice"), 1, F, T)),
        ),
        // log_selector = +all: milliseconds, pid, :port and I=[local]:port.
        (
            "2026-11-23 15:59:08.825 [22120] PLAIN authenticator failed for (a) [198.51.100.123]:2: 535 Incorrect authentication data x) [127.0.0.1]:41782 I=[127.0.0.1]:40171: 535 Incorrect authentication data (set_id=alice)",
            Some(("127.0.0.1", Some("alice"), 1, F, Some("2026-11-23T15:59:08.825Z"))),
        ),
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for (a) [198.51.100.123]:2 I=[192.0.2.25]:25: 535 Incorrect authentication data x) [203.0.113.7]:41782 I=[192.0.2.25]:587: 535 Incorrect authentication data (set_id=alice)",
            Some(("203.0.113.7", Some("alice"), 1, F, T)),
        ),
        // The junk HELO holds spaces and brackets but no fake `: 535`.
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for (x) [10.9.9.9]) [198.51.100.2]: 535 Incorrect authentication data",
            Some(("198.51.100.2", None, 1, F, T)),
        ),
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for rdns.example (a b [10.9.9.9] c) [198.51.100.2]:1025: 535 Incorrect authentication data (set_id=bob)",
            Some(("198.51.100.2", Some("bob"), 1, F, T)),
        ),
        // Old tail form after the real peer.
        (
            "2026-11-23 15:59:08 login authenticator failed for (a) [198.51.100.123]: 535 Incorrect authentication data z) [192.0.2.8]: 535 Incorrect authentication data: 3 Time(s)",
            Some(("192.0.2.8", None, 3, F, T)),
        ),
        // Syslog form.
        (
            "Nov 23 15:59:08 mx1 exim[1234]: PLAIN authenticator failed for (a) [198.51.100.123]:2: 535 Incorrect authentication data x) [192.0.2.9]: 535 Incorrect authentication data (set_id=dave)",
            Some(("192.0.2.9", Some("dave"), 1, F, T)),
        ),
        // Junk HELO and set_id crafted so that two junk-HELO readings fit, naming different
        // addresses: not blamed at all.
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for (a) [198.51.100.1]: 535 Incorrect authentication data x) [192.0.2.9]: 535 Incorrect authentication data (set_id=b) [198.51.100.2]: 535 Incorrect authentication data (set_id=c)",
            None,
        ),
        // A fake failure in the set_id still never moves the blame (default HELO check).
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for (h) [192.0.2.9]: 535 Incorrect authentication data (set_id=x) [198.51.100.123]: 535 Incorrect authentication data (set_id=y)",
            Some(("192.0.2.9", Some("x) [198.51.100.123]: 535 Incorrect authentication data (set_id=y"), 1, F, T)),
        ),
    ]);
}

/// Issue 14 point 9, Exim 4.97+ `log_selector = +connection_id` (part of `+all`). Exim's
/// specification, chapter "Log files", list of selectors: "connection_id: An identifier for
/// the accepted connection is added to connection start and end lines and to message accept
/// lines. The identifier is tagged by Ci=." (git.exim.org commit dfe19a7e, doc/doc-docbook/
/// spec.xfpt). On `<=` lines it is one more host field before ` P=`; it is also accepted right
/// after the `[pid]`. Auth failure lines are written by `host_and_ident()`, which has no Ci.
#[test]
fn exim_4_97_connection_ids() {
    check(&[
        (
            "2026-11-23 15:59:08.000 [4711] 1rZ3tN-00000000Jxy-0Tfa <= a@example.com H=(x) [192.0.2.5]:587 I=[192.0.2.25]:587 Ci=4711 P=esmtpa A=plain:alice S=10 id=x@y",
            Some(("192.0.2.5", Some("alice"), 1, S, T)),
        ),
        (
            "2026-11-23 15:59:08.000 [4711] 1rZ3tN-00000000Jxy-0Tfa <= a@example.com H=(x) [192.0.2.5]:587 I=[192.0.2.25]:587 U=ident Ci=4711 P=esmtpsa X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=no A=dovecot_login:alice S=10",
            Some(("192.0.2.5", Some("alice"), 1, S, T)),
        ),
        (
            "Nov 23 15:59:08 mx1 exim[4711]: 1rZ3tN-00000000Jxy-0Tfa <= a@example.com H=mail.example [2001:db8::5]:587 Ci=4711 P=esmtpa A=plain:bob S=10",
            Some(("2001:db8::5", Some("bob"), 1, S, T)),
        ),
        (
            "2026-11-23 15:59:08.000 [4711] Ci=4711 PLAIN authenticator failed for (x) [203.0.113.9]:1234 I=[192.0.2.25]:587: 535 Incorrect authentication data (set_id=carol)",
            Some(("203.0.113.9", Some("carol"), 1, F, T)),
        ),
        (
            "2026-11-23 15:59:08.000 [4711] PLAIN authenticator failed for (x) [203.0.113.9]:1234 I=[192.0.2.25]:587: 535 Incorrect authentication data (set_id=carol)",
            Some(("203.0.113.9", Some("carol"), 1, F, T)),
        ),
        // Connection start and end lines carry Ci= and are not logins.
        (
            "2026-11-23 15:59:08.000 [4711] SMTP connection from [203.0.113.9]:1234 I=[192.0.2.25]:587 Ci=4711 (TCP/IP connection count = 1)",
            None,
        ),
        (
            "2026-11-23 15:59:08.000 [4712] SMTP connection from (x) [203.0.113.9]:1234 I=[192.0.2.25]:587 Ci=4711 closed by QUIT",
            None,
        ),
        // An attacker's `Ci=` in a quoted sender moves nothing.
        (
            "2026-11-23 15:59:08 1rZ3tN-00000000Jxy-0Tfa <= \"x H=(a) [10.9.9.9] Ci=1 P=esmtpa A=plain:admin S=1\"@evil.example H=(evil) [198.51.100.66] Ci=9 P=esmtp S=100",
            None,
        ),
    ]);
}

/// `H=` and ` U=` in failure lines. The failure line is `"%s authenticator failed for %s: %s"`
/// with `host_and_ident(FALSE)` (smtp_in.c, read in Exim 4.92's source); `host_and_ident()`
/// writes `H=` before the host when its flag is set and ` U=<ident>` after it when an RFC 1413
/// ident was received. The Exim 4.99 source was not in the reference store searched for this
/// change, so both are taken wherever they appear, with and without `+all`.
#[test]
fn exim_h_and_u_fields_in_failure_lines() {
    check(&[
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for H=(x) [203.0.113.9]: 535 Incorrect authentication data (set_id=carol)",
            Some(("203.0.113.9", Some("carol"), 1, F, T)),
        ),
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for H=(x) [203.0.113.9] U=root: 535 Incorrect authentication data (set_id=carol)",
            Some(("203.0.113.9", Some("carol"), 1, F, T)),
        ),
        (
            "2026-11-23 15:59:08.123 [77] PLAIN authenticator failed for H=mail.example (x) [203.0.113.9]:4444 I=[192.0.2.25]:25 U=nobody: 535 Incorrect authentication data (set_id=carol)",
            Some(("203.0.113.9", Some("carol"), 1, F, Some("2026-11-23T15:59:08.123Z"))),
        ),
        // A junk HELO before H=… ident fields.
        (
            "2026-11-23 15:59:08 PLAIN authenticator failed for H=(a) [198.51.100.1] U=x: 535 Incorrect authentication data q) [203.0.113.9] U=nobody: 535 Incorrect authentication data (set_id=carol)",
            Some(("203.0.113.9", Some("carol"), 1, F, T)),
        ),
    ]);
}
