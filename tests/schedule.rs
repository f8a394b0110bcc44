//! Scheduling a drill: the launchd agent and the systemd units made from the
//! config's cron expression, and the history page. No sandbox needed.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// The options that make `drill launchd print` independent of where the
/// repository is checked out; `launchd/README.md` gives the same command.
const AGENT_ARGS: [&str; 6] = [
    "--program",
    "/usr/local/bin/drill",
    "--config-path",
    "/Users/axe/.config/drill/drill.toml",
    "--log-dir",
    "/Users/axe/Library/Logs/drill",
];

fn example() -> PathBuf {
    root().join("examples/drill.toml")
}

fn with_args<'a>(head: &[&'a str], tail: &[&'a str]) -> Vec<&'a str> {
    head.iter().chain(tail).copied().collect()
}

#[test]
fn shipped_plist_is_what_launchd_print_makes_of_the_example_config() {
    let run = drill_env(
        &example(),
        &with_args(&["launchd", "print"], &AGENT_ARGS),
        &[("TZ", "Asia/Seoul")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let shipped = std::fs::read_to_string(root().join("launchd/dev.drill.run.plist")).unwrap();
    assert_eq!(
        run.stdout, shipped,
        "launchd/dev.drill.run.plist is stale: regenerate it with the command in launchd/README.md"
    );
    assert!(run.stderr.is_empty(), "{}", run.stderr);

    let plist = plist::Value::from_reader_xml(shipped.as_bytes()).expect("parses as a plist");
    let d = plist.as_dictionary().unwrap();
    assert_eq!(d["Label"].as_string(), Some("dev.drill.run"));
    let args: Vec<&str> = d["ProgramArguments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_string().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "/usr/local/bin/drill",
            "--config",
            "/Users/axe/.config/drill/drill.toml",
            "run"
        ]
    );
    let entries: Vec<Vec<(String, u64)>> = d["StartCalendarInterval"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e.as_dictionary()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_unsigned_integer().unwrap()))
                .collect()
        })
        .collect();
    let expect: Vec<Vec<(String, u64)>> = [1, 4, 7, 10]
        .iter()
        .map(|m| {
            vec![
                ("Month".to_string(), *m),
                ("Day".to_string(), 15),
                ("Hour".to_string(), 3),
                ("Minute".to_string(), 0),
            ]
        })
        .collect();
    assert_eq!(entries, expect);
    assert_eq!(
        d["StandardErrorPath"].as_string(),
        Some("/Users/axe/Library/Logs/drill/drill.err.log")
    );
    assert_eq!(
        d["WorkingDirectory"].as_string(),
        Some("/Users/axe/.config/drill")
    );

    // Printed on a host in another zone, it says launchd would be off.
    let run = drill_env(
        &example(),
        &with_args(&["launchd", "print"], &AGENT_ARGS),
        &[("TZ", "UTC")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("time zone"), "{}", run.stderr);
}

/// A config whose only content that matters is `schedule`.
fn config_with_schedule(dir: &Path, schedule: &str) -> PathBuf {
    let tiers =
        "[tiers.local]\nrepository = \"/nonexistent/local\"\npassword_file = \"/nonexistent/pw\"\n";
    let config = write_config_with_tiers(dir, "max_rto = \"4h\"", tiers, &[], &[]);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("schedule = \"{schedule}\"\n{text}")).unwrap();
    config
}

