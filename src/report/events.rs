//! Events the orchestrator emits; the CLI's progress display listens.
//! The library never prints.

use super::{Status, Verdict};

/// Something that happened during a drill.
#[derive(Debug, Clone)]
pub enum Event {
    /// The run began.
    Started {
        /// Run id.
        run_id: String,
        /// Tier.
        tier: String,
        /// Repository, redacted.
        repository: String,
    },
    /// A snapshot was chosen.
    SnapshotSelected {
        /// Short id.
        short_id: String,
        /// Time as restic recorded it (RFC 3339).
        time: String,
        /// Age at the start of the run, seconds.
        age_seconds: f64,
    },
    /// A restore was planned (the plan, printable).
    Planned {
        /// The plan's description.
        plan: String,
    },
    /// The head of a database's dump is being read (a short `restic dump`)
    /// for the versions it names.
    DumpInspecting {
        /// Database.
        database: String,
    },
    /// The head of a database's dump was read.
    DumpInspected {
        /// Database.
        database: String,
        /// The server it was dumped from, if the head says.
        server: Option<String>,
        /// The `pg_dump` that wrote it, if the head says.
        pg_dump: Option<String>,
    },
    /// A sandbox is being started.
    SandboxStarting {
        /// Database.
        database: String,
        /// Image.
        image: String,
    },
    /// A sandbox accepts connections.
    SandboxReady {
        /// Database.
        database: String,
        /// The server's name (`PostgreSQL`, `MariaDB`).
        server: String,
        /// Server version.
        server_version: String,
        /// Seconds from creation to ready.
        seconds: f64,
    },
    /// Streaming began.
    RestoreStarted {
        /// Database.
        database: String,
        /// Dump size in bytes as stored.
        bytes: u64,
    },
    /// A restore is under way; sent about once a second.
    RestoreProgress {
        /// Database.
        database: String,
        /// Bytes read from the repository so far (the dump as stored).
        bytes: u64,
        /// The dump's size as stored, bytes (from `restic ls`).
        total: u64,
        /// Seconds since the restore began.
        seconds: f64,
    },
    /// A restore ended.
    RestoreFinished {
        /// Database.
        database: String,
        /// Outcome.
        status: Status,
        /// Bytes read from the repository.
        bytes: u64,
        /// Seconds.
        seconds: f64,
        /// Why it did not pass.
        error: Option<String>,
    },
    /// A check began.
    CheckStarted {
        /// Database.
        database: String,
        /// Check name.
        name: String,
    },
    /// A check is still running; sent about once a second.
    CheckRunning {
        /// Database.
        database: String,
        /// Check name.
        name: String,
        /// Seconds since it began.
        seconds: f64,
    },
    /// A check ended.
    CheckFinished {
        /// Database.
        database: String,
        /// Check name.
        name: String,
        /// Outcome.
        status: Status,
        /// Summary.
        detail: String,
    },
    /// A sandbox was kept (`--keep`): how to connect.
    Kept {
        /// Database.
        database: String,
        /// Container name (local engine: the sandbox's directory name).
        container: String,
        /// `127.0.0.1`, or (local engine) the directory holding the
        /// server's socket and its `password` file.
        host: String,
        /// Host port on 127.0.0.1 (local engine: the socket's number).
        port: u16,
        /// Superuser.
        user: String,
        /// Database to connect to.
        dbname: String,
        /// A shell command that opens the database's client.
        connect: String,
        /// Another way in, or how to get the password (may be empty).
        also: String,
        /// A shell command that removes the sandbox.
        remove: String,
    },
    /// Something worth telling the operator that is not a failure.
    Warning {
        /// The message.
        message: String,
    },
    /// A tier's drill did not pass; the next tier of the fallback is tried.
    FallingBack {
        /// The tier that did not pass.
        from: String,
        /// The tier tried next.
        to: String,
    },
    /// Progress worth a line that is none of the above.
    Info {
        /// The message.
        message: String,
    },
    /// `bisect` is about to judge a snapshot.
    BisectProbe {
        /// Short id of the snapshot tested.
        short_id: String,
        /// Its time (RFC 3339).
        time: String,
        /// Short ids of the oldest and newest snapshot still in the search
        /// window (the first invalid one is among them).
        window_from: String,
        /// See `window_from`.
        window_to: String,
        /// Snapshots in the window.
        remaining: usize,
    },
    /// `bisect` judged a snapshot.
    BisectJudged {
        /// Short id.
        short_id: String,
        /// Its verdict.
        verdict: Verdict,
        /// The short id of the snapshot whose restore this verdict comes
        /// from, when the dump was byte-identical (no restore ran).
        same_as: Option<String>,
    },
    /// The run ended.
    Finished {
        /// The verdict.
        verdict: Verdict,
        /// RTO seconds, if measured.
        rto_seconds: Option<f64>,
    },
}

/// Receives events. Implementations must be cheap: they are called on the
/// orchestrator's path.
pub trait EventSink: Send + Sync {
    /// Handle one event.
    fn emit(&self, event: &Event);
}

/// Discards events.
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&self, _event: &Event) {}
}
