//! The verification ledger against real parts: ten nightly snapshots of
//! real `pg_dump` output of frame (fixtures/generate.sh, `ledger/`) whose
//! data changes only on nights 1, 4 and 8 (silent corruption from night 8
//! on); every other night is a real re-dump of unchanged data with its
//! own random `\restrict` key.
//!
//! - `verify-history` restores exactly three times (one per content) and
//!   records ten verdicts, seven inherited; a second call restores nothing;
//! - changing a check file makes the verdicts stale: the next call
//!   re-verifies;
//! - `--budget` stops mid-history and the next call finishes it;
//! - `drill ledger verify` accepts the chain and names a row edited by
//!   hand;
//! - `bisect` on the covered history answers with zero restores;
//! - the retention guard refuses a policy that would forget the last good
//!   snapshot, and leaves the repository byte-identical;
//! - `drill status` and the metrics file show the ledger's freshness (the
//!   file parsed by a Prometheus text-format parser); `doctor` warns when
//!   the tier's retention policy lets the newest passed snapshot expire.

mod common;

use std::path::{Path, PathBuf};

use common::{drill, dumps, healthy, write_config, TestRepo};
use serde_json::Value;

fn night(n: usize) -> PathBuf {
    let p = dumps().join(format!("ledger/frame-night-{n:02}.sql"));
    assert!(
        p.is_file(),
        "{} is missing: run scripts/setup.sh",
        p.display()
    );
    p
}

/// Ten snapshots, night n taken on 2026-12-(n+1).
fn nightly_repo() -> TestRepo {
    common::require_environment();
    let repo = TestRepo::empty();
    for n in 1..=10 {
        let time = format!("2026-12-{:02} 03:00:00", n + 1);
        repo.backup_at(&[(&night(n), "frame-postgres.sql")], &time);
    }
    repo
}

/// SHA-256 over every file of a repository (path and bytes).
fn repo_digest(dir: &Path) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum")
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn config(dir: &Path, repo: &TestRepo) -> PathBuf {
    let config = write_config(dir, repo, &[healthy("frame")], &[]);
    std::fs::create_dir_all(dir.join("checks")).unwrap();
    std::fs::copy(
        common::root().join("checks/frame-integrity.toml"),
        dir.join("checks/frame-integrity.toml"),
    )
    .unwrap();
    config
}

fn verify_history(config: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["verify-history", "--tier", "local", "--json"];
    args.extend_from_slice(extra);
    let run = drill(config, &args);
    let rec: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "verify-history --json printed no record ({e}); exit {}\nstderr:\n{}",
            run.code, run.stderr
        )
    });
    common::assert_no_sandbox_left(rec["run_id"].as_str().unwrap());
    (run.code, rec)
}

