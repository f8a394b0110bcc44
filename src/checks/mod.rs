//! Integrity checks on a restored database. One file per kind:
//! [`sql`](self) queries, row counts against the tier's history, bytea blob
//! round-trips, external commands and `pg_amcheck`.
//!
//! A check *finding* a problem returns it as data ([`Finding`]); `Err` means
//! the check could not run (bad query, connection lost, timeout, no
//! program). Both reach the report; neither is a pass.

mod amcheck;
mod blob;
mod blob_mysql;
mod check_table;
mod command;
mod row_counts;
mod sql;

use std::time::{Duration, Instant};

use crate::config::CheckDefinition;
use crate::report::history::Baselines;
use crate::report::{CheckReport, CountReport, Status};
use crate::restore::quote_ident;
use crate::sandbox::Sandbox;

pub use crate::report::Finding;

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
    /// A query failed.
    #[error("query failed: {0}")]
    Query(String),
    /// The result cannot be judged.
    #[error("{0}")]
    Shape(String),
    /// The check did not finish in time.
    #[error("did not finish within {} (the check's timeout)", crate::duration::human(*.0))]
    Timeout(Duration),
    /// The tier's history, needed for a baseline, cannot be read.
    #[error("{0}")]
    History(String),
    /// The program could not be started or did not finish normally.
    #[error("{0}")]
    Program(String),
    /// The sandbox could not run the tool.
    #[error("{0}")]
    Sandbox(String),
}

/// What a check concluded: a summary, its findings (none = passed) and what
/// it measured.
#[derive(Debug, Clone, Default)]
pub struct Conclusion {
    /// One line for the report.
    pub detail: String,
    /// Problems found.
    pub findings: Vec<Finding>,
    /// What could not be judged (never a reason to pass).
    pub notes: Vec<String>,
    /// `row-counts`: each item.
    pub counts: Vec<CountReport>,
    /// `blob-roundtrip`: rows verified.
    pub rows_verified: Option<u64>,
    /// `blob-roundtrip`: bytes verified.
    pub bytes_verified: Option<u64>,
    /// `command`, `amcheck`: bounded output.
    pub output: Vec<String>,
}

/// A check that could not run, with whatever output it produced.
#[derive(Debug)]
pub struct Incomplete {
    /// Why.
    pub error: CheckError,
    /// Output so far (bounded).
    pub output: Vec<String>,
}

impl From<CheckError> for Incomplete {
    fn from(error: CheckError) -> Self {
        Incomplete {
            error,
            output: vec![],
        }
    }
}

/// Where a check runs.
pub struct CheckContext<'a> {
    /// The sandbox holding the restored database.
    pub sandbox: &'a Sandbox,
    /// The `[[databases]]` entry.
    pub database: &'a str,
    /// The PostgreSQL database to connect to.
    pub dbname: &'a str,
    /// Tier name (for baselines and messages).
    pub tier: &'a str,
    /// Row counts of the tier's last passed drills, or why they cannot be
    /// read.
    pub baselines: &'a Result<Baselines, String>,
}

/// A check kind: its name in check files, the database kinds it runs in,
/// and how it runs. One module per kind; a kind with an implementation per
/// database kind (`blob-roundtrip`) has one module each.
pub trait Check: Send + Sync {
    /// Its name in check files and reports (`sql`, `check-table`, …).
    fn kind(&self) -> &'static str;

    /// Whether it runs in a database of kind `db_kind` (`postgresql`,
    /// `mariadb`, `mysql`).
    fn supports(&self, db_kind: &str) -> bool;

    /// Run `def` (a definition of this kind) in `ctx`. The check cancels
    /// its own work at `def.timeout`.
    ///
    /// # Errors
    /// [`Incomplete`]: the check could not run.
    fn run<'a>(
        &'a self,
        def: &'a CheckDefinition,
        ctx: &'a CheckContext<'a>,
    ) -> futures_util::future::BoxFuture<'a, Result<Conclusion, Incomplete>>;
}

/// Every check implementation. Adding a kind is a module and a line here
/// (and its keys in the check-file parser).
pub static CHECKS: &[&dyn Check] = &[
    &sql::SqlCheck,
    &row_counts::RowCountsCheck,
    &blob::BlobCheck,
    &blob_mysql::BlobCheck,
    &command::CommandCheck,
    &amcheck::AmcheckCheck,
    &check_table::CheckTableCheck,
];

/// The implementation of check kind `kind` for databases of `db_kind`.
pub fn implementation(kind: &str, db_kind: &str) -> Option<&'static dyn Check> {
    CHECKS
        .iter()
        .copied()
        .find(|c| c.kind() == kind && c.supports(db_kind))
}

/// Whether a check of kind `kind` can run in a database of `db_kind`.
pub fn supports(kind: &str, db_kind: &str) -> bool {
    implementation(kind, db_kind).is_some()
}

/// The database kinds a check kind runs in, for messages.
pub fn supported_kinds(kind: &str) -> Vec<&'static str> {
    crate::kind::KINDS
        .iter()
        .map(|k| k.name())
        .filter(|k| supports(kind, k))
        .collect()
}

