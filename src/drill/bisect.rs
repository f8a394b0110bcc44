//! `drill bisect --tier T`: the last snapshot that still passes, after
//! silent corruption.
//!
//! **Assumption: corruption persists once it appears.** Every snapshot
//! after the first invalid one is taken to be invalid too, so the history
//! is a run of valid snapshots followed by a run of invalid ones, and a
//! search finds the boundary with ⌈log2 n⌉ judgements after the newest
//! (fewer rounds when several snapshots are probed at once: a round
//! probes up to `sandbox.parallelism` ÷ searched databases snapshots,
//! spread evenly between the bounds, each in its own sandboxes).
//! Corruption that comes and goes breaks the assumption; the report lists
//! every snapshot actually judged, so the operator can see what the answer
//! rests on.
//!
//! 1. The newest snapshot (of those taken since `--since`) is drilled with
//!    every selected database and check. If it passes, there is nothing to
//!    search: under the assumption every earlier one passes too.
//! 2. The search then restores only the databases that failed on the
//!    newest and runs only the checks that failed there (or the `--check`s
//!    named).
//! 3. Before the search, the content of each of those dumps in every
//!    snapshot is read from restic's trees (blob ids, no restore). A
//!    snapshot whose dumps are byte-identical to a snapshot already judged
//!    takes its verdict without a restore.
//! 4. The search ends with a diff ([`super::diff`]) between `last_valid`
//!    and `first_invalid`, from the sandboxes the search kept.
//!
//! `max_drop` limits are judged against the tier's last passed drills, as
//! `drill run` would judge that snapshot today.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::Serialize;

use super::diff::{
    compare_restored, markdown_databases, open_tier, pick_snapshot, restore_one, select_databases,
    write_record, CommandError, DatabaseDiff, RecordHeader, SnapshotRef,
};
use super::{drill_snapshot, judge, DbRun, KeptSandbox, SnapshotSource};
use crate::clock::Clock;
use crate::config::{Config, DatabaseConfig};
use crate::report::{self, DatabaseReport, Event, EventSink, Status, Verdict};
use crate::sandbox::Sandbox;
use crate::tier::{Repository, Snapshot};

/// The assumption the search rests on, as written in every record.
pub const ASSUMPTION: &str =
    "corruption persists once it appears: every snapshot after the first invalid one is invalid too";

/// What to bisect.
#[derive(Debug, Clone)]
pub struct BisectOptions {
    /// Run id (labels the sandboxes).
    pub run_id: String,
    /// Tier.
    pub tier: String,
    /// `[[databases]]` to restore (empty = all).
    pub databases: Vec<String>,
    /// Checks to run (empty = all on the newest, then those that failed).
    pub checks: Vec<String>,
    /// Only snapshots taken at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Bisect recovery targets between these two times inside the newest
    /// snapshot instead of snapshots (one physical database).
    pub between: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// The precision of a target search (default one minute).
    pub resolution: std::time::Duration,
}

/// One snapshot judged, in the order judged.
#[derive(Debug, Clone, Serialize)]
pub struct Tested {
    /// Full id.
    pub id: String,
    /// Short id.
    pub short_id: String,
    /// When it was taken.
    pub time: DateTime<chrono::FixedOffset>,
    /// `passed` or `failed` (`error`: it could not be judged).
    pub verdict: Verdict,
    /// Restores run to judge it (0 when its dumps were byte-identical to
    /// those of an already judged snapshot).
    pub restores: usize,
    /// That snapshot's short id, when no restore ran.
    pub same_as: Option<String>,
    /// Why it did not pass.
    pub reasons: Vec<String>,
    /// Restores and checks, when it was restored.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<DatabaseReport>,
    /// Judged by the verdict the ledger holds for it (no restore).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub from_ledger: bool,
    /// The recovery target tried (`--between`); `time` is then the
    /// target's too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<DateTime<Utc>>,
}

/// How the search ended.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BisectOutcome {
    /// `last_valid` and `first_invalid` found.
    Found,
    /// The newest snapshot passes: nothing to search.
    AllPass,
    /// The oldest snapshot in the window fails too.
    NonePass,
    /// A snapshot could not be judged (restore or check could not run).
    Undecided,
}

/// The record of `drill bisect`: `<UTC timestamp>-<tier>-bisect.json`.
#[derive(Debug, Clone, Serialize)]
pub struct BisectReport {
    /// Run, tier, repository, times.
    #[serde(flatten)]
    pub header: RecordHeader,
    /// See [`ASSUMPTION`].
    pub assumption: String,
    /// `--since`, if given.
    pub since: Option<DateTime<Utc>>,
    /// Snapshots in the search window (taken since `since`).
    pub snapshots: usize,
    /// Databases the search restored after the newest.
    pub databases: Vec<String>,
    /// Checks the search ran after the newest, as `database: check`.
    pub checks: Vec<String>,
    /// How it ended.
    pub outcome: BisectOutcome,
    /// `passed` (all pass), `failed` (found, or none passes) or `error`.
    pub verdict: Verdict,
    /// One line per reason the newest failed, or why it is undecided.
    pub reasons: Vec<String>,
    /// Every snapshot judged, in order.
    pub tested: Vec<Tested>,
    /// Restores the search ran (one per database per snapshot restored).
    pub restores: usize,
    /// Restores run for the diff only (0 when the search's sandboxes were
    /// reused).
    pub diff_restores: usize,
    /// The newest snapshot that passes.
    pub last_valid: Option<SnapshotRef>,
    /// The oldest snapshot that fails (the one after `last_valid`).
    pub first_invalid: Option<SnapshotRef>,
    /// Table and schema differences from `last_valid` to `first_invalid`.
    pub diff: Vec<DatabaseDiff>,
    /// What the operator should know.
    pub warnings: Vec<String>,
    /// `--between`: the window of recovery targets searched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub between: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// `--between`: the latest target at which the checks pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_valid_target: Option<DateTime<Utc>>,
    /// `--between`: the earliest target (one resolution step later) at
    /// which they fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_invalid_target: Option<DateTime<Utc>>,
}

