//! What the head of a dump says about where it came from: the version of
//! the server it was dumped from and of the `pg_dump` that wrote it.
//!
//! - A plain script (`pg_dump`, and each database section of `pg_dumpall`)
//!   carries them as comments near its top (PostgreSQL `pg_backup_archiver.c`,
//!   `RestoreArchive`):
//!
//!   ```text
//!   -- Dumped from database version 17.6 (Debian 17.6-1.pgdg120+1)
//!   -- Dumped by pg_dump version 17.6 (Debian 17.6-1.pgdg120+1)
//!   ```
//!
//! - A custom-format archive carries them in its header, after the magic
//!   `PGDMP`, the archive version, integer and offset sizes, format,
//!   compression, creation time and database name (PostgreSQL
//!   `pg_backup_archiver.c`, `ReadHead`; the same fields `pg_restore --list`
//!   prints as "Dumped from database version" and "Dumped by pg_dump
//!   version").

use serde::{Deserialize, Serialize};

/// Versions read from a dump's head. Each is `None` when the head does not
/// say (a script not written by `pg_dump`, or an archive older than 1.10).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpVersions {
    /// The server the dump was taken from, e.g. `17.6 (Debian 17.6-1)`.
    pub server: Option<String>,
    /// The `pg_dump` that wrote it, e.g. `17.6 (Debian 17.6-1)`.
    pub pg_dump: Option<String>,
    /// The custom archive's format version (`1.16-0`), for custom dumps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
    /// The dump tool of another kind, as its header names it
    /// (`mariadb-dump 10.19, Distrib 10.11.19-MariaDB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
}

impl DumpVersions {
    /// The major version of the `pg_dump` that wrote the dump.
    pub fn pg_dump_major(&self) -> Option<u32> {
        self.pg_dump.as_deref().and_then(major_of)
    }

    /// Whether the head named the `pg_dump` version.
    pub fn complete(&self) -> bool {
        self.pg_dump.is_some()
    }
}

/// The major version of a PostgreSQL version string: `17` of `17.6 (Debian
/// …)`, `9` of `9.6.24` (before 10 the major had two parts; drill compares
/// only the first, which orders them correctly), `18` of `18beta1`.
pub fn major_of(version: &str) -> Option<u32> {
    let digits: String = version
        .trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Read the version comments of a plain script (also in the first database
/// section of a `pg_dumpall` script, whose own preamble has none). Only
/// whole lines count: a head that ends inside a comment (the stream came
/// in pieces) has not read that version yet.
pub fn plain_versions(head: &[u8]) -> DumpVersions {
    let whole = head
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(&head[..0], |end| &head[..=end]);
    let text = String::from_utf8_lossy(whole);
    let mut v = DumpVersions::default();
    for line in text.lines() {
        if v.server.is_none() {
            if let Some(rest) = line.strip_prefix("-- Dumped from database version ") {
                v.server = Some(rest.trim().to_string());
            }
        }
        if v.pg_dump.is_none() {
            if let Some(rest) = line.strip_prefix("-- Dumped by pg_dump version ") {
                v.pg_dump = Some(rest.trim().to_string());
            }
        }
        if v.server.is_some() && v.pg_dump.is_some() {
            break;
        }
    }
    v
}

/// Why a custom archive's header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// It does not start with `PGDMP`.
    #[error("it does not start with PGDMP")]
    NotCustom,
    /// It ends inside the header.
    #[error("the header is cut short after {0} bytes")]
    Short(usize),
    /// A field has an impossible value.
    #[error("the header is malformed: {0}")]
    Malformed(String),
}

/// Read the header of a custom-format archive (PostgreSQL
/// `pg_backup_archiver.c`, `ReadHead`, archive versions 1.0 to 1.16).
///
/// # Errors
/// [`HeaderError`] when `head` is not a custom archive or its header is
/// cut short or malformed.
pub fn custom_versions(head: &[u8]) -> Result<DumpVersions, HeaderError> {
    let mut r = HeaderReader {
        buf: head,
        pos: 0,
        int_size: 4,
    };
    if r.bytes(5)? != b"PGDMP" {
        return Err(HeaderError::NotCustom);
    }
    let vmaj = r.byte()? as u32;
    let vmin = r.byte()? as u32;
    let vrev = if vmaj > 1 || (vmaj == 1 && vmin > 0) {
        r.byte()? as u32
    } else {
        0
    };
    let version = (vmaj, vmin);
    r.int_size = r.byte()? as usize;
    if !(1..=8).contains(&r.int_size) {
        return Err(HeaderError::Malformed(format!(
            "integer size {}",
            r.int_size
        )));
    }
    if version >= (1, 7) {
        r.byte()?; // offset size
    }
    r.byte()?; // format
    if version >= (1, 15) {
        r.byte()?; // compression algorithm
    } else if version >= (1, 4) {
        r.int()?; // compression level
    } else if version >= (1, 2) {
        r.byte()?;
    }
    let mut v = DumpVersions {
        archive: Some(format!("{vmaj}.{vmin}-{vrev}")),
        ..Default::default()
    };
    if version >= (1, 4) {
        for _ in 0..7 {
            r.int()?; // creation time: sec, min, hour, mday, mon, year, isdst
        }
        r.string()?; // database name
    }
    if version >= (1, 10) {
        v.server = r.string()?;
        v.pg_dump = r.string()?;
    }
    Ok(v)
}

struct HeaderReader<'a> {
    buf: &'a [u8],
    pos: usize,
    int_size: usize,
}

