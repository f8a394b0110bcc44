//! Roles a `pg_dump` refers to but does not create.
//!
//! `pg_dump` (unlike `pg_dumpall`) writes no `CREATE ROLE`, yet its script
//! names roles everywhere: `ALTER … OWNER TO`, `GRANT … TO`, `REVOKE … FROM`,
//! `SET SESSION AUTHORIZATION`, `SET ROLE`, `ALTER DEFAULT PRIVILEGES FOR
//! ROLE`, `CREATE POLICY … TO`, `CREATE USER MAPPING FOR` (PostgreSQL docs,
//! `pg_dump`, Notes: "the roles must exist"). A sandbox has none of them, so
//! drill creates each one `NOLOGIN` before the first statement that needs
//! it:
//!
//! - a plain script is split into statements as it streams ([`Scanner`],
//!   which knows psql's lexical rules: quotes, dollar quotes, comments,
//!   meta-commands and `COPY … FROM stdin` data); each finished statement is
//!   looked at ([`roles_in`]), and one that names a role the sandbox lacks is
//!   held back until [`RoleDiscovery`] has created the role over a separate
//!   connection. The stream itself is not changed by a byte, and nothing is
//!   staged.
//! - a custom archive's schema (`pg_restore --schema-only`, which reads only
//!   the archive's table of contents) is scanned the same way before the
//!   restore starts.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// Longest statement kept whole for scanning (bytes). Statements that name
/// roles are short; a longer one (a large function body) streams through
/// unscanned.
const MAX_STATEMENT: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Normal,
    /// In `'…'`; `true` for an `E'…'` string, where `\` escapes.
    Single(bool),
    /// After `\` in an `E'…'` string.
    SingleEscape,
    Double,
    /// After `$`: maybe the start of a dollar-quote tag.
    DollarTag,
    /// Inside a dollar-quoted string.
    Dollar,
    LineComment,
    BlockComment,
    /// A psql meta-command (`\connect`, `\restrict`), to the end of its line.
    Meta,
    /// After `COPY … FROM stdin;`, to the end of that line.
    CopyEol,
    /// `COPY` data lines, up to a line `\.`.
    CopyData,
}

/// Splits a psql script into statements as it streams (psql's rules,
/// PostgreSQL `psqlscan.l`, as far as `pg_dump` output needs them).
///
/// [`Scanner::feed`] passes bytes to `out` except those of the statement
/// in progress, which it keeps until the statement ends and then returns,
/// so that the caller decides when it goes on. `COPY` data and overlong
/// statements go straight to `out`.
#[derive(Debug)]
pub struct Scanner {
    state: State,
    stmt: Vec<u8>,
    /// The statement in progress outgrew [`MAX_STATEMENT`] and streams.
    passthrough: bool,
    /// The statement has content beyond blanks and comments.
    started: bool,
    paren: i32,
    prev: u8,
    prev2: u8,
    /// A `-` or `/` waiting for the next byte to tell a comment.
    pending: Option<u8>,
    tag: Vec<u8>,
    delim_match: usize,
    comment_depth: u32,
    /// Progress through `\.` + newline at the start of a COPY data line;
    /// `None` in the middle of a line.
    copy_match: Option<u8>,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            state: State::Normal,
            stmt: Vec::new(),
            passthrough: false,
            started: false,
            paren: 0,
            prev: b'\n',
            prev2: b'\n',
            pending: None,
            tag: Vec::new(),
            delim_match: 0,
            comment_depth: 0,
            copy_match: None,
        }
    }
}

fn ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

impl Scanner {
    fn keep(&mut self, b: u8, out: &mut Vec<u8>) {
        if self.passthrough {
            out.push(b);
        } else {
            self.stmt.push(b);
            if self.stmt.len() > MAX_STATEMENT {
                out.append(&mut self.stmt);
                self.passthrough = true;
            }
        }
    }

