//! `kind = "blob-roundtrip"`: a table with a bytea column and a stored
//! digest column (hex SHA-256 text).
//!
//! Three independent proofs, every row:
//! 1. in the sandbox, `sha256(data)` equals the stored digest;
//! 2. the bytes exported out of the sandbox (`COPY … TO STDOUT (FORMAT
//!    binary)`) hash on drill's side to the stored digest;
//! 3. the same exported stream, imported back into a scratch table
//!    (`COPY … FROM STDIN (FORMAT binary)` into a temporary table), hashes
//!    in the sandbox to the stored digest, and holds as many rows.
//!
//! The export is piped chunk by chunk into the import and through the
//! hasher. PostgreSQL sends each row of a COPY as one message, so values
//! over [`LARGE_VALUE`] bytes are read in slices instead and imported
//! through a COPY stream drill frames itself: memory stays at one slice
//! (1 MiB) whatever the size of a value. The binary COPY format is
//! PostgreSQL's (docs: COPY, "Binary Format").

/// Database kinds this implementation serves.
pub(super) const KINDS: &[&str] = &["postgresql"];

use crate::config::{CheckDefinition, CheckSpec};
use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, TryStreamExt};
use sha2::{Digest, Sha256};

use super::{quote_ident, quote_table, text_rows, CheckContext, CheckError, Conclusion, Finding};
use crate::sandbox::pg_message;

/// Mismatching rows listed in the report; the rest are counted.
const MAX_ROWS_REPORTED: usize = 10;

/// What to verify.
pub(super) struct Target<'a> {
    pub table: &'a str,
    pub id_column: &'a str,
    pub data_column: &'a str,
    pub digest_column: &'a str,
}

impl<'a> Target<'a> {
    /// The target a `blob-roundtrip` definition names (shared by the
    /// implementations of each database kind).
    pub(super) fn of(def: &'a CheckDefinition) -> Result<Self, super::Incomplete> {
        let CheckSpec::BlobRoundtrip {
            table,
            id_column,
            data_column,
            digest_column,
        } = &def.spec
        else {
            return Err(super::Incomplete::from(CheckError::Shape(format!(
                "check `{}` is not of kind blob-roundtrip",
                def.name
            ))));
        };
        Ok(Target {
            table,
            id_column,
            data_column,
            digest_column,
        })
    }
}

pub(super) async fn run(
    ctx: &CheckContext<'_>,
    t: &Target<'_>,
    timeout: Duration,
) -> Result<Conclusion, CheckError> {
    let source = super::connect(ctx).await?;
    let scratch = super::connect(ctx).await?;
    let cancels = [source.cancel_token(), scratch.cancel_token()];
    match tokio::time::timeout(timeout, verify(&source, &scratch, t)).await {
        Ok(r) => r,
        Err(_) => {
            for c in cancels {
                let _ = c.cancel_query(tokio_postgres::NoTls).await;
            }
            Err(CheckError::Timeout(timeout))
        }
    }
}

/// A row's stored digest and what each proof computed (`None` = that proof
/// agreed or did not see the row; `Some("NULL")` = no bytes).
#[derive(Debug, Default, Clone)]
struct Mismatch {
    stored: Option<String>,
    in_sandbox: Option<String>,
    exported: Option<String>,
    reimported: Option<String>,
}

