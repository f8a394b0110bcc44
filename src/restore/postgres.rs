//! PostgreSQL logical dumps: `pg_dump` and `pg_dumpall` output streamed
//! into `psql` or `pg_restore` inside an empty running sandbox.
//!
//! | format | tool | connects to |
//! |---|---|---|
//! | `pg_dumpall` | `psql -X -q -v ON_ERROR_STOP=1` | `postgres` (the dump creates its databases) |
//! | `plain` with `CREATE DATABASE` (`pg_dump --create`) | same | `postgres` |
//! | `plain` without it | same | `dbname`, created first |
//! | `custom` (`pg_dump -Fc`) | `pg_restore --exit-on-error` | `dbname`, created first |
//!
//! A custom-format dump restored with several jobs (`sandbox.restore_jobs`,
//! see [`jobs_for`]) is first streamed into a file inside the sandbox (never
//! onto the host), because `pg_restore --jobs` needs a file it can seek in;
//! then `pg_restore --jobs=N` loads it and the file is deleted.
//!
//! Whether a plain dump creates its database is read from its head: the first
//! statement after the preamble of comments, `SET`s and
//! `set_config` calls is `CREATE DATABASE` exactly when it was made with
//! `--create` (PostgreSQL docs, `pg_dump`).
//!
//! A restore passes only when restic exits 0 (every blob read and verified),
//! the tool exits 0 having read all of its input, a plain dump ends with its
//! completeness trailer, and the database checks will connect to exists.

use std::time::Instant;

use futures_util::future::LocalBoxFuture as BoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{
    classify, has_trailer, head, image, open, plain_creates_database, quote_ident, restic_status,
    roles, Counter, DumpHead, Held, Opened, RestoreMethod, RestoreOutcome, RestorePlan, Source,
    HEAD_BYTES,
};
use crate::config::{
    Compression, DatabaseConfig, DumpFormat, RestoreJobs, SandboxConfig, SANDBOX_SUPERUSER,
};
use crate::report::Status;
use crate::sandbox::{pg_message, Sandbox};
use crate::tier::{Repository, Snapshot};

/// `pg_dump`/`pg_dumpall` output into `psql` or `pg_restore`.
pub struct PgLogical;

/// The registered instance.
pub static PG_LOGICAL: PgLogical = PgLogical;

impl RestoreMethod for PgLogical {
    fn volatile(&self, format: DumpFormat) -> crate::ledger::identity::Volatile {
        use crate::ledger::identity::{pg_restrict_line, Volatile};
        match format {
            DumpFormat::Custom => Volatile::CustomArchiveHead,
            _ => Volatile::Lines(pg_restrict_line),
        }
    }

    fn tool(&self, plan: &RestorePlan) -> &'static str {
        match plan.database.format {
            DumpFormat::Custom => "pg_restore",
            _ => "psql",
        }
    }

    fn jobs(&self, db: &DatabaseConfig, size: u64, sandbox: &SandboxConfig) -> u32 {
        jobs_for(db.format, size, sandbox)
    }

    fn image_follows_backup(&self, database: &DatabaseConfig) -> bool {
        image::is_template(&database.image)
    }

    fn open_early(&self, database: &DatabaseConfig, source: &Source<'_>) -> Option<Held> {
        if !holds_stream(database.format) {
            return None;
        }
        Some(Held {
            path: database.path.clone(),
            opened: open_dump(database, source).ok()?,
            head: Vec::new(),
        })
    }

    fn inspect<'a>(
        &'a self,
        plan: &'a RestorePlan,
        source: &'a Source<'a>,
    ) -> BoxFuture<'a, Result<DumpHead, RestoreOutcome>> {
        Box::pin(inspect(plan, source))
    }

    fn image(&self, database: &DatabaseConfig, head: &DumpHead) -> Result<String, String> {
        image::resolve(&database.image, &head.versions, &database.path)
    }

    fn admit(
        &self,
        which: &str,
        server_version: &str,
        plan: &RestorePlan,
        head: &DumpHead,
    ) -> Result<(), String> {
        image::check_server(which, server_version, &plan.database.name, &head.versions)
    }

    fn execute<'a>(
        &'a self,
        plan: &'a RestorePlan,
        source: &'a Source<'a>,
        sandbox: &'a Sandbox,
        progress: &'a Counter,
    ) -> BoxFuture<'a, RestoreOutcome> {
        Box::pin(execute(
            plan,
            source.repo,
            source.snapshot,
            sandbox,
            source.timeouts,
            progress,
            source.held.take(&plan.database.path),
        ))
    }
}

