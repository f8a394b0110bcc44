//! `kind = "blob-roundtrip"` on MariaDB/MySQL: a table with a BLOB column
//! and a stored digest column (hex SHA-256 text).
//!
//! Three independent proofs, every row:
//! 1. in the sandbox, `SHA2(data, 256)` equals the stored digest;
//! 2. the bytes exported out of the sandbox (read over the client
//!    protocol) hash on drill's side to the stored digest;
//! 3. the same bytes, imported back into a scratch table (a temporary
//!    table, as a bound parameter), hash in the sandbox to the stored
//!    digest.
//!
//! Rows are read in batches in `id_column` order, so memory stays at one
//! batch (its values held whole). The rows and bytes verified must equal
//! the table's `COUNT(*)` and `SUM(LENGTH(data))`, so no row is skipped
//! unseen; a row without data or without a digest is a finding.

use crate::config::CheckDefinition;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::Value;
use sha2::{Digest, Sha256};

use super::blob::Target;
use super::{CheckContext, CheckError, Conclusion, Finding};
use crate::kind::mariadb::{connect, message};

/// Database kinds this implementation serves.
pub(super) const KINDS: &[&str] = &["mariadb", "mysql"];

/// A row as read: key, bytes, stored digest, digest in the sandbox.
type BlobRow = (Value, Option<Vec<u8>>, Option<Vec<u8>>, Option<String>);

/// Rows read per batch (each value is held whole while its batch is
/// verified).
const BATCH: usize = 50;
/// Mismatching rows listed in the report; the rest are counted.
const MAX_ROWS_REPORTED: usize = 10;

