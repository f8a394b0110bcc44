//! The verification ledger: `reports_dir/ledger.sqlite`, one row per
//! (tier, snapshot, database) verification, append-only and hash-chained.
//!
//! Each row carries the snapshot, the backup's *content identity* (what
//! the backup means, without its volatile bytes; see
//! [`crate::restore::RestoreMethod::content_identity`]), the *check
//! identity* ([`check_identity`]: the check files that judged it and
//! drill's version), the verdict with its reasons, RTO, bytes, the report
//! file, and `inherited_from` when the verdict was carried over from a
//! verification of the same content under the same checks.
//!
//! Every row also carries the SHA-256 of the row before it (`prev_hash`)
//! and its own (`row_hash`, over `prev_hash` and the row's fields as JSON),
//! so an edited, inserted or deleted row breaks the chain at that row:
//! [`Ledger::verify`] names the first one. Triggers refuse `UPDATE` and
//! `DELETE`; the chain catches whoever drops them.
//!
//! The ledger is written under drill's lock (one drill per config). A
//! ledger file that exists but cannot be opened or is not a drill ledger is
//! an error, never silently recreated.

pub mod identity;

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The ledger's file name inside `reports_dir`.
pub const FILE: &str = "ledger.sqlite";

/// The `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The schema version this drill writes (`meta.version`).
const VERSION: &str = "1";

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE verification (
  seq INTEGER PRIMARY KEY,
  recorded_at TEXT NOT NULL,
  run_id TEXT NOT NULL,
  command TEXT NOT NULL,
  tier TEXT NOT NULL,
  snapshot_id TEXT NOT NULL,
  snapshot_time TEXT NOT NULL,
  database TEXT NOT NULL,
  content_id TEXT,
  check_id TEXT NOT NULL,
  verdict TEXT NOT NULL,
  reasons TEXT NOT NULL,
  rto_seconds REAL,
  bytes INTEGER NOT NULL,
  report_file TEXT,
  inherited_from TEXT,
  prev_hash TEXT NOT NULL,
  row_hash TEXT NOT NULL
);
CREATE INDEX verification_content ON verification (tier, database, content_id, check_id);
CREATE INDEX verification_snapshot ON verification (tier, snapshot_id, database);
CREATE TABLE content_cache (
  tier TEXT NOT NULL,
  database TEXT NOT NULL,
  restic_key TEXT NOT NULL,
  content_id TEXT NOT NULL,
  PRIMARY KEY (tier, database, restic_key)
);
CREATE TABLE seen (
  tier TEXT NOT NULL,
  snapshot_id TEXT NOT NULL,
  snapshot_time TEXT NOT NULL,
  listed_at TEXT NOT NULL,
  PRIMARY KEY (tier, snapshot_id)
);
CREATE TRIGGER verification_no_update BEFORE UPDATE ON verification
  BEGIN SELECT RAISE(ABORT, 'the drill ledger is append-only'); END;
CREATE TRIGGER verification_no_delete BEFORE DELETE ON verification
  BEGIN SELECT RAISE(ABORT, 'the drill ledger is append-only'); END;
";

/// Why the ledger could not be used. All are environment errors (exit 3).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// SQLite failed.
    #[error("ledger {path}: {detail}; the file is kept as it is (drill never recreates a ledger): move it aside to start a new one")]
    Sqlite {
        /// The ledger file.
        path: String,
        /// SQLite's message.
        detail: String,
    },
    /// The file is not a drill ledger (or of a newer version).
    #[error("ledger {path} is not a drill ledger of version {VERSION} ({detail}); move it aside to start a new one")]
    Foreign {
        /// The ledger file.
        path: String,
        /// What was found.
        detail: String,
    },
}