async fn verify(
    source: &tokio_postgres::Client,
    scratch: &tokio_postgres::Client,
    t: &Target<'_>,
) -> Result<Conclusion, CheckError> {
    let table = quote_table(t.table);
    let (id, data, digest) = (
        quote_ident(t.id_column),
        quote_ident(t.data_column),
        quote_ident(t.digest_column),
    );
    let q =
        |e: tokio_postgres::Error| CheckError::Query(format!("{}: {}", t.table, pg_message(&e)));
    let mut bad: BTreeMap<String, Mismatch> = BTreeMap::new();

    // 1. In the sandbox.
    let sql = format!("SELECT count(*), coalesce(sum(octet_length({data})), 0) FROM {table}");
    let rows = text_rows(&source.simple_query(&sql).await.map_err(q)?);
    let (row_count, byte_count) = match rows.first().map(|r| r.as_slice()) {
        Some([Some(n), Some(b)]) => (n.parse::<u64>().unwrap_or(0), b.parse::<u64>().unwrap_or(0)),
        _ => {
            return Err(CheckError::Shape(format!(
                "cannot count rows of {}",
                t.table
            )))
        }
    };
    let mismatch_sql = |from: &str, id: &str, data: &str, digest: &str| {
        format!(
            "SELECT {id}, {digest}::text, CASE WHEN {data} IS NULL THEN 'NULL' ELSE encode(sha256({data}), 'hex') END \
             FROM {from} WHERE {data} IS NULL OR {digest} IS NULL \
             OR lower(btrim({digest}::text)) <> encode(sha256({data}), 'hex') ORDER BY 1"
        )
    };
    let rows = text_rows(
        &source
            .simple_query(&mismatch_sql(
                &table,
                &format!("{id}::text"),
                &data,
                &digest,
            ))
            .await
            .map_err(q)?,
    );
    record(&mut bad, rows, |m, v| m.in_sandbox = v);

    // 2 + 3. Export, hash, import into a scratch table.
    scratch
        .batch_execute(
            "CREATE TEMPORARY TABLE drill_blob_roundtrip (id text, data bytea, digest text)",
        )
        .await
        .map_err(q)?;
    // Rows up to LARGE_VALUE bytes travel in one COPY, piped through the
    // parser (hashing) into the import. PostgreSQL sends each row of a COPY
    // as one message, so larger values would be held whole: they are read
    // in LARGE_VALUE slices instead and imported with a COPY drill frames.
    let export = source
        .copy_out(&format!(
            "COPY (SELECT {id}::text, {data}, {digest}::text FROM {table} \
             WHERE {data} IS NULL OR octet_length({data}) <= {LARGE_VALUE}) TO STDOUT (FORMAT binary)"
        ))
        .await
        .map_err(q)?;
    let import = scratch
        .copy_in::<_, Bytes>(
            "COPY drill_blob_roundtrip (id, data, digest) FROM STDIN (FORMAT binary)",
        )
        .await
        .map_err(q)?;
    futures_util::pin_mut!(export);
    futures_util::pin_mut!(import);
    let mut parser = CopyParser::default();
    while let Some(chunk) = export.try_next().await.map_err(q)? {
        parser
            .feed(&chunk)
            .map_err(|e| CheckError::Shape(format!("export of {}: {e}", t.table)))?;
        import.send(chunk).await.map_err(q)?;
    }
    let mut exported = parser
        .finish()
        .map_err(|e| CheckError::Shape(format!("export of {}: {e}", t.table)))?;
    let mut imported = import.finish().await.map_err(q)?;
    let large = export_large(source, scratch, &table, &id, &data, &digest)
        .await
        .map_err(|e| match e {
            LargeError::Pg(e) => q(e),
            LargeError::Shape(m) => CheckError::Shape(format!("export of {}: {m}", t.table)),
        })?;
    exported.rows += large.rows;
    exported.bytes += large.bytes;
    exported.mismatches.extend(large.mismatches);
    imported += large.imported;
    for (key, stored, computed) in exported.mismatches {
        let m = bad.entry(key).or_default();
        m.stored = stored;
        m.exported = Some(computed);
    }
    let rows = text_rows(
        &scratch
            .simple_query(&mismatch_sql(
                "drill_blob_roundtrip",
                "id",
                "data",
                "digest",
            ))
            .await
            .map_err(q)?,
    );
    record(&mut bad, rows, |m, v| m.reimported = v);
    let _ = scratch
        .batch_execute("DROP TABLE IF EXISTS drill_blob_roundtrip")
        .await;

    let mut findings: Vec<Finding> = Vec::new();
    if exported.rows != row_count || imported != row_count {
        findings.push(
            Finding::new(format!(
                "{} holds {row_count} rows, but {} were exported and {imported} imported back",
                t.table, exported.rows
            ))
            .in_table(t.table),
        );
    }
    if exported.bytes != byte_count {
        findings.push(
            Finding::new(format!(
                "{} holds {byte_count} bytes in {}, but {} were exported",
                t.table, t.data_column, exported.bytes
            ))
            .in_table(t.table),
        );
    }
    let mismatching = bad.len();
    for (key, m) in bad.iter().take(MAX_ROWS_REPORTED) {
        let mut parts = vec![format!(
            "stored {} {}",
            t.digest_column,
            m.stored.as_deref().unwrap_or("NULL")
        )];
        for (label, v) in [
            ("in the sandbox", &m.in_sandbox),
            ("exported", &m.exported),
            ("re-imported", &m.reimported),
        ] {
            if let Some(v) = v {
                parts.push(format!("{label} SHA-256 {v}"));
            }
        }
        findings.push(
            Finding::new(format!(
                "{} {}={key}: {}",
                t.table,
                t.id_column,
                parts.join("; ")
            ))
            .in_table(t.table)
            .at_row(format!("{}={key}", t.id_column)),
        );
    }
    let detail = if findings.is_empty() {
        format!(
            "{row_count} rows, {} verified in the sandbox, exported and re-imported",
            bytesize::ByteSize(byte_count)
        )
    } else if mismatching > MAX_ROWS_REPORTED {
        format!("{mismatching} of {row_count} rows do not match their digest (first {MAX_ROWS_REPORTED} listed)")
    } else {
        format!("{mismatching} of {row_count} rows do not match their digest")
    };
    Ok(Conclusion {
        detail,
        findings,
        rows_verified: Some(exported.rows),
        bytes_verified: Some(exported.bytes),
        ..Default::default()
    })
}