/// Magic at the start of a custom-format archive (PostgreSQL
/// `pg_backup_archiver.c`).
const CUSTOM_MAGIC: &[u8] = b"PGDMP";

/// Smallest custom-format dump (bytes, as stored) that `restore_jobs =
/// "auto"` restores with `pg_restore --jobs`: below it, copying the dump in
/// first costs more than parallel jobs save.
pub const JOBS_MIN_BYTES: u64 = 16 * 1024 * 1024;

/// Most jobs `restore_jobs = "auto"` gives `pg_restore`.
const JOBS_MAX_AUTO: u32 = 8;

/// Smallest plain or `pg_dumpall` script (bytes, as stored) that
/// `restore_jobs = "auto"` loads over several `psql` sessions
/// ([`super::parallel`]): below it, the sessions' start and the barriers
/// between sections cost more than they save.
pub const PLAIN_JOBS_MIN_BYTES: u64 = 64 * 1024 * 1024;

/// Fewest sandbox CPUs with which `restore_jobs = "auto"` loads a plain
/// script over several sessions. Measured on a 2-CPU host
/// (`bench/results-parallel.md`): one `COPY` stream and `restic dump`
/// already keep both CPUs busy, and two sessions were slower than one; so
/// "auto" starts at 4, where a second load has a CPU of its own.
pub const PLAIN_JOBS_MIN_CPUS: u32 = 4;

/// Jobs for a dump of `format` and `size` bytes (as stored): `pg_restore
/// --jobs` for custom format, `psql` sessions for plain and `pg_dumpall`
/// scripts ([`super::parallel`]). `restore_jobs` when it is a number; with
/// `"auto"`, the sandbox's whole CPUs (`sandbox.cpus`, or this host's CPUs
/// for the local engine; at most 8) when there are at least two (custom)
/// or [`PLAIN_JOBS_MIN_CPUS`] (plain) and the dump is at least
/// [`JOBS_MIN_BYTES`] (custom) or [`PLAIN_JOBS_MIN_BYTES`] (plain), else 1.
pub fn jobs_for(format: DumpFormat, size: u64, sandbox: &SandboxConfig) -> u32 {
    let (min, min_cpus) = match format {
        DumpFormat::Custom => (JOBS_MIN_BYTES, 2),
        DumpFormat::Plain | DumpFormat::PgDumpall => (PLAIN_JOBS_MIN_BYTES, PLAIN_JOBS_MIN_CPUS),
        DumpFormat::Mysqldump | DumpFormat::Basebackup => return 1,
    };
    match sandbox.restore_jobs {
        RestoreJobs::Fixed(n) => n.max(1),
        RestoreJobs::Auto => {
            let cpus =
                crate::sandbox::engine_entry(&sandbox.engine).map_or(1, |e| (e.cpus)(sandbox));
            if cpus >= min_cpus && size >= min {
                cpus.min(JOBS_MAX_AUTO)
            } else {
                1
            }
        }
    }
}

/// Most bytes of a plain dump [`inspect`] reads looking for its version
/// comments (a `pg_dumpall` script has them in its first database section,
/// after the roles, which may be many).
const INSPECT_PLAIN_BYTES: usize = 16 * 1024 * 1024;

/// Bytes of the decompressed end of a dump kept for its completeness
/// check: the trailer of a plain script; none for a custom archive
/// (pg_restore judges its own end).
fn keep_tail(format: DumpFormat) -> usize {
    if format == DumpFormat::Custom {
        0
    } else {
        4096
    }
}

/// Whether a dump of `format` is restored from the stream its head was
/// read from. Not a custom archive: its restore first reads the whole
/// archive for the roles its table of contents names (a `restic dump` of
/// its own), and a held restic would wait through that with its index in
/// memory.
fn holds_stream(format: DumpFormat) -> bool {
    format != DumpFormat::Custom
}

