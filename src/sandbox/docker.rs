//! Sandboxes as Docker containers, driven through the Docker Engine API
//! (bollard), never the docker CLI.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountTypeEnum, MountVolumeOptions, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWriteExt};

use futures_util::future::BoxFuture;

use super::input_pipe::{self, InputDir, InputPath};
use super::template::{self, TemplateStatus, TemplateUse};
use super::{
    Engine, EngineEntry, ExecOutcome, Handle, OutputLog, Sandbox, SandboxError, SandboxInfo,
    SandboxRequest, LABEL_DATABASE, LABEL_HOST, LABEL_MANAGED, LABEL_PID, LABEL_RUN_ID,
    LABEL_SNAPSHOT, LABEL_TIER,
};
use crate::kind::ContainerSpec;
use crate::secret::Secret;

/// `/dev/shm` size for the sandbox (bytes); Docker's 64 MiB default is too
/// small for parallel queries and index builds.
const SHM_BYTES: i64 = 256 * 1024 * 1024;
/// Largest write into a process's standard input through the exec
/// attach stream (bytes).
const STDIN_BUF_BYTES: usize = 256 * 1024;
/// Where an exec's input is written.
type Writer = std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>;
/// The writer of an exec's input, once it can be had (a FIFO's reader
/// must open it first).
type OpenWriter<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Writer>> + Send + 'a>>;
/// An exec's output as the attach stream gives it.
type ExecOutput = std::pin::Pin<
    Box<
        dyn futures_util::Stream<
                Item = Result<bollard::container::LogOutput, bollard::errors::Error>,
            > + Send,
    >,
>;
/// Read/write timeout for Docker API calls (seconds).
const API_TIMEOUT_S: u64 = 600;

/// `sandbox.engine = "docker"` (the default).
pub(super) const ENTRY: EngineEntry = EngineEntry {
    name: "docker",
    fix: "start Docker, or set DOCKER_HOST, or use sandbox.engine = \"local\"",
    connect: |_| {
        Box::pin(async {
            DockerEngine::connect()
                .await
                .map(|e| Box::new(e) as Box<dyn Engine>)
        })
    },
    cpus: |config| config.cpus.floor() as u32,
};

/// A connection to a Docker engine.
#[derive(Clone)]
pub struct DockerEngine {
    docker: Docker,
    /// How sandboxes use templates ([`TEMPLATES_ENV`]).
    template_mode: template::Mode,
    /// The engine's storage driver (`overlay2`, `fuse-overlayfs`, …).
    storage_driver: String,
    /// Templates found, built or failed in this process.
    templates: Arc<template::Registry>,
    /// How processes in sandboxes get their input ([`input_pipe`]).
    input: Arc<InputPath>,
}

/// How Docker sandboxes use templates: `0` (or `off`) starts every sandbox
/// without one; `layer` and `copy` force a way (see
/// [`template::Mode`]); unset, the storage driver decides.
pub const TEMPLATES_ENV: &str = "DRILL_SANDBOX_TEMPLATES";

/// What a container is made from (see [`DockerEngine::launch`]).
pub(super) struct Launch<'a> {
    /// Image reference or id.
    pub image: &'a str,
    /// Command passed to the entrypoint (`None`: the image's).
    pub cmd: Option<Vec<String>>,
    /// Where the data directory comes from.
    pub data: DataDir<'a>,
}

