//! Parallel restore of plain PostgreSQL scripts: `pg_dump` plain output
//! (with or without `--create`) and each database of a `pg_dumpall` script,
//! loaded over several `psql` sessions instead of one.
//!
//! A plain script is one `psql` stream, but what it holds is in three
//! sections (PostgreSQL docs, `pg_dump --section`), and each of its entries
//! starts with a comment naming the object and its type
//! (`-- Name: actor; Type: TABLE; Schema: public; Owner: postgres`, or
//! `-- Data for Name: …` for data). The [`Router`] reads the stream with
//! psql's lexical rules ([`super::roles::Scanner`]) and sends each piece to
//! one session:
//!
//! | section | sessions |
//! |---|---|
//! | before the first data entry (pre-data: types, tables, functions) | one, in order |
//! | data (`COPY … FROM stdin`, sequence values, large objects) | N; each entry goes whole to one session; a `COPY` block of a `TABLE DATA` entry is cut at row boundaries into chunks of [`COPY_CHUNK_BYTES`], each loaded by its own `COPY` on whichever session has room |
//! | post-data `INDEX` and `CONSTRAINT` (primary key, unique, exclusion) entries at its start | N; a `COMMENT` on one goes to its session |
//! | the rest (foreign keys, triggers, rules, policies, grants …) | one, in dump order |
//!
//! Between these groups every session is closed and must have exited 0
//! before the next starts (a barrier), so nothing runs before what the
//! dump ordered before it across groups: tables exist before their data is
//! loaded, all data is in before any index, and constraints and triggers
//! come after the indexes. Cutting a table's data is safe because its
//! indexes, constraints and triggers come later, in post-data; no row is
//! changed, dropped or loaded twice (each row line goes to exactly one
//! chunk). Only a `COPY` of pg_dump's own shape (`COPY name (columns) FROM
//! stdin;`, text format: one row per line) that starts its entry outside a
//! transaction block is cut.
//!
//! Every session gets the dump's session state before its first statement
//! and whenever it changed since: the `\restrict` key, the `\connect`
//! target, and the latest of each `SET`, `RESET` and `set_config(…)` the
//! dump ran at top level (`search_path`, `default_tablespace`, `SET SESSION
//! AUTHORIZATION` …). A psql meta-command other than `\connect`,
//! `\restrict` and `\unrestrict`, a statement longer than the scanner
//! keeps, `RESET ALL`, or a transaction block open at an entry's end sends
//! the rest of that database to one session ([`Router::notes`] says why).
//!
//! Every byte of the dump goes to exactly one session
//! ([`Action::Send`] with `original`); what drill adds (state replayed,
//! `COPY` headers and `\.` ends of chunks, the transaction around a
//! WAL-skipping load) is marked as not original.
//!
//! ## Loads that skip WAL
//!
//! A `COPY` block loaded whole by one session (a restore over one
//! session, or a database that went to one session; over several, data
//! is cut into chunks instead) that holds at least [`WAL_SKIP_MIN_BYTES`]
//! of rows is
//! loaded as pg_restore loads a table it created in a parallel restore:
//! `BEGIN`, a `TRUNCATE TABLE ONLY` of the still empty table, the `COPY`,
//! `COMMIT`. The table then has a new file created in the same
//! transaction as its rows, so with the sandbox's `wal_level=minimal`
//! the server writes no WAL for them (PostgreSQL docs, "Populating a
//! Database" and `wal_level`). It is done only for the data entry of a
//! table the same database's pre-data created (`Type: TABLE`), whose
//! `COPY` names that table itself (not a partition root), and the
//! `TRUNCATE` runs only when the table has no row (a `DO` block checks):
//! no row is ever removed, so the restored data is the same whether it
//! runs or not. Smaller blocks are sent as they are: a `TRUNCATE` costs a
//! new file and catalog rows per table (about 0.5 ms), more than the WAL
//! of a small table.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::LocalBoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::sync::mpsc;

use super::quote_ident;
use super::roles::{first_word, tokens, Scanner, Tok};
use crate::sandbox::{ExecOutcome, Sandbox};

/// Rows of one table's `COPY` block sent to one session before the next
/// chunk goes to the session with most room (bytes; cut at the next row
/// boundary after this many).
pub const COPY_CHUNK_BYTES: usize = 1 << 20;

/// Rows of a `COPY` block below which it is loaded as the dump has it;
/// from this many bytes on, the block is held back until it reaches this
/// size and then loaded in a transaction that skips WAL (module docs).
/// Measured on 2000 tables of 10 rows: the transaction and `TRUNCATE`
/// cost about 0.5 ms per table; skipping WAL saved 1.8 s of 8.2 s on
/// 936 MiB of rows (bench/results-parallel.md).
pub const WAL_SKIP_MIN_BYTES: usize = 1 << 20;

/// What the router asks of its executor, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write `bytes` to session `session` of the current group (started
    /// on its first send). `original`: the dump's own bytes, as opposed to
    /// what drill adds.
    Send {
        /// Session index in the current group, `0..sessions`.
        session: usize,
        /// The bytes.
        bytes: Vec<u8>,
        /// Whether they are the dump's own.
        original: bool,
    },
    /// Close every session of the current group and wait until each has
    /// exited 0 before anything else is sent.
    Barrier,
}

/// Picks the session for the next unit of work (an entry or a chunk).
pub trait Choose {
    /// `assigned`: bytes sent so far to each session of the group. Returns
    /// an index into it.
    fn choose(&mut self, assigned: &[u64]) -> usize;
}

/// The session with the fewest bytes sent so far (the first on ties).
#[derive(Debug, Default)]
pub struct LeastAssigned;

impl Choose for LeastAssigned {
    fn choose(&mut self, assigned: &[u64]) -> usize {
        assigned
            .iter()
            .enumerate()
            .min_by_key(|(i, b)| (**b, *i))
            .map_or(0, |(i, _)| i)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One session (index 0).
    Serial,
    /// Data entries over N sessions.
    Data,
    /// Index and key constraint entries over N sessions.
    Indexes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Pre,
    Data,
    Post,
}

/// Session state a script sets and a new session must be given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct State {
    connect: Option<Vec<u8>>,
    restrict: Option<Vec<u8>>,
    settings: BTreeMap<String, Vec<u8>>,
    /// Order in which settings were first set (replayed in that order).
    order: Vec<String>,
}

impl State {
    fn set(&mut self, key: String, stmt: Vec<u8>) {
        if !self.settings.contains_key(&key) {
            self.order.push(key.clone());
        }
        self.settings.insert(key, stmt);
    }
}

#[derive(Debug, Default)]
struct SessionState {
    started: bool,
    state: State,
}

