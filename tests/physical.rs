//! PostgreSQL physical backups against real parts: base backups made by
//! the real `pg_basebackup` (tar, `-X stream`; plain; `-X none`) of a real
//! PostgreSQL 15 with `archive_mode = on`, its real WAL archive
//! (fixtures/generate-physical.sh), backed up with real restic, recovered
//! in sandboxes of the offline `drill-postgres:15` image.
//!
//! - `target = "latest"` passes, replays the whole archive and reports the
//!   WAL replayed and the data loss from the last replayed transaction;
//! - a time target and a named restore point between two workload phases
//!   recover exactly the rows committed before them;
//! - a plain-format base backup passes (`pg_verifybackup` on its manifest);
//! - a WAL segment missing from the archive, a damaged segment, a truncated
//!   base backup and a `-X none` base backup without an archive each fail,
//!   naming the segment or the cause;
//! - a target before every base backup fails with that reason, a target
//!   after the archive's end fails (the data loss is not bounded), and a
//!   data loss over `max_data_loss` fails the policy;
//! - a WAL fetch that breaks midway (a damaged blob in the repository:
//!   restic exits non-zero partway through the archive's tar) fails the
//!   restore naming the segment it broke at, also when that segment is one
//!   recovery does not need, and is never a pass;
//! - with restic slowed down, recovery takes WAL before the fetch ends and
//!   still replays the whole archive; segments from before the base
//!   backup's start are left out of the sandbox;
//! - nothing is left behind.

mod common;

use std::path::PathBuf;

use common::{database, drill, report_of, TestRepo};
use serde_json::Value;

fn physical() -> PathBuf {
    let d = common::dumps().join("physical");
    assert!(
        d.join("facts.json").is_file(),
        "the physical fixtures are missing in {}: run scripts/setup.sh",
        d.display()
    );
    d
}

fn facts() -> Value {
    serde_json::from_slice(&std::fs::read(physical().join("facts.json")).unwrap()).unwrap()
}

fn fact(key: &str) -> String {
    facts()[key]
        .as_str()
        .unwrap_or_else(|| panic!("facts.json has no {key}"))
        .to_string()
}

/// A repository with one snapshot of the fixture's `/backups` tree, taken
/// `after_last_commit` seconds after the workload's last commit.
fn repo(after_last_commit: i64) -> TestRepo {
    let r = TestRepo::empty();
    let last = chrono::DateTime::parse_from_rfc3339(&fact("last_commit")).unwrap();
    let at = (last + chrono::Duration::seconds(after_last_commit))
        .with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    r.restic(
        &[
            "backup",
            "-q",
            "--host",
            "fixture-host",
            "--time",
            &at,
            "backups",
        ],
        Some(&physical()),
    );
    r
}

/// The `[[databases]]` entry `name` for the base backups under
/// `/backups/<dir>`, with `extra` lines.
fn db(name: &str, dir: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\npath = \"/backups/{dir}\"\nformat = \"basebackup\"\nimage = \"{}\"\n{extra}\n",
        common::image()
    )
}

/// The `auth` database: the fixture's base backups with its WAL archive.
fn auth_with_wal() -> String {
    db("auth", "auth_db", "wal = \"/backups/auth_db/wal\"")
}

fn users_check(database: &str, equals: u64) -> (String, String) {
    (
        format!("{database}-users.toml"),
        format!(
            "kind = \"sql\"\ndatabase = \"{database}\"\ndbname = \"auth\"\nquery = \"SELECT count(*) FROM users\"\n[expect]\nequals = {equals}\n"
        ),
    )
}

fn amcheck(database: &str) -> (String, String) {
    (
        format!("{database}-amcheck.toml"),
        format!("kind = \"amcheck\"\ndatabase = \"{database}\"\ndbname = \"auth\"\n"),
    )
}

/// A drill of `dbs` over `repo` with `checks` and `policy` lines: its
/// exit code, stderr and report.
fn drill_of(
    repo: &TestRepo,
    policy: &str,
    dbs: &[String],
    checks: &[(String, String)],
) -> (i32, String, Value) {
    drill_with(repo, "", policy, dbs, checks)
}

