//! The orchestrator: tier → sandbox → restore → checks → report.
//!
//! Every outcome, good or bad, ends in a [`Report`]; only usage errors (an
//! unknown tier, database, check or snapshot id on the command line) and a
//! report that cannot be written are `Err`. Sandboxes are removed at the end
//! of the run whatever happened (unless `keep`), first one by one and then by
//! a sweep over the run's label.

pub mod bisect;
pub mod diff;
pub mod doctor;
pub mod extract;
mod lock;
pub mod reap;
pub mod retention;
pub(crate) mod session;
pub mod snapshots;
pub mod status;
pub mod verify_history;

pub use lock::{DrillLock, Holder, LockError};
pub use session::CHECK_PARALLELISM;
pub(crate) use session::{drill_snapshot, DbRun, KeptSandbox, SnapshotSource};

use crate::clock::Clock;
use crate::config::Config;
use crate::report::{
    self, DatabaseReport, Event, EventSink, Interruption, PolicyLimit, PolicyReport, PolicyStatus,
    Report, SnapshotReport, Status, Verdict, WrittenReport,
};
use crate::tier::{Repository, Snapshot};

/// What to drill.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run id (see [`new_run_id`]); labels the sandboxes.
    pub run_id: String,
    /// Tier; `None` = the config's default tier (or its `fallback` list).
    pub tier: Option<String>,
    /// Tiers to try in order until one passes (`--fallback`); overrides
    /// `tier` and the config's `fallback`.
    pub fallback: Vec<String>,
    /// `latest` or a snapshot id (prefix).
    pub snapshot: String,
    /// Restore only these databases (empty = all).
    pub databases: Vec<String>,
    /// Run only these checks (empty = all of the restored databases).
    pub checks: Vec<String>,
    /// Keep the sandboxes for inspection.
    pub keep: bool,
}

/// Errors that prevent a drill from producing a report.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The command line names something the config lacks.
    #[error("{0}")]
    Usage(String),
    /// The report could not be written.
    #[error(transparent)]
    Report(#[from] report::ReportError),
}

/// A finished drill (the last attempt when tiers fall back).
#[derive(Debug)]
pub struct RunOutcome {
    /// The record of the last attempt; its `attempts` lists every one.
    pub report: Report,
    /// Where it was written.
    pub written: WrittenReport,
    /// Over all attempts: `passed` if one passed, else `failed` if one
    /// found the backup bad, else `error`.
    pub verdict: Verdict,
}

/// The tiers a run tries, in order.
///
/// # Errors
/// [`RunError::Usage`] for an unknown tier or no tier at all.
pub fn tiers_to_try(config: &Config, opts: &RunOptions) -> Result<Vec<String>, RunError> {
    let tiers: Vec<String> = if !opts.fallback.is_empty() {
        opts.fallback.clone()
    } else if let Some(t) = &opts.tier {
        vec![t.clone()]
    } else if !config.fallback.is_empty() {
        config.fallback.clone()
    } else {
        vec![config
            .default_tier()
            .ok_or_else(|| {
                RunError::Usage("no tier given and no default: pass --tier NAME".into())
            })?
            .to_string()]
    };
    for (i, t) in tiers.iter().enumerate() {
        if tiers[..i].contains(t) {
            return Err(RunError::Usage(format!(
                "tier `{t}` is listed twice in the fallback"
            )));
        }
        config.tier(t).map_err(RunError::Usage)?;
    }
    Ok(tiers)
}

/// Run a drill: each tier of [`tiers_to_try`] in turn until one passes.
/// Every attempt writes its own report; each lists the attempts so far.
///
/// # Errors
/// As [`run_tier`].
pub async fn run(
    config: &Config,
    opts: &RunOptions,
    clock: &dyn Clock,
    events: &dyn EventSink,
) -> Result<RunOutcome, RunError> {
    let tiers = tiers_to_try(config, opts)?;
    let mut attempts: Vec<report::Attempt> = Vec::new();
    let mut last = None;
    for (i, tier) in tiers.iter().enumerate() {
        if i > 0 {
            events.emit(&Event::FallingBack {
                from: tiers[i - 1].clone(),
                to: tier.clone(),
            });
        }
        let outcome = run_tier(config, opts, tier, &attempts, clock, events).await?;
        attempts = outcome.report.attempts.clone();
        let passed = outcome.report.verdict == Verdict::Passed;
        let stop = passed || outcome.report.interrupted.is_some();
        last = Some(outcome);
        if stop {
            break;
        }
    }
    let mut outcome = last.expect("at least one tier");
    outcome.verdict = if attempts.iter().any(|a| a.verdict == Verdict::Passed) {
        Verdict::Passed
    } else if attempts.iter().any(|a| a.verdict == Verdict::Failed) {
        Verdict::Failed
    } else {
        Verdict::Error
    };
    // Scheduled drills keep the history page current.
    if let Err(e) = history_page(config, None, clock) {
        events.emit(&Event::Warning {
            message: format!("the history page was not refreshed: {e}"),
        });
    }
    Ok(outcome)
}