    /// Feed `input`. Returns how many bytes were consumed and, when a
    /// statement ended, its bytes (not written to `out`): the caller puts
    /// them into `out` when it is ready, then feeds the rest.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Option<Vec<u8>>) {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::CopyData {
                i += self.copy_data(&input[i..], out);
                continue;
            }
            let b = input[i];
            i += 1;
            if let Some(done) = self.byte(b, out) {
                return (i, done);
            }
        }
        (i, None)
    }

    /// Whether the last statement was `COPY … FROM stdin` and its data (or
    /// the rest of its line) come next: the caller may take those bytes
    /// itself and then call [`Scanner::end_copy`].
    pub fn in_copy(&self) -> bool {
        matches!(self.state, State::CopyEol | State::CopyData)
    }

    /// The caller consumed the `COPY` data up to and including its `\.`
    /// line: scanning goes on with statements.
    pub fn end_copy(&mut self) {
        self.state = State::Normal;
        self.started = false;
        self.prev = b'\n';
        self.prev2 = b'\n';
        self.copy_match = None;
    }

    /// The bytes of an unfinished last statement, at the end of input.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if let Some(p) = self.pending.take() {
            self.keep(p, out);
        }
        out.append(&mut self.stmt);
    }

    /// COPY data: straight to `out`, watching for the `\.` line. Returns
    /// the bytes consumed.
    fn copy_data(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        let mut i = 0;
        while i < input.len() {
            match self.copy_match {
                None => match memchr::memchr(b'\n', &input[i..]) {
                    Some(nl) => {
                        out.extend_from_slice(&input[i..=i + nl]);
                        i += nl + 1;
                        self.copy_match = Some(0);
                    }
                    None => {
                        out.extend_from_slice(&input[i..]);
                        return input.len();
                    }
                },
                Some(m) => {
                    let b = input[i];
                    out.push(b);
                    i += 1;
                    self.copy_match = match (m, b) {
                        (0, b'\\') => Some(1),
                        (1, b'.') => Some(2),
                        (2, b'\r') => Some(3),
                        (2 | 3, b'\n') => {
                            self.state = State::Normal;
                            self.started = false;
                            self.prev = b'\n';
                            return i;
                        }
                        (_, b'\n') => Some(0),
                        _ => None,
                    };
                }
            }
        }
        i
    }

    /// Take one byte; `Some(statement)` when it ended a statement
    /// (`Some(None)` when that statement streamed through unscanned).
    fn byte(&mut self, b: u8, out: &mut Vec<u8>) -> Option<Option<Vec<u8>>> {
        // A `-` or `/` seen last: now we know whether a comment starts.
        if let Some(p) = self.pending.take() {
            self.keep(p, out);
            match (p, b) {
                (b'-', b'-') => {
                    self.keep(b, out);
                    self.state = State::LineComment;
                    return None;
                }
                (b'/', b'*') => {
                    self.keep(b, out);
                    self.state = State::BlockComment;
                    self.comment_depth = 1;
                    self.prev = 0;
                    return None;
                }
                _ => self.started = true,
            }
        }
        let (prev, prev2) = (self.prev, self.prev2);
        self.prev2 = prev;
        self.prev = b;
        match self.state {
            State::Normal => {
                match b {
                    b'-' | b'/' => {
                        // Decided by the next byte; not yet kept.
                        self.prev = b;
                        self.pending = Some(b);
                        return None;
                    }
                    b'\\' if !self.started => {
                        self.state = State::Meta;
                    }
                    b'\'' => {
                        let e = (prev == b'E' || prev == b'e') && !ident_byte(prev2);
                        self.state = State::Single(e);
                        self.started = true;
                    }
                    b'"' => {
                        self.state = State::Double;
                        self.started = true;
                    }
                    b'$' if !ident_byte(prev) => {
                        self.state = State::DollarTag;
                        self.tag.clear();
                        self.started = true;
                    }
                    b'(' => {
                        self.paren += 1;
                        self.started = true;
                    }
                    b')' => {
                        self.paren -= 1;
                        self.started = true;
                    }
                    b';' if self.paren <= 0 => {
                        self.keep(b, out);
                        return Some(self.end_statement());
                    }
                    b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => {}
                    _ => self.started = true,
                }
                self.keep(b, out);
            }
            State::Single(e) => {
                self.keep(b, out);
                if b == b'\'' {
                    self.state = State::Normal;
                    // `''` inside a string reads as the end and a new start.
                    self.prev = b'x';
                } else if e && b == b'\\' {
                    self.state = State::SingleEscape;
                }
            }
            State::SingleEscape => {
                self.keep(b, out);
                self.state = State::Single(true);
            }
            State::Double => {
                self.keep(b, out);
                if b == b'"' {
                    self.state = State::Normal;
                    self.prev = b'x';
                }
            }
            State::DollarTag => {
                if b == b'$' {
                    self.keep(b, out);
                    self.state = State::Dollar;
                    self.delim_match = 0;
                } else if ident_byte(b) && !(self.tag.is_empty() && b.is_ascii_digit()) {
                    self.keep(b, out);
                    self.tag.push(b);
                } else {
                    // `$1` or a lone `$`: not a dollar quote.
                    self.state = State::Normal;
                    self.prev = prev;
                    self.prev2 = prev2;
                    return self.byte(b, out);
                }
            }
            State::Dollar => {
                self.keep(b, out);
                // The closing delimiter is `$tag$`.
                let want = if self.delim_match == 0 || self.delim_match == self.tag.len() + 1 {
                    b'$'
                } else {
                    self.tag[self.delim_match - 1]
                };
                if b == want {
                    self.delim_match += 1;
                    if self.delim_match == self.tag.len() + 2 {
                        self.state = State::Normal;
                        self.prev = b'x';
                    }
                } else {
                    self.delim_match = usize::from(b == b'$');
                }
            }
            State::LineComment => {
                self.keep(b, out);
                if b == b'\n' {
                    self.state = State::Normal;
                }
            }
            State::BlockComment => {
                self.keep(b, out);
                if prev == b'*' && b == b'/' {
                    self.comment_depth -= 1;
                    self.prev = 0;
                    if self.comment_depth == 0 {
                        self.state = State::Normal;
                    }
                } else if prev == b'/' && b == b'*' {
                    self.comment_depth += 1;
                    self.prev = 0;
                }
            }
            State::Meta => {
                self.keep(b, out);
                if b == b'\n' {
                    self.state = State::Normal;
                    return Some(self.end_statement());
                }
            }
            State::CopyEol => {
                out.push(b);
                if b == b'\n' {
                    self.state = State::CopyData;
                    self.copy_match = Some(0);
                }
            }
            State::CopyData => unreachable!("copy data is taken by copy_data"),
        }
        None
    }

    fn end_statement(&mut self) -> Option<Vec<u8>> {
        let was_meta = self.state == State::Meta;
        self.started = false;
        self.paren = 0;
        let stmt = if self.passthrough {
            self.passthrough = false;
            None
        } else {
            Some(std::mem::take(&mut self.stmt))
        };
        if !was_meta && stmt.as_deref().is_some_and(is_copy_from_stdin) {
            self.state = State::CopyEol;
        }
        stmt
    }
}

