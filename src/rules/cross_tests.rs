//! Tests of the whole built-in rule set, across services: no rule reads its pattern out of the
//! attacker text of another service's line (cross-rule blame, issue 14 point 1), and a line
//! whose leading stamp authwatch cannot read still counts, without a time (issue 14 point 8).
//!
//! The injected texts come from real lines of each rule (the same shapes as its own table
//! tests); each is first checked to be a hit of its own rule, so the table cannot go stale.
//! Each rule's rows are one test that reports every failing row at once.

use super::{HitKind, RuleSet, BUILTIN};
use crate::rules::courier::testkit::ctx;

const F: HitKind = HitKind::Failure;
const S: HitKind = HitKind::Success;

/// One real line of a rule, cut into its leading stamp, its header up to the message (with
/// the trailing blank; may be empty) and the message, which is what attackers copy.
struct Pattern {
    rule: &'static str,
    kind: HitKind,
    stamp: &'static str,
    header: &'static str,
    body: &'static str,
}

const fn p(
    rule: &'static str,
    kind: HitKind,
    stamp: &'static str,
    header: &'static str,
    body: &'static str,
) -> Pattern {
    Pattern {
        rule,
        kind,
        stamp,
        header,
        body,
    }
}

const SYSLOG: &str = "Nov 23 15:59:08";
const EXIM: &str = "2026-11-23 15:59:08";