/// Values larger than this (bytes) are read in slices of this size.
const LARGE_VALUE: i64 = 1 << 20;

enum LargeError {
    Pg(tokio_postgres::Error),
    Shape(String),
}

impl From<tokio_postgres::Error> for LargeError {
    fn from(e: tokio_postgres::Error) -> Self {
        LargeError::Pg(e)
    }
}

/// What [`export_large`] moved.
struct Large {
    rows: u64,
    bytes: u64,
    imported: u64,
    mismatches: Vec<(String, Option<String>, String)>,
}

/// Export the rows whose value exceeds [`LARGE_VALUE`] slice by slice
/// (`substring(data from k for LARGE_VALUE)`, located by `ctid` so each
/// slice is one tuple fetch), hash them, and import them into the scratch
/// table through a binary COPY whose framing drill writes (PostgreSQL docs:
/// COPY, "Binary Format"). Memory: one slice.
async fn export_large(
    source: &tokio_postgres::Client,
    scratch: &tokio_postgres::Client,
    table: &str,
    id: &str,
    data: &str,
    digest: &str,
) -> Result<Large, LargeError> {
    let mut out = Large {
        rows: 0,
        bytes: 0,
        imported: 0,
        mismatches: vec![],
    };
    let rows = source
        .query(
            &format!(
                "SELECT ctid::text, {id}::text, octet_length({data})::bigint, {digest}::text \
                 FROM {table} WHERE octet_length({data}) > {LARGE_VALUE} ORDER BY 2"
            ),
            &[],
        )
        .await?;
    if rows.is_empty() {
        return Ok(out);
    }
    let slice = source
        .prepare(&format!(
            "SELECT substring({data} from $2::bigint::integer for $3::bigint::integer) FROM {table} WHERE ctid = $1::text::tid"
        ))
        .await?;
    let import = scratch
        .copy_in::<_, Bytes>(
            "COPY drill_blob_roundtrip (id, data, digest) FROM STDIN (FORMAT binary)",
        )
        .await?;
    futures_util::pin_mut!(import);
    let mut header = SIGNATURE.to_vec();
    header.extend_from_slice(&0u32.to_be_bytes());
    header.extend_from_slice(&0u32.to_be_bytes());
    import.send(Bytes::from(header)).await?;
    for row in rows {
        let ctid: String = row.get(0);
        let key: Option<String> = row.get(1);
        let key = key.unwrap_or_else(|| "NULL".into());
        let len: i64 = row.get(2);
        let stored: Option<String> = row.get(3);
        let mut frame = Vec::with_capacity(64);
        frame.extend_from_slice(&3i16.to_be_bytes());
        frame.extend_from_slice(&(key.len() as i32).to_be_bytes());
        frame.extend_from_slice(key.as_bytes());
        frame.extend_from_slice(&(len as i32).to_be_bytes());
        import.send(Bytes::from(frame)).await?;
        let mut hasher = Sha256::new();
        let mut offset: i64 = 0;
        while offset < len {
            let part = source
                .query_one(&slice, &[&ctid, &(offset + 1), &LARGE_VALUE])
                .await?;
            let part: Option<Vec<u8>> = part.get(0);
            let part = part.unwrap_or_default();
            if part.is_empty() {
                return Err(LargeError::Shape(format!(
                    "row {key}: value ended at byte {offset} of {len}"
                )));
            }
            hasher.update(&part);
            offset += part.len() as i64;
            import.send(Bytes::from(part)).await?;
        }
        if offset != len {
            return Err(LargeError::Shape(format!(
                "row {key}: read {offset} bytes of {len}"
            )));
        }
        let mut tail = Vec::with_capacity(72);
        match &stored {
            Some(d) => {
                tail.extend_from_slice(&(d.len() as i32).to_be_bytes());
                tail.extend_from_slice(d.as_bytes());
            }
            None => tail.extend_from_slice(&(-1i32).to_be_bytes()),
        }
        import.send(Bytes::from(tail)).await?;
        let computed = hex(&hasher.finalize());
        if !stored
            .as_deref()
            .is_some_and(|s| s.trim().eq_ignore_ascii_case(&computed))
        {
            out.mismatches.push((key, stored, computed));
        }
        out.rows += 1;
        out.bytes += len as u64;
    }
    import.send(Bytes::from_static(&[0xff, 0xff])).await?;
    out.imported = import.finish().await?;
    Ok(out)
}