/// A `COPY … FROM stdin` block being routed.
#[derive(Debug)]
struct Copy {
    /// `COPY name (columns) FROM stdin;` + newline, for later chunks; `None`
    /// when the block is not cut.
    header: Option<Vec<u8>>,
    session: usize,
    /// Bytes of rows in the current chunk.
    chunk: usize,
    /// The `COPY` statement's own line has ended (rows come now).
    eol: bool,
    /// At the start of a row line.
    line_start: bool,
    /// The block so far, held back while it may still be too small to
    /// load in a WAL-skipping transaction (module docs): the statements
    /// that open the transaction and the dump's bytes of the block.
    hold: Option<(Vec<u8>, Vec<u8>)>,
    /// The block is being loaded in a WAL-skipping transaction, to be
    /// committed after its `\.` line.
    wrapped: bool,
}

/// An entry's header comment: `-- Name: X; Type: T; Schema: …`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    name: String,
    kind: String,
    /// The `Schema:` field (`-` for objects outside a schema).
    schema: String,
    data: bool,
}

/// Splits a plain script's stream over sessions; see the module docs.
/// Feed it the decompressed script in order ([`Router::feed`]), then call
/// [`Router::finish`]; run the [`Action`]s it returns in order.
#[derive(Debug)]
pub struct Router {
    sessions: usize,
    chunk_bytes: usize,
    /// [`WAL_SKIP_MIN_BYTES`], or `None` to send every block as it is.
    wal_skip_bytes: Option<usize>,
    /// Tables the current database's pre-data created (`Type: TABLE`
    /// entries since the last `\connect`), as (schema, name).
    created: std::collections::HashSet<(String, String)>,
    /// `COPY` blocks loaded in a WAL-skipping transaction.
    wal_skipped: u32,
    scanner: Scanner,
    mode: Mode,
    section: Section,
    /// The rest of this database goes to one session.
    serial_only: bool,
    current: State,
    group: Vec<SessionState>,
    assigned: Vec<u64>,
    /// The session of the current entry.
    unit: usize,
    /// The last entry sent to a parallel group: its name and session.
    last_entry: Option<(String, usize)>,
    txn_open: bool,
    copy: Option<Copy>,
    /// Bytes of a possible `\.` line held until the next feed.
    carry: Vec<u8>,
    scratch: Vec<u8>,
    notes: Vec<String>,
    original: u64,
    groups: u32,
}

impl Router {
    /// A router over `sessions` sessions (1 routes everything to one) and
    /// `COPY` chunks of `chunk_bytes` rows' bytes.
    pub fn new(sessions: usize, chunk_bytes: usize) -> Self {
        Router {
            sessions: sessions.max(1),
            chunk_bytes: chunk_bytes.max(1),
            wal_skip_bytes: Some(WAL_SKIP_MIN_BYTES),
            created: Default::default(),
            wal_skipped: 0,
            scanner: Scanner::default(),
            mode: Mode::Serial,
            section: Section::Pre,
            serial_only: sessions <= 1,
            current: State::default(),
            group: vec![SessionState::default()],
            assigned: vec![0],
            unit: 0,
            last_entry: None,
            txn_open: false,
            copy: None,
            carry: Vec::new(),
            scratch: Vec::new(),
            notes: Vec::new(),
            original: 0,
            groups: 1,
        }
    }

    /// Load `COPY` blocks of at least `min_bytes` of rows in a transaction
    /// that skips WAL (module docs); `None`: never.
    pub fn wal_skip(mut self, min_bytes: Option<usize>) -> Self {
        self.wal_skip_bytes = min_bytes;
        self
    }

    /// `COPY` blocks loaded in a WAL-skipping transaction so far.
    pub fn wal_skipped(&self) -> u32 {
        self.wal_skipped
    }

    /// Why parts of the script went to one session though more were
    /// allowed (one line each), for the report.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The dump's own bytes routed so far.
    pub fn original_bytes(&self) -> u64 {
        self.original
    }

    /// Groups of sessions opened so far (1 + one per barrier).
    pub fn groups(&self) -> u32 {
        self.groups
    }

    /// Route `input`, the next bytes of the script; actions go to `out`.
    pub fn feed(&mut self, input: &[u8], choose: &mut dyn Choose, out: &mut Vec<Action>) {
        if self.carry.is_empty() {
            self.route(input, choose, out);
        } else {
            let mut joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(input);
            self.route(&joined, choose, out);
        }
    }

    /// The end of the script: what is left goes out, then a final barrier.
    pub fn finish(&mut self, out: &mut Vec<Action>) {
        // The script ends inside a block still held back: it goes as the
        // dump has it (no transaction was opened).
        if let Some(c) = self.copy.as_mut() {
            if let Some((_, held)) = c.hold.take() {
                let to = c.session;
                self.send(to, held, true, out);
            }
        }
        let carry = std::mem::take(&mut self.carry);
        if !carry.is_empty() {
            // A cut `\.`: the script ends inside a COPY block.
            let to = self.copy.as_ref().map_or(self.target(), |c| c.session);
            self.send(to, carry, true, out);
        }
        let mut rest = Vec::new();
        self.scanner.finish(&mut rest);
        if !rest.is_empty() {
            let to = self.copy.as_ref().map_or(self.target(), |c| c.session);
            self.prepare(to, out);
            self.send(to, rest, true, out);
        }
        out.push(Action::Barrier);
    }

    fn target(&self) -> usize {
        match self.mode {
            Mode::Serial => 0,
            _ => self.unit,
        }
    }

    fn send(&mut self, session: usize, bytes: Vec<u8>, original: bool, out: &mut Vec<Action>) {
        if bytes.is_empty() {
            return;
        }
        if original {
            self.original += bytes.len() as u64;
        }
        self.assigned[session] += bytes.len() as u64;
        self.group[session].started = true;
        out.push(Action::Send {
            session,
            bytes,
            original,
        });
    }

    /// Close the current group and open one for `mode`.
    fn barrier(&mut self, mode: Mode, out: &mut Vec<Action>) {
        out.push(Action::Barrier);
        self.groups += 1;
        self.mode = mode;
        let n = if mode == Mode::Serial {
            1
        } else {
            self.sessions
        };
        self.group = (0..n).map(|_| SessionState::default()).collect();
        self.assigned = vec![0; n];
        self.unit = 0;
        self.last_entry = None;
    }

    /// Give `session` the state it lacks (before its next statement).
    fn prepare(&mut self, session: usize, out: &mut Vec<Action>) {
        let mut add = Vec::new();
        let s = &mut self.group[session];
        if !s.started {
            // A fresh session: psql's own state first (`\connect` before
            // `\restrict`, which forbids it), then the server's.
            if let Some(c) = &self.current.connect {
                add.extend_from_slice(c);
            }
            if let Some(r) = &self.current.restrict {
                add.extend_from_slice(r);
            }
            s.state.connect = self.current.connect.clone();
            s.state.restrict = self.current.restrict.clone();
        }
        for key in &self.current.order {
            let Some(v) = self.current.settings.get(key) else {
                continue;
            };
            if s.state.settings.get(key) != Some(v) {
                add.extend_from_slice(v);
                s.state.set(key.clone(), v.clone());
            }
        }
        if !add.is_empty() {
            self.send(session, add, false, out);
        }
    }

