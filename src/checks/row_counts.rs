//! `kind = "row-counts"`: tables (`count(*)`) and grouped queries (one count
//! per group, e.g. employees per tenant schema), each judged against `min`
//! and, for `max_drop`, against the last passed drill of the same tier.
//!
//! With no baseline (the first drill of a tier, or an item never counted in
//! a passed drill) `max_drop` is reported `unknown` and a note says so; the
//! `min` judgement still stands. A group the baseline knew but the query no
//! longer returns counts 0 rows: its rows are gone.

use crate::config::{CheckDefinition, CheckSpec};
use std::collections::BTreeMap;
use std::time::Duration;

use super::{CheckContext, CheckError, Conclusion, Finding};
use crate::config::{CountedGroup, CountedTable};
use crate::kind::QueryError;
use crate::report::history::Baselines;
use crate::report::{CountReport, PolicyStatus, Status};

/// One item counted: name, rows, min, max_drop.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Counted {
    pub name: String,
    pub rows: u64,
    pub min: u64,
    pub max_drop: Option<f64>,
}

pub(super) async fn run(
    ctx: &CheckContext<'_>,
    check: &str,
    tables: &[CountedTable],
    groups: &[CountedGroup],
    timeout: Duration,
) -> Result<Conclusion, CheckError> {
    let needs_baseline =
        tables.iter().any(|t| t.max_drop.is_some()) || groups.iter().any(|g| g.max_drop.is_some());
    let baselines = match (ctx.baselines, needs_baseline) {
        (Ok(b), _) => Some(b),
        (Err(e), true) => return Err(CheckError::History(format!("cannot judge max_drop: {e}"))),
        (Err(_), false) => None,
    };
    let session = super::session(ctx).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
    let kind = ctx.sandbox.kind;
    let empty = Baselines::default();
    let baselines = baselines.unwrap_or(&empty);
    let measure = async {
        let mut counted = Vec::new();
        for t in tables {
            let sql = format!("SELECT count(*) FROM {}", kind.quote_table(&t.table));
            let rows = match session.query(&sql, left()).await {
                Ok(r) => r.rows,
                Err(QueryError::Timeout(_)) => return Err(CheckError::Timeout(timeout)),
                Err(e) => return Err(CheckError::Query(format!("{}: {e}", t.table))),
            };
            let n = rows
                .first()
                .and_then(|r| r.first().cloned().flatten())
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| CheckError::Shape(format!("count of {} unreadable", t.table)))?;
            counted.push(Counted {
                name: t.table.clone(),
                rows: n,
                min: t.min,
                max_drop: t.max_drop,
            });
        }
        for g in groups {
            let rows = match session.query(&g.query, left()).await {
                Ok(r) => r.rows,
                Err(QueryError::Timeout(_)) => return Err(CheckError::Timeout(timeout)),
                Err(e) => return Err(CheckError::Query(format!("groups `{}`: {e}", g.name))),
            };
            let known: Vec<String> = baselines
                .items_of(ctx.database, check)
                .filter_map(|(item, _)| group_key(&g.name, item).map(str::to_string))
                .collect();
            counted.extend(groups_of(g, &rows, &known)?);
        }
        Ok::<_, CheckError>(counted)
    };
    let counted = measure.await?;
    Ok(judge(ctx.database, check, ctx.tier, &counted, baselines))
}

/// `name[key]` → `key` when the item belongs to group `name`.
fn group_key<'a>(name: &str, item: &'a str) -> Option<&'a str> {
    item.strip_prefix(name)?
        .strip_prefix('[')?
        .strip_suffix(']')
}

