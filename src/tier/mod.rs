//! Restic repositories: listing snapshots, finding a dump inside one, and
//! streaming it out.
//!
//! drill drives the `restic` CLI and reads its JSON output (restic docs,
//! "Scripting": `snapshots --json`, `ls --json`). It only ever runs read
//! commands, always with `--no-lock` (so a read-only cold disk works and a
//! running backup is never disturbed) and `--no-cache` (so a damaged tree or
//! index in the repository cannot hide behind a good local cache copy).
//! The repository and its password reach restic through the environment
//! (`RESTIC_REPOSITORY`, `RESTIC_PASSWORD`, `RESTIC_PASSWORD_FILE`), never
//! through argv.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use crate::config::{PasswordSource, TierConfig};
use crate::secret::Secret;

/// restic's exit code for "repository does not exist" (restic ≥ 0.17).
const EXIT_NO_REPOSITORY: i32 = 10;
/// restic's exit code for "wrong password" (restic ≥ 0.17).
const EXIT_WRONG_PASSWORD: i32 = 12;
/// How much of restic's stderr is kept for error messages (bytes).
const STDERR_KEEP: usize = 4096;

/// Why a tier could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    /// The restic binary could not be started.
    #[error("run restic ({restic}): {source}; is restic (≥ 0.17) installed and on PATH, or set `restic = \"/path/to/restic\"` in drill.toml")]
    ResticNotFound {
        /// The binary tried.
        restic: PathBuf,
        /// Why it could not start.
        source: std::io::Error,
    },
    /// restic says the repository does not exist.
    #[error("open repository {repository} of tier `{tier}`: it does not exist ({detail}); is the path right and the disk mounted?")]
    RepositoryMissing {
        /// Tier name.
        tier: String,
        /// Repository location, password-free.
        repository: String,
        /// restic's message.
        detail: String,
    },
    /// restic rejected the password.
    #[error("open repository {repository} of tier `{tier}`: wrong password (restic found no key for it); check the tier's password source")]
    WrongPassword {
        /// Tier name.
        tier: String,
        /// Repository location, password-free.
        repository: String,
    },
    /// The configured password source did not yield a password.
    #[error("get the password of tier `{tier}`: {message}")]
    Password {
        /// Tier name.
        tier: String,
        /// What went wrong and what to do.
        message: String,
    },
    /// Any other restic failure while listing.
    /// A listing command outlived `timeouts.listing`.
    #[error("phase listing: restic {command} on tier `{tier}` did not finish within {} (timeouts.listing); restic was stopped. Is the repository's disk or peer hung?", crate::duration::human(*limit))]
    Timeout {
        /// Tier name.
        tier: String,
        /// restic subcommand.
        command: String,
        /// The limit.
        limit: Duration,
    },
    #[error("restic {command} on tier `{tier}` exited with {status}: {stderr}")]
    Restic {
        /// Tier name.
        tier: String,
        /// The restic subcommand.
        command: String,
        /// Exit status text.
        status: String,
        /// The end of restic's stderr.
        stderr: String,
    },
    /// restic's output could not be parsed.
    #[error("parse the output of restic {command} on tier `{tier}`: {message}")]
    Output {
        /// Tier name.
        tier: String,
        /// The restic subcommand.
        command: String,
        /// Parser message.
        message: String,
    },
    /// No snapshot matches the requested id.
    #[error("tier `{tier}` has no snapshot `{wanted}`; `drill snapshots --tier {tier}` or `restic snapshots` lists them")]
    SnapshotNotFound {
        /// Tier name.
        tier: String,
        /// The id asked for.
        wanted: String,
    },
    /// ssh could not reach or log in to the peer of an `sftp:` repository.
    #[error("reach repository {repository} of tier `{tier}` over ssh: {detail}; check that the peer is up and the tier's [ssh] settings (port, identity_file, known_hosts)")]
    Ssh {
        /// Tier name.
        tier: String,
        /// Repository location, password-free.
        repository: String,
        /// ssh's own message.
        detail: String,
    },
    /// No rotation disk of a cold tier is mounted.
    #[error("no disk of tier `{tier}` is mounted: looked for {}; plug in and mount the tier's current disk", paths.join(", "))]
    NotMounted {
        /// Tier name.
        tier: String,
        /// Every repository path looked for.
        paths: Vec<String>,
    },
    /// `password_prompt` needs a terminal and there is none.
    #[error("tier `{tier}` has password_prompt = true, but there is no terminal to ask on ({detail}); run drill from a terminal, or use password_command or password_file for unattended runs")]
    NoTerminal {
        /// Tier name.
        tier: String,
        /// Why the terminal could not be used.
        detail: String,
    },
    /// The id prefix matches several snapshots.
    #[error("snapshot id `{wanted}` is ambiguous on tier `{tier}`: it matches {matches}; give more characters")]
    SnapshotAmbiguous {
        /// Tier name.
        tier: String,
        /// The id asked for.
        wanted: String,
        /// Matching short ids.
        matches: String,
    },
}

