//! The command line itself: shell completions and the man page built from
//! the clap definitions, the exit codes in `--help`, `DRILL_CONFIG`, and
//! options of `drill run` given before another subcommand. None of these
//! needs restic or a sandbox engine.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A run of the drill binary in `dir`, with `env` set and `DRILL_CONFIG`
/// unset unless `env` sets it.
fn drill_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_drill"));
    c.current_dir(dir).args(args).env_remove("DRILL_CONFIG");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().expect("run drill");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A valid config (no restic or engine needed for `drill status`) in `dir`.
fn config(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(
        &p,
        "[tiers.local]\nrepository = \"/nonexistent\"\npassword_file = \"/nonexistent\"\n\n[[databases]]\nname = \"pagila\"\npath = \"/dumps/pagila.dump\"\nformat = \"custom\"\n",
    )
    .unwrap();
    p
}

const SUBCOMMANDS: [&str; 8] = [
    "run",
    "snapshots",
    "bisect",
    "verify-history",
    "doctor",
    "status",
    "completions",
    "man",
];

#[test]
fn bash_completions_cover_the_subcommands_and_parse() {
    let d = tempfile::tempdir().unwrap();
    let (code, out, err) = drill_in(d.path(), &["completions", "bash"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("complete -F _drill"), "{out}");
    for s in SUBCOMMANDS {
        assert!(out.contains(s), "bash completion lacks `{s}`");
    }
    assert!(
        out.contains("--tier") && out.contains("--config"),
        "options too"
    );
    // bash itself checks the script's syntax.
    let script = d.path().join("drill.bash");
    std::fs::write(&script, &out).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash is needed to check the completion script");
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn zsh_and_fish_completions_name_the_subcommands() {
    let d = tempfile::tempdir().unwrap();
    for shell in ["zsh", "fish"] {
        let (code, out, err) = drill_in(d.path(), &["completions", shell], &[]);
        assert_eq!(code, 0, "{shell}: {err}");
        for s in SUBCOMMANDS {
            assert!(out.contains(s), "{shell} completion lacks `{s}`");
        }
    }
    assert!(drill_in(d.path(), &["completions", "zsh"], &[])
        .1
        .starts_with("#compdef drill"));
    let (code, _, err) = drill_in(d.path(), &["completions", "tcsh"], &[]);
    assert_eq!(code, 2, "an unknown shell is a usage error: {err}");
}

#[test]
fn man_page_is_roff_with_subcommands_and_exit_codes() {
    let d = tempfile::tempdir().unwrap();
    let (code, out, err) = drill_in(d.path(), &["man"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(".TH drill 1"), "{out}");
    assert!(out.contains(".SH SUBCOMMANDS"), "{out}");
    // roff escapes `-` as `\-`.
    for s in SUBCOMMANDS {
        let roff = s.replace('-', "\\-");
        assert!(
            out.contains(&format!("drill\\-{roff}")),
            "man page lacks `{s}`"
        );
    }
    assert!(out.contains("Exit codes:"), "{out}");
    assert!(out.contains("DRILL_CONFIG"), "{out}");
}

#[test]
fn help_lists_the_exit_codes_of_the_contract() {
    let d = tempfile::tempdir().unwrap();
    let (code, out, err) = drill_in(d.path(), &["--help"], &[]);
    assert_eq!(code, 0, "{err}");
    let codes = &out[out.find("Exit codes:").expect("an exit code section")..];
    for line in [
        "  0  drill passed: every configured check passed",
        "  1  the backup is bad: a restore failed because the dump or repository",
        "  2  usage or configuration error (bad flag, bad config or check file)",
        "  3  no verdict: the environment prevented the drill (repository unreachable",
        "  4  drill passed but the notification",
    ] {
        assert!(codes.contains(line), "missing `{line}` in:\n{codes}");
    }
    assert!(out.contains("[env: DRILL_CONFIG"), "{out}");
    // `-h` (short help) carries them too.
    let (_, short, _) = drill_in(d.path(), &["-h"], &[]);
    assert!(short.contains("Exit codes:"), "{short}");
}

#[test]
fn drill_config_names_the_config_when_no_flag_does() {
    let d = tempfile::tempdir().unwrap();
    let good = config(d.path(), "good.toml");
    let bad = d.path().join("bad.toml");
    std::fs::write(&bad, "[tiers.local\n").unwrap();
    let bad_env = bad.to_str().unwrap();
    let good_env = good.to_str().unwrap();

    let (code, out, err) = drill_in(d.path(), &["status"], &[("DRILL_CONFIG", good_env)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("local: never drilled"), "{out}");

    let (code, _, err) = drill_in(d.path(), &["status"], &[("DRILL_CONFIG", bad_env)]);
    assert_eq!(code, 2, "the variable's file is the one loaded: {err}");
    assert!(err.contains("bad.toml:1:"), "{err}");

    // --config wins over the variable.
    let (code, _, err) = drill_in(
        d.path(),
        &["--config", good_env, "status"],
        &[("DRILL_CONFIG", bad_env)],
    );
    assert_eq!(code, 0, "{err}");

    // Neither: the default places, and the message names both ways.
    let (code, _, err) = drill_in(
        d.path(),
        &["status"],
        &[
            ("HOME", d.path().to_str().unwrap()),
            ("XDG_CONFIG_HOME", bad_env),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("pass --config PATH or set DRILL_CONFIG"),
        "{err}"
    );
}

#[test]
fn options_of_run_before_another_subcommand_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), "drill.toml");
    let cfg = cfg.to_str().unwrap();
    for (args, flag, sub) in [
        (&["--keep", "status"][..], "--keep", "status"),
        (&["--no-notify", "doctor"][..], "--no-notify", "doctor"),
        (
            &["--metrics", "m.prom", "status"][..],
            "--metrics",
            "status",
        ),
        (
            &["--snapshot", "abc", "snapshots", "--tier", "local"][..],
            "--snapshot",
            "snapshots",
        ),
        (&["--sample", "2", "schedule"][..], "--sample", "schedule"),
        (&["--tier", "local", "bisect"][..], "--tier", "bisect"),
        (&["--keep", "run"][..], "--keep", "run"),
    ] {
        let mut argv = vec!["--config", cfg];
        argv.extend_from_slice(args);
        let (code, _, err) = drill_in(d.path(), &argv, &[]);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "{flag} before `{sub}` is an option of `drill run`"
            )),
            "{args:?}: {err}"
        );
    }
    // A subcommand with an option of that name is told where it goes.
    let (_, _, err) = drill_in(
        d.path(),
        &["--config", cfg, "--tier", "local", "bisect"],
        &[],
    );
    assert!(err.contains("`drill bisect --tier …`"), "{err}");
    // Global options go anywhere.
    for args in [
        &["--config", cfg, "--quiet", "status"][..],
        &["-v", "--config", cfg, "status"][..],
        &["status", "--config", cfg, "--json"][..],
    ] {
        let (code, _, err) = drill_in(d.path(), args, &[]);
        assert_eq!(code, 0, "{args:?}: {err}");
    }
}
