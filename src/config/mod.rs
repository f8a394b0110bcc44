//! `drill.toml` and `checks/*.toml`: raw serde types, validation, defaults.
//!
//! The format is the contract in the project's spec (`drill.md`, section
//! Configuration). Every table denies unknown keys; every error names the
//! file, the key (as a dotted path such as `tiers.local.password_file`), the
//! line when known, and what was expected. Relative paths in the config
//! (`reports_dir`, `checks_dir`, `password_file`, a local repository path)
//! are resolved against the directory holding the config file, so a run from
//! launchd (whose working directory is `/`) reads the same files as a run
//! from a shell.

mod checks;

pub use checks::{
    split_table, CheckDefinition, CheckSpec, CountedGroup, CountedTable, SqlExpect, COMMAND_ENV,
    DEFAULT_TIMEOUT, KINDS,
};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::secret::SecretSource;
use serde::Deserialize;

/// The sandbox superuser name drill uses inside every sandbox.
///
/// It is deliberately not `postgres`: a `pg_dumpall` dump issues
/// `CREATE ROLE` for every role of the source cluster, including its bootstrap
/// superuser (usually `postgres`), and with `ON_ERROR_STOP` a clash with the
/// sandbox's own bootstrap superuser would abort the restore (PostgreSQL docs,
/// `pg_dumpall`, Notes).
pub const SANDBOX_SUPERUSER: &str = "drill_sandbox";

/// A configuration or check-file error: exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML: a quote, bracket or `=` missing, a key
    /// given twice.
    #[error("{}:{line}:{column}: not valid TOML: {message}; fix the TOML at line {line}, column {column}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column (in characters) of the error.
        column: usize,
        /// What the TOML parser expected there, on one line.
        message: String,
    },
    /// A key does not fit its schema (unknown key, wrong type or value).
    #[error("{path}{line}: key `{key}`: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// `:LINE:COLUMN` when known, else empty.
        line: String,
        /// Dotted key path, `.` for the top level.
        key: String,
        /// What was wrong and what is expected.
        message: String,
    },
    /// A value parsed but is not acceptable.
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted key path.
        key: String,
        /// What was wrong and what to do.
        message: String,
    },
    /// No config file was given and none was found at the default places.
    #[error("no config file found (looked at {looked}); pass --config PATH or set DRILL_CONFIG")]
    NotFound {
        /// The places searched, comma-separated.
        looked: String,
    },
}

impl ConfigError {
    /// [`ConfigError::Invalid`]: `key` of file `path` is wrong, `message`
    /// says why and what to do.
    pub fn invalid(path: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.into(),
            message: message.into(),
        }
    }
}

/// 1-based line and column (counted in characters) of byte `offset` of
/// `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// Deserialize `text` (the contents of `path`) into `T`, reporting the key
/// path, line and column of the first error.
///
/// # Errors
/// [`ConfigError::Syntax`] when `text` is not TOML at all;
/// [`ConfigError::Parse`] when a key does not fit `T`.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    // Syntax first, so that a missing bracket is not reported as a key of
    // the wrong shape.
    if let Err(e) = text.parse::<toml::Table>() {
        let (line, column) = line_column(text, e.span().map_or(0, |s| s.start));
        return Err(ConfigError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message: e
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let line = inner
            .span()
            .map(|s| {
                let (line, column) = line_column(text, s.start);
                format!(":{line}:{column}")
            })
            .unwrap_or_default();
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            key,
            message: inner.message().trim().to_string(),
        }
    })
}

/// How the drill's restic password is obtained for one tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// A shell command whose standard output (trailing newline removed) is the
    /// password, e.g. `security find-generic-password -w -s NAME`.
    Command(String),
    /// A file holding the password (restic's `--password-file` semantics).
    File(PathBuf),
    /// Asked on the terminal (not echoed).
    Prompt,
    /// Whatever restic finds in the environment: `RESTIC_PASSWORD`,
    /// `RESTIC_PASSWORD_FILE` or `RESTIC_PASSWORD_COMMAND`.
    Environment,
}

/// Dump formats drill restores. Compression is separate (by file suffix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DumpFormat {
    /// A plain SQL cluster dump made by `pg_dumpall`; restored with `psql`.
    PgDumpall,
    /// A plain SQL dump made by `pg_dump` (with or without `--create`);
    /// restored with `psql`.
    Plain,
    /// A custom-format archive made by `pg_dump -Fc`; restored with
    /// `pg_restore`.
    Custom,
    /// SQL made by `mysqldump` / `mariadb-dump` (one database or
    /// `--all-databases`); restored with the `mariadb` / `mysql` client.
    Mysqldump,
    /// A physical base backup made by `pg_basebackup` (tar format:
    /// `base.tar[.gz|.zst]` plus `pg_wal.tar[.gz]`; or plain format: a data
    /// directory), recovered with the WAL archive to a target
    /// ([`Recovery`]).
    Basebackup,
}

impl DumpFormat {
    /// The spelling used in config and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            DumpFormat::PgDumpall => "pg_dumpall",
            DumpFormat::Plain => "plain",
            DumpFormat::Custom => "custom",
            DumpFormat::Mysqldump => "mysqldump",
            DumpFormat::Basebackup => "basebackup",
        }
    }
}

/// Compression of a dump file, chosen by its suffix (`.gz`, `.zst`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// No compression.
    None,
    /// gzip (RFC 1952), possibly several members.
    Gzip,
    /// Zstandard (RFC 8878).
    Zstd,
}

impl Compression {
    /// Compression implied by the file name's suffix.
    pub fn from_path(path: &str) -> Self {
        if path.ends_with(".gz") {
            Compression::Gzip
        } else if path.ends_with(".zst") || path.ends_with(".zstd") {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    timezone: Option<String>,
    reports_dir: Option<PathBuf>,
    checks_dir: Option<PathBuf>,
    schedule: Option<String>,
    fallback: Option<Vec<String>>,
    restic: Option<PathBuf>,
    #[serde(default)]
    policy: Policy,
    #[serde(default)]
    tiers: BTreeMap<String, RawTier>,
    #[serde(default)]
    sandbox: RawSandbox,
    #[serde(default)]
    databases: Vec<RawDatabase>,
    slack: Option<RawSlack>,
    #[serde(default)]
    timeouts: RawTimeouts,
    #[serde(default)]
    outputs: RawOutputs,
}

/// `[outputs]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutputs {
    metrics: Option<PathBuf>,
    junit: Option<PathBuf>,
}

/// `[outputs]`: files every `drill run` writes besides its reports, so a
/// scheduled job needs no flags. `--metrics` and `--junit` override them.
/// Relative paths are resolved against the config file's directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outputs {
    /// The Prometheus textfile (see [`crate::report::metrics`]), e.g. in
    /// node_exporter's `--collector.textfile.directory`.
    pub metrics: Option<PathBuf>,
    /// The JUnit XML (see [`crate::report::junit`]).
    pub junit: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    #[serde(default, with = "humantime_serde")]
    listing: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    stall: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    restore: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    check: Option<Duration>,
}

