//! Shell completions and man pages, generated from the clap definition in [`crate::cli`] (the
//! single source of the command line), for `authwatch generate completions SHELL | man | all
//! --out DIR`. `packaging/build-deb` runs `generate all` with the freshly built binary, so the
//! Debian package ships completions and pages that match that binary exactly. Part of the
//! command layer: besides `main.rs`, only `cmd/` reads the clap definition.

use super::Exit;
use crate::cli::{Cli, Generate};
use clap::CommandFactory;
use clap_complete::Shell;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The binary's name, as completions and man pages call it.
pub const BIN: &str = "authwatch";

/// Shells whose completion scripts `generate all` writes, with the file name each shell's
/// vendor folder expects (bash: `/usr/share/bash-completion/completions/authwatch`, zsh:
/// `/usr/share/zsh/vendor-completions/_authwatch`, fish:
/// `/usr/share/fish/vendor_completions.d/authwatch.fish`).
pub const COMPLETION_FILES: [(Shell, &str); 3] = [
    (Shell::Bash, "authwatch"),
    (Shell::Zsh, "_authwatch"),
    (Shell::Fish, "authwatch.fish"),
];

/// The EXIT STATUS section of authwatch(1), from [`Exit::ALL`] (the one definition).
fn man_exit_status() -> String {
    let mut s = String::from(".SH \"EXIT STATUS\"\n");
    for e in Exit::ALL {
        s.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", e.code(), e.meaning()));
    }
    s
}

/// Extra sections of authwatch(1) that clap does not know about (after the exit statuses).
const MAN_EXTRA: &str = r#".SH FILES
.TP
\fI/etc/authwatch/config.yaml\fR
the configuration of the packaged service (YAML; check it with \fBauthwatch check \-\-config\fR)
.TP
\fI/var/lib/authwatch\fR
state: log positions, windows, the spool of unsent alerts, status.json
.TP
\fI/usr/share/authwatch/alert\-templates\fR
the alert templates (copy them to change them, and point templates_dir there)
.TP
\fI/usr/share/doc/authwatch\fR
README and examples (actions for nftables and apf)
.SH "SEE ALSO"
\fBsystemctl\fR(1), \fBjournalctl\fR(1)
"#;

/// The command line definition as clap renders it (help subcommand left out, as in the pages).
fn command() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// Write the completion script for `shell`.
pub fn completions(shell: Shell, out: &mut dyn Write) -> io::Result<()> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, BIN, out);
    out.flush()
}

/// Every man page: `authwatch.1` first, then `authwatch-SUBCOMMAND.1` for each visible
/// subcommand, as (file name, roff text).
pub fn man_pages() -> io::Result<Vec<(String, Vec<u8>)>> {
    let cmd = command();
    let mut pages = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone()).manual("authwatch manual");
    let mut main = Vec::new();
    man.render(&mut main)?;
    main.extend_from_slice(man_exit_status().as_bytes());
    main.extend_from_slice(MAN_EXTRA.as_bytes());
    pages.push((man.get_filename(), main));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = clap_mangen::Man::new(sub.clone()).manual("authwatch manual");
        let mut text = Vec::new();
        man.render(&mut text)?;
        text.extend_from_slice(b".SH \"SEE ALSO\"\n\\fBauthwatch\\fR(1)\n");
        pages.push((man.get_filename(), text));
    }
    Ok(pages)
}

/// Write the completions into `dir/completions/` and the man pages into `dir/man/`; returns
/// the files written.
pub fn write_all(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let comp = dir.join("completions");
    std::fs::create_dir_all(&comp)?;
    for (shell, name) in COMPLETION_FILES {
        let path = comp.join(name);
        let mut f = io::BufWriter::new(std::fs::File::create(&path)?);
        completions(shell, &mut f)?;
        written.push(path);
    }
    let man = dir.join("man");
    std::fs::create_dir_all(&man)?;
    for (name, text) in man_pages()? {
        let path = man.join(name);
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

/// `authwatch generate ...`: fine, or a runtime error after printing the I/O error.
pub fn run(what: &Generate) -> Exit {
    let stdout = io::stdout();
    let result = match what {
        Generate::Completions { shell } => completions(*shell, &mut stdout.lock()),
        Generate::Man => man_pages().and_then(|pages| {
            let mut out = stdout.lock();
            out.write_all(&pages[0].1)?;
            out.flush()
        }),
        Generate::All { out } => write_all(out).map(|files| {
            for f in files {
                println!("{}", f.display());
            }
        }),
    };
    match result {
        Ok(()) => Exit::Ok,
        Err(e) => {
            eprintln!("authwatch: generate: {e}");
            Exit::Runtime
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(shell: Shell) -> String {
        let mut out = Vec::new();
        completions(shell, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn completions_name_every_subcommand() {
        for (shell, _) in COMPLETION_FILES {
            let t = text(shell);
            for sub in ["run", "check", "scan", "explain", "render", "status"] {
                assert!(t.contains(sub), "{shell} completion lacks {sub}:\n{t}");
            }
            let config = if shell == Shell::Fish {
                "-l config"
            } else {
                "--config"
            };
            assert!(t.contains(config), "{shell} completion lacks --config");
        }
        // Each shell's own form, so the files land where that shell looks.
        assert!(text(Shell::Bash).contains("complete -F"));
        assert!(text(Shell::Zsh).starts_with("#compdef authwatch"));
        assert!(text(Shell::Fish).contains("complete -c authwatch"));
    }

    #[test]
    fn scan_completion_offers_its_formats() {
        let t = text(Shell::Fish);
        assert!(t.contains("table") && t.contains("json"), "{t}");
    }

    #[test]
    fn man_page_is_roff_with_subcommands() {
        let pages = man_pages().unwrap();
        let (name, main) = &pages[0];
        assert_eq!(name, "authwatch.1");
        let main = String::from_utf8(main.clone()).unwrap();
        assert!(main.contains("\n.TH authwatch 1 "), "{main}");
        assert!(main.contains("\n.SH SYNOPSIS\n"), "{main}");
        // Roff escapes `-` as `\-`.
        for sub in ["run", "check", "scan", "explain", "render", "status"] {
            let sub = format!("authwatch\\-{sub}(1)");
            assert!(main.contains(&sub), "authwatch.1 lacks {sub}:\n{main}");
        }
        assert!(main.contains("EXIT STATUS") && main.contains("78"));
        // The hidden generate subcommand has no page and is not listed.
        assert!(!main.contains("generate"), "{main}");
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"authwatch-scan.1"), "{names:?}");
        assert!(!names.iter().any(|n| n.contains("generate")), "{names:?}");
        let scan = String::from_utf8(
            pages
                .iter()
                .find(|p| p.0 == "authwatch-scan.1")
                .unwrap()
                .1
                .clone(),
        )
        .unwrap();
        assert!(
            scan.contains(".TH authwatch-scan 1") && scan.contains("\\-\\-format"),
            "{scan}"
        );
    }

    #[test]
    fn write_all_writes_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_all(dir.path()).unwrap();
        for want in [
            "completions/authwatch",
            "completions/_authwatch",
            "completions/authwatch.fish",
            "man/authwatch.1",
            "man/authwatch-scan.1",
        ] {
            let p = dir.path().join(want);
            assert!(files.contains(&p), "{want} not reported");
            assert!(std::fs::metadata(&p).unwrap().len() > 100, "{want} empty");
        }
    }
}
