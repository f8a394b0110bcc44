//! Sandbox templates for the Docker engine: a data directory initialised
//! once and kept as a local image, so a sandbox starts its server at once
//! instead of running `initdb` (or `mariadb-install-db`) and a temporary
//! server first.
//!
//! A template is made per (source image id, kind, superuser, the
//! environment the entrypoint initialises from except the password, the
//! kind's base server arguments, [`FORMAT_VERSION`]): a container of the
//! source image runs with its data directory at [`DATA_DIR`] (a path
//! outside the directories the image declares as `VOLUME`, whose contents
//! `docker commit` would not keep; `PGDATA` for PostgreSQL, `--datadir` for
//! MariaDB/MySQL, both documented behaviour of the official images), is
//! stopped cleanly (the image's stop signal, a bounded wait, exit code 0)
//! and committed as `drill-template-<kind>:<12 hex digits of the key>`. A
//! new or rebuilt source image has another id, hence another key: the old
//! template is no longer used.
//!
//! A sandbox started from it runs the same entrypoint with the same data
//! directory path; the entrypoint finds an initialised cluster and starts
//! the server directly. The template was initialised with its own random
//! password (label [`LABEL_PASSWORD`]); right after the sandbox's server is
//! ready drill logs in once with it and sets the sandbox's own random
//! password ([`crate::kind::DatabaseKind::set_password`]), so the template
//! password is dead in every sandbox.
//!
//! Where sandboxes copy the template (storage drivers whose copy-on-write
//! cannot be trusted with deletions, [`Mode`]), Docker filling each
//! sandbox's volume from the image reads the data directory through the
//! image's layers (on `fuse-overlayfs` a user-space filesystem: most of a
//! start). So the template's data directory is also kept once in a named
//! volume, its *seed* (`drill-template-seed-<12 hex of the template image
//! id>`, label [`LABEL_SEED_OF`]), filled by a short container that copies
//! it and then writes [`SEED_COMPLETE`]. A sandbox mounts the seed
//! read-only at [`SEED_DIR`] and an empty volume of its own at
//! [`DATA_DIR`], and its entrypoint is wrapped by `sh -c` in a copy (`cp
//! -a`) from the seed before the image's own entrypoint runs with the
//! image's command. A seed without its completion file (a drill killed
//! while filling it) makes the sandbox exit with status 125 and a message;
//! drill then removes the seed (the next drill fills it again) and starts
//! the sandbox as before. Images whose user is not root, or without `sh`
//! and `cp`, are not seeded: Docker fills their volumes as before.
//!
//! A sandbox that copied the seed leaves a *spare* behind: a fill container
//! of the template image (label [`LABEL_SPARE_FILL`], not a sandbox,
//! removed by Docker when it ends, at the lowest CPU weight) copies the
//! seed into a new volume (`drill-template-spare-<12 hex>-<random>`, label
//! [`LABEL_SPARE_OF`]) and writes [`SPARE_READY`] last; drill does not wait
//! for it. The next sandbox takes a spare no container uses
//! as its data directory instead of copying the seed, and
//! its entrypoint claims it by removing [`SPARE_READY`] before the image's
//! own entrypoint runs: one removal succeeds, so two sandboxes never share
//! a spare, and one never completed is refused (exit
//! [`SPARE_TAKEN_EXIT`]); that sandbox goes with the spare and starts again
//! from the seed. A spare is removed with the container that mounts it. A
//! template keeps at most [`MAX_SPARES`].
//!
//! Drills on one host build a template once: a lock file per template
//! (`flock` on `template-<hash>.lock` in [`cache_dir`]) makes a second one
//! wait and then find the template. Drills that still build it twice (other
//! hosts on one engine, a lock not had in time) both commit to the same tag;
//! each uses the image the tag names once it has committed, and its own
//! image is removed if the tag names another and nothing uses it. Within
//! one process a lock per tag keeps builds single, and a failed build is
//! remembered so that its warning is given once and later sandboxes start
//! cold at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use bollard::models::ContainerConfig;
use bollard::query_parameters::{
    CommitContainerOptions, InspectContainerOptions, RemoveImageOptionsBuilder,
    StopContainerOptionsBuilder,
};
use sha2::{Digest, Sha256};

use super::SandboxRequest;
use crate::kind::{ContainerSpec, DatabaseKind};
use crate::secret::Secret;

/// Version of the template layout; a change makes every older template
/// unused.
pub const FORMAT_VERSION: &str = "1";
/// Where a template (and every sandbox started from it) keeps its data
/// directory inside the container. Not under `/var/lib/postgresql/data`,
/// `/var/lib/postgresql` (postgres ≥ 18) or `/var/lib/mysql`, the official
/// images' `VOLUME`s; the entrypoints create it as root.
pub const DATA_DIR: &str = "/var/lib/drill-template";
/// Repository of template images: `drill-template-<kind>`.
pub const REPOSITORY_PREFIX: &str = "drill-template-";