/// As [`drill_of`], with `top` lines at the top of the config.
fn drill_with(
    repo: &TestRepo,
    top: &str,
    policy: &str,
    dbs: &[String],
    checks: &[(String, String)],
) -> (i32, String, Value) {
    common::require_environment();
    let dir = tempfile::tempdir().unwrap();
    let mut t = format!(
        "{top}\ntimezone = \"Asia/Seoul\"\nreports_dir = \"reports\"\nchecks_dir = \"checks\"\n\n\
         [policy]\nmax_rto = \"1h\"\n{policy}\n\n\
         [tiers.local]\nrepository = \"{}\"\npassword_file = \"{}\"\n\n\
         [sandbox]\nimage = \"{}\"\nmemory = \"1GiB\"\ncpus = 1.0\nstartup_timeout = \"120s\"\n",
        repo.repo.display(),
        repo.password_file.display(),
        common::image()
    );
    for d in dbs {
        t.push_str("\n[[databases]]\n");
        t.push_str(d);
    }
    std::fs::create_dir_all(dir.path().join("checks")).unwrap();
    for (name, body) in checks {
        std::fs::write(dir.path().join("checks").join(name), body).unwrap();
    }
    let config = dir.path().join("drill.toml");
    std::fs::write(&config, t).unwrap();
    let run = drill(&config, &["run"]);
    assert_ne!(run.code, 2, "config refused: {}", run.stderr);
    let (_, report) = report_of(&run, &dir.path().join("reports"));
    common::assert_no_sandbox_left(report["run_id"].as_str().unwrap());
    (run.code, run.stderr, report)
}

#[test]
fn latest_replays_the_whole_archive_and_measures_the_data_loss() {
    let repo = repo(30);
    let (code, stderr, report) = drill_of(
        &repo,
        "max_data_loss = \"5m\"",
        &[
            db(
                "auth",
                "auth_db",
                "wal = \"/backups/auth_db/wal\"\ntarget = \"latest\"",
            ),
            db("plain", "plain_db", "wal = \"/backups/auth_db/wal\""),
        ],
        &[
            users_check("auth", facts()["users_final"].as_u64().unwrap()),
            amcheck("auth"),
            users_check("plain", facts()["users_final"].as_u64().unwrap()),
        ],
    );
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    let auth = database(&report, "auth");
    let rec = &auth["restore"]["recovery"];
    assert_eq!(rec["reached"], true, "{rec:#}");
    assert!(
        rec["base_backup"]
            .as_str()
            .unwrap()
            .ends_with("base_20260602"),
        "{rec:#}"
    );
    assert_eq!(rec["base_format"], "tar");
    assert!(rec["wal_segments"].as_u64().unwrap() >= 3, "{rec:#}");
    assert!(rec["wal_bytes"].as_u64().unwrap() > 0);
    assert_eq!(rec["segment_bytes"], 1024 * 1024);
    // Bytes read: the chosen base backup's files and the archive (as a
    // tar: 512-byte headers), each counted once.
    let size = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
    let base = physical().join("backups/auth_db/base_20260602");
    let wal: u64 = std::fs::read_dir(physical().join("backups/auth_db/wal"))
        .unwrap()
        .map(|e| size(&e.unwrap().path()) + 1024)
        .sum();
    let most =
        size(&base.join("base.tar.gz")) + size(&base.join("pg_wal.tar.gz")) + wal + 64 * 1024;
    let bytes = auth["restore"]["bytes"].as_u64().unwrap();
    assert!(
        bytes <= most,
        "restore.bytes {bytes} counts a stream twice (at most {most})"
    );
    let loss = rec["data_loss_seconds"].as_f64().unwrap();
    assert!((29.0..=31.5).contains(&loss), "data loss {loss}: {rec:#}");
    assert!(rec["last_transaction_at"].is_string());
    assert_eq!(report["policy"]["max_data_loss"]["status"], "passed");
    assert_eq!(
        auth["restore"]["server_version"]
            .as_str()
            .unwrap()
            .split('.')
            .next(),
        Some("15")
    );
    for c in auth["checks"].as_array().unwrap() {
        assert_eq!(c["status"], "passed", "{c:#}");
    }
    let plain = database(&report, "plain");
    assert_eq!(plain["restore"]["recovery"]["base_format"], "plain");
    assert_eq!(plain["restore"]["status"], "passed");
}

