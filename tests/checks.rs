//! Integrity checks end to end: the shipped checks against the healthy
//! fixtures and against fixture variants (made from the healthy fixtures by
//! real PostgreSQL, dumped by real pg_dump, backed up by real restic), each
//! of which must fail for its own reason and only that one; the `command`
//! and `amcheck` kinds against real sandboxes.

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::Value;

fn variant(file: &str) -> PathBuf {
    let p = dumps().join("variants").join(file);
    assert!(
        p.is_file(),
        "{} is missing: run fixtures/generate.sh",
        p.display()
    );
    p
}

/// Drill `db` (shipped checks) from a repository whose dump of `db` is
/// `file`; returns (exit code, report).
fn drill_one(db: &str, file: &std::path::Path) -> (i32, Value, tempfile::TempDir) {
    require_environment();
    let repo = TestRepo::new(&[(file, healthy_file(db))]);
    let work = tempfile::tempdir().unwrap();
    let config = shipped_config(work.path(), &repo);
    let run = drill(&config, &["run", "--tier", "local", "--database", db]);
    let (_, report) = report_of(&run, &work.path().join("reports"));
    assert_no_sandbox_left(report["run_id"].as_str().unwrap());
    assert_eq!(
        database(&report, db)["restore"]["status"],
        "passed",
        "the variant must restore: {report:#}"
    );
    (run.code, report, work)
}

/// A config listing all six fixture databases (the shipped checks name
/// them all) with the shipped checks; drills pick one with `--database`.
fn shipped_config(dir: &std::path::Path, repo: &TestRepo) -> PathBuf {
    let dbs: Vec<&Db> = HEALTHY.iter().map(|(_, d)| d).collect();
    let config = write_config(dir, repo, &dbs, &[]);
    use_shipped_checks(&config);
    config
}

/// Every check of `db` passed except `failing`, which failed.
fn only_fails(report: &Value, db: &str, failing: &str) {
    let statuses = check_statuses(report, db);
    assert!(
        statuses.iter().any(|(n, _)| n == failing),
        "{failing} did not run: {statuses:?}"
    );
    for (name, status) in &statuses {
        let want = if name == failing { "failed" } else { "passed" };
        assert_eq!(status, want, "check {name} of {db}: {report:#}");
    }
    assert_eq!(report["verdict"], "failed");
}

