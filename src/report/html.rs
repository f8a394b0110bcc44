//! Self-contained HTML pages: one per drill (beside its JSON and Markdown)
//! and the history page `drill report` renders, with SVG charts of RTO and
//! snapshot age per drill and the policy limits drawn. No script, no
//! external asset: a page opens from disk or a mail attachment as is.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::history::HistoryRow;
use super::{PolicyLimit, PolicyStatus, Report, Status};

/// Escape text for HTML element content and quoted attributes: the same
/// escaping as the JUnit writer's, so every page is also well-formed XML.
pub fn escape(s: &str) -> String {
    super::junit::xml_text(s)
}

const STYLE: &str = "body{font:14px/1.45 -apple-system,system-ui,sans-serif;margin:2em auto;max-width:1000px;padding:0 1em;color:#222}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}\
table{border-collapse:collapse;margin:.5em 0;width:100%}td,th{border:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}\
th{background:#f5f5f5}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.passed{color:#177a2c;font-weight:600}.failed{color:#b3261e;font-weight:600}.error,.not_run,.unknown{color:#8a5a00;font-weight:600}\
.badge{display:inline-block;padding:.1em .6em;border-radius:.3em;color:#fff}.badge.passed{background:#177a2c}.badge.failed{background:#b3261e}.badge.error{background:#8a5a00}\
code{background:#f3f3f3;padding:0 .2em}ul.findings{margin:.2em 0;font-family:monospace;font-size:.9em}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(title)
    )
}

/// Seconds as a short human duration (`1h 30m`, `45s`), `unknown` for none.
pub fn short_duration(seconds: Option<f64>) -> String {
    let Some(s) = seconds else {
        return "unknown".into();
    };
    let s = s.max(0.0).round() as u64;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "m"), (sec, "s")]
        .iter()
        .filter(|(v, _)| *v > 0)
        .take(2)
        .map(|(v, u)| format!("{v}{u}"))
        .collect();
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}

fn limit_cell(l: &PolicyLimit) -> String {
    let (class, word) = match l.status {
        PolicyStatus::Passed => ("passed", "within the limit"),
        PolicyStatus::Failed => ("failed", "over the limit"),
        PolicyStatus::NotConfigured => ("", "no limit configured"),
        PolicyStatus::Unknown => ("unknown", "not measured"),
    };
    format!(
        "{}{} — <span class=\"{class}\">{word}</span>",
        short_duration(l.actual_seconds),
        l.limit_seconds
            .map(|s| format!(" / limit {}", short_duration(Some(s))))
            .unwrap_or_default()
    )
}

fn status_span(s: Status) -> String {
    format!("<span class=\"{0}\">{0}</span>", s.as_str())
}

