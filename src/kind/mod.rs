//! Database kinds: what drill needs to know about a database server to
//! restore a backup into it and check the result.
//!
//! A kind owns its default image, the dump formats it restores (each with
//! its restore method), how its sandbox container is configured (image
//! environment, port, server arguments), its readiness probe, its client for
//! checks, how it quotes identifiers and the environment a `command` check
//! gets. Nothing outside a kind's own module names it: the rest of drill
//! asks the registry ([`by_name`]) for a `&dyn DatabaseKind`.
//!
//! Adding a kind is one module here plus one line in [`KINDS`].

pub mod mariadb;
mod mariadb_catalog;
pub mod postgresql;
mod postgresql_catalog;

use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::config::DumpFormat;
use crate::restore::RestoreMethod;
use crate::sandbox::Sandbox;
use crate::secret::Secret;

/// Every kind drill knows, by the name used in `kind = "…"`.
pub static KINDS: &[&dyn DatabaseKind] =
    &[&postgresql::POSTGRESQL, &mariadb::MARIADB, &mariadb::MYSQL];

/// The kind called `name` in config (`postgresql`, `mariadb`, `mysql`).
pub fn by_name(name: &str) -> Option<&'static dyn DatabaseKind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

/// The names of all kinds, for messages.
pub fn names() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.name()).collect()
}

/// The default kind of a `[[databases]]` entry without `kind`.
pub fn default_kind() -> &'static dyn DatabaseKind {
    &postgresql::POSTGRESQL
}

/// How to reach a running server: host, port and superuser credentials.
#[derive(Clone)]
pub struct Endpoint {
    /// Host (127.0.0.1 for a container; a socket directory for the local
    /// PostgreSQL engine).
    pub host: String,
    /// TCP port (or the socket's number).
    pub port: u16,
    /// Superuser name.
    pub user: String,
    /// Superuser password.
    pub password: Secret,
}

/// How a kind's server runs in a container made from its image (the
/// official Docker Hub images' conventions).
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// `NAME=VALUE` environment of the container (the image's entrypoint
    /// reads the superuser's password from it).
    pub env: Vec<String>,
    /// The port the server listens on inside the container, e.g.
    /// `5432/tcp`.
    pub port: &'static str,
    /// Command passed to the entrypoint (`None`: the image's default).
    pub cmd: Option<Vec<String>>,
    /// The superuser drill connects as.
    pub user: String,
    /// The OS user that processes drill runs in the container run as.
    pub exec_user: &'static str,
    /// `NAME=VALUE` environment of those processes (e.g. the client's
    /// password variable).
    pub exec_env: Vec<String>,
    /// Command passed to the entrypoint for a sandbox that starts without
    /// its server (see [`crate::sandbox::SandboxRequest::held`]); `None`
    /// when the kind has no such start.
    pub held_cmd: Option<Vec<String>>,
    /// How the container is told to keep its data directory at another
    /// path (see [`ContainerSpec::place_data_dir`]); `None` when the kind
    /// cannot be told, and then sandboxes of it never start from a template.
    pub data_dir: Option<DataDirSetting>,
}

/// How a container is told where its server's data directory is, by the
/// official images' documented conventions. A sandbox template
/// (`docker commit`) keeps its data directory at a path outside the image's
/// declared `VOLUME`s, whose contents a commit does not keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDirSetting {
    /// An environment variable naming it: `PGDATA` (postgres image).
    Env(&'static str),
    /// A server argument with the path appended: `--datadir=` (mariadb and
    /// mysql images, whose entrypoints read it back from the server's
    /// configuration).
    Arg(&'static str),
}

impl ContainerSpec {
    /// Keep the server's data directory at `path` inside the container
    /// (an absolute path): sets the kind's variable or appends its server
    /// argument. Does nothing when the kind has no [`DataDirSetting`].
    pub fn place_data_dir(&mut self, path: &str) {
        match self.data_dir {
            Some(DataDirSetting::Env(var)) => {
                let prefix = format!("{var}=");
                self.env.retain(|kv| !kv.starts_with(&prefix));
                self.env.push(format!("{prefix}{path}"));
            }
            Some(DataDirSetting::Arg(prefix)) => {
                // Arguments starting with `-` go to the server (the
                // images' entrypoints prepend it).
                self.cmd
                    .get_or_insert_with(Vec::new)
                    .push(format!("{prefix}{path}"));
            }
            None => {}
        }
    }
}

/// Rows of a query as text: column names and, per row, each value's text
/// form (`None` for SQL NULL).
#[derive(Debug, Clone, Default)]
pub struct Rows {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// The rows.
    pub rows: Vec<Vec<Option<String>>>,
}

/// Why a query gave no rows.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The server refused or failed it: its message.
    #[error("{0}")]
    Failed(String),
    /// It did not finish in time; it was cancelled.
    #[error("did not finish within {}", crate::duration::human(*.0))]
    Timeout(Duration),
}