/// Every check of `config` that names a database must run in that
/// database's kind: an `amcheck` aimed at a MariaDB database is a
/// configuration error naming both.
///
/// # Errors
/// [`crate::config::ConfigError::Invalid`] naming the check file.
pub fn validate(config: &crate::config::Config) -> Result<(), crate::config::ConfigError> {
    for def in &config.checks {
        let Some(db) = def
            .database
            .as_ref()
            .and_then(|n| config.databases.iter().find(|d| &d.name == n))
        else {
            continue;
        };
        let kind = def.spec.kind();
        if !supports(kind, db.kind.name()) {
            return Err(crate::config::ConfigError::invalid(
                &def.file,
                "kind",
                format!(
                    "a {kind} check cannot run in database `{}`, which is of kind {}; {kind} checks run in {} databases",
                    db.name,
                    db.kind.name(),
                    supported_kinds(kind).join(" and ")
                ),
            ));
        }
    }
    Ok(())
}

/// Extra time a kind gets past its own timeout handling before drill stops
/// waiting for it (each kind cancels its own work at the timeout).
const GRACE: Duration = Duration::from_secs(15);

/// Run `def` in `ctx`, bounded by the check's timeout, and turn the result
/// into a report entry. Passwords of the sandbox are redacted from every
/// text the entry carries.
pub async fn run(def: &CheckDefinition, ctx: &CheckContext<'_>) -> CheckReport {
    let started = Instant::now();
    let kind = ctx.sandbox.kind.name();
    let work = async {
        match implementation(def.spec.kind(), kind) {
            Some(check) => check.run(def, ctx).await,
            None => Err(Incomplete::from(CheckError::Sandbox(format!(
                "a {} check cannot run in a {kind} database",
                def.spec.kind()
            )))),
        }
    };
    let result = match tokio::time::timeout(def.timeout + GRACE, work).await {
        Ok(r) => r,
        Err(_) => Err(CheckError::Timeout(def.timeout).into()),
    };
    let redact = |s: &str| ctx.sandbox.password.redact(s);
    let mut report = entry(def, Status::Error, String::new());
    report.seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(c) => {
            report.status = if c.findings.is_empty() {
                Status::Passed
            } else {
                Status::Failed
            };
            report.detail = redact(&c.detail);
            report.findings = c.findings.iter().map(|f| redact(&f.what)).collect();
            report.located = c
                .findings
                .iter()
                .map(|f| Finding {
                    what: redact(&f.what),
                    ..f.clone()
                })
                .collect();
            report.notes = c.notes.iter().map(|n| redact(n)).collect();
            report.counts = c.counts;
            report.rows_verified = c.rows_verified;
            report.bytes_verified = c.bytes_verified;
            report.output = c.output.iter().map(|l| redact(l)).collect();
        }
        Err(i) => {
            report.detail = redact(&format!("could not run: {}", i.error));
            report.output = i.output.iter().map(|l| redact(l)).collect();
        }
    }
    report
}

/// A report entry for a check that was not attempted.
pub fn not_run(def: &CheckDefinition, why: &str) -> CheckReport {
    entry(def, Status::NotRun, why.into())
}

/// A report entry for `def` with nothing measured yet.
fn entry(def: &CheckDefinition, status: Status, detail: String) -> CheckReport {
    CheckReport {
        name: def.name.clone(),
        kind: def.spec.kind().into(),
        status,
        seconds: 0.0,
        detail,
        findings: vec![],
        located: vec![],
        notes: vec![],
        counts: vec![],
        rows_verified: None,
        bytes_verified: None,
        output: vec![],
    }
}

/// A session on the context's database through the sandbox's kind.
async fn session(ctx: &CheckContext<'_>) -> Result<Box<dyn crate::kind::Session>, CheckError> {
    ctx.sandbox
        .session(ctx.dbname)
        .await
        .map_err(|detail| CheckError::Connect {
            dbname: ctx.dbname.into(),
            detail,
        })
}

/// A failed query as a check error.
fn query_error(e: crate::kind::QueryError) -> CheckError {
    match e {
        crate::kind::QueryError::Timeout(t) => CheckError::Timeout(t),
        crate::kind::QueryError::Failed(m) => CheckError::Query(m),
    }
}

/// Connect to the context's database, mapping the error.
async fn connect(ctx: &CheckContext<'_>) -> Result<tokio_postgres::Client, CheckError> {
    ctx.sandbox
        .connect(ctx.dbname)
        .await
        .map_err(|e| CheckError::Connect {
            dbname: ctx.dbname.into(),
            detail: crate::sandbox::pg_message(&e),
        })
}

/// `schema.table` or `table` as a quoted SQL name.
fn quote_table(name: &str) -> String {
    match crate::config::split_table(name) {
        Some((Some(s), t)) => format!("{}.{}", quote_ident(s), quote_ident(t)),
        Some((None, t)) => quote_ident(t),
        None => quote_ident(name),
    }
}

/// Text values of the rows returned by a simple query.
fn text_rows(messages: &[tokio_postgres::SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}
