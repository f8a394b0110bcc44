//! The report model (versioned), its writers (JSON, Markdown, `history.csv`)
//! and the events the orchestrator emits while it works.

mod events;
pub mod history;
pub mod html;
pub mod junit;
mod markdown;
pub mod metrics;

pub use events::{Event, EventSink, NullSink};

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The JSON report's `format_version`. Change it deliberately: consumers
/// (history, dashboards) key on it.
pub const FORMAT_VERSION: u32 = 1;

/// Outcome of a restore, a check, a policy limit or a whole drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Proven good.
    Passed,
    /// Proven bad: the backup is damaged or a check found a problem.
    Failed,
    /// Could not be judged: the environment prevented it. Never a pass.
    Error,
    /// Not attempted because an earlier step did not pass. Never a pass.
    NotRun,
}

impl Status {
    /// Lower-case name as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Error => "error",
            Status::NotRun => "not_run",
        }
    }
}

/// The drill's overall verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every restore and check passed and every configured policy limit held.
    Passed,
    /// The backup is bad: a restore or check failed, or a policy limit was
    /// exceeded.
    Failed,
    /// No verdict: the environment prevented the drill.
    Error,
}

impl Verdict {
    /// Lower-case name as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::Error => "error",
        }
    }
}

/// A policy limit's judgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyStatus {
    /// Within the limit.
    Passed,
    /// Beyond the limit.
    Failed,
    /// No limit configured.
    NotConfigured,
    /// The value could not be measured (e.g. a restore did not finish).
    Unknown,
}

/// One policy limit with the measured value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyLimit {
    /// Judgement.
    pub status: PolicyStatus,
    /// The limit in seconds, if configured.
    pub limit_seconds: Option<f64>,
    /// The measured value in seconds, if known.
    pub actual_seconds: Option<f64>,
}

impl PolicyLimit {
    /// A limit that is not configured (reports older than the limit).
    pub fn not_configured() -> Self {
        PolicyLimit::judge(None, None)
    }

    /// Judge `actual` against `limit`.
    pub fn judge(limit: Option<std::time::Duration>, actual: Option<f64>) -> Self {
        let limit_seconds = limit.map(|d| d.as_secs_f64());
        let status = match (limit_seconds, actual) {
            (None, _) => PolicyStatus::NotConfigured,
            (Some(_), None) => PolicyStatus::Unknown,
            (Some(l), Some(a)) if a <= l => PolicyStatus::Passed,
            (Some(_), Some(_)) => PolicyStatus::Failed,
        };
        PolicyLimit {
            status,
            limit_seconds,
            actual_seconds: actual,
        }
    }
}

/// `policy` in the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyReport {
    /// RTO: restore + checks within `max_rto`.
    pub max_rto: PolicyLimit,
    /// RPO: snapshot age at the start of the run within `max_snapshot_age`.
    pub max_snapshot_age: PolicyLimit,
    /// Physical backups: the worst data loss recovery proved (see
    /// [`RecoveryReport::data_loss_seconds`]) within `max_data_loss`;
    /// `not_configured` when the run holds no physical backup.
    #[serde(default = "PolicyLimit::not_configured")]
    pub max_data_loss: PolicyLimit,
}

/// `snapshot` in the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotReport {
    /// Full id.
    pub id: String,
    /// Short id.
    pub short_id: String,
    /// When it was taken (RFC 3339, as restic recorded it).
    pub time: DateTime<chrono::FixedOffset>,
    /// Age at the start of the run, seconds (the RPO measure).
    pub age_seconds: f64,
    /// Host it was taken on.
    pub hostname: String,
    /// Tags.
    pub tags: Vec<String>,
}