/// The page of one drill, times shown in `tz`.
pub fn render_report(r: &Report, tz: chrono_tz::Tz) -> String {
    let mut b = String::new();
    let t = |d: DateTime<Utc>| {
        d.with_timezone(&tz)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string()
    };
    let _ = writeln!(
        b,
        "<h1>Restore drill — {} <span class=\"badge {}\">{}</span></h1>",
        escape(&r.tier),
        r.verdict.as_str(),
        r.verdict.as_str().to_uppercase()
    );
    let _ = writeln!(b, "<table>");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(b, "<tr><th>{k}</th><td>{v}</td></tr>");
    };
    row(
        "run",
        format!(
            "<code>{}</code> (drill {})",
            escape(&r.run_id),
            escape(&r.drill_version)
        ),
    );
    row(
        "repository",
        format!(
            "<code>{}</code>{}",
            escape(&r.repository),
            r.disk.map(|d| format!(" (disk {d})")).unwrap_or_default()
        ),
    );
    row("started", t(r.started_at));
    row("finished", t(r.finished_at));
    row(
        "snapshot",
        match &r.snapshot {
            Some(s) => format!(
                "<code>{}</code> taken {} on {}",
                escape(&s.short_id),
                s.time.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z"),
                escape(if s.hostname.is_empty() {
                    "?"
                } else {
                    &s.hostname
                })
            ),
            None => "none".into(),
        },
    );
    row("RTO", limit_cell(&r.policy.max_rto));
    row("snapshot age (RPO)", limit_cell(&r.policy.max_snapshot_age));
    if r.policy.max_data_loss.status != super::PolicyStatus::NotConfigured {
        row("data loss (recovery)", limit_cell(&r.policy.max_data_loss));
    }
    let _ = writeln!(b, "</table>");
    let list = |b: &mut String, title: &str, items: &[String]| {
        if !items.is_empty() {
            let _ = writeln!(b, "<h2>{title}</h2>\n<ul>");
            for i in items {
                let _ = writeln!(b, "<li>{}</li>", escape(i));
            }
            let _ = writeln!(b, "</ul>");
        }
    };
    list(&mut b, "Why not passed", &r.reasons);
    list(&mut b, "Warnings", &r.warnings);
    if r.attempts.len() > 1 {
        let _ = writeln!(b, "<h2>Tiers tried</h2>\n<table><tr><th>tier</th><th>verdict</th><th>report</th><th>first reason</th></tr>");
        for a in &r.attempts {
            let _ = writeln!(
                b,
                "<tr><td>{0}</td><td class=\"{1}\">{1}</td><td>{2}</td><td>{3}</td></tr>",
                escape(&a.tier),
                a.verdict.as_str(),
                escape(&a.report),
                escape(a.reasons.first().map(String::as_str).unwrap_or(""))
            );
        }
        let _ = writeln!(b, "</table>");
    }
    let _ = writeln!(b, "<h2>Databases</h2>\n<table><tr><th>database</th><th>dump</th><th>restore</th><th>bytes</th><th>seconds</th><th>checks passed</th></tr>");
    for d in &r.databases {
        let passed = d
            .checks
            .iter()
            .filter(|c| c.status == Status::Passed)
            .count();
        let _ = writeln!(
            b,
            "<tr><td>{}</td><td><code>{}</code> ({})</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{:.1}</td><td class=\"n\">{passed}/{}</td></tr>",
            escape(&d.name),
            escape(&d.path),
            escape(&d.format),
            status_span(d.restore.status),
            d.restore.bytes,
            d.restore.seconds,
            d.checks.len()
        );
    }
    let _ = writeln!(b, "</table>");
    for d in &r.databases {
        let _ = writeln!(b, "<h2>{}</h2>", escape(&d.name));
        let _ = writeln!(
            b,
            "<p>Restore {} with {} into <code>{}</code>{}.</p>",
            status_span(d.restore.status),
            escape(d.restore.tool.as_deref().unwrap_or("-")),
            escape(&d.restore.image),
            d.restore
                .server_version
                .as_deref()
                .map(|v| format!(" ({} {})", d.server_title(), escape(v)))
                .unwrap_or_default()
        );
        if let Some(v) = d.restore.dump.as_ref().filter(|v| v.tool.is_some()) {
            let _ = writeln!(
                b,
                "<p>Dumped from {} {} by {}.</p>",
                d.server_title(),
                escape(v.server.as_deref().unwrap_or("(not stated)")),
                escape(v.tool.as_deref().unwrap_or("(not stated)"))
            );
        } else if let Some(v) = &d.restore.dump {
            let _ = writeln!(
                b,
                "<p>Dumped from PostgreSQL {} by pg_dump {}.</p>",
                escape(v.server.as_deref().unwrap_or("(not stated)")),
                escape(v.pg_dump.as_deref().unwrap_or("(not stated)"))
            );
        }
        if !d.restore.roles_created.is_empty() {
            let roles: Vec<String> = d
                .restore
                .roles_created
                .iter()
                .map(|r| format!("<code>{}</code>", escape(r)))
                .collect();
            let _ = writeln!(
                b,
                "<p>Roles created in the sandbox (NOLOGIN): {}.</p>",
                roles.join(", ")
            );
        }
        if let Some(e) = &d.restore.error {
            let _ = writeln!(b, "<p class=\"failed\">{}</p>", escape(e));
        }
        if let (Some(class), Some(cause)) = (&d.restore.class, &d.restore.cause) {
            let _ = writeln!(b, "<p>Cause: {} ({}).</p>", escape(cause), escape(class));
        }
        if d.checks.is_empty() {
            continue;
        }
        let _ = writeln!(b, "<table><tr><th>check</th><th>kind</th><th>status</th><th>seconds</th><th>detail</th></tr>");
        for c in &d.checks {
            let mut detail = escape(&c.detail);
            if !c.findings.is_empty() {
                detail.push_str("<ul class=\"findings\">");
                for f in &c.findings {
                    let _ = write!(detail, "<li>{}</li>", escape(f));
                }
                detail.push_str("</ul>");
            }
            if !c.notes.is_empty() {
                detail.push_str("<ul>");
                for n in &c.notes {
                    let _ = write!(detail, "<li>{}</li>", escape(n));
                }
                detail.push_str("</ul>");
            }
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{:.2}</td><td>{detail}</td></tr>",
                escape(&c.name),
                escape(&c.kind),
                status_span(c.status),
                c.seconds
            );
        }
        let _ = writeln!(b, "</table>");
    }
    page(
        &format!("drill {} {} — {}", r.tier, r.verdict.as_str(), r.run_id),
        &b,
    )
}

