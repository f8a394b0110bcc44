//! Environment or backup: why a restore tool failed.
//!
//! Every failure of `psql` or `pg_restore` is looked up in [`CAUSES`], one
//! table, by the first error line the tool printed (with `ON_ERROR_STOP` /
//! `--exit-on-error` it stops at the first error, so that line is the
//! cause). A cause of class [`Class::Environment`] means the sandbox cannot
//! take this backup (a role, extension, locale or tablespace it lacks, a
//! server older than the dump, memory or disk): no verdict on the backup
//! (exit 3), and the entry says what to do. A cause of class
//! [`Class::Damage`] means the backup is bad (exit 1). An error the table
//! does not know is damage too (fail closed), and its text goes into the
//! report.
//!
//! The patterns are PostgreSQL's own message texts (`src/backend/po` msgids,
//! as psql and pg_restore print them after `ERROR:` or `error:`); the
//! SQLSTATE is the one the server reports with them (PostgreSQL docs,
//! Appendix A). Failures of restic itself (a damaged pack, a missing blob)
//! are classified where restic is driven (`tier`), before the restore tool's
//! output is looked at.

/// What a restore failure says about the backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The sandbox cannot take this backup; the backup may be fine.
    Environment,
    /// The backup is bad.
    Damage,
}

/// One known cause of a restore failure.
#[derive(Debug)]
pub struct Cause {
    /// Short name, as it appears in the report (`restore.cause`).
    pub name: &'static str,
    /// Environment or damage.
    pub class: Class,
    /// The SQLSTATE PostgreSQL reports with it, when it is a server error.
    pub sqlstate: Option<&'static str>,
    /// The message, with `{}` where the object's name stands (matched
    /// anywhere in the error line, case-sensitively as PostgreSQL writes
    /// it).
    pub pattern: &'static str,
    /// What to do, with `{}` for the object's name.
    pub fix: &'static str,
}

const NEWER: &str = "the sandbox's PostgreSQL is older than the one the dump was made for: use image = \"postgres:{major}\" (or \"auto\"), or an image of PostgreSQL at least as new as the dump's pg_dump";

