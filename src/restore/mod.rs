//! Restore a backup from a snapshot into a sandbox, and judge the result.
//!
//! How depends on the backup's kind and format: each has a
//! [`RestoreMethod`], chosen by its database kind
//! ([`crate::kind::DatabaseKind::method`]), whose plan says what it needs of
//! the sandbox and whose `execute` owns its pipeline:
//!
//! - [`postgres`]: `pg_dump`/`pg_dumpall` output into `psql` or
//!   `pg_restore` in an empty running server;
//! - [`mysql`]: `mysqldump`/`mariadb-dump` output, then binlog increments,
//!   into the `mariadb`/`mysql` client in an empty running server;
//! - [`physical`]: a `pg_basebackup` base backup put in the data directory
//!   of a sandbox whose server has not started, then WAL replayed from the
//!   archive to a recovery target.
//!
//! Every method streams the backup out of the repository through `restic
//! dump`, decompresses it in drill when its name ends in `.gz` or `.zst`,
//! and feeds the restore tool inside the sandbox through its standard
//! input: nothing is staged on the host, and memory use does not depend on
//! the backup's size. A restore passes only with proof: restic exits 0
//! (every blob read and verified), the tool exits 0 having read all of its
//! input, and the format's completeness rule holds.

pub mod classify;
pub mod head;
pub mod image;
pub mod mysql;
pub mod parallel;
pub mod physical;
pub mod postgres;
pub mod roles;
mod stream;

use std::fmt;

use futures_util::future::LocalBoxFuture as BoxFuture;
use tokio::io::AsyncRead;

use crate::config::{Compression, DatabaseConfig, SandboxConfig};
use crate::report::{IncrementReport, Status};
use crate::sandbox::Sandbox;
use crate::tier::{DumpError, Repository, Snapshot, SnapshotFile};

pub use stream::{has_trailer, plain_creates_database, Counter, Identify, Stall, Tap};

/// Bytes read from the head of a dump to decide how to restore it.
const HEAD_BYTES: usize = 64 * 1024;

/// What a restore method needs of its sandbox before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// An empty server, running and accepting connections (logical dumps).
    RunningServer,
    /// A sandbox whose server has not started yet, so the method can fill
    /// its data directory first and start the server itself (physical
    /// backups).
    DataDirectory,
}

/// Where a restore reads from and how long it may take. One per database
/// restored: [`Source::held`] carries its dump's stream from
/// [`RestoreMethod::inspect`] to [`RestoreMethod::execute`].
pub struct Source<'a> {
    /// The repository.
    pub repo: &'a Repository,
    /// The snapshot.
    pub snapshot: &'a Snapshot,
    /// `[timeouts]`.
    pub timeouts: &'a crate::config::Timeouts,
    /// The dump's stream, left open by `inspect` after it read the head,
    /// for `execute` to go on reading (empty by default).
    pub held: HeldStream,
}

impl<'a> Source<'a> {
    /// A source with nothing held.
    pub fn new(
        repo: &'a Repository,
        snapshot: &'a Snapshot,
        timeouts: &'a crate::config::Timeouts,
    ) -> Self {
        Source {
            repo,
            snapshot,
            timeouts,
            held: HeldStream::default(),
        }
    }
}

/// A dump's stream kept open after its head was read, so that a restore
/// costs one `restic dump` (one key derivation and index load) instead of
/// one for the head and one for the rest. Dropped unused, its restic is
/// killed (the sandbox could not start, or `drill doctor` only looked).
#[derive(Default)]
pub struct HeldStream(std::sync::Mutex<Option<Held>>);

/// What [`HeldStream`] holds.
pub struct Held {
    /// The dump's path in the snapshot.
    pub(crate) path: String,
    /// The stream, read up to the end of `head`.
    pub(crate) opened: Opened,
    /// The decompressed bytes already read.
    pub(crate) head: Vec<u8>,
}

impl HeldStream {
    /// Keep `held`, replacing (and so stopping) anything held before.
    pub(crate) fn put(&self, held: Held) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(held);
    }

    /// The stream held for `path`; one held for another path is dropped.
    pub(crate) fn take(&self, path: &str) -> Option<Held> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .filter(|h| h.path == path)
    }
}

/// A way of restoring one kind of backup. See the module docs.
pub trait RestoreMethod: Send + Sync {
    /// What the sandbox must be before [`RestoreMethod::execute`].
    fn needs(&self) -> Needs {
        Needs::RunningServer
    }