/// A connection to one database of a sandbox, for checks.
pub trait Session: Send + Sync {
    /// Run `sql` (one statement, text protocol) and return its rows; the
    /// statement is cancelled on the server when `timeout` passes.
    ///
    /// # Errors
    /// [`QueryError`].
    fn query<'a>(
        &'a self,
        sql: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Rows, QueryError>>;
}

/// A database kind. See the module docs.
pub trait DatabaseKind: Send + Sync {
    /// The name in config and reports: `postgresql`, `mariadb`, `mysql`.
    fn name(&self) -> &'static str;

    /// The server's name for people: `PostgreSQL`, `MariaDB`, `MySQL`.
    fn title(&self) -> &'static str;

    /// The image used when `image` is `auto` (or unset), e.g. `mariadb:11`.
    /// PostgreSQL's is the template `postgres:{major}`.
    fn default_image(&self) -> &'static str;

    /// The dump formats this kind restores; the first is the default.
    fn formats(&self) -> &'static [DumpFormat];

    /// The restore method for `format` (one of [`DatabaseKind::formats`]).
    fn method(&self, format: DumpFormat) -> &'static dyn RestoreMethod;

    /// Check an `image` setting: a reference, or what this kind accepts
    /// beyond that (PostgreSQL: `auto` and `{major}` templates).
    ///
    /// # Errors
    /// Why the value is unusable, for a config error.
    fn validate_image(&self, image: &str) -> Result<(), String>;

    /// How a sandbox container of this kind is made, for a superuser
    /// `password`, a memory cap (bytes) and whether to start the server
    /// with restore tuning (settings that give up crash safety, safe only
    /// in a throwaway sandbox).
    fn container(&self, password: &Secret, memory_bytes: u64, tuning: bool) -> ContainerSpec;

    /// Readiness: connect to the server as a client will and return its
    /// version (e.g. `16.4`, `10.11.6-MariaDB-0+deb12u1`).
    ///
    /// # Errors
    /// The client's error, for the startup-timeout message.
    fn probe<'a>(&'a self, endpoint: &'a Endpoint) -> BoxFuture<'a, Result<String, String>>;

    /// A session on database `dbname` for checks.
    ///
    /// # Errors
    /// The client's error.
    fn session<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        dbname: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn Session>, String>>;

    /// A shell command that opens the kind's interactive client on database
    /// `dbname` as `user`, run inside a sandbox container whose environment
    /// holds the image's password variable (for `--keep`).
    fn shell_command(&self, user: &str, dbname: &str) -> String;

    /// The image's variable holding the superuser's password
    /// (`POSTGRES_PASSWORD`, `MARIADB_ROOT_PASSWORD`).
    fn password_env(&self) -> &'static str;

    /// Give the superuser of the server at `endpoint` (logged in with the
    /// endpoint's password) the password `new`, on every account the
    /// image's entrypoint made for it, so the old password no longer logs
    /// in. A sandbox started from a template runs this right after its
    /// server is ready. The new password travels only inside the SQL
    /// statement, never in argv; the statement is not logged or written to
    /// a binary log.
    ///
    /// # Errors
    /// The client's message; the default: the kind cannot.
    fn set_password<'a>(
        &'a self,
        _endpoint: &'a Endpoint,
        _new: &'a Secret,
    ) -> BoxFuture<'a, Result<(), String>> {
        let title = self.title();
        Box::pin(async move { Err(format!("drill cannot change a {title} password")) })
    }

    /// An identifier quoted for this kind's SQL.
    fn quote_ident(&self, name: &str) -> String;

    /// `schema.table` or `table` quoted for this kind's SQL.
    fn quote_table(&self, name: &str) -> String {
        match crate::config::split_table(name) {
            Some((Some(s), t)) => format!("{}.{}", self.quote_ident(s), self.quote_ident(t)),
            Some((None, t)) => self.quote_ident(t),
            None => self.quote_ident(name),
        }
    }

    /// What `drill diff`, `bisect` (its table diff) and `extract` read of
    /// this kind's restored databases; `None`: they cannot.
    fn catalog(&self) -> Option<&'static dyn Catalog> {
        None
    }

    /// The environment a `command` check gets to reach database `dbname`:
    /// `DATABASE_URL` and the kind's standard client variables.
    fn client_env(&self, endpoint: &Endpoint, dbname: &str) -> Vec<(String, String)>;
}