/// `restore` of one database.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreReport {
    /// `passed`, `failed`, `error` or `not_run`.
    pub status: Status,
    /// Bytes read from the repository (the dump as stored).
    pub bytes: u64,
    /// Bytes fed to the restore tool after decompression.
    pub restored_bytes: u64,
    /// Seconds from the start of streaming to the end of the restore.
    pub seconds: f64,
    /// Why it did not pass.
    pub error: Option<String>,
    /// `psql` or `pg_restore`.
    pub tool: Option<String>,
    /// Sandbox image.
    pub image: String,
    /// Server version in the sandbox, e.g. `16.4`.
    pub server_version: Option<String>,
    /// Seconds the sandbox took from creation to accepting connections.
    pub sandbox_seconds: Option<f64>,
    /// What the dump's head says: the server it was dumped from and the
    /// `pg_dump` that wrote it (read before the sandbox started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump: Option<crate::restore::head::DumpVersions>,
    /// Roles drill created (`NOLOGIN`) in the sandbox: those configured in
    /// `roles` and those it found the dump referring to.
    #[serde(default)]
    pub roles_created: Vec<String>,
    /// For a restore tool's failure: `environment` (the sandbox cannot take
    /// the backup) or `damage` (the backup is bad).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// For a restore tool's failure: the classifier's name for its cause
    /// (`missing-role`, `extension-missing`, `syntax-error`, `unrecognised`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// Increments applied after the dump (MariaDB/MySQL binlog SQL), in
    /// order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub increments: Vec<IncrementReport>,
    /// What the operator should know about the restore that is not a
    /// failure (e.g. a dump accepted without its trailer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// For a physical backup: what recovery replayed and reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryReport>,
    /// For a plain script (`pg_dump` plain, `pg_dumpall`): how it was
    /// loaded over one or more `psql` sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<SessionsReport>,
    /// The backup's content identity when the restore computed it from
    /// its own stream ([`crate::restore::RestoreOutcome::content_id`]);
    /// for the ledger, not written to the report.
    #[serde(skip)]
    pub content_id: Option<String>,
}

/// How a plain script was loaded over several `psql` sessions
/// ([`crate::restore::parallel`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionsReport {
    /// Sessions allowed (`sandbox.restore_jobs`).
    pub jobs: u32,
    /// Most sessions that ran at once.
    pub widest: usize,
    /// Groups of sessions run one after another (each section of the
    /// script is one or more).
    pub groups: u32,
    /// The dump's own bytes each session took, in the order they started;
    /// for a script read to its end their sum is `restored_bytes`.
    pub bytes: Vec<u64>,
    /// Bytes drill added: session state replayed into each session, the
    /// `COPY` header and `\.` end of each chunk of a cut table, and the
    /// statements around WAL-skipping loads.
    pub added_bytes: u64,
    /// Why parts of the script went to one session (a psql meta-command
    /// drill does not know, …); empty when none did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub serial_because: Vec<String>,
    /// Tables whose data was loaded in a transaction that skips WAL
    /// (`BEGIN`, `TRUNCATE` of the still empty table, `COPY`, `COMMIT`;
    /// see `restore::parallel`); their statements are in `added_bytes`.
    #[serde(default)]
    pub wal_skipped_tables: u32,
}

/// How a physical base backup was recovered (PostgreSQL point-in-time
/// recovery; PostgreSQL docs, 26.3 "Continuous Archiving and Point-in-Time
/// Recovery").
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RecoveryReport {
    /// The base backup's directory inside the snapshot.
    pub base_backup: String,
    /// `tar` or `plain`.
    pub base_format: String,
    /// When the base backup started (its `backup_label`'s `START TIME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_started_at: Option<String>,
    /// Where its WAL starts (`START WAL LOCATION`), e.g. `0/2000028`.
    pub base_start_lsn: String,
    /// The target as configured (`latest`, `immediate`, a time, …).
    pub target: String,
    /// Whether recovery reached a consistent state and its target.
    pub reached: bool,
    /// `pg_last_wal_replay_lsn()` when recovery stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lsn: Option<String>,
    /// `pg_last_xact_replay_timestamp()`: the commit time of the last
    /// transaction replayed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transaction_at: Option<String>,
    /// Data lost, seconds: the target time (or, for other targets, the
    /// snapshot's time) minus the last replayed transaction's commit time;
    /// never negative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_loss_seconds: Option<f64>,
    /// WAL segments replayed (from the base backup's start to where replay
    /// stopped).
    pub wal_segments: u64,
    /// Their bytes.
    pub wal_bytes: u64,
    /// WAL segment size in bytes.
    pub segment_bytes: u64,
    /// Seconds putting the base backup in place (stream, extract, verify).
    pub base_seconds: f64,
    /// Seconds bringing the WAL archive into the sandbox.
    pub wal_fetch_seconds: f64,
    /// Seconds from server start to the end of recovery.
    pub replay_seconds: f64,
}

