//! `drill retention --tier T -- --keep-daily 7 …`: the retention guard.
//!
//! Runs `restic forget --dry-run --json` with the policy (never without
//! `--dry-run`, always with `--no-lock`: the repository is not written to)
//! and checks what it would remove against the ledger. The policy is unsafe
//! when it would remove the tier's newest snapshot that passed, or, for
//! some database, the last snapshot that passed before one that failed (the
//! one to restore after silent corruption). Each such snapshot is named with
//! a `--keep-within` that would keep it.

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use super::diff::{open_tier, CommandError};
use crate::clock::Clock;
use crate::config::Config;
use crate::ledger::Ledger;
use crate::report::EventSink;

/// Options of `drill retention`.
#[derive(Debug, Clone)]
pub struct RetentionOptions {
    /// Tier.
    pub tier: String,
    /// restic's retention flags (`--keep-daily 7`, …).
    pub policy: Vec<String>,
}

/// A snapshot the policy would remove although the ledger says it matters.
#[derive(Debug, Clone, Serialize)]
pub struct Endangered {
    /// Full id.
    pub id: String,
    /// Short id.
    pub short_id: String,
    /// When it was taken.
    pub time: DateTime<FixedOffset>,
    /// Why it matters.
    pub why: String,
    /// A flag that would keep it (`--keep-within 12d`).
    pub keep_with: String,
}

/// The record of `drill retention` (printed; nothing is written to the
/// repository).
#[derive(Debug, Clone, Serialize)]
pub struct RetentionReport {
    /// Tier.
    pub tier: String,
    /// The policy checked.
    pub policy: Vec<String>,
    /// Snapshots it keeps.
    pub kept: usize,
    /// Short ids of those it would remove, oldest first.
    pub would_remove: Vec<String>,
    /// Those of them the ledger says must stay.
    pub endangered: Vec<Endangered>,
    /// What the operator should know (no ledger, no verdicts).
    pub warnings: Vec<String>,
}

/// Flags `restic forget` takes that only choose what to keep (restic
/// docs, "Removing snapshots according to a policy").
const ALLOWED: [&str; 5] = ["--keep-", "--group-by", "--host", "--tag", "--path"];

/// Check the policy and report.
///
/// # Errors
/// [`CommandError::Usage`] for a flag that is not a retention flag; tier
/// and ledger errors.
pub async fn run(
    config: &Config,
    opts: &RetentionOptions,
    clock: &dyn Clock,
    events: &dyn EventSink,
) -> Result<RetentionReport, CommandError> {
    if opts.policy.is_empty() {
        return Err(CommandError::Usage(
            "give the retention policy after `--`, as for restic forget: drill retention --tier T -- --keep-daily 7 --keep-weekly 4".into(),
        ));
    }
    let mut expect_value = false;
    for a in &opts.policy {
        if expect_value && !a.starts_with("--") {
            expect_value = false;
            continue;
        }
        if !ALLOWED.iter().any(|p| a.starts_with(p)) {
            return Err(CommandError::Usage(format!(
                "`{a}` is not a retention flag; drill passes only --keep-*, --group-by, --host, --tag and --path to restic forget (always with --dry-run)"
            )));
        }
        expect_value = !a.contains('=');
    }
    let repo = open_tier(config, &opts.tier, clock, events).await?;
    let all = repo.snapshots().await.map_err(CommandError::tier)?;
    let groups = repo
        .forget_dry_run(&opts.policy)
        .await
        .map_err(CommandError::tier)?;
    let mut removed: Vec<crate::tier::Snapshot> = groups
        .iter()
        .flat_map(|g| g.remove.clone().unwrap_or_default())
        .collect();
    removed.sort_by_key(|s| s.time);
    let kept: usize = groups
        .iter()
        .map(|g| g.keep.as_ref().map_or(0, Vec::len))
        .sum();
    let mut rec = RetentionReport {
        tier: opts.tier.clone(),
        policy: opts.policy.clone(),
        kept,
        would_remove: removed.iter().map(|s| s.short_id.clone()).collect(),
        endangered: Vec::new(),
        warnings: Vec::new(),
    };
    if !config.reports_dir.join(crate::ledger::FILE).exists() {
        rec.warnings.push(
            "no ledger yet: no snapshot is known to have passed, so none is protected; run drill verify-history first".into(),
        );
        return Ok(rec);
    }
    let mut ledger =
        Ledger::open(&config.reports_dir).map_err(|e| CommandError::Environment(e.to_string()))?;
    ledger
        .record_listing(&opts.tier, &all, clock.now())
        .map_err(|e| CommandError::Environment(e.to_string()))?;
    let names: Vec<String> = config.databases.iter().map(|d| d.name.clone()).collect();
    let fresh = ledger
        .freshness(&opts.tier, &names)
        .map_err(|e| CommandError::Environment(e.to_string()))?;
    let mut protected: Vec<(String, String)> = Vec::new();
    match &fresh.newest_passed {
        Some((id, _)) => {
            protected.push((id.clone(), "the tier's newest snapshot that passed".into()))
        }
        None => rec
            .warnings
            .push("the ledger holds no snapshot of this tier that passed".into()),
    }
    // Per database, the last pass before a failure, in snapshot time order.
    let rows = ledger
        .rows_of_tier(&opts.tier)
        .map_err(|e| CommandError::Environment(e.to_string()))?;
    for db in &names {
        let mut verdicts: Vec<(&str, &str, &str)> = all
            .iter()
            .filter_map(|s| {
                rows.iter()
                    .rfind(|r| {
                        r.entry.snapshot_id == s.id
                            && &r.entry.database == db
                            && (r.entry.verdict == "passed" || r.entry.verdict == "failed")
                    })
                    .map(|r| {
                        (
                            s.id.as_str(),
                            r.entry.verdict.as_str(),
                            r.entry.snapshot_time.as_str(),
                        )
                    })
            })
            .collect();
        verdicts.sort_by_key(|v| v.2);
        for pair in verdicts.windows(2) {
            if pair[0].1 == "passed" && pair[1].1 == "failed" {
                protected.push((
                    pair[0].0.to_string(),
                    format!("the last snapshot of `{db}` that passed before one that failed"),
                ));
            }
        }
    }
    let latest = all.iter().map(|s| s.time).max();
    for s in &removed {
        let whys: Vec<&str> = protected
            .iter()
            .filter(|(id, _)| id == &s.id)
            .map(|(_, why)| why.as_str())
            .collect();
        if whys.is_empty() {
            continue;
        }
        let days = latest
            .map(|l| (l - s.time).num_hours().max(0) / 24 + 1)
            .unwrap_or(1);
        rec.endangered.push(Endangered {
            id: s.id.clone(),
            short_id: s.short_id.clone(),
            time: s.time,
            why: whys.join("; "),
            keep_with: format!("--keep-within {days}d"),
        });
    }
    Ok(rec)
}
