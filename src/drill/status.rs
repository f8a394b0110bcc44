//! `drill status`: per tier, the last drill, the last passed drill and the
//! snapshot's age then, and when the next scheduled drill is due or how
//! overdue it is. Read from `history.csv`; nothing is contacted.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::clock::Clock;
use crate::config::Config;
use crate::report::history::{self, HistoryRow};

/// One tier's standing.
#[derive(Debug, Clone, Serialize)]
pub struct TierStatus {
    /// Tier name.
    pub tier: String,
    /// Its newest drill.
    pub last: Option<HistoryRow>,
    /// Its newest passed drill.
    pub last_passed: Option<HistoryRow>,
    /// When the next drill is due: the first scheduled time after the last
    /// passed drill (`None` without a schedule or without a passed drill).
    pub due: Option<DateTime<Utc>>,
    /// Seconds past `due` now (0 when not yet due). With a schedule and no
    /// passed drill at all, the tier counts as overdue without a figure.
    pub overdue_seconds: Option<f64>,
    /// The ledger's view of the tier's snapshots as last listed (`None`
    /// without a ledger).
    pub ledger: Option<crate::ledger::Freshness>,
}

/// Every tier's [`crate::ledger::Freshness`], by tier name (empty without a
/// ledger).
pub fn freshness(config: &Config) -> std::collections::BTreeMap<String, crate::ledger::Freshness> {
    let mut out = std::collections::BTreeMap::new();
    if !config.reports_dir.join(crate::ledger::FILE).exists() {
        return out;
    }
    let Ok(ledger) = crate::ledger::Ledger::open(&config.reports_dir) else {
        return out;
    };
    let names = crate::ledger::current_checks(config);
    for t in config.tiers.keys() {
        if let Ok(f) = ledger.freshness(t, &names) {
            out.insert(t.clone(), f);
        }
    }
    out
}

/// Every configured tier's standing at `clock`'s now.
///
/// # Errors
/// The history cannot be read (message names the file).
pub fn run(config: &Config, clock: &dyn Clock) -> Result<Vec<TierStatus>, String> {
    let rows = history::rows(&config.reports_dir)?;
    let now = clock.now();
    let fresh = freshness(config);
    Ok(config
        .tiers
        .keys()
        .map(|t| {
            let of_tier: Vec<&HistoryRow> = rows.iter().filter(|r| &r.tier == t).collect();
            let last = of_tier
                .iter()
                .max_by_key(|r| r.started_at)
                .map(|r| (*r).clone());
            let last_passed = of_tier
                .iter()
                .filter(|r| r.verdict == "passed")
                .max_by_key(|r| r.started_at)
                .map(|r| (*r).clone());
            let due = match (&config.schedule, &last_passed) {
                (Some(s), Some(p)) => s
                    .next_after(p.started_at, config.timezone)
                    .map(|d| d.with_timezone(&Utc)),
                _ => None,
            };
            let overdue_seconds =
                due.map(|d| ((now - d).num_milliseconds() as f64 / 1000.0).max(0.0));
            TierStatus {
                tier: t.clone(),
                last,
                last_passed,
                due,
                overdue_seconds,
                ledger: fresh.get(t).cloned(),
            }
        })
        .collect())
}
