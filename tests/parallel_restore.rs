//! Parallel restore of plain scripts, against real restic repositories,
//! real dumps and real sandboxes:
//!
//! - equivalence: every plain and `pg_dumpall` fixture (frame, index, hive,
//!   mysrt) and plain `pg_dump` scripts of blueprint and Pagila, restored
//!   over one `psql` session and over two (with `COPY` chunks of 4 KiB, so
//!   every table of more than a few rows is cut), leave sandboxes whose
//!   `pg_dump --schema-only` of every database is identical and whose
//!   per-table content digests (order-independent) and sequence values are
//!   equal; the dump's bytes per session add up to the whole; and so does
//!   one session that loads every table with rows in a WAL-skipping
//!   transaction (`BEGIN`, `TRUNCATE` of the empty table, `COPY`,
//!   `COMMIT`);
//! - error stopping: a row that cannot be loaded, in a chunk of a cut table
//!   on some session, fails the restore with that session's error text,
//!   and so does a statement error in pre-data; a truncated script fails as
//!   truncated;
//! - a psql meta-command drill does not know sends the rest to one session,
//!   and the report says so.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// Writes, for every database of the sandbox, its `pg_dump
/// --schema-only` (without the random `\restrict` key lines, and without
/// the `pg_attver` column option this server stamps on every new column
/// from its WAL position, which differs between any two restores) and one line
/// per table (rows, digest of the sorted row digests) and per sequence
/// (last value, is_called) into `$EQ_OUT/<check's database>/`.
const SNAPSHOT: &str = r#"#!/bin/bash
set -euo pipefail
out="$EQ_OUT/$PGDATABASE"
mkdir -p "$out"
for db in $(psql -X -At -d postgres -c "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1"); do
  pg_dump --schema-only -d "$db" | grep -v -e '^\\\(un\)\?restrict ' -e 'SET (pg_attver=[0-9]*);$' > "$out/$db.schema.sql"
  : > "$out/$db.digests"
  psql -X -At -d "$db" -c "SELECT c.relkind, format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE (c.relkind IN ('r', 'S') OR (c.relkind = 'm' AND c.relispopulated)) AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 2" |
  while IFS='|' read -r kind rel; do
    if [ "$kind" = S ]; then
      psql -X -At -d "$db" -c "SELECT '$rel', last_value, is_called FROM $rel" >> "$out/$db.digests"
    else
      psql -X -At -d "$db" -c "SELECT '$rel', count(*), coalesce(md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))), '-') FROM $rel t" >> "$out/$db.digests"
    fi
  done
done
"#;

struct Fixture {
    file: PathBuf,
    db: Db,
}

fn fixtures() -> Vec<Fixture> {
    let mut v: Vec<Fixture> = ["frame", "index", "hive", "mysrt"]
        .iter()
        .map(|n| Fixture {
            file: dumps().join(healthy_file(n)),
            db: Db {
                name: healthy(n).name,
                path: healthy(n).path,
                format: healthy(n).format,
                roles: healthy(n).roles,
            },
        })
        .collect();
    for (name, path) in [
        ("blueprint", "/dumps/blueprint.sql"),
        ("pagila", "/dumps/pagila.sql"),
    ] {
        let file = dumps().join("plain").join(format!("{name}.sql"));
        assert!(
            file.is_file(),
            "{} is missing: run fixtures/generate.sh",
            file.display()
        );
        v.push(Fixture {
            file,
            db: Db {
                name,
                path,
                format: "plain",
                roles: &[],
            },
        });
    }
    v
}

/// Drill every fixture with `restore_jobs = jobs` and WAL-skipping loads
/// from `wal_skip` bytes of rows (`0`: never), snapshotting each restored
/// sandbox into `out`; returns the report.
fn drill_all(
    repo: &TestRepo,
    fixtures: &[Fixture],
    jobs: u32,
    wal_skip: &str,
    input: &str,
    out: &Path,
) -> Value {
    let work = tempfile::tempdir().unwrap();
    let script = work.path().join("snapshot.sh");
    std::fs::write(&script, SNAPSHOT).unwrap();
    let checks: Vec<(String, String)> = fixtures
        .iter()
        .map(|f| {
            (
                format!("{}-snapshot.toml", f.db.name),
                format!(
                    "kind = \"command\"\ndatabase = \"{}\"\ntimeout = \"5m\"\ncommand = [\"bash\", \"{}\"]\n",
                    f.db.name,
                    script.display()
                ),
            )
        })
        .collect();
    let checks: Vec<(&str, String)> = checks
        .iter()
        .map(|(n, b)| (n.as_str(), b.clone()))
        .collect();
    let dbs: Vec<&Db> = fixtures.iter().map(|f| &f.db).collect();
    let config = write_config(work.path(), repo, &dbs, &checks);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen(
            "[sandbox]\n",
            &format!("[sandbox]\nrestore_jobs = {jobs}\nparallelism = 2\n"),
            1,
        ),
    )
    .unwrap();
    let run = drill_env(
        &config,
        &["run", "--no-notify"],
        &[
            ("EQ_OUT", out.to_str().unwrap()),
            ("DRILL_COPY_CHUNK_BYTES", "4096"),
            ("DRILL_WAL_SKIP_BYTES", wal_skip),
            ("DRILL_SANDBOX_INPUT", input),
        ],
    );
    let (_, report) = report_of(&run, &work.path().join("reports"));
    assert_no_sandbox_left(report["run_id"].as_str().unwrap());
    assert_eq!(run.code, 0, "jobs {jobs}: {}\n{report:#}", run.stderr);
    report
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(files(&p));
        } else {
            v.push(p);
        }
    }
    v.sort();
    v
}