    fn fall_back(&mut self, why: String, out: &mut Vec<Action>) {
        if !self.serial_only {
            self.notes.push(why);
        }
        self.serial_only = true;
        // Inside a transaction block the session must not end: the move
        // to one session waits for the next entry.
        if self.mode != Mode::Serial && !self.txn_open {
            self.barrier(Mode::Serial, out);
        }
    }

    fn route(&mut self, mut input: &[u8], choose: &mut dyn Choose, out: &mut Vec<Action>) {
        while !input.is_empty() {
            if self.copy.is_some() {
                let used = self.copy_rows(input, choose, out);
                input = &input[used..];
                continue;
            }
            let mut passed = std::mem::take(&mut self.scratch);
            let (used, stmt) = self.scanner.feed(input, &mut passed);
            input = &input[used..];
            if !passed.is_empty() {
                // A statement too long to keep whole streams through.
                if self.mode != Mode::Serial || !self.serial_only {
                    self.fall_back(
                        "a statement longer than 1 MiB (it streams through unscanned)".into(),
                        out,
                    );
                }
                self.send(0, std::mem::take(&mut passed), true, out);
            }
            self.scratch = passed;
            if let Some(stmt) = stmt {
                self.statement(stmt, choose, out);
            }
        }
    }

    /// Route one finished statement or meta-command (with the comments
    /// and blanks before it).
    fn statement(&mut self, stmt: Vec<u8>, choose: &mut dyn Choose, out: &mut Vec<Action>) {
        let body = strip_leading(&stmt);
        if body.first() == Some(&b'\\') {
            self.meta(stmt, out);
            return;
        }
        let header = if self.txn_open { None } else { header(&stmt) };
        if let Some(h) = &header {
            self.entry(h, choose, out);
        }
        let to = self.target();
        self.prepare(to, out);
        let clean = clean(body);
        let word = first_word(body).unwrap_or_default();
        let copy = word == "copy" && super::roles::is_copy_from_stdin(body);
        let pg_dump_copy = copy && plain_copy(body);
        let data_entry = header
            .as_ref()
            .filter(|h| h.kind == "TABLE DATA" && !self.txn_open && pg_dump_copy);
        let cut = self.mode == Mode::Data && data_entry.is_some();
        // A block that stays whole may be loaded skipping WAL: held back
        // until it proves large enough (module docs).
        let opening = match (data_entry, self.wal_skip_bytes) {
            (Some(h), Some(_)) if !cut => self.wal_skip_opening(h, body),
            _ => None,
        };
        let hold = match opening {
            Some(o) => Some((o, stmt)),
            None => {
                self.send(to, stmt, true, out);
                None
            }
        };
        match word.as_str() {
            "begin" | "start" => self.txn_open = true,
            "commit" | "end" | "rollback" | "abort" => self.txn_open = false,
            _ => {}
        }
        match setting(&clean) {
            Setting::Key(key) => {
                self.current.set(key.clone(), clean.clone());
                self.group[to].state.set(key, clean.clone());
            }
            Setting::Unknown => {
                if matches!(word.as_str(), "reset" | "discard") {
                    // `RESET ALL`, `DISCARD ALL`: back to the defaults.
                    self.current.settings.clear();
                    self.current.order.clear();
                    self.group[to].state.settings.clear();
                    self.group[to].state.order.clear();
                }
                self.fall_back(
                    format!(
                        "`{}` (drill replays SET, RESET and set_config; not this)",
                        String::from_utf8_lossy(&clean).trim()
                    ),
                    out,
                );
            }
            Setting::None => {}
        }
        if copy {
            self.copy = Some(Copy {
                header: cut.then(|| clean.clone()),
                session: to,
                chunk: 0,
                eol: false,
                line_start: false,
                hold,
                wrapped: false,
            });
        }
    }

    /// For the data entry `h` whose statement is `copy` (pg_dump's `COPY
    /// name (columns) FROM stdin;`): the statements that open its
    /// WAL-skipping transaction, when the module docs allow one.
    fn wal_skip_opening(&self, h: &Header, copy: &[u8]) -> Option<Vec<u8>> {
        let key = (h.schema.clone(), h.name.clone());
        if !self.created.contains(&key) || copy_target(copy).as_ref() != Some(&key) {
            return None;
        }
        // A name that is not UTF-8 (a LATIN1 dump, say) was read lossily:
        // written back it would name another table. Any valid UTF-8 is
        // written back byte for byte.
        let table = format!("{}.{}", quote_ident(&h.schema), quote_ident(&h.name));
        if table.contains("$drill$") || table.contains('\u{FFFD}') {
            return None;
        }
        Some(
            format!(
                "BEGIN; DO $drill$BEGIN IF NOT EXISTS (SELECT 1 FROM ONLY {table}) THEN TRUNCATE TABLE ONLY {table}; END IF; END$drill$;"
            )
            .into_bytes(),
        )
    }

    /// Send `bytes`, the dump's own bytes of `c`'s block, or hold them
    /// while `c` is held back; a held block that reaches the WAL-skip size
    /// goes out behind the statements that open its transaction.
    fn copy_send(&mut self, c: &mut Copy, bytes: &[u8], out: &mut Vec<Action>) {
        let Some((_, held)) = c.hold.as_mut() else {
            self.send(c.session, bytes.to_vec(), true, out);
            return;
        };
        held.extend_from_slice(bytes);
        if held.len() >= self.wal_skip_bytes.unwrap_or(usize::MAX) {
            let (opening, held) = c.hold.take().expect("held above");
            self.send(c.session, opening, false, out);
            self.send(c.session, held, true, out);
            c.wrapped = true;
            self.wal_skipped += 1;
        }
    }

    /// `c`'s block has ended (its `\.` line sent or held): a held block
    /// goes as the dump has it, a wrapped one is committed.
    fn copy_end(&mut self, c: &mut Copy, out: &mut Vec<Action>) {
        if let Some((_, held)) = c.hold.take() {
            self.send(c.session, held, true, out);
        }
        if c.wrapped {
            // No newline of its own, nor after the opening: psql's line
            // numbers in an error still point into the dump.
            self.send(c.session, b"COMMIT;".to_vec(), false, out);
        }
    }

