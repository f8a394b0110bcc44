//! `kind = "check-table"`: `CHECK TABLE … EXTENDED` on every base table of
//! the restored database (MariaDB/MySQL), the counterpart of `amcheck`
//! (MariaDB docs, "CHECK TABLE"). Each table's result rows (`Table`, `Op`,
//! `Msg_type`, `Msg_text`) end with a `status` row; a status other than
//! `OK`, or any `error` row, is a finding. A statement that fails (the
//! server refuses to read a corrupted table) is a finding too: the server
//! has read the table and found it unusable. A check that cannot list the
//! tables could not run.

use crate::config::{CheckDefinition, CheckSpec};
use std::time::Duration;

use super::{CheckContext, CheckError, Conclusion, Finding};
use crate::kind::QueryError;

/// Findings listed; the rest are counted.
const MAX_FINDINGS: usize = 20;

pub(super) async fn run(
    ctx: &CheckContext<'_>,
    extended: bool,
    timeout: Duration,
) -> Result<Conclusion, CheckError> {
    let session = super::session(ctx).await?;
    let kind = ctx.sandbox.kind;
    let deadline = tokio::time::Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
    let tables = session
        .query(
            "SHOW FULL TABLES WHERE Table_type IN ('BASE TABLE', 'SYSTEM VERSIONED')",
            left(),
        )
        .await
        .map_err(super::query_error)?;
    let names: Vec<String> = tables
        .rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect();
    if names.is_empty() {
        return Err(CheckError::Shape(format!(
            "database `{}` has no tables to check",
            ctx.dbname
        )));
    }
    let mode = if extended { " EXTENDED" } else { "" };
    let mut findings = Vec::new();
    let mut notes = Vec::new();
    let mut problems = 0usize;
    for name in &names {
        let sql = format!("CHECK TABLE {}{mode}", kind.quote_ident(name));
        let result = match session.query(&sql, left()).await {
            Ok(r) => r,
            Err(QueryError::Timeout(_)) => return Err(CheckError::Timeout(timeout)),
            // The server refused to read the table: a finding. Anything else
            // (connection lost, the server gone) means the check could not
            // run.
            Err(QueryError::Failed(m)) if m.starts_with("ERROR ") => {
                problems += 1;
                if findings.len() < MAX_FINDINGS {
                    findings.push(
                        Finding::new(format!("{name}: CHECK TABLE failed: {m}")).in_table(name),
                    );
                }
                continue;
            }
            Err(QueryError::Failed(m)) => {
                return Err(CheckError::Query(format!("CHECK TABLE {name}: {m}")))
            }
        };
        let col = |n: &str| {
            result
                .columns
                .iter()
                .position(|c| c.eq_ignore_ascii_case(n))
        };
        let (Some(ty), Some(text)) = (col("Msg_type"), col("Msg_text")) else {
            return Err(CheckError::Shape(format!(
                "CHECK TABLE {name} returned columns {:?}, not Msg_type and Msg_text",
                result.columns
            )));
        };
        let mut status_ok = false;
        let mut unsupported = false;
        let mut messages = Vec::new();
        for row in &result.rows {
            let t = row.get(ty).cloned().flatten().unwrap_or_default();
            let m = row.get(text).cloned().flatten().unwrap_or_default();
            if t.eq_ignore_ascii_case("note") && m.contains("doesn't support check") {
                // MEMORY, BLACKHOLE, FEDERATED tables: nothing to check.
                unsupported = true;
            } else if t.eq_ignore_ascii_case("status") {
                status_ok = m.eq_ignore_ascii_case("OK")
                    || m.eq_ignore_ascii_case("Table is already up to date");
                if !status_ok {
                    messages.push(format!("status {m}"));
                }
            } else if t.eq_ignore_ascii_case("error") || t.eq_ignore_ascii_case("warning") {
                messages.push(format!("{t}: {m}"));
            }
        }
        if unsupported && messages.is_empty() {
            notes.push(format!(
                "{name}: its storage engine does not support CHECK TABLE; not checked"
            ));
            continue;
        }
        if !status_ok || messages.iter().any(|m| m.starts_with("error")) {
            problems += 1;
            if findings.len() < MAX_FINDINGS {
                findings
                    .push(Finding::new(format!("{name}: {}", messages.join("; "))).in_table(name));
            }
        }
    }
    let detail = if problems == 0 {
        format!(
            "{} tables checked{mode}, all OK",
            names.len(),
            mode = if extended { " (EXTENDED)" } else { "" }
        )
    } else {
        format!("{problems} of {} tables are not OK", names.len())
    };
    Ok(Conclusion {
        detail,
        findings,
        notes,
        ..Default::default()
    })
}

/// The `check-table` check (MariaDB, MySQL).
pub(super) struct CheckTableCheck;

impl super::Check for CheckTableCheck {
    fn kind(&self) -> &'static str {
        "check-table"
    }

    fn supports(&self, db_kind: &str) -> bool {
        matches!(db_kind, "mariadb" | "mysql")
    }

    fn run<'a>(
        &'a self,
        def: &'a CheckDefinition,
        ctx: &'a CheckContext<'a>,
    ) -> futures_util::future::BoxFuture<'a, Result<Conclusion, super::Incomplete>> {
        Box::pin(async move {
            let CheckSpec::CheckTable { extended } = &def.spec else {
                return Err(super::Incomplete::from(CheckError::Shape(format!(
                    "check `{}` is not of kind check-table",
                    def.name
                ))));
            };
            run(ctx, *extended, def.timeout)
                .await
                .map_err(super::Incomplete::from)
        })
    }
}