impl BisectReport {
    /// One sentence on the result.
    pub fn summary(&self) -> String {
        let window = match self.since {
            Some(t) => format!(
                "of the {} snapshots since {}",
                self.snapshots,
                t.to_rfc3339()
            ),
            None => format!("of the {} snapshots", self.snapshots),
        };
        if let Some((from, to)) = self.between {
            let snap = self.tested.first().map_or("?", |t| t.short_id.as_str());
            return match self.outcome {
                BisectOutcome::Found => format!(
                    "last valid recovery target {} ; first invalid {} (snapshot {snap}); {} restore(s)",
                    self.last_valid_target.map(|t| t.to_rfc3339()).unwrap_or_default(),
                    self.first_invalid_target.map(|t| t.to_rfc3339()).unwrap_or_default(),
                    self.restores
                ),
                BisectOutcome::AllPass => format!(
                    "recovery to {} passes: nothing to bisect between {} and {}",
                    to.to_rfc3339(),
                    from.to_rfc3339(),
                    to.to_rfc3339()
                ),
                BisectOutcome::NonePass => format!(
                    "recovery to {} fails already: no target between {} and {} passes",
                    from.to_rfc3339(),
                    from.to_rfc3339(),
                    to.to_rfc3339()
                ),
                BisectOutcome::Undecided => format!(
                    "undecided: a target could not be judged ({})",
                    self.reasons.first().map_or("", String::as_str)
                ),
            };
        }
        match self.outcome {
            BisectOutcome::AllPass => format!(
                "the newest snapshot passes: nothing to bisect ({window}, all pass under the assumption)"
            ),
            BisectOutcome::NonePass => format!(
                "no snapshot passes: even the oldest {window}, {}, fails",
                self.first_invalid.as_ref().map_or("?", |s| s.short_id.as_str())
            ),
            BisectOutcome::Found => format!(
                "last valid snapshot {} ({}); first invalid {} ({}); {} restore(s)",
                self.last_valid.as_ref().map_or("?", |s| s.short_id.as_str()),
                self.last_valid.as_ref().map_or(String::new(), |s| s.time.to_rfc3339()),
                self.first_invalid.as_ref().map_or("?", |s| s.short_id.as_str()),
                self.first_invalid.as_ref().map_or(String::new(), |s| s.time.to_rfc3339()),
                self.restores
            ),
            BisectOutcome::Undecided => format!(
                "undecided: a snapshot could not be judged ({})",
                self.reasons.first().map_or("", String::as_str)
            ),
        }
    }
}

/// Parse `--since`: an RFC 3339 time, a date `YYYY-MM-DD` (midnight in
/// `tz`), or a duration before `now` (`30d`, `2w`, humantime syntax).
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_since(
    text: &str,
    now: DateTime<Utc>,
    tz: chrono_tz::Tz,
) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        use chrono::TimeZone;
        let midnight = d.and_hms_opt(0, 0, 0).expect("midnight exists");
        if let Some(t) = tz.from_local_datetime(&midnight).earliest() {
            return Ok(t.with_timezone(&Utc));
        }
    }
    if let Ok(d) = humantime::parse_duration(text) {
        if let Ok(d) = chrono::Duration::from_std(d) {
            return Ok(now - d);
        }
    }
    Err(format!(
        "--since `{text}`: give an RFC 3339 time (2026-11-01T00:00:00+09:00), a date (2026-11-01, in {tz}) or a duration before now (30d)"
    ))
}

/// Databases and checks of one judgement.
struct Selection<'a> {
    database: &'a DatabaseConfig,
    /// `None`: the checks of `--check` (all when none named).
    checks: Option<Vec<String>>,
}

struct Probe {
    judgement: super::Judgement,
    databases: Vec<DatabaseReport>,
    kept: Vec<KeptSandbox>,
    restores: usize,
    /// Answered by the ledger: per database that failed there, whether its
    /// restore failed and which checks failed.
    known: Option<Vec<(String, bool, Vec<String>)>>,
}

/// `restic cat tree` runs at once while reading which dumps are
/// byte-identical across the window.
const CONTENT_READS: usize = 4;

/// Snapshots probed at once in a round of the search: as many as
/// `parallelism` sandboxes hold when each probe restores `databases` of
/// them (at least one).
fn probe_width(parallelism: usize, databases: usize) -> usize {
    (parallelism / databases.max(1)).max(1)
}

/// The snapshots a round probes: up to `width`, spread evenly strictly
/// between `lo` (passes; -1 before the window) and `hi` (fails), so the
/// round leaves the smallest window whatever the verdicts; a snapshot
/// whose dumps match one already chosen is left out (it would take the
/// same verdict). `width` 1 is the midpoint of a binary search. Needs
/// `hi - lo >= 2`; ascending, never empty.
fn spread(lo: isize, hi: usize, width: usize, keys: &[Option<Key>]) -> Vec<usize> {
    let span = hi as isize - lo;
    let k = width.min((span - 1).max(1) as usize) as isize;
    let mut out: Vec<usize> = Vec::with_capacity(k as usize);
    for j in 1..=k {
        // Rounded to the nearest (the midpoint rounds down when k is 1).
        let m = (lo + (2 * span * j + k) / (2 * (k + 1))) as usize;
        let seen = out.iter().any(|&o| {
            o == m || (keys.get(m).is_some_and(Option::is_some) && keys.get(o) == keys.get(m))
        });
        if !seen {
            out.push(m);
        }
    }
    out
}

