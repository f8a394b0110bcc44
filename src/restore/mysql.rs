//! MariaDB and MySQL logical dumps: `mysqldump` / `mariadb-dump` output
//! (one database, `--databases` or `--all-databases`; `.gz`/`.zst` by
//! suffix), then binlog increments (`mysqlbinlog` / `mariadb-binlog` output
//! saved as SQL), streamed into the image's `mariadb` or `mysql` client in
//! an empty running sandbox, in that order — the restore its operators run
//! by hand (`gunzip < full.sql.gz | mysql`, then `mysqlbinlog … | mysql`).
//!
//! The client runs without `--force`, so the first SQL error stops it and
//! fails the restore; `--binary-mode` keeps BLOB bytes in statements as they
//! are (MariaDB docs, "mariadb Command-line Client").
//!
//! Completeness, proved per file:
//! - the dump ends with `-- Dump completed on …` (or `-- Dump completed`
//!   with `--skip-dump-date`), which `mysqldump` writes last. A dump made
//!   with `--skip-comments` has no trailer, and no header comment either: it
//!   fails unless `accept_missing_trailer = true`, which the report records.
//!   A dump that has its header comment but not its trailer is truncated,
//!   whatever the setting;
//! - an increment ends with `# End of log file`, which `mysqlbinlog` writes
//!   after the last event;
//! - increments form an unbroken series: the files matched by the
//!   `increments` globs, numbered consecutively (`incremental_01.sql`,
//!   `mysql-bin.000042.sql`, …) or stamped at a regular interval
//!   (`binlog_20261130T0600.sql`, `inc_2026-11-30.sql`, …), applied in that
//!   order. A file missing from the series fails the restore, naming it;
//!   names with nothing to judge by are applied in name order and the
//!   report says the series could not be checked;
//! - and they follow the dump: when the dump carries its binlog position
//!   (`--master-data`/`--source-data`: `CHANGE MASTER TO
//!   MASTER_LOG_FILE='mysql-bin.000002'`), the n-th increment must end by
//!   rotating to binlog 000002 + n (`Rotate to mysql-bin.000003`, the last
//!   event of a closed binlog), so a missing binlog fails even when the
//!   names hide it;
//! - an increment saved with `--base64-output=DECODE-ROWS` (row events as
//!   comments only) fails: replaying it would apply none of its rows.
//!
//! Restoring an `--all-databases` dump rewrites the `mysql` system tables
//! with production's users; the sandbox's server keeps its in-memory
//! privileges until `FLUSH PRIVILEGES`, so drill's own login survives a dump
//! made without `--flush-privileges`.

use std::time::Instant;

use futures_util::future::LocalBoxFuture as BoxFuture;
use tokio::io::AsyncReadExt;

use super::{
    classify, open, restic_status, stalled_message, Counter, RestoreMethod, RestoreOutcome,
    RestorePlan, Source, HEAD_BYTES,
};
use crate::config::{Compression, DatabaseConfig};
use crate::kind::Endpoint;
use crate::report::{IncrementReport, Status};
use crate::sandbox::{ExecOutcome, Sandbox};
use crate::tier::SnapshotFile;

/// `mysqldump` output into the image's client.
pub struct MysqlLogical {
    /// The client program in the image: `mariadb` or `mysql`.
    client: &'static str,
}

/// For `kind = "mariadb"`: the `mariadb` client.
pub static MARIADB_CLIENT: MysqlLogical = MysqlLogical { client: "mariadb" };
/// For `kind = "mysql"`: the `mysql` client.
pub static MYSQL_CLIENT: MysqlLogical = MysqlLogical { client: "mysql" };

/// The trailer `mysqldump` writes last (`-- Dump completed on <time>`).
const DUMP_TRAILER: &str = "-- Dump completed";
/// The header comment every `mysqldump` / `mariadb-dump` writes first
/// (`-- MySQL dump 10.13 …`, `-- MariaDB dump 10.19 …`; mariadb-dump
/// 10.5.25, 10.6.18, 10.11.8, 11.x and later put a
/// `/*M!999999\- enable the sandbox mode */` line before it), absent with
/// `--skip-comments`.
const DUMP_HEADERS: [&str; 2] = ["-- MySQL dump", "-- MariaDB dump"];
/// The line `mysqlbinlog` writes after the last event of a binlog.
const BINLOG_TRAILER: &str = "# End of log file";
/// Bytes of each file's end kept for the trailer check.
const TAIL_BYTES: usize = 4096;

/// Client errors that say the sandbox cannot take the dump (a server of
/// another make or version), not that the dump is bad: (message start,
/// cause name, fix). Matched after the `ERROR nnnn (sssss) at line n: `
/// prefix.
const ENVIRONMENT: &[(&str, &str, &str)] = &[
    ("Unknown collation", "collation-missing", "the dump was made on a server with collations this sandbox lacks (a MySQL 8 dump in MariaDB, or an older server): use an image of the server that made the dump (`image`)"),
    ("Unknown character set", "charset-missing", "the sandbox's server lacks a character set the dump uses: use an image of the server that made the dump (`image`)"),
    ("Unknown storage engine", "engine-missing", "the sandbox's server lacks a storage engine the dump uses: use an image with that engine (`image`)"),
    ("Unknown table engine", "engine-missing", "the sandbox's server lacks a storage engine the dump uses: use an image with that engine (`image`)"),
    ("Plugin '", "plugin-missing", "the sandbox's server lacks a plugin the dump uses: use an image of the server that made the dump (`image`)"),
    ("Unknown command '\\-'", "sandbox-mode-line", "the dump starts with the sandbox-mode line of mariadb-dump 10.5.25/10.6.18/10.11.8/11.x and later, which MySQL's client and older MariaDB clients reject: restore it with kind = \"mariadb\" and a MariaDB image of those releases or newer"),
    ("Got a packet bigger than 'max_allowed_packet'", "packet-too-large", "a statement of the dump is larger than the sandbox accepts: this should not happen with drill's 1 GiB limit; report it"),
];