/// `[timeouts]`: a limit on every phase of a drill, so an unattended drill
/// always ends. Each one that expires ends its phase with no verdict
/// (`error`, exit 3) and a reason naming the phase and the key. The sandbox's
/// start is bounded by `sandbox.startup_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Phase `listing`: each restic listing command (`snapshots`, `ls`,
    /// `cat`). Default 10 min.
    pub listing: Duration,
    /// Phase `streaming`: how long restic may send no byte of a dump while
    /// the restore waits for one. Default 10 min.
    pub stall: Duration,
    /// Phase `restore`: one database's restore, from the first byte to the
    /// restore tool's exit. Default 12 h.
    pub restore: Duration,
    /// Phase `check`: a check whose file gives no `timeout`. Default 10 min.
    pub check: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            listing: crate::tier::DEFAULT_LISTING_TIMEOUT,
            stall: Duration::from_secs(600),
            restore: Duration::from_secs(12 * 3600),
            check: DEFAULT_TIMEOUT,
        }
    }
}

fn timeouts(path: &Path, raw: RawTimeouts) -> Result<Timeouts, ConfigError> {
    let d = Timeouts::default();
    let pick = |key: &str, v: Option<Duration>, default: Duration| match v {
        Some(v) if v.is_zero() => Err(ConfigError::invalid(
            path,
            format!("timeouts.{key}"),
            "must be longer than 0 s",
        )),
        Some(v) => Ok(v),
        None => Ok(default),
    };
    Ok(Timeouts {
        listing: pick("listing", raw.listing, d.listing)?,
        stall: pick("stall", raw.stall, d.stall)?,
        restore: pick("restore", raw.restore, d.restore)?,
        check: pick("check", raw.check, d.check)?,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    repository: String,
    password_command: Option<String>,
    password_file: Option<PathBuf>,
    #[serde(default)]
    password_prompt: bool,
    disks: Option<Vec<u32>>,
    ssh: Option<RawSsh>,
    retention: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSsh {
    port: Option<u16>,
    identity_file: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    #[serde(default)]
    host_key_check: HostKeyCheck,
    #[serde(default, with = "humantime_serde")]
    connect_timeout: Option<Duration>,
}

/// `[tiers.NAME.ssh] host_key_check`: OpenSSH's `StrictHostKeyChecking`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyCheck {
    /// The host key must already be in `known_hosts` (`yes`).
    #[default]
    Strict,
    /// Unknown hosts are added on first contact, changed keys refused
    /// (`accept-new`).
    AcceptNew,
}

/// `[tiers.NAME.ssh]`: how restic's sftp backend reaches the peer. Passed
/// to `ssh` through restic's `-o sftp.args=…` (restic docs, "Preparing a
/// new repository", SFTP), always with `BatchMode=yes` so ssh never asks.
#[derive(Debug, Clone, PartialEq)]
pub struct SshOptions {
    /// `-p`: the peer's SSH port.
    pub port: Option<u16>,
    /// `-i` with `IdentitiesOnly=yes`: the private key to use.
    pub identity_file: Option<PathBuf>,
    /// `UserKnownHostsFile`: where the peer's host key is recorded.
    pub known_hosts: Option<PathBuf>,
    /// `StrictHostKeyChecking`.
    pub host_key_check: HostKeyCheck,
    /// `ConnectTimeout` (default 10 s).
    pub connect_timeout: Duration,
}

impl SshOptions {
    /// The ssh arguments, one per element.
    pub fn ssh_args(&self) -> Vec<String> {
        let mut a = vec![
            "-o".to_string(),
            "BatchMode=yes".to_string(),
            "-o".to_string(),
            format!("ConnectTimeout={}", self.connect_timeout.as_secs().max(1)),
            "-o".to_string(),
            format!(
                "StrictHostKeyChecking={}",
                match self.host_key_check {
                    HostKeyCheck::Strict => "yes",
                    HostKeyCheck::AcceptNew => "accept-new",
                }
            ),
        ];
        if let Some(p) = self.port {
            a.extend(["-p".to_string(), p.to_string()]);
        }
        if let Some(i) = &self.identity_file {
            a.extend([
                "-i".to_string(),
                i.display().to_string(),
                "-o".to_string(),
                "IdentitiesOnly=yes".to_string(),
            ]);
        }
        if let Some(k) = &self.known_hosts {
            a.extend([
                "-o".to_string(),
                format!("UserKnownHostsFile={}", k.display()),
            ]);
        }
        a
    }
}

/// A size in bytes as written in the config: an integer (bytes), or a
/// string of a number and a binary unit, `B`, `KiB`, `MiB`, `GiB` or `TiB`
/// (any case; `1.5GiB` and `512 MiB` work; 1 GiB = 2^30 bytes).
///
/// Decimal and one-letter units (`1GB`, `1G`, `1g`, `1MB`) are refused
/// with a message that says to write `1GiB`: Docker reads `1g` as 2^30
/// bytes, the SI reads `1GB` as 10^9, and a memory cap must not depend on
/// which the reader assumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl Size {
    /// Parse `text` as described on [`Size`].
    ///
    /// # Errors
    /// What is wrong and how to write it instead, e.g. for `1GB`: "`1GB` is
    /// ambiguous (10^9 bytes, or 2^30 as Docker reads `1g`): write `1GiB`
    /// (2^30 bytes) …".
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let unit_at = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
        let (number, unit) = (t[..unit_at].trim(), t[unit_at..].trim());
        let binary = ["", "b", "ki", "kib", "mi", "mib", "gi", "gib", "ti", "tib"];
        let lower = unit.to_ascii_lowercase();
        if !binary.contains(&lower.as_str()) {
            let prefix = lower.chars().next().map(|c| c.to_ascii_uppercase());
            return Err(match prefix {
                Some(p @ ('K' | 'M' | 'G' | 'T')) if matches!(lower.len(), 1 | 2) => {
                    let n = "KMGT".find(p).unwrap_or(0) + 1;
                    format!(
                        "`{t}` is ambiguous (1{p}B is 10^{} bytes, but Docker reads 1{} as 2^{}): write `{number}{p}iB` (binary units: KiB, MiB, GiB, TiB) or a number of bytes",
                        3 * n,
                        p.to_ascii_lowercase(),
                        10 * n
                    )
                }
                _ => format!(
                    "`{t}` has an unknown unit `{unit}`; write a number with B, KiB, MiB, GiB or TiB, e.g. `2GiB`"
                ),
            });
        }
        if number.is_empty() || number.starts_with('-') {
            return Err(format!(
                "`{t}` is not a size; write a number with B, KiB, MiB, GiB or TiB, e.g. `2GiB`"
            ));
        }
        t.parse::<bytesize::ByteSize>()
            .map(|b| Size(b.as_u64()))
            .map_err(|e| {
                format!("`{t}` is not a size ({e}); write a number with B, KiB, MiB, GiB or TiB, e.g. `2GiB`")
            })
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Size;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a size such as \"2GiB\" or a number of bytes")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v).map(Size).map_err(|_| {
                    E::custom(format!("`{v}` is negative; write a size such as \"2GiB\""))
                })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Size, E> {
                Size::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSandbox {
    engine: Option<String>,
    image: Option<String>,
    memory: Option<Size>,
    cpus: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    startup_timeout: Option<Duration>,
    bin_dir: Option<PathBuf>,
    parallelism: Option<usize>,
    restore_jobs: Option<RawJobs>,
    tuning: Option<bool>,
}

/// `sandbox.restore_jobs` as written: `"auto"` or a number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawJobs {
    Count(i64),
    Word(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    name: String,
    kind: Option<String>,
    path: String,
    format: Option<DumpFormat>,
    #[serde(default)]
    increments: Vec<String>,
    #[serde(default)]
    accept_missing_trailer: bool,
    wal: Option<String>,
    target: Option<String>,
    target_lsn: Option<String>,
    target_xid: Option<String>,
    target_name: Option<String>,
    image: Option<String>,
    dbname: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

/// `[slack]` as written: where the drill report is posted. Secrets come
/// from a command, a file or an environment variable, never the file itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    webhook_url_command: Option<String>,
    webhook_url_file: Option<PathBuf>,
    webhook_url_env: Option<String>,
    token_command: Option<String>,
    token_file: Option<PathBuf>,
    token_env: Option<String>,
    channel: Option<String>,
    api_url: Option<String>,
    retries: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    backoff: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    report_url: Option<String>,
}

/// Where Slack messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlackTarget {
    /// An incoming webhook; the URL is a secret (it is the credential).
    Webhook(SecretSource),
    /// A bot token posting with `chat.postMessage` to `channel`.
    Bot {
        /// The `xoxb-…` token.
        token: SecretSource,
        /// Channel name (`#ops`) or id (`C0123…`).
        channel: String,
    },
}

