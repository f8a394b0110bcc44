//! The Markdown rendering of a report, for a person.

use std::fmt::Write;

use super::{PolicyLimit, PolicyStatus, Report, Status};

fn secs(v: Option<f64>) -> String {
    crate::duration::human_or_unknown(v)
}

fn limit(l: &PolicyLimit) -> String {
    match l.status {
        PolicyStatus::NotConfigured => format!("{} (no limit configured)", secs(l.actual_seconds)),
        s => {
            let (actual, most) = crate::duration::against_limit(l.actual_seconds, l.limit_seconds);
            format!(
                "{actual} / limit {most} — **{}**",
                match s {
                    PolicyStatus::Passed => "passed",
                    PolicyStatus::Failed => "failed",
                    _ => "unknown",
                }
            )
        }
    }
}

fn policy_word(s: PolicyStatus) -> &'static str {
    match s {
        PolicyStatus::Passed => "passed",
        PolicyStatus::Failed => "failed",
        PolicyStatus::NotConfigured => "not configured",
        PolicyStatus::Unknown => "unknown",
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Render `r` with times shown in `tz`.
pub(super) fn render(r: &Report, tz: chrono_tz::Tz) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Restore drill — {} — {}\n",
        r.tier,
        r.verdict.as_str().to_uppercase()
    );
    let _ = writeln!(o, "- run: `{}` (drill {})", r.run_id, r.drill_version);
    let _ = writeln!(
        o,
        "- repository: `{}`{}",
        r.repository,
        r.disk.map(|d| format!(" (disk {d})")).unwrap_or_default()
    );
    let _ = writeln!(
        o,
        "- started: {} — finished: {}",
        r.started_at
            .with_timezone(&tz)
            .format("%Y-%m-%d %H:%M:%S %Z"),
        r.finished_at
            .with_timezone(&tz)
            .format("%Y-%m-%d %H:%M:%S %Z")
    );
    match &r.snapshot {
        Some(s) => {
            let _ = writeln!(
                o,
                "- snapshot: `{}` taken {} on {}",
                s.short_id,
                s.time.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z"),
                if s.hostname.is_empty() {
                    "?"
                } else {
                    &s.hostname
                }
            );
        }
        None => {
            let _ = writeln!(o, "- snapshot: none");
        }
    }
    let _ = writeln!(o, "- RTO: {}", limit(&r.policy.max_rto));
    let _ = writeln!(
        o,
        "- snapshot age (RPO): {}",
        limit(&r.policy.max_snapshot_age)
    );
    if r.policy.max_data_loss.status != PolicyStatus::NotConfigured {
        let _ = writeln!(
            o,
            "- data loss proved by recovery: {}",
            limit(&r.policy.max_data_loss)
        );
    }
    if !r.reasons.is_empty() {
        let _ = writeln!(o, "\n## Why not passed\n");
        for reason in &r.reasons {
            let _ = writeln!(o, "- {}", reason.replace('\n', " "));
        }
    }
    if r.attempts.len() > 1 {
        let _ = writeln!(o, "\n## Tiers tried\n");
        for a in &r.attempts {
            let _ = writeln!(
                o,
                "- {}: **{}** ({}){}",
                a.tier,
                a.verdict.as_str(),
                a.report,
                a.reasons
                    .first()
                    .map(|x| format!(" — {}", x.replace('\n', " ")))
                    .unwrap_or_default()
            );
        }
    }
    if !r.warnings.is_empty() {
        let _ = writeln!(o, "\n## Warnings\n");
        for w in &r.warnings {
            let _ = writeln!(o, "- {}", w.replace('\n', " "));
        }
    }
    let _ = writeln!(o, "\n## Databases\n");
    let _ = writeln!(o, "| database | dump | restore | bytes | time | checks |");
    let _ = writeln!(o, "|---|---|---|---:|---:|---|");
    for d in &r.databases {
        let passed = d
            .checks
            .iter()
            .filter(|c| c.status == Status::Passed)
            .count();
        let _ = writeln!(
            o,
            "| {} | `{}` ({}) | {} | {} | {} | {}/{} passed |",
            d.name,
            d.path,
            d.format,
            d.restore.status.as_str(),
            d.restore.bytes,
            secs(Some(d.restore.seconds)),
            passed,
            d.checks.len()
        );
    }
    for d in &r.databases {
        let _ = writeln!(o, "\n### {}\n", d.name);
        let _ = writeln!(
            o,
            "Restore: **{}** with {} into {}{}.",
            d.restore.status.as_str(),
            d.restore.tool.as_deref().unwrap_or("-"),
            d.restore.image,
            d.restore
                .server_version
                .as_deref()
                .map(|v| format!(" ({} {v})", d.server_title()))
                .unwrap_or_default()
        );
        if let Some(v) = d.restore.dump.as_ref().filter(|v| v.tool.is_some()) {
            let _ = writeln!(
                o,
                "\nDumped from {} {} by {}.",
                d.server_title(),
                v.server.as_deref().unwrap_or("(not stated)"),
                v.tool.as_deref().unwrap_or("(not stated)")
            );
        } else if let Some(v) = &d.restore.dump {
            let _ = writeln!(
                o,
                "\nDumped from PostgreSQL {} by pg_dump {}{}.",
                v.server.as_deref().unwrap_or("(not stated)"),
                v.pg_dump.as_deref().unwrap_or("(not stated)"),
                v.archive
                    .as_deref()
                    .map(|a| format!(", archive format {a}"))
                    .unwrap_or_default()
            );
        }
        if !d.restore.roles_created.is_empty() {
            let roles: Vec<String> = d
                .restore
                .roles_created
                .iter()
                .map(|r| format!("`{r}`"))
                .collect();
            let _ = writeln!(
                o,
                "\nRoles created in the sandbox (NOLOGIN): {}.",
                roles.join(", ")
            );
        }
        if !d.restore.increments.is_empty() {
            let _ = writeln!(o, "\n| increment | status | bytes | time |");
            let _ = writeln!(o, "|---|---|---:|---:|");
            for i in &d.restore.increments {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} |",
                    i.path,
                    i.status.as_str(),
                    i.bytes,
                    secs(Some(i.seconds))
                );
            }
        }
        if let Some(rec) = &d.restore.recovery {
            let _ = writeln!(o, "\n| recovery | |\n|---|---|");
            let rows = [
                (
                    "base backup",
                    format!("{} ({})", rec.base_backup, rec.base_format),
                ),
                (
                    "base backup started",
                    format!(
                        "{} at WAL {}",
                        rec.base_started_at.as_deref().unwrap_or("unknown"),
                        rec.base_start_lsn
                    ),
                ),
                ("target", rec.target.clone()),
                (
                    "reached",
                    if rec.reached { "yes" } else { "no" }.to_string(),
                ),
                (
                    "replayed to",
                    rec.replay_lsn.clone().unwrap_or_else(|| "-".into()),
                ),
                (
                    "last replayed transaction",
                    rec.last_transaction_at
                        .clone()
                        .unwrap_or_else(|| "-".into()),
                ),
                (
                    "data loss",
                    rec.data_loss_seconds
                        .map(crate::duration::human_seconds)
                        .unwrap_or_else(|| "unknown".into()),
                ),
                (
                    "WAL replayed",
                    format!(
                        "{} segments of {} bytes, {} bytes",
                        rec.wal_segments, rec.segment_bytes, rec.wal_bytes
                    ),
                ),
                (
                    "phases",
                    format!(
                        "base backup {}, WAL fetch {}, replay {}",
                        secs(Some(rec.base_seconds)),
                        secs(Some(rec.wal_fetch_seconds)),
                        secs(Some(rec.replay_seconds))
                    ),
                ),
            ];
            for (k, v) in rows {
                let _ = writeln!(o, "| {k} | {v} |");
            }
        }
        for n in &d.restore.notes {
            let _ = writeln!(o, "\nNote: {}", n.replace('\n', " "));
        }
        if let Some(e) = &d.restore.error {
            let _ = writeln!(o, "\n> {}", e.replace('\n', " "));
        }
        if let (Some(class), Some(cause)) = (&d.restore.class, &d.restore.cause) {
            let _ = writeln!(o, "\nCause: {cause} ({class}).");
        }
        if !d.checks.is_empty() {
            let _ = writeln!(o, "\n| check | kind | status | time | detail |");
            let _ = writeln!(o, "|---|---|---|---:|---|");
            for c in &d.checks {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} |",
                    c.name,
                    c.kind,
                    c.status.as_str(),
                    secs(Some(c.seconds)),
                    cell(&c.detail)
                );
            }
            for c in &d.checks {
                if !c.findings.is_empty() {
                    let _ = writeln!(o, "\nFindings of `{}`:\n", c.name);
                    for f in &c.findings {
                        let _ = writeln!(o, "- {}", f.replace('\n', " "));
                    }
                }
                if !c.notes.is_empty() {
                    let _ = writeln!(o, "\nNotes of `{}`:\n", c.name);
                    for n in &c.notes {
                        let _ = writeln!(o, "- {}", n.replace('\n', " "));
                    }
                }
                if !c.counts.is_empty() {
                    let _ = writeln!(o, "\nRow counts of `{}`:\n", c.name);
                    let _ = writeln!(o, "| table | rows | min | baseline | drop | max_drop |");
                    let _ = writeln!(o, "|---|---:|---:|---:|---:|---|");
                    for n in &c.counts {
                        let _ = writeln!(
                            o,
                            "| {} | {} | {} ({}) | {} | {} | {} |",
                            cell(&n.name),
                            n.rows,
                            n.min,
                            n.min_status.as_str(),
                            n.baseline_rows
                                .map(|b| b.to_string())
                                .unwrap_or_else(|| "-".into()),
                            n.drop
                                .map(|d| format!("{:.1} %", d * 100.0))
                                .unwrap_or_else(|| "-".into()),
                            match (n.max_drop, n.max_drop_status) {
                                (Some(m), st) =>
                                    format!("{:.1} % ({})", m * 100.0, policy_word(st)),
                                (None, _) => "not configured".into(),
                            }
                        );
                    }
                }
                if !c.output.is_empty() {
                    let _ = writeln!(o, "\nOutput of `{}`:\n\n```", c.name);
                    for l in &c.output {
                        let _ = writeln!(o, "{}", l.replace("```", "'''"));
                    }
                    let _ = writeln!(o, "```");
                }
            }
        }
    }
    o
}