/// The statement's first word, lower-cased (blanks and comments before it
/// skipped); cheap, so that only the statements that can name roles or
/// start `COPY` data are tokenised.
pub(crate) fn first_word(stmt: &[u8]) -> Option<String> {
    let mut i = 0;
    while i < stmt.len() {
        match stmt[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => i += 1,
            b'-' if stmt.get(i + 1) == Some(&b'-') => {
                i = memchr::memchr(b'\n', &stmt[i..]).map_or(stmt.len(), |n| i + n + 1);
            }
            b'/' if stmt.get(i + 1) == Some(&b'*') => {
                // Nested comments are rare at a statement's start; the
                // first `*/` is taken as the end (the tokeniser is exact).
                i = memchr::memmem::find(&stmt[i..], b"*/").map_or(stmt.len(), |n| i + n + 2);
            }
            _ => break,
        }
    }
    let end = stmt[i..]
        .iter()
        .position(|b| !b.is_ascii_alphabetic())
        .map_or(stmt.len(), |n| i + n);
    (end > i).then(|| String::from_utf8_lossy(&stmt[i..end]).to_ascii_lowercase())
}

/// First words of the statements that can name a role.
const ROLE_STATEMENTS: &[&str] = &["alter", "create", "grant", "revoke", "set"];

