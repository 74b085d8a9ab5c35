//! Actions: commands run per alert. Hostile account names reach the configured program as
//! literal arguments and start nothing else; timeouts kill the whole process group; the
//! concurrency limit holds; output is cut and inert; the shipped nft and apf examples refuse
//! anything but an IP before calling the firewall (checked with fake `nft`, `apf` and `at`).

use authwatch::actions::{
    for_alert, validate_spec, validate_specs, ActionContext, ActionResult, ActionRunner, ActionSpec,
};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Write an executable script.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, body).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn spec(name: &str, program: &Path, args: &[&str], timeout: Duration) -> ActionSpec {
    ActionSpec {
        name: name.into(),
        program: program.to_path_buf(),
        args: args.iter().map(|s| s.to_string()).collect(),
        timeout,
        include_in_alert: true,
    }
}

fn ctx(account: &str) -> ActionContext {
    ActionContext {
        ip: "203.0.113.7".parse().unwrap(),
        network: None,
        prefix: Some("203.0.113.0/24".parse().unwrap()),
        account: Some(account.into()),
        count: 17,
        service: "exim".into(),
    }
}

fn split_nul(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .skip_while(|s| s.is_empty())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect()
}

fn only(results: Vec<ActionResult>) -> ActionResult {
    assert_eq!(results.len(), 1, "{results:?}");
    results.into_iter().next().unwrap()
}

#[test]
fn hostile_account_names_are_literal_arguments_of_the_configured_program() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Records argv (NUL-separated, $0 first), the environment and stdin.
    let dump = script(
        dir,
        "dump-argv",
        "#!/bin/sh\nout=$1\nshift\nprintf '%s\\0' \"$0\" \"$@\" > \"$out.args\"\nenv -0 > \"$out.env\"\ncat > \"$out.stdin\"\necho recorded\n",
    );
    let out = dir.join("call");
    let out_s = out.to_str().unwrap();
    let runner = ActionRunner::new(
        vec![spec(
            "dump",
            &dump,
            &[
                out_s,
                "{ip}",
                "{account}",
                "--user={account}",
                "two words {account}",
                "{prefix}",
                "{count}",
                "{service}",
                "{{account}}",
            ],
            Duration::from_secs(10),
        )],
        2,
    )
    .unwrap();
    let d = dir.display();
    let hostile = [
        format!("x; touch {d}/pwned1"),
        format!("$(touch {d}/pwned2)"),
        format!("`touch {d}/pwned3`"),
        format!("a b  c && touch {d}/pwned4"),
        format!("| touch {d}/pwned5 &"),
        format!("'\"; touch {d}/pwned6; echo \""),
        "{ip} {account} {{count}}".to_string(),
        "-rf".to_string(),
        "*".to_string(),
        "$HOME ${PATH} %s %n".to_string(),
        "ünïcødé 🙂 \u{202E}rtl".to_string(),
    ];
    for account in &hostile {
        let r = only(runner.run(&ctx(account)));
        assert!(r.success(), "{account:?}: {r:?}");
        assert_eq!(r.output, "recorded");
        let args = split_nul(&fs::read(format!("{out_s}.args")).unwrap());
        assert_eq!(
            args,
            vec![
                dump.to_str().unwrap().to_string(),
                "203.0.113.7".to_string(),
                account.clone(),
                format!("--user={account}"),
                format!("two words {account}"),
                "203.0.113.0/24".to_string(),
                "17".to_string(),
                "exim".to_string(),
                "{account}".to_string(),
            ],
            "arguments for account {account:?}"
        );
        assert_eq!(fs::read(format!("{out_s}.stdin")).unwrap(), b"", "stdin");
        let env = split_nul(&fs::read(format!("{out_s}.env")).unwrap());
        let keys: Vec<&str> = env.iter().map(|kv| kv.split('=').next().unwrap()).collect();
        for k in &keys {
            // The shell adds PWD (and some shells SHLVL, OLDPWD, _) by itself.
            assert!(
                ["PATH", "LANG", "PWD", "OLDPWD", "SHLVL", "_"].contains(k),
                "unexpected variable {k} in the action's environment: {env:?}"
            );
        }
        assert!(keys.contains(&"PATH"), "{env:?}");
    }
    // A newline in a name is one argument, shown as a mark.
    let r = only(runner.run(&ctx("a\nb")));
    assert!(r.success(), "{r:?}");
    let args = split_nul(&fs::read(format!("{out_s}.args")).unwrap());
    assert_eq!(args[2], "a<U+000A>b");
    for i in 1..=6 {
        assert!(
            !dir.join(format!("pwned{i}")).exists(),
            "a hostile account name ran a command (pwned{i})"
        );
    }
}

