//! MariaDB drills against real parts: dumps made by Debian's
//! `mariadb-dump --all-databases` and increments made by `mariadb-binlog`
//! (fixtures/generate.sh), real restic repositories, and sandboxes of the
//! offline `drill-mariadb` image (Debian's `mariadb-server`).
//!
//! - a snapshot holding a PostgreSQL dump and a MariaDB dump with two
//!   increments passes; each database reports its kind and server version;
//!   the row counts match the source after the last increment;
//! - each failure mode exits 1 naming the database and the reason: a
//!   truncated dump, an SQL error mid-dump, a missing increment, a wiped
//!   table (`row-counts`), a flipped BLOB byte (`blob-roundtrip`), a dump
//!   without its trailer; a damaged table file is caught by `check-table`;
//! - an `amcheck` check aimed at a MariaDB database is a config error.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{database, drill, dumps, report_of, TestRepo};
use serde_json::Value;

/// The MariaDB image (`scripts/build-image.sh mariadb`).
fn mariadb_image() -> String {
    std::env::var("DRILL_TEST_MARIADB_IMAGE").unwrap_or_else(|_| "drill-mariadb:10.11".into())
}

fn require_mariadb() {
    common::require_environment();
    let img = std::process::Command::new("docker")
        .args(["image", "inspect", &mariadb_image()])
        .output();
    assert!(
        img.as_ref().is_ok_and(|o| o.status.success()),
        "image {} is missing: run scripts/setup.sh",
        mariadb_image()
    );
}

fn mdumps() -> PathBuf {
    dumps().join("mariadb")
}

fn facts() -> Value {
    serde_json::from_slice(&std::fs::read(mdumps().join("facts.json")).unwrap()).unwrap()
}

/// The `[[databases]]` body of the MariaDB database `gym` whose dump is
/// `/dumps/<dump>`, with `extra` lines.
fn gym(dump: &str, extra: &str) -> String {
    format!(
        "name = \"gym\"\nkind = \"mariadb\"\npath = \"/dumps/{dump}\"\nimage = \"{}\"\n{extra}\n",
        mariadb_image()
    )
}

const INCREMENTS: &str = "increments = [\"/dumps/incremental_*.sql\"]";

