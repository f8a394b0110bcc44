//! Scenario 3 end to end: `drill bisect`, `drill diff` and `drill extract`
//! against real restic repositories holding nightly `pg_dumpall` dumps of
//! the frame fixture (fixtures/dumps/history: night 8 shifts one journal
//! line by 0.01, and every later night keeps it), restored into real
//! PostgreSQL sandboxes.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// Night `n`'s dump of frame.
fn night(n: usize) -> PathBuf {
    let p = dumps()
        .join("history")
        .join(format!("frame-night-{n:02}.sql"));
    assert!(
        p.is_file(),
        "{} is missing: run fixtures/generate.sh",
        p.display()
    );
    p
}

/// A repository with one snapshot per entry of `nights` (the frame dump of
/// that night), taken nightly at 03:00 from 2026-11-02.
fn history_repo(nights: &[usize]) -> TestRepo {
    require_environment();
    let repo = TestRepo::empty();
    for (i, n) in nights.iter().enumerate() {
        let time = format!("2026-11-{:02} 03:00:00", i + 2);
        repo.backup_at(&[(&night(*n), "frame-postgres.sql")], &time);
    }
    repo
}

/// The snapshots' ids, oldest first.
fn ids_of(repo: &TestRepo, count: usize) -> Vec<String> {
    let snaps = repo.snapshots();
    let ids: Vec<String> = snaps
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), count, "{snaps:#?}");
    ids
}

/// A config with all six fixture databases and the shipped checks (the
/// commands pick frame with `--database`), reading `repo`.
fn config(dir: &Path, repo: &TestRepo) -> PathBuf {
    let dbs: Vec<&Db> = HEALTHY.iter().map(|(_, d)| d).collect();
    let config = write_config(dir, repo, &dbs, &[]);
    use_shipped_checks(&config);
    // Two probes per round whatever the host's CPUs: the counts below
    // follow from it.
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replacen("[sandbox]\n", "[sandbox]\nparallelism = 2\n", 1);
    assert!(text.contains("parallelism = 2"), "{text}");
    std::fs::write(&config, text).unwrap();
    config
}

fn bisect(config: &Path, extra: &[&str]) -> (Run, Value) {
    let mut args = vec!["bisect", "--tier", "local", "--database", "frame", "--json"];
    args.extend_from_slice(extra);
    let run = drill(config, &args);
    let rec: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "bisect --json printed no record ({e}); exit {}\nstderr:\n{}",
            run.code, run.stderr
        )
    });
    assert_no_sandbox_left(rec["run_id"].as_str().unwrap());
    (run, rec)
}

