//! A Prometheus textfile for node_exporter's textfile collector
//! (<https://github.com/prometheus/node_exporter#textfile-collector>), in the
//! Prometheus text exposition format
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>), named
//! after Prometheus' conventions
//! (<https://prometheus.io/docs/practices/naming/>): base units, the unit as
//! the last word (`_seconds`, `_bytes`, `_timestamp_seconds` for Unix
//! times), every family a gauge with `# HELP` and `# TYPE`.
//!
//! Every configured tier has every series, with a `tier` label, even before
//! its first drill, so an alert on a missing or old drill fires rather than
//! staying silent: a tier that never ran or never passed has its
//! `drill_last_run_timestamp_seconds` / `drill_last_success_timestamp_seconds`
//! at 0 and, with a `schedule`, `drill_next_due_timestamp_seconds` at 0 (due
//! since ever, as `drill status` calls it overdue). Values that do not exist
//! yet (the RTO of a drill that never ran) are `NaN`.
//!
//! | family | value |
//! |---|---|
//! | `drill_last_run_timestamp_seconds` | Unix time the tier's last drill started; 0 if none |
//! | `drill_last_success_timestamp_seconds` | Unix time the tier's last passed drill started; 0 if none |
//! | `drill_next_due_timestamp_seconds` | the first scheduled time after the last passed drill; 0 if none passed; `NaN` without a schedule |
//! | `drill_last_verdict{verdict}` | 1 for the last drill's verdict (`passed`, `failed`, `error`), 0 for the others |
//! | `drill_last_rto_seconds` | RTO of the last drill |
//! | `drill_last_snapshot_age_seconds` | age of the snapshot the last drill restored, at its start |
//! | `drill_last_restored_bytes` | bytes the last drill read from the repository |
//! | `drill_last_passed_checks`, `drill_last_failed_checks` | checks of the last drill that passed / did not |
//! | `drill_last_verified_snapshot_timestamp_seconds` | time of the newest snapshot with a passed verdict for every database in the ledger; 0 if none |
//! | `drill_unverified_snapshots` | snapshots (as last listed) some database of which has no verdict; `NaN` without a ledger |

use std::fmt::Write;

use crate::drill::status::TierStatus;
use crate::report::history::HistoryRow;

/// Escape a label value: backslash, double quote and line feed.
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

