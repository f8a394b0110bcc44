//! Throwaway database servers ("sandboxes") that backups are restored into.
//!
//! An [`Engine`] runs sandboxes: Docker containers made from the configured
//! image (the Docker Hub image of the database kind, or the project's
//! offline build that behaves like it), or PostgreSQL servers from this
//! host's binaries. Each sandbox has a random superuser password, its port
//! published on 127.0.0.1 only, memory and CPU caps, and drill's labels
//! (run id, tier, database, pid, host) so that `drill reap` can find
//! leftovers. It is removed when the run ends unless `--keep`.
//!
//! The engine is chosen once, by name, from [`ENGINES`]; a [`Sandbox`]
//! carries its engine's [`Handle`], so nothing outside an engine's module
//! knows which engine runs it. The database kind
//! ([`crate::kind::DatabaseKind`]) says how its server is configured and
//! when it is ready.

mod docker;
pub mod input_pipe;
pub mod local;
pub mod template;

pub use docker::{DockerEngine, TEMPLATES_ENV};
pub use local::LocalEngine;
pub use template::{TemplateStatus, TemplateUse};

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::SandboxConfig;
use crate::secret::Secret;

/// An engine being reached.
pub type EngineFuture = BoxFuture<'static, Result<Box<dyn Engine>, SandboxError>>;

/// A registered sandbox engine: its name in `sandbox.engine` and how to
/// reach it.
pub struct EngineEntry {
    /// The name in config (`docker`, `local`).
    pub name: &'static str,
    /// What to do when it cannot be used, for `drill doctor`.
    pub fix: &'static str,
    /// Reach (or find) the engine for `config`.
    pub connect: fn(&SandboxConfig) -> EngineFuture,
    /// The CPUs a sandbox of `config` gets (for `pg_restore --jobs`).
    pub cpus: fn(&SandboxConfig) -> u32,
}

/// Every engine drill knows. Adding one is a module implementing
/// [`Engine`] and [`Handle`] plus one line here.
pub static ENGINES: &[EngineEntry] = &[docker::ENTRY, local::ENTRY];

/// The entry called `name`.
pub fn engine_entry(name: &str) -> Option<&'static EngineEntry> {
    ENGINES.iter().find(|e| e.name == name)
}

/// The names of all engines, for messages.
pub fn engine_names() -> Vec<&'static str> {
    ENGINES.iter().map(|e| e.name).collect()
}

/// The configured engine (`sandbox.engine`), reached.
///
/// # Errors
/// The engine's own: unreachable, unusable.
pub async fn connect(config: &SandboxConfig) -> Result<Box<dyn Engine>, SandboxError> {
    let entry = engine_entry(&config.engine).ok_or_else(|| SandboxError::LocalUnusable {
        detail: format!("no sandbox engine `{}`", config.engine),
    })?;
    (entry.connect)(config).await
}

/// Something that runs sandboxes: Docker containers, local servers, …
pub trait Engine: Send + Sync {
    /// Its name in `sandbox.engine`.
    fn name(&self) -> &'static str;

    /// Whether sandboxes run from images (`image` matters).
    fn uses_images(&self) -> bool;

    /// One line on what it is, for `drill doctor` (`engine reachable
    /// (version 28.2.2)`, `postgres (PostgreSQL) 15.8 in /usr/lib/…`).
    fn describe(&self) -> BoxFuture<'_, String>;