    /// A new entry starts: move between groups as its section and type
    /// say, and choose its session.
    fn entry(&mut self, h: &Header, choose: &mut dyn Choose, out: &mut Vec<Action>) {
        if h.kind == "TABLE" && !h.data {
            self.created.insert((h.schema.clone(), h.name.clone()));
        }
        if self.serial_only && self.mode != Mode::Serial {
            self.barrier(Mode::Serial, out);
        }
        match self.section {
            Section::Pre if h.data && !self.serial_only => {
                self.section = Section::Data;
                self.barrier(Mode::Data, out);
            }
            Section::Pre => {}
            Section::Data if h.data => {}
            Section::Data => {
                self.section = Section::Post;
                let next = if parallel_post(&h.kind) && !self.serial_only {
                    Mode::Indexes
                } else {
                    Mode::Serial
                };
                if self.mode != Mode::Serial || next != Mode::Serial {
                    self.barrier(next, out);
                }
            }
            Section::Post => {
                if self.mode == Mode::Indexes && !parallel_post(&h.kind) {
                    let attached = h.kind == "COMMENT"
                        && self.last_entry.as_ref().is_some_and(|(name, _)| {
                            comment_object(&h.name).is_some_and(|o| o == name)
                        });
                    if attached {
                        self.unit = self.last_entry.as_ref().map_or(0, |(_, s)| *s);
                        return;
                    }
                    self.barrier(Mode::Serial, out);
                }
            }
        }
        if self.mode != Mode::Serial {
            self.unit = choose.choose(&self.assigned).min(self.assigned.len() - 1);
            self.last_entry = Some((h.name.clone(), self.unit));
        }
    }

