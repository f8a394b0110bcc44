//! What `drill diff`, `bisect` and `extract` read of a restored MariaDB or
//! MySQL server: `information_schema`, a content digest per table from the
//! MD5 of each row's columns (each as its length and bytes, `CAST(… AS
//! BINARY)`, NULL apart), rows as hashes in key order, `SHOW CREATE TABLE`
//! (without the `AUTO_INCREMENT=` counter) and the image's dump tool for
//! extracts (MariaDB docs, "information_schema", "SHOW CREATE TABLE",
//! "mariadb-dump").
//!
//! Unlike PostgreSQL's, a table's row hashes are read into memory before
//! they are merged (about 70 bytes per row).

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use mysql_async::prelude::Queryable;

use super::mariadb::{connect, message};
use super::{Catalog, CatalogSession, RowHashes};
use crate::sandbox::Sandbox;

/// The catalog of one flavour.
pub struct MysqlCatalog {
    /// The dump tool in the image (`mariadb-dump`, `mysqldump`).
    dump: &'static str,
    /// The client in the image (`mariadb`, `mysql`), for the load hint.
    client: &'static str,
}

/// MariaDB's.
pub(super) static MARIADB_CATALOG: MysqlCatalog = MysqlCatalog {
    dump: "mariadb-dump",
    client: "mariadb",
};
/// MySQL's.
pub(super) static MYSQL_CATALOG: MysqlCatalog = MysqlCatalog {
    dump: "mysqldump",
    client: "mysql",
};

/// Schemas of the server itself, never compared.
const SYSTEM: &str = "'mysql', 'information_schema', 'performance_schema', 'sys'";

fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// One connection to one database.
struct Tables(tokio::sync::Mutex<mysql_async::Conn>);

impl Tables {
    async fn columns(&self, table: &str) -> Result<Vec<String>, String> {
        let mut c = self.0.lock().await;
        c.exec(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (table,),
        )
        .await
        .map_err(|e| format!("columns of {table}: {}", message(&e)))
    }
}

/// The MD5 of `cols` of `t`: each column as its length and its bytes, a
/// NULL as `n`, so that no two different rows read the same.
fn md5_of(cols: &[String]) -> String {
    let parts: Vec<String> = cols
        .iter()
        .map(|c| {
            let v = format!("CAST(t.{} AS BINARY)", ident(c));
            format!("IFNULL(CONCAT(LENGTH({v}), ':', {v}), 'n')")
        })
        .collect();
    format!("MD5(CONCAT_WS(',', {}))", parts.join(", "))
}

impl Catalog for MysqlCatalog {
    fn databases<'a>(&'a self, s: &'a Sandbox) -> BoxFuture<'a, Result<Vec<String>, String>> {
        Box::pin(async move {
            let mut c = connect(&s.endpoint(), None).await?;
            let mut names: Vec<String> = c
                .query(format!(
                    "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN ({SYSTEM})"
                ))
                .await
                .map_err(|e| format!("list databases in sandbox {}: {}", s.name, message(&e)))?;
            let _ = c.disconnect().await;
            names.sort();
            Ok(names)
        })
    }

    fn open<'a>(
        &'a self,
        s: &'a Sandbox,
        dbname: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn CatalogSession + 'a>, String>> {
        Box::pin(async move {
            let c = connect(&s.endpoint(), Some(dbname))
                .await
                .map_err(|e| format!("connect to {dbname} in sandbox {}: {e}", s.name))?;
            Ok(Box::new(Tables(tokio::sync::Mutex::new(c))) as Box<dyn CatalogSession>)
        })
    }

    fn schema<'a>(
        &'a self,
        s: &'a Sandbox,
        dbname: &'a str,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let mut c = connect(&s.endpoint(), Some(dbname)).await?;
            let mut objects: Vec<(String, String)> = c
                .query("SHOW FULL TABLES")
                .await
                .map_err(|e| format!("list tables of {dbname}: {}", message(&e)))?;
            objects.sort();
            let mut out = String::new();
            for (name, kind) in objects {
                let what = if kind == "VIEW" { "VIEW" } else { "TABLE" };
                let row: Option<mysql_async::Row> = c
                    .query_first(format!("SHOW CREATE {what} {}", ident(&name)))
                    .await
                    .map_err(|e| format!("SHOW CREATE {what} {name}: {}", message(&e)))?;
                let text: Option<String> = row.and_then(|r| r.get(1));
                let text = text.unwrap_or_default();
                // The next AUTO_INCREMENT value is state, not schema.
                let text: String = text
                    .split(' ')
                    .filter(|w| !w.starts_with("AUTO_INCREMENT="))
                    .collect::<Vec<_>>()
                    .join(" ");
                out.push_str(&text);
                out.push_str(";\n\n");
            }
            let _ = c.disconnect().await;
            Ok(out)
        })
    }

    fn dump_tables<'a>(
        &'a self,
        s: &'a Sandbox,
        dbname: &'a str,
        tables: &'a [String],
        data_only: bool,
        out: &'a mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    ) -> BoxFuture<'a, Result<u64, String>> {
        Box::pin(async move {
            let mut cmd: Vec<String> = vec![
                self.dump.into(),
                format!("--user={}", s.user),
                "--protocol=TCP".into(),
                "--host=127.0.0.1".into(),
                "--port=3306".into(),
                "--single-transaction".into(),
                "--skip-triggers".into(),
                "--hex-blob".into(),
            ];
            if data_only {
                cmd.push("--no-create-info".into());
            }
            cmd.push(dbname.into());
            cmd.extend(tables.iter().cloned());
            let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
            let (outcome, bytes) = s
                .exec_to_writer(&cmd, out)
                .await
                .map_err(|e| e.to_string())?;
            if outcome.exit_code != Some(0) {
                return Err(format!(
                    "{} in sandbox {} exited {:?}: {}",
                    self.dump,
                    s.name,
                    outcome.exit_code,
                    outcome.output.summary(3)
                ));
            }
            Ok(bytes)
        })
    }

    fn extract_notes(&self, data_only: bool) -> &'static str {
        match (data_only, self.client) {
            (true, "mysql") => "-- Rows only (mysqldump --no-create-info), for tables that already exist.\n-- drill has not applied this file. Review it, then load it by hand, e.g. into a scratch\n-- database first:  mysql --database=scratch < FILE\n",
            (false, "mysql") => "-- Table definitions and rows (mysqldump --skip-triggers); each table is dropped and\n-- created again.\n-- drill has not applied this file. Review it, then load it by hand, e.g. into a scratch\n-- database first:  mysql --database=scratch < FILE\n",
            (true, _) => "-- Rows only (mariadb-dump --no-create-info), for tables that already exist.\n-- drill has not applied this file. Review it, then load it by hand, e.g. into a scratch\n-- database first:  mariadb --database=scratch < FILE\n",
            (false, _) => "-- Table definitions and rows (mariadb-dump --skip-triggers); each table is dropped and\n-- created again.\n-- drill has not applied this file. Review it, then load it by hand, e.g. into a scratch\n-- database first:  mariadb --database=scratch < FILE\n",
        }
    }
}