/// Label on a template image: [`FORMAT_VERSION`].
pub const LABEL_FORMAT: &str = "drill.template.format";
/// Label: the id of the image the template was made from (`sha256:…`).
pub const LABEL_SOURCE_ID: &str = "drill.template.source-image";
/// Label: the reference it was made from (`postgres:16`).
pub const LABEL_SOURCE_REF: &str = "drill.template.source-ref";
/// Label: the database kind (`postgresql`, `mariadb`, `mysql`).
pub const LABEL_KIND: &str = "drill.template.kind";
/// Label: the superuser made by the entrypoint.
pub const LABEL_SUPERUSER: &str = "drill.template.superuser";
/// Label: the template's own random superuser password, used once per
/// sandbox to set the sandbox's password.
pub const LABEL_PASSWORD: &str = "drill.template.password";
/// Label: the full key (SHA-256 hex) the tag is cut from.
pub const LABEL_KEY: &str = "drill.template.key";
/// Label: when it was built (RFC 3339, UTC).
pub const LABEL_BUILT: &str = "drill.template.built";
/// Label: seconds the build took (start to commit).
pub const LABEL_BUILD_SECONDS: &str = "drill.template.build-seconds";
/// Label: [`DATA_DIR`] as it was when built.
pub const LABEL_DATA_DIR: &str = "drill.template.data-dir";
/// Where a sandbox sees its template's seed volume (read-only).
pub const SEED_DIR: &str = "/var/lib/drill-template-seed";
/// The file that ends a complete seed (not copied into sandboxes).
pub const SEED_COMPLETE: &str = ".drill-seed-complete";
/// Label on a seed volume: the id of the template image it holds.
pub const LABEL_SEED_OF: &str = "drill.template.seed-of";
/// Exit status of a sandbox whose seed is incomplete (before its server).
pub const SEED_INCOMPLETE_EXIT: i64 = 125;
/// Label on a spare volume: the id of the template image it is a copy of.
pub const LABEL_SPARE_OF: &str = "drill.template.spare-of";
/// Label on the container that fills a spare (not a sandbox).
pub const LABEL_SPARE_FILL: &str = "drill.template.spare-fill";
/// The file that ends a complete, unclaimed spare; the sandbox that
/// claims the spare removes it before its server starts.
pub const SPARE_READY: &str = ".drill-spare-ready";
/// Exit status of a sandbox whose spare was taken by another sandbox, or
/// never completed (before its server).
pub const SPARE_TAKEN_EXIT: i64 = 124;
/// Name prefix of spare volumes.
pub const SPARE_PREFIX: &str = "drill-template-spare-";
/// Spares kept per template at most.
pub const MAX_SPARES: usize = 4;

/// Seconds to wait for the template's server to shut down cleanly before
/// Docker kills it (a kill makes the build fail).
const STOP_TIMEOUT_S: i32 = 60;

/// How sandboxes use templates (`DRILL_SANDBOX_TEMPLATES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `0` or `off`: every sandbox initialises its data directory.
    Off,
    /// `layer`: a sandbox writes to the template's data directory in place,
    /// copy-on-write in the image's layer (the fastest start).
    Layer,
    /// `copy`: a sandbox's data directory is an anonymous volume of its own
    /// that Docker fills from the template when the container is created
    /// (as with the official images' `VOLUME`s); removed with it.
    Copy,
    /// Unset (or anything else): `layer` on storage drivers whose
    /// copy-on-write keeps deletions (`overlay2`, `overlayfs`, `btrfs`,
    /// `zfs`), else `copy`: on `fuse-overlayfs` a file of the image's
    /// layer that was deleted, created anew and deleted again comes back
    /// (a server dropping a table or view twice in a restore would see it
    /// again).
    Auto,
}

impl Mode {
    /// The mode a `DRILL_SANDBOX_TEMPLATES` value names.
    pub fn parse(value: Option<&str>) -> Mode {
        match value.map(str::trim) {
            Some("0" | "off") => Mode::Off,
            Some("layer") => Mode::Layer,
            Some("copy") => Mode::Copy,
            _ => Mode::Auto,
        }
    }

    /// Whether a sandbox's data directory is copied into a volume, on an
    /// engine with storage `driver`.
    pub fn copies(self, driver: &str) -> bool {
        match self {
            Mode::Off | Mode::Layer => false,
            Mode::Copy => true,
            Mode::Auto => !matches!(driver, "overlay2" | "overlayfs" | "btrfs" | "zfs"),
        }
    }
}

/// Whether sandboxes of an image start from a template, for `drill doctor`.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplateStatus {
    /// The engine does not use templates (the local engine), or they are
    /// switched off; the reason.
    NotUsed(String),
    /// The template exists: its tag, when it was built, how long that
    /// took (seconds) and whether sandboxes copy it into a volume.
    Ready {
        /// Whether each sandbox copies it into a volume ([`Mode`]).
        copied: bool,
        /// Spare copies ready for the next sandboxes (no container uses
        /// them).
        spares: usize,
        /// `drill-template-<kind>:<hash>`.
        tag: String,
        /// When it was built.
        built: Option<chrono::DateTime<chrono::Utc>>,
        /// Seconds the build took.
        build_seconds: Option<f64>,
    },
    /// Not built yet: the first sandbox of the image builds it, as `tag`.
    Missing {
        /// The tag it will have.
        tag: String,
    },
    /// Templates cannot be used with this image: why.
    Unusable(String),
}

/// How a sandbox was started from a template.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateUse {
    /// The template's tag, `drill-template-<kind>:<hash>`.
    pub tag: String,
    /// The template image's id (`sha256:…`).
    pub id: String,
    /// Whether this start built it (seconds the build took), or found it.
    pub built_seconds: Option<f64>,
    /// Whether the sandbox's data directory is a copy in a volume of its
    /// own ([`Mode::Copy`]) rather than the template's layer.
    pub copied: bool,
    /// Whether that copy was a spare made before the sandbox started
    /// (else the sandbox copied the seed as it started).
    pub spare: bool,
}