impl TierError {
    /// Whether the error is about the command line (a snapshot id that does
    /// not exist) rather than the environment.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            TierError::SnapshotNotFound { .. }
                | TierError::SnapshotAmbiguous { .. }
                | TierError::NoTerminal { .. }
        )
    }
}

/// One snapshot, as `restic snapshots --json` describes it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Snapshot {
    /// Full snapshot id (64 hex digits).
    pub id: String,
    /// restic's 8-digit short id.
    #[serde(default)]
    pub short_id: String,
    /// When the backup was taken.
    pub time: DateTime<FixedOffset>,
    /// Host the backup was taken on.
    #[serde(default)]
    pub hostname: String,
    /// Paths backed up.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// One group of `restic forget --dry-run --json`: the snapshots its
/// policy keeps and those it would remove.
#[derive(Debug, Clone, Deserialize)]
pub struct ForgetGroup {
    /// Snapshots kept.
    #[serde(default)]
    pub keep: Option<Vec<Snapshot>>,
    /// Snapshots the policy would remove.
    #[serde(default)]
    pub remove: Option<Vec<Snapshot>>,
}

/// A file found in a snapshot by `restic ls --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct SnapshotFile {
    /// Absolute path inside the snapshot.
    pub path: String,
    /// `file`, `dir`, `symlink`, …
    #[serde(rename = "type")]
    pub node_type: String,
    /// Size in bytes (files only).
    #[serde(default)]
    pub size: u64,
}

/// Where a tier's repository is today: for a cold tier, the mounted
/// rotation disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// The repository, `{disk}` filled in.
    pub repository: String,
    /// The rotation disk used, for a cold tier.
    pub disk: Option<u32>,
    /// The disk the current quarter's rotation expects, for a cold tier.
    pub expected_disk: Option<u32>,
    /// What the operator should know (another disk than the rotation's, two
    /// disks mounted).
    pub warnings: Vec<String>,
}

/// The disk a rotation of `disks` expects in the quarter of `now`: quarter
/// n of the year → `disks[(n − 1) mod len]` (Q1 = the first disk).
pub fn expected_disk<Tz: chrono::TimeZone>(disks: &[u32], now: &DateTime<Tz>) -> Option<u32> {
    use chrono::Datelike;
    if disks.is_empty() {
        return None;
    }
    let quarter = (now.month0() / 3) as usize;
    Some(disks[quarter % disks.len()])
}

/// Find where `tier`'s repository is. A repository with a `{disk}`
/// placeholder is looked for on every disk of `disks`; a disk counts as
/// mounted when that path is a directory. When several are, the rotation's
/// disk is preferred, else the lowest-numbered.
///
/// # Errors
/// [`TierError::NotMounted`] naming every path looked for.
pub fn locate<Tz: chrono::TimeZone>(
    tier: &TierConfig,
    now: &DateTime<Tz>,
) -> Result<Location, TierError>
where
    Tz::Offset: std::fmt::Display,
{
    use chrono::Datelike;
    let Some(disks) = tier
        .disks
        .as_ref()
        .filter(|_| tier.repository.contains("{disk}"))
    else {
        return Ok(Location {
            repository: tier.repository.clone(),
            disk: None,
            expected_disk: None,
            warnings: vec![],
        });
    };
    let path_of = |d: u32| tier.repository.replace("{disk}", &d.to_string());
    let mounted: Vec<u32> = disks
        .iter()
        .copied()
        .filter(|d| Path::new(&path_of(*d)).is_dir())
        .collect();
    let expected = expected_disk(disks, now);
    let quarter = format!("{}-Q{}", now.year(), now.month0() / 3 + 1);
    let disk = match mounted.as_slice() {
        [] => {
            return Err(TierError::NotMounted {
                tier: tier.name.clone(),
                paths: disks.iter().map(|d| path_of(*d)).collect(),
            })
        }
        [one] => *one,
        many => expected
            .filter(|e| many.contains(e))
            .unwrap_or_else(|| *many.iter().min().expect("non-empty")),
    };
    let mut warnings = Vec::new();
    if mounted.len() > 1 {
        warnings.push(format!(
            "tier `{}`: disks {} are all mounted; using disk {disk} ({})",
            tier.name,
            mounted
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            path_of(disk)
        ));
    }
    if let Some(e) = expected.filter(|e| *e != disk) {
        warnings.push(format!(
            "tier `{}`: disk {disk} is mounted, but the rotation expects disk {e} in {quarter}; rotate the cold disks (disk {disk} may hold an older copy)",
            tier.name
        ));
    }
    Ok(Location {
        repository: path_of(disk),
        disk: Some(disk),
        expected_disk: expected,
        warnings,
    })
}

