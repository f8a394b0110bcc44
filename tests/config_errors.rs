//! Configuration errors exit 2 and name the file, the key and what is
//! expected; every example config the project ships parses.

mod common;

use std::path::Path;

use common::{drill, root};

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

const BASE: &str = "[tiers.local]\nrepository = \"/nonexistent\"\npassword_file = \"/nonexistent\"\n\n[[databases]]\nname = \"pagila\"\npath = \"/dumps/pagila.dump\"\nformat = \"custom\"\n";

#[test]
fn unknown_key_in_config_exits_2_naming_file_and_key() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(
        d.path(),
        "drill.toml",
        &format!("{BASE}\n[sandbox]\nimage = \"postgres:16\"\nmemroy = \"1GiB\"\n"),
    );
    let run = drill(&cfg, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("drill.toml:12"), "{}", run.stderr);
    assert!(run.stderr.contains("sandbox.memroy"), "{}", run.stderr);
    assert!(
        run.stderr.contains("`memory`"),
        "lists the expected keys: {}",
        run.stderr
    );
}

#[test]
fn typo_in_check_kind_exits_2_naming_the_check_file() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(d.path(), "drill.toml", BASE);
    write(
        d.path(),
        "checks/rentals.toml",
        "kind = \"sqll\"\ndatabase = \"pagila\"\nquery = \"select 1\"\n[expect]\nequals = 1\n",
    );
    let run = drill(&cfg, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("checks/rentals.toml"), "{}", run.stderr);
    assert!(
        run.stderr.contains("unknown check kind `sqll`"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_duration_and_unknown_tier_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(
        d.path(),
        "drill.toml",
        &format!("[policy]\nmax_rto = \"4 hours-ish\"\n{BASE}"),
    );
    let run = drill(&cfg, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("policy.max_rto"), "{}", run.stderr);

    let cfg = write(d.path(), "drill.toml", BASE);
    let run = drill(&cfg, &["--tier", "cold"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("tier `cold` is not configured"),
        "{}",
        run.stderr
    );
}

#[test]
fn missing_config_file_exits_2() {
    let run = drill(Path::new("/nonexistent/drill.toml"), &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("/nonexistent/drill.toml"),
        "{}",
        run.stderr
    );
}

#[test]
fn recovery_keys_exit_2_where_they_do_not_belong() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(
        d.path(),
        "drill.toml",
        &format!("{BASE}wal = \"/backups/wal\"\n"),
    );
    let run = drill(&cfg, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("databases[0].wal"), "{}", run.stderr);
    assert!(run.stderr.contains("basebackup"), "{}", run.stderr);
    let cfg = write(
        d.path(),
        "drill.toml",
        "[tiers.local]\nrepository = \"/nonexistent\"\npassword_file = \"/nonexistent\"\n\n[[databases]]\nname = \"auth\"\npath = \"/backups/auth_db\"\nformat = \"basebackup\"\ntarget = \"yesterday 3am\"\n",
    );
    let run = drill(&cfg, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("databases[0].target"), "{}", run.stderr);
    assert!(run.stderr.contains("RFC 3339"), "{}", run.stderr);
}

#[test]
fn a_retention_policy_holds_only_retention_flags() {
    let d = tempfile::tempdir().unwrap();
    let tier = "[tiers.local]\nrepository = \"/nonexistent\"\npassword_file = \"/nonexistent\"\n";
    let db = "\n[[databases]]\nname = \"frame\"\npath = \"/dumps/frame.sql\"\n";
    for (policy, says) in [
        (
            "[\"--keep-daily\", \"7\", \"--prune\"]",
            "`--prune` is not a retention flag",
        ),
        ("[\"--host\", \"db1\"]", "holds no --keep-* flag"),
    ] {
        let cfg = write(
            d.path(),
            "drill.toml",
            &format!("{tier}retention = {policy}\n{db}"),
        );
        let run = drill(&cfg, &["doctor"]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr.contains("tiers.local.retention") && run.stderr.contains(says),
            "{}",
            run.stderr
        );
    }
    let cfg = write(
        d.path(),
        "drill.toml",
        &format!("{tier}retention = [\"--keep-daily\", \"7\", \"--keep-within=30d\"]\n{db}"),
    );
    let c = drill::config::load(&cfg).unwrap();
    assert_eq!(
        c.tiers["local"].retention.as_deref().unwrap(),
        ["--keep-daily", "7", "--keep-within=30d"]
    );
}

#[test]
fn every_shipped_example_config_parses() {
    let examples = [
        root().join("examples/drill.toml"),
        root().join("examples/demo.toml"),
    ];
    for e in &examples {
        let c = drill::config::load(e).unwrap_or_else(|err| panic!("{}: {err}", e.display()));
        assert!(!c.databases.is_empty(), "{}", e.display());
    }
    // The spec's example, verbatim, is examples/drill.toml.
    let spec = drill::config::load(&examples[0]).unwrap();
    assert_eq!(spec.timezone, chrono_tz::Asia::Seoul);
    assert_eq!(spec.fallback, ["local", "ring", "cold"]);
    assert_eq!(spec.databases[1].image, "postgres:{major}");
    assert_eq!(spec.databases[2].kind.name(), "mariadb");
    assert_eq!(
        spec.databases[2].image, "auto",
        "MariaDB's auto is mariadb:11"
    );
    assert_eq!(spec.databases[2].increments, ["/backup/incremental_*.sql"]);
    let auth = spec.databases[3]
        .recovery
        .as_ref()
        .expect("auth is a base backup");
    assert_eq!(auth.wal.as_deref(), Some("/backups/auth_db/wal"));
    assert_eq!(auth.target, drill::config::RecoveryTarget::Latest);
    assert_eq!(
        spec.policy.max_data_loss,
        Some(std::time::Duration::from_secs(300))
    );
    assert_eq!(spec.sandbox.memory_bytes, 2 * 1024 * 1024 * 1024);
    // Every shipped check file parses against the demo config's databases.
    let demo = drill::config::load(&examples[1]).unwrap();
    assert!(!demo.checks.is_empty(), "the demo runs the shipped checks");
}

#[test]
fn toml_syntax_error_names_file_line_and_column() {
    let d = tempfile::tempdir().unwrap();
    // Line 11, the `[sandbox` header missing its `]`.
    let cfg = write(
        d.path(),
        "drill.toml",
        &format!("{BASE}\n[sandbox\nimage = \"postgres:16\"\n"),
    );
    let run = drill(&cfg, &["status"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("drill.toml:10:9: not valid TOML: "),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("fix the TOML at line 10, column 9"),
        "says what to do: {}",
        run.stderr
    );
    // A check file's syntax error is named the same way.
    let cfg = write(d.path(), "drill.toml", BASE);
    write(
        d.path(),
        "checks/rentals.toml",
        "kind = \"sql\"\ndatabase = \"pagila\nquery = \"select 1\"\n",
    );
    let run = drill(&cfg, &["status"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("checks/rentals.toml:2:"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("not valid TOML"), "{}", run.stderr);
}

#[test]
fn a_decimal_size_is_refused_and_a_binary_one_read() {
    let d = tempfile::tempdir().unwrap();
    for (memory, hint) in [("1GB", "`1GiB`"), ("512M", "`512MiB`"), ("2g", "`2GiB`")] {
        let cfg = write(
            d.path(),
            "drill.toml",
            &format!("{BASE}\n[sandbox]\nmemory = \"{memory}\"\n"),
        );
        let run = drill(&cfg, &["status"]);
        assert_eq!(run.code, 2, "{memory}: {}", run.stderr);
        assert!(
            run.stderr.contains("drill.toml:11:") && run.stderr.contains("sandbox.memory"),
            "{memory}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("ambiguous") && run.stderr.contains(&format!("write {hint}")),
            "{memory}: {}",
            run.stderr
        );
    }
    for memory in ["\"1GiB\"", "\"512 MiB\"", "1073741824"] {
        let cfg = write(
            d.path(),
            "drill.toml",
            &format!("{BASE}\n[sandbox]\nmemory = {memory}\n"),
        );
        let run = drill(&cfg, &["status"]);
        assert_eq!(run.code, 0, "{memory}: {}", run.stderr);
    }
}
