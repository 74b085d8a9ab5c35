//! The administrator's commands against a running agent on loopback with the real aiosmtpd
//! sink: `silence` (no mail, listed as silenced by `incidents`), `allow` (counting stops at
//! once), `ack` (no repeat until the class changes: a login after the failures still mails),
//! the same commands without an agent (recorded, applied at the next start; refused while an
//! agent holds the state_dir lock), a peer of another uid refused by the socket, `unblock`
//! running the actions' undo argv, and `test-mail` delivering a sample to the sink.

use crate::harness::*;
use std::path::{Path, PathBuf};

fn config(dir: &Path, log: &Path, port: u16, extra: &str) -> PathBuf {
    write_file(
        dir,
        "authwatch.yaml",
        &format!(
            r#"state_dir: '{state}'
host: {{name: mx1.test, ip: 192.0.2.25}}
time_zone: UTC
sources:
  - path: '{log}'
    start: end
follow: {{poll_interval: 50ms, checkpoint_interval: 200ms}}
detect:
  per_ip: {{attempts: 5, window: 10m}}
  per_subnet: {{enabled: false}}
  per_account: {{enabled: false}}
alerts: {{cooldown: 1h, group_interval: 2s}}
mail:
  from: "authwatch <authwatch@mx1.test>"
  to: [admin@example.test]
  smtp: {{host: 127.0.0.1, port: {port}, tls: none, timeout: 10s}}
{extra}"#,
            state = dir.join("state").display(),
            log = log.display(),
        ),
    )
}

/// `authwatch ARGS -c CFG`: (exit code, stdout, stderr).
fn cmd(cfg: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-c", cfg.to_str().expect("utf-8 path")]);
    run_to_end(&all, cfg.parent().expect("config in a folder"))
}

fn ok(cfg: &Path, args: &[&str]) -> String {
    let (code, out, err) = cmd(cfg, args);
    assert_eq!(code, Some(0), "authwatch {args:?}: {out}{err}");
    out
}

fn fails(unix: i64, ip: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| exim_fail(unix, ip, &format!("u{i}")))
        .collect()
}

/// An Exim line of a successful AUTH login from `ip` as `user`.
fn login(unix: i64, ip: &str, user: &str) -> String {
    format!(
        "{} 1vAbCd-0001Xy-Q1 <= {user} H=(laptop) [{ip}]:51544 P=esmtpsa A=dovecot_plain:{user} S=2121 id=1a2b@example.com",
        stamp(unix)
    )
}

fn incidents(cfg: &Path) -> Vec<serde_json::Value> {
    let out = ok(cfg, &["incidents", "--json"]);
    serde_json::from_str::<Vec<serde_json::Value>>(&out).expect("incidents --json")
}

fn incident<'a>(list: &'a [serde_json::Value], target: &str) -> Option<&'a serde_json::Value> {
    list.iter().find(|i| i["target"] == target)
}

