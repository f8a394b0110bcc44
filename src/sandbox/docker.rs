//! Sandboxes as Docker containers, driven through the Docker Engine API
//! (bollard), never the docker CLI.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWriteExt};

use super::{
    ExecOutcome, OutputLog, SandboxError, LABEL_DATABASE, LABEL_HOST, LABEL_MANAGED, LABEL_PID,
    LABEL_RUN_ID, LABEL_SNAPSHOT, LABEL_TIER,
};
use crate::secret::Secret;

/// `/dev/shm` size for the sandbox (bytes); Docker's 64 MiB default is too
/// small for parallel queries and index builds.
const SHM_BYTES: i64 = 256 * 1024 * 1024;
/// Read/write timeout for Docker API calls (seconds).
const API_TIMEOUT_S: u64 = 600;

/// A connection to a Docker engine.
#[derive(Clone)]
pub struct DockerEngine {
    docker: Docker,
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
}

/// What runs a sandbox.
#[derive(Clone)]
pub(crate) enum Backend {
    /// A Docker container.
    Docker(Docker),
    /// A server on this host ([`super::local`]).
    Local(std::sync::Arc<super::local::Server>),
}

/// A running sandbox: a Docker container, or a local server
/// (`sandbox.engine = "local"`).
#[derive(Clone)]
pub struct Sandbox {
    pub(crate) backend: Backend,
    /// Container id (local: the sandbox's directory).
    pub id: String,
    /// Container name (`drill-<run id>-<database>`; local: the directory's
    /// name).
    pub name: String,
    /// Image it runs (local: `local:<binaries directory>`).
    pub image: String,
    /// Host address of the published port, always 127.0.0.1 (local: the
    /// directory holding the server's Unix socket; libpq and
    /// tokio-postgres read a host starting with `/` as one).
    pub host: String,
    /// Host port mapped to the server's 5432 (local: the socket's number).
    pub port: u16,
    /// Superuser name.
    pub user: String,
    /// Superuser password, random for this run.
    pub password: Secret,
    /// Server version as `server_version` reports it, e.g. `16.4`.
    pub server_version: String,
    /// The memory cap in bytes (`sandbox.memory`).
    pub memory_bytes: u64,
    /// The database kind of its server.
    pub kind: &'static dyn crate::kind::DatabaseKind,
    /// OS user of processes drill runs in it.
    pub(crate) exec_user: &'static str,
    /// Environment of those processes (`NAME=VALUE`).
    pub(crate) exec_env: Vec<String>,
    /// The server's port inside the container (`5432/tcp`).
    pub(crate) inner_port: &'static str,
}

/// Where Docker tools look for the engine when `DOCKER_HOST` is unset:
/// the default socket, then Docker Desktop's, Colima's and Rancher
/// Desktop's per-user sockets on macOS.
fn socket_candidates() -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from("/var/run/docker.sock")];
    if let Some(home) = std::env::var_os("HOME") {
        let home = PathBuf::from(home);
        v.push(home.join(".docker/run/docker.sock"));
        v.push(home.join(".docker/desktop/docker.sock"));
        v.push(home.join(".colima/default/docker.sock"));
        v.push(home.join(".rd/docker.sock"));
    }
    v
}

fn api_error(action: &'static str, name: &str, e: bollard::errors::Error) -> SandboxError {
    SandboxError::Api {
        action,
        name: name.into(),
        detail: e.to_string(),
    }
}

