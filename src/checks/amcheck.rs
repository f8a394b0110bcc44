//! `kind = "amcheck"`: `pg_amcheck` (PostgreSQL ≥ 14, docs: "pg_amcheck")
//! run inside the sandbox against the restored database: heap tables and
//! B-tree indexes, with `--heapallindexed` and `--parent-check` by default.
//! `--install-missing` creates the `amcheck` extension in the throwaway
//! database first; drill drops it again afterwards when it was not there
//! before, so the database is left as restored (`drill diff` compares
//! schemas).
//!
//! pg_amcheck prints one block per corrupt relation, a header line
//! (`btree index "db.schema.name":`, `heap table "db.schema.name", block 0,
//! offset 1:`) followed by indented details, and exits 2; each block is a
//! finding. Any other non-zero exit without such blocks (cannot connect,
//! tool missing) means the check could not run. The run is bounded inside
//! the sandbox by coreutils' (or busybox's) `timeout`.

use crate::config::{CheckDefinition, CheckSpec};
use std::time::Duration;

use super::{CheckContext, CheckError, Conclusion, Finding, Incomplete};
use crate::sandbox::OutputLog;

/// Findings listed; the rest are counted.
const MAX_FINDINGS: usize = 20;

pub(super) async fn run(
    ctx: &CheckContext<'_>,
    heapallindexed: bool,
    parent_check: bool,
    timeout: Duration,
) -> Result<Conclusion, Incomplete> {
    let secs = timeout.as_secs().max(1).to_string();
    let conninfo = format!(
        "dbname='{}'",
        ctx.dbname.replace('\\', "\\\\").replace('\'', "\\'")
    );
    let mut cmd: Vec<&str> = vec![
        "timeout",
        "-k",
        "5",
        &secs,
        "pg_amcheck",
        "--no-password",
        "--username",
        &ctx.sandbox.user,
        "--install-missing",
    ];
    let mut options = Vec::new();
    if heapallindexed {
        cmd.push("--heapallindexed");
        options.push("heapallindexed");
    }
    if parent_check {
        cmd.push("--parent-check");
        options.push("parent-check");
    }
    cmd.push(&conninfo);
    let client = super::connect(ctx).await.map_err(Incomplete::from)?;
    let had_amcheck: bool = client
        .query_one(
            "select exists (select 1 from pg_extension where extname = 'amcheck')",
            &[],
        )
        .await
        .map_err(|e| Incomplete::from(CheckError::Query(crate::sandbox::pg_message(&e))))?
        .get(0);
    let outcome = ctx
        .sandbox
        .exec_with_input(&cmd, None::<tokio::io::Empty>)
        .await
        .map_err(|e| Incomplete::from(CheckError::Sandbox(e.to_string())));
    if !had_amcheck {
        // Best effort: the sandbox is thrown away anyway.
        let _ = client
            .batch_execute("drop extension if exists amcheck")
            .await;
    }
    let outcome = outcome?;
    let (findings, total) = parse(&outcome.output);
    let output = outcome.output.bounded(20, 20);
    match outcome.exit_code {
        _ if !findings.is_empty() => Ok(Conclusion {
            detail: if total > findings.len() {
                format!(
                    "pg_amcheck found corruption in {total} places (first {} listed)",
                    findings.len()
                )
            } else {
                format!("pg_amcheck found corruption in {total} places")
            },
            findings,
            output,
            ..Default::default()
        }),
        Some(0) => Ok(Conclusion {
            detail: format!(
                "pg_amcheck found no heap or B-tree corruption in `{}` ({})",
                ctx.dbname,
                if options.is_empty() {
                    "basic checks".to_string()
                } else {
                    options.join(", ")
                }
            ),
            output,
            ..Default::default()
        }),
        Some(124) | Some(143) => Err(Incomplete {
            error: CheckError::Timeout(timeout),
            output,
        }),
        Some(code) => Err(Incomplete {
            error: CheckError::Program(format!(
                "pg_amcheck exited with code {code} without reporting corruption: {}",
                outcome.output.summary(3)
            )),
            output,
        }),
        None => Err(Incomplete {
            error: CheckError::Program("pg_amcheck's exit status is unknown".into()),
            output,
        }),
    }
}

/// The corruption blocks of pg_amcheck's output, each as one finding (first
/// [`MAX_FINDINGS`]), and how many there were (of the lines kept).
fn parse(log: &OutputLog) -> (Vec<Finding>, usize) {
    let mut blocks: Vec<String> = Vec::new();
    let mut in_block = false;
    for line in &log.head {
        let indented = line.starts_with(' ') || line.starts_with('\t');
        if indented {
            if in_block {
                let b = blocks.last_mut().expect("in a block");
                b.push(' ');
                b.push_str(line.trim());
            }
            continue;
        }
        let is_header = line.ends_with(':')
            && [
                "heap table ",
                "btree index ",
                "toast table ",
                "index ",
                "table ",
                "relation ",
            ]
            .iter()
            .any(|p| line.starts_with(p));
        in_block = is_header;
        if is_header {
            blocks.push(line.clone());
        }
    }
    let total = blocks.len();
    blocks.truncate(MAX_FINDINGS);
    (blocks.into_iter().map(Finding::new).collect(), total)
}

/// The `amcheck` check (PostgreSQL).
pub(super) struct AmcheckCheck;

impl super::Check for AmcheckCheck {
    fn kind(&self) -> &'static str {
        "amcheck"
    }

    fn supports(&self, db_kind: &str) -> bool {
        db_kind == "postgresql"
    }

    fn run<'a>(
        &'a self,
        def: &'a CheckDefinition,
        ctx: &'a CheckContext<'a>,
    ) -> futures_util::future::BoxFuture<'a, Result<Conclusion, super::Incomplete>> {
        Box::pin(async move {
            let CheckSpec::Amcheck {
                heapallindexed,
                parent_check,
            } = &def.spec
            else {
                return Err(super::Incomplete::from(CheckError::Shape(format!(
                    "check `{}` is not of kind amcheck",
                    def.name
                ))));
            };
            run(ctx, *heapallindexed, *parent_check, def.timeout).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corruption_blocks_are_findings() {
        let mut log = OutputLog::default();
        log.push(
            b"NOTICE:  extension \"amcheck\" already exists, skipping\n\
btree index \"t.public.a_v\":\n    ERROR:  line pointer points past end of tuple space in index \"a_v\"\n    DETAIL:  Index tid=(2,45) lp_off=30812, lp_len=13107 lp_flags=0.\n\
heap table \"t.public.h\", block 0, offset 3:\n    xmin 1234 precedes relation freeze threshold 0:5\n\
pg_amcheck: error: something else\n",
        );
        log.finish();
        let (f, n) = parse(&log);
        assert_eq!(n, 2);
        assert!(
            f[0].what
                .starts_with("btree index \"t.public.a_v\": ERROR:  line pointer"),
            "{}",
            f[0].what
        );
        assert!(f[0].what.contains("DETAIL"));
        assert!(f[1].what.contains("freeze threshold"));
    }
}
