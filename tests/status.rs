//! `drill status`: read from history.csv, judged against the schedule at a
//! given time (DRILL_NOW).

mod common;

use common::*;

#[test]
fn status_shows_last_drills_and_how_overdue_each_tier_is() {
    let work = tempfile::tempdir().unwrap();
    let tiers = "[tiers.local]\nrepository = \"/nonexistent/local\"\npassword_file = \"/nonexistent/pw\"\n\n\
                 [tiers.ring]\nrepository = \"sftp:u@peer:/r\"\n\n\
                 [tiers.cold]\nrepository = \"/Volumes/cold-{disk}/r\"\ndisks = [1, 2, 3]\npassword_prompt = true\n";
    let config = write_config_with_tiers(work.path(), "max_rto = \"4h\"", tiers, &[], &[]);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("schedule = \"0 0 3 15 1,4,7,10 *\"\n{text}"),
    )
    .unwrap();
    let reports = work.path().join("reports");
    std::fs::create_dir_all(&reports).unwrap();
    std::fs::write(
        reports.join("history.csv"),
        "started_at,tier,snapshot,snapshot_time,verdict,rto_seconds,snapshot_age_seconds,bytes_restored,checks_passed,checks_failed,run_id,report\n\
         2026-07-14T18:00:00+00:00,local,aaa,2026-07-14T00:00:00+00:00,passed,60.000,64800.000,100,3,0,r1,20260714T180000Z-local.json\n\
         2026-10-14T18:00:00+00:00,local,bbb,2026-10-14T12:00:00+00:00,passed,61.000,21600.000,100,3,0,r2,20261014T180000Z-local.json\n\
         2026-10-14T18:10:00+00:00,ring,ccc,2026-10-14T12:00:00+00:00,failed,62.000,22200.000,100,2,1,r3,20261014T181000Z-ring.json\n",
    )
    .unwrap();
    // 2027-02-01 in Seoul: the 2027-01-15 03:00 drill is 17 days overdue.
    let now = [("DRILL_NOW", "2027-02-01T03:00:00+09:00")];
    let run = drill_env(&config, &["status"], &now);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let line = |tier: &str| {
        run.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{tier}: ")))
            .unwrap_or_else(|| panic!("{tier}: {}", run.stdout))
            .to_string()
    };
    let local = line("local");
    assert!(
        local.contains("last drill 2026-10-15 03:00 KST (passed)"),
        "{local}"
    );
    assert!(local.contains("snapshot 6h old then"), "{local}");
    assert!(
        local.contains("OVERDUE by 17d (due 2027-01-15 03:00 KST)"),
        "{local}"
    );
    let ring = line("ring");
    assert!(
        ring.contains("(failed)")
            && ring.contains("never passed")
            && ring.contains("OVERDUE: no passed drill yet"),
        "{ring}"
    );
    assert!(line("cold").contains("never drilled"), "{}", run.stdout);

    let json = drill_env(&config, &["status", "--json"], &now);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let local = v
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tier"] == "local")
        .unwrap();
    assert_eq!(local["overdue_seconds"], 17.0 * 86400.0);
    assert_eq!(local["last_passed"]["run_id"], "r2");

    // Before the due date: not overdue.
    let early = drill_env(
        &config,
        &["status"],
        &[("DRILL_NOW", "2026-12-01T00:00:00+09:00")],
    );
    assert!(
        early.stdout.contains("local: ") && early.stdout.contains("next due 2027-01-15 03:00 KST"),
        "{}",
        early.stdout
    );
}

#[test]
fn schedule_lists_the_next_quarterly_drills_in_seoul_and_utc() {
    // The shipped example config: `0 3 15 1,4,7,10 *` in Asia/Seoul.
    let config = root().join("examples/drill.toml");
    let now = [("DRILL_NOW", "2026-11-24T12:00:00+09:00")];
    let run = drill_env(&config, &["schedule", "--count", "4", "--json"], &now);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let list: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let local: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["local"].as_str().unwrap())
        .collect();
    assert_eq!(
        local,
        [
            "2027-01-15T03:00:00+09:00",
            "2027-04-15T03:00:00+09:00",
            "2027-07-15T03:00:00+09:00",
            "2027-10-15T03:00:00+09:00"
        ]
    );
    assert_eq!(list[0]["utc"], "2027-01-14T18:00:00+00:00");
    let text = drill_env(&config, &["schedule", "--count", "1"], &now);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout.contains("2027-01-15 03:00 KST")
            && text.stdout.contains("2027-01-14 18:00 UTC"),
        "{}",
        text.stdout
    );

    // No schedule: a usage error that says what to add.
    let work = tempfile::tempdir().unwrap();
    let tiers =
        "[tiers.local]\nrepository = \"/nonexistent/local\"\npassword_file = \"/nonexistent/pw\"\n";
    let bare = write_config_with_tiers(work.path(), "max_rto = \"4h\"", tiers, &[], &[]);
    let none = drill(&bare, &["schedule"]);
    assert_eq!(none.code, 2, "{}", none.stderr);
    assert!(none.stderr.contains("no `schedule`"), "{}", none.stderr);
}
