//! PostgreSQL physical backups: a `pg_basebackup` base backup plus the WAL
//! archive, recovered to a target (point-in-time recovery; PostgreSQL
//! docs, 26.3 "Continuous Archiving and Point-in-Time Recovery").
//!
//! The sandbox starts without its server ([`Needs::DataDirectory`]). Then:
//!
//! 1. **Choose the base backup.** `path` is a base backup directory or a
//!    directory of `base_*` ones; each one's `backup_label` (the first
//!    member of `base.tar`, or the file of a plain-format backup) gives its
//!    start WAL location and time. The newest one that started at or before
//!    the target (time or LSN) is used; for `latest` and `immediate` the
//!    newest; for a restore point or a transaction id, whose place in the
//!    WAL is unknown until it is replayed, the oldest.
//! 2. **Prove the archive unbroken** before any restore: WAL segment names
//!    are consecutive numbers (`TTTTTTTTXXXXXXXXYYYYYYYY`, PostgreSQL docs,
//!    30.6 "WAL Internals"); every segment from the base backup's start to
//!    the archive's newest must be in the archive or in the base backup's
//!    own WAL (its `backup_manifest` `WAL-Ranges`). A gap is named.
//! 3. **Put the base backup in place**: `base.tar[.gz|.zst]` (and
//!    `pg_wal.tar[.gz]` into `pg_wal`) or the plain directory, streamed
//!    from `restic dump` into `tar -x` in the sandbox's `PGDATA`; then
//!    `pg_verifybackup` checks every file against the `backup_manifest`.
//! 4. **Stage the WAL archive** in a scratch directory of the sandbox
//!    (never on the host): the list of files recovery may take (`NAME
//!    BYTES`: the segments from the base backup's start segment to the
//!    archive's newest, or, for `immediate` and an LSN target, to 64 MiB
//!    past the target; and the timeline history files), and the
//!    `restore_command` script that reads it. Segments from before the base
//!    backup's start (kept for older base backups) are left out. History
//!    files of the base backup's timeline and later ones are dumped first,
//!    one `restic dump` each: recovery asks for them before any segment,
//!    and the archive's tar, in name order, would bring them last.
//! 5. **Recover while the WAL streams in**: `recovery.signal`,
//!    `restore_command`, the `recovery_target_*` setting with
//!    `recovery_target_action = 'pause'`, and overrides that keep the
//!    sandbox away from production (`archive_mode=off`, no
//!    `primary_conninfo`, drill's own `pg_hba`). The server starts at once;
//!    beside it one `restic dump` of the archive directory streams into
//!    `tar -x` in the sandbox, which extracts only the listed files (restic
//!    still reads the others: it dumps a directory whole, and one process
//!    per segment would cost restic's start-up, about 0.5 s, per segment).
//!    `restore_command` answers status 1 ("not in the archive") for a file
//!    not listed; hands over (copies) a listed file only once it is whole
//!    (its size equals the listed size: tar writes a member in order, and
//!    restic writes only blobs it verified); waits for one still on its
//!    way; and exits with status 200 (above 125: PostgreSQL aborts
//!    recovery, PostgreSQL docs 26.3.4) once drill marked the fetch
//!    `failed`, or marked it `fetched` (only after tar took the whole
//!    stream and restic exited 0) while the file is still not whole. A
//!    failed fetch ends the restore at once, naming the member the stream
//!    broke at; a passed restore needs the fetch ended whole even when
//!    recovery reached its target before. drill waits until recovery
//!    pauses at the target (and the last replayed transaction is not after
//!    it) or, for `latest`, ends; then resumes it, which ends recovery, and
//!    creates its own superuser with the run's random password so checks
//!    connect as on a logical restore.
//!
//! Disk: the sandbox holds the base backup, the staged WAL (nothing is
//! deleted from the stage while recovery may still ask for it) and the
//! copies recovery keeps in `pg_wal` until its restartpoints recycle them
//! (up to about `max_wal_size`).
//!
//! Fail-closed: a missing or damaged segment before the target, a base
//! backup without `backup_label` or `backup_manifest`, `pg_verifybackup`
//! failing, a target before the base backup's end, recovery that ends
//! before the archive's end or before the target are failures that name
//! the segment or the cause. So is a WAL fetch that breaks (damaged
//! repository content: a failure; restic or the sandbox failing otherwise:
//! an environment error): never a pass because WAL was late or cut short.
//! A server that cannot run the data (another major version, a missing
//! library) is an environment error.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};
use futures_util::future::LocalBoxFuture as BoxFuture;
use tokio::io::AsyncReadExt;

use super::{
    image, open, restic_status, stalled_message, Counter, DumpHead, Needs, RestoreMethod,
    RestoreOutcome, RestorePlan, Source,
};
use crate::config::{Compression, RecoveryTarget, SANDBOX_SUPERUSER};
use crate::report::{RecoveryReport, Status};
use crate::sandbox::Sandbox;
use crate::tier::SnapshotFile;

/// The physical PostgreSQL restore method.
pub struct PgPhysical;

/// The registered instance.
pub static PG_PHYSICAL: PgPhysical = PgPhysical;

/// Where the WAL archive is extracted inside the sandbox (a scratch path).
const WAL_DIR: &str = "drill-wal";
/// Where the base backup's manifest goes inside the sandbox.
const MANIFEST: &str = "drill-backup_manifest";
/// The `pg_hba.conf` drill gives the recovered server: the Unix socket
/// inside the sandbox is trusted (drill's own execs), TCP needs a password.
const HBA: &str = "local all all trust\nhost all all all scram-sha-256\n";
/// The role drill connects as inside the sandbox to drive recovery (the
/// bootstrap superuser of clusters made by `initdb` and the official
/// images).
const LOCAL_ROLE: &str = "postgres";
/// Bytes of a `base.tar` read to find its `backup_label`.
const LABEL_SCAN_BYTES: u64 = 4 * 1024 * 1024;
/// Lines of the server's log read to explain how recovery ended.
const LOG_LINES: usize = 200;

impl RestoreMethod for PgPhysical {
    fn needs(&self) -> Needs {
        Needs::DataDirectory
    }

    fn reads(&self) -> &'static str {
        "dir"
    }

    fn volatile(&self, _format: crate::config::DumpFormat) -> crate::ledger::identity::Volatile {
        crate::ledger::identity::Volatile::Tree
    }

    fn tool(&self, _plan: &RestorePlan) -> &'static str {
        "postgres (WAL replay)"
    }

    fn image_follows_backup(&self, database: &crate::config::DatabaseConfig) -> bool {
        is_template(&database.image)
    }

    fn inspect<'a>(
        &'a self,
        plan: &'a RestorePlan,
        source: &'a Source<'a>,
    ) -> BoxFuture<'a, Result<DumpHead, RestoreOutcome>> {
        Box::pin(async move {
            if !is_template(&plan.database.image) {
                return Ok(DumpHead::default());
            }
            let mut head = DumpHead::default();
            if let Some(major) = wal_major(plan, source).await {
                head.versions.server = Some(major.to_string());
            }
            Ok(head)
        })
    }

    fn image(
        &self,
        database: &crate::config::DatabaseConfig,
        head: &DumpHead,
    ) -> Result<String, String> {
        let configured = &database.image;
        if !is_template(configured) {
            return Ok(configured.clone());
        }
        match &head.versions.server {
            Some(major) => {
                let template = if configured == image::AUTO {
                    image::AUTO_TEMPLATE
                } else {
                    configured
                };
                Ok(template.replace(image::MAJOR, major))
            }
            None => Err(format!(
                "database `{}`: a base backup runs only in a server of the major version that took it, and drill could not read that version from its WAL (no WAL segment in its pg_wal.tar or archive, or a page magic drill does not know); set `image` in its [[databases]] entry to that version's image (e.g. image = \"postgres:16\")",
                database.name
            )),
        }
    }

    fn execute<'a>(
        &'a self,
        plan: &'a RestorePlan,
        source: &'a Source<'a>,
        sandbox: &'a Sandbox,
        progress: &'a Counter,
    ) -> BoxFuture<'a, RestoreOutcome> {
        Box::pin(recover(plan, source, sandbox, progress))
    }
}

fn is_template(image_ref: &str) -> bool {
    image::is_template(image_ref)
}

/// The PostgreSQL major version whose WAL starts pages with `magic`
/// (`XLOG_PAGE_MAGIC` in PostgreSQL's `xlog_internal.h`, little-endian at
/// the start of every WAL page); it changes with every major release.
fn major_of_magic(magic: u16) -> Option<u32> {
    Some(match magic {
        0xD106 => 13,
        0xD10D => 14,
        0xD110 => 15,
        0xD113 => 16,
        0xD116 => 17,
        0xD118 => 18,
        _ => return None,
    })
}

/// The major version that wrote the WAL of the base backups under the
/// plan's path: the page magic of the newest archived segment, else of the
/// first segment in a `pg_wal.tar`. `None` when neither can be read.
async fn wal_major(plan: &RestorePlan, source: &Source<'_>) -> Option<u32> {
    let db = &plan.database;
    let first_bytes = |path: String, compression: Compression, tar: bool| async move {
        let mut s = open(
            &path,
            compression,
            source.repo,
            source.snapshot,
            source.timeouts.stall,
            Counter::default(),
            0,
        )
        .ok()?;
        let mut magic = [0u8; 2];
        let mut found = false;
        if tar {
            for _ in 0..16 {
                let Some((name, size)) = tar_header(&mut s.tap).await else {
                    break;
                };
                if size >= 2 && parse_segment(name_of(&name), DEFAULT_SEGMENT_BYTES).is_some() {
                    found = s.tap.read_exact(&mut magic).await.is_ok();
                    break;
                }
                let mut skip = (&mut s.tap).take(size.div_ceil(512) * 512);
                if tokio::io::copy(&mut skip, &mut tokio::io::sink())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        } else {
            found = s.tap.read_exact(&mut magic).await.is_ok();
        }
        let _ = s.dump.stop().await;
        found.then(|| u16::from_le_bytes(magic))
    };
    if let Some(wal) = db.recovery.as_ref().and_then(|r| r.wal.as_deref()) {
        if let Ok(files) = source.repo.list_dir(source.snapshot, wal).await {
            if let Some(f) = files.iter().rev().find(|f| {
                f.node_type == "file"
                    && parse_segment(name_of(&f.path), DEFAULT_SEGMENT_BYTES).is_some()
            }) {
                if let Some(m) = first_bytes(f.path.clone(), Compression::None, false).await {
                    return major_of_magic(m);
                }
            }
        }
    }
    let tree = source
        .repo
        .list_tree(source.snapshot, &db.path)
        .await
        .ok()?;
    let wal_tar = tree
        .iter()
        .find(|f| f.node_type == "file" && name_of(&f.path).starts_with("pg_wal.tar"))?;
    let m = first_bytes(
        wal_tar.path.clone(),
        Compression::from_path(&wal_tar.path),
        true,
    )
    .await?;
    major_of_magic(m)
}

/// The next member header of a tar stream: its name and size in bytes
/// ([`parse_tar_header`]). `None` at the archive's end (a zero block) or
/// when the stream ends.
async fn tar_header<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Option<(String, u64)> {
    let mut header = [0u8; 512];
    if r.read_exact(&mut header).await.is_err() {
        return None;
    }
    parse_tar_header(&header)
}

/// A tar member header's name and size in bytes (POSIX ustar: the name in
/// bytes 0–99, after the prefix in bytes 345–499 when the magic is
/// `ustar`; the size in octal in bytes 124–135). `None` for a zero block
/// (the archive's end).
fn parse_tar_header(header: &[u8; 512]) -> Option<(String, u64)> {
    if header.iter().all(|b| *b == 0) {
        return None;
    }
    let text = |field: &[u8]| {
        let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
        String::from_utf8_lossy(&field[..end]).to_string()
    };
    let mut name = text(&header[..100]);
    let prefix = text(&header[345..500]);
    if &header[257..262] == b"ustar" && !prefix.is_empty() {
        name = format!("{prefix}/{name}");
    }
    let size_text: String = header[124..136]
        .iter()
        .take_while(|b| **b != 0 && **b != b' ')
        .map(|b| *b as char)
        .collect();
    Some((name, u64::from_str_radix(size_text.trim(), 8).unwrap_or(0)))
}

/// The name of the last tar member seen in a stream, shared.
type LastMember = std::sync::Arc<std::sync::Mutex<Option<String>>>;

/// An `AsyncRead` pass-through over a tar stream that remembers the name
/// of the last member whose header went by: where the stream was when it
/// broke (restic writes a member's header before it reads the member's
/// blobs).
struct TarMembers<R> {
    inner: R,
    last: LastMember,
    header: Vec<u8>,
    /// Bytes of the current member's data (and padding) still to pass.
    skip: u64,
    ended: bool,
}

impl<R> TarMembers<R> {
    fn new(inner: R, last: LastMember) -> Self {
        TarMembers {
            inner,
            last,
            header: Vec::with_capacity(512),
            skip: 0,
            ended: false,
        }
    }

    fn watch(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.ended {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len() as u64);
                self.skip -= n;
                bytes = &bytes[n as usize..];
                continue;
            }
            let n = (512 - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() == 512 {
                let block: &[u8; 512] = self.header.as_slice().try_into().expect("512 bytes");
                match parse_tar_header(block) {
                    Some((name, size)) => {
                        self.skip = size.div_ceil(512) * 512;
                        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(name);
                    }
                    None => self.ended = true,
                }
                self.header.clear();
            }
        }
    }
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for TarMembers<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &polled {
            this.watch(&buf.filled()[before..]);
        }
        polled
    }
}