/// The table. The first entry whose pattern is in the first error line
/// wins; order the more specific before the more general.
pub const CAUSES: &[Cause] = &[
    // --- environment: the sandbox lacks what the dump needs -------------
    Cause {
        name: "missing-role",
        class: Class::Environment,
        sqlstate: Some("42704"),
        pattern: "role \"{}\" does not exist",
        fix: "drill creates the roles it finds the dump referring to, but not this one: add roles = [\"{}\"] to the database's [[databases]] entry",
    },
    Cause {
        name: "unknown-setting",
        class: Class::Environment,
        sqlstate: Some("42704"),
        pattern: "unrecognized configuration parameter \"{}\"",
        fix: NEWER,
    },
    Cause {
        name: "archive-version",
        class: Class::Environment,
        sqlstate: None,
        pattern: "unsupported version ({}) in file header",
        fix: NEWER,
    },
    Cause {
        name: "psql-too-old",
        class: Class::Environment,
        sqlstate: None,
        pattern: "invalid command \\unrestrict",
        fix: "the sandbox's psql does not know this meta-command of a newer pg_dump (\\restrict came with 17.6, 16.10, 15.14): use a newer image of the same major, or image = \"postgres:{major}\"",
    },
    Cause {
        name: "psql-too-old",
        class: Class::Environment,
        sqlstate: None,
        pattern: "invalid command \\restrict",
        fix: "the sandbox's psql does not know this meta-command of a newer pg_dump (\\restrict came with 17.6, 16.10, 15.14): use a newer image of the same major, or image = \"postgres:{major}\"",
    },
    Cause {
        name: "extension-missing",
        class: Class::Environment,
        sqlstate: Some("0A000"),
        pattern: "extension \"{}\" is not available",
        fix: "the sandbox image does not have extension {}: use an image that has it installed (for example one built FROM the sandbox image with the extension's package) and set `image`",
    },
    Cause {
        name: "extension-missing",
        class: Class::Environment,
        sqlstate: Some("58P01"),
        pattern: "could not open extension control file \"{}\"",
        fix: "the sandbox image does not have the extension whose control file is {}: use an image that has it installed and set `image`",
    },
    Cause {
        name: "library-missing",
        class: Class::Environment,
        sqlstate: Some("58P01"),
        pattern: "could not access file \"{}\": No such file or directory",
        fix: "the sandbox image does not have the library {} (an extension's): use an image that has it installed and set `image`",
    },
    Cause {
        name: "locale-missing",
        class: Class::Environment,
        sqlstate: Some("42809"),
        pattern: "invalid locale name: \"{}\"",
        fix: "the sandbox image does not have locale {}: use an image that has it (localedef or the locales package) and set `image`",
    },
    Cause {
        name: "locale-missing",
        class: Class::Environment,
        sqlstate: Some("42809"),
        pattern: "invalid LC_COLLATE locale name: \"{}\"",
        fix: "the sandbox image does not have locale {}: use an image that has it (localedef or the locales package) and set `image`",
    },
    Cause {
        name: "locale-missing",
        class: Class::Environment,
        sqlstate: Some("42809"),
        pattern: "invalid LC_CTYPE locale name: \"{}\"",
        fix: "the sandbox image does not have locale {}: use an image that has it (localedef or the locales package) and set `image`",
    },
    Cause {
        name: "locale-missing",
        class: Class::Environment,
        sqlstate: Some("22023"),
        pattern: "could not create locale \"{}\"",
        fix: "the sandbox image does not have locale {}: use an image that has it (localedef or the locales package) and set `image`",
    },
    Cause {
        name: "collation-missing",
        class: Class::Environment,
        sqlstate: Some("42704"),
        pattern: "collation \"{}\" for encoding",
        fix: "the sandbox image does not have collation {} (made by initdb from the host's locales): use an image that has the locale and set `image`",
    },
    Cause {
        name: "tablespace-missing",
        class: Class::Environment,
        sqlstate: Some("58P01"),
        pattern: "directory \"{}\" does not exist",
        fix: "the dump creates a tablespace in {}, which the sandbox does not have: drill does not drop tablespaces silently; dump with --no-tablespaces, or restore this database with pg_dump's per-database dump instead of pg_dumpall",
    },
    Cause {
        name: "tablespace-missing",
        class: Class::Environment,
        sqlstate: Some("22023"),
        pattern: "invalid value for parameter \"default_tablespace\": \"{}\"",
        fix: "the dump puts objects in tablespace {}, which the sandbox does not have: drill does not drop tablespaces silently; dump with --no-tablespaces, or restore a dump that creates it",
    },
    Cause {
        name: "tablespace-missing",
        class: Class::Environment,
        sqlstate: Some("42704"),
        pattern: "tablespace \"{}\" does not exist",
        fix: "the dump puts objects in tablespace {}, which the sandbox does not have: dump with --no-tablespaces, or restore a dump that creates it",
    },
    Cause {
        name: "privileges-missing",
        class: Class::Environment,
        sqlstate: Some("42501"),
        pattern: "permission denied for database {}",
        fix: "a role the dump acts as (SET SESSION AUTHORIZATION, SET ROLE) lacks a privilege on the database drill created for the restore ({}); a dump without --create does not carry its database's owner or privileges: take it with --create, or without --use-set-session-authorization",
    },
    Cause {
        name: "privileges-missing",
        class: Class::Environment,
        sqlstate: Some("42501"),
        pattern: "permission denied for schema {}",
        fix: "a role the dump acts as (SET SESSION AUTHORIZATION, SET ROLE) lacks a privilege on schema {}, which the dump grants only later or the sandbox's new database does not grant: take the dump without --use-set-session-authorization",
    },
    Cause {
        name: "out-of-memory",
        class: Class::Environment,
        sqlstate: Some("53200"),
        pattern: "out of memory",
        fix: "the sandbox ran out of memory: raise sandbox.memory and drill again",
    },
    Cause {
        name: "out-of-memory",
        class: Class::Environment,
        sqlstate: Some("53200"),
        pattern: "out of shared memory",
        fix: "the sandbox's server ran out of lock table or shared memory (max_locks_per_transaction) during the restore: not a verdict on the backup; restore the database in a sandbox image configured with more",
    },
    Cause {
        name: "disk-full",
        class: Class::Environment,
        sqlstate: Some("53100"),
        pattern: "could not extend file \"{}\": No space left on device",
        fix: "the sandbox ran out of disk: free space where the Docker engine keeps its volumes (or the local engine's directory) and drill again",
    },
    Cause {
        name: "disk-full",
        class: Class::Environment,
        sqlstate: Some("53100"),
        pattern: "could not write to file \"{}\": No space left on device",
        fix: "the sandbox ran out of disk: free space where the Docker engine keeps its volumes (or the local engine's directory) and drill again",
    },
    Cause {
        name: "server-crashed",
        class: Class::Environment,
        sqlstate: None,
        pattern: "server closed the connection unexpectedly",
        fix: "a server process of the sandbox ended during the restore (killed for memory, most often): see the sandbox's log, raise sandbox.memory and drill again",
    },
    Cause {
        name: "server-crashed",
        class: Class::Environment,
        sqlstate: Some("57P02"),
        pattern: "terminating connection because of crash of another server process",
        fix: "a server process of the sandbox crashed during the restore (killed for memory, most often): see the sandbox's log, raise sandbox.memory and drill again",
    },
    Cause {
        name: "server-crashed",
        class: Class::Environment,
        sqlstate: Some("57P03"),
        pattern: "the database system is in recovery mode",
        fix: "the sandbox's server was recovering from a crashed process (killed for memory, most often): see the sandbox's log, raise sandbox.memory and drill again",
    },
    Cause {
        name: "server-crashed",
        class: Class::Environment,
        sqlstate: None,
        pattern: "a worker process died unexpectedly",
        fix: "a pg_restore worker ended during the restore (killed for memory, most often): raise sandbox.memory, or set sandbox.restore_jobs = 1",
    },
    // --- damage: the backup itself is bad -------------------------------
    Cause {
        name: "syntax-error",
        class: Class::Damage,
        sqlstate: Some("42601"),
        pattern: "syntax error at {}",
        fix: "the dump holds text that is not valid SQL: it is damaged or was edited",
    },
    Cause {
        name: "invalid-input",
        class: Class::Damage,
        sqlstate: Some("22P02"),
        pattern: "invalid input syntax for type {}",
        fix: "a value in the dump's data cannot be read: the dump is damaged",
    },
    Cause {
        name: "invalid-encoding",
        class: Class::Damage,
        sqlstate: Some("22021"),
        pattern: "invalid byte sequence for encoding {}",
        fix: "the dump holds bytes that are not valid text: it is damaged",
    },
    Cause {
        name: "copy-data-damaged",
        class: Class::Damage,
        sqlstate: Some("22P04"),
        pattern: "missing data for column {}",
        fix: "a COPY row of the dump is cut short: the dump is truncated or damaged",
    },
    Cause {
        name: "copy-data-damaged",
        class: Class::Damage,
        sqlstate: Some("22P04"),
        pattern: "extra data after last expected column",
        fix: "a COPY row of the dump has too many fields: the dump is damaged",
    },
    Cause {
        name: "missing-object",
        class: Class::Damage,
        sqlstate: Some("42P01"),
        pattern: "relation \"{}\" does not exist",
        fix: "the dump refers to a table it does not hold: it is damaged, incomplete or was edited",
    },
    Cause {
        name: "constraint-violated",
        class: Class::Damage,
        sqlstate: Some("23505"),
        pattern: "duplicate key value violates unique constraint \"{}\"",
        fix: "the dump's data break its own unique constraint: the data or the dump are damaged",
    },
    Cause {
        name: "constraint-violated",
        class: Class::Damage,
        sqlstate: Some("23503"),
        pattern: "insert or update on table \"{}\" violates foreign key constraint",
        fix: "the dump's data break its own foreign key: the data or the dump are damaged",
    },
    Cause {
        name: "archive-truncated",
        class: Class::Damage,
        sqlstate: None,
        pattern: "could not read from input file: {}",
        fix: "the custom archive ends early or cannot be read: it is truncated or damaged",
    },
    Cause {
        name: "archive-truncated",
        class: Class::Damage,
        sqlstate: None,
        pattern: "unexpected end of file",
        fix: "the archive ends early: it is truncated",
    },
    Cause {
        name: "archive-damaged",
        class: Class::Damage,
        sqlstate: None,
        pattern: "did not find magic string in file header",
        fix: "the custom archive's header is damaged (or the file is not one)",
    },
    Cause {
        name: "archive-damaged",
        class: Class::Damage,
        sqlstate: None,
        pattern: "could not uncompress data: {}",
        fix: "a compressed block of the custom archive is damaged",
    },
];