/// `[slack]`: where and how the drill report is posted.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// Webhook or bot token.
    pub target: SlackTarget,
    /// Base URL of Slack's Web API, default `https://slack.com/api`
    /// (`chat.postMessage` is appended). Tests point it at a local server.
    pub api_url: String,
    /// Further attempts after the first on 429, 5xx or a network error
    /// (default 3).
    pub retries: u32,
    /// First pause between attempts, doubled each time (default 2 s); a
    /// 429's `Retry-After` takes its place.
    pub backoff: Duration,
    /// Limit on each HTTP request (default 30 s).
    pub timeout: Duration,
    /// `report_url`: where the reports are served over http(s), so the
    /// message's "Full report" is a link. `{report}` in it is replaced by
    /// the HTML report's file name (`20270115T030000Z-local.html`); without
    /// the placeholder the URL is linked as it is (e.g. a dashboard or the
    /// `drill report` history page). `None`: the message names the report's
    /// host and path instead.
    pub report_url: Option<String>,
}

/// The placeholder in `[slack] report_url` replaced by the HTML report's
/// file name.
pub const REPORT_PLACEHOLDER: &str = "{report}";

/// Slack's Web API base URL.
pub const SLACK_API_URL: &str = "https://slack.com/api";

fn slack_config(path: &Path, raw: RawSlack) -> Result<SlackConfig, ConfigError> {
    fn one(
        path: &Path,
        what: &str,
        command: Option<String>,
        file: Option<PathBuf>,
        env: Option<String>,
        resolve: &dyn Fn(&Path) -> PathBuf,
    ) -> Result<Option<SecretSource>, ConfigError> {
        let mut found = Vec::new();
        if let Some(c) = command {
            found.push(SecretSource::Command(c));
        }
        if let Some(f) = file {
            found.push(SecretSource::File(resolve(&f)));
        }
        if let Some(e) = env {
            found.push(SecretSource::Env(e));
        }
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            _ => Err(ConfigError::invalid(
                path,
                format!("slack.{what}_command"),
                format!("set only one of {what}_command, {what}_file and {what}_env"),
            )),
        }
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let resolve = |p: &Path| lexical_clean(&dir.join(p));
    let webhook = one(
        path,
        "webhook_url",
        raw.webhook_url_command,
        raw.webhook_url_file,
        raw.webhook_url_env,
        &resolve,
    )?;
    let token = one(
        path,
        "token",
        raw.token_command,
        raw.token_file,
        raw.token_env,
        &resolve,
    )?;
    let target = match (webhook, token, raw.channel) {
        (Some(_), Some(_), _) => {
            return Err(ConfigError::invalid(
                path,
                "slack",
                "set either a webhook (webhook_url_command/_file/_env) or a bot token with a channel, not both",
            ))
        }
        (Some(_), None, Some(_)) => {
            return Err(ConfigError::invalid(
                path,
                "slack.channel",
                "an incoming webhook posts to the channel it was made for; remove `channel` or use token_command",
            ))
        }
        (Some(w), None, None) => SlackTarget::Webhook(w),
        (None, Some(_), None) => {
            return Err(ConfigError::invalid(
                path,
                "slack.channel",
                "is missing: a bot token needs the channel to post to, e.g. channel = \"#ops\"",
            ))
        }
        (None, Some(token), Some(channel)) => SlackTarget::Bot { token, channel },
        (None, None, _) => {
            return Err(ConfigError::invalid(
                path,
                "slack",
                "has no destination: set webhook_url_command (or _file/_env), or token_command (or _file/_env) with channel",
            ))
        }
    };
    let api_url = raw
        .api_url
        .unwrap_or_else(|| SLACK_API_URL.to_string())
        .trim_end_matches('/')
        .to_string();
    if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
        return Err(ConfigError::invalid(
            path,
            "slack.api_url",
            format!("`{api_url}` is not an http(s) URL; expected e.g. {SLACK_API_URL}"),
        ));
    }
    let report_url = match raw.report_url {
        None => None,
        Some(u) => {
            let sample = u.replace(REPORT_PLACEHOLDER, "20270115T030000Z-local.html");
            match url::Url::parse(&sample) {
                Ok(p) if matches!(p.scheme(), "https" | "http") && !u.contains(['|', '<', '>']) => {
                    Some(u)
                }
                _ => {
                    return Err(ConfigError::invalid(
                        path,
                        "slack.report_url",
                        format!("`{u}` is not an http(s) URL; expected e.g. https://backups.example.com/drill/{REPORT_PLACEHOLDER}"),
                    ))
                }
            }
        }
    };
    Ok(SlackConfig {
        target,
        api_url,
        report_url,
        retries: raw.retries.unwrap_or(3),
        backoff: raw.backoff.unwrap_or(Duration::from_secs(2)),
        timeout: raw.timeout.unwrap_or(Duration::from_secs(30)),
    })
}

/// `[policy]`: the limits a drill is judged against.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Restore + checks must finish within this (RTO).
    #[serde(default, with = "humantime_serde")]
    pub max_rto: Option<Duration>,
    /// The restored snapshot must be at most this old at the start of the run
    /// (RPO).
    #[serde(default, with = "humantime_serde")]
    pub max_snapshot_age: Option<Duration>,
    /// Physical backups: the data lost by recovery (the target, or the
    /// snapshot's time, minus the last replayed transaction's commit time)
    /// must be at most this.
    #[serde(default, with = "humantime_serde")]
    pub max_data_loss: Option<Duration>,
}

