//! `drill diff --tier T A B`: what differs between the databases restored
//! from two snapshots.
//!
//! Both snapshots are restored into their own sandboxes; every user
//! database of each restored server is compared table by table, computed
//! inside the sandboxes through the kind's [`crate::kind::Catalog`]
//! (PostgreSQL: `pg_database`, `md5(row(t.*)::text)`, `pg_dump
//! --schema-only`; MariaDB/MySQL: `information_schema`, `MD5` of the
//! columns, `SHOW CREATE TABLE`):
//!
//! - **row count** and an order-independent **content digest**: the rows'
//!   MD5s summed as two 64-bit halves, so row order and physical layout do
//!   not matter;
//! - where the digests differ, **rows added, removed and changed**: each
//!   side streams `(md5(primary key), md5(row))` ordered by the key hash
//!   and drill merges the two streams (constant memory). A table without a
//!   primary key is compared as a multiset of whole rows, so a changed row
//!   counts as one removed and one added, and `changed` stays `null`;
//! - the **schema**, as a unified diff (the `similar` crate), without the
//!   parts that differ between dumps of the same data (pg_dump's
//!   `\restrict` lines, MariaDB's `AUTO_INCREMENT=` counters).
//!
//! Tables are ranked: changed or removed rows (and dropped tables) first,
//! then tables whose only change is inserted rows (and new tables), then
//! identical ones.

use chrono::{DateTime, FixedOffset, Utc};
use futures_util::StreamExt;
use serde::Serialize;

pub use super::session::CommandError;
pub(crate) use super::session::{open_tier, pick_snapshot, restore_one, select_databases};
use super::SnapshotSource;
use crate::clock::Clock;
use crate::config::{Config, DatabaseConfig};
use crate::kind::CatalogSession;
use crate::report::{self, Event, EventSink, Status};
use crate::sandbox::Sandbox;
use crate::tier::{Repository, Snapshot};

/// A snapshot as `bisect` and `diff` name it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SnapshotRef {
    /// Full id (64 hex digits).
    pub id: String,
    /// restic's short id.
    pub short_id: String,
    /// When it was taken (RFC 3339, as restic recorded it).
    pub time: DateTime<FixedOffset>,
}

impl From<&Snapshot> for SnapshotRef {
    fn from(s: &Snapshot) -> Self {
        SnapshotRef {
            id: s.id.clone(),
            short_id: s.short_id.clone(),
            time: s.time,
        }
    }
}

/// How a table differs, in rank order.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum TableChange {
    /// Rows were changed or removed (perhaps also added).
    Changed,
    /// The table exists only in A (dropped in B).
    OnlyInA,
    /// Rows were only added.
    Inserted,
    /// The table exists only in B (new).
    OnlyInB,
    /// Same rows.
    Identical,
}

/// One table compared.
#[derive(Debug, Clone, Serialize)]
pub struct TableDiff {
    /// PostgreSQL database it lives in.
    pub dbname: String,
    /// `schema.table`.
    pub table: String,
    /// The verdict on this table.
    pub change: TableChange,
    /// Rows in A (`null`: no such table).
    pub rows_a: Option<u64>,
    /// Rows in B.
    pub rows_b: Option<u64>,
    /// Content digest in A (16 hex digits; see the module docs).
    pub digest_a: Option<String>,
    /// Content digest in B.
    pub digest_b: Option<String>,
    /// What rows were matched by: `primary key (col, …)` or `whole row`.
    pub matched_by: Option<String>,
    /// Rows in B only.
    pub added: Option<u64>,
    /// Rows in A only.
    pub removed: Option<u64>,
    /// Rows whose key is in both but whose content differs (primary key
    /// only).
    pub changed: Option<u64>,
}

/// One `[[databases]]` entry compared.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseDiff {
    /// `[[databases]]` name.
    pub database: String,
    /// `passed`: both restored and compared; `failed`: a restore failed
    /// (the dump is damaged); `error`: something could not run.
    pub status: Status,
    /// Why the comparison is missing or incomplete.
    pub error: Option<String>,
    /// Tables, ranked (see the module docs).
    pub tables: Vec<TableDiff>,
    /// Whether the schemas are the same (`null` when not compared).
    pub schema_identical: Option<bool>,
    /// Unified diff of `pg_dump --schema-only`, A → B (empty when equal).
    pub schema_diff: String,
}

