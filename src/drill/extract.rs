//! `drill extract --tier T --snapshot ID --database D --table T… --out FILE`:
//! some tables of a snapshot, as a SQL file the operator applies by hand.
//!
//! The snapshot's dump is restored into a sandbox and `pg_dump` runs there
//! (PostgreSQL docs, "pg_dump"): by default `--section=pre-data
//! --section=data`, i.e. each table's definition and rows but not its
//! indexes, keys, foreign keys or triggers, which name objects outside the
//! file, so the file loads into an empty scratch database; with
//! `--data-only`, only the rows (`COPY`), to load into existing tables.
//! Types, functions and other tables a table depends on are not included
//! (`pg_dump --table`). drill never applies the file, never overwrites an
//! existing file, and writes it with mode 0600: it holds production data.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::diff::{
    open_tier, pick_snapshot, restore_one, select_databases, CommandError, SnapshotRef,
};
use super::SnapshotSource;
use crate::clock::Clock;
use crate::config::Config;
use crate::report::{EventSink, Status};
use crate::sandbox::Sandbox;

/// What to extract.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// Run id (labels the sandbox).
    pub run_id: String,
    /// Tier.
    pub tier: String,
    /// Snapshot id (prefix) or `latest`.
    pub snapshot: String,
    /// `[[databases]]` name.
    pub database: String,
    /// Tables, `schema.table` or `table` (resolved with `to_regclass`).
    pub tables: Vec<String>,
    /// The file to write; must not exist.
    pub out: PathBuf,
    /// Rows only (`pg_dump --data-only`).
    pub data_only: bool,
}

/// One table written.
#[derive(Debug, Clone, Serialize)]
pub struct ExtractedTable {
    /// The table as PostgreSQL names it (`regclass`, quoted as needed).
    pub table: String,
    /// Its rows in the snapshot.
    pub rows: u64,
}

/// What `drill extract` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExtractReport {
    /// Tier.
    pub tier: String,
    /// The snapshot the rows come from.
    pub snapshot: SnapshotRef,
    /// `[[databases]]` name.
    pub database: String,
    /// The PostgreSQL database dumped.
    pub dbname: String,
    /// The tables, in the order asked.
    pub tables: Vec<ExtractedTable>,
    /// The file written.
    pub file: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Rows only.
    pub data_only: bool,
}

/// Run `drill extract`.
///
/// # Errors
/// [`CommandError::Usage`] for an existing `--out`, an unknown database,
/// snapshot or table; [`CommandError::Backup`] when the dump does not
/// restore; [`CommandError::Environment`] or [`CommandError::Tier`] when the
/// tier, sandbox or file system prevent it.
pub async fn run(
    config: &Config,
    opts: &ExtractOptions,
    clock: &dyn Clock,
    events: &dyn EventSink,
) -> Result<ExtractReport, CommandError> {
    let db = select_databases(config, std::slice::from_ref(&opts.database))?[0];
    if opts.tables.is_empty() {
        return Err(CommandError::Usage("name at least one --table".into()));
    }
    refuse_existing(&opts.out)?;
    let repo = open_tier(config, &opts.tier, clock, events).await?;
    let snapshot = pick_snapshot(&repo, &opts.snapshot).await?;
    let no_checks = Err("extract runs no checks".to_string());
    let source = SnapshotSource {
        run_id: &opts.run_id,
        tier: &opts.tier,
        repo: &repo,
        snapshot: &snapshot,
        baselines: &no_checks,
        name_by_snapshot: false,
    };
    let sandbox = restore_one(config, &source, db, "extract", events)
        .await
        .map_err(|(status, why)| match status {
            Status::Failed => CommandError::Backup(why),
            _ => CommandError::Environment(why),
        })?;
    let result = extract_from(&sandbox, opts, &db.dbname, &snapshot.short_id).await;
    sandbox.remove().await;
    let _ = super::sweep(&opts.run_id).await;
    let (tables, bytes) = result?;
    Ok(ExtractReport {
        tier: opts.tier.clone(),
        snapshot: (&snapshot).into(),
        database: db.name.clone(),
        dbname: db.dbname.clone(),
        tables,
        file: opts.out.clone(),
        bytes,
        data_only: opts.data_only,
    })
}

fn refuse_existing(out: &Path) -> Result<(), CommandError> {
    if out.symlink_metadata().is_ok() {
        return Err(CommandError::Usage(format!(
            "{} exists; drill never overwrites a file: remove it or choose another --out",
            out.display()
        )));
    }
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(p) = parent {
        if !p.is_dir() {
            return Err(CommandError::Usage(format!(
                "--out {}: directory {} does not exist",
                out.display(),
                p.display()
            )));
        }
    }
    Ok(())
}

async fn extract_from(
    sandbox: &Sandbox,
    opts: &ExtractOptions,
    dbname: &str,
    snapshot: &str,
) -> Result<(Vec<ExtractedTable>, u64), CommandError> {
    let catalog = sandbox.kind.catalog().ok_or_else(|| {
        CommandError::Usage(format!(
            "{} databases cannot be extracted",
            sandbox.kind.title()
        ))
    })?;
    let session = catalog
        .open(sandbox, dbname)
        .await
        .map_err(CommandError::Environment)?;
    let mut tables = Vec::new();
    for t in &opts.tables {
        let Some(name) = session.resolve(t).await.map_err(CommandError::Usage)? else {
            return Err(CommandError::Usage(format!(
                "table `{t}` is not in database {dbname} of snapshot {snapshot} (database `{}`); name it as the database names it (schema.table for PostgreSQL)",
                opts.database
            )));
        };
        let (rows, _) = session
            .digest(&name)
            .await
            .map_err(|e| CommandError::Environment(format!("count the rows of {name}: {e}")))?;
        tables.push(ExtractedTable { table: name, rows });
    }
    drop(session);
    let names: Vec<String> = tables.iter().map(|t| t.table.clone()).collect();

    let tmp = temp_path(&opts.out, &opts.run_id);
    let io = |what: &str, p: &Path, e: std::io::Error| {
        CommandError::Environment(format!("{what} {}: {e}", p.display()))
    };
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .await
        .map_err(|e| io("create", &tmp, e))?;
    let written = async {
        let header = header(
            opts,
            dbname,
            snapshot,
            &tables,
            catalog.extract_notes(opts.data_only),
        );
        file.write_all(header.as_bytes())
            .await
            .map_err(|e| io("write", &tmp, e))?;
        let bytes = catalog
            .dump_tables(sandbox, dbname, &names, opts.data_only, &mut file)
            .await
            .map_err(CommandError::Environment)?;
        file.sync_all().await.map_err(|e| io("sync", &tmp, e))?;
        // A hard link never replaces an existing file, unlike rename.
        std::fs::hard_link(&tmp, &opts.out).map_err(|e| io("create", &opts.out, e))?;
        Ok::<u64, CommandError>(header.len() as u64 + bytes)
    }
    .await;
    let _ = std::fs::remove_file(&tmp);
    Ok((tables, written?))
}

fn temp_path(out: &Path, run_id: &str) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!(".{name}.drill-{run_id}.tmp"))
}

fn header(
    opts: &ExtractOptions,
    dbname: &str,
    snapshot: &str,
    tables: &[ExtractedTable],
    notes: &str,
) -> String {
    let mut h = format!(
        "-- drill extract: tier {}, snapshot {snapshot}, database `{}` ({dbname})\n",
        opts.tier, opts.database
    );
    for t in tables {
        h.push_str(&format!("--   {}: {} row(s)\n", t.table, t.rows));
    }
    h.push_str(notes);
    h.push('\n');
    h
}
