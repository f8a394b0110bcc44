//! Throwaway PostgreSQL servers ("sandboxes") that dumps are restored into.
//!
//! A sandbox is a container made from the configured image (the Docker Hub
//! `postgres` image, or the project's offline build that behaves like it),
//! with a random superuser password, its port published on 127.0.0.1 only,
//! capped in memory and CPUs, and labelled with the run id so that `drill
//! reap` can find leftovers. It is removed when the run ends unless `--keep`.

mod docker;
pub mod local;

pub use docker::{DockerEngine, Sandbox, SandboxInfo, SandboxRequest};
pub use local::LocalEngine;

use std::collections::VecDeque;
use std::time::Duration;

use crate::config::{Engine, SandboxConfig};

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

/// The engine that runs a drill's sandboxes (`sandbox.engine`).
pub enum SandboxEngine {
    /// Containers through the Docker API.
    Docker(DockerEngine),
    /// Servers from this host's PostgreSQL binaries.
    Local(LocalEngine),
}

impl SandboxEngine {
    /// The configured engine, reached (Docker) or found (local).
    ///
    /// # Errors
    /// [`SandboxError::EngineUnreachable`] or
    /// [`SandboxError::LocalUnusable`].
    pub async fn connect(config: &SandboxConfig) -> Result<Self, SandboxError> {
        Ok(match config.engine {
            Engine::Docker => SandboxEngine::Docker(DockerEngine::connect().await?),
            Engine::Local => SandboxEngine::Local(LocalEngine::find(config.bin_dir.as_deref())?),
        })
    }

    /// Whether sandboxes run from images (`image` matters): Docker yes, the
    /// local engine (this host's binaries) no.
    pub fn uses_images(&self) -> bool {
        match self {
            SandboxEngine::Docker(_) => true,
            SandboxEngine::Local(_) => false,
        }
    }

    /// Docker: make sure `image` is present (pulling it within `timeout`).
    /// Local: nothing to do.
    ///
    /// # Errors
    /// [`SandboxError::ImageMissing`].
    pub async fn ensure_image(&self, image: &str, timeout: Duration) -> Result<(), SandboxError> {
        match self {
            SandboxEngine::Docker(d) => d.ensure_image(image, timeout).await,
            SandboxEngine::Local(_) => Ok(()),
        }
    }

    /// Start a sandbox and wait until it accepts connections.
    ///
    /// # Errors
    /// As [`DockerEngine::start`] and [`LocalEngine::start`].
    pub async fn start(&self, req: &SandboxRequest) -> Result<Sandbox, SandboxError> {
        match self {
            SandboxEngine::Docker(d) => d.start(req).await,
            SandboxEngine::Local(l) => l.start(req).await,
        }
    }
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
    #[error("sandbox {name} did not accept connections within {seconds} s (sandbox.startup_timeout); last error: {last_error}; container log ends: {log_tail}")]
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