impl DatabaseDiff {
    fn not_compared(database: &str, status: Status, error: String) -> Self {
        DatabaseDiff {
            database: database.into(),
            status,
            error: Some(error),
            tables: vec![],
            schema_identical: None,
            schema_diff: String::new(),
        }
    }

    /// Tables that are not identical.
    pub fn changed_tables(&self) -> impl Iterator<Item = &TableDiff> {
        self.tables
            .iter()
            .filter(|t| t.change != TableChange::Identical)
    }
}

/// The fields every `bisect` and `diff` record starts with (flattened
/// into it), and where the record is written.
#[derive(Debug, Clone, Serialize)]
pub struct RecordHeader {
    /// Always [`report::FORMAT_VERSION`]; first in the file.
    pub format_version: u32,
    /// Run id (the sandboxes' label).
    pub run_id: String,
    /// Tier.
    pub tier: String,
    /// Repository, passwords redacted.
    pub repository: String,
    /// Start of the run.
    pub started_at: DateTime<Utc>,
    /// End of the run.
    pub finished_at: DateTime<Utc>,
    /// `bisect` or `diff`: the record's file name ends `-<kind>.json`.
    #[serde(skip)]
    pub kind: &'static str,
}

impl RecordHeader {
    /// A header for a run of `kind` starting now (`finished_at` too, until
    /// [`RecordHeader::write`]).
    pub(crate) fn new(
        kind: &'static str,
        run_id: &str,
        tier: &str,
        repo: &Repository,
        now: DateTime<Utc>,
    ) -> Self {
        RecordHeader {
            format_version: report::FORMAT_VERSION,
            run_id: run_id.into(),
            tier: tier.into(),
            repository: repo.display_location(),
            started_at: now,
            finished_at: now,
            kind,
        }
    }

    /// `<UTC timestamp>-<tier>-<kind>`: the stem of the record's files.
    pub fn stem(&self) -> String {
        format!(
            "{}-{}",
            report::file_stem(self.started_at, &self.tier),
            self.kind
        )
    }
}

/// Write `record` (whose header is `header`) as `<stem>.json` and `.md`
/// under the config's `reports_dir`.
pub(crate) fn write_record(
    config: &Config,
    header: &RecordHeader,
    record: &impl Serialize,
    markdown: &str,
) -> Result<(), report::ReportError> {
    report::write_pair(&config.reports_dir, &header.stem(), record, markdown).map(|_| ())
}

/// The record of `drill diff`: `<UTC timestamp>-<tier>-diff.json`.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    /// Run, tier, repository, times.
    #[serde(flatten)]
    pub header: RecordHeader,
    /// The older side.
    pub a: SnapshotRef,
    /// The newer side.
    pub b: SnapshotRef,
    /// Restores run for this diff (two per database).
    pub restores: usize,
    /// Per database, in config order.
    pub databases: Vec<DatabaseDiff>,
}

impl DiffReport {
    /// `passed` when every database was compared, `failed` when a restore
    /// failed, else `error`.
    pub fn status(&self) -> Status {
        overall(&self.databases)
    }
}

/// The worst status of `databases` (`failed` over `error` over `passed`).
pub(crate) fn overall(databases: &[DatabaseDiff]) -> Status {
    if databases.iter().any(|d| d.status == Status::Failed) {
        Status::Failed
    } else if databases.iter().any(|d| d.status != Status::Passed) {
        Status::Error
    } else {
        Status::Passed
    }
}

/// What `drill diff` compares.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// Run id.
    pub run_id: String,
    /// Tier.
    pub tier: String,
    /// Snapshot A (id or prefix, or `latest`).
    pub a: String,
    /// Snapshot B.
    pub b: String,
    /// `[[databases]]` names (empty = all).
    pub databases: Vec<String>,
}