/// A template found or built, ready to start sandboxes from.
#[derive(Clone)]
pub(super) struct Template {
    /// Tag and id, and whether it was built now.
    pub use_: TemplateUse,
    /// The template's superuser password.
    pub password: Secret,
    /// Its seed volume, when sandboxes copy the template ([`Mode::Copy`])
    /// and the seed could be had: they copy from it instead of Docker
    /// filling their volume from the image.
    pub seed: Option<Seed>,
}

/// What identifies a template of one image and kind.
pub(super) struct Key {
    /// SHA-256 hex of the identifying lines.
    pub hash: String,
    /// The source image's id.
    pub image_id: String,
    /// `drill-template-<kind>:<first 12 hex digits>`.
    pub tag: String,
}

/// Why a sandbox starts without a template.
pub(super) enum Skip {
    /// Said before in this process (or nothing to say): no warning now.
    Quiet,
    /// A warning for the operator.
    Warn(String),
}

/// Templates this engine handle found, built or failed to build, with a
/// lock per tag.
#[derive(Default)]
pub(super) struct Registry {
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
}

#[derive(Default)]
enum Slot {
    #[default]
    Unknown,
    Ready(Template),
    Failed,
}

/// The spec a template of `kind` is initialised with: the kind's
/// container without restore tuning, its data directory at [`DATA_DIR`].
fn template_spec(kind: &dyn DatabaseKind, password: &Secret, memory_bytes: u64) -> ContainerSpec {
    let mut spec = kind.container(password, memory_bytes, false);
    spec.place_data_dir(DATA_DIR);
    spec
}

/// The environment of `spec` without the kind's password variable.
fn env_without_password(spec: &ContainerSpec, kind: &dyn DatabaseKind) -> Vec<String> {
    let prefix = format!("{}=", kind.password_env());
    let mut env: Vec<String> = spec
        .env
        .iter()
        .filter(|kv| !kv.starts_with(&prefix))
        .cloned()
        .collect();
    env.sort();
    env
}

/// Whether `path` lies in (or is) one of `volumes`.
fn under_volume<'a>(path: &str, volumes: impl IntoIterator<Item = &'a String>) -> Option<String> {
    volumes
        .into_iter()
        .find(|v| {
            let v = v.trim_end_matches('/');
            v.is_empty() || path == v || path.starts_with(&format!("{v}/"))
        })
        .cloned()
}