/// Record a probe's verdicts in the ledger (under the checks it ran); a
/// ledger that cannot take them is a warning, not the end of the search.
async fn record_probe(
    config: &Config,
    opts: &BisectOptions,
    repo: &Repository,
    snapshot: &Snapshot,
    p: &Probe,
    events: &dyn EventSink,
) {
    let restored: Vec<DatabaseReport> = p
        .databases
        .iter()
        .filter(|d| d.restore.status != Status::NotRun)
        .cloned()
        .collect();
    let who = super::Recorded {
        command: "bisect",
        run_id: &opts.run_id,
        tier: &opts.tier,
        rto_seconds: None,
        report_file: None,
    };
    if let Err(e) =
        super::record_verdicts(config, &who, repo, snapshot, &restored, None, None).await
    {
        events.emit(&Event::Warning {
            message: format!("the ledger could not record a bisect verdict: {e}"),
        });
    }
}

/// The checks a ledger row's reasons say failed (`db: check `name`
/// failed: …`), and whether its restore failed.
fn failed_in(reasons: &[String]) -> (bool, Vec<String>) {
    let restore = reasons.iter().any(|r| r.contains(": restore failed:"));
    let checks = reasons
        .iter()
        .filter_map(|r| {
            let (_, rest) = r.split_once(": check `")?;
            let (name, tail) = rest.split_once('`')?;
            tail.starts_with(" failed").then(|| name.to_string())
        })
        .collect();
    (restore, checks)
}

