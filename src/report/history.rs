//! Reading `history.csv` back: the row counts of a tier's last passed
//! drills, which `row-counts` checks judge `max_drop` against.
//!
//! Each history row names its JSON report (column `report`, a file beside
//! `history.csv`); the counts live in that report under
//! `databases[].checks[].counts[]`.

use std::collections::HashMap;
use std::path::Path;

/// Passed drills read back, newest first, at most.
const MAX_REPORTS: usize = 200;

/// One item's count in an earlier passed drill.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// Rows counted then.
    pub rows: u64,
    /// That drill's run id.
    pub run_id: String,
    /// That drill's start (RFC 3339, as in `history.csv`).
    pub started_at: String,
}

/// Baselines keyed by (database, check, item), each from the newest passed
/// drill of the tier that counted the item.
#[derive(Debug, Clone, Default)]
pub struct Baselines {
    items: HashMap<(String, String, String), Baseline>,
    /// Passed drills whose report could not be read (skipped), for notes.
    pub skipped: Vec<String>,
    /// Passed drills of the tier found in the history.
    pub passed_drills: usize,
}

impl Baselines {
    /// The baseline of `item` of check `check` in database `database`.
    pub fn get(&self, database: &str, check: &str, item: &str) -> Option<&Baseline> {
        self.items
            .get(&(database.to_string(), check.to_string(), item.to_string()))
    }

    /// Items of `check` in `database` that have a baseline.
    pub fn items_of<'a>(
        &'a self,
        database: &'a str,
        check: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Baseline)> + 'a {
        self.items
            .iter()
            .filter(move |((d, c, _), _)| d == database && c == check)
            .map(|((_, _, i), b)| (i.as_str(), b))
    }

    pub(crate) fn insert_if_absent(&mut self, key: (String, String, String), b: Baseline) {
        self.items.entry(key).or_insert(b);
    }
}

/// One row of `history.csv` (see [`super::HISTORY_COLUMNS`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistoryRow {
    /// Start of the drill.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Tier.
    pub tier: String,
    /// Snapshot id (empty when none was selected).
    pub snapshot: String,
    /// `passed`, `failed` or `error`.
    pub verdict: String,
    /// The snapshot's age at the start of the drill, seconds.
    pub snapshot_age_seconds: Option<f64>,
    /// RTO, seconds (empty when the drill did not finish its checks).
    pub rto_seconds: Option<f64>,
    /// Bytes restored over all databases.
    pub bytes_restored: Option<u64>,
    /// Checks that passed.
    pub checks_passed: Option<u64>,
    /// Checks that did not pass.
    pub checks_failed: Option<u64>,
    /// Run id.
    pub run_id: String,
    /// The JSON report's file name.
    pub report: String,
}

/// Every row of `dir/history.csv`, in file order (oldest first). No file
/// gives no rows.
///
/// # Errors
/// A message naming the file when it cannot be read or lacks the columns
/// drill writes.
pub fn rows(dir: &Path) -> Result<Vec<HistoryRow>, String> {
    let path = dir.join("history.csv");
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("read {}: {e}", path.display())),
    };
    let mut reader = csv::Reader::from_reader(file);
    let headers = reader
        .headers()
        .map_err(|e| format!("read {}: {e}", path.display()))?
        .clone();
    let col = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            format!(
                "{} has no `{name}` column; it was not written by drill (move it aside to start a new history)",
                path.display()
            )
        })
    };
    let (c_rto, c_bytes, c_passed, c_failed) = (
        col("rto_seconds")?,
        col("bytes_restored")?,
        col("checks_passed")?,
        col("checks_failed")?,
    );
    let (c_started, c_tier, c_snapshot, c_verdict, c_age, c_run, c_report) = (
        col("started_at")?,
        col("tier")?,
        col("snapshot")?,
        col("verdict")?,
        col("snapshot_age_seconds")?,
        col("run_id")?,
        col("report")?,
    );
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("read {} row {}: {e}", path.display(), i + 2))?;
        let get = |c: usize| record.get(c).unwrap_or("").to_string();
        let started_at = chrono::DateTime::parse_from_rfc3339(&get(c_started))
            .map_err(|e| format!("read {} row {}: started_at: {e}", path.display(), i + 2))?
            .with_timezone(&chrono::Utc);
        out.push(HistoryRow {
            started_at,
            tier: get(c_tier),
            snapshot: get(c_snapshot),
            verdict: get(c_verdict),
            snapshot_age_seconds: get(c_age).parse().ok(),
            rto_seconds: get(c_rto).parse().ok(),
            bytes_restored: get(c_bytes).parse().ok(),
            checks_passed: get(c_passed).parse().ok(),
            checks_failed: get(c_failed).parse().ok(),
            run_id: get(c_run),
            report: get(c_report),
        });
    }
    Ok(out)
}

/// Read the baselines of `tier` from `dir/history.csv`. No history file, or
/// no passed drill of the tier, gives empty baselines.
///
/// # Errors
/// A message naming the file when `history.csv` exists but cannot be read
/// or lacks the columns drill writes.
pub fn baselines(dir: &Path, tier: &str) -> Result<Baselines, String> {
    let passed: Vec<(String, String, String)> = rows(dir)?
        .into_iter()
        .filter(|r| r.tier == tier && r.verdict == "passed")
        .map(|r| (r.run_id, r.report, r.started_at.to_rfc3339()))
        .collect();
    let mut out = Baselines {
        passed_drills: passed.len(),
        ..Default::default()
    };
    for (run_id, report, started_at) in passed.into_iter().rev().take(MAX_REPORTS) {
        let file = dir.join(&report);
        let json: serde_json::Value = match std::fs::read(&file)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            Err(e) => {
                out.skipped
                    .push(format!("{} (run {run_id}): {e}", file.display()));
                continue;
            }
        };
        let dbs = json["databases"].as_array().cloned().unwrap_or_default();
        for db in dbs {
            let dname = db["name"].as_str().unwrap_or_default().to_string();
            for check in db["checks"].as_array().cloned().unwrap_or_default() {
                if check["status"] != "passed" {
                    continue;
                }
                let cname = check["name"].as_str().unwrap_or_default().to_string();
                for count in check["counts"].as_array().cloned().unwrap_or_default() {
                    let (Some(item), Some(rows)) = (count["name"].as_str(), count["rows"].as_u64())
                    else {
                        continue;
                    };
                    out.insert_if_absent(
                        (dname.clone(), cname.clone(), item.to_string()),
                        Baseline {
                            rows,
                            run_id: run_id.clone(),
                            started_at: started_at.clone(),
                        },
                    );
                }
            }
        }
    }
    Ok(out)
}
