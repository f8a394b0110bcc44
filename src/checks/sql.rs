//! `kind = "sql"`: a query whose result meets `expect` — a scalar compared
//! (`equals`, `min`, `max`) or, with `no_rows = true`, a violations query
//! whose every row is a finding.
//!
//! The query runs through the kind's text protocol (PostgreSQL's simple
//! query protocol, PostgreSQL docs 55.2.2 "Simple Query"; MariaDB/MySQL's
//! text protocol), so every value arrives as text: numbers compare as
//! numbers whatever their SQL type; booleans read `t`/`f` on PostgreSQL and
//! `1`/`0` on MariaDB/MySQL.

use crate::config::{CheckDefinition, CheckSpec};
use std::time::Duration;

use super::{CheckContext, CheckError, Conclusion, Finding};
use crate::config::SqlExpect;

/// Violating rows listed in the report; the rest are counted.
const MAX_ROWS_REPORTED: usize = 10;

pub(super) async fn run(
    ctx: &CheckContext<'_>,
    query: &str,
    expect: &SqlExpect,
    timeout: Duration,
) -> Result<Conclusion, CheckError> {
    let session = super::session(ctx).await?;
    let result = session
        .query(query, timeout)
        .await
        .map_err(super::query_error)?;
    let rows: Vec<Vec<(String, Option<String>)>> = result
        .rows
        .into_iter()
        .map(|r| result.columns.iter().cloned().zip(r).collect())
        .collect();
    judge(&rows, expect)
}

/// Judge the rows (column name, text value or NULL) against `expect`.
pub(super) fn judge(
    rows: &[Vec<(String, Option<String>)>],
    expect: &SqlExpect,
) -> Result<Conclusion, CheckError> {
    if expect.no_rows {
        let findings: Vec<Finding> = rows
            .iter()
            .take(MAX_ROWS_REPORTED)
            .map(|r| {
                let row = r
                    .iter()
                    .map(|(c, v)| format!("{c}={}", v.as_deref().unwrap_or("NULL")))
                    .collect::<Vec<_>>()
                    .join(", ");
                Finding::new(row.clone()).at_row(row)
            })
            .collect();
        let detail = match rows.len() {
            0 => "no violating rows".to_string(),
            n if n > MAX_ROWS_REPORTED => {
                format!("{n} violating rows (first {MAX_ROWS_REPORTED} listed)")
            }
            1 => "1 violating row".to_string(),
            n => format!("{n} violating rows"),
        };
        return Ok(Conclusion {
            detail,
            findings,
            ..Default::default()
        });
    }

    let value = match rows {
        [row] if row.len() == 1 => row[0].1.clone(),
        _ => {
            return Err(CheckError::Shape(format!(
                "expected one row with one column for a scalar comparison, got {} rows{}",
                rows.len(),
                rows.first()
                    .map(|r| format!(" of {} columns", r.len()))
                    .unwrap_or_default()
            )))
        }
    };
    let Some(value) = value else {
        return Ok(Conclusion {
            detail: "value is NULL".into(),
            findings: vec![Finding::new(format!(
                "the query returned NULL; expected {}",
                describe(expect)
            ))],
            ..Default::default()
        });
    };
    let number = value.trim().parse::<f64>().ok();
    let need_number = |what: &str| {
        CheckError::Shape(format!(
            "value `{value}` is not a number, so `{what}` cannot be judged"
        ))
    };
    let mut findings = Vec::new();
    if let Some(eq) = &expect.equals {
        let ok = match eq {
            toml::Value::Integer(i) => number.ok_or_else(|| need_number("equals"))? == *i as f64,
            toml::Value::Float(f) => number.ok_or_else(|| need_number("equals"))? == *f,
            toml::Value::Boolean(b) => value == if *b { "t" } else { "f" },
            toml::Value::String(s) => value == *s,
            _ => false,
        };
        if !ok {
            findings.push(Finding::new(format!(
                "value is {value}, expected {}",
                display_value(eq)
            )));
        }
    }
    if let Some(min) = expect.min {
        if number.ok_or_else(|| need_number("min"))? < min {
            findings.push(Finding::new(format!(
                "value is {value}, expected at least {min}"
            )));
        }
    }
    if let Some(max) = expect.max {
        if number.ok_or_else(|| need_number("max"))? > max {
            findings.push(Finding::new(format!(
                "value is {value}, expected at most {max}"
            )));
        }
    }
    Ok(Conclusion {
        detail: format!("value {value} (expected {})", describe(expect)),
        findings,
        ..Default::default()
    })
}