impl CatalogSession for Tables {
    fn tables(&self) -> BoxFuture<'_, Result<Vec<String>, String>> {
        Box::pin(async move {
            let mut c = self.0.lock().await;
            let mut names: Vec<String> = c
                .query(
                    "SELECT TABLE_NAME FROM information_schema.TABLES \
                     WHERE TABLE_SCHEMA = DATABASE() \
                       AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')",
                )
                .await
                .map_err(|e| format!("list tables: {}", message(&e)))?;
            names.sort();
            Ok(names)
        })
    }

    fn resolve<'a>(&'a self, table: &'a str) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move {
            let mut c = self.0.lock().await;
            c.exec_first(
                "SELECT TABLE_NAME FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = DATABASE() \
                   AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') AND TABLE_NAME = ?",
                (table,),
            )
            .await
            .map_err(|e| format!("table `{table}`: {}", message(&e)))
        })
    }

    fn digest<'a>(&'a self, table: &'a str) -> BoxFuture<'a, Result<(u64, String), String>> {
        Box::pin(async move {
            let cols = self.columns(table).await?;
            let sql = format!(
                "SELECT COUNT(*), \
                        CAST(COALESCE(SUM(CAST(CONV(SUBSTR(h, 1, 16), 16, 10) AS DECIMAL(40, 0))), 0) AS CHAR), \
                        CAST(COALESCE(SUM(CAST(CONV(SUBSTR(h, 17, 16), 16, 10) AS DECIMAL(40, 0))), 0) AS CHAR) \
                   FROM (SELECT {} AS h FROM {} AS t) AS s",
                md5_of(&cols),
                ident(table)
            );
            let mut c = self.0.lock().await;
            let row: Option<(i64, String, String)> = c
                .query_first(sql)
                .await
                .map_err(|e| format!("digest of {table}: {}", message(&e)))?;
            let (rows, lo, hi) = row.ok_or_else(|| format!("digest of {table}: no row"))?;
            Ok((rows as u64, super::table_digest(rows, &lo, &hi)))
        })
    }

    fn primary_key<'a>(&'a self, table: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>> {
        Box::pin(async move {
            let mut c = self.0.lock().await;
            c.exec(
                "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
                 ORDER BY ORDINAL_POSITION",
                (table,),
            )
            .await
            .map_err(|e| format!("primary key of {table}: {}", message(&e)))
        })
    }

    /// Ordered by key hash in byte order (`BINARY`).
    fn row_hashes<'a>(
        &'a self,
        table: &'a str,
        key: Option<&'a [String]>,
    ) -> BoxFuture<'a, Result<RowHashes<'a>, String>> {
        Box::pin(async move {
            let cols = self.columns(table).await?;
            let row = md5_of(&cols);
            let key = key.map_or_else(|| row.clone(), md5_of);
            let sql = format!(
                "SELECT {key} AS kh, {row} AS rh FROM {} AS t ORDER BY BINARY kh, BINARY rh",
                ident(table)
            );
            let mut c = self.0.lock().await;
            let pairs: Vec<(String, String)> = c
                .query(sql)
                .await
                .map_err(|e| format!("rows of {table}: {}", message(&e)))?;
            Ok(futures_util::stream::iter(pairs.into_iter().map(Ok)).boxed())
        })
    }
}
