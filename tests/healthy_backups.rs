//! A healthy backup is never called bad: dumps that name roles nobody
//! configured, dumps from a newer PostgreSQL, and dumps that need an
//! extension the sandbox lacks, each against real restic repositories,
//! real dumps and real sandboxes.
//!
//! - roles: `pg_dump` plain, custom and `--use-set-session-authorization`
//!   dumps whose objects belong to `postgres` and two application roles,
//!   with grants, default privileges and a policy for a third, pass with no
//!   `roles` configured, and the report lists the roles drill created;
//! - versions: a dump made by PostgreSQL 17's `pg_dump` (in the
//!   `drill-postgres:17` image) is refused by a PostgreSQL 15 sandbox with
//!   exit 3 naming both versions, and passes with `image =
//!   "drill-postgres:{major}"`;
//! - extensions: a dump of a database with `CREATE EXTENSION ip4r` (made on
//!   this host, which has Debian's `postgresql-15-ip4r`) exits 3 naming the
//!   extension, because the sandbox image does not have it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{database, drill, dumps, report_of, require_environment, TestRepo};
use serde_json::Value;

/// The PostgreSQL 17 image (`scripts/build-image.sh 17`).
fn image_17() -> String {
    std::env::var("DRILL_TEST_IMAGE_17").unwrap_or_else(|_| "drill-postgres:17".into())
}

/// A config with `dbs` as raw `[[databases]]` bodies.
fn config(
    dir: &Path,
    repo: &TestRepo,
    image: &str,
    dbs: &[String],
    checks: &[(&str, &str)],
) -> PathBuf {
    let mut t = format!(
        "timezone = \"Asia/Seoul\"\nreports_dir = \"reports\"\nchecks_dir = \"checks\"\n\n\
         [policy]\nmax_rto = \"1h\"\nmax_snapshot_age = \"26h\"\n\n\
         [tiers.local]\nrepository = \"{}\"\npassword_file = \"{}\"\n\n\
         [sandbox]\nimage = \"{image}\"\nmemory = \"1GiB\"\ncpus = 1.0\nstartup_timeout = \"120s\"\n",
        repo.repo.display(),
        repo.password_file.display()
    );
    for d in dbs {
        t.push_str("\n[[databases]]\n");
        t.push_str(d);
    }
    std::fs::create_dir_all(dir.join("checks")).unwrap();
    for (name, body) in checks {
        std::fs::write(dir.join("checks").join(name), body).unwrap();
    }
    let p = dir.join("drill.toml");
    std::fs::write(&p, t).unwrap();
    p
}

/// A drill of `dbs` from `repo` in a new directory: its run and report.
fn drill_of(
    repo: &TestRepo,
    image: &str,
    dbs: &[String],
    checks: &[(&str, &str)],
) -> (common::Run, Value) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), repo, image, dbs, checks);
    let run = drill(&cfg, &["run", "--no-notify"]);
    let (_, report) = report_of(&run, &dir.path().join("reports"));
    (run, report)
}