impl MysqlLogical {
    /// The client program in the image (`mariadb`, `mysql`).
    pub fn tool_name(&self) -> &'static str {
        self.client
    }
}

impl RestoreMethod for MysqlLogical {
    fn volatile(&self, _format: crate::config::DumpFormat) -> crate::ledger::identity::Volatile {
        crate::ledger::identity::Volatile::Lines(crate::ledger::identity::mysqldump_completed_line)
    }

    fn tool(&self, _plan: &RestorePlan) -> &'static str {
        self.client
    }

    fn execute<'a>(
        &'a self,
        plan: &'a RestorePlan,
        source: &'a Source<'a>,
        sandbox: &'a Sandbox,
        progress: &'a Counter,
    ) -> BoxFuture<'a, RestoreOutcome> {
        Box::pin(self.restore(plan, source, sandbox, progress))
    }
}

/// One file streamed into the client.
struct Fed {
    /// Bytes read from the repository.
    stored: u64,
    /// Bytes fed to the client.
    fed: u64,
    /// Seconds it took.
    seconds: f64,
    /// The client's outcome, with the end of the stream.
    result: Result<(ExecOutcome, Vec<u8>, bool), RestoreOutcome>,
    /// The first bytes of the stream.
    head: Vec<u8>,
}

impl MysqlLogical {
    /// The client's command line: TCP to the server in the same container
    /// (the password comes from `MYSQL_PWD` in the exec's environment).
    fn command(&self, sandbox: &Sandbox, dbname: Option<&str>) -> Vec<String> {
        let mut cmd = vec![
            self.client.to_string(),
            format!("--user={}", sandbox.user),
            "--protocol=TCP".into(),
            "--host=127.0.0.1".into(),
            "--port=3306".into(),
            format!("--max-allowed-packet={}", crate::kind::mariadb::MAX_PACKET),
            "--binary-mode".into(),
            "--batch".into(),
        ];
        if let Some(db) = dbname {
            cmd.push(format!("--database={db}"));
        }
        cmd
    }

    async fn restore(
        &self,
        plan: &RestorePlan,
        source: &Source<'_>,
        sandbox: &Sandbox,
        progress: &Counter,
    ) -> RestoreOutcome {
        let started = Instant::now();
        let db = &plan.database;
        let endpoint = sandbox.endpoint();
        let mut outcome = RestoreOutcome::new(Status::Passed, None);

        // The increments are found first: a broken series needs no restore.
        let mut increments = match find_increments(db, source).await {
            Ok(files) => files,
            Err(e) => {
                outcome.status = e.0;
                outcome.error = Some(e.1);
                return outcome;
            }
        };
        match check_series(&mut increments) {
            Ok(note) => outcome.notes.extend(note),
            Err(gap) => {
                outcome.status = Status::Failed;
                outcome.error = Some(format!("increments of database `{}`: {gap}", db.name));
                return outcome;
            }
        }

        // The dump. Its head says whether it creates its databases
        // (`--databases`, `--all-databases`); a single-database dump goes
        // into `dbname`, created first.
        let fed = self
            .feed(
                sandbox,
                source,
                &db.path,
                db.compression,
                progress,
                Some(&endpoint),
                &db.dbname,
            )
            .await;
        outcome.bytes = fed.stored;
        outcome.restored_bytes = fed.fed;
        outcome.dump = dump_versions(&fed.head);
        let dump_position = dump_binlog(&fed.head);
        let judged = match sandbox_gone(sandbox, &fed).await {
            Some(dead) => Err(dead),
            None => self.judge_dump(db, sandbox, &fed),
        };
        if let Err(e) = judged {
            let mut e = e;
            e.bytes = fed.stored;
            e.restored_bytes = fed.fed;
            e.seconds = started.elapsed().as_secs_f64();
            return e;
        }
        if let Ok(Some(note)) = judged {
            outcome.notes.push(note);
        }

        // The increments, in order; the first that fails stops the rest.
        if !db.increments.is_empty() && increments.is_empty() {
            outcome.notes.push(format!(
                "no increment in the snapshot matches {}: only the dump was restored",
                db.increments.join(", ")
            ));
        }
        let mut failed: Option<(Status, String)> = None;
        for file in &increments {
            if failed.is_some() {
                outcome.increments.push(IncrementReport {
                    path: file.path.clone(),
                    bytes: 0,
                    seconds: 0.0,
                    status: Status::NotRun,
                    error: None,
                });
                continue;
            }
            let counter = Counter::default();
            let fed = self
                .feed(
                    sandbox,
                    source,
                    &file.path,
                    Compression::from_path(&file.path),
                    &counter,
                    None,
                    &db.dbname,
                )
                .await;
            let verdict = match sandbox_gone(sandbox, &fed).await {
                Some(dead) => Err(dead),
                None => self.judge_increment(&file.path, sandbox, &fed),
            };
            // Each closed binlog ends by rotating to the next one: from the
            // dump's position on, the increments must rotate to its
            // successors, one by one.
            let verdict = match verdict {
                Ok(()) => match chain_break(
                    dump_position.as_ref(),
                    &fed,
                    outcome.increments.len() as u64,
                    &file.path,
                ) {
                    Some(broken) => Err(broken),
                    None => Ok(()),
                },
                Err(e) => Err(e),
            };
            outcome.bytes += fed.stored;
            outcome.restored_bytes += fed.fed;
            let (status, error) = match verdict {
                Ok(()) => (Status::Passed, None),
                Err(e) => (e.status, e.error.clone()),
            };
            outcome.increments.push(IncrementReport {
                path: file.path.clone(),
                bytes: fed.stored,
                seconds: fed.seconds,
                status,
                error: error.clone(),
            });
            if status != Status::Passed {
                failed = Some((
                    status,
                    format!("increment {}: {}", file.path, error.unwrap_or_default()),
                ));
            }
        }
        if let Some((status, error)) = failed {
            outcome.status = status;
            outcome.error = Some(error);
            outcome.seconds = started.elapsed().as_secs_f64();
            return outcome;
        }

        // The database the checks connect to must exist.
        outcome.seconds = started.elapsed().as_secs_f64();
        match database_exists(&endpoint, &db.dbname).await {
            Ok(true) => outcome,
            Ok(false) => {
                outcome.status = Status::Failed;
                outcome.error = Some(format!(
                    "the restore finished but database `{}` does not exist in the sandbox; the dump does not hold it (or set `dbname` of database `{}`)",
                    db.dbname, db.name
                ));
                outcome
            }
            Err(e) => {
                outcome.status = Status::Error;
                outcome.error = Some(format!(
                    "look up database `{}` after the restore: {e}",
                    db.dbname
                ));
                outcome
            }
        }
    }