    /// What `path` names in the snapshot: `file` (a dump) or `dir` (a
    /// directory of base backups), as `restic ls` calls node types.
    fn reads(&self) -> &'static str {
        "file"
    }

    /// What is volatile in backups of `format` (left out of their content
    /// identity, [`crate::ledger::identity`]). Default: nothing.
    fn volatile(&self, _format: crate::config::DumpFormat) -> crate::ledger::identity::Volatile {
        crate::ledger::identity::Volatile::Nothing
    }

    /// The restore tool, as named in reports (`psql`, `pg_restore`,
    /// `mariadb`).
    fn tool(&self, plan: &RestorePlan) -> &'static str;

    /// Parallel jobs for a backup of `size` bytes (as stored); 1 streams.
    fn jobs(&self, _db: &DatabaseConfig, _size: u64, _sandbox: &SandboxConfig) -> u32 {
        1
    }

    /// Whether the sandbox image of `database` follows what
    /// [`RestoreMethod::inspect`] reads (so the backup's head is read
    /// before the sandbox starts). Only the `[[databases]]` entry decides:
    /// it is asked before the snapshot's files are listed.
    fn image_follows_backup(&self, _database: &DatabaseConfig) -> bool {
        false
    }

    /// Start streaming `database`'s backup out of `source` before the
    /// snapshot's files are listed, for [`RestoreMethod::inspect`] to read
    /// from [`Source::held`]: restic's key derivation and index load then
    /// overlap the listing. `None` (the default) for a method that reads
    /// its backup otherwise. Dropped unread (the backup is not in the
    /// snapshot), its restic is killed.
    fn open_early(&self, _database: &DatabaseConfig, _source: &Source<'_>) -> Option<Held> {
        None
    }

    /// Read what the backup says about itself (versions) before or while
    /// its sandbox starts. Default: nothing.
    ///
    /// # Errors
    /// An outcome that ends the restore (`failed` for damage, `error`
    /// otherwise).
    fn inspect<'a>(
        &'a self,
        _plan: &'a RestorePlan,
        _source: &'a Source<'a>,
    ) -> BoxFuture<'a, Result<DumpHead, RestoreOutcome>> {
        Box::pin(async { Ok(DumpHead::default()) })
    }

    /// The image to run for `database`, from the configured one (`auto` =
    /// the kind's default) and what the backup's head says.
    ///
    /// # Errors
    /// Why no image can be chosen (an environment error).
    fn image(&self, database: &DatabaseConfig, _head: &DumpHead) -> Result<String, String> {
        let configured = &database.image;
        Ok(if configured == image::AUTO {
            database.kind.default_image().to_string()
        } else {
            configured.clone()
        })
    }

    /// Whether a sandbox running `server_version` can take this backup
    /// (`which` names the sandbox in the message).
    ///
    /// # Errors
    /// Why not, with its fix (an environment error: no restore is tried).
    fn admit(
        &self,
        _which: &str,
        _server_version: &str,
        _plan: &RestorePlan,
        _head: &DumpHead,
    ) -> Result<(), String> {
        Ok(())
    }

    /// Restore the planned backup into `sandbox` and judge the result;
    /// `progress` counts the bytes read from the repository as they come.
    fn execute<'a>(
        &'a self,
        plan: &'a RestorePlan,
        source: &'a Source<'a>,
        sandbox: &'a Sandbox,
        progress: &'a Counter,
    ) -> BoxFuture<'a, RestoreOutcome>;
}
/// What will be restored, from where, with which tool. Printable.
#[derive(Debug, Clone)]
pub struct RestorePlan {
    /// The `[[databases]]` entry.
    pub database: DatabaseConfig,
    /// The dump as found in the snapshot (size in bytes).
    pub file: SnapshotFile,
    /// Jobs: 1 streams the dump into one restore tool; 2 or more copy a
    /// custom-format dump into the sandbox and run `pg_restore --jobs`, or
    /// load a plain script over that many `psql` sessions
    /// ([`parallel`]).
    pub jobs: u32,
}

/// Build the plan for one database whose dump was found in the snapshot.
pub fn plan(database: &DatabaseConfig, file: SnapshotFile, sandbox: &SandboxConfig) -> RestorePlan {
    let jobs = database
        .kind
        .method(database.format)
        .jobs(database, file.size, sandbox);
    RestorePlan {
        database: database.clone(),
        file,
        jobs,
    }
}

impl RestorePlan {
    /// This plan's restore method.
    pub fn method(&self) -> &'static dyn RestoreMethod {
        self.database.kind.method(self.database.format)
    }

    /// The restore tool, as named in reports.
    pub fn tool(&self) -> &'static str {
        self.method().tool(self)
    }
}

impl fmt::Display for RestorePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.database;
        let jobs = if self.jobs > 1 && d.format == crate::config::DumpFormat::Custom {
            format!(" --jobs={} (copied into the sandbox first)", self.jobs)
        } else if self.jobs > 1 {
            format!(" over {} sessions", self.jobs)
        } else {
            String::new()
        };
        write!(
            f,
            "{}: {} ({}, {} bytes{}) → {}{jobs} in a sandbox of image {}, database `{}`",
            d.name,
            d.path,
            d.format.as_str(),
            self.file.size,
            match d.compression {
                Compression::None => "",
                Compression::Gzip => ", gzip",
                Compression::Zstd => ", zstd",
            },
            self.tool(),
            d.image,
            d.dbname
        )
    }
}