    /// Make sure `image` is present (pulling it within `timeout`); an engine
    /// without images has nothing to do.
    ///
    /// # Errors
    /// [`SandboxError::ImageMissing`].
    fn ensure_image<'a>(
        &'a self,
        _image: &'a str,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async { Ok(()) })
    }

    /// Whether `image` is present, without pulling (`None`: no images).
    fn image_present<'a>(&'a self, _image: &'a str) -> BoxFuture<'a, Option<bool>> {
        Box::pin(async { None })
    }

    /// The environment an image declares (`NAME=VALUE`), e.g. `PG_MAJOR=16`.
    fn image_env<'a>(&'a self, _image: &'a str) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async { Vec::new() })
    }

    /// Whether sandboxes of `image` and `kind` start from a ready template
    /// (see [`template`]), for `drill doctor`. Default: templates are not
    /// used.
    fn template_status<'a>(
        &'a self,
        _image: &'a str,
        _kind: &'static dyn crate::kind::DatabaseKind,
    ) -> BoxFuture<'a, TemplateStatus> {
        let name = self.name();
        Box::pin(async move {
            TemplateStatus::NotUsed(format!("the {name} engine does not use templates"))
        })
    }

    /// Start a sandbox for `req` and wait until its server accepts
    /// connections.
    ///
    /// # Errors
    /// [`SandboxError`]: the engine failed, the server died or was not
    /// ready within `req.startup_timeout`.
    fn start<'a>(&'a self, req: &'a SandboxRequest)
        -> BoxFuture<'a, Result<Sandbox, SandboxError>>;

    /// Every drill sandbox this engine holds (by drill's labels).
    ///
    /// # Errors
    /// [`SandboxError`] when it cannot be listed.
    fn sandboxes(&self) -> BoxFuture<'_, Result<Vec<SandboxInfo>, SandboxError>>;

    /// Remove the sandbox `id` (from [`Engine::sandboxes`]); best effort.
    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()>;
}

/// What an engine does for one running sandbox ([`Sandbox`] delegates to
/// it).
pub trait Handle: Send + Sync {
    /// A path inside the sandbox for a file drill puts there; it goes when
    /// the sandbox goes.
    fn scratch_path(&self, name: &str) -> String;

    /// Fail if the sandbox is no longer running, saying why.
    fn check_alive<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<(), SandboxError>>;

    /// The last lines of its log, one line, secrets redacted.
    fn log_tail<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, String>;

    /// The last `n` lines of its server's log, secrets redacted (also
    /// after the server exited). Default: what [`Handle::log_tail`] gives.
    fn log_lines<'a>(&'a self, sb: &'a Sandbox, _n: usize) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            self.log_tail(sb)
                .await
                .split(" | ")
                .map(str::to_string)
                .collect()
        })
    }

    /// Run `cmd` in the sandbox feeding it `input`; see
    /// [`Sandbox::exec_with_input`].
    fn exec<'a>(
        &'a self,
        sb: &'a Sandbox,
        cmd: &'a [&'a str],
        input: Option<&'a mut (dyn AsyncRead + Unpin + Send)>,
    ) -> BoxFuture<'a, Result<ExecOutcome, SandboxError>>;

    /// Run `cmd` in the sandbox copying its output to `out`; see
    /// [`Sandbox::exec_to_writer`].
    fn exec_to_writer<'a>(
        &'a self,
        sb: &'a Sandbox,
        cmd: &'a [&'a str],
        out: &'a mut (dyn AsyncWrite + Unpin + Send),
    ) -> BoxFuture<'a, Result<(ExecOutcome, u64), SandboxError>>;

    /// Remove the sandbox; best effort.
    fn remove<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, ()>;

    /// How an operator reaches a kept sandbox's database `dbname`.
    fn how_to_connect(&self, sb: &Sandbox, dbname: &str) -> Connect;
}

/// How an operator reaches a kept sandbox (`--keep`).
#[derive(Debug, Clone)]
pub struct Connect {
    /// A shell command that opens the database's client.
    pub command: String,
    /// Another way in, or how to get the password (may be empty).
    pub also: String,
    /// A shell command that removes the sandbox.
    pub remove: String,
}