/// One series of a history chart: `(time, value seconds, verdict)`.
type Point<'a> = (DateTime<Utc>, f64, &'a str);

/// An SVG line chart of `points` over time, with a dashed line at `limit`
/// (seconds) when one is configured. Points are coloured by verdict.
pub fn chart(title: &str, points: &[Point<'_>], limit: Option<f64>) -> String {
    const W: f64 = 720.0;
    const H: f64 = 260.0;
    const L: f64 = 70.0;
    const R: f64 = 20.0;
    const T: f64 = 30.0;
    const B: f64 = 40.0;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">",
        escape(title)
    );
    let _ = write!(
        s,
        "<text x=\"{L}\" y=\"18\" font-size=\"14\" font-weight=\"600\">{}</text>",
        escape(title)
    );
    if points.is_empty() {
        let _ = write!(
            s,
            "<text x=\"{L}\" y=\"{}\" font-size=\"13\">no drills recorded yet</text></svg>",
            H / 2.0
        );
        return s;
    }
    let t0 = points.iter().map(|p| p.0).min().expect("points");
    let t1 = points.iter().map(|p| p.0).max().expect("points");
    let (t0, t1) = if t0 == t1 {
        (
            t0 - chrono::Duration::days(1),
            t1 + chrono::Duration::days(1),
        )
    } else {
        (t0, t1)
    };
    let span = (t1 - t0).num_seconds().max(1) as f64;
    let top = points
        .iter()
        .map(|p| p.1)
        .chain(limit)
        .fold(1.0_f64, f64::max)
        * 1.1;
    let x = |t: DateTime<Utc>| L + (t - t0).num_seconds() as f64 / span * (W - L - R);
    let y = |v: f64| H - B - v / top * (H - T - B);
    // axes and ticks
    let _ = write!(
        s,
        "<line x1=\"{L}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#888\"/><line x1=\"{L}\" y1=\"{T}\" x2=\"{L}\" y2=\"{0}\" stroke=\"#888\"/>",
        H - B,
        W - R
    );
    for i in 0..=4 {
        let v = top / 4.0 * i as f64;
        let _ = write!(
            s,
            "<line x1=\"{L}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#eee\"/><text x=\"{2}\" y=\"{3:.1}\" font-size=\"11\" text-anchor=\"end\">{4}</text>",
            y(v),
            W - R,
            L - 6.0,
            y(v) + 4.0,
            short_duration(Some(v))
        );
    }
    for (i, t) in [t0, t0 + (t1 - t0) / 2, t1].iter().enumerate() {
        let anchor = ["start", "middle", "end"][i];
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"{anchor}\">{}</text>",
            x(*t),
            H - B + 16.0,
            t.format("%Y-%m-%d")
        );
    }
    if let Some(l) = limit {
        let _ = write!(
            s,
            "<line class=\"limit\" x1=\"{L}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#b3261e\" stroke-dasharray=\"6 4\"/><text x=\"{2}\" y=\"{3:.1}\" font-size=\"11\" fill=\"#b3261e\" text-anchor=\"end\">limit {4}</text>",
            y(l),
            W - R,
            W - R,
            y(l) - 4.0,
            short_duration(Some(l))
        );
    }
    let path: Vec<String> = points
        .iter()
        .map(|p| format!("{:.1},{:.1}", x(p.0), y(p.1)))
        .collect();
    let _ = write!(
        s,
        "<polyline fill=\"none\" stroke=\"#3366aa\" stroke-width=\"1.5\" points=\"{}\"/>",
        path.join(" ")
    );
    for p in points {
        let colour = match p.2 {
            "passed" => "#177a2c",
            "failed" => "#b3261e",
            _ => "#8a5a00",
        };
        let _ = write!(
            s,
            "<circle class=\"drill {3}\" cx=\"{0:.1}\" cy=\"{1:.1}\" r=\"4\" fill=\"{2}\"><title>{4} {3} {5}</title></circle>",
            x(p.0),
            y(p.1),
            colour,
            escape(p.2),
            p.0.format("%Y-%m-%d %H:%M UTC"),
            short_duration(Some(p.1))
        );
    }
    s.push_str("</svg>");
    s
}