/// How one restore went.
#[derive(Debug, Clone)]
pub struct RestoreOutcome {
    /// `passed`, `failed` (the dump or repository content is bad) or `error`
    /// (the environment prevented the restore).
    pub status: Status,
    /// Bytes read from the repository (the dump as stored).
    pub bytes: u64,
    /// Bytes fed to the restore tool (after decompression).
    pub restored_bytes: u64,
    /// Wall time from the start of `restic dump` to the end of the restore.
    pub seconds: f64,
    /// Why it did not pass.
    pub error: Option<String>,
    /// Roles drill created in the sandbox (configured and discovered), in
    /// order.
    pub roles_created: Vec<String>,
    /// The restore tool's failure as [`classify`] named it.
    pub cause: Option<classify::Classified>,
    /// Increments applied after the dump, in order.
    pub increments: Vec<IncrementReport>,
    /// Versions the dump's head named, when the method read them while
    /// restoring.
    pub dump: Option<head::DumpVersions>,
    /// What the operator should know that is not a failure.
    pub notes: Vec<String>,
    /// For a physical backup: what recovery replayed and reached.
    pub recovery: Option<crate::report::RecoveryReport>,
    /// The sandbox server's version, when the method started the server
    /// itself ([`Needs::DataDirectory`]).
    pub server_version: Option<String>,
    /// A plain script loaded over several sessions: how.
    pub sessions: Option<crate::report::SessionsReport>,
    /// The backup's content identity (the ledger's,
    /// [`crate::ledger::identity`]), when the restore read its stream to
    /// the end and restic exited 0: the ledger then needs no second read.
    pub content_id: Option<String>,
}

impl RestoreOutcome {
    /// An outcome with nothing restored.
    pub fn new(status: Status, error: Option<String>) -> Self {
        RestoreOutcome {
            status,
            bytes: 0,
            restored_bytes: 0,
            seconds: 0.0,
            error,
            roles_created: Vec::new(),
            cause: None,
            increments: Vec::new(),
            notes: Vec::new(),
            dump: None,
            recovery: None,
            server_version: None,
            sessions: None,
            content_id: None,
        }
    }
}

/// What the head of a dump says, read before its sandbox starts
/// ([`inspect`]).
#[derive(Debug, Clone, Default)]
pub struct DumpHead {
    /// Server and `pg_dump` versions (see [`head`]).
    pub versions: head::DumpVersions,
    /// Why the head names no `pg_dump` version when that is the dump's
    /// damage (empty, cut short, a damaged archive header): the image
    /// cannot follow such a dump, and the backup is bad.
    pub unreadable: Option<String>,
}

/// A dump streaming out of the repository, decompressed, counted.
pub(crate) struct Opened {
    pub(crate) dump: crate::tier::DumpStream,
    pub(crate) tap: Tap<Box<dyn AsyncRead + Unpin + Send>>,
    pub(crate) stored: Counter,
    pub(crate) stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// [`Stall::paused`] of the stream.
    pub(crate) paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Opened {
    pub(crate) fn stalled(&self) -> bool {
        self.stalled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The stream was left unread on purpose until now (held while its
    /// sandbox started): restart the stall timer.
    pub(crate) fn waited(&self) {
        self.paused
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Start `restic dump` of `db`'s dump and decompress it by its suffix;
/// `progress` counts the bytes as stored, `keep_tail` bytes of the
/// decompressed end are kept (for the trailer check).
pub(crate) fn open(
    path: &str,
    compression: Compression,
    repo: &Repository,
    snapshot: &Snapshot,
    stall: std::time::Duration,
    progress: Counter,
    keep_tail: usize,
) -> Result<Opened, String> {
    let mut dump = repo.dump(snapshot, path).map_err(|e| e.to_string())?;
    let stall = Stall::new(dump.take_stdout(), stall);
    let stalled = stall.flag();
    let paused = stall.paused();
    let stored = Tap::with_counter(stall, 0, progress);
    let stored_counter = stored.counter();
    let buffered = tokio::io::BufReader::with_capacity(256 * 1024, stored);
    let decoded: Box<dyn AsyncRead + Unpin + Send> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => {
            let mut d = async_compression::tokio::bufread::GzipDecoder::new(buffered);
            d.multiple_members(true);
            Box::new(d)
        }
        Compression::Zstd => {
            let mut d = async_compression::tokio::bufread::ZstdDecoder::new(buffered);
            d.multiple_members(true);
            Box::new(d)
        }
    };
    Ok(Opened {
        dump,
        tap: Tap::new(decoded, keep_tail),
        stored: stored_counter,
        stalled,
        paused,
    })
}

/// Quote an SQL identifier (PostgreSQL docs, 4.1.1).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Damaged repository content is a verdict on the backup; anything else
/// restic fails at is the environment's fault.
pub(crate) fn restic_status(e: &DumpError) -> Status {
    match e {
        DumpError::Damaged { .. } => Status::Failed,
        DumpError::Tier(_) => Status::Error,
    }
}

/// The message for restic sending nothing for `timeouts.stall`.
pub(crate) fn stalled_message(path: &str, stall: std::time::Duration) -> String {
    format!(
        "phase streaming: restic sent no data of {path} for {} (timeouts.stall); restic was stopped. Is the repository's disk or peer hung?",
        crate::duration::human(stall)
    )
}
