//! `checks/*.toml`: one check per file. The file's stem is the check's name;
//! `kind` selects the schema of the rest of the file.
//!
//! Every kind shares `kind`, `database`, `dbname`, `description` and
//! `timeout`; the kind-specific keys are documented on [`CheckSpec`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{parse_toml, ConfigError, DatabaseConfig};

/// Check kinds this version of drill runs (the spec's Checks section).
pub const KINDS: [&str; 6] = [
    "sql",
    "row-counts",
    "blob-roundtrip",
    "command",
    "amcheck",
    "check-table",
];

/// Default for `timeout` when a check file gives none: 10 minutes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// What an `sql` check expects of its query's result.
///
/// Either a scalar comparison (the query returns exactly one row with one
/// column; `equals`, `min`, `max` may be combined) or `no_rows = true` (a
/// *violations* query: every row it returns is a finding).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SqlExpect {
    /// The scalar must equal this (compared as numbers when both are numeric,
    /// else as text; booleans as PostgreSQL prints them, `t`/`f`).
    pub equals: Option<toml::Value>,
    /// The scalar must be a number ≥ this.
    pub min: Option<f64>,
    /// The scalar must be a number ≤ this.
    pub max: Option<f64>,
    /// The query must return no rows.
    #[serde(default)]
    pub no_rows: bool,
}

/// One `[[tables]]` entry of a `row-counts` check: `count(*)` of a table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CountedTable {
    /// `schema.table` or `table` (search path), as identifiers: each part is
    /// quoted by drill, so `"Workspace"` is written `Workspace`.
    pub table: String,
    /// The table must hold at least this many rows.
    pub min: u64,
    /// The count may fall by at most this fraction (0.0–1.0) against the
    /// last passed drill of the same tier.
    pub max_drop: Option<f64>,
}

/// One `[[groups]]` entry of a `row-counts` check: a query returning one row
/// per group, `(group text, count bigint)`; each group is judged on its own
/// and reported as `name[group]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CountedGroup {
    /// Prefix of the groups' names in the report, e.g. `employees`.
    pub name: String,
    /// The grouped query: two columns, the group's name and its count.
    pub query: String,
    /// Groups that must be present; a missing one counts 0 rows (a grouped
    /// query cannot return a group whose rows were all deleted).
    #[serde(default)]
    pub expect: Vec<String>,
    /// Each group must hold at least this many rows.
    pub min: u64,
    /// Each group's count may fall by at most this fraction (0.0–1.0)
    /// against the last passed drill of the same tier.
    pub max_drop: Option<f64>,
}

/// The kind-specific part of a check.
#[derive(Debug, Clone)]
pub enum CheckSpec {
    /// `kind = "sql"`: `query`, `[expect]`.
    Sql {
        /// The query, run with the simple query protocol (one statement).
        query: String,
        /// What the result must satisfy.
        expect: SqlExpect,
    },
    /// `kind = "row-counts"`: `[[tables]]` and/or `[[groups]]`.
    RowCounts {
        /// Tables counted.
        tables: Vec<CountedTable>,
        /// Grouped queries counted.
        groups: Vec<CountedGroup>,
    },
    /// `kind = "blob-roundtrip"`: `table`, `id_column` (default `id`),
    /// `data_column` (bytea), `digest_column` (hex SHA-256 text).
    BlobRoundtrip {
        /// `schema.table` or `table`, as identifiers.
        table: String,
        /// Column naming the row in findings.
        id_column: String,
        /// The bytea column.
        data_column: String,
        /// The stored digest: lower- or upper-case hex SHA-256, as text.
        digest_column: String,
    },
    /// `kind = "command"`: `command` (argv, no shell), `workdir`, `env`,
    /// `error_codes`.
    Command {
        /// Program and arguments. A relative program path containing `/` is
        /// resolved against the check file's folder.
        argv: Vec<String>,
        /// Working directory (default: the check file's folder).
        workdir: PathBuf,
        /// Extra environment variables.
        env: BTreeMap<String, String>,
        /// Exit codes that mean "could not check" (e.g. cannot connect):
        /// `error`, not `failed`. Other non-zero codes are `failed`.
        error_codes: Vec<i32>,
    },
    /// `kind = "amcheck"`: `pg_amcheck` in the sandbox.
    Amcheck {
        /// `--heapallindexed`: every heap tuple must be found in each B-tree
        /// index (default true).
        heapallindexed: bool,
        /// `--parent-check`: also check parent/child invariants (default
        /// true; takes a ShareLock, harmless in a sandbox).
        parent_check: bool,
    },
    /// `kind = "check-table"`: `CHECK TABLE … EXTENDED` on every table
    /// (MariaDB/MySQL).
    CheckTable {
        /// `EXTENDED` (default true): a full key lookup for every row;
        /// `false` runs the default `MEDIUM` check.
        extended: bool,
    },
}