/// The key of the template of `image` for `kind`.
///
/// # Errors
/// Why no template can be made: the image cannot be inspected, the kind
/// cannot move its data directory, or [`DATA_DIR`] is under a `VOLUME`.
pub(super) async fn key(
    docker: &bollard::Docker,
    image: &str,
    kind: &'static dyn DatabaseKind,
) -> Result<Key, String> {
    let spec = template_spec(kind, &Secret::new(String::new()), 1 << 30);
    if spec.data_dir.is_none() {
        return Err(format!(
            "{} sandboxes cannot be told where to keep their data directory",
            kind.title()
        ));
    }
    let info = docker
        .inspect_image(image)
        .await
        .map_err(|e| format!("inspect image {image}: {e}"))?;
    let image_id = info
        .id
        .ok_or_else(|| format!("Docker reports no id for image {image}"))?;
    let volumes = info.config.and_then(|c| c.volumes).unwrap_or_default();
    if let Some(v) = under_volume(DATA_DIR, volumes.keys()) {
        return Err(format!(
            "image {image} declares VOLUME {v}, which holds {DATA_DIR}; a committed template would lose its data directory"
        ));
    }
    let mut lines = vec![
        format!("format={FORMAT_VERSION}"),
        format!("image={image_id}"),
        format!("kind={}", kind.name()),
        format!("superuser={}", spec.user),
        format!("data-dir={DATA_DIR}"),
        format!("cmd={:?}", spec.cmd),
    ];
    lines.extend(
        env_without_password(&spec, kind)
            .into_iter()
            .map(|e| format!("env={e}")),
    );
    let hash: String = Sha256::digest(lines.join("\n").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let tag = format!("{REPOSITORY_PREFIX}{}:{}", kind.name(), &hash[..12]);
    Ok(Key {
        hash,
        image_id,
        tag,
    })
}

/// The template tagged `key.tag`, if it exists and was made by this format
/// from `key`'s image.
pub(super) async fn find(docker: &bollard::Docker, key: &Key) -> Option<(Template, Labels)> {
    let info = docker.inspect_image(&key.tag).await.ok()?;
    let labels = info.config.and_then(|c| c.labels).unwrap_or_default();
    let label = |k: &str| labels.get(k).map(String::as_str).unwrap_or("");
    let valid = label(LABEL_FORMAT) == FORMAT_VERSION
        && label(LABEL_SOURCE_ID) == key.image_id
        && label(LABEL_KEY) == key.hash
        && label(LABEL_DATA_DIR) == DATA_DIR
        && !label(LABEL_PASSWORD).is_empty();
    if !valid {
        return None;
    }
    let template = Template {
        use_: TemplateUse {
            tag: key.tag.clone(),
            id: info.id?,
            built_seconds: None,
            copied: false,
            spare: false,
        },
        password: Secret::new(label(LABEL_PASSWORD).to_string()),
        seed: None,
    };
    Some((template, Labels(labels)))
}

/// A template image's labels.
pub(super) struct Labels(HashMap<String, String>);

impl Labels {
    /// When it was built.
    pub fn built(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.0
            .get(LABEL_BUILT)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    }

    /// Seconds its build took.
    pub fn build_seconds(&self) -> Option<f64> {
        self.0.get(LABEL_BUILD_SECONDS).and_then(|s| s.parse().ok())
    }
}

impl Registry {
    /// The template for `req` (found, or built now), or why the sandbox
    /// starts without one.
    pub(super) async fn resolve(
        &self,
        engine: &super::DockerEngine,
        req: &SandboxRequest,
    ) -> Result<Template, Skip> {
        let docker = engine.docker();
        let key = key(docker, &req.image, req.kind)
            .await
            .map_err(|e| self.note_unusable(req, e))?;
        let slot = self
            .slots
            .lock()
            .expect("template registry lock")
            .entry(key.tag.clone())
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        match &*slot {
            Slot::Ready(t) => return Ok(t.clone()),
            Slot::Failed => return Err(Skip::Quiet),
            Slot::Unknown => {}
        }
        if let Some((t, _)) = find(docker, &key).await {
            let t = self.seeded(engine, req, &key, t).await;
            *slot = Slot::Ready(t.clone());
            return Ok(t);
        }
        // Another drill on this host may be building it: wait for it, then
        // look again.
        let host_lock = host_lock(&key, req.startup_timeout + Duration::from_secs(60)).await;
        if let Some((t, _)) = find(docker, &key).await {
            drop(host_lock);
            let t = self.seeded(engine, req, &key, t).await;
            *slot = Slot::Ready(t.clone());
            return Ok(t);
        }
        let built = build(engine, req, &key).await;
        drop(host_lock);
        match built {
            Ok(t) => {
                let t = self.seeded(engine, req, &key, t).await;
                let mut found = t.clone();
                found.use_.built_seconds = None;
                *slot = Slot::Ready(found);
                Ok(t)
            }
            Err(e) => {
                *slot = Slot::Failed;
                Err(Skip::Warn(format!(
                    "could not build the sandbox template of image {} ({}): {e}; its sandboxes start without one (initialising the data directory each time, a few seconds slower); `drill doctor` shows the template, DRILL_SANDBOX_TEMPLATES=0 turns templates off",
                    req.image,
                    req.kind.title()
                )))
            }
        }
    }

    /// `t` with its seed when sandboxes copy templates ([`seed`]); without
    /// one (Docker fills their volumes, as before) when it cannot be had.
    async fn seeded(
        &self,
        engine: &super::DockerEngine,
        req: &SandboxRequest,
        key: &Key,
        mut t: Template,
    ) -> Template {
        if engine.copies_templates() {
            t.seed = seed(engine, req, key, &t).await.ok();
        }
        t
    }

    /// Forget the template `tag` after a sandbox could not start from it:
    /// later sandboxes of this process start without it.
    pub(super) fn fail(&self, tag: &str) {
        let slot = self
            .slots
            .lock()
            .expect("template registry lock")
            .entry(tag.to_string())
            .or_default()
            .clone();
        if let Ok(mut s) = slot.try_lock() {
            *s = Slot::Failed;
        };
    }

    /// The warning for an image that cannot have a template, given once per
    /// image and kind.
    fn note_unusable(&self, req: &SandboxRequest, why: String) -> Skip {
        let marker = format!("unusable:{}:{}", req.kind.name(), req.image);
        let mut slots = self.slots.lock().expect("template registry lock");
        if slots.contains_key(&marker) {
            return Skip::Quiet;
        }
        slots.insert(marker, Arc::new(tokio::sync::Mutex::new(Slot::Failed)));
        Skip::Warn(format!(
            "no sandbox template for image {} ({}): {why}; its sandboxes start without one (a few seconds slower)",
            req.image,
            req.kind.title()
        ))
    }
}

/// An exclusive lock on `template-<hash>.lock` in [`cache_dir`] (`flock`), so
/// that drills on one host build a template once: waits up to `wait` for a
/// drill holding it, then goes on without it (`None`; the commit is
/// idempotent, see the module docs), as it does when the file cannot be
/// opened. Released when dropped. The file stays (removing it would race
/// with a waiter).
async fn host_lock(key: &Key, wait: Duration) -> Option<Flock<std::fs::File>> {
    let path = cache_dir()
        .ok()?
        .join(format!("template-{}.lock", &key.hash[..12]));
    lock_file(&path, wait).await
}

/// Where drill keeps what it makes once per host (template locks, the
/// local engine's template clusters), created if missing:
/// `/var/cache/drill` for root (mode 0755: the local engine's server user
/// must reach it), else `$XDG_CACHE_HOME/drill` or `~/.cache/drill`
/// (0700), as the XDG base directory spec has it.
///
/// # Errors
/// When it cannot be created, or no home directory is known.
pub fn cache_dir() -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let (dir, mode) = if crate::host::is_root() {
        (std::path::PathBuf::from("/var/cache/drill"), 0o755)
    } else if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        (std::path::PathBuf::from(d).join("drill"), 0o700)
    } else if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        (std::path::PathBuf::from(h).join(".cache/drill"), 0o700)
    } else {
        return Err(std::io::Error::other(
            "no cache directory: neither XDG_CACHE_HOME nor HOME is set",
        ));
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(&dir)?;
    Ok(dir)
}