/// Write the history page (`reports_dir/index.html`, or `out`): every
/// drill of `history.csv`, a banner per tier with [`status::run`]'s facts
/// at `clock`'s now, and the ledger's strips. Returns the page's path and
/// the number of drills on it.
///
/// # Errors
/// `history.csv` cannot be read, or the page cannot be written (the
/// message names the file).
pub fn history_page(
    config: &Config,
    out: Option<&std::path::Path>,
    clock: &dyn Clock,
) -> Result<(std::path::PathBuf, usize), String> {
    let rows = report::history::rows(&config.reports_dir)?;
    let statuses = status::run(config, clock)?;
    let secs = |d: Option<std::time::Duration>| d.map(|d| d.as_secs_f64());
    let page = report::html::render_history(
        &rows,
        &statuses,
        secs(config.policy.max_rto),
        secs(config.policy.max_snapshot_age),
        config.timezone,
        &ledger_strips(config),
    );
    let path = out
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| config.reports_dir.join("index.html"));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    report::write_atomic(&path, page.as_bytes()).map_err(|e| e.to_string())?;
    Ok((path, rows.len()))
}

/// The ledger's strips for the history page: per tier and database with
/// marks, the marks (empty without a ledger or when it cannot be read).
fn ledger_strips(config: &Config) -> Vec<(String, String, Vec<crate::ledger::Mark>)> {
    if !config.reports_dir.join(crate::ledger::FILE).exists() {
        return Vec::new();
    }
    let Ok(ledger) = crate::ledger::Ledger::open(&config.reports_dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for tier in config.tiers.keys() {
        for d in &config.databases {
            if let Ok(marks) = ledger.strip(tier, &d.name) {
                if !marks.is_empty() {
                    out.push((tier.clone(), d.name.clone(), marks));
                }
            }
        }
    }
    out
}

/// A fresh run id: UTC time plus 6 random characters, lower case, usable in
/// container names (e.g. `20261124t031500z-k3x9qa`).
pub fn new_run_id(clock: &dyn Clock) -> String {
    use rand::distr::{Alphanumeric, SampleString};
    let suffix = Alphanumeric
        .sample_string(&mut rand::rng(), 6)
        .to_lowercase();
    format!("{}-{suffix}", clock.now().format("%Y%m%dt%H%M%Sz"))
}

/// Remove every sandbox labelled with `run_id`; returns their ids. Used at
/// the end of a run and on interruption.
///
/// # Errors
/// The engine cannot be reached or listed.
pub async fn sweep(run_id: &str) -> Result<Vec<String>, crate::sandbox::SandboxError> {
    let mut ids = Vec::new();
    let mut answered = false;
    let mut first_error = None;
    // Every engine that answers: the run's sandboxes may be of any of them.
    let config = crate::config::SandboxConfig::default();
    for entry in crate::sandbox::ENGINES {
        let listed = match (entry.connect)(&config).await {
            Ok(engine) => engine.sandboxes().await.map(|list| (engine, list)),
            Err(e) => Err(e),
        };
        match listed {
            Ok((engine, list)) => {
                answered = true;
                for s in list.into_iter().filter(|s| s.run_id == run_id) {
                    engine.remove(&s.id).await;
                    ids.push(s.id);
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if !answered => Err(e),
        _ => Ok(ids),
    }
}

/// Passes events on and remembers the phase they show, so an interrupted
/// run can say where it stopped.
struct PhaseTracker<'a> {
    inner: &'a dyn EventSink,
    now: std::sync::Mutex<(&'static str, Option<String>)>,
}

impl<'a> PhaseTracker<'a> {
    fn new(inner: &'a dyn EventSink) -> Self {
        PhaseTracker {
            inner,
            now: std::sync::Mutex::new(("listing", None)),
        }
    }

    fn interruption(&self, signal: &str) -> Interruption {
        let (phase, database) = self.now.lock().expect("phase lock").clone();
        Interruption {
            signal: signal.into(),
            phase: phase.into(),
            database,
        }
    }
}

impl EventSink for PhaseTracker<'_> {
    fn emit(&self, event: &Event) {
        let next = match event {
            Event::DumpInspecting { database } => Some(("head", Some(database))),
            Event::SandboxStarting { database, .. } => Some(("sandbox", Some(database))),
            Event::RestoreStarted { database, .. } => Some(("restore", Some(database))),
            Event::RestoreFinished { database, .. } | Event::CheckFinished { database, .. } => {
                Some(("checks", Some(database)))
            }
            _ => None,
        };
        if let Some((phase, database)) = next {
            *self.now.lock().expect("phase lock") = (phase, database.cloned());
        }
        self.inner.emit(event);
    }
}

/// The verdict of a set of databases' restores and checks.
pub(crate) struct Judgement {
    /// A restore or check failed: the backup is bad.
    pub(crate) failed: bool,
    /// A restore or check could not run or did not finish.
    pub(crate) errored: bool,
    /// Why, one line each, in database order.
    pub(crate) reasons: Vec<String>,
}

impl Judgement {
    /// `failed` wins over `errored`; otherwise `passed`.
    pub(crate) fn verdict(&self) -> Verdict {
        if self.failed {
            Verdict::Failed
        } else if self.errored {
            Verdict::Error
        } else {
            Verdict::Passed
        }
    }
}

/// Judge restores and checks. Anything not run is an error, never a pass.
pub(crate) fn judge(databases: &[DatabaseReport]) -> Judgement {
    let mut j = Judgement {
        failed: false,
        errored: databases.is_empty(),
        reasons: Vec::new(),
    };
    for d in databases {
        let r = &d.restore;
        match r.status {
            Status::Passed => {}
            Status::Failed => {
                j.failed = true;
                j.reasons.push(format!(
                    "{}: restore failed: {}",
                    d.name,
                    r.error.as_deref().unwrap_or("")
                ));
            }
            Status::Error => {
                j.errored = true;
                j.reasons.push(format!(
                    "{}: restore could not run: {}",
                    d.name,
                    r.error.as_deref().unwrap_or("")
                ));
            }
            Status::NotRun => j.errored = true,
        }
        for c in &d.checks {
            match c.status {
                Status::Passed => {}
                Status::Failed => {
                    j.failed = true;
                    let first = c
                        .findings
                        .first()
                        .map(|f| format!(" — {f}"))
                        .unwrap_or_default();
                    j.reasons.push(format!(
                        "{}: check `{}` failed: {}{first}",
                        d.name, c.name, c.detail
                    ));
                }
                Status::Error => {
                    j.errored = true;
                    j.reasons
                        .push(format!("{}: check `{}` {}", d.name, c.name, c.detail));
                }
                Status::NotRun => j.errored = true,
            }
        }
    }
    j
}

/// Drill one tier and write its report. `earlier` are the attempts of this
/// run on other tiers before it.
///
/// # Errors
/// [`RunError::Usage`] for names the config lacks or a password prompt
/// without a terminal; [`RunError::Report`] when the report cannot be
/// written.
pub async fn run_tier(
    config: &Config,
    opts: &RunOptions,
    tier_name: &str,
    earlier: &[report::Attempt],
    clock: &dyn Clock,
    events: &dyn EventSink,
) -> Result<RunOutcome, RunError> {
    let started_at = clock.now();
    let tier_name = tier_name.to_string();
    let tier = config.tier(&tier_name).map_err(RunError::Usage)?;
    for d in &opts.databases {
        if !config.databases.iter().any(|x| &x.name == d) {
            return Err(RunError::Usage(format!(
                "database `{d}` is not a [[databases]] entry in {}",
                config.path.display()
            )));
        }
    }
    for c in &opts.checks {
        if !config.checks.iter().any(|x| &x.name == c) {
            return Err(RunError::Usage(format!(
                "check `{c}` is not defined in {}",
                config.checks_dir.display()
            )));
        }
    }
    if config.databases.is_empty() {
        return Err(RunError::Usage(format!(
            "{} lists no [[databases]]: nothing to drill",
            config.path.display()
        )));
    }

    let mut dbs: Vec<DbRun> = config
        .databases
        .iter()
        .filter(|d| opts.databases.is_empty() || opts.databases.contains(&d.name))
        .map(|d| DbRun::new(config, d, &opts.checks))
        .collect();

    let mut reasons: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut backup_missing = false;
    let mut snapshot: Option<Snapshot> = None;

    // A cold tier's repository is on whichever rotation disk is mounted.
    let location = crate::tier::locate(tier, &started_at.with_timezone(&config.timezone));
    let display_repo = crate::secret::redact_url(
        location
            .as_ref()
            .map(|l| l.repository.as_str())
            .unwrap_or(&tier.repository),
    );
    events.emit(&Event::Started {
        run_id: opts.run_id.clone(),
        tier: tier_name.clone(),
        repository: display_repo.clone(),
    });
    let disk = location.as_ref().ok().and_then(|l| l.disk);
    // Row counts of this tier's last passed drills, for `max_drop`.
    let baselines = report::history::baselines(&config.reports_dir, &tier_name);
    let tracker = PhaseTracker::new(events);
    let mut repo: Option<Repository> = None;
    let mut snapshot_report: Option<SnapshotReport> = None;
    // Kept for the ledger, so that recording the drill lists nothing and
    // reads nothing more from the repository: the listing the snapshot was
    // picked from (with when it was taken), and the restic content of the
    // drilled backups, read while they are restored.
    let mut listing: Option<(Vec<Snapshot>, chrono::DateTime<chrono::Utc>)> = None;
    let mut contents: Option<Contents> = None;
    // When the restores, checks and sweep were done (not the content read
    // beside them): the end of the RTO.
    let mut drilled_at = None;
    // Listing, restores and checks, abandoned on SIGINT/SIGTERM.
    let interrupted = {
        let work = async {
            repo = match location {
                Ok(l) => {
                    for w in &l.warnings {
                        events.emit(&Event::Warning { message: w.clone() });
                    }
                    warnings.extend(l.warnings);
                    match Repository::open_at(tier, &l.repository, &config.restic).await {
                        Ok(r) => Some(r.with_listing_timeout(config.timeouts.listing)),
                        // A prompt without a terminal is a usage error, unless
                        // earlier tiers were tried: then this attempt is recorded
                        // (no verdict) so their verdicts still reach the exit code.
                        Err(e) if e.is_usage() && earlier.is_empty() => {
                            return Err(RunError::Usage(e.to_string()))
                        }
                        Err(e) => {
                            reasons.push(e.to_string());
                            None
                        }
                    }
                }
                Err(e) => {
                    reasons.push(e.to_string());
                    None
                }
            };
            if let Some(repo) = &repo {
                let listed_at = chrono::Utc::now();
                let selected = match repo.snapshots().await {
                    Ok(all) => {
                        let picked = repo.select_from(&all, &opts.snapshot);
                        listing = Some((all, listed_at));
                        picked
                    }
                    Err(e) => Err(e),
                };
                match selected {
                    Ok(Some(s)) => snapshot = Some(s),
                    Ok(None) => {
                        backup_missing = true;
                        reasons.push(format!(
                            "repository {display_repo} of tier `{tier_name}` has no snapshots"
                        ));
                    }
                    Err(e) if e.is_usage() => return Err(RunError::Usage(e.to_string())),
                    Err(e) => reasons.push(e.to_string()),
                }
            }
            snapshot_report = snapshot.as_ref().map(|s| {
                let age = (started_at - s.time.with_timezone(&chrono::Utc)).num_milliseconds()
                    as f64
                    / 1000.0;
                SnapshotReport {
                    id: s.id.clone(),
                    short_id: s.short_id.clone(),
                    time: s.time,
                    age_seconds: age.max(0.0),
                    hostname: s.hostname.clone(),
                    tags: s.tags.clone(),
                }
            });
            if let (Some(s), Some(d)) = (&snapshot_report, disk) {
                warnings.push(format!(
                    "tier `{tier_name}`: the cold copy on disk {d} is {} old (snapshot {} of {})",
                    crate::duration::human_seconds(s.age_seconds),
                    s.short_id,
                    s.time
                        .with_timezone(&config.timezone)
                        .format("%Y-%m-%d %H:%M %Z")
                ));
            }
            if let Some(s) = &snapshot_report {
                events.emit(&Event::SnapshotSelected {
                    short_id: s.short_id.clone(),
                    time: s.time.to_rfc3339(),
                    age_seconds: s.age_seconds,
                });
            }
            if let (Some(repo), Some(snap)) = (&repo, &snapshot) {
                let source = SnapshotSource {
                    run_id: &opts.run_id,
                    tier: &tier_name,
                    repo,
                    snapshot: snap,
                    baselines: &baselines,
                    name_by_snapshot: false,
                };
                // What the ledger keys verdicts by does not depend on the
                // restore: read it meanwhile (an interruption drops it, and
                // its restic with it).
                let names: Vec<&str> = dbs.iter().map(|d| d.config.name.as_str()).collect();
                let paths = content_paths(config, &names);
                let drilled = async {
                    let kept = drill_snapshot(config, &source, &mut dbs, opts.keep, &tracker).await;
                    for k in kept {
                        let how = k.sandbox.how_to_connect(&k.dbname);
                        events.emit(&Event::Kept {
                            connect: how.command,
                            also: how.also,
                            remove: how.remove,
                            database: k.database,
                            container: k.sandbox.name.clone(),
                            host: k.sandbox.host.clone(),
                            port: k.sandbox.port,
                            user: k.sandbox.user.clone(),
                            dbname: k.dbname,
                        });
                    }
                    if !opts.keep {
                        let _ = sweep(&opts.run_id).await;
                    }
                    clock.now()
                };
                let (done, read) = tokio::join!(drilled, repo.contents(snap, &paths));
                drilled_at = Some(done);
                // As when it was read after the restore: unreadable content
                // leaves the rows without a content id.
                contents = Some(read.unwrap_or_default());
            } else {
                for db in &mut dbs {
                    db.set_restore(Status::NotRun, "no snapshot to restore from".into());
                    db.checks_not_run("no snapshot to restore from");
                }
            }
            Ok(())
        };
        match crate::interrupt::raised() {
            Some(signal) => Some(tracker.interruption(signal)),
            None => tokio::select! {
                done = work => {
                    done?;
                    None
                }
                signal = crate::interrupt::wait() => Some(tracker.interruption(signal)),
            },
        }
    };
    if let Some(i) = &interrupted {
        interrupted_cleanup(&opts.run_id, i, &mut dbs, &mut reasons).await;
    }
    let checks_done = drilled_at.unwrap_or_else(|| clock.now());

    // Judge.
    let all_restored = !dbs.is_empty()
        && dbs
            .iter()
            .all(|d| d.report.restore.status == Status::Passed);
    let rto_seconds = (all_restored && interrupted.is_none())
        .then(|| (checks_done - started_at).num_milliseconds() as f64 / 1000.0);
    let policy = PolicyReport {
        max_rto: PolicyLimit::judge(config.policy.max_rto, rto_seconds),
        max_snapshot_age: PolicyLimit::judge(
            config.policy.max_snapshot_age,
            snapshot_report.as_ref().map(|s| s.age_seconds),
        ),
        max_data_loss: data_loss(config, &dbs),
    };
    for d in &dbs {
        for c in &d.report.checks {
            for n in &c.notes {
                warnings.push(format!("{}: check `{}`: {n}", d.report.name, c.name));
            }
        }
    }
    let reports: Vec<DatabaseReport> = dbs.into_iter().map(|d| d.report).collect();
    let judged = judge(&reports);
    reasons.extend(judged.reasons);
    let mut failed = backup_missing || judged.failed;
    let errored = repo.is_none() || (snapshot.is_none() && !backup_missing) || judged.errored;
    for (name, limit) in [
        ("max_rto", &policy.max_rto),
        ("max_snapshot_age", &policy.max_snapshot_age),
        ("max_data_loss", &policy.max_data_loss),
    ] {
        if limit.status == PolicyStatus::Failed {
            failed = true;
            let (actual, most) =
                crate::duration::against_limit(limit.actual_seconds, limit.limit_seconds);
            reasons.push(format!(
                "policy {name}: {actual} exceeds the limit of {most}"
            ));
        }
    }
    // An interrupted drill has no verdict, whatever it had found so far.
    let verdict = if interrupted.is_some() {
        Verdict::Error
    } else if failed {
        Verdict::Failed
    } else if errored {
        Verdict::Error
    } else {
        Verdict::Passed
    };

    let mut attempts = earlier.to_vec();
    let report_stem = report::file_stem(started_at, &tier_name);
    attempts.push(report::Attempt {
        tier: tier_name.clone(),
        verdict,
        reasons: reasons.iter().take(3).cloned().collect(),
        report: format!("{report_stem}.json"),
    });
    let passed_tier = attempts
        .iter()
        .find(|a| a.verdict == Verdict::Passed)
        .map(|a| a.tier.clone());
    let mut report = Report {
        format_version: report::FORMAT_VERSION,
        run_id: opts.run_id.clone(),
        drill_version: env!("CARGO_PKG_VERSION").into(),
        tier: tier_name,
        repository: display_repo,
        verdict,
        reasons,
        started_at,
        finished_at: clock.now(),
        rto_seconds,
        snapshot: snapshot_report,
        policy,
        databases: reports,
        warnings,
        disk,
        attempts,
        passed_tier,
        interrupted,
        peak_rss_bytes: report::peak_rss_bytes(),
    };
    if let (Some(repo), Some(snapshot), None) = (&repo, &snapshot, &report.interrupted) {
        let file = config
            .reports_dir
            .join(format!("{report_stem}.json"))
            .display()
            .to_string();
        if let Err(e) = record_verdicts(
            config,
            &Recorded {
                command: "run",
                run_id: &report.run_id,
                tier: &report.tier,
                rto_seconds: report.rto_seconds,
                report_file: Some(&file),
            },
            repo,
            snapshot,
            &report.databases,
            listing.as_ref().map(|(all, at)| (all.as_slice(), *at)),
            contents,
        )
        .await
        {
            let why = format!("the verification ledger could not record this drill: {e}");
            events.emit(&Event::Warning {
                message: why.clone(),
            });
            report.reasons.push(why);
            if report.verdict == Verdict::Passed {
                report.verdict = Verdict::Error;
            }
        }
    }
    let written = report::write(&report, &config.reports_dir, config.timezone)?;
    events.emit(&Event::Finished {
        verdict: report.verdict,
        rto_seconds: report.rto_seconds,
    });
    Ok(RunOutcome {
        verdict: report.verdict,
        report,
        written,
    })
}

/// After SIGINT/SIGTERM: what was not finished is marked so, the reason
/// goes first, and the run's sandboxes are removed (also with `--keep`),
/// twice: a create request in flight when the signal came may land after
/// the first sweep.
async fn interrupted_cleanup(
    run_id: &str,
    interruption: &Interruption,
    dbs: &mut [DbRun<'_>],
    reasons: &mut Vec<String>,
) {
    let what = match (interruption.phase.as_str(), &interruption.database) {
        ("restore", Some(d)) => format!("the restore of database `{d}`"),
        ("head", Some(d)) => format!("the reading of the head of the dump of database `{d}`"),
        ("sandbox", Some(d)) => format!("the start of the sandbox for database `{d}`"),
        ("checks", Some(d)) => format!("the checks of database `{d}`"),
        _ => "the listing of the repository".to_string(),
    };
    let why = format!("interrupted by {} during {what}", interruption.signal);
    for db in dbs.iter_mut() {
        if db.report.restore.status == Status::NotRun {
            db.set_restore(Status::Error, why.clone());
            db.checks_not_run(&why);
        } else if db.report.restore.status == Status::Passed && db.report.checks.is_empty() {
            db.checks_not_run(&why);
        }
    }
    reasons.insert(0, format!("{why}; no verdict"));
    for pause in [0, 1500] {
        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
        let _ = sweep(run_id).await;
    }
}

/// `max_data_loss` judged on the worst data loss recovery proved among the
/// run's physical backups; not configured when the run holds none.
fn data_loss(config: &Config, dbs: &[session::DbRun<'_>]) -> PolicyLimit {
    let physical: Vec<&session::DbRun<'_>> =
        dbs.iter().filter(|d| d.config.recovery.is_some()).collect();
    if physical.is_empty() {
        return PolicyLimit::not_configured();
    }
    // The worst loss proved; a backup that did not recover has failed on
    // its own account.
    let worst = physical
        .iter()
        .filter_map(|d| {
            d.report
                .restore
                .recovery
                .as_ref()
                .and_then(|r| r.data_loss_seconds)
        })
        .reduce(f64::max);
    PolicyLimit::judge(config.policy.max_data_loss, worst)
}

/// Who records verdicts in the ledger ([`record_verdicts`]).
pub(crate) struct Recorded<'a> {
    /// `run`, `bisect`, …
    pub(crate) command: &'a str,
    /// The run.
    pub(crate) run_id: &'a str,
    /// The tier.
    pub(crate) tier: &'a str,
    /// The drill's RTO, when it has one.
    pub(crate) rto_seconds: Option<f64>,
    /// The JSON report, when one is written.
    pub(crate) report_file: Option<&'a str>,
}

/// The tier's snapshots as one listing found them, and when that listing
/// was taken (before `restic snapshots` started, so every snapshot made
/// before that instant is in it): what [`record_verdicts`] records for the
/// ledger's freshness.
pub(crate) type Listing<'a> = (&'a [Snapshot], chrono::DateTime<chrono::Utc>);

/// The restic content of backup files, by path in the snapshot, as
/// [`Repository::contents`] gives it.
pub(crate) type Contents = std::collections::HashMap<String, Vec<String>>;

/// The paths in a snapshot whose content keys the ledger rows of the
/// `databases` named (their dumps, base backups and WAL archives, in
/// config order): what [`record_verdicts`] reads with
/// [`Repository::contents`].
pub(crate) fn content_paths<'c>(config: &'c Config, databases: &[&str]) -> Vec<&'c str> {
    config
        .databases
        .iter()
        .filter(|c| databases.contains(&c.name.as_str()))
        .flat_map(crate::ledger::identity::backup_paths)
        .collect()
}

/// Append one ledger row per database restored from `snapshot`: its
/// verdict under the checks that ran, for its content identity (computed,
/// or known from the ledger's cache of restic content).
///
/// `listing`, when given, is recorded as the tier's latest listing for
/// freshness first (none is taken here). `contents` is the restic
/// content of [`content_paths`] of `databases` in `snapshot` when the
/// caller has read it already (`drill run` reads it while it restores);
/// with `None` it is read here. Content that cannot be read leaves
/// `content_id` empty, as does a restore that did not run.
///
/// # Errors
/// A message when the ledger cannot be opened or written.
pub(crate) async fn record_verdicts(
    config: &Config,
    who: &Recorded<'_>,
    repo: &Repository,
    snapshot: &Snapshot,
    databases: &[DatabaseReport],
    listing: Option<Listing<'_>>,
    contents: Option<Contents>,
) -> Result<(), String> {
    let mut ledger = crate::ledger::Ledger::open(&config.reports_dir).map_err(|e| e.to_string())?;
    if let Some((all, listed_at)) = listing {
        ledger
            .record_listing(who.tier, all, listed_at)
            .map_err(|e| e.to_string())?;
    }
    let contents = match contents {
        Some(c) => c,
        None => {
            let names: Vec<&str> = databases.iter().map(|d| d.name.as_str()).collect();
            let paths = content_paths(config, &names);
            repo.contents(snapshot, &paths).await.unwrap_or_default()
        }
    };
    let source = crate::restore::Source::new(repo, snapshot, &config.timeouts);
    for d in databases {
        let Some(db) = config.databases.iter().find(|c| c.name == d.name) else {
            continue;
        };
        // A restore that could not run judged nothing about the content.
        let content = crate::ledger::identity::restic_content(db, &contents);
        let content_id = match (content, d.restore.status) {
            (Some(content), Status::Passed | Status::Failed) => crate::ledger::identity::identify(
                &ledger,
                who.tier,
                db,
                &source,
                &content,
                d.restore.content_id.as_deref(),
            )
            .await
            .ok(),
            _ => None,
        };
        let mut judgement = judge(std::slice::from_ref(d));
        let ran: Vec<String> = d.checks.iter().map(|c| c.name.clone()).collect();
        if ran.is_empty() && d.restore.status == Status::Passed {
            judgement.reasons.push(format!(
                "{}: no check ran (drill {}): the verdict is the restore's alone",
                d.name, who.command
            ));
        }
        let entry = crate::ledger::Entry {
            run_id: who.run_id.to_string(),
            command: who.command.to_string(),
            tier: who.tier.to_string(),
            snapshot_id: snapshot.id.clone(),
            snapshot_time: snapshot.time.to_rfc3339(),
            database: d.name.clone(),
            content_id,
            check_id: crate::ledger::check_identity_of(config, &d.name, Some(&ran)),
            verdict: judgement.verdict().as_str().into(),
            reasons: judgement.reasons,
            rto_seconds: who.rto_seconds,
            bytes: d.restore.bytes,
            report_file: who.report_file.map(str::to_string),
            inherited_from: None,
        };
        ledger
            .append(&entry, chrono::Utc::now())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
