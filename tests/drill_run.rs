//! `drill run` end to end: real restic repositories made by restic from real
//! pg_dump/pg_dumpall output, restored into real PostgreSQL sandboxes in
//! Docker. Every failure mode has a fixture that must make the drill fail
//! for that reason, and no sandbox may remain after any run. The faults
//! (damaged dumps and repositories, signals, timeouts, engine trouble) are
//! in `faults.rs`.

mod common;

use common::*;

fn healthy_files() -> Vec<(std::path::PathBuf, &'static str)> {
    let d = dumps();
    HEALTHY.iter().map(|(f, _)| (d.join(f), *f)).collect()
}

fn as_refs<'a>(
    v: &'a [(std::path::PathBuf, &'static str)],
) -> Vec<(&'a std::path::Path, &'static str)> {
    v.iter().map(|(p, n)| (p.as_path(), *n)).collect()
}

fn sql_check(database: &str, query: &str, expect: &str) -> String {
    format!("kind = \"sql\"\ndatabase = \"{database}\"\nquery = \"\"\"\n{query}\n\"\"\"\n\n[expect]\n{expect}\n")
}

#[test]
fn healthy_snapshot_of_six_databases_passes() {
    require_environment();
    let facts = source_facts();
    let files = healthy_files();
    let repo = TestRepo::new(&as_refs(&files));
    let work = tempfile::tempdir().unwrap();
    let dbs: Vec<&Db> = HEALTHY.iter().map(|(_, d)| d).collect();
    let checks = vec![
        (
            "pagila-rentals.toml",
            sql_check("pagila", "select count(*) from rental", &format!("equals = {}", facts["pagila"]["rental"])),
        ),
        (
            "frame-balanced.toml",
            sql_check(
                "frame",
                "select entry_id, sum(debit) - sum(credit) as imbalance from journal_line group by entry_id having sum(debit) <> sum(credit)",
                "no_rows = true",
            ),
        ),
        ("blueprint-workspaces.toml", sql_check("blueprint", "select count(*) from \"Workspace\"", "min = 1")),
        (
            "hive-axec.toml",
            sql_check("hive", "select count(*) from axec.employees", &format!("equals = {}", facts["hive"]["axec.employees"])),
        ),
        (
            "index-blobs.toml",
            sql_check("index", "select count(*) from evidence_blob", &format!("equals = {}", facts["index"]["evidence_blob"])),
        ),
        (
            "mysrt-users.toml",
            sql_check("mysrt", "select count(*) from users", &format!("equals = {}", facts["mysrt"]["users"])),
        ),
    ];
    let config = write_config(work.path(), &repo, &dbs, &checks);

    let run = drill(&config, &["run", "--tier", "local"]);
    let (json_path, report) = report_of(&run, &work.path().join("reports"));
    assert_eq!(run.code, 0, "stderr:\n{}\nreport: {report:#}", run.stderr);
    assert_eq!(report["format_version"], 1);
    assert_eq!(report["verdict"], "passed");
    assert_eq!(report["tier"], "local");
    assert!(report["rto_seconds"].as_f64().unwrap() > 0.0);
    assert!(report["snapshot"]["age_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(report["policy"]["max_rto"]["status"], "passed");
    assert_eq!(report["policy"]["max_snapshot_age"]["status"], "passed");
    for (_, db) in HEALTHY.iter() {
        let d = database(&report, db.name);
        assert_eq!(d["restore"]["status"], "passed", "{}: {d:#}", db.name);
        assert!(d["restore"]["bytes"].as_u64().unwrap() > 0, "{}", db.name);
        assert!(
            d["restore"]["seconds"].as_f64().unwrap() > 0.0,
            "{}",
            db.name
        );
        let checks = d["checks"].as_array().unwrap();
        assert_eq!(checks.len(), 1, "{}", db.name);
        assert_eq!(checks[0]["status"], "passed", "{}: {d:#}", db.name);
    }
    // The gzip'd dump was decompressed on the way: more bytes restored than stored.
    let index = database(&report, "index");
    assert!(index["restore"]["restored_bytes"].as_u64() > index["restore"]["bytes"].as_u64());
    let rentals = &database(&report, "pagila")["checks"][0];
    assert!(
        rentals["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("value {}", facts["pagila"]["rental"])),
        "{rentals}"
    );

    let md = std::fs::read_to_string(json_path.with_extension("md")).unwrap();
    assert!(
        md.contains("PASSED") && md.contains("pagila-rentals"),
        "{md}"
    );
    let history = std::fs::read_to_string(work.path().join("reports/history.csv")).unwrap();
    let rows: Vec<&str> = history.lines().collect();
    assert_eq!(rows.len(), 2, "{history}");
    assert!(rows[0].starts_with("started_at,tier,snapshot"));
    assert!(
        rows[1].contains(",local,") && rows[1].contains(",passed,"),
        "{history}"
    );
    assert_no_sandbox_left(report["run_id"].as_str().unwrap());
}

#[test]
fn failing_sql_check_exits_1_with_its_finding_reported() {
    require_environment();
    let d = dumps();
    let repo = TestRepo::new(&[(&d.join("pagila.dump"), "pagila.dump")]);
    let work = tempfile::tempdir().unwrap();
    let checks = vec![
        (
            "rentals-wrong.toml",
            sql_check("pagila", "select count(*) from rental", "equals = 1"),
        ),
        (
            "no-long-titles.toml",
            sql_check(
                "pagila",
                "select film_id, title from film where film_id <= 2 order by film_id",
                "no_rows = true",
            ),
        ),
    ];
    let config = write_config(work.path(), &repo, &[&HEALTHY[5].1], &checks);
    let run = drill(&config, &["--json"]);
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    let stdout: serde_json::Value =
        serde_json::from_str(&run.stdout).expect("--json prints the report");
    assert_eq!(stdout["verdict"], "failed");
    let (json_path, report) = report_of(&run, &work.path().join("reports"));
    let checks = database(&report, "pagila")["checks"]
        .as_array()
        .unwrap()
        .clone();
    let wrong = checks
        .iter()
        .find(|c| c["name"] == "rentals-wrong")
        .unwrap();
    assert_eq!(wrong["status"], "failed");
    assert_eq!(wrong["kind"], "sql");
    assert_eq!(wrong["findings"][0], "value is 16044, expected 1");
    let titles = checks
        .iter()
        .find(|c| c["name"] == "no-long-titles")
        .unwrap();
    assert_eq!(titles["status"], "failed");
    assert_eq!(titles["findings"][0], "film_id=1, title=ACADEMY DINOSAUR");
    let md = std::fs::read_to_string(json_path.with_extension("md")).unwrap();
    assert!(md.contains("value is 16044, expected 1"), "{md}");
    assert!(md.contains("film_id=1, title=ACADEMY DINOSAUR"), "{md}");
    assert_no_sandbox_left(report["run_id"].as_str().unwrap());
}

#[test]
fn check_that_cannot_run_is_an_error_not_a_pass() {
    require_environment();
    let d = dumps();
    let repo = TestRepo::new(&[(&d.join("hive-postgres.sql"), "hive-postgres.sql")]);
    let work = tempfile::tempdir().unwrap();
    let checks = vec![(
        "broken-query.toml",
        sql_check("hive", "select count(*) from no_such_table", "min = 1"),
    )];
    let config = write_config(work.path(), &repo, &[&HEALTHY[2].1], &checks);
    let run = drill(&config, &[]);
    assert_eq!(run.code, 3, "stderr:\n{}", run.stderr);
    let (_, report) = report_of(&run, &work.path().join("reports"));
    assert_eq!(report["verdict"], "error");
    let c = &database(&report, "hive")["checks"][0];
    assert_eq!(c["status"], "error");
    assert!(
        c["detail"].as_str().unwrap().contains("no_such_table"),
        "{c}"
    );
    assert_no_sandbox_left(report["run_id"].as_str().unwrap());
}

#[test]
fn snapshot_id_selects_an_older_snapshot_and_keep_leaves_it_running() {
    require_environment();
    let d = dumps();
    let repo = TestRepo::new(&[(&d.join("hive-postgres.sql"), "hive-postgres.sql")]);
    repo.backup(&[(&d.join("broken/hive-truncated.sql"), "hive-postgres.sql")]);
    let snaps: serde_json::Value =
        serde_json::from_str(&repo.restic(&["snapshots", "--json"], None)).unwrap();
    let first = snaps[0]["id"].as_str().unwrap().to_string();
    let work = tempfile::tempdir().unwrap();
    let config = write_config(work.path(), &repo, &[&HEALTHY[2].1], &[]);

    // latest is the truncated one
    let run = drill(&config, &[]);
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);

    // an unknown id is a usage error
    let run = drill(&config, &["--snapshot", "deadbeef"]);
    assert_eq!(run.code, 2, "stderr:\n{}", run.stderr);
    assert!(
        run.stderr.contains("no snapshot `deadbeef`"),
        "{}",
        run.stderr
    );

    // the first snapshot by id prefix passes; --keep leaves its sandbox
    let run = drill(&config, &["run", "--snapshot", &first[..8], "--keep"]);
    let (_, report) = report_of(&run, &work.path().join("reports"));
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert_eq!(report["snapshot"]["id"], first.as_str());
    let run_id = report["run_id"].as_str().unwrap();
    let running = sandboxes_of_run(run_id, true);
    assert_eq!(running.len(), 1, "--keep keeps the sandbox running");
    let id = running[0].clone();
    assert!(run.stderr.contains("docker exec -it"), "{}", run.stderr);
    let inspect = std::process::Command::new("docker")
        .args([
            "inspect",
            "--format",
            "{{json .HostConfig.PortBindings}} {{json .Config.Labels}}",
            &id,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout).to_string();
    let _ = std::process::Command::new("docker")
        .args(["rm", "-f", "-v", &id])
        .output();
    assert!(
        text.contains("\"HostIp\":\"127.0.0.1\""),
        "published on loopback only: {text}"
    );
    assert!(
        !text.contains("\"HostIp\":\"\""),
        "published on loopback only: {text}"
    );
    assert!(
        text.contains(&format!("\"drill.run-id\":\"{run_id}\"")),
        "{text}"
    );
    assert!(text.contains("\"drill.database\":\"hive\""), "{text}");
}

#[test]
fn password_command_supplies_the_password() {
    require_environment();
    let d = dumps();
    let repo = TestRepo::new(&[(&d.join("mysrt-postgres.sql.zst"), "mysrt-postgres.sql.zst")]);
    let work = tempfile::tempdir().unwrap();
    let config = write_config(work.path(), &repo, &[&HEALTHY[3].1], &[]);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("password_file = \"{}\"", repo.password_file.display()),
        &format!(
            "password_command = \"cat '{}'\"",
            repo.password_file.display()
        ),
    );
    assert!(text.contains("password_command"));
    std::fs::write(&config, text).unwrap();
    let run = drill(&config, &[]);
    let (_, report) = report_of(&run, &work.path().join("reports"));
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert_eq!(database(&report, "mysrt")["restore"]["status"], "passed");
    assert_no_sandbox_left(report["run_id"].as_str().unwrap());

    // a failing password command is an environment error naming the tier
    let text = std::fs::read_to_string(&config).unwrap();
    let broken = text.replace(
        "password_command = \"cat '",
        "password_command = \"cat '/nonexistent",
    );
    std::fs::write(&config, broken).unwrap();
    let run = drill(&config, &[]);
    assert_eq!(run.code, 3, "stderr:\n{}", run.stderr);
    assert!(
        run.stderr.contains("password of tier `local`"),
        "{}",
        run.stderr
    );
}
