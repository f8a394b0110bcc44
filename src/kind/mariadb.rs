//! MariaDB and MySQL: dumps made by `mariadb-dump`/`mysqldump` (plus
//! `mariadb-binlog`/`mysqlbinlog` increments), restored into the official
//! `mariadb` and `mysql` images' conventions (`MARIADB_ROOT_PASSWORD`,
//! `MYSQL_ROOT_PASSWORD`, extra server arguments after the image name),
//! checked over mysql_async. One module, two flavours: they differ in
//! image, client program and password variable only.

use std::time::Duration;

use futures_util::future::BoxFuture;
use mysql_async::prelude::Queryable;

use super::{ContainerSpec, DataDirSetting, DatabaseKind, Endpoint, QueryError, Rows, Session};
use crate::config::DumpFormat;
use crate::restore::RestoreMethod;
use crate::secret::Secret;

/// The MariaDB/MySQL kind, in one flavour.
pub struct Mysql {
    name: &'static str,
    title: &'static str,
    image: &'static str,
    /// Its restore method (the image's command-line client).
    method: &'static crate::restore::mysql::MysqlLogical,
    /// What diff and extract read of it.
    catalog: &'static super::mariadb_catalog::MysqlCatalog,
    /// The image's root password variable.
    password_env: &'static str,
}

/// `kind = "mariadb"`: the Docker Hub `mariadb` image by default.
pub static MARIADB: Mysql = Mysql {
    name: "mariadb",
    title: "MariaDB",
    image: "mariadb:11",
    method: &crate::restore::mysql::MARIADB_CLIENT,
    catalog: &super::mariadb_catalog::MARIADB_CATALOG,
    password_env: "MARIADB_ROOT_PASSWORD",
};

/// `kind = "mysql"`: the Docker Hub `mysql` image by default.
pub static MYSQL: Mysql = Mysql {
    name: "mysql",
    title: "MySQL",
    image: "mysql:8.4",
    method: &crate::restore::mysql::MYSQL_CLIENT,
    catalog: &super::mariadb_catalog::MYSQL_CATALOG,
    password_env: "MYSQL_ROOT_PASSWORD",
};

/// Port the server listens on inside the container.
const PORT: &str = "3306/tcp";

/// The superuser of a sandbox (the images create `root@'%'`).
const ROOT: &str = "root";

/// Largest statement the sandbox server and client accept (bytes): a dump
/// of large BLOBs holds rows this big (`max_allowed_packet`'s maximum).
pub const MAX_PACKET: &str = "1073741824";

/// Server settings that speed up a restore into data that will be thrown
/// away, each giving up crash safety (MariaDB and MySQL docs, "InnoDB
/// system variables"): no flush at commit, no doublewrite, no binary log;
/// a buffer pool of half the memory cap (at least 128 MiB).
fn restore_tuning(memory_bytes: u64) -> Vec<String> {
    let pool = (memory_bytes / 2).max(128 * 1024 * 1024);
    vec![
        "--innodb-flush-log-at-trx-commit=0".into(),
        "--innodb-doublewrite=0".into(),
        "--skip-log-bin".into(),
        format!("--innodb-buffer-pool-size={pool}"),
    ]
}