fn roles_created(report: &Value, db: &str) -> Vec<String> {
    database(report, db)["restore"]["roles_created"]
        .as_array()
        .unwrap_or_else(|| panic!("roles_created of {db}: {report:#}"))
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn roles_a_pg_dump_names_are_created_without_configuration() {
    require_environment();
    let d = dumps();
    let repo = TestRepo::new(&[
        (&d.join("roles/shop.sql"), "shop.sql"),
        (&d.join("roles/shop.dump"), "shop.dump"),
        (
            &d.join("roles/shop-session-auth.sql"),
            "shop-session-auth.sql",
        ),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let facts = common::source_facts();
    let orders = facts["shop"]["sales.orders"].as_i64().unwrap();
    let count_check = |db: &str| {
        format!(
            "kind = \"sql\"\ndatabase = \"{db}\"\nquery = \"SELECT count(*) FROM sales.orders\"\nexpect = {{ equals = {orders} }}\n"
        )
    };
    let owner_check = "kind = \"sql\"\ndatabase = \"shop_custom\"\nquery = \"SELECT count(*) FROM pg_tables WHERE tableowner = 'shop_owner' AND tablename = 'orders'\"\nexpect = { equals = 1 }\n";
    let checks = [
        ("plain-orders.toml", count_check("shop_plain")),
        ("custom-orders.toml", count_check("shop_custom")),
        ("configured-orders.toml", count_check("shop_configured")),
        ("custom-owner.toml", owner_check.to_string()),
    ];
    let checks: Vec<(&str, &str)> = checks.iter().map(|(n, b)| (*n, b.as_str())).collect();
    let cfg = config(
        dir.path(),
        &repo,
        &common::image(),
        &[
            "name = \"shop_plain\"\npath = \"/dumps/shop.sql\"\nformat = \"plain\"\n".into(),
            "name = \"shop_custom\"\npath = \"/dumps/shop.dump\"\nformat = \"custom\"\n".into(),
            // `roles` stays valid: created up front, the rest discovered.
            "name = \"shop_configured\"\npath = \"/dumps/shop.sql\"\nformat = \"plain\"\nroles = [\"shop_owner\"]\n".into(),
        ],
        &checks,
    );
    let run = drill(&cfg, &["run", "--no-notify"]);
    let (_, report) = report_of(&run, &dir.path().join("reports"));
    assert_eq!(run.code, 0, "stderr:\n{}\nreport: {report:#}", run.stderr);
    let all = ["Shop Reader", "postgres", "shop_owner", "shop_writer"];
    for db in ["shop_plain", "shop_custom", "shop_configured"] {
        let mut created = roles_created(&report, db);
        created.sort();
        assert_eq!(created, all, "roles created for {db}");
        let r = &database(&report, db)["restore"];
        assert_eq!(r["status"], "passed", "{db}: {r:#}");
        // The head's versions are in the report, with the sandbox's.
        assert!(
            r["dump"]["pg_dump"].as_str().unwrap().starts_with("15."),
            "{db}: {r:#}"
        );
        assert!(r["dump"]["server"].as_str().unwrap().starts_with("15."));
        assert!(r["server_version"].as_str().unwrap().starts_with("15."));
    }
    // Role-like text inside a function body is not a role.
    let text = std::fs::read_to_string(
        dir.path()
            .join("reports")
            .read_dir()
            .unwrap()
            .find_map(|e| {
                let p = e.unwrap().path();
                (p.extension().is_some_and(|x| x == "md")).then_some(p)
            })
            .unwrap(),
    )
    .unwrap();
    assert!(
        text.contains("shop_writer"),
        "the Markdown report lists the roles:\n{text}"
    );
    assert!(!text.contains("ghost"));
}

/// A dump taken with `--use-set-session-authorization` acts as each owner
/// (`SET SESSION AUTHORIZATION 'shop_owner'; CREATE SCHEMA sales;`): drill
/// creates the roles before those statements, and the restore then needs
/// privileges on the database drill created that such a dump does not
/// carry. That is the sandbox's limit, not damage: exit 3 with the fix.
#[test]
fn session_authorization_dump_gets_its_roles_and_an_environment_verdict() {
    require_environment();
    let repo = TestRepo::new(&[(
        &dumps().join("roles/shop-session-auth.sql"),
        "shop-session-auth.sql",
    )]);
    let (run, report) = drill_of(&repo, &common::image(), &["name = \"shop_session\"\npath = \"/dumps/shop-session-auth.sql\"\nformat = \"plain\"\n".into()], &[]);
    assert_eq!(run.code, 3, "stderr:\n{}\nreport: {report:#}", run.stderr);
    let r = &database(&report, "shop_session")["restore"];
    assert_eq!(r["class"], "environment", "{r:#}");
    assert_eq!(r["cause"], "privileges-missing", "{r:#}");
    assert!(roles_created(&report, "shop_session").contains(&"shop_owner".to_string()));
    assert!(r["error"]
        .as_str()
        .unwrap()
        .contains("--use-set-session-authorization"));
}

/// A PostgreSQL 17 server with a small database `ledger`.
fn pg17() -> common::Scratch {
    let pg = common::Scratch::start_image(&image_17());
    let ok = |r: Result<String, String>| r.unwrap_or_else(|e| panic!("psql: {e}"));
    ok(pg.psql("postgres", None, "CREATE DATABASE ledger"));
    ok(pg.psql(
        "ledger",
        None,
        "CREATE TABLE entries (id int PRIMARY KEY, amount numeric NOT NULL); \
         INSERT INTO entries SELECT g, g FROM generate_series(1, 120) g;",
    ));
    pg
}

/// `pg_dump` (PostgreSQL 17's) of `ledger` in `pg` with `args`, into `out`.
fn dump_ledger(pg: &common::Scratch, args: &[&str], out: &Path) {
    let mut a = vec!["exec", "-u", "postgres", pg.name.as_str(), "pg_dump"];
    a.extend_from_slice(args);
    a.push("ledger");
    let o = Command::new("docker").args(&a).output().unwrap();
    assert!(
        o.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::write(out, o.stdout).unwrap();
}

#[test]
fn dump_of_a_newer_postgresql_needs_a_sandbox_as_new() {
    require_environment();
    let work = tempfile::tempdir().unwrap();
    let (plain, custom) = (
        work.path().join("ledger.sql"),
        work.path().join("ledger.dump"),
    );
    {
        let pg = pg17();
        dump_ledger(&pg, &[], &plain);
        dump_ledger(&pg, &["-Fc"], &custom);
    }
    let head = std::fs::read_to_string(&plain).unwrap();
    assert!(
        head.contains("-- Dumped by pg_dump version 17."),
        "a PostgreSQL 17 dump"
    );
    assert!(
        head.contains("transaction_timeout"),
        "pg_dump 17 sets transaction_timeout"
    );
    let repo = TestRepo::new(&[(&plain, "ledger.sql"), (&custom, "ledger.dump")]);
    let dbs = [
        "name = \"ledger\"\npath = \"/dumps/ledger.sql\"\nformat = \"plain\"\n".to_string(),
        "name = \"ledger_custom\"\ndbname = \"ledger_custom\"\npath = \"/dumps/ledger.dump\"\nformat = \"custom\"\n".to_string(),
    ];
    let check = "kind = \"sql\"\ndatabase = \"ledger\"\nquery = \"SELECT count(*) FROM entries\"\nexpect = { equals = 120 }\n";

    // An older sandbox: no attempt, no verdict, both versions named.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &repo,
        "drill-postgres:15",
        &dbs,
        &[("count.toml", check)],
    );
    let run = drill(&cfg, &["run", "--no-notify"]);
    let (_, report) = report_of(&run, &dir.path().join("reports"));
    assert_eq!(run.code, 3, "stderr:\n{}\nreport: {report:#}", run.stderr);
    assert_eq!(report["verdict"], "error");
    for db in ["ledger", "ledger_custom"] {
        let r = &database(&report, db)["restore"];
        assert_eq!(r["status"], "error", "{r:#}");
        let e = r["error"].as_str().unwrap();
        assert!(e.contains("drill-postgres:15 runs PostgreSQL 15."), "{e}");
        assert!(
            e.contains(&format!("{db} was dumped by pg_dump 17.")),
            "{e}"
        );
        assert!(e.contains("image = \"postgres:{major}\""), "{e}");
        assert_eq!(r["class"], "environment");
        assert!(r["dump"]["pg_dump"].as_str().unwrap().starts_with("17."));
    }
    // doctor says the same from the latest snapshot, before any drill.
    let doctor = drill(&cfg, &["doctor"]);
    // The engine runs here: restores read their input through a FIFO.
    assert!(
        doctor
            .stdout
            .lines()
            .any(|l| l.starts_with("ok   engine docker:")
                && l.contains("restores read their input through a pipe in")),
        "{}",
        doctor.stdout
    );
    let line = doctor
        .stdout
        .lines()
        .find(|l| l.contains("database ledger:"))
        .unwrap_or_else(|| panic!("doctor names database ledger:\n{}", doctor.stdout));
    assert!(line.starts_with("FAIL"), "{line}");
    assert!(
        line.contains("by pg_dump 17.")
            && line.contains("drill-postgres:15 runs PostgreSQL 15, older than the dump"),
        "{line}"
    );

    // The image follows the dump: a PostgreSQL 17 sandbox takes it.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &repo,
        "drill-postgres:{major}",
        &dbs,
        &[("count.toml", check)],
    );
    let run = drill(&cfg, &["run", "--no-notify"]);
    let (_, report) = report_of(&run, &dir.path().join("reports"));
    assert_eq!(run.code, 0, "stderr:\n{}\nreport: {report:#}", run.stderr);
    for db in ["ledger", "ledger_custom"] {
        let r = &database(&report, db)["restore"];
        assert_eq!(r["image"], "drill-postgres:17", "{r:#}");
        assert!(
            r["server_version"].as_str().unwrap().starts_with("17."),
            "{r:#}"
        );
    }
}

#[test]
fn extension_the_sandbox_lacks_is_an_environment_error() {
    require_environment();
    let repo = TestRepo::new(&[(&dumps().join("env/ext-ip4r.sql"), "ext-ip4r.sql")]);
    let (run, report) = drill_of(
        &repo,
        &common::image(),
        &["name = \"ext\"\npath = \"/dumps/ext-ip4r.sql\"\nformat = \"plain\"\n".into()],
        &[],
    );
    assert_eq!(run.code, 3, "stderr:\n{}\nreport: {report:#}", run.stderr);
    let r = &database(&report, "ext")["restore"];
    assert_eq!(r["status"], "error");
    assert_eq!(r["class"], "environment");
    assert_eq!(r["cause"], "extension-missing");
    let e = r["error"].as_str().unwrap();
    assert!(e.contains("extension \"ip4r\""), "{e}");
    assert!(e.contains("does not have extension ip4r"), "{e}");
}

/// `pg_dump --clean` without `--if-exists` starts with `DROP`s that an
/// empty database cannot take: a healthy dump the sandbox cannot take as it
/// stands, exit 3 with the fix, never "the backup is bad".
#[test]
fn clean_dump_without_if_exists_is_an_environment_error() {
    require_environment();
    let repo = TestRepo::new(&[(&dumps().join("env/shop-clean.sql"), "shop-clean.sql")]);
    let (run, report) = drill_of(
        &repo,
        &common::image(),
        &["name = \"shop\"\npath = \"/dumps/shop-clean.sql\"\nformat = \"plain\"\n".into()],
        &[],
    );
    assert_eq!(run.code, 3, "stderr:\n{}\nreport: {report:#}", run.stderr);
    let r = &database(&report, "shop")["restore"];
    assert_eq!(r["cause"], "clean-dump", "{r:#}");
    assert!(
        r["error"].as_str().unwrap().contains("--if-exists"),
        "{r:#}"
    );
}

/// When the image follows the dump, a dump whose head names no version
/// because it is empty or cut short is still a bad backup (exit 1), and a
/// plain dump cut inside a statement that names a role is truncated, not a
/// missing role.
#[test]
fn damage_stays_damage_when_the_image_follows_the_dump() {
    require_environment();
    let work = tempfile::tempdir().unwrap();
    let empty = work.path().join("empty.sql");
    std::fs::write(&empty, b"").unwrap();
    let shop = std::fs::read_to_string(dumps().join("roles/shop.sql")).unwrap();
    let cut_at = shop
        .find("OWNER TO postgres;")
        .expect("an OWNER TO postgres")
        + "OWNER TO post".len();
    let cut = work.path().join("shop-cut.sql");
    std::fs::write(&cut, &shop[..cut_at]).unwrap();
    let head_only = work.path().join("shop-head.sql");
    std::fs::write(&head_only, "--\n-- PostgreSQL database dump\n--\n\n").unwrap();
    let repo = TestRepo::new(&[
        (&empty, "empty.sql"),
        (&cut, "shop-cut.sql"),
        (&head_only, "shop-head.sql"),
    ]);
    let (run, report) = drill_of(
        &repo,
        "drill-postgres:{major}",
        &[
            "name = \"empty\"\npath = \"/dumps/empty.sql\"\nformat = \"plain\"\n".into(),
            "name = \"cut\"\npath = \"/dumps/shop-cut.sql\"\nformat = \"plain\"\n".into(),
            "name = \"head\"\npath = \"/dumps/shop-head.sql\"\nformat = \"plain\"\n".into(),
        ],
        &[],
    );
    assert_eq!(run.code, 1, "stderr:\n{}\nreport: {report:#}", run.stderr);
    let error = |db: &str| {
        let r = &database(&report, db)["restore"];
        assert_eq!(r["status"], "failed", "{db}: {r:#}");
        r["error"].as_str().unwrap().to_string()
    };
    assert!(error("empty").contains("is empty"), "{}", error("empty"));
    assert!(error("cut").contains("is truncated"), "{}", error("cut"));
    assert!(
        error("head").contains("without the `Dumped by pg_dump version` comment"),
        "{}",
        error("head")
    );
}

/// A `pg_dumpall` of a cluster with a tablespace in a directory of its
/// host: the sandbox has no such directory, and drill does not drop the
/// tablespace silently: exit 3 naming the directory and the fix.
#[test]
fn tablespace_the_sandbox_lacks_is_an_environment_error() {
    require_environment();
    let repo = TestRepo::new(&[(
        &dumps().join("env/cluster-tablespace.sql"),
        "cluster-tablespace.sql",
    )]);
    let (run, report) = drill_of(
        &repo,
        &common::image(),
        &["name = \"metrics\"\npath = \"/dumps/cluster-tablespace.sql\"\nformat = \"pg_dumpall\"\n".into()],
        &[],
    );
    assert_eq!(run.code, 3, "stderr:\n{}\nreport: {report:#}", run.stderr);
    let r = &database(&report, "metrics")["restore"];
    assert_eq!(r["class"], "environment", "{r:#}");
    assert_eq!(r["cause"], "tablespace-missing", "{r:#}");
    let e = r["error"].as_str().unwrap();
    assert!(
        e.contains("fast-disk") && e.contains("--no-tablespaces"),
        "{e}"
    );
}