/// Whether a statement is `COPY … FROM stdin` (data follow it in the
/// script).
pub(crate) fn is_copy_from_stdin(stmt: &[u8]) -> bool {
    if first_word(stmt).as_deref() != Some("copy") {
        return false;
    }
    let toks = tokens(&String::from_utf8_lossy(stmt));
    matches!(toks.first(), Some(Tok::Word(w)) if w == "copy")
        && toks
            .windows(2)
            .any(|w| matches!(w, [Tok::Word(a), Tok::Word(b)] if a == "from" && b == "stdin"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// An unquoted word, folded to lower case as PostgreSQL does.
    Word(String),
    /// A quoted identifier, as written.
    Quoted(String),
    /// A string literal's content.
    Str(String),
    Sym(char),
}

/// The text of a quoted identifier or string literal starting at `c[*i]`
/// (its quote character), the doubled quote read as one; `*i` moves past
/// the closing quote.
fn quoted(c: &[char], i: &mut usize) -> String {
    let q = c[*i];
    let mut s = String::new();
    *i += 1;
    while *i < c.len() {
        if c[*i] == q {
            if c.get(*i + 1) == Some(&q) {
                s.push(q);
                *i += 2;
                continue;
            }
            *i += 1;
            break;
        }
        s.push(c[*i]);
        *i += 1;
    }
    s
}

/// Tokens of one statement: words, quoted identifiers, strings and
/// symbols; blanks, comments and dollar-quoted bodies are skipped.
pub(crate) fn tokens(text: &str) -> Vec<Tok> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '-' && c.get(i + 1) == Some(&'-') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if ch == '"' {
            out.push(Tok::Quoted(quoted(&c, &mut i)));
        } else if ch == '\'' {
            out.push(Tok::Str(quoted(&c, &mut i)));
        } else if ch == '$' {
            // A dollar-quoted body, or a parameter.
            let mut j = i + 1;
            while j < c.len() && (c[j].is_alphanumeric() || c[j] == '_') {
                j += 1;
            }
            if j < c.len() && c[j] == '$' && !c.get(i + 1).is_some_and(char::is_ascii_digit) {
                let delim: String = c[i..=j].iter().collect();
                let rest: String = c[j + 1..].iter().collect();
                match rest.find(&delim) {
                    Some(end) => {
                        let body_chars = rest[..end].chars().count();
                        i = j + 1 + body_chars + delim.chars().count();
                    }
                    None => i = c.len(),
                }
                out.push(Tok::Str(String::new()));
            } else {
                out.push(Tok::Sym('$'));
                i += 1;
            }
        } else if ch.is_alphanumeric() || ch == '_' {
            let mut s = String::new();
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '$') {
                s.push(c[i]);
                i += 1;
            }
            out.push(Tok::Word(s.to_lowercase()));
        } else {
            out.push(Tok::Sym(ch));
            i += 1;
        }
    }
    out
}

/// Names that stand where a role may but are not roles.
const NOT_ROLES: &[&str] = &[
    "public",
    "current_user",
    "session_user",
    "current_role",
    "none",
    "default",
    "all",
    "group",
];