    /// Stream `path` from the snapshot into the client. With `create`, a
    /// dump whose head creates no database is loaded into `dbname`, created
    /// first through `create`.
    #[allow(clippy::too_many_arguments)]
    async fn feed(
        &self,
        sandbox: &Sandbox,
        source: &Source<'_>,
        path: &str,
        compression: Compression,
        progress: &Counter,
        create: Option<&Endpoint>,
        dbname: &str,
    ) -> Fed {
        let started = Instant::now();
        let timeouts = source.timeouts;
        let mut fed = Fed {
            stored: 0,
            fed: 0,
            seconds: 0.0,
            result: Err(RestoreOutcome::new(Status::Error, None)),
            head: Vec::new(),
        };
        let mut s = match open(
            path,
            compression,
            source.repo,
            source.snapshot,
            timeouts.stall,
            progress.clone(),
            TAIL_BYTES,
        ) {
            Ok(s) => s,
            Err(e) => {
                fed.result = Err(RestoreOutcome::new(Status::Error, Some(e)));
                return fed;
            }
        };
        let mut head = Vec::with_capacity(HEAD_BYTES);
        let head_read = (&mut s.tap)
            .take(HEAD_BYTES as u64)
            .read_to_end(&mut head)
            .await;
        if let Err(e) = head_read {
            let stalled = s.stalled();
            let restic = s.dump.stop().await;
            fed.stored = s.stored.get();
            fed.result = Err(if stalled {
                RestoreOutcome::new(Status::Error, Some(stalled_message(path, timeouts.stall)))
            } else {
                match restic {
                    Err(r) => RestoreOutcome::new(restic_status(&r), Some(r.to_string())),
                    Ok(()) => RestoreOutcome::new(
                        Status::Failed,
                        Some(format!("read the start of {path}: {e} (is the file really {compression:?}-compressed?)")),
                    ),
                }
            });
            return fed;
        }
        let mut target = None;
        if let Some(ep) = create {
            if !creates_database(&head) {
                if let Err(e) = create_database(ep, dbname).await {
                    let _ = s.dump.stop().await;
                    fed.result = Err(RestoreOutcome::new(
                        Status::Error,
                        Some(format!("create database `{dbname}` in the sandbox: {e}")),
                    ));
                    return fed;
                }
                target = Some(dbname);
            }
        }
        let cmd = self.command(sandbox, target);
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let mut input = std::io::Cursor::new(head.clone()).chain(&mut s.tap);
        let exec = tokio::time::timeout(
            timeouts.restore,
            sandbox.exec_with_input(&cmd, Some(&mut input)),
        )
        .await;
        drop(input);
        fed.head = head;
        fed.stored = s.stored.get();
        fed.fed = s.tap.bytes();
        fed.seconds = started.elapsed().as_secs_f64();
        let exec = match exec {
            Err(_) => {
                let _ = s.dump.stop().await;
                fed.result = Err(RestoreOutcome::new(
                    Status::Error,
                    Some(format!(
                        "phase restore: the restore of {path} did not finish within {} (timeouts.restore); it was stopped",
                        crate::duration::human(timeouts.restore)
                    )),
                ));
                return fed;
            }
            Ok(x) => x,
        };
        if s.stalled() {
            let _ = s.dump.stop().await;
            fed.result = Err(RestoreOutcome::new(
                Status::Error,
                Some(stalled_message(path, timeouts.stall)),
            ));
            return fed;
        }
        let exec = match exec {
            Ok(x) => x,
            Err(e) => {
                let _ = s.dump.stop().await;
                let why = match sandbox.check_alive().await {
                    Err(dead) => dead.to_string(),
                    Ok(()) => e.to_string(),
                };
                fed.result = Err(RestoreOutcome::new(Status::Error, Some(why)));
                return fed;
            }
        };
        // restic's verdict on the bytes it sent comes first.
        let restic = if exec.stdin_error.is_none() && s.tap.read_error().is_none() {
            s.dump.finish().await
        } else {
            s.dump.stop().await
        };
        fed.stored = s.stored.get();
        if let Err(r) = restic {
            fed.result = Err(RestoreOutcome::new(restic_status(&r), Some(r.to_string())));
            return fed;
        }
        if let Some(e) = s.tap.read_error() {
            fed.result = Err(RestoreOutcome::new(
                Status::Failed,
                Some(format!("decompress {path}: {e}; the file is damaged")),
            ));
            return fed;
        }
        fed.result = Ok((exec, s.tap.tail(), s.tap.at_eof()));
        fed
    }