fn findings(c: &Value) -> Vec<String> {
    c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn healthy_fixture_passes_every_shipped_check_and_becomes_the_baseline() {
    require_environment();
    let facts = source_facts();
    let d = dumps();
    let files: Vec<(PathBuf, &str)> = HEALTHY.iter().map(|(f, _)| (d.join(f), *f)).collect();
    let refs: Vec<(&std::path::Path, &str)> =
        files.iter().map(|(p, n)| (p.as_path(), *n)).collect();
    let repo = TestRepo::new(&refs);
    let work = tempfile::tempdir().unwrap();
    let config = shipped_config(work.path(), &repo);
    let reports = work.path().join("reports");

    let run = drill(&config, &["run", "--tier", "local"]);
    let (json, report) = report_of(&run, &reports);
    assert_eq!(run.code, 0, "stderr:\n{}\nreport: {report:#}", run.stderr);
    assert_eq!(report["verdict"], "passed");
    let expected: [(&str, &[&str]); 6] = [
        ("frame", &["amcheck", "frame-cli", "frame-integrity"]),
        ("index", &["amcheck", "evidence-blob-roundtrip"]),
        ("hive", &["amcheck", "hive-tenant-counts"]),
        ("mysrt", &["amcheck"]),
        ("blueprint", &["amcheck", "blueprint-workspaces"]),
        ("pagila", &["amcheck", "pagila-row-counts"]),
    ];
    for (db, names) in expected {
        let statuses = check_statuses(&report, db);
        let got: Vec<&str> = statuses.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(got, names, "{db}");
        for (n, s) in &statuses {
            assert_eq!(s, "passed", "{db}: {n}: {report:#}");
        }
    }

    // blob-roundtrip verified every evidence blob, byte for byte.
    let blob = check(&report, "index", "evidence-blob-roundtrip");
    assert_eq!(blob["rows_verified"], facts["index"]["evidence_blob"]);
    assert_eq!(
        blob["bytes_verified"],
        facts["index"]["evidence_blob_bytes"]
    );

    // First drill of the tier: the counts are right, max_drop is unknown,
    // and the report says so.
    let counts = check(&report, "hive", "hive-tenant-counts");
    let items = counts["counts"].as_array().unwrap();
    let item = |name: &str| items.iter().find(|c| c["name"] == name).unwrap().clone();
    assert_eq!(
        item("employees[axec]")["rows"],
        facts["hive"]["axec.employees"]
    );
    assert_eq!(
        item("employees[axev]")["rows"],
        facts["hive"]["axev.employees"]
    );
    assert_eq!(item("public.tenant")["rows"], facts["hive"]["tenant"]);
    for i in items {
        assert_eq!(i["max_drop_status"], "unknown", "{i}");
        assert_eq!(i["min_status"], "passed", "{i}");
    }
    let warnings = report["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| {
            let w = w.as_str().unwrap();
            w.starts_with("hive: check `hive-tenant-counts`: max_drop unknown for")
                && w.contains("employees[axec]")
        }),
        "{warnings:?}"
    );
    let md = std::fs::read_to_string(json.with_extension("md")).unwrap();
    assert!(
        md.contains("Row counts of `hive-tenant-counts`") && md.contains("unknown"),
        "{md}"
    );

    // Second drill of the tier: judged against the first.
    let run = drill(
        &config,
        &[
            "run",
            "--tier",
            "local",
            "--database",
            "hive",
            "--database",
            "pagila",
        ],
    );
    let (_, second) = report_of(&run, &reports);
    assert_eq!(run.code, 0, "{second:#}");
    let counts = check(&second, "hive", "hive-tenant-counts");
    for i in counts["counts"].as_array().unwrap() {
        assert_eq!(i["max_drop_status"], "passed", "{i}");
        assert_eq!(i["baseline_run_id"], report["run_id"], "{i}");
        assert_eq!(i["drop"], 0.0, "{i}");
    }
    let rentals = check(&second, "pagila", "pagila-row-counts")["counts"][0].clone();
    assert_eq!(rentals["name"], "public.rental");
    assert_eq!(rentals["baseline_rows"], facts["pagila"]["rental"]);
    assert!(
        second["warnings"].as_array().unwrap().is_empty(),
        "{second:#}"
    );
}

#[test]
fn journal_line_off_by_a_cent_fails_frame_integrity_naming_the_entry() {
    let (code, report, _w) = drill_one("frame", &variant("frame-unbalanced.sql"));
    assert_eq!(code, 1);
    only_fails(&report, "frame", "frame-integrity");
    let f = findings(check(&report, "frame", "frame-integrity"));
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].contains("entity=mysrt") && f[0].contains("entry_id="),
        "{f:?}"
    );
    // debits and credits differ by exactly one cent
    let num = |key: &str| -> f64 {
        let part = f[0].split(", ").find(|p| p.starts_with(key)).unwrap();
        part[key.len() + 1..].parse().unwrap()
    };
    assert!(
        ((num("debits") - num("credits")) - 0.01).abs() < 1e-9,
        "{f:?}"
    );
    assert!(report["reasons"][0]
        .as_str()
        .unwrap()
        .contains("frame-integrity"));
}

#[test]
fn emptied_tenant_fails_hive_tenant_counts() {
    let (code, report, _w) = drill_one("hive", &variant("hive-axev-empty.sql"));
    assert_eq!(code, 1);
    only_fails(&report, "hive", "hive-tenant-counts");
    let f = findings(check(&report, "hive", "hive-tenant-counts"));
    assert_eq!(f, ["employees[axev]: 0 rows, expected at least 1"]);
}

#[test]
fn flipped_byte_in_an_evidence_blob_fails_the_roundtrip_naming_the_row() {
    let (code, report, _w) = drill_one("index", &variant("index-blob-flipped.sql.gz"));
    assert_eq!(code, 1);
    only_fails(&report, "index", "evidence-blob-roundtrip");
    let c = check(&report, "index", "evidence-blob-roundtrip");
    let f = findings(c);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].contains("public.evidence_blob id=42:"), "{f:?}");
    for proof in [
        "in the sandbox SHA-256",
        "exported SHA-256",
        "re-imported SHA-256",
    ] {
        assert!(f[0].contains(proof), "{proof}: {f:?}");
    }
    assert_eq!(c["rows_verified"], source_facts()["index"]["evidence_blob"]);
}