/// One increment applied after a dump.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IncrementReport {
    /// Path inside the snapshot.
    pub path: String,
    /// Bytes read from the repository.
    pub bytes: u64,
    /// Seconds from the start of its stream to the end of its restore.
    pub seconds: f64,
    /// `passed`, `failed`, `error` or `not_run`.
    pub status: Status,
    /// Why it did not pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The restored data are wrong: the check fails.
    Error,
    /// Worth a look; the check still fails when it reports one (checks
    /// report nothing they would let pass).
    Warning,
}

/// One problem a check found, as data: what, where (table, row key) and
/// how bad. [`Finding::what`] is the line reports have always shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// What is wrong, one line.
    pub what: String,
    /// Where: `schema.table` or `table`, when it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Where: the row, as `column=value` of its key (or the row's columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<String>,
    /// How bad.
    pub severity: Severity,
}

impl Finding {
    /// An [`Severity::Error`] finding saying `what`, located nowhere yet.
    pub fn new(what: impl Into<String>) -> Self {
        Finding {
            what: what.into(),
            table: None,
            row: None,
            severity: Severity::Error,
        }
    }

    /// The same, about table `table`.
    pub fn in_table(mut self, table: impl Into<String>) -> Self {
        self.table = Some(table.into());
        self
    }

    /// The same, about the row `row` (`column=value`).
    pub fn at_row(mut self, row: impl Into<String>) -> Self {
        self.row = Some(row.into());
        self
    }
}

/// One check's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckReport {
    /// Check name (its file stem).
    pub name: String,
    /// Kind (`sql`, …).
    pub kind: String,
    /// `passed`, `failed`, `error` or `not_run`.
    pub status: Status,
    /// Wall time, seconds.
    pub seconds: f64,
    /// One-line summary.
    pub detail: String,
    /// Problems found (for `failed`), one line each.
    pub findings: Vec<String>,
    /// The same findings located: table, row key, severity (reports
    /// written before findings were typed have none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub located: Vec<Finding>,
    /// What the check could not judge or wants the operator to know (e.g. a
    /// `max_drop` without a baseline); never a reason to pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// `row-counts`: each table or group counted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<CountReport>,
    /// `blob-roundtrip`: rows whose bytes were verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_verified: Option<u64>,
    /// `blob-roundtrip`: bytes verified (exported, hashed and imported back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_verified: Option<u64>,
    /// `command`, `amcheck`: the program's output, bounded (first and last
    /// lines), passwords redacted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output: Vec<String>,
}

/// One table or group of a `row-counts` check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CountReport {
    /// `schema.table`, or `name[group]` for a grouped query.
    pub name: String,
    /// Rows counted now.
    pub rows: u64,
    /// The configured minimum.
    pub min: u64,
    /// `passed` or `failed` (`rows ≥ min`).
    pub min_status: Status,
    /// Rows in the baseline: the last passed drill of the same tier that
    /// counted this item.
    pub baseline_rows: Option<u64>,
    /// Run id of that drill.
    pub baseline_run_id: Option<String>,
    /// Fall against the baseline as a fraction (0.25 = a quarter of the
    /// rows are gone; negative = grew).
    pub drop: Option<f64>,
    /// The configured limit on `drop`.
    pub max_drop: Option<f64>,
    /// `passed`, `failed`, `not_configured`, or `unknown` (no baseline: the
    /// first drill of the tier).
    pub max_drop_status: PolicyStatus,
}

/// One database of the drill.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseReport {
    /// `[[databases]]` name.
    pub name: String,
    /// Database kind (`postgresql`, `mariadb`, `mysql`); reports written
    /// before kinds existed read as `postgresql`.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// Dump path inside the snapshot.
    pub path: String,
    /// Dump format.
    pub format: String,
    /// The PostgreSQL database checks ran in.
    pub dbname: String,
    /// The restore.
    pub restore: RestoreReport,
    /// The checks, in name order.
    pub checks: Vec<CheckReport>,
}

fn default_kind() -> String {
    "postgresql".into()
}