#[test]
fn silence_allow_and_ack_act_on_the_running_agent() {
    let tmp = tempdir();
    let dir = tmp.path();
    let sink = Sink::start(dir, &["--tls", "none"]);
    let log = LogWriter::new(dir.join("mainlog"));
    let cfg = config(dir, &log.path, sink.port, "");
    let mut agent = Agent::run(&cfg);
    agent.wait_following(&log);

    // The exact syntax the alert mails print.
    let out = ok(
        &cfg,
        &[
            "silence",
            "203.0.113.7",
            "--for",
            "24h",
            "--reason",
            "our scanner",
        ],
    );
    assert!(
        out.contains("silenced 203.0.113.7 until") && out.contains("(applied now)"),
        "{out}"
    );
    let out = ok(&cfg, &["allow", "198.51.100.0/24"]);
    assert!(
        out.contains("allowed 198.51.100.0/24") && out.contains("(applied now)"),
        "{out}"
    );

    let t = now_unix();
    log.append(&fails(t, "203.0.113.7", 7));
    log.append(&fails(t, "198.51.100.9", 12));
    // A marker burst: lines are handled in order, so its alert proves the others were read.
    log.append(&fails(t + 1, "203.0.113.50", 5));
    let mails = sink.wait_mails(1);
    assert_eq!(mails.len(), 1, "only the marker alerts");
    assert!(
        mails[0].mail.subject().contains("203.0.113.50"),
        "{}",
        mails[0].mail.subject()
    );

    let list = incidents(&cfg);
    let silenced = incident(&list, "203.0.113.7").expect("the silenced IP is listed");
    assert_eq!(silenced["silenced"], true);
    assert_eq!(silenced["attempts"], 7);
    assert_eq!(silenced["service"], "exim");
    assert_eq!(silenced["kind"], "ip_burst");
    assert!(
        silenced["done"].to_string().contains("our scanner"),
        "{silenced}"
    );
    assert!(
        incident(&list, "198.51.100.9").is_none(),
        "allowed: not counted: {list:?}"
    );
    let marker = incident(&list, "203.0.113.50").expect("the marker incident");
    assert_eq!(marker["silenced"], false);
    let text = ok(&cfg, &["incidents"]);
    assert!(text.contains("203.0.113.7 (IP burst)"), "{text}");

    // Ack the marker: more failures bring no digest (group_interval is 2s) ...
    let id = marker["id"].as_str().expect("id").to_string();
    let out = ok(&cfg, &["ack", &id]);
    assert!(out.contains(&format!("acked {id}")), "{out}");
    log.append(&fails(t + 2, "203.0.113.50", 6));
    wait_for("the six further attempts counted", || {
        let list = incidents(&cfg);
        (incident(&list, "203.0.113.50")?["attempts"].as_u64()? >= 11).then_some(())
    });
    // A digest would be due within group_interval (2s) plus the 1s policy tick: give it
    // that time, and see that none came.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    assert_eq!(
        sink.mails().len(),
        1,
        "no digest line for the acked incident"
    );
    // ... and a login after the failures is a new class: it mails.
    log.append(&[login(t + 8, "203.0.113.50", "alice")]);
    let mails = sink.wait_mails(2);
    assert_eq!(
        mails.len(),
        2,
        "{:?}",
        mails.iter().map(|m| m.mail.subject()).collect::<Vec<_>>()
    );
    assert!(
        mails[1].mail.subject().contains("URGENT"),
        "{}",
        mails[1].mail.subject()
    );
    let list = incidents(&cfg);
    assert_eq!(
        incident(&list, "203.0.113.50").expect("still open")["acked"],
        true
    );
    // The allow is listed by `check`, marked as such.
    let out = ok(&cfg, &["check"]);
    assert!(
        out.contains("allow 198.51.100.0/24 (from `authwatch allow`"),
        "{out}"
    );
    agent.stop();
}

#[test]
fn commands_without_an_agent_are_recorded_and_applied_at_next_start() {
    let tmp = tempdir();
    let dir = tmp.path();
    let sink = Sink::start(dir, &["--tls", "none"]);
    let log = LogWriter::new(dir.join("mainlog"));
    log.append(&exim_noise(now_unix()));
    let cfg = config(dir, &log.path, sink.port, "");

    let out = ok(&cfg, &["silence", "203.0.113.7", "--for", "24h"]);
    assert!(out.contains("recorded; applied at next start"), "{out}");
    let out = ok(&cfg, &["allow", "198.51.100.9", "--for", "1h"]);
    assert!(out.contains("recorded; applied at next start"), "{out}");
    let (code, _, err) = cmd(&cfg, &["incidents"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no authwatch agent is running"), "{err}");
    // Bad targets are usage errors naming the argument.
    let (code, _, err) = cmd(&cfg, &["silence", "203.0.113.7/24"]);
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("TARGET: 203.0.113.7/24: host bits are set"),
        "{err}"
    );
    let (code, _, err) = cmd(&cfg, &["allow", "alice"]);
    assert_eq!(code, Some(64), "{err}");
    let (code, _, err) = cmd(&cfg, &["ack", "203.0.113.7"]);
    assert_eq!(code, Some(64), "{err}");
    let (code, _, err) = cmd(&cfg, &["silence", "203.0.113.7", "--for", "soon"]);
    assert_eq!(code, Some(64), "{err}");

    let mut agent = Agent::run(&cfg);
    agent.wait_following(&log);
    let t = now_unix();
    log.append(&fails(t, "203.0.113.7", 7));
    log.append(&fails(t, "198.51.100.9", 7));
    log.append(&fails(t + 1, "203.0.113.50", 5));
    let mails = sink.wait_mails(1);
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].mail.subject().contains("203.0.113.50"),
        "{}",
        mails[0].mail.subject()
    );
    let list = incidents(&cfg);
    assert_eq!(
        incident(&list, "203.0.113.7").expect("listed")["silenced"],
        true
    );
    assert!(incident(&list, "198.51.100.9").is_none(), "{list:?}");

    // The agent holds the lock: without its socket, a command refuses to write behind it.
    std::fs::remove_file(dir.join("state/control.sock")).unwrap();
    let (code, _, err) = cmd(&cfg, &["unsilence", "203.0.113.7"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("in use by another authwatch"), "{err}");
    agent.stop();
}