/// An exclusive `flock` on `path` (created 0600 if missing), waiting up to
/// `wait` for its holder; `None` when not had in time or the file cannot be
/// opened. Released when dropped.
pub(super) async fn lock_file(
    path: &std::path::Path,
    wait: Duration,
) -> Option<Flock<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let deadline = Instant::now() + wait;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .ok()?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Some(lock),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                file = f;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => return None,
        }
    }
}

/// Build the template `key` from `req`'s image: start a container of it
/// with the data directory at [`DATA_DIR`], wait until its server is ready,
/// stop it cleanly, commit it. The build container carries drill's sandbox
/// labels (`drill reap` removes one left by a killed run) and is removed
/// whatever happens.
async fn build(
    engine: &super::DockerEngine,
    req: &SandboxRequest,
    key: &Key,
) -> Result<Template, String> {
    let started = Instant::now();
    let password = Secret::random();
    let spec = template_spec(req.kind, &password, req.memory_bytes);
    let suffix = &Secret::random().expose()[..6].to_ascii_lowercase();
    let name = format!(
        "drill-template-{}-{}-{suffix}",
        req.kind.name(),
        &key.hash[..12]
    );
    let how = super::docker::Launch {
        image: &req.image,
        cmd: spec.cmd.clone(),
        data: super::docker::DataDir::Image,
    };
    let mut sb = engine
        .launch(req, &name, how, &spec, password.clone())
        .await
        .map_err(|e| e.to_string())?;
    let result = async {
        sb.wait_ready(req.startup_timeout)
            .await
            .map_err(|e| e.to_string())?;
        commit(engine.docker(), req, key, &sb, &password, started).await
    }
    .await;
    sb.remove().await;
    let id = result?;
    Ok(Template {
        use_: TemplateUse {
            tag: key.tag.clone(),
            id,
            built_seconds: Some(started.elapsed().as_secs_f64()),
            copied: false,
            spare: false,
        },
        password,
        seed: None,
    })
}