/// What a sandbox is made from and how it is capped.
#[derive(Debug, Clone)]
pub struct SandboxRequest {
    /// The run id (label `drill.run-id`).
    pub run_id: String,
    /// Tier name (label).
    pub tier: String,
    /// `[[databases]]` name (label, container name).
    pub database: String,
    /// Short id of the snapshot restored into it (label `drill.snapshot`,
    /// container name suffix), so one run can hold sandboxes of several
    /// snapshots (`bisect`, `diff`).
    pub snapshot: Option<String>,
    /// Image reference, e.g. `postgres:16`.
    pub image: String,
    /// Memory cap in bytes (swap is capped to the same, i.e. none extra).
    pub memory_bytes: u64,
    /// CPU cap.
    pub cpus: f64,
    /// Readiness deadline.
    pub startup_timeout: Duration,
    /// Start the server with restore tuning (`sandbox.tuning`; see the
    /// kind's [`crate::kind::DatabaseKind::container`]).
    pub tuning: bool,
    /// The database kind the sandbox runs a server of.
    pub kind: &'static dyn crate::kind::DatabaseKind,
    /// Start the sandbox without its server (the kind's
    /// [`crate::kind::ContainerSpec::held_cmd`]): the restore method fills
    /// the data directory, then starts the server itself. The sandbox comes
    /// back with its port published but nothing listening.
    pub held: bool,
}

/// A sandbox as the engine lists it, with drill's labels.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SandboxInfo {
    /// Container id.
    pub id: String,
    /// Container name.
    pub name: String,
    /// `drill.run-id`.
    pub run_id: String,
    /// `drill.tier`.
    pub tier: String,
    /// `drill.database`.
    pub database: String,
    /// `drill.pid`: the drill process that started it (absent on sandboxes
    /// of older versions).
    pub pid: Option<u32>,
    /// `drill.host`: where that process ran.
    pub host: Option<String>,
    /// When the container was created.
    pub created: chrono::DateTime<chrono::Utc>,
    /// Docker's state (`running`, `exited`, …).
    pub state: String,
}

/// A sized wrapper of a possibly unsized writer, so any writer can be
/// passed on as a `dyn AsyncWrite`.
struct WriterRef<'a, W: ?Sized>(&'a mut W);

impl<W: AsyncWrite + Unpin + ?Sized> AsyncWrite for WriterRef<'_, W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

/// A running sandbox: a server of one database kind, run by an engine.
#[derive(Clone)]
pub struct Sandbox {
    pub(crate) handle: Arc<dyn Handle>,
    /// Engine id (a container id; local: the sandbox's directory).
    pub id: String,
    /// Name (`drill-<run id>-<database>`; local: the directory's name).
    pub name: String,
    /// Image it runs (local: `local:<binaries directory>`).
    pub image: String,
    /// Host address of the published port, always 127.0.0.1 (local: the
    /// directory holding the server's Unix socket; libpq and
    /// tokio-postgres read a host starting with `/` as one).
    pub host: String,
    /// Host port mapped to the server's port (local: the socket's number).
    pub port: u16,
    /// Superuser name.
    pub user: String,
    /// Superuser password, random for this run.
    pub password: Secret,
    /// Server version as the kind's probe reports it, e.g. `16.4`.
    pub server_version: String,
    /// The memory cap in bytes (`sandbox.memory`).
    pub memory_bytes: u64,
    /// The database kind of its server.
    pub kind: &'static dyn crate::kind::DatabaseKind,
    /// The template it started from (`None`: its data directory was
    /// initialised at start, or filled by a restore).
    pub template: Option<TemplateUse>,
    /// What the operator should know about how it was started (a template
    /// that could not be built), for the run's warnings; each is given once
    /// per process.
    pub warnings: Vec<String>,
}

impl Sandbox {
    /// A path inside the sandbox for a file drill puts there (a custom dump
    /// copied in for `pg_restore --jobs`): `/tmp/NAME` in a container, inside
    /// the sandbox's directory for the local engine. It goes when the
    /// sandbox goes.
    pub fn scratch_path(&self, name: &str) -> String {
        self.handle.scratch_path(name)
    }

    /// Fail if the sandbox is no longer running, saying why (exit code,
    /// OOM kill) with the end of its log.
    ///
    /// # Errors
    /// [`SandboxError::Died`], [`SandboxError::OutOfMemory`] or
    /// [`SandboxError::Api`].
    pub async fn check_alive(&self) -> Result<(), SandboxError> {
        self.handle.check_alive(self).await
    }