/// One ledger strip: a mark per snapshot, coloured by its state.
fn ledger_strip(
    tier: &str,
    database: &str,
    marks: &[crate::ledger::Mark],
    tz: chrono_tz::Tz,
) -> String {
    const W: usize = 10;
    let width = 160 + marks.len().max(1) * (W + 2);
    let mut s = format!(
        "<svg class=\"ledger\" viewBox=\"0 0 {width} 24\" width=\"100%\" style=\"max-width:{width}px\" role=\"img\" aria-label=\"ledger of {0} / {1}\"><text x=\"0\" y=\"16\" font-size=\"12\">{0} / {1}</text>",
        escape(tier),
        escape(database)
    );
    for (i, m) in marks.iter().enumerate() {
        let fill = match m.state.as_str() {
            "passed" => "#177a2c",
            "inherited-passed" => "#8fd19e",
            "failed" => "#b3261e",
            "inherited-failed" => "#e8a19b",
            "error" | "inherited-error" => "#8a5a00",
            _ => "#bbbbbb",
        };
        let when = chrono::DateTime::parse_from_rfc3339(&m.time)
            .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string())
            .unwrap_or_else(|_| m.time.clone());
        let _ = write!(
            s,
            "<rect class=\"mark {3}\" x=\"{0}\" y=\"4\" width=\"{W}\" height=\"16\" fill=\"{1}\"><title>{2} {4} {3}</title></rect>",
            160 + i * (W + 2),
            fill,
            escape(&m.id[..m.id.len().min(8)]),
            escape(&m.state),
            when
        );
    }
    s.push_str("</svg>");
    s
}