impl DatabaseKind for Mysql {
    fn name(&self) -> &'static str {
        self.name
    }

    fn title(&self) -> &'static str {
        self.title
    }

    fn default_image(&self) -> &'static str {
        self.image
    }

    fn formats(&self) -> &'static [DumpFormat] {
        &[DumpFormat::Mysqldump]
    }

    fn method(&self, _format: DumpFormat) -> &'static dyn RestoreMethod {
        self.method
    }

    fn validate_image(&self, image: &str) -> Result<(), String> {
        if image.trim().is_empty() || image.contains('{') || image.contains('}') {
            return Err(format!(
                "`{image}`: give an image reference such as \"{}\" (templates with {{major}} are for PostgreSQL dumps only), or \"auto\"",
                self.image
            ));
        }
        Ok(())
    }

    fn container(&self, password: &Secret, memory_bytes: u64, tuning: bool) -> ContainerSpec {
        // Arguments starting with `-` go to the server, as the official
        // images' entrypoints do.
        let mut cmd = vec![format!("--max-allowed-packet={MAX_PACKET}")];
        if tuning {
            cmd.extend(restore_tuning(memory_bytes));
        }
        ContainerSpec {
            env: vec![format!("{}={}", self.password_env, password.expose())],
            port: PORT,
            cmd: Some(cmd),
            user: ROOT.into(),
            exec_user: "mysql",
            exec_env: vec![format!("MYSQL_PWD={}", password.expose())],
            held_cmd: None,
            data_dir: Some(DataDirSetting::Arg("--datadir=")),
        }
    }

    fn probe<'a>(&'a self, endpoint: &'a Endpoint) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let mut conn = connect(endpoint, None).await?;
            let version: Option<String> = conn
                .query_first("SELECT VERSION()")
                .await
                .map_err(|e| e.to_string())?;
            let _ = conn.disconnect().await;
            version.ok_or_else(|| "SELECT VERSION() returned no row".into())
        })
    }

    fn session<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        dbname: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn Session>, String>> {
        Box::pin(async move {
            let conn = connect(endpoint, Some(dbname)).await?;
            Ok(Box::new(MysqlSession {
                conn: tokio::sync::Mutex::new(conn),
                endpoint: endpoint.clone(),
            }) as Box<dyn Session>)
        })
    }

    fn shell_command(&self, user: &str, dbname: &str) -> String {
        format!(
            "sh -c 'MYSQL_PWD=\"${}\" exec {} -u{user} {dbname}'",
            self.password_env,
            self.method.tool_name()
        )
    }

    fn password_env(&self) -> &'static str {
        self.password_env
    }

    fn set_password<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        new: &'a Secret,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut conn = connect(endpoint, None).await?;
            // The images make root@localhost and root@'%' (MARIADB_ROOT_HOST
            // / MYSQL_ROOT_HOST default); neither change goes to a binary
            // log. MariaDB and MySQL 8 both know `ALTER USER IF EXISTS`.
            let pw = sql_string(new.expose());
            let mut result = conn.query_drop("SET SESSION sql_log_bin = 0").await;
            for host in ["%", "localhost"] {
                if result.is_ok() {
                    result = conn
                        .query_drop(format!(
                            "ALTER USER IF EXISTS '{ROOT}'@'{host}' IDENTIFIED BY '{pw}'"
                        ))
                        .await;
                }
            }
            let _ = conn.disconnect().await;
            result.map_err(|e| new.redact(&message(&e)))
        })
    }

    fn quote_ident(&self, name: &str) -> String {
        format!("`{}`", name.replace('`', "``"))
    }

    fn catalog(&self) -> Option<&'static dyn super::Catalog> {
        Some(self.catalog)
    }

    fn client_env(&self, ep: &Endpoint, dbname: &str) -> Vec<(String, String)> {
        vec![
            (
                "DATABASE_URL".into(),
                format!(
                    "mysql://{}:{}@{}:{}/{}",
                    super::url_escape(&ep.user),
                    super::url_escape(ep.password.expose()),
                    ep.host,
                    ep.port,
                    super::url_escape(dbname),
                ),
            ),
            ("MYSQL_HOST".into(), ep.host.clone()),
            ("MYSQL_TCP_PORT".into(), ep.port.to_string()),
            ("MYSQL_PWD".into(), ep.password.expose().to_string()),
            ("USER".into(), ep.user.clone()),
            ("MYSQL_DATABASE".into(), dbname.to_string()),
        ]
    }
}

/// `s` escaped for a `'…'` literal read under the default `sql_mode`
/// (without `NO_BACKSLASH_ESCAPES`): backslashes and quotes doubled.
fn sql_string(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "''")
}

/// Connect over TCP as the superuser, to `dbname` if given.
///
/// # Errors
/// The client's message.
pub async fn connect(ep: &Endpoint, dbname: Option<&str>) -> Result<mysql_async::Conn, String> {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(ep.host.clone())
        .tcp_port(ep.port)
        .user(Some(ep.user.clone()))
        .pass(Some(ep.password.expose().to_string()))
        .db_name(dbname.map(str::to_string))
        .prefer_socket(false)
        .wait_timeout(Some(28_800));
    match tokio::time::timeout(Duration::from_secs(5), mysql_async::Conn::new(opts)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(message(&e)),
        Err(_) => Err("no answer within 5 s".into()),
    }
}

/// The server's message for an error, else the client's text.
pub fn message(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("ERROR {} ({}): {}", s.code, s.state, s.message),
        other => other.to_string(),
    }
}

/// One connection; a query that overruns is stopped with `KILL QUERY` from
/// a second connection (MariaDB docs, "KILL").
struct MysqlSession {
    conn: tokio::sync::Mutex<mysql_async::Conn>,
    endpoint: Endpoint,
}

fn text(v: mysql_async::Value) -> Option<String> {
    use mysql_async::Value;
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

impl Session for MysqlSession {
    fn query<'a>(
        &'a self,
        sql: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Rows, QueryError>> {
        Box::pin(async move {
            let mut conn = self.conn.lock().await;
            let id = conn.id();
            let work = async {
                let mut result = conn.query_iter(sql).await?;
                let columns: Vec<String> = result
                    .columns_ref()
                    .iter()
                    .map(|c| c.name_str().into_owned())
                    .collect();
                let rows: Vec<mysql_async::Row> = result.collect().await?;
                // Further result sets (a procedure's) are drained.
                result.drop_result().await?;
                Ok::<_, mysql_async::Error>(Rows {
                    columns,
                    rows: rows
                        .into_iter()
                        .map(|r| r.unwrap().into_iter().map(text).collect())
                        .collect(),
                })
            };
            match tokio::time::timeout(timeout, work).await {
                Ok(Ok(rows)) => Ok(rows),
                Ok(Err(e)) => Err(QueryError::Failed(message(&e))),
                Err(_) => {
                    if let Ok(mut killer) = connect(&self.endpoint, None).await {
                        let _ = killer.query_drop(format!("KILL QUERY {id}")).await;
                        let _ = killer.disconnect().await;
                    }
                    Err(QueryError::Timeout(timeout))
                }
            }
        })
    }
}