impl DatabaseReport {
    /// The server's name for people (`PostgreSQL`, `MariaDB`, `MySQL`).
    pub fn server_title(&self) -> &'static str {
        crate::kind::by_name(&self.kind).map_or("PostgreSQL", |k| k.title())
    }
}

/// The full record of one drill: `<UTC timestamp>-<tier>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Always [`FORMAT_VERSION`]; first in the file.
    pub format_version: u32,
    /// Unique id of the run (also the sandboxes' `drill.run-id` label).
    pub run_id: String,
    /// drill's version.
    pub drill_version: String,
    /// Tier name.
    pub tier: String,
    /// Repository location, passwords redacted.
    pub repository: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Why the verdict is not `passed`: the first reasons, one per line.
    pub reasons: Vec<String>,
    /// Start of the run.
    pub started_at: DateTime<Utc>,
    /// End of the run.
    pub finished_at: DateTime<Utc>,
    /// Seconds from the start of the run to the end of the last check of the
    /// last database; `null` when a restore did not finish.
    pub rto_seconds: Option<f64>,
    /// The snapshot restored, if one was selected.
    pub snapshot: Option<SnapshotReport>,
    /// Policy judgements.
    pub policy: PolicyReport,
    /// Per database, in config order.
    pub databases: Vec<DatabaseReport>,
    /// Things the operator should know that did not change the verdict
    /// (e.g. a `max_drop` that had no baseline, a cold disk out of
    /// rotation, the cold copy's age).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The rotation disk the repository was read from (cold tiers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<u32>,
    /// Every tier tried by this run so far, in order, this one last.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// The tier whose drill passed, if one did.
    #[serde(default)]
    pub passed_tier: Option<String>,
    /// Set when SIGINT or SIGTERM stopped the run (verdict `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<Interruption>,
    /// drill's own peak resident memory over the run so far, bytes
    /// (`getrusage(RUSAGE_SELF)` `ru_maxrss`; restic, the restore tools and
    /// the sandboxes are not counted). `null` where the OS does not say.
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
}

/// This process's peak resident set size in bytes, from `getrusage(2)`
/// (`ru_maxrss` is in KiB on Linux, in bytes on macOS).
pub fn peak_rss_bytes() -> Option<u64> {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let max = u64::try_from(usage.max_rss()).ok()?;
    Some(if cfg!(target_os = "macos") {
        max
    } else {
        max * 1024
    })
}

/// A run stopped by a signal: which, and where it was.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Interruption {
    /// `SIGINT` or `SIGTERM`.
    pub signal: String,
    /// The phase under way: `listing` (restic snapshots/ls), `sandbox`
    /// (starting one), `restore` (streaming a dump into it), `checks`.
    pub phase: String,
    /// The `[[databases]]` entry being worked on, if any.
    pub database: Option<String>,
}

/// One tier tried by a run (fallback).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attempt {
    /// Tier name.
    pub tier: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// Its first reasons.
    pub reasons: Vec<String>,
    /// Its JSON report (file name in `reports_dir`).
    pub report: String,
}

/// `<UTC timestamp>-<tier>`: the stem of a run's report files.
pub fn file_stem(started_at: DateTime<Utc>, tier: &str) -> String {
    format!("{}-{}", started_at.format("%Y%m%dT%H%M%SZ"), tier)
}

impl Report {
    /// Checks that passed and that did not (failed, error, not run).
    pub fn check_counts(&self) -> (usize, usize) {
        let all = self.databases.iter().flat_map(|d| d.checks.iter());
        let passed = all.clone().filter(|c| c.status == Status::Passed).count();
        (passed, all.count() - passed)
    }

    /// Bytes read from the repository, all databases.
    pub fn bytes_restored(&self) -> u64 {
        self.databases.iter().map(|d| d.restore.bytes).sum()
    }

    /// Markdown for a person.
    pub fn to_markdown(&self, tz: chrono_tz::Tz) -> String {
        markdown::render(self, tz)
    }
}