    /// Judge the dump's restore: `Ok(Some(note))` for a pass the report
    /// should explain. (The outcome is the restore's record, returned once:
    /// its size does not matter.)
    #[allow(clippy::result_large_err)]
    fn judge_dump(
        &self,
        db: &DatabaseConfig,
        sandbox: &Sandbox,
        fed: &Fed,
    ) -> Result<Option<String>, RestoreOutcome> {
        let (exec, tail, at_eof) = match &fed.result {
            Err(e) => return Err(e.clone()),
            Ok(x) => x,
        };
        // The header comment opens the dump, after the sandbox-mode line
        // recent mariadb-dump releases write first.
        let has_header = String::from_utf8_lossy(&fed.head[..fed.head.len().min(4096)])
            .lines()
            .take(5)
            .any(|l| DUMP_HEADERS.iter().any(|h| l.starts_with(h)));
        let trailer = last_line_starts(tail, DUMP_TRAILER);
        let truncated = || {
            let mut o = RestoreOutcome::new(
                Status::Failed,
                Some(format!(
                    "{} is truncated: it does not end with the `{DUMP_TRAILER} on …` line mysqldump writes last",
                    db.path
                )),
            );
            o.cause = Some(cause("truncated", classify::Class::Damage));
            o
        };
        if !exec.succeeded() {
            if *at_eof && has_header && !trailer {
                return Err(truncated());
            }
            return Err(self.client_failure(&db.path, sandbox, exec));
        }
        if trailer {
            return Ok(None);
        }
        if has_header || !db.accept_missing_trailer {
            if !has_header {
                return Err(RestoreOutcome::new(
                    Status::Failed,
                    Some(format!(
                        "{} has no `{DUMP_TRAILER}` trailer and no mysqldump header comment: it cannot be proved complete. If it was made with --skip-comments, set accept_missing_trailer = true for database `{}` (the report will say so)",
                        db.path, db.name
                    )),
                ));
            }
            return Err(truncated());
        }
        Ok(Some(format!(
            "{} has no `{DUMP_TRAILER}` trailer (made with --skip-comments); accepted without proof of completeness because accept_missing_trailer = true",
            db.path
        )))
    }

    /// Judge an increment's restore. An increment saved with
    /// `--base64-output=DECODE-ROWS` carries its row events as comments
    /// only: replaying it applies none of them, so it fails.
    #[allow(clippy::result_large_err)]
    fn judge_increment(
        &self,
        path: &str,
        sandbox: &Sandbox,
        fed: &Fed,
    ) -> Result<(), RestoreOutcome> {
        let (exec, tail, at_eof) = match &fed.result {
            Err(e) => return Err(e.clone()),
            Ok(x) => x,
        };
        let head = String::from_utf8_lossy(&fed.head);
        if ["Write_rows", "Update_rows", "Delete_rows"]
            .iter()
            .any(|e| {
                head.contains(&format!("{e}: table id"))
                    || head.contains(&format!("{e}_v1: table id"))
            })
            && !head.contains("BINLOG '")
        {
            let mut o = RestoreOutcome::new(
                Status::Failed,
                Some(format!(
                    "{path} holds row events only as comments (saved with mysqlbinlog --base64-output=DECODE-ROWS): replaying it applies none of them; save increments without that option"
                )),
            );
            o.cause = Some(cause("increment-unusable", classify::Class::Damage));
            return Err(o);
        }
        let trailer = contains_line(tail, BINLOG_TRAILER);
        let truncated = || {
            let mut o = RestoreOutcome::new(
                Status::Failed,
                Some(format!("{path} is truncated: it does not end with the `{BINLOG_TRAILER}` line mysqlbinlog writes after the last event")),
            );
            o.cause = Some(cause("truncated", classify::Class::Damage));
            o
        };
        if !exec.succeeded() {
            if *at_eof && !trailer {
                return Err(truncated());
            }
            return Err(self.client_failure(path, sandbox, exec));
        }
        if !trailer {
            return Err(truncated());
        }
        Ok(())
    }

