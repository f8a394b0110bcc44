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

/// Check the policy and report. An empty `opts.policy` is the tier's
/// configured `retention`.
///
/// # Errors
/// [`CommandError::Usage`] for a flag that is not a retention flag, or no
/// policy given nor configured; tier and ledger errors.
pub async fn run(
    config: &Config,
    opts: &RetentionOptions,
    clock: &dyn Clock,
    events: &dyn EventSink,
) -> Result<RetentionReport, CommandError> {
    let mut opts = opts.clone();
    if opts.policy.is_empty() {
        match config.tiers.get(&opts.tier).and_then(|t| t.retention.clone()) {
            Some(p) => opts.policy = p,
            None => return Err(CommandError::Usage(format!(
                "give the retention policy after `--`, as for restic forget: drill retention --tier {} -- --keep-daily 7 --keep-weekly 4 (or set `retention` in [tiers.{}])",
                opts.tier, opts.tier
            ))),
        }
    }
    let opts = &opts;
    crate::config::check_retention_policy(&opts.policy).map_err(CommandError::Usage)?;
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
        .freshness(&opts.tier, &crate::ledger::current_checks(config))
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

/// How long until the next scheduled drill can make a new verdict (zero
/// without a `schedule`): the horizon over which the newest passed
/// snapshot must not expire.
pub fn horizon(config: &Config, now: DateTime<chrono::Utc>) -> chrono::Duration {
    config
        .schedule
        .as_ref()
        .and_then(|s| s.next_after(now, config.timezone))
        .map(|next| next.with_timezone(&chrono::Utc) - now)
        .unwrap_or_else(chrono::Duration::zero)
}

/// The snapshots of `repo` (`all`, as the caller listed them, oldest
/// first) that `policy` will have removed `horizon` from now if backups go
/// on at the tier's cadence (the median gap between its
/// snapshots; a day with fewer than two), oldest first. Computed by
/// [`policy_after`] and `restic forget --dry-run`: an estimate that errs
/// toward expiring early.
///
/// # Errors
/// [`crate::tier::TierError`] from restic.
pub async fn expiring(
    repo: &crate::tier::Repository,
    all: &[crate::tier::Snapshot],
    policy: &[String],
    horizon: chrono::Duration,
) -> Result<Vec<crate::tier::Snapshot>, crate::tier::TierError> {
    let mut gaps: Vec<chrono::Duration> = all.windows(2).map(|w| w[1].time - w[0].time).collect();
    gaps.sort();
    let cadence = gaps
        .get(gaps.len() / 2)
        .copied()
        .filter(|g| *g > chrono::Duration::zero())
        .unwrap_or_else(|| chrono::Duration::days(1));
    let later = policy_after(policy, horizon, cadence);
    if !later.iter().any(|a| a.starts_with("--keep-")) {
        // Nothing of the policy is left by then: everything there is now
        // has been replaced.
        return Ok(all.to_vec());
    }
    let mut removed: Vec<crate::tier::Snapshot> = repo
        .forget_dry_run(&later)
        .await?
        .into_iter()
        .flat_map(|g| g.remove.unwrap_or_default())
        .collect();
    removed.sort_by_key(|s| s.time);
    Ok(removed)
}

/// `policy` as it applies, `horizon` from now, to the snapshots that
/// exist now: each `--keep-last` shortened by the snapshots added at
/// `cadence` meanwhile, each `--keep-hourly/daily/weekly/monthly/yearly`
/// by the hours, days, weeks, months (30 days) and years (365 days) that
/// pass (rounded up), each `--keep-within*` duration (restic's `1y2m3d4h`)
/// by `horizon`. A count or duration used up is dropped; `-1` (keep all)
/// and the other flags stay.
pub fn policy_after(
    policy: &[String],
    horizon: chrono::Duration,
    cadence: chrono::Duration,
) -> Vec<String> {
    let hours = horizon.num_seconds().max(0) as f64 / 3600.0;
    let periods = |period_hours: f64| (hours / period_hours).ceil() as i64;
    let mut pairs: Vec<(String, Option<String>)> = Vec::new();
    let mut it = policy.iter().peekable();
    while let Some(a) = it.next() {
        if let Some((f, v)) = a.split_once('=') {
            pairs.push((f.to_string(), Some(v.to_string())));
        } else if it.peek().is_some_and(|v| !v.starts_with("--")) {
            pairs.push((a.clone(), it.next().cloned()));
        } else {
            pairs.push((a.clone(), None));
        }
    }
    let mut out = Vec::new();
    for (flag, value) in pairs {
        let shortened = match (flag.as_str(), value.as_deref()) {
            (f, Some(v)) if f.starts_with("--keep-within") => restic_hours(v).map(|h| {
                let left = h - hours;
                (left >= 1.0).then(|| format!("{}h", left.floor() as i64))
            }),
            (f, Some(v)) if f != "--keep-tag" && f.starts_with("--keep-") => {
                v.parse::<i64>().ok().map(|n| {
                    let used = match f {
                        "--keep-last" => {
                            let c = cadence.num_seconds().max(1) as f64 / 3600.0;
                            periods(c)
                        }
                        "--keep-hourly" => periods(1.0),
                        "--keep-daily" => periods(24.0),
                        "--keep-weekly" => periods(24.0 * 7.0),
                        "--keep-monthly" => periods(24.0 * 30.0),
                        "--keep-yearly" => periods(24.0 * 365.0),
                        _ => 0,
                    };
                    if n < 0 {
                        Some(n.to_string())
                    } else {
                        (n - used > 0).then(|| (n - used).to_string())
                    }
                })
            }
            _ => None,
        };
        match shortened {
            Some(Some(v)) => out.extend([flag, v]),
            Some(None) => {}
            None => {
                out.push(flag);
                out.extend(value);
            }
        }
    }
    out
}

/// Hours in a restic duration (`1y2m3d4h`: years of 365 days, months of
/// 30); `None` when it is not one.
fn restic_hours(text: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: f64 = number.parse().ok()?;
        number.clear();
        total += n * match c {
            'y' => 24.0 * 365.0,
            'm' => 24.0 * 30.0,
            'd' => 24.0,
            'h' => 1.0,
            _ => return None,
        };
    }
    number.is_empty().then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn a_policy_later_keeps_less_of_what_exists_now() {
        let day = chrono::Duration::days(1);
        let p = args("--keep-last 5 --keep-daily 7 --keep-weekly 4 --keep-monthly -1 --keep-within 10d --host db1 --keep-tag good");
        assert_eq!(
            policy_after(&p, day * 3, day),
            args("--keep-last 2 --keep-daily 4 --keep-weekly 3 --keep-monthly -1 --keep-within 168h --host db1 --keep-tag good")
        );
        // Used up: dropped.
        assert_eq!(
            policy_after(&args("--keep-daily=2 --keep-within 1d"), day * 3, day),
            Vec::<String>::new()
        );
        assert_eq!(policy_after(&p, chrono::Duration::zero(), day), {
            let mut same = p.clone();
            same[9] = "240h".into();
            same
        });
        assert_eq!(restic_hours("1y2m3d4h"), Some(8760.0 + 1440.0 + 72.0 + 4.0));
        assert_eq!(restic_hours("3x"), None);
        assert_eq!(restic_hours("3"), None);
    }
}