/// A WAL location (`XXXXXXXX/YYYYYYYY` in PostgreSQL's notation) as a
/// byte position.
fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// A WAL segment file name's timeline and segment number, for segments of
/// `segment_bytes` (PostgreSQL `XLogFromFileName`).
fn parse_segment(name: &str, segment_bytes: u64) -> Option<(u32, u64)> {
    if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let tli = u32::from_str_radix(&name[0..8], 16).ok()?;
    let log = u64::from_str_radix(&name[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&name[16..24], 16).ok()?;
    Some((tli, log * per_log(segment_bytes) + seg))
}

fn per_log(segment_bytes: u64) -> u64 {
    0x1_0000_0000 / segment_bytes.max(1)
}

/// The file name of segment `segno` on timeline `tli` (PostgreSQL
/// `XLogFileName`).
fn segment_name(tli: u32, segno: u64, segment_bytes: u64) -> String {
    let per = per_log(segment_bytes);
    format!("{tli:08X}{:08X}{:08X}", segno / per, segno % per)
}

/// What a base backup's `backup_label` says (PostgreSQL
/// `do_pg_backup_start`).
#[derive(Debug, Clone)]
struct Label {
    start_lsn: u64,
    start_segment: String,
    timeline: u32,
    start_time: Option<DateTime<FixedOffset>>,
    start_time_text: String,
}

fn parse_label(text: &str) -> Option<Label> {
    let mut start_lsn = None;
    let mut start_segment = String::new();
    let mut timeline = None;
    let mut start_time_text = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("START WAL LOCATION: ") {
            let (lsn, file) = rest.split_once(" (file ").unwrap_or((rest, ""));
            start_lsn = parse_lsn(lsn);
            start_segment = file.trim_end_matches(')').to_string();
        } else if let Some(rest) = line.strip_prefix("START TIMELINE: ") {
            timeline = rest.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("START TIME: ") {
            start_time_text = rest.trim().to_string();
        }
    }
    let timeline = timeline
        .or_else(|| u32::from_str_radix(start_segment.get(0..8)?, 16).ok())
        .unwrap_or(1);
    Some(Label {
        start_lsn: start_lsn?,
        start_time: parse_label_time(&start_time_text),
        start_segment,
        timeline,
        start_time_text,
    })
}

/// `2026-06-01 03:00:00 UTC` (the server's `log_timezone` abbreviation):
/// UTC/GMT and numeric zones are understood; other abbreviations are
/// ambiguous and give `None`.
fn parse_label_time(text: &str) -> Option<DateTime<FixedOffset>> {
    let (stamp, zone) = text.rsplit_once(' ')?;
    let naive = chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S").ok()?;
    let offset = match zone {
        "UTC" | "GMT" | "Z" => 0,
        z if z.starts_with('+') || z.starts_with('-') => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let digits: String = z[1..].chars().filter(|c| c.is_ascii_digit()).collect();
            let (h, m) = match digits.len() {
                2 => (digits.parse::<i32>().ok()?, 0),
                4 => (
                    digits[0..2].parse::<i32>().ok()?,
                    digits[2..4].parse().ok()?,
                ),
                _ => return None,
            };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let tz = FixedOffset::east_opt(offset)?;
    naive.and_local_timezone(tz).single()
}

/// One base backup found in the snapshot.
#[derive(Debug, Clone)]
struct Base {
    dir: String,
    /// `base.tar[.gz|.zst]` for the tar format; `None`: plain.
    tar: Option<SnapshotFile>,
    /// `pg_wal.tar[.gz|.zst]` (tar format, `-X stream`).
    wal_tar: Option<SnapshotFile>,
    /// Other `*.tar` files (tablespaces).
    tablespaces: Vec<String>,
    manifest: Option<SnapshotFile>,
    label: Option<SnapshotFile>,
    /// Plain format: WAL files in its `pg_wal`.
    has_wal: bool,
}

fn name_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The base backups under `path`: `path` itself when it is one, else its
/// `base_*` subdirectories.
fn base_backups(path: &str, tree: &[SnapshotFile]) -> Vec<Base> {
    let describe = |dir: &str| -> Option<Base> {
        let children: Vec<&SnapshotFile> = tree
            .iter()
            .filter(|f| f.path.rsplit_once('/').map(|(d, _)| d) == Some(dir))
            .collect();
        let find = |pred: &dyn Fn(&str) -> bool| {
            children
                .iter()
                .find(|f| f.node_type == "file" && pred(name_of(&f.path)))
                .map(|f| (*f).clone())
        };
        let is_tar = |n: &str, stem: &str| {
            [".tar", ".tar.gz", ".tar.zst", ".tar.lz4"]
                .iter()
                .any(|s| n == format!("{stem}{s}"))
        };
        let tar = find(&|n| is_tar(n, "base"));
        let label = find(&|n| n == "backup_label");
        if tar.is_none() && label.is_none() && find(&|n| n == "PG_VERSION").is_none() {
            return None;
        }
        let wal_prefix = format!("{dir}/pg_wal/");
        Some(Base {
            dir: dir.to_string(),
            wal_tar: find(&|n| is_tar(n, "pg_wal")),
            tablespaces: children
                .iter()
                .map(|f| name_of(&f.path))
                .filter(|n| {
                    n.contains(".tar") && !n.starts_with("base.") && !n.starts_with("pg_wal.")
                })
                .map(str::to_string)
                .collect(),
            manifest: find(&|n| n == "backup_manifest"),
            has_wal: tree.iter().any(|f| {
                f.path.starts_with(&wal_prefix)
                    && parse_segment(name_of(&f.path), DEFAULT_SEGMENT_BYTES).is_some()
            }),
            tar,
            label,
        })
    };
    if let Some(b) = describe(path) {
        return vec![b];
    }
    let mut out: Vec<Base> = tree
        .iter()
        .filter(|f| {
            f.node_type == "dir"
                && f.path.rsplit_once('/').map(|(d, _)| d) == Some(path)
                && name_of(&f.path).starts_with("base")
        })
        .filter_map(|f| describe(&f.path))
        .collect();
    out.sort_by(|a, b| a.dir.cmp(&b.dir));
    out
}

const DEFAULT_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// Read a small file of the snapshot whole (at most `limit` bytes).
async fn read_small(
    source: &Source<'_>,
    path: &str,
    limit: u64,
) -> Result<Vec<u8>, RestoreOutcome> {
    let mut s = open(
        path,
        Compression::None,
        source.repo,
        source.snapshot,
        source.timeouts.stall,
        Counter::default(),
        0,
    )
    .map_err(|e| RestoreOutcome::new(Status::Error, Some(e)))?;
    let mut buf = Vec::new();
    let read = (&mut s.tap).take(limit).read_to_end(&mut buf).await;
    let stalled = s.stalled();
    let restic = s.dump.finish().await;
    if stalled {
        return Err(RestoreOutcome::new(
            Status::Error,
            Some(stalled_message(path, source.timeouts.stall)),
        ));
    }
    if let Err(e) = restic {
        return Err(RestoreOutcome::new(restic_status(&e), Some(e.to_string())));
    }
    read.map_err(|e| RestoreOutcome::new(Status::Error, Some(format!("read {path}: {e}"))))?;
    Ok(buf)
}

/// The `backup_label` of `base`: its file (plain) or the member of
/// `base.tar` (the first one `pg_basebackup` writes).
async fn read_label(source: &Source<'_>, base: &Base) -> Result<Label, RestoreOutcome> {
    let fail = |why: String| RestoreOutcome::new(Status::Failed, Some(why));
    let text = if let Some(tar) = &base.tar {
        let mut s = open(
            &tar.path,
            Compression::from_path(&tar.path),
            source.repo,
            source.snapshot,
            source.timeouts.stall,
            Counter::default(),
            0,
        )
        .map_err(|e| RestoreOutcome::new(Status::Error, Some(e)))?;
        let mut found = None;
        let mut read = 0u64;
        while read < LABEL_SCAN_BYTES {
            let Some((name, size)) = tar_header(&mut s.tap).await else {
                break;
            };
            read += 512;
            let padded = size.div_ceil(512) * 512;
            let mut body = vec![0u8; padded as usize];
            if padded > LABEL_SCAN_BYTES || s.tap.read_exact(&mut body).await.is_err() {
                break;
            }
            read += padded;
            if name.trim_start_matches("./") == "backup_label" {
                body.truncate(size as usize);
                found = Some(String::from_utf8_lossy(&body).into_owned());
                break;
            }
        }
        let stalled = s.stalled();
        let restic = s.dump.stop().await;
        if stalled {
            return Err(RestoreOutcome::new(
                Status::Error,
                Some(stalled_message(&tar.path, source.timeouts.stall)),
            ));
        }
        if let Err(e) = restic {
            return Err(RestoreOutcome::new(restic_status(&e), Some(e.to_string())));
        }
        found.ok_or_else(|| {
            fail(format!(
                "{} has no backup_label at its start: it is not a base backup made by pg_basebackup, or it is damaged",
                tar.path
            ))
        })?
    } else {
        let Some(label) = &base.label else {
            return Err(fail(format!(
                "base backup {} has no backup_label: a data directory copied without pg_basebackup (or pg_backup_start) cannot be recovered consistently",
                base.dir
            )));
        };
        String::from_utf8_lossy(&read_small(source, &label.path, 1024 * 1024).await?).into_owned()
    };
    parse_label(&text).ok_or_else(|| {
        fail(format!(
            "the backup_label of {} names no START WAL LOCATION: it is damaged",
            base.dir
        ))
    })
}

/// The end of the base backup's WAL (its manifest's last `WAL-Ranges`
/// `End-LSN`; PostgreSQL docs, "Backup Manifest Format").
fn manifest_end_lsn(manifest: &[u8]) -> Result<Option<u64>, String> {
    #[derive(serde::Deserialize)]
    struct Manifest {
        #[serde(rename = "WAL-Ranges", default)]
        wal_ranges: Vec<Range>,
    }
    #[derive(serde::Deserialize)]
    struct Range {
        #[serde(rename = "End-LSN")]
        end_lsn: String,
    }
    let m: Manifest = serde_json::from_slice(manifest).map_err(|e| e.to_string())?;
    Ok(m.wal_ranges
        .iter()
        .filter_map(|r| parse_lsn(&r.end_lsn))
        .max())
}

/// The WAL archive as listed: segments by number, and the segment size.
#[derive(Debug, Default)]
struct Archive {
    segments: BTreeSet<u64>,
    segment_bytes: u64,
    timeline: u32,
    bytes: u64,
    /// The newest segment, cut short (a snapshot taken while it was being
    /// archived): left out of recovery.
    partial: Option<String>,
    /// The files recovery may ask for, in name order (the order `restic
    /// dump` writes a directory's tar in): every whole segment and every
    /// timeline history file (`TTTTTTTT.history`, PostgreSQL docs, 26.3.5
    /// "Timelines").
    files: Vec<ArchiveFile>,
}

/// One file of the WAL archive recovery may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ArchiveFile {
    name: String,
    /// Bytes, as listed.
    size: u64,
    /// The segment number; `None` for a timeline history file.
    segno: Option<u64>,
}

/// A timeline history file's timeline (`00000002.history`).
fn history_timeline(name: &str) -> Option<u32> {
    let tli = name.strip_suffix(".history")?;
    (tli.len() == 8 && tli.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(tli, 16).ok())
        .flatten()
}

/// Marks a [`read_archive`] error that is the environment's (drill cannot
/// read the archive), not the backup's.
const ENVIRONMENT_MARK: &str = "environment: ";

fn read_archive(dir: &str, files: &[SnapshotFile]) -> Result<Archive, String> {
    let wal: Vec<&SnapshotFile> = files
        .iter()
        .filter(|f| f.node_type == "file" && parse_segment(name_of(&f.path), 1 << 24).is_some())
        .collect();
    let mut sizes: std::collections::BTreeMap<u64, usize> = Default::default();
    for f in &wal {
        *sizes.entry(f.size).or_default() += 1;
    }
    let segment_bytes = sizes
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(s, _)| *s)
        .unwrap_or(DEFAULT_SEGMENT_BYTES);
    if !(segment_bytes.is_power_of_two() && (1 << 20..=1 << 30).contains(&segment_bytes)) {
        return Err(format!(
            "the WAL archive {dir} holds segments of {segment_bytes} bytes; WAL segments are a power of two between 1 MiB and 1 GiB (compressed archives are not read yet)"
        ));
    }
    let compressed = files.iter().any(|f| {
        let n = name_of(&f.path);
        n.len() > 24
            && parse_segment(&n[..24], 1 << 24).is_some()
            && [".gz", ".zst", ".lz4", ".bz2", ".xz"]
                .iter()
                .any(|s| n.ends_with(s))
    });
    if compressed && wal.is_empty() {
        return Err(format!(
            "{ENVIRONMENT_MARK}the WAL archive {dir} holds compressed segments, which drill does not read yet; archive them uncompressed (archive_command = 'cp %p …')"
        ));
    }
    let mut partial = None;
    let mut wal = wal;
    // The newest segment of a snapshot taken while `cp %p` was copying it
    // is short: the archive ends before it.
    if let Some(last) = wal.last() {
        if last.size < segment_bytes && wal.iter().rev().skip(1).all(|f| f.size == segment_bytes) {
            partial = Some(name_of(&last.path).to_string());
            wal.pop();
        }
    }
    if let Some(odd) = wal.iter().find(|f| f.size != segment_bytes) {
        return Err(format!(
            "WAL segment {} in the archive is {} bytes, not {segment_bytes} like the others: it is truncated or damaged",
            name_of(&odd.path),
            odd.size
        ));
    }
    let mut a = Archive {
        segment_bytes,
        partial,
        ..Default::default()
    };
    for f in wal {
        if let Some((tli, segno)) = parse_segment(name_of(&f.path), segment_bytes) {
            a.segments.insert(segno);
            a.timeline = a.timeline.max(tli);
            a.bytes += f.size;
            a.files.push(ArchiveFile {
                name: name_of(&f.path).to_string(),
                size: f.size,
                segno: Some(segno),
            });
        }
    }
    for f in files {
        if f.node_type == "file" && history_timeline(name_of(&f.path)).is_some() {
            a.files.push(ArchiveFile {
                name: name_of(&f.path).to_string(),
                size: f.size,
                segno: None,
            });
        }
    }
    a.files.sort_by(|x, y| x.name.cmp(&y.name));
    Ok(a)
}