    /// The client exited non-zero (or did not take all of its input):
    /// environment or backup, from its first error line.
    fn client_failure(&self, path: &str, sandbox: &Sandbox, exec: &ExecOutcome) -> RestoreOutcome {
        let what = match exec.exit_code {
            Some(c) => format!("{} exited with {c} restoring {path}", self.client),
            None => format!(
                "{} did not report an exit code restoring {path}",
                self.client
            ),
        };
        let why = if exec.output.errors.is_empty() && exec.output.tail.is_empty() {
            exec.stdin_error.clone().unwrap_or_default()
        } else {
            exec.output.summary(3)
        };
        let first = exec.output.errors.first().map(String::as_str).unwrap_or("");
        let message = server_message(first);
        let (status, text, cause_) = match ENVIRONMENT.iter().find(|(m, _, _)| message.starts_with(m)) {
            Some((_, name, fix)) => (
                Status::Error,
                format!("{what}: {why} — the sandbox cannot take this backup ({name}), not a verdict on the backup: {fix}"),
                cause(name, classify::Class::Environment),
            ),
            None if matches!(exec.exit_code, Some(c) if c > 128) && first.is_empty() => (
                Status::Error,
                format!("{what}: killed by signal {} inside the sandbox (the kernel's OOM killer at the memory cap, most often): raise sandbox.memory and drill again", exec.exit_code.unwrap_or(0) - 128),
                cause("tool-killed", classify::Class::Environment),
            ),
            None => (Status::Failed, format!("{what}: {why}"), cause(classify::UNRECOGNISED, classify::Class::Damage)),
        };
        let mut o = RestoreOutcome::new(status, Some(sandbox.password.redact(&text)));
        o.cause = Some(cause_);
        o
    }
}

/// Whether the `index`-th increment (0-based) breaks the chain from the
/// dump's binlog position (`dump`: base name and number): it must end by
/// rotating to binlog number `dump + index + 1`. `None` when it does, or
/// when the dump or the increment does not say (no `--master-data`
/// position; the last, still open binlog, which ends without a rotation).
fn chain_break(
    dump: Option<&(String, u64)>,
    fed: &Fed,
    index: u64,
    path: &str,
) -> Option<RestoreOutcome> {
    let ((base, first), Ok((_, tail, _))) = (dump?, &fed.result) else {
        return None;
    };
    let (to_base, to) = rotated_to(tail)?;
    let own = first + index;
    if to_base == *base && to == own + 1 {
        return None;
    }
    let why = if to_base == *base && to > own + 1 {
        format!("{} binlog(s) before it are missing", to - own - 1)
    } else {
        "it does not follow the dump (an older binlog, or one of another server)".to_string()
    };
    let mut o = RestoreOutcome::new(
        Status::Failed,
        Some(format!(
            "{path} ends by rotating to binlog {to_base}.{to:06}, but coming after the dump (at binlog {base}.{first:06}) it should be binlog {base}.{own:06}, which rotates to {base}.{:06}: {why}",
            own + 1
        )),
    );
    o.cause = Some(cause("increment-gap", classify::Class::Damage));
    Some(o)
}

/// When the client failed and the sandbox is gone (died, killed for
/// memory), that explains the failure: an environment error, never a
/// verdict on the backup.
async fn sandbox_gone(sandbox: &Sandbox, fed: &Fed) -> Option<RestoreOutcome> {
    let Ok((exec, _, _)) = &fed.result else {
        return None;
    };
    if exec.succeeded() {
        return None;
    }
    sandbox
        .check_alive()
        .await
        .err()
        .map(|e| RestoreOutcome::new(Status::Error, Some(e.to_string())))
}

fn cause(name: &'static str, class: classify::Class) -> classify::Classified {
    classify::Classified {
        name,
        class,
        object: None,
        fix: String::new(),
    }
}

/// The server's message in a client error line
/// (`ERROR 1146 (42S02) at line 12: Table 'gym.x' doesn't exist` →
/// `Table 'gym.x' doesn't exist`).
fn server_message(line: &str) -> &str {
    match line.find("ERROR ") {
        Some(i) => {
            let rest = &line[i..];
            match rest.find(": ") {
                Some(j) => &rest[j + 2..],
                None => rest,
            }
        }
        None => line,
    }
}

/// What a dump's header comments say: the server (`-- Server version\t…`)
/// and the tool (`-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB, for …`);
/// `None` when it names neither (`--skip-comments`).
fn dump_versions(head: &[u8]) -> Option<super::head::DumpVersions> {
    let text = String::from_utf8_lossy(&head[..head.len().min(4096)]);
    let mut v = super::head::DumpVersions::default();
    for line in text.lines().take(12) {
        if let Some(server) = line.strip_prefix("-- Server version") {
            v.server = Some(server.trim().to_string());
        }
        for (header, tool) in [
            ("-- MariaDB dump ", "mariadb-dump"),
            ("-- MySQL dump ", "mysqldump"),
        ] {
            if let Some(rest) = line.strip_prefix(header) {
                let rest = rest.split(", for ").next().unwrap_or(rest);
                let words: Vec<&str> = rest.split_whitespace().collect();
                v.tool = Some(format!("{tool} {}", words.join(" ")));
            }
        }
    }
    (v.server.is_some() || v.tool.is_some()).then_some(v)
}