    fn meta(&mut self, stmt: Vec<u8>, out: &mut Vec<Action>) {
        let body = strip_leading(&stmt);
        let clean = clean(body);
        let word: String = body[1..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .map(|b| b.to_ascii_lowercase() as char)
            .collect();
        let known = matches!(word.as_str(), "connect" | "c" | "restrict" | "unrestrict");
        if !known {
            self.fall_back(
                format!(
                    "psql meta-command `{}` (drill understands \\connect, \\restrict and \\unrestrict)",
                    String::from_utf8_lossy(&clean).trim()
                ),
                out,
            );
        }
        // One session from here, unless a transaction block is open: it
        // stays in its session, and the move waits for the next entry.
        let to = if self.mode == Mode::Serial {
            0
        } else if self.txn_open {
            self.serial_only = true;
            self.target()
        } else {
            self.barrier(Mode::Serial, out);
            0
        };
        self.prepare(to, out);
        self.send(to, stmt, true, out);
        match word.as_str() {
            "connect" | "c" => {
                // A new connection: the server's settings start afresh,
                // and so do the database's sections.
                self.current.connect = Some(clean.clone());
                self.current.settings.clear();
                self.current.order.clear();
                self.created.clear();
                let s = &mut self.group[to].state;
                s.connect = Some(clean);
                s.settings.clear();
                s.order.clear();
                if self.mode == Mode::Serial {
                    self.section = Section::Pre;
                    self.serial_only = self.sessions <= 1;
                }
            }
            "restrict" | "unrestrict" => {
                let value = (word == "restrict").then_some(clean);
                self.current.restrict.clone_from(&value);
                self.group[to].state.restrict = value;
            }
            _ => {}
        }
    }

    /// Route `COPY` rows up to and including the `\.` line; returns the
    /// bytes consumed.
    fn copy_rows(&mut self, input: &[u8], choose: &mut dyn Choose, out: &mut Vec<Action>) -> usize {
        let mut c = self.copy.take().expect("in a COPY block");
        let mut i = 0;
        let mut run = 0;
        if !c.eol {
            // The rest of the COPY statement's line.
            match memchr::memchr(b'\n', input) {
                Some(n) => {
                    i = n + 1;
                    c.eol = true;
                    c.line_start = true;
                }
                None => {
                    self.copy_send(&mut c, input, out);
                    self.copy = Some(c);
                    return input.len();
                }
            }
        }
        while i < input.len() {
            if c.line_start {
                match end_line(&input[i..]) {
                    End::Yes(n) => {
                        self.copy_send(&mut c, &input[run..i + n], out);
                        self.copy_end(&mut c, out);
                        self.scanner.end_copy();
                        return i + n;
                    }
                    End::Maybe => {
                        self.copy_send(&mut c, &input[run..i], out);
                        self.carry = input[i..].to_vec();
                        self.copy = Some(c);
                        return input.len();
                    }
                    End::No => {}
                }
                if c.chunk >= self.chunk_bytes {
                    if let Some(header) = c.header.clone() {
                        self.send(c.session, input[run..i].to_vec(), true, out);
                        run = i;
                        self.send(c.session, b"\\.\n".to_vec(), false, out);
                        let next = choose.choose(&self.assigned).min(self.assigned.len() - 1);
                        self.prepare(next, out);
                        self.send(next, header, false, out);
                        c.session = next;
                        c.chunk = 0;
                    }
                }
            }
            match memchr::memchr(b'\n', &input[i..]) {
                Some(n) => {
                    i += n + 1;
                    c.chunk += n + 1;
                    c.line_start = true;
                }
                None => {
                    c.chunk += input.len() - i;
                    i = input.len();
                    c.line_start = false;
                }
            }
        }
        self.copy_send(&mut c, &input[run..], out);
        self.copy = Some(c);
        input.len()
    }
}

enum End {
    Yes(usize),
    Maybe,
    No,
}

/// Whether a row line starting here is the `\.` end of COPY data.
fn end_line(rest: &[u8]) -> End {
    for end in [&b"\\.\n"[..], &b"\\.\r\n"[..]] {
        if rest.starts_with(end) {
            return End::Yes(end.len());
        }
    }
    if rest.len() < 4 && (b"\\.\r\n".starts_with(rest) || b"\\.\n".starts_with(rest)) {
        End::Maybe
    } else {
        End::No
    }
}

/// The statement without the blanks and `--` comment lines before it.
fn strip_leading(stmt: &[u8]) -> &[u8] {
    let mut i = 0;
    while i < stmt.len() {
        match stmt[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => i += 1,
            b'-' if stmt.get(i + 1) == Some(&b'-') => {
                i = memchr::memchr(b'\n', &stmt[i..]).map_or(stmt.len(), |n| i + n + 1);
            }
            _ => break,
        }
    }
    &stmt[i..]
}

/// A statement as replayed: without what precedes it, ending in a newline.
fn clean(body: &[u8]) -> Vec<u8> {
    let mut v = body.trim_ascii_end().to_vec();
    v.push(b'\n');
    v
}

/// The entry header in the comments before a statement, if any.
fn header(stmt: &[u8]) -> Option<Header> {
    let lead = &stmt[..stmt.len() - strip_leading(stmt).len()];
    let text = String::from_utf8_lossy(lead);
    text.lines().find_map(|line| {
        let (data, rest) = if let Some(r) = line.strip_prefix("-- Data for Name: ") {
            (true, r)
        } else if let Some(r) = line.strip_prefix("-- Name: ") {
            (false, r)
        } else {
            return None;
        };
        let schema = rest.rfind("; Schema: ")?;
        let head = &rest[..schema];
        let tail = &rest[schema + "; Schema: ".len()..];
        let t = head.rfind("; Type: ")?;
        let kind = head[t + "; Type: ".len()..].to_string();
        Some(Header {
            name: head[..t].to_string(),
            data: data || kind == "SEQUENCE SET",
            kind,
            // `Owner:` (and `Tablespace:`) follow.
            schema: tail.split("; ").next().unwrap_or(tail).to_string(),
        })
    })
}

/// Post-data entry types whose statements only read their own table and
/// may run side by side: `CREATE INDEX` and `ADD CONSTRAINT … PRIMARY
/// KEY/UNIQUE/EXCLUDE` (pg_dump's `CONSTRAINT`; foreign keys are `FK
/// CONSTRAINT`, checks `CHECK CONSTRAINT`).
fn parallel_post(kind: &str) -> bool {
    matches!(kind, "INDEX" | "CONSTRAINT")
}

/// The object a `COMMENT` entry's name is about, for an index or a
/// constraint (`INDEX name`, `CONSTRAINT name ON table`).
fn comment_object(name: &str) -> Option<&str> {
    if let Some(n) = name.strip_prefix("INDEX ") {
        return Some(n);
    }
    let n = name.strip_prefix("CONSTRAINT ")?;
    Some(n.split(" ON ").next().unwrap_or(n))
}

enum Setting {
    /// A session setting, by name.
    Key(String),
    /// Changes session state in a way drill does not replay.
    Unknown,
    None,
}

/// Whether a statement sets session state, and which.
fn setting(clean: &[u8]) -> Setting {
    let word = first_word(clean).unwrap_or_default();
    if !matches!(word.as_str(), "set" | "reset" | "select" | "discard") {
        return Setting::None;
    }
    let t = tokens(&String::from_utf8_lossy(clean));
    let w = |i: usize| match t.get(i) {
        Some(Tok::Word(w)) => w.as_str(),
        _ => "",
    };
    match word.as_str() {
        "discard" => Setting::Unknown,
        "select" => {
            // `SELECT pg_catalog.set_config('name', 'value', false);`
            let is_set_config = (w(1) == "pg_catalog"
                && matches!(t.get(2), Some(Tok::Sym('.')))
                && w(3) == "set_config")
                || w(1) == "set_config";
            if !is_set_config {
                return Setting::None;
            }
            let strs: Vec<&str> = t
                .iter()
                .filter_map(|x| match x {
                    Tok::Str(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect();
            let local = t.iter().any(|x| matches!(x, Tok::Word(w) if w == "true"));
            match (strs.first(), local, t.len()) {
                (Some(name), false, _) => Setting::Key(name.to_ascii_lowercase()),
                // Local to a transaction: nothing to replay.
                (Some(_), true, _) => Setting::None,
                _ => Setting::Unknown,
            }
        }
        _ => {
            let mut i = 1;
            if w(i) == "local" || w(i) == "transaction" || w(i) == "constraints" {
                // Transaction-scoped: it goes with its transaction.
                return Setting::None;
            }
            if word == "reset" && w(i) == "all" {
                return Setting::Unknown;
            }
            if w(i) == "session" {
                if w(i + 1) == "authorization" {
                    return Setting::Key("session authorization".into());
                }
                if w(i + 1) == "characteristics" {
                    return Setting::Unknown;
                }
                i += 1;
            }
            match t.get(i) {
                Some(Tok::Word(name)) | Some(Tok::Quoted(name)) => {
                    let mut key = name.clone();
                    // `SET a.b = …` (a customised option).
                    if matches!(t.get(i + 1), Some(Tok::Sym('.'))) {
                        if let Some(Tok::Word(b) | Tok::Quoted(b)) = t.get(i + 2) {
                            key = format!("{key}.{b}");
                        }
                    }
                    if key == "time" && w(i + 1) == "zone" {
                        key = "timezone".into();
                    }
                    Setting::Key(key)
                }
                _ => Setting::Unknown,
            }
        }
    }
}

/// `COPY name (columns) FROM stdin;` exactly, in text format (one row per
/// line), as pg_dump writes it.
fn plain_copy(body: &[u8]) -> bool {
    let t = tokens(&String::from_utf8_lossy(body));
    matches!(
        t.as_slice(),
        [.., Tok::Word(f), Tok::Word(s), Tok::Sym(';')] if f == "from" && s == "stdin"
    )
}

/// The table a `COPY` statement names, as (schema, name) with quotes
/// removed; `None` when it is not `COPY schema.name …`.
fn copy_target(copy: &[u8]) -> Option<(String, String)> {
    let t = tokens(&String::from_utf8_lossy(copy));
    let part = |x: Option<&Tok>| match x {
        Some(Tok::Word(w) | Tok::Quoted(w)) => Some(w.clone()),
        _ => None,
    };
    if !matches!(t.first(), Some(Tok::Word(w)) if w == "copy")
        || !matches!(t.get(2), Some(Tok::Sym('.')))
    {
        return None;
    }
    Some((part(t.get(1))?, part(t.get(3))?))
}

/// How a parallel restore went.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The first session that failed (its exit code, output and input
    /// error); else a success standing for all of them.
    pub exec: ExecOutcome,
    /// The dump's own bytes each session took, in the order sessions
    /// started (their sum is the script's size when it was read to its
    /// end).
    pub original: Vec<u64>,
    /// Bytes drill added (session state, chunk headers and ends).
    pub added: u64,
    /// Groups of sessions run one after another.
    pub groups: u32,
    /// Most sessions that ran at once.
    pub widest: usize,
    /// Why parts went to one session ([`Router::notes`]).
    pub notes: Vec<String>,
    /// `COPY` blocks loaded in a WAL-skipping transaction
    /// ([`Router::wal_skipped`]).
    pub wal_skipped: u32,
}

/// `COPY` chunk size in bytes: [`COPY_CHUNK_BYTES`], or the environment's
/// `DRILL_COPY_CHUNK_BYTES` (for measuring; bench/run.py).
pub fn chunk_bytes() -> usize {
    std::env::var("DRILL_COPY_CHUNK_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(COPY_CHUNK_BYTES)
}

/// The WAL-skip size in bytes: [`WAL_SKIP_MIN_BYTES`], or the
/// environment's `DRILL_WAL_SKIP_BYTES` (for measuring and tests;
/// `0`: never skip WAL, which sends a one-session script unchanged).
pub fn wal_skip_bytes() -> Option<usize> {
    match std::env::var("DRILL_WAL_SKIP_BYTES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(0) => None,
        Some(n) => Some(n),
        None => Some(WAL_SKIP_MIN_BYTES),
    }
}

/// Picks the session whose channel has most room (the least busy), then
/// the one with the fewest bytes.
struct MostRoom<'a>(&'a [Option<mpsc::Sender<Vec<u8>>>]);

impl Choose for MostRoom<'_> {
    fn choose(&mut self, assigned: &[u64]) -> usize {
        (0..assigned.len())
            .max_by_key(|&i| {
                let room = self
                    .0
                    .get(i)
                    .and_then(Option::as_ref)
                    .map_or(CHANNEL_DEPTH, mpsc::Sender::capacity);
                (room, std::cmp::Reverse(assigned[i]), std::cmp::Reverse(i))
            })
            .unwrap_or(0)
    }
}

/// Pieces queued per session (each at most [`READ_BYTES`]).
const CHANNEL_DEPTH: usize = 8;

/// Bytes read from the dump at a time.
const READ_BYTES: usize = 128 * 1024;

/// A session's standard input: the pieces its channel brings.
struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    piece: Vec<u8>,
    pos: usize,
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if super::stream::drain_into(&this.piece, &mut this.pos, buf) {
                return Poll::Ready(Ok(()));
            }
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(p)) => {
                    this.piece = p;
                    this.pos = 0;
                }
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

type Running<'a> = FuturesUnordered<
    LocalBoxFuture<'a, (usize, Result<ExecOutcome, crate::sandbox::SandboxError>)>,
>;

/// Load the plain script read from `input` into `sandbox` over up to
/// `sessions` runs of `psql` (`cmd`, which must read its standard input
/// and stop at the first error), routed by a [`Router`] with `COPY`
/// chunks of `chunk_bytes` and WAL-skipping loads from `wal_skip` bytes
/// ([`Router::wal_skip`]). Stops at the first session that fails, or
/// when `input` fails.
///
/// # Errors
/// The sandbox's own failure to run a session ([`crate::sandbox::SandboxError`]).
pub async fn load(
    sandbox: &Sandbox,
    cmd: &[&str],
    input: &mut (dyn AsyncRead + Unpin + Send),
    sessions: usize,
    chunk_bytes: usize,
    wal_skip: Option<usize>,
) -> Result<Loaded, crate::sandbox::SandboxError> {
    let mut router = Router::new(sessions, chunk_bytes).wal_skip(wal_skip);
    let mut loaded = Loaded::default();
    let mut actions: VecDeque<Action> = VecDeque::new();
    let mut out: Vec<Action> = Vec::new();
    let mut running: Running<'_> = FuturesUnordered::new();
    let mut txs: Vec<Option<mpsc::Sender<Vec<u8>>>> = vec![None; sessions.max(1)];
    // Index into `loaded.original` of each session of the group.
    let mut slot: Vec<Option<usize>> = vec![None; sessions.max(1)];
    let mut buf = vec![0u8; READ_BYTES];
    let mut eof = false;
    let mut failed: Option<ExecOutcome> = None;
    let mut exec_error = None;

    // A finished session: `Some` when the restore must stop.
    let done = |r: Result<ExecOutcome, crate::sandbox::SandboxError>,
                failed: &mut Option<ExecOutcome>,
                exec_error: &mut Option<crate::sandbox::SandboxError>|
     -> bool {
        match r {
            Ok(x) if x.succeeded() => false,
            Ok(x) => {
                *failed = Some(x);
                true
            }
            Err(e) => {
                *exec_error = Some(e);
                true
            }
        }
    };

    'run: loop {
        if let Some(action) = actions.pop_front() {
            match action {
                Action::Send {
                    session,
                    bytes,
                    original,
                } => {
                    if txs[session].is_none() {
                        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
                        txs[session] = Some(tx);
                        slot[session] = Some(loaded.original.len());
                        loaded.original.push(0);
                        let mut reader = ChannelReader {
                            rx,
                            piece: Vec::new(),
                            pos: 0,
                        };
                        running.push(Box::pin(async move {
                            (
                                session,
                                sandbox.exec_with_input(cmd, Some(&mut reader)).await,
                            )
                        }));
                        loaded.widest = loaded.widest.max(running.len());
                    }
                    let tx = txs[session].clone().expect("started above");
                    tokio::select! {
                        biased;
                        Some((_, r)) = running.next() => {
                            // Put the piece back: it goes once the
                            // session that ended is judged.
                            actions.push_front(Action::Send { session, bytes, original });
                            if done(r, &mut failed, &mut exec_error) {
                                break 'run;
                            }
                        }
                        permit = tx.reserve() => match permit {
                            Ok(p) => {
                                let n = bytes.len() as u64;
                                p.send(bytes);
                                if original {
                                    if let Some(i) = slot[session] {
                                        loaded.original[i] += n;
                                    }
                                } else {
                                    loaded.added += n;
                                }
                            }
                            Err(_) => {
                                // The session stopped reading: it ended, and
                                // says how when it is polled.
                                actions.push_front(Action::Send { session, bytes, original });
                                if let Some((_, r)) = running.next().await {
                                    if done(r, &mut failed, &mut exec_error) {
                                        break 'run;
                                    }
                                }
                                if failed.is_none() && exec_error.is_none() {
                                    failed = Some(ExecOutcome {
                                        exit_code: Some(0),
                                        stdin_error: Some("psql ended before it had read all of its input".into()),
                                        ..ExecOutcome::default()
                                    });
                                    break 'run;
                                }
                            }
                        },
                    }
                }
                Action::Barrier => {
                    txs.fill(None);
                    slot.fill(None);
                    while let Some((_, r)) = running.next().await {
                        if done(r, &mut failed, &mut exec_error) {
                            break 'run;
                        }
                    }
                }
            }
            continue;
        }
        if eof {
            break;
        }
        let read = tokio::select! {
            biased;
            Some((_, r)) = running.next() => {
                if done(r, &mut failed, &mut exec_error) {
                    break 'run;
                }
                continue;
            }
            r = input.read(&mut buf) => r,
        };
        match read {
            Ok(0) => {
                eof = true;
                router.finish(&mut out);
            }
            Ok(n) => router.feed(&buf[..n], &mut MostRoom(&txs), &mut out),
            Err(e) => {
                // As a single psql would report it: its input failed.
                failed = Some(ExecOutcome {
                    exit_code: None,
                    stdin_error: Some(e.to_string()),
                    ..ExecOutcome::default()
                });
                break 'run;
            }
        }
        actions.extend(out.drain(..));
    }
    drop(txs);
    drop(running);
    if let Some(e) = exec_error {
        return Err(e);
    }
    if let Some(f) = failed.as_mut() {
        if !eof && f.stdin_error.is_none() {
            // The script was not read to its end: restic is stopped, not
            // waited for, and the outcome says the input was cut.
            f.stdin_error = Some(
                "the restore stopped at this error before the rest of the dump was read".into(),
            );
        }
    }
    loaded.groups = router.groups();
    loaded.wal_skipped = router.wal_skipped();
    loaded.notes = router.notes().to_vec();
    loaded.exec = failed.unwrap_or(ExecOutcome {
        exit_code: Some(0),
        stdin_bytes: loaded.original.iter().sum::<u64>() + loaded.added,
        stdin_error: None,
        output: Default::default(),
    });
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run a script through a router in pieces of `piece` bytes; returns
    /// the actions.
    fn run(script: &[u8], sessions: usize, chunk: usize, piece: usize) -> (Router, Vec<Action>) {
        let mut r = Router::new(sessions, chunk);
        let mut out = Vec::new();
        for p in script.chunks(piece.max(1)) {
            r.feed(p, &mut LeastAssigned, &mut out);
        }
        r.finish(&mut out);
        (r, out)
    }