#[test]
fn the_control_socket_refuses_another_uid() {
    if !is_root() || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root and setpriv to run the client as nobody (the peer check has a unit test)");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempdir();
    let dir = tmp.path();
    let sink = Sink::start(dir, &["--tls", "none"]);
    let log = LogWriter::new(dir.join("mainlog"));
    let cfg = config(dir, &log.path, sink.port, "");
    let mut agent = Agent::run(&cfg);
    agent.wait_following(&log);
    // Open the way for nobody, so that only the peer check stands between it and the agent.
    for (p, mode) in [
        (dir.to_path_buf(), 0o755),
        (cfg.clone(), 0o644),
        (dir.join("state"), 0o755),
        (dir.join("state/control.sock"), 0o666),
    ] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let out = std::process::Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", bin()])
        .args(["incidents", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refused: only root and the agent's user"),
        "{err}"
    );
    wait_for("the refusal in the agent's log", || {
        agent
            .stderr_text()
            .contains("refused a connection from another user")
            .then_some(())
    });
    agent.stop();
}

#[test]
fn unblock_runs_the_undo_argv() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempdir();
    let dir = tmp.path();
    let record = dir.join("undo.args");
    let script = write_file(
        dir,
        "fw",
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\necho done\n",
            record.display()
        ),
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let action = format!(
        "actions:\n  - name: fw\n    program: {s}\n    args: ['{{network}}']\n    undo: [{s}, --remove, '{{network}}', 'x;{{ip}}' ]\n    on: [ip_burst]\n",
        s = script.display()
    );
    let cfg = config(dir, &dir.join("mainlog"), 25, &action);
    let out = ok(&cfg, &["unblock", "203.0.113.7"]);
    assert!(out.contains("fw.undo: exit 0 (done)"), "{out}");
    let args = std::fs::read_to_string(&record).unwrap();
    assert_eq!(args, "--remove\n203.0.113.7/32\nx;203.0.113.7\n");
    // A network cannot fill `{ip}`; a bad address is a usage error.
    let (code, _, err) = cmd(&cfg, &["unblock", "203.0.113.0/24"]);
    assert_eq!(code, Some(64), "{err}");
    let (code, _, err) = cmd(&cfg, &["unblock", "not-an-ip"]);
    assert_eq!(code, Some(64), "{err}");
    // Without an undo: a configuration error that says what to add.
    let bare = config(dir, &dir.join("mainlog"), 25, "");
    let (code, _, err) = cmd(&bare, &["unblock", "203.0.113.7"]);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("has an `undo`"), "{err}");
}

