//! The systemd unit in packaging/: hardened as the issue asks, and accepted by systemd's own
//! checker (`systemd-analyze verify`, pointed at the binary under test).

use crate::harness;

fn unit_text() -> String {
    std::fs::read_to_string(harness::repo_file("packaging/authwatch.service")).unwrap()
}

#[test]
fn systemd_unit_is_hardened() {
    let text = unit_text();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for want in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/authwatch",
        "CapabilityBoundingSet=",
        "User=authwatch",
        "RestartPreventExitStatus=78",
        "ExecReload=/usr/bin/authwatch check --config /etc/authwatch/config.yaml",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(lines.contains(&want), "unit lacks {want:?}");
    }
    // Only the state folder may be written.
    let rw: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with("ReadWritePaths="))
        .collect();
    assert_eq!(rw, vec![&"ReadWritePaths=/var/lib/authwatch"]);
}

#[test]
fn systemd_accepts_the_unit() {
    let Ok(out) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze missing in CI"
        );
        eprintln!("skipped: systemd-analyze not installed");
        return;
    };
    assert!(out.status.success());
    let dir = harness::tempdir();
    let unit = unit_text().replace("/usr/bin/authwatch", harness::bin());
    let path = dir.path().join("authwatch.service");
    std::fs::write(&path, unit).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Only complaints about this unit count (the host's other units are not ours).
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("authwatch.service"))
        .collect();
    assert!(ours.is_empty(), "systemd-analyze verify: {stderr}");
}

/// The config the Debian package installs as /etc/authwatch/config.yaml passes `check` (with
/// the repo's templates standing in for /usr/share/authwatch/alert-templates). Also the
/// regression test for `check` of a config with `mail.smtp`, which panicked in lettre's pool
/// for want of a tokio runtime.
#[test]
fn packaged_config_passes_check() {
    let dir = harness::tempdir();
    // `check` wants the log there (and readable): a stand-in for Exim's mainlog.
    let log = harness::write_file(dir.path(), "mainlog", "");
    let text = std::fs::read_to_string(harness::repo_file("packaging/debian/config.yaml"))
        .unwrap()
        .replace(
            "/usr/share/authwatch/alert-templates",
            &harness::repo_file("alert-templates").to_string_lossy(),
        )
        .replace("/var/log/exim4/mainlog", &log.to_string_lossy());
    let cfg = harness::write_file(dir.path(), "config.yaml", &text);
    let (code, stdout, stderr) =
        harness::run_to_end(&["check", "--config", &cfg.to_string_lossy()], dir.path());
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("OK (1 source") && stdout.contains("via SMTP 127.0.0.1:25"),
        "{stdout}"
    );
}