/// The roles one SQL statement names (owners, grantees, grantors, session
/// and current roles, policy roles, user-mapping users), in order, without
/// `PUBLIC` and the `CURRENT_USER`-style keywords.
pub fn roles_in(stmt: &str) -> Vec<String> {
    if !first_word(stmt.as_bytes()).is_some_and(|w| ROLE_STATEMENTS.contains(&w.as_str())) {
        return Vec::new();
    }
    let t = tokens(stmt);
    let word = |i: usize, w: &str| matches!(t.get(i), Some(Tok::Word(x)) if x == w);
    let mut found: Vec<String> = Vec::new();
    let mut push = |r: Option<String>| {
        if let Some(r) = r {
            if !found.contains(&r) {
                found.push(r);
            }
        }
    };
    // A role name: a quoted identifier, or a word that is not a keyword
    // standing where a role may (`PUBLIC`, `CURRENT_USER`…).
    let name_at = |i: usize| -> Option<String> {
        match t.get(i) {
            Some(Tok::Word(w)) if !NOT_ROLES.contains(&w.as_str()) => Some(w.clone()),
            Some(Tok::Quoted(q)) => Some(q.clone()),
            _ => None,
        }
    };
    // A list of role specifications from `i`: `a, "B", GROUP c`.
    let list_at = |mut i: usize| -> Vec<String> {
        let mut v = Vec::new();
        loop {
            if word(i, "group") {
                i += 1;
            }
            match (name_at(i), t.get(i)) {
                (Some(n), _) => v.push(n),
                (None, Some(Tok::Word(_))) => {} // PUBLIC, CURRENT_USER…
                _ => break,
            }
            if t.get(i + 1) == Some(&Tok::Sym(',')) {
                i += 2;
            } else {
                break;
            }
        }
        v
    };
    // The first `kw` outside parentheses at or after `from`.
    let top_level = |from: usize, kw: &str| -> Option<usize> {
        let mut depth = 0i32;
        for (i, tok) in t.iter().enumerate().skip(from) {
            match tok {
                Tok::Sym('(') => depth += 1,
                Tok::Sym(')') => depth -= 1,
                Tok::Word(w) if depth == 0 && w == kw => return Some(i),
                _ => {}
            }
        }
        None
    };

    // `… OWNER TO role` (ALTER <anything> OWNER TO, ALTER DATABASE …).
    for i in 0..t.len() {
        if word(i, "owner") && word(i + 1, "to") {
            push(name_at(i + 2));
        }
        if word(i, "granted") && word(i + 1, "by") {
            push(name_at(i + 2));
        }
    }

    // Where a GRANT or REVOKE clause starts: at the statement's start, or
    // after ALTER DEFAULT PRIVILEGES FOR ROLE … [IN SCHEMA …].
    let mut grant_at = 0;
    if word(0, "alter") && word(1, "default") && word(2, "privileges") {
        if word(3, "for") && (word(4, "role") || word(4, "user")) {
            for r in list_at(5) {
                push(Some(r));
            }
        }
        grant_at = (3..t.len())
            .find(|&i| word(i, "grant") || word(i, "revoke"))
            .unwrap_or(t.len());
    }
    if word(grant_at, "grant") {
        if let Some(to) = top_level(grant_at + 1, "to") {
            for r in list_at(to + 1) {
                push(Some(r));
            }
        }
    } else if word(grant_at, "revoke") {
        if let Some(from) = top_level(grant_at + 1, "from") {
            for r in list_at(from + 1) {
                push(Some(r));
            }
        }
    }

    if word(0, "set") {
        let at = if word(1, "session") && word(2, "authorization") {
            Some(3)
        } else if word(1, "role") {
            Some(2)
        } else if (word(1, "local") || word(1, "session")) && word(2, "role") {
            Some(3)
        } else {
            None
        };
        if let Some(at) = at {
            match t.get(at) {
                Some(Tok::Str(s)) => push(Some(s.clone())),
                _ => push(name_at(at)),
            }
        }
    }
    if word(0, "alter") && (word(1, "role") || word(1, "user")) && !word(2, "mapping") {
        push(name_at(2));
    }
    if (word(0, "create") || word(0, "alter")) && word(1, "user") && word(2, "mapping") {
        let mut at = 3;
        if word(at, "if") {
            at += 3; // IF NOT EXISTS
        }
        if word(at, "for") && !word(at + 1, "user") {
            push(name_at(at + 1));
        }
    }
    if word(0, "create") && word(1, "policy") {
        if let Some(to) = top_level(2, "to") {
            for r in list_at(to + 1) {
                push(Some(r));
            }
        }
    }
    if word(0, "create") && word(1, "schema") {
        if let Some(a) = top_level(2, "authorization") {
            push(name_at(a + 1));
        }
    }
    if word(0, "create") && word(1, "database") {
        if let Some(o) = top_level(2, "owner") {
            let at = if t.get(o + 1) == Some(&Tok::Sym('=')) {
                o + 2
            } else {
                o + 1
            };
            push(name_at(at));
        }
    }
    found
}

/// The role a statement creates itself (`CREATE ROLE|USER|GROUP name`), as
/// a script that carries its globals does (`pg_dumpall --globals-only`
/// followed by `pg_dump`): drill must not create it first.
pub fn role_made_by(stmt: &str) -> Option<String> {
    if first_word(stmt.as_bytes()).as_deref() != Some("create") {
        return None;
    }
    let t = tokens(stmt);
    match (t.get(1), t.get(2)) {
        (Some(Tok::Word(w)), Some(Tok::Word(n) | Tok::Quoted(n)))
            if ["role", "user", "group"].contains(&w.as_str())
                && !(w == "user" && n == "mapping") =>
        {
            Some(n.clone())
        }
        _ => None,
    }
}

/// Whether a plain script starts by dropping what it will create without
/// `IF EXISTS` (`pg_dump --clean` without `--if-exists`): restored into an
/// empty database it stops at the first `DROP` (PostgreSQL docs,
/// `pg_dump --clean`: "might generate some harmless error messages"). Looks
/// at the statements of `head` up to the first `CREATE`.
pub fn drops_without_if_exists(head: &[u8]) -> bool {
    let mut scanner = Scanner::default();
    let mut sink = Vec::new();
    let mut rest = head;
    while !rest.is_empty() {
        let (used, stmt) = scanner.feed(rest, &mut sink);
        rest = &rest[used..];
        sink.clear();
        let Some(stmt) = stmt else { continue };
        let text = String::from_utf8_lossy(&stmt);
        match first_word(&stmt).as_deref() {
            Some("create") | Some("copy") => return false,
            Some("drop") | Some("alter") => {
                let t = tokens(&text);
                let is_drop = matches!(t.first(), Some(Tok::Word(w)) if w == "drop")
                    || t.iter().any(|x| matches!(x, Tok::Word(w) if w == "drop"));
                let if_exists = t.windows(2).any(
                    |w| matches!(w, [Tok::Word(a), Tok::Word(b)] if a == "if" && b == "exists"),
                );
                if is_drop {
                    return !if_exists;
                }
            }
            _ => {}
        }
    }
    false
}

