//! Which image a database's sandbox runs, and whether its server can take
//! the dump.
//!
//! `image` is a reference (`postgres:16`, `registry.example/pg:15-postgis`),
//! a template in which `{major}` stands for the major version of the
//! `pg_dump` that wrote the dump (`postgres:{major}`,
//! `drill-postgres:{major}`), or `auto`, which means `postgres:{major}`
//! and is the default. The dump's version is read from its head before
//! the sandbox starts ([`super::head`]).
//!
//! A server older than the `pg_dump` that wrote the dump cannot be relied
//! on to take it (PostgreSQL docs, `pg_dump`: "not guaranteed to restore
//! into an older major version"; newer dumps set parameters such as
//! `transaction_timeout` that older servers reject), so drill does not try:
//! see [`check_server`].

use super::head::{major_of, DumpVersions};

/// `image = "auto"`.
pub const AUTO: &str = "auto";
/// What `auto` means.
pub const AUTO_TEMPLATE: &str = "postgres:{major}";
/// The placeholder for the dump's `pg_dump` major version.
pub const MAJOR: &str = "{major}";

/// Check an `image` value from the config.
///
/// # Errors
/// A sentence saying what is wrong, for a config error.
pub fn validate(image: &str) -> Result<(), String> {
    if image.trim().is_empty() {
        return Err("is empty; give an image such as \"postgres:16\", a template such as \"postgres:{major}\", or \"auto\"".into());
    }
    let rest = image.replace(MAJOR, "");
    if rest.contains('{') || rest.contains('}') {
        return Err(format!(
            "`{image}`: the only placeholder is {{major}} (the major version of the pg_dump that made the dump), e.g. \"postgres:{{major}}\""
        ));
    }
    Ok(())
}

/// Whether `image` depends on the dump (`auto` or a `{major}` template).
pub fn is_template(image: &str) -> bool {
    image == AUTO || image.contains(MAJOR)
}

/// The image to run for a dump with `versions`.
///
/// # Errors
/// When `image` is a template and the dump's head did not name its
/// `pg_dump` version: a sentence with the fix.
pub fn resolve(image: &str, versions: &DumpVersions, path: &str) -> Result<String, String> {
    if !is_template(image) {
        return Ok(image.to_string());
    }
    let template = if image == AUTO { AUTO_TEMPLATE } else { image };
    match versions.pg_dump_major() {
        Some(major) => Ok(template.replace(MAJOR, &major.to_string())),
        None => Err(format!(
            "image = \"{image}\" needs the version of the pg_dump that made {path}, and its head does not say (no `Dumped by pg_dump version` line or archive header); set `image` to a fixed image such as \"postgres:16\""
        )),
    }
}

/// Refuse a sandbox whose server is older than the `pg_dump` that wrote
/// the dump. `sandbox` names it (`sandbox image drill-postgres:15`),
/// `server_version` is its `server_version`.
///
/// # Errors
/// The sentence for the report: both versions and the fix.
pub fn check_server(
    sandbox: &str,
    server_version: &str,
    database: &str,
    versions: &DumpVersions,
) -> Result<(), String> {
    let (Some(dump_major), Some(server_major)) =
        (versions.pg_dump_major(), major_of(server_version))
    else {
        return Ok(());
    };
    if server_major >= dump_major {
        return Ok(());
    }
    let tool = versions.pg_dump.as_deref().unwrap_or_default();
    let tool = tool.split(" (").next().unwrap_or(tool);
    Err(format!(
        "{sandbox} runs PostgreSQL {server_version}; {database} was dumped by pg_dump {tool}: use image = \"postgres:{{major}}\" or an image of PostgreSQL ≥ {dump_major}; not a verdict on the backup"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(tool: &str) -> DumpVersions {
        DumpVersions {
            server: Some(tool.into()),
            pg_dump: Some(tool.into()),
            archive: None,
            tool: None,
        }
    }

    #[test]
    fn templates() {
        assert_eq!(
            resolve("auto", &v("17.6 (Debian)"), "/d").unwrap(),
            "postgres:17"
        );
        assert_eq!(
            resolve("drill-postgres:{major}", &v("15.18"), "/d").unwrap(),
            "drill-postgres:15"
        );
        assert_eq!(
            resolve("postgres:16", &DumpVersions::default(), "/d").unwrap(),
            "postgres:16"
        );
        let e = resolve("auto", &DumpVersions::default(), "/dumps/x.sql").unwrap_err();
        assert!(
            e.contains("/dumps/x.sql") && e.contains("fixed image"),
            "{e}"
        );
        assert!(validate("postgres:{minor}").is_err());
        assert!(validate("postgres:{major}-postgis").is_ok());
    }

    #[test]
    fn older_server_is_refused() {
        let e = check_server(
            "sandbox image drill-postgres:15",
            "15.20",
            "frame",
            &v("17.6 (Debian 17.6-1)"),
        )
        .unwrap_err();
        assert!(
            e.contains("15.20") && e.contains("pg_dump 17.6:") && e.contains("≥ 17"),
            "{e}"
        );
        assert!(check_server("x", "17.2", "frame", &v("17.6")).is_ok());
        assert!(check_server("x", "18.0", "frame", &v("17.6")).is_ok());
        assert!(check_server("x", "16.4", "frame", &DumpVersions::default()).is_ok());
    }
}