fn unix(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// The textfile for `tiers` (every configured tier's standing, as
/// [`crate::drill::status::run`] computes it from `history.csv` and the
/// ledger). `scheduled` says whether the config has a `schedule`; without
/// one no drill is ever due and `drill_next_due_timestamp_seconds` is `NaN`.
pub fn render(tiers: &[TierStatus], scheduled: bool) -> String {
    let mut o = String::new();
    let mut family = |name: &str, help: &str, f: &dyn Fn(&TierStatus) -> Vec<(String, String)>| {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} gauge");
        for t in tiers {
            for (extra, v) in f(t) {
                let _ = writeln!(o, "{name}{{tier=\"{}\"{extra}}} {v}", label(&t.tier));
            }
        }
    };
    let one = |v: Option<f64>| vec![(String::new(), value(v))];
    let last =
        |f: fn(&HistoryRow) -> Option<f64>| move |t: &TierStatus| t.last.as_ref().and_then(f);

    family(
        "drill_last_run_timestamp_seconds",
        "Unix time the tier's last drill started; 0 if it never ran.",
        &|t| one(Some(t.last.as_ref().map_or(0.0, |r| unix(r.started_at)))),
    );
    family(
        "drill_last_success_timestamp_seconds",
        "Unix time the tier's last passed drill started; 0 if none passed.",
        &|t| {
            one(Some(
                t.last_passed.as_ref().map_or(0.0, |r| unix(r.started_at)),
            ))
        },
    );
    family(
        "drill_next_due_timestamp_seconds",
        "Unix time the tier's next drill is due: the first scheduled time after its last passed drill; 0 if none passed (overdue); NaN without a schedule.",
        &|t| {
            one(match (t.due, &t.last_passed) {
                (Some(d), _) => Some(unix(d)),
                (None, None) if scheduled => Some(0.0),
                _ => None,
            })
        },
    );
    family(
        "drill_last_verdict",
        "1 for the verdict of the tier's last drill (passed, failed or error), 0 for the others; all 0 if it never ran.",
        &|t| {
            ["passed", "failed", "error"]
                .into_iter()
                .map(|v| {
                    let hit = t.last.as_ref().is_some_and(|r| r.verdict == v);
                    (format!(",verdict=\"{v}\""), u8::from(hit).to_string())
                })
                .collect()
        },
    );
    family(
        "drill_last_rto_seconds",
        "RTO of the tier's last drill: from its start to the end of its last check, seconds; NaN if it did not finish or never ran.",
        &|t| one(last(|r| r.rto_seconds)(t)),
    );
    family(
        "drill_last_snapshot_age_seconds",
        "Age of the snapshot the tier's last drill restored, at the drill's start, seconds; NaN if none.",
        &|t| one(last(|r| r.snapshot_age_seconds)(t)),
    );
    family(
        "drill_last_restored_bytes",
        "Bytes of backups the tier's last drill read from the repository; NaN if it never ran.",
        &|t| one(last(|r| r.bytes_restored.map(|b| b as f64))(t)),
    );
    family(
        "drill_last_passed_checks",
        "Checks of the tier's last drill that passed; NaN if it never ran.",
        &|t| one(last(|r| r.checks_passed.map(|n| n as f64))(t)),
    );
    family(
        "drill_last_failed_checks",
        "Checks of the tier's last drill that did not pass (failed, error or not run); NaN if it never ran.",
        &|t| one(last(|r| r.checks_failed.map(|n| n as f64))(t)),
    );
    family(
        "drill_last_verified_snapshot_timestamp_seconds",
        "Unix time of the tier's newest snapshot whose every database has a passed verdict in the ledger; 0 if none.",
        &|t| {
            one(Some(
                t.ledger
                    .as_ref()
                    .and_then(|f| f.newest_passed.as_ref())
                    .and_then(|(_, time)| chrono::DateTime::parse_from_rfc3339(time).ok())
                    .map_or(0.0, |d| unix(d.to_utc())),
            ))
        },
    );
    family(
        "drill_unverified_snapshots",
        "Snapshots of the tier (as last listed) some database of which has no verdict in the ledger; NaN without a ledger.",
        &|t| one(t.ledger.as_ref().map(|f| f.unverified as f64)),
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(tier: &str, at: &str, verdict: &str) -> HistoryRow {
        HistoryRow {
            started_at: chrono::DateTime::parse_from_rfc3339(at).unwrap().to_utc(),
            tier: tier.into(),
            snapshot: "abc".into(),
            verdict: verdict.into(),
            snapshot_age_seconds: Some(3600.0),
            rto_seconds: Some(42.5),
            bytes_restored: Some(1024),
            checks_passed: Some(3),
            checks_failed: Some(0),
            run_id: "r".into(),
            report: "x.json".into(),
        }
    }

    fn sample<'a>(text: &'a str, series: &str) -> &'a str {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{series} in\n{text}"))
    }

    #[test]
    fn a_tier_that_never_ran_has_every_series() {
        let passed = row("local", "2026-10-15T03:00:00Z", "passed");
        let tiers = vec![
            TierStatus {
                tier: "cold".into(),
                last: None,
                last_passed: None,
                due: None,
                overdue_seconds: None,
                ledger: None,
            },
            TierStatus {
                tier: "local".into(),
                last: Some(passed.clone()),
                last_passed: Some(passed),
                due: Some("2027-01-15T03:00:00Z".parse().unwrap()),
                overdue_seconds: Some(0.0),
                ledger: None,
            },
        ];
        let text = render(&tiers, true);
        for t in ["cold", "local"] {
            for name in [
                "drill_last_run_timestamp_seconds",
                "drill_last_success_timestamp_seconds",
                "drill_next_due_timestamp_seconds",
                "drill_last_rto_seconds",
                "drill_last_snapshot_age_seconds",
                "drill_last_restored_bytes",
                "drill_last_passed_checks",
                "drill_last_failed_checks",
                "drill_last_verified_snapshot_timestamp_seconds",
                "drill_unverified_snapshots",
            ] {
                sample(&text, &format!("{name}{{tier=\"{t}\"}}"));
            }
        }
        assert_eq!(
            sample(&text, "drill_last_success_timestamp_seconds{tier=\"cold\"}"),
            "0"
        );
        assert_eq!(
            sample(&text, "drill_next_due_timestamp_seconds{tier=\"cold\"}"),
            "0"
        );
        assert_eq!(
            sample(&text, "drill_last_rto_seconds{tier=\"cold\"}"),
            "NaN"
        );
        assert_eq!(
            sample(
                &text,
                "drill_last_verdict{tier=\"cold\",verdict=\"passed\"}"
            ),
            "0"
        );
        assert_eq!(
            sample(&text, "drill_next_due_timestamp_seconds{tier=\"local\"}"),
            "1799982000"
        );
        assert_eq!(
            sample(&text, "drill_last_restored_bytes{tier=\"local\"}"),
            "1024"
        );
        assert_eq!(
            sample(&text, "drill_last_rto_seconds{tier=\"local\"}"),
            "42.5"
        );
        // Without a schedule nothing is due.
        let text = render(&tiers, false);
        assert_eq!(
            sample(&text, "drill_next_due_timestamp_seconds{tier=\"cold\"}"),
            "NaN"
        );
        assert_eq!(text.matches("# TYPE ").count(), 11);
    }
}
