//! Sandboxes as PostgreSQL servers run from this host's own binaries
//! (`sandbox.engine = "local"`), for hosts and CI runners without Docker.
//!
//! Each sandbox is a private directory `$TMPDIR/drill-sandbox-<run id>-<database>`
//! (mode 0700) holding a cluster made by `initdb` (superuser `drill_sandbox`, a
//! random password, `scram-sha-256` authentication, UTF-8, locale
//! `C.UTF-8`) and a `postgres` server started directly as drill's child. It
//! listens on a Unix socket in that directory only (`listen_addresses = ''`),
//! so nothing is published on the network. A marker file,
//! `drill-sandbox.json`, carries the same facts as a Docker sandbox's
//! labels, so the run's sweep and `drill reap` find it after an interruption
//! or a SIGKILL. Removal stops the server's whole process group and deletes
//! the directory.
//!
//! The cluster is not made per sandbox: `initdb` runs once per binaries
//! directory and version into `local-template-<hash>` in drill's cache
//! directory ([`super::template::cache_dir`]; with
//! its own random superuser password), each sandbox copies it (`cp -a`),
//! and right after its server is ready drill sets the sandbox's own
//! password (`ALTER ROLE`), so the template's no longer logs in. When no
//! template can be made, sandboxes run `initdb` as before, with one
//! warning; `DRILL_SANDBOX_TEMPLATES=0` turns templates off.
//!
//! Caps: the server runs at a lower CPU priority (`nice` 10) and each of its
//! processes is limited to `sandbox.memory` of address space
//! (`RLIMIT_AS`), so a runaway restore fails inside the sandbox instead of
//! starving production. PostgreSQL refuses to run as root: when drill runs
//! as root the server runs as the `postgres` OS user (PostgreSQL docs,
//! 18.1 "The PostgreSQL User Account").

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, Command};

use futures_util::future::BoxFuture;

use super::{
    Engine, EngineEntry, ExecOutcome, Handle, OutputLog, Sandbox, SandboxError, SandboxInfo,
    SandboxRequest,
};
use crate::config::SANDBOX_SUPERUSER;
use crate::secret::Secret;

/// Prefix of every local sandbox directory's name.
const DIR_PREFIX: &str = "drill-sandbox-";
/// The marker file in a sandbox directory.
const MARKER: &str = "drill-sandbox.json";
/// The socket's port number (names `.s.PGSQL.5432`; no TCP port is opened).
const PORT: u16 = 5432;
/// Programs a local sandbox needs from the binaries directory.
const PROGRAMS: [&str; 4] = ["initdb", "postgres", "psql", "pg_restore"];

/// This host's PostgreSQL binaries.
#[derive(Debug, Clone)]
pub struct LocalEngine {
    bin_dir: PathBuf,
    /// uid and gid the server runs as when drill is root.
    owner: Option<(u32, u32)>,
    /// Whether sandboxes copy a cluster made once (see [`LocalEngine::template`])
    /// instead of running `initdb` each (`DRILL_SANDBOX_TEMPLATES=0`: not).
    use_template: bool,
    /// Set once a template could not be made: warned about, not retried.
    template_failed: Arc<std::sync::atomic::AtomicBool>,
}

/// What [`MARKER`] holds.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    run_id: String,
    tier: String,
    database: String,
    pid: u32,
    host: String,
    created: chrono::DateTime<chrono::Utc>,
    /// The postmaster's pid (leader of the server's process group).
    server_pid: Option<u32>,
}

/// `initdb` arguments of every local cluster (sandbox or template).
const INITDB_ARGS: [&str; 4] = [
    "--auth=scram-sha-256",
    "--encoding=UTF8",
    "--locale=C.UTF-8",
    "--no-sync",
];

/// A template cluster of the local engine.
struct LocalTemplate {
    /// `local-template-<hash>` in drill's cache directory.
    dir: PathBuf,
    /// Its superuser's password.
    password: Secret,
}

/// Why `initdb` did not make a cluster.
enum InitdbError {
    /// It could not be run.
    Io(std::io::Error),
    /// It failed: its exit status and the end of its output.
    Failed(String),
}

/// A running local server; shared by the clones of its [`Sandbox`].
pub(crate) struct Server {
    dir: PathBuf,
    bin_dir: PathBuf,
    child: tokio::sync::Mutex<Option<Child>>,
    pid: Option<u32>,
}