/// One `[tiers.NAME]` entry: a restic repository.
#[derive(Debug, Clone)]
pub struct TierConfig {
    /// The tier's name (`local`, `ring`, `cold`, …).
    pub name: String,
    /// The repository as restic spells it (a path, `sftp:…`, …). A relative
    /// local path is already resolved against the config directory.
    pub repository: String,
    /// Where the password comes from.
    pub password: PasswordSource,
    /// Rotation disks for a `{disk}` placeholder in `repository`.
    pub disks: Option<Vec<u32>>,
    /// SSH options of an `sftp:` repository.
    pub ssh: Option<SshOptions>,
    /// `retention`: the policy the tier is pruned with, as `restic forget`
    /// flags (`["--keep-daily", "7", "--keep-weekly", "4"]`; restic docs,
    /// "Removing snapshots according to a policy"). drill never runs it: it
    /// checks it against the ledger (`drill retention`, `doctor`) and
    /// samples the snapshots closest to expiry first.
    pub retention: Option<Vec<String>>,
}

/// Flags `restic forget` takes that only choose what to keep (restic
/// docs, "Removing snapshots according to a policy").
pub const RETENTION_FLAGS: [&str; 5] = ["--keep-", "--group-by", "--host", "--tag", "--path"];

/// Check that `policy` holds only retention flags (and their values), so
/// that it can be given to `restic forget --dry-run` and nothing else.
///
/// # Errors
/// The first argument that is not a retention flag, with what to do.
pub fn check_retention_policy(policy: &[String]) -> Result<(), String> {
    if !policy.iter().any(|a| a.starts_with("--keep-")) {
        return Err(
            "holds no --keep-* flag; give the policy the tier is pruned with, as for restic forget: --keep-daily 7 --keep-weekly 4".into(),
        );
    }
    let mut expect_value = false;
    for a in policy {
        if expect_value && !a.starts_with("--") {
            expect_value = false;
            continue;
        }
        if !RETENTION_FLAGS.iter().any(|p| a.starts_with(p)) {
            return Err(format!(
                "`{a}` is not a retention flag; drill passes only --keep-*, --group-by, --host, --tag and --path to restic forget (always with --dry-run)"
            ));
        }
        expect_value = !a.contains('=');
    }
    Ok(())
}

/// `[sandbox]`: the throwaway PostgreSQL servers.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Which engine runs sandboxes: a name in
    /// [`crate::sandbox::ENGINES`] (`docker`, the default, or `local`).
    pub engine: String,
    /// Default image: a reference, a template with `{major}`, or `auto`
    /// (the default, `postgres:{major}`); see [`crate::restore::image`].
    pub image: String,
    /// Memory cap in bytes.
    pub memory_bytes: u64,
    /// CPU cap (number of CPUs, fractional allowed).
    pub cpus: f64,
    /// How long a sandbox may take to accept connections.
    pub startup_timeout: Duration,
    /// `engine = "local"`: the directory of the PostgreSQL server binaries
    /// (`initdb`, `postgres`, `psql`, `pg_restore`); default: found (see
    /// [`crate::sandbox::LocalEngine::find`]).
    pub bin_dir: Option<PathBuf>,
    /// Databases of a snapshot restored (and checked) at once, each in its
    /// own sandbox; default: the host's CPU count. Memory needed is up to
    /// `parallelism × memory_bytes`.
    pub parallelism: usize,
    /// How custom-format dumps are restored (`sandbox.restore_jobs`).
    pub restore_jobs: RestoreJobs,
    /// Start sandboxes with settings that trade crash safety for restore
    /// speed (`fsync=off`, `synchronous_commit=off`, `full_page_writes=off`,
    /// a larger `maintenance_work_mem`, …; see
    /// [`crate::sandbox::RESTORE_TUNING`]). Safe only because a sandbox is
    /// thrown away; default `true`.
    pub tuning: bool,
}

impl Default for SandboxConfig {
    /// The settings of a config without `[sandbox]` (see [`load`]), for
    /// work that needs an engine without a config (sweeping a run's
    /// sandboxes).
    fn default() -> Self {
        SandboxConfig {
            engine: "docker".into(),
            image: crate::restore::image::AUTO.into(),
            memory_bytes: 2 * 1024 * 1024 * 1024,
            cpus: 1.0,
            startup_timeout: Duration::from_secs(120),
            bin_dir: None,
            parallelism: 1,
            restore_jobs: RestoreJobs::Auto,
            tuning: true,
        }
    }
}

/// `sandbox.restore_jobs`: how many `pg_restore` jobs a custom-format
/// (`pg_dump -Fc`) dump gets, and how many `psql` sessions a plain or
/// `pg_dumpall` script is loaded over ([`crate::restore::parallel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreJobs {
    /// The sandbox's whole CPUs when it has at least two and the dump is
    /// at least [`crate::restore::postgres::JOBS_MIN_BYTES`] (custom) or
    /// [`crate::restore::postgres::PLAIN_JOBS_MIN_BYTES`] (plain);
    /// otherwise one.
    Auto,
    /// Exactly this many: 1 streams the dump into one `pg_restore` or
    /// `psql`; 2 or more copy a custom dump into the sandbox first and run
    /// `pg_restore --jobs=N`, or load a plain script over N `psql`
    /// sessions.
    Fixed(u32),
}

/// One `[[databases]]` entry: a dump inside each snapshot.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Name used in reports, check files and `--database`.
    pub name: String,
    /// The database server the dump is for (`kind`, default PostgreSQL).
    pub kind: &'static dyn crate::kind::DatabaseKind,
    /// Absolute path of the dump inside the snapshot.
    pub path: String,
    /// How the dump was made.
    pub format: DumpFormat,
    /// Compression, from the path's suffix.
    pub compression: Compression,
    /// Sandbox image for this database, as configured: a reference, a
    /// template with `{major}`, or `auto` (see [`crate::restore::image`]).
    pub image: String,
    /// The PostgreSQL database inside the restored dump that checks connect
    /// to (defaults to `name`).
    pub dbname: String,
    /// Roles created (NOLOGIN) in the sandbox before the restore. Optional:
    /// drill also creates the roles it finds a `pg_dump` referring to (see
    /// [`crate::restore::roles`]).
    pub roles: Vec<String>,
    /// Increments applied after the dump, in name order: absolute paths
    /// inside the snapshot, `*` and `?` matching within one path segment
    /// (MariaDB/MySQL: `mysqlbinlog` output).
    pub increments: Vec<String>,
    /// A dump without its completeness trailer (made with
    /// `--skip-comments`) is accepted; the report says so. Default false.
    pub accept_missing_trailer: bool,
    /// For `format = "basebackup"`: the WAL archive and the recovery
    /// target. `None` for dumps.
    pub recovery: Option<Recovery>,
}

/// How a physical base backup is recovered (`format = "basebackup"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    /// The WAL archive directory inside the snapshot (where
    /// `archive_command` copied segments); `None` when the base backup
    /// carries the WAL it needs (`pg_basebackup -X stream`).
    pub wal: Option<String>,
    /// Where recovery stops.
    pub target: RecoveryTarget,
}