/// Force-remove container `id` with its anonymous volumes. Removal is
/// best-effort by design: the run's label sweep catches what this misses.
async fn force_remove(docker: &Docker, id: &str) {
    let opts = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    let _ = docker.remove_container(id, Some(opts)).await;
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

impl DockerEngine {
    /// Connect like the Docker tools do (`DOCKER_HOST`, else the first
    /// existing default socket), negotiate the API version with the engine
    /// and ping it.
    ///
    /// # Errors
    /// [`SandboxError::EngineUnreachable`].
    pub async fn connect() -> Result<Self, SandboxError> {
        let (docker, endpoint) = match std::env::var("DOCKER_HOST") {
            Ok(host) if !host.is_empty() => (Docker::connect_with_defaults(), host),
            _ => {
                let path = socket_candidates()
                    .into_iter()
                    .find(|p| p.exists())
                    .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"));
                let endpoint = format!("unix://{}", path.display());
                (
                    Docker::connect_with_unix(
                        &endpoint,
                        API_TIMEOUT_S,
                        bollard::API_DEFAULT_VERSION,
                    ),
                    endpoint,
                )
            }
        };
        let unreachable = |detail: String| SandboxError::EngineUnreachable {
            endpoint: endpoint.clone(),
            detail,
        };
        let docker = docker.map_err(|e| unreachable(e.to_string()))?;
        let docker = tokio::time::timeout(Duration::from_secs(15), docker.negotiate_version())
            .await
            .map_err(|_| unreachable("no answer within 15 s".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::time::timeout(Duration::from_secs(15), docker.ping())
            .await
            .map_err(|_| unreachable("no answer within 15 s".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(DockerEngine { docker })
    }

    /// Whether `image` is present on the engine (no pull).
    pub async fn image_present(&self, image: &str) -> bool {
        self.docker.inspect_image(image).await.is_ok()
    }

    /// The PostgreSQL major version an image declares in its environment
    /// (`PG_MAJOR`, as the Docker Hub `postgres` images and drill's offline
    /// build set it); `None` when it is absent or does not say.
    pub async fn image_pg_major(&self, image: &str) -> Option<u32> {
        let inspect = self.docker.inspect_image(image).await.ok()?;
        let env = inspect.config?.env?;
        env.iter()
            .find_map(|kv| kv.strip_prefix("PG_MAJOR="))
            .and_then(crate::restore::head::major_of)
    }

    /// The engine's version string, e.g. `28.2.2`.
    pub async fn version(&self) -> Option<String> {
        self.docker.version().await.ok().and_then(|v| v.version)
    }

    /// Make sure `image` is present, pulling it (bounded by `timeout`) if
    /// not.
    ///
    /// # Errors
    /// [`SandboxError::ImageMissing`] when it is absent and cannot be pulled.
    pub async fn ensure_image(&self, image: &str, timeout: Duration) -> Result<(), SandboxError> {
        if self.docker.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        let pull = async {
            let opts = CreateImageOptionsBuilder::new().from_image(image).build();
            let mut stream = self.docker.create_image(Some(opts), None, None);
            while let Some(item) = stream.next().await {
                item.map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        };
        match tokio::time::timeout(timeout, pull).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(detail)) => Err(SandboxError::ImageMissing {
                image: image.into(),
                detail: format!("not present locally and the pull failed: {detail}"),
            }),
            Err(_) => Err(SandboxError::ImageMissing {
                image: image.into(),
                detail: format!(
                    "not present locally and the pull did not finish within {} s",
                    timeout.as_secs()
                ),
            }),
        }
    }

    /// Create and start a sandbox and wait until it accepts connections on
    /// its published port. On any failure the container is removed before
    /// returning.
    ///
    /// # Errors
    /// [`SandboxError`] for API failures, a dead container or a readiness
    /// timeout.
    pub async fn start(&self, req: &SandboxRequest) -> Result<Sandbox, SandboxError> {
        let mut name = format!("drill-{}-{}", req.run_id, req.database);
        if let Some(s) = &req.snapshot {
            name = format!("{name}-{s}");
        }
        let password = Secret::random();
        let pid = std::process::id().to_string();
        let host = crate::drill::hostname();
        let labels: HashMap<String, String> = [
            (LABEL_MANAGED, "true"),
            (LABEL_PID, pid.as_str()),
            (LABEL_HOST, host.as_str()),
            (LABEL_RUN_ID, req.run_id.as_str()),
            (LABEL_TIER, req.tier.as_str()),
            (LABEL_DATABASE, req.database.as_str()),
            (LABEL_SNAPSHOT, req.snapshot.as_deref().unwrap_or("")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let spec = req.kind.container(&password, req.memory_bytes, req.tuning);
        let ports = HashMap::from([(
            spec.port.to_string(),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(String::new()),
            }]),
        )]);
        let memory = i64::try_from(req.memory_bytes).unwrap_or(i64::MAX);
        let body = ContainerCreateBody {
            image: Some(req.image.clone()),
            cmd: spec.cmd.clone(),
            env: Some(spec.env.clone()),
            labels: Some(labels),
            exposed_ports: Some(HashMap::from([(spec.port.to_string(), HashMap::new())])),
            host_config: Some(HostConfig {
                port_bindings: Some(ports),
                memory: Some(memory),
                memory_swap: Some(memory),
                nano_cpus: Some((req.cpus * 1e9) as i64),
                shm_size: Some(SHM_BYTES.min(memory / 4)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::new().name(&name).build();
        let created = self
            .docker
            .create_container(Some(opts), body)
            .await
            .map_err(|e| api_error("create", &name, e))?;
        let mut sandbox = Sandbox {
            backend: Backend::Docker(self.docker.clone()),
            id: created.id,
            name,
            image: req.image.clone(),
            host: "127.0.0.1".into(),
            port: 0,
            user: spec.user,
            password,
            server_version: String::new(),
            memory_bytes: req.memory_bytes,
            kind: req.kind,
            exec_user: spec.exec_user,
            exec_env: spec.exec_env,
            inner_port: spec.port,
        };
        match sandbox.boot(req.startup_timeout).await {
            Ok(()) => Ok(sandbox),
            Err(e) => {
                sandbox.remove().await;
                Err(e)
            }
        }
    }

    /// Ids of containers carrying `drill.run-id = run_id`.
    ///
    /// # Errors
    /// [`SandboxError::Api`].
    pub async fn containers_of_run(&self, run_id: &str) -> Result<Vec<String>, SandboxError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_RUN_ID}={run_id}")],
        )]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| api_error("list", run_id, e))?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }

    /// Every container carrying drill's sandbox label, running or not.
    ///
    /// # Errors
    /// [`SandboxError::Api`].
    pub async fn sandboxes(&self) -> Result<Vec<SandboxInfo>, SandboxError> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_MANAGED}=true")])]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| api_error("list", "drill sandboxes", e))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
                Some(SandboxInfo {
                    id: c.id?,
                    name: c
                        .names
                        .and_then(|n| n.into_iter().next())
                        .map(|n| n.trim_start_matches('/').to_string())
                        .unwrap_or_default(),
                    run_id: label(LABEL_RUN_ID),
                    tier: label(LABEL_TIER),
                    database: label(LABEL_DATABASE),
                    pid: label(LABEL_PID).parse().ok(),
                    host: labels.get(LABEL_HOST).cloned(),
                    created: chrono::DateTime::from_timestamp(c.created.unwrap_or(0), 0)
                        .unwrap_or_default(),
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Force-remove a container by id (with its anonymous volumes).
    pub async fn remove(&self, id: &str) {
        force_remove(&self.docker, id).await;
    }
}

impl Sandbox {
    /// A path inside the sandbox for a file drill puts there (a custom dump
    /// copied in for `pg_restore --jobs`): `/tmp/NAME` in a container, inside
    /// the sandbox's directory for the local engine. It goes when the
    /// sandbox goes.
    pub fn scratch_path(&self, name: &str) -> String {
        match &self.backend {
            Backend::Docker(_) => format!("/tmp/{name}"),
            Backend::Local(s) => s.dir().join(name).to_string_lossy().into_owned(),
        }
    }

    /// The Docker client of a container sandbox. Only the Docker paths
    /// call it: each public method sends a local sandbox elsewhere first.
    fn docker(&self) -> &Docker {
        match &self.backend {
            Backend::Docker(d) => d,
            Backend::Local(_) => unreachable!("a Docker call on a local sandbox"),
        }
    }

    async fn boot(&mut self, timeout: Duration) -> Result<(), SandboxError> {
        self.docker()
            .start_container(
                &self.id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|e| api_error("start", &self.name, e))?;
        let info = self
            .docker()
            .inspect_container(
                &self.id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| api_error("inspect", &self.name, e))?;
        self.port = info
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|p| p.get(self.inner_port).cloned().flatten())
            .and_then(|b| b.into_iter().find_map(|b| b.host_port))
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| SandboxError::Api {
                action: "inspect",
                name: self.name.clone(),
                detail: format!("Docker reports no published port for {}", self.inner_port),
            })?;
        self.wait_ready(timeout).await
    }

    /// Probe every 100 ms until the server answers its kind's probe over the
    /// published port, the way a client will use it; never sleep blindly.
    /// Whether the sandbox died is asked of the engine at most once a second
    /// (it costs an inspect and an exec), so readiness is seen within 100 ms.
    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), SandboxError> {
        let started = Instant::now();
        let mut last_error;
        let mut alive_checked: Option<Instant> = None;
        loop {
            if alive_checked.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                self.check_alive().await?;
                alive_checked = Some(Instant::now());
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
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fail if the container is no longer running, saying why (exit code,
    /// OOM kill) with the end of its log.
    ///
    /// # Errors
    /// [`SandboxError::Died`] or [`SandboxError::Api`].
    pub async fn check_alive(&self) -> Result<(), SandboxError> {
        if let Backend::Local(s) = &self.backend {
            return s.check_alive(self).await;
        }
        let info = self
            .docker()
            .inspect_container(
                &self.id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| api_error("inspect", &self.name, e))?;
        let state = info.state.unwrap_or_default();
        // Docker flags the container when its main process was killed for
        // memory; a backend killed while the postmaster lives only shows in
        // the cgroup's own count (cgroup v2 `memory.events`).
        if state.oom_killed == Some(true)
            || (state.running == Some(true) && self.oom_kills().await > 0)
        {
            return Err(SandboxError::OutOfMemory {
                name: self.name.clone(),
                limit_bytes: self.memory_bytes,
                log_tail: self.log_tail().await,
            });
        }
        if state.running == Some(true) {
            return Ok(());
        }
        Err(SandboxError::Died {
            name: self.name.clone(),
            exit_code: state.exit_code.unwrap_or(-1),
            oom: if state.oom_killed == Some(true) {
                ", killed for memory (OOM)".into()
            } else {
                String::new()
            },
            log_tail: self.log_tail().await,
        })
    }

    /// How many processes the kernel killed for memory in the sandbox's
    /// cgroup: the `oom_kill` line of `/sys/fs/cgroup/memory.events`
    /// (cgroup v2) or `/sys/fs/cgroup/memory/memory.oom_control` (cgroup
    /// v1, Linux ≥ 4.13); Linux kernel docs, "Control Group v2" and
    /// "Memory Resource Controller". 0 when neither can be read.
    async fn oom_kills(&self) -> u64 {
        let cmd = [
            "cat",
            "/sys/fs/cgroup/memory.events",
            "/sys/fs/cgroup/memory/memory.oom_control",
        ];
        let Ok((exec_id, mut output, _)) = self.attach(&cmd, false).await else {
            return 0;
        };
        let _ = exec_id;
        let mut text = Vec::new();
        while let Some(Ok(chunk)) = output.next().await {
            if let bollard::container::LogOutput::StdOut { message } = chunk {
                text.extend_from_slice(&message);
            }
        }
        String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|l| l.strip_prefix("oom_kill "))
            .filter_map(|n| n.trim().parse::<u64>().ok())
            .sum()
    }

    /// The last lines of the container's log, one line, secrets redacted.
    pub async fn log_tail(&self) -> String {
        if let Backend::Local(s) = &self.backend {
            return s.log_tail(self);
        }
        let opts = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail("8")
            .build();
        let mut stream = self.docker().logs(&self.id, Some(opts));
        let mut log = OutputLog::default();
        while let Some(Ok(chunk)) = stream.next().await {
            log.push(&chunk.into_bytes());
        }
        log.finish();
        self.password
            .redact(&log.tail.iter().cloned().collect::<Vec<_>>().join(" | "))
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

    /// Run `cmd` inside the sandbox as the `postgres` OS user, feeding it
    /// `input` on standard input (then closing it), and collect its output.
    /// If the process exits before taking all input, feeding stops and
    /// `stdin_error` says so.
    ///
    /// # Errors
    /// [`SandboxError::Api`] when the exec cannot be created or inspected.
    pub async fn exec_with_input<R>(
        &self,
        cmd: &[&str],
        input: Option<R>,
    ) -> Result<ExecOutcome, SandboxError>
    where
        R: AsyncRead + Unpin,
    {
        if let Backend::Local(s) = &self.backend {
            return s.exec_with_input(self, cmd, input).await;
        }
        let (exec_id, mut output, mut stdin) = self.attach(cmd, input.is_some()).await?;
        let mut outcome = ExecOutcome::default();
        let mut log = OutputLog::default();
        let collect = async {
            while let Some(item) = output.next().await {
                match item {
                    Ok(chunk) => log.push(&chunk.into_bytes()),
                    Err(e) => {
                        log.push(format!("\nerror: output stream broke: {e}\n").as_bytes());
                        break;
                    }
                }
            }
        };
        match input {
            None => {
                drop(stdin);
                collect.await;
            }
            Some(mut reader) => {
                // Input closed whatever happened: a process must never wait
                // for input that will not come.
                let feed = async {
                    let copied = tokio::io::copy(&mut reader, &mut stdin).await;
                    let closed = stdin.shutdown().await;
                    let n = copied?;
                    closed?;
                    Ok::<u64, std::io::Error>(n)
                };
                tokio::pin!(feed);
                tokio::pin!(collect);
                tokio::select! {
                    fed = &mut feed => {
                        match fed {
                            Ok(n) => outcome.stdin_bytes = n,
                            Err(e) => outcome.stdin_error = Some(e.to_string()),
                        }
                        collect.await;
                    }
                    () = &mut collect => {
                        // The process ended (or its output broke). It may
                        // have read everything just before exiting: give the
                        // feed a moment to reach the end of its input.
                        match tokio::time::timeout(Duration::from_secs(2), &mut feed).await {
                            Ok(Ok(n)) => outcome.stdin_bytes = n,
                            Ok(Err(e)) => outcome.stdin_error = Some(format!("the process stopped reading its input: {e}")),
                            Err(_) => outcome.stdin_error = Some("the process exited before reading all of its input".into()),
                        }
                    }
                }
            }
        }
        log.finish();
        outcome.output = log;
        outcome.exit_code = self.exit_code(&exec_id).await?;
        Ok(outcome)
    }

    /// Run `cmd` inside the sandbox as the `postgres` OS user and copy its
    /// standard output to `out` as it comes; standard error is collected
    /// (bounded) in the outcome's `output`. `stdin_bytes` is left 0; the
    /// bytes written are returned beside the outcome.
    ///
    /// # Errors
    /// [`SandboxError::Api`] when the exec cannot be created or inspected;
    /// [`SandboxError::Io`] when writing to `out` fails.
    pub async fn exec_to_writer<W>(
        &self,
        cmd: &[&str],
        out: &mut W,
    ) -> Result<(ExecOutcome, u64), SandboxError>
    where
        W: tokio::io::AsyncWrite + Unpin,
    {
        if let Backend::Local(s) = &self.backend {
            return s.exec_to_writer(self, cmd, out).await;
        }
        use bollard::container::LogOutput;
        let (exec_id, mut output, _) = self.attach(cmd, false).await?;
        let mut log = OutputLog::default();
        let mut written = 0u64;
        while let Some(item) = output.next().await {
            match item {
                Ok(LogOutput::StdOut { message }) => {
                    out.write_all(&message)
                        .await
                        .map_err(|e| SandboxError::Io {
                            action: "write the output of",
                            name: self.name.clone(),
                            source: e,
                        })?;
                    written += message.len() as u64;
                }
                Ok(other) => log.push(&other.into_bytes()),
                Err(e) => {
                    log.push(format!("\nerror: output stream broke: {e}\n").as_bytes());
                    break;
                }
            }
        }
        out.flush().await.map_err(|e| SandboxError::Io {
            action: "write the output of",
            name: self.name.clone(),
            source: e,
        })?;
        log.finish();
        let outcome = ExecOutcome {
            exit_code: self.exit_code(&exec_id).await?,
            output: log,
            ..Default::default()
        };
        Ok((outcome, written))
    }

    /// Create and start an exec of `cmd` as the `postgres` OS user, attached
    /// to its output (and standard input when `with_stdin`).
    async fn attach(
        &self,
        cmd: &[&str],
        with_stdin: bool,
    ) -> Result<
        (
            String,
            std::pin::Pin<
                Box<
                    dyn futures_util::Stream<
                            Item = Result<bollard::container::LogOutput, bollard::errors::Error>,
                        > + Send,
                >,
            >,
            std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
        ),
        SandboxError,
    > {
        use bollard::exec::{CreateExecOptions, StartExecResults};
        let exec = self
            .docker()
            .create_exec(
                &self.id,
                CreateExecOptions {
                    attach_stdin: Some(with_stdin),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                    user: Some(self.exec_user.to_string()),
                    env: (!self.exec_env.is_empty()).then(|| self.exec_env.clone()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| api_error("exec in", &self.name, e))?;
        let started = self
            .docker()
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| api_error("exec in", &self.name, e))?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(SandboxError::Api {
                action: "exec in",
                name: self.name.clone(),
                detail: "Docker started the exec detached".into(),
            });
        };
        Ok((exec.id, output, input))
    }

    /// The exit code of a finished exec (`None` if it still runs or Docker
    /// cannot tell).
    async fn exit_code(&self, exec_id: &str) -> Result<Option<i64>, SandboxError> {
        let inspect = self
            .docker()
            .inspect_exec(exec_id)
            .await
            .map_err(|e| api_error("inspect exec in", &self.name, e))?;
        Ok(if inspect.running == Some(true) {
            None
        } else {
            inspect.exit_code
        })
    }

    /// Remove the container (force, with its anonymous volumes).
    pub async fn remove(&self) {
        if let Backend::Local(s) = &self.backend {
            return s.remove().await;
        }
        force_remove(self.docker(), &self.id).await;
    }
}
