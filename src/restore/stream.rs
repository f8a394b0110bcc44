//! The dump stream's taps: byte counting, the tail kept for the trailer
//! check, and the head sniffed for `CREATE DATABASE`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use crate::config::DumpFormat;

/// A shared byte counter.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<CounterInner>);

#[derive(Debug, Default)]
struct CounterInner {
    bytes: AtomicU64,
    /// Another counter that also gets every byte counted here, once
    /// [`Counter::forward_to`] set it.
    also: std::sync::OnceLock<Counter>,
}

impl Counter {
    /// Bytes counted so far.
    pub fn get(&self) -> u64 {
        self.0.bytes.load(Ordering::Relaxed)
    }

    fn add(&self, n: u64) {
        self.0.bytes.fetch_add(n, Ordering::Relaxed);
        if let Some(other) = self.0.also.get() {
            other.add(n);
        }
    }

    /// From now on also count into `other`, which first gets what this
    /// counter holds so far: a stream opened before the counter its
    /// consumer watches existed (a dump's head read before its restore).
    /// Only the first call takes effect. Call it while nothing counts here.
    pub(crate) fn forward_to(&self, other: &Counter) {
        if self.0.also.set(other.clone()).is_ok() {
            other.add(self.get());
        }
    }
}

/// An `AsyncRead` pass-through that computes the stream's content
/// identity ([`crate::ledger::identity::StreamIdentity`]) as it is read,
/// so a restore that reads its dump to the end needs no second read for
/// the ledger. The identity lands in the shared slot at the end of the
/// stream, and only then.
pub struct Identify<R> {
    inner: R,
    id: Option<crate::ledger::identity::StreamIdentity>,
    slot: Arc<std::sync::OnceLock<String>>,
}

impl<R> Identify<R> {
    /// Wrap `inner`, leaving `volatile` out of the identity; `slot` gets
    /// it once `inner` has ended.
    pub fn new(
        inner: R,
        volatile: crate::ledger::identity::Volatile,
        slot: Arc<std::sync::OnceLock<String>>,
    ) -> Self {
        Identify {
            inner,
            id: Some(crate::ledger::identity::StreamIdentity::new(volatile)),
            slot,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Identify<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let new = &buf.filled()[before..];
            // No byte into a buffer with room: the end of the stream.
            if new.is_empty() && room {
                if let Some(id) = this.id.take() {
                    let _ = this.slot.set(id.finish());
                }
            } else if let Some(id) = this.id.as_mut() {
                id.update(new);
            }
        }
        r
    }
}

/// An `AsyncRead` pass-through that counts bytes, keeps the last `keep`
/// bytes (a bounded window, for the trailer check) and remembers the first
/// read error (so a decompression error is not mistaken for a write error).
pub struct Tap<R> {
    inner: R,
    count: Counter,
    keep: usize,
    tail: Vec<u8>,
    read_error: Option<String>,
    eof: bool,
}

impl<R> Tap<R> {
    /// Wrap `inner`, keeping the last `keep` bytes.
    pub fn new(inner: R, keep: usize) -> Self {
        Tap {
            inner,
            count: Counter::default(),
            keep,
            tail: Vec::with_capacity(keep * 2),
            read_error: None,
            eof: false,
        }
    }

    /// Like [`Tap::new`], counting into `count` (a counter the caller
    /// watches, e.g. for progress).
    pub fn with_counter(inner: R, keep: usize, count: Counter) -> Self {
        Tap {
            count,
            ..Tap::new(inner, keep)
        }
    }

    /// A handle on the byte count that outlives the tap.
    pub fn counter(&self) -> Counter {
        self.count.clone()
    }

    /// Bytes passed through.
    pub fn bytes(&self) -> u64 {
        self.count.get()
    }

    /// The last bytes passed through (at most `keep`).
    pub fn tail(&self) -> Vec<u8> {
        let start = self.tail.len().saturating_sub(self.keep);
        self.tail[start..].to_vec()
    }

    /// Whether the source reached its end (a read returned nothing).
    pub fn at_eof(&self) -> bool {
        self.eof
    }