/// The first segment from `from` to `to` (inclusive) that is neither in
/// `have` nor in `also` (a range the base backup carries).
fn first_gap(from: u64, to: u64, have: &BTreeSet<u64>, also: Option<(u64, u64)>) -> Option<u64> {
    (from..=to).find(|s| !have.contains(s) && !also.is_some_and(|(a, b)| (a..=b).contains(s)))
}

/// The work of one recovery, for the report.
struct Work {
    report: RecoveryReport,
    bytes: u64,
    restored_bytes: u64,
    notes: Vec<String>,
}

async fn recover(
    plan: &RestorePlan,
    source: &Source<'_>,
    sandbox: &Sandbox,
    progress: &Counter,
) -> RestoreOutcome {
    let started = Instant::now();
    let mut work = Work {
        report: RecoveryReport::default(),
        bytes: 0,
        restored_bytes: 0,
        notes: Vec::new(),
    };
    let result = run(plan, source, sandbox, progress, &mut work).await;
    let mut outcome = match result {
        Ok(version) => {
            let mut o = RestoreOutcome::new(Status::Passed, None);
            o.server_version = Some(version);
            o
        }
        Err(o) => o,
    };
    outcome.bytes = work.bytes.max(outcome.bytes);
    outcome.restored_bytes = work.restored_bytes.max(outcome.restored_bytes);
    outcome.seconds = started.elapsed().as_secs_f64();
    outcome.notes.extend(work.notes);
    if !work.report.base_backup.is_empty() {
        outcome.recovery = Some(work.report);
    }
    outcome
}

fn failed(why: String) -> RestoreOutcome {
    RestoreOutcome::new(Status::Failed, Some(why))
}

fn environment(why: String) -> RestoreOutcome {
    RestoreOutcome::new(Status::Error, Some(why))
}

/// Run a shell command in the sandbox (as the kind's OS user), feeding it
/// `input`; its output on failure.
async fn sh(sandbox: &Sandbox, script: &str, input: Option<&[u8]>) -> Result<String, String> {
    let cmd = ["sh", "-c", script];
    let outcome = sandbox
        .exec_with_input(&cmd, input.map(std::io::Cursor::new))
        .await
        .map_err(|e| e.to_string())?;
    let text = outcome.output.bounded(40, 20).join("\n");
    if outcome.succeeded() {
        Ok(text)
    } else {
        Err(if text.trim().is_empty() {
            format!("exit code {:?}", outcome.exit_code)
        } else {
            text
        })
    }
}