/// Failure and success lines of every built-in rule. The blamed address is always
/// 198.51.100.77.
const PATTERNS: &[Pattern] = &[
    // exim
    p("exim", F, EXIM, "", "PLAIN authenticator failed for (x) [198.51.100.77]: 535 Incorrect authentication data (set_id=u)"),
    p("exim", F, EXIM, "", "login authenticator failed for H=(User) [198.51.100.77]: 535 Incorrect authentication data (set_id=u)"),
    p("exim", F, SYSLOG, "mx1 exim[1234]: ", "PLAIN authenticator failed for (a) [198.51.100.77]: 535 Incorrect authentication data (set_id=u)"),
    p("exim", S, EXIM, "", "1rABCD-000123-AB <= u@example.com H=(x) [198.51.100.77] P=esmtpsa X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=no A=plain:u S=100 id=m@x"),
    // postfix
    p("postfix", F, SYSLOG, "mx postfix/smtpd[1]: ", "warning: unknown[198.51.100.77]: SASL LOGIN authentication failed: authentication failure, sasl_username=u"),
    p("postfix", F, SYSLOG, "mx postfix/submission/smtpd[1]: ", "warning: unknown[198.51.100.77]: SASL PLAIN authentication failed: Connection lost to authentication server"),
    p("postfix", S, SYSLOG, "mx postfix/smtpd[1]: ", "3A1C29BA048: client=unknown[198.51.100.77], sasl_method=PLAIN, sasl_username=u"),
    // dovecot
    p("dovecot", F, SYSLOG, "", "imap-login: Info: Disconnected: Aborted login by logging out (auth failed, 3 attempts in 22 secs): user=<u>, method=PLAIN, rip=198.51.100.77, lip=127.0.0.1, secured, session=<nO2SsvRg5Ox/AAAB>"),
    p("dovecot", F, SYSLOG, "mx dovecot: ", "imap-login: Login aborted: Connection closed (auth failed, 3 attempts in 15 secs) (auth_failed): user=<u>, method=PLAIN, rip=198.51.100.77, lip=127.0.0.1, TLS, session=<25Nw4GQ3Ms9QM7WQ>"),
    p("dovecot", S, SYSLOG, "", "imap-login: Info: Login: user=<u>, method=PLAIN, rip=198.51.100.77, lip=127.0.0.1, mpid=22727, secured, session=<ZGYytvRglrx/AAAB>"),
    // courier
    p("courier", F, SYSLOG, "mx imapd: ", "LOGIN FAILED, user=u, ip=[::ffff:198.51.100.77]"),
    p("courier", F, SYSLOG, "mx imapd-ssl: ", "INFO: LOGIN FAILED, method=PLAIN, ip=[::ffff:198.51.100.77], port=[4000]"),
    p("courier", F, SYSLOG, "mx courieresmtpd: ", "error,relay=::ffff:198.51.100.77,msg=\"535 Authentication failed.\",cmd: YWRvYmVhZG9iZQ=="),
    p("courier", S, SYSLOG, "mx imapd: ", "LOGIN, user=u, ip=[::ffff:198.51.100.77], port=[4000], protocol=IMAP"),
    // cyrus
    p("cyrus", F, SYSLOG, "mx cyrus/imap[1]: ", "badlogin: [198.51.100.77] PLAIN (u) [SASL(-13): authentication failure: Password verification failed]"),
    p("cyrus", F, SYSLOG, "mx cyrus/imap[1]: ", "badlogin: h.example [198.51.100.77] plaintext u SASL(-13): authentication failure: checkpass failed"),
    p("cyrus", F, SYSLOG, "mx cyrus/imap[1]: ", "event=login.bad r.clienthost=[198.51.100.77] u.username=u error=\"authentication failure\""),
    p("cyrus", S, SYSLOG, "mx cyrus/imap[1]: ", "login: h.example [198.51.100.77] u plaintext+TLS User logged in SESSIONID=<cyrus-1-1>"),
    p("cyrus", S, SYSLOG, "mx cyrus/imap[1]: ", "event=login.good r.clienthost=[198.51.100.77] u.username=u login.mech=plaintext"),
    // sendmail
    p("sendmail", F, SYSLOG, "mx sm-mta[1]: ", "5ANFx1aa000001: AUTH failure (LOGIN): authentication failure (-13) SASL(-13): authentication failure: checkpass failed, user=u, relay=[198.51.100.77]"),
    p("sendmail", F, SYSLOG, "mx sm-mta[1]: ", "5ANFx1aa000002: [198.51.100.77]: possible SMTP attack: command=AUTH, count=5"),
    p("sendmail", S, SYSLOG, "mx sm-mta[1]: ", "AUTH=server, relay=[198.51.100.77], authid=u, mech=PLAIN, bits=0"),
    // uwimap
    p("uwimap", F, SYSLOG, "mx imapd[1]: ", "Login failed user=u auth=u host=[198.51.100.77]"),
    p("uwimap", F, SYSLOG, "mx imapd[2]: ", "AUTHENTICATE CRAM-MD5 failure host=h.example [198.51.100.77]"),
    p("uwimap", F, SYSLOG, "mx imapd[3]: ", "System break-in attempt, host=[198.51.100.77]"),
    p("uwimap", S, SYSLOG, "mx imapd[1]: ", "Login user=u host=[198.51.100.77]"),
    // opensmtpd (the connect line holds no login; the authentication line after it does)
    p("opensmtpd", F, SYSLOG, "mx smtpd[1]: ", "1c2d3e4f5a6b7c8d smtp event=authentication user=u address=198.51.100.77 host=x result=permfail"),
    p("opensmtpd", F, SYSLOG, "mx smtpd[1]: ", "00000000deadbeef smtp event=failed-command address=198.51.100.77 host=x command=\"AUTH LOGIN (password)\" result=\"535 Authentication failed\""),
    p("opensmtpd", S, SYSLOG, "mx smtpd[1]: ", "00000000deadbee0 smtp event=authentication user=u address=198.51.100.77 host=x result=ok"),
    // roundcube
    p("roundcube", F, "[23-Nov-2026 15:59:08 +0100]:", "", "<a1b2c3d4> Failed login for u from 198.51.100.77 in session a1b2c3d4e5f60718 (error: 0)"),
    p("roundcube", F, SYSLOG, "web roundcube: ", "IMAP Error: Login failed for u against h from 198.51.100.77. LOGIN: Authentication failed. in /r/rcube_imap.php on line 1 (POST /?_task=login)"),
    p("roundcube", F, "[22-Jan-2013 22:28:21 +0200]:", "", "FAILED login for u from 198.51.100.77"),
    p("roundcube", S, "[23-Nov-2026 15:59:08 +0100]:", "", "<a1b2c3d4> Successful login for u (ID: 7) from 198.51.100.77 in session a1b2c3d4e5f60718"),
    // sogo
    p("sogo", F, SYSLOG, "sogod [1]: ", "SOGoRootPage Login from '198.51.100.77' for user 'u' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0"),
    p("sogo", S, SYSLOG, "mx sogod[1]: ", "SOGoRootPage successful login from '198.51.100.77' for user 'u' - expire = -1  grace = -1"),
    // horde
    p("horde", F, "Dec 15 08:59:59", "HORDE [error] [horde] ", "FAILED LOGIN for u [198.51.100.77] to Horde"),
    p("horde", F, "2013-11-11T18:57:57+00:00", "ERR: HORDE [imp] ", "FAILED LOGIN for u to {imap.example.com:993} (198.51.100.77) [pid 1 on line 132 of \"/x.php\"]"),
    p("horde", F, SYSLOG, "web HORDE[812]: [horde] ", "FAILED LOGIN for u to horde (198.51.100.77)"),
    p("horde", S, "2013-11-11T18:57:57+00:00", "NOTICE: HORDE [horde] ", "Login success for u [198.51.100.77] to horde."),
    // squirrelmail
    p("squirrelmail", F, "10/06/2013 15:50:41", "", "[LOGIN_ERROR] u (d) from 198.51.100.77: c"),
    p("squirrelmail", F, SYSLOG, "web squirrelmail: ", "Failed webmail login: by u (d) at 198.51.100.77 on 11/23/2026 15:59:08: c"),
    p("squirrelmail", S, "10/06/2013 15:50:41", "", "[LOGIN] u (d) from 198.51.100.77: c"),
    p("squirrelmail", S, SYSLOG, "web php: ", "Successful webmail login: by u (d) at 198.51.100.77 on 11/23/2026 15:59:08: c"),
];