impl CheckSpec {
    /// The kind as spelled in check files and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            CheckSpec::Sql { .. } => "sql",
            CheckSpec::RowCounts { .. } => "row-counts",
            CheckSpec::BlobRoundtrip { .. } => "blob-roundtrip",
            CheckSpec::Command { .. } => "command",
            CheckSpec::Amcheck { .. } => "amcheck",
            CheckSpec::CheckTable { .. } => "check-table",
        }
    }

    /// Whether the check only reads the restored database, so it may run
    /// beside the database's other checks. An external `command` may do
    /// anything, so it runs alone.
    pub fn concurrent(&self) -> bool {
        !matches!(self, CheckSpec::Command { .. })
    }
}

/// One loaded check file.
#[derive(Debug, Clone)]
pub struct CheckDefinition {
    /// The file stem, e.g. `frame-integrity`.
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// The `[[databases]]` entry it runs against; `None` (only `amcheck`
    /// may omit `database`) = every restored database.
    pub database: Option<String>,
    /// The PostgreSQL database to connect to, overriding the entry's `dbname`.
    pub dbname: Option<String>,
    /// Free text for reports.
    pub description: Option<String>,
    /// How long the check may run (default [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
    /// Kind and parameters.
    pub spec: CheckSpec,
}

impl CheckDefinition {
    /// Whether this check runs in the `[[databases]]` entry `database`.
    pub fn applies_to(&self, database: &str) -> bool {
        self.database.as_deref().is_none_or(|d| d == database)
    }
}