#[test]
fn expressions_launchd_cannot_express_are_refused_with_the_reason() {
    let work = tempfile::tempdir().unwrap();
    for (expr, reason) in [
        ("30 0 3 15 1,4,7,10 *", "seconds field"),
        ("0 0 3 15 * Mon", "either matches"),
        ("0 0 3 15 1 * 2027", "no year key"),
    ] {
        let config = config_with_schedule(work.path(), expr);
        let run = drill(&config, &["launchd", "print"]);
        assert_eq!(run.code, 2, "{expr}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{expr}: {}", run.stdout);
        assert!(
            run.stderr
                .contains("cannot express the schedule for launchd")
                && run.stderr.contains(reason),
            "{expr}: {}",
            run.stderr
        );
    }
    let config = config_with_schedule(work.path(), "0 30 2 * * Sun");
    let run = drill(&config, &["launchd", "print"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("<key>Weekday</key>\n\t\t\t<integer>0</integer>"),
        "{}",
        run.stdout
    );
}

#[test]
fn launchd_install_writes_the_agent_and_loads_it_with_launchctl() {
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    let bin = work.path().join("bin");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    // A stand-in for macOS's launchctl that records how it was called.
    let calls = work.path().join("launchctl.calls");
    let fake = bin.join("launchctl");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\necho \"$@\" >> '{}'\n", calls.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let env = |tz: &'static str| -> Vec<(&'static str, String)> {
        vec![
            ("HOME", home.display().to_string()),
            ("PATH", path.clone()),
            ("TZ", tz.to_string()),
        ]
    };
    fn env_refs<'a>(e: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        e.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }
    let agent = home.join("Library/LaunchAgents/dev.drill.run.plist");

    // A host in another zone than the config's: refused, nothing written.
    let utc = env("UTC");
    let run = drill_env(
        &example(),
        &with_args(&["launchd", "install"], &AGENT_ARGS),
        &env_refs(&utc),
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("not installed") && run.stderr.contains("Asia/Seoul"),
        "{}",
        run.stderr
    );
    assert!(!agent.exists());

    let seoul = env("Asia/Seoul");
    let run = drill_env(
        &example(),
        &with_args(&["launchd", "install"], &AGENT_ARGS),
        &env_refs(&seoul),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let printed = drill_env(
        &example(),
        &with_args(&["launchd", "print"], &AGENT_ARGS),
        &env_refs(&seoul),
    );
    assert_eq!(std::fs::read_to_string(&agent).unwrap(), printed.stdout);
    let uid = String::from_utf8(
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let log = std::fs::read_to_string(&calls).unwrap();
    assert!(
        log.contains(&format!("bootstrap gui/{uid} {}", agent.display())),
        "{log}"
    );

    let run = drill_env(&example(), &["launchd", "uninstall"], &env_refs(&seoul));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!agent.exists());
    let log = std::fs::read_to_string(&calls).unwrap();
    assert!(
        log.ends_with(&format!("bootout gui/{uid}/dev.drill.run\n")),
        "{log}"
    );
}

#[test]
fn systemd_units_carry_the_schedule_in_the_configured_zone() {
    let run = drill(
        &example(),
        &[
            "systemd",
            "print",
            "--program",
            "/usr/local/bin/drill",
            "--config-path",
            "/etc/drill/drill.toml",
            "--tier",
            "local",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = &run.stdout;
    assert!(out.contains("# file: drill.service\n[Unit]"), "{out}");
    assert!(
        out.contains(
            "ExecStart=/usr/local/bin/drill --config /etc/drill/drill.toml run --tier local\n"
        ),
        "{out}"
    );
    assert!(out.contains("Type=oneshot\n"), "{out}");
    assert!(out.contains("# file: drill.timer\n"), "{out}");
    assert!(
        out.contains("OnCalendar=*-01,04,07,10-15 03:00:00 Asia/Seoul\n"),
        "{out}"
    );
    assert!(out.contains("Persistent=true\n"), "{out}");
    let run = drill(&example(), &["systemd", "print", "--unit", "timer"]);
    assert!(run.stdout.starts_with("[Unit]") && !run.stdout.contains("[Service]"));
    let run = drill(&example(), &["systemd", "print", "--tier", "nope"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
}

#[test]
fn report_renders_history_with_charts_and_limits() {
    let work = tempfile::tempdir().unwrap();
    let tiers =
        "[tiers.local]\nrepository = \"/nonexistent/local\"\npassword_file = \"/nonexistent/pw\"\n";
    let config = write_config_with_tiers(
        work.path(),
        "max_rto = \"90s\"\nmax_snapshot_age = \"26h\"",
        tiers,
        &[],
        &[],
    );
    let reports = work.path().join("reports");
    std::fs::create_dir_all(&reports).unwrap();
    std::fs::write(
        reports.join("history.csv"),
        "started_at,tier,snapshot,snapshot_time,verdict,rto_seconds,snapshot_age_seconds,bytes_restored,checks_passed,checks_failed,run_id,report\n\
         2026-04-14T18:00:00+00:00,local,aaaaaaaa11,2026-04-14T00:00:00+00:00,passed,60.000,64800.000,100,3,0,r1,20260414T180000Z-local.json\n\
         2026-07-14T18:00:00+00:00,local,bbbbbbbb22,2026-07-14T12:00:00+00:00,failed,120.000,21600.000,100,2,1,r2,20260714T180000Z-local.json\n\
         2026-10-14T18:00:00+00:00,local,cccccccc33,2026-10-14T12:00:00+00:00,passed,61.000,21600.000,100,3,0,r3,20261014T180000Z-local.json\n",
    )
    .unwrap();
    let run = drill(&config, &["report"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let page = std::fs::read_to_string(reports.join("index.html")).unwrap();
    let xml = page.replace("<!DOCTYPE html>", "");
    let doc = roxmltree::Document::parse_with_options(
        &xml,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .expect("the page is well-formed");
    let svgs: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("svg"))
        .collect();
    assert_eq!(svgs.len(), 2, "RTO and snapshot age charts");
    for svg in &svgs {
        assert_eq!(
            svg.descendants()
                .filter(|n| n.has_tag_name("circle"))
                .count(),
            3
        );
        assert_eq!(
            svg.descendants()
                .filter(|n| n.attribute("class") == Some("limit"))
                .count(),
            1
        );
    }
    assert!(page.contains("limit 1m 30s"), "RTO limit drawn");
    assert!(page.contains("limit 1d 2h"), "snapshot age limit drawn");
    assert!(page.contains("<a href=\"20260714T180000Z-local.html\">"));
    assert!(page.contains("class=\"drill failed\""));
}