/// Under systemd, stderr goes to the journal, not a terminal: the logs carry no ANSI colour
/// codes (they showed as `\x1b[2m...` in `journalctl`). Run with stderr to a file.
#[test]
fn logs_to_a_file_carry_no_ansi_colour() {
    let dir = harness::tempdir();
    let log = harness::write_file(dir.path(), "mainlog", "");
    let cfg = harness::write_file(
        dir.path(),
        "a.yaml",
        &format!(
            "state_dir: '{}'\nsources: [{{path: '{}', start: end}}]\nmail: {{to: [admin@example.test]}}\n",
            dir.path().join("state").display(),
            log.display()
        ),
    );
    let err_path = dir.path().join("stderr.txt");
    let err_file = std::fs::File::create(&err_path).unwrap();
    let st = Command::new(harness::bin())
        .args(["run", "--stdin", "--config", &cfg.to_string_lossy()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(err_file)
        .status()
        .unwrap();
    assert!(st.success(), "{st:?}");
    let text = std::fs::read_to_string(&err_path).unwrap();
    assert!(text.contains("INFO"), "no log lines at all:\n{text}");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI codes in the log file:\n{text:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The Debian package (packaging/build-deb, cargo-deb)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Run `cmd`, panic with its output unless it exits 0; returns stdout.
fn ok(cmd: &mut Command) -> String {
    let out: Output = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Files of a repo folder, by name (what the package must ship of it).
fn repo_files(dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(harness::repo_file(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The man page or completion at `rel` inside the unpacked package, as text.
fn unpacked_text(root: &Path, rel: &str) -> String {
    let path = root.join(rel);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if rel.ends_with(".gz") {
        use std::io::Read;
        let mut s = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut s)
            .unwrap();
        s
    } else {
        String::from_utf8(bytes).unwrap()
    }
}

/// `dpkg --purge authwatch` when dropped (also when the test fails half-way).
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "authwatch"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output();
    }
}

/// Builds the .deb with packaging/build-deb and checks what it holds; in CI as root, also
/// installs it into this system, checks the installed service, and purges it.
#[test]
fn debian_package() {
    let have_cargo_deb = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_cargo_deb {
        assert!(
            !in_ci(),
            "cargo-deb missing in CI (.ci/install-test-deps installs it)"
        );
        eprintln!("skipped: cargo-deb not installed (cargo install cargo-deb --locked)");
        return;
    }
    let dir = harness::tempdir();
    let out_dir = dir.path().join("deb");
    std::fs::create_dir(&out_dir).unwrap();
    // A release build: niced, so the timing-sensitive tests running beside it keep the CPU.
    let mut build = Command::new("nice");
    build
        .args(["-n", "19", "bash"])
        .arg(harness::repo_file("packaging/build-deb"))
        .arg("--output")
        .arg(&out_dir);
    // Without the variables cargo sets for this test (CARGO_PKG_NAME, CARGO_MANIFEST_DIR, ...):
    // build scripts such as ring's rerun when they change, so the nested build would rebuild
    // half the tree, and a plain `cargo build --release` afterwards would again.
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || k.starts_with("CARGO_BIN_EXE_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .contains(&k.as_ref())
        {
            build.env_remove(&key);
        }
    }
    let stdout = ok(&mut build);
    let deb = PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("build-deb printed no path")
            .trim(),
    );
    assert!(deb.starts_with(&out_dir) && deb.is_file(), "{stdout}");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        deb.file_name().unwrap().to_string_lossy(),
        format!("authwatch_{version}-1_{}.deb", deb_arch())
    );

    check_contents(&deb);
    check_control(&deb, dir.path());
    let root = dir.path().join("root");
    ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    check_unpacked(&root);

    if !(in_ci() && harness::is_root()) {
        eprintln!(
            "debian_package: built and inspected {}; not installing it (that runs only in CI \
             as root, CI=true: it installs into this system)",
            deb.display()
        );
        return;
    }
    install_and_purge(&deb);
}

fn deb_arch() -> String {
    ok(Command::new("dpkg").arg("--print-architecture"))
        .trim()
        .to_string()
}

/// Every path the issue names, with its mode.
fn check_contents(deb: &Path) {
    let list = ok(Command::new("dpkg-deb").arg("-c").arg(deb));
    // "-rw-r--r-- 0/0  123 2026-01-01 00:00 ./usr/bin/authwatch" -> (path, mode, owner)
    let entries: Vec<(String, String, String)> = list
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[5].trim_start_matches('.').to_string(),
                f[0].to_string(),
                f[1].to_string(),
            )
        })
        .collect();
    let mode_of = |path: &str| -> &str {
        entries
            .iter()
            .find(|(p, _, _)| p == path)
            .map(|(_, m, _)| m.as_str())
            .unwrap_or_else(|| panic!("package lacks {path}; it holds:\n{list}"))
    };
    let mut want: Vec<(String, &str)> = vec![
        ("/usr/bin/authwatch".into(), "-rwxr-xr-x"),
        ("/etc/authwatch/config.yaml".into(), "-rw-r-----"),
        (
            "/usr/lib/systemd/system/authwatch.service".into(),
            "-rw-r--r--",
        ),
        ("/usr/share/doc/authwatch/README.md".into(), "-rw-r--r--"),
        ("/usr/share/doc/authwatch/copyright".into(), "-rw-r--r--"),
        (
            "/usr/share/bash-completion/completions/authwatch".into(),
            "-rw-r--r--",
        ),
        (
            "/usr/share/zsh/vendor-completions/_authwatch".into(),
            "-rw-r--r--",
        ),
        (
            "/usr/share/fish/vendor_completions.d/authwatch.fish".into(),
            "-rw-r--r--",
        ),
        ("/usr/share/man/man1/authwatch.1.gz".into(), "-rw-r--r--"),
    ];
    for sub in ["run", "check", "scan", "explain", "render", "status"] {
        want.push((
            format!("/usr/share/man/man1/authwatch-{sub}.1.gz"),
            "-rw-r--r--",
        ));
    }
    for t in repo_files("alert-templates") {
        want.push((
            format!("/usr/share/authwatch/alert-templates/{t}"),
            "-rw-r--r--",
        ));
    }
    for e in repo_files("examples/actions") {
        let exec = e.ends_with("-block");
        want.push((
            format!("/usr/share/doc/authwatch/examples/actions/{e}"),
            if exec { "-rwxr-xr-x" } else { "-rw-r--r--" },
        ));
    }
    for (path, mode) in &want {
        assert_eq!(mode_of(path), *mode, "mode of {path}");
    }
    for (path, _, owner) in &entries {
        assert_eq!(owner, "0/0", "{path} not owned by root in the package");
    }
    // The state folder is made by postinst (owned by the system user), not shipped.
    assert!(
        !entries.iter().any(|(p, _, _)| p.starts_with("/var/")),
        "{list}"
    );
}