/// A stream of `(key hash, row hash)` pairs of a table's rows (hex text).
pub type RowHashes<'a> = futures_util::stream::BoxStream<'a, Result<(String, String), String>>;

/// What the commands that compare or extract read of a restored server of
/// one kind: its databases, their tables, a content digest per table,
/// rows as hashes in key order, the schema as text, and tables as SQL.
pub trait Catalog: Send + Sync {
    /// The user databases of the sandbox, sorted.
    ///
    /// # Errors
    /// The client's message.
    fn databases<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<Vec<String>, String>>;

    /// A session on database `dbname` for table-level reads.
    ///
    /// # Errors
    /// The client's message.
    fn open<'a>(
        &'a self,
        sb: &'a Sandbox,
        dbname: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn CatalogSession + 'a>, String>>;

    /// The schema of `dbname` as text, stable across restores of the same
    /// data (no volatile parts), for a line diff.
    ///
    /// # Errors
    /// The tool's or client's message.
    fn schema<'a>(
        &'a self,
        sb: &'a Sandbox,
        dbname: &'a str,
    ) -> BoxFuture<'a, Result<String, String>>;

    /// Write `tables` of `dbname` as SQL to `out` (definitions and rows, or
    /// rows only), with the kind's own dump tool in the sandbox; returns the
    /// bytes written.
    ///
    /// # Errors
    /// The tool's message.
    fn dump_tables<'a>(
        &'a self,
        sb: &'a Sandbox,
        dbname: &'a str,
        tables: &'a [String],
        data_only: bool,
        out: &'a mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    ) -> BoxFuture<'a, Result<u64, String>>;

    /// Comment lines (each starting `-- `, ending in a newline) for the
    /// head of an extract: what [`Catalog::dump_tables`] wrote and how to
    /// load it by hand.
    fn extract_notes(&self, data_only: bool) -> &'static str;
}

/// Table-level reads of one database (see [`Catalog`]).
pub trait CatalogSession: Send + Sync {
    /// Its tables (`schema.table` for PostgreSQL, `table` for MariaDB),
    /// sorted.
    ///
    /// # Errors
    /// The client's message.
    fn tables(&self) -> BoxFuture<'_, Result<Vec<String>, String>>;

    /// `table` as the kind names it exactly (`schema.table`), or `None`
    /// when the database has no such table.
    ///
    /// # Errors
    /// The client's message.
    fn resolve<'a>(&'a self, table: &'a str) -> BoxFuture<'a, Result<Option<String>, String>>;

    /// `(rows, digest)`: the row count and a digest of the rows' content,
    /// independent of row order.
    ///
    /// # Errors
    /// The client's message.
    fn digest<'a>(&'a self, table: &'a str) -> BoxFuture<'a, Result<(u64, String), String>>;

    /// The primary key's columns, in key order (empty: none).
    ///
    /// # Errors
    /// The client's message.
    fn primary_key<'a>(&'a self, table: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>>;

    /// `(key hash, row hash)` of every row, ordered by key hash then row
    /// hash in byte order; the key is `key`'s columns, or the whole row.
    ///
    /// # Errors
    /// The client's message.
    fn row_hashes<'a>(
        &'a self,
        table: &'a str,
        key: Option<&'a [String]>,
    ) -> BoxFuture<'a, Result<RowHashes<'a>, String>>;
}

/// A table's digest from its row count and the two sums of its rows' MD5
/// halves (as the server printed them): the first 16 hex digits of their
/// SHA-256.
pub(crate) fn table_digest(rows: i64, lo: &str, hi: &str) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(format!("{rows}:{lo}:{hi}").as_bytes());
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Percent-encode a URL component (RFC 3986 unreserved characters kept).
pub(crate) fn url_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl std::fmt::Debug for dyn DatabaseKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
