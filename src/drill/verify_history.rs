//! `drill verify-history`: give every snapshot of a tier a verdict in the
//! ledger, verifying each content once.
//!
//! Snapshots are walked newest first. For each selected database:
//!
//! - a verdict already recorded for this snapshot under the current checks
//!   is *known*: nothing to do;
//! - otherwise its content identity is read (from the ledger's cache of
//!   restic content, else by hashing the dump without its volatile parts);
//!   when the ledger holds a verdict for the same content under the same
//!   checks, it is *inherited*: recorded for this snapshot with
//!   `inherited_from`, without a restore. Same bytes (up to what the dump
//!   tool varies on every run) restored by the same drill under the same
//!   check files give the same verdict;
//! - otherwise it is *verified*: restored and checked in a sandbox, and
//!   its verdict recorded;
//! - once `--budget` is spent (after at least one restore, so every call
//!   makes progress), the rest is *left* for the next call, which resumes
//!   there (everything done is already in the ledger).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::diff::{open_tier, write_record, CommandError, RecordHeader};
use super::{drill_snapshot, judge, DbRun, SnapshotSource};
use crate::clock::Clock;
use crate::config::{Config, DatabaseConfig};
use crate::ledger::{check_identity, identity, Entry, Ledger};
use crate::report::{self, Event, EventSink, Verdict};

/// What to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Run id (labels the sandboxes).
    pub run_id: String,
    /// Tier.
    pub tier: String,
    /// Only snapshots taken at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Stop starting restores after this long.
    pub budget: Option<Duration>,
    /// `[[databases]]` to verify (empty = all).
    pub databases: Vec<String>,
    /// Only these snapshots (full ids), e.g. a sample.
    pub only: Option<Vec<String>>,
}

/// What happened to one snapshot's database.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Restored and checked now.
    Verified,
    /// Same content and checks as an earlier verification: its verdict.
    Inherited,
    /// The ledger already had a verdict for it.
    Known,
    /// Not reached within the budget.
    Left,
}

/// One line of the summary.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// Snapshot short id.
    pub snapshot: String,
    /// Snapshot time.
    pub time: DateTime<chrono::FixedOffset>,
    /// Database.
    pub database: String,
    /// See [`Outcome`].
    pub outcome: Outcome,
    /// The verdict (none when left).
    pub verdict: Option<Verdict>,
    /// The snapshot the verdict came from, when inherited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inherited_from: Option<String>,
    /// Why it did not pass.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// The record of `drill verify-history`:
/// `<UTC timestamp>-<tier>-verify-history.json`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Run, tier, repository, times.
    #[serde(flatten)]
    pub header: RecordHeader,
    /// `--since`.
    pub since: Option<DateTime<Utc>>,
    /// `--budget`, seconds.
    pub budget_seconds: Option<f64>,
    /// Snapshots walked.
    pub snapshots: usize,
    /// Restored and checked now.
    pub verified: usize,
    /// Inherited without a restore.
    pub inherited: usize,
    /// Already in the ledger.
    pub known: usize,
    /// Left for the next call.
    pub left: usize,
    /// Restores run (one per verdict made now; inherited and known ones
    /// cost none).
    pub restores: usize,
    /// `failed` when a verdict recorded now is failed, `error` when one
    /// could not be judged, else `passed`.
    pub verdict: Verdict,
    /// Every snapshot and database, newest first.
    pub items: Vec<Item>,
}

impl VerifyReport {
    /// One line on the result.
    pub fn summary(&self) -> String {
        format!(
            "{} snapshot(s): {} verified now, {} inherited, {} already known, {} left for later",
            self.snapshots, self.verified, self.inherited, self.known, self.left
        )
    }
}