/// Control fields, conffiles and maintainer scripts.
fn check_control(deb: &Path, tmp: &Path) {
    let field = |name: &str| ok(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name));
    assert_eq!(field("Package").trim(), "authwatch");
    assert_eq!(
        field("Version").trim(),
        format!("{}-1", env!("CARGO_PKG_VERSION"))
    );
    let depends = field("Depends");
    // libc6 comes from dpkg-shlibdeps ($auto); adduser because postinst uses it.
    assert!(depends.contains("libc6 (>= "), "Depends: {depends}");
    assert!(depends.contains("adduser"), "Depends: {depends}");
    assert_eq!(field("Section").trim(), "mail");

    let ctl = tmp.join("control");
    ok(Command::new("dpkg-deb").arg("-e").arg(deb).arg(&ctl));
    let read = |name: &str| std::fs::read_to_string(ctl.join(name)).unwrap();
    assert_eq!(read("conffiles").trim(), "/etc/authwatch/config.yaml");
    let postinst = read("postinst");
    assert!(postinst.contains("adduser --system"), "{postinst}");
    assert!(
        postinst.contains("adduser --quiet authwatch adm"),
        "{postinst}"
    );
    assert!(postinst.contains("/var/lib/authwatch"), "{postinst}");
    assert!(!postinst.contains("#DEBHELPER#"), "{postinst}");
    // Installed, not enabled, not started; an upgrade restarts it only if it runs.
    assert!(
        postinst.contains("deb-systemd-helper debian-installed authwatch.service"),
        "{postinst}"
    );
    assert!(
        !postinst.contains("was-enabled defaults to true"),
        "{postinst}"
    );
    assert!(!postinst.contains("deb-systemd-invoke start"), "{postinst}");
    assert!(
        postinst.contains("deb-systemd-invoke try-restart authwatch.service"),
        "{postinst}"
    );
    assert!(
        read("prerm").contains("deb-systemd-invoke stop authwatch.service"),
        "prerm does not stop the service on removal"
    );
    let postrm = read("postrm");
    assert!(postrm.contains("rm -rf /var/lib/authwatch"), "{postrm}");
    for script in ["postinst", "postrm", "prerm"] {
        ok(Command::new("sh").arg("-n").arg(ctl.join(script)));
    }
}

/// The files themselves: unit and config as in the repo, non-empty completions and man pages
/// that know the subcommands, and a binary that accepts the packaged config.
fn check_unpacked(root: &Path) {
    assert_eq!(
        std::fs::read_to_string(root.join("usr/lib/systemd/system/authwatch.service")).unwrap(),
        unit_text()
    );
    let config = std::fs::read_to_string(root.join("etc/authwatch/config.yaml")).unwrap();
    assert_eq!(
        config,
        std::fs::read_to_string(harness::repo_file("packaging/debian/config.yaml")).unwrap()
    );
    for want in [
        "state_dir: /var/lib/authwatch",
        "path: /var/log/exim4/mainlog",
        "templates_dir: /usr/share/authwatch/alert-templates",
        "host: 127.0.0.1",
    ] {
        assert!(config.contains(want), "packaged config lacks {want:?}");
    }

    for rel in [
        "usr/share/bash-completion/completions/authwatch",
        "usr/share/zsh/vendor-completions/_authwatch",
        "usr/share/fish/vendor_completions.d/authwatch.fish",
    ] {
        let text = unpacked_text(root, rel);
        for sub in ["run", "check", "scan", "explain", "status"] {
            assert!(text.contains(sub), "{rel} lacks {sub}");
        }
    }
    let man = unpacked_text(root, "usr/share/man/man1/authwatch.1.gz");
    assert!(man.contains("\n.TH authwatch 1 "), "{man}");
    assert!(man.contains("authwatch\\-scan(1)"), "{man}");
    let scan = unpacked_text(root, "usr/share/man/man1/authwatch-scan.1.gz");
    assert!(
        scan.contains(".TH authwatch-scan 1 ") && scan.contains("\\-\\-format"),
        "{scan}"
    );

    // The packaged binary, with the packaged config pointed at the unpacked templates.
    let bin = root.join("usr/bin/authwatch");
    let version = ok(Command::new(&bin).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("authwatch {}", env!("CARGO_PKG_VERSION"))
    );
    let templates = root.join("usr/share/authwatch/alert-templates");
    let cfg = root.join("check.yaml");
    let log = root.join("mainlog");
    std::fs::write(&log, "").unwrap();
    std::fs::write(
        &cfg,
        config
            .replace(
                "/usr/share/authwatch/alert-templates",
                &templates.to_string_lossy(),
            )
            .replace("/var/log/exim4/mainlog", &log.to_string_lossy()),
    )
    .unwrap();
    let summary = ok(Command::new(&bin).arg("check").arg("--config").arg(&cfg));
    assert!(
        summary.contains("OK") && summary.contains("SMTP 127.0.0.1:25"),
        "{summary}"
    );
}