/// Stream a snapshot file or directory into `tar -x` run by `script` in
/// the sandbox. Returns (bytes read from the repository, bytes fed).
async fn stream_tar(
    source: &Source<'_>,
    sandbox: &Sandbox,
    path: &str,
    compression: Compression,
    script: &str,
    progress: &Counter,
    last_member: Option<&LastMember>,
) -> Result<(u64, u64), RestoreOutcome> {
    // `progress` counts every stream of the restore; this one's bytes are
    // what it adds.
    let before = progress.get();
    let mut s = open(
        path,
        compression,
        source.repo,
        source.snapshot,
        source.timeouts.stall,
        progress.clone(),
        0,
    )
    .map_err(environment)?;
    let cmd = ["sh", "-c", script];
    let limit = source.timeouts.restore;
    let exec = match last_member {
        Some(last) => {
            let mut watched = TarMembers::new(&mut s.tap, last.clone());
            tokio::time::timeout(limit, sandbox.exec_with_input(&cmd, Some(&mut watched))).await
        }
        None => tokio::time::timeout(limit, sandbox.exec_with_input(&cmd, Some(&mut s.tap))).await,
    };
    let stored = s.stored.get().saturating_sub(before);
    let fed = s.tap.bytes();
    let stalled = s.stalled();
    let at_eof = s.tap.at_eof();
    let restic = if at_eof {
        s.dump.finish().await
    } else {
        s.dump.stop().await
    };
    if stalled {
        return Err(environment(stalled_message(path, source.timeouts.stall)));
    }
    if let Err(e) = restic {
        return Err(RestoreOutcome::new(restic_status(&e), Some(e.to_string())));
    }
    let exec = match exec {
        Err(_) => {
            return Err(environment(format!(
                "extracting {path} in the sandbox did not finish within {} (timeouts.restore)",
                crate::duration::human(source.timeouts.restore)
            )))
        }
        Ok(Err(e)) => return Err(environment(e.to_string())),
        Ok(Ok(x)) => x,
    };
    if exec.succeeded() && at_eof {
        return Ok((stored, fed));
    }
    let said = exec.output.summary(3);
    let why = exec.stdin_error.clone().unwrap_or_default();
    if said.contains("No space left") || why.contains("No space left") {
        return Err(environment(format!(
            "the sandbox ran out of disk space extracting {path}: {said}; free space for Docker's storage"
        )));
    }
    Err(failed(format!(
        "{path} could not be extracted whole: it is truncated or damaged ({})",
        [said, why]
            .into_iter()
            .filter(|s| !s.trim().is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    )))
}

/// How drill runs `tar -x` in the sandbox on a stream: 1 MiB records
/// (`-b 2048`, filled from the pipe with `-B`). tar writes a member's data
/// in pieces of its record size (10 KiB by default), and on Docker's
/// fuse-overlayfs every write is a round trip through the FUSE daemon: the
/// bench's 1.2 GiB WAL archive took 12.1 s to extract with 10 KiB records
/// and 7.1 s with 1 MiB ones.
const TAR_X: &str = "tar -x -f - -b 2048 -B";

/// The restore_command script inside the WAL stage.
const RESTORE_SCRIPT: &str = "restore.sh";
/// WAL past the target's segment that step 4 still fetches when the
/// target's place is known: PostgreSQL reads the record after the one it
/// stops at, and a record can cross segment boundaries.
const TARGET_MARGIN_BYTES: u64 = 64 * 1024 * 1024;
/// The exit status restore_command gives when the fetch failed: above
/// 125, which PostgreSQL treats like a signal and answers by aborting
/// recovery (PostgreSQL docs, 26.3.4 and `restore_command`), where status
/// 1 would mean "not in the archive" and let recovery end as if the WAL
/// ended there.
const FATAL_STATUS: u8 = 200;

/// `text` quoted for `sh`.
fn shq(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// What step 4 brings into the sandbox.
#[derive(Debug, Default, PartialEq)]
struct WalFetch {
    /// Members of the archive directory's tar stream to extract: segments
    /// from the base backup's start segment (on any timeline) to `last`,
    /// and history files of timelines before the base backup's.
    streamed: Vec<ArchiveFile>,
    /// History files of the base backup's timeline and later ones, each
    /// dumped on its own before the server starts: recovery asks for them
    /// first (to find the newest timeline, `recovery_target_timeline =
    /// latest`), and the tar stream, in name order, brings them only after
    /// every segment of the timelines before.
    ahead: Vec<ArchiveFile>,
    /// The last segment number fetched, when the target bounds it.
    last: Option<u64>,
    /// Segments left out (before the start, after `last`) and their bytes.
    left_out: u64,
    left_out_bytes: u64,
}

impl WalFetch {
    /// Bytes of the files fetched.
    fn bytes(&self) -> u64 {
        self.streamed
            .iter()
            .chain(&self.ahead)
            .map(|f| f.size)
            .sum()
    }
}

/// Which of the archive's `files` recovery from a base backup starting in
/// segment `start` on timeline `tli` can ask for, up to segment `last`.
fn plan_fetch(files: &[ArchiveFile], start: u64, last: Option<u64>, tli: u32) -> WalFetch {
    let mut plan = WalFetch {
        last,
        ..WalFetch::default()
    };
    for f in files {
        match f.segno {
            Some(n) if n < start || last.is_some_and(|l| n > l) => {
                plan.left_out += 1;
                plan.left_out_bytes += f.size;
            }
            Some(_) => plan.streamed.push(f.clone()),
            None if history_timeline(&f.name).is_some_and(|t| t >= tli) => {
                plan.ahead.push(f.clone())
            }
            None => plan.streamed.push(f.clone()),
        }
    }
    plan
}

/// The last segment recovery to `target` can need, when drill can tell
/// without replaying: for `immediate` the base backup's end (`end_lsn`),
/// for an LSN target the target; plus [`TARGET_MARGIN_BYTES`]. `None`: the
/// archive's newest (a time, a name or a transaction id lies anywhere).
fn last_needed(target: &RecoveryTarget, end_lsn: Option<u64>, segment_bytes: u64) -> Option<u64> {
    let lsn = match target {
        RecoveryTarget::Immediate => end_lsn?,
        RecoveryTarget::Lsn(l) => parse_lsn(l)?,
        _ => return None,
    };
    let segment_bytes = segment_bytes.max(1);
    Some(lsn / segment_bytes + (TARGET_MARGIN_BYTES / segment_bytes).max(2))
}

/// The WAL stage in the sandbox (a scratch directory): `files/` where the
/// archive's files land, `expected` (one `NAME BYTES` line per file
/// recovery may take), `members` (the tar members to extract), the
/// markers drill writes when the fetch ends (`fetched` only after tar
/// took the whole stream and restic exited 0; `failed` on any failure),
/// `served` (the files restore_command handed over) and the
/// restore_command script.
struct Stage {
    dir: String,
}

impl Stage {
    fn new(dir: String) -> Stage {
        Stage { dir }
    }

    /// The path of the stage's `name`.
    fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.dir)
    }

    /// The same, quoted for `sh`.
    fn q(&self, name: &str) -> String {
        shq(&self.path(name))
    }

    /// The restore_command script (POSIX `sh`; `$1` = `%f`, `$2` = `%p`).
    /// A file not in `expected` is not in the archive: status 1, so
    /// recovery looks elsewhere or ends. A listed file is handed over
    /// (copied) only once whole: its size equals the listed size (tar
    /// writes a member's bytes in order, and restic writes only blobs it
    /// has verified). Until then the script waits; once `failed` exists,
    /// or `fetched` does and the file is still not whole, it exits with
    /// [`FATAL_STATUS`] so recovery aborts instead of ending early.
    fn script(&self) -> String {
        format!(
            r#"#!/bin/sh
# drill's restore_command: $1 = %f, $2 = %p.
s={stage}
line=$(grep -m 1 -e "^$1 " "$s/expected") || exit 1
size=${{line##* }}
while :; do
  if [ -e "$s/failed" ]; then
    echo "drill: WAL file $1 cannot be restored: the fetch of the WAL archive failed before it arrived whole" >&2
    exit {fatal}
  fi
  fetched=no
  [ -e "$s/fetched" ] && fetched=yes
  have=$(( $(wc -c 2>/dev/null < "$s/files/$1" || echo -1) ))
  if [ "$have" -eq "$size" ]; then
    cp "$s/files/$1" "$2" || {{ echo "drill: could not copy WAL file $1 to $2" >&2; exit {fatal}; }}
    echo "$1" >> "$s/served"
    exit 0
  fi
  if [ $fetched = yes ]; then
    echo "drill: WAL file $1 is $have bytes in the sandbox, not $size, although its fetch finished" >&2
    exit {fatal}
  fi
  sleep 0.05
done
"#,
            stage = shq(&self.dir),
            fatal = FATAL_STATUS,
        )
    }
}

/// The WAL archive directory `dir` as `restic dump`'s tar names its
/// members: without leading or trailing `/` (`backups/wal` for
/// `/backups/wal/`).
fn archive_prefix(dir: &str) -> &str {
    dir.trim_matches('/')
}

/// Put the stage in place (one exec) and dump the timeline history files
/// recovery asks for first, one by one. Returns (bytes read from the
/// repository, bytes fed).
async fn prepare_stage(
    source: &Source<'_>,
    sandbox: &Sandbox,
    dir: &str,
    stage: &Stage,
    plan: &WalFetch,
    progress: &Counter,
) -> Result<(u64, u64), RestoreOutcome> {
    let prefix = archive_prefix(dir);
    let expected: String = plan
        .ahead
        .iter()
        .chain(&plan.streamed)
        .map(|f| format!("{} {}\n", f.name, f.size))
        .collect();
    let members: String = plan
        .streamed
        .iter()
        .map(|f| format!("{prefix}/{}\n", f.name))
        .collect();
    let setup = format!(
        "set -e\nmkdir -p {files}\ncat > {expected_path} <<'DRILL_END'\n{expected}DRILL_END\ncat > {members_path} <<'DRILL_END'\n{members}DRILL_END\ncat > {script_path} <<'DRILL_END'\n{script}DRILL_END\n",
        files = stage.q("files"),
        expected_path = stage.q("expected"),
        members_path = stage.q("members"),
        script_path = stage.q(RESTORE_SCRIPT),
        script = stage.script(),
    );
    sh(sandbox, "sh -s", Some(setup.as_bytes()))
        .await
        .map_err(|e| environment(format!("prepare the WAL stage in the sandbox: {e}")))?;
    let (mut stored, mut fed) = (0, 0);
    for f in &plan.ahead {
        let part = stage.q(&format!("files/.{}.part", f.name));
        let (s, n) = stream_tar(
            source,
            sandbox,
            &format!("{}/{}", dir.trim_end_matches('/'), f.name),
            Compression::None,
            &format!(
                "cat > {part} && mv {part} {}",
                stage.q(&format!("files/{}", f.name))
            ),
            progress,
            None,
        )
        .await?;
        stored += s;
        fed += n;
    }
    Ok((stored, fed))
}

/// What the WAL fetch did.
struct Fetched {
    /// Bytes read from the repository.
    stored: u64,
    /// Bytes fed to `tar` in the sandbox.
    fed: u64,
    /// Seconds from the start of step 4 to the fetch's end.
    seconds: f64,
    /// Files restore_command had handed to recovery when the fetch ended.
    served: u64,
}

/// Stream the archive directory `dir` (one `restic dump`, a tar in name
/// order) into the stage, extracting only the planned members; then mark
/// the stage `fetched`, or, on any failure of restic or tar, `failed`
/// (after naming the first planned file that did not arrive whole: where
/// the stream broke).
async fn fetch_wal(
    source: &Source<'_>,
    sandbox: &Sandbox,
    dir: &str,
    stage: &Stage,
    plan: &WalFetch,
    progress: &Counter,
    started: Instant,
) -> Result<Fetched, Stop> {
    // tar's member names start with the prefix the stage's list gives.
    let strip = archive_prefix(dir).split('/').count();
    let last_member = LastMember::default();
    let streamed = if plan.streamed.is_empty() {
        Ok((0, 0))
    } else {
        stream_tar(
            source,
            sandbox,
            dir,
            Compression::None,
            &format!(
                "{TAR_X} -C {} --strip-components={strip} -T {}",
                stage.q("files"),
                stage.q("members")
            ),
            progress,
            Some(&last_member),
        )
        .await
    };
    match streamed {
        Ok((stored, fed)) => {
            // restic exited 0 and tar took the whole stream: only now may
            // restore_command call a file that is not whole damaged.
            let served = sh(
                sandbox,
                &format!(
                    "touch {} && {{ cat {} 2>/dev/null || true; }} | wc -l",
                    stage.q("fetched"),
                    stage.q("served")
                ),
                None,
            )
            .await
            .map_err(|e| {
                stop(environment(format!(
                    "mark the WAL fetch finished in the sandbox: {e}"
                )))
            })?;
            Ok(Fetched {
                stored,
                fed,
                seconds: started.elapsed().as_secs_f64(),
                served: served.trim().parse().unwrap_or(0),
            })
        }
        Err(mut o) => {
            // A sandbox that died took tar with it: its server's log says
            // why (the fetch had not failed yet, so no restore_command of
            // drill's aborted recovery).
            if let Err(e) = sandbox.check_alive().await {
                return Err(Stop::Died(e.to_string()));
            }
            let broke = sh(
                sandbox,
                &format!(
                    "while read n s; do h=$(( $(wc -c 2>/dev/null < {files}/\"$n\" || echo -1) )); [ \"$h\" -eq \"$s\" ] || {{ echo \"$n $h $s\"; break; }}; done < {expected}; touch {failed}",
                    files = stage.q("files"),
                    expected = stage.q("expected"),
                    failed = stage.q("failed"),
                ),
                None,
            )
            .await
            .unwrap_or_default();
            let what = |name: &str| {
                if history_timeline(name).is_some() {
                    "timeline history file"
                } else {
                    "WAL segment"
                }
            };
            let said = o.error.take().unwrap_or_default();
            // Where the stream broke (the member restic was writing), and
            // the first file recovery needs that is not whole.
            let at = last_member
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_deref()
                .map(|m| name_of(m).to_string());
            let last_line = broke.lines().last().unwrap_or_default();
            let first = match last_line.split_whitespace().collect::<Vec<_>>()[..] {
                [name, have, size] => Some((
                    name.to_string(),
                    match have.parse::<i64>() {
                        Ok(h) if h >= 0 => format!("{h} of its {size} bytes arrived"),
                        _ => "it never arrived".to_string(),
                    },
                )),
                _ => None,
            };
            o.error = Some(match (at, first) {
                (Some(at), first) if !plan.streamed.iter().any(|f| f.name == at) => format!(
                    "the fetch of the WAL archive broke at {at}, a file recovery from this base backup does not need{}: {said}",
                    first
                        .map(|(n, arrived)| format!(", so {} {n} did not arrive whole ({arrived}) and recovery cannot pass it", what(&n)))
                        .unwrap_or_default()
                ),
                (Some(at), Some((n, arrived))) if n == at => format!(
                    "{} {at} could not be fetched whole ({arrived}), and recovery cannot pass it: {said}",
                    what(&at)
                ),
                (Some(at), _) => format!(
                    "{} {at} could not be fetched whole, and recovery cannot pass it: {said}",
                    what(&at)
                ),
                (None, Some((n, arrived))) => format!(
                    "{} {n} could not be fetched whole ({arrived}), and recovery cannot pass it: {said}",
                    what(&n)
                ),
                (None, None) => said,
            });
            Err(stop(o))
        }
    }
}

/// How watching recovery ended, when not at its end.
enum Stop {
    /// The server exited (the engine's message); its log says why.
    Died(String),
    /// A verdict already made.
    Outcome(Box<RestoreOutcome>),
}

fn stop(o: RestoreOutcome) -> Stop {
    Stop::Outcome(Box::new(o))
}

/// Watch recovery until it ends, within `timeout`: at a paused target,
/// prove the last replayed transaction is not after a time target, then
/// resume (which ends recovery). Returns the final state and whether
/// recovery paused at the target.
async fn watch_recovery(
    sandbox: &Sandbox,
    target: &RecoveryTarget,
    timeout: Duration,
) -> Result<(State, bool), Stop> {
    let deadline = Instant::now() + timeout;
    let mut resumed = false;
    loop {
        if let Err(e) = sandbox.check_alive().await {
            return Err(Stop::Died(e.to_string()));
        }
        if Instant::now() > deadline {
            return Err(stop(environment(format!(
                "recovery did not finish within {} (timeouts.restore); the server log ends: {}",
                crate::duration::human(timeout),
                sandbox.log_lines(5).await.join(" | ")
            ))));
        }
        match state(sandbox).await {
            Ok(st) if !st.in_recovery => return Ok((st, resumed)),
            Ok(st) if st.paused && !resumed => {
                // Paused at the target: prove it, then end recovery.
                if let (RecoveryTarget::Time(t), Some(last)) = (target, st.last_xact) {
                    if last > *t {
                        return Err(stop(failed(format!(
                            "recovery paused with a transaction committed at {} replayed, after the target {}",
                            last.to_rfc3339(),
                            t.to_rfc3339()
                        ))));
                    }
                }
                psql(sandbox, "SELECT pg_wal_replay_resume();")
                    .await
                    .map_err(|e| {
                        stop(environment(format!(
                            "resume recovery at the target: {e}"
                        )))
                    })?;
                resumed = true;
            }
            Ok(_) => {}
            Err(e) if e.contains(&format!("role \"{LOCAL_ROLE}\" does not exist")) => {
                return Err(stop(environment(format!(
                    "the recovered cluster has no role `{LOCAL_ROLE}`, which drill connects as inside the sandbox to drive recovery"
                ))))
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The state of recovery, as the server reports it.
#[derive(Debug, Default)]
struct State {
    in_recovery: bool,
    paused: bool,
    last_xact: Option<DateTime<FixedOffset>>,
    replay_lsn: Option<u64>,
    segment_bytes: u64,
}

const STATE_SQL: &str = "SELECT pg_is_in_recovery(), \
 CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END, \
 coalesce(to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), ''), \
 coalesce(pg_last_wal_replay_lsn()::text, ''), \
 current_setting('wal_segment_size', true)";

async fn psql(sandbox: &Sandbox, sql: &str) -> Result<String, String> {
    let cmd = [
        "psql",
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "/var/run/postgresql",
        "-U",
        LOCAL_ROLE,
        "-d",
        "template1",
        "-f",
        "-",
    ];
    let outcome = sandbox
        .exec_with_input(&cmd, Some(std::io::Cursor::new(sql.as_bytes().to_vec())))
        .await
        .map_err(|e| e.to_string())?;
    let text = outcome.output.bounded(50, 20).join("\n");
    if outcome.succeeded() {
        Ok(text)
    } else {
        Err(outcome.output.summary(2))
    }
}

async fn state(sandbox: &Sandbox) -> Result<State, String> {
    let out = psql(sandbox, STATE_SQL).await?;
    let line = out.lines().find(|l| l.contains('|')).unwrap_or("");
    let f: Vec<&str> = line.split('|').collect();
    if f.len() < 5 {
        return Err(format!("unexpected answer: {out}"));
    }
    Ok(State {
        in_recovery: f[0] == "t",
        paused: f[1] == "t",
        last_xact: DateTime::parse_from_rfc3339(f[2]).ok(),
        replay_lsn: parse_lsn(f[3]),
        segment_bytes: parse_size(f[4]).unwrap_or(DEFAULT_SEGMENT_BYTES),
    })
}

/// `16MB`, `1MB`, `1GB` (PostgreSQL's unit display of `wal_segment_size`).
fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits: String = t.chars().take_while(char::is_ascii_digit).collect();
    let n: u64 = digits.parse().ok()?;
    Some(match &t[digits.len()..] {
        "kB" => n * 1024,
        "MB" => n * 1024 * 1024,
        "GB" => n * 1024 * 1024 * 1024,
        "" | "B" => n,
        _ => return None,
    })
}

/// The segment holding the WAL location `lsn` (named on `tli`).
fn segment_of(lsn: u64, tli: u32, segment_bytes: u64) -> String {
    segment_name(tli, lsn / segment_bytes.max(1), segment_bytes)
}

/// The server log's explanation of where WAL could not be read: the
/// segment it names, or the one holding the LSN it names.
fn invalid_wal(log: &[String], tli: u32, segment_bytes: u64) -> Option<(String, String)> {
    const MARKERS: [&str; 9] = [
        "invalid record length",
        "incorrect resource manager data checksum",
        "invalid magic number",
        "unexpected pageaddr",
        "record with incorrect prev-link",
        "invalid record offset",
        "contrecord",
        "invalid resource manager ID",
        "invalid info bits",
    ];
    let line = log
        .iter()
        .rev()
        .find(|l| MARKERS.iter().any(|m| l.contains(m)))?;
    let words: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || c == ',' || c == ':')
        .filter(|w| !w.is_empty())
        .collect();
    let named = words
        .iter()
        .find(|w| parse_segment(w, segment_bytes).is_some())
        .map(|w| w.to_string());
    let segment = named.or_else(|| {
        words
            .iter()
            .find_map(|w| parse_lsn(w).filter(|_| w.contains('/')))
            .map(|lsn| segment_of(lsn, tli, segment_bytes))
    })?;
    let message = line
        .split_once("LOG:")
        .map(|(_, m)| m.trim())
        .unwrap_or(line.trim())
        .to_string();
    Some((segment, message))
}

/// The first log line containing any of `needles`, without its prefix.
fn log_line(log: &[String], needles: &[&str]) -> Option<String> {
    log.iter()
        .find(|l| needles.iter().any(|n| l.contains(n)))
        .map(|l| {
            ["FATAL:", "PANIC:", "LOG:", "ERROR:"]
                .iter()
                .find_map(|m| l.split_once(m).map(|(_, r)| r.trim().to_string()))
                .unwrap_or_else(|| l.trim().to_string())
        })
}

async fn run(
    plan: &RestorePlan,
    source: &Source<'_>,
    sandbox: &Sandbox,
    progress: &Counter,
    work: &mut Work,
) -> Result<String, RestoreOutcome> {
    let db = &plan.database;
    let recovery = db
        .recovery
        .as_ref()
        .ok_or_else(|| environment(format!("database `{}` has no recovery settings", db.name)))?;
    let target = &recovery.target;
    work.report.target = target.describe();

    // 1. The base backup.
    let base_started = Instant::now();
    let tree = source
        .repo
        .list_tree(source.snapshot, &db.path)
        .await
        .map_err(|e| environment(e.to_string()))?;
    let bases = base_backups(&db.path, &tree);
    if bases.is_empty() {
        return Err(failed(format!(
            "{} in snapshot {} holds no base backup: neither base.tar[.gz|.zst] nor a data directory with backup_label, nor base_* directories holding one",
            db.path, source.snapshot.short_id
        )));
    }
    // A base_* directory without its manifest or label (a pg_basebackup
    // still running when the snapshot was taken) is skipped with a note
    // when there are others: recovery from a complete one proves the data.
    let several = bases.len() > 1;
    let mut labelled = Vec::new();
    let mut skipped = Vec::new();
    for b in &bases {
        if several && b.manifest.is_none() {
            skipped.push(format!("{}: no backup_manifest", b.dir));
            continue;
        }
        match read_label(source, b).await {
            Ok(label) => labelled.push((b.clone(), label)),
            Err(o) if several && o.status == Status::Failed => {
                skipped.push(o.error.unwrap_or_default());
            }
            Err(o) => return Err(o),
        }
    }
    if labelled.is_empty() {
        return Err(failed(format!(
            "no complete base backup in {}: {}",
            db.path,
            skipped.join("; ")
        )));
    }
    for s in &skipped {
        work.notes.push(format!(
            "an incomplete base backup was skipped ({s}); it cannot be recovered"
        ));
    }
    let chosen = choose(&labelled, target).map_err(failed)?;
    let (base, label) = chosen;
    work.report.base_backup = base.dir.clone();
    work.report.base_format = if base.tar.is_some() { "tar" } else { "plain" }.into();
    work.report.base_start_lsn = format_lsn(label.start_lsn);
    work.report.base_started_at = Some(
        label
            .start_time
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| label.start_time_text.clone()),
    );
    if !base.tablespaces.is_empty() {
        return Err(environment(format!(
            "base backup {} holds tablespaces ({}); drill does not restore tablespaces of physical backups yet",
            base.dir,
            base.tablespaces.join(", ")
        )));
    }
    let Some(manifest_file) = &base.manifest else {
        return Err(failed(format!(
            "base backup {} has no backup_manifest: it was taken with --no-manifest or copied incompletely, and drill cannot prove its files whole",
            base.dir
        )));
    };
    let manifest = read_small(source, &manifest_file.path, 512 * 1024 * 1024).await?;
    let end_lsn = manifest_end_lsn(&manifest).map_err(|e| {
        failed(format!(
            "{} is not a PostgreSQL backup manifest: {e}",
            manifest_file.path
        ))
    })?;

    // 2. The archive, proved unbroken where it must be.
    let archive = match &recovery.wal {
        Some(dir) => {
            let files = source
                .repo
                .list_dir(source.snapshot, dir)
                .await
                .map_err(|e| environment(e.to_string()))?;
            let a =
                read_archive(dir, &files).map_err(|e| match e.strip_prefix(ENVIRONMENT_MARK) {
                    Some(why) => environment(why.to_string()),
                    None => failed(e),
                })?;
            if let Some(p) = &a.partial {
                work.notes.push(format!(
                    "the newest WAL segment in the archive, {p}, is shorter than a segment: it was being copied when the snapshot was taken, and recovery ends before it"
                ));
            }
            if a.segments.is_empty() {
                return Err(failed(format!(
                    "the WAL archive {dir} in snapshot {} holds no WAL segments",
                    source.snapshot.short_id
                )));
            }
            Some(a)
        }
        None => None,
    };
    let segment_bytes = archive
        .as_ref()
        .map_or(DEFAULT_SEGMENT_BYTES, |a| a.segment_bytes);
    let start_segno = label.start_lsn / segment_bytes;
    let carried = (base.wal_tar.is_some() || base.has_wal)
        .then(|| end_lsn.map(|e| (start_segno, e.saturating_sub(1) / segment_bytes)))
        .flatten();
    let mut gap = None;
    if let Some(a) = &archive {
        let newest = *a.segments.iter().next_back().expect("not empty");
        if newest < start_segno {
            work.notes.push(format!(
                "the WAL archive ends (segment {}) before base backup {} starts (segment {}): archive_command may have stopped; recovery can replay only the base backup's own WAL",
                segment_name(a.timeline.max(1), newest, segment_bytes),
                base.dir,
                label.start_segment
            ));
        } else if let Some(missing) = first_gap(start_segno, newest, &a.segments, carried) {
            let name = segment_name(label.timeline, missing, segment_bytes);
            let why = format!(
                "WAL segment {name} is missing from the archive {} (it holds segments after it, up to {}): recovery from base backup {} cannot pass it",
                recovery.wal.as_deref().unwrap_or_default(),
                segment_name(a.timeline, newest, segment_bytes),
                base.dir
            );
            let before_backup_end = carried.is_none_or(|(_, e)| missing <= e)
                && end_lsn.is_none_or(|e| missing <= e.saturating_sub(1) / segment_bytes);
            if matches!(target, RecoveryTarget::Latest)
                || (matches!(target, RecoveryTarget::Immediate) && before_backup_end)
            {
                return Err(failed(why));
            }
            gap = Some((name, why));
        }
    }

    if base.tar.as_ref().is_some_and(|t| t.path.ends_with(".lz4")) {
        return Err(environment(format!(
            "base backup {} is lz4-compressed, which drill does not read yet; take base backups with -z (gzip) or --compress=zstd",
            base.dir
        )));
    }
    // 3. The base backup into PGDATA, checked against its manifest.
    let mut stored = 0;
    let mut fed = 0;
    match &base.tar {
        Some(tar) => {
            let (s, f) = stream_tar(
                source,
                sandbox,
                &tar.path,
                Compression::from_path(&tar.path),
                &format!("mkdir -p \"$PGDATA\" && {TAR_X} -C \"$PGDATA\""),
                progress,
                None,
            )
            .await?;
            stored += s;
            fed += f;
            if let Some(w) = &base.wal_tar {
                let (s, f) = stream_tar(
                    source,
                    sandbox,
                    &w.path,
                    Compression::from_path(&w.path),
                    &format!("mkdir -p \"$PGDATA/pg_wal\" && {TAR_X} -C \"$PGDATA/pg_wal\""),
                    progress,
                    None,
                )
                .await?;
                stored += s;
                fed += f;
            }
        }
        None => {
            let strip = base.dir.trim_matches('/').split('/').count();
            let (s, f) = stream_tar(
                source,
                sandbox,
                &base.dir,
                Compression::None,
                &format!(
                    "mkdir -p \"$PGDATA\" && {TAR_X} -C \"$PGDATA\" --strip-components={strip}"
                ),
                progress,
                None,
            )
            .await?;
            stored += s;
            fed += f;
        }
    }
    work.bytes = stored;
    work.restored_bytes = fed;
    let manifest_path = sandbox.scratch_path(MANIFEST);
    sh(
        sandbox,
        &format!("cat > {manifest_path}"),
        Some(manifest.as_slice()),
    )
    .await
    .map_err(|e| environment(format!("copy backup_manifest into the sandbox: {e}")))?;
    let major = sh(sandbox, "cat \"$PGDATA/PG_VERSION\"", None)
        .await
        .map_err(|e| failed(format!("base backup {} has no PG_VERSION: {e}", base.dir)))?;
    let major = major.trim().to_string();
    let server = sh(sandbox, "postgres --version", None)
        .await
        .map_err(|e| environment(format!("run postgres --version in the sandbox: {e}")))?;
    let server_major = server
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .and_then(|v| v.split('.').next())
        .unwrap_or_default()
        .to_string();
    if server_major != major {
        return Err(environment(format!(
            "base backup {} is PostgreSQL {major}, and the sandbox image {} runs PostgreSQL {server_major}: a physical backup recovers only in its own major version; set image = \"postgres:{major}\" (or an image of PostgreSQL {major}) for database `{}`",
            base.dir, sandbox.image, db.name
        )));
    }
    if let Err(e) = sh(
        sandbox,
        &format!(
            "pg_verifybackup --no-parse-wal --quiet --manifest-path={manifest_path} \"$PGDATA\""
        ),
        None,
    )
    .await
    {
        if e.contains("not found") && e.contains("pg_verifybackup") {
            return Err(environment(format!(
                "the sandbox image {} has no pg_verifybackup: {e}",
                sandbox.image
            )));
        }
        return Err(failed(format!(
            "pg_verifybackup: base backup {} does not match its backup_manifest: {}",
            base.dir,
            e.lines().take(5).collect::<Vec<_>>().join("; ")
        )));
    }
    work.report.base_seconds = base_started.elapsed().as_secs_f64();

    // 4. The WAL archive beside it: the stage, the list of files recovery
    // may take and the restore_command that waits for them. The archive
    // itself streams in while recovery runs (below).
    let stage = Stage::new(sandbox.scratch_path(WAL_DIR));
    let wal_started = Instant::now();
    let fetch_plan = match (&recovery.wal, &archive) {
        (Some(dir), Some(a)) => Some((
            dir.as_str(),
            plan_fetch(
                &a.files,
                start_segno,
                last_needed(target, end_lsn, segment_bytes),
                label.timeline,
            ),
        )),
        _ => None,
    };
    let restore_command = match &fetch_plan {
        Some((dir, fp)) => {
            let (s, f) = prepare_stage(source, sandbox, dir, &stage, fp, progress).await?;
            work.bytes += s;
            work.restored_bytes += f;
            if fp.left_out > 0 {
                work.notes.push(format!(
                    "WAL fetch: {} of the archive's files ({} bytes) are extracted in the sandbox; {} segments ({} bytes) from before base backup {} starts{} are left out of it (restic still reads them: it dumps the archive directory whole)",
                    fp.streamed.len() + fp.ahead.len(),
                    fp.bytes(),
                    fp.left_out,
                    fp.left_out_bytes,
                    base.dir,
                    if fp.last.is_some() { " or after the target" } else { "" },
                ));
            }
            format!("sh {} %f %p", shq(&stage.path(RESTORE_SCRIPT)))
        }
        None => "false".to_string(),
    };

    // 5. Recover.
    let replay_started = Instant::now();
    let hba = sandbox.scratch_path("drill-hba.conf");
    let ident = sandbox.scratch_path("drill-ident.conf");
    sh(sandbox, &format!("cat > {hba} && : > {ident} && rm -f \"$PGDATA/standby.signal\" && touch \"$PGDATA/recovery.signal\" && {{ [ -e \"$PGDATA/postgresql.conf\" ] || : > \"$PGDATA/postgresql.conf\"; }}"), Some(HBA.as_bytes()))
        .await
        .map_err(|e| environment(format!("prepare the data directory in the sandbox: {e}")))?;
    // Hot standby needs these at least as high as on the primary (PostgreSQL
    // docs, 27.4.1): take them from the backed-up control file, since the
    // backed-up postgresql.conf may be absent (Debian keeps it in /etc).
    let control = sh(sandbox, "pg_controldata \"$PGDATA\"", None)
        .await
        .unwrap_or_default();
    let mut settings: Vec<String> = [
        "max_connections",
        "max_worker_processes",
        "max_wal_senders",
        "max_prepared_xacts",
        "max_locks_per_xact",
    ]
    .iter()
    .filter_map(|name| {
        let value = control
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} setting:")))?
            .trim()
            .parse::<u32>()
            .ok()?;
        let setting = match *name {
            "max_prepared_xacts" => "max_prepared_transactions",
            "max_locks_per_xact" => "max_locks_per_transaction",
            n => n,
        };
        Some(format!("{setting}={value}"))
    })
    .collect();
    settings.extend([
        "listen_addresses=*".to_string(),
        "port=5432".into(),
        format!("hba_file={hba}"),
        format!("ident_file={ident}"),
        "unix_socket_directories=/var/run/postgresql".into(),
        "archive_mode=off".into(),
        "primary_conninfo=".into(),
        "primary_slot_name=".into(),
        "hot_standby=on".into(),
        "ssl=off".into(),
        "logging_collector=off".into(),
        "log_destination=stderr".into(),
        "shared_buffers=128MB".into(),
        "huge_pages=off".into(),
        "log_min_messages=warning".into(),
        // Nothing drill sends is logged (its password), whatever the
        // backed-up config says, and messages stay in English for drill to
        // read.
        "log_statement=none".into(),
        "log_min_duration_statement=-1".into(),
        "log_min_error_statement=panic".into(),
        "lc_messages=C".into(),
        // A recovered subscription must not reach its publisher.
        "max_logical_replication_workers=0".into(),
        "recovery_min_apply_delay=0".into(),
        "archive_cleanup_command=".into(),
        "recovery_end_command=".into(),
        "fsync=off".into(),
        "recovery_target_timeline=latest".into(),
        format!("restore_command={restore_command}"),
    ]);
    // Only drill's target: a leftover one in the backed-up config is reset.
    for name in [
        "recovery_target",
        "recovery_target_time",
        "recovery_target_lsn",
        "recovery_target_xid",
        "recovery_target_name",
    ] {
        settings.push(format!("{name}="));
    }
    match target {
        RecoveryTarget::Latest => {}
        RecoveryTarget::Immediate => settings.push("recovery_target=immediate".into()),
        RecoveryTarget::Time(t) => {
            settings.push(format!("recovery_target_time={}", t.to_rfc3339()))
        }
        RecoveryTarget::Lsn(l) => settings.push(format!("recovery_target_lsn={l}")),
        RecoveryTarget::Xid(x) => settings.push(format!("recovery_target_xid={x}")),
        RecoveryTarget::Name(n) => settings.push(format!("recovery_target_name={n}")),
    }
    if !matches!(target, RecoveryTarget::Latest) {
        settings.push("recovery_target_action=pause".into());
    }
    let mut args = vec!["postgres".to_string()];
    for s in settings {
        args.push("-c".into());
        args.push(s);
    }
    let args_text = args.join("\n") + "\n";
    let held = crate::kind::postgresql::HELD_ARGS_FILE;
    sh(
        sandbox,
        &format!("cat > {held}.tmp && mv {held}.tmp {held}"),
        Some(args_text.as_bytes()),
    )
    .await
    .map_err(|e| environment(format!("start the server in the sandbox: {e}")))?;

    // The WAL fetch runs beside recovery: restore_command waits for a
    // file still on its way. A failed fetch ends the restore at once (its
    // marker makes a waiting restore_command abort recovery); a passed one
    // needs the fetch ended whole, whenever recovery ended.
    let fetch = async {
        match &fetch_plan {
            Some((dir, fp)) => fetch_wal(source, sandbox, dir, &stage, fp, progress, wal_started)
                .await
                .map(Some),
            None => Ok(None),
        }
    };
    let watch = watch_recovery(sandbox, target, source.timeouts.restore);
    tokio::pin!(fetch, watch);
    let mut fetched: Option<Option<Fetched>> = None;
    let mut watched = loop {
        tokio::select! {
            biased;
            r = &mut fetch, if fetched.is_none() => match r {
                Ok(f) => fetched = Some(f),
                Err(stop) => break Err(stop),
            },
            w = &mut watch => break w,
        }
    };
    let recovery_ended = replay_started.elapsed().as_secs_f64();
    if watched.is_ok() && fetched.is_none() {
        match fetch.await {
            Ok(f) => fetched = Some(f),
            Err(stop) => watched = Err(stop),
        }
    }
    let (final_state, resumed) = match watched {
        Ok(x) => x,
        Err(Stop::Outcome(o)) => return Err(*o),
        Err(Stop::Died(e)) => {
            let log = sandbox.log_lines(LOG_LINES).await;
            return Err(died(
                &log,
                &e,
                &base.dir,
                label,
                archive.as_ref(),
                gap.as_ref(),
                target,
                segment_bytes,
            ));
        }
    };
    let fetched = fetched.flatten();
    if let Some(f) = &fetched {
        work.bytes += f.stored;
        work.restored_bytes += f.fed;
    }
    if let (Some(f), Some((_, fp))) = (&fetched, &fetch_plan) {
        work.report.wal_fetch_seconds = f.seconds;
        // Seconds from the server's start, like `recovery_ended`; the
        // archive's stream starts with the server.
        let fetch_ended = f.seconds - replay_started.duration_since(wal_started).as_secs_f64();
        work.notes.push(format!(
            "WAL fetch beside replay: the archive streamed into the sandbox while the server recovered; when the fetch ended whole, {fetch_ended:.1} s after the server started, recovery had been handed {} of {} files; recovery ended {recovery_ended:.1} s after the server started{}",
            f.served,
            fp.streamed.len() + fp.ahead.len(),
            if fetch_ended > recovery_ended {
                " (the verdict waited for restic's exit status)"
            } else {
                ""
            }
        ));
    }
    work.report.replay_seconds = recovery_ended;
    // A target is reached only where recovery paused at it; a server that
    // ended recovery on its own ran out of WAL first (PostgreSQL 13 and
    // older promote there instead of refusing).
    if !matches!(target, RecoveryTarget::Latest) && !resumed {
        let log = sandbox.log_lines(LOG_LINES).await;
        let mut why = format!(
            "recovery ended without reaching the target {}: the WAL ends before it, the data loss is not bounded by the target",
            target.describe()
        );
        if let Some((_, g)) = &gap {
            why = format!("{g}; {why}");
        } else if let Some((segment, said)) =
            invalid_wal(&log, label.timeline, final_state.segment_bytes)
        {
            why = format!("{why} (WAL segment {segment}: {said})");
        }
        return Err(failed(why));
    }
    let segment_bytes = final_state.segment_bytes;
    let tli = label.timeline;
    let replay_lsn = final_state.replay_lsn.unwrap_or(label.start_lsn);
    work.report.segment_bytes = segment_bytes;
    work.report.replay_lsn = Some(format_lsn(replay_lsn));
    work.report.last_transaction_at = final_state.last_xact.map(|t| t.to_rfc3339());
    let end_segno = replay_lsn.saturating_sub(1) / segment_bytes;
    work.report.wal_segments = end_segno.saturating_sub(label.start_lsn / segment_bytes) + 1;
    work.report.wal_bytes = replay_lsn.saturating_sub(label.start_lsn);
    let reference = match target {
        RecoveryTarget::Time(t) => *t,
        _ => source.snapshot.time,
    };
    let consistent_at = final_state.last_xact.or(label.start_time);
    work.report.data_loss_seconds =
        consistent_at.map(|at| ((reference - at).num_milliseconds() as f64 / 1000.0).max(0.0));
    if final_state.last_xact.is_none() {
        work.notes.push(format!(
            "recovery replayed no committed transaction after the base backup's start; the data loss is measured from the base backup's start ({})",
            label.start_time_text
        ));
    }

    // A WAL record that fails its CRC is damage wherever it lies, also in
    // the newest segment, where stopping early looks like the archive's end.
    {
        let log = sandbox.log_lines(LOG_LINES).await;
        if let Some(line) = log.iter().find(|l| {
            l.contains("incorrect resource manager data checksum")
                || l.contains("invalid record length") && !l.contains("got 0")
        }) {
            if let Some((segment, said)) =
                invalid_wal(std::slice::from_ref(line), tli, segment_bytes)
            {
                return Err(failed(format!(
                    "recovery stopped at {} because WAL segment {segment} is damaged (the server: {said}); everything after it is lost",
                    format_lsn(replay_lsn)
                )));
            }
        }
    }
    // The whole archive must have been replayed for `latest`.
    if let (RecoveryTarget::Latest, Some(a)) = (target, &archive) {
        let newest = *a.segments.iter().next_back().expect("not empty");
        if end_segno < newest && newest >= start_segno {
            let log = sandbox.log_lines(LOG_LINES).await;
            let (segment, said) = invalid_wal(&log, tli, segment_bytes).unwrap_or_else(|| {
                (
                    segment_name(tli, end_segno + 1, segment_bytes),
                    "no readable WAL record followed".to_string(),
                )
            });
            return Err(failed(format!(
                "recovery stopped at {} in WAL segment {} although the archive holds segments up to {}: WAL segment {segment} is damaged (the server: {said})",
                format_lsn(replay_lsn),
                segment_of(replay_lsn.saturating_sub(1), tli, segment_bytes),
                segment_name(a.timeline, newest, segment_bytes)
            )));
        }
    }
    if let Some((_, why)) = &gap {
        work.notes.push(format!(
            "{why}; the target was reached before it, a later target would fail"
        ));
    }
    work.report.reached = true;

    // 6. drill's superuser, so checks connect as on a logical restore.
    let password = sandbox.password.expose().replace('\'', "''");
    let role = SANDBOX_SUPERUSER;
    let sql = format!(
        "SET password_encryption = 'scram-sha-256';\n\
         DO $$ BEGIN\n\
         IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN\n\
           ALTER ROLE {role} WITH SUPERUSER LOGIN PASSWORD '{password}';\n\
         ELSE\n\
           CREATE ROLE {role} WITH SUPERUSER LOGIN PASSWORD '{password}';\n\
         END IF; END $$;\n"
    );
    psql(sandbox, &sql).await.map_err(|e| {
        environment(format!(
            "create drill's superuser in the recovered server: {}",
            sandbox.password.redact(&e)
        ))
    })?;
    // Connect as checks will: over the published port, with the password.
    let endpoint = sandbox.endpoint();
    let mut last = String::new();
    for _ in 0..100 {
        match crate::kind::postgresql::connect(&endpoint, "template1").await {
            Ok(client) => match client.query_one("SHOW server_version", &[]).await {
                Ok(row) => return Ok(row.get(0)),
                Err(e) => last = crate::sandbox::pg_message(&e),
            },
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(environment(format!(
        "the recovered server does not accept drill's superuser over the sandbox's port: {last}"
    )))
}

/// Choose the newest base backup that started at or before `target`.
fn choose<'a>(
    labelled: &'a [(Base, Label)],
    target: &RecoveryTarget,
) -> Result<(&'a Base, &'a Label), String> {
    let mut sorted: Vec<&(Base, Label)> = labelled.iter().collect();
    sorted.sort_by(|a, b| {
        (a.1.start_lsn, a.1.start_time, &a.0.dir).cmp(&(b.1.start_lsn, b.1.start_time, &b.0.dir))
    });
    // A restore point or a transaction id says nothing of where it lies
    // until WAL is read: only the oldest base backup is surely before it.
    if matches!(target, RecoveryTarget::Name(_) | RecoveryTarget::Xid(_)) {
        let (b, l) = sorted.first().expect("at least one base backup");
        return Ok((b, l));
    }
    let eligible = |(_, l): &&(Base, Label)| match target {
        RecoveryTarget::Time(t) => l.start_time.is_some_and(|s| s <= *t),
        RecoveryTarget::Lsn(x) => parse_lsn(x).is_none_or(|x| l.start_lsn <= x),
        _ => true,
    };
    // A start time drill cannot read (a zone abbreviation such as KST)
    // leaves only the oldest base backup surely before a time target.
    let unknown_times = matches!(target, RecoveryTarget::Time(_))
        && sorted.iter().any(|(_, l)| l.start_time.is_none());
    match sorted.iter().rev().find(|x| eligible(x)) {
        Some((b, l)) => Ok((b, l)),
        None if unknown_times => {
            let (b, l) = sorted.first().expect("at least one base backup");
            Ok((b, l))
        }
        None => {
            let (b, l) = sorted.first().expect("at least one base backup");
            Err(format!(
                "the target {} is earlier than every base backup: the oldest, {}, started at {} (WAL {}); a target earlier than the base backup's end cannot be reached",
                target.describe(),
                b.dir,
                l.start_time_text,
                format_lsn(l.start_lsn)
            ))
        }
    }
}

/// Why the server died during recovery, from its log.
#[allow(clippy::too_many_arguments)]
fn died(
    log: &[String],
    error: &str,
    base: &str,
    label: &Label,
    archive: Option<&Archive>,
    gap: Option<&(String, String)>,
    target: &RecoveryTarget,
    segment_bytes: u64,
) -> RestoreOutcome {
    let tli = label.timeline;
    if let Some(line) = log_line(log, &["before configured recovery target was reached"]) {
        let mut why = format!(
            "the WAL ends before the target {}: the data loss is not bounded by the target ({line})",
            target.describe()
        );
        if let Some((_, g)) = gap {
            why = format!("{g}; {why}");
        } else if let Some((segment, said)) = invalid_wal(log, tli, segment_bytes) {
            let newest = archive
                .and_then(|a| a.segments.iter().next_back().copied())
                .map(|n| {
                    format!(
                        " (the archive holds segments up to {})",
                        segment_name(tli, n, segment_bytes)
                    )
                })
                .unwrap_or_default();
            why = format!("WAL segment {segment} is damaged{newest}: {said}; {why}");
        }
        return failed(why);
    }
    if let Some(line) = log_line(log, &["before consistent recovery point"]) {
        return failed(format!(
            "the target {} is earlier than the end of base backup {base}: recovery cannot stop before the backup is consistent ({line}); choose a later target, or keep an older base backup",
            target.describe()
        ));
    }
    if let Some(line) = log_line(
        log,
        &[
            "could not locate required checkpoint record",
            "could not find redo location",
            "WAL ends before end of online backup",
            "WAL ends before consistent recovery point",
            "could not locate a valid checkpoint record",
        ],
    ) {
        let missing = gap.map(|(_, g)| format!("{g}; ")).unwrap_or_default();
        return failed(format!(
            "{missing}recovery could not reach a consistent state: the WAL from the base backup's start ({}, segment {}) to its end is neither in base backup {base} nor in a WAL archive (a base backup taken with -X none needs its archive) ({line})",
            format_lsn(label.start_lsn),
            label.start_segment
        ));
    }
    if let Some(line) = log_line(
        log,
        &[
            "could not access file",
            "could not load library",
            "incompatible with server",
        ],
    ) {
        return environment(format!(
            "the sandbox's server cannot run base backup {base}: {line}; use an image with the same major version and the libraries the cluster loads (shared_preload_libraries)"
        ));
    }
    if let Some(line) = log_line(
        log,
        &[
            "configuration file",
            "invalid value for parameter",
            "unrecognized configuration parameter",
        ],
    ) {
        return environment(format!(
            "the sandbox's server cannot start with base backup {base}'s configuration: {line}; a setting or an include of the backed-up postgresql.conf does not fit the sandbox image"
        ));
    }
    if let Some(line) = log_line(log, &["insufficient parameter settings"]) {
        return environment(format!(
            "the sandbox's server cannot replay base backup {base} as a hot standby: {line}; the primary raised a setting (max_connections, max_worker_processes, …) after the backup, and drill starts the server with the backup's own values"
        ));
    }
    if let Some(line) = log_line(log, &["No space left on device"]) {
        return environment(format!(
            "the sandbox ran out of disk space recovering base backup {base}: {line}; recovery needs room for the base backup, the WAL fetched for it and pg_wal; free space for Docker's storage"
        ));
    }
    if let Some(line) = log_line(
        log,
        &["out of memory", "could not map anonymous shared memory"],
    ) {
        return environment(format!(
            "the sandbox's server ran out of memory recovering base backup {base}: {line}; raise sandbox.memory"
        ));
    }
    let fatal = log_line(log, &["FATAL:", "PANIC:"]).unwrap_or_else(|| error.to_string());
    failed(format!("recovery of base backup {base} stopped: {fatal}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_lsns() {
        let mb = 1024 * 1024;
        assert_eq!(parse_lsn("0/2000028"), Some(0x2000028));
        assert_eq!(format_lsn(0x1_0000_0028), "1/28");
        let (tli, segno) = parse_segment("000000010000000000000002", 16 * mb).unwrap();
        assert_eq!((tli, segno), (1, 2));
        assert_eq!(segment_name(1, 2, 16 * mb), "000000010000000000000002");
        // 1 MiB segments: 4096 per log file.
        let (_, s) = parse_segment("000000010000000100000003", mb).unwrap();
        assert_eq!(s, 4096 + 3);
        assert_eq!(segment_name(1, 4096 + 3, mb), "000000010000000100000003");
        assert_eq!(
            segment_of(0x2000028, 1, 16 * mb),
            "000000010000000000000002"
        );
        assert!(parse_segment("000000010000000000000002.00000028.backup", mb).is_none());
    }

    #[test]
    fn labels() {
        let l = parse_label(
            "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-06-01 03:00:00 UTC\nLABEL: pg_basebackup base backup\nSTART TIMELINE: 1\n",
        )
        .unwrap();
        assert_eq!(l.start_lsn, 0x2000028);
        assert_eq!(l.start_segment, "000000010000000000000002");
        assert_eq!(
            l.start_time.unwrap().to_rfc3339(),
            "2026-06-01T03:00:00+00:00"
        );
        assert_eq!(
            parse_label_time("2026-06-01 12:00:00 +09")
                .unwrap()
                .to_rfc3339(),
            "2026-06-01T12:00:00+09:00"
        );
        assert!(parse_label_time("2026-06-01 12:00:00 KST").is_none());
        assert!(parse_label("LABEL: x").is_none());
    }

    #[test]
    fn gaps() {
        let have: BTreeSet<u64> = [3, 4, 6, 7].into_iter().collect();
        assert_eq!(first_gap(3, 7, &have, None), Some(5));
        assert_eq!(first_gap(2, 7, &have, Some((2, 2))), Some(5));
        assert_eq!(first_gap(2, 4, &have, Some((2, 2))), None);
    }

    #[test]
    fn damaged_wal_is_named_from_the_log() {
        let mb = 1024 * 1024;
        let log = vec![
            "2026-12-01 03:00:00.000 UTC [1] LOG:  redo starts at 0/2000028".to_string(),
            "2026-12-01 03:00:00.100 UTC [1] LOG:  incorrect resource manager data checksum in record at 0/9080A0".to_string(),
            "2026-12-01 03:00:00.100 UTC [1] LOG:  redo done at 0/908068".to_string(),
        ];
        let (seg, said) = invalid_wal(&log, 1, mb).unwrap();
        assert_eq!(seg, "000000010000000000000009");
        assert!(said.starts_with("incorrect resource manager"));
        let log = vec![
            "LOG:  invalid magic number 0000 in log segment 000000010000000000000007, offset 0"
                .to_string(),
        ];
        assert_eq!(
            invalid_wal(&log, 1, mb).unwrap().0,
            "000000010000000000000007"
        );
        assert_eq!(parse_size("16MB"), Some(16 * mb));
        assert_eq!(parse_size("1MB"), Some(mb));
    }

    fn file(name: &str, size: u64) -> ArchiveFile {
        ArchiveFile {
            name: name.into(),
            size,
            segno: parse_segment(name, 1 << 20).map(|(_, n)| n),
        }
    }

    #[test]
    fn only_the_needed_part_of_the_archive_is_fetched() {
        let mb = 1 << 20;
        let files = vec![
            file("000000010000000000000005", mb),
            file("000000010000000000000006", mb),
            file("000000010000000000000007", mb),
            file("000000020000000000000007", mb),
            file("000000020000000000000008", mb),
            file("00000002.history", 42),
            file("00000003.history", 84),
        ];
        let plan = plan_fetch(&files, 6, None, 2);
        let names = |v: &[ArchiveFile]| v.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&plan.streamed),
            [
                "000000010000000000000006",
                "000000010000000000000007",
                "000000020000000000000007",
                "000000020000000000000008"
            ]
        );
        // The history files recovery asks for first come ahead.
        assert_eq!(names(&plan.ahead), ["00000002.history", "00000003.history"]);
        assert_eq!((plan.left_out, plan.left_out_bytes), (1, mb));
        assert_eq!(plan.bytes(), 4 * mb + 126);
        // An older timeline's history file streams with the segments.
        let plan = plan_fetch(&files, 6, Some(7), 3);
        assert_eq!(plan.ahead.len(), 1);
        assert!(plan.streamed.iter().any(|f| f.name == "00000002.history"));
        assert!(!plan.streamed.iter().any(|f| f.name.ends_with("08")));
        assert_eq!(plan.left_out, 2);
        assert_eq!(history_timeline("0000000A.history"), Some(10));
        assert_eq!(history_timeline("000000010000000000000006"), None);
    }

    #[test]
    fn a_target_bounds_the_fetch_only_where_its_place_is_known() {
        let mb = 1 << 20;
        let margin = TARGET_MARGIN_BYTES / mb;
        assert_eq!(
            last_needed(&RecoveryTarget::Immediate, Some(0x0A0_0028), mb),
            Some(0xA + margin)
        );
        assert_eq!(last_needed(&RecoveryTarget::Immediate, None, mb), None);
        assert_eq!(
            last_needed(&RecoveryTarget::Lsn("0/F00440".into()), None, 16 * mb),
            Some(4)
        );
        assert_eq!(last_needed(&RecoveryTarget::Latest, Some(1), mb), None);
        assert_eq!(
            last_needed(&RecoveryTarget::Name("p".into()), Some(1), mb),
            None
        );
    }

    /// The restore_command script, run by the host's `sh` against a stage
    /// in a temporary directory.
    #[test]
    fn restore_command_waits_for_whole_files_and_aborts_on_a_failed_fetch() {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let stage = Stage::new(dir.path().join("stage").display().to_string());
        let at = |n: &str| std::path::PathBuf::from(stage.path(n));
        std::fs::create_dir_all(at("files")).unwrap();
        std::fs::write(
            at("expected"),
            "000000010000000000000006 4\n00000002.history 2\n",
        )
        .unwrap();
        std::fs::write(at(RESTORE_SCRIPT), stage.script()).unwrap();
        let run = |name: &str| {
            Command::new("sh")
                .arg(at(RESTORE_SCRIPT))
                .arg(name)
                .arg(dir.path().join("out"))
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let status = |name: &str| run(name).wait_with_output().unwrap().status.code();
        // Not in the archive: 1, at once.
        assert_eq!(status("000000010000000000000099"), Some(1));
        // Listed, whole: copied.
        std::fs::write(at("files/00000002.history"), "ok").unwrap();
        assert_eq!(status("00000002.history"), Some(0));
        assert_eq!(std::fs::read(dir.path().join("out")).unwrap(), b"ok");
        // Listed, on its way: waits until it is whole.
        std::fs::write(at("files/000000010000000000000006"), "ab").unwrap();
        let mut waiting = run("000000010000000000000006");
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            waiting.try_wait().unwrap().is_none(),
            "handed over half a segment"
        );
        std::fs::write(at("files/000000010000000000000006"), "abcd").unwrap();
        assert_eq!(waiting.wait().unwrap().code(), Some(0));
        assert_eq!(std::fs::read(dir.path().join("out")).unwrap(), b"abcd");
        let served = std::fs::read_to_string(at("served")).unwrap();
        assert_eq!(served.lines().count(), 2);
        // Not whole after the fetch ended whole, or the fetch failed:
        // above 125, so PostgreSQL aborts recovery.
        std::fs::write(at("files/000000010000000000000006"), "ab").unwrap();
        std::fs::write(at("fetched"), "").unwrap();
        assert_eq!(
            status("000000010000000000000006"),
            Some(FATAL_STATUS.into())
        );
        std::fs::remove_file(at("fetched")).unwrap();
        std::fs::remove_file(at("files/000000010000000000000006")).unwrap();
        let waiting = run("000000010000000000000006");
        std::thread::sleep(Duration::from_millis(200));
        std::fs::write(at("failed"), "").unwrap();
        let out = waiting.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(FATAL_STATUS.into()));
        // Waiting for a file not there yet says nothing else (the server's
        // log).
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(said.contains("fetch of the WAL archive failed"), "{said}");
        assert_eq!(said.lines().count(), 1, "{said}");
        assert!(i32::from(FATAL_STATUS) > 125);
    }

    #[test]
    fn the_member_a_tar_stream_broke_at_is_remembered() {
        use tokio::io::AsyncReadExt;
        let mut tar = Vec::new();
        for (name, size) in [
            ("backups/wal/000000010000000000000006", 700usize),
            ("backups/wal/000000010000000000000007", 512),
        ] {
            let mut h = [0u8; 512];
            h[..name.len()].copy_from_slice(name.as_bytes());
            h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
            h[257..262].copy_from_slice(b"ustar");
            tar.extend_from_slice(&h);
            tar.extend(std::iter::repeat_n(7u8, size.div_ceil(512) * 512));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // Cut inside the second member's data, read in small pieces.
        let cut = &tar[..512 + 1024 + 512 + 100];
        let last = LastMember::default();
        let mut r = TarMembers::new(cut, last.clone());
        let mut buf = [0u8; 37];
        rt.block_on(async { while r.read(&mut buf).await.unwrap() > 0 {} });
        assert_eq!(
            last.lock().unwrap().as_deref(),
            Some("backups/wal/000000010000000000000007")
        );
        // Cut inside the first member's data.
        let last = LastMember::default();
        let mut r = TarMembers::new(&tar[..600], last.clone());
        rt.block_on(async { while r.read(&mut buf).await.unwrap() > 0 {} });
        assert_eq!(
            last.lock().unwrap().as_deref().map(name_of),
            Some("000000010000000000000006")
        );
    }
}