impl LocalEngine {
    /// Find the binaries: `bin_dir` if given, else `pg_config --bindir`,
    /// else the newest `/usr/lib/postgresql/<major>/bin`, else the
    /// directory of `initdb` on PATH. When drill runs as root, the
    /// `postgres` OS user must exist.
    ///
    /// # Errors
    /// [`SandboxError::LocalUnusable`] saying what is missing.
    pub fn find(bin_dir: Option<&Path>) -> Result<Self, SandboxError> {
        let dir = match bin_dir {
            Some(d) => d.to_path_buf(),
            None => discover_bin_dir().ok_or_else(|| SandboxError::LocalUnusable {
                detail: "no PostgreSQL server binaries found (looked at `pg_config --bindir`, /usr/lib/postgresql/*/bin and PATH); install the PostgreSQL server package or set sandbox.bin_dir".into(),
            })?,
        };
        for p in PROGRAMS {
            if !dir.join(p).is_file() {
                return Err(SandboxError::LocalUnusable {
                    detail: format!(
                        "{} has no `{p}`; set sandbox.bin_dir to the directory of the PostgreSQL server binaries",
                        dir.display()
                    ),
                });
            }
        }
        let owner = if crate::host::is_root() {
            Some(postgres_user().ok_or_else(|| SandboxError::LocalUnusable {
                detail: "drill runs as root, PostgreSQL refuses to, and there is no `postgres` OS user to run the sandbox as; run drill as another user or create one".into(),
            })?)
        } else {
            None
        };
        Ok(LocalEngine {
            bin_dir: dir,
            owner,
            use_template: super::template::Mode::parse(
                std::env::var(super::TEMPLATES_ENV).ok().as_deref(),
            ) != super::template::Mode::Off,
            template_failed: Arc::default(),
        })
    }

