//! Content identity: what a backup means, without the bytes that change on
//! every run of the tool that made it.
//!
//! Nightly dumps of unchanged data are not byte-identical: `pg_dump` and
//! `pg_dumpall` 15.14/16.10/17.6 and later write a fresh random key in
//! `\restrict KEY` / `\unrestrict KEY` lines (PostgreSQL release notes,
//! CVE-2025-8714), a custom archive's header carries its creation time
//! (`pg_backup_archiver.c`, `WriteHead`), and `mysqldump` ends with
//! `-- Dump completed on <time>`. Each restore method says what is volatile
//! in its formats ([`Volatile`]); the identity is the SHA-256 of the
//! decompressed stream without it. A physical base backup directory is
//! identified by its restic tree id.
//!
//! Within one repository, two dumps whose restic content (their data blob
//! ids) is equal are the same bytes, so their identity is known without
//! reading either: the ledger caches identity by restic content.

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::config::DatabaseConfig;
use crate::restore::{Counter, Source};

/// What is volatile in a backup format.
#[derive(Debug, Clone, Copy)]
pub enum Volatile {
    /// Nothing: every byte counts.
    Nothing,
    /// Whole lines for which the function returns true (a text dump's
    /// random keys, timestamps).
    Lines(fn(&[u8]) -> bool),
    /// The creation time in a `pg_dump -Fc` archive's header.
    CustomArchiveHead,
    /// The backup is a directory: its restic tree id is its identity.
    Tree,
}

/// `\restrict KEY` and `\unrestrict KEY` (psql meta-commands that
/// `pg_dump` writes with a random key since 17.6/16.10/15.14).
pub fn pg_restrict_line(line: &[u8]) -> bool {
    line.starts_with(b"\\restrict ") || line.starts_with(b"\\unrestrict ")
}

/// `-- Dump completed on 2026-11-30 03:00:01` (`mysqldump`, `mariadb-dump`).
pub fn mysqldump_completed_line(line: &[u8]) -> bool {
    line.starts_with(b"-- Dump completed on ")
}

/// Zero the creation time (seven integers) in the head of a custom-format
/// archive (`PGDMP`, version, int size, offset size, format, compression,
/// then `tm_sec` … `tm_isdst`; `pg_backup_archiver.c`, `ReadHead`).
pub fn zero_custom_creation_time(head: &mut [u8]) {
    if head.len() < 11 || &head[..5] != b"PGDMP" {
        return;
    }
    let (vmaj, vmin) = (head[5], head[6]);
    let int_size = head[8] as usize;
    let mut pos = 11;
    if (vmaj, vmin) >= (1, 15) {
        pos += 1;
    } else if (vmaj, vmin) >= (1, 4) {
        pos += 1 + int_size;
    } else {
        return;
    }
    for _ in 0..7 {
        let end = pos + 1 + int_size;
        if end > head.len() {
            return;
        }
        head[pos..end].fill(0);
        pos = end;
    }
}

/// Bytes a custom archive's head is held back for before it is hashed, so
/// that its creation time is zeroed whatever sizes the stream comes in.
const ARCHIVE_HEAD_BYTES: usize = 4096;

/// A stream's identity computed as it passes ([`hash_stream`], or a
/// restore's own stream, which then needs no second read): `update` with
/// every byte in order, `finish` at its end.
pub struct StreamIdentity {
    h: Sha256,
    volatile: Volatile,
    /// A line not ended yet (`Volatile::Lines`), or the archive's head
    /// not hashed yet (`Volatile::CustomArchiveHead`).
    partial: Vec<u8>,
    /// Whether the archive's head was hashed.
    head_done: bool,
}

impl StreamIdentity {
    /// An identity with `volatile` left out.
    pub fn new(volatile: Volatile) -> Self {
        StreamIdentity {
            h: Sha256::new(),
            volatile,
            partial: Vec::new(),
            head_done: false,
        }
    }

    /// The next bytes of the stream.
    pub fn update(&mut self, chunk: &[u8]) {
        match self.volatile {
            Volatile::Nothing | Volatile::Tree => self.h.update(chunk),
            Volatile::CustomArchiveHead if self.head_done => self.h.update(chunk),
            Volatile::CustomArchiveHead => {
                self.partial.extend_from_slice(chunk);
                if self.partial.len() >= ARCHIVE_HEAD_BYTES {
                    self.hash_archive_head();
                }
            }
            Volatile::Lines(drop) => {
                // Kept lines are hashed in runs: one update per chunk
                // unless a line in it is dropped.
                let (mut start, mut kept) = (0, 0);
                while let Some(nl) = memchr::memchr(b'\n', &chunk[start..]) {
                    let end = start + nl + 1;
                    if self.partial.is_empty() {
                        if drop(&chunk[start..end]) {
                            self.h.update(&chunk[kept..start]);
                            kept = end;
                        }
                    } else {
                        self.partial.extend_from_slice(&chunk[start..end]);
                        if !drop(&self.partial) {
                            self.h.update(&self.partial);
                        }
                        self.partial.clear();
                        kept = end;
                    }
                    start = end;
                }
                self.h.update(&chunk[kept..start]);
                self.partial.extend_from_slice(&chunk[start..]);
            }
        }
    }