#[test]
fn test_mail_delivers_a_sample_and_names_the_failing_step() {
    let tmp = tempdir();
    let dir = tmp.path();
    let sink = Sink::start(dir, &["--tls", "none"]);
    let cfg = config(dir, &dir.join("mainlog"), sink.port, "");
    let out = ok(&cfg, &["test-mail"]);
    for step in [
        "connect: ok",
        "TLS: off",
        "AUTH: skipped",
        "sent: ok, Message-ID <",
    ] {
        assert!(out.contains(step), "{step} in\n{out}");
    }
    let mails = sink.wait_mails(1);
    assert!(
        mails[0]
            .mail
            .subject()
            .starts_with("TEST (authwatch test-mail): [authwatch] "),
        "{}",
        mails[0].mail.subject()
    );
    let id = mails[0]
        .mail
        .header("Message-ID")
        .expect("Message-ID")
        .to_string();
    assert!(
        out.contains(&id),
        "the printed id is the delivered one: {id}\n{out}"
    );
    // Nobody listens on this port: the connect step fails, with a hint, exit 1.
    let closed = config(dir, &dir.join("mainlog"), free_port(), "");
    let (code, out, _) = cmd(&closed, &["test-mail"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("connect: FAILED") && out.contains("hint:"),
        "{out}"
    );
}

/// A fake firewall tool that appends its argv (one line per call) to `calls`, exit 0.
fn fake(dir: &Path, name: &str, calls: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = write_file(
        dir,
        name,
        &format!("#!/bin/sh\necho \"$*\" >> '{}'\n", calls.display()),
    );
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn example(name: &str, args: &[&str], env: (&str, &Path)) -> (Option<i32>, String) {
    let out = std::process::Command::new(repo_file(&format!("examples/actions/{name}")))
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env(env.0, env.1)
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_example_actions_undo_with_remove() {
    let tmp = tempdir();
    let dir = tmp.path();
    let calls = dir.join("calls");
    let nft = fake(dir, "nft", &calls);
    let (code, out) = example("nft-block", &["--remove", "203.0.113.7/32"], ("NFT", &nft));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("unblocked 203.0.113.7/32"), "{out}");
    let (code, out) = example(
        "nft-block",
        &["--remove", "2001:db8:1:2::/64"],
        ("NFT", &nft),
    );
    assert_eq!(code, Some(0), "{out}");
    let log = std::fs::read_to_string(&calls).unwrap();
    assert!(
        log.contains("delete element inet authwatch blocked4 { 203.0.113.7/32 }")
            && log.contains("delete element inet authwatch blocked6 { 2001:db8:1:2::/64 }"),
        "{log}"
    );
    // The same checks as for blocking: nothing else reaches nft.
    for bad in ["127.0.0.1", "$(id)", "10.0.0.0/4", "-f"] {
        let (code, out) = example("nft-block", &["--remove", bad], ("NFT", &nft));
        assert_eq!(code, Some(2), "{bad}: {out}");
    }
    let (code, out) = example(
        "nft-block",
        &["--remove", "203.0.113.7", "1h"],
        ("NFT", &nft),
    );
    assert_eq!(code, Some(2), "{out}");

    std::fs::remove_file(&calls).unwrap();
    let apf = fake(dir, "apf", &calls);
    let (code, out) = example("apf-block", &["--remove", "203.0.113.7/32"], ("APF", &apf));
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "-u 203.0.113.7\n");
    let (code, out) = example("apf-block", &["--remove", "::1"], ("APF", &apf));
    assert_eq!(code, Some(2), "{out}");
}

#[test]
fn test_mail_reports_starttls_and_auth_and_a_missing_auth_offer() {
    let tmp = tempdir();
    let dir = tmp.path();
    let st = std::process::Command::new("bash")
        .arg(support("make_cert.sh"))
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running make_cert.sh");
    assert!(st.success(), "make_cert.sh failed: {st}");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let sink = Sink::start(
        dir,
        &[
            "--tls",
            "starttls",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--auth-user",
            "aw",
            "--auth-password",
            "s3cret",
        ],
    );
    write_file(dir, "smtp-password", "s3cret\n");
    let smtp = |tls: &str| {
        format!(
            "  smtp: {{host: 127.0.0.1, port: {}, tls: {tls}, username: aw, password_file: smtp-password, ca_file: cert.pem, timeout: 10s}}\n",
            sink.port
        )
    };
    let yaml = |tls: &str| {
        format!(
            "state_dir: '{}'\nhost: {{name: mx1.test, ip: 192.0.2.25}}\nsources: [{{path: '{}'}}]\nmail:\n  from: authwatch@mx1.test\n  to: [admin@example.test]\n{}",
            dir.join("state").display(),
            dir.join("mainlog").display(),
            smtp(tls)
        )
    };
    let cfg = write_file(dir, "starttls.yaml", &yaml("starttls"));
    let out = ok(&cfg, &["test-mail"]);
    for step in [
        "connect: ok",
        "TLS: ok (STARTTLS)",
        "AUTH: ok (PLAIN as aw)",
        "sent: ok",
    ] {
        assert!(out.contains(step), "{step} in\n{out}");
    }
    assert!(!out.contains("s3cret"), "{out}");
    let mails = sink.wait_mails(1);
    assert_eq!(
        mails[0].envelope["auth_user"], "aw",
        "{}",
        mails[0].envelope
    );
    // Without TLS this server offers no AUTH: the step says so, and what to change.
    let plain = write_file(dir, "plain.yaml", &yaml("none"));
    let (code, out, _) = cmd(&plain, &["test-mail"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("TLS: off") && out.contains("AUTH: FAILED"),
        "{out}"
    );
    assert!(out.contains("set tls: starttls"), "{out}");
    assert_eq!(sink.mails().len(), 1, "nothing sent without AUTH");
}