/// What the ledger already knows of `selection` in `snapshot`: a probe
/// without a restore when it holds a verdict for every selected database
/// under its current checks that answers the selection's question (a pass
/// always does; a failure when the restore or a selected check failed).
fn from_ledger(
    ledger: Option<&crate::ledger::Ledger>,
    config: &Config,
    opts: &BisectOptions,
    snapshot: &Snapshot,
    selection: &[Selection<'_>],
) -> Option<Probe> {
    let ledger = ledger?;
    let mut judgement = super::Judgement {
        failed: false,
        errored: false,
        reasons: Vec::new(),
    };
    let mut known = Vec::new();
    for s in selection {
        let check_id = crate::ledger::check_identity(config, &s.database.name);
        let row = ledger
            .verdict_of_snapshot(&opts.tier, &snapshot.id, &s.database.name, &check_id)
            .ok()??;
        match row.entry.verdict.as_str() {
            "passed" => {}
            "failed" => {
                let (restore, checks) = failed_in(&row.entry.reasons);
                let wanted = s
                    .checks
                    .clone()
                    .or_else(|| (!opts.checks.is_empty()).then(|| opts.checks.clone()));
                let answers = restore
                    || match &wanted {
                        None => true,
                        Some(names) => names.iter().any(|n| checks.contains(n)),
                    };
                if !answers {
                    return None;
                }
                judgement.failed = true;
                judgement.reasons.extend(row.entry.reasons.iter().cloned());
                known.push((s.database.name.clone(), restore, checks));
            }
            _ => return None,
        }
    }
    Some(Probe {
        judgement,
        databases: Vec::new(),
        kept: Vec::new(),
        restores: 0,
        known: Some(known),
    })
}

/// Restore `selection` from `snapshot`, run its checks, keep the sandboxes.
async fn probe(
    config: &Config,
    opts: &BisectOptions,
    repo: &Repository,
    snapshot: &Snapshot,
    selection: &[Selection<'_>],
    baselines: &Result<report::history::Baselines, String>,
    events: &dyn EventSink,
) -> Probe {
    let mut dbs: Vec<DbRun> = selection
        .iter()
        .map(|s| match &s.checks {
            None => DbRun::new(config, s.database, &opts.checks),
            Some(names) => {
                let mut d = DbRun::new(config, s.database, &[]);
                d.checks.retain(|c| names.contains(&c.name));
                d
            }
        })
        .collect();
    let source = SnapshotSource {
        run_id: &opts.run_id,
        tier: &opts.tier,
        repo,
        snapshot,
        baselines,
        name_by_snapshot: true,
    };
    let mut kept = drill_snapshot(config, &source, &mut dbs, true, events).await;
    // A sandbox a `command` check may have written to is no use to the diff.
    let (pristine, written): (Vec<_>, Vec<_>) = kept.drain(..).partition(|k| k.pristine);
    for k in written {
        k.sandbox.remove().await;
    }
    let kept = pristine;
    let databases: Vec<DatabaseReport> = dbs.into_iter().map(|d| d.report).collect();
    let restores = databases
        .iter()
        .filter(|d| d.restore.sandbox_seconds.is_some())
        .count();
    Probe {
        judgement: judge(&databases),
        databases,
        kept,
        restores,
        known: None,
    }
}

/// The content of the searched dumps in one snapshot: per database, its
/// blob ids (`None`: the snapshot lacks the dump).
type Key = Vec<Option<Vec<String>>>;

/// Run `drill bisect` and write its record.
///
/// # Errors
/// [`CommandError`]: usage errors, an unreadable tier, an empty window, a
/// record that cannot be written.
pub async fn run(
    config: &Config,
    opts: &BisectOptions,
    clock: &dyn Clock,
    events: &dyn EventSink,
) -> Result<BisectReport, CommandError> {
    if let Some((from, to)) = opts.between {
        return run_targets(config, opts, clock, events, from, to).await;
    }
    let started_at = clock.now();
    let databases = select_databases(config, &opts.databases)?;
    for c in &opts.checks {
        let Some(def) = config.checks.iter().find(|d| &d.name == c) else {
            return Err(CommandError::Usage(format!(
                "check `{c}` is not defined in {}",
                config.checks_dir.display()
            )));
        };
        if !databases.iter().any(|d| def.applies_to(&d.name)) {
            return Err(CommandError::Usage(format!(
                "check `{c}` applies to none of the databases bisected"
            )));
        }
    }
    let repo = open_tier(config, &opts.tier, clock, events).await?;
    let all = repo.snapshots().await.map_err(CommandError::tier)?;
    let Some(newest_of_all) = all.last().cloned() else {
        return Err(CommandError::Backup(format!(
            "repository {} of tier `{}` has no snapshots",
            repo.display_location(),
            opts.tier
        )));
    };
    let window: Vec<Snapshot> = all
        .into_iter()
        .filter(|s| opts.since.is_none_or(|t| s.time >= t))
        .collect();
    if window.is_empty() {
        return Err(CommandError::Usage(format!(
            "no snapshot of tier `{}` was taken since {}; the newest is {} of {}",
            opts.tier,
            opts.since.map(|t| t.to_rfc3339()).unwrap_or_default(),
            newest_of_all.short_id,
            newest_of_all.time.to_rfc3339()
        )));
    }
    let baselines = report::history::baselines(&config.reports_dir, &opts.tier);
    let n = window.len();
    let mut rec = BisectReport {
        header: RecordHeader::new("bisect", &opts.run_id, &opts.tier, &repo, started_at),
        assumption: ASSUMPTION.into(),
        since: opts.since,
        snapshots: n,
        databases: vec![],
        checks: vec![],
        outcome: BisectOutcome::Undecided,
        verdict: Verdict::Error,
        reasons: vec![],
        tested: vec![],
        restores: 0,
        diff_restores: 0,
        last_valid: None,
        first_invalid: None,
        diff: vec![],
        warnings: vec![],
        between: None,
        last_valid_target: None,
        first_invalid_target: None,
    };

    // 1. The newest, with everything selected.
    let newest = &window[n - 1];
    events.emit(&Event::BisectProbe {
        short_id: newest.short_id.clone(),
        time: newest.time.to_rfc3339(),
        window_from: window[0].short_id.clone(),
        window_to: newest.short_id.clone(),
        remaining: n,
    });
    let everything: Vec<Selection> = databases
        .iter()
        .map(|d| Selection {
            database: d,
            checks: None,
        })
        .collect();
    // Verdicts the ledger holds (`verify-history`, earlier drills) are not
    // tested again.
    let ledger = crate::ledger::Ledger::open(&config.reports_dir).ok();
    let first = match from_ledger(ledger.as_ref(), config, opts, newest, &everything) {
        Some(p) => p,
        None => {
            let p = probe(config, opts, &repo, newest, &everything, &baselines, events).await;
            record_probe(config, opts, &repo, newest, &p, events).await;
            p
        }
    };
    let verdict = first.judgement.verdict();
    rec.restores += first.restores;
    rec.reasons = first.judgement.reasons.clone();
    for d in &first.databases {
        for c in &d.checks {
            for note in &c.notes {
                rec.warnings
                    .push(format!("{}: check `{}`: {note}", d.name, c.name));
            }
        }
    }
    let search: Vec<Selection> = match &first.known {
        Some(known) => known
            .iter()
            .filter_map(|(name, _, checks)| {
                let d = databases.iter().find(|d| &d.name == name)?;
                Some(Selection {
                    database: d,
                    checks: Some(checks.clone()),
                })
            })
            .collect(),
        None => first
            .databases
            .iter()
            .zip(&databases)
            .filter(|(r, _)| {
                r.restore.status == Status::Failed
                    || r.checks.iter().any(|c| c.status == Status::Failed)
            })
            .map(|(r, d)| Selection {
                database: d,
                checks: Some(
                    r.checks
                        .iter()
                        .filter(|c| c.status == Status::Failed)
                        .map(|c| c.name.clone())
                        .collect(),
                ),
            })
            .collect(),
    };
    rec.databases = search.iter().map(|s| s.database.name.clone()).collect();
    rec.checks = search
        .iter()
        .flat_map(|s| {
            s.checks
                .iter()
                .flatten()
                .map(move |c| format!("{}: {c}", s.database.name))
        })
        .collect();
    let mut kept: HashMap<usize, Vec<KeptSandbox>> = HashMap::new();
    let mut first_kept = first.kept;
    let (keep_now, drop_now): (Vec<_>, Vec<_>) = first_kept
        .drain(..)
        .partition(|k| rec.databases.contains(&k.database));
    for k in drop_now {
        k.sandbox.remove().await;
    }
    kept.insert(n - 1, keep_now);
    rec.tested.push(probed(
        newest,
        verdict,
        first.restores,
        first.known.is_some(),
        first.judgement.reasons,
        first.databases,
    ));
    events.emit(&Event::BisectJudged {
        short_id: newest.short_id.clone(),
        verdict,
        same_as: None,
    });
    match verdict {
        Verdict::Passed => {
            rec.outcome = BisectOutcome::AllPass;
            rec.verdict = Verdict::Passed;
            rec.last_valid = Some(newest.into());
            return finish(config, rec, kept, clock).await;
        }
        Verdict::Error => return finish(config, rec, kept, clock).await,
        Verdict::Failed => {}
    }

    // 2. What each snapshot's searched dumps hold, known without restoring.
    // A physical backup's content is its base backups and its WAL archive.
    let paths: Vec<&str> = search
        .iter()
        .flat_map(|s| {
            std::iter::once(s.database.path.as_str())
                .chain(s.database.recovery.as_ref().and_then(|r| r.wal.as_deref()))
        })
        .collect();
    events.emit(&Event::Info {
        message: format!(
            "reading which dumps are byte-identical across {n} snapshot(s) (restic trees)"
        ),
    });
    // A few `restic cat tree` at once: each waits mostly on its start-up
    // and the repository's index, not on the CPU.
    let contents: Vec<_> = futures_util::stream::iter(&window)
        .map(|s| {
            let (repo, paths) = (&repo, &paths);
            async move { (s, repo.contents(s, paths).await) }
        })
        .buffered(CONTENT_READS)
        .collect()
        .await;
    let mut keys: Vec<Option<Key>> = Vec::with_capacity(n);
    let mut key_warning = None;
    for (s, read) in contents {
        match read {
            Ok(map) => keys.push(Some(paths.iter().map(|p| map.get(*p).cloned()).collect())),
            Err(e) => {
                key_warning.get_or_insert_with(|| format!(
                    "could not read the content of snapshot {}'s dumps ({e}); snapshots whose content is unknown are restored",
                    s.short_id
                ));
                keys.push(None);
            }
        }
    }
    rec.warnings.extend(key_warning);
    let mut judged: HashMap<Key, (Verdict, usize)> = HashMap::new();
    if let Some(k) = &keys[n - 1] {
        judged.insert(k.clone(), (Verdict::Failed, n - 1));
    }

    // 3. The search: `lo` passes (-1: before the window), `hi` fails. Each
    // round probes up to `width` snapshots at once, spread evenly between
    // the bounds (a binary search when `width` is 1).
    let width = probe_width(config.sandbox.parallelism, search.len());
    let mut source_of: HashMap<usize, usize> = HashMap::from([(n - 1, n - 1)]);
    let mut recorded = vec![false; n];
    recorded[n - 1] = true;
    let (mut lo, mut hi): (isize, usize) = (-1, n - 1);
    let mut last_judged = vec![n - 1];
    loop {
        // Snapshots whose dumps match one just judged take its verdict.
        for &j in &last_judged {
            let Some(k) = keys[j].clone() else { continue };
            let v = judged.get(&k).map(|j| j.0).unwrap_or(Verdict::Failed);
            for i in 0..n {
                if !recorded[i] && keys[i].as_ref() == Some(&k) {
                    recorded[i] = true;
                    source_of.insert(i, j);
                    let same = window[j].short_id.clone();
                    rec.tested
                        .push(tested(&window[i], v, 0, Some(same.clone()), vec![], vec![]));
                    events.emit(&Event::BisectJudged {
                        short_id: window[i].short_id.clone(),
                        verdict: v,
                        same_as: Some(same),
                    });
                }
            }
        }
        let mut i = (lo + 1) as usize;
        while i < hi {
            match keys[i].as_ref().and_then(|k| judged.get(k)) {
                Some((Verdict::Passed, _)) => lo = i as isize,
                Some(_) => {
                    hi = i;
                    break;
                }
                None => {}
            }
            i += 1;
        }
        // Keep only the sandboxes of the two bounds.
        let wanted: Vec<usize> = [usize::try_from(lo).ok(), Some(hi)]
            .into_iter()
            .flatten()
            .filter_map(|i| source_of.get(&i).copied())
            .collect();
        let stale: Vec<usize> = kept
            .keys()
            .filter(|k| !wanted.contains(k))
            .copied()
            .collect();
        for k in stale {
            for s in kept.remove(&k).unwrap_or_default() {
                s.sandbox.remove().await;
            }
        }
        if hi as isize - lo <= 1 {
            break;
        }
        let mids = spread(lo, hi, width, &keys);
        for &mid in &mids {
            let snap = &window[mid];
            events.emit(&Event::BisectProbe {
                short_id: snap.short_id.clone(),
                time: snap.time.to_rfc3339(),
                window_from: window[(lo + 1) as usize].short_id.clone(),
                window_to: window[hi].short_id.clone(),
                remaining: (hi as isize - lo) as usize,
            });
        }
        // The ledger's verdicts first; the rest restored side by side.
        let known: Vec<Option<Probe>> = mids
            .iter()
            .map(|&m| from_ledger(ledger.as_ref(), config, opts, &window[m], &search))
            .collect();
        let restored = futures_util::future::join_all(mids.iter().zip(&known).map(|(&m, k)| {
            let (search, baselines, repo) = (&search, &baselines, &repo);
            let snap = &window[m];
            let restore = k.is_none();
            async move {
                if restore {
                    Some(probe(config, opts, repo, snap, search, baselines, events).await)
                } else {
                    None
                }
            }
        }))
        .await;
        let mut probes: Vec<(usize, Probe)> = Vec::with_capacity(mids.len());
        for ((&mid, k), r) in mids.iter().zip(known).zip(restored) {
            let p = match (k, r) {
                (Some(p), _) => p,
                (None, Some(p)) => {
                    record_probe(config, opts, &repo, &window[mid], &p, events).await;
                    p
                }
                (None, None) => unreachable!("a probe without a ledger verdict is restored"),
            };
            probes.push((mid, p));
        }
        // Verdicts move the bounds in snapshot order; an error stops the
        // search only where no verdict of this round settled that snapshot.
        let mut errors: Vec<(usize, Vec<String>)> = Vec::new();
        last_judged.clear();
        for (mid, p) in probes {
            let snap = &window[mid];
            let v = p.judgement.verdict();
            rec.restores += p.restores;
            events.emit(&Event::BisectJudged {
                short_id: snap.short_id.clone(),
                verdict: v,
                same_as: None,
            });
            let in_bounds = lo < mid as isize && mid < hi;
            match v {
                Verdict::Passed if in_bounds => lo = mid as isize,
                Verdict::Failed if in_bounds => hi = mid,
                Verdict::Error => errors.push((mid, p.judgement.reasons.clone())),
                _ => {}
            }
            rec.tested.push(probed(
                snap,
                v,
                p.restores,
                p.known.is_some(),
                p.judgement.reasons,
                p.databases,
            ));
            kept.insert(mid, p.kept);
            source_of.insert(mid, mid);
            recorded[mid] = true;
            if v != Verdict::Error {
                last_judged.push(mid);
                if let Some(k) = &keys[mid] {
                    judged.insert(k.clone(), (v, mid));
                }
            }
        }
        for (mid, reasons) in errors {
            let snap = &window[mid];
            if lo < mid as isize && mid < hi {
                rec.reasons = reasons
                    .iter()
                    .map(|r| format!("snapshot {}: {r}", snap.short_id))
                    .collect();
                return finish(config, rec, kept, clock).await;
            }
            rec.warnings.push(format!(
                "snapshot {} could not be judged ({}); the search did not need it: snapshots probed beside it settled the boundary",
                snap.short_id,
                reasons.join("; ")
            ));
        }
    }

    // Verdicts learnt beside the search that contradict the assumption.
    for t in &rec.tested {
        let pos = window.iter().position(|s| s.id == t.id).unwrap_or(0);
        let contradicts = (t.verdict == Verdict::Failed && (pos as isize) <= lo)
            || (t.verdict == Verdict::Passed && pos >= hi);
        if contradicts {
            rec.warnings.push(format!(
                "snapshot {} {} although it is on the other side of the boundary: corruption did not persist, so the answer may be wrong; bisect again with --since after it",
                t.short_id,
                t.verdict.as_str()
            ));
        }
    }
    rec.verdict = Verdict::Failed;
    rec.first_invalid = Some((&window[hi]).into());
    let Ok(lo) = usize::try_from(lo) else {
        rec.outcome = BisectOutcome::NonePass;
        return finish(config, rec, kept, clock).await;
    };
    rec.outcome = BisectOutcome::Found;
    rec.last_valid = Some((&window[lo]).into());

    // 4. What changed from the last valid to the first invalid snapshot.
    let (good, bad) = (&window[lo], &window[hi]);
    for s in &search {
        let db = s.database;
        let reuse = |i: usize| {
            source_of
                .get(&i)
                .and_then(|src| kept.get(src))
                .and_then(|list| list.iter().find(|k| k.database == db.name))
                .map(|k| k.sandbox.clone())
        };
        let a = diff_side(config, opts, &repo, db, good, reuse(lo), events).await;
        let b = diff_side(config, opts, &repo, db, bad, reuse(hi), events).await;
        rec.diff_restores += usize::from(a.1) + usize::from(b.1);
        rec.diff
            .push(compare_restored(db, good, bad, a.0.as_ref(), b.0.as_ref(), events).await);
        for (sandbox, fresh) in [a, b] {
            if let (Ok(s), true) = (sandbox, fresh) {
                s.remove().await;
            }
        }
    }
    finish(config, rec, kept, clock).await
}

/// The sandbox of one side of the final diff: the search's, when it holds
/// the dump as restored, else a fresh restore (`true`: restored now).
async fn diff_side(
    config: &Config,
    opts: &BisectOptions,
    repo: &Repository,
    db: &DatabaseConfig,
    snapshot: &Snapshot,
    existing: Option<Sandbox>,
    events: &dyn EventSink,
) -> (Result<Sandbox, (Status, String)>, bool) {
    if let Some(s) = existing {
        return (Ok(s), false);
    }
    let no_checks = Err("the diff runs no checks".to_string());
    let source = SnapshotSource {
        run_id: &opts.run_id,
        tier: &opts.tier,
        repo,
        snapshot,
        baselines: &no_checks,
        name_by_snapshot: true,
    };
    (
        restore_one(config, &source, db, "bisect", events).await,
        true,
    )
}

fn tested(
    s: &Snapshot,
    verdict: Verdict,
    restores: usize,
    same_as: Option<String>,
    reasons: Vec<String>,
    databases: Vec<DatabaseReport>,
) -> Tested {
    Tested {
        id: s.id.clone(),
        short_id: s.short_id.clone(),
        time: s.time,
        verdict,
        restores,
        same_as,
        reasons,
        databases,
        target: None,
        from_ledger: false,
    }
}

/// What a probe of `s` judged (`from_ledger`: the ledger answered it,
/// no restore), for the record.
fn probed(
    s: &Snapshot,
    verdict: Verdict,
    restores: usize,
    from_ledger: bool,
    reasons: Vec<String>,
    databases: Vec<DatabaseReport>,
) -> Tested {
    Tested {
        from_ledger,
        ..tested(s, verdict, restores, None, reasons, databases)
    }
}

/// Recover `db` from `snapshot` to `target` and run its checks.
#[allow(clippy::too_many_arguments)]
async fn probe_target(
    config: &Config,
    opts: &BisectOptions,
    repo: &Repository,
    snapshot: &Snapshot,
    baselines: &Result<report::history::Baselines, String>,
    db: &DatabaseConfig,
    recovery: &crate::config::Recovery,
    target: DateTime<Utc>,
    events: &dyn EventSink,
) -> Tested {
    let mut database = db.clone();
    database.recovery = Some(crate::config::Recovery {
        wal: recovery.wal.clone(),
        target: crate::config::RecoveryTarget::Time(target.fixed_offset()),
    });
    let source = SnapshotSource {
        run_id: &opts.run_id,
        tier: &opts.tier,
        repo,
        snapshot,
        baselines,
        name_by_snapshot: true,
    };
    events.emit(&Event::Info {
        message: format!(
            "bisect: recovering snapshot {} to {}",
            snapshot.short_id,
            target.to_rfc3339()
        ),
    });
    let mut dbs = vec![DbRun::new(config, &database, &opts.checks)];
    drill_snapshot(config, &source, &mut dbs, false, events).await;
    let reports: Vec<DatabaseReport> = dbs.into_iter().map(|d| d.report).collect();
    let judgement = judge(&reports);
    // Recovery that did not reach the target says nothing of the data at
    // the target: undecided, not invalid.
    let verdict = if reports
        .iter()
        .any(|r| r.restore.status == crate::report::Status::Failed)
    {
        Verdict::Error
    } else {
        judgement.verdict()
    };
    events.emit(&Event::Info {
        message: format!(
            "bisect: target {}: {}",
            target.to_rfc3339(),
            verdict.as_str()
        ),
    });
    let mut t = tested(snapshot, verdict, 1, None, judgement.reasons, reports);
    t.time = target.fixed_offset();
    t.target = Some(target);
    t
}

/// `drill bisect --between FROM TO`: recover the newest snapshot's one
/// physical database to targets between `from` (which should pass) and
/// `to` (which fails), halving the window until it is one `resolution`
/// wide. Each probe is a fresh sandbox: a recovered server that was
/// promoted (checks write) cannot be advanced further.
async fn run_targets(
    config: &Config,
    opts: &BisectOptions,
    clock: &dyn Clock,
    events: &dyn EventSink,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<BisectReport, CommandError> {
    let started_at = clock.now();
    let databases = select_databases(config, &opts.databases)?;
    let [db] = databases.as_slice() else {
        return Err(CommandError::Usage(
            "--between bisects the recovery targets of one physical database: name it with --database".into(),
        ));
    };
    let Some(recovery) = &db.recovery else {
        return Err(CommandError::Usage(format!(
            "database `{}` is not a physical backup (format = \"basebackup\"): --between bisects recovery targets inside one snapshot's WAL",
            db.name
        )));
    };
    if from >= to {
        return Err(CommandError::Usage(format!(
            "--between {} {}: the first time must be earlier than the second",
            from.to_rfc3339(),
            to.to_rfc3339()
        )));
    }
    let step = chrono::Duration::from_std(opts.resolution)
        .unwrap_or_else(|_| chrono::Duration::minutes(1))
        .max(chrono::Duration::seconds(1));
    let repo = open_tier(config, &opts.tier, clock, events).await?;
    let snapshot = pick_snapshot(&repo, "latest").await?;
    let baselines = report::history::baselines(&config.reports_dir, &opts.tier);
    let mut rec = BisectReport {
        header: RecordHeader::new("bisect", &opts.run_id, &opts.tier, &repo, started_at),
        assumption: "the data goes bad at one moment and stays bad: every target after the first invalid one is invalid too".into(),
        since: None,
        snapshots: 1,
        databases: vec![db.name.clone()],
        checks: opts.checks.clone(),
        outcome: BisectOutcome::Undecided,
        verdict: Verdict::Error,
        reasons: vec![],
        tested: vec![],
        restores: 0,
        diff_restores: 0,
        last_valid: None,
        first_invalid: None,
        diff: vec![],
        warnings: vec![],
        between: Some((from, to)),
        last_valid_target: None,
        first_invalid_target: None,
    };
    let probe_at = |target: DateTime<Utc>| {
        probe_target(
            config, opts, &repo, &snapshot, &baselines, db, recovery, target, events,
        )
    };
    let done = |mut rec: BisectReport| async move {
        rec.restores = rec.tested.iter().map(|t| t.restores).sum();
        let _ = super::sweep(&rec.header.run_id).await;
        rec.header.finished_at = clock.now();
        write_record(config, &rec.header, &rec, &markdown(&rec))?;
        Ok(rec)
    };
    // The newest target first: nothing to search when it passes.
    let high = probe_at(to).await;
    let v = high.verdict;
    rec.reasons = high.reasons.clone();
    rec.tested.push(high);
    match v {
        Verdict::Passed => {
            rec.outcome = BisectOutcome::AllPass;
            rec.verdict = Verdict::Passed;
            return done(rec).await;
        }
        Verdict::Error => return done(rec).await,
        Verdict::Failed => {}
    }
    let low = probe_at(from).await;
    let v = low.verdict;
    let low_reasons = low.reasons.clone();
    rec.tested.push(low);
    match v {
        Verdict::Failed => {
            rec.outcome = BisectOutcome::NonePass;
            rec.verdict = Verdict::Failed;
            rec.first_invalid_target = Some(from);
            return done(rec).await;
        }
        Verdict::Error => {
            rec.reasons = low_reasons;
            return done(rec).await;
        }
        Verdict::Passed => {}
    }
    let (mut lo, mut hi) = (from, to);
    while hi - lo > step {
        let steps = (hi - lo).num_milliseconds() / step.num_milliseconds().max(1);
        let mid = lo + step * (steps / 2).max(1) as i32;
        let t = probe_at(mid).await;
        let v = t.verdict;
        let reasons = t.reasons.clone();
        rec.tested.push(t);
        match v {
            Verdict::Passed => lo = mid,
            Verdict::Failed => hi = mid,
            Verdict::Error => {
                rec.reasons = reasons
                    .iter()
                    .map(|r| format!("target {}: {r}", mid.to_rfc3339()))
                    .collect();
                return done(rec).await;
            }
        }
    }
    rec.outcome = BisectOutcome::Found;
    rec.verdict = Verdict::Failed;
    rec.last_valid_target = Some(lo);
    rec.first_invalid_target = Some(hi);
    done(rec).await
}

/// Remove the kept sandboxes (and anything else of the run), write the
/// record.
async fn finish(
    config: &Config,
    mut rec: BisectReport,
    kept: HashMap<usize, Vec<KeptSandbox>>,
    clock: &dyn Clock,
) -> Result<BisectReport, CommandError> {
    for s in kept.into_values().flatten() {
        s.sandbox.remove().await;
    }
    let _ = super::sweep(&rec.header.run_id).await;
    rec.header.finished_at = clock.now();
    write_record(config, &rec.header, &rec, &markdown(&rec))?;
    Ok(rec)
}

fn markdown(r: &BisectReport) -> String {
    let mut out = format!(
        "# drill bisect — tier {}\n\n**{}**\n\nRun {} · assumption: {}\n",
        r.header.tier,
        r.summary(),
        r.header.run_id,
        r.assumption
    );
    if !r.checks.is_empty() || !r.databases.is_empty() {
        out.push_str(&format!(
            "\nSearched with databases {} and checks {}.\n",
            r.databases.join(", "),
            if r.checks.is_empty() {
                "(restore only)".to_string()
            } else {
                r.checks.join(", ")
            }
        ));
    }
    out.push_str("\n## Snapshots judged, in order\n\n| # | snapshot | time | verdict | how |\n|---|---|---|---|---|\n");
    for (i, t) in r.tested.iter().enumerate() {
        let how = match &t.same_as {
            Some(s) => format!("same dumps as {s}, no restore"),
            None if t.from_ledger => "the ledger's verdict, no restore".to_string(),
            None => format!("{} restore(s)", t.restores),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {how} |\n",
            i + 1,
            t.short_id,
            t.time.to_rfc3339(),
            t.verdict.as_str()
        ));
    }
    out.push_str(&format!(
        "\nRestores: {} for the search, {} for the diff.\n",
        r.restores, r.diff_restores
    ));
    if !r.reasons.is_empty() {
        out.push_str("\n## Why the newest fails\n\n");
        for reason in &r.reasons {
            out.push_str(&format!("- {reason}\n"));
        }
    }
    if !r.diff.is_empty() {
        out.push_str("\n## What changed from last valid to first invalid\n");
        markdown_databases(&mut out, &r.diff);
    }
    if !r.warnings.is_empty() {
        out.push_str("\n## Warnings\n\n");
        for w in &r.warnings {
            out.push_str(&format!("- {w}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_spreads_its_probes_evenly_between_the_bounds() {
        let none: Vec<Option<Key>> = vec![None; 12];
        // 12 snapshots, the newest (11) fails: a binary search probes the
        // middle, two at a time cut the window in three.
        assert_eq!(spread(-1, 11, 1, &none), vec![5]);
        assert_eq!(spread(-1, 11, 2, &none), vec![3, 7]);
        assert_eq!(spread(3, 7, 2, &none), vec![4, 6]);
        assert_eq!(spread(3, 8, 1, &none), vec![5]);
        // Never more probes than snapshots left, never a bound.
        assert_eq!(spread(3, 5, 4, &none), vec![4]);
        assert_eq!(spread(-1, 1, 2, &none), vec![0]);
        // A snapshot whose dumps match one chosen is left out.
        let mut keys = none.clone();
        keys[3] = Some(vec![Some(vec!["a".into()])]);
        keys[7] = keys[3].clone();
        assert_eq!(spread(-1, 11, 2, &keys), vec![3]);
        assert_eq!(probe_width(2, 1), 2);
        assert_eq!(probe_width(2, 3), 1);
        assert_eq!(probe_width(0, 0), 1);
    }

    #[test]
    fn since_takes_a_time_a_date_or_a_duration() {
        let now = DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let tz = chrono_tz::Asia::Seoul;
        assert_eq!(
            parse_since("2026-11-01T00:00:00+09:00", now, tz).unwrap(),
            DateTime::parse_from_rfc3339("2026-10-31T15:00:00Z").unwrap()
        );
        // A date is midnight in the config's zone.
        assert_eq!(
            parse_since("2026-11-01", now, tz).unwrap(),
            DateTime::parse_from_rfc3339("2026-10-31T15:00:00Z").unwrap()
        );
        assert_eq!(
            parse_since("30d", now, tz).unwrap(),
            DateTime::parse_from_rfc3339("2026-10-25T12:00:00Z").unwrap()
        );
        let e = parse_since("last tuesday", now, tz).unwrap_err();
        assert!(e.contains("last tuesday") && e.contains("RFC 3339"), "{e}");
    }
}