#[derive(Deserialize)]
struct KindOnly {
    kind: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSql {
    #[allow(dead_code)]
    kind: String,
    database: String,
    dbname: Option<String>,
    description: Option<String>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    query: String,
    expect: SqlExpect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRowCounts {
    #[allow(dead_code)]
    kind: String,
    database: String,
    dbname: Option<String>,
    description: Option<String>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    #[serde(default)]
    tables: Vec<CountedTable>,
    #[serde(default)]
    groups: Vec<CountedGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlob {
    #[allow(dead_code)]
    kind: String,
    database: String,
    dbname: Option<String>,
    description: Option<String>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    table: String,
    #[serde(default = "default_id_column")]
    id_column: String,
    data_column: String,
    digest_column: String,
}

fn default_id_column() -> String {
    "id".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    #[allow(dead_code)]
    kind: String,
    database: String,
    dbname: Option<String>,
    description: Option<String>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    command: Vec<String>,
    workdir: Option<PathBuf>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    error_codes: Vec<i32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAmcheck {
    #[allow(dead_code)]
    kind: String,
    database: Option<String>,
    dbname: Option<String>,
    description: Option<String>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    #[serde(default = "yes")]
    heapallindexed: bool,
    #[serde(default = "yes")]
    parent_check: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheckTable {
    #[allow(dead_code)]
    kind: String,
    database: Option<String>,
    dbname: Option<String>,
    description: Option<String>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    #[serde(default = "yes")]
    extended: bool,
}

/// Environment variables drill sets for a `command` check; `env` may not
/// override them.
pub const COMMAND_ENV: [&str; 6] = [
    "DATABASE_URL",
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGDATABASE",
];

/// Load every `*.toml` in `dir` (sorted by name). A missing directory means
/// no checks.
pub(super) fn load_dir(
    dir: &Path,
    databases: &[DatabaseConfig],
    default_timeout: Duration,
) -> Result<Vec<CheckDefinition>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ConfigError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| load_file_with(f, databases, default_timeout))
        .collect()
}

/// Load one check file; `default_timeout` (`timeouts.check`) for a file
/// that gives no `timeout`.
///
/// # Errors
/// [`ConfigError`] naming the file and key: an unknown kind, an unknown key,
/// a database not in `drill.toml`, an `expect` that cannot be judged, a
/// `max_drop` outside 0–1, an empty command.
pub(super) fn load_file_with(
    path: &Path,
    databases: &[DatabaseConfig],
    default_timeout: Duration,
) -> Result<CheckDefinition, ConfigError> {
    let text = super::read(path)?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let folder = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let kind: KindOnly = parse_toml(path, &text)?;
    let kind = match kind.kind {
        Some(toml::Value::String(k)) => k,
        Some(other) => {
            return Err(ConfigError::invalid(
                path,
                "kind",
                format!(
                    "must be a string, got {}; expected one of {}",
                    other.type_str(),
                    KINDS.join(", ")
                ),
            ))
        }
        None => {
            return Err(ConfigError::invalid(
                path,
                "kind",
                format!("is missing; expected one of {}", KINDS.join(", ")),
            ))
        }
    };
    let invalid = |key: &str, message: String| ConfigError::invalid(path, key, message);
    let timeout = |t: Option<Duration>| -> Result<Duration, ConfigError> {
        match t {
            Some(d) if d.is_zero() => Err(invalid("timeout", "must be longer than 0 s".into())),
            Some(d) => Ok(d),
            None => Ok(default_timeout),
        }
    };
    let make = |database: Option<String>,
                dbname: Option<String>,
                description: Option<String>,
                t: Option<Duration>,
                spec: CheckSpec| {
        Ok::<_, ConfigError>(CheckDefinition {
            name: name.clone(),
            file: path.to_path_buf(),
            database,
            dbname,
            description,
            timeout: timeout(t)?,
            spec,
        })
    };
    let def = match kind.as_str() {
        "sql" => {
            let raw: RawSql = parse_toml(path, &text)?;
            validate_expect(path, &raw.expect)?;
            if raw.query.trim().is_empty() {
                return Err(invalid("query", "is empty".into()));
            }
            make(
                Some(raw.database),
                raw.dbname,
                raw.description,
                raw.timeout,
                CheckSpec::Sql {
                    query: raw.query,
                    expect: raw.expect,
                },
            )?
        }
        "row-counts" => {
            let raw: RawRowCounts = parse_toml(path, &text)?;
            if raw.tables.is_empty() && raw.groups.is_empty() {
                return Err(invalid(
                    "tables",
                    "a row-counts check needs at least one [[tables]] or [[groups]] entry".into(),
                ));
            }
            let mut names = std::collections::BTreeSet::new();
            for (i, t) in raw.tables.iter().enumerate() {
                let key = format!("tables[{i}]");
                if split_table(&t.table).is_none() {
                    return Err(invalid(
                        &format!("{key}.table"),
                        format!("`{}` is not `table` or `schema.table`", t.table),
                    ));
                }
                validate_drop(path, &key, t.max_drop)?;
                if !names.insert(t.table.clone()) {
                    return Err(invalid(
                        &format!("{key}.table"),
                        format!("`{}` is listed twice", t.table),
                    ));
                }
            }
            for (i, g) in raw.groups.iter().enumerate() {
                let key = format!("groups[{i}]");
                if g.name.trim().is_empty() {
                    return Err(invalid(&format!("{key}.name"), "is empty".into()));
                }
                if g.query.trim().is_empty() {
                    return Err(invalid(&format!("{key}.query"), "is empty".into()));
                }
                validate_drop(path, &key, g.max_drop)?;
                if !names.insert(g.name.clone()) {
                    return Err(invalid(
                        &format!("{key}.name"),
                        format!("`{}` is used twice", g.name),
                    ));
                }
            }
            make(
                Some(raw.database),
                raw.dbname,
                raw.description,
                raw.timeout,
                CheckSpec::RowCounts {
                    tables: raw.tables,
                    groups: raw.groups,
                },
            )?
        }
        "blob-roundtrip" => {
            let raw: RawBlob = parse_toml(path, &text)?;
            if split_table(&raw.table).is_none() {
                return Err(invalid(
                    "table",
                    format!("`{}` is not `table` or `schema.table`", raw.table),
                ));
            }
            for (key, v) in [
                ("id_column", &raw.id_column),
                ("data_column", &raw.data_column),
                ("digest_column", &raw.digest_column),
            ] {
                if v.trim().is_empty() {
                    return Err(invalid(key, "is empty".into()));
                }
            }
            make(
                Some(raw.database),
                raw.dbname,
                raw.description,
                raw.timeout,
                CheckSpec::BlobRoundtrip {
                    table: raw.table,
                    id_column: raw.id_column,
                    data_column: raw.data_column,
                    digest_column: raw.digest_column,
                },
            )?
        }
        "command" => {
            let raw: RawCommand = parse_toml(path, &text)?;
            let mut argv = raw.command;
            match argv.first() {
                None => {
                    return Err(invalid(
                        "command",
                        "is empty; give the program and its arguments, e.g. [\"python3\", \"-m\", \"frame.cli\", \"integrity-check\"]".into(),
                    ))
                }
                Some(p) if p.trim().is_empty() => {
                    return Err(invalid("command", "names an empty program".into()))
                }
                Some(p) if p.contains('/') && Path::new(p).is_relative() => {
                    argv[0] = folder.join(p).to_string_lossy().into_owned();
                }
                Some(_) => {}
            }
            for k in raw.env.keys() {
                if k.starts_with("PG") || k == "DATABASE_URL" {
                    return Err(invalid(
                        &format!("env.{k}"),
                        format!(
                            "drill sets the connection variables ({}) to the sandbox itself and clears every other PG* variable; remove `{k}`",
                            COMMAND_ENV.join(", ")
                        ),
                    ));
                }
            }
            if raw.error_codes.contains(&0) {
                return Err(invalid(
                    "error_codes",
                    "lists 0, which is a pass; list only the codes that mean the program could not check".into(),
                ));
            }
            let workdir = match raw.workdir {
                Some(w) if w.is_relative() => folder.join(w),
                Some(w) => w,
                None => folder.clone(),
            };
            make(
                Some(raw.database),
                raw.dbname,
                raw.description,
                raw.timeout,
                CheckSpec::Command {
                    argv,
                    workdir,
                    env: raw.env,
                    error_codes: raw.error_codes,
                },
            )?
        }
        "amcheck" => {
            let raw: RawAmcheck = parse_toml(path, &text)?;
            if raw.database.is_none() && raw.dbname.is_some() {
                return Err(invalid(
                    "dbname",
                    "needs `database`: without it the check runs in every restored database, each in its own dbname".into(),
                ));
            }
            make(
                raw.database,
                raw.dbname,
                raw.description,
                raw.timeout,
                CheckSpec::Amcheck {
                    heapallindexed: raw.heapallindexed,
                    parent_check: raw.parent_check,
                },
            )?
        }
        "check-table" => {
            let raw: RawCheckTable = parse_toml(path, &text)?;
            if raw.database.is_none() && raw.dbname.is_some() {
                return Err(invalid(
                    "dbname",
                    "needs `database`: without it the check runs in every restored database, each in its own dbname".into(),
                ));
            }
            make(
                raw.database,
                raw.dbname,
                raw.description,
                raw.timeout,
                CheckSpec::CheckTable {
                    extended: raw.extended,
                },
            )?
        }
        k => {
            return Err(invalid(
                "kind",
                format!(
                    "unknown check kind `{k}`; expected one of {}",
                    KINDS.join(", ")
                ),
            ))
        }
    };
    if let Some(db) = &def.database {
        if !databases.iter().any(|d| &d.name == db) {
            return Err(ConfigError::invalid(
                path,
                "database",
                format!(
                    "names `{db}`, which is not a [[databases]] entry in drill.toml (known: {})",
                    databases
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    Ok(def)
}

fn validate_expect(path: &Path, e: &SqlExpect) -> Result<(), ConfigError> {
    let scalar = e.equals.is_some() || e.min.is_some() || e.max.is_some();
    if scalar == e.no_rows {
        return Err(ConfigError::invalid(
            path,
            "expect",
            "give either a scalar comparison (equals, min, max) or no_rows = true",
        ));
    }
    if let Some(v) = &e.equals {
        if !matches!(
            v,
            toml::Value::Integer(_)
                | toml::Value::Float(_)
                | toml::Value::String(_)
                | toml::Value::Boolean(_)
        ) {
            return Err(ConfigError::invalid(
                path,
                "expect.equals",
                "must be a number, a string or a boolean",
            ));
        }
    }
    Ok(())
}

fn validate_drop(path: &Path, key: &str, max_drop: Option<f64>) -> Result<(), ConfigError> {
    match max_drop {
        Some(d) if !(0.0..=1.0).contains(&d) => Err(ConfigError::invalid(
            path,
            format!("{key}.max_drop"),
            format!("is {d}; give a fraction from 0.0 to 1.0 (0.1 = the count may fall by 10 %)"),
        )),
        _ => Ok(()),
    }
}

/// Split `schema.table` or `table` into its identifiers (not SQL: drill
/// quotes each part). `None` when a part is empty or there are more than two.
pub fn split_table(name: &str) -> Option<(Option<&str>, &str)> {
    let mut parts = name.split('.');
    let (a, b, rest) = (parts.next(), parts.next(), parts.next());
    match (a, b, rest) {
        (Some(t), None, None) if !t.is_empty() => Some((None, t)),
        (Some(s), Some(t), None) if !s.is_empty() && !t.is_empty() => Some((Some(s), t)),
        _ => None,
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Compression, DumpFormat};

    fn dbs() -> Vec<DatabaseConfig> {
        vec![DatabaseConfig {
            name: "pagila".into(),
            path: "/dumps/pagila.dump".into(),
            format: DumpFormat::Custom,
            compression: Compression::None,
            image: "postgres:16".into(),
            dbname: "pagila".into(),
            roles: vec![],
            kind: crate::kind::default_kind(),
            increments: vec![],
            accept_missing_trailer: false,
            recovery: None,
        }]
    }

    fn load_text(text: &str) -> Result<CheckDefinition, ConfigError> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        load_file_with(&p, &dbs(), DEFAULT_TIMEOUT)
    }

    #[test]
    fn typo_in_kind_is_named() {
        let e = load_text("kind = \"sqll\"\ndatabase = \"pagila\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c.toml") && e.contains("`kind`") && e.contains("sqll"),
            "{e}"
        );
    }

    #[test]
    fn unknown_database_is_named() {
        let e = load_text(
            "kind = \"sql\"\ndatabase = \"nope\"\nquery = \"select 1\"\n[expect]\nequals = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("nope") && e.contains("pagila"), "{e}");
    }

    #[test]
    fn expect_must_be_one_mode() {
        let e = load_text("kind = \"sql\"\ndatabase = \"pagila\"\nquery = \"select 1\"\n[expect]\nequals = 1\nno_rows = true\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expect"), "{e}");
        let ok = load_text("kind = \"sql\"\ndatabase = \"pagila\"\nquery = \"select 1\"\ntimeout = \"30s\"\n[expect]\nmin = 1\n").unwrap();
        assert_eq!(ok.timeout, Duration::from_secs(30));
    }

    #[test]
    fn unknown_key_in_expect() {
        let e = load_text(
            "kind = \"sql\"\ndatabase = \"pagila\"\nquery = \"select 1\"\n[expect]\nequal = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("expect") && e.contains("equal"), "{e}");
    }

    #[test]
    fn row_counts_are_validated() {
        let e = load_text("kind = \"row-counts\"\ndatabase = \"pagila\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("[[tables]] or [[groups]]"), "{e}");
        let e = load_text(
            "kind = \"row-counts\"\ndatabase = \"pagila\"\n[[tables]]\ntable = \"rental\"\nmin = 1\nmax_drop = 1.5\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("tables[0].max_drop") && e.contains("1.5"), "{e}");
        let e = load_text(
            "kind = \"row-counts\"\ndatabase = \"pagila\"\n[[tables]]\ntable = \"a.b.c\"\nmin = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("tables[0].table"), "{e}");
        let e = load_text(
            "kind = \"row-counts\"\ndatabase = \"pagila\"\n[[tables]]\ntable = \"rental\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("min"), "min is required: {e}");
        let ok = load_text(
            "kind = \"row-counts\"\ndatabase = \"pagila\"\n[[tables]]\ntable = \"public.rental\"\nmin = 1\n\n[[groups]]\nname = \"per store\"\nquery = \"select 1, 2\"\nmin = 0\nmax_drop = 0.1\n",
        )
        .unwrap();
        assert_eq!(ok.spec.kind(), "row-counts");
        assert!(ok.spec.concurrent());
    }

    #[test]
    fn command_env_cannot_redirect_the_connection() {
        let e = load_text(
            "kind = \"command\"\ndatabase = \"pagila\"\ncommand = [\"true\"]\n[env]\nPGHOSTADDR = \"10.0.0.1\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("env.PGHOSTADDR"), "{e}");
        let e = load_text("kind = \"command\"\ndatabase = \"pagila\"\ncommand = []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`command`") && e.contains("empty"), "{e}");
        let ok = load_text(
            "kind = \"command\"\ndatabase = \"pagila\"\ncommand = [\"bin/check\", \"--all\"]\n",
        )
        .unwrap();
        let CheckSpec::Command { argv, workdir, .. } = &ok.spec else {
            panic!("command")
        };
        assert!(Path::new(&argv[0]).is_absolute() && argv[0].ends_with("bin/check"));
        assert_eq!(workdir, ok.file.parent().unwrap());
        assert!(!ok.spec.concurrent(), "a command runs alone");
    }

    #[test]
    fn amcheck_without_database_runs_everywhere() {
        let ok = load_text("kind = \"amcheck\"\n").unwrap();
        assert!(ok.database.is_none() && ok.applies_to("pagila") && ok.applies_to("x"));
        let one =
            load_text("kind = \"amcheck\"\ndatabase = \"pagila\"\nparent_check = false\n").unwrap();
        assert!(one.applies_to("pagila") && !one.applies_to("x"));
        let e = load_text("kind = \"amcheck\"\ndbname = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("dbname"), "{e}");
        let e = load_text("kind = 3\n").unwrap_err().to_string();
        assert!(e.contains("`kind`") && e.contains("string"), "{e}");
    }
}