/// The process state from /proc: None when gone, Some('Z') for a zombie.
fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.trim_start().chars().next()
}

#[test]
fn timeout_kills_the_command_and_what_it_started() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pids = dir.join("pids");
    let prog = script(
        dir,
        "slow",
        "#!/bin/sh\nsleep 30 &\necho $! > \"$1\"\necho $$ >> \"$1\"\necho started\nsleep 30\necho never\n",
    );
    let runner = ActionRunner::new(
        vec![spec(
            "slow",
            &prog,
            &[pids.to_str().unwrap()],
            Duration::from_millis(500),
        )],
        1,
    )
    .unwrap();
    let t = Instant::now();
    let r = only(runner.run(&ctx("a")));
    let took = t.elapsed();
    assert!(r.timed_out, "{r:?}");
    assert!(!r.success());
    assert_eq!(r.exit, None, "{r:?}");
    assert_eq!(r.signal, Some(9), "{r:?}");
    assert_eq!(r.status, "timed out after 500ms (killed)");
    assert_eq!(r.output, "started");
    assert!(
        took < Duration::from_secs(5),
        "run took {took:?} for a 500ms timeout"
    );
    let text = fs::read_to_string(&pids).unwrap();
    let ids: Vec<u32> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{text}");
    // The background sleep was in the command's process group: it must be gone too.
    let deadline = Instant::now() + Duration::from_secs(5);
    for pid in ids {
        loop {
            match proc_state(pid) {
                None | Some('Z') | Some('X') => break,
                Some(s) => assert!(
                    Instant::now() < deadline,
                    "process {pid} still alive (state {s}) after the timeout"
                ),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn concurrency_limit_is_respected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = dir.join("intervals");
    // Each run appends "start end" in nanoseconds (O_APPEND: whole lines).
    let prog = script(
        dir,
        "busy",
        "#!/bin/sh\nstart=$(date +%s%N)\nsleep 0.5\nend=$(date +%s%N)\nprintf '%s %s\\n' \"$start\" \"$end\" >> \"$1\"\n",
    );
    let runner = Arc::new(
        ActionRunner::new(
            vec![spec(
                "busy",
                &prog,
                &[log.to_str().unwrap()],
                Duration::from_secs(20),
            )],
            2,
        )
        .unwrap(),
    );
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let runner = Arc::clone(&runner);
            std::thread::spawn(move || only(runner.run(&ctx(&format!("u{i}")))))
        })
        .collect();
    for t in threads {
        let r = t.join().unwrap();
        assert!(r.success(), "{r:?}");
    }
    let text = fs::read_to_string(&log).unwrap();
    let mut events: Vec<(u128, i32)> = Vec::new();
    for line in text.lines() {
        let (a, b) = line.split_once(' ').unwrap();
        events.push((a.parse().unwrap(), 1));
        events.push((b.parse().unwrap(), -1));
    }
    assert_eq!(events.len(), 12, "{text}");
    // Ends sort before starts at the same instant.
    events.sort();
    let (mut now, mut max) = (0, 0);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    assert!(
        max <= 2,
        "{max} commands ran at once with a limit of 2:\n{text}"
    );
    assert_eq!(max, 2, "the two slots were never used together:\n{text}");
}

