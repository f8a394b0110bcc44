//! The path every restoring command shares: open a tier where it is today,
//! select a snapshot, select databases, and restore them into sandboxes
//! (with their checks for `drill run` and `bisect`; without for `diff` and
//! `extract`). `drill run`, `bisect`, `diff` and `extract` all come here;
//! none restores a database another way.

use std::pin::Pin;
use std::time::Instant;

use futures_util::future::LocalBoxFuture;

use crate::checks;
use crate::clock::Clock;
use crate::config::{CheckDefinition, Config, DatabaseConfig};
use crate::report::{self, CheckReport, DatabaseReport, Event, EventSink, RestoreReport, Status};
use crate::restore;
use crate::sandbox::{Engine, Sandbox, SandboxRequest};
use crate::tier::{Repository, Snapshot, TierError};

use super::RunError;

/// Errors that end `diff`, `bisect` or `extract` before a record exists.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Bad command line (unknown name, snapshot, table).
    #[error("{0}")]
    Usage(String),
    /// The tier could not be read (exit 3).
    #[error(transparent)]
    Tier(#[from] TierError),
    /// The environment prevented the work (exit 3).
    #[error("{0}")]
    Environment(String),
    /// The backup is bad (exit 1).
    #[error("{0}")]
    Backup(String),
    /// The record could not be written.
    #[error(transparent)]
    Report(#[from] report::ReportError),
}

impl From<RunError> for CommandError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Usage(m) => CommandError::Usage(m),
            RunError::Report(r) => CommandError::Report(r),
        }
    }
}

impl CommandError {
    /// Map a [`TierError`]: usage errors (unknown snapshot, prompt without a
    /// terminal) to [`CommandError::Usage`].
    pub fn tier(e: TierError) -> Self {
        if e.is_usage() {
            CommandError::Usage(e.to_string())
        } else {
            CommandError::Tier(e)
        }
    }
}

/// The tier's repository, opened where it is today (a cold tier's mounted
/// disk); location warnings are emitted.
pub(crate) async fn open_tier(
    config: &Config,
    tier: &str,
    clock: &dyn Clock,
    events: &dyn EventSink,
) -> Result<Repository, CommandError> {
    let t = config.tier(tier).map_err(CommandError::Usage)?;
    let location = crate::tier::locate(t, &clock.now().with_timezone(&config.timezone))
        .map_err(CommandError::tier)?;
    for w in &location.warnings {
        events.emit(&Event::Warning { message: w.clone() });
    }
    Repository::open_at(t, &location.repository, &config.restic)
        .await
        .map(|r| r.with_listing_timeout(config.timeouts.listing))
        .map_err(CommandError::tier)
}

/// The snapshot `wanted` (`latest`, an id or a unique prefix).
pub(crate) async fn pick_snapshot(
    repo: &Repository,
    wanted: &str,
) -> Result<Snapshot, CommandError> {
    repo.select_snapshot(wanted)
        .await
        .map_err(CommandError::tier)?
        .ok_or_else(|| {
            CommandError::Backup(format!(
                "repository {} has no snapshots",
                repo.display_location()
            ))
        })
}

/// The `[[databases]]` entries named (all when `names` is empty).
pub(crate) fn select_databases<'a>(
    config: &'a Config,
    names: &[String],
) -> Result<Vec<&'a DatabaseConfig>, CommandError> {
    for n in names {
        match config.databases.iter().find(|d| &d.name == n) {
            None => {
                return Err(CommandError::Usage(format!(
                    "database `{n}` is not a [[databases]] entry in {}",
                    config.path.display()
                )))
            }
            Some(d) if d.kind.catalog().is_none() => {
                return Err(CommandError::Usage(format!(
                    "database `{n}` is a {} database, and diff, bisect and extract read PostgreSQL databases only; drill run proves it",
                    d.kind.title()
                )))
            }
            Some(_) => {}
        }
    }
    let dbs: Vec<&DatabaseConfig> = config
        .databases
        .iter()
        .filter(|d| names.is_empty() || names.contains(&d.name))
        .filter(|d| {
            let ok = d.kind.catalog().is_some();
            if !ok {
                eprintln!(
                    "drill: database `{}` ({}) is left out: diff, bisect and extract read PostgreSQL databases only",
                    d.name,
                    d.kind.title()
                );
            }
            ok
        })
        .collect();
    if dbs.is_empty() {
        return Err(CommandError::Usage(format!(
            "{} lists no [[databases]]",
            config.path.display()
        )));
    }
    Ok(dbs)
}