    /// The original bytes in order, as one stream.
    fn originals(actions: &[Action]) -> Vec<u8> {
        let mut v = Vec::new();
        for a in actions {
            if let Action::Send {
                bytes,
                original: true,
                ..
            } = a
            {
                v.extend_from_slice(bytes);
            }
        }
        v
    }

    /// Per group, per session: the text each session receives.
    fn sessions(actions: &[Action]) -> Vec<BTreeMap<usize, String>> {
        let mut groups = vec![BTreeMap::new()];
        for a in actions {
            match a {
                Action::Barrier => groups.push(BTreeMap::new()),
                Action::Send { session, bytes, .. } => groups
                    .last_mut()
                    .unwrap()
                    .entry(*session)
                    .or_insert_with(String::new)
                    .push_str(&String::from_utf8_lossy(bytes)),
            }
        }
        groups.retain(|g| !g.is_empty());
        groups
    }

    const DUMP: &str = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n\nSET statement_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n--\n-- Name: t; Type: TABLE; Schema: public; Owner: u\n--\n\nCREATE TABLE public.t (\n    id integer,\n    v text\n);\n\n\nALTER TABLE public.t OWNER TO u;\n\n--\n-- Name: f(); Type: FUNCTION; Schema: public; Owner: u\n--\n\nCREATE FUNCTION public.f() RETURNS text LANGUAGE sql AS $$\n-- Name: x; Type: TABLE DATA; Schema: public; Owner: u\nSELECT 'a;b'\n$$;\n\n--\n-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: u\n--\n\nCOPY public.t (id, v) FROM stdin;\n1\tone\n2\ttwo\n3\tthree\n4\tfour\n\\.\n\n\n--\n-- Data for Name: u; Type: TABLE DATA; Schema: public; Owner: u\n--\n\nCOPY public.u (id) FROM stdin;\n7\n\\.\n\n\n--\n-- Name: s; Type: SEQUENCE SET; Schema: public; Owner: u\n--\n\nSELECT pg_catalog.setval('public.s', 4, true);\n\n\n--\n-- Name: t t_pkey; Type: CONSTRAINT; Schema: public; Owner: u\n--\n\nALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (id);\n\n\n--\n-- Name: t_v; Type: INDEX; Schema: public; Owner: u\n--\n\nSET default_tablespace = '';\nCREATE INDEX t_v ON public.t USING btree (v);\n\n\n--\n-- Name: INDEX t_v; Type: COMMENT; Schema: public; Owner: u\n--\n\nCOMMENT ON INDEX public.t_v IS 'v';\n\n\n--\n-- Name: t t_fk; Type: FK CONSTRAINT; Schema: public; Owner: u\n--\n\nALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_fk FOREIGN KEY (id) REFERENCES public.u(id);\n\n\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc\n\n";