#[test]
fn parallel_and_single_psql_restores_leave_identical_databases() {
    require_environment();
    let fixtures = fixtures();
    let stored: Vec<(&Path, &str)> = fixtures
        .iter()
        .map(|f| (f.file.as_path(), f.db.path.trim_start_matches("/dumps/")))
        .collect();
    let repo = TestRepo::new(&stored);
    let out = tempfile::tempdir().unwrap();
    // One session without WAL-skipping loads sends the script unchanged:
    // a single psql, fed through the exec's attach stream as `docker exec
    // -i` would (the other two read theirs through drill's FIFOs).
    let single = drill_all(
        &repo,
        &fixtures,
        1,
        "0",
        "stdin",
        &out.path().join("single"),
    );
    let parallel = drill_all(&repo, &fixtures, 2, "0", "", &out.path().join("parallel"));
    // One session, every table with a row loaded skipping WAL.
    let skipped = drill_all(&repo, &fixtures, 1, "1", "", &out.path().join("wal-skip"));

    let mut wal_skipped = 0;
    for f in &fixtures {
        let name = f.db.name;
        let s = &database(&single, name)["restore"]["sessions"];
        assert_eq!(
            (&s["jobs"], &s["added_bytes"], &s["wal_skipped_tables"]),
            (&1.into(), &0.into(), &0.into()),
            "{name}: one session, nothing added: {single:#}"
        );
        wal_skipped += database(&skipped, name)["restore"]["sessions"]["wal_skipped_tables"]
            .as_u64()
            .unwrap();
        let r = &database(&parallel, name)["restore"];
        let s = &r["sessions"];
        assert_eq!(s["jobs"], 2, "{name}: {r:#}");
        assert_eq!(s["widest"], 2, "{name}: two sessions ran at once: {r:#}");
        let sum: u64 = s["bytes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap())
            .sum();
        assert_eq!(
            sum,
            r["restored_bytes"].as_u64().unwrap(),
            "{name}: every byte of the dump goes to exactly one session: {r:#}"
        );
        assert!(
            s["serial_because"].is_null(),
            "{name}: nothing fell back: {r:#}"
        );
    }

    // Pagila alone has more than 20 tables with rows.
    assert!(
        wal_skipped > 20,
        "tables loaded skipping WAL: {wal_skipped}: {skipped:#}"
    );
    for other in ["parallel", "wal-skip"] {
        same_databases(out.path(), &fixtures, "single", other);
    }
}

/// The snapshots of run `a` and run `b` under `out` are identical.
fn same_databases(out: &Path, fixtures: &[Fixture], a_run: &str, b_run: &str) {
    let a = files(&out.join(a_run));
    let b = files(&out.join(b_run));
    let rel = |v: &[PathBuf], base: &Path| -> Vec<PathBuf> {
        v.iter()
            .map(|p| p.strip_prefix(base).unwrap().to_path_buf())
            .collect()
    };
    assert_eq!(
        rel(&a, &out.join(a_run)),
        rel(&b, &out.join(b_run)),
        "the same databases in {a_run} and {b_run}"
    );
    // Every fixture database's own schema and digests are there.
    for f in fixtures {
        let dbname = f.db.name;
        assert!(
            a.iter()
                .any(|p| p.ends_with(format!("{dbname}/{dbname}.digests"))),
            "{dbname} was snapshotted: {a:?}"
        );
    }
    for (x, y) in a.iter().zip(&b) {
        let (tx, ty) = (
            std::fs::read_to_string(x).unwrap(),
            std::fs::read_to_string(y).unwrap(),
        );
        assert!(!tx.is_empty() || x.extension().is_some_and(|e| e == "digests"));
        if tx != ty {
            let diff = similar::TextDiff::from_lines(&tx, &ty)
                .unified_diff()
                .header(a_run, b_run)
                .to_string();
            panic!("{} differs:\n{diff}", x.display());
        }
    }
}

/// `pagila.sql` with `edit` applied, backed up, drilled with
/// `restore_jobs = jobs`, 4 KiB chunks and every table with rows loaded
/// skipping WAL where it is not cut: the report's pagila entry.
fn drill_edited_pagila(edit: &dyn Fn(String) -> String, jobs: u32) -> Value {
    let work = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(dumps().join("plain/pagila.sql")).unwrap();
    let file = work.path().join("pagila.sql");
    std::fs::write(&file, edit(original)).unwrap();
    let repo = TestRepo::new(&[(&file, "pagila.sql")]);
    let db = Db {
        name: "pagila",
        path: "/dumps/pagila.sql",
        format: "plain",
        roles: &[],
    };
    let config = write_config(work.path(), &repo, &[&db], &[]);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen(
            "[sandbox]\n",
            &format!("[sandbox]\nrestore_jobs = {jobs}\n"),
            1,
        ),
    )
    .unwrap();
    let run = drill_env(
        &config,
        &["run", "--no-notify"],
        &[
            ("DRILL_COPY_CHUNK_BYTES", "4096"),
            ("DRILL_WAL_SKIP_BYTES", "1"),
        ],
    );
    let (_, report) = report_of(&run, &work.path().join("reports"));
    assert_no_sandbox_left(report["run_id"].as_str().unwrap());
    database(&report, "pagila")["restore"].clone()
}