/// Restore `database` from the source's snapshot into a fresh sandbox, no
/// checks: [`drill_snapshot`] for one database, its sandbox kept. The
/// restore's verdict goes to the ledger under `command` (`diff`,
/// `bisect`, `extract`) and the identity of no checks, so it never stands
/// for a checked verdict; a ledger that cannot take it is a warning.
/// `Err((status, why))` when the restore did not pass.
pub(crate) async fn restore_one(
    config: &Config,
    source: &SnapshotSource<'_>,
    database: &DatabaseConfig,
    command: &str,
    events: &dyn EventSink,
) -> Result<Sandbox, (Status, String)> {
    let mut dbs = vec![DbRun::new(config, database, &[])];
    dbs[0].checks.clear();
    let mut kept = drill_snapshot(config, source, &mut dbs, true, events).await;
    if dbs[0].report.restore.status != Status::NotRun {
        let who = super::Recorded {
            command,
            run_id: source.run_id,
            tier: source.tier,
            rto_seconds: None,
            report_file: None,
        };
        let restored = std::slice::from_ref(&dbs[0].report);
        if let Err(e) = super::record_verdicts(
            config,
            &who,
            source.repo,
            source.snapshot,
            restored,
            None,
            None,
        )
        .await
        {
            events.emit(&Event::Warning {
                message: format!(
                    "the ledger could not record the restore of `{}` from snapshot {}: {e}",
                    database.name, source.snapshot.short_id
                ),
            });
        }
    }
    if let Some(k) = kept.pop() {
        return Ok(k.sandbox);
    }
    let r = &dbs[0].report.restore;
    let error = r.error.clone().unwrap_or_default();
    Err((
        r.status,
        if error.starts_with("snapshot ") {
            error
        } else {
            format!("restore of snapshot {}: {error}", source.snapshot.short_id)
        },
    ))
}
/// One database of a drill: what it is, the checks it gets, its record.
pub(crate) struct DbRun<'a> {
    pub(crate) config: &'a DatabaseConfig,
    pub(crate) checks: Vec<&'a CheckDefinition>,
    pub(crate) report: DatabaseReport,
}

impl<'a> DbRun<'a> {
    /// `database` with the checks that apply to it (only those named in
    /// `only`, when it is not empty), nothing run yet.
    pub(crate) fn new(config: &'a Config, database: &'a DatabaseConfig, only: &[String]) -> Self {
        DbRun {
            config: database,
            checks: config
                .checks
                .iter()
                .filter(|c| {
                    c.applies_to(&database.name)
                        && checks::supports(c.spec.kind(), database.kind.name())
                        && (only.is_empty() || only.contains(&c.name))
                })
                .collect(),
            report: DatabaseReport {
                name: database.name.clone(),
                kind: database.kind.name().into(),
                path: database.path.clone(),
                format: database.format.as_str().into(),
                dbname: database.dbname.clone(),
                restore: RestoreReport {
                    status: Status::NotRun,
                    bytes: 0,
                    restored_bytes: 0,
                    seconds: 0.0,
                    error: None,
                    tool: None,
                    image: database.image.clone(),
                    server_version: None,
                    sandbox_seconds: None,
                    dump: None,
                    roles_created: Vec::new(),
                    class: None,
                    cause: None,
                    increments: Vec::new(),
                    notes: Vec::new(),
                    recovery: None,
                    sessions: None,
                    content_id: None,
                },
                checks: vec![],
            },
        }
    }

    pub(crate) fn set_restore(&mut self, status: Status, error: String) {
        self.report.restore.status = status;
        self.report.restore.error = Some(error);
    }