#[test]
fn output_is_cut_and_inert_and_exit_codes_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let noisy = script(
        dir,
        "noisy",
        &format!(
            "#!/bin/sh\nprintf '\\033[31mred\\033[0m see http://evil.example\\n'\necho to-stderr >&2\nfor i in 1 2 3 4 5 6 7 8; do echo line $i; done\necho {}\nexit 3\n",
            "x".repeat(5000)
        ),
    );
    let quiet = script(dir, "quiet", "#!/bin/sh\nkill -TERM $$\n");
    let mut quiet_spec = spec("quiet", &quiet, &[], Duration::from_secs(10));
    quiet_spec.include_in_alert = false;
    let runner = ActionRunner::new(
        vec![
            spec("noisy", &noisy, &[], Duration::from_secs(10)),
            quiet_spec,
        ],
        4,
    )
    .unwrap();
    let results = runner.run(&ctx("a"));
    assert_eq!(results.len(), 2);
    let r = &results[0];
    assert_eq!(r.name, "noisy");
    assert_eq!(r.exit, Some(3));
    assert_eq!(r.status, "exit 3");
    assert!(!r.success());
    let lines: Vec<&str> = r.output.lines().collect();
    assert_eq!(
        lines,
        vec![
            "<U+001B>[31mred<U+001B>[0m see hxxp://evil.example",
            "to-stderr",
            "line 1",
            "line 2",
            "line 3",
            "[... more output cut]",
        ],
        "{}",
        r.output
    );
    let q = &results[1];
    assert_eq!(q.exit, None, "{q:?}");
    assert_eq!(q.signal, Some(15), "{q:?}");
    assert_eq!(q.status, "killed by signal 15");
    let shown = for_alert(&results);
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].name, "noisy");
    // Serializable for the alert template.
    let json = serde_json::to_value(&shown).unwrap();
    assert_eq!(json[0]["status"], "exit 3");
}

#[test]
fn a_vanished_program_is_an_error_not_a_panic_and_allowlisted_ips_run_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let marker = dir.join("ran");
    let prog = script(dir, "touch-marker", "#!/bin/sh\n: > \"$1\"\n");
    let runner = ActionRunner::new(
        vec![spec(
            "marker",
            &prog,
            &[marker.to_str().unwrap()],
            Duration::from_secs(5),
        )],
        1,
    )
    .unwrap()
    .with_allowlist(vec!["203.0.113.0/24".parse().unwrap()]);
    assert!(runner.run(&ctx("a")).is_empty());
    assert!(!marker.exists(), "an allowlisted IP ran an action");
    let mut other = ctx("a");
    other.ip = "198.51.100.1".parse().unwrap();
    assert!(only(runner.run(&other)).success());
    assert!(marker.exists());
    fs::remove_file(&prog).unwrap();
    let r = only(runner.run(&other));
    assert!(
        r.error.as_deref().unwrap_or("").contains("could not start"),
        "{r:?}"
    );
    assert!(!r.success());
}

#[test]
fn validation_names_the_field_and_argument() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let good = script(dir, "good", "#!/bin/sh\n");
    let ok = spec("block", &good, &["{ip}", "x{{y}}"], Duration::from_secs(5));
    assert_eq!(validate_spec(&ok), vec![]);

    let mut bad = spec(
        "bad name!",
        Path::new("relative/prog"),
        &["{ip}", "{user}", "{ip"],
        Duration::ZERO,
    );
    let errs = validate_spec(&bad);
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        vec!["name", "program", "args[1]", "args[2]", "timeout"],
        "{errs:?}"
    );
    assert_eq!(errs[2].arg, Some(1));
    assert!(errs[2].message.contains("{user}"), "{errs:?}");
    assert!(errs[1].message.contains("absolute"), "{errs:?}");

    let plain = dir.join("not-exec");
    fs::write(&plain, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o644)).unwrap();
    bad.program = plain;
    assert!(validate_spec(&bad)[1].message.contains("not executable"));
    let open = script(dir, "world-writable", "#!/bin/sh\n");
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    bad.program = open;
    assert!(validate_spec(&bad)[1].message.contains("every user"));
    bad.program = dir.to_path_buf();
    assert!(validate_spec(&bad)[1].message.contains("regular file"));

    let dup = validate_specs(&[ok.clone(), ok.clone()]);
    assert_eq!(dup.len(), 1, "{dup:?}");
    assert_eq!(dup[0].0, 1);
    assert!(ActionRunner::new(vec![ok.clone()], 0).is_err());
    let mut broken = ok;
    broken.args = vec!["{nope}".into()];
    let e = ActionRunner::new(vec![broken], 1).unwrap_err();
    assert_eq!(e.field, "args[0]");
}

// ---------------------------------------------------------------------------------------------
// The shipped examples, with fake firewall tools.

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/actions")
        .join(name)
}