fn display_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("`{s}`"),
        other => other.to_string(),
    }
}

fn describe(e: &SqlExpect) -> String {
    let mut parts = Vec::new();
    if let Some(v) = &e.equals {
        parts.push(format!("= {}", display_value(v)));
    }
    if let Some(m) = e.min {
        parts.push(format!("≥ {m}"));
    }
    if let Some(m) = e.max {
        parts.push(format!("≤ {m}"));
    }
    parts.join(", ")
}

/// The `sql` check.
pub(super) struct SqlCheck;

impl super::Check for SqlCheck {
    fn kind(&self) -> &'static str {
        "sql"
    }

    fn supports(&self, _db_kind: &str) -> bool {
        true
    }

    fn run<'a>(
        &'a self,
        def: &'a CheckDefinition,
        ctx: &'a CheckContext<'a>,
    ) -> futures_util::future::BoxFuture<'a, Result<Conclusion, super::Incomplete>> {
        Box::pin(async move {
            let CheckSpec::Sql { query, expect } = &def.spec else {
                return Err(super::Incomplete::from(CheckError::Shape(format!(
                    "check `{}` is not of kind sql",
                    def.name
                ))));
            };
            run(ctx, query, expect, def.timeout)
                .await
                .map_err(super::Incomplete::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(v: Option<&str>) -> Vec<Vec<(String, Option<String>)>> {
        vec![vec![("count".into(), v.map(str::to_string))]]
    }

    fn expect(equals: Option<toml::Value>, min: Option<f64>, max: Option<f64>) -> SqlExpect {
        SqlExpect {
            equals,
            min,
            max,
            no_rows: false,
        }
    }

    #[test]
    fn scalar_comparisons() {
        let e = expect(Some(toml::Value::Integer(16044)), None, None);
        assert!(judge(&scalar(Some("16044")), &e)
            .unwrap()
            .findings
            .is_empty());
        assert_eq!(judge(&scalar(Some("16043")), &e).unwrap().findings.len(), 1);
        let e = expect(None, Some(1.0), Some(10.0));
        assert!(judge(&scalar(Some("1.00")), &e)
            .unwrap()
            .findings
            .is_empty());
        assert_eq!(judge(&scalar(Some("0")), &e).unwrap().findings.len(), 1);
        assert_eq!(judge(&scalar(Some("11")), &e).unwrap().findings.len(), 1);
        assert!(judge(&scalar(Some("abc")), &e).is_err());
        assert_eq!(
            judge(&scalar(None), &e).unwrap().findings.len(),
            1,
            "NULL is never a pass"
        );
        assert!(judge(&[], &e).is_err(), "no row is never a pass");
        let e = expect(Some(toml::Value::Boolean(true)), None, None);
        assert!(judge(&scalar(Some("t")), &e).unwrap().findings.is_empty());
    }

    #[test]
    fn violations() {
        let e = SqlExpect {
            equals: None,
            min: None,
            max: None,
            no_rows: true,
        };
        assert!(judge(&[], &e).unwrap().findings.is_empty());
        let rows: Vec<_> = (0..12)
            .map(|i| {
                vec![
                    ("entry".to_string(), Some(i.to_string())),
                    ("diff".to_string(), None),
                ]
            })
            .collect();
        let c = judge(&rows, &e).unwrap();
        assert_eq!(c.findings.len(), MAX_ROWS_REPORTED);
        assert_eq!(c.findings[0].what, "entry=0, diff=NULL");
        assert!(c.detail.contains("12 violating rows"));
    }
}
