//! drill proves that PostgreSQL backups kept in restic repositories restore.
//!
//! A drill takes a snapshot from a tier (a restic repository), streams each
//! configured dump into a throwaway PostgreSQL sandbox, runs integrity checks
//! on the restored data, measures RTO and RPO, and writes a report. The data
//! path reads top to bottom: [`config`] → [`tier`] → [`sandbox`] →
//! [`restore`] → [`checks`] → [`report`], orchestrated by [`drill`]; [`cli`]
//! is the only place that knows exit codes.

pub mod checks;
pub mod cli;
pub mod clock;
pub mod config;
pub mod drill;
pub mod duration;
pub mod host;
pub mod interrupt;
pub mod kind;
pub mod ledger;
pub mod notify;
pub mod process;
pub mod report;
pub mod restore;
pub mod sandbox;
pub mod schedule;
pub mod secret;
pub mod tier;