#[test]
fn the_first_error_on_any_session_fails_the_restore_with_its_text() {
    require_environment();
    // A rental row in the middle of the table (cut into many chunks)
    // whose date cannot be read.
    let bad_row = |s: String| {
        let at = s.find("COPY public.rental ").expect("rental data");
        let rows_start = at + s[at..].find('\n').unwrap() + 1;
        let rows_end = rows_start + s[rows_start..].find("\\.\n").unwrap();
        let mid = rows_start + (rows_end - rows_start) / 2;
        let line_start = mid + s[mid..].find('\n').unwrap() + 1;
        let line_end = line_start + s[line_start..].find('\n').unwrap();
        let mut cols: Vec<String> = s[line_start..line_end]
            .split('\t')
            .map(String::from)
            .collect();
        cols[1] = "not-a-date".into();
        format!("{}{}{}", &s[..line_start], cols.join("\t"), &s[line_end..])
    };
    for jobs in [1, 2] {
        let r = drill_edited_pagila(&bad_row, jobs);
        assert_eq!(r["status"], "failed", "jobs {jobs}: {r:#}");
        let error = r["error"].as_str().unwrap();
        assert!(
            error.contains("psql exited with 3")
                && error.contains("invalid input syntax for type timestamp")
                && error.contains("not-a-date"),
            "jobs {jobs}: the session's own error: {r:#}"
        );
        assert_eq!(r["class"], "damage", "jobs {jobs}: {r:#}");
        if jobs == 2 {
            assert!(
                r["sessions"]["bytes"].as_array().unwrap().len() > 2,
                "{r:#}"
            );
        } else {
            // The row failed inside a WAL-skipping transaction.
            assert!(
                r["sessions"]["wal_skipped_tables"].as_u64().unwrap() > 0,
                "{r:#}"
            );
        }
    }

    // A statement error in pre-data: the single session's text.
    let r = drill_edited_pagila(
        &|s: String| {
            s.replacen(
                "CREATE TABLE public.actor (",
                "CREATE TABLE public.actor (oops oops oops,",
                1,
            )
        },
        2,
    );
    assert_eq!(r["status"], "failed", "{r:#}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("syntax error at or near \"oops\""),
        "{r:#}"
    );

    // Cut in the middle of a table's rows (one session: inside its
    // WAL-skipping transaction): truncated, never a pass.
    for jobs in [1, 2] {
        let r = drill_edited_pagila(
            &|s: String| {
                let at = s
                    .find("COPY public.payment_p2022_02 ")
                    .expect("payment data");
                s[..at + 20_000].to_string()
            },
            jobs,
        );
        assert_eq!(r["status"], "failed", "jobs {jobs}: {r:#}");
        assert!(
            r["error"].as_str().unwrap().contains("truncated"),
            "jobs {jobs}: {r:#}"
        );
    }
}

#[test]
fn an_unknown_meta_command_sends_the_rest_to_one_session() {
    require_environment();
    let r = drill_edited_pagila(
        &|s: String| {
            // Without pg_dump's `\restrict`, which forbids meta-commands.
            s.lines()
                .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
                .replacen(
                    "\n--\n-- Data for Name: actor;",
                    "\n\\set drill_test 1\n\n--\n-- Data for Name: actor;",
                    1,
                )
        },
        2,
    );
    assert_eq!(r["status"], "passed", "{r:#}");
    let because = r["sessions"]["serial_because"].as_array().unwrap();
    assert!(
        because[0].as_str().unwrap().contains("\\set drill_test 1"),
        "{r:#}"
    );
    assert!(
        r["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("went to one session")),
        "{r:#}"
    );
    assert_eq!(r["sessions"]["widest"], 1, "{r:#}");
}
