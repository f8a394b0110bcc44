//! PostgreSQL: dumps made by `pg_dump` and `pg_dumpall`, restored into the
//! official `postgres` image's conventions (`POSTGRES_PASSWORD`,
//! `POSTGRES_USER`, extra `postgres -c` arguments), checked over
//! tokio-postgres.

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{ContainerSpec, DataDirSetting, DatabaseKind, Endpoint, QueryError, Rows, Session};
use crate::config::{DumpFormat, SANDBOX_SUPERUSER};
use crate::restore::RestoreMethod;
use crate::secret::Secret;

/// The PostgreSQL kind.
pub struct Postgresql;

/// The registered instance.
pub static POSTGRESQL: Postgresql = Postgresql;

/// Port PostgreSQL listens on inside the container.
const PORT: &str = "5432/tcp";

impl DatabaseKind for Postgresql {
    fn name(&self) -> &'static str {
        "postgresql"
    }

    fn title(&self) -> &'static str {
        "PostgreSQL"
    }

    fn default_image(&self) -> &'static str {
        crate::restore::image::AUTO
    }

    fn formats(&self) -> &'static [DumpFormat] {
        &[
            DumpFormat::PgDumpall,
            DumpFormat::Plain,
            DumpFormat::Custom,
            DumpFormat::Basebackup,
        ]
    }

    fn method(&self, format: DumpFormat) -> &'static dyn RestoreMethod {
        if format == DumpFormat::Basebackup {
            &crate::restore::physical::PG_PHYSICAL
        } else {
            &crate::restore::postgres::PG_LOGICAL
        }
    }

    fn validate_image(&self, image: &str) -> Result<(), String> {
        crate::restore::image::validate(image)
    }

    fn container(&self, password: &Secret, memory_bytes: u64, tuning: bool) -> ContainerSpec {
        // The image's entrypoint passes `postgres …` on to the server, as
        // the official image's does.
        let cmd = tuning.then(|| {
            let mut cmd = vec!["postgres".to_string()];
            for setting in crate::sandbox::restore_tuning(memory_bytes) {
                cmd.extend(["-c".to_string(), setting]);
            }
            cmd
        });
        ContainerSpec {
            env: vec![
                format!("POSTGRES_PASSWORD={}", password.expose()),
                format!("POSTGRES_USER={SANDBOX_SUPERUSER}"),
            ],
            port: PORT,
            cmd,
            user: SANDBOX_SUPERUSER.into(),
            exec_user: "postgres",
            exec_env: Vec::new(),
            held_cmd: Some(held_cmd()),
            data_dir: Some(DataDirSetting::Env("PGDATA")),
        }
    }

    fn probe<'a>(&'a self, endpoint: &'a Endpoint) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let client = connect(endpoint, &endpoint.user).await?;
            let row = client
                .query_one("SHOW server_version", &[])
                .await
                .map_err(|e| e.to_string())?;
            Ok(row.get(0))
        })
    }

    fn session<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        dbname: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn Session>, String>> {
        Box::pin(async move {
            let client = connect(endpoint, dbname).await.map_err(|e| e.to_string())?;
            Ok(Box::new(PgSession(client)) as Box<dyn Session>)
        })
    }

    fn shell_command(&self, user: &str, dbname: &str) -> String {
        format!("psql -U {user} -d {dbname}")
    }

    fn password_env(&self) -> &'static str {
        "POSTGRES_PASSWORD"
    }

    fn set_password<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        new: &'a Secret,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            // (`postgres` exists in every cluster: initdb makes it)
            let client = connect(endpoint, "postgres").await?;
            // The server hashes it (`password_encryption`, scram-sha-256
            // by default); `log_statement` is off for this statement
            // whatever the server's setting.
            let sql = format!(
                "SET log_statement = 'none'; ALTER ROLE {} PASSWORD {}",
                crate::restore::quote_ident(&endpoint.user),
                sql_literal(new.expose())
            );
            client
                .batch_execute(&sql)
                .await
                .map_err(|e| new.redact(&crate::sandbox::pg_message(&e)))
        })
    }

    fn quote_ident(&self, name: &str) -> String {
        crate::restore::quote_ident(name)
    }

    fn catalog(&self) -> Option<&'static dyn super::Catalog> {
        Some(&super::postgresql_catalog::PG_CATALOG)
    }

    fn client_env(&self, ep: &Endpoint, dbname: &str) -> Vec<(String, String)> {
        vec![
            (
                "DATABASE_URL".into(),
                format!(
                    "postgresql://{}:{}@{}:{}/{}",
                    super::url_escape(&ep.user),
                    super::url_escape(ep.password.expose()),
                    ep.host,
                    ep.port,
                    super::url_escape(dbname),
                ),
            ),
            ("PGHOST".into(), ep.host.clone()),
            ("PGPORT".into(), ep.port.to_string()),
            ("PGUSER".into(), ep.user.clone()),
            ("PGPASSWORD".into(), ep.password.expose().to_string()),
            ("PGDATABASE".into(), dbname.to_string()),
        ]
    }
}