/// Start `restic dump` of `db`'s dump as its restore reads it: stored
/// bytes counted from 0 (the restore's progress follows them,
/// [`Counter::forward_to`]), the end kept for the trailer check.
fn open_dump(db: &DatabaseConfig, source: &Source<'_>) -> Result<Opened, String> {
    open(
        &db.path,
        db.compression,
        source.repo,
        source.snapshot,
        source.timeouts.stall,
        Counter::default(),
        keep_tail(db.format),
    )
}

/// Read the head of the planned dump before its sandbox starts, so that
/// the sandbox's image can follow the dump's version. Its `restic dump` is
/// left in `source.held`, paused where the head ends, for [`execute`] to
/// go on reading; a dump read to its end is judged here (restic's status
/// first) and not held.
///
/// # Errors
/// An outcome that ends the restore: `failed` when restic reports damage,
/// the dump cannot be decompressed, or a custom dump is not an archive;
/// `error` when restic fails otherwise or stalls.
pub async fn inspect(plan: &RestorePlan, source: &Source<'_>) -> Result<DumpHead, RestoreOutcome> {
    let db = &plan.database;
    let timeouts = source.timeouts;
    // The stream opened while the snapshot was listed, or a new one.
    let (mut s, mut head) = match source.held.take(&db.path) {
        Some(h) => (h.opened, h.head),
        None => (
            open_dump(db, source).map_err(|e| RestoreOutcome::new(Status::Error, Some(e)))?,
            Vec::with_capacity(HEAD_BYTES),
        ),
    };
    let limit = if db.format == DumpFormat::Custom {
        HEAD_BYTES
    } else {
        INSPECT_PLAIN_BYTES
    };
    let mut chunk = vec![0u8; HEAD_BYTES];
    let mut ended = false;
    let read_error = loop {
        match s.tap.read(&mut chunk).await {
            Ok(0) => {
                ended = true;
                break None;
            }
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) => break Some(e),
        }
        let enough = match db.format {
            DumpFormat::Custom => head.len() >= 4096,
            _ => head::plain_versions(&head).complete(),
        };
        if enough || head.len() >= limit {
            break None;
        }
    };
    let stalled = s.stalled();
    if holds_stream(db.format) && !ended && !stalled && read_error.is_none() {
        let versions = match db.format {
            DumpFormat::Custom => head::custom_versions(&head),
            _ => Ok(head::plain_versions(&head)),
        };
        // A custom head that does not parse is judged below, restic first.
        if let Ok(versions) = versions {
            source.held.put(Held {
                path: db.path.clone(),
                opened: s,
                head,
            });
            return Ok(DumpHead {
                versions,
                unreadable: None,
            });
        }
    }
    let restic = s.dump.stop().await;
    if stalled {
        return Err(RestoreOutcome::new(
            Status::Error,
            Some(format!(
                "phase streaming: restic sent no data of {} for {} (timeouts.stall); restic was stopped. Is the repository's disk or peer hung?",
                db.path,
                crate::duration::human(timeouts.stall)
            )),
        ));
    }
    if let Err(r) = restic {
        return Err(RestoreOutcome::new(restic_status(&r), Some(r.to_string())));
    }
    if let Some(e) = read_error {
        return Err(RestoreOutcome::new(
            Status::Failed,
            Some(format!(
                "read the start of {}: {e} (is the file really {:?}-compressed?)",
                db.path, db.compression
            )),
        ));
    }
    let mut unreadable = None;
    let versions = match db.format {
        _ if head.is_empty() => {
            unreadable = Some(format!(
                "{} is empty (0 bytes{}): the backup job wrote nothing",
                db.path,
                if db.compression == Compression::None {
                    ""
                } else {
                    " after decompression"
                }
            ));
            head::DumpVersions::default()
        }
        DumpFormat::Custom => match head::custom_versions(&head) {
            Ok(v) => v,
            Err(head::HeaderError::NotCustom) => {
                return Err(RestoreOutcome::new(Status::Failed, Some(not_custom(db))))
            }
            // A damaged header: pg_restore will say so too.
            Err(e) => {
                unreadable = Some(format!(
                    "the custom archive {} cannot be read: {e}; it is truncated or damaged",
                    db.path
                ));
                head::DumpVersions::default()
            }
        },
        _ => {
            let v = head::plain_versions(&head);
            if !v.complete() && ended {
                unreadable = Some(format!(
                    "{} ends after {} bytes without the `Dumped by pg_dump version` comment every pg_dump script carries: it is truncated, or not a pg_dump script",
                    db.path,
                    head.len()
                ));
            }
            v
        }
    };
    Ok(DumpHead {
        versions,
        unreadable,
    })
}

