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
    // launchd's SIGTERM leaves the drill time to remove its sandboxes.
    assert!(d["ExitTimeOut"].as_unsigned_integer().unwrap() >= 90);

    // On a Mac on UTC (always 9 h behind Seoul) the times are converted:
    // 03:00 on the 15th in Seoul is 18:00 on the 14th there.
    let run = drill_env(
        &example(),
        &with_args(&["launchd", "print"], &AGENT_ARGS),
        &[("TZ", "UTC")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("time zone") && run.stderr.contains("converted"),
        "{}",
        run.stderr
    );
    assert_eq!(
        calendar_of(&run.stdout),
        [1, 4, 7, 10]
            .iter()
            .map(|m| vec![
                ("Month".to_string(), *m),
                ("Day".to_string(), 14),
                ("Hour".to_string(), 18),
                ("Minute".to_string(), 0),
            ])
            .collect::<Vec<_>>()
    );
}

/// A plist's `StartCalendarInterval` as lists of (key, value).
fn calendar_of(plist_xml: &str) -> Vec<Vec<(String, u64)>> {
    let plist = plist::Value::from_reader_xml(plist_xml.as_bytes()).expect("parses as a plist");
    plist.as_dictionary().unwrap()["StartCalendarInterval"]
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
        .collect()
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
    let seoul = [("TZ", "Asia/Seoul")];
    for (expr, reason) in [
        ("30 0 3 15 1,4,7,10 *", "seconds field"),
        ("0 3 */2 * Mon", "either matches"),
        ("0 0 3 15 1 * 2027", "no year key"),
    ] {
        let config = config_with_schedule(work.path(), expr);
        let run = drill_env(&config, &["launchd", "print"], &seoul);
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
    // Sunday is 0 or 7 (crontab(5)) and launchd's Weekday 0, five fields
    // or six.
    for expr in ["30 2 * * 7", "30 2 * * Sun", "0 30 2 * * 0"] {
        let config = config_with_schedule(work.path(), expr);
        let run = drill_env(&config, &["launchd", "print"], &seoul);
        assert_eq!(run.code, 0, "{expr}: {}", run.stderr);
        assert_eq!(
            calendar_of(&run.stdout),
            [vec![
                ("Weekday".to_string(), 0),
                ("Hour".to_string(), 2),
                ("Minute".to_string(), 30)
            ]],
            "{expr}"
        );
    }
    // Both day fields restricted: the 15th or any Monday, one dictionary each.
    let config = config_with_schedule(work.path(), "0 3 15 * Mon");
    let run = drill_env(&config, &["launchd", "print"], &seoul);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        calendar_of(&run.stdout),
        [
            vec![
                ("Day".to_string(), 15),
                ("Hour".to_string(), 3),
                ("Minute".to_string(), 0)
            ],
            vec![
                ("Weekday".to_string(), 1),
                ("Hour".to_string(), 3),
                ("Minute".to_string(), 0)
            ]
        ]
    );
}