/// Every role named in a whole script (for a custom archive's schema, as
/// `pg_restore --schema-only` prints it), in order of first use.
pub fn roles_in_script(script: &[u8]) -> Vec<String> {
    let mut scanner = Scanner::default();
    let mut sink = Vec::new();
    let mut found: Vec<String> = Vec::new();
    let mut rest = script;
    while !rest.is_empty() {
        let (used, stmt) = scanner.feed(rest, &mut sink);
        rest = &rest[used..];
        sink.clear();
        if let Some(stmt) = stmt {
            for r in roles_in(&String::from_utf8_lossy(&stmt)) {
                if !found.contains(&r) {
                    found.push(r);
                }
            }
        }
    }
    found
}

/// `CREATE ROLE … NOLOGIN` for each of `roles`.
pub fn create_roles_sql(roles: &[String]) -> String {
    roles
        .iter()
        .map(|r| format!("CREATE ROLE {} NOLOGIN;", super::quote_ident(r)))
        .collect()
}

type Creating = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// What [`RoleDiscovery`] did, shared with its owner.
#[derive(Debug, Clone, Default)]
pub struct Discovered {
    inner: Arc<Mutex<DiscoveredInner>>,
}

#[derive(Debug, Default)]
struct DiscoveredInner {
    created: Vec<String>,
    error: Option<String>,
}

impl Discovered {
    /// Roles created in the sandbox, in order.
    pub fn created(&self) -> Vec<String> {
        self.inner.lock().expect("roles lock").created.clone()
    }

    /// Why creating a role failed, if it did (the restore went on).
    pub fn error(&self) -> Option<String> {
        self.inner.lock().expect("roles lock").error.clone()
    }
}

/// A plain script's stream, passed on unchanged, that creates each role a
/// statement names (and the sandbox lacks) before that statement goes on.
/// Roles are created over `client`, a connection of the sandbox's
/// superuser separate from the restore's.
pub struct RoleDiscovery<R> {
    inner: R,
    scanner: Scanner,
    client: Arc<tokio_postgres::Client>,
    known: BTreeSet<String>,
    discovered: Discovered,
    input: Vec<u8>,
    input_pos: usize,
    input_len: usize,
    out: Vec<u8>,
    out_pos: usize,
    /// A statement waiting for its roles.
    held: Option<Vec<u8>>,
    creating: Option<(Creating, Vec<String>)>,
    eof: bool,
}

impl<R> RoleDiscovery<R> {
    /// Wrap `inner`; `existing` are the roles the sandbox has.
    pub fn new(inner: R, client: Arc<tokio_postgres::Client>, existing: BTreeSet<String>) -> Self {
        RoleDiscovery {
            inner,
            scanner: Scanner::default(),
            client,
            known: existing,
            discovered: Discovered::default(),
            input: vec![0; 64 * 1024],
            input_pos: 0,
            input_len: 0,
            out: Vec::with_capacity(64 * 1024),
            out_pos: 0,
            held: None,
            creating: None,
            eof: false,
        }
    }