/// Ordinary lines of every service in which the client chooses the text at `{X}`: senders,
/// recipients, HELO names, message ids, user names before login.
const CARRIERS: &[&str] = &[
    // Exim: arrival (quoted local part, and a message id that ends the line), delivery,
    // bounce, rejected recipient (also with a junk HELO), and the +pid form.
    "2026-11-23 15:59:08 1rABCD-000123-AB <= \"{X}\"@evil.example H=(evil.example) [203.0.113.200] P=esmtp S=1234 id=x@evil.example",
    "2026-11-23 15:59:08 1rABCD-000123-AB <= a@evil.example H=(evil.example) [203.0.113.200] P=esmtp S=1234 id={X}",
    "2026-11-23 15:59:08.123 [4321] 1rABCD-000123-AB <= \"{X}\"@evil.example H=(evil.example) [203.0.113.200] P=esmtp S=1234",
    "2026-11-23 15:59:08 1rABCD-000123-AB => \"{X}\"@example.com R=dnslookup T=remote_smtp H=mx.example.com [203.0.113.201] C=\"250 OK\"",
    "2026-11-23 15:59:08 1rABCD-000123-AB ** \"{X}\"@example.com R=dnslookup T=remote_smtp H=mx.example.com [203.0.113.201]: SMTP error from remote mail server after RCPT TO:<\"{X}\"@example.com>: 550 5.1.1 <\"{X}\"@example.com>: User unknown",
    "2026-11-23 15:59:08 1rABCD-000123-AB ** \"{X}\"@example.com: Unrouteable address",
    "2026-11-23 15:59:08 H=(evil.example) [203.0.113.202] F=<\"{X}\"@evil.example> rejected RCPT <\"{X}\"@example.com>: relay not permitted",
    "2026-11-23 15:59:08 H=({X}) [203.0.113.202] F=<a@evil.example> rejected RCPT <b@example.com>: relay not permitted",
    "2026-11-23 15:59:08 H=({X}) [203.0.113.202] rejected EHLO or HELO {X}: syntactically invalid argument(s)",
    // Postfix: cleanup message-id (bracketed, and bare at the end), qmgr sender, smtpd reject.
    "Nov 23 17:14:56 mx postfix/cleanup[25957]: 3A1C29BA048: message-id=<{X}@evil.example>",
    "Nov 23 17:14:56 mx postfix/cleanup[25957]: 3A1C29BA048: message-id={X}",
    "Nov 23 17:14:56 mx postfix/qmgr[25623]: 3A1C29BA048: from=<\"{X}\"@evil.example>, size=324, nrcpt=1 (queue active)",
    "Nov 23 17:14:56 mx postfix/smtpd[25626]: NOQUEUE: reject: RCPT from unknown[203.0.113.203]: 554 5.7.1 <\"{X}\"@example.com>: Relay access denied; from=<\"{X}\"@evil.example> to=<\"{X}\"@example.com> proto=ESMTP helo=<{X}>",
    "Nov 23 17:14:56 mx postfix/smtpd[25626]: NOQUEUE: reject: RCPT from unknown[203.0.113.203]: 450 4.7.1 <x@example.com>: Helo command rejected: Host not found; from=<a@evil.example> to=<x@example.com> proto=ESMTP helo=<{X}>",
    // The same with a stamp authwatch does not read.
    "Nov 3 17:14:56 mx postfix/cleanup[25957]: 3A1C29BA048: message-id={X}",
    "Nov 3 17:14:56 mx postfix/qmgr[25623]: 3A1C29BA048: from=<\"{X}\"@evil.example>, size=324, nrcpt=1 (queue active)",
    // Dovecot: the user name of a connection that never tried to log in, as a file and in
    // syslog, and LMTP deliveries (the message id is the sender's).
    "Nov 23 17:12:23 imap-login: Info: Disconnected: Connection closed (no auth attempts in 0 secs): user=<{X}>, rip=203.0.113.204, lip=192.0.2.1, secured, session=<T42EsvRg2ux/AAAB>",
    "Nov 23 17:12:23 mx dovecot: imap-login: Disconnected (no auth attempts in 0 secs): user=<{X}>, rip=203.0.113.204, lip=192.0.2.1, session=<T42EsvRg2ux/AAAB>",
    "Nov 23 17:12:23 imap-login: Info: Disconnected (tried to use disallowed plaintext auth): user=<{X}>, rip=203.0.113.204, lip=192.0.2.1, session=<x>",
    "Nov 23 17:13:40 lmtp(alice)<22727><ZGYytvRglrx/AAAB>: Info: msgid=<{X}@evil.example>: saved mail to INBOX",
    "Nov 23 17:13:40 mx dovecot: lmtp(alice)<22727><ZGYytvRglrx/AAAB>: msgid=<{X}@evil.example>: saved mail to INBOX",
    "Nov 3 17:13:40 mx dovecot: lmtp(alice)<22727><ZGYytvRglrx/AAAB>: msgid={X}",
    // Exim's rejectlog: the rejection, then the message's headers, flag first, no stamp.
    "2026-11-23 15:59:08 1rABCD-000123-AB H=(evil.example) [203.0.113.205] F=<a@evil.example> rejected after DATA: {X}",
    "Envelope-from: <\"{X}\"@evil.example>",
    "F From: {X}",
    "T To: {X}",
    "I Message-ID: {X}",
    "  Subject: {X}",
    "  X-{X}",
];