/// The items of a grouped query's rows (group, count): every returned
/// group, every `expect`ed group and every group the baseline knew (absent
/// ones count 0).
pub(super) fn groups_of(
    g: &CountedGroup,
    rows: &[Vec<Option<String>>],
    known: &[String],
) -> Result<Vec<Counted>, CheckError> {
    let mut by_key: BTreeMap<String, u64> = BTreeMap::new();
    for r in rows {
        if r.len() != 2 {
            return Err(CheckError::Shape(format!(
                "groups `{}`: the query must return two columns (group, count), got {}",
                g.name,
                r.len()
            )));
        }
        let key = r[0].clone().unwrap_or_else(|| "NULL".into());
        let n = r[1]
            .as_deref()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                CheckError::Shape(format!(
                    "groups `{}`: count of group `{key}` is `{}`, not a whole number",
                    g.name,
                    r[1].as_deref().unwrap_or("NULL")
                ))
            })?;
        if by_key.insert(key.clone(), n).is_some() {
            return Err(CheckError::Shape(format!(
                "groups `{}`: the query returned group `{key}` twice",
                g.name
            )));
        }
    }
    if by_key.is_empty() && g.expect.is_empty() && known.is_empty() {
        return Err(CheckError::Shape(format!(
            "groups `{}`: the query returned no groups, so nothing was counted; list the groups that must exist in `expect`",
            g.name
        )));
    }
    for k in g.expect.iter().chain(known) {
        by_key.entry(k.clone()).or_insert(0);
    }
    Ok(by_key
        .into_iter()
        .map(|(k, rows)| Counted {
            name: format!("{}[{k}]", g.name),
            rows,
            min: g.min,
            max_drop: g.max_drop,
        })
        .collect())
}