/// Looked at only for a plain dump that drops its objects before creating
/// them without `IF EXISTS` (`pg_dump --clean` alone): its first `DROP`
/// fails in the sandbox's empty database, as the PostgreSQL docs say it
/// may.
pub const CLEAN_DUMP: &[Cause] = &[Cause {
    name: "clean-dump",
    class: Class::Environment,
    sqlstate: Some("42P01"),
    pattern: "{} does not exist",
    fix: "the dump was taken with --clean but without --if-exists, so it drops objects an empty database does not have (PostgreSQL docs, pg_dump --clean): take it with --clean --if-exists, or without --clean",
}];

/// Name given to an error the table does not know (damage: fail closed).
pub const UNRECOGNISED: &str = "unrecognised";

/// A restore failure, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// The cause's name ([`UNRECOGNISED`] when none matched).
    pub name: &'static str,
    /// Environment or damage.
    pub class: Class,
    /// The object the message names (role, extension, setting…), if any.
    pub object: Option<String>,
    /// What to do, with the object filled in (empty for unrecognised).
    pub fix: String,
}

/// Classify a failed restore by the first error line of its tool.
/// `None` or an unknown line is [`Class::Damage`] named [`UNRECOGNISED`].
pub fn classify(first_error: Option<&str>) -> Classified {
    classify_in(first_error, CAUSES)
}