    pub(crate) fn checks_not_run(&mut self, why: &str) {
        self.report.checks = self
            .checks
            .iter()
            .map(|c| checks::not_run(c, why))
            .collect();
    }
}

/// What the databases of [`drill_snapshot`] are restored from.
pub(crate) struct SnapshotSource<'a> {
    pub(crate) run_id: &'a str,
    pub(crate) tier: &'a str,
    pub(crate) repo: &'a Repository,
    pub(crate) snapshot: &'a Snapshot,
    /// Row counts for `max_drop` (see [`report::history::baselines`]).
    pub(crate) baselines: &'a Result<report::history::Baselines, String>,
    /// Put the snapshot's short id in the sandboxes' names and labels, so
    /// one run can hold sandboxes of several snapshots.
    pub(crate) name_by_snapshot: bool,
}

/// A sandbox left running after [`drill_snapshot`] (`keep`).
pub(crate) struct KeptSandbox {
    /// `[[databases]]` name.
    pub(crate) database: String,
    /// The database the checks ran in.
    pub(crate) dbname: String,
    pub(crate) sandbox: Sandbox,
    /// No check that may write (`command`) ran in it: its data are the
    /// dump's as restored.
    pub(crate) pristine: bool,
}

/// Restore every database of `dbs` from one snapshot and run its checks,
/// filling each `report`, up to `sandbox.parallelism` databases at once.
/// Every dump is located (one `restic ls`) before it is restored; the
/// first databases' sandboxes start, and their dumps' streams open,
/// meanwhile. With `keep`, the sandboxes of restores that passed
/// are left running and returned; otherwise each is removed when its
/// checks end.
pub(crate) async fn drill_snapshot(
    config: &Config,
    source: &SnapshotSource<'_>,
    dbs: &mut [DbRun<'_>],
    keep: bool,
    events: &dyn EventSink,
) -> Vec<KeptSandbox> {
    let snap = source.snapshot;
    let paths: Vec<&str> = dbs.iter().map(|d| d.config.path.as_str()).collect();
    // The sandboxes of the first databases (as many as run at once) start
    // while restic lists the snapshot's files, when their image does not
    // wait for the dump's head.
    let connected = crate::sandbox::connect(&config.sandbox).await;
    let mut early: Vec<Option<EarlyStart<'_>>> = dbs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let engine: &dyn Engine = connected.as_ref().ok()?.as_ref();
            if i >= config.sandbox.parallelism.max(1) {
                return None;
            }
            let database: &DatabaseConfig = d.config;
            let image = image_before_reading(database, engine)?;
            let start: LocalBoxFuture<'_, Started> = Box::pin(async move {
                start_sandbox(config, source, engine, database, &image, events).await
            });
            Some(Box::pin(futures_util::future::maybe_done(start)))
        })
        .collect();
    // Their dumps' streams open meanwhile too (restic's key derivation and
    // index load beside the listing's), for methods that read a dump's
    // head from the stream they then restore.
    let mut streams: Vec<Option<restore::Held>> = {
        let src = restore::Source::new(source.repo, snap, &config.timeouts);
        dbs.iter()
            .enumerate()
            .map(|(i, d)| {
                // No sandbox, no restore to read for.
                if connected.is_err() || i >= config.sandbox.parallelism.max(1) {
                    return None;
                }
                d.config
                    .kind
                    .method(d.config.format)
                    .open_early(d.config, &src)
            })
            .collect()
    };
    let files = {
        let listing = source.repo.find_files(snap, &paths);
        tokio::pin!(listing);
        let starting =
            futures_util::future::join_all(early.iter_mut().flatten().map(|f| f.as_mut()));
        tokio::select! {
            files = &mut listing => files,
            _ = starting => listing.await,
        }
    };
    let mut plans: Vec<Option<restore::RestorePlan>> = Vec::new();
    for db in dbs.iter_mut() {
        let file = match &files {
            Ok(found) => found.iter().find(|f| f.path == db.config.path).cloned(),
            Err(e) => {
                db.set_restore(Status::Error, e.to_string());
                db.checks_not_run("the restore did not run");
                plans.push(None);
                continue;
            }
        };
        let wants = db.config.kind.method(db.config.format).reads();
        match file {
            Some(file) if file.node_type == wants => {
                let plan = restore::plan(db.config, file, &config.sandbox);
                events.emit(&Event::Planned {
                    plan: plan.to_string(),
                });
                db.report.restore.tool = Some(plan.tool().into());
                plans.push(Some(plan));
            }
            Some(file) => {
                db.set_restore(
                    Status::Failed,
                    format!(
                        "{} in snapshot {} is a {}, not a {wants}",
                        file.path, snap.short_id, file.node_type
                    ),
                );
                db.checks_not_run("the restore did not pass");
                plans.push(None);
            }
            None => {
                db.set_restore(
                    Status::Failed,
                    format!(
                        "snapshot {} does not hold the dump {} of database `{}`",
                        snap.short_id, db.config.path, db.config.name
                    ),
                );
                db.checks_not_run("the restore did not pass");
                plans.push(None);
            }
        }
    }
    // A sandbox started early for a database that has nothing to restore
    // is removed once started. These starts run beside the restores: a
    // start may wait for another's (the template lock of their image).
    let unplanned: Vec<EarlyStart<'_>> = early
        .iter_mut()
        .zip(plans.iter())
        .filter(|(_, plan)| plan.is_none())
        .filter_map(|(started, _)| started.take())
        .collect();
    let removed =
        futures_util::future::join_all(unplanned.into_iter().map(|mut start| async move {
            start.as_mut().await;
            if let Some(Ok((sandbox, _, _))) = start.as_mut().take_output() {
                sandbox.remove().await;
            }
        }));
    // A stream opened for a dump the snapshot does not hold goes now.
    for (stream, plan) in streams.iter_mut().zip(plans.iter()) {
        if plan.is_none() {
            stream.take();
        }
    }
    if plans.iter().all(Option::is_none) {
        removed.await;
        return Vec::new();
    }
    let engine = match &connected {
        Ok(e) => e,
        Err(e) => {
            for (db, plan) in dbs.iter_mut().zip(plans.iter()) {
                if plan.is_some() {
                    db.set_restore(Status::Error, e.to_string());
                    db.checks_not_run("the restore did not run");
                }
            }
            return Vec::new();
        }
    };
    // Up to `parallelism` databases at once, each in its own sandbox; each
    // database's record is its own, so the order they finish in does not
    // matter. Kept sandboxes are returned in database order.
    use futures_util::StreamExt;
    let engine: &dyn Engine = engine.as_ref();
    let drilled = futures_util::stream::iter(
        dbs.iter_mut()
            .zip(plans.iter())
            .zip(early.into_iter().zip(streams))
            .enumerate()
            .filter_map(|(i, ((db, plan), (start, stream)))| {
                plan.as_ref().map(|p| (i, db, p, Early { start, stream }))
            }),
    )
    .map(|(i, db, plan, early)| async move {
        let sandbox = drill_database(config, source, engine, plan, db, early, keep, events).await?;
        Some((
            i,
            KeptSandbox {
                database: db.config.name.clone(),
                dbname: db.config.dbname.clone(),
                sandbox,
                pristine: db.checks.iter().all(|c| c.spec.concurrent()),
            },
        ))
    })
    .buffer_unordered(config.sandbox.parallelism.max(1))
    .filter_map(|k| async move { k })
    .collect::<Vec<(usize, KeptSandbox)>>();
    let (mut kept, _) = tokio::join!(drilled, removed);
    kept.sort_by_key(|(i, _)| *i);
    kept.into_iter().map(|(_, k)| k).collect()
}