/// The databases named (all when `names` is empty).
fn databases<'a>(
    config: &'a Config,
    names: &[String],
) -> Result<Vec<&'a DatabaseConfig>, CommandError> {
    for n in names {
        if !config.databases.iter().any(|d| &d.name == n) {
            return Err(CommandError::Usage(format!(
                "database `{n}` is not a [[databases]] entry in {}",
                config.path.display()
            )));
        }
    }
    Ok(config
        .databases
        .iter()
        .filter(|d| names.is_empty() || names.contains(&d.name))
        .collect())
}

/// Run `drill verify-history` and write its record.
///
/// # Errors
/// [`CommandError`]: usage, an unreadable tier, a ledger that cannot be
/// opened (environment), a record that cannot be written.
pub async fn run(
    config: &Config,
    opts: &VerifyOptions,
    clock: &dyn Clock,
    events: &dyn EventSink,
) -> Result<VerifyReport, CommandError> {
    let started_at = clock.now();
    let started = Instant::now();
    let dbs = databases(config, &opts.databases)?;
    let mut ledger =
        Ledger::open(&config.reports_dir).map_err(|e| CommandError::Environment(e.to_string()))?;
    let repo = open_tier(config, &opts.tier, clock, events).await?;
    let mut snapshots = repo.snapshots().await.map_err(CommandError::tier)?;
    ledger
        .record_listing(&opts.tier, &snapshots, clock.now())
        .map_err(|e| CommandError::Environment(e.to_string()))?;
    snapshots.retain(|s| opts.since.is_none_or(|t| s.time >= t));
    if let Some(only) = &opts.only {
        snapshots.retain(|s| only.contains(&s.id));
    }
    snapshots.reverse();
    let baselines = report::history::baselines(&config.reports_dir, &opts.tier);
    let check_ids: Vec<String> = dbs
        .iter()
        .map(|d| check_identity(config, &d.name))
        .collect();
    let mut rec = VerifyReport {
        header: RecordHeader::new(
            "verify-history",
            &opts.run_id,
            &opts.tier,
            &repo,
            started_at,
        ),
        since: opts.since,
        budget_seconds: opts.budget.map(|b| b.as_secs_f64()),
        snapshots: snapshots.len(),
        verified: 0,
        inherited: 0,
        known: 0,
        left: 0,
        restores: 0,
        verdict: Verdict::Passed,
        items: Vec::new(),
    };
    let ledger_error = |e: crate::ledger::LedgerError| CommandError::Environment(e.to_string());
    for snapshot in &snapshots {
        let paths: Vec<&str> = dbs.iter().flat_map(|d| identity::backup_paths(d)).collect();
        // Listed only when a database of the snapshot is not known yet: a
        // history already covered costs no `restic ls`.
        let mut contents = None;
        let source = crate::restore::Source::new(&repo, snapshot, &config.timeouts);
        for (db, check_id) in dbs.iter().zip(&check_ids) {
            let mut item = Item {
                snapshot: snapshot.short_id.clone(),
                time: snapshot.time,
                database: db.name.clone(),
                outcome: Outcome::Left,
                verdict: None,
                inherited_from: None,
                reasons: Vec::new(),
            };
            if let Some(row) = ledger
                .verdict_of_snapshot(&opts.tier, &snapshot.id, &db.name, check_id)
                .map_err(ledger_error)?
            {
                item.outcome = Outcome::Known;
                item.verdict = verdict_of(&row.entry.verdict);
                item.inherited_from = row.entry.inherited_from.map(|s| short(&s));
                rec.known += 1;
                rec.items.push(item);
                continue;
            }
            if contents.is_none() {
                contents = Some(repo.contents(snapshot, &paths).await.unwrap_or_default());
            }
            let listed = contents.as_ref().expect("listed just now");
            let content_id = match identity::restic_content(db, listed) {
                Some(content) => {
                    events.emit(&Event::Info {
                        message: format!(
                            "verify-history: identifying {} in snapshot {}",
                            db.name, snapshot.short_id
                        ),
                    });
                    identity::identify(&ledger, &opts.tier, db, &source, &content, None)
                        .await
                        .ok()
                }
                None => None,
            };
            let earlier = match &content_id {
                Some(c) => ledger
                    .verdict_for(&opts.tier, &db.name, c, check_id)
                    .map_err(ledger_error)?,
                None => None,
            };
            if let Some(row) = earlier {
                let entry = Entry {
                    run_id: opts.run_id.clone(),
                    command: "verify-history".into(),
                    tier: opts.tier.clone(),
                    snapshot_id: snapshot.id.clone(),
                    snapshot_time: snapshot.time.to_rfc3339(),
                    database: db.name.clone(),
                    content_id: content_id.clone(),
                    check_id: check_id.clone(),
                    verdict: row.entry.verdict.clone(),
                    reasons: row.entry.reasons.clone(),
                    rto_seconds: None,
                    bytes: 0,
                    report_file: row.entry.report_file.clone(),
                    inherited_from: Some(row.entry.snapshot_id.clone()),
                };
                ledger.append(&entry, clock.now()).map_err(ledger_error)?;
                item.outcome = Outcome::Inherited;
                item.verdict = verdict_of(&row.entry.verdict);
                item.inherited_from = Some(short(&row.entry.snapshot_id));
                item.reasons = row.entry.reasons;
                rec.inherited += 1;
                note(&mut rec, item);
                continue;
            }
            // The budget stops restores from starting, once one has run
            // (so every call makes progress).
            if rec.verified > 0 && opts.budget.is_some_and(|b| started.elapsed() >= b) {
                rec.left += 1;
                rec.items.push(item);
                continue;
            }
            events.emit(&Event::Info {
                message: format!(
                    "verify-history: verifying {} in snapshot {} ({})",
                    db.name,
                    snapshot.short_id,
                    snapshot.time.to_rfc3339()
                ),
            });
            let db_started = Instant::now();
            let snapshot_source = SnapshotSource {
                run_id: &opts.run_id,
                tier: &opts.tier,
                repo: &repo,
                snapshot,
                baselines: &baselines,
                name_by_snapshot: true,
            };
            let mut runs = vec![DbRun::new(config, db, &[])];
            drill_snapshot(config, &snapshot_source, &mut runs, false, events).await;
            let report = runs.pop().expect("one database").report;
            let judgement = judge(std::slice::from_ref(&report));
            let verdict = judgement.verdict();
            let entry = Entry {
                run_id: opts.run_id.clone(),
                command: "verify-history".into(),
                tier: opts.tier.clone(),
                snapshot_id: snapshot.id.clone(),
                snapshot_time: snapshot.time.to_rfc3339(),
                database: db.name.clone(),
                // A restore that could not run says nothing of the content.
                content_id: (verdict != Verdict::Error).then_some(content_id).flatten(),
                check_id: check_id.clone(),
                verdict: verdict.as_str().into(),
                reasons: judgement.reasons.clone(),
                rto_seconds: (report.restore.status == report::Status::Passed)
                    .then(|| db_started.elapsed().as_secs_f64()),
                bytes: report.restore.bytes,
                report_file: None,
                inherited_from: None,
            };
            ledger.append(&entry, clock.now()).map_err(ledger_error)?;
            item.outcome = Outcome::Verified;
            item.verdict = Some(verdict);
            item.reasons = judgement.reasons;
            rec.verified += 1;
            rec.restores += 1;
            note(&mut rec, item);
        }
    }
    let _ = super::sweep(&opts.run_id).await;
    rec.header.finished_at = clock.now();
    write_record(config, &rec.header, &rec, &markdown(&rec))?;
    Ok(rec)
}