#[test]
fn time_and_named_targets_recover_exactly_the_rows_committed_before_them() {
    let repo = repo(30);
    let t1 = fact("t1");
    let users_t1 = facts()["users_t1"].as_u64().unwrap();
    let (code, stderr, report) = drill_of(
        &repo,
        "",
        &[
            db(
                "at_time",
                "auth_db",
                &format!("wal = \"/backups/auth_db/wal\"\ntarget = \"{t1}\""),
            ),
            // The image follows the WAL's major version.
            db(
                "at_point",
                "auth_db",
                &format!(
                    "wal = \"/backups/auth_db/wal\"\ntarget_name = \"{}\"",
                    fact("restore_point")
                ),
            )
            .replace(
                &common::image(),
                &common::image().replace(":15", ":{major}"),
            ),
        ],
        &[
            users_check("at_time", users_t1),
            users_check("at_point", users_t1),
        ],
    );
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    let at_point = &database(&report, "at_point")["restore"];
    assert_eq!(at_point["image"], common::image(), "{at_point:#}");
    assert_eq!(at_point["dump"]["server"], "15", "{at_point:#}");
    for name in ["at_time", "at_point"] {
        let rec = &database(&report, name)["restore"]["recovery"];
        assert_eq!(rec["reached"], true, "{rec:#}");
        assert!(
            rec["base_backup"]
                .as_str()
                .unwrap()
                .ends_with("base_20260601"),
            "{name}: {rec:#}"
        );
    }
    // The last replayed transaction is not after the time target.
    let rec = &database(&report, "at_time")["restore"]["recovery"];
    let last =
        chrono::DateTime::parse_from_rfc3339(rec["last_transaction_at"].as_str().unwrap()).unwrap();
    assert!(last <= chrono::DateTime::parse_from_rfc3339(&t1).unwrap());
}

#[test]
fn broken_physical_backups_fail_naming_the_cause() {
    let repo = repo(30);
    let broken = fact("broken_segment");
    let (code, stderr, report) = drill_of(
        &repo,
        "",
        &[
            db("missing", "missing_db", "wal = \"/backups/missing_db/wal\""),
            db("damaged", "damaged_db", "wal = \"/backups/damaged_db/wal\""),
            db(
                "truncated",
                "truncated_db",
                "wal = \"/backups/truncated_db/wal\"",
            ),
            db("nowal", "nowal_db", ""),
        ],
        &[],
    );
    assert_eq!(code, 1, "{stderr}\n{report:#}");
    let error = |name: &str| {
        let r = &database(&report, name)["restore"];
        assert_eq!(r["status"], "failed", "{name}: {r:#}");
        r["error"].as_str().unwrap().to_string()
    };
    let e = error("missing");
    assert!(e.contains(&broken) && e.contains("missing"), "{e}");
    let e = error("damaged");
    assert!(e.contains(&broken) && e.contains("damaged"), "{e}");
    let e = error("truncated");
    assert!(e.contains("base.tar.gz") && e.contains("truncated"), "{e}");
    let e = error("nowal");
    assert!(e.contains("consistent") && e.contains("-X none"), "{e}");
}