fn truncated(db: &DatabaseConfig) -> String {
    format!(
        "{} is truncated: it does not end with the `-- PostgreSQL database {}dump complete` trailer",
        db.path,
        if db.format == DumpFormat::PgDumpall {
            "cluster "
        } else {
            ""
        }
    )
}

fn not_custom(db: &DatabaseConfig) -> String {
    format!(
        "{} is not a pg_dump custom-format archive (it does not start with PGDMP); check `format` of database `{}`",
        db.path, db.name
    )
}

/// Run statements as the sandbox superuser in database `postgres`.
async fn admin(sandbox: &Sandbox, sql: &str) -> Result<(), String> {
    let client = sandbox
        .connect("postgres")
        .await
        .map_err(|e| pg_message(&e))?;
    client.batch_execute(sql).await.map_err(|e| pg_message(&e))
}

/// The roles the sandbox has (`pg_roles`), with a connection to create
/// more over.
async fn sandbox_roles(
    sandbox: &Sandbox,
) -> Result<
    (
        std::sync::Arc<tokio_postgres::Client>,
        std::collections::BTreeSet<String>,
    ),
    String,
> {
    let client = sandbox
        .connect("postgres")
        .await
        .map_err(|e| pg_message(&e))?;
    let rows = client
        .query("SELECT rolname::text FROM pg_catalog.pg_roles", &[])
        .await
        .map_err(|e| pg_message(&e))?;
    let names = rows.iter().map(|r| r.get::<_, String>(0)).collect();
    Ok((std::sync::Arc::new(client), names))
}

/// The roles a custom archive's schema names, read by `pg_restore
/// --schema-only` in the sandbox (it reads the archive's table of contents
/// and stops, so restic is stopped after the head of the archive). Best
/// effort: when this fails, the restore itself tells why.
async fn archive_roles(
    db: &DatabaseConfig,
    repo: &Repository,
    snapshot: &Snapshot,
    sandbox: &Sandbox,
    timeouts: &crate::config::Timeouts,
) -> Vec<String> {
    let Ok(mut s) = open(
        &db.path,
        db.compression,
        repo,
        snapshot,
        timeouts.stall,
        Counter::default(),
        0,
    ) else {
        return Vec::new();
    };
    let file = sandbox.scratch_path("drill-schema.sql");
    let cmd = [
        "sh",
        "-c",
        "umask 077 && exec pg_restore --schema-only --no-password --file=\"$1\"",
        "sh",
        file.as_str(),
    ];
    let ran = tokio::time::timeout(
        timeouts.restore,
        sandbox.exec_with_input(&cmd, Some(&mut s.tap)),
    )
    .await;
    let _ = s.dump.stop().await;
    let mut roles = Vec::new();
    if matches!(&ran, Ok(Ok(x)) if x.exit_code == Some(0)) {
        let mut sql = Vec::new();
        if let Ok((x, _)) = sandbox
            .exec_to_writer(&["cat", file.as_str()], &mut sql)
            .await
        {
            if x.exit_code == Some(0) {
                roles = roles::roles_in_script(&sql);
            }
        }
    }
    let _ = sandbox
        .exec_with_input(&["rm", "-f", file.as_str()], None::<&[u8]>)
        .await;
    roles
}

async fn database_exists(sandbox: &Sandbox, dbname: &str) -> Result<bool, String> {
    let client = sandbox
        .connect("postgres")
        .await
        .map_err(|e| pg_message(&e))?;
    client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&dbname])
        .await
        .map(|row| row.is_some())
        .map_err(|e| pg_message(&e))
}