fn tested(rec: &Value) -> Vec<(String, String, u64, Option<String>)> {
    rec["tested"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_string(),
                t["verdict"].as_str().unwrap().to_string(),
                t["restores"].as_u64().unwrap(),
                t["same_as"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn short(id: &str) -> String {
    id[..8].to_string()
}

fn table<'a>(diff: &'a Value, name: &str) -> &'a Value {
    diff["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["dbname"] == "frame" && t["table"] == name)
        .unwrap_or_else(|| panic!("table {name} in diff: {diff:#}"))
}

#[test]
fn bisect_names_the_night_the_books_stopped_balancing() {
    let nights: Vec<usize> = (1..=12).collect();
    let repo = history_repo(&nights);
    let ids = ids_of(&repo, 12);
    let work = tempfile::tempdir().unwrap();
    let config = config(work.path(), &repo);

    let (run, rec) = bisect(&config, &[]);
    assert_eq!(run.code, 1, "found → exit 1\n{}", run.stderr);
    assert_eq!(rec["outcome"], "found", "{rec:#}");
    assert_eq!(rec["verdict"], "failed");
    assert_eq!(rec["last_valid"]["id"], ids[6].as_str(), "{rec:#}");
    assert_eq!(rec["first_invalid"]["id"], ids[7].as_str(), "{rec:#}");
    assert!(rec["last_valid"]["time"]
        .as_str()
        .unwrap()
        .starts_with("2026-11-08T03:00:00"));
    assert!(rec["first_invalid"]["time"]
        .as_str()
        .unwrap()
        .starts_with("2026-11-09T03:00:00"));
    // The newest first, then two rounds of two probes at once (nights 4
    // and 8, then 5 and 7): 5 restores.
    let restores = rec["restores"].as_u64().unwrap();
    assert!(restores <= 5, "{restores} restores: {rec:#}");
    let t = tested(&rec);
    let mut probed: Vec<usize> = t
        .iter()
        .filter(|x| x.2 > 0)
        .map(|x| ids.iter().position(|id| id == &x.0).unwrap())
        .collect();
    probed.sort_unstable();
    assert_eq!(probed, [3, 4, 6, 7, 11], "{t:?}");
    assert_eq!(t[0].0, ids[11], "the newest is judged first");
    assert_eq!(t[0].1, "failed");
    assert_eq!(t.iter().map(|x| x.2).sum::<u64>(), restores);
    // Every judged verdict agrees with the history: nights 1-7 pass.
    for (id, verdict, _, _) in &t {
        let pos = ids.iter().position(|x| x == id).unwrap();
        let want = if pos < 7 { "passed" } else { "failed" };
        assert_eq!(verdict, want, "snapshot {} (night {})", short(id), pos + 1);
    }
    // The search ran only the check that failed on the newest.
    assert_eq!(rec["databases"], serde_json::json!(["frame"]));
    assert_eq!(rec["checks"], serde_json::json!(["frame: frame-integrity"]));
    assert!(
        rec["reasons"][0]
            .as_str()
            .unwrap()
            .contains("frame-integrity"),
        "{rec:#}"
    );

    // The diff: journal_line changed (one row), ranked before the tables
    // that only grew; the rest identical; same schema.
    let diff = &rec["diff"][0];
    assert_eq!(diff["database"], "frame");
    assert_eq!(diff["status"], "passed", "{diff:#}");
    let tables = diff["tables"].as_array().unwrap();
    assert_eq!(tables[0]["table"], "public.journal_line", "{diff:#}");
    let line = table(diff, "public.journal_line");
    assert_eq!(line["change"], "changed");
    assert_eq!(line["changed"], 1, "the one-cent line: {line:#}");
    assert_eq!(line["removed"], 0);
    assert_eq!(line["added"], 20, "night 8's 10 entries × 2 lines");
    assert_eq!(line["matched_by"], "primary key (id)");
    let entry = table(diff, "public.journal_entry");
    assert_eq!(entry["change"], "inserted");
    assert_eq!(entry["added"], 10);
    assert_eq!(
        tables[1]["table"], "public.journal_entry",
        "pure insertion ranks after the change"
    );
    for t in ["public.entity", "public.account"] {
        assert_eq!(table(diff, t)["change"], "identical");
    }
    assert_eq!(diff["schema_identical"], true);
    assert_eq!(rec["diff_restores"], 0, "the search's sandboxes are reused");

    // Its record is on disk, JSON and Markdown.
    let reports: Vec<String> = std::fs::read_dir(work.path().join("reports"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        reports.iter().any(|f| f.ends_with("-local-bisect.json")),
        "{reports:?}"
    );
    assert!(
        reports.iter().any(|f| f.ends_with("-local-bisect.md")),
        "{reports:?}"
    );
    assert!(
        !reports.iter().any(|f| f == "history.csv"),
        "bisect is not a drill: history.csv untouched"
    );

    // Progress names each snapshot tested and the window left.
    assert!(
        run.stderr.contains("left in the window"),
        "progress: {}",
        run.stderr
    );
}

#[test]
fn byte_identical_dumps_are_judged_by_one_restore() {
    // Nights 3 and 8 were backed up several times unchanged.
    let nights = [1, 2, 3, 3, 3, 3, 7, 8, 8, 8, 8, 8];
    let repo = history_repo(&nights);
    let ids = ids_of(&repo, 12);
    let work = tempfile::tempdir().unwrap();
    let config = config(work.path(), &repo);

    let (run, rec) = bisect(&config, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(rec["last_valid"]["id"], ids[6].as_str(), "{rec:#}");
    assert_eq!(rec["first_invalid"]["id"], ids[7].as_str(), "{rec:#}");
    let t = tested(&rec);
    // Snapshots 8-11 hold the newest's dump: its restore judged them all.
    for id in &ids[7..11] {
        let entry = t
            .iter()
            .find(|x| &x.0 == id)
            .unwrap_or_else(|| panic!("snapshot {} judged: {t:?}", short(id)));
        assert_eq!(entry.1, "failed");
        assert_eq!(entry.2, 0, "no restore for {}", short(id));
        assert_eq!(entry.3.as_deref(), Some(short(&ids[11]).as_str()));
    }
    // Night 3's four snapshots took one restore between them.
    let night3: Vec<_> = t.iter().filter(|x| ids[2..6].contains(&x.0)).collect();
    assert_eq!(
        night3.iter().filter(|x| x.2 > 0).count(),
        1,
        "one restore judged night 3: {t:?}"
    );
    assert!(night3.iter().all(|x| x.1 == "passed"));
    assert_eq!(
        rec["restores"], 3,
        "newest, one night-3 copy, night 7: {rec:#}"
    );
}

#[test]
fn bisect_says_when_every_snapshot_passes_and_when_none_does() {
    let work = tempfile::tempdir().unwrap();

    let good = history_repo(&[1, 2, 3, 4, 5]);
    let dir = work.path().join("good");
    std::fs::create_dir_all(&dir).unwrap();
    let (run, rec) = bisect(&config(&dir, &good), &[]);
    assert_eq!(run.code, 0, "all pass → exit 0\n{}", run.stderr);
    assert_eq!(rec["outcome"], "all_pass");
    assert_eq!(rec["verdict"], "passed");
    assert_eq!(rec["restores"], 1, "only the newest is restored");
    assert!(rec["first_invalid"].is_null());
    assert!(run.stderr.contains("bisect: snapshot"), "{}", run.stderr);

    let bad = history_repo(&[8, 9, 10, 11, 12]);
    let ids = ids_of(&bad, 5);
    let dir = work.path().join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let (run, rec) = bisect(&config(&dir, &bad), &[]);
    assert_eq!(run.code, 1, "none passes → exit 1\n{}", run.stderr);
    assert_eq!(rec["outcome"], "none_pass", "{rec:#}");
    assert!(rec["last_valid"].is_null());
    assert_eq!(rec["first_invalid"]["id"], ids[0].as_str());
    assert!(rec["diff"].as_array().unwrap().is_empty());

    // The human summary says it in words.
    let text = drill(
        &config(&dir, &bad),
        &["bisect", "--tier", "local", "--database", "frame"],
    );
    assert_eq!(text.code, 1);
    assert!(
        text.stdout.contains("no snapshot passes"),
        "{}",
        text.stdout
    );
}

#[test]
fn bisect_since_narrows_the_window_and_checks_are_named() {
    let repo = history_repo(&[1, 2, 3, 4, 5, 6, 7, 8]);
    let ids = ids_of(&repo, 8);
    let work = tempfile::tempdir().unwrap();
    let config = config(work.path(), &repo);
    // Snapshots 5-8 only (taken from 2026-11-06 03:00).
    let (run, rec) = bisect(
        &config,
        &[
            "--since",
            "2026-11-06T00:00:00Z",
            "--check",
            "frame-integrity",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(rec["snapshots"], 4);
    assert_eq!(rec["last_valid"]["id"], ids[6].as_str());
    assert_eq!(rec["first_invalid"]["id"], ids[7].as_str());
    let first = &rec["tested"][0]["databases"][0]["checks"];
    assert_eq!(
        first.as_array().unwrap().len(),
        1,
        "only the named check: {first:#}"
    );

    let bad = drill(
        &config,
        &["bisect", "--tier", "local", "--check", "no-such-check"],
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("no-such-check"), "{}", bad.stderr);
    let late = drill(
        &config,
        &["bisect", "--tier", "local", "--since", "2030-01-01"],
    );
    assert_eq!(late.code, 2, "{}", late.stderr);
    assert!(late.stderr.contains("no snapshot"), "{}", late.stderr);
}

/// `drill extract` of `table` of frame from `snapshot` into `out`.
fn extract(config: &Path, snapshot: &str, table: &str, out: &Path, json: bool) -> Run {
    let mut args = vec![
        "extract",
        "--tier",
        "local",
        "--snapshot",
        &snapshot[..8],
        "--database",
        "frame",
        "--table",
        table,
        "--out",
        out.to_str().unwrap(),
    ];
    if json {
        args.push("--json");
    }
    drill(config, &args)
}

#[test]
fn extract_and_diff_two_snapshots() {
    let repo = history_repo(&[7, 8]);
    let ids = ids_of(&repo, 2);
    let work = tempfile::tempdir().unwrap();
    let config = config(work.path(), &repo);

    // diff, B named before A: sides are ordered by time.
    let run = drill(
        &config,
        &[
            "diff",
            "--tier",
            "local",
            &ids[1][..8],
            &ids[0][..8],
            "--database",
            "frame",
            "--json",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rec: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_no_sandbox_left(rec["run_id"].as_str().unwrap());
    assert_eq!(rec["a"]["id"], ids[0].as_str());
    assert_eq!(rec["restores"], 2);
    let diff = &rec["databases"][0];
    assert_eq!(
        diff["tables"][0]["table"], "public.journal_line",
        "{diff:#}"
    );
    assert_eq!(table(diff, "public.journal_line")["changed"], 1);
    assert_eq!(table(diff, "public.journal_entry")["change"], "inserted");
    let human = drill(
        &config,
        &[
            "diff",
            "--tier",
            "local",
            &ids[0][..8],
            &ids[1][..8],
            "--database",
            "frame",
        ],
    );
    assert_eq!(human.code, 0, "{}", human.stderr);
    assert!(
        human.stdout.contains("changed  frame.public.journal_line"),
        "{}",
        human.stdout
    );

    // extract journal_line from night 7.
    let out = work.path().join("journal_line-night7.sql");
    let run = extract(&config, &ids[0], "public.journal_line", &out, true);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rec: Value = serde_json::from_str(&run.stdout).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600,
        "the file holds production rows"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.starts_with("-- drill extract: tier local"),
        "{}",
        &text[..200]
    );
    assert!(text.contains("CREATE TABLE public.journal_line"));
    assert!(
        !text.contains("CREATE TABLE public.journal_entry"),
        "only the table asked for"
    );

    // It loads into an empty database and holds exactly that snapshot's rows.
    let scratch = Scratch::start();
    scratch
        .psql("postgres", None, "create database empty")
        .unwrap();
    scratch
        .psql("empty", Some(&out), "")
        .expect("the extract loads into an empty database");
    // The reference: the whole night-7 cluster dump, loaded beside it (it
    // recreates the role `postgres`, an error pg_dumpall's docs expect).
    scratch
        .psql_with("postgres", Some(&night(7)), "", "0")
        .expect("night 7 loads");
    let rows = "select count(*) || ':' || md5(string_agg(t::text, ',' order by id)) from public.journal_line t";
    let extracted = scratch.psql("empty", None, rows).unwrap();
    let source = scratch.psql("frame", None, rows).unwrap();
    assert_eq!(extracted, source, "exactly the rows of night 7");
    assert_eq!(
        rec["tables"][0]["rows"].as_u64().unwrap().to_string(),
        source.split(':').next().unwrap()
    );
    let tables = scratch
        .psql("empty", None, "select string_agg(relname, ',') from pg_class where relkind = 'r' and relnamespace = 'public'::regnamespace")
        .unwrap();
    assert_eq!(tables, "journal_line");

    // Never overwrites; an unknown table is named.
    let before = std::fs::read(&out).unwrap();
    let again = extract(&config, &ids[0], "public.journal_line", &out, false);
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(
        again.stderr.contains("never overwrites"),
        "{}",
        again.stderr
    );
    assert_eq!(std::fs::read(&out).unwrap(), before);
    let other = work.path().join("nothing.sql");
    let missing = extract(&config, &ids[0], "public.no_such_table", &other, false);
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(
        missing.stderr.contains("public.no_such_table"),
        "{}",
        missing.stderr
    );
    assert!(!other.exists(), "nothing written");
}