#[test]
fn targets_outside_the_backups_and_too_much_data_loss_fail() {
    let repo = repo(120);
    let future = (chrono::DateTime::parse_from_rfc3339(&fact("last_commit")).unwrap()
        + chrono::Duration::days(1))
    .to_rfc3339();
    let (code, stderr, report) = drill_of(
        &repo,
        "max_data_loss = \"1m\"",
        &[
            db(
                "early",
                "auth_db",
                &format!(
                    "wal = \"/backups/auth_db/wal\"\ntarget = \"{}\"",
                    fact("t0")
                ),
            ),
            db("late", "auth_db", "wal = \"/backups/auth_db/wal\""),
            db(
                "future",
                "auth_db",
                &format!("wal = \"/backups/auth_db/wal\"\ntarget = \"{}\"", future),
            ),
        ],
        &[],
    );
    assert_eq!(code, 1, "{stderr}\n{report:#}");
    let early = &database(&report, "early")["restore"];
    assert_eq!(early["status"], "failed");
    assert!(
        early["error"]
            .as_str()
            .unwrap()
            .contains("earlier than every base backup"),
        "{early:#}"
    );
    let future = &database(&report, "future")["restore"];
    assert_eq!(future["status"], "failed", "{future:#}");
    assert!(
        future["error"]
            .as_str()
            .unwrap()
            .contains("the WAL ends before the target"),
        "{future:#}"
    );
    let late = &database(&report, "late")["restore"];
    assert_eq!(late["status"], "passed", "{late:#}");
    let loss = late["recovery"]["data_loss_seconds"].as_f64().unwrap();
    assert!(loss >= 119.0, "{loss}");
    assert_eq!(report["policy"]["max_data_loss"]["status"], "failed");
    let reasons = report["reasons"].to_string();
    assert!(reasons.contains("max_data_loss"), "{reasons}");
}

#[test]
fn bisect_finds_the_last_physical_snapshot_that_recovers() {
    common::require_environment();
    // Three nights: healthy, then the damaged archive twice (the second an
    // identical tree, judged without a restore).
    let r = TestRepo::empty();
    for (night, variant) in ["auth_db", "damaged_db", "damaged_db"].iter().enumerate() {
        // The third night backs up the second's directory again, unchanged.
        let stage = r.dir.path().join(format!("stage-{variant}"));
        if !stage.exists() {
            std::fs::create_dir_all(stage.join("backups")).unwrap();
            let copied = std::process::Command::new("cp")
                .arg("-a")
                .arg(physical().join("backups").join(variant))
                .arg(stage.join("backups/auth_db"))
                .status()
                .unwrap();
            assert!(copied.success());
        }
        let time = format!("2026-11-0{} 03:00:00", night + 1);
        r.restic(
            &[
                "backup",
                "-q",
                "--host",
                "fixture-host",
                "--time",
                &time,
                "backups",
            ],
            Some(&stage),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("checks")).unwrap();
    let config = dir.path().join("drill.toml");
    std::fs::write(
        &config,
        format!(
            "timezone = \"Asia/Seoul\"\nreports_dir = \"reports\"\nchecks_dir = \"checks\"\n\n\
             [tiers.local]\nrepository = \"{}\"\npassword_file = \"{}\"\n\n\
             [sandbox]\nimage = \"{}\"\nmemory = \"1GiB\"\n\n[[databases]]\n{}",
            r.repo.display(),
            r.password_file.display(),
            common::image(),
            auth_with_wal(),
        ),
    )
    .unwrap();
    let run = drill(
        &config,
        &["bisect", "--tier", "local", "--database", "auth", "--json"],
    );
    let rec: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("no record ({e}); exit {}\n{}", run.code, run.stderr));
    common::assert_no_sandbox_left(rec["run_id"].as_str().unwrap());
    let snaps = r.snapshots();
    assert_eq!(rec["last_valid"]["id"], snaps[0]["id"], "{rec:#}");
    assert_eq!(rec["first_invalid"]["id"], snaps[1]["id"], "{rec:#}");
    assert_eq!(
        rec["restores"], 2,
        "the identical third night is judged without a restore: {rec:#}"
    );
}