impl HeaderReader<'_> {
    fn bytes(&mut self, n: usize) -> Result<&[u8], HeaderError> {
        let end = self.pos + n;
        if end > self.buf.len() {
            return Err(HeaderError::Short(self.buf.len()));
        }
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, HeaderError> {
        Ok(self.bytes(1)?[0])
    }

    /// `ReadInt`: a sign byte, then `int_size` bytes, least significant
    /// first.
    fn int(&mut self) -> Result<i64, HeaderError> {
        let negative = self.byte()? != 0;
        let n = self.int_size;
        let mut value: i64 = 0;
        for (i, b) in self.bytes(n)?.iter().enumerate() {
            if i < 8 {
                value |= (*b as i64) << (8 * i);
            }
        }
        Ok(if negative {
            value.wrapping_neg()
        } else {
            value
        })
    }

    /// `ReadStr`: a length (`-1` for NULL), then that many bytes.
    fn string(&mut self) -> Result<Option<String>, HeaderError> {
        let len = self.int()?;
        if len < 0 {
            return Ok(None);
        }
        if len > 4096 {
            return Err(HeaderError::Malformed(format!("a string of {len} bytes")));
        }
        let s = self.bytes(len as usize)?;
        Ok(Some(String::from_utf8_lossy(s).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_cut_by_the_end_of_the_head_is_not_read_yet() {
        let line = b"--\n-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)\n-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)\n";
        let cut = &line[..line.len() - 30];
        let v = plain_versions(cut);
        assert_eq!(v.server.as_deref(), Some("15.18 (Debian 15.18-0+deb12u1)"));
        assert_eq!(v.pg_dump, None, "the pg_dump line is not whole yet");
        assert!(!v.complete());
        assert_eq!(
            plain_versions(line).pg_dump.as_deref(),
            Some("15.18 (Debian 15.18-0+deb12u1)")
        );
    }

    #[test]
    fn majors() {
        assert_eq!(major_of("17.6 (Debian 17.6-1.pgdg120+1)"), Some(17));
        assert_eq!(major_of("15.18"), Some(15));
        assert_eq!(major_of("9.6.24"), Some(9));
        assert_eq!(major_of("18beta1"), Some(18));
        assert_eq!(major_of("devel"), None);
    }

    #[test]
    fn plain_head() {
        let head = b"--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n\n-- Dumped from database version 16.10 (Debian 16.10-1)\n-- Dumped by pg_dump version 17.6 (Debian 17.6-1)\n\nSET statement_timeout = 0;\n";
        let v = plain_versions(head);
        assert_eq!(v.server.as_deref(), Some("16.10 (Debian 16.10-1)"));
        assert_eq!(v.pg_dump.as_deref(), Some("17.6 (Debian 17.6-1)"));
        assert_eq!(v.pg_dump_major(), Some(17));
        assert!(!plain_versions(b"CREATE TABLE t();\n").complete());
    }

    /// A header as pg_dump 17 writes it (archive 1.16, 4-byte integers).
    fn header(vmin: u8, server: &str, tool: &str) -> Vec<u8> {
        let int = |v: i64| {
            let mut b = vec![u8::from(v < 0)];
            b.extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
            b
        };
        let s = |t: &str| {
            let mut b = int(t.len() as i64);
            b.extend_from_slice(t.as_bytes());
            b
        };
        let mut h = b"PGDMP".to_vec();
        h.extend_from_slice(&[1, vmin, 0, 4, 8, 1]);
        if vmin >= 15 {
            h.push(0);
        } else {
            h.extend(int(-1));
        }
        for x in [24, 59, 18, 30, 10, 126, 0] {
            h.extend(int(x));
        }
        h.extend(s("shop"));
        h.extend(s(server));
        h.extend(s(tool));
        h.extend_from_slice(b"\x00\x01\x00\x00\x00rest of the TOC");
        h
    }

    #[test]
    fn custom_header() {
        let v = custom_versions(&header(16, "17.6 (Debian)", "17.6 (Debian)")).unwrap();
        assert_eq!(v.pg_dump.as_deref(), Some("17.6 (Debian)"));
        assert_eq!(v.archive.as_deref(), Some("1.16-0"));
        let v = custom_versions(&header(14, "15.18", "15.18")).unwrap();
        assert_eq!(v.server.as_deref(), Some("15.18"));
        assert_eq!(v.pg_dump_major(), Some(15));
        let h = header(14, "15.18", "15.18");
        assert!(matches!(
            custom_versions(&h[..40]),
            Err(HeaderError::Short(40))
        ));
        assert_eq!(custom_versions(b"-- plain"), Err(HeaderError::NotCustom));
    }
}