/// Judge counted items against `min` and their baselines.
pub(super) fn judge(
    database: &str,
    check: &str,
    tier: &str,
    counted: &[Counted],
    baselines: &Baselines,
) -> Conclusion {
    let mut findings = Vec::new();
    let mut counts = Vec::new();
    let mut unknown = Vec::new();
    for c in counted {
        let min_status = if c.rows >= c.min {
            Status::Passed
        } else {
            findings.push(
                Finding::new(format!(
                    "{}: {} rows, expected at least {}",
                    c.name, c.rows, c.min
                ))
                .in_table(&c.name),
            );
            Status::Failed
        };
        let base = baselines.get(database, check, &c.name);
        let drop = base.map(|b| {
            if b.rows == 0 {
                if c.rows == 0 {
                    0.0
                } else {
                    -1.0
                }
            } else {
                (b.rows as f64 - c.rows as f64) / b.rows as f64
            }
        });
        let max_drop_status = match (c.max_drop, base, drop) {
            (None, _, _) => PolicyStatus::NotConfigured,
            (Some(_), None, _) | (Some(_), _, None) => {
                unknown.push(c.name.clone());
                PolicyStatus::Unknown
            }
            (Some(m), Some(b), Some(d)) if d > m + 1e-12 => {
                findings.push(
                    Finding::new(format!(
                        "{}: {} rows, down {:.1} % from {} in the last passed drill of tier `{tier}` (run {}, {}); max_drop is {:.1} %",
                        c.name,
                        c.rows,
                        d * 100.0,
                        b.rows,
                        b.run_id,
                        b.started_at,
                        m * 100.0
                    ))
                    .in_table(&c.name),
                );
                PolicyStatus::Failed
            }
            (Some(_), Some(_), Some(_)) => PolicyStatus::Passed,
        };
        counts.push(CountReport {
            name: c.name.clone(),
            rows: c.rows,
            min: c.min,
            min_status,
            baseline_rows: base.map(|b| b.rows),
            baseline_run_id: base.map(|b| b.run_id.clone()),
            drop,
            max_drop: c.max_drop,
            max_drop_status,
        });
    }
    let mut notes = Vec::new();
    if !unknown.is_empty() {
        let why = if baselines.passed_drills == 0 {
            format!("no earlier passed drill of tier `{tier}`")
        } else {
            format!("no earlier passed drill of tier `{tier}` counted them")
        };
        notes.push(format!(
            "max_drop unknown for {}: {why}; this drill is their baseline once it passes",
            unknown.join(", ")
        ));
    }
    for s in &baselines.skipped {
        notes.push(format!("history: skipped an unreadable report: {s}"));
    }
    let total: u64 = counted.iter().map(|c| c.rows).sum();
    let detail = if findings.is_empty() {
        format!(
            "{} counted, {} rows in all{}",
            plural(counted.len(), "table or group", "tables or groups"),
            total,
            if unknown.is_empty() {
                String::new()
            } else {
                format!("; max_drop unknown for {}", unknown.len())
            }
        )
    } else {
        format!(
            "{} of {} out of bounds",
            findings.len(),
            plural(counted.len(), "count", "counts")
        )
    };
    Conclusion {
        detail,
        findings,
        notes,
        counts,
        ..Default::default()
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The `row-counts` check.
pub(super) struct RowCountsCheck;

impl super::Check for RowCountsCheck {
    fn kind(&self) -> &'static str {
        "row-counts"
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
            let CheckSpec::RowCounts { tables, groups } = &def.spec else {
                return Err(super::Incomplete::from(CheckError::Shape(format!(
                    "check `{}` is not of kind row-counts",
                    def.name
                ))));
            };
            run(ctx, &def.name, tables, groups, def.timeout)
                .await
                .map_err(super::Incomplete::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, rows: u64, min: u64, max_drop: Option<f64>) -> Counted {
        Counted {
            name: name.into(),
            rows,
            min,
            max_drop,
        }
    }

    #[test]
    fn first_drill_reports_unknown_not_passed() {
        let c = judge(
            "hive",
            "counts",
            "local",
            &[item("axec.employees", 240, 1, Some(0.1))],
            &Baselines::default(),
        );
        assert!(c.findings.is_empty());
        assert_eq!(c.counts[0].max_drop_status, PolicyStatus::Unknown);
        assert!(
            c.notes[0].contains("max_drop unknown for axec.employees"),
            "{:?}",
            c.notes
        );
    }

    #[test]
    fn drop_beyond_max_fails_naming_the_baseline() {
        let mut b = Baselines::default();
        b.passed_drills = 1;
        let base = |rows| crate::report::history::Baseline {
            rows,
            run_id: "r1".into(),
            started_at: "2026-07-15T03:00:00+00:00".into(),
        };
        b.insert_if_absent(
            ("hive".into(), "counts".into(), "employees[axec]".into()),
            base(240),
        );
        b.insert_if_absent(
            ("hive".into(), "counts".into(), "employees[axev]".into()),
            base(180),
        );
        let g = CountedGroup {
            name: "employees".into(),
            query: "q".into(),
            expect: vec![],
            min: 1,
            max_drop: Some(0.1),
        };
        // axev vanished from the query's result: it counts 0.
        let rows = vec![vec![Some("axec".into()), Some("120".into())]];
        let known = vec!["axec".to_string(), "axev".to_string()];
        let items = groups_of(&g, &rows, &known).unwrap();
        let c = judge("hive", "counts", "local", &items, &b);
        assert_eq!(c.findings.len(), 3, "{:?}", c.findings);
        assert!(c.findings.iter().any(|f| f
            .what
            .contains("employees[axec]: 120 rows, down 50.0 % from 240")
            && f.what.contains("r1")));
        assert_eq!(c.counts[0].max_drop_status, PolicyStatus::Failed);
        let ok = judge(
            "hive",
            "counts",
            "local",
            &[item("employees[axec]", 230, 1, Some(0.1))],
            &b,
        );
        assert!(ok.findings.is_empty());
        assert_eq!(ok.counts[0].max_drop_status, PolicyStatus::Passed);
        assert!(ok.notes.is_empty());
    }

    #[test]
    fn min_fails_and_group_missing_counts_zero() {
        let g = CountedGroup {
            name: "employees".into(),
            query: "q".into(),
            expect: vec!["axec".into(), "axev".into()],
            min: 1,
            max_drop: None,
        };
        let rows = vec![vec![Some("axec".into()), Some("240".into())]];
        let items = groups_of(&g, &rows, &[]).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1], item("employees[axev]", 0, 1, None));
        let c = judge("hive", "x", "local", &items, &Baselines::default());
        assert_eq!(c.findings.len(), 1);
        assert!(c.findings[0].what.contains("employees[axev]: 0 rows"));
        let none = CountedGroup {
            expect: vec![],
            ..g.clone()
        };
        assert!(
            groups_of(&none, &[], &[]).is_err(),
            "nothing counted is never a pass"
        );
        assert!(groups_of(&g, &[vec![Some("a".into()), Some("x".into())]], &[]).is_err());
        assert_eq!(group_key("employees", "employees[axev]"), Some("axev"));
        assert_eq!(group_key("employees", "staff[axev]"), None);
    }
}