/// A fake tool that appends its NUL-separated arguments (and stdin, for `at`) to a log.
fn fake_tool(dir: &Path, name: &str, extra: &str) -> PathBuf {
    script(
        dir,
        name,
        &format!(
            "#!/bin/sh\n{extra}\nprintf '%s\\0' \"$@\" >> \"{log}\"\nprintf '\\n' >> \"{log}\"\n",
            log = dir.join(format!("{name}.log")).display()
        ),
    )
}

fn calls(dir: &Path, name: &str) -> Vec<Vec<String>> {
    match fs::read(dir.join(format!("{name}.log"))) {
        Ok(b) => b
            .split(|c| *c == b'\n')
            .filter(|l| !l.is_empty())
            .map(split_nul)
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn run_example(
    name: &str,
    args: &[&str],
    env: &[(&str, &Path)],
    extra_env: &[(&str, &str)],
) -> (Option<i32>, String) {
    let mut cmd = Command::new(example(name));
    cmd.args(args).env_clear().env("PATH", "/usr/bin:/bin");
    for (k, v) in env {
        cmd.env(k, v);
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

const REFUSED_IPS: &[&str] = &[
    "203.0.113.7; touch /tmp/x",
    "$(touch /tmp/x)",
    "203.0.113.7 timeout 9999d }",
    "999.1.1.1",
    "01.2.3.4",
    "1.2.3",
    "1.2.3.4.5",
    "-f",
    "",
    "example.com",
    "127.0.0.1",
    "::1",
    "2001:db8::1::2",
    "203.0.113.0/33",
    "203.0.113.0/",
    "203.0.113.0/024",
    "203.0.113.0/24/1",
    "203.0.113.0/x",
    "/24",
    "2001:db8::/129",
    "10.0.0.0/4",
    "2001::/8",
    "127.0.0.0/8",
];

#[test]
fn nft_block_example_checks_its_argument_and_sets_an_expiry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let nft = fake_tool(dir, "nft", "");
    let env = [("NFT", nft.as_path())];
    let (code, out) = run_example("nft-block", &["203.0.113.7"], &env, &[]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run_example("nft-block", &["2001:db8::7", "30m"], &env, &[]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run_example("nft-block", &["::ffff:198.51.100.9", "1h30m"], &env, &[]);
    assert_eq!(code, Some(0), "{out}");
    // Issue 14.5: networks ({network}) are blocked whole.
    let (code, out) = run_example("nft-block", &["2001:db8:1:2::/64"], &env, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("blocked 2001:db8:1:2::/64"), "{out}");
    let (code, out) = run_example("nft-block", &["203.0.113.7/32", "2h"], &env, &[]);
    assert_eq!(code, Some(0), "{out}");
    let expected: Vec<Vec<String>> = [
        [
            "add",
            "element",
            "inet",
            "authwatch",
            "blocked4",
            "{ 203.0.113.7 timeout 1h }",
        ],
        [
            "add",
            "element",
            "inet",
            "authwatch",
            "blocked6",
            "{ 2001:db8::7 timeout 30m }",
        ],
        [
            "add",
            "element",
            "inet",
            "authwatch",
            "blocked4",
            "{ 198.51.100.9 timeout 1h30m }",
        ],
        [
            "add",
            "element",
            "inet",
            "authwatch",
            "blocked6",
            "{ 2001:db8:1:2::/64 timeout 1h }",
        ],
        [
            "add",
            "element",
            "inet",
            "authwatch",
            "blocked4",
            "{ 203.0.113.7/32 timeout 2h }",
        ],
    ]
    .iter()
    .map(|c| c.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(calls(dir, "nft"), expected);

    for bad in REFUSED_IPS {
        let (code, out) = run_example("nft-block", &[bad], &env, &[]);
        assert_eq!(code, Some(2), "{bad:?} was not refused: {out}");
    }
    for bad_timeout in ["1h; x", "h1", "forever", "1y", ""] {
        let (code, out) = run_example("nft-block", &["203.0.113.7", bad_timeout], &env, &[]);
        assert_eq!(
            code,
            Some(2),
            "timeout {bad_timeout:?} was not refused: {out}"
        );
    }
    assert_eq!(calls(dir, "nft").len(), 5, "nft ran for a refused value");
}

#[test]
fn apf_block_example_uses_temp_deny_or_at_for_expiry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // --help mentions --temp-deny only when FAKE_APF_NEW is set (APF 2.0.2 and later).
    let apf = fake_tool(
        dir,
        "apf",
        "if [ \"$1\" = --help ]; then echo 'usage: apf [OPTION]'; [ -n \"${FAKE_APF_NEW:-}\" ] && echo '  -td HOST TTL [CMT], --temp-deny   temporarily deny host/CC'; exit 0; fi",
    );
    let at = fake_tool(dir, "at", "cat >> \"$0.stdin\"");
    let env = [("APF", apf.as_path()), ("AT", at.as_path())];

    // New APF: a temporary deny, the comment reduced to harmless characters.
    let (code, out) = run_example(
        "apf-block",
        &["203.0.113.7", "2h", "authwatch: 5 failed; $(x) `y`\nz"],
        &env,
        &[("FAKE_APF_NEW", "1")],
    );
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        calls(dir, "apf"),
        vec![vec![
            "-td",
            "203.0.113.7",
            "2h",
            "authwatch: 5 failed (x) yz"
        ]]
    );
    assert!(calls(dir, "at").is_empty());

    // Older APF with at: a deny, and its removal scheduled.
    let (code, out) = run_example("apf-block", &["2001:db8::7", "90s"], &env, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(calls(dir, "apf")[1], vec!["-d", "2001:db8::7", "authwatch"]);
    assert_eq!(
        calls(dir, "at"),
        vec![vec!["-M", "now", "+", "2", "minutes"]]
    );
    assert_eq!(
        fs::read_to_string(dir.join("at.stdin")).unwrap(),
        format!("{} -u 2001:db8::7\n", apf.display())
    );

    // Older APF, no at: the deny stays; exit 3 says so.
    let no_at = dir.join("no-such-at");
    let (code, out) = run_example(
        "apf-block",
        &["198.51.100.9"],
        &[("APF", apf.as_path()), ("AT", no_at.as_path())],
        &[],
    );
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("SET_EXPIRE"), "{out}");
    assert_eq!(
        calls(dir, "apf")[2],
        vec!["-d", "198.51.100.9", "authwatch"]
    );

    for bad in REFUSED_IPS {
        let (code, out) = run_example("apf-block", &[bad], &env, &[("FAKE_APF_NEW", "1")]);
        assert_eq!(code, Some(2), "{bad:?} was not refused: {out}");
    }
    let (code, out) = run_example("apf-block", &["203.0.113.7", "1h30m"], &env, &[]);
    assert_eq!(code, Some(2), "{out}");
    assert_eq!(calls(dir, "apf").len(), 3, "apf ran for a refused value");
    // Issue 14.5: a subnet is given to apf in CIDR, a host range as the address.
    let (code, out) = run_example(
        "apf-block",
        &["2001:db8:1:2::/64", "1h"],
        &env,
        &[("FAKE_APF_NEW", "1")],
    );
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run_example(
        "apf-block",
        &["203.0.113.7/32", "1h"],
        &env,
        &[("FAKE_APF_NEW", "1")],
    );
    assert_eq!(code, Some(0), "{out}");
    let c = calls(dir, "apf");
    assert_eq!(c[3], vec!["-td", "2001:db8:1:2::/64", "1h", "authwatch"]);
    assert_eq!(c[4], vec!["-td", "203.0.113.7", "1h", "authwatch"]);
}

/// The agent runs the configured action for an alert, after the allowlist, with hostile account
/// names as literal arguments, and quotes the result in the alert.
#[test]
fn agent_runs_actions_for_alerts_with_literal_arguments() {
    use crate::harness::{eml_files, exim_fail, now_unix, Mail};
    use crate::stdin::{run_stdin, stdin_config};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let calls = dir.join("calls");
    let prog = script(
        dir,
        "block",
        &format!(
            "#!/bin/sh\nprintf '%s\\0' \"$@\" >> '{}'\necho \"blocked $1 for $3 attempts\"\n",
            calls.display()
        ),
    );
    let cfg = stdin_config(
        dir,
        &format!(
            "allowlist: {{addresses: ['198.51.100.0/24']}}\nactions:\n  - {{name: block, program: '{}', args: ['{{ip}}', '--user={{account}}', '{{count}}', '{{prefix}}'], timeout: 5s, on: [ip_burst]}}\n",
            prog.display()
        ),
    );
    let d = dir.display();
    let hostile = format!("x; touch {d}/pwned $(touch {d}/pwned2) `touch {d}/pwned3` a b");
    let t = now_unix();
    let mut input = String::new();
    for i in 0..5 {
        input.push_str(&exim_fail(t + i, "203.0.113.47", &hostile));
        input.push('\n');
        // An allowlisted address attacking just as hard: never counted, nothing run.
        input.push_str(&exim_fail(t + i, "198.51.100.7", &hostile));
        input.push('\n');
    }
    let out = run_stdin(&cfg, &[], input.as_bytes());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let args = split_nul(&fs::read(&calls).unwrap());
    assert_eq!(
        args,
        vec![
            "203.0.113.47".to_string(),
            format!("--user={hostile}"),
            "5".to_string(),
            // {prefix} is empty: IPv4 addresses are not grouped by default (split_nul drops it).
        ],
        "one call, for the attacker only, arguments literal"
    );
    for p in ["pwned", "pwned2", "pwned3"] {
        assert!(!dir.join(p).exists(), "{p} was created: a shell ran");
    }
    assert!(err.contains("action done"), "{err}");
    let files = eml_files(&dir.join("state").join("outbox"));
    assert_eq!(files.len(), 1, "{err}");
    let m = Mail::read(&files[0]);
    assert!(m.body.contains("block: exit 0"), "{}", m.body);
    assert!(
        m.body.contains("> blocked 203.0.113.47 for 5 attempts"),
        "{}",
        m.body
    );
    // The alert says the action blocked the IP, in the body and in the Subject (issue 15),
    // and its ack command names the incident (`authwatch ack` takes it; the Message-ID names
    // the alert).
    assert!(m.body.contains("Status: BLOCKED by block\n"), "{}", m.body);
    assert!(
        m.subject().contains(": 203.0.113.47 BLOCKED - "),
        "{}",
        m.subject()
    );
    let id = m
        .header("Message-ID")
        .and_then(|v| v.strip_prefix('<'))
        .and_then(|v| v.split('@').next())
        .unwrap_or_default()
        .to_string();
    assert!(id.starts_with("ip_burst-v2-"), "{id}");
    let incident = authwatch::control::incident_id("ip_burst", "203.0.113.47");
    assert!(
        m.body.contains(&format!("authwatch ack {incident}\n")),
        "{}",
        m.body
    );
}

// ---------------------------------------------------------------------------------------------
// The agent with actions, end to end with a real SMTP server (issue 14.4).

fn sink_config(dir: &Path, log: &Path, port: u16, extra: &str) -> PathBuf {
    let cfg = dir.join("config.yaml");
    fs::write(
        &cfg,
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
  compromised: {{min_failures: 3}}
alerts: {{group_wait: 0s}}
mail:
  from: "authwatch <authwatch@mx1.test>"
  to: [admin@example.test]
  smtp: {{host: 127.0.0.1, port: {port}, tls: none, timeout: 10s}}
{extra}"#,
            state = dir.join("state").display(),
            log = log.display(),
        ),
    )
    .unwrap();
    cfg
}

fn success_line(t: i64, ip: &str, user: &str) -> String {
    format!(
        "{} 1vAbCd-0001Xy-Q1 <= {user}@example.test H=(laptop) [{ip}]:51544 P=esmtpsa A=dovecot_plain:{user} S=2121 id=x@example.test",
        crate::harness::stamp(t)
    )
}

/// Issue 14.4: 40 failures from one IP with an action configured make an incident of 40, not
/// of the 5 that crossed the threshold (the attempts made while the alert waited for its
/// actions were lost).
#[test]
fn actions_freeze_incident_counts_regression() {
    use crate::harness::{exim_fail, now_unix};
    use crate::stdin::{run_stdin, stdin_config};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let prog = script(dir, "block", "#!/bin/sh\necho \"blocked $1\"\n");
    let cfg = stdin_config(
        dir,
        &format!(
            "actions:\n  - {{name: block, program: '{}', args: ['{{network}}'], timeout: 5s}}\n",
            prog.display()
        ),
    );
    let t = now_unix();
    let input: String = (0..40)
        .map(|i| format!("{}\n", exim_fail(t - 100 + i, "203.0.113.47", "alice")))
        .collect();
    let out = run_stdin(&cfg, &[], input.as_bytes());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("action done"), "{err}");
    let state: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("state/state.json")).unwrap()).unwrap();
    let incidents = state["policy"]["incidents"].as_object().unwrap();
    let totals: Vec<(String, u64)> = incidents
        .values()
        .map(|i| {
            (
                i["key"].as_str().unwrap().to_string(),
                i["total"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(totals, vec![("203.0.113.47".to_string(), 40)], "{err}");
}

/// Issue 14.4: an URGENT alert goes out while the action of another alert is still running
/// (the action waits for a file the test creates only after the urgent mail arrived); the
/// blocked alert follows once its own action has finished.
#[test]
fn urgent_alert_does_not_wait_behind_another_alerts_action_regression() {
    use crate::harness::{exim_fail, now_unix, wait_for, Agent, LogWriter, Sink};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sink = Sink::start(dir, &["--tls", "none"]);
    let log = LogWriter::new(dir.join("mainlog"));
    let d = dir.display();
    let prog = script(
        dir,
        "slow",
        &format!(
            "#!/bin/sh\ntouch '{d}/started'\nwhile [ ! -e '{d}/release' ] && [ -d '{d}' ]; do sleep 0.05; done\necho \"released $1\"\n"
        ),
    );
    let cfg = sink_config(
        dir,
        &log.path,
        sink.port,
        &format!(
            "actions:\n  - {{name: slow, program: '{}', args: ['{{ip}}'], timeout: 120s, on: [ip_burst]}}\n",
            prog.display()
        ),
    );
    let mut agent = Agent::run(&cfg);
    agent.wait_following(&log);
    let t = now_unix() - 60;
    // A crosses the threshold (its action blocks); B fails 3 times, then logs in: URGENT.
    let mut lines: Vec<String> = (0..5)
        .map(|i| exim_fail(t + i, "203.0.113.21", &format!("u{i}")))
        .collect();
    for i in 0..3 {
        lines.push(exim_fail(t + 10 + i, "198.51.100.9", "alice"));
    }
    lines.push(success_line(t + 20, "198.51.100.9", "alice"));
    log.append(&lines);
    wait_for("the slow action to start", || {
        dir.join("started").exists().then_some(())
    });
    let mails = sink.wait_mails(1);
    assert!(!dir.join("release").exists());
    let subject = mails[0].mail.subject().to_string();
    assert!(
        subject.contains("URGENT") && subject.contains("198.51.100.9"),
        "{subject}"
    );
    assert_eq!(mails.len(), 1, "A's alert waits for its action");
    fs::write(dir.join("release"), b"").unwrap();
    let mails = sink.wait_mails(2);
    let a = &mails[1].mail;
    assert!(a.subject().contains("203.0.113.21"), "{}", a.subject());
    assert!(a.body.contains("slow: exit 0"), "{}", a.body);
    assert!(agent.stop().success());
}

/// Issue 14.5: a subnet alert gives its action the subnet in CIDR as `{network}` (and
/// `{prefix}`), not one address.
#[test]
fn subnet_alert_action_receives_the_cidr_regression() {
    use crate::harness::{exim_fail, now_unix};
    use crate::stdin::{run_stdin, stdin_config};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let calls = dir.join("calls");
    let prog = script(
        dir,
        "block",
        &format!(
            "#!/bin/sh\nprintf '%s\\0' \"$@\" >> '{}'\necho \"blocked $1\"\n",
            calls.display()
        ),
    );
    let cfg = stdin_config(
        dir,
        &format!(
            "actions:\n  - {{name: block, program: '{}', args: ['{{network}}', '{{prefix}}'], timeout: 5s}}\n",
            prog.display()
        ),
    );
    let t = now_unix() - 100;
    // 12 addresses of one /64, one attempt each: no per-IP alert, one subnet alert.
    let input: String = (0..12)
        .map(|i| {
            format!(
                "{}\n",
                exim_fail(t + i, &format!("2001:db8:1:2::{:x}", i + 1), "info")
            )
        })
        .collect();
    let out = run_stdin(&cfg, &[], input.as_bytes());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let args = split_nul(&fs::read(&calls).unwrap());
    assert_eq!(
        args,
        vec!["2001:db8:1:2::/64", "2001:db8:1:2::/64"],
        "{err}"
    );
}