/// [`classify`] for a plain dump that drops before it creates (see
/// [`CLEAN_DUMP`]): a missing object is the sandbox's empty database.
pub fn classify_clean_dump(first_error: Option<&str>) -> Classified {
    match classify_in(first_error, CLEAN_DUMP) {
        c if c.name == UNRECOGNISED => classify(first_error),
        c => c,
    }
}

fn classify_in(first_error: Option<&str>, table: &[Cause]) -> Classified {
    let Some(line) = first_error else {
        return unrecognised();
    };
    for cause in table {
        if let Some(object) = matches(cause.pattern, line) {
            let fix = match &object {
                Some(o) => cause.fix.replace("{}", o),
                None => cause.fix.to_string(),
            };
            return Classified {
                name: cause.name,
                class: cause.class,
                object,
                fix,
            };
        }
    }
    unrecognised()
}

fn unrecognised() -> Classified {
    Classified {
        name: UNRECOGNISED,
        class: Class::Damage,
        object: None,
        fix: String::new(),
    }
}

/// The message of an error line: what follows the last `ERROR:` (server
/// errors, as psql and pg_restore print them) or else the last `error:`
/// (the tools' own), without pg_restore's `could not execute query: `;
/// the whole line when it has neither.
pub fn message(line: &str) -> &str {
    let m = if let Some(at) = line.rfind("ERROR:") {
        &line[at + "ERROR:".len()..]
    } else if let Some(at) = line.rfind("error:") {
        &line[at + "error:".len()..]
    } else {
        line
    };
    let m = m.trim_start();
    m.strip_prefix("could not execute query: ").unwrap_or(m)
}