/// Stream the planned dump from `repo` into `sandbox` and judge the result.
/// Never returns a pass without proof: see the module docs. `progress`
/// counts the bytes read from the repository as they come (the dump as
/// stored, of `plan.file.size`).
async fn execute(
    plan: &RestorePlan,
    repo: &Repository,
    snapshot: &Snapshot,
    sandbox: &Sandbox,
    timeouts: &crate::config::Timeouts,
    progress: &Counter,
    held: Option<Held>,
) -> RestoreOutcome {
    let started = Instant::now();
    let db = &plan.database;

    // Roles: the configured ones now; those a pg_dump names as they come
    // (plain) or from the archive's table of contents (custom).
    let (admin_client, mut known) = match sandbox_roles(sandbox).await {
        Ok(x) => x,
        Err(e) => {
            return RestoreOutcome::new(
                Status::Error,
                Some(format!("list the roles of the sandbox: {e}")),
            )
        }
    };
    let mut wanted: Vec<String> = db.roles.clone();
    if db.format == DumpFormat::Custom {
        wanted.extend(archive_roles(db, repo, snapshot, sandbox, timeouts).await);
    }
    let mut roles_created: Vec<String> = Vec::new();
    for r in wanted {
        if !known.contains(&r) && !roles_created.contains(&r) {
            roles_created.push(r);
        }
    }
    if !roles_created.is_empty() {
        if let Err(e) = admin_client
            .batch_execute(&roles::create_roles_sql(&roles_created))
            .await
        {
            return RestoreOutcome::new(
                Status::Error,
                Some(format!(
                    "create roles {roles_created:?} in the sandbox: {}",
                    pg_message(&e)
                )),
            );
        }
        known.extend(roles_created.iter().cloned());
    }

    // The stream `inspect` left open, or a new one.
    let (opened, mut head) = match held {
        Some(h) => {
            h.opened.stored.forward_to(progress);
            h.opened.waited();
            (h.opened, h.head)
        }
        None => match open(
            &db.path,
            db.compression,
            repo,
            snapshot,
            timeouts.stall,
            progress.clone(),
            keep_tail(db.format),
        ) {
            Ok(s) => (s, Vec::with_capacity(HEAD_BYTES)),
            Err(e) => return RestoreOutcome::new(Status::Error, Some(e)),
        },
    };
    let Opened {
        dump,
        mut tap,
        stored: stored_counter,
        stalled,
        ..
    } = opened;
    let stalled_error = || {
        format!(
            "phase streaming: restic sent no data of {} for {} (timeouts.stall); restic was stopped. Is the repository's disk or peer hung?",
            db.path,
            crate::duration::human(timeouts.stall)
        )
    };

    // Read the head (at least HEAD_BYTES, what `inspect` read may be more)
    // to choose how to restore; it is then replayed in front of the rest
    // of the stream.
    let head_result = (&mut tap)
        .take(HEAD_BYTES.saturating_sub(head.len()) as u64)
        .read_to_end(&mut head)
        .await;
    let discovered_roles = std::cell::RefCell::new(Vec::<String>::new());
    let parallel_notes = std::cell::RefCell::new(Vec::<String>::new());
    let parallel_sessions = std::cell::RefCell::new(None::<crate::report::SessionsReport>);
    // The dump's content identity, computed from the stream the restore
    // reads; given to the ledger only when restic proved that stream whole.
    let identity = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let restic_whole = std::cell::Cell::new(false);
    let finish = |status: Status, error: Option<String>, restored_bytes: u64| RestoreOutcome {
        status,
        bytes: stored_counter.get(),
        restored_bytes,
        seconds: started.elapsed().as_secs_f64(),
        error,
        roles_created: roles_created
            .iter()
            .chain(discovered_roles.borrow().iter())
            .cloned()
            .collect(),
        cause: None,
        increments: Vec::new(),
        notes: parallel_notes.borrow().clone(),
        dump: None,
        recovery: None,
        server_version: None,
        sessions: parallel_sessions.borrow().clone(),
        content_id: restic_whole
            .get()
            .then(|| identity.get().cloned())
            .flatten(),
    };
    if head_result.is_err() && stalled.load(std::sync::atomic::Ordering::Relaxed) {
        let _ = dump.stop().await;
        return finish(Status::Error, Some(stalled_error()), tap.bytes());
    }
    if let Err(e) = head_result {
        let restic = dump.stop().await;
        return match restic {
            Err(r) => {
                let status = restic_status(&r);
                finish(status, Some(r.to_string()), tap.bytes())
            }
            Ok(()) => finish(
                Status::Failed,
                Some(format!(
                    "read the start of {}: {e} (is the file really {:?}-compressed?)",
                    db.path, db.compression
                )),
                tap.bytes(),
            ),
        };
    }

    let (connect_db, pre_create) = match db.format {
        DumpFormat::PgDumpall => ("postgres".to_string(), false),
        DumpFormat::Plain if plain_creates_database(&head) => ("postgres".to_string(), false),
        DumpFormat::Plain | DumpFormat::Mysqldump | DumpFormat::Basebackup => {
            (db.dbname.clone(), true)
        }
        DumpFormat::Custom => {
            if !head.starts_with(CUSTOM_MAGIC) {
                let _ = dump.stop().await;
                return finish(Status::Failed, Some(not_custom(db)), tap.bytes());
            }
            (db.dbname.clone(), true)
        }
    };
    if pre_create {
        if let Err(e) = admin(
            sandbox,
            // template0, as the PostgreSQL docs advise for restoring a
            // pg_dump (template1 of a custom image may hold extensions).
            &format!(
                "CREATE DATABASE {} TEMPLATE template0",
                quote_ident(&connect_db)
            ),
        )
        .await
        {
            let _ = dump.stop().await;
            return finish(
                Status::Error,
                Some(format!(
                    "create database `{connect_db}` in the sandbox: {e}"
                )),
                tap.bytes(),
            );
        }
    }

    let mut discovery_handle: Option<roles::Discovered> = None;
    let user_flag = format!("--username={SANDBOX_SUPERUSER}");
    let db_flag = format!("--dbname={connect_db}");
    // pg_restore --jobs needs a file: the stream goes into one inside the
    // sandbox first.
    let staged = (db.format == DumpFormat::Custom && plan.jobs > 1)
        .then(|| sandbox.scratch_path("drill-restore.dump"));
    let jobs_flag = format!("--jobs={}", plan.jobs);
    let cmd: Vec<&str> = match (&staged, db.format) {
        (Some(file), _) => vec!["sh", "-c", "umask 077 && exec cat > \"$1\"", "sh", file],
        (None, DumpFormat::Custom) => vec![
            "pg_restore",
            "--exit-on-error",
            "--no-password",
            &user_flag,
            &db_flag,
        ],
        _ => vec![
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--no-password",
            "--output=/dev/null",
            &user_flag,
            &db_flag,
        ],
    };
    let head_copy = if db.format == DumpFormat::Plain {
        head.clone()
    } else {
        Vec::new()
    };
    let input = super::Identify::new(
        std::io::Cursor::new(head).chain(&mut tap),
        plan.method().volatile(db.format),
        identity.clone(),
    );
    // A plain pg_dump script: each role a statement names is created before
    // that statement reaches psql (pg_dumpall scripts create their own).
    let mut input: Box<dyn AsyncRead + Unpin + Send + '_> = if db.format == DumpFormat::Plain {
        let discovery = roles::RoleDiscovery::new(input, admin_client.clone(), known.clone());
        discovery_handle = Some(discovery.discovered());
        Box::new(discovery)
    } else {
        Box::new(input)
    };
    let deadline = tokio::time::Instant::now() + timeouts.restore;
    let overran = || {
        format!(
            "phase restore: the restore of {} did not finish within {} (timeouts.restore); it was stopped",
            db.path,
            crate::duration::human(timeouts.restore)
        )
    };
    // A plain script goes through the router: over several psql sessions,
    // or one (where it still loads large tables skipping WAL, when the
    // server can: `wal_level=minimal`, as drill's restore tuning sets).
    let routed = db.format != DumpFormat::Custom;
    let wal_skip = if routed {
        match admin_client.query_one("SHOW wal_level", &[]).await {
            Ok(row) if row.get::<_, String>(0) == "minimal" => super::parallel::wal_skip_bytes(),
            _ => None,
        }
    } else {
        None
    };
    let mut notes = Vec::new();
    let mut sessions = None;
    let exec = if routed {
        tokio::time::timeout_at(
            deadline,
            super::parallel::load(
                sandbox,
                &cmd,
                &mut input,
                plan.jobs as usize,
                super::parallel::chunk_bytes(),
                wal_skip,
            ),
        )
        .await
        .map(|r| {
            r.map(|loaded| {
                notes.extend(loaded.notes.iter().map(|n| {
                    format!("psql sessions: the rest of a database went to one session after {n}")
                }));
                sessions = Some(crate::report::SessionsReport {
                    jobs: plan.jobs,
                    widest: loaded.widest,
                    groups: loaded.groups,
                    bytes: loaded.original.clone(),
                    added_bytes: loaded.added,
                    serial_because: loaded.notes.clone(),
                    wal_skipped_tables: loaded.wal_skipped,
                });
                loaded.exec
            })
        })
    } else {
        tokio::time::timeout_at(deadline, sandbox.exec_with_input(&cmd, Some(&mut input))).await
    };
    drop(input);
    *parallel_notes.borrow_mut() = notes;
    *parallel_sessions.borrow_mut() = sessions;
    let mut role_note = None;
    if let Some(d) = &discovery_handle {
        *discovered_roles.borrow_mut() = d.created();
        role_note = d.error();
    }
    let exec = match exec {
        Ok(x) => x,
        Err(_) => {
            let _ = dump.stop().await;
            return finish(Status::Error, Some(overran()), tap.bytes());
        }
    };
    if stalled.load(std::sync::atomic::Ordering::Relaxed) {
        let _ = dump.stop().await;
        return finish(Status::Error, Some(stalled_error()), tap.bytes());
    }
    let exec = match exec {
        Ok(x) => x,
        Err(e) => {
            let _ = dump.stop().await;
            // A sandbox that died (or ran out of memory) explains the
            // failed exec better than the API error does.
            let why = match sandbox.check_alive().await {
                Err(dead) => dead.to_string(),
                Ok(()) => e.to_string(),
            };
            return finish(Status::Error, Some(why), tap.bytes());
        }
    };

    // restic's verdict on the bytes it sent comes first: a damaged
    // repository explains any later failure.
    // restic is waited for only when its output was read to the end (a
    // parallel restore stops reading at the first failed session).
    let read_all =
        exec.stdin_error.is_none() && tap.read_error().is_none() && (!routed || tap.at_eof());
    let restic = if read_all {
        dump.finish().await
    } else {
        dump.stop().await
    };
    if let Err(r) = restic {
        let status = restic_status(&r);
        return finish(status, Some(r.to_string()), tap.bytes());
    }
    restic_whole.set(read_all);
    if let Some(e) = tap.read_error() {
        return finish(
            Status::Failed,
            Some(format!("decompress {}: {e}; the dump is damaged", db.path)),
            tap.bytes(),
        );
    }
    let exec = match &staged {
        None => exec,
        Some(file) => {
            // The copy: a failure here is the sandbox's (its disk), not the
            // dump's.
            if !exec.succeeded() {
                let why = match sandbox.check_alive().await {
                    Err(dead) => dead.to_string(),
                    Ok(()) => format!(
                        "copy {} into the sandbox for pg_restore --jobs: {}; give the sandbox more disk or set sandbox.restore_jobs = 1 to stream it",
                        db.path,
                        exec.output.summary(3)
                    ),
                };
                return finish(Status::Error, Some(why), tap.bytes());
            }
            let restore_cmd = [
                "pg_restore",
                "--exit-on-error",
                "--no-password",
                &jobs_flag,
                &user_flag,
                &db_flag,
                file.as_str(),
            ];
            let restored = tokio::time::timeout_at(
                deadline,
                sandbox.exec_with_input(&restore_cmd, None::<&[u8]>),
            )
            .await;
            // The copy is not needed any more, whatever happened (a kept
            // sandbox should not carry it).
            let _ = sandbox
                .exec_with_input(&["rm", "-f", file.as_str()], None::<&[u8]>)
                .await;
            match restored {
                Err(_) => return finish(Status::Error, Some(overran()), tap.bytes()),
                Ok(Err(e)) => {
                    let why = match sandbox.check_alive().await {
                        Err(dead) => dead.to_string(),
                        Ok(()) => e.to_string(),
                    };
                    return finish(Status::Error, Some(why), tap.bytes());
                }
                Ok(Ok(x)) => x,
            }
        }
    };
    if !exec.succeeded() {
        if let Err(e) = sandbox.check_alive().await {
            return finish(Status::Error, Some(e.to_string()), tap.bytes());
        }
        // A plain dump read to its end without its trailer is truncated,
        // whatever psql made of its cut last statement.
        if db.format != DumpFormat::Custom && tap.at_eof() && !has_trailer(&tap.tail(), db.format) {
            let mut outcome = finish(Status::Failed, Some(truncated(db)), tap.bytes());
            outcome.cause = Some(classify::Classified {
                name: "truncated",
                class: classify::Class::Damage,
                object: None,
                fix: String::new(),
            });
            return outcome;
        }
        let what = match exec.exit_code {
            Some(c) => format!("{} exited with {c}", plan.tool()),
            None => format!("{} did not report an exit code", plan.tool()),
        };
        let why = if exec.output.errors.is_empty() && exec.output.tail.is_empty() {
            exec.stdin_error.clone().unwrap_or_default()
        } else {
            exec.output.summary(3)
        };
        // Environment or backup: the first error line decides. A tool
        // killed by a signal (the kernel's OOM killer inside the sandbox's
        // memory cap) printed none.
        let first = exec.output.errors.first().map(String::as_str);
        let cause = match exec.exit_code {
            Some(c) if c > 128 && first.is_none() => classify::Classified {
                name: "tool-killed",
                class: classify::Class::Environment,
                object: None,
                fix: format!(
                    "{} was killed by signal {} inside the sandbox (the kernel's OOM killer at the memory cap, most often): raise sandbox.memory and drill again",
                    plan.tool(),
                    c - 128
                ),
            },
            _ if db.format == DumpFormat::Plain && roles::drops_without_if_exists(&head_copy) => {
                classify::classify_clean_dump(first)
            }
            _ => classify::classify(first),
        };
        // A pg_dumpall script creates every role it names: one it lacks
        // is the script's fault (cut or edited), not the sandbox's.
        let cause = if db.format == DumpFormat::PgDumpall && cause.name == "missing-role" {
            classify::Classified {
                class: classify::Class::Damage,
                fix: "a pg_dumpall script creates the roles it names, and this one names a role it does not create: it is incomplete or was edited".into(),
                ..cause
            }
        } else {
            cause
        };
        let why = match &role_note {
            Some(note) => format!("{why} ({note})"),
            None => why,
        };
        let (status, message) = match cause.class {
            classify::Class::Environment => (
                Status::Error,
                format!(
                    "{what}: {why} — the sandbox cannot take this backup ({}), not a verdict on the backup: {}",
                    cause.name, cause.fix
                ),
            ),
            classify::Class::Damage if cause.name == classify::UNRECOGNISED => {
                (Status::Failed, format!("{what}: {why}"))
            }
            classify::Class::Damage => (
                Status::Failed,
                format!("{what}: {why} ({}: {})", cause.name, cause.fix),
            ),
        };
        let mut outcome = finish(status, Some(sandbox.password.redact(&message)), tap.bytes());
        outcome.cause = Some(cause);
        return outcome;
    }
    if db.format != DumpFormat::Custom && !has_trailer(&tap.tail(), db.format) {
        return finish(Status::Failed, Some(truncated(db)), tap.bytes());
    }
    match database_exists(sandbox, &db.dbname).await {
        Ok(true) => finish(Status::Passed, None, tap.bytes()),
        Ok(false) => finish(
            Status::Failed,
            Some(format!(
                "the restore finished but database `{}` does not exist in the sandbox; the dump does not hold it (or set `dbname` of database `{}`)",
                db.dbname, db.name
            )),
            tap.bytes(),
        ),
        Err(e) => finish(Status::Error, Some(format!("look up database `{}` after the restore: {e}", db.dbname)), tap.bytes()),
    }
}