    /// The last lines of the sandbox's log, one line, secrets redacted.
    pub async fn log_tail(&self) -> String {
        self.handle.log_tail(self).await
    }

    /// The last `n` lines of the sandbox server's log, secrets redacted.
    pub async fn log_lines(&self, n: usize) -> Vec<String> {
        self.handle.log_lines(self, n).await
    }

    /// Run `cmd` inside the sandbox (as its kind's OS user), feeding it
    /// `input` on standard input (then closing it), and collect its output.
    /// If the process exits before taking all input, feeding stops and
    /// `stdin_error` says so.
    ///
    /// # Errors
    /// [`SandboxError`] when the process cannot be started or waited for.
    pub async fn exec_with_input<R>(
        &self,
        cmd: &[&str],
        input: Option<R>,
    ) -> Result<ExecOutcome, SandboxError>
    where
        R: AsyncRead + Unpin + Send,
    {
        let mut input = input;
        let reader = input
            .as_mut()
            .map(|r| r as &mut (dyn AsyncRead + Unpin + Send));
        self.handle.exec(self, cmd, reader).await
    }

    /// Run `cmd` inside the sandbox and copy its standard output to `out`
    /// as it comes; standard error is collected (bounded) in the outcome's
    /// `output`. The bytes written are returned beside the outcome.
    ///
    /// # Errors
    /// [`SandboxError`] when the process cannot be started or waited for,
    /// [`SandboxError::Io`] when writing to `out` fails.
    pub async fn exec_to_writer<W>(
        &self,
        cmd: &[&str],
        out: &mut W,
    ) -> Result<(ExecOutcome, u64), SandboxError>
    where
        W: AsyncWrite + Unpin + Send + ?Sized,
    {
        let out: &mut (dyn AsyncWrite + Unpin + Send) = &mut WriterRef(out);
        self.handle.exec_to_writer(self, cmd, out).await
    }

    /// How an operator reaches this sandbox's database `dbname` once it is
    /// kept (`--keep`).
    pub fn how_to_connect(&self, dbname: &str) -> Connect {
        self.handle.how_to_connect(self, dbname)
    }

    /// Remove the sandbox (best effort; the run's label sweep catches what
    /// this misses).
    pub async fn remove(&self) {
        self.handle.remove(self).await
    }