/// One verification to record (the fields a caller gives).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entry {
    /// The run that verified (or inherited) it.
    pub run_id: String,
    /// `run`, `bisect`, `diff`, `verify-history`.
    pub command: String,
    /// Tier.
    pub tier: String,
    /// Full snapshot id.
    pub snapshot_id: String,
    /// Snapshot time (RFC 3339).
    pub snapshot_time: String,
    /// `[[databases]]` name.
    pub database: String,
    /// The backup's content identity (`None`: unknown, e.g. the backup was
    /// missing).
    pub content_id: Option<String>,
    /// The check identity.
    pub check_id: String,
    /// `passed`, `failed` or `error`.
    pub verdict: String,
    /// Why it did not pass.
    pub reasons: Vec<String>,
    /// Restore + checks, seconds (`None` when it did not restore).
    pub rto_seconds: Option<f64>,
    /// Bytes read from the repository.
    pub bytes: u64,
    /// The JSON report of the run, when one was written.
    pub report_file: Option<String>,
    /// The snapshot whose verification this verdict was carried over from.
    pub inherited_from: Option<String>,
}

/// A recorded row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    /// Position in the ledger, from 1.
    pub seq: i64,
    /// When it was recorded (RFC 3339, UTC).
    pub recorded_at: String,
    /// The verification.
    #[serde(flatten)]
    pub entry: Entry,
    /// SHA-256 (hex) of the row before ([`GENESIS`] for the first).
    pub prev_hash: String,
    /// SHA-256 (hex) of `prev_hash`, a newline and the row's fields as JSON.
    pub row_hash: String,
}

/// The fields a row's hash covers, in a fixed order.
#[derive(Serialize)]
struct Hashed<'a> {
    seq: i64,
    recorded_at: &'a str,
    #[serde(flatten)]
    entry: &'a Entry,
}

fn row_hash(prev: &str, seq: i64, recorded_at: &str, entry: &Entry) -> String {
    let json = serde_json::to_string(&Hashed {
        seq,
        recorded_at,
        entry,
    })
    .expect("a ledger row serialises");
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(json.as_bytes());
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What [`Ledger::verify`] found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChainCheck {
    /// Rows read.
    pub rows: i64,
    /// The first row that breaks the chain, if any: its `seq` and why.
    pub broken: Option<(i64, String)>,
}

/// How fresh a tier's verification is ([`Ledger::freshness`]).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Freshness {
    /// When the tier's snapshots were last listed (RFC 3339).
    pub listed_at: Option<String>,
    /// Snapshots that listing found.
    pub snapshots: usize,
    /// The newest snapshot every database of which passed: id and time.
    pub newest_passed: Option<(String, String)>,
    /// Snapshots some database of which has no verdict.
    pub unverified: usize,
    /// The oldest of them: id and time.
    pub oldest_unverified: Option<(String, String)>,
}

/// One snapshot on the history page's ledger strip ([`Ledger::strip`]).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Mark {
    /// Full snapshot id.
    pub id: String,
    /// Snapshot time (RFC 3339).
    pub time: String,
    /// `passed`, `failed`, `error`, `inherited-passed`, `inherited-failed`
    /// or `unknown`.
    pub state: String,
}

/// An open ledger.
pub struct Ledger {
    conn: Connection,
    path: PathBuf,
}