/// Where a sandbox's data directory comes from ([`template`] module
/// docs); the paths are in the container.
#[derive(Clone, Copy)]
pub(super) enum DataDir<'a> {
    /// The image's own, in the container's layer.
    Image,
    /// An anonymous volume at this path, which Docker fills from the
    /// image when the container is created.
    Volume(&'a str),
    /// An empty anonymous volume at this path, into which the wrapped
    /// entrypoint copies the seed before the server starts.
    Seed(&'a str, &'a template::Seed),
    /// The seed's spare copy, the named volume given last, at this path,
    /// claimed by the wrapped entrypoint.
    Spare(&'a str, &'a template::Seed, &'a str),
}

/// A volume mounted at `target`: the named volume `source`, or an
/// anonymous one; `read_only`; with `no_copy`, Docker leaves it empty
/// instead of filling it from the image (Docker Engine API, `Mount`).
pub(super) fn volume_mount(
    target: &str,
    source: Option<&str>,
    read_only: bool,
    no_copy: bool,
) -> Mount {
    Mount {
        target: Some(target.to_string()),
        source: source.map(str::to_string),
        typ: Some(MountTypeEnum::VOLUME),
        read_only: read_only.then_some(true),
        volume_options: no_copy.then(|| MountVolumeOptions {
            no_copy: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Drill's labels on a container made for `req`: managed, this process
/// and host, and `req`'s run, tier, database and snapshot.
pub(super) fn sandbox_labels(req: &SandboxRequest) -> HashMap<String, String> {
    let pid = std::process::id().to_string();
    let host = crate::host::hostname();
    [
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
    .collect()
}

/// A sandbox's container, as its [`Handle`].
struct Container {
    docker: Docker,
    /// OS user of processes drill runs in it (the kind's).
    exec_user: &'static str,
    /// Environment of those processes (`NAME=VALUE`).
    exec_env: Vec<String>,
    /// The server's port inside the container (`5432/tcp`).
    inner_port: &'static str,
    /// drill's input directory, mounted at [`input_pipe::INPUT_DIR`]
    /// (`None`: input goes through the attach stream).
    input: Option<Arc<InputDir>>,
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

/// Force-remove container `id` with its anonymous volumes, and the spare
/// copy of a template it had as its data directory (a named volume,
/// [`template::SPARE_PREFIX`]). Removal is best-effort by design: the
/// run's label sweep catches what this misses.
pub(super) async fn remove_container(docker: &Docker, id: &str) {
    let spares: Vec<String> = docker
        .inspect_container(
            id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .ok()
        .and_then(|c| c.mounts)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.name)
        .filter(|n| n.starts_with(template::SPARE_PREFIX))
        .collect();
    let opts = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    let _ = docker.remove_container(id, Some(opts)).await;
    for volume in spares {
        template::drop_volume(docker, &volume).await;
    }
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
        let info = docker.info().await.ok().unwrap_or_default();
        let input = InputPath::decide(
            &endpoint,
            info.operating_system.as_deref().unwrap_or(""),
            info.name.as_deref().unwrap_or(""),
        );
        Ok(DockerEngine {
            docker,
            template_mode: template::Mode::parse(std::env::var(TEMPLATES_ENV).ok().as_deref()),
            storage_driver: info.driver.unwrap_or_default(),
            templates: Arc::default(),
            input: Arc::new(input),
        })
    }

    /// Whether `image` is present on the engine (no pull).
    pub async fn image_present(&self, image: &str) -> bool {
        self.docker.inspect_image(image).await.is_ok()
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
                    "not present locally and the pull did not finish within {}",
                    crate::duration::human(timeout)
                ),
            }),
        }
    }

    /// Create and start a sandbox and wait until it accepts connections on
    /// its published port. A sandbox that needs a running server starts
    /// from its image's template (built first if there is none; see
    /// [`super::template`]) and gets its own password right after its
    /// server is ready; when no template can be had it starts cold, with a
    /// warning in [`Sandbox::warnings`] the first time. On any failure the
    /// container is removed before returning.
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
        let spec = req.kind.container(&password, req.memory_bytes, req.tuning);
        let mut warnings = Vec::new();
        if !req.held && self.template_mode != template::Mode::Off {
            match self.templates.resolve(self, req).await {
                Ok(t) => match self.start_from(req, &name, &spec, &password, &t).await {
                    Ok(sb) => return Ok(sb),
                    // The server itself is the problem: a cold start would
                    // fare no better.
                    Err(
                        e
                        @ (SandboxError::StartupTimeout { .. } | SandboxError::OutOfMemory { .. }),
                    ) => return Err(e),
                    Err(e) => {
                        self.templates.fail(&t.use_.tag);
                        warnings.push(format!(
                            "sandbox {name} could not start from template {}: {e}; it and later sandboxes of this run start without it",
                            t.use_.tag
                        ));
                    }
                },
                Err(template::Skip::Warn(w)) => warnings.push(w),
                Err(template::Skip::Quiet) => {}
            }
        }
        let cmd = if req.held {
            Some(spec.held_cmd.clone().ok_or_else(|| SandboxError::Api {
                action: "create",
                name: name.clone(),
                detail: format!(
                    "a {} sandbox cannot start without its server",
                    req.kind.title()
                ),
            })?)
        } else {
            spec.cmd.clone()
        };
        let mut sandbox = self
            .launch(
                req,
                &name,
                Launch {
                    image: &req.image,
                    cmd,
                    data: DataDir::Image,
                },
                &spec,
                password,
            )
            .await?;
        sandbox.warnings = warnings;
        if !req.held {
            if let Err(e) = sandbox.wait_ready(req.startup_timeout).await {
                sandbox.remove().await;
                return Err(e);
            }
        }
        Ok(sandbox)
    }

    /// Start a sandbox from template `t`: its data directory where the
    /// template keeps it, logged in once with the template's password to
    /// set the sandbox's own `password`, which is then proved to log in.
    /// Where sandboxes copy the template from its seed, a free spare copy
    /// is taken instead when there is one (a spare that fails is removed
    /// and the start is made again from the seed), and a new spare is then
    /// filled in the background for a later sandbox.
    async fn start_from(
        &self,
        req: &SandboxRequest,
        name: &str,
        spec: &ContainerSpec,
        password: &Secret,
        t: &template::Template,
    ) -> Result<Sandbox, SandboxError> {
        let path = template::DATA_DIR;
        let copied = self.template_mode.copies(&self.storage_driver);
        let Some(seed) = t.seed.as_ref().filter(|_| copied) else {
            let data = if copied {
                DataDir::Volume(path)
            } else {
                DataDir::Image
            };
            return self.start_on(req, name, spec, password, t, data).await;
        };
        let spare = template::free_spare(&self.docker, t).await;
        let tries = spare
            .as_deref()
            .map(|v| DataDir::Spare(path, seed, v))
            .into_iter()
            .chain([DataDir::Seed(path, seed)]);
        let mut started = None;
        for data in tries {
            let r = self.start_on(req, name, spec, password, t, data).await;
            // A spare taken by another sandbox, or never completed, went
            // with its container: copy the seed instead, unless the server
            // itself failed (a cold start would fare no better).
            let again = matches!(data, DataDir::Spare(..))
                && r.as_ref().is_err_and(|e| {
                    !matches!(
                        e,
                        SandboxError::StartupTimeout { .. } | SandboxError::OutOfMemory { .. }
                    )
                });
            started = Some(r);
            if !again {
                break;
            }
        }
        let started = started.expect("the seed is always tried");
        if started.is_ok() {
            let (docker, t, seed) = (self.docker.clone(), t.clone(), seed.clone());
            tokio::spawn(async move {
                // Not the backup's concern, nor the run's: said once, as
                // later starts are slower without spares.
                static SAID: std::sync::atomic::AtomicBool =
                    std::sync::atomic::AtomicBool::new(false);
                if let Err(e) = template::refill(&docker, &t, &seed).await {
                    if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        eprintln!(
                            "drill: note: no spare copy of template {} could be filled ({e}); later sandboxes copy its seed as they start (slower)",
                            t.use_.tag
                        );
                    }
                }
            });
        }
        started
    }

    /// [`Self::start_from`] with the data directory `data`.
    async fn start_on(
        &self,
        req: &SandboxRequest,
        name: &str,
        spec: &ContainerSpec,
        password: &Secret,
        t: &template::Template,
        data: DataDir<'_>,
    ) -> Result<Sandbox, SandboxError> {
        let mut spec = spec.clone();
        spec.place_data_dir(template::DATA_DIR);
        // A half-filled seed exits 125 at once: the next drill fills it
        // again.
        let drop_seed = || async {
            if let DataDir::Seed(_, seed) = data {
                template::drop_volume(&self.docker, &seed.volume).await;
            }
        };
        let launched = self
            .launch(
                req,
                name,
                Launch {
                    image: &t.use_.id,
                    cmd: spec.cmd.clone(),
                    data,
                },
                &spec,
                t.password.clone(),
            )
            .await;
        let mut sb = match launched {
            Ok(sb) => sb,
            Err(e) => {
                drop_seed().await;
                return Err(e);
            }
        };
        let result = async {
            sb.wait_ready(req.startup_timeout).await?;
            req.kind
                .set_password(&sb.endpoint(), password)
                .await
                .map_err(|detail| SandboxError::Api {
                    action: "set the password of",
                    name: sb.name.clone(),
                    detail,
                })?;
            sb.password = password.clone();
            sb.wait_ready(req.startup_timeout).await
        }
        .await;
        match result {
            Ok(()) => {
                sb.image = req.image.clone();
                sb.template = Some(TemplateUse {
                    copied: !matches!(data, DataDir::Image),
                    spare: matches!(data, DataDir::Spare(..)),
                    ..t.use_.clone()
                });
                Ok(sb)
            }
            Err(e) => {
                sb.remove().await;
                drop_seed().await;
                Err(e)
            }
        }
    }

    /// Whether sandboxes copy their template into a volume of their own
    /// ([`template::Mode`] on this engine's storage driver).
    pub(super) fn copies_templates(&self) -> bool {
        self.template_mode.copies(&self.storage_driver)
    }

    /// Create and start a container named `name` as `how` says for `spec`,
    /// with drill's labels (`req`'s), its port published on 127.0.0.1 and
    /// `req`'s caps; learn the published port. The sandbox comes back with
    /// `password` and without waiting for its server. On failure the
    /// container is removed.
    pub(super) async fn launch(
        &self,
        req: &SandboxRequest,
        name: &str,
        how: Launch<'_>,
        spec: &ContainerSpec,
        password: Secret,
    ) -> Result<Sandbox, SandboxError> {
        let labels = sandbox_labels(req);
        let ports = HashMap::from([(
            spec.port.to_string(),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(String::new()),
            }]),
        )]);
        let memory = i64::try_from(req.memory_bytes).unwrap_or(i64::MAX);
        // With a spare: the spare as the data directory, claimed by the
        // wrapped entrypoint. With a seed: the seed read-only, and an empty
        // anonymous volume the wrapped entrypoint copies it into. Either
        // way the image's command is given again (a new entrypoint drops
        // it).
        let (entrypoint, cmd, mounts, volumes) = match how.data {
            DataDir::Spare(path, seed, spare) => (
                Some(seed.spare_entrypoint.clone()),
                Some(how.cmd.unwrap_or_else(|| seed.image_cmd.clone())),
                Some(vec![volume_mount(path, Some(spare), false, true)]),
                None,
            ),
            DataDir::Seed(path, seed) => (
                Some(seed.entrypoint.clone()),
                Some(how.cmd.unwrap_or_else(|| seed.image_cmd.clone())),
                Some(vec![
                    volume_mount(template::SEED_DIR, Some(&seed.volume), true, false),
                    volume_mount(path, None, false, true),
                ]),
                None,
            ),
            // An anonymous volume: Docker fills it from the image's
            // directory when the container is created; removed with it.
            DataDir::Volume(path) => (
                None,
                how.cmd,
                None,
                Some(HashMap::from([(path.to_string(), HashMap::new())])),
            ),
            DataDir::Image => (None, how.cmd, None, None),
        };
        let mut input = self.input.dir().filter(|d| d.enabled()).cloned();
        let mounts = match &input {
            Some(dir) => Some(mounts.into_iter().flatten().chain([dir.mount()]).collect()),
            None => mounts,
        };
        let body = ContainerCreateBody {
            image: Some(how.image.to_string()),
            entrypoint,
            cmd,
            volumes,
            env: Some(spec.env.clone()),
            labels: Some(labels),
            exposed_ports: Some(HashMap::from([(spec.port.to_string(), HashMap::new())])),
            host_config: Some(HostConfig {
                port_bindings: Some(ports),
                mounts,
                memory: Some(memory),
                memory_swap: Some(memory),
                nano_cpus: Some((req.cpus * 1e9) as i64),
                shm_size: Some(SHM_BYTES.min(memory / 4)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::new().name(name).build();
        let created = match self
            .docker
            .create_container(Some(opts.clone()), body.clone())
            .await
        {
            // An engine that does not see drill's input directory (drill
            // itself in a container, another filesystem): sandboxes are
            // made without it and fed through the attach stream.
            Err(e) if input.as_ref().is_some_and(|d| e.to_string().contains(&d.host.display().to_string())) => {
                let dir = input.take().expect("checked");
                if dir.disable() {
                    eprintln!(
                        "drill: warning: the Docker engine cannot mount drill's input directory {} ({e}); restores of this run read their input through the exec stream (slower); {}=stdin says so from the start",
                        dir.host.display(),
                        input_pipe::INPUT_ENV
                    );
                }
                let mut body = body;
                if let Some(m) = body.host_config.as_mut().and_then(|h| h.mounts.as_mut()) {
                    m.retain(|m| m.target.as_deref() != Some(input_pipe::INPUT_DIR));
                }
                self.docker.create_container(Some(opts), body).await
            }
            other => other,
        }
        .map_err(|e| api_error("create", name, e))?;
        let container = Arc::new(Container {
            docker: self.docker.clone(),
            exec_user: spec.exec_user,
            exec_env: spec.exec_env.clone(),
            inner_port: spec.port,
            input,
        });
        let mut sandbox = Sandbox {
            handle: container.clone(),
            id: created.id,
            name: name.to_string(),
            image: how.image.to_string(),
            host: "127.0.0.1".into(),
            port: 0,
            user: spec.user.clone(),
            password,
            server_version: String::new(),
            memory_bytes: req.memory_bytes,
            kind: req.kind,
            template: None,
            warnings: Vec::new(),
        };
        match container.boot(&mut sandbox).await {
            Ok(()) => Ok(sandbox),
            Err(e) => {
                sandbox.remove().await;
                Err(e)
            }
        }
    }

    /// Whether sandboxes of `image` and `kind` would start from a ready
    /// template, for `drill doctor`.
    pub async fn template_status(
        &self,
        image: &str,
        kind: &'static dyn crate::kind::DatabaseKind,
    ) -> TemplateStatus {
        if self.template_mode == template::Mode::Off {
            return TemplateStatus::NotUsed(format!("{TEMPLATES_ENV}=0"));
        }
        let copied = self.template_mode.copies(&self.storage_driver);
        template::status(&self.docker, image, kind, copied).await
    }

    /// The Docker client.
    pub(super) fn docker(&self) -> &Docker {
        &self.docker
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

    /// Force-remove a container by id, with its anonymous volumes and
    /// the template spare it used.
    pub async fn remove(&self, id: &str) {
        remove_container(&self.docker, id).await;
    }
}

impl Container {
    /// Start the container and learn its published port.
    async fn boot(&self, sb: &mut Sandbox) -> Result<(), SandboxError> {
        self.docker
            .start_container(
                &sb.id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|e| api_error("start", &sb.name, e))?;
        let info = self
            .docker
            .inspect_container(
                &sb.id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| api_error("inspect", &sb.name, e))?;
        sb.port = info
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|p| p.get(self.inner_port).cloned().flatten())
            .and_then(|b| b.into_iter().find_map(|b| b.host_port))
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| SandboxError::Api {
                action: "inspect",
                name: sb.name.clone(),
                detail: format!("Docker reports no published port for {}", self.inner_port),
            })?;
        Ok(())
    }

    /// Fail if the container is no longer running, saying why (exit code,
    /// OOM kill) with the end of its log.
    ///
    /// # Errors
    /// [`SandboxError::Died`] or [`SandboxError::Api`].
    async fn check_alive(&self, sb: &Sandbox) -> Result<(), SandboxError> {
        let info = self
            .docker
            .inspect_container(
                &sb.id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| api_error("inspect", &sb.name, e))?;
        let state = info.state.unwrap_or_default();
        // Docker flags the container when its main process was killed for
        // memory; a backend killed while the postmaster lives only shows in
        // the cgroup's own count (cgroup v2 `memory.events`).
        if state.oom_killed == Some(true)
            || (state.running == Some(true) && self.oom_kills(sb).await > 0)
        {
            return Err(SandboxError::OutOfMemory {
                name: sb.name.clone(),
                limit_bytes: sb.memory_bytes,
                log_tail: self.log_tail(sb).await,
            });
        }
        if state.running == Some(true) {
            return Ok(());
        }
        Err(SandboxError::Died {
            name: sb.name.clone(),
            exit_code: state.exit_code.unwrap_or(-1),
            oom: if state.oom_killed == Some(true) {
                ", killed for memory (OOM)".into()
            } else {
                String::new()
            },
            log_tail: self.log_tail(sb).await,
        })
    }

    /// How many processes the kernel killed for memory in the sandbox's
    /// cgroup: the `oom_kill` line of `/sys/fs/cgroup/memory.events`
    /// (cgroup v2) or `/sys/fs/cgroup/memory/memory.oom_control` (cgroup
    /// v1, Linux ≥ 4.13); Linux kernel docs, "Control Group v2" and
    /// "Memory Resource Controller". 0 when neither can be read.
    async fn oom_kills(&self, sb: &Sandbox) -> u64 {
        let cmd = [
            "cat",
            "/sys/fs/cgroup/memory.events",
            "/sys/fs/cgroup/memory/memory.oom_control",
        ];
        let Ok((exec_id, mut output, _)) = self.attach(sb, &cmd, false).await else {
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
    async fn log_tail(&self, sb: &Sandbox) -> String {
        let opts = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail("8")
            .build();
        let mut stream = self.docker.logs(&sb.id, Some(opts));
        let mut log = OutputLog::default();
        while let Some(Ok(chunk)) = stream.next().await {
            log.push(&chunk.into_bytes());
        }
        log.finish();
        sb.password
            .redact(&log.tail.iter().cloned().collect::<Vec<_>>().join(" | "))
    }

    /// Run `cmd` inside the sandbox as the `postgres` OS user, feeding it
    /// `input` on standard input (then closing it), and collect its output.
    /// If the process exits before taking all input, feeding stops and
    /// `stdin_error` says so. Input goes through a FIFO in drill's input
    /// directory when the sandbox has it ([`input_pipe`]), else through
    /// the exec's attach stream; a container that cannot open the FIFO
    /// (the command did not run) gets the attach stream, as every later
    /// exec of this process does.
    ///
    /// # Errors
    /// [`SandboxError::Api`] when the exec cannot be created or inspected.
    async fn exec(
        &self,
        sb: &Sandbox,
        cmd: &[&str],
        input: Option<&mut (dyn AsyncRead + Unpin + Send)>,
    ) -> Result<ExecOutcome, SandboxError> {
        let Some(reader) = input else {
            let (exec_id, output, stdin) = self.attach(sb, cmd, false).await?;
            drop(stdin);
            return self
                .feed_and_collect(sb, &exec_id, output, None)
                .await
                .map(|(o, _)| o);
        };
        if let Some(dir) = self.input.as_ref().filter(|d| d.enabled()) {
            let why = match dir.fifo() {
                Ok(fifo) => {
                    let wrapped = fifo.wrap(cmd);
                    let wrapped: Vec<&str> = wrapped.iter().map(String::as_str).collect();
                    let (exec_id, output, stdin) = self.attach(sb, &wrapped, false).await?;
                    drop(stdin);
                    let open = Box::pin(async move {
                        let w = fifo.open_writer().await?;
                        Ok(Box::pin(w) as Writer)
                    });
                    let (outcome, opened) = self
                        .feed_and_collect(sb, &exec_id, output, Some((open, &mut *reader)))
                        .await?;
                    // Never opened: the command has not run and no input
                    // was read (module docs of `input_pipe`).
                    if opened {
                        return Ok(outcome);
                    }
                    format!(
                        "the sandbox did not open it: {}{}",
                        outcome.stdin_error.as_deref().unwrap_or("it ended first"),
                        match outcome.output.summary(3) {
                            o if o.trim().is_empty() => String::new(),
                            o => format!(": {o}"),
                        }
                    )
                }
                Err(e) => format!("it could not be made: {e}"),
            };
            if dir.disable() {
                eprintln!(
                    "drill: warning: sandbox {}: input through a pipe in {} failed ({why}); this and later restores of this run read their input through the exec stream (slower); {}=stdin says so from the start",
                    sb.name,
                    dir.host.display(),
                    input_pipe::INPUT_ENV
                );
            }
        }
        let (exec_id, output, stdin) = self.attach(sb, cmd, true).await?;
        let open = Box::pin(async move { Ok(stdin) });
        self.feed_and_collect(sb, &exec_id, output, Some((open, reader)))
            .await
            .map(|(o, _)| o)
    }

    /// Collect the output of exec `exec_id` until it ends, meanwhile
    /// feeding the reader into the writer `open` yields (closed at the end
    /// of the input, or when the process stops). Returns the outcome and
    /// whether the writer was had.
    async fn feed_and_collect(
        &self,
        sb: &Sandbox,
        exec_id: &str,
        mut output: ExecOutput,
        input: Option<(OpenWriter<'_>, &mut (dyn AsyncRead + Unpin + Send))>,
    ) -> Result<(ExecOutcome, bool), SandboxError> {
        let mut outcome = ExecOutcome::default();
        let mut log = OutputLog::default();
        let opened = std::sync::atomic::AtomicBool::new(false);
        let is_open = || opened.load(std::sync::atomic::Ordering::Relaxed);
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
            None => collect.await,
            Some((open, reader)) => {
                // Input closed whatever happened: a process must never wait
                // for input that will not come.
                let feed = async {
                    let mut writer = open.await?;
                    opened.store(true, std::sync::atomic::Ordering::Relaxed);
                    // Whole reads of the input in one write each (up to
                    // STDIN_BUF_BYTES), not tokio::io::copy's 8 KiB: every
                    // write through the attach stream crosses the daemon
                    // and the shim.
                    let mut buffered = tokio::io::BufReader::with_capacity(STDIN_BUF_BYTES, reader);
                    let copied = tokio::io::copy_buf(&mut buffered, &mut writer).await;
                    let closed = writer.shutdown().await;
                    drop(writer);
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
                        if is_open() {
                            collect.await;
                        } else {
                            // A wrapper that never had its FIFO may wait in
                            // its open for good: the command has not run.
                            let _ = tokio::time::timeout(Duration::from_secs(5), collect).await;
                        }
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
        outcome.exit_code = self.exit_code(sb, exec_id).await?;
        Ok((outcome, is_open()))
    }

    /// Run `cmd` inside the sandbox as the `postgres` OS user and copy its
    /// standard output to `out` as it comes; standard error is collected
    /// (bounded) in the outcome's `output`. `stdin_bytes` is left 0; the
    /// bytes written are returned beside the outcome.
    ///
    /// # Errors
    /// [`SandboxError::Api`] when the exec cannot be created or inspected;
    /// [`SandboxError::Io`] when writing to `out` fails.
    async fn exec_to_writer(
        &self,
        sb: &Sandbox,
        cmd: &[&str],
        out: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    ) -> Result<(ExecOutcome, u64), SandboxError> {
        use bollard::container::LogOutput;
        let (exec_id, mut output, _) = self.attach(sb, cmd, false).await?;
        let mut log = OutputLog::default();
        let mut written = 0u64;
        while let Some(item) = output.next().await {
            match item {
                Ok(LogOutput::StdOut { message }) => {
                    out.write_all(&message)
                        .await
                        .map_err(|e| SandboxError::Io {
                            action: "write the output of",
                            name: sb.name.clone(),
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
            name: sb.name.clone(),
            source: e,
        })?;
        log.finish();
        let outcome = ExecOutcome {
            exit_code: self.exit_code(sb, &exec_id).await?,
            output: log,
            ..Default::default()
        };
        Ok((outcome, written))
    }

    /// Create and start an exec of `cmd` as the `postgres` OS user, attached
    /// to its output (and standard input when `with_stdin`).
    async fn attach(
        &self,
        sb: &Sandbox,
        cmd: &[&str],
        with_stdin: bool,
    ) -> Result<(String, ExecOutput, Writer), SandboxError> {
        use bollard::exec::{CreateExecOptions, StartExecResults};
        let exec = self
            .docker
            .create_exec(
                &sb.id,
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
            .map_err(|e| api_error("exec in", &sb.name, e))?;
        let started = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| api_error("exec in", &sb.name, e))?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(SandboxError::Api {
                action: "exec in",
                name: sb.name.clone(),
                detail: "Docker started the exec detached".into(),
            });
        };
        Ok((exec.id, output, input))
    }

    /// The exit code of a finished exec (`None` if it still runs or Docker
    /// cannot tell).
    async fn exit_code(&self, sb: &Sandbox, exec_id: &str) -> Result<Option<i64>, SandboxError> {
        let inspect = self
            .docker
            .inspect_exec(exec_id)
            .await
            .map_err(|e| api_error("inspect exec in", &sb.name, e))?;
        Ok(if inspect.running == Some(true) {
            None
        } else {
            inspect.exit_code
        })
    }

    /// Remove the container (force, with its anonymous volumes).
    async fn remove(&self, sb: &Sandbox) {
        remove_container(&self.docker, &sb.id).await;
    }
}

impl Engine for DockerEngine {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn uses_images(&self) -> bool {
        true
    }

    fn describe(&self) -> BoxFuture<'_, String> {
        Box::pin(async {
            format!(
                "engine reachable (version {}); {}",
                self.version().await.unwrap_or_else(|| "?".into()),
                self.input.describe()
            )
        })
    }

    fn ensure_image<'a>(
        &'a self,
        image: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(DockerEngine::ensure_image(self, image, timeout))
    }

    fn image_present<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Option<bool>> {
        Box::pin(async move { Some(DockerEngine::image_present(self, image).await) })
    }

    fn image_env<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            self.docker
                .inspect_image(image)
                .await
                .ok()
                .and_then(|i| i.config)
                .and_then(|c| c.env)
                .unwrap_or_default()
        })
    }

    fn start<'a>(
        &'a self,
        req: &'a SandboxRequest,
    ) -> BoxFuture<'a, Result<Sandbox, SandboxError>> {
        Box::pin(DockerEngine::start(self, req))
    }

    fn template_status<'a>(
        &'a self,
        image: &'a str,
        kind: &'static dyn crate::kind::DatabaseKind,
    ) -> BoxFuture<'a, TemplateStatus> {
        Box::pin(DockerEngine::template_status(self, image, kind))
    }

    fn sandboxes(&self) -> BoxFuture<'_, Result<Vec<SandboxInfo>, SandboxError>> {
        Box::pin(DockerEngine::sandboxes(self))
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(DockerEngine::remove(self, id))
    }
}