/// Note the rows (id, stored digest, computed digest) of a mismatch query,
/// the computed digest through `set`.
fn record(
    bad: &mut BTreeMap<String, Mismatch>,
    rows: Vec<Vec<Option<String>>>,
    set: impl Fn(&mut Mismatch, Option<String>),
) {
    for r in rows {
        let key = r[0].clone().unwrap_or_else(|| "NULL".into());
        let m = bad.entry(key).or_default();
        m.stored = r[1].clone();
        set(m, r[2].clone());
    }
}

/// What the export held.
#[derive(Debug, Default)]
struct Exported {
    rows: u64,
    bytes: u64,
    /// (id, stored digest, computed digest or `NULL`) of rows whose exported
    /// bytes do not hash to the stored digest.
    mismatches: Vec<(String, Option<String>, String)>,
}

/// Streaming reader of a 3-column binary COPY (id text, data bytea, digest
/// text): hashes the data field as it passes, keeps only id and digest.
#[derive(Default)]
struct CopyParser {
    state: State,
    /// Bytes of a fixed-size part (header, lengths) gathered so far.
    buf: Vec<u8>,
    field: usize,
    id: Option<String>,
    digest: Option<String>,
    text: Vec<u8>,
    hasher: Sha256,
    data_null: bool,
    out: Exported,
}

#[derive(Default, Clone, Copy, PartialEq, Debug)]
enum State {
    /// Signature (11), flags (4), extension length (4).
    #[default]
    Header,
    /// Header extension of this many bytes left.
    Extension(usize),
    /// Tuple field count (2).
    Tuple,
    /// Field length (4).
    Length,
    /// Field value, this many bytes left.
    Value(usize),
    /// Trailer seen.
    Done,
}

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
const MAX_TEXT: usize = 64 * 1024;

impl CopyParser {
    fn feed(&mut self, mut chunk: &[u8]) -> Result<(), String> {
        while !chunk.is_empty() {
            match self.state {
                State::Done => return Err("data after the end-of-copy trailer".into()),
                State::Header => {
                    if !self.gather(&mut chunk, 19) {
                        continue;
                    }
                    if &self.buf[..11] != SIGNATURE {
                        return Err("not a binary COPY stream (bad signature)".into());
                    }
                    let ext = u32::from_be_bytes(self.buf[15..19].try_into().unwrap()) as usize;
                    self.buf.clear();
                    self.state = if ext == 0 {
                        State::Tuple
                    } else {
                        State::Extension(ext)
                    };
                }
                State::Extension(left) => {
                    let n = left.min(chunk.len());
                    chunk = &chunk[n..];
                    self.state = if left == n {
                        State::Tuple
                    } else {
                        State::Extension(left - n)
                    };
                }
                State::Tuple => {
                    if !self.gather(&mut chunk, 2) {
                        continue;
                    }
                    let fields = i16::from_be_bytes([self.buf[0], self.buf[1]]);
                    self.buf.clear();
                    match fields {
                        -1 => self.state = State::Done,
                        3 => {
                            self.field = 0;
                            self.state = State::Length;
                        }
                        n => return Err(format!("a row has {n} fields, expected 3")),
                    }
                }
                State::Length => {
                    if !self.gather(&mut chunk, 4) {
                        continue;
                    }
                    let len = i32::from_be_bytes(self.buf[..4].try_into().unwrap());
                    self.buf.clear();
                    self.start_field(len)?;
                }
                State::Value(left) => {
                    let n = left.min(chunk.len());
                    let (part, rest) = chunk.split_at(n);
                    if self.field == 1 {
                        self.hasher.update(part);
                        self.out.bytes += n as u64;
                    } else {
                        if self.text.len() + n > MAX_TEXT {
                            return Err("an id or digest value is longer than 64 KiB".into());
                        }
                        self.text.extend_from_slice(part);
                    }
                    chunk = rest;
                    if left == n {
                        self.end_field();
                    } else {
                        self.state = State::Value(left - n);
                    }
                }
            }
        }
        Ok(())
    }