/// A drill of `dbs` over a snapshot of `files` with `checks`: its exit,
/// stderr and report.
fn drill_of(
    files: &[(&Path, &str)],
    dbs: &[String],
    checks: &[(&str, String)],
) -> (i32, String, Value) {
    require_mariadb();
    let repo = TestRepo::new(files);
    let dir = tempfile::tempdir().unwrap();
    let mut t = format!(
        "timezone = \"Asia/Seoul\"\nreports_dir = \"reports\"\nchecks_dir = \"checks\"\n\n\
         [policy]\nmax_rto = \"1h\"\nmax_snapshot_age = \"26h\"\n\n\
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
    if run.code == 2 {
        return (run.code, run.stderr, Value::Null);
    }
    let (_, report) = report_of(&run, &dir.path().join("reports"));
    (run.code, run.stderr, report)
}

fn row_counts_check(min_payments: u64) -> String {
    let counts = &facts()["row_counts"]["incremental_02"];
    let mut t = "kind = \"row-counts\"\ndatabase = \"gym\"\n".to_string();
    for table in [
        "members",
        "member_faces",
        "face_recognition_logs",
        "payments",
    ] {
        let min = if table == "payments" {
            min_payments
        } else {
            counts[table].as_u64().unwrap()
        };
        t.push_str(&format!("\n[[tables]]\ntable = \"{table}\"\nmin = {min}\n"));
    }
    t
}

fn blob_check() -> String {
    "kind = \"blob-roundtrip\"\ndatabase = \"gym\"\ntable = \"member_faces\"\nid_column = \"member_id\"\ndata_column = \"encoding\"\ndigest_column = \"encoding_sha256\"\n".into()
}

fn full_with_increments() -> Vec<(PathBuf, &'static str)> {
    vec![
        (mdumps().join("gym-full.sql.gz"), "gym-full.sql.gz"),
        (
            mdumps().join("increments/incremental_01.sql"),
            "incremental_01.sql",
        ),
        (
            mdumps().join("increments/incremental_02.sql"),
            "incremental_02.sql",
        ),
    ]
}

fn refs<'a>(files: &'a [(PathBuf, &'static str)]) -> Vec<(&'a Path, &'static str)> {
    files.iter().map(|(p, n)| (p.as_path(), *n)).collect()
}

#[test]
fn postgresql_and_mariadb_with_increments_pass() {
    let mut files = full_with_increments();
    files.push((
        dumps().join(common::healthy_file("frame")),
        common::healthy_file("frame"),
    ));
    let frame = common::healthy("frame");
    let pg = format!(
        "name = \"frame\"\npath = \"/dumps/{}\"\nformat = \"{}\"\n",
        common::healthy_file("frame"),
        frame.format
    );
    let members = facts()["row_counts"]["incremental_02"]["members"]
        .as_u64()
        .unwrap();
    let checks = [
        ("gym-counts.toml", row_counts_check(1)),
        ("gym-blobs.toml", blob_check()),
        (
            "gym-members.toml",
            format!("kind = \"sql\"\ndatabase = \"gym\"\nquery = \"SELECT COUNT(*) FROM members\"\n[expect]\nequals = {members}\n"),
        ),
        ("gym-tables.toml", "kind = \"check-table\"\ndatabase = \"gym\"\n".into()),
        (
            "gym-cli.toml",
            "kind = \"command\"\ndatabase = \"gym\"\ncommand = [\"sh\", \"-c\", \"case \\\"$DATABASE_URL\\\" in mysql://root:*@127.0.0.1:$MYSQL_TCP_PORT/gym) test -n \\\"$MYSQL_PWD\\\" && test \\\"$USER\\\" = root;; *) exit 1;; esac\"]\n".into(),
        ),
    ];
    let (code, stderr, report) = drill_of(
        &refs(&files),
        &[pg, gym("gym-full.sql.gz", INCREMENTS)],
        &checks,
    );
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    let g = database(&report, "gym");
    assert_eq!(g["kind"], "mariadb");
    assert_eq!(g["format"], "mysqldump");
    assert!(
        g["restore"]["server_version"]
            .as_str()
            .unwrap()
            .contains("MariaDB"),
        "{g:#}"
    );
    assert_eq!(g["restore"]["tool"], "mariadb");
    // The dump's own header: the server it came from and the tool.
    let dump = &g["restore"]["dump"];
    assert!(
        dump["tool"]
            .as_str()
            .unwrap()
            .starts_with("mariadb-dump 10."),
        "{dump:#}"
    );
    assert!(
        dump["server"]
            .as_str()
            .unwrap()
            .starts_with(facts()["server_version"].as_str().unwrap()),
        "{dump:#}"
    );
    let incs = g["restore"]["increments"].as_array().unwrap();
    assert_eq!(incs.len(), 2, "{g:#}");
    for (i, inc) in incs.iter().enumerate() {
        assert_eq!(inc["path"], format!("/dumps/incremental_0{}.sql", i + 1));
        assert_eq!(inc["status"], "passed");
        assert!(inc["bytes"].as_u64().unwrap() > 0);
    }
    // Row counts equal the source's after the last increment.
    let counts = &facts()["row_counts"]["incremental_02"];
    let check = common::check(&report, "gym", "gym-counts");
    for c in check["counts"].as_array().unwrap() {
        let table = c["name"].as_str().unwrap();
        assert_eq!(c["rows"], counts[table], "{table}: {check:#}");
    }
    let blobs = common::check(&report, "gym", "gym-blobs");
    assert_eq!(blobs["rows_verified"], counts["member_faces"], "{blobs:#}");
    let f = database(&report, "frame");
    assert_eq!(f["kind"], "postgresql");
    assert_eq!(f["restore"]["status"], "passed");
}

/// A drill of `gym` alone that must fail: exit 1, the reason naming the
/// database and containing `want`.
fn assert_fails(
    files: &[(PathBuf, &'static str)],
    db: String,
    checks: &[(&str, String)],
    want: &str,
) -> Value {
    let (code, stderr, report) = drill_of(&refs(files), &[db], checks);
    assert_eq!(code, 1, "{stderr}\n{report:#}");
    let reasons = report["reasons"].to_string();
    assert!(
        reasons.contains("gym") && reasons.contains(want),
        "want `{want}` in {reasons}\n{report:#}"
    );
    report
}

#[test]
fn a_truncated_dump_fails() {
    let files = vec![(mdumps().join("broken/gym-truncated.sql"), "gym-full.sql")];
    let r = assert_fails(&files, gym("gym-full.sql", ""), &[], "is truncated");
    assert_eq!(database(&r, "gym")["restore"]["cause"], "truncated");
}

#[test]
fn an_sql_error_mid_dump_fails() {
    let files = vec![(mdumps().join("broken/gym-sql-error.sql"), "gym-full.sql")];
    let r = assert_fails(
        &files,
        gym("gym-full.sql", ""),
        &[],
        "mariadb exited with 1",
    );
    assert_eq!(database(&r, "gym")["restore"]["class"], "damage");
}

#[test]
fn a_missing_increment_fails() {
    let files = vec![
        (mdumps().join("gym-full.sql.gz"), "gym-full.sql.gz"),
        (
            mdumps().join("increments/incremental_01.sql"),
            "incremental_01.sql",
        ),
        (
            mdumps().join("increments/incremental_02.sql"),
            "incremental_03.sql",
        ),
    ];
    assert_fails(
        &files,
        gym("gym-full.sql.gz", INCREMENTS),
        &[],
        "number 2 is missing",
    );
}

#[test]
fn a_wiped_table_fails_row_counts() {
    let files = vec![(
        mdumps().join("variants/gym-payments-wiped.sql.gz"),
        "gym-full.sql.gz",
    )];
    let r = assert_fails(
        &files,
        gym("gym-full.sql.gz", ""),
        &[("gym-counts.toml", row_counts_check(1))],
        "gym-counts",
    );
    let c = common::check(&r, "gym", "gym-counts");
    assert!(c["findings"].to_string().contains("payments"), "{c:#}");
}

#[test]
fn a_flipped_blob_byte_fails_blob_roundtrip() {
    let files = vec![(
        mdumps().join("variants/gym-face-flipped.sql.gz"),
        "gym-full.sql.gz",
    )];
    let r = assert_fails(
        &files,
        gym("gym-full.sql.gz", ""),
        &[("gym-blobs.toml", blob_check())],
        "gym-blobs",
    );
    let c = common::check(&r, "gym", "gym-blobs");
    let member = facts()["face_flipped_member_id"].as_u64().unwrap();
    assert_eq!(c["findings"].as_array().unwrap().len(), 1, "{c:#}");
    assert!(
        c["findings"][0]
            .as_str()
            .unwrap()
            .starts_with(&format!("member_id={member}:")),
        "{c:#}"
    );
    // The finding as data: where and how bad.
    assert_eq!(c["located"][0]["table"], "member_faces", "{c:#}");
    assert_eq!(
        c["located"][0]["row"],
        format!("member_id={member}"),
        "{c:#}"
    );
    assert_eq!(c["located"][0]["severity"], "error", "{c:#}");
}

#[test]
fn a_dump_without_trailer_fails_unless_accepted() {
    let files = vec![(
        mdumps().join("variants/gym-skip-comments.sql.gz"),
        "gym-full.sql.gz",
    )];
    assert_fails(
        &files,
        gym("gym-full.sql.gz", ""),
        &[],
        "accept_missing_trailer = true",
    );
    let (code, stderr, report) = drill_of(
        &refs(&files),
        &[gym("gym-full.sql.gz", "accept_missing_trailer = true")],
        &[],
    );
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    let notes = database(&report, "gym")["restore"]["notes"].to_string();
    assert!(notes.contains("--skip-comments"), "{notes}");
}

#[test]
fn amcheck_on_a_mariadb_database_is_a_config_error() {
    let files = full_with_increments();
    let (code, stderr, _) = drill_of(
        &refs(&files[..1]),
        &[gym("gym-full.sql.gz", "")],
        &[(
            "gym-amcheck.toml",
            "kind = \"amcheck\"\ndatabase = \"gym\"\n".into(),
        )],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("amcheck") && stderr.contains("gym") && stderr.contains("mariadb"),
        "{stderr}"
    );
}

#[tokio::test]
async fn check_table_reports_a_damaged_table_file() {
    use drill::checks::{self, CheckContext};
    use drill::config::{CheckDefinition, CheckSpec};
    use drill::report::Status;
    use drill::sandbox::{DockerEngine, SandboxRequest};
    use mysql_async::prelude::Queryable;

    require_mariadb();
    let run_id = format!("test-checktable-{}", std::process::id());
    let engine = DockerEngine::connect().await.expect("Docker engine");
    let sandbox = engine
        .start(&SandboxRequest {
            run_id: run_id.clone(),
            tier: "test".into(),
            database: "gym".into(),
            snapshot: None,
            image: mariadb_image(),
            memory_bytes: 1 << 30,
            cpus: 1.0,
            startup_timeout: Duration::from_secs(120),
            tuning: true,
            kind: drill::kind::by_name("mariadb").unwrap(),
            held: false,
        })
        .await
        .expect("sandbox starts");
    let result = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
        let mut conn = drill::kind::mariadb::connect(&sandbox.endpoint(), None).await.unwrap();
        // A MyISAM table: its index file is read through the OS, so a
        // damage written under the server is seen once the table is
        // reopened (FLUSH TABLES closes it).
        conn.query_drop(
            "CREATE DATABASE gym; USE gym; \
             CREATE TABLE visits (id INT PRIMARY KEY, card VARCHAR(64), KEY (card)) ENGINE=MyISAM; \
             INSERT INTO visits SELECT seq, MD5(seq) FROM seq_1_to_20000;",
        )
        .await
        .unwrap();
        let def = CheckDefinition {
            name: "tables".into(),
            file: "check.toml".into(),
            database: None,
            dbname: None,
            description: None,
            timeout: Duration::from_secs(120),
            spec: CheckSpec::CheckTable { extended: true },
        };
        let baselines = Ok(Default::default());
        let ctx = CheckContext {
            sandbox: &sandbox,
            database: "gym",
            dbname: "gym",
            tier: "test",
            baselines: &baselines,
        };
        let healthy = checks::run(&def, &ctx).await;
        assert_eq!(healthy.status, Status::Passed, "{healthy:#?}");

        conn.query_drop("FLUSH TABLES").await.unwrap();
        // (a sandbox from a template keeps its data directory elsewhere)
        let datadir: String = conn.query_first("SELECT @@datadir").await.unwrap().unwrap();
        let damage = format!("printf '\\377\\377\\377\\377\\377\\377\\377\\377\\377\\377\\377\\377\\377\\377\\377\\377' \
             | dd of={datadir}/gym/visits.MYI bs=1 seek=300000 conv=notrunc status=none");
        let out = sandbox
            .exec_with_input(&["sh", "-c", &damage], None::<tokio::io::Empty>)
            .await
            .unwrap();
        assert!(out.succeeded(), "damage the table: {:?}", out.output);
        let damaged = checks::run(&def, &ctx).await;
        assert_eq!(damaged.status, Status::Failed, "{damaged:#?}");
        assert!(damaged.findings[0].starts_with("visits:"), "{damaged:#?}");
        let _ = conn.disconnect().await;
    }))
    .await;
    sandbox.remove().await;
    common::assert_no_sandbox_left(&run_id);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// A table's entry in a database diff.
fn diff_table<'a>(diff: &'a Value, name: &str) -> &'a Value {
    diff["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == name)
        .unwrap_or_else(|| panic!("no table {name} in {diff:#}"))
}

#[test]
fn bisect_diff_and_extract_read_mariadb() {
    require_mariadb();
    // Night 1: the full dump and its increments; night 2: a dump whose
    // payments were wiped.
    let repo = TestRepo::empty();
    let night1 = full_with_increments();
    repo.backup_at(&refs(&night1), "2026-11-01 03:00:00");
    let night2 = vec![(
        mdumps().join("variants/gym-payments-wiped.sql.gz"),
        "gym-full.sql.gz",
    )];
    repo.backup_at(&refs(&night2), "2026-11-02 03:00:00");
    let ids: Vec<String> = repo
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("checks")).unwrap();
    std::fs::write(
        dir.path().join("checks/gym-counts.toml"),
        row_counts_check(1),
    )
    .unwrap();
    let config = dir.path().join("drill.toml");
    std::fs::write(
        &config,
        format!(
            "timezone = \"Asia/Seoul\"\nreports_dir = \"reports\"\nchecks_dir = \"checks\"\n\n\
             [tiers.local]\nrepository = \"{}\"\npassword_file = \"{}\"\n\n\
             [sandbox]\nmemory = \"1GiB\"\ncpus = 1.0\nstartup_timeout = \"120s\"\n\n[[databases]]\n{}",
            repo.repo.display(),
            repo.password_file.display(),
            gym("gym-full.sql.gz", INCREMENTS)
        ),
    )
    .unwrap();

    // bisect: night 2 fails row-counts, night 1 passes; the table diff
    // between them says payments lost every row and nothing else changed.
    let run = drill(&config, &["bisect", "--tier", "local", "--json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let rec: Value = serde_json::from_str(&run.stdout).unwrap();
    common::assert_no_sandbox_left(rec["run_id"].as_str().unwrap());
    assert_eq!(rec["last_valid"]["id"], ids[0].as_str(), "{rec:#}");
    assert_eq!(rec["first_invalid"]["id"], ids[1].as_str(), "{rec:#}");
    let diff = &rec["diff"][0];
    assert_eq!(diff["status"], "passed", "{diff:#}");
    let payments = diff_table(diff, "payments");
    let rows = facts()["row_counts"]["incremental_02"]["payments"].clone();
    assert_eq!(payments["rows_a"], rows, "{payments:#}");
    assert_eq!(payments["rows_b"], 0);
    assert_eq!(payments["removed"], rows);
    assert_eq!(payments["matched_by"], "primary key (id)");
    assert_eq!(
        diff["tables"][0]["table"], "payments",
        "ranked first: {diff:#}"
    );
    for t in ["members", "member_faces", "face_recognition_logs"] {
        assert_eq!(diff_table(diff, t)["change"], "identical", "{diff:#}");
    }
    assert_eq!(diff["schema_identical"], true, "{diff:#}");

    // diff of the same two snapshots, directly.
    let run = drill(
        &config,
        &[
            "diff",
            "--tier",
            "local",
            &ids[0][..8],
            &ids[1][..8],
            "--json",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rec: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(diff_table(&rec["databases"][0], "payments")["rows_b"], 0);

    // extract payments from night 1.
    let out = dir.path().join("payments.sql");
    let run = drill(
        &config,
        &[
            "extract",
            "--tier",
            "local",
            "--snapshot",
            &ids[0][..8],
            "--database",
            "gym",
            "--table",
            "payments",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rec: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(rec["tables"][0]["rows"], rows, "{rec:#}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.starts_with("-- drill extract: tier local"),
        "{}",
        &text[..200]
    );
    assert!(
        text.contains("CREATE TABLE `payments`"),
        "{}",
        &text[..2000.min(text.len())]
    );
    assert!(text.contains("INSERT INTO `payments`"));
    assert!(
        !text.contains("CREATE TABLE `members`"),
        "only the table asked for"
    );
}