#[test]
fn emptied_workspace_table_fails_blueprint_workspaces() {
    let (code, report, _w) = drill_one("blueprint", &variant("blueprint-no-workspace.dump"));
    assert_eq!(code, 1);
    only_fails(&report, "blueprint", "blueprint-workspaces");
    let f = findings(check(&report, "blueprint", "blueprint-workspaces"));
    assert_eq!(f, ["value is 0, expected at least 1"]);
}

#[test]
fn row_count_fallen_beyond_max_drop_since_the_last_passed_drill_fails() {
    require_environment();
    let facts = source_facts();
    let healthy_dump = dumps().join(healthy_file("hive"));
    let repo = TestRepo::new(&[(&healthy_dump, "hive-postgres.sql")]);
    let first = repo.restic(&["snapshots", "--json"], None);
    let first: Value = serde_json::from_str(&first).unwrap();
    let first_id = first[0]["short_id"].as_str().unwrap().to_string();
    repo.backup(&[(&variant("hive-axec-shrunk.sql"), "hive-postgres.sql")]);
    let work = tempfile::tempdir().unwrap();
    let config = shipped_config(work.path(), &repo);
    let reports = work.path().join("reports");
    let hive = ["run", "--tier", "local", "--database", "hive"];

    // Without a baseline the shrunk snapshot cannot be judged on max_drop:
    // a separate history shows it as unknown, never as a fall.
    let fresh = tempfile::tempdir().unwrap();
    let fresh_config = shipped_config(fresh.path(), &repo);
    let run = drill(&fresh_config, &hive);
    let (_, unjudged) = report_of(&run, &fresh.path().join("reports"));
    assert_eq!(run.code, 0, "{unjudged:#}");
    let counts = check(&unjudged, "hive", "hive-tenant-counts")["counts"].clone();
    let axec = counts
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "employees[axec]")
        .unwrap();
    assert_eq!(
        axec["rows"],
        facts["hive"]["axec.employees"].as_u64().unwrap() / 2
    );
    assert_eq!(axec["max_drop_status"], "unknown");

    // The healthy snapshot passes and becomes the baseline …
    let run = drill(&config, &[&hive[..], &["--snapshot", &first_id]].concat());
    let (_, baseline) = report_of(&run, &reports);
    assert_eq!(run.code, 0, "{baseline:#}");

    // … and the latest, with half of axec's employees gone, fails.
    let run = drill(&config, &hive);
    let (_, report) = report_of(&run, &reports);
    assert_eq!(run.code, 1, "{report:#}");
    only_fails(&report, "hive", "hive-tenant-counts");
    let c = check(&report, "hive", "hive-tenant-counts");
    let f = findings(c);
    let before = facts["hive"]["axec.employees"].as_u64().unwrap();
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].starts_with(&format!(
            "employees[axec]: {} rows, down 50.0 % from {before}",
            before / 2
        )) && f[0].contains(baseline["run_id"].as_str().unwrap())
            && f[0].contains("max_drop is 25.0 %"),
        "{f:?}"
    );
    let axev = c["counts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "employees[axev]")
        .unwrap();
    assert_eq!(axev["max_drop_status"], "passed");

    // A failed drill is no baseline: the next drill still compares with the
    // healthy one.
    let run = drill(&config, &hive);
    let (_, again) = report_of(&run, &reports);
    assert_eq!(run.code, 1);
    assert_eq!(
        check(&again, "hive", "hive-tenant-counts")["counts"][0]["baseline_run_id"],
        baseline["run_id"]
    );
}