    /// The binaries directory.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The server's version (`postgres --version`), e.g. `postgres
    /// (PostgreSQL) 15.8`.
    pub async fn version(&self) -> Option<String> {
        let out = Command::new(self.bin_dir.join("postgres"))
            .arg("--version")
            .output()
            .await
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Make a cluster and start a server for `req`, waiting until it
    /// accepts connections. On any failure everything is removed first.
    ///
    /// # Errors
    /// [`SandboxError`] when `initdb` or the server fails, or the server
    /// does not accept connections within `req.startup_timeout`.
    pub async fn start(&self, req: &SandboxRequest) -> Result<Sandbox, SandboxError> {
        // This engine runs this host's PostgreSQL binaries: it serves the
        // PostgreSQL kind only.
        if !std::ptr::addr_eq(req.kind, &crate::kind::postgresql::POSTGRESQL) {
            return Err(SandboxError::LocalUnusable {
                detail: format!(
                    "database `{}` is of kind {}, and the local engine runs PostgreSQL servers only; set sandbox.engine = \"docker\"",
                    req.database,
                    req.kind.name()
                ),
            });
        }
        if req.held {
            return Err(SandboxError::LocalUnusable {
                detail: format!(
                    "database `{}` is a physical base backup, which drill recovers in a Docker sandbox only (the local engine cannot yet hand over a data directory); set sandbox.engine = \"docker\"",
                    req.database
                ),
            });
        }
        let mut name = format!("{DIR_PREFIX}{}-{}", req.run_id, req.database);
        if let Some(s) = &req.snapshot {
            name = format!("{name}-{s}");
        }
        let dir = std::env::temp_dir().join(&name);
        let io = |action: &'static str| {
            let name = name.clone();
            move |source: std::io::Error| SandboxError::Io {
                action,
                name: name.clone(),
                source,
            }
        };
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(io("create the directory of"))?;
        }
        let marker = Marker {
            run_id: req.run_id.clone(),
            tier: req.tier.clone(),
            database: req.database.clone(),
            pid: std::process::id(),
            host: crate::host::hostname(),
            created: chrono::Utc::now(),
            server_pid: None,
        };
        write_marker(&dir, &marker).map_err(io("write the marker of"))?;
        let password = Secret::random();
        let server = Arc::new(Server {
            dir: dir.clone(),
            bin_dir: self.bin_dir.clone(),
            child: tokio::sync::Mutex::new(None),
            pid: None,
        });
        let mut sandbox = Sandbox {
            handle: server,
            id: dir.display().to_string(),
            name: name.clone(),
            image: format!("local:{}", self.bin_dir.display()),
            host: dir.display().to_string(),
            port: PORT,
            user: SANDBOX_SUPERUSER.into(),
            password,
            server_version: String::new(),
            memory_bytes: req.memory_bytes,
            kind: req.kind,
            template: None,
            warnings: Vec::new(),
        };
        match self.boot(&mut sandbox, marker, req).await {
            Ok(()) => Ok(sandbox),
            Err(e) => {
                sandbox.remove().await;
                Err(e)
            }
        }
    }

    async fn boot(
        &self,
        sandbox: &mut Sandbox,
        mut marker: Marker,
        req: &SandboxRequest,
    ) -> Result<(), SandboxError> {
        let dir = PathBuf::from(&sandbox.id);
        let name = sandbox.name.clone();
        let io = |action: &'static str| {
            let name = name.clone();
            move |source: std::io::Error| SandboxError::Io {
                action,
                name: name.clone(),
                source,
            }
        };
        // For the operator of a `--keep` run (mode 0600, in the 0700
        // directory, deleted with it).
        write_private(&dir.join("password"), sandbox.password.expose())
            .map_err(io("write the password file of"))?;
        let pwfile = dir.join("pwfile");
        write_private(&pwfile, sandbox.password.expose())
            .map_err(io("write the password file of"))?;
        if let Some((uid, gid)) = self.owner {
            for p in [&dir, &pwfile] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(io("hand over"))?;
            }
        }
        let data = dir.join("data");
        // A copy of the cluster made once, else `initdb` (as before).
        let template = match self.template_copy(&data).await {
            Ok(t) => t,
            Err(warning) => {
                sandbox.warnings.extend(warning);
                None
            }
        };
        if template.is_none() {
            self.initdb(&data, &pwfile, SANDBOX_SUPERUSER)
                .await
                .map_err(|e| match e {
                    InitdbError::Io(source) => SandboxError::Io {
                        action: "run initdb for",
                        name: name.clone(),
                        source,
                    },
                    InitdbError::Failed(detail) => SandboxError::Api {
                        action: "initdb",
                        name: name.clone(),
                        detail,
                    },
                })?;
        }
        let _ = std::fs::remove_file(&pwfile);
        let socket_dir = dir.clone();
        let log = std::fs::File::create(dir.join("server.log")).map_err(io("open the log of"))?;
        let log2 = log.try_clone().map_err(io("open the log of"))?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(dir.join("server.log"), Some(uid), Some(gid))
                .map_err(io("hand over"))?;
        }
        let mut postgres = self.server_command("postgres");
        postgres
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&socket_dir)
            .args(["-p", &PORT.to_string()])
            .args(["-c", "listen_addresses="])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .process_group(0);
        if req.tuning {
            for setting in super::restore_tuning(req.memory_bytes) {
                postgres.args(["-c", &setting]);
            }
        }
        let limit = req.memory_bytes;
        // SAFETY: `pre_exec` runs between fork and exec; the closure makes
        // only async-signal-safe system calls (setrlimit, setpriority) and
        // allocates nothing. nix wraps setrlimit; it has no setpriority, so
        // that one is the plain call, on this process only.
        unsafe {
            postgres.pre_exec(move || {
                let _ = nix::sys::resource::setrlimit(
                    nix::sys::resource::Resource::RLIMIT_AS,
                    limit,
                    limit,
                );
                nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, 10);
                Ok(())
            });
        }
        let child = postgres.spawn().map_err(io("start the server of"))?;
        let pid = child.id();
        marker.server_pid = pid;
        write_marker(&dir, &marker).map_err(io("write the marker of"))?;
        let server = Arc::new(Server {
            dir: dir.clone(),
            bin_dir: self.bin_dir.clone(),
            child: tokio::sync::Mutex::new(Some(child)),
            pid,
        });
        sandbox.handle = server;

        let own_password = sandbox.password.clone();
        if let Some(t) = &template {
            sandbox.password = t.password.clone();
        }
        self.wait_ready(sandbox, req).await?;
        if let Some(t) = &template {
            sandbox.template = Some(super::TemplateUse {
                tag: t.dir.display().to_string(),
                id: t.dir.display().to_string(),
                built_seconds: None,
                copied: true,
                spare: false,
            });
            req.kind
                .set_password(&sandbox.endpoint(), &own_password)
                .await
                .map_err(|detail| SandboxError::Api {
                    action: "set the password of",
                    name: sandbox.name.clone(),
                    detail,
                })?;
            sandbox.password = own_password;
            self.wait_ready(sandbox, req).await?;
        }
        Ok(())
    }

    /// Probe the server over its socket until it answers, backing off from
    /// 50 ms to 1 s, within `req.startup_timeout`.
    async fn wait_ready(
        &self,
        sandbox: &mut Sandbox,
        req: &SandboxRequest,
    ) -> Result<(), SandboxError> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(50);
        loop {
            sandbox.check_alive().await?;
            let probe = async {
                let client = sandbox.connect("postgres").await?;
                let row = client.query_one("SHOW server_version", &[]).await?;
                Ok::<String, tokio_postgres::Error>(row.get(0))
            };
            let last_error = match tokio::time::timeout(Duration::from_secs(5), probe).await {
                Ok(Ok(version)) => {
                    sandbox.server_version = version;
                    return Ok(());
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "probe timed out after 5 s".into(),
            };
            if started.elapsed() >= req.startup_timeout {
                return Err(SandboxError::StartupTimeout {
                    name: sandbox.name.clone(),
                    seconds: req.startup_timeout.as_secs(),
                    last_error,
                    log_tail: sandbox.log_tail().await,
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// Make a cluster in `data` with `initdb` (superuser `user`, its
    /// password in `pwfile`).
    async fn initdb(&self, data: &Path, pwfile: &Path, user: &str) -> Result<(), InitdbError> {
        let mut initdb = self.server_command("initdb");
        initdb
            .arg("--pgdata")
            .arg(data)
            .arg(format!("--username={user}"))
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(INITDB_ARGS);
        let out = initdb
            .kill_on_drop(true)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(InitdbError::Io)?;
        if !out.status.success() {
            let mut log = OutputLog::default();
            log.push(&out.stderr);
            log.finish();
            return Err(InitdbError::Failed(format!(
                "initdb exited with {}: {}",
                out.status,
                log.summary(3)
            )));
        }
        Ok(())
    }

    /// Copy this engine's template cluster to `data` (`cp -a`), making the
    /// template first if there is none: `Ok(None)` when templates are off
    /// or failed before (said then), `Err` with a warning (once) when it
    /// cannot be made or copied; the caller then runs `initdb`.
    ///
    /// The template is `local-template-<hash>` (mode 0700) in drill's cache
    /// directory ([`super::template::cache_dir`]):
    /// `data/`, a cluster made by `initdb` as a sandbox's is, with its own
    /// random superuser password in `password` (0600). The hash covers the
    /// binaries directory, the server's version, the `initdb` arguments and
    /// the OS user, so other binaries get another template. It is made in a
    /// directory of its own and renamed into place, so a drill never sees a
    /// half-made one; drills on one host make it once (a lock file).
    async fn template_copy(&self, data: &Path) -> Result<Option<LocalTemplate>, Option<String>> {
        use std::sync::atomic::Ordering;
        if !self.use_template || self.template_failed.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let result = async {
            let t = self.template().await?;
            let out = Command::new("cp")
                .arg("-a")
                .arg(t.dir.join("data"))
                .arg(data)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .await
                .map_err(|e| format!("run cp: {e}"))?;
            if !out.status.success() {
                let _ = std::fs::remove_dir_all(data);
                return Err(format!(
                    "cp -a {} exited with {}: {}",
                    t.dir.join("data").display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(t)
        }
        .await;
        match result {
            Ok(t) => Ok(Some(t)),
            Err(e) => {
                if self.template_failed.swap(true, Ordering::Relaxed) {
                    return Err(None);
                }
                Err(Some(format!(
                    "could not use a template cluster for local sandboxes: {e}; they run initdb each time (a second or two slower); DRILL_SANDBOX_TEMPLATES=0 turns templates off"
                )))
            }
        }
    }

    /// This engine's template cluster, made now if there is none (see
    /// [`LocalEngine::template_copy`]).
    async fn template(&self) -> Result<LocalTemplate, String> {
        let (dir, hash) = self.template_dir().await;
        let read = |dir: &Path| -> Option<LocalTemplate> {
            dir.join("data/PG_VERSION").is_file().then_some(())?;
            let password = std::fs::read_to_string(dir.join("password")).ok()?;
            Some(LocalTemplate {
                dir: dir.to_path_buf(),
                password: Secret::new(password.trim_end().to_string()),
            })
        };
        if let Some(t) = read(&dir) {
            return Ok(t);
        }
        let parent = dir.parent().unwrap_or(&dir).to_path_buf();
        let _lock = super::template::lock_file(
            &parent.join(format!("local-template-{hash}.lock")),
            Duration::from_secs(120),
        )
        .await;
        if let Some(t) = read(&dir) {
            return Ok(t);
        }
        let suffix = Secret::random().expose()[..8].to_string();
        let tmp = parent.join(format!("local-template-{hash}.{suffix}"));
        let made = async {
            use std::os::unix::fs::DirBuilderExt;
            let io = |what: &str, e: std::io::Error| format!("{what} {}: {e}", tmp.display());
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&tmp)
                .map_err(|e| io("create", e))?;
            let password = Secret::random();
            let pwfile = tmp.join("pwfile");
            write_private(&pwfile, password.expose())
                .map_err(|e| io("write the password file in", e))?;
            if let Some((uid, gid)) = self.owner {
                for p in [&tmp, &pwfile] {
                    std::os::unix::fs::chown(p, Some(uid), Some(gid))
                        .map_err(|e| io("hand over", e))?;
                }
            }
            self.initdb(&tmp.join("data"), &pwfile, SANDBOX_SUPERUSER)
                .await
                .map_err(|e| match e {
                    InitdbError::Io(e) => format!("run initdb: {e}"),
                    InitdbError::Failed(d) => d,
                })?;
            let _ = std::fs::remove_file(&pwfile);
            write_private(&tmp.join("password"), password.expose())
                .map_err(|e| io("write the password in", e))?;
            std::fs::rename(&tmp, &dir).map_err(|e| io("rename", e))
        }
        .await;
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&tmp);
            // Made by another drill meanwhile (no lock had in time)?
            return read(&dir).ok_or(e);
        }
        read(&dir).ok_or_else(|| format!("{} is incomplete after it was made", dir.display()))
    }

    /// Where this engine's template cluster is, and the hash in its name.
    async fn template_dir(&self) -> (PathBuf, String) {
        use sha2::{Digest, Sha256};
        let version = self.version().await.unwrap_or_default();
        let key = format!(
            "format={}\nbin={}\nversion={version}\nuser={SANDBOX_SUPERUSER}\nargs={INITDB_ARGS:?}\nowner={:?}",
            super::template::FORMAT_VERSION,
            self.bin_dir.display(),
            self.owner
        );
        let hash: String = Sha256::digest(key.as_bytes())
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect();
        let dir = super::template::cache_dir()
            .unwrap_or_else(|_| std::env::temp_dir())
            .join(format!("local-template-{hash}"));
        (dir, hash)
    }

    /// A command for a server program, run as the sandbox's owner.
    fn server_command(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin_dir.join(program));
        c.env_remove("PGDATA").env("LC_ALL", "C.UTF-8");
        if let Some((uid, gid)) = self.owner {
            c.uid(uid).gid(gid);
        }
        c
    }
}

impl Server {
    /// Fail if the server has exited, saying how, with the end of its log.
    async fn check_alive(&self, sandbox: &Sandbox) -> Result<(), SandboxError> {
        let mut child = self.child.lock().await;
        let Some(c) = child.as_mut() else {
            return Ok(());
        };
        match c.try_wait() {
            // An allocation refused at RLIMIT_AS: PostgreSQL logs
            // `ERROR:  out of memory` (or FATAL) and the server lives on.
            Ok(None) if self.out_of_memory() => Err(SandboxError::OutOfMemory {
                name: sandbox.name.clone(),
                limit_bytes: sandbox.memory_bytes,
                log_tail: self.log_tail(sandbox),
            }),
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                use std::os::unix::process::ExitStatusExt;
                drop(child);
                Err(SandboxError::Died {
                    name: sandbox.name.clone(),
                    exit_code: status
                        .code()
                        .map(i64::from)
                        .or(status.signal().map(|s| 128 + i64::from(s)))
                        .unwrap_or(-1),
                    oom: String::new(),
                    log_tail: self.log_tail(sandbox),
                })
            }
            Err(e) => Err(SandboxError::Io {
                action: "look at",
                name: sandbox.name.clone(),
                source: e,
            }),
        }
    }

    /// Whether the server logged an allocation it could not make
    /// (PostgreSQL's `out of memory` error, at its cap).
    fn out_of_memory(&self) -> bool {
        let log = std::fs::read(self.dir.join("server.log")).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        log.contains("ERROR:  out of memory") || log.contains("FATAL:  out of memory")
    }

    /// The last lines of the server's log, one line, secrets redacted.
    fn log_tail(&self, sandbox: &Sandbox) -> String {
        let text = std::fs::read(self.dir.join("server.log")).unwrap_or_default();
        let mut log = OutputLog::default();
        log.push(&text);
        log.finish();
        sandbox.password.redact(
            &log.tail
                .iter()
                .rev()
                .take(8)
                .rev()
                .cloned()
                .collect::<Vec<_>>()
                .join(" | "),
        )
    }

    /// A client command (`psql`, `pg_restore`, `pg_dump`, `timeout …`)
    /// connecting to the sandbox through its socket; the password goes in
    /// the environment.
    fn client(&self, sandbox: &Sandbox, cmd: &[&str]) -> Command {
        let program = if self.bin_dir.join(cmd[0]).is_file() {
            self.bin_dir.join(cmd[0])
        } else {
            PathBuf::from(cmd[0])
        };
        let mut c = Command::new(program);
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![self.bin_dir.clone()];
        paths.extend(std::env::split_paths(&path));
        c.args(&cmd[1..])
            .env("PATH", std::env::join_paths(paths).unwrap_or(path))
            .env("PGHOST", &self.dir)
            .env("PGPORT", PORT.to_string())
            .env("PGUSER", &sandbox.user)
            .env("PGPASSWORD", sandbox.password.expose())
            .env_remove("PGSERVICE")
            .env_remove("PGPASSFILE")
            .process_group(0)
            .kill_on_drop(true);
        c
    }

    /// Start a [`Server::client`] command with its output piped (and its
    /// input, when `with_stdin`), its process group guarded.
    fn spawn_client(
        &self,
        sandbox: &Sandbox,
        cmd: &[&str],
        with_stdin: bool,
    ) -> Result<(Child, crate::process::GroupGuard), SandboxError> {
        let child = self
            .client(sandbox, cmd)
            .stdin(if with_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| SandboxError::Io {
                action: "start",
                name: sandbox.name.clone(),
                source: e,
            })?;
        let group = crate::process::GroupGuard::new(child.id());
        Ok((child, group))
    }

    /// As the Docker sandbox's `exec_with_input`, as a host process.
    async fn exec(
        &self,
        sandbox: &Sandbox,
        cmd: &[&str],
        input: Option<&mut (dyn AsyncRead + Unpin + Send)>,
    ) -> Result<ExecOutcome, SandboxError> {
        let (mut child, group) = self.spawn_client(sandbox, cmd, input.is_some())?;
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let mut outcome = ExecOutcome::default();
        let mut log = OutputLog::default();
        let feed = async {
            match (input, stdin) {
                (Some(mut reader), Some(mut stdin)) => {
                    let copied = tokio::io::copy(&mut reader, &mut stdin).await;
                    let closed = stdin.shutdown().await;
                    drop(stdin);
                    match (copied, closed) {
                        (Ok(n), Ok(())) => (n, None),
                        (Ok(n), Err(e)) => (n, Some(format!("close the process's input: {e}"))),
                        (Err(e), _) => (
                            0,
                            Some(format!("the process stopped reading its input: {e}")),
                        ),
                    }
                }
                _ => (0, None),
            }
        };
        let collect = async {
            let mut a = [0u8; 8192];
            let mut b = [0u8; 8192];
            let (mut open_out, mut open_err) = (true, true);
            while open_out || open_err {
                tokio::select! {
                    n = stdout.read(&mut a), if open_out => match n {
                        Ok(0) | Err(_) => open_out = false,
                        Ok(n) => log.push(&a[..n]),
                    },
                    n = stderr.read(&mut b), if open_err => match n {
                        Ok(0) | Err(_) => open_err = false,
                        Ok(n) => log.push(&b[..n]),
                    },
                }
            }
        };
        let ((n, stdin_error), ()) = tokio::join!(feed, collect);
        outcome.stdin_bytes = n;
        outcome.stdin_error = stdin_error;
        outcome.exit_code = wait_client(sandbox, child, group).await?;
        log.finish();
        outcome.output = log;
        Ok(outcome)
    }

    /// As the Docker sandbox's `exec_to_writer`, as a host process.
    async fn exec_to_writer(
        &self,
        sandbox: &Sandbox,
        cmd: &[&str],
        out: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<(ExecOutcome, u64), SandboxError> {
        let (mut child, group) = self.spawn_client(sandbox, cmd, false)?;
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let mut log = OutputLog::default();
        let copy = async {
            let n = tokio::io::copy(&mut stdout, out).await;
            out.flush().await?;
            n
        };
        let errs = async {
            let mut b = Vec::new();
            let _ = stderr.read_to_end(&mut b).await;
            b
        };
        let (written, errs) = tokio::join!(copy, errs);
        log.push(&errs);
        let written = written.map_err(|e| SandboxError::Io {
            action: "write the output of",
            name: sandbox.name.clone(),
            source: e,
        })?;
        let exit_code = wait_client(sandbox, child, group).await?;
        log.finish();
        Ok((
            ExecOutcome {
                exit_code,
                output: log,
                ..Default::default()
            },
            written,
        ))
    }

    /// Stop the server (its whole process group) and delete its directory.
    async fn remove(&self) {
        if let Some(mut child) = self.child.lock().await.take() {
            stop_group(self.pid).await;
            let _ = child.wait().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Wait for a client started by [`Server::spawn_client`]; its exit code
/// (`None` when a signal ended it, which is never a success).
async fn wait_client(
    sandbox: &Sandbox,
    mut child: Child,
    mut group: crate::process::GroupGuard,
) -> Result<Option<i64>, SandboxError> {
    let status = child.wait().await.map_err(|e| SandboxError::Io {
        action: "wait for a process of",
        name: sandbox.name.clone(),
        source: e,
    })?;
    group.disarm();
    Ok(status.code().map(i64::from))
}

/// SIGQUIT the server's group (PostgreSQL's immediate shutdown), then
/// SIGKILL whatever is left after 5 s.
async fn stop_group(pid: Option<u32>) {
    let Some(pgid) = pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 1) else {
        return;
    };
    use nix::sys::signal::{killpg, Signal};
    let group = nix::unistd::Pid::from_raw(pgid);
    if killpg(group, Signal::SIGQUIT).is_err() {
        return;
    }
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // No signal (`None`) only probes whether a member is left.
        if killpg(group, None).is_err() {
            return;
        }
    }
    let _ = killpg(group, Signal::SIGKILL);
}

/// Create `path` (it must not exist) with mode 0600 holding `secret` and a
/// newline.
fn write_private(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{secret}")
}

fn write_marker(dir: &Path, marker: &Marker) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(marker).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!("{MARKER}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.join(MARKER))
}

/// Local sandboxes on this host (directories in the temporary directory
/// with a marker), as the engine-neutral [`SandboxInfo`]; `id` is the
/// directory.
pub fn sandboxes() -> Vec<SandboxInfo> {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(DIR_PREFIX) {
            continue;
        }
        let Ok(text) = std::fs::read(e.path().join(MARKER)) else {
            continue;
        };
        let Ok(m) = serde_json::from_slice::<Marker>(&text) else {
            continue;
        };
        let running = m.server_pid.is_some_and(crate::host::process_alive);
        out.push(SandboxInfo {
            id: e.path().display().to_string(),
            name,
            run_id: m.run_id,
            tier: m.tier,
            database: m.database,
            pid: Some(m.pid),
            host: Some(m.host),
            created: m.created,
            state: if running { "running" } else { "exited" }.into(),
        });
    }
    out
}

/// Remove the local sandbox in directory `id` (from [`sandboxes`]): stop
/// its server's process group and delete the directory.
pub async fn remove(id: &str) {
    let dir = PathBuf::from(id);
    if !dir
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(DIR_PREFIX))
    {
        return;
    }
    if let Ok(text) = std::fs::read(dir.join(MARKER)) {
        if let Ok(m) = serde_json::from_slice::<Marker>(&text) {
            stop_group(m.server_pid).await;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// uid and gid of the `postgres` OS user.
fn postgres_user() -> Option<(u32, u32)> {
    crate::host::user_ids("postgres")
}

/// Where this host's PostgreSQL server binaries are.
fn discover_bin_dir() -> Option<PathBuf> {
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
    {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && d.join("initdb").is_file() && d.join("postgres").is_file() {
            return Some(d);
        }
    }
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    majors.sort();
    if let Some((_, bin)) = majors.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .find(|d| d.join("initdb").is_file() && d.join("postgres").is_file())
}

/// `sandbox.engine = "local"`.
pub(super) const ENTRY: EngineEntry = EngineEntry {
    name: "local",
    fix: "install the PostgreSQL server package or set sandbox.bin_dir",
    connect: |config| {
        let bin_dir = config.bin_dir.clone();
        Box::pin(async move {
            LocalEngine::find(bin_dir.as_deref()).map(|e| Box::new(e) as Box<dyn Engine>)
        })
    },
    cpus: |_| std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
};

impl Engine for LocalEngine {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn uses_images(&self) -> bool {
        false
    }

    fn describe(&self) -> BoxFuture<'_, String> {
        Box::pin(async {
            format!(
                "{} in {}",
                self.version().await.unwrap_or_else(|| "PostgreSQL".into()),
                self.bin_dir.display()
            )
        })
    }

    fn start<'a>(
        &'a self,
        req: &'a SandboxRequest,
    ) -> BoxFuture<'a, Result<Sandbox, SandboxError>> {
        Box::pin(LocalEngine::start(self, req))
    }

    fn template_status<'a>(
        &'a self,
        _image: &'a str,
        _kind: &'static dyn crate::kind::DatabaseKind,
    ) -> BoxFuture<'a, super::TemplateStatus> {
        Box::pin(async move {
            if !self.use_template {
                return super::TemplateStatus::NotUsed(format!("{}=0", super::TEMPLATES_ENV));
            }
            let (dir, _) = self.template_dir().await;
            let built = std::fs::metadata(dir.join("password"))
                .and_then(|m| m.modified())
                .ok()
                .map(chrono::DateTime::<chrono::Utc>::from);
            match built {
                Some(built) if dir.join("data/PG_VERSION").is_file() => {
                    super::TemplateStatus::Ready {
                        tag: dir.display().to_string(),
                        built: Some(built),
                        build_seconds: None,
                        // (copied by `cp -a`, not into a volume)
                        copied: false,
                        spares: 0,
                    }
                }
                _ => super::TemplateStatus::Missing {
                    tag: dir.display().to_string(),
                },
            }
        })
    }

    fn sandboxes(&self) -> BoxFuture<'_, Result<Vec<SandboxInfo>, SandboxError>> {
        Box::pin(async { Ok(sandboxes()) })
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(remove(id))
    }
}