    fn hash_archive_head(&mut self) {
        let mut head = std::mem::take(&mut self.partial);
        zero_custom_creation_time(&mut head);
        self.h.update(&head);
        self.head_done = true;
    }

    /// The identity of the whole stream: `sha256:<hex>`.
    pub fn finish(mut self) -> String {
        match self.volatile {
            Volatile::Lines(drop) if !self.partial.is_empty() && !drop(&self.partial) => {
                let last = std::mem::take(&mut self.partial);
                self.h.update(&last);
            }
            Volatile::CustomArchiveHead if !self.head_done => self.hash_archive_head(),
            _ => {}
        }
        format!(
            "sha256:{}",
            self.h
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    }
}

/// The identity of the stream `reader` with `volatile` left out:
/// `sha256:<hex>` ([`StreamIdentity`]).
///
/// # Errors
/// The read error.
pub async fn hash_stream<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    volatile: Volatile,
) -> std::io::Result<String> {
    let mut id = StreamIdentity::new(volatile);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        id.update(&buf[..n]);
    }
    Ok(id.finish())
}

/// The content identity of `db`'s backup in the source's snapshot, whose
/// restic content is `restic_content` (data blob ids, or `tree:<id>` for a
/// directory). A directory's identity is its tree id; a file's is its
/// stream hashed without its volatile parts (one `restic dump`).
///
/// # Errors
/// Why it could not be read.
pub async fn content_identity(
    db: &DatabaseConfig,
    source: &Source<'_>,
    restic_content: &[String],
) -> Result<String, String> {
    let volatile = db.kind.method(db.format).volatile(db.format);
    if let Volatile::Tree = volatile {
        // The trees of the base backups and of the WAL archive, and the
        // target recovered to.
        if !restic_content
            .first()
            .is_some_and(|c| c.starts_with("tree:"))
        {
            return Err(format!("{} is not a directory in the snapshot", db.path));
        }
        let target = db
            .recovery
            .as_ref()
            .map(|r| r.target.describe())
            .unwrap_or_default();
        let mut h = Sha256::new();
        for c in restic_content {
            h.update(c.as_bytes());
            h.update(b"\n");
        }
        h.update(format!("target {target}").as_bytes());
        return Ok(format!(
            "trees:{}",
            h.finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ));
    }
    let mut s = crate::restore::open(
        &db.path,
        db.compression,
        source.repo,
        source.snapshot,
        source.timeouts.stall,
        Counter::default(),
        0,
    )?;
    let hashed = hash_stream(&mut s.tap, volatile).await;
    let stalled = s.stalled();
    let restic = s.dump.finish().await;
    if stalled {
        return Err(format!("restic stalled reading {}", db.path));
    }
    restic.map_err(|e| e.to_string())?;
    hashed.map_err(|e| format!("read {}: {e}", db.path))
}

/// The content identity of `db`'s backup with restic content `content`:
/// from the ledger's cache when this restic content was identified before,
/// else `known` (computed by the restore from its own stream), else
/// computed here ([`content_identity`]: a second read); cached.
///
/// # Errors
/// Why it could not be computed.
pub async fn identify(
    ledger: &super::Ledger,
    tier: &str,
    db: &DatabaseConfig,
    source: &Source<'_>,
    content: &[String],
    known: Option<&str>,
) -> Result<String, String> {
    let key = restic_key(content);
    if let Some(id) = ledger
        .cached_identity(tier, &db.name, &key)
        .map_err(|e| e.to_string())?
    {
        return Ok(id);
    }
    let id = match known {
        Some(id) => id.to_string(),
        None => content_identity(db, source, content).await?,
    };
    ledger
        .cache_identity(tier, &db.name, &key, &id)
        .map_err(|e| e.to_string())?;
    Ok(id)
}

/// The paths of `db`'s backup in a snapshot: its dump (or base backup
/// directory) and, for a physical backup, its WAL archive.
pub fn backup_paths(db: &DatabaseConfig) -> Vec<&str> {
    std::iter::once(db.path.as_str())
        .chain(db.recovery.as_ref().and_then(|r| r.wal.as_deref()))
        .collect()
}