#[test]
fn command_checks_fail_time_out_and_never_show_the_password() {
    require_environment();
    let file = dumps().join(healthy_file("hive"));
    let repo = TestRepo::new(&[(&file, "hive-postgres.sql")]);
    let work = tempfile::tempdir().unwrap();
    let scratch = work.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let s = scratch.display();
    let checks = vec![
        (
            "exits-one.toml",
            "kind = \"command\"\ndatabase = \"hive\"\ncommand = [\"sh\", \"-c\", \"echo checking tenants; echo 'tenant axev has no employees' >&2; exit 1\"]\n".to_string(),
        ),
        (
            "cannot-check.toml",
            "kind = \"command\"\ndatabase = \"hive\"\nerror_codes = [2]\ncommand = [\"sh\", \"-c\", \"echo 'cannot reach the database' >&2; exit 2\"]\n".to_string(),
        ),
        (
            "hangs.toml",
            format!("kind = \"command\"\ndatabase = \"hive\"\ntimeout = \"2s\"\ncommand = [\"sh\", \"-c\", \"echo $$ > {s}/hang.pid; sleep 600 & echo $! > {s}/child.pid; wait\"]\n"),
        ),
        (
            "prints-password.toml",
            format!(
                "kind = \"command\"\ndatabase = \"hive\"\ncommand = [\"sh\", \"-c\", \"\"\"\
printf %s \"$PGPASSWORD\" > {s}/password
echo \"url=$DATABASE_URL\"
echo \"password=$PGPASSWORD\"
env | grep '^PG' | sort
psql -X -At -c 'select count(*) from axec.employees'
\"\"\"]\n"
            ),
        ),
    ];
    let config = write_config(work.path(), &repo, &[healthy("hive")], &checks);
    let reports = work.path().join("reports");
    // The operator's shell may point libpq at production; the check must
    // not inherit that.
    let run = drill_env(
        &config,
        &["run", "--tier", "local"],
        &[
            ("PGHOSTADDR", "192.0.2.1"),
            ("PGSERVICE", "production"),
            ("DATABASE_URL", "postgresql://prod/db"),
        ],
    );
    let (json, report) = report_of(&run, &reports);
    assert_eq!(run.code, 1, "{report:#}");
    assert_eq!(report["verdict"], "failed");
    assert_no_sandbox_left(report["run_id"].as_str().unwrap());

    let one = check(&report, "hive", "exits-one");
    assert_eq!(one["status"], "failed", "{one:#}");
    assert!(findings(one)[0].contains("exited with code 1"), "{one:#}");
    let out: Vec<&str> = one["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(out, ["checking tenants", "tenant axev has no employees"]);

    let cannot = check(&report, "hive", "cannot-check");
    assert_eq!(
        cannot["status"], "error",
        "an error_codes exit is no verdict: {cannot:#}"
    );
    assert!(
        cannot["detail"]
            .as_str()
            .unwrap()
            .contains("cannot reach the database"),
        "{cannot:#}"
    );

    let hang = check(&report, "hive", "hangs");
    assert_eq!(hang["status"], "error", "{hang:#}");
    assert!(
        hang["detail"]
            .as_str()
            .unwrap()
            .contains("did not finish within 2s"),
        "{hang:#}"
    );
    for pidfile in ["hang.pid", "child.pid"] {
        let pid = std::fs::read_to_string(scratch.join(pidfile)).unwrap();
        let alive = std::process::Command::new("kill")
            .args(["-0", pid.trim()])
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(!alive, "{pidfile} {pid} still runs after the timeout");
    }

    let pw = check(&report, "hive", "prints-password");
    assert_eq!(pw["status"], "passed", "{pw:#}");
    let password = std::fs::read_to_string(scratch.join("password")).unwrap();
    assert_eq!(
        password.len(),
        32,
        "the sandbox password reached the command"
    );
    let out: Vec<String> = pw["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    let facts = source_facts();
    assert_eq!(
        out.last().unwrap(),
        &facts["hive"]["axec.employees"].to_string(),
        "psql reached the sandbox: {out:?}"
    );
    assert!(out.contains(&"password=***".to_string()), "{out:?}");
    assert!(
        out.iter()
            .any(|l| l.starts_with("url=postgresql://drill_sandbox:***@127.0.0.1:")),
        "{out:?}"
    );
    assert!(out.contains(&"PGPASSWORD=***".to_string()), "{out:?}");
    assert!(
        out.iter()
            .all(|l| !l.starts_with("PGHOSTADDR") && !l.starts_with("PGSERVICE")),
        "{out:?}"
    );
    for file in [
        json.clone(),
        json.with_extension("md"),
        reports.join("history.csv"),
    ] {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains(&password),
            "{} holds the sandbox password",
            file.display()
        );
    }
    assert!(
        !run.stderr.contains(&password),
        "stderr holds the sandbox password"
    );

    // --check narrows the run; a check that could not finish leaves no
    // verdict (error, exit 3), never a pass.
    let run = drill(&config, &["run", "--tier", "local", "--check", "hangs"]);
    let (_, only) = report_of(&run, &reports);
    assert_eq!(run.code, 3, "{only:#}");
    assert_eq!(only["verdict"], "error");
    let names: Vec<(String, String)> = check_statuses(&only, "hive");
    assert_eq!(names, [("hangs".to_string(), "error".to_string())]);
    assert!(only["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r.as_str().unwrap().contains("hangs")));
}