/// Where recovery stops (PostgreSQL docs, 20.5.5 "Recovery Target").
#[derive(Debug, Clone, PartialEq)]
pub enum RecoveryTarget {
    /// Replay every WAL segment the archive holds (`target = "latest"`, the
    /// default).
    Latest,
    /// Stop as soon as the base backup is consistent
    /// (`recovery_target = 'immediate'`).
    Immediate,
    /// Stop before the first transaction committed after this time
    /// (`recovery_target_time`).
    Time(chrono::DateTime<chrono::FixedOffset>),
    /// Stop after this WAL location (`recovery_target_lsn`, e.g.
    /// `0/3000060`).
    Lsn(String),
    /// Stop after this transaction id commits (`recovery_target_xid`).
    Xid(String),
    /// Stop at this restore point (`recovery_target_name`, made by
    /// `pg_create_restore_point`).
    Name(String),
}

impl RecoveryTarget {
    /// The target as written in config (`latest`, an RFC 3339 time,
    /// `lsn 0/3000060`, `xid 1234`, `name before_migration`).
    pub fn describe(&self) -> String {
        match self {
            RecoveryTarget::Latest => "latest".into(),
            RecoveryTarget::Immediate => "immediate".into(),
            RecoveryTarget::Time(t) => t.to_rfc3339(),
            RecoveryTarget::Lsn(l) => format!("lsn {l}"),
            RecoveryTarget::Xid(x) => format!("xid {x}"),
            RecoveryTarget::Name(n) => format!("restore point `{n}`"),
        }
    }
}

/// Parse the recovery keys of a `[[databases]]` entry (`key` names it in
/// errors).
fn recovery(
    path: &Path,
    key: &str,
    format: DumpFormat,
    d: &RawDatabase,
) -> Result<Option<Recovery>, ConfigError> {
    let given: Vec<&str> = [
        ("wal", d.wal.is_some()),
        ("target", d.target.is_some()),
        ("target_lsn", d.target_lsn.is_some()),
        ("target_xid", d.target_xid.is_some()),
        ("target_name", d.target_name.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    if format != DumpFormat::Basebackup {
        return match given.first() {
            Some(k) => Err(ConfigError::invalid(
                path,
                format!("{key}.{k}"),
                format!(
                    "`{k}` is for physical backups (format = \"basebackup\"); a {} dump has no WAL to replay",
                    format.as_str()
                ),
            )),
            None => Ok(None),
        };
    }
    if let Some(w) = &d.wal {
        if !w.starts_with('/') {
            return Err(ConfigError::invalid(
                path,
                format!("{key}.wal"),
                format!("`{w}` is not absolute; give the WAL archive's directory inside the snapshot, e.g. /backups/auth_db/wal"),
            ));
        }
    }
    let targets: Vec<&&str> = given.iter().filter(|k| k.starts_with("target")).collect();
    if targets.len() > 1 {
        return Err(ConfigError::invalid(
            path,
            format!("{key}.{}", targets[1]),
            format!(
                "give one recovery target, not {}",
                targets
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        ));
    }
    let target = if let Some(t) = &d.target {
        match t.as_str() {
            "latest" => RecoveryTarget::Latest,
            "immediate" => RecoveryTarget::Immediate,
            other => RecoveryTarget::Time(
                chrono::DateTime::parse_from_rfc3339(other).map_err(|e| {
                    ConfigError::invalid(
                        path,
                        format!("{key}.target"),
                        format!("`{other}` is not \"latest\", \"immediate\" or an RFC 3339 time with its offset (e.g. 2026-06-01T03:15:00+09:00): {e}"),
                    )
                })?,
            ),
        }
    } else if let Some(l) = &d.target_lsn {
        let ok = l.split_once('/').is_some_and(|(a, b)| {
            u32::from_str_radix(a, 16).is_ok() && u32::from_str_radix(b, 16).is_ok()
        });
        if !ok {
            return Err(ConfigError::invalid(
                path,
                format!("{key}.target_lsn"),
                format!(
                    "`{l}` is not a WAL location; write it as PostgreSQL prints it, e.g. 0/3000060"
                ),
            ));
        }
        RecoveryTarget::Lsn(l.clone())
    } else if let Some(x) = &d.target_xid {
        if x.is_empty() || !x.chars().all(|c| c.is_ascii_digit()) {
            return Err(ConfigError::invalid(
                path,
                format!("{key}.target_xid"),
                format!("`{x}` is not a transaction id; give its number, e.g. \"1234\""),
            ));
        }
        RecoveryTarget::Xid(x.clone())
    } else if let Some(n) = &d.target_name {
        if n.is_empty() {
            return Err(ConfigError::invalid(
                path,
                format!("{key}.target_name"),
                "name the restore point made by pg_create_restore_point",
            ));
        }
        RecoveryTarget::Name(n.clone())
    } else {
        RecoveryTarget::Latest
    };
    Ok(Some(Recovery {
        wal: d.wal.clone(),
        target,
    }))
}

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// Time zone for display and schedules (IANA name).
    pub timezone: chrono_tz::Tz,
    /// Where reports and `history.csv` are written.
    pub reports_dir: PathBuf,
    /// Where `*.toml` check definitions are read from.
    pub checks_dir: PathBuf,
    /// When drills are due: a crontab(5) expression (five fields, or six
    /// with seconds first; see [`crate::schedule`]), in `timezone`.
    pub schedule: Option<crate::schedule::Schedule>,
    /// Tier order for fallback.
    pub fallback: Vec<String>,
    /// The restic binary (default: `restic` on `PATH`).
    pub restic: PathBuf,
    /// Limits the drill is judged against.
    pub policy: Policy,
    /// Tiers by name.
    pub tiers: BTreeMap<String, TierConfig>,
    /// Sandbox settings.
    pub sandbox: SandboxConfig,
    /// Databases in config order.
    pub databases: Vec<DatabaseConfig>,
    /// Slack settings, if any.
    pub slack: Option<SlackConfig>,
    /// `[timeouts]`.
    pub timeouts: Timeouts,
    /// `[outputs]`: metrics and JUnit files written after every run.
    pub outputs: Outputs,
    /// Checks from `checks_dir`, sorted by name.
    pub checks: Vec<CheckDefinition>,
}

/// Default places for the config: `./drill.toml`, then the user config dir
/// (`$XDG_CONFIG_HOME/drill/drill.toml` or `~/.config/drill/drill.toml`).
pub fn default_paths() -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from("drill.toml")];
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME") {
        v.push(PathBuf::from(dir).join("drill/drill.toml"));
    } else if let Some(home) = std::env::var_os("HOME") {
        v.push(PathBuf::from(home).join(".config/drill/drill.toml"));
    }
    v
}