/// Ways an attacker places a pattern in a carrier: the message alone, after a word, after a
/// fake `x:` tag, with its real header, and as a whole line with its stamp.
fn variants(p: &Pattern) -> Vec<String> {
    let full = format!("{} {}{}", p.stamp, p.header, p.body);
    vec![
        p.body.to_string(),
        format!("a {}", p.body),
        format!("a x: {}", p.body),
        format!("{}{}", p.header, p.body),
        format!("a {}{}", p.header, p.body),
        full.clone(),
        format!("a {full}"),
    ]
}

/// Every way the rule's patterns, planted in other services' lines, cause a hit in the full
/// rule set; also fails when a pattern is not a hit of its own rule on its own line.
fn cross_failures(rule: &str) -> Vec<String> {
    let ctx = ctx();
    let mut failures = Vec::new();
    let patterns: Vec<&Pattern> = PATTERNS.iter().filter(|p| p.rule == rule).collect();
    assert!(!patterns.is_empty(), "no patterns for {rule}");
    let mut kinds = Vec::new();
    for p in &patterns {
        let own = format!("{} {}{}", p.stamp, p.header, p.body);
        let got = RuleSet::named(&[rule]).parse(&own, &ctx);
        match got {
            Some(h) if h.kind == p.kind && h.ip.to_string() == "198.51.100.77" => {}
            other => failures.push(format!(
                "own line not read as {:?}: {own}\n  got {other:?}",
                p.kind
            )),
        }
        kinds.push(p.kind);
    }
    assert!(kinds.contains(&F), "{rule}: no failure pattern");
    // One set for the whole table: rules with state (OpenSMTPD sessions, Sendmail and UW-IMAP
    // pairing) see every planted line in order, as they would in a log.
    let mut set = RuleSet::all_builtin();
    for p in &patterns {
        for v in variants(p) {
            for (c, carrier) in CARRIERS.iter().enumerate() {
                let line = carrier.replace("{X}", &v);
                if let Some(h) = set.parse(&line, &ctx) {
                    failures.push(format!(
                        "{rule} {:?} pattern in carrier #{c}: {} blamed {} ({:?})\n  line: {line}",
                        p.kind, h.service, h.ip, h.kind
                    ));
                }
            }
        }
    }
    failures
}