/// A file removed when dropped (one a test created in the system).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// As root in CI: install into this system, check the result as the service would see it,
/// then purge and check that nothing is left.
fn install_and_purge(deb: &Path) {
    let _purge = Installed;
    ok(Command::new("dpkg")
        .arg("-i")
        .arg(deb)
        .env("DEBIAN_FRONTEND", "noninteractive"));

    let uid: u32 = ok(Command::new("id").args(["-u", "authwatch"]))
        .trim()
        .parse()
        .unwrap();
    let groups = ok(Command::new("id").args(["-Gn", "authwatch"]));
    assert!(
        groups.split_whitespace().any(|g| g == "adm"),
        "authwatch not in group adm: {groups}"
    );
    use std::os::unix::fs::MetadataExt;
    let state = std::fs::metadata("/var/lib/authwatch").expect("/var/lib/authwatch");
    assert!(state.is_dir());
    assert_eq!(state.uid(), uid, "/var/lib/authwatch owner");
    assert_eq!(
        state.mode() & 0o7777,
        0o700,
        "/var/lib/authwatch mode: owner only (issue 14.8)"
    );
    let conf = std::fs::metadata("/etc/authwatch/config.yaml").unwrap();
    assert_eq!(conf.uid(), 0);
    assert_eq!(
        conf.mode() & 0o7777,
        0o640,
        "/etc/authwatch/config.yaml mode"
    );

    // As root, and as the service's user (its ExecStartPre). `check` wants the packaged
    // config's log there: create it as logrotate would (group adm, 0640) when Exim has not
    // written it yet, and remove it again afterwards.
    let mainlog = Path::new("/var/log/exim4/mainlog");
    let _created = (!mainlog.exists()).then(|| {
        std::fs::create_dir_all("/var/log/exim4").unwrap();
        std::fs::write(mainlog, "").unwrap();
        ok(Command::new("chgrp").args(["adm", "/var/log/exim4/mainlog"]));
        ok(Command::new("chmod").args(["0640", "/var/log/exim4/mainlog"]));
        RemoveOnDrop(mainlog.to_path_buf())
    });
    ok(Command::new("/usr/bin/authwatch").args([
        "check",
        "--config",
        "/etc/authwatch/config.yaml",
    ]));
    ok(Command::new("runuser").args([
        "-u",
        "authwatch",
        "--",
        "/usr/bin/authwatch",
        "check",
        "--config",
        "/etc/authwatch/config.yaml",
    ]));

    let unit = "/usr/lib/systemd/system/authwatch.service";
    let out = Command::new("systemd-analyze")
        .args(["verify", unit])
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("authwatch.service"))
        .collect();
    assert!(ours.is_empty(), "systemd-analyze verify {unit}: {stderr}");
    // Installed but not enabled (the admin edits the config first).
    assert!(!Path::new("/etc/systemd/system/multi-user.target.wants/authwatch.service").exists());

    ok(Command::new("dpkg")
        .args(["--purge", "authwatch"])
        .env("DEBIAN_FRONTEND", "noninteractive"));
    let status = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}", "authwatch"])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(!status.starts_with("ii"), "still installed: {status}");
    for gone in [
        "/usr/bin/authwatch",
        unit,
        "/etc/authwatch/config.yaml",
        "/var/lib/authwatch",
        "/usr/share/authwatch",
        "/usr/share/man/man1/authwatch.1.gz",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} left after purge");
    }
}