/// An open restic repository of one tier, with its password resolved.
#[derive(Debug, Clone)]
pub struct Repository {
    tier: String,
    location: String,
    restic: PathBuf,
    password: ChildPassword,
    /// Extended options (`-o key=value`) for every restic command.
    options: Vec<String>,
    /// Limit on each listing command (`snapshots`, `ls`, `cat`).
    listing_timeout: Duration,
}

/// Default for `timeouts.listing`: 10 minutes.
pub const DEFAULT_LISTING_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
enum ChildPassword {
    Value(Secret),
    File(PathBuf),
    Environment,
}

/// Run a password command through `sh -c` and return its first line.
async fn run_password_command(tier: &str, command: &str) -> Result<Secret, TierError> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| TierError::Password {
            tier: tier.into(),
            message: format!("could not run password_command: {e}"),
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(TierError::Password {
            tier: tier.into(),
            message: format!(
                "password_command exited with {}: {}",
                out.status,
                err.lines().next().unwrap_or("").trim()
            ),
        });
    }
    let text = String::from_utf8(out.stdout).map_err(|_| TierError::Password {
        tier: tier.into(),
        message: "password_command printed bytes that are not UTF-8".into(),
    })?;
    let pw = text.lines().next().unwrap_or("").to_string();
    if pw.is_empty() {
        return Err(TierError::Password {
            tier: tier.into(),
            message: "password_command printed nothing".into(),
        });
    }
    Ok(Secret::new(pw))
}

/// Ask for the password of `tier` on the terminal (`/dev/tty`), without
/// echo.
async fn prompt_password(tier: &str, location: &str) -> Result<Secret, TierError> {
    let prompt = format!(
        "restic password for tier `{tier}` ({}): ",
        crate::secret::redact_url(location)
    );
    let tier_name = tier.to_string();
    let read = tokio::task::spawn_blocking(move || rpassword::prompt_password(prompt))
        .await
        .map_err(|e| TierError::NoTerminal {
            tier: tier_name.clone(),
            detail: e.to_string(),
        })?;
    match read {
        Ok(p) if !p.is_empty() => Ok(Secret::new(p)),
        Ok(_) => Err(TierError::Password {
            tier: tier.into(),
            message: "the password typed was empty".into(),
        }),
        Err(e) => Err(TierError::NoTerminal {
            tier: tier.into(),
            detail: e.to_string(),
        }),
    }
}

impl Repository {
    /// Resolve the tier's password source (running `password_command` once)
    /// and return a handle for read commands. Does not contact the
    /// repository.
    ///
    /// # Errors
    /// [`TierError::Password`] when the source yields no password.
    pub async fn open(tier: &TierConfig, restic: &Path) -> Result<Self, TierError> {
        Self::open_at(tier, &tier.repository, restic).await
    }