    #[test]
    fn every_byte_goes_to_exactly_one_session_in_order() {
        for piece in [1, 2, 3, 7, 64, 100_000] {
            for chunk in [1, 6, 1 << 20] {
                let (r, actions) = run(DUMP.as_bytes(), 2, chunk, piece);
                assert_eq!(originals(&actions), DUMP.as_bytes(), "piece {piece}");
                assert_eq!(r.original_bytes(), DUMP.len() as u64);
                assert!(r.notes().is_empty(), "{:?}", r.notes());
            }
        }
    }

    #[test]
    fn groups_follow_the_sections() {
        let (_, actions) = run(DUMP.as_bytes(), 2, 6, 5);
        let g = sessions(&actions);
        assert_eq!(g.len(), 4, "{g:#?}");
        // Pre-data: one session, with the table and the function.
        assert_eq!(g[0].len(), 1);
        assert!(g[0][&0].contains("CREATE TABLE") && g[0][&0].contains("CREATE FUNCTION"));
        // Data: two sessions; the table's rows cut into chunks, each a
        // COPY of its own after the session state.
        assert_eq!(g[1].len(), 2);
        for s in g[1].values() {
            assert!(s.starts_with("\\restrict abc\nSET statement_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n"), "{s}");
            assert_eq!(
                s.matches("COPY public.t (id, v) FROM stdin;").count(),
                s.matches("\\.\n").count() - usize::from(s.contains("COPY public.u"))
            );
        }
        let rows: usize = g[1]
            .values()
            .map(|s| s.lines().filter(|l| l.contains('\t')).count())
            .sum();
        assert_eq!(rows, 4);
        // Indexes: the key and the index side by side, the comment with its
        // index and the default_tablespace it was set under.
        assert_eq!(g[2].len(), 2);
        let with_index = g[2].values().find(|s| s.contains("CREATE INDEX")).unwrap();
        assert!(with_index.contains("COMMENT ON INDEX"));
        assert!(with_index.contains("SET default_tablespace = '';\nCREATE INDEX"));
        // The rest: one session.
        assert_eq!(g[3].len(), 1);
        assert!(g[3][&0].contains("FOREIGN KEY") && g[3][&0].contains("\\unrestrict abc"));
    }

    #[test]
    fn one_session_is_the_script_unchanged() {
        let (_, actions) = run(DUMP.as_bytes(), 1, 6, 5);
        assert!(actions.iter().all(|a| matches!(
            a,
            Action::Barrier
                | Action::Send {
                    session: 0,
                    original: true,
                    ..
                }
        )));
        assert_eq!(originals(&actions), DUMP.as_bytes());
        assert_eq!(sessions(&actions).len(), 1);
    }

    #[test]
    fn unknown_meta_commands_and_open_transactions_fall_back() {
        let script = DUMP.replace(
            "SET statement_timeout = 0;\n",
            "SET statement_timeout = 0;\n\\set x 1\n",
        );
        let (r, actions) = run(script.as_bytes(), 2, 6, 9);
        assert_eq!(originals(&actions), script.as_bytes());
        assert_eq!(sessions(&actions).len(), 1);
        assert!(r.notes()[0].contains("\\set x 1"), "{:?}", r.notes());

        let script = DUMP.replace(
            "COPY public.u (id) FROM stdin;\n7\n\\.\n",
            "BEGIN;\nCOPY public.u (id) FROM stdin;\n7\n\\.\n",
        );
        let (_, actions) = run(script.as_bytes(), 2, 1 << 20, 9);
        assert_eq!(originals(&actions), script.as_bytes());
        // The transaction never ends: everything after it stays in its
        // session.
        let g = sessions(&actions);
        assert!(g
            .last()
            .unwrap()
            .values()
            .any(|s| s.contains("BEGIN;") && s.contains("FOREIGN KEY")));
    }

    #[test]
    fn connect_is_replayed_and_restarts_the_sections() {
        let script = format!("\\connect -reuse-previous=on \"dbname='a'\"\n{DUMP}\\connect -reuse-previous=on \"dbname='b'\"\n{DUMP}");
        let (_, actions) = run(script.as_bytes(), 2, 6, 11);
        assert_eq!(originals(&actions), script.as_bytes());
        let g = sessions(&actions);
        // The rest of `a` and the pre-data of `b` share one session.
        assert_eq!(g.len(), 7, "{g:#?}");
        assert!(
            g[1][&1].starts_with("\\connect -reuse-previous=on \"dbname='a'\"\n\\restrict abc\n")
        );
        assert!(g[4][&1].starts_with("\\connect -reuse-previous=on \"dbname='b'\"\n"));
    }