    /// A handle on what was created (and any failure).
    pub fn discovered(&self) -> Discovered {
        self.discovered.clone()
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for RoleDiscovery<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            // What is ready goes first (it comes before a held statement).
            if super::stream::drain_into(&this.out, &mut this.out_pos, buf) {
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if let Some((fut, roles)) = &mut this.creating {
                match fut.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => {
                        // Not fatal: the statement goes on, and if it
                        // needed the role, psql says so and that error is
                        // classified; this note goes with it.
                        let msg =
                            format!("drill could not create roles {roles:?} in the sandbox: {e}");
                        this.discovered.inner.lock().expect("roles lock").error = Some(msg);
                        this.creating = None;
                        if let Some(h) = this.held.take() {
                            this.out.extend_from_slice(&h);
                        }
                        continue;
                    }
                    Poll::Ready(Ok(())) => {
                        let roles = std::mem::take(roles);
                        this.discovered
                            .inner
                            .lock()
                            .expect("roles lock")
                            .created
                            .extend(roles);
                        this.creating = None;
                        if let Some(h) = this.held.take() {
                            this.out.extend_from_slice(&h);
                        }
                        continue;
                    }
                }
            }
            if this.input_pos < this.input_len {
                let (used, stmt) = this
                    .scanner
                    .feed(&this.input[this.input_pos..this.input_len], &mut this.out);
                this.input_pos += used;
                if let Some(stmt) = stmt {
                    let text = String::from_utf8_lossy(&stmt);
                    if let Some(r) = role_made_by(&text) {
                        this.known.insert(r);
                    }
                    let new: Vec<String> = roles_in(&text)
                        .into_iter()
                        .filter(|r| !this.known.contains(r))
                        .collect();
                    drop(text);
                    if new.is_empty() {
                        this.out.extend_from_slice(&stmt);
                    } else {
                        this.known.extend(new.iter().cloned());
                        let client = this.client.clone();
                        let sql = create_roles_sql(&new);
                        this.held = Some(stmt);
                        this.creating = Some((
                            Box::pin(async move {
                                client
                                    .batch_execute(&sql)
                                    .await
                                    .map_err(|e| crate::sandbox::pg_message(&e))
                            }),
                            new,
                        ));
                    }
                }
                continue;
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut rb = ReadBuf::new(&mut this.input);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    this.input_pos = 0;
                    this.input_len = n;
                    if n == 0 {
                        this.eof = true;
                        this.scanner.finish(&mut this.out);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements(script: &str) -> (Vec<String>, Vec<u8>) {
        let mut s = Scanner::default();
        let mut out = Vec::new();
        let mut stmts = Vec::new();
        // Feed in small pieces to cross every boundary.
        let bytes = script.as_bytes();
        for chunk in bytes.chunks(3) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let (used, stmt) = s.feed(rest, &mut out);
                rest = &rest[used..];
                if let Some(st) = stmt {
                    stmts.push(String::from_utf8_lossy(&st).trim().to_string());
                    out.extend_from_slice(&st);
                }
            }
        }
        s.finish(&mut out);
        (stmts, out)
    }

    const SCRIPT: &str = r#"--
-- PostgreSQL database dump
--

\restrict abc123

-- Dumped from database version 15.18
SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

--
-- Name: f(); Type: FUNCTION; Schema: public; Owner: app
--

CREATE FUNCTION public.f() RETURNS text
    LANGUAGE plpgsql
    AS $_$
BEGIN
  -- a semicolon; and a quote ' inside
  RETURN 'GRANT x TO evil;';
END
$_$;


ALTER FUNCTION public.f() OWNER TO app;

COPY public.t (a, b) FROM stdin;
1	GRANT ALL ON x TO copydata;
\.x	not the end
\.

GRANT SELECT ON TABLE public.t TO "Read Only", reporting;
CREATE POLICY p ON public.t TO writer USING ((a > 0));
SET SESSION AUTHORIZATION 'grantor';
ALTER DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA public GRANT SELECT ON TABLES TO reporting;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
SELECT E'it\'s; fine' AS x;

--
-- PostgreSQL database dump complete
--

\unrestrict abc123
"#;

    #[test]
    fn scanner_passes_every_byte_and_splits_statements() {
        let (stmts, out) = statements(SCRIPT);
        assert_eq!(String::from_utf8(out).unwrap(), SCRIPT);
        let starts: Vec<&str> = stmts
            .iter()
            .map(|s| {
                s.lines()
                    .rev()
                    .find(|l| !l.starts_with("--") && !l.is_empty())
                    .unwrap_or("")
            })
            .collect();
        assert!(stmts[0].ends_with("\\restrict abc123"), "{stmts:#?}");
        assert!(stmts.iter().any(|s| s.ends_with("$_$;")), "{stmts:#?}");
        assert!(starts.contains(&"ALTER FUNCTION public.f() OWNER TO app;"));
        assert!(starts.contains(&"COPY public.t (a, b) FROM stdin;"));
        // COPY data are never a statement.
        assert!(!stmts.iter().any(|s| s.contains("copydata")), "{stmts:#?}");
        assert!(
            starts.contains(&"SELECT E'it\\'s; fine' AS x;"),
            "{starts:#?}"
        );
        assert!(stmts.last().unwrap().ends_with("\\unrestrict abc123"));
    }

    /// Whatever the input and however it is cut, every byte comes out once,
    /// in order: the scanner only decides when bytes go on, never what.
    #[test]
    fn scanner_never_changes_the_stream() {
        let alphabet = b"ab E$_1'\"-/*;\\.\n\r()cOPY FROM stdin";
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300 {
            let len = (next() % 2000) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let mut s = Scanner::default();
            let mut out = Vec::new();
            let mut rest: &[u8] = &input;
            while !rest.is_empty() {
                let cut = 1 + (next() % 64) as usize;
                let mut chunk = &rest[..cut.min(rest.len())];
                rest = &rest[chunk.len()..];
                while !chunk.is_empty() {
                    let (used, stmt) = s.feed(chunk, &mut out);
                    chunk = &chunk[used..];
                    if let Some(st) = stmt {
                        out.extend_from_slice(&st);
                    }
                }
            }
            s.finish(&mut out);
            assert_eq!(out, input);
        }
    }

    #[test]
    fn roles_of_a_script() {
        let roles = roles_in_script(SCRIPT.as_bytes());
        assert_eq!(
            roles,
            vec!["app", "Read Only", "reporting", "writer", "grantor"],
        );
    }

    #[test]
    fn roles_of_statements() {
        assert_eq!(
            roles_in("ALTER TABLE public.x OWNER TO \"Bob\";"),
            vec!["Bob"]
        );
        assert_eq!(roles_in("ALTER SCHEMA s OWNER TO App;"), vec!["app"]);
        assert_eq!(
            roles_in("GRANT SELECT(a), UPDATE(b) ON TABLE t TO r1, GROUP r2 WITH GRANT OPTION;"),
            vec!["r1", "r2"]
        );
        assert_eq!(
            roles_in("GRANT ALL ON SCHEMA public TO PUBLIC;"),
            Vec::<String>::new()
        );
        assert_eq!(
            roles_in("REVOKE ALL ON TABLE t FROM r3 CASCADE;"),
            vec!["r3"]
        );
        assert_eq!(roles_in("SET ROLE r4;"), vec!["r4"]);
        assert_eq!(
            roles_in("SET SESSION AUTHORIZATION DEFAULT;"),
            Vec::<String>::new()
        );
        assert_eq!(
            roles_in("RESET SESSION AUTHORIZATION;"),
            Vec::<String>::new()
        );
        assert_eq!(
            roles_in("ALTER DEFAULT PRIVILEGES FOR ROLE o1 REVOKE ALL ON TABLES FROM o2;"),
            vec!["o1", "o2"]
        );
        assert_eq!(
            roles_in("CREATE USER MAPPING FOR um SERVER s OPTIONS (user 'x');"),
            vec!["um"]
        );
        assert_eq!(
            roles_in("CREATE USER MAPPING FOR PUBLIC SERVER s;"),
            Vec::<String>::new()
        );
        assert_eq!(
            roles_in("ALTER ROLE ar IN DATABASE d SET search_path = x;"),
            vec!["ar"]
        );
        assert_eq!(
            roles_in("GRANT INSERT ON t TO w GRANTED BY g;"),
            vec!["g", "w"]
        );
        assert_eq!(
            roles_in("CREATE TABLE owner_to (owner text);"),
            Vec::<String>::new()
        );
        assert_eq!(roles_in("ALTER TABLE t OWNER TO \"all\";"), vec!["all"]);
        assert_eq!(roles_in("GRANT SELECT ON t TO PUBLIC, r5;"), vec!["r5"]);
        assert!(drops_without_if_exists(
            b"SET x = 0;\nALTER TABLE ONLY public.t DROP CONSTRAINT t_pkey;\nDROP TABLE public.t;\nCREATE TABLE public.t ();\n"
        ));
        assert!(!drops_without_if_exists(
            b"ALTER TABLE IF EXISTS ONLY public.t DROP CONSTRAINT IF EXISTS t_pkey;\nDROP TABLE IF EXISTS public.t;\n"
        ));
        assert!(!drops_without_if_exists(
            b"SET x = 0;\nCREATE TABLE t ();\nDROP TABLE t;\n"
        ));
        assert_eq!(role_made_by("CREATE ROLE app;").as_deref(), Some("app"));
        assert_eq!(
            role_made_by("CREATE USER \"Bob\" LOGIN;").as_deref(),
            Some("Bob")
        );
        assert_eq!(role_made_by("CREATE USER MAPPING FOR x SERVER s;"), None);
        assert_eq!(role_made_by("CREATE TABLE t ();"), None);
        assert_eq!(roles_in("SELECT 'OWNER TO x';"), Vec::<String>::new());
    }
}