#[test]
fn bisect_between_two_targets_finds_when_the_data_changed() {
    common::require_environment();
    let repo = repo(30);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("checks")).unwrap();
    // "users never exceed the count after phase 1": true up to phase 2.
    std::fs::write(
        dir.path().join("checks/users-max.toml"),
        format!(
            "kind = \"sql\"\ndatabase = \"auth\"\nquery = \"SELECT count(*) FROM users\"\n[expect]\nmax = {}\n",
            facts()["users_t1"]
        ),
    )
    .unwrap();
    let config = dir.path().join("drill.toml");
    std::fs::write(
        &config,
        format!(
            "timezone = \"Asia/Seoul\"\nreports_dir = \"reports\"\nchecks_dir = \"checks\"\n\n\
             [tiers.local]\nrepository = \"{}\"\npassword_file = \"{}\"\n\n\
             [sandbox]\nimage = \"{}\"\nmemory = \"1GiB\"\n\n[[databases]]\n{}",
            repo.repo.display(),
            repo.password_file.display(),
            common::image(),
            db(
                "auth",
                "auth_db",
                "wal = \"/backups/auth_db/wal\"\ndbname = \"auth\""
            ),
        ),
    )
    .unwrap();
    let t1 = chrono::DateTime::parse_from_rfc3339(&fact("t1")).unwrap();
    // After phase 2 (1600 users) and before phase 3: a target recovery
    // reaches (later commits follow it).
    let last = chrono::DateTime::parse_from_rfc3339(&fact("t2")).unwrap();
    let to = fact("t2");
    let run = drill(
        &config,
        &[
            "bisect",
            "--tier",
            "local",
            "--database",
            "auth",
            "--between",
            &fact("t1"),
            &to,
            "--resolution",
            "1s",
            "--json",
        ],
    );
    let rec: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("no record ({e}); exit {}\n{}", run.code, run.stderr));
    common::assert_no_sandbox_left(rec["run_id"].as_str().unwrap());
    assert_eq!(run.code, 1, "{}\n{rec:#}", run.stderr);
    assert_eq!(rec["outcome"], "found", "{rec:#}");
    let good =
        chrono::DateTime::parse_from_rfc3339(rec["last_valid_target"].as_str().unwrap()).unwrap();
    let bad = chrono::DateTime::parse_from_rfc3339(rec["first_invalid_target"].as_str().unwrap())
        .unwrap();
    assert!(good >= t1 && bad > good, "{rec:#}");
    assert!(bad - good <= chrono::Duration::seconds(1), "{rec:#}");
    assert!(bad <= last, "phase 2 committed before t2: {rec:#}");
    assert!(rec["restores"].as_u64().unwrap() >= 3, "{rec:#}");
}

/// A drill that exited 1 with `database`'s restore failed: its restore
/// record and its error (printed, for the log).
fn failed_restore<'a>(
    code: i32,
    stderr: &str,
    report: &'a Value,
    database_name: &str,
) -> (&'a Value, String) {
    assert_eq!(code, 1, "{stderr}\n{report:#}");
    let r = &database(report, database_name)["restore"];
    assert_eq!(r["status"], "failed", "{r:#}");
    let e = r["error"].as_str().unwrap().to_string();
    println!("{e}");
    (r, e)
}