/// A sandbox being started, with the image it runs and the seconds it
/// took to become ready ([`start_sandbox`]).
type Started = Result<(Sandbox, String, f64), crate::sandbox::SandboxError>;

/// A sandbox start begun while the snapshot's files were listed; it keeps
/// its outcome once done, until the restore takes it.
type EarlyStart<'a> = Pin<Box<futures_util::future::MaybeDone<LocalBoxFuture<'a, Started>>>>;

/// What was begun for a database while the snapshot's files were listed.
pub(crate) struct Early<'a> {
    /// Its sandbox's start.
    start: Option<EarlyStart<'a>>,
    /// Its dump's stream ([`restore::RestoreMethod::open_early`]).
    stream: Option<restore::Held>,
}

/// The image `database`'s sandbox starts from, when it is known before its
/// dump is listed or read: `None` when the image follows the dump's
/// version (its head is read first).
fn image_before_reading(database: &DatabaseConfig, engine: &dyn Engine) -> Option<String> {
    let method = database.kind.method(database.format);
    if engine.uses_images() && method.image_follows_backup(database) {
        return None;
    }
    Some(
        method
            .image(database, &restore::DumpHead::default())
            .unwrap_or_else(|_| database.image.clone()),
    )
}

/// Start a sandbox for `db` (or take `early`'s, the one started for it
/// while the snapshot was listed) and restore `plan` into it (reading
/// `early`'s stream when one was opened). Fills the
/// restore part of `db.report`; `None` (sandbox removed) unless the restore
/// passed.
pub(crate) async fn restore_database(
    config: &Config,
    source: &SnapshotSource<'_>,
    engine: &dyn Engine,
    plan: &restore::RestorePlan,
    db: &mut DbRun<'_>,
    early: Early<'_>,
    events: &dyn EventSink,
) -> Option<Sandbox> {
    let name = db.config.name.clone();
    // The dump's head first when the image follows its version; otherwise
    // it is read while the sandbox starts.
    let method = plan.method();
    let early_image = image_before_reading(db.config, engine);
    let follows_dump = early_image.is_none();
    let src = restore::Source::new(source.repo, source.snapshot, &config.timeouts);
    if let Some(stream) = early.stream {
        src.held.put(stream);
    }
    events.emit(&Event::DumpInspecting {
        database: name.clone(),
    });
    let inspect = async {
        let head = method.inspect(plan, &src).await;
        if let Some(h) = head
            .as_ref()
            .ok()
            .filter(|h| h.versions.server.is_some() || h.versions.pg_dump.is_some())
        {
            events.emit(&Event::DumpInspected {
                database: name.clone(),
                server: h.versions.server.clone(),
                pg_dump: h.versions.pg_dump.clone(),
            });
        }
        head
    };
    let (head, started) = if follows_dump {
        let head = inspect.await;
        let image = match &head {
            Err(outcome) => {
                db.set_restore(outcome.status, outcome.error.clone().unwrap_or_default());
                db.checks_not_run(if outcome.status == Status::Failed {
                    "the restore did not pass"
                } else {
                    "the restore did not run"
                });
                return None;
            }
            Ok(h) => match method.image(db.config, h) {
                Ok(image) => image,
                // A head that names no version: damage when the head itself
                // shows it (empty, cut short), else the image needs fixing.
                Err(e) => {
                    match &h.unreadable {
                        Some(why) => {
                            db.set_restore(Status::Failed, why.clone());
                            db.checks_not_run("the restore did not pass");
                        }
                        None => {
                            db.set_restore(Status::Error, e);
                            db.checks_not_run("the restore did not run");
                        }
                    }
                    return None;
                }
            },
        };
        let started = start_sandbox(config, source, engine, db.config, &image, events).await;
        (head, started)
    } else if let Some(mut started) = early.start {
        let (head, ()) = tokio::join!(inspect, started.as_mut());
        let started = started
            .as_mut()
            .take_output()
            .expect("the start was polled to its end");
        (head, started)
    } else {
        let image = early_image.unwrap_or_default();
        tokio::join!(
            inspect,
            start_sandbox(config, source, engine, db.config, &image, events)
        )
    };
    let head = match head {
        Ok(h) => h,
        Err(outcome) => {
            if let Ok((sandbox, _, _)) = started {
                sandbox.remove().await;
            }
            db.set_restore(outcome.status, outcome.error.unwrap_or_default());
            db.checks_not_run(if outcome.status == Status::Failed {
                "the restore did not pass"
            } else {
                "the restore did not run"
            });
            return None;
        }
    };
    if head.versions.server.is_some() || head.versions.pg_dump.is_some() {
        db.report.restore.dump = Some(head.versions.clone());
    }
    let (mut sandbox, image, boot_seconds) = match started {
        Ok(x) => x,
        Err(e) => {
            db.set_restore(Status::Error, e.to_string());
            db.checks_not_run("the restore did not run");
            return None;
        }
    };
    db.report.restore.image = image.clone();
    db.report.restore.sandbox_seconds = Some(boot_seconds);
    db.report.restore.server_version = Some(sandbox.server_version.clone());
    events.emit(&Event::SandboxReady {
        database: name.clone(),
        server: db.config.kind.title().into(),
        server_version: sandbox.server_version.clone(),
        seconds: boot_seconds,
    });
    // A server older than the dump's pg_dump: no attempt, no verdict.
    let which = if engine.uses_images() {
        format!("sandbox image {image}")
    } else {
        "the local sandbox".to_string()
    };
    if let Err(e) = method.admit(&which, &sandbox.server_version, plan, &head) {
        db.set_restore(Status::Error, e);
        db.report.restore.class = Some("environment".into());
        db.report.restore.cause = Some("server-too-old".into());
        db.checks_not_run("the restore did not run");
        sandbox.remove().await;
        return None;
    }

    events.emit(&Event::RestoreStarted {
        database: name.clone(),
        bytes: plan.file.size,
    });
    let progress = restore::Counter::default();
    let outcome = with_ticks(method.execute(plan, &src, &sandbox, &progress), |seconds| {
        events.emit(&Event::RestoreProgress {
            database: name.clone(),
            bytes: progress.get(),
            total: plan.file.size,
            seconds,
        })
    })
    .await;
    let r = &mut db.report.restore;
    r.status = outcome.status;
    r.bytes = outcome.bytes;
    r.restored_bytes = outcome.restored_bytes;
    r.seconds = outcome.seconds;
    r.error = outcome.error.clone();
    r.roles_created = outcome.roles_created.clone();
    r.increments = outcome.increments.clone();
    if outcome.dump.is_some() {
        r.dump = outcome.dump.clone();
    }
    r.notes = outcome.notes.clone();
    r.recovery = outcome.recovery.clone();
    r.sessions = outcome.sessions.clone();
    r.content_id = outcome.content_id.clone();
    // A method that starts the server itself learns its version.
    if let Some(v) = &outcome.server_version {
        r.server_version = Some(v.clone());
        sandbox.server_version = v.clone();
    }
    if let Some(c) = &outcome.cause {
        r.class = Some(
            match c.class {
                restore::classify::Class::Environment => "environment",
                restore::classify::Class::Damage => "damage",
            }
            .into(),
        );
        r.cause = Some(c.name.into());
    }
    events.emit(&Event::RestoreFinished {
        database: name,
        status: outcome.status,
        bytes: outcome.bytes,
        seconds: outcome.seconds,
        error: outcome.error,
    });
    if outcome.status == Status::Passed {
        Some(sandbox)
    } else {
        db.checks_not_run("the restore did not pass");
        sandbox.remove().await;
        None
    }
}

