//! What `drill diff`, `bisect` and `extract` read of a restored PostgreSQL
//! server: `pg_database`, `pg_class`, a content digest per table from
//! `md5(row(t.*)::text)`, rows as hashes in key order, `pg_dump
//! --schema-only` (without its per-run `\restrict` lines) and `pg_dump
//! --table` for extracts (PostgreSQL docs, "pg_dump").

use futures_util::future::BoxFuture;
use futures_util::{StreamExt, TryStreamExt};

use super::{Catalog, CatalogSession, RowHashes};
use crate::restore::quote_ident;
use crate::sandbox::{pg_message, Sandbox};

/// The PostgreSQL catalog.
pub(super) struct PgCatalog;

/// The registered instance.
pub(super) static PG_CATALOG: PgCatalog = PgCatalog;

fn qualified(table: &str) -> String {
    let (schema, name) = table.split_once('.').unwrap_or(("public", table));
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// A connection to one database.
struct PgTables(tokio_postgres::Client);

impl Catalog for PgCatalog {
    fn databases<'a>(&'a self, s: &'a Sandbox) -> BoxFuture<'a, Result<Vec<String>, String>> {
        Box::pin(async move {
            let c = s
                .connect("postgres")
                .await
                .map_err(|e| format!("connect to sandbox {}: {}", s.name, pg_message(&e)))?;
            let rows = c
                .query(
                    "select datname from pg_database where datallowconn and not datistemplate order by 1",
                    &[],
                )
                .await
                .map_err(|e| format!("list databases in sandbox {}: {}", s.name, pg_message(&e)))?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn open<'a>(
        &'a self,
        s: &'a Sandbox,
        dbname: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn CatalogSession + 'a>, String>> {
        Box::pin(async move {
            let c = s.connect(dbname).await.map_err(|e| {
                format!(
                    "connect to {dbname} in sandbox {}: {}",
                    s.name,
                    pg_message(&e)
                )
            })?;
            Ok(Box::new(PgTables(c)) as Box<dyn CatalogSession>)
        })
    }

    fn schema<'a>(
        &'a self,
        s: &'a Sandbox,
        dbname: &'a str,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let mut out: Vec<u8> = Vec::new();
            let cmd = [
                "pg_dump",
                "--schema-only",
                "--no-password",
                "--username",
                &s.user,
                "--dbname",
                dbname,
            ];
            let (outcome, _) = s
                .exec_to_writer(&cmd, &mut out)
                .await
                .map_err(|e| e.to_string())?;
            if outcome.exit_code != Some(0) {
                return Err(format!(
                    "pg_dump --schema-only {dbname} in sandbox {} exited {:?}: {}",
                    s.name,
                    outcome.exit_code,
                    outcome.output.summary(3)
                ));
            }
            Ok(String::from_utf8_lossy(&out)
                .lines()
                .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
                .map(|l| format!("{l}\n"))
                .collect())
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
            let mut cmd: Vec<String> = [
                "pg_dump",
                "--no-password",
                "--username",
                &s.user,
                "--dbname",
                dbname,
                "--no-owner",
                "--no-privileges",
                "--strict-names",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            if data_only {
                cmd.push("--data-only".into());
            } else {
                cmd.push("--section=pre-data".into());
                cmd.push("--section=data".into());
            }
            for t in tables {
                cmd.push(format!("--table={t}"));
            }
            let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
            let (outcome, bytes) = s
                .exec_to_writer(&cmd, out)
                .await
                .map_err(|e| e.to_string())?;
            if outcome.exit_code != Some(0) {
                return Err(format!(
                    "pg_dump in sandbox {} exited {:?}: {}",
                    s.name,
                    outcome.exit_code,
                    outcome.output.summary(3)
                ));
            }
            Ok(bytes)
        })
    }

    fn extract_notes(&self, data_only: bool) -> &'static str {
        if data_only {
            concat!(
                "-- Rows only (pg_dump --data-only), for tables that already exist.\n",
                "-- drill has not applied this file. Review it, then load it by hand, e.g. into a scratch\n",
                "-- database first:  psql -v ON_ERROR_STOP=1 --single-transaction -d scratch -f FILE\n"
            )
        } else {
            concat!(
                "-- Table definitions and rows (pg_dump --section=pre-data --section=data); no indexes,\n",
                "-- keys, foreign keys or triggers.\n",
                "-- drill has not applied this file. Review it, then load it by hand, e.g. into a scratch\n",
                "-- database first:  psql -v ON_ERROR_STOP=1 --single-transaction -d scratch -f FILE\n"
            )
        }
    }
}

