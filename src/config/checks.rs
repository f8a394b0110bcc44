//! `checks/*.toml`: one check per file. The file's stem is the check's name;
//! `kind` selects the schema of the rest of the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{parse_toml, ConfigError, DatabaseConfig};

/// Check kinds this version of drill runs.
const KNOWN_KINDS: [&str; 1] = ["sql"];
/// Kinds of the spec that a later version adds.
const PLANNED_KINDS: [&str; 4] = ["row-counts", "blob-roundtrip", "command", "amcheck"];

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

/// The kind-specific part of a check.
#[derive(Debug, Clone)]
pub enum CheckSpec {
    /// `kind = "sql"`.
    Sql {
        /// The query, run with the simple query protocol (one statement).
        query: String,
        /// What the result must satisfy.
        expect: SqlExpect,
    },
}

impl CheckSpec {
    /// The kind as spelled in check files and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            CheckSpec::Sql { .. } => "sql",
        }
    }
}

/// One loaded check file.
#[derive(Debug, Clone)]
pub struct CheckDefinition {
    /// The file stem, e.g. `frame-integrity`.
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// The `[[databases]]` entry it runs against.
    pub database: String,
    /// The PostgreSQL database to connect to, overriding the entry's `dbname`.
    pub dbname: Option<String>,
    /// Free text for reports.
    pub description: Option<String>,
    /// How long the check may run (default 10 minutes).
    pub timeout: Duration,
    /// Kind and parameters.
    pub spec: CheckSpec,
}

#[derive(Deserialize)]
struct KindOnly {
    kind: Option<String>,
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

/// Load every `*.toml` in `dir` (sorted by name). A missing directory means
/// no checks.
pub(super) fn load_dir(
    dir: &Path,
    databases: &[DatabaseConfig],
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
    files.iter().map(|f| load_file(f, databases)).collect()
}

/// Load one check file.
///
/// # Errors
/// [`ConfigError`] naming the file and key: an unknown kind, an unknown key,
/// a database not in `drill.toml`, an `expect` that cannot be judged.
pub fn load_file(
    path: &Path,
    databases: &[DatabaseConfig],
) -> Result<CheckDefinition, ConfigError> {
    let text = super::read(path)?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let kind: KindOnly = parse_toml(path, &text)?;
    let kind = kind.kind.ok_or_else(|| {
        ConfigError::invalid(
            path,
            "kind",
            format!("is missing; expected one of {}", KNOWN_KINDS.join(", ")),
        )
    })?;
    let def = match kind.as_str() {
        "sql" => {
            let raw: RawSql = parse_toml(path, &text)?;
            let e = &raw.expect;
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
            if raw.query.trim().is_empty() {
                return Err(ConfigError::invalid(path, "query", "is empty"));
            }
            CheckDefinition {
                name,
                file: path.to_path_buf(),
                database: raw.database,
                dbname: raw.dbname,
                description: raw.description,
                timeout: raw.timeout.unwrap_or(Duration::from_secs(600)),
                spec: CheckSpec::Sql {
                    query: raw.query,
                    expect: raw.expect,
                },
            }
        }
        k if PLANNED_KINDS.contains(&k) => {
            return Err(ConfigError::invalid(
                path,
                "kind",
                format!(
                    "check kind `{k}` is not supported by this version of drill (supported: {})",
                    KNOWN_KINDS.join(", ")
                ),
            ))
        }
        k => {
            return Err(ConfigError::invalid(
                path,
                "kind",
                format!(
                    "unknown check kind `{k}`; expected one of {}",
                    KNOWN_KINDS
                        .iter()
                        .chain(PLANNED_KINDS.iter())
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
        }
    };
    if !databases.iter().any(|d| d.name == def.database) {
        return Err(ConfigError::invalid(
            path,
            "database",
            format!(
                "names `{}`, which is not a [[databases]] entry in drill.toml (known: {})",
                def.database,
                databases
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(def)
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
        }]
    }

    fn load_text(text: &str) -> Result<CheckDefinition, ConfigError> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        load_file(&p, &dbs())
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
}