/// Stop the build container `sb` cleanly and commit it as `key.tag`; the id
/// of the image the tag names afterwards.
async fn commit(
    docker: &bollard::Docker,
    req: &SandboxRequest,
    key: &Key,
    sb: &super::Sandbox,
    password: &Secret,
    started: Instant,
) -> Result<String, String> {
    docker
        .stop_container(
            &sb.id,
            Some(StopContainerOptionsBuilder::new().t(STOP_TIMEOUT_S).build()),
        )
        .await
        .map_err(|e| format!("stop {}: {e}", sb.name))?;
    let state = docker
        .inspect_container(&sb.id, None::<InspectContainerOptions>)
        .await
        .map_err(|e| format!("inspect {}: {e}", sb.name))?
        .state
        .unwrap_or_default();
    if state.running == Some(true) || state.exit_code != Some(0) {
        return Err(format!(
            "its server did not shut down cleanly (exit code {}); container log ends: {}",
            state.exit_code.unwrap_or(-1),
            sb.log_tail().await
        ));
    }
    let (repo, tag) = key.tag.split_once(':').expect("template tag has a colon");
    let labels: HashMap<String, String> = [
        (LABEL_FORMAT, FORMAT_VERSION.to_string()),
        (LABEL_SOURCE_ID, key.image_id.clone()),
        (LABEL_SOURCE_REF, req.image.clone()),
        (LABEL_KIND, req.kind.name().to_string()),
        (LABEL_SUPERUSER, sb.user.clone()),
        (LABEL_PASSWORD, password.expose().to_string()),
        (LABEL_KEY, key.hash.clone()),
        (LABEL_BUILT, chrono::Utc::now().to_rfc3339()),
        (
            LABEL_BUILD_SECONDS,
            format!("{:.1}", started.elapsed().as_secs_f64()),
        ),
        (LABEL_DATA_DIR, DATA_DIR.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    // Docker adds the container's labels to the image's: the build
    // container's sandbox labels are blanked so that the image does not
    // carry one run's identity (each sandbox sets its own).
    .chain(
        super::SANDBOX_LABELS
            .iter()
            .map(|k| (k.to_string(), String::new())),
    )
    .collect();
    // Likewise the container's environment: the template password is not
    // left in the image's environment (each sandbox sets its own).
    let env = vec![format!("{}=", req.kind.password_env())];
    let committed = docker
        .commit_container(
            CommitContainerOptions {
                container: Some(sb.id.clone()),
                repo: Some(repo.to_string()),
                tag: Some(tag.to_string()),
                comment: Some(format!(
                    "drill sandbox template of {} ({})",
                    req.image,
                    req.kind.title()
                )),
                pause: false,
                ..Default::default()
            },
            ContainerConfig {
                labels: Some(labels),
                env: Some(env),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("docker commit {}: {e}", sb.name))?;
    // Another drill may have committed the same template since: use what
    // the tag names now, and drop this one if nothing uses it.
    let current = docker
        .inspect_image(&key.tag)
        .await
        .ok()
        .and_then(|i| i.id)
        .unwrap_or_else(|| committed.id.clone());
    if current != committed.id {
        let _ = docker
            .remove_image(
                &committed.id,
                Some(RemoveImageOptionsBuilder::new().noprune(false).build()),
                None,
            )
            .await;
    }
    Ok(current)
}

/// A template's seed volume and how a sandbox copies from it (module
/// docs).
#[derive(Debug, Clone)]
pub(super) struct Seed {
    /// The volume's name, `drill-template-seed-<12 hex>`.
    pub volume: String,
    /// The sandbox's entrypoint: `sh -c <copy, then exec "$@"> drill-seed`
    /// followed by the image's entrypoint.
    pub entrypoint: Vec<String>,
    /// The image's command, for a sandbox whose spec has none (a new
    /// entrypoint drops the image's command).
    pub image_cmd: Vec<String>,
    /// The entrypoint of a sandbox on a spare: `sh -c <claim the spare,
    /// then exec "$@"> drill-spare` followed by the image's entrypoint.
    pub spare_entrypoint: Vec<String>,
}

/// The seed volume's name for template image `template_id` (`sha256:…`).
fn seed_name(template_id: &str) -> String {
    let hex = template_id.trim_start_matches("sha256:");
    format!("drill-template-seed-{}", &hex[..hex.len().min(12)])
}

/// What a seeded sandbox's `sh -c` runs before the image's entrypoint:
/// refuse an incomplete seed, copy it into the sandbox's own volume
/// (owners, modes and times kept), then hand over.
fn copy_script() -> String {
    format!(
        "if [ ! -e {SEED_DIR}/{SEED_COMPLETE} ]; then echo \"drill: the template seed in {SEED_DIR} is incomplete (a drill stopped while filling it); drill removes it\" >&2; exit {SEED_INCOMPLETE_EXIT}; fi; cp -a {SEED_DIR}/. {DATA_DIR}/ && rm -f {DATA_DIR}/{SEED_COMPLETE} && exec \"$@\""
    )
}

/// The seed of template `t` (key `key`), filled now when there is none.
/// Filling holds the template's host lock, so drills on one host fill it
/// once and never use a half-filled one.
///
/// # Errors
/// Why sandboxes of `t` are filled by Docker instead: the image runs as
/// a user other than root, the volume name is taken, or filling failed
/// (the volume is removed then).
pub(super) async fn seed(
    engine: &super::DockerEngine,
    req: &SandboxRequest,
    key: &Key,
    t: &Template,
) -> Result<Seed, String> {
    let docker = engine.docker();
    let info = docker
        .inspect_image(&t.use_.id)
        .await
        .map_err(|e| format!("inspect {}: {e}", t.use_.tag))?;
    let config = info.config.unwrap_or_default();
    let user = config.user.unwrap_or_default();
    let root = user.is_empty() || ["root", "0"].contains(&user.split(':').next().unwrap_or(""));
    if !root {
        return Err(format!(
            "the image runs as user `{user}`, which cannot give the copy the seed's owners"
        ));
    }
    let image_entrypoint = config.entrypoint.unwrap_or_default();
    let wrap = |script: String, name: &str| {
        let mut e = vec!["sh".to_string(), "-c".to_string(), script, name.to_string()];
        e.extend(image_entrypoint.iter().cloned());
        e
    };
    let seed = Seed {
        volume: seed_name(&t.use_.id),
        entrypoint: wrap(copy_script(), "drill-seed"),
        image_cmd: config.cmd.unwrap_or_default(),
        spare_entrypoint: wrap(claim_script(), "drill-spare"),
    };
    let _host_lock = host_lock(key, req.startup_timeout + Duration::from_secs(60)).await;
    match docker.inspect_volume(&seed.volume).await {
        Ok(v) if v.labels.get(LABEL_SEED_OF) == Some(&t.use_.id) => return Ok(seed),
        Ok(_) => {
            return Err(format!(
                "volume {} exists and is not drill's seed of {}",
                seed.volume, t.use_.tag
            ))
        }
        Err(_) => {}
    }
    match tokio::time::timeout(req.startup_timeout, fill(engine, req, t, &seed.volume)).await {
        Ok(Ok(())) => Ok(seed),
        Ok(Err(e)) => {
            drop_volume(docker, &seed.volume).await;
            Err(e)
        }
        Err(_) => {
            drop_volume(docker, &seed.volume).await;
            Err(format!(
                "filling volume {} took longer than {} s",
                seed.volume,
                req.startup_timeout.as_secs()
            ))
        }
    }
}

/// Create the seed volume `volume` of `t` and fill it: a container of the
/// template image copies its data directory into it and then writes
/// [`SEED_COMPLETE`]. The container carries drill's labels (`drill reap`
/// removes one left by a killed run) and is removed whatever happens.
async fn fill(
    engine: &super::DockerEngine,
    req: &SandboxRequest,
    t: &Template,
    volume: &str,
) -> Result<(), String> {
    use bollard::models::{ContainerCreateBody, HostConfig, VolumeCreateOptions};
    let docker = engine.docker();
    let labels = HashMap::from([
        (LABEL_SEED_OF.to_string(), t.use_.id.clone()),
        (LABEL_KIND.to_string(), req.kind.name().to_string()),
    ]);
    docker
        .create_volume(VolumeCreateOptions {
            name: Some(volume.to_string()),
            labels: Some(labels),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("create volume {volume}: {e}"))?;
    let suffix = Secret::random().expose()[..6].to_ascii_lowercase();
    let name = format!("{volume}-fill-{suffix}");
    let body = ContainerCreateBody {
        image: Some(t.use_.id.clone()),
        entrypoint: Some(vec![
            "sh".into(),
            "-c".into(),
            format!("cp -a {DATA_DIR}/. {SEED_DIR}/ && touch {SEED_DIR}/{SEED_COMPLETE}"),
        ]),
        cmd: Some(Vec::new()),
        labels: Some(super::docker::sandbox_labels(req)),
        host_config: Some(HostConfig {
            mounts: Some(vec![super::docker::volume_mount(
                SEED_DIR,
                Some(volume),
                false,
                true,
            )]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = bollard::query_parameters::CreateContainerOptionsBuilder::new()
        .name(&name)
        .build();
    let created = docker
        .create_container(Some(opts), body)
        .await
        .map_err(|e| format!("create {name}: {e}"))?;
    let result = async {
        docker
            .start_container(
                &created.id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|e| format!("start {name}: {e}"))?;
        let mut wait = docker.wait_container(
            &created.id,
            None::<bollard::query_parameters::WaitContainerOptions>,
        );
        match futures_util::StreamExt::next(&mut wait).await {
            Some(Ok(r)) if r.status_code == 0 => Ok(()),
            Some(Ok(r)) => Err(format!("{name} exited with status {}", r.status_code)),
            Some(Err(e)) => Err(format!("{name}: {e}")),
            None => Err(format!("{name}: Docker did not say how it ended")),
        }
    }
    .await;
    engine.remove(&created.id).await;
    result
}

/// What a sandbox on a spare runs before the image's entrypoint: claim the
/// spare by removing its [`SPARE_READY`] file (one unlink succeeds: two
/// sandboxes never share a spare, and one never completed is refused),
/// then hand over.
fn claim_script() -> String {
    format!(
        "rm {DATA_DIR}/{SPARE_READY} 2>/dev/null || {{ echo \"drill: this spare copy of the template was taken by another sandbox or never completed; drill removes it\" >&2; exit {SPARE_TAKEN_EXIT}; }}; exec \"$@\""
    )
}

/// The spare volumes of template image `template_id`: `(name, in use)`
/// (in use: mounted by a container, a sandbox or the fill; Docker's
/// `dangling` filter).
pub(super) async fn spares(docker: &bollard::Docker, template_id: &str) -> Vec<(String, bool)> {
    let list = |dangling: Option<bool>| {
        let mut filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_SPARE_OF}={template_id}")],
        )]);
        if let Some(d) = dangling {
            filters.insert("dangling".to_string(), vec![d.to_string()]);
        }
        let opts = bollard::query_parameters::ListVolumesOptionsBuilder::new()
            .filters(&filters)
            .build();
        async move {
            docker
                .list_volumes(Some(opts))
                .await
                .ok()
                .and_then(|r| r.volumes)
                .unwrap_or_default()
                .into_iter()
                .map(|v| v.name)
                .collect::<Vec<_>>()
        }
    };
    let (all, free) = tokio::join!(list(None), list(Some(true)));
    all.into_iter()
        .map(|name| {
            let in_use = !free.contains(&name);
            (name, in_use)
        })
        .collect()
}

/// A spare of `t` no container uses, if there is one: a complete copy of
/// its seed that a sandbox can take as its data directory instead of
/// copying the seed while it starts. Its [`SPARE_READY`] file says it is
/// complete and unclaimed; the sandbox's entrypoint claims it.
pub(super) async fn free_spare(docker: &bollard::Docker, t: &Template) -> Option<String> {
    // One at random: sandboxes starting at once mostly take different
    // ones (two never share one: the claim decides).
    let free: Vec<String> = spares(docker, &t.use_.id)
        .await
        .into_iter()
        .filter(|(_, in_use)| !in_use)
        .map(|(name, _)| name)
        .collect();
    let pick = rand::random::<u64>() as usize % free.len().max(1);
    free.into_iter().nth(pick)
}

/// Fill a new spare of `t` from its seed in the background, unless
/// [`MAX_SPARES`] exist: a container of the template image (label
/// [`LABEL_SPARE_FILL`], not a sandbox; removed by Docker when it ends,
/// at the lowest CPU weight so that it takes what restores leave) copies
/// the seed into a new volume and writes [`SPARE_READY`] last. drill does
/// not wait for it; a spare left incomplete (a host stopped meanwhile) is
/// refused by the sandbox that tries it and removed then.
pub(super) async fn refill(
    docker: &bollard::Docker,
    t: &Template,
    seed: &Seed,
) -> Result<(), String> {
    use bollard::models::{ContainerCreateBody, HostConfig};
    remove_stale_fills(docker).await;
    if spares(docker, &t.use_.id).await.len() >= MAX_SPARES {
        return Ok(());
    }
    // Only from the seed as drill filled it (a fill would make a missing
    // one anew, empty; an incomplete one is refused by the fill itself).
    match docker.inspect_volume(&seed.volume).await {
        Ok(v) if v.labels.get(LABEL_SEED_OF) == Some(&t.use_.id) => {}
        _ => return Err(format!("seed {} is gone", seed.volume)),
    }
    let hex = t.use_.id.trim_start_matches("sha256:");
    let suffix = Secret::random().expose()[..8].to_ascii_lowercase();
    let volume = format!("{SPARE_PREFIX}{}-{suffix}", &hex[..hex.len().min(12)]);
    // Docker makes the volume, with its label, when it makes the fill: it
    // is never without a container until the fill has ended.
    let mut target = super::docker::volume_mount(DATA_DIR, Some(&volume), false, true);
    if let Some(o) = target.volume_options.as_mut() {
        o.labels = Some(HashMap::from([(
            LABEL_SPARE_OF.to_string(),
            t.use_.id.clone(),
        )]));
    }
    let body = ContainerCreateBody {
        image: Some(t.use_.id.clone()),
        entrypoint: Some(vec![
            "sh".into(),
            "-c".into(),
            format!(
                "[ -e {SEED_DIR}/{SEED_COMPLETE} ] || exit {SEED_INCOMPLETE_EXIT}; cp -a {SEED_DIR}/. {DATA_DIR}/ && rm -f {DATA_DIR}/{SEED_COMPLETE} && touch {DATA_DIR}/{SPARE_READY}"
            ),
        ]),
        cmd: Some(Vec::new()),
        labels: Some(HashMap::from([(LABEL_SPARE_FILL.to_string(), volume.clone())])),
        host_config: Some(HostConfig {
            auto_remove: Some(true),
            cpu_shares: Some(2),
            mounts: Some(vec![
                super::docker::volume_mount(SEED_DIR, Some(&seed.volume), true, false),
                target,
            ]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = bollard::query_parameters::CreateContainerOptionsBuilder::new()
        .name(&format!("{volume}-fill"))
        .build();
    let created = docker
        .create_container(Some(opts), body)
        .await
        .map_err(|e| format!("create the fill of {volume}: {e}"));
    let started = match created {
        Ok(c) => {
            let started = docker
                .start_container(
                    &c.id,
                    None::<bollard::query_parameters::StartContainerOptions>,
                )
                .await
                .map_err(|e| format!("start the fill of {volume}: {e}"));
            if started.is_err() {
                super::docker::remove_container(docker, &c.id).await;
            }
            started
        }
        Err(e) => Err(e),
    };
    if started.is_err() {
        drop_volume(docker, &volume).await;
    }
    started
}

/// Remove fill containers made more than a minute ago that are not
/// running: never started (a drill that ended between the two calls) or
/// ended without Docker removing them (an engine restarted meanwhile),
/// with their spares, complete or not.
async fn remove_stale_fills(docker: &bollard::Docker) {
    let filters = HashMap::from([
        ("label".to_string(), vec![LABEL_SPARE_FILL.to_string()]),
        (
            "status".to_string(),
            vec!["created".into(), "exited".into(), "dead".into()],
        ),
    ]);
    let opts = bollard::query_parameters::ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let now = chrono::Utc::now().timestamp();
    for c in docker.list_containers(Some(opts)).await.unwrap_or_default() {
        if let (Some(id), Some(created)) = (c.id, c.created) {
            if now - created > 60 {
                super::docker::remove_container(docker, &id).await;
            }
        }
    }
}

/// Remove volume `volume`, a seed or a spare (best effort: one in use
/// stays).
pub(super) async fn drop_volume(docker: &bollard::Docker, volume: &str) {
    let _ = docker
        .remove_volume(
            volume,
            None::<bollard::query_parameters::RemoveVolumeOptions>,
        )
        .await;
}

/// The status of the template of `image` for `kind`, for `drill doctor`;
/// `copied`: whether sandboxes copy it into a volume.
pub(super) async fn status(
    docker: &bollard::Docker,
    image: &str,
    kind: &'static dyn DatabaseKind,
    copied: bool,
) -> TemplateStatus {
    match key(docker, image, kind).await {
        Err(why) => TemplateStatus::Unusable(why),
        Ok(key) => match find(docker, &key).await {
            Some((t, labels)) => TemplateStatus::Ready {
                copied,
                spares: if copied {
                    spares(docker, &t.use_.id)
                        .await
                        .iter()
                        .filter(|(_, in_use)| !in_use)
                        .count()
                } else {
                    0
                },
                tag: t.use_.tag,
                built: labels.built(),
                build_seconds: labels.build_seconds(),
            },
            None => TemplateStatus::Missing { tag: key.tag },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_under_a_volume_is_found() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            under_volume(DATA_DIR, &v(&["/var/lib/postgresql/data"])),
            None
        );
        assert_eq!(under_volume(DATA_DIR, &v(&["/var/lib/mysql"])), None);
        assert_eq!(
            under_volume(DATA_DIR, &v(&["/var/lib"])),
            Some("/var/lib".into())
        );
        assert_eq!(
            under_volume(DATA_DIR, &v(&["/var/lib/drill-template/"])),
            Some("/var/lib/drill-template/".into())
        );
        assert_eq!(
            under_volume("/var/lib/drill-templates", &v(&[DATA_DIR])),
            None
        );
    }

    #[test]
    fn the_mode_comes_from_the_variable_and_the_storage_driver() {
        assert_eq!(Mode::parse(Some("0")), Mode::Off);
        assert_eq!(Mode::parse(Some("off")), Mode::Off);
        assert_eq!(Mode::parse(Some("copy")), Mode::Copy);
        assert_eq!(Mode::parse(Some("layer")), Mode::Layer);
        assert_eq!(Mode::parse(None), Mode::Auto);
        assert!(!Mode::Auto.copies("overlay2"));
        assert!(Mode::Auto.copies("fuse-overlayfs"));
        assert!(Mode::Auto.copies(""));
        assert!(!Mode::Layer.copies("fuse-overlayfs"));
        assert!(Mode::Copy.copies("overlay2"));
    }

    #[test]
    fn the_password_is_not_part_of_the_key_environment() {
        let kind = crate::kind::default_kind();
        let a = template_spec(kind, &Secret::new("one"), 1 << 30);
        let b = template_spec(kind, &Secret::new("two"), 2 << 30);
        assert_eq!(
            env_without_password(&a, kind),
            env_without_password(&b, kind)
        );
        assert!(env_without_password(&a, kind)
            .iter()
            .any(|e| e == &format!("PGDATA={DATA_DIR}")));
    }
}