    /// The first read error, if any.
    pub fn read_error(&self) -> Option<&str> {
        self.read_error.as_deref()
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Tap<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let had_room = buf.remaining() > 0;
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if new.is_empty() && had_room {
                    this.eof = true;
                }
                this.count.add(new.len() as u64);
                if this.keep > 0 && !new.is_empty() {
                    let take = new.len().min(this.keep);
                    this.tail.extend_from_slice(&new[new.len() - take..]);
                    if this.tail.len() > this.keep * 2 {
                        let cut = this.tail.len() - this.keep;
                        this.tail.drain(..cut);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                if this.read_error.is_none() {
                    this.read_error = Some(e.to_string());
                }
                Poll::Ready(Err(e))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Whether a plain `pg_dump` script creates its database: its first
/// statement after the preamble (comments, `SET`, `set_config`, psql
/// meta-commands such as `\restrict`) is `CREATE DATABASE`.
pub fn plain_creates_database(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty()
            || t.starts_with("--")
            || t.starts_with('\\')
            || t.starts_with("SET ")
            || t.starts_with("SELECT pg_catalog.set_config")
        {
            continue;
        }
        return t.starts_with("CREATE DATABASE ");
    }
    false
}

/// Whether the end of a plain dump is its completeness trailer (PostgreSQL
/// `pg_backup_archiver.c` / `pg_dumpall.c`):
///
/// ```text
/// --
/// -- PostgreSQL database dump complete
/// --
/// ```
///
/// (`database cluster dump complete` for `pg_dumpall`). Blank lines and the
/// `\unrestrict` meta-command that recent releases put around the trailer
/// are ignored. A custom-format archive has no trailer: `pg_restore` checks
/// its structure.
pub fn has_trailer(tail: &[u8], format: DumpFormat) -> bool {
    let marker = match format {
        DumpFormat::PgDumpall => "-- PostgreSQL database cluster dump complete",
        DumpFormat::Plain => "-- PostgreSQL database dump complete",
        DumpFormat::Custom => return true,
        // Not a PostgreSQL format: no PostgreSQL trailer to find.
        DumpFormat::Mysqldump | DumpFormat::Basebackup => return false,
    };
    let text = String::from_utf8_lossy(tail);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with("\\unrestrict"))
        .collect();
    matches!(lines.as_slice(), [.., "--", m, "--"] if *m == marker)
}

/// An `AsyncRead` pass-through that fails with [`std::io::ErrorKind::TimedOut`]
/// when its source keeps the reader waiting for `limit` without a byte
/// (phase `streaming`, `timeouts.stall`). Time the reader spends elsewhere
/// (the restore tool busy, not asking for more) does not count. The stall is
/// recorded in a shared flag, so the restore can tell it from damage.
pub struct Stall<R> {
    inner: R,
    limit: std::time::Duration,
    /// One timer, re-armed at the start of each wait (no allocation on the
    /// stream's path).
    deadline: Pin<Box<tokio::time::Sleep>>,
    armed: bool,
    stalled: Arc<std::sync::atomic::AtomicBool>,
    /// Set when the reader paused on purpose ([`Stall::paused`]): the next
    /// wait starts a new timer.
    paused: Arc<std::sync::atomic::AtomicBool>,
}

impl<R> Stall<R> {
    /// Wrap `inner`.
    pub fn new(inner: R, limit: std::time::Duration) -> Self {
        Stall {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
            armed: false,
            stalled: Arc::default(),
            paused: Arc::default(),
        }
    }

    /// A flag set once the source stalled.
    pub fn flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.stalled.clone()
    }

    /// A flag to set after the reader stopped reading for a while on
    /// purpose (a dump's stream held while its sandbox started): the time
    /// it did not read is not the source's stall.
    pub fn paused(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.paused.clone()
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Stall<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.paused.swap(false, Ordering::Relaxed) {
            this.armed = false;
        }
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.armed = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = this.limit;
                if !this.armed {
                    this.armed = true;
                    this.deadline
                        .as_mut()
                        .reset(tokio::time::Instant::now() + limit);
                }
                match this.deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.stalled.store(true, Ordering::Relaxed);
                        Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("restic sent no data for {}", crate::duration::human(limit)),
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

/// Copy what is left of `piece` from `*pos` into `buf`, as much as fits,
/// and move `*pos` on; `false` when nothing was left to copy.
pub(crate) fn drain_into(piece: &[u8], pos: &mut usize, buf: &mut ReadBuf<'_>) -> bool {
    if *pos >= piece.len() {
        return false;
    }
    let n = buf.remaining().min(piece.len() - *pos);
    buf.put_slice(&piece[*pos..*pos + n]);
    *pos += n;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_counter_forwards_what_it_held_and_what_follows() {
        let head = Counter::default();
        let mut tap = Tap::with_counter(&b"0123456789"[..], 0, head.clone());
        let mut four = [0u8; 4];
        tap.read_exact(&mut four).await.unwrap();
        let progress = Counter::default();
        head.forward_to(&progress);
        // A second target is ignored: every byte is counted once there.
        head.forward_to(&Counter::default());
        assert_eq!(progress.get(), 4);
        let mut rest = Vec::new();
        tap.read_to_end(&mut rest).await.unwrap();
        assert_eq!((head.get(), progress.get()), (10, 10));
    }

    #[test]
    fn create_database_is_sniffed() {
        let with = b"--\n-- PostgreSQL database dump\n--\n\\restrict abc\nSET statement_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n--\n-- Name: hive; Type: DATABASE\n--\n\nCREATE DATABASE hive WITH TEMPLATE = template0;\n";
        let without = b"--\nSET statement_timeout = 0;\n\nCREATE TABLE public.users (id int);\n";
        assert!(plain_creates_database(with));
        assert!(!plain_creates_database(without));
        assert!(!plain_creates_database(b""));
    }

    #[test]
    fn trailer_is_required() {
        let ok = b"COPY ...\n\\.\n\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc\n\n";
        assert!(has_trailer(ok, DumpFormat::Plain));
        assert!(!has_trailer(ok, DumpFormat::PgDumpall));
        let cluster = b"--\n-- PostgreSQL database dump complete\n--\n\n--\n-- PostgreSQL database cluster dump complete\n--\n\n";
        assert!(has_trailer(cluster, DumpFormat::PgDumpall));
        assert!(!has_trailer(b"1\tfoo\n2\tbar\n", DumpFormat::Plain));
        assert!(!has_trailer(
            b"--\n-- PostgreSQL database dump complete\n--\nCREATE TABLE x();\n",
            DumpFormat::Plain
        ));
    }

    #[tokio::test]
    async fn tap_counts_and_keeps_tail() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut tap = Tap::new(std::io::Cursor::new(data.clone()), 100);
        let mut out = Vec::new();
        tap.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, data);
        assert_eq!(tap.bytes(), 100_000);
        assert_eq!(tap.tail(), data[data.len() - 100..].to_vec());
    }
}