    /// Probe every 50 ms until the server answers its kind's probe over the
    /// published port, the way a client will use it; never sleep blindly.
    /// Whether the sandbox died is asked of the engine once a second, from
    /// the first second on (it costs an inspect and an exec), so readiness
    /// is seen within 50 ms.
    pub(crate) async fn wait_ready(&mut self, timeout: Duration) -> Result<(), SandboxError> {
        let started = Instant::now();
        let mut last_error;
        let mut alive_checked = started;
        loop {
            if alive_checked.elapsed() >= Duration::from_secs(1) {
                self.check_alive().await?;
                alive_checked = Instant::now();
            }
            let endpoint = self.endpoint();
            let probe = self.kind.probe(&endpoint);
            match tokio::time::timeout(Duration::from_secs(5), probe).await {
                Ok(Ok(version)) => {
                    self.server_version = version;
                    return Ok(());
                }
                Ok(Err(e)) => last_error = e,
                Err(_) => last_error = "probe timed out after 5 s".into(),
            }
            if started.elapsed() >= timeout {
                return Err(SandboxError::StartupTimeout {
                    name: self.name.clone(),
                    seconds: timeout.as_secs(),
                    last_error,
                    log_tail: self.log_tail().await,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Connect to `dbname` over the published port as the superuser. The
    /// connection runs on its own task, which ends when the client is dropped.
    ///
    /// # Errors
    /// The driver's error (see [`super::pg_message`]).
    pub async fn connect(
        &self,
        dbname: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, conn) = self
            .pg_config(dbname)
            .connect(tokio_postgres::NoTls)
            .await?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// Connection settings for PostgreSQL database `dbname` over the
    /// published port.
    pub fn pg_config(&self, dbname: &str) -> tokio_postgres::Config {
        crate::kind::postgresql::pg_config(&self.endpoint(), dbname)
    }

    /// How to reach the sandbox's server.
    pub fn endpoint(&self) -> crate::kind::Endpoint {
        crate::kind::Endpoint {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            password: self.password.clone(),
        }
    }

    /// A session on database `dbname` for checks, through the sandbox's
    /// kind's client.
    ///
    /// # Errors
    /// The client's message.
    pub async fn session(&self, dbname: &str) -> Result<Box<dyn crate::kind::Session>, String> {
        self.kind.session(&self.endpoint(), dbname).await
    }
}

/// Server settings (`postgres -c NAME=VALUE`) that speed up a restore into
/// data that will be thrown away, for a sandbox of `memory_bytes`. Each one
/// gives up crash safety or replication, which is safe only because the
/// sandbox is discarded after the drill (PostgreSQL docs, 14.4 "Populating a
/// Database" and 20.5 "Write Ahead Log"):
///
/// - `fsync=off`, `synchronous_commit=off`, `full_page_writes=off`: no
///   waiting for the disk, no full pages in the WAL;
/// - `wal_level=minimal` (with `max_wal_senders=0`): index builds and
///   tables created in the loading transaction skip the WAL;
/// - `max_wal_size=4GB`, `checkpoint_timeout=30min`: fewer checkpoints
///   during the load;
/// - `maintenance_work_mem`: an eighth of the memory cap, between 64 MiB and
///   1 GiB, for faster `CREATE INDEX` and `ADD FOREIGN KEY`.
pub fn restore_tuning(memory_bytes: u64) -> Vec<String> {
    let mwm_mib = (memory_bytes / 8 / (1024 * 1024)).clamp(64, 1024);
    vec![
        "fsync=off".into(),
        "synchronous_commit=off".into(),
        "full_page_writes=off".into(),
        "wal_level=minimal".into(),
        "max_wal_senders=0".into(),
        "max_wal_size=4GB".into(),
        "checkpoint_timeout=30min".into(),
        format!("maintenance_work_mem={mwm_mib}MB"),
    ]
}

/// Label carrying the run id on every sandbox.
pub const LABEL_RUN_ID: &str = "drill.run-id";
/// Label carrying the `[[databases]]` name on every sandbox.
pub const LABEL_DATABASE: &str = "drill.database";
/// Label carrying the tier on every sandbox.
pub const LABEL_TIER: &str = "drill.tier";
/// Label: short id of the snapshot restored into the sandbox (empty when
/// one run restores one snapshot).
pub const LABEL_SNAPSHOT: &str = "drill.snapshot";
/// Label marking a container as a drill sandbox.
pub const LABEL_MANAGED: &str = "drill.sandbox";
/// Label: pid of the drill process that started the sandbox.
pub const LABEL_PID: &str = "drill.pid";
/// Label: host name of the drill process that started the sandbox.
pub const LABEL_HOST: &str = "drill.host";
/// Every label drill puts on a sandbox.
pub const SANDBOX_LABELS: [&str; 7] = [
    LABEL_MANAGED,
    LABEL_PID,
    LABEL_HOST,
    LABEL_RUN_ID,
    LABEL_TIER,
    LABEL_DATABASE,
    LABEL_SNAPSHOT,
];

/// Why a sandbox could not be provided or used. All of these are
/// environment problems (exit 3), never a verdict on the backup.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The Docker engine could not be reached.
    #[error("reach the Docker engine at {endpoint}: {detail}; is Docker running? (set DOCKER_HOST to use another engine)")]
    EngineUnreachable {
        /// The endpoint tried.
        endpoint: String,
        /// The underlying error.
        detail: String,
    },
    /// The image is not present and could not be pulled.
    #[error("get sandbox image `{image}`: {detail}; pull it (`docker pull {image}`) or build the offline image (`scripts/build-image.sh`) and set `image` in [sandbox]")]
    ImageMissing {
        /// The image reference.
        image: String,
        /// Why it is unavailable.
        detail: String,
    },
    /// A Docker API call failed.
    #[error("{action} sandbox {name}: {detail}")]
    Api {
        /// What was being done (`create`, `start`, `inspect`, `exec in`).
        action: &'static str,
        /// Container name.
        name: String,
        /// The API error.
        detail: String,
    },
    /// The server did not accept connections in time.
    #[error("sandbox {name} did not accept connections within {} (sandbox.startup_timeout); last error: {last_error}; container log ends: {log_tail}", crate::duration::human_seconds(*seconds as f64))]
    StartupTimeout {
        /// Container name.
        name: String,
        /// The timeout in seconds.
        seconds: u64,
        /// The last probe error.
        last_error: String,
        /// The end of the container's log.
        log_tail: String,
    },
    /// The container stopped while drill needed it.
    #[error("sandbox {name} stopped unexpectedly (exit code {exit_code}{oom}); container log ends: {log_tail}")]
    Died {
        /// Container name.
        name: String,
        /// The container's exit code.
        exit_code: i64,
        /// `, killed for memory (OOM)` when Docker says so.
        oom: String,
        /// The end of the container's log.
        log_tail: String,
    },
    /// `sandbox.engine = "local"` cannot run here.
    #[error("the local sandbox engine cannot run: {detail}")]
    LocalUnusable {
        /// What is missing.
        detail: String,
    },
    /// A process of the sandbox hit its memory cap: the kernel killed it
    /// (Docker) or an allocation failed (local, `RLIMIT_AS`). The cap was
    /// too small for this restore or check. Says nothing about the
    /// backup.
    #[error("sandbox {name} ran out of memory at the sandbox's limit of {} (sandbox.memory): a PostgreSQL process was killed or refused memory; this is not a verdict on the backup: raise sandbox.memory and drill again; container log ends: {log_tail}", bytesize::ByteSize::b(*limit_bytes).display().iec())]
    OutOfMemory {
        /// Container name.
        name: String,
        /// The memory cap in bytes.
        limit_bytes: u64,
        /// The end of the container's log.
        log_tail: String,
    },
    /// Output of a process in the sandbox could not be written where it
    /// was going (a file on the host).
    #[error("{action} a process in sandbox {name}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Container name.
        name: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The server's message for a PostgreSQL error, else the driver's text.
pub fn pg_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

/// What a process run inside a sandbox did.
#[derive(Debug, Clone, Default)]
pub struct ExecOutcome {
    /// Its exit code (`None` if Docker could not tell).
    pub exit_code: Option<i64>,
    /// Bytes written to its standard input.
    pub stdin_bytes: u64,
    /// Why feeding standard input stopped early, if it did.
    pub stdin_error: Option<String>,
    /// Its output, bounded.
    pub output: OutputLog,
}

impl ExecOutcome {
    /// Exited 0 and took all of its input.
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && self.stdin_error.is_none()
    }
}

/// Output of a process, bounded: the first lines, the first lines that
/// report an error (PostgreSQL's `ERROR:`/`FATAL:`/`PANIC:`, client
/// tools' `error:`, the MariaDB/MySQL client's `ERROR nnnn`) and the last
/// lines. Blank lines are dropped; lines are
/// cut at 1000 bytes.
#[derive(Debug, Clone, Default)]
pub struct OutputLog {
    /// First lines, at most [`OutputLog::MAX_HEAD`].
    pub head: Vec<String>,
    /// First error lines, at most [`OutputLog::MAX_ERRORS`].
    pub errors: Vec<String>,
    /// Last lines, at most [`OutputLog::MAX_TAIL`].
    pub tail: VecDeque<String>,
    /// Lines seen in all.
    pub lines: usize,
    partial: String,
}

impl OutputLog {
    /// Head lines kept.
    pub const MAX_HEAD: usize = 200;
    /// Error lines kept.
    pub const MAX_ERRORS: usize = 10;
    /// Tail lines kept.
    pub const MAX_TAIL: usize = 20;
    const MAX_LINE: usize = 1000;

    /// The first `first` lines and the last `last` lines (at most
    /// [`OutputLog::MAX_TAIL`]), with a marker line for what lies between.
    pub fn bounded(&self, first: usize, last: usize) -> Vec<String> {
        let last = last.min(Self::MAX_TAIL);
        if self.lines <= first + last && self.lines <= self.head.len() {
            return self.head.clone();
        }
        let mut out: Vec<String> = self.head.iter().take(first).cloned().collect();
        let shown_tail = last.min(self.lines.saturating_sub(out.len()));
        let omitted = self.lines - out.len() - shown_tail;
        if omitted > 0 {
            out.push(format!("… {omitted} lines omitted …"));
        }
        let skip = self.tail.len().saturating_sub(shown_tail);
        out.extend(self.tail.iter().skip(skip).cloned());
        out
    }

    /// Add a chunk of output.
    pub fn push(&mut self, bytes: &[u8]) {
        self.partial.push_str(&String::from_utf8_lossy(bytes));
        while let Some(nl) = self.partial.find('\n') {
            let line: String = self.partial[..nl].trim_end().to_string();
            self.partial.drain(..=nl);
            self.line(line);
        }
        if self.partial.len() > Self::MAX_LINE * 4 {
            let line = std::mem::take(&mut self.partial);
            self.line(line);
        }
    }

    /// Flush a final unterminated line.
    pub fn finish(&mut self) {
        if !self.partial.trim().is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(line);
        }
    }

    fn line(&mut self, mut line: String) {
        if line.trim().is_empty() {
            return;
        }
        if line.len() > Self::MAX_LINE {
            let mut cut = Self::MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        // PostgreSQL's and its tools' markers, and the MariaDB/MySQL
        // client's `ERROR 1146 (42S02) at line 12: …`.
        let is_error = ["ERROR:", "FATAL:", "PANIC:", "error:", "fatal:"]
            .iter()
            .any(|m| line.contains(m))
            || line.starts_with("ERROR ");
        if is_error && self.errors.len() < Self::MAX_ERRORS {
            self.errors.push(line.clone());
        }
        if self.head.len() < Self::MAX_HEAD {
            self.head.push(line.clone());
        }
        self.lines += 1;
        self.tail.push_back(line);
        if self.tail.len() > Self::MAX_TAIL {
            self.tail.pop_front();
        }
    }

    /// The most telling lines: the first error lines if any, else the tail.
    pub fn summary(&self, n: usize) -> String {
        let lines: Vec<&String> = if self.errors.is_empty() {
            let skip = self.tail.len().saturating_sub(n);
            self.tail.iter().skip(skip).collect()
        } else {
            self.errors.iter().take(n).collect()
        };
        lines
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_log_keeps_errors_and_tail() {
        let mut log = OutputLog::default();
        for i in 0..50 {
            log.push(format!("line {i}\n").as_bytes());
        }
        log.push(b"psql:<stdin>:12: ERROR:  relation \"x\" does not exist\nlast");
        log.finish();
        assert_eq!(log.errors.len(), 1);
        assert_eq!(log.tail.len(), OutputLog::MAX_TAIL);
        assert_eq!(log.tail.back().unwrap(), "last");
        assert!(log.summary(3).contains("does not exist"));
        let b = log.bounded(2, 3);
        assert_eq!(b[0], "line 0");
        assert_eq!(b[2], "… 47 lines omitted …");
        assert_eq!(b.last().unwrap(), "last");
        assert_eq!(b.len(), 6);
        let mut short = OutputLog::default();
        short.push(b"a\nb\n");
        assert_eq!(short.bounded(20, 20), vec!["a", "b"]);
    }
}