/// The file a held sandbox waits for: its server's arguments, one per
/// line (`postgres`, `-c`, `NAME=VALUE`, …). Written by the restore method
/// once the data directory is in place; the container then runs its
/// image's entrypoint with them, which finds `PGDATA` initialised and starts
/// the server as PID 1 (the official image's behaviour).
pub const HELD_ARGS_FILE: &str = "/tmp/drill-server-args";

/// The container command of a held sandbox: wait for [`HELD_ARGS_FILE`],
/// then run the image's entrypoint with its lines as arguments.
fn held_cmd() -> Vec<String> {
    vec![
        "bash".into(),
        "-c".into(),
        format!(
            "until [ -e {HELD_ARGS_FILE} ]; do sleep 0.1; done; mapfile -t args < {HELD_ARGS_FILE}; exec docker-entrypoint.sh \"${{args[@]}}\""
        ),
    ]
}

/// `s` as a PostgreSQL string literal (`'…'`, quotes doubled; an `E''`
/// literal when it holds a backslash).
fn sql_literal(s: &str) -> String {
    let quoted = s.replace('\'', "''");
    if s.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// Connection settings for `dbname` at `ep`.
pub fn pg_config(ep: &Endpoint, dbname: &str) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.host(&ep.host)
        .port(ep.port)
        .user(&ep.user)
        .password(ep.password.expose())
        .dbname(dbname)
        .application_name("drill")
        .connect_timeout(Duration::from_secs(5));
    c
}

/// Connect to `dbname` at `ep`; the connection runs on its own task, which
/// ends when the client is dropped.
///
/// # Errors
/// The server's message (see [`crate::sandbox::pg_message`]).
pub async fn connect(ep: &Endpoint, dbname: &str) -> Result<tokio_postgres::Client, String> {
    let (client, conn) = pg_config(ep, dbname)
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| crate::sandbox::pg_message(&e))?;
    tokio::spawn(conn);
    Ok(client)
}

/// A tokio-postgres client; queries use the simple query protocol, so
/// every value arrives as PostgreSQL's text output (PostgreSQL docs, 55.2.2
/// "Simple Query").
struct PgSession(tokio_postgres::Client);

impl Session for PgSession {
    fn query<'a>(
        &'a self,
        sql: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Rows, QueryError>> {
        Box::pin(async move {
            let cancel = self.0.cancel_token();
            let messages = match tokio::time::timeout(timeout, self.0.simple_query(sql)).await {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => return Err(QueryError::Failed(crate::sandbox::pg_message(&e))),
                Err(_) => {
                    let _ = cancel.cancel_query(tokio_postgres::NoTls).await;
                    return Err(QueryError::Timeout(timeout));
                }
            };
            let mut out = Rows::default();
            for m in &messages {
                match m {
                    tokio_postgres::SimpleQueryMessage::RowDescription(cols) => {
                        out.columns = cols.iter().map(|c| c.name().to_string()).collect();
                    }
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        if out.columns.is_empty() {
                            out.columns =
                                r.columns().iter().map(|c| c.name().to_string()).collect();
                        }
                        out.rows
                            .push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect());
                    }
                    _ => {}
                }
            }
            Ok(out)
        })
    }
}