/// Start the sandbox of `database` from `image` and wait until it is
/// ready; the sandbox comes back with the image it runs and the seconds it
/// took to become ready.
async fn start_sandbox(
    config: &Config,
    source: &SnapshotSource<'_>,
    engine: &dyn Engine,
    database: &DatabaseConfig,
    image: &str,
    events: &dyn EventSink,
) -> Started {
    let boot_started = Instant::now();
    let name = database.name.as_str();
    events.emit(&Event::SandboxStarting {
        database: name.to_string(),
        image: image.to_string(),
    });
    engine
        .ensure_image(image, config.sandbox.startup_timeout)
        .await?;
    let sandbox = engine
        .start(&SandboxRequest {
            run_id: source.run_id.to_string(),
            tier: source.tier.into(),
            database: name.to_string(),
            snapshot: source
                .name_by_snapshot
                .then(|| source.snapshot.short_id.clone()),
            image: image.to_string(),
            memory_bytes: config.sandbox.memory_bytes,
            cpus: config.sandbox.cpus,
            startup_timeout: config.sandbox.startup_timeout,
            tuning: config.sandbox.tuning,
            kind: database.kind,
            held: database.kind.method(database.format).needs() == restore::Needs::DataDirectory,
        })
        .await?;
    for w in &sandbox.warnings {
        events.emit(&Event::Warning { message: w.clone() });
    }
    Ok((
        sandbox,
        image.to_string(),
        boot_started.elapsed().as_secs_f64(),
    ))
}