/// `drill run --sample N`: pick up to `n` snapshots of `tier` other than
/// `drilled` that some database has no verdict for under its current
/// checks, at random, weighted toward those closest to expiry: the ones
/// the tier's `retention` policy removes before the next scheduled drill
/// weigh most (see [`super::retention::expiring`]), then the oldest. They
/// are verified as `verify-history` does. `None` when there is nothing to
/// sample.
///
/// # Errors
/// As [`run`].
pub async fn sample(
    config: &Config,
    run_id: &str,
    tier: &str,
    n: usize,
    drilled: Option<&str>,
    clock: &dyn Clock,
    events: &dyn EventSink,
) -> Result<Option<VerifyReport>, CommandError> {
    use rand::seq::IndexedRandom;
    let ledger =
        Ledger::open(&config.reports_dir).map_err(|e| CommandError::Environment(e.to_string()))?;
    let repo = open_tier(config, tier, clock, events).await?;
    let snapshots = repo.snapshots().await.map_err(CommandError::tier)?;
    let mut candidates: Vec<(usize, String)> = Vec::new();
    // Oldest first: the weight is the distance from the newest.
    let total = snapshots.len();
    for (i, s) in snapshots.iter().enumerate() {
        if Some(s.id.as_str()) == drilled {
            continue;
        }
        let mut unjudged = false;
        for d in &config.databases {
            let check_id = check_identity(config, &d.name);
            if ledger
                .verdict_of_snapshot(tier, &s.id, &d.name, &check_id)
                .map_err(|e| CommandError::Environment(e.to_string()))?
                .is_none()
            {
                unjudged = true;
                break;
            }
        }
        if unjudged {
            candidates.push((total - i, s.id.clone()));
        }
    }
    drop(ledger);
    if candidates.is_empty() || n == 0 {
        return Ok(None);
    }
    if let Some(policy) = config.tiers.get(tier).and_then(|t| t.retention.as_ref()) {
        let horizon = super::retention::horizon(config, clock.now());
        match super::retention::expiring(&repo, &snapshots, policy, horizon).await {
            Ok(gone) => {
                for c in &mut candidates {
                    if gone.iter().any(|s| s.id == c.1) {
                        c.0 += total;
                    }
                }
            }
            Err(e) => events.emit(&Event::Warning {
                message: format!(
                    "sampling by age only: the retention policy could not be evaluated: {e}"
                ),
            }),
        }
    }
    let picked: Vec<String> = candidates
        .choose_multiple_weighted(&mut rand::rng(), n.min(candidates.len()), |c| c.0 as f64)
        .map_err(|e| CommandError::Environment(format!("sample snapshots: {e}")))?
        .map(|c| c.1.clone())
        .collect();
    let opts = VerifyOptions {
        run_id: run_id.to_string(),
        tier: tier.to_string(),
        since: None,
        budget: None,
        databases: Vec::new(),
        only: Some(picked),
    };
    run(config, &opts, clock, events).await.map(Some)
}

fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

fn verdict_of(text: &str) -> Option<Verdict> {
    match text {
        "passed" => Some(Verdict::Passed),
        "failed" => Some(Verdict::Failed),
        "error" => Some(Verdict::Error),
        _ => None,
    }
}

/// Add a verdict recorded now to the summary and the overall verdict.
fn note(rec: &mut VerifyReport, item: Item) {
    match item.verdict {
        Some(Verdict::Failed) => rec.verdict = Verdict::Failed,
        Some(Verdict::Error) if rec.verdict == Verdict::Passed => rec.verdict = Verdict::Error,
        _ => {}
    }
    rec.items.push(item);
}

fn markdown(r: &VerifyReport) -> String {
    let mut out = format!(
        "# drill verify-history — tier {}\n\n**{}**\n\nRun {}\n\n| snapshot | time | database | outcome | verdict | from |\n|---|---|---|---|---|---|\n",
        r.header.tier,
        r.summary(),
        r.header.run_id
    );
    for i in &r.items {
        out.push_str(&format!(
            "| {} | {} | {} | {:?} | {} | {} |\n",
            i.snapshot,
            i.time.to_rfc3339(),
            i.database,
            i.outcome,
            i.verdict.map_or("-", |v| v.as_str()),
            i.inherited_from.as_deref().unwrap_or("")
        ));
    }
    out
}