fn assert_no_cross_blame(rule: &str) {
    let failures = cross_failures(rule);
    assert!(
        failures.is_empty(),
        "{} failing rows for {rule}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn carriers_alone_are_no_hits_and_every_rule_has_patterns() {
    let ctx = ctx();
    let mut set = RuleSet::all_builtin();
    for carrier in CARRIERS {
        let line = carrier.replace("{X}", "alice");
        assert_eq!(set.parse(&line, &ctx), None, "{line}");
    }
    for rule in BUILTIN {
        assert!(PATTERNS.iter().any(|p| p.rule == *rule), "{rule}");
    }
}

macro_rules! cross {
    ($($name:ident => $rule:literal,)*) => {$(
        #[test]
        fn $name() {
            assert_no_cross_blame($rule);
        }
    )*};
}

cross! {
    cross_rule_blame_exim_patterns => "exim",
    cross_rule_blame_postfix_patterns => "postfix",
    cross_rule_blame_dovecot_patterns => "dovecot",
    cross_rule_blame_courier_patterns => "courier",
    cross_rule_blame_cyrus_patterns => "cyrus",
    cross_rule_blame_sendmail_patterns => "sendmail",
    cross_rule_blame_uwimap_patterns => "uwimap",
    cross_rule_blame_opensmtpd_patterns => "opensmtpd",
    cross_rule_blame_roundcube_patterns => "roundcube",
    cross_rule_blame_sogo_patterns => "sogo",
    cross_rule_blame_horde_patterns => "horde",
    cross_rule_blame_squirrelmail_patterns => "squirrelmail",
}

/// The issue's own examples, one by one.
#[test]
fn issue_14_examples_blame_nobody() {
    let ctx = ctx();
    let mut set = RuleSet::all_builtin();
    for line in [
        "2026-11-23 15:59:08 1rABCD-000123-AB <= \"a [LOGIN_ERROR] u (d) from 198.51.100.77: c\"@evil.example H=(evil.example) [203.0.113.200] P=esmtp S=1234",
        "2026-11-23 15:59:08 1rABCD-000123-AB <= \"a x: badlogin: [198.51.100.77] PLAIN x\"@evil.example H=(evil.example) [203.0.113.200] P=esmtp S=1234",
        "Nov 23 17:14:56 mx postfix/cleanup[25957]: 3A1C29BA048: message-id=<\"x] FAILED LOGIN for u [198.51.100.77] to horde\"@evil.example>",
        "Nov 23 17:14:56 mx postfix/qmgr[25623]: 3A1C29BA048: from=<\"x] FAILED LOGIN for u [198.51.100.77] to horde\"@evil.example>, size=324, nrcpt=1 (queue active)",
    ] {
        assert_eq!(set.parse(line, &ctx), None, "{line}");
    }
}

/// Stamps `parse_leading_time` does not read (one-space day, other date orders, ctime) must not
/// drop a line: each is still a hit of its rule, without a time (the engine then uses its
/// clock), and counted for the once-per-process warning.
#[test]
fn unknown_syslog_stamps_keep_the_line_without_a_time() {
    let table: &[(&str, &str)] = &[
        ("courier", "Aug 3 10:00:00 mx imapd: LOGIN FAILED, user=u, ip=[::ffff:198.51.100.80]"),
        ("courier", "Aug 3 10:00:00 mx courieresmtpd: error,relay=::ffff:198.51.100.80,msg=\"535 Authentication failed.\",cmd: x"),
        ("cyrus", "Aug 3 10:00:00 mx cyrus/imap[1]: badlogin: [198.51.100.80] PLAIN (u) [SASL(-13): authentication failure: x]"),
        ("cyrus", "Aug 3 10:00:00 192.0.2.1 cyrus/imap[1]: login: [198.51.100.80] u PLAIN User logged in"),
        ("sendmail", "Aug 3 10:00:00 mx sm-mta[1]: 5ANFx1aa000001: AUTH failure (LOGIN): authentication failure, relay=[198.51.100.80]"),
        ("uwimap", "Aug 3 10:00:00 mx imapd[1]: Login failed user=u auth=u host=[198.51.100.80]"),
        ("uwimap", "Mon Aug  3 10:00:00 2026 mx ipop3d[1]: Login failure user=u host=[198.51.100.80]"),
        ("opensmtpd", "Aug 3 10:00:00 mx smtpd[1]: 1c2d3e4f5a6b7c8d smtp event=authentication user=u address=198.51.100.80 host=x result=permfail"),
        ("postfix", "Aug 3 10:00:00 mx postfix/smtpd[1]: warning: unknown[198.51.100.80]: SASL LOGIN authentication failed: authentication failure"),
        ("postfix", "03.08.2026 10:00:00 mx postfix/submission/smtpd[1]: warning: unknown[198.51.100.80]: SASL PLAIN authentication failed: "),
        ("postfix", "2026/08/03 10:00:00 postfix/smtpd[1]: 1A2B3C4D5E: client=unknown[198.51.100.80], sasl_method=PLAIN, sasl_username=u"),
        ("sogo", "Aug 3 10:00:00 sogod [1]: SOGoRootPage Login from '198.51.100.80' for user 'u' might not have worked - password policy: 65535  grace: -1  expire: -1  bound: 0"),
        ("horde", "Aug 3 10:00:00 HORDE [error] [horde] FAILED LOGIN for u [198.51.100.80] to Horde"),
        ("horde", "Aug 3 10:00:00 web HORDE[812]: [horde] FAILED LOGIN for u to horde (198.51.100.80)"),
        ("squirrelmail", "Aug 3 10:00:00 web squirrelmail: Failed webmail login: by u (d) at 198.51.100.80 on 08/03/2026 10:00:00: c"),
        ("squirrelmail", "2026/08/03 10:00:00 [LOGIN_ERROR] u (d) from 198.51.100.80: c"),
        ("roundcube", "Aug 3 10:00:00 web roundcube: <a1b2c3d4> Failed login for u from 198.51.100.80 in session a1b2c3d4e5f60718 (error: 0)"),
    ];
    let ctx = ctx();
    let before = super::unread_stamps();
    let mut failures = Vec::new();
    for (service, line) in table {
        let got = RuleSet::all_builtin()
            .parse(line, &ctx)
            .map(|h| (h.service, h.ip.to_string(), h.time));
        let want = Some((*service, "198.51.100.80".to_string(), None));
        if got != want {
            failures.push(format!("{line}\n  got:  {got:?}\n  want: {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Other tests may count too (the counter is per process), never fewer.
    assert!(super::unread_stamps() >= before + table.len() as u64);
}

/// A line without any stamp, or with one that is read, is not an unread stamp.
#[test]
fn only_unread_stamps_are_counted_as_such() {
    use crate::rules::courier::shared::stamp;
    let ctx = ctx();
    for (line, unread) in [
        ("Aug 3 10:00:00 mx imapd: x", true),
        ("Aug  3 10:00:00 mx imapd: x", false),
        ("2026-08-03 10:00:00 x", false),
        ("LOGIN FAILED, user=dave, ip=[::ffff:192.0.2.45]", false),
        ("1234567890123456 smtp connected address=192.0.2.1", false),
        ("[23-Nov-2026 15:59:08 +0100]: x", false),
        ("Aug 3 mx imapd: x", false),
    ] {
        assert_eq!(stamp(line, &ctx).2, unread, "{line}");
    }
}