/// Whether the last non-blank line of `tail` starts with `prefix`.
fn last_line_starts(tail: &[u8], prefix: &str) -> bool {
    String::from_utf8_lossy(tail)
        .lines()
        .map(str::trim_end)
        .rfind(|l| !l.is_empty())
        .is_some_and(|l| l.starts_with(prefix))
}

/// Whether some line of `tail` is exactly `line`.
fn contains_line(tail: &[u8], line: &str) -> bool {
    String::from_utf8_lossy(tail)
        .lines()
        .any(|l| l.trim_end() == line)
}

/// Whether a dump's head creates its databases (`--databases`,
/// `--all-databases`: `CREATE DATABASE` before the first table).
fn creates_database(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let db = text.find("\nCREATE DATABASE ");
    let table = text.find("\nCREATE TABLE ");
    match (db, table) {
        (Some(d), Some(t)) => d < t,
        (Some(_), None) => true,
        _ => false,
    }
}

async fn create_database(ep: &Endpoint, dbname: &str) -> Result<(), String> {
    use mysql_async::prelude::Queryable;
    let mut conn = crate::kind::mariadb::connect(ep, None).await?;
    let sql = format!(
        "CREATE DATABASE IF NOT EXISTS `{}`",
        dbname.replace('`', "``")
    );
    let r = conn
        .query_drop(sql)
        .await
        .map_err(|e| crate::kind::mariadb::message(&e));
    let _ = conn.disconnect().await;
    r
}

async fn database_exists(ep: &Endpoint, dbname: &str) -> Result<bool, String> {
    use mysql_async::prelude::Queryable;
    let mut conn = crate::kind::mariadb::connect(ep, None).await?;
    let found: Option<String> = conn
        .exec_first(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (dbname,),
        )
        .await
        .map_err(|e| crate::kind::mariadb::message(&e))?;
    let _ = conn.disconnect().await;
    Ok(found.is_some())
}

/// The snapshot's files matching the database's `increments` globs, in
/// name order (each glob's directory listed once).
async fn find_increments(
    db: &DatabaseConfig,
    source: &Source<'_>,
) -> Result<Vec<SnapshotFile>, (Status, String)> {
    let mut found: Vec<SnapshotFile> = Vec::new();
    for pattern in &db.increments {
        let (dir, name) = pattern.rsplit_once('/').unwrap_or(("", pattern));
        let glob = glob::Pattern::new(name).map_err(|e| {
            (
                Status::Error,
                format!(
                    "increments pattern `{pattern}` of database `{}`: {e}",
                    db.name
                ),
            )
        })?;
        let listed = source
            .repo
            .list_dir(source.snapshot, dir)
            .await
            .map_err(|e| (Status::Error, e.to_string()))?;
        for f in listed {
            let base = f.path.rsplit_once('/').map_or(f.path.as_str(), |(_, b)| b);
            if f.node_type == "file"
                && glob.matches(base)
                && !found.iter().any(|x| x.path == f.path)
            {
                found.push(f);
            }
        }
    }
    found.sort_by(|a, b| {
        base_name(&a.path)
            .cmp(base_name(&b.path))
            .then(a.path.cmp(&b.path))
    });
    Ok(found)
}

fn base_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, b)| b)
}

/// The series key of an increment's name (`.sql`, `.gz`, `.zst` suffixes
/// left out): a timestamp when its digits, or the digits after a leading
/// run such as a host's number, read as `yyyymmdd[HHMM[SS]]` (separators
/// allowed: `2026-11-30_0600`); else its last run of digits
/// (`mysql-bin.000042.sql` → 42, `db01-bin.000042` → 42).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Number(u64),
    Time(chrono::NaiveDateTime),
}

fn stem_of(name: &str) -> &str {
    let mut stem = name;
    loop {
        let before = stem;
        for suffix in [".gz", ".zst", ".zstd", ".sql", ".txt"] {
            stem = stem.strip_suffix(suffix).unwrap_or(stem);
        }
        if stem == before {
            return stem;
        }
    }
}