impl Handle for Server {
    fn scratch_path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    fn check_alive<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(Server::check_alive(self, sb))
    }

    fn log_tail<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, String> {
        Box::pin(async move { Server::log_tail(self, sb) })
    }

    fn exec<'a>(
        &'a self,
        sb: &'a Sandbox,
        cmd: &'a [&'a str],
        input: Option<&'a mut (dyn AsyncRead + Unpin + Send)>,
    ) -> BoxFuture<'a, Result<ExecOutcome, SandboxError>> {
        Box::pin(Server::exec(self, sb, cmd, input))
    }

    fn exec_to_writer<'a>(
        &'a self,
        sb: &'a Sandbox,
        cmd: &'a [&'a str],
        out: &'a mut (dyn AsyncWrite + Unpin + Send),
    ) -> BoxFuture<'a, Result<(ExecOutcome, u64), SandboxError>> {
        Box::pin(Server::exec_to_writer(self, sb, cmd, out))
    }

    fn remove<'a>(&'a self, _sb: &'a Sandbox) -> BoxFuture<'a, ()> {
        Box::pin(Server::remove(self))
    }

    fn how_to_connect(&self, sb: &Sandbox, dbname: &str) -> super::Connect {
        super::Connect {
            command: format!(
                "PGPASSWORD=\"$(cat {host}/password)\" psql -h {host} -p {port} -U {user} -d {dbname}",
                host = sb.host,
                port = sb.port,
                user = sb.user
            ),
            also: String::new(),
            remove: "drill reap".into(),
        }
    }
}