#[test]
fn six_field_weekdays_that_changed_meaning_are_warned_about() {
    let work = tempfile::tempdir().unwrap();
    let config = config_with_schedule(work.path(), "0 0 3 * * 1");
    // 2026-11-24 is a Tuesday: the next runs are Mondays.
    let now = [("DRILL_NOW", "2026-11-24T12:00:00+09:00")];
    let run = drill_env(&config, &["schedule", "--count", "2", "--json"], &now);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let list: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(list[0]["local"], "2026-11-30T03:00:00+09:00");
    assert_eq!(list[1]["local"], "2026-12-07T03:00:00+09:00");
    assert!(
        run.stderr.contains("warning")
            && run.stderr.contains("`1` means Monday")
            && run.stderr.contains("read it as Sunday"),
        "{}",
        run.stderr
    );
    let run = drill(&config, &["systemd", "print", "--unit", "timer"]);
    assert!(
        run.stdout
            .contains("OnCalendar=Mon *-*-* 03:00:00 Asia/Seoul\n"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("means Monday"), "{}", run.stderr);
    // The five-field form of the same says nothing.
    let config = config_with_schedule(work.path(), "0 3 * * 1");
    let run = drill_env(&config, &["schedule", "--count", "1"], &now);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    assert!(
        run.stdout.contains("2026-11-30 03:00 KST (Mon)"),
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

    // A host whose zone is 13 h behind Seoul in April and 14 h in January:
    // refused, nothing written.
    let new_york = env("America/New_York");
    let run = drill_env(
        &example(),
        &with_args(&["launchd", "install"], &AGENT_ARGS),
        &env_refs(&new_york),
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("not installed")
            && run.stderr.contains("Asia/Seoul")
            && run.stderr.contains("daylight saving"),
        "{}",
        run.stderr
    );
    assert!(!agent.exists());

    // A host on UTC, always 9 h behind: installed with converted times.
    let utc = env("UTC");
    let run = drill_env(
        &example(),
        &with_args(&["launchd", "install"], &AGENT_ARGS),
        &env_refs(&utc),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let installed = std::fs::read_to_string(&agent).unwrap();
    assert!(calendar_of(&installed)
        .iter()
        .all(|e| e.contains(&("Day".to_string(), 14)) && e.contains(&("Hour".to_string(), 18))));

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
    assert!(out.contains("KillMode=mixed\n"), "{out}");
    assert!(out.contains("TimeoutStopSec=120\n"), "{out}");
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

/// Run systemd-analyze (from the Debian package `systemd`, which
/// scripts/install-deps.sh installs); a missing one fails the test.
fn systemd_analyze(args: &[&str]) -> Run {
    std::process::Command::new("systemd-analyze")
        .args(args)
        .env("TZ", "UTC")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run systemd-analyze ({e}): install the Debian package `systemd` (scripts/install-deps.sh does)"
            )
        })
        .into()
}

/// `drill systemd print` run in `cwd` with a relative `--config`.
fn units_from(cwd: &Path, config: &str, unit: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_drill"))
        .current_dir(cwd)
        .args(["--config", config, "systemd", "print", "--unit", unit])
        .output()
        .expect("run drill");
    let run: Run = out.into();
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout
}

#[test]
fn systemd_analyze_accepts_the_units_and_elapses_when_drill_schedules() {
    // Monday quarterly, Monday in the six-field form, either of two day
    // fields (two OnCalendar= lines), both of them (`*/10` with a weekday).
    let base = "2026-11-24T12:00:00+09:00";
    let base_epoch = chrono::DateTime::parse_from_rfc3339(base)
        .unwrap()
        .timestamp();
    for expr in [
        "0 3 15 1,4,7,10 *",
        "0 0 3 * * 1",
        "30 2 15 * Mon,Sun",
        "0 3 */10 * Mon",
        "0 4 * * 7",
    ] {
        let work = tempfile::tempdir().unwrap();
        let conf = work.path().join("conf");
        let cwd = work.path().join("elsewhere");
        let units = work.path().join("units");
        for d in [&conf, &cwd, &units] {
            std::fs::create_dir_all(d).unwrap();
        }
        config_with_schedule(&conf, expr);
        // A relative config with `..`: systemd takes only normalised
        // absolute paths.
        let service = units_from(&cwd, "../conf/drill.toml", "service");
        let timer = units_from(&cwd, "../conf/drill.toml", "timer");
        let real_conf = conf.canonicalize().unwrap();
        assert!(
            service.contains(&format!(
                "--config {} run",
                real_conf.join("drill.toml").display()
            )) && service.contains(&format!("WorkingDirectory={}\n", real_conf.display())),
            "{service}"
        );
        let (sp, tp) = (units.join("drill.service"), units.join("drill.timer"));
        std::fs::write(&sp, &service).unwrap();
        std::fs::write(&tp, &timer).unwrap();
        let verify = systemd_analyze(&["verify", sp.to_str().unwrap(), tp.to_str().unwrap()]);
        assert_eq!(
            verify.code, 0,
            "{expr}: systemd-analyze verify: {}{}\n{service}\n{timer}",
            verify.stdout, verify.stderr
        );
        assert!(verify.stderr.trim().is_empty(), "{expr}: {}", verify.stderr);

        // Every OnCalendar= line: systemd's next elapses, merged, are the
        // times drill lists.
        let calendars: Vec<&str> = timer
            .lines()
            .filter_map(|l| l.strip_prefix("OnCalendar="))
            .collect();
        assert!(!calendars.is_empty(), "{timer}");
        let n = 6;
        let mut elapses: Vec<String> = Vec::new();
        for cal in &calendars {
            let iterations = format!("--iterations={n}");
            let base_time = format!("--base-time=@{base_epoch}");
            let run = systemd_analyze(&["calendar", &iterations, &base_time, cal]);
            assert_eq!(run.code, 0, "{cal}: {}", run.stderr);
            for line in run.stdout.lines() {
                let line = line.trim();
                if line.starts_with("Next elapse:") || line.starts_with("Iter. #") {
                    // `Next elapse: Thu 2027-01-14 18:00:00 UTC`
                    let words: Vec<&str> = line.split_whitespace().collect();
                    let at = &words[words.len() - 3..words.len() - 1];
                    elapses.push(format!("{}T{}+00:00", at[0], at[1]));
                }
            }
        }
        elapses.sort();
        elapses.dedup();
        elapses.truncate(n);
        let config = conf.join("drill.toml");
        let count = n.to_string();
        let run = drill_env(
            &config,
            &["schedule", "--count", &count, "--json"],
            &[("DRILL_NOW", base)],
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        let list: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let drill_times: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["utc"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(elapses, drill_times, "{expr}: {calendars:?}");
    }
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