impl CatalogSession for PgTables {
    /// Ordinary tables (`relkind = 'r'`, so partitions count once, as
    /// themselves) outside the system schemas, as `schema.table`.
    fn tables(&self) -> BoxFuture<'_, Result<Vec<String>, String>> {
        Box::pin(async move {
            let rows = self
                .0
                .query(
                    "select n.nspname || '.' || c.relname
                       from pg_class c join pg_namespace n on n.oid = c.relnamespace
                      where c.relkind = 'r'
                        and n.nspname not in ('pg_catalog', 'information_schema')
                        and n.nspname not like 'pg\\_toast%'
                        and n.nspname not like 'pg\\_temp%'
                      order by 1",
                    &[],
                )
                .await
                .map_err(|e| format!("list tables: {}", pg_message(&e)))?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn resolve<'a>(&'a self, table: &'a str) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move {
            let row = self
                .0
                .query_one("select to_regclass($1)::text", &[&table])
                .await
                .map_err(|e| format!("table `{table}`: {}", pg_message(&e)))?;
            Ok(row.get::<_, Option<String>>(0))
        })
    }

    fn digest<'a>(&'a self, table: &'a str) -> BoxFuture<'a, Result<(u64, String), String>> {
        Box::pin(async move {
            let sql = format!(
                "select count(*)::int8,
                        coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::int8::numeric), 0)::text,
                        coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::int8::numeric), 0)::text
                   from (select md5(row(drill_row.*)::text) as h from only {} as drill_row) as s",
                qualified(table)
            );
            let row = self
                .0
                .query_one(&sql, &[])
                .await
                .map_err(|e| format!("digest of {table}: {}", pg_message(&e)))?;
            let rows: i64 = row.get(0);
            let (lo, hi): (String, String) = (row.get(1), row.get(2));
            Ok((rows as u64, super::table_digest(rows, &lo, &hi)))
        })
    }

    fn primary_key<'a>(&'a self, table: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>> {
        Box::pin(async move {
            let rows = self
                .0
                .query(
                    "select a.attname::text
                       from pg_index i
                       join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
                      where i.indrelid = $1::text::regclass and i.indisprimary
                      order by array_position(i.indkey::int2[], a.attnum)",
                    &[&qualified(table)],
                )
                .await
                .map_err(|e| format!("primary key of {table}: {}", pg_message(&e)))?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    /// Ordered by key hash in byte order (`collate "C"`, the order of Rust
    /// strings).
    fn row_hashes<'a>(
        &'a self,
        table: &'a str,
        key: Option<&'a [String]>,
    ) -> BoxFuture<'a, Result<RowHashes<'a>, String>> {
        Box::pin(async move {
            let key_expr = match key {
                Some(cols) => format!(
                    "md5(row({})::text)",
                    cols.iter()
                        .map(|c| format!("drill_row.{}", quote_ident(c)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => "md5(row(drill_row.*)::text)".into(),
            };
            let sql = format!(
                "select {key_expr}, md5(row(drill_row.*)::text) from only {} as drill_row \
                 order by {key_expr} collate \"C\", md5(row(drill_row.*)::text) collate \"C\"",
                qualified(table)
            );
            let rows = self
                .0
                .query_raw(
                    &sql,
                    std::iter::empty::<&(dyn tokio_postgres::types::ToSql + Sync)>(),
                )
                .await
                .map_err(|e| format!("rows of {table}: {}", pg_message(&e)))?;
            Ok(rows
                .map_ok(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
                .map_err(move |e| format!("rows of {table}: {}", pg_message(&e)))
                .boxed())
        })
    }
}