impl Handle for Container {
    fn scratch_path(&self, name: &str) -> String {
        format!("/tmp/{name}")
    }

    fn check_alive<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(Container::check_alive(self, sb))
    }

    fn log_lines<'a>(&'a self, sb: &'a Sandbox, n: usize) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            let opts = LogsOptionsBuilder::new()
                .stdout(true)
                .stderr(true)
                .tail(&n.to_string())
                .build();
            let mut stream = self.docker.logs(&sb.id, Some(opts));
            let mut text = Vec::new();
            while let Some(Ok(chunk)) = stream.next().await {
                text.extend_from_slice(&chunk.into_bytes());
            }
            String::from_utf8_lossy(&text)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| sb.password.redact(l))
                .collect()
        })
    }

    fn log_tail<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, String> {
        Box::pin(Container::log_tail(self, sb))
    }

    fn exec<'a>(
        &'a self,
        sb: &'a Sandbox,
        cmd: &'a [&'a str],
        input: Option<&'a mut (dyn AsyncRead + Unpin + Send)>,
    ) -> BoxFuture<'a, Result<ExecOutcome, SandboxError>> {
        Box::pin(Container::exec(self, sb, cmd, input))
    }

    fn exec_to_writer<'a>(
        &'a self,
        sb: &'a Sandbox,
        cmd: &'a [&'a str],
        out: &'a mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    ) -> BoxFuture<'a, Result<(ExecOutcome, u64), SandboxError>> {
        Box::pin(Container::exec_to_writer(self, sb, cmd, out))
    }

    fn remove<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, ()> {
        Box::pin(Container::remove(self, sb))
    }

    fn how_to_connect(&self, sb: &Sandbox, dbname: &str) -> super::Connect {
        super::Connect {
            command: format!(
                "docker exec -it {} {}",
                sb.name,
                sb.kind.shell_command(&sb.user, dbname)
            ),
            also: format!(
                "or host 127.0.0.1 port {} user {}; its password: `docker exec {} printenv {}`",
                sb.port,
                sb.user,
                sb.name,
                sb.kind.password_env()
            ),
            remove: format!("docker rm -f -v {}", sb.name),
        }
    }
}