fn series_key(name: &str) -> Option<Key> {
    let stem = stem_of(name);
    // Runs of digits, in order.
    let runs: Vec<&str> = stem
        .split(|c: char| !c.is_ascii_digit())
        .filter(|r| !r.is_empty())
        .collect();
    for skip in 0..runs.len() {
        let digits: String = runs[skip..].concat();
        let parsed = match digits.len() {
            8 => chrono::NaiveDate::parse_from_str(&digits, "%Y%m%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0)),
            12 => chrono::NaiveDateTime::parse_from_str(&digits, "%Y%m%d%H%M").ok(),
            14 => chrono::NaiveDateTime::parse_from_str(&digits, "%Y%m%d%H%M%S").ok(),
            _ => None,
        };
        if let Some(t) = parsed.filter(|t| (1990..2200).contains(&chrono::Datelike::year(t))) {
            return Some(Key::Time(t));
        }
    }
    runs.last().and_then(|r| r.parse().ok()).map(Key::Number)
}

/// Whether the increments (already in name order) form an unbroken series
/// (see the module docs): `Ok(None)` when they do, `Ok(Some(note))` when
/// their names carry no number or time to judge by.
///
/// # Errors
/// The gap, naming the missing file(s) between which two.
fn check_series(files: &mut [SnapshotFile]) -> Result<Option<String>, String> {
    if files.len() < 2 {
        return Ok(None);
    }
    let keyed: Option<Vec<Key>> = files
        .iter()
        .map(|f| series_key(base_name(&f.path)))
        .collect();
    let Some(mut keys) = keyed else {
        return Ok(Some(
            "the increments' names carry no number or time, so gaps between them cannot be seen from the names".into(),
        ));
    };
    let numbers = keys.iter().all(|k| matches!(k, Key::Number(_)));
    let times = keys.iter().all(|k| matches!(k, Key::Time(_)));
    if !numbers && !times {
        return Ok(Some(
            "the increments' names mix numbers and times, so gaps between them cannot be seen from the names".into(),
        ));
    }
    // Apply in series order (unpadded numbers sort wrongly by name).
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_key(|&i| keys[i]);
    let sorted: Vec<SnapshotFile> = order.iter().map(|&i| files[i].clone()).collect();
    files.clone_from_slice(&sorted);
    keys.sort();
    let name = |i: usize| base_name(&files[i].path).to_string();
    if numbers {
        for (i, w) in keys.windows(2).enumerate() {
            let (Key::Number(a), Key::Number(b)) = (w[0], w[1]) else {
                continue;
            };
            if b == a {
                return Err(format!(
                    "{} and {} have the same number in the series",
                    name(i),
                    name(i + 1)
                ));
            }
            if b != a.saturating_add(1) {
                return Err(format!(
                    "the series is broken between {} and {}: {} missing",
                    name(i),
                    name(i + 1),
                    if b - a == 2 {
                        format!("number {} is", a + 1)
                    } else {
                        format!("numbers {}–{} are", a + 1, b - 1)
                    }
                ));
            }
        }
        return Ok(None);
    }
    let times: Vec<chrono::NaiveDateTime> = keys
        .iter()
        .filter_map(|k| match k {
            Key::Time(t) => Some(*t),
            Key::Number(_) => None,
        })
        .collect();
    let step = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .min()
        .unwrap_or_default();
    if step <= chrono::TimeDelta::zero() {
        return Err(format!(
            "two increments carry the same time ({})",
            times
                .windows(2)
                .find(|w| w[0] == w[1])
                .map_or(String::new(), |w| w[0].to_string())
        ));
    }
    for (i, w) in times.windows(2).enumerate() {
        if w[1] - w[0] >= step * 2 {
            return Err(format!(
                "the series is broken between {} and {}: the increments come every {}, and the one of {} is missing",
                name(i),
                name(i + 1),
                crate::duration::human(step.to_std().unwrap_or_default()),
                w[0] + step
            ));
        }
    }
    Ok(None)
}

/// The binary log a dump's position names (`-- CHANGE MASTER TO
/// MASTER_LOG_FILE='mysql-bin.000002', …`, written by `--master-data` /
/// `--source-data`): its base name and number.
fn dump_binlog(head: &[u8]) -> Option<(String, u64)> {
    let text = String::from_utf8_lossy(head);
    let at = text
        .find("MASTER_LOG_FILE='")
        .map(|i| i + "MASTER_LOG_FILE='".len())
        .or_else(|| {
            text.find("SOURCE_LOG_FILE='")
                .map(|i| i + "SOURCE_LOG_FILE='".len())
        })?;
    let file = text[at..].split('\'').next()?;
    binlog_parts(file)
}

/// The binary log an increment rotates to at its end (`… Rotate to
/// mysql-bin.000003  pos: 4`, the last event `mysqlbinlog` prints of a
/// closed binlog).
fn rotated_to(tail: &[u8]) -> Option<(String, u64)> {
    let text = String::from_utf8_lossy(tail);
    let line = text.lines().rev().find(|l| l.contains("Rotate to "))?;
    let file = line.split("Rotate to ").nth(1)?.split_whitespace().next()?;
    binlog_parts(file)
}

fn binlog_parts(file: &str) -> Option<(String, u64)> {
    let (base, n) = file.rsplit_once('.')?;
    Some((base.to_string(), n.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> Vec<SnapshotFile> {
        names
            .iter()
            .map(|n| SnapshotFile {
                path: format!("/backups/{n}"),
                node_type: "file".into(),
                size: 1,
            })
            .collect()
    }

    #[test]
    fn numbered_series_gap_is_named() {
        let ok = check_series(&mut files(&["incremental_01.sql", "incremental_02.sql"]));
        assert_eq!(ok, Ok(None));
        // Named after their binlog, with a host number.
        let ok = check_series(&mut files(&["db01-bin.000041.sql", "db01-bin.000042.sql"]));
        assert_eq!(ok, Ok(None));
        // Unpadded: applied in series order, not name order.
        let mut unpadded = files(&[
            "inc_1.sql",
            "inc_10.sql",
            "inc_2.sql",
            "inc_3.sql",
            "inc_4.sql",
            "inc_5.sql",
            "inc_6.sql",
            "inc_7.sql",
            "inc_8.sql",
            "inc_9.sql",
        ]);
        assert_eq!(check_series(&mut unpadded), Ok(None));
        assert_eq!(unpadded[9].path, "/backups/inc_10.sql");
        let e = check_series(&mut files(&[
            "mysql-bin.000041.sql",
            "mysql-bin.000043.sql",
        ]))
        .unwrap_err();
        assert!(e.contains("number 42 is missing"), "{e}");
        let e =
            check_series(&mut files(&["incremental_01.sql", "incremental_03.sql"])).unwrap_err();
        assert!(
            e.contains("incremental_01.sql and incremental_03.sql"),
            "{e}"
        );
        assert!(e.contains("number 2 is missing"), "{e}");
        // Names that say nothing: a note, not a pass in silence.
        assert!(check_series(&mut files(&["a.sql", "b.sql"]))
            .unwrap()
            .is_some());
    }

    #[test]
    fn timestamped_series_gap_is_named() {
        let mut ok = files(&[
            "inc_20261130T0000.sql",
            "inc_20261130T0600.sql",
            "inc_20261130T1200.sql",
        ]);
        assert_eq!(check_series(&mut ok), Ok(None));
        // Daily, across a month's end, with a host number before the date.
        let mut daily = files(&["db01_2026-11-30.sql.gz", "db01_2026-12-01.sql.gz"]);
        assert_eq!(check_series(&mut daily), Ok(None));
        let mut gap = files(&[
            "inc_20261130T0000.sql",
            "inc_20261130T0600.sql",
            "inc_20261130T1800.sql",
        ]);
        let e = check_series(&mut gap).unwrap_err();
        assert!(e.contains("2026-11-30 12:00:00"), "{e}");
    }

    #[test]
    fn binlog_positions() {
        assert_eq!(
            dump_binlog(b"--\n-- CHANGE MASTER TO MASTER_LOG_FILE='mysql-bin.000002', MASTER_LOG_POS=342;\n"),
            Some(("mysql-bin".into(), 2))
        );
        assert_eq!(
            rotated_to(b"#261130 22:24:50 server id 1  end_log_pos 5360 CRC32 0x7ee57f78 \tRotate to mysql-bin.000003  pos: 4\nDELIMITER ;\n# End of log file\n"),
            Some(("mysql-bin".into(), 3))
        );
    }

    #[test]
    fn increments_must_follow_the_dump() {
        let fed = |tail: &str| Fed {
            stored: 0,
            fed: 0,
            seconds: 0.0,
            result: Ok((ExecOutcome::default(), tail.as_bytes().to_vec(), true)),
            head: Vec::new(),
        };
        let dump = ("mysql-bin".to_string(), 2);
        let rotate = |n: u32| {
            format!("# at 5313\n#261130 server id 1 \tRotate to mysql-bin.{n:06}  pos: 4\n# End of log file\n")
        };
        // 000002 rotates to 000003, then 000003 to 000004: a chain.
        assert!(chain_break(Some(&dump), &fed(&rotate(3)), 0, "/b/i1.sql").is_none());
        assert!(chain_break(Some(&dump), &fed(&rotate(4)), 1, "/b/i2.sql").is_none());
        // The first increment after the dump is 000003's: 000002 is missing.
        let broken = chain_break(Some(&dump), &fed(&rotate(4)), 0, "/b/i1.sql").unwrap();
        assert_eq!(broken.status, Status::Failed);
        let e = broken.error.unwrap();
        assert!(e.contains("1 binlog(s) before it are missing"), "{e}");
        // No position in the dump, or a last binlog still open: nothing to prove.
        assert!(chain_break(None, &fed(&rotate(9)), 0, "/b/i1.sql").is_none());
        assert!(chain_break(Some(&dump), &fed("# End of log file\n"), 0, "/b/i1.sql").is_none());
    }

    #[test]
    fn trailers_and_heads() {
        assert!(last_line_starts(
            b"INSERT 1;\n-- Dump completed on 2026-11-30 22:00:01\n\n",
            DUMP_TRAILER
        ));
        assert!(!last_line_starts(
            b"-- Dump completed on x\nINSERT 1;\n",
            DUMP_TRAILER
        ));
        assert!(contains_line(
            b"# at 900\n# End of log file\nROLLBACK /* added by mysqlbinlog */;\n",
            BINLOG_TRAILER
        ));
        assert!(creates_database(b"-- MariaDB dump\n\nCREATE DATABASE /*!32312 IF NOT EXISTS*/ `gym`;\nUSE `gym`;\nCREATE TABLE x (a int);\n"));
        assert!(!creates_database(
            b"-- MariaDB dump\n\nCREATE TABLE x (a int);\n"
        ));
        assert_eq!(
            server_message("ERROR 1146 (42S02) at line 12: Table 'gym.x' doesn't exist"),
            "Table 'gym.x' doesn't exist"
        );
        let v = dump_versions(b"/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)\n--\n-- Host: localhost    Database: \n-- ------\n-- Server version\t10.11.19-MariaDB-0+deb12u1-log\n").unwrap();
        assert_eq!(v.server.as_deref(), Some("10.11.19-MariaDB-0+deb12u1-log"));
        assert_eq!(
            v.tool.as_deref(),
            Some("mariadb-dump 10.19 Distrib 10.11.19-MariaDB")
        );
        assert!(dump_versions(b"\n/*!40101 SET NAMES utf8mb4 */;\n").is_none());
    }
}