/// Whether the message of `line` starts with `pattern`; `Some(Some(name))`
/// with what stands at `{}` (up to the pattern's next literal, or the end
/// of the message). Anchored at the message's start, so that text quoted
/// from the data (`invalid input syntax for type text: "… out of memory"`)
/// never matches another entry.
fn matches(pattern: &str, line: &str) -> Option<Option<String>> {
    let msg = message(line);
    let Some((pre, post)) = pattern.split_once("{}") else {
        return msg.starts_with(pattern).then_some(None);
    };
    let rest = msg.strip_prefix(pre)?;
    if post.is_empty() {
        let object = rest.trim();
        return (!object.is_empty()).then(|| Some(object.to_string()));
    }
    let end = rest.find(post)?;
    (end > 0).then(|| Some(rest[..end].to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Error lines as psql and pg_restore print them, each with the cause it
    /// must get. The server messages were taken from PostgreSQL 15.20 in
    /// the `drill-postgres:15` image (the statements that provoke them are
    /// in the README's table); the `psql:<stdin>:N:` and `pg_restore:
    /// error: could not execute query:` prefixes are the tools' own, as the
    /// integration tests see them.
    const REAL: &[(&str, &str, Class, Option<&str>)] = &[
        (
            "psql:<stdin>:42: ERROR:  role \"postgres\" does not exist",
            "missing-role",
            Class::Environment,
            Some("postgres"),
        ),
        (
            "pg_restore: error: could not execute query: ERROR:  role \"postgres\" does not exist",
            "missing-role",
            Class::Environment,
            Some("postgres"),
        ),
        (
            "psql:<stdin>:19: ERROR:  unrecognized configuration parameter \"transaction_timeout\"",
            "unknown-setting",
            Class::Environment,
            Some("transaction_timeout"),
        ),
        (
            "pg_restore: error: unsupported version (1.16) in file header",
            "archive-version",
            Class::Environment,
            Some("1.16"),
        ),
        (
            "psql:<stdin>:5: error: invalid command \\restrict",
            "psql-too-old",
            Class::Environment,
            None,
        ),
        (
            "psql:<stdin>:900: error: invalid command \\N",
            UNRECOGNISED,
            Class::Damage,
            None,
        ),
        (
            "psql:<stdin>:3013: ERROR:  invalid input syntax for type integer: \"role \"x\" does not exist: out of memory\"",
            "invalid-input",
            Class::Damage,
            Some("integer: \"role \"x\" does not exist: out of memory\""),
        ),
        (
            "pg_restore: error: a worker process died unexpectedly",
            "server-crashed",
            Class::Environment,
            None,
        ),
        (
            "psql:<stdin>:77: ERROR:  out of shared memory",
            "out-of-memory",
            Class::Environment,
            None,
        ),
        (
            "psql:<stdin>:25: ERROR:  extension \"vector\" is not available",
            "extension-missing",
            Class::Environment,
            Some("vector"),
        ),
        (
            "pg_restore: error: could not execute query: ERROR:  could not open extension control file \"/usr/share/postgresql/15/extension/postgis.control\": No such file or directory",
            "extension-missing",
            Class::Environment,
            Some("/usr/share/postgresql/15/extension/postgis.control"),
        ),
        (
            "psql:<stdin>:80: ERROR:  could not access file \"$libdir/vector\": No such file or directory",
            "library-missing",
            Class::Environment,
            Some("$libdir/vector"),
        ),
        (
            "psql:<stdin>:30: ERROR:  invalid locale name: \"de_DE.UTF-8\"",
            "locale-missing",
            Class::Environment,
            Some("de_DE.UTF-8"),
        ),
        (
            "psql:<stdin>:31: ERROR:  could not create locale \"de_DE.utf8\": No such file or directory",
            "locale-missing",
            Class::Environment,
            Some("de_DE.utf8"),
        ),
        (
            "psql:<stdin>:44: ERROR:  collation \"de_DE\" for encoding \"UTF8\" does not exist",
            "collation-missing",
            Class::Environment,
            Some("de_DE"),
        ),
        (
            "psql:<stdin>:27: ERROR:  directory \"/srv/pg/fast\" does not exist",
            "tablespace-missing",
            Class::Environment,
            Some("/srv/pg/fast"),
        ),
        (
            "psql:<stdin>:88: ERROR:  invalid value for parameter \"default_tablespace\": \"fast\"",
            "tablespace-missing",
            Class::Environment,
            Some("fast"),
        ),
        (
            "psql:<stdin>:90: ERROR:  tablespace \"fast\" does not exist",
            "tablespace-missing",
            Class::Environment,
            Some("fast"),
        ),
        (
            "psql:<stdin>:26: ERROR:  permission denied for database shop_session",
            "privileges-missing",
            Class::Environment,
            Some("shop_session"),
        ),
        (
            "psql:<stdin>:40: ERROR:  permission denied for schema public",
            "privileges-missing",
            Class::Environment,
            Some("public"),
        ),
        (
            "psql:<stdin>:3012: ERROR:  out of memory",
            "out-of-memory",
            Class::Environment,
            None,
        ),
        (
            "pg_restore: error: could not execute query: ERROR:  could not extend file \"base/16384/16402\": No space left on device",
            "disk-full",
            Class::Environment,
            Some("base/16384/16402"),
        ),
        (
            "psql:<stdin>:1200: error: server closed the connection unexpectedly",
            "server-crashed",
            Class::Environment,
            None,
        ),
        (
            "psql:<stdin>:917: ERROR:  syntax error at or near \"INSERTT\"",
            "syntax-error",
            Class::Damage,
            Some("or near \"INSERTT\""),
        ),
        (
            "psql:<stdin>:500: ERROR:  invalid input syntax for type integer: \"12x\"",
            "invalid-input",
            Class::Damage,
            Some("integer: \"12x\""),
        ),
        (
            "psql:<stdin>:10: ERROR:  invalid byte sequence for encoding \"UTF8\": 0xff",
            "invalid-encoding",
            Class::Damage,
            Some("\"UTF8\": 0xff"),
        ),
        (
            "psql:<stdin>:688: ERROR:  missing data for column \"salary\"",
            "copy-data-damaged",
            Class::Damage,
            Some("\"salary\""),
        ),
        (
            "psql:<stdin>:917: ERROR:  relation \"public.tenant_audit_log\" does not exist",
            "missing-object",
            Class::Damage,
            Some("public.tenant_audit_log"),
        ),
        (
            "pg_restore: error: could not read from input file: end of file",
            "archive-truncated",
            Class::Damage,
            Some("end of file"),
        ),
        (
            "pg_restore: error: did not find magic string in file header",
            "archive-damaged",
            Class::Damage,
            None,
        ),
        (
            "pg_restore: error: could not execute query: ERROR:  duplicate key value violates unique constraint \"film_pkey\"",
            "constraint-violated",
            Class::Damage,
            Some("film_pkey"),
        ),
        (
            "psql:<stdin>:7: ERROR:  function public.nosuch() does not exist",
            UNRECOGNISED,
            Class::Damage,
            None,
        ),
    ];

    #[test]
    fn every_entry_is_classified_from_real_text() {
        for (line, name, class, object) in REAL {
            let c = classify(Some(line));
            assert_eq!(c.name, *name, "{line}");
            assert_eq!(c.class, *class, "{line}");
            assert_eq!(c.object.as_deref(), *object, "{line}");
        }
        // Every entry of the table is exercised by a real line.
        for cause in CAUSES {
            assert!(
                REAL.iter().any(|(_, n, _, _)| *n == cause.name),
                "no real error text for {}",
                cause.name
            );
        }
    }

    #[test]
    fn a_clean_dump_dropping_what_is_not_there_is_the_environment() {
        let line = "psql:<stdin>:24: ERROR:  relation \"public.orders\" does not exist";
        assert_eq!(classify(Some(line)).class, Class::Damage);
        let c = classify_clean_dump(Some(line));
        assert_eq!((c.name, c.class), ("clean-dump", Class::Environment));
        assert_eq!(
            classify_clean_dump(Some(
                "psql:<stdin>:9: ERROR:  syntax error at or near \"x\""
            ))
            .name,
            "syntax-error"
        );
    }

    #[test]
    fn unknown_and_missing_are_damage() {
        assert_eq!(classify(None).class, Class::Damage);
        assert_eq!(classify(Some("something else")).name, UNRECOGNISED);
    }

    #[test]
    fn fix_names_the_object() {
        let c = classify(Some("ERROR:  extension \"postgis\" is not available"));
        assert!(c.fix.contains("extension postgis"), "{}", c.fix);
    }
}