/// (snapshot time's day, outcome, verdict) per item, newest first.
fn items(rec: &Value) -> Vec<(String, String, String)> {
    rec["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["time"].as_str().unwrap()[..10].to_string(),
                i["outcome"].as_str().unwrap().to_string(),
                i["verdict"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

#[test]
fn verify_history_restores_each_content_once_and_inherits_the_rest() {
    let repo = nightly_repo();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &repo);

    let (code, rec) = verify_history(&config, &[]);
    assert_eq!(code, 1, "night 8 on fails frame-integrity: {rec:#}");
    assert_eq!(rec["snapshots"], 10, "{rec:#}");
    assert_eq!(rec["verified"], 3, "one restore per content: {rec:#}");
    assert_eq!(rec["restores"], 3, "{rec:#}");
    assert_eq!(rec["inherited"], 7, "{rec:#}");
    let got = items(&rec);
    // Newest first: nights 10..8 failed (8's content), 7..1 passed.
    for (i, (_, _, verdict)) in got.iter().enumerate() {
        let night = 10 - i;
        let want = if night >= 8 { "failed" } else { "passed" };
        assert_eq!(verdict, want, "night {night}: {got:?}");
    }
    let verified: Vec<usize> = got
        .iter()
        .enumerate()
        .filter(|(_, (_, o, _))| o == "verified")
        .map(|(i, _)| 10 - i)
        .collect();
    assert_eq!(
        verified,
        [10, 7, 3],
        "the newest night of each content: {got:?}"
    );

    // Scenario 3 on a covered history: bisect answers from the ledger.
    let run = drill(
        &config,
        &["bisect", "--tier", "local", "--database", "frame", "--json"],
    );
    let bisect: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("no bisect record ({e}): {}", run.stderr));
    common::assert_no_sandbox_left(bisect["run_id"].as_str().unwrap());
    assert_eq!(bisect["restores"], 0, "{bisect:#}");
    assert!(
        bisect["last_valid"]["time"]
            .as_str()
            .unwrap()
            .starts_with("2026-12-08"),
        "night 7: {bisect:#}"
    );
    assert!(
        bisect["first_invalid"]["time"]
            .as_str()
            .unwrap()
            .starts_with("2026-12-09"),
        "night 8: {bisect:#}"
    );

    // The retention guard: keeping the last two nights would forget night
    // 7, the newest that passed and the last good one before night 8; the
    // repository is untouched.
    let before = repo_digest(&repo.repo);
    let run = drill(
        &config,
        &["retention", "--tier", "local", "--", "--keep-last", "2"],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let snaps = repo.snapshots();
    let night7 = snaps[6]["short_id"].as_str().unwrap().to_string();
    assert!(
        run.stdout
            .contains(&format!("UNSAFE: it would remove {night7}")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("--keep-within"), "{}", run.stdout);
    let run = drill(
        &config,
        &["retention", "--tier", "local", "--", "--keep-last", "5"],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let run = drill(&config, &["retention", "--tier", "local", "--", "--prune"]);
    assert_eq!(run.code, 2, "only retention flags: {}", run.stderr);
    assert_eq!(repo.snapshots().len(), 10);
    assert_eq!(
        repo_digest(&repo.repo),
        before,
        "the repository is byte-identical"
    );

    // Known now: nothing restored.
    let (_, again) = verify_history(&config, &[]);
    assert_eq!(again["verified"], 0, "{again:#}");
    assert_eq!(again["restores"], 0, "{again:#}");
    assert_eq!(again["known"], 10, "{again:#}");

    // The chain holds.
    let run = drill(&config, &["ledger", "verify"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    // Ten verdicts of verify-history, two restore-only rows of bisect's
    // final diff (nights 7 and 8); the second verify-history added none.
    assert!(
        run.stdout.contains("12 row(s), chain intact"),
        "known verdicts add no row: {}",
        run.stdout
    );
    let conn = rusqlite::Connection::open(dir.path().join("reports/ledger.sqlite")).unwrap();
    let diff_rows: Vec<(String, String)> = conn
        .prepare("SELECT command, reasons FROM verification WHERE command = 'bisect' ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(diff_rows.len(), 2, "{diff_rows:?}");
    assert!(
        diff_rows
            .iter()
            .all(|(_, why)| why.contains("no check ran")),
        "restore-only rows say so: {diff_rows:?}"
    );
    drop(conn);

    // A changed check makes every verdict stale.
    let check = dir.path().join("checks/frame-integrity.toml");
    let text = std::fs::read_to_string(&check).unwrap();
    std::fs::write(&check, text.replace("timeout = \"5m\"", "timeout = \"6m\"")).unwrap();
    let (_, stale) = verify_history(&config, &[]);
    assert_eq!(stale["verified"], 3, "{stale:#}");
    assert_eq!(stale["inherited"], 7, "{stale:#}");

    // A row edited by hand breaks the chain at that row.
    let ledger = dir.path().join("reports/ledger.sqlite");
    let conn = rusqlite::Connection::open(&ledger).unwrap();
    conn.execute_batch(
        "DROP TRIGGER verification_no_update; UPDATE verification SET verdict = CASE verdict WHEN 'passed' THEN 'failed' ELSE 'passed' END WHERE seq = 5;",
    )
    .unwrap();
    drop(conn);
    let run = drill(&config, &["ledger", "verify"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("breaks at row 5"), "{}", run.stderr);
}

#[test]
fn a_budget_stops_mid_history_and_the_next_call_finishes() {
    let repo = nightly_repo();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &repo);
    let (_, first) = verify_history(&config, &["--budget", "1s"]);
    assert_eq!(first["verified"], 1, "{first:#}");
    assert!(first["left"].as_u64().unwrap() > 0, "{first:#}");
    let status = |config: &Path| -> Value {
        let run = drill(config, &["status", "--json"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let list: Value = serde_json::from_str(&run.stdout).unwrap();
        list[0]["ledger"].clone()
    };
    let fresh = status(&config);
    assert_eq!(fresh["snapshots"], 10, "{fresh:#}");
    assert_eq!(fresh["unverified"], first["left"], "{fresh:#}");
    let (_, second) = verify_history(&config, &[]);
    assert_eq!(
        second["left"], 0,
        "the second call finishes the history: {second:#}"
    );
    assert_eq!(
        first["verified"].as_u64().unwrap() + second["verified"].as_u64().unwrap(),
        3,
        "each content verified once over both calls"
    );
    assert_eq!(
        second["known"].as_u64().unwrap(),
        first["verified"].as_u64().unwrap() + first["inherited"].as_u64().unwrap()
    );
    // Freshness: every snapshot has a verdict; the newest that passed is
    // night 7 (nights 8 to 10 are corrupt).
    let fresh = status(&config);
    assert_eq!(fresh["unverified"], 0, "{fresh:#}");
    assert!(
        fresh["newest_passed"][1]
            .as_str()
            .unwrap()
            .starts_with("2026-12-08"),
        "{fresh:#}"
    );
    let metrics = dir.path().join("drill.prom");
    let run = drill(
        &config,
        &[
            "run",
            "--tier",
            "local",
            "--no-notify",
            "--metrics",
            metrics.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 1, "night 10 is corrupt: {}", run.stderr);
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("drill_unverified_snapshots{tier=\"local\"} 0"),
        "{text}"
    );
    // A Prometheus text-format parser accepts the file with the new series.
    let families = common::prometheus_families(&metrics);
    for series in [
        "drill_unverified_snapshots",
        "drill_last_verified_snapshot_timestamp_seconds",
    ] {
        assert!(
            families.iter().any(|f| f == series),
            "{series} not parsed from {text}"
        );
    }
    // doctor's retention guard: a policy that keeps the last three nights
    // lets night 7, the newest that passed, expire; one that keeps ten
    // does not.
    let body = std::fs::read_to_string(&config).unwrap();
    let with_policy = |policy: &str| {
        std::fs::write(
            &config,
            body.replace(
                "[tiers.local]\n",
                &format!("[tiers.local]\nretention = [{policy}]\n"),
            ),
        )
        .unwrap();
        drill(&config, &["doctor"]).stdout
    };
    let out = with_policy("\"--keep-last\", \"3\"");
    assert!(
        out.lines().any(|l| l.starts_with("warn")
            && l.contains("tier local retention")
            && l.contains("the newest snapshot that passed")
            && l.contains("expires under `--keep-last 3`")),
        "{out}"
    );
    let out = with_policy("\"--keep-last\", \"10\"");
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok") && l.contains("tier local retention")),
        "{out}"
    );
    let run = drill(&config, &["retention", "--tier", "local"]);
    assert_eq!(
        run.code, 0,
        "the configured policy: {}{}",
        run.stdout, run.stderr
    );
    std::fs::write(&config, &body).unwrap();
    // `drill run` refreshed the history page itself: its drill is there.
    let page = std::fs::read_to_string(dir.path().join("reports/index.html"))
        .expect("drill run writes index.html");
    assert!(
        page.contains("1 drill(s) in <code>history.csv</code>"),
        "{page}"
    );
    // The history page draws the ledger: one mark per snapshot, each with
    // a verdict.
    let run = drill(&config, &["report"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let page = std::fs::read_to_string(dir.path().join("reports/index.html")).unwrap();
    assert_eq!(page.matches("<rect class=\"mark ").count(), 10, "{page}");
    assert!(!page.contains("class=\"mark unknown"), "{page}");
    assert!(page.contains("class=\"mark inherited-passed"), "{page}");
    let night7 = chrono::DateTime::parse_from_rfc3339(fresh["newest_passed"][1].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert!(
        text.contains(&format!(
            "drill_last_verified_snapshot_timestamp_seconds{{tier=\"local\"}} {night7}"
        )),
        "{text}"
    );
}

#[test]
fn a_killed_verify_history_leaves_a_sound_ledger_and_the_next_call_resumes() {
    let repo = nightly_repo();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &repo);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_drill"))
        .arg("--config")
        .arg(&config)
        .args(["verify-history", "--tier", "local"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it as soon as its first verdict is in the ledger.
    let ledger = dir.path().join("reports/ledger.sqlite");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let rows = rusqlite::Connection::open_with_flags(
            &ledger,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .and_then(|c| {
            c.query_row("SELECT count(*) FROM verification", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .unwrap_or(0);
        if rows >= 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no verdict recorded");
        assert!(
            child.try_wait().unwrap().is_none(),
            "verify-history ended early"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Its sandboxes outlive it; reap removes them (their process is dead).
    let run = drill(&config, &["reap"]);
    assert!(run.code == 0, "{}{}", run.stdout, run.stderr);
    let run = drill(&config, &["ledger", "verify"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let (_, rec) = verify_history(&config, &[]);
    assert_eq!(rec["left"], 0, "{rec:#}");
    assert!(rec["known"].as_u64().unwrap() >= 1, "{rec:#}");
    assert_eq!(
        rec["verified"].as_u64().unwrap()
            + rec["inherited"].as_u64().unwrap()
            + rec["known"].as_u64().unwrap(),
        10,
        "{rec:#}"
    );
    let run = drill(&config, &["ledger", "verify"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}

#[test]
fn run_sample_verifies_older_snapshots_without_a_verdict() {
    let repo = nightly_repo();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &repo);
    let run = drill(
        &config,
        &["run", "--tier", "local", "--no-notify", "--sample", "2"],
    );
    assert_eq!(run.code, 1, "night 10 is corrupt: {}", run.stderr);
    assert!(run.stderr.contains("sample: "), "{}", run.stderr);
    let conn = rusqlite::Connection::open(dir.path().join("reports/ledger.sqlite")).unwrap();
    let (rows, snapshots): (i64, i64) = conn
        .query_row(
            "SELECT count(*), count(DISTINCT snapshot_id) FROM verification",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (rows, snapshots),
        (3, 3),
        "the drill and two sampled nights"
    );
    let run = drill(&config, &["status", "--json"]);
    let list: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(list[0]["ledger"]["unverified"], 7, "{list:#}");
}

#[test]
fn a_run_identifies_its_dump_from_the_stream_it_restores() {
    let repo = nightly_repo();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &repo);
    // restic through a wrapper that notes each command.
    let calls = dir.path().join("calls");
    let wrapper = dir.path().join("restic-noting");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$1\" >> '{}'\nexec restic \"$@\"\n",
            calls.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("restic = \"{}\"\n{text}", wrapper.display()),
    )
    .unwrap();

    let run = drill(&config, &["run", "--tier", "local", "--no-notify"]);
    assert_eq!(run.code, 1, "night 10 is corrupt: {}", run.stderr);
    // One `restic dump`: the head, the restore and the ledger's content
    // identity all came from it.
    let noted = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(
        noted.lines().filter(|c| *c == "dump").count(),
        1,
        "restic calls: {noted}"
    );
    // verify-history identifies nights 9 and 8 by reading them: the same
    // identity as night 10's from the restore's stream (their dumps differ
    // only in volatile lines), so they inherit the run's verdict.
    let (_, rec) = verify_history(&config, &[]);
    assert_eq!(rec["known"], 1, "night 10, from the run: {rec:#}");
    assert_eq!(rec["verified"], 2, "nights 7 and 3: {rec:#}");
    assert_eq!(rec["inherited"], 7, "{rec:#}");
    let got = items(&rec);
    assert!(
        got[..3].iter().all(|(_, _, v)| v == "failed"),
        "nights 10..8 failed: {got:?}"
    );
}