/// Flip 64 bytes in the middle of the first blob of `/backups/<path>` in
/// the repository's pack file (restic's index gives the pack, the blob's
/// offset and length): restic fails reading that file with "ciphertext
/// verification failed" after writing everything before it.
fn damage_blob_of(repo: &TestRepo, path: &str) {
    let snapshot = repo.snapshots()[0]["id"].as_str().unwrap().to_string();
    let (dir, name) = path.rsplit_once('/').unwrap();
    let tree: Value = serde_json::from_str(&repo.restic(
        &["cat", "tree", &format!("{snapshot}:/backups/{dir}")],
        None,
    ))
    .unwrap();
    let blob = tree["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("{path} is not in the snapshot"))["content"][0]
        .as_str()
        .unwrap()
        .to_string();
    for index in repo.restic(&["list", "index"], None).lines() {
        let index: Value =
            serde_json::from_str(&repo.restic(&["cat", "index", index.trim()], None)).unwrap();
        for pack in index["packs"].as_array().unwrap() {
            let Some(b) = pack["blobs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["id"] == blob.as_str())
            else {
                continue;
            };
            let id = pack["id"].as_str().unwrap();
            let file = repo.repo.join("data").join(&id[..2]).join(id);
            let mut perms = std::fs::metadata(&file).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&file, perms).unwrap();
            let mut bytes = std::fs::read(&file).unwrap();
            let at = (b["offset"].as_u64().unwrap() + b["length"].as_u64().unwrap() / 2) as usize;
            for x in &mut bytes[at..at + 64] {
                *x ^= 0xff;
            }
            std::fs::write(&file, bytes).unwrap();
            return;
        }
    }
    panic!("blob {blob} of {path} is in no index");
}

#[test]
fn a_wal_fetch_failing_midstream_fails_the_restore_naming_the_segment() {
    let first = repo(30);
    let broken = fact("broken_segment");
    // restic dumps the segments before it, then fails and exits non-zero
    // while recovery waits for it.
    damage_blob_of(&first, &format!("auth_db/wal/{broken}"));
    let (code, stderr, report) = drill_of(
        &first,
        "",
        &[auth_with_wal()],
        &[users_check(
            "auth",
            facts()["users_final"].as_u64().unwrap(),
        )],
    );
    let (r, e) = failed_restore(code, &stderr, &report, "auth");
    assert!(
        e.contains(&broken) && e.contains("damaged") && e.contains("could not be fetched whole"),
        "{e}"
    );
    assert_ne!(r["recovery"]["reached"], true, "{r:#}");
    for c in database(&report, "auth")["checks"].as_array().unwrap() {
        assert_ne!(c["status"], "passed", "{c:#}");
    }

    // Damage in a segment from before the chosen base backup's start: tar
    // leaves it out, but restic's dump of the directory still breaks there,
    // and the fetch does not end whole: a failure naming where it broke.
    let second = repo(30);
    let early = facts()["wal_segments"][1].as_str().unwrap().to_string();
    damage_blob_of(&second, &format!("auth_db/wal/{early}"));
    let (code, stderr, report) = drill_of(&second, "", &[auth_with_wal()], &[]);
    let (_, e) = failed_restore(code, &stderr, &report, "auth");
    assert!(
        e.contains(&early)
            && e.contains("does not need")
            && e.contains("damaged")
            && e.contains("did not arrive whole (it never arrived)"),
        "{e}"
    );
}

#[test]
fn wal_streams_in_while_recovery_replays_it() {
    // restic's dump of the archive slowed to 2 MiB/s (about 8 s for the
    // fixture's 16 MiB), so the server starts long before it ends.
    let repo = repo(30);
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("slow-restic");
    std::fs::write(
        &wrapper,
        r#"#!/bin/bash
set -o pipefail
if [[ " $* " == *" dump "*"/wal "* ]]; then
  restic "$@" | python3 -c '
import sys, time
while True:
    b = sys.stdin.buffer.read1(65536)
    if not b:
        break
    sys.stdout.buffer.write(b)
    sys.stdout.buffer.flush()
    time.sleep(len(b) / 2097152)
'
  exit $?
fi
exec restic "$@"
"#,
    )
    .unwrap();
    let mut perms = std::fs::metadata(&wrapper).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&wrapper, perms).unwrap();
    let (code, stderr, report) = drill_with(
        &repo,
        &format!("restic = \"{}\"", wrapper.display()),
        "",
        &[auth_with_wal()],
        &[
            users_check("auth", facts()["users_final"].as_u64().unwrap()),
            amcheck("auth"),
        ],
    );
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    let restore = &database(&report, "auth")["restore"];
    let rec = &restore["recovery"];
    assert_eq!(rec["reached"], true, "{rec:#}");
    let notes: Vec<&str> = restore["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    println!("{notes:#?}\n{rec:#}");
    // Recovery took WAL before the fetch ended.
    let beside = notes
        .iter()
        .find(|n| n.starts_with("WAL fetch beside replay"))
        .unwrap_or_else(|| panic!("{notes:#?}"));
    let served: u64 = beside
        .split("recovery had been handed ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{beside}"));
    assert!(served >= 1, "{beside}");
    assert!(rec["wal_fetch_seconds"].as_f64().unwrap() >= 5.0, "{rec:#}");
    // Only the segments from the base backup's start are fetched.
    let start = u64::from_str_radix(
        rec["base_start_lsn"]
            .as_str()
            .unwrap()
            .split_once('/')
            .unwrap()
            .1,
        16,
    )
    .unwrap()
        / (1 << 20);
    let before = facts()["wal_segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| u64::from_str_radix(&s.as_str().unwrap()[16..], 16).unwrap() < start)
        .count();
    assert!(before > 0);
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&format!("; {before} segments (")) && n.contains("left out of it")),
        "{notes:#?}"
    );
}