/// Sandbox, restore and checks for one database. Fills `db.report`. The
/// sandbox is returned when `keep` (and the restore passed), else removed.
#[allow(clippy::too_many_arguments)]
async fn drill_database(
    config: &Config,
    source: &SnapshotSource<'_>,
    engine: &dyn Engine,
    plan: &restore::RestorePlan,
    db: &mut DbRun<'_>,
    early: Early<'_>,
    keep: bool,
    events: &dyn EventSink,
) -> Option<Sandbox> {
    let sandbox = restore_database(config, source, engine, plan, db, early, events).await?;
    db.report.checks = run_checks(
        &db.checks,
        &sandbox,
        db.config,
        source.tier,
        source.baselines,
        events,
    )
    .await;
    // A check that did not pass in a sandbox that died or ran out of memory
    // proves nothing about the backup.
    if db.report.checks.iter().any(|c| c.status != Status::Passed) {
        if let Err(e) = sandbox.check_alive().await {
            for c in &mut db.report.checks {
                if c.status != Status::Passed {
                    c.status = Status::Error;
                    c.detail = format!("could not be judged: {e}");
                }
            }
        }
    }
    if keep {
        Some(sandbox)
    } else {
        sandbox.remove().await;
        None
    }
}

/// Run `work`, calling `tick` with the seconds since it began about once a
/// second until it ends (for progress events).
pub(crate) async fn with_ticks<F: std::future::Future>(
    work: F,
    mut tick: impl FnMut(f64),
) -> F::Output {
    let started = Instant::now();
    let period = std::time::Duration::from_secs(1);
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = every.tick() => tick(started.elapsed().as_secs_f64()),
        }
    }
}