impl Ledger {
    /// The ledger of `reports_dir` (created, with the directory, when it
    /// does not exist).
    ///
    /// # Errors
    /// [`LedgerError`] when it cannot be opened or created, or is not a
    /// drill ledger.
    pub fn open(reports_dir: &Path) -> Result<Self, LedgerError> {
        let path = reports_dir.join(FILE);
        let shown = path.display().to_string();
        let sqlite = |e: rusqlite::Error| LedgerError::Sqlite {
            path: shown.clone(),
            detail: e.to_string(),
        };
        let exists = path.exists();
        if !exists {
            std::fs::create_dir_all(reports_dir).map_err(|e| LedgerError::Sqlite {
                path: shown.clone(),
                detail: format!("create {}: {e}", reports_dir.display()),
            })?;
        }
        let flags = if exists {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let conn = Connection::open_with_flags(&path, flags).map_err(sqlite)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(sqlite)?;
        if exists {
            let version: Option<String> = conn
                .query_row("SELECT value FROM meta WHERE key = 'version'", [], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(|e| LedgerError::Foreign {
                    path: shown.clone(),
                    detail: e.to_string(),
                })?;
            match version.as_deref() {
                Some(VERSION) => {}
                other => {
                    return Err(LedgerError::Foreign {
                        path: shown,
                        detail: format!("meta.version is {other:?}"),
                    })
                }
            }
        } else {
            conn.execute_batch(&format!(
                "BEGIN; {SCHEMA} INSERT INTO meta VALUES ('format', 'drill-ledger'), ('version', '{VERSION}'); COMMIT;"
            ))
            .map_err(sqlite)?;
        }
        Ok(Ledger { conn, path })
    }

    /// The ledger's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sqlite(&self, e: rusqlite::Error) -> LedgerError {
        LedgerError::Sqlite {
            path: self.path.display().to_string(),
            detail: e.to_string(),
        }
    }

    /// Append `entry`, chained to the last row, recorded at `now`.
    ///
    /// # Errors
    /// [`LedgerError::Sqlite`].
    pub fn append(
        &mut self,
        entry: &Entry,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Row, LedgerError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| LedgerError::Sqlite {
                path: self.path.display().to_string(),
                detail: e.to_string(),
            })?;
        let last: Option<(i64, String)> = tx
            .query_row(
                "SELECT seq, row_hash FROM verification ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| LedgerError::Sqlite {
                path: self.path.display().to_string(),
                detail: e.to_string(),
            })?;
        let (seq, prev) = match last {
            Some((s, h)) => (s + 1, h),
            None => (1, GENESIS.to_string()),
        };
        let recorded_at = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let hash = row_hash(&prev, seq, &recorded_at, entry);
        let reasons = serde_json::to_string(&entry.reasons).expect("reasons serialise");
        tx.execute(
            "INSERT INTO verification (seq, recorded_at, run_id, command, tier, snapshot_id, snapshot_time, database, content_id, check_id, verdict, reasons, rto_seconds, bytes, report_file, inherited_from, prev_hash, row_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
            params![
                seq,
                recorded_at,
                entry.run_id,
                entry.command,
                entry.tier,
                entry.snapshot_id,
                entry.snapshot_time,
                entry.database,
                entry.content_id,
                entry.check_id,
                entry.verdict,
                reasons,
                entry.rto_seconds,
                i64::try_from(entry.bytes).unwrap_or(i64::MAX),
                entry.report_file,
                entry.inherited_from,
                prev,
                hash,
            ],
        )
        .map_err(|e| LedgerError::Sqlite {
            path: self.path.display().to_string(),
            detail: e.to_string(),
        })?;
        tx.commit().map_err(|e| LedgerError::Sqlite {
            path: self.path.display().to_string(),
            detail: e.to_string(),
        })?;
        Ok(Row {
            seq,
            recorded_at,
            entry: entry.clone(),
            prev_hash: prev,
            row_hash: hash,
        })
    }

    /// Rows matching `filter` (an SQL condition on the columns, with `?`
    /// parameters), in `seq` order.
    fn rows_where(
        &self,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Row>, LedgerError> {
        let sql = format!(
            "SELECT seq, recorded_at, run_id, command, tier, snapshot_id, snapshot_time, database, content_id, check_id, verdict, reasons, rto_seconds, bytes, report_file, inherited_from, prev_hash, row_hash FROM verification WHERE {filter} ORDER BY seq"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map(args, |r| {
                let reasons: String = r.get(11)?;
                let bytes: i64 = r.get(13)?;
                Ok(Row {
                    seq: r.get(0)?,
                    recorded_at: r.get(1)?,
                    entry: Entry {
                        run_id: r.get(2)?,
                        command: r.get(3)?,
                        tier: r.get(4)?,
                        snapshot_id: r.get(5)?,
                        snapshot_time: r.get(6)?,
                        database: r.get(7)?,
                        content_id: r.get(8)?,
                        check_id: r.get(9)?,
                        verdict: r.get(10)?,
                        reasons: serde_json::from_str(&reasons).unwrap_or_else(|_| vec![reasons]),
                        rto_seconds: r.get(12)?,
                        bytes: u64::try_from(bytes).unwrap_or(0),
                        report_file: r.get(14)?,
                        inherited_from: r.get(15)?,
                    },
                    prev_hash: r.get(16)?,
                    row_hash: r.get(17)?,
                })
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sqlite(e))
    }

    /// Every row, in order.
    ///
    /// # Errors
    /// [`LedgerError::Sqlite`].
    pub fn rows(&self) -> Result<Vec<Row>, LedgerError> {
        self.rows_where("1", &[])
    }

    /// Every row of `tier`, in order.
    ///
    /// # Errors
    /// [`LedgerError::Sqlite`].
    pub fn rows_of_tier(&self, tier: &str) -> Result<Vec<Row>, LedgerError> {
        self.rows_where("tier = ?1", &[&tier])
    }

    /// The latest verdict (`passed` or `failed`) of `database` on `tier`
    /// for `content_id` under `check_id`: the verification a snapshot of
    /// the same content can inherit. Rows with verdict `error` judge
    /// nothing and are skipped.
    ///
    /// # Errors
    /// [`LedgerError::Sqlite`].
    pub fn verdict_for(
        &self,
        tier: &str,
        database: &str,
        content_id: &str,
        check_id: &str,
    ) -> Result<Option<Row>, LedgerError> {
        Ok(self
            .rows_where(
                "tier = ?1 AND database = ?2 AND content_id = ?3 AND check_id = ?4 AND verdict IN ('passed', 'failed')",
                &[&tier, &database, &content_id, &check_id],
            )?
            .pop())
    }

    /// The latest verdict (`passed` or `failed`) recorded for `snapshot_id`
    /// and `database` on `tier` under `check_id`.
    ///
    /// # Errors
    /// [`LedgerError::Sqlite`].
    pub fn verdict_of_snapshot(
        &self,
        tier: &str,
        snapshot_id: &str,
        database: &str,
        check_id: &str,
    ) -> Result<Option<Row>, LedgerError> {
        Ok(self
            .rows_where(
                "tier = ?1 AND snapshot_id = ?2 AND database = ?3 AND check_id = ?4 AND verdict IN ('passed', 'failed')",
                &[&tier, &snapshot_id, &database, &check_id],
            )?
            .pop())
    }

    /// The content identity cached for restic content `restic_key` (see
    /// [`identity::restic_key`]) of `database` on `tier`.
    ///
    /// # Errors
    /// [`LedgerError::Sqlite`].
    pub fn cached_identity(
        &self,
        tier: &str,
        database: &str,
        restic_key: &str,
    ) -> Result<Option<String>, LedgerError> {
        self.conn
            .query_row(
                "SELECT content_id FROM content_cache WHERE tier = ?1 AND database = ?2 AND restic_key = ?3",
                params![tier, database, restic_key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sqlite(e))
    }

    /// Remember that restic content `restic_key` has identity `content_id`
    /// (a cache beside the chain: losing it costs a re-read, not a
    /// verdict).
    ///
    /// # Errors
    /// [`LedgerError::Sqlite`].
    pub fn cache_identity(
        &self,
        tier: &str,
        database: &str,
        restic_key: &str,
        content_id: &str,
    ) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO content_cache VALUES (?1, ?2, ?3, ?4)",
                params![tier, database, restic_key, content_id],
            )
            .map(|_| ())
            .map_err(|e| self.sqlite(e))
    }

    /// Remember the snapshots a listing of `tier` found at `now` (replacing
    /// the previous listing), for [`Ledger::freshness`]. `now` is when the
    /// listing was taken, which may be earlier than this call (`drill run`
    /// records the listing it picked its snapshot from at its end), so
    /// that `listed_at` never claims a later look at the repository than
    /// was had.
    ///
    /// # Errors
    /// [`LedgerError::Sqlite`].
    pub fn record_listing(
        &mut self,
        tier: &str,
        snapshots: &[crate::tier::Snapshot],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), LedgerError> {
        let path = self.path.display().to_string();
        let err = |e: rusqlite::Error| LedgerError::Sqlite {
            path: path.clone(),
            detail: e.to_string(),
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute("DELETE FROM seen WHERE tier = ?1", params![tier])
            .map_err(err)?;
        for s in snapshots {
            tx.execute(
                "INSERT OR REPLACE INTO seen VALUES (?1, ?2, ?3, ?4)",
                params![tier, s.id, s.time.to_rfc3339(), now.to_rfc3339()],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// How fresh `tier`'s verification is, over the snapshots its last
    /// listing found and the `databases` configured, given as (name, check
    /// identity of all its current checks): a snapshot is verified when
    /// each database has a `failed` verdict or a `passed` one under those
    /// checks (a pass under other checks, narrowed ones, or none, as a
    /// `diff` restore's, is stale), and passed when each has `passed` as
    /// its latest such verdict.
    ///
    /// # Errors
    /// [`LedgerError::Sqlite`].
    pub fn freshness(
        &self,
        tier: &str,
        databases: &[(String, String)],
    ) -> Result<Freshness, LedgerError> {
        let mut stmt = self
            .conn
            .prepare("SELECT snapshot_id, snapshot_time, listed_at FROM seen WHERE tier = ?1 ORDER BY snapshot_time")
            .map_err(|e| self.sqlite(e))?;
        let seen: Vec<(String, String, String)> = stmt
            .query_map(params![tier], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.sqlite(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.sqlite(e))?;
        let rows = self.rows_of_tier(tier)?;
        let mut f = Freshness {
            listed_at: seen.first().map(|s| s.2.clone()),
            snapshots: seen.len(),
            ..Default::default()
        };
        for (id, time, _) in &seen {
            let latest: Vec<Option<&Row>> = databases
                .iter()
                .map(|(d, check_id)| {
                    rows.iter().rfind(|r| {
                        &r.entry.snapshot_id == id
                            && &r.entry.database == d
                            && (r.entry.verdict == "failed"
                                || (r.entry.verdict == "passed" && &r.entry.check_id == check_id))
                    })
                })
                .collect();
            if latest.iter().any(Option::is_none) {
                f.unverified += 1;
                if f.oldest_unverified.is_none() {
                    f.oldest_unverified = Some((id.clone(), time.clone()));
                }
            } else if latest
                .iter()
                .all(|r| r.is_some_and(|r| r.entry.verdict == "passed"))
            {
                f.newest_passed = Some((id.clone(), time.clone()));
            }
        }
        Ok(f)
    }

    /// One mark per snapshot of `tier`'s last listing (oldest first) for
    /// `database`: its id, time and state — the latest verdict recorded
    /// for it (`passed`, `failed`, `error`), `inherited-passed` /
    /// `inherited-failed` when that verdict was carried over, `unknown`
    /// without one.
    ///
    /// # Errors
    /// [`LedgerError::Sqlite`].
    pub fn strip(&self, tier: &str, database: &str) -> Result<Vec<Mark>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare("SELECT snapshot_id, snapshot_time FROM seen WHERE tier = ?1 ORDER BY snapshot_time")
            .map_err(|e| self.sqlite(e))?;
        let seen: Vec<(String, String)> = stmt
            .query_map(params![tier], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.sqlite(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.sqlite(e))?;
        let rows = self.rows_where("tier = ?1 AND database = ?2", &[&tier, &database])?;
        Ok(seen
            .into_iter()
            .map(|(id, time)| {
                let state = match rows.iter().rfind(|r| r.entry.snapshot_id == id) {
                    None => "unknown".to_string(),
                    Some(r) if r.entry.inherited_from.is_some() => {
                        format!("inherited-{}", r.entry.verdict)
                    }
                    Some(r) => r.entry.verdict.clone(),
                };
                Mark { id, time, state }
            })
            .collect())
    }

    /// Prove the chain: every row's `prev_hash` is the row before's
    /// `row_hash`, every `row_hash` is the hash of its fields, and `seq`
    /// runs from 1 without a gap. Names the first row that breaks it.
    ///
    /// # Errors
    /// [`LedgerError::Sqlite`] when the rows cannot be read.
    pub fn verify(&self) -> Result<ChainCheck, LedgerError> {
        let rows = self.rows()?;
        let mut prev = GENESIS.to_string();
        for (i, row) in rows.iter().enumerate() {
            let expected_seq = i as i64 + 1;
            let broken = if row.seq != expected_seq {
                Some(format!(
                    "row {expected_seq} is missing (the next row is {})",
                    row.seq
                ))
            } else if row.prev_hash != prev {
                Some("its prev_hash is not the row before's hash: a row before it was removed or replaced".to_string())
            } else if row_hash(&prev, row.seq, &row.recorded_at, &row.entry) != row.row_hash {
                Some("its fields do not hash to its row_hash: it was edited".to_string())
            } else {
                None
            };
            if let Some(why) = broken {
                return Ok(ChainCheck {
                    rows: rows.len() as i64,
                    broken: Some((row.seq, why)),
                });
            }
            prev = row.row_hash.clone();
        }
        Ok(ChainCheck {
            rows: rows.len() as i64,
            broken: None,
        })
    }
}

/// Every configured database with the [`check_identity`] of its current
/// checks: `(name, identity)`, in config order.
pub fn current_checks(config: &crate::config::Config) -> Vec<(String, String)> {
    config
        .databases
        .iter()
        .map(|d| (d.name.clone(), check_identity(config, &d.name)))
        .collect()
}

/// The check identity of `database`: SHA-256 over drill's version and,
/// in name order, the name and bytes of every check file that applies to
/// it. A changed, added or removed check, or another drill version, makes
/// earlier verdicts stale.
pub fn check_identity(config: &crate::config::Config, database: &str) -> String {
    check_identity_of(config, database, None)
}

/// [`check_identity`] of the checks named in `ran` only (the checks a
/// drill narrowed with `--check`, or a bisect probe, actually ran); `None`:
/// all that apply.
pub fn check_identity_of(
    config: &crate::config::Config,
    database: &str,
    ran: Option<&[String]>,
) -> String {
    let mut h = Sha256::new();
    h.update(format!("drill {}\n", env!("CARGO_PKG_VERSION")).as_bytes());
    let mut checks: Vec<&crate::config::CheckDefinition> = config
        .checks
        .iter()
        .filter(|c| c.applies_to(database) && ran.is_none_or(|r| r.contains(&c.name)))
        .collect();
    checks.sort_by(|a, b| a.name.cmp(&b.name));
    for c in checks {
        h.update(c.name.as_bytes());
        h.update(b"\n");
        let bytes = std::fs::read(&c.file).unwrap_or_default();
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    format!("sha256:{}", hex(&h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(snapshot: &str, verdict: &str) -> Entry {
        Entry {
            run_id: "r1".into(),
            command: "run".into(),
            tier: "local".into(),
            snapshot_id: snapshot.into(),
            snapshot_time: "2026-11-01T03:00:00+09:00".into(),
            database: "frame".into(),
            content_id: Some("sha256:aa".into()),
            check_id: "sha256:cc".into(),
            verdict: verdict.into(),
            reasons: vec![],
            rto_seconds: Some(12.5),
            bytes: 1024,
            report_file: None,
            inherited_from: None,
        }
    }

    #[test]
    fn chain_catches_an_edit_and_refuses_updates() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(dir.path()).unwrap();
        let now = chrono::Utc::now();
        l.append(&entry("s1", "passed"), now).unwrap();
        l.append(&entry("s2", "failed"), now).unwrap();
        l.append(&entry("s3", "passed"), now).unwrap();
        assert_eq!(l.verify().unwrap().broken, None);
        assert_eq!(
            l.verdict_for("local", "frame", "sha256:aa", "sha256:cc")
                .unwrap()
                .unwrap()
                .entry
                .snapshot_id,
            "s3"
        );
        assert!(l
            .conn
            .execute(
                "UPDATE verification SET verdict = 'passed' WHERE seq = 2",
                []
            )
            .is_err());
        // Someone drops the trigger and edits row 2.
        l.conn
            .execute_batch("DROP TRIGGER verification_no_update; UPDATE verification SET verdict = 'passed' WHERE seq = 2;")
            .unwrap();
        let check = l.verify().unwrap();
        assert_eq!(check.broken.as_ref().map(|b| b.0), Some(2), "{check:?}");
        drop(l);
        // Reopened, not recreated.
        let l = Ledger::open(dir.path()).unwrap();
        assert_eq!(l.rows().unwrap().len(), 3);
    }

    #[test]
    fn a_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"not a database at all, just text").unwrap();
        let e = Ledger::open(dir.path()).err().unwrap();
        assert!(e.to_string().contains("move it aside"), "{e}");
        assert_eq!(
            std::fs::read(dir.path().join(FILE)).unwrap(),
            b"not a database at all, just text"
        );
    }
}