pub(super) async fn run(
    ctx: &CheckContext<'_>,
    t: &Target<'_>,
    timeout: Duration,
) -> Result<Conclusion, CheckError> {
    let ep = ctx.sandbox.endpoint();
    let mut conn = connect(&ep, Some(ctx.dbname))
        .await
        .map_err(|detail| CheckError::Connect {
            dbname: ctx.dbname.into(),
            detail,
        })?;
    let id = conn.id();
    let result = tokio::time::timeout(timeout, verify(&mut conn, ctx, t)).await;
    match result {
        Ok(r) => {
            let _ = conn.disconnect().await;
            r
        }
        Err(_) => {
            if let Ok(mut killer) = connect(&ep, None).await {
                let _ = killer.query_drop(format!("KILL {id}")).await;
                let _ = killer.disconnect().await;
            }
            Err(CheckError::Timeout(timeout))
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::NULL => "NULL".into(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        other => other.as_sql(true),
    }
}

async fn verify(
    conn: &mut mysql_async::Conn,
    ctx: &CheckContext<'_>,
    t: &Target<'_>,
) -> Result<Conclusion, CheckError> {
    let kind = ctx.sandbox.kind;
    let table = kind.quote_table(t.table);
    let id_col = kind.quote_ident(t.id_column);
    let data = kind.quote_ident(t.data_column);
    let digest = kind.quote_ident(t.digest_column);
    let q = |e: mysql_async::Error| CheckError::Query(format!("{}: {}", t.table, message(&e)));
    conn.query_drop(
        "CREATE TEMPORARY TABLE drill_blob_scratch (id INT PRIMARY KEY, data LONGBLOB)",
    )
    .await
    .map_err(q)?;
    let totals: Option<(i64, Option<String>)> = conn
        .query_first(format!(
            "SELECT COUNT(*), CAST(SUM(LENGTH({data})) AS CHAR) FROM {table}"
        ))
        .await
        .map_err(q)?;
    let (want_rows, want_bytes) = totals.unwrap_or_default();
    let want_bytes: u64 = want_bytes.and_then(|b| b.parse().ok()).unwrap_or(0);
    let mut last: Option<Value> = None;
    let mut rows = 0u64;
    let mut bytes = 0u64;
    let mut bad = 0u64;
    let mut findings = Vec::new();
    loop {
        let sql = format!(
            "SELECT {id_col}, {data}, {digest}, SHA2({data}, 256) FROM {table}{} ORDER BY {id_col} LIMIT {BATCH}",
            if last.is_some() { format!(" WHERE {id_col} > ?") } else { String::new() }
        );
        let params: Vec<Value> = last.iter().cloned().collect();
        let batch: Vec<BlobRow> = conn.exec(sql, params).await.map_err(q)?;
        if batch.is_empty() {
            break;
        }
        conn.query_drop("DELETE FROM drill_blob_scratch")
            .await
            .map_err(q)?;
        let mut expected = Vec::new();
        for (n, (row_id, value, stored, in_sandbox)) in batch.iter().enumerate() {
            rows += 1;
            // A digest stored as text (hex) or as the 32 bytes themselves.
            let stored = stored.as_deref().map(|b| match std::str::from_utf8(b) {
                Ok(t) => t.trim().to_ascii_lowercase(),
                Err(_) => hex(b),
            });
            let exported = value.as_deref().map(|b| hex(&Sha256::digest(b)));
            bytes += value.as_ref().map_or(0, |b| b.len() as u64);
            let mut wrong = Vec::new();
            if value.is_none() || stored.is_none() {
                wrong.push("no data or no digest to compare".to_string());
            }
            if in_sandbox.as_deref().map(str::to_ascii_lowercase) != stored {
                wrong.push(format!(
                    "in the sandbox {}",
                    in_sandbox.as_deref().unwrap_or("NULL")
                ));
            }
            if exported != stored {
                wrong.push(format!(
                    "exported {}",
                    exported.as_deref().unwrap_or("NULL")
                ));
            }
            conn.exec_drop(
                "INSERT INTO drill_blob_scratch (id, data) VALUES (?, ?)",
                (n as i64, value.clone()),
            )
            .await
            .map_err(q)?;
            expected.push((row_id.clone(), stored, wrong));
        }
        let reimported: Vec<(i64, Option<String>)> = conn
            .query("SELECT id, SHA2(data, 256) FROM drill_blob_scratch ORDER BY id")
            .await
            .map_err(q)?;
        if reimported.len() != expected.len() {
            return Err(CheckError::Shape(format!(
                "{} rows re-imported into the scratch table, {} exported",
                reimported.len(),
                expected.len()
            )));
        }
        for ((row_id, stored, mut wrong), (_, back)) in expected.into_iter().zip(reimported) {
            if back.as_deref().map(str::to_ascii_lowercase) != stored {
                wrong.push(format!("re-imported {}", back.as_deref().unwrap_or("NULL")));
            }
            if !wrong.is_empty() {
                bad += 1;
                if findings.len() < MAX_ROWS_REPORTED {
                    let row = format!("{}={}", t.id_column, text(&row_id));
                    findings.push(
                        Finding::new(format!(
                            "{row}: stored digest {}, SHA-256 {}",
                            stored.as_deref().unwrap_or("NULL"),
                            wrong.join(", ")
                        ))
                        .in_table(t.table)
                        .at_row(row),
                    );
                }
            }
        }
        last = batch.last().map(|r| r.0.clone());
        if batch.len() < BATCH {
            break;
        }
    }
    let _ = conn
        .query_drop("DROP TEMPORARY TABLE drill_blob_scratch")
        .await;
    if rows == 0 {
        return Err(CheckError::Shape(format!(
            "{} has no rows to verify",
            t.table
        )));
    }
    if rows != want_rows as u64 || bytes != want_bytes {
        bad += 1;
        findings.push(
            Finding::new(format!(
                "{} holds {want_rows} rows and {want_bytes} bytes in {}, but {rows} rows and {bytes} bytes were verified (rows with the same or NULL {} are read once)",
                t.table, t.data_column, t.id_column
            ))
            .in_table(t.table),
        );
    }
    let detail = if bad == 0 {
        format!("{rows} rows, {bytes} bytes: stored digest = in-sandbox = exported = re-imported SHA-256")
    } else {
        format!("{bad} of {rows} rows do not match their stored digest")
    };
    Ok(Conclusion {
        detail,
        findings,
        rows_verified: Some(rows),
        bytes_verified: Some(bytes),
        ..Default::default()
    })
}

/// The `blob-roundtrip` check on MariaDB and MySQL (BLOB).
pub(super) struct BlobCheck;

impl super::Check for BlobCheck {
    fn kind(&self) -> &'static str {
        "blob-roundtrip"
    }

    fn supports(&self, db_kind: &str) -> bool {
        KINDS.contains(&db_kind)
    }

    fn run<'a>(
        &'a self,
        def: &'a CheckDefinition,
        ctx: &'a CheckContext<'a>,
    ) -> futures_util::future::BoxFuture<'a, Result<Conclusion, super::Incomplete>> {
        Box::pin(async move {
            let target = Target::of(def)?;
            run(ctx, &target, def.timeout)
                .await
                .map_err(super::Incomplete::from)
        })
    }
}