/// The history page: per tier, RTO and snapshot age per drill over time
/// (with `max_rto` and `max_snapshot_age` drawn), then every drill with a
/// link to its page. `rows` oldest first, as in `history.csv`.
pub fn render_history(
    rows: &[HistoryRow],
    max_rto: Option<f64>,
    max_snapshot_age: Option<f64>,
    tz: chrono_tz::Tz,
    ledger: &[(String, String, Vec<crate::ledger::Mark>)],
) -> String {
    let mut b = String::new();
    let _ = writeln!(b, "<h1>Restore drills</h1>");
    let _ = writeln!(
        b,
        "<p>{} drill(s) in <code>history.csv</code>. Red dashed lines are the policy limits.</p>",
        rows.len()
    );
    let mut tiers: Vec<&str> = rows.iter().map(|r| r.tier.as_str()).collect();
    tiers.sort_unstable();
    tiers.dedup();
    for tier in &tiers {
        let of_tier: Vec<&HistoryRow> = rows.iter().filter(|r| r.tier == *tier).collect();
        let rto: Vec<Point<'_>> = of_tier
            .iter()
            .filter_map(|r| r.rto_seconds.map(|v| (r.started_at, v, r.verdict.as_str())))
            .collect();
        let age: Vec<Point<'_>> = of_tier
            .iter()
            .filter_map(|r| {
                r.snapshot_age_seconds
                    .map(|v| (r.started_at, v, r.verdict.as_str()))
            })
            .collect();
        let _ = writeln!(b, "<h2>Tier {}</h2>", escape(tier));
        let _ = writeln!(
            b,
            "{}",
            chart(&format!("RTO per drill — {tier}"), &rto, max_rto)
        );
        let _ = writeln!(
            b,
            "{}",
            chart(
                &format!("Snapshot age per drill — {tier}"),
                &age,
                max_snapshot_age
            )
        );
    }
    if !ledger.is_empty() {
        let _ = writeln!(
            b,
            "<h2>Ledger</h2>\n<p>One mark per snapshot (oldest left), by its verdict in the ledger: <span style=\"color:#177a2c\">■ passed</span> <span style=\"color:#8fd19e\">■ inherited passed</span> <span style=\"color:#b3261e\">■ failed</span> <span style=\"color:#e8a19b\">■ inherited failed</span> <span style=\"color:#8a5a00\">■ error</span> <span style=\"color:#bbbbbb\">■ no verdict</span></p>"
        );
        for (tier, database, marks) in ledger {
            let _ = writeln!(b, "{}", ledger_strip(tier, database, marks, tz));
        }
    }
    let _ = writeln!(b, "<h2>Drills</h2>\n<table><tr><th>started</th><th>tier</th><th>verdict</th><th>snapshot</th><th>RTO</th><th>snapshot age</th><th>bytes restored</th><th>checks passed / failed</th><th>report</th></tr>");
    for r in rows.iter().rev() {
        let page = r.report.strip_suffix(".json").map(|s| format!("{s}.html"));
        let _ = writeln!(
            b,
            "<tr><td>{0}</td><td>{1}</td><td class=\"{2}\">{2}</td><td><code>{3}</code></td><td class=\"n\">{4}</td><td class=\"n\">{5}</td><td class=\"n\">{6}</td><td class=\"n\">{7} / {8}</td><td>{9}</td></tr>",
            r.started_at.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"),
            escape(&r.tier),
            escape(&r.verdict),
            escape(r.snapshot.get(..8).unwrap_or(&r.snapshot)),
            short_duration(r.rto_seconds),
            short_duration(r.snapshot_age_seconds),
            r.bytes_restored.map(|v| v.to_string()).unwrap_or_default(),
            r.checks_passed.map(|v| v.to_string()).unwrap_or_default(),
            r.checks_failed.map(|v| v.to_string()).unwrap_or_default(),
            match page {
                Some(p) => format!("<a href=\"{0}\">{0}</a>", escape(&p)),
                None => escape(&r.report),
            }
        );
    }
    let _ = writeln!(b, "</table>");
    page("drill history", &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_escaping() {
        assert_eq!(short_duration(Some(5400.0)), "1h 30m");
        assert_eq!(short_duration(Some(45.2)), "45s");
        assert_eq!(short_duration(Some(0.0)), "0s");
        assert_eq!(short_duration(None), "unknown");
        assert_eq!(
            escape("<a href=\"x\">&'\u{1}"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;\u{FFFD}"
        );
    }

    #[test]
    fn chart_draws_points_and_limit() {
        let t = |d: u32| chrono::TimeZone::with_ymd_and_hms(&Utc, 2027, 1, d, 3, 0, 0).unwrap();
        let pts = [(t(1), 60.0, "passed"), (t(2), 7200.0, "failed")];
        let svg = chart("RTO", &pts, Some(3600.0));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("class=\"limit\""));
        assert!(svg.contains("limit 1h"));
        assert!(chart("RTO", &[], None).contains("no drills recorded yet"));
    }
}
