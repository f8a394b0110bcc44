//! Integrity checks on a restored database. One file per kind.
//!
//! A check *finding* a problem returns it as data ([`Finding`]); `Err` means
//! the check could not run (bad query, connection lost, timeout). Both reach
//! the report; neither is a pass.

mod sql;

use std::time::{Duration, Instant};

use crate::config::{CheckDefinition, CheckSpec};
use crate::report::{CheckReport, Status};
use crate::sandbox::Sandbox;

/// One problem a check found, e.g. a violating row.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding(pub String);

/// Why a check could not run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Connecting to the sandbox failed.
    #[error("connect to database `{dbname}` in the sandbox: {detail}")]
    Connect {
        /// Database.
        dbname: String,
        /// Driver error.
        detail: String,
    },
    /// The query failed.
    #[error("query failed: {0}")]
    Query(String),
    /// The result cannot be judged against `expect`.
    #[error("{0}")]
    Shape(String),
    /// The check did not finish in time.
    #[error("did not finish within {} (the check's timeout)", humantime::format_duration(*.0))]
    Timeout(Duration),
}

/// What a check concluded: a summary and its findings (none = passed).
#[derive(Debug, Clone)]
pub struct Conclusion {
    /// One line for the report.
    pub detail: String,
    /// Problems found.
    pub findings: Vec<Finding>,
}

/// Run `def` against `dbname` in `sandbox`, bounded by the check's timeout,
/// and turn the result into a report entry.
pub async fn run(def: &CheckDefinition, sandbox: &Sandbox, dbname: &str) -> CheckReport {
    let started = Instant::now();
    let result = match &def.spec {
        CheckSpec::Sql { query, expect } => {
            sql::run(sandbox, dbname, query, expect, def.timeout).await
        }
    };
    let (status, detail, findings) = match result {
        Ok(c) if c.findings.is_empty() => (Status::Passed, c.detail, vec![]),
        Ok(c) => (
            Status::Failed,
            c.detail,
            c.findings.into_iter().map(|f| f.0).collect(),
        ),
        Err(e) => (Status::Error, format!("could not run: {e}"), vec![]),
    };
    CheckReport {
        name: def.name.clone(),
        kind: def.spec.kind().into(),
        status,
        seconds: started.elapsed().as_secs_f64(),
        detail: sandbox.password.redact(&detail),
        findings: findings
            .iter()
            .map(|f| sandbox.password.redact(f))
            .collect(),
    }
}

/// A report entry for a check that was not attempted.
pub fn not_run(def: &CheckDefinition, why: &str) -> CheckReport {
    CheckReport {
        name: def.name.clone(),
        kind: def.spec.kind().into(),
        status: Status::NotRun,
        seconds: 0.0,
        detail: why.into(),
        findings: vec![],
    }
}