/// Checks of one database that run at once (those that only read).
pub const CHECK_PARALLELISM: usize = 4;

/// Run `defs` against the restored database: the read-only ones
/// concurrently (at most [`CHECK_PARALLELISM`] at once), then the rest (an
/// external `command` may write) one at a time. Results in `defs` order.
async fn run_checks(
    defs: &[&CheckDefinition],
    sandbox: &Sandbox,
    database: &DatabaseConfig,
    tier: &str,
    baselines: &Result<report::history::Baselines, String>,
    events: &dyn EventSink,
) -> Vec<CheckReport> {
    use futures_util::StreamExt;
    let run_one = |def: &CheckDefinition| {
        let def = def.clone();
        async move {
            let ctx = checks::CheckContext {
                sandbox,
                database: &database.name,
                dbname: def.dbname.as_deref().unwrap_or(&database.dbname),
                tier,
                baselines,
            };
            events.emit(&Event::CheckStarted {
                database: database.name.clone(),
                name: def.name.clone(),
            });
            let result = with_ticks(checks::run(&def, &ctx), |seconds| {
                events.emit(&Event::CheckRunning {
                    database: database.name.clone(),
                    name: def.name.clone(),
                    seconds,
                })
            })
            .await;
            events.emit(&Event::CheckFinished {
                database: database.name.clone(),
                name: result.name.clone(),
                status: result.status,
                detail: result.detail.clone(),
            });
            result
        }
    };
    let (shared, alone): (Vec<&CheckDefinition>, Vec<&CheckDefinition>) =
        defs.iter().copied().partition(|d| d.spec.concurrent());
    let mut results: Vec<CheckReport> = futures_util::stream::iter(shared)
        .map(run_one)
        .buffer_unordered(CHECK_PARALLELISM)
        .collect()
        .await;
    for def in alone {
        results.push(run_one(def).await);
    }
    results.sort_by_key(|r| defs.iter().position(|d| d.name == r.name));
    results
}