/// Run `drill diff`: restore A and B of each database, compare, write
/// `<stamp>-<tier>-diff.json` and `.md`. Sandboxes are removed at the end.
///
/// # Errors
/// [`CommandError`] for usage errors, an unreadable tier, or a report that
/// cannot be written; restore failures are recorded per database.
pub async fn run(
    config: &Config,
    opts: &DiffOptions,
    clock: &dyn Clock,
    events: &dyn EventSink,
) -> Result<DiffReport, CommandError> {
    let started_at = clock.now();
    let dbs = select_databases(config, &opts.databases)?;
    let repo = open_tier(config, &opts.tier, clock, events).await?;
    let mut header = RecordHeader::new("diff", &opts.run_id, &opts.tier, &repo, started_at);
    let mut a = pick_snapshot(&repo, &opts.a).await?;
    let mut b = pick_snapshot(&repo, &opts.b).await?;
    if a.id == b.id {
        return Err(CommandError::Usage(format!(
            "A and B are the same snapshot {}; name two different snapshots",
            a.short_id
        )));
    }
    if b.time < a.time {
        std::mem::swap(&mut a, &mut b);
    }
    let baselines = Err("diff runs no checks".to_string());
    let mut out = Vec::new();
    let mut restores = 0;
    for db in dbs {
        events.emit(&Event::Info {
            message: format!(
                "{}: restoring snapshots {} and {} to compare them",
                db.name, a.short_id, b.short_id
            ),
        });
        let source = |s| SnapshotSource {
            run_id: &opts.run_id,
            tier: &opts.tier,
            repo: &repo,
            snapshot: s,
            baselines: &baselines,
            name_by_snapshot: true,
        };
        let (sa, sb) = (source(&a), source(&b));
        let (ra, rb) = tokio::join!(
            restore_one(config, &sa, db, "diff", events),
            restore_one(config, &sb, db, "diff", events)
        );
        restores += 2;
        out.push(compare_restored(db, &a, &b, ra.as_ref(), rb.as_ref(), events).await);
        for s in [ra, rb].into_iter().flatten() {
            s.remove().await;
        }
    }
    let _ = super::sweep(&opts.run_id).await;
    header.finished_at = clock.now();
    let report = DiffReport {
        header,
        a: (&a).into(),
        b: (&b).into(),
        restores,
        databases: out,
    };
    write_record(config, &report.header, &report, &markdown(&report))?;
    Ok(report)
}