    /// Move bytes into `buf` until it holds `n`; true when it does.
    fn gather(&mut self, chunk: &mut &[u8], n: usize) -> bool {
        let take = (n - self.buf.len()).min(chunk.len());
        self.buf.extend_from_slice(&chunk[..take]);
        *chunk = &chunk[take..];
        self.buf.len() == n
    }

    fn start_field(&mut self, len: i32) -> Result<(), String> {
        if len < -1 {
            return Err(format!("field length {len}"));
        }
        if len == -1 {
            if self.field == 1 {
                self.data_null = true;
            }
            self.end_field();
        } else if len == 0 {
            self.end_field();
        } else {
            self.state = State::Value(len as usize);
        }
        Ok(())
    }

    fn end_field(&mut self) {
        let text = String::from_utf8_lossy(&std::mem::take(&mut self.text)).into_owned();
        match self.field {
            0 => self.id = Some(text),
            2 => self.digest = (!text.is_empty()).then_some(text),
            _ => {}
        }
        self.field += 1;
        if self.field < 3 {
            self.state = State::Length;
            return;
        }
        let hasher = std::mem::take(&mut self.hasher);
        let computed = if self.data_null {
            "NULL".to_string()
        } else {
            hex(&hasher.finalize())
        };
        let stored = self.digest.take();
        let ok = stored
            .as_deref()
            .is_some_and(|s| s.trim().eq_ignore_ascii_case(&computed));
        let id = self.id.take().unwrap_or_else(|| "NULL".into());
        if !ok {
            self.out.mismatches.push((id, stored, computed));
        }
        self.data_null = false;
        self.out.rows += 1;
        self.state = State::Tuple;
    }

    /// The stream ended: it must have ended with the trailer.
    fn finish(self) -> Result<Exported, String> {
        if self.state == State::Done {
            Ok(self.out)
        } else {
            Err(format!(
                "the stream ended after {} rows without its end-of-copy trailer (truncated)",
                self.out.rows
            ))
        }
    }
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The `blob-roundtrip` check on PostgreSQL (bytea, COPY).
pub(super) struct BlobCheck;

impl super::Check for BlobCheck {
    fn kind(&self) -> &'static str {
        "blob-roundtrip"
    }

    fn supports(&self, db_kind: &str) -> bool {
        KINDS.contains(&db_kind)
    }

    fn run<'a>(
        &'a self,
        def: &'a CheckDefinition,
        ctx: &'a CheckContext<'a>,
    ) -> futures_util::future::BoxFuture<'a, Result<Conclusion, super::Incomplete>> {
        Box::pin(async move {
            let target = Target::of(def)?;
            run(ctx, &target, def.timeout)
                .await
                .map_err(super::Incomplete::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(out: &mut Vec<u8>, v: Option<&[u8]>) {
        match v {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(b) => {
                out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                out.extend_from_slice(b);
            }
        }
    }

    fn stream(rows: &[(&str, Option<&[u8]>, &str)]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&4u32.to_be_bytes());
        out.extend_from_slice(b"ext!");
        for (id, data, digest) in rows {
            out.extend_from_slice(&3i16.to_be_bytes());
            field(&mut out, Some(id.as_bytes()));
            field(&mut out, *data);
            field(&mut out, Some(digest.as_bytes()));
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    #[test]
    fn parses_in_any_chunking_and_names_mismatches() {
        let good = b"hello evidence".to_vec();
        let good_digest = hex(&Sha256::digest(&good));
        let s = stream(&[
            ("1", Some(&good), &good_digest.to_uppercase()),
            ("2", Some(b"flipped"), &good_digest),
            ("3", None, &good_digest),
            ("4", Some(b""), &hex(&Sha256::digest(b""))),
        ]);
        for chunk in [1, 2, 3, 7, 64, s.len()] {
            let mut p = CopyParser::default();
            for c in s.chunks(chunk) {
                p.feed(c).unwrap();
            }
            let out = p.finish().unwrap();
            assert_eq!(out.rows, 4);
            assert_eq!(out.bytes, (good.len() + 7) as u64);
            let ids: Vec<&str> = out.mismatches.iter().map(|m| m.0.as_str()).collect();
            assert_eq!(ids, ["2", "3"], "chunk {chunk}");
            assert_eq!(out.mismatches[1].2, "NULL");
        }
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let s = stream(&[("1", Some(b"abc"), "x")]);
        let mut p = CopyParser::default();
        p.feed(&s[..s.len() - 2]).unwrap();
        assert!(p.finish().unwrap_err().contains("truncated"));
        let mut p = CopyParser::default();
        assert!(p.feed(b"PGCOPY\nXXXXXXXXXXXXXXX").is_err());
    }
}