    const OPEN_T: &str = "BEGIN; DO $drill$BEGIN IF NOT EXISTS (SELECT 1 FROM ONLY \"public\".\"t\") THEN TRUNCATE TABLE ONLY \"public\".\"t\"; END IF; END$drill$;";

    fn wal_run(script: &str, sessions: usize, min: usize, piece: usize) -> (Router, Vec<Action>) {
        let mut r = Router::new(sessions, 6).wal_skip(Some(min));
        let mut out = Vec::new();
        for p in script.as_bytes().chunks(piece) {
            r.feed(p, &mut LeastAssigned, &mut out);
        }
        r.finish(&mut out);
        (r, out)
    }

    #[test]
    fn a_large_block_of_a_table_the_dump_created_loads_skipping_wal() {
        for piece in [1, 2, 5, 13, 100_000] {
            let (r, actions) = wal_run(DUMP, 1, 10, piece);
            assert_eq!(originals(&actions), DUMP.as_bytes(), "piece {piece}");
            assert_eq!(r.wal_skipped(), 1);
            let text = &sessions(&actions)[0][&0];
            // The transaction around t's data; u's (no TABLE entry in
            // this dump) goes as it is.
            let open = text.find(OPEN_T).expect(text);
            let copy = text.find("-- Data for Name: t;").unwrap();
            let end = text.find("4\tfour\n\\.\nCOMMIT;\n").expect(text);
            // As many lines as the dump: psql's error line numbers hold.
            assert_eq!(text.lines().count(), DUMP.lines().count(), "{text}");
            assert!(open < copy && copy < end, "{text}");
            assert_eq!(text.matches("BEGIN;").count(), 1);
            assert_eq!(text.matches("COMMIT;").count(), 1);
        }
    }

    #[test]
    fn small_blocks_cut_blocks_and_partition_roots_load_as_they_are() {
        // Below the size: held back, then sent unchanged.
        let (r, actions) = wal_run(DUMP, 1, 1000, 3);
        assert_eq!(r.wal_skipped(), 0);
        assert!(actions
            .iter()
            .all(|a| matches!(a, Action::Barrier | Action::Send { original: true, .. })));
        assert_eq!(originals(&actions), DUMP.as_bytes());
        // Several sessions: the block is cut into chunks instead.
        let (r, actions) = wal_run(DUMP, 2, 10, 3);
        assert_eq!(r.wal_skipped(), 0);
        assert_eq!(originals(&actions), DUMP.as_bytes());
        // --load-via-partition-root: the COPY names another table.
        let script = DUMP.replace("COPY public.t (id, v)", "COPY public.root (id, v)");
        let (r, _) = wal_run(&script, 1, 10, 7);
        assert_eq!(r.wal_skipped(), 0);
        // A name that is not UTF-8 (a LATIN1 dump) is never written back.
        let latin1 = DUMP
            .replace(" t;", " t\u{FFFD};")
            .replace(".t ", ".t\u{FFFD} ");
        let (r, _) = wal_run(&latin1, 1, 10, 7);
        assert_eq!(r.wal_skipped(), 0);
        // A table of another database (after \connect) is not created here.
        let at = DUMP.find("\n--\n-- Data for Name: t;").unwrap();
        let script = format!("{}\\connect other\n{}", &DUMP[..at], &DUMP[at..]);
        let (r, _) = wal_run(&script, 1, 10, 7);
        assert_eq!(r.wal_skipped(), 0);
    }

    #[test]
    fn a_script_cut_inside_a_held_block_is_sent_without_its_transaction() {
        let at = DUMP.find("3\tthree").unwrap();
        for min in [1000, 10] {
            let (r, actions) = wal_run(&DUMP[..at], 1, min, 4);
            assert_eq!(originals(&actions), &DUMP.as_bytes()[..at]);
            // Opened (when the rows reached the size) but never committed.
            assert!(!sessions(&actions)[0][&0].contains("COMMIT;"));
            assert_eq!(r.wal_skipped(), u32::from(min == 10));
        }
    }

    #[test]
    fn copy_targets() {
        let t = |s: &str| copy_target(s.as_bytes());
        assert_eq!(
            t("COPY public.t (id) FROM stdin;"),
            Some(("public".into(), "t".into()))
        );
        assert_eq!(
            t("COPY \"My Schema\".\"Ta\"\"ble\" (id) FROM stdin;"),
            Some(("My Schema".into(), "Ta\"ble".into()))
        );
        assert_eq!(t("COPY t (id) FROM stdin;"), None);
    }

    #[test]
    fn settings() {
        let key = |s: &str| match setting(s.as_bytes()) {
            Setting::Key(k) => k,
            Setting::Unknown => "?".into(),
            Setting::None => "-".into(),
        };
        assert_eq!(key("SET statement_timeout = 0;\n"), "statement_timeout");
        assert_eq!(
            key("SELECT pg_catalog.set_config('search_path', '', false);\n"),
            "search_path"
        );
        assert_eq!(
            key("SET SESSION AUTHORIZATION 'u';\n"),
            "session authorization"
        );
        assert_eq!(
            key("RESET SESSION AUTHORIZATION;\n"),
            "session authorization"
        );
        assert_eq!(key("SET search_path = public;\n"), "search_path");
        assert_eq!(key("SET LOCAL x = 1;\n"), "-");
        assert_eq!(key("RESET ALL;\n"), "?");
        assert_eq!(key("SELECT pg_catalog.setval('s', 1, true);\n"), "-");
        assert_eq!(key("CREATE TABLE t (a int);\n"), "-");
    }

    #[test]
    fn headers() {
        let h = header(b"\n--\n-- Name: t t_pkey; Type: CONSTRAINT; Schema: public; Owner: u\n--\n\nALTER TABLE x;").unwrap();
        assert_eq!(
            (h.name.as_str(), h.kind.as_str(), h.data),
            ("t t_pkey", "CONSTRAINT", false)
        );
        let h = header(
            b"--\n-- Data for Name: a; b; Type: TABLE DATA; Schema: public; Owner: u\n--\nCOPY",
        )
        .unwrap();
        assert_eq!(
            (h.name.as_str(), h.kind.as_str(), h.data),
            ("a; b", "TABLE DATA", true)
        );
        assert_eq!(h.schema, "public");
        let h =
            header(b"-- Name: t; Type: TABLE; Schema: s; Owner: u; Tablespace: x\nCREATE").unwrap();
        assert_eq!((h.schema.as_str(), h.kind.as_str()), ("s", "TABLE"));
        assert!(header(b"SELECT 1;").is_none());
        assert!(plain_copy(b"COPY public.t (id, v) FROM stdin;"));
        assert!(!plain_copy(b"COPY t FROM stdin WITH (FORMAT csv);"));
    }
}