/// Compare one database restored from A and from B (either may have
/// failed to restore).
pub(crate) async fn compare_restored(
    db: &DatabaseConfig,
    a: &Snapshot,
    b: &Snapshot,
    ra: Result<&Sandbox, &(Status, String)>,
    rb: Result<&Sandbox, &(Status, String)>,
    events: &dyn EventSink,
) -> DatabaseDiff {
    match (ra, rb) {
        (Ok(sa), Ok(sb)) => {
            events.emit(&Event::Info {
                message: format!(
                    "{}: comparing {} with {} (row counts, content digests, schema)",
                    db.name, a.short_id, b.short_id
                ),
            });
            match compare(sa, sb, &a.short_id, &b.short_id).await {
                Ok((tables, schema_diff)) => DatabaseDiff {
                    database: db.name.clone(),
                    status: Status::Passed,
                    error: None,
                    tables,
                    schema_identical: Some(schema_diff.is_empty()),
                    schema_diff,
                },
                Err(e) => DatabaseDiff::not_compared(&db.name, Status::Error, e),
            }
        }
        (ra, rb) => {
            let failures: Vec<&(Status, String)> =
                [ra.err(), rb.err()].into_iter().flatten().collect();
            let status = if failures.iter().any(|f| f.0 == Status::Failed) {
                Status::Failed
            } else {
                Status::Error
            };
            let why = failures
                .iter()
                .map(|f| f.1.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            DatabaseDiff::not_compared(&db.name, status, why)
        }
    }
}

/// Compare every database of two restored servers (of one kind, through
/// its [`crate::kind::Catalog`]). Returns the ranked tables and the schema
/// diff (empty when the schemas are the same).
///
/// # Errors
/// A query or dump tool that failed, as text; a kind without a catalog.
pub(crate) async fn compare(
    a: &Sandbox,
    b: &Sandbox,
    label_a: &str,
    label_b: &str,
) -> Result<(Vec<TableDiff>, String), String> {
    let catalog = a
        .kind
        .catalog()
        .ok_or_else(|| format!("{} databases cannot be compared", a.kind.title()))?;
    let (in_a, in_b) = (catalog.databases(a).await?, catalog.databases(b).await?);
    let mut names: Vec<&String> = in_a.iter().chain(&in_b).collect();
    names.sort();
    names.dedup();
    let mut tables = Vec::new();
    let mut schema_diff = String::new();
    for dbname in names {
        let ca = match in_a.contains(dbname) {
            true => Some(catalog.open(a, dbname).await?),
            false => None,
        };
        let cb = match in_b.contains(dbname) {
            true => Some(catalog.open(b, dbname).await?),
            false => None,
        };
        let ta = match &ca {
            Some(c) => c.tables().await?,
            None => vec![],
        };
        let tb = match &cb {
            Some(c) => c.tables().await?,
            None => vec![],
        };
        let mut all: Vec<&String> = ta.iter().chain(tb.iter()).collect();
        all.sort();
        all.dedup();
        for table in all {
            let in_a = ta.contains(table).then_some(ca.as_deref()).flatten();
            let in_b = tb.contains(table).then_some(cb.as_deref()).flatten();
            tables.push(compare_table(dbname, table, in_a, in_b).await?);
        }
        let sa = if ca.is_some() {
            catalog.schema(a, dbname).await?
        } else {
            String::new()
        };
        let sb = if cb.is_some() {
            catalog.schema(b, dbname).await?
        } else {
            String::new()
        };
        if sa != sb {
            let diff = similar::TextDiff::from_lines(&sa, &sb);
            schema_diff.push_str(
                &diff
                    .unified_diff()
                    .context_radius(3)
                    .header(
                        &format!("{label_a}/{dbname}"),
                        &format!("{label_b}/{dbname}"),
                    )
                    .to_string(),
            );
        }
    }
    tables.sort_by(|x, y| {
        let weight = |t: &TableDiff| t.removed.unwrap_or(0) + t.changed.unwrap_or(0);
        (x.change, std::cmp::Reverse(weight(x)), &x.dbname, &x.table).cmp(&(
            y.change,
            std::cmp::Reverse(weight(y)),
            &y.dbname,
            &y.table,
        ))
    });
    Ok((tables, schema_diff))
}

async fn compare_table(
    dbname: &str,
    table: &str,
    a: Option<&(dyn CatalogSession + '_)>,
    b: Option<&(dyn CatalogSession + '_)>,
) -> Result<TableDiff, String> {
    let da = match a {
        Some(c) => Some(c.digest(table).await?),
        None => None,
    };
    let db = match b {
        Some(c) => Some(c.digest(table).await?),
        None => None,
    };
    let mut t = TableDiff {
        dbname: dbname.into(),
        table: table.into(),
        change: TableChange::Identical,
        rows_a: da.as_ref().map(|d| d.0),
        rows_b: db.as_ref().map(|d| d.0),
        digest_a: da.as_ref().map(|d| d.1.clone()),
        digest_b: db.as_ref().map(|d| d.1.clone()),
        matched_by: None,
        added: None,
        removed: None,
        changed: None,
    };
    let (Some(ca), Some(cb)) = (a, b) else {
        t.change = if a.is_some() {
            t.removed = t.rows_a;
            TableChange::OnlyInA
        } else {
            t.added = t.rows_b;
            TableChange::OnlyInB
        };
        return Ok(t);
    };
    if da == db {
        t.added = Some(0);
        t.removed = Some(0);
        return Ok(t);
    }
    let pk_a = ca.primary_key(table).await?;
    let pk_b = cb.primary_key(table).await?;
    let key = if !pk_a.is_empty() && pk_a == pk_b {
        Some(pk_a)
    } else {
        None
    };
    let (added, removed, changed) = merge_rows(ca, cb, table, key.as_deref()).await?;
    t.matched_by = Some(match &key {
        Some(cols) => format!("primary key ({})", cols.join(", ")),
        None => "whole row".into(),
    });
    t.added = Some(added);
    t.removed = Some(removed);
    t.changed = key.is_some().then_some(changed);
    t.change = if removed == 0 && changed == 0 && added > 0 {
        TableChange::Inserted
    } else {
        TableChange::Changed
    };
    Ok(t)
}

/// Stream `(key hash, row hash)` from both sides, ordered by key hash in
/// byte order, and merge: returns (added, removed, changed). Without a
/// key, rows are their own key and the comparison is of multisets.
async fn merge_rows(
    a: &(dyn CatalogSession + '_),
    b: &(dyn CatalogSession + '_),
    table: &str,
    key: Option<&[String]>,
) -> Result<(u64, u64, u64), String> {
    let mut sa = a.row_hashes(table, key).await?;
    let mut sb = b.row_hashes(table, key).await?;
    let (mut added, mut removed, mut changed) = (0u64, 0u64, 0u64);
    let mut x = sa.next().await.transpose()?;
    let mut y = sb.next().await.transpose()?;
    loop {
        match (&x, &y) {
            (None, None) => break,
            (Some(_), None) => {
                removed += 1;
                x = sa.next().await.transpose()?;
            }
            (None, Some(_)) => {
                added += 1;
                y = sb.next().await.transpose()?;
            }
            (Some((ka, ha)), Some((kb, hb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    removed += 1;
                    x = sa.next().await.transpose()?;
                }
                std::cmp::Ordering::Greater => {
                    added += 1;
                    y = sb.next().await.transpose()?;
                }
                std::cmp::Ordering::Equal => {
                    if ha != hb {
                        changed += 1;
                    }
                    x = sa.next().await.transpose()?;
                    y = sb.next().await.transpose()?;
                }
            },
        }
    }
    Ok((added, removed, changed))
}

/// The tables that differ, one line each, ranked.
pub fn table_lines(d: &DatabaseDiff) -> Vec<String> {
    d.changed_tables()
        .map(|t| {
            let n = |v: Option<u64>| v.map_or("-".to_string(), |x| x.to_string());
            let mut line = format!(
                "{} {}.{}: {} rows → {}",
                match t.change {
                    TableChange::Changed => "changed ",
                    TableChange::OnlyInA => "dropped ",
                    TableChange::Inserted => "inserted",
                    TableChange::OnlyInB => "new     ",
                    TableChange::Identical => "same    ",
                },
                t.dbname,
                t.table,
                n(t.rows_a),
                n(t.rows_b)
            );
            if t.matched_by.is_some() {
                line.push_str(&format!(
                    " (+{} added, −{} removed, {} changed; by {})",
                    n(t.added),
                    n(t.removed),
                    t.changed.map_or("?".into(), |c| c.to_string()),
                    t.matched_by.as_deref().unwrap_or("")
                ));
            }
            line
        })
        .collect()
}

/// The diff section of a Markdown record.
pub(crate) fn markdown_databases(out: &mut String, databases: &[DatabaseDiff]) {
    for d in databases {
        out.push_str(&format!("\n### {} ({})\n\n", d.database, d.status.as_str()));
        if let Some(e) = &d.error {
            out.push_str(&format!("Not compared: {e}\n"));
            continue;
        }
        let lines = table_lines(d);
        if lines.is_empty() {
            out.push_str("Every table has the same rows.\n");
        }
        for l in lines {
            out.push_str(&format!("- {l}\n"));
        }
        let same = d.tables.len() - d.changed_tables().count();
        out.push_str(&format!("\n{same} table(s) identical.\n"));
        if d.schema_diff.is_empty() {
            out.push_str("\nSchema: identical.\n");
        } else {
            out.push_str(&format!("\nSchema:\n\n```diff\n{}```\n", d.schema_diff));
        }
    }
}

fn markdown(r: &DiffReport) -> String {
    let mut out = format!(
        "# drill diff — tier {}\n\nA: snapshot {} ({})\nB: snapshot {} ({})\nRun {}, {} restore(s).\n\n## Databases\n",
        r.header.tier, r.a.short_id, r.a.time, r.b.short_id, r.b.time, r.header.run_id, r.restores
    );
    markdown_databases(&mut out, &r.databases);
    out
}