/// Files written for one run.
#[derive(Debug, Clone)]
pub struct WrittenReport {
    /// The JSON report.
    pub json: PathBuf,
    /// The Markdown report.
    pub markdown: PathBuf,
    /// The self-contained HTML page.
    pub html: PathBuf,
    /// The history file appended to.
    pub history: PathBuf,
}

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
#[error("write report {path}: {source}")]
pub struct ReportError {
    /// The file.
    pub path: PathBuf,
    /// The error.
    #[source]
    pub source: std::io::Error,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError {
        path: path.to_path_buf(),
        source,
    }
}

/// Columns of `history.csv`, one row per drill.
pub const HISTORY_COLUMNS: [&str; 12] = [
    "started_at",
    "tier",
    "snapshot",
    "snapshot_time",
    "verdict",
    "rto_seconds",
    "snapshot_age_seconds",
    "bytes_restored",
    "checks_passed",
    "checks_failed",
    "run_id",
    "report",
];

/// Write `<UTC timestamp>-<tier>.json` and `.md` under `dir` and append a
/// row to `dir/history.csv` (created with a header row when new).
///
/// # Errors
/// [`ReportError`] naming the file.
pub fn write(report: &Report, dir: &Path, tz: chrono_tz::Tz) -> Result<WrittenReport, ReportError> {
    let stem = file_stem(report.started_at, &report.tier);
    let (json, markdown) = write_pair(dir, &stem, report, &report.to_markdown(tz))?;
    let html = dir.join(format!("{stem}.html"));
    write_atomic(&html, html::render_report(report, tz).as_bytes())?;
    let history = dir.join("history.csv");

    let new = !history.exists();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&history)
        .map_err(io_err(&history))?;
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(file);
    let csv_err = |e: csv::Error| ReportError {
        path: history.clone(),
        source: std::io::Error::other(e),
    };
    if new {
        w.write_record(HISTORY_COLUMNS).map_err(csv_err)?;
    }
    let (passed, failed) = report.check_counts();
    let fmt_opt = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_default();
    w.write_record([
        report.started_at.to_rfc3339(),
        report.tier.clone(),
        report
            .snapshot
            .as_ref()
            .map(|s| s.id.clone())
            .unwrap_or_default(),
        report
            .snapshot
            .as_ref()
            .map(|s| s.time.to_rfc3339())
            .unwrap_or_default(),
        report.verdict.as_str().to_string(),
        fmt_opt(report.rto_seconds),
        fmt_opt(report.snapshot.as_ref().map(|s| s.age_seconds)),
        report.bytes_restored().to_string(),
        passed.to_string(),
        failed.to_string(),
        report.run_id.clone(),
        json.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
    ])
    .map_err(csv_err)?;
    w.flush().map_err(io_err(&history))?;
    Ok(WrittenReport {
        json,
        markdown,
        html,
        history,
    })
}

/// Write `<stem>.json` (pretty JSON of `record`) and `<stem>.md` under
/// `dir` (created if missing), each atomically (temp file, fsync, rename).
/// Returns both paths.
///
/// # Errors
/// [`ReportError`] naming the file.
pub fn write_pair(
    dir: &Path,
    stem: &str,
    record: &impl Serialize,
    markdown: &str,
) -> Result<(PathBuf, PathBuf), ReportError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let json = dir.join(format!("{stem}.json"));
    let md = dir.join(format!("{stem}.md"));
    let mut text = serde_json::to_string_pretty(record).expect("record serializes");
    text.push('\n');
    write_atomic(&json, text.as_bytes())?;
    write_atomic(&md, markdown.as_bytes())?;
    Ok((json, md))
}

/// Write `bytes` to `path` atomically: a temp file beside it, fsync,
/// rename.
///
/// # Errors
/// [`ReportError`] naming the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn policy_judgement() {
        assert_eq!(
            PolicyLimit::judge(None, Some(1.0)).status,
            PolicyStatus::NotConfigured
        );
        assert_eq!(
            PolicyLimit::judge(Some(Duration::from_secs(10)), None).status,
            PolicyStatus::Unknown
        );
        assert_eq!(
            PolicyLimit::judge(Some(Duration::from_secs(10)), Some(10.0)).status,
            PolicyStatus::Passed
        );
        assert_eq!(
            PolicyLimit::judge(Some(Duration::from_secs(10)), Some(10.5)).status,
            PolicyStatus::Failed
        );
    }
}