    /// [`Repository::open`] at `location` (e.g. from [`locate`]).
    ///
    /// # Errors
    /// [`TierError::Password`] when the source yields no password,
    /// [`TierError::NoTerminal`] for a prompt without a terminal.
    pub async fn open_at(
        tier: &TierConfig,
        location: &str,
        restic: &Path,
    ) -> Result<Self, TierError> {
        let password = match &tier.password {
            PasswordSource::Command(c) => {
                ChildPassword::Value(run_password_command(&tier.name, c).await?)
            }
            PasswordSource::File(f) => {
                if !f.is_file() {
                    return Err(TierError::Password {
                        tier: tier.name.clone(),
                        message: format!(
                            "password_file {} does not exist or is not a file",
                            f.display()
                        ),
                    });
                }
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(f)
                    .map(|m| m.permissions().mode())
                    .unwrap_or(0);
                if mode & 0o077 != 0 {
                    return Err(TierError::Password {
                        tier: tier.name.clone(),
                        message: format!(
                            "password_file {} is readable by group or others (mode {:o}); run `chmod 600 {}`",
                            f.display(),
                            mode & 0o777,
                            f.display()
                        ),
                    });
                }
                ChildPassword::File(f.clone())
            }
            PasswordSource::Prompt => {
                ChildPassword::Value(prompt_password(&tier.name, location).await?)
            }
            PasswordSource::Environment => {
                let set = [
                    "RESTIC_PASSWORD",
                    "RESTIC_PASSWORD_FILE",
                    "RESTIC_PASSWORD_COMMAND",
                ]
                .iter()
                .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()));
                if !set {
                    return Err(TierError::Password {
                        tier: tier.name.clone(),
                        message: format!(
                            "no password source: set password_command or password_file in [tiers.{}], or RESTIC_PASSWORD_FILE in the environment",
                            tier.name
                        ),
                    });
                }
                ChildPassword::Environment
            }
        };
        // ssh must never wait for an answer nobody will type: BatchMode
        // for every sftp repository, with the tier's [ssh] options if any.
        let mut options = Vec::new();
        if location.starts_with("sftp:") {
            let args = match &tier.ssh {
                Some(ssh) => ssh.ssh_args(),
                None => vec![
                    "-o".into(),
                    "BatchMode=yes".into(),
                    "-o".into(),
                    "ConnectTimeout=10".into(),
                ],
            };
            options.push("-o".to_string());
            options.push(format!("sftp.args={}", args.join(" ")));
        }
        Ok(Repository {
            tier: tier.name.clone(),
            location: location.to_string(),
            restic: restic.to_path_buf(),
            password,
            options,
            listing_timeout: DEFAULT_LISTING_TIMEOUT,
        })
    }

    /// Limit each listing command (`snapshots`, `ls`, `cat`) to `limit`
    /// (`timeouts.listing`); past it restic's process group is killed and
    /// the command fails with [`TierError::Timeout`].
    pub fn with_listing_timeout(mut self, limit: Duration) -> Self {
        self.listing_timeout = limit;
        self
    }

    /// The repository location with any URL password redacted.
    pub fn display_location(&self) -> String {
        crate::secret::redact_url(&self.location)
    }

    /// A restic command with the repository and password in its environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.restic);
        cmd.args(args)
            .args(&self.options)
            .arg("--no-lock")
            .arg("--no-cache")
            .env("RESTIC_REPOSITORY", &self.location)
            .env_remove("RESTIC_REPOSITORY_FILE")
            .env("RESTIC_PROGRESS_FPS", "0.0001")
            .stdin(Stdio::null())
            // Its own group: stopping restic stops its ssh too, and a
            // terminal's Ctrl-C reaches drill, which stops restic itself.
            .process_group(0)
            .kill_on_drop(true);
        match &self.password {
            ChildPassword::Value(s) => {
                cmd.env("RESTIC_PASSWORD", s.expose())
                    .env_remove("RESTIC_PASSWORD_FILE")
                    .env_remove("RESTIC_PASSWORD_COMMAND");
            }
            ChildPassword::File(f) => {
                cmd.env("RESTIC_PASSWORD_FILE", f)
                    .env_remove("RESTIC_PASSWORD")
                    .env_remove("RESTIC_PASSWORD_COMMAND");
            }
            ChildPassword::Environment => {}
        }
        cmd
    }

    fn spawn_error(&self, e: std::io::Error) -> TierError {
        TierError::ResticNotFound {
            restic: self.restic.clone(),
            source: e,
        }
    }

    /// Map a failed restic run to an error by its exit code (restic docs,
    /// "Exit codes").
    fn failure(&self, command: &str, status: std::process::ExitStatus, stderr: &str) -> TierError {
        let detail = last_lines(stderr, 3);
        match status.code() {
            Some(EXIT_NO_REPOSITORY) => TierError::RepositoryMissing {
                tier: self.tier.clone(),
                repository: self.display_location(),
                detail,
            },
            Some(EXIT_WRONG_PASSWORD) => TierError::WrongPassword {
                tier: self.tier.clone(),
                repository: self.display_location(),
            },
            // restic relays the ssh subprocess's stderr as `subprocess ssh: …`.
            _ if stderr.contains("subprocess ssh:") => TierError::Ssh {
                tier: self.tier.clone(),
                repository: self.display_location(),
                detail: stderr
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("subprocess ssh:"))
                    .map(|l| l.trim().trim_start_matches("ssh:").trim())
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join("; "),
            },
            _ => TierError::Restic {
                tier: self.tier.clone(),
                command: command.into(),
                status: status.to_string(),
                stderr: detail,
            },
        }
    }

    async fn run_json(&self, command: &str, args: &[&str]) -> Result<Vec<u8>, TierError> {
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        let mut group = crate::process::GroupGuard::new(child.id());
        let out = match tokio::time::timeout(self.listing_timeout, child.wait_with_output()).await {
            Ok(out) => out.map_err(|e| self.spawn_error(e))?,
            Err(_) => {
                group.stop().await;
                return Err(TierError::Timeout {
                    tier: self.tier.clone(),
                    command: command.into(),
                    limit: self.listing_timeout,
                });
            }
        };
        group.disarm();
        if !out.status.success() {
            let err = self.failure(command, out.status, &String::from_utf8_lossy(&out.stderr));
            if matches!(err, TierError::Restic { .. }) && self.location.starts_with("sftp:") {
                return Err(self.diagnose_ssh().await.unwrap_or(err));
            }
            return Err(err);
        }
        Ok(out.stdout)
    }

    /// With `--json`, restic leaves out what its ssh subprocess said. Ask
    /// again without it (`restic cat config`, read-only) to learn why the
    /// peer could not be reached.
    ///
    /// restic can exit on the closed connection before it has passed on
    /// ssh's last line, so a failure without ssh's message is asked up to
    /// three times.
    async fn diagnose_ssh(&self) -> Option<TierError> {
        for _ in 0..3 {
            let out = self
                .command(&["cat", "config"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .await
                .ok()?;
            if out.status.success() {
                return None;
            }
            if let e @ TierError::Ssh { .. } =
                self.failure("cat", out.status, &String::from_utf8_lossy(&out.stderr))
            {
                return Some(e);
            }
        }
        None
    }

    /// All snapshots, oldest first.
    ///
    /// # Errors
    /// [`TierError`]: repository missing, wrong password, restic failure.
    pub async fn snapshots(&self) -> Result<Vec<Snapshot>, TierError> {
        let out = self.run_json("snapshots", &["snapshots", "--json"]).await?;
        let mut snaps: Vec<Snapshot> =
            serde_json::from_slice(&out).map_err(|e| TierError::Output {
                tier: self.tier.clone(),
                command: "snapshots".into(),
                message: e.to_string(),
            })?;
        for s in &mut snaps {
            if s.short_id.is_empty() {
                s.short_id = s.id.chars().take(8).collect();
            }
        }
        snaps.sort_by_key(|s| s.time);
        Ok(snaps)
    }

    /// Pick a snapshot: `latest` (newest by time) or an id or unique id
    /// prefix. `Ok(None)` when the repository has no snapshots at all.
    ///
    /// # Errors
    /// [`TierError::SnapshotNotFound`], [`TierError::SnapshotAmbiguous`], or a
    /// listing failure.
    pub async fn select_snapshot(&self, wanted: &str) -> Result<Option<Snapshot>, TierError> {
        self.select_from(&self.snapshots().await?, wanted)
    }

    /// [`Repository::select_snapshot`] over a listing already taken
    /// (`snaps`, oldest first, as [`Repository::snapshots`] gives it), for a
    /// caller that keeps the listing for something else too (the ledger's
    /// freshness). `Ok(None)` when `snaps` is empty.
    ///
    /// # Errors
    /// [`TierError::SnapshotNotFound`], [`TierError::SnapshotAmbiguous`].
    pub fn select_from(
        &self,
        snaps: &[Snapshot],
        wanted: &str,
    ) -> Result<Option<Snapshot>, TierError> {
        if snaps.is_empty() {
            return Ok(None);
        }
        if wanted == "latest" {
            return Ok(snaps.last().cloned());
        }
        let hits: Vec<&Snapshot> = snaps.iter().filter(|s| s.id.starts_with(wanted)).collect();
        match hits.as_slice() {
            [one] if !wanted.is_empty() => Ok(Some((*one).clone())),
            [] | [_] => Err(TierError::SnapshotNotFound {
                tier: self.tier.clone(),
                wanted: wanted.into(),
            }),
            many => Err(TierError::SnapshotAmbiguous {
                tier: self.tier.clone(),
                wanted: wanted.into(),
                matches: many
                    .iter()
                    .map(|s| s.short_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Find `path` in `snapshot` with `restic ls --json`. `Ok(None)` when the
    /// snapshot does not hold it.
    ///
    /// # Errors
    /// [`TierError`] when restic fails or prints something unparsable.
    pub async fn find_file(
        &self,
        snapshot: &Snapshot,
        path: &str,
    ) -> Result<Option<SnapshotFile>, TierError> {
        Ok(self
            .find_files(snapshot, &[path])
            .await?
            .into_iter()
            .find(|n| n.path == path))
    }

    /// The nodes `restic ls --json <snapshot> <args>` prints (restic docs,
    /// "JSON output": one JSON object per line, nodes with
    /// `message_type`/`struct_type` `node`).
    ///
    /// # Errors
    /// [`TierError`] when restic fails or prints something unparsable.
    async fn ls_nodes(
        &self,
        snapshot: &Snapshot,
        args: &[&str],
    ) -> Result<Vec<SnapshotFile>, TierError> {
        let mut argv = vec!["ls", "--json", snapshot.id.as_str()];
        argv.extend_from_slice(args);
        let out = self.run_json("ls", &argv).await?;
        let unparsable = |e: serde_json::Error| TierError::Output {
            tier: self.tier.clone(),
            command: "ls".into(),
            message: e.to_string(),
        };
        let mut nodes = Vec::new();
        for line in out.split(|b| *b == b'\n') {
            if line.is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(line).map_err(unparsable)?;
            let is_node = v
                .get("message_type")
                .or_else(|| v.get("struct_type"))
                .and_then(|t| t.as_str())
                == Some("node");
            if is_node {
                nodes.push(serde_json::from_value(v).map_err(unparsable)?);
            }
        }
        Ok(nodes)
    }

    /// The nodes of `paths` that `snapshot` holds (one `restic ls --json`
    /// call); paths it lacks are absent from the result.
    ///
    /// # Errors
    /// [`TierError`] when restic fails or prints something unparsable.
    pub async fn find_files(
        &self,
        snapshot: &Snapshot,
        paths: &[&str],
    ) -> Result<Vec<SnapshotFile>, TierError> {
        let mut found = self.ls_nodes(snapshot, paths).await?;
        found.retain(|n| paths.contains(&n.path.as_str()));
        Ok(found)
    }

    /// The entries directly inside directory `dir` of `snapshot` (one
    /// `restic ls --json` call), in name order. A directory the snapshot
    /// lacks gives an empty list.
    ///
    /// # Errors
    /// [`TierError`] when restic fails or prints something unparsable.
    pub async fn list_dir(
        &self,
        snapshot: &Snapshot,
        dir: &str,
    ) -> Result<Vec<SnapshotFile>, TierError> {
        let dir = dir.trim_end_matches('/');
        let mut found = self
            .ls_nodes(snapshot, &[if dir.is_empty() { "/" } else { dir }])
            .await?;
        found.retain(|n| n.path.rsplit_once('/').map(|(d, _)| d) == Some(dir));
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(found)
    }

    /// What `restic forget --dry-run --json` with the retention `policy`
    /// (`--keep-daily 7`, …) would keep and remove, per group (restic docs,
    /// "Removing backup snapshots"). Nothing is removed: `--dry-run` and
    /// `--no-lock` are always passed, so the repository is not written to.
    ///
    /// # Errors
    /// [`TierError`] when restic fails (e.g. a flag it refuses) or prints
    /// something unparsable.
    pub async fn forget_dry_run(&self, policy: &[String]) -> Result<Vec<ForgetGroup>, TierError> {
        let mut args = vec!["forget", "--dry-run", "--json"];
        args.extend(policy.iter().map(String::as_str));
        let out = self.run_json("forget --dry-run", &args).await?;
        serde_json::from_slice(&out).map_err(|e| TierError::Output {
            tier: self.tier.clone(),
            command: "forget --dry-run".into(),
            message: e.to_string(),
        })
    }

    /// Every node below directory `dir` of `snapshot`, at any depth (one
    /// `restic ls --json` call), in path order. A directory the snapshot
    /// lacks gives an empty list.
    ///
    /// # Errors
    /// [`TierError`] when restic fails or prints something unparsable.
    pub async fn list_tree(
        &self,
        snapshot: &Snapshot,
        dir: &str,
    ) -> Result<Vec<SnapshotFile>, TierError> {
        let dir = dir.trim_end_matches('/');
        let prefix = format!("{dir}/");
        let mut found = self
            .ls_nodes(
                snapshot,
                &["--recursive", if dir.is_empty() { "/" } else { dir }],
            )
            .await?;
        found.retain(|n| n.path.starts_with(&prefix));
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(found)
    }

    /// The content of the files `paths` in `snapshot`: for each file it
    /// holds, the ids of its data blobs in order — the `content` of its node
    /// in restic's tree (`restic cat tree <snapshot>:<dir>`, restic ≥ 0.17;
    /// restic design docs, "Trees and Data"). Within one repository, two
    /// files with the same list hold the same bytes, which is known without
    /// reading them. A directory (a physical base backup's) is known by its
    /// tree id instead (`tree:<id>`), which covers everything below it. One
    /// restic call per distinct directory; paths the snapshot lacks are
    /// absent from the map.
    ///
    /// # Errors
    /// [`TierError`] when restic fails (also when a directory is missing)
    /// or prints something unparsable.
    pub async fn contents(
        &self,
        snapshot: &Snapshot,
        paths: &[&str],
    ) -> Result<std::collections::HashMap<String, Vec<String>>, TierError> {
        #[derive(Deserialize)]
        struct Tree {
            nodes: Vec<Node>,
        }
        #[derive(Deserialize)]
        struct Node {
            name: String,
            #[serde(rename = "type")]
            node_type: String,
            #[serde(default)]
            content: Option<Vec<String>>,
            #[serde(default)]
            subtree: Option<String>,
        }
        let mut out = std::collections::HashMap::new();
        let mut dirs: Vec<&str> = paths
            .iter()
            .map(|p| p.rsplit_once('/').map_or("", |(d, _)| d))
            .collect();
        dirs.sort_unstable();
        dirs.dedup();
        for dir in dirs {
            let target = format!("{}:{}", snapshot.id, if dir.is_empty() { "/" } else { dir });
            let bytes = self.run_json("cat", &["cat", "tree", &target]).await?;
            let tree: Tree = serde_json::from_slice(&bytes).map_err(|e| TierError::Output {
                tier: self.tier.clone(),
                command: "cat tree".into(),
                message: e.to_string(),
            })?;
            for node in tree.nodes {
                let path = format!("{dir}/{}", node.name);
                if !paths.contains(&path.as_str()) {
                    continue;
                }
                match (node.node_type.as_str(), node.subtree) {
                    ("file", _) => {
                        out.insert(path, node.content.unwrap_or_default());
                    }
                    // A directory's tree id covers every file below it (and
                    // their metadata): equal ids, equal content.
                    ("dir", Some(tree)) => {
                        out.insert(path, vec![format!("tree:{tree}")]);
                    }
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    /// Start `restic dump` of `path` in `snapshot`; its standard output is the
    /// file's bytes. The caller must call [`DumpStream::finish`] to learn
    /// whether restic read everything intact.
    ///
    /// # Errors
    /// [`TierError::ResticNotFound`] when restic cannot start.
    pub fn dump(&self, snapshot: &Snapshot, path: &str) -> Result<DumpStream, TierError> {
        let mut child = self
            .command(&["dump", "--quiet", &snapshot.id, path])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        let group = crate::process::GroupGuard::new(child.id());
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let stderr_task = tokio::spawn(async move {
            let mut keep = Vec::new();
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                keep.extend_from_slice(line.as_bytes());
                keep.push(b'\n');
                if keep.len() > STDERR_KEEP * 2 {
                    keep.drain(..keep.len() - STDERR_KEEP);
                }
            }
            String::from_utf8_lossy(&keep).into_owned()
        });
        Ok(DumpStream {
            repo: self.clone(),
            snapshot: snapshot.short_id.clone(),
            path: path.into(),
            child,
            group,
            stdout: Some(stdout),
            stderr_task,
        })
    }
}

/// A running `restic dump`.
pub struct DumpStream {
    repo: Repository,
    snapshot: String,
    path: String,
    child: Child,
    /// restic's process group, killed if the stream is abandoned.
    group: crate::process::GroupGuard,
    stdout: Option<ChildStdout>,
    stderr_task: tokio::task::JoinHandle<String>,
}

/// How a `restic dump` ended badly.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// restic reported damaged repository content (a pack or blob that fails
    /// decryption or verification, or is missing): the backup is bad.
    #[error("restic could not read {path} from snapshot {snapshot} intact: the repository is damaged ({detail})")]
    Damaged {
        /// Snapshot short id.
        snapshot: String,
        /// Dump path.
        path: String,
        /// restic's message.
        detail: String,
    },
    /// restic failed for another reason (repository gone, I/O, killed).
    #[error(transparent)]
    Tier(#[from] TierError),
}

/// Phrases restic prints when repository content is damaged (restic
/// `internal/repository`, `internal/crypto`).
const DAMAGE_MARKERS: [&str; 9] = [
    "ciphertext verification failed",
    "invalid data returned",
    "hash mismatch",
    "does not match",
    "decrypt",
    "not found in index",
    "unknown blob",
    "corrupt",
    "no such file or directory",
];

impl DumpStream {
    /// The dump's bytes. Can be taken once.
    pub fn take_stdout(&mut self) -> ChildStdout {
        self.stdout.take().expect("stdout taken once")
    }

    /// Stop restic when the consumer gave up early. If restic had already
    /// exited with a failure, that failure is returned (it may be why the
    /// consumer gave up); a restic still running is killed and `Ok` means
    /// only "restic reported nothing".
    ///
    /// # Errors
    /// As [`DumpStream::finish`], for a restic that had already failed.
    pub async fn stop(mut self) -> Result<(), DumpError> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                let stderr =
                    std::mem::replace(&mut self.stderr_task, tokio::spawn(async { String::new() }))
                        .await
                        .unwrap_or_default();
                self.evaluate(status, &stderr)
            }
            _ => {
                drop(std::mem::replace(
                    &mut self.group,
                    crate::process::GroupGuard::new(None),
                ));
                let _ = self.child.kill().await;
                self.stderr_task.abort();
                Ok(())
            }
        }
    }

    /// Wait for restic to exit and check its status: a zero exit is the only
    /// proof that every byte of the file was read and verified.
    ///
    /// # Errors
    /// [`DumpError::Damaged`] for damaged content, [`DumpError::Tier`] otherwise.
    pub async fn finish(mut self) -> Result<(), DumpError> {
        // Drain what is left so restic is not blocked on a full pipe.
        if let Some(mut out) = self.stdout.take() {
            let mut sink = vec![0u8; 64 * 1024];
            while matches!(out.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| self.repo.spawn_error(e))?;
        self.group.disarm();
        let stderr =
            std::mem::replace(&mut self.stderr_task, tokio::spawn(async { String::new() }))
                .await
                .unwrap_or_default();
        self.evaluate(status, &stderr)
    }

    fn evaluate(&self, status: std::process::ExitStatus, stderr: &str) -> Result<(), DumpError> {
        if status.success() {
            return Ok(());
        }
        let lower = stderr.to_lowercase();
        let code = status.code();
        if code != Some(EXIT_NO_REPOSITORY)
            && code != Some(EXIT_WRONG_PASSWORD)
            && DAMAGE_MARKERS.iter().any(|m| lower.contains(m))
        {
            return Err(DumpError::Damaged {
                snapshot: self.snapshot.clone(),
                path: self.path.clone(),
                detail: last_lines(stderr, 3),
            });
        }
        Err(DumpError::Tier(self.repo.failure("dump", status, stderr)))
    }
}

/// The last `n` non-empty lines of `text`, joined with ` | `.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(n);
    let s = lines[start..].join(" | ");
    if s.is_empty() {
        "no message".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PasswordSource;
    use chrono::TimeZone;

    fn cold(pattern: &Path) -> TierConfig {
        TierConfig {
            name: "cold".into(),
            repository: pattern.display().to_string(),
            password: PasswordSource::Prompt,
            disks: Some(vec![1, 2, 3]),
            ssh: None,
            retention: None,
        }
    }

    #[test]
    fn rotation_expects_a_disk_per_quarter() {
        let tz = chrono_tz::Asia::Seoul;
        let at = |m| tz.with_ymd_and_hms(2027, m, 15, 3, 0, 0).unwrap();
        let disks = [1, 2, 3];
        assert_eq!(expected_disk(&disks, &at(1)), Some(1));
        assert_eq!(expected_disk(&disks, &at(4)), Some(2));
        assert_eq!(expected_disk(&disks, &at(7)), Some(3));
        assert_eq!(expected_disk(&disks, &at(10)), Some(1));
    }

    #[test]
    fn locate_picks_the_mounted_disk_and_says_so() {
        let d = tempfile::tempdir().unwrap();
        let tier = cold(&d.path().join("cold-{disk}/repo"));
        let q2 = chrono_tz::UTC
            .with_ymd_and_hms(2027, 5, 1, 0, 0, 0)
            .unwrap();
        let e = locate(&tier, &q2).unwrap_err().to_string();
        assert!(
            e.contains("cold-1/repo") && e.contains("cold-3/repo"),
            "{e}"
        );
        std::fs::create_dir_all(d.path().join("cold-3/repo")).unwrap();
        let l = locate(&tier, &q2).unwrap();
        assert_eq!((l.disk, l.expected_disk), (Some(3), Some(2)));
        assert!(
            l.warnings[0].contains("rotation expects disk 2 in 2027-Q2"),
            "{:?}",
            l.warnings
        );
        // Two mounted: the rotation's disk wins, and the report says which.
        std::fs::create_dir_all(d.path().join("cold-2/repo")).unwrap();
        let l = locate(&tier, &q2).unwrap();
        assert_eq!(l.disk, Some(2));
        assert!(l.repository.ends_with("cold-2/repo"));
        assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
        assert!(
            l.warnings[0].contains("disks 2, 3 are all mounted; using disk 2"),
            "{:?}",
            l.warnings
        );
    }
}