/// Find and load the config: `explicit` if given, else the first of
/// [`default_paths`] that exists.
///
/// # Errors
/// [`ConfigError`] naming the file and key; `NotFound` when nothing exists.
pub fn discover(explicit: Option<&Path>) -> Result<Config, ConfigError> {
    if let Some(p) = explicit {
        return load(p);
    }
    let candidates = default_paths();
    for c in &candidates {
        if c.exists() {
            return load(c);
        }
    }
    Err(ConfigError::NotFound {
        looked: candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Load and validate the config at `path` and the checks in its `checks_dir`.
///
/// # Errors
/// [`ConfigError`] naming the file, the key and what is expected.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = read(path)?;
    let raw: RawConfig = parse_toml(path, &text)?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
    let resolve = |p: &Path| {
        lexical_clean(&if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        })
    };

    let tz_name = raw.timezone.clone().unwrap_or_else(|| "UTC".into());
    let timezone: chrono_tz::Tz = tz_name.parse().map_err(|_| {
        ConfigError::invalid(
            path,
            "timezone",
            format!("unknown time zone `{tz_name}`; expected an IANA name such as `Asia/Seoul`"),
        )
    })?;

    let mut tiers = BTreeMap::new();
    for (name, t) in raw.tiers {
        let key = format!("tiers.{name}");
        let sources = [
            t.password_command.is_some(),
            t.password_file.is_some(),
            t.password_prompt,
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if sources > 1 {
            return Err(ConfigError::invalid(
                path,
                key,
                "give at most one of password_command, password_file, password_prompt",
            ));
        }
        let password = if let Some(c) = t.password_command {
            PasswordSource::Command(c)
        } else if let Some(f) = t.password_file {
            PasswordSource::File(resolve(&f))
        } else if t.password_prompt {
            PasswordSource::Prompt
        } else {
            PasswordSource::Environment
        };
        if t.repository.trim().is_empty() {
            return Err(ConfigError::invalid(
                path,
                format!("{key}.repository"),
                "is empty; expected a restic repository (a path or `sftp:user@host:/path`)",
            ));
        }
        let repository = if looks_like_local_path(&t.repository) {
            resolve(Path::new(&t.repository)).display().to_string()
        } else {
            t.repository
        };
        if repository.contains("{disk}") && t.disks.as_ref().is_none_or(|d| d.is_empty()) {
            return Err(ConfigError::invalid(
                path,
                format!("{key}.disks"),
                "repository has a `{disk}` placeholder, so `disks` must list the disk numbers, e.g. disks = [1, 2, 3]",
            ));
        }
        let ssh = match t.ssh {
            None => None,
            Some(_) if !repository.starts_with("sftp:") => {
                return Err(ConfigError::invalid(
                    path,
                    format!("{key}.ssh"),
                    "applies only to `sftp:` repositories",
                ))
            }
            Some(s) => {
                for (k, v) in [
                    ("identity_file", &s.identity_file),
                    ("known_hosts", &s.known_hosts),
                ] {
                    if let Some(v) = v {
                        if v.to_string_lossy()
                            .chars()
                            .any(|c| c.is_whitespace() || c == '"' || c == '\'')
                        {
                            return Err(ConfigError::invalid(
                                path,
                                format!("{key}.ssh.{k}"),
                                "must not contain spaces or quotes (restic splits sftp.args on spaces)",
                            ));
                        }
                    }
                }
                Some(SshOptions {
                    port: s.port,
                    identity_file: s.identity_file.map(|f| resolve(&f)),
                    known_hosts: s.known_hosts.map(|f| resolve(&f)),
                    host_key_check: s.host_key_check,
                    connect_timeout: s.connect_timeout.unwrap_or(Duration::from_secs(10)),
                })
            }
        };
        if let Some(policy) = &t.retention {
            check_retention_policy(policy)
                .map_err(|e| ConfigError::invalid(path, format!("{key}.retention"), e))?;
        }
        if let Some(d) = &t.disks {
            if !repository.contains("{disk}") {
                return Err(ConfigError::invalid(
                    path,
                    format!("{key}.disks"),
                    "is set but `repository` has no `{disk}` placeholder to put the disk number in",
                ));
            }
            let mut seen = std::collections::BTreeSet::new();
            if let Some(dup) = d.iter().find(|x| !seen.insert(**x)) {
                return Err(ConfigError::invalid(
                    path,
                    format!("{key}.disks"),
                    format!("lists disk {dup} twice"),
                ));
            }
        }
        tiers.insert(
            name.clone(),
            TierConfig {
                name,
                repository,
                password,
                disks: t.disks,
                ssh,
                retention: t.retention,
            },
        );
    }

    let schedule = match &raw.schedule {
        None => None,
        Some(expr) => Some(crate::schedule::Schedule::parse(expr).map_err(|e| {
            ConfigError::invalid(
                path,
                "schedule",
                format!("`{expr}` is not a crontab(5) expression (five fields, e.g. \"0 3 15 1,4,7,10 *\", or six with seconds first): {e}"),
            )
        })?),
    };
    let fallback = raw.fallback.unwrap_or_default();
    for (i, f) in fallback.iter().enumerate() {
        if !tiers.contains_key(f) {
            return Err(ConfigError::invalid(
                path,
                format!("fallback[{i}]"),
                format!("names tier `{f}`, which has no [tiers.{f}] table"),
            ));
        }
    }

    let cpus = raw.sandbox.cpus.unwrap_or(1.0);
    if !(cpus > 0.0 && cpus.is_finite()) {
        return Err(ConfigError::invalid(
            path,
            "sandbox.cpus",
            "must be a positive number of CPUs, e.g. 1.0",
        ));
    }
    let memory_bytes = raw
        .sandbox
        .memory
        .map(|m| m.0)
        .unwrap_or(2 * 1024 * 1024 * 1024);
    if memory_bytes < 64 * 1024 * 1024 {
        return Err(ConfigError::invalid(
            path,
            "sandbox.memory",
            "is below 64 MiB, too little for PostgreSQL; give e.g. \"2GiB\"",
        ));
    }
    let parallelism = match raw.sandbox.parallelism {
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Some(0) => {
            return Err(ConfigError::invalid(
                path,
                "sandbox.parallelism",
                "must be at least 1 (databases restored at once); leave it out for one per CPU",
            ))
        }
        Some(n) => n,
    };
    let restore_jobs =
        match raw.sandbox.restore_jobs {
            None => RestoreJobs::Auto,
            Some(RawJobs::Word(w)) if w == "auto" => RestoreJobs::Auto,
            Some(RawJobs::Count(n)) if (1..=64).contains(&n) => RestoreJobs::Fixed(n as u32),
            Some(_) => return Err(ConfigError::invalid(
                path,
                "sandbox.restore_jobs",
                "must be \"auto\" or a number of restore jobs (pg_restore jobs, psql sessions) from 1 (stream the dump into one) to 64",
            )),
        };
    if let Some(image) = &raw.sandbox.image {
        crate::restore::image::validate(image)
            .map_err(|why| ConfigError::invalid(path, "sandbox.image", why))?;
    }
    let engine = raw.sandbox.engine.unwrap_or_else(|| "docker".into());
    if crate::sandbox::engine_entry(&engine).is_none() {
        return Err(ConfigError::invalid(
            path,
            "sandbox.engine",
            format!(
                "`{engine}` is not a sandbox engine drill knows; use one of {}",
                crate::sandbox::engine_names().join(", ")
            ),
        ));
    }
    let sandbox = SandboxConfig {
        engine,
        image: raw
            .sandbox
            .image
            .unwrap_or_else(|| crate::restore::image::AUTO.into()),
        memory_bytes,
        cpus,
        startup_timeout: raw
            .sandbox
            .startup_timeout
            .unwrap_or(Duration::from_secs(120)),
        bin_dir: raw.sandbox.bin_dir.map(|d| resolve(&d)),
        parallelism,
        restore_jobs,
        tuning: raw.sandbox.tuning.unwrap_or(true),
    };

    let mut databases: Vec<DatabaseConfig> = Vec::new();
    for (i, d) in raw.databases.into_iter().enumerate() {
        let key = format!("databases[{i}]");
        if d.name.is_empty()
            || !d
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::invalid(
                path,
                format!("{key}.name"),
                format!(
                    "`{}` is not a valid name; use letters, digits, `-` and `_`",
                    d.name
                ),
            ));
        }
        if databases.iter().any(|x| x.name == d.name) {
            return Err(ConfigError::invalid(
                path,
                format!("{key}.name"),
                format!("database `{}` is listed twice", d.name),
            ));
        }
        if !d.path.starts_with('/') {
            return Err(ConfigError::invalid(
                path,
                format!("{key}.path"),
                format!(
                    "`{}` is not absolute; give the dump's path inside the snapshot as `restic ls` shows it, e.g. /dumps/frame-postgres.sql",
                    d.path
                ),
            ));
        }
        let kind = match &d.kind {
            None => crate::kind::default_kind(),
            Some(k) => crate::kind::by_name(k).ok_or_else(|| {
                ConfigError::invalid(
                    path,
                    format!("{key}.kind"),
                    format!(
                        "`{k}` is not a database kind drill knows; use one of {}",
                        crate::kind::names().join(", ")
                    ),
                )
            })?,
        };
        let format = match d.format {
            None => kind.formats()[0],
            Some(f) if kind.formats().contains(&f) => f,
            Some(f) => {
                return Err(ConfigError::invalid(
                    path,
                    format!("{key}.format"),
                    format!(
                        "`{}` is not a {} dump format; {} dumps are {}",
                        f.as_str(),
                        kind.title(),
                        kind.title(),
                        kind.formats()
                            .iter()
                            .map(|f| format!("\"{}\"", f.as_str()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            }
        };
        if format == DumpFormat::PgDumpall && !d.roles.is_empty() {
            return Err(ConfigError::invalid(
                path,
                format!("{key}.roles"),
                "a pg_dumpall dump creates its own roles (pre-creating them would make its CREATE ROLE fail); remove `roles`",
            ));
        }
        if format == DumpFormat::Mysqldump && !d.roles.is_empty() {
            return Err(ConfigError::invalid(
                path,
                format!("{key}.roles"),
                "`roles` are for PostgreSQL dumps; a mysqldump --all-databases dump carries its users",
            ));
        }
        if !d.increments.is_empty() && format != DumpFormat::Mysqldump {
            return Err(ConfigError::invalid(
                path,
                format!("{key}.increments"),
                format!(
                    "increments are binlog SQL applied after a mysqldump; a {} dump has none",
                    format.as_str()
                ),
            ));
        }
        for (j, inc) in d.increments.iter().enumerate() {
            if !inc.starts_with('/') {
                return Err(ConfigError::invalid(
                    path,
                    format!("{key}.increments[{j}]"),
                    format!("`{inc}` is not absolute; give a path (or a glob such as /backups/incremental_*.sql) inside the snapshot"),
                ));
            }
        }
        let recovery = recovery(path, &key, format, &d)?;
        if let Some(image) = &d.image {
            kind.validate_image(image)
                .map_err(|why| ConfigError::invalid(path, format!("{key}.image"), why))?;
        }
        // `[sandbox] image` is the PostgreSQL image; other kinds take their
        // own `image` or their kind's default (`auto`).
        let image = match d.image {
            Some(i) => i,
            None if std::ptr::addr_eq(kind, crate::kind::default_kind()) => sandbox.image.clone(),
            None => crate::restore::image::AUTO.to_string(),
        };
        databases.push(DatabaseConfig {
            compression: Compression::from_path(&d.path),
            dbname: d.dbname.unwrap_or_else(|| d.name.clone()),
            image,
            kind,
            name: d.name,
            path: d.path,
            format,
            roles: d.roles,
            increments: d.increments,
            accept_missing_trailer: d.accept_missing_trailer,
            recovery,
        });
    }

    let reports_dir = resolve(&raw.reports_dir.unwrap_or_else(|| PathBuf::from("reports")));
    let checks_dir = resolve(&raw.checks_dir.unwrap_or_else(|| PathBuf::from("checks")));
    let timeouts = timeouts(path, raw.timeouts)?;
    let checks = checks::load_dir(&checks_dir, &databases, timeouts.check)?;

    Ok(Config {
        path: path.to_path_buf(),
        timezone,
        reports_dir,
        checks_dir,
        schedule,
        fallback,
        restic: raw
            .restic
            .map(|p| resolve(&p))
            .unwrap_or_else(|| PathBuf::from("restic")),
        policy: raw.policy,
        tiers,
        sandbox,
        databases,
        slack: raw.slack.map(|s| slack_config(path, s)).transpose()?,
        timeouts,
        outputs: Outputs {
            metrics: raw.outputs.metrics.map(|p| resolve(&p)),
            junit: raw.outputs.junit.map(|p| resolve(&p)),
        },
        checks,
    })
}

/// `path` with `.` and `name/..` components removed, without touching the
/// file system (so a repository on an unmounted disk still resolves).
fn lexical_clean(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Whether restic would treat `repo` as a local path (no `backend:` prefix).
fn looks_like_local_path(repo: &str) -> bool {
    const BACKENDS: [&str; 8] = [
        "sftp:", "rest:", "s3:", "b2:", "azure:", "gs:", "rclone:", "swift:",
    ];
    let r = repo.strip_prefix("local:").unwrap_or(repo);
    !BACKENDS.iter().any(|b| r.starts_with(b))
}

impl Config {
    /// The tier named `name`.
    ///
    /// # Errors
    /// A message naming the config file and the tiers it has.
    pub fn tier(&self, name: &str) -> Result<&TierConfig, String> {
        self.tiers.get(name).ok_or_else(|| {
            format!(
                "tier `{name}` is not configured in {} (known: {})",
                self.path.display(),
                self.tiers.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// The tier a run uses when `--tier` is not given: the first of
    /// `fallback`, else the only tier, else `local`.
    pub fn default_tier(&self) -> Option<&str> {
        if let Some(f) = self.fallback.first() {
            return Some(f);
        }
        if self.tiers.len() == 1 {
            return self.tiers.keys().next().map(String::as_str);
        }
        self.tiers.get("local").map(|t| t.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units_and_refuse_ambiguous_ones() {
        assert_eq!(Size::parse("1GiB"), Ok(Size(1 << 30)));
        assert_eq!(Size::parse("512 MiB"), Ok(Size(512 << 20)));
        assert_eq!(Size::parse("2gib"), Ok(Size(2 << 30)));
        assert_eq!(Size::parse("1.5GiB"), Ok(Size(3 << 29)));
        assert_eq!(Size::parse("1048576"), Ok(Size(1 << 20)));
        assert_eq!(Size::parse("4096B"), Ok(Size(4096)));
        for ambiguous in [
            "1GB", "1G", "1g", "1gb", "512MB", "512M", "1 GB", "1TB", "64KB",
        ] {
            let e = Size::parse(ambiguous).unwrap_err();
            assert!(
                e.contains("ambiguous") && e.contains("iB`"),
                "{ambiguous}: {e}"
            );
        }
        assert!(Size::parse("1GB").unwrap_err().contains("write `1GiB`"));
        assert!(Size::parse("2 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(Size::parse("GiB").unwrap_err().contains("not a size"));
        assert!(Size::parse("-1GiB").unwrap_err().contains("not a size"));
    }

    #[test]
    fn line_and_column_count_characters() {
        let text = "a = 1\nbé = \"x\"\n[t\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // After the two-byte `é`.
        assert_eq!(line_column(text, 9), (2, 3));
        assert_eq!(line_column(text, text.len()), (4, 1));
    }

    #[test]
    fn a_syntax_error_names_line_and_column() {
        let e = parse_toml::<toml::Table>(Path::new("drill.toml"), "a = 1\n[sandbox\nb = 2\n")
            .unwrap_err();
        let ConfigError::Syntax { line, column, .. } = &e else {
            panic!("{e:?}");
        };
        assert_eq!((*line, *column), (2, 9), "{e}");
        let msg = e.to_string();
        assert!(msg.starts_with("drill.toml:2:9: not valid TOML: "), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn unknown_key_names_file_key_and_line() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "drill.toml",
            "[tiers.local]\nrepository = \"/r\"\npasword_file = \"x\"\n",
        );
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("drill.toml:3"), "{e}");
        assert!(e.contains("tiers.local"), "{e}");
        assert!(e.contains("pasword_file"), "{e}");
        assert!(e.contains("password_file"), "expected keys listed: {e}");
    }

    #[test]
    fn bad_format_is_named() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "drill.toml",
            "[[databases]]\nname = \"a\"\npath = \"/a.sql\"\nformat = \"tar\"\n",
        );
        let e = load(&p).unwrap_err().to_string();
        assert!(
            e.contains("databases[0].format") || e.contains("databases.0.format"),
            "{e}"
        );
        assert!(e.contains("pg_dumpall"), "{e}");
    }

    #[test]
    fn relative_paths_resolve_against_config_dir() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "conf/drill.toml",
            "[tiers.local]\nrepository = \"repo\"\npassword_file = \"pw\"\n",
        );
        let c = load(&p).unwrap();
        let t = &c.tiers["local"];
        assert_eq!(
            t.repository,
            d.path().join("conf/repo").display().to_string()
        );
        assert_eq!(t.password, PasswordSource::File(d.path().join("conf/pw")));
        assert_eq!(c.reports_dir, d.path().join("conf/reports"));
        assert_eq!(
            lexical_clean(Path::new("/a/b/../c/./d")),
            PathBuf::from("/a/c/d")
        );
    }

    #[test]
    fn outputs_resolve_against_config_dir() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "conf/drill.toml",
            "[outputs]\nmetrics = \"textfile/drill.prom\"\njunit = \"/ci/junit.xml\"\n",
        );
        let c = load(&p).unwrap();
        assert_eq!(
            c.outputs,
            Outputs {
                metrics: Some(d.path().join("conf/textfile/drill.prom")),
                junit: Some(PathBuf::from("/ci/junit.xml")),
            }
        );
        let p = write(d.path(), "bare.toml", "");
        assert_eq!(load(&p).unwrap().outputs, Outputs::default());
        let p = write(d.path(), "typo.toml", "[outputs]\nmetric = \"x.prom\"\n");
        assert!(load(&p).unwrap_err().to_string().contains("metric"));
    }

    #[test]
    fn report_url_is_an_http_url_with_an_optional_placeholder() {
        let d = tempfile::tempdir().unwrap();
        let load_url = |url: &str| {
            let p = write(
                d.path(),
                "drill.toml",
                &format!("[slack]\nwebhook_url_env = \"W\"\nreport_url = \"{url}\"\n"),
            );
            load(&p).map(|c| c.slack.unwrap().report_url)
        };
        assert_eq!(
            load_url("https://backups.example.com/drill/{report}").unwrap(),
            Some("https://backups.example.com/drill/{report}".into())
        );
        assert_eq!(
            load_url("https://grafana.example.com/d/drill").unwrap(),
            Some("https://grafana.example.com/d/drill".into())
        );
        for bad in ["backups/{report}", "ftp://host/{report}", "https://a/b|c"] {
            let e = load_url(bad).unwrap_err().to_string();
            assert!(e.contains("slack.report_url"), "{bad}: {e}");
        }
    }

    #[test]
    fn slack_needs_one_destination_and_one_source_each() {
        let d = tempfile::tempdir().unwrap();
        let load_slack = |body: &str| {
            let p = write(d.path(), "drill.toml", &format!("[slack]\n{body}"));
            load(&p).map(|c| c.slack.unwrap())
        };
        let err = |body: &str| load_slack(body).unwrap_err().to_string();
        assert!(err("token_env = \"T\"\n").contains("slack.channel"));
        assert!(err("webhook_url_env = \"W\"\nchannel = \"#ops\"\n").contains("slack.channel"));
        assert!(
            err("webhook_url_env = \"W\"\ntoken_env = \"T\"\nchannel = \"#x\"\n")
                .contains("not both")
        );
        assert!(
            err("webhook_url_env = \"W\"\nwebhook_url_command = \"echo\"\n")
                .contains("only one of")
        );
        assert!(err("channel = \"#ops\"\n").contains("no destination"));
        assert!(err("webhook_url_env = \"W\"\napi_url = \"slack.com\"\n").contains("slack.api_url"));
        let s = load_slack("webhook_url_file = \"hook\"\n").unwrap();
        assert_eq!(
            s.target,
            SlackTarget::Webhook(SecretSource::File(d.path().join("hook")))
        );
        assert_eq!((s.retries, s.api_url.as_str()), (3, SLACK_API_URL));
        let s =
            load_slack("token_command = \"pass slack\"\nchannel = \"#ops\"\nbackoff = \"1s\"\n")
                .unwrap();
        assert_eq!(
            s.target,
            SlackTarget::Bot {
                token: SecretSource::Command("pass slack".into()),
                channel: "#ops".into()
            }
        );
        assert_eq!(s.backoff, Duration::from_secs(1));
    }

    #[test]
    fn compression_by_suffix() {
        assert_eq!(Compression::from_path("/d/x.sql.gz"), Compression::Gzip);
        assert_eq!(Compression::from_path("/d/x.sql.zst"), Compression::Zstd);
        assert_eq!(Compression::from_path("/d/x.dump"), Compression::None);
    }
}
