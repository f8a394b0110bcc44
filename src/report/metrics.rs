//! A Prometheus textfile for node_exporter's textfile collector
//! (<https://github.com/prometheus/node_exporter#textfile-collector>), in the
//! Prometheus text exposition format
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>).
//!
//! Every series carries a `tier` label and is read from `history.csv`, so
//! the file always describes every tier's last drill, not only this run's.
//! A tier that never passed has `drill_last_success_timestamp_seconds` 0, so
//! an alert on its age fires rather than staying silent.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::history::HistoryRow;

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn value(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x}"),
        _ => "NaN".into(),
    }
}

/// The textfile for `rows` (oldest first, as in `history.csv`) and each
/// tier's ledger freshness.
pub fn render(rows: &[HistoryRow], ledger: &BTreeMap<String, crate::ledger::Freshness>) -> String {
    let mut last: BTreeMap<&str, &HistoryRow> = BTreeMap::new();
    let mut success: BTreeMap<&str, &HistoryRow> = BTreeMap::new();
    for r in rows {
        last.insert(&r.tier, r);
        if r.verdict == "passed" {
            success.insert(&r.tier, r);
        }
    }
    let ts = |r: &HistoryRow| r.started_at.timestamp_millis() as f64 / 1000.0;
    let mut o = String::new();
    let mut family = |name: &str, help: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} gauge");
        for (labels, v) in samples {
            let _ = writeln!(o, "{name}{{{labels}}} {v}");
        }
    };
    let per_tier = |f: &dyn Fn(&HistoryRow) -> Option<f64>| -> Vec<(String, String)> {
        last.iter()
            .map(|(t, r)| (format!("tier=\"{}\"", label(t)), value(f(r))))
            .collect()
    };
    family(
        "drill_last_run_timestamp_seconds",
        "Unix time the tier's last drill started.",
        per_tier(&|r| Some(ts(r))),
    );
    family(
        "drill_last_success_timestamp_seconds",
        "Unix time the tier's last passed drill started; 0 if none passed.",
        last.keys()
            .map(|t| {
                (
                    format!("tier=\"{}\"", label(t)),
                    value(Some(success.get(t).map(|r| ts(r)).unwrap_or(0.0))),
                )
            })
            .collect(),
    );
    family(
        "drill_last_verdict",
        "1 for the verdict of the tier's last drill (passed, failed or error), 0 for the others.",
        last.iter()
            .flat_map(|(t, r)| {
                ["passed", "failed", "error"].into_iter().map(move |v| {
                    (
                        format!("tier=\"{}\",verdict=\"{v}\"", label(t)),
                        if r.verdict == v { "1" } else { "0" }.to_string(),
                    )
                })
            })
            .collect(),
    );
    family(
        "drill_last_rto_seconds",
        "RTO of the tier's last drill, seconds (NaN if it did not finish).",
        per_tier(&|r| r.rto_seconds),
    );
    family(
        "drill_last_snapshot_age_seconds",
        "Age of the snapshot the tier's last drill restored, at its start, seconds (NaN if none).",
        per_tier(&|r| r.snapshot_age_seconds),
    );
    family(
        "drill_last_bytes_restored",
        "Bytes of dumps the tier's last drill restored.",
        per_tier(&|r| r.bytes_restored.map(|b| b as f64)),
    );
    family(
        "drill_last_checks_failed",
        "Checks of the tier's last drill that did not pass.",
        per_tier(&|r| r.checks_failed.map(|b| b as f64)),
    );
    let ts_of = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| d.timestamp_millis() as f64 / 1000.0)
            .ok()
    };
    family(
        "drill_last_verified_snapshot_timestamp_seconds",
        "Unix time of the tier's newest snapshot whose every database has a passed verdict in the ledger; 0 if none.",
        ledger
            .iter()
            .map(|(t, f)| {
                (
                    format!("tier=\"{}\"", label(t)),
                    value(Some(
                        f.newest_passed
                            .as_ref()
                            .and_then(|(_, time)| ts_of(time))
                            .unwrap_or(0.0),
                    )),
                )
            })
            .collect(),
    );
    family(
        "drill_unverified_snapshots",
        "Snapshots of the tier (as last listed) some database of which has no verdict in the ledger.",
        ledger
            .iter()
            .map(|(t, f)| (format!("tier=\"{}\"", label(t)), f.unverified.to_string()))
            .collect(),
    );
    o
}