/// `db`'s restic content from `contents` (as [`crate::tier::Repository::contents`]
/// gives it for [`backup_paths`]): `None` when the snapshot lacks its
/// backup. A physical backup's target is part of it.
pub fn restic_content(
    db: &DatabaseConfig,
    contents: &std::collections::HashMap<String, Vec<String>>,
) -> Option<Vec<String>> {
    let mut out = contents.get(&db.path)?.clone();
    if let Some(r) = &db.recovery {
        if let Some(wal) = &r.wal {
            out.extend(contents.get(wal)?.iter().cloned());
        }
        out.push(format!("target:{}", r.target.describe()));
    }
    Some(out)
}

/// The key restic content is cached under: SHA-256 of the blob ids.
pub fn restic_key(content: &[String]) -> String {
    let mut h = Sha256::new();
    for id in content {
        h.update(id.as_bytes());
        h.update(b"\n");
    }
    format!(
        "restic:{}",
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn restrict_keys_and_dump_times_are_volatile() {
        let a = b"-- dump\n\\restrict abc123\nCOPY t FROM stdin;\n1\n\\.\n\\unrestrict abc123\n";
        let b = b"-- dump\n\\restrict zzz999\nCOPY t FROM stdin;\n1\n\\.\n\\unrestrict zzz999\n";
        let c = b"-- dump\n\\restrict zzz999\nCOPY t FROM stdin;\n2\n\\.\n\\unrestrict zzz999\n";
        let v = Volatile::Lines(pg_restrict_line);
        let ha = hash_stream(&mut &a[..], v).await.unwrap();
        assert_eq!(ha, hash_stream(&mut &b[..], v).await.unwrap());
        assert_ne!(ha, hash_stream(&mut &c[..], v).await.unwrap());
        let m1 = b"INSERT 1;\n-- Dump completed on 2026-11-30  3:00:01\n";
        let m2 = b"INSERT 1;\n-- Dump completed on 2026-12-01  3:00:02\n";
        let v = Volatile::Lines(mysqldump_completed_line);
        assert_eq!(
            hash_stream(&mut &m1[..], v).await.unwrap(),
            hash_stream(&mut &m2[..], v).await.unwrap()
        );
    }

    #[tokio::test]
    async fn an_identity_does_not_depend_on_the_pieces_it_is_fed() {
        let mut archive = b"PGDMP\x01\x0e\x00\x04\x08\x01".to_vec();
        archive.extend_from_slice(&[0, 0xff, 0xff, 0xff, 0xff]);
        let mut later = archive.clone();
        for t in [1u8, 2, 3, 4, 5, 6, 7] {
            archive.extend_from_slice(&[0, t, 0, 0, 0]);
            later.extend_from_slice(&[0, t + 1, 0, 0, 0]);
        }
        let body: Vec<u8> = (0..20_000u32).flat_map(|i| i.to_le_bytes()).collect();
        archive.extend_from_slice(&body);
        later.extend_from_slice(&body);
        let script =
            b"-- dump\n\\restrict k1\nCOPY t FROM stdin;\n1\n\\.\n\\unrestrict k1\n".repeat(50);
        for (bytes, v) in [
            (&archive, Volatile::CustomArchiveHead),
            (&script, Volatile::Lines(pg_restrict_line)),
            (&script, Volatile::Nothing),
        ] {
            let whole = hash_stream(&mut &bytes[..], v).await.unwrap();
            for piece in [1, 7, 4096, 100_000] {
                let mut id = StreamIdentity::new(v);
                bytes.chunks(piece).for_each(|c| id.update(c));
                assert_eq!(id.finish(), whole, "pieces of {piece}");
            }
        }
        // Another creation time, the same identity.
        assert_eq!(
            hash_stream(&mut &archive[..], Volatile::CustomArchiveHead)
                .await
                .unwrap(),
            hash_stream(&mut &later[..], Volatile::CustomArchiveHead)
                .await
                .unwrap()
        );
    }

    #[test]
    fn custom_archive_creation_time_is_zeroed() {
        // PGDMP 1.14, int size 4, off size 8, format 1, compression int,
        // then 7 ints of 5 bytes.
        let mut h = b"PGDMP\x01\x0e\x00\x04\x08\x01".to_vec();
        h.extend_from_slice(&[0, 0xff, 0xff, 0xff, 0xff]);
        for t in [1u8, 2, 3, 4, 5, 6, 7] {
            h.extend_from_slice(&[0, t, 0, 0, 0]);
        }
        h.extend_from_slice(b"rest");
        zero_custom_creation_time(&mut h);
        assert!(h[16..51].iter().all(|b| *b == 0));
        assert_eq!(&h[11..16], &[0, 0xff, 0xff, 0xff, 0xff]);
        assert!(h.ends_with(b"rest"));
    }
}
