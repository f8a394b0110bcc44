//! Self-contained HTML pages: one per drill (beside its JSON and Markdown)
//! and the history page `drill report` renders, with SVG charts of RTO and
//! snapshot age per drill and the policy limits drawn. No script, no
//! external asset: a page opens from disk or a mail attachment as is.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::history::HistoryRow;
use super::Report;

/// Escape text for HTML element content and quoted attributes, so every
/// page is also well-formed XML: `&<>"'` as entities, control characters
/// XML forbids (all below U+0020 but tab, newline and carriage return, and
/// U+FFFE/U+FFFF) as U+FFFD.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(xml_char(c)),
        }
    }
    o
}

/// `c`, or U+FFFD where XML 1.0 forbids it.
fn xml_char(c: char) -> char {
    match c {
        '\t' | '\n' | '\r' => c,
        c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
        c => c,
    }
}

/// Bytes for people, in IEC units as the config's sizes: `512 B`,
/// `1.5 KiB`, `2.3 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if v < 10.0 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

const STYLE: &str = "body{font:14px/1.45 -apple-system,system-ui,sans-serif;margin:2em auto;max-width:1000px;padding:0 1em;color:#222}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}\
table{border-collapse:collapse;margin:.5em 0;width:100%}td,th{border:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}\
th{background:#f5f5f5}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.passed{color:#177a2c;font-weight:600}.failed{color:#b3261e;font-weight:600}.error,.not_run,.unknown{color:#8a5a00;font-weight:600}\
.badge{display:inline-block;padding:.1em .6em;border-radius:.3em;color:#fff}.badge.passed{background:#177a2c}.badge.failed{background:#b3261e}.badge.error{background:#8a5a00}\
code{background:#f3f3f3;padding:0 .2em}ul.findings{margin:.2em 0;font-family:monospace;font-size:.9em}\
p,li{overflow-wrap:anywhere}td{overflow-wrap:break-word}pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f7f7f7;padding:.5em}\
svg.chart{width:100%;height:auto;display:block;margin:.5em 0}.legend span{margin-right:1.2em;white-space:nowrap}\
table.banner td,table.banner th{font-size:.95em}.scroll{overflow-x:auto}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(title)
    )
}

/// Seconds as a short human duration (`1h 30m`, `45s`), `unknown` for none:
/// [`crate::duration::human_or_unknown`].
pub fn short_duration(seconds: Option<f64>) -> String {
    crate::duration::human_or_unknown(seconds)
}

/// The page of one drill, times shown in `tz`: a verdict badge, then the
/// drill's Markdown report (everything it holds: policy, reasons, tiers
/// tried, per database the restore, versions, increments, recovery,
/// checks with findings, row counts and command output) rendered to HTML
/// by pulldown-cmark (CommonMark with tables). HTML in the report's text
/// (a finding, a command's output) is shown as text, never interpreted.
pub fn render_report(r: &Report, tz: chrono_tz::Tz) -> String {
    use pulldown_cmark::{Event, Options, Parser};
    let markdown = r.to_markdown(tz);
    // The Markdown's own title is replaced by one with a badge.
    let body_md = match markdown.split_once('\n') {
        Some((first, rest)) if first.starts_with("# ") => rest,
        _ => markdown.as_str(),
    };
    let events = Parser::new_ext(body_md, Options::ENABLE_TABLES).map(|e| match e {
        Event::Html(t) | Event::InlineHtml(t) => Event::Text(t),
        Event::Text(t) => Event::Text(t.chars().map(xml_char).collect::<String>().into()),
        Event::Code(t) => Event::Code(t.chars().map(xml_char).collect::<String>().into()),
        e => e,
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    let b = format!(
        "<h1>Restore drill — {} <span class=\"badge {}\">{}</span></h1>\n<div class=\"scroll\">\n{html}</div>\n",
        escape(&r.tier),
        r.verdict.as_str(),
        r.verdict.as_str().to_uppercase()
    );
    page(
        &format!("drill {} {} — {}", r.tier, r.verdict.as_str(), r.run_id),
        &b,
    )
}

/// One drill on a history chart: when it started, the value (seconds;
/// `None` when the drill has none: nothing restored, no snapshot) and its
/// verdict.
pub type Point<'a> = (DateTime<Utc>, Option<f64>, &'a str);

/// Tick steps of a duration axis, seconds: round figures people read.
const DURATION_STEPS: [f64; 22] = [
    1.0,
    2.0,
    5.0,
    10.0,
    15.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    14_400.0,
    21_600.0,
    43_200.0,
    86_400.0,
    172_800.0,
    604_800.0,
    1_209_600.0,
    2_592_000.0,
];

/// Tick steps of a time axis, seconds.
const TIME_STEPS: [i64; 12] = [
    3600, 10_800, 21_600, 43_200, 86_400, 172_800, 604_800, 1_209_600, 2_592_000, 7_776_000,
    15_552_000, 31_536_000,
];

/// The round step for an axis from 0 to `max` seconds with at most five
/// intervals, and the axis top (a multiple of it).
fn duration_axis(max: f64) -> (f64, f64) {
    let step = DURATION_STEPS
        .iter()
        .copied()
        .find(|s| max / s <= 5.0)
        .unwrap_or_else(|| (max / 5.0 / 2_592_000.0).ceil() * 2_592_000.0);
    (step, ((max / step).ceil().max(1.0)) * step)
}

fn verdict_colour(verdict: &str) -> &'static str {
    match verdict {
        "passed" => "#177a2c",
        "failed" => "#b3261e",
        _ => "#8a5a00",
    }
}

/// An SVG line chart of `points` over time, with a dashed line at `limit`
/// (seconds) when one is configured. Each drill is a mark coloured by its
/// verdict (`class="drill <verdict>"`): a circle at its value, or, without
/// one, a triangle on the axis (`class="drill <verdict> missing"`, its
/// tooltip saying `missing`). Ticks are round durations and dates in `tz`.
/// The SVG scales to the page's width.
pub fn chart(
    title: &str,
    points: &[Point<'_>],
    limit: Option<f64>,
    missing: &str,
    tz: chrono_tz::Tz,
) -> String {
    const W: f64 = 720.0;
    const H: f64 = 260.0;
    const L: f64 = 70.0;
    const R: f64 = 20.0;
    const T: f64 = 30.0;
    const B: f64 = 40.0;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" preserveAspectRatio=\"xMinYMin meet\" role=\"img\" aria-label=\"{}\">",
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
            t0 - chrono::Duration::hours(12),
            t1 + chrono::Duration::hours(12),
        )
    } else {
        let pad = (t1 - t0) / 20;
        (t0 - pad, t1 + pad)
    };
    let span = (t1 - t0).num_seconds().max(1) as f64;
    let max = points
        .iter()
        .filter_map(|p| p.1)
        .chain(limit)
        .fold(1.0_f64, f64::max);
    let (step, top) = duration_axis(max * 1.05);
    let x = |t: DateTime<Utc>| L + (t - t0).num_seconds() as f64 / span * (W - L - R);
    let y = |v: f64| H - B - v / top * (H - T - B);
    // axes and round ticks
    let _ = write!(
        s,
        "<line x1=\"{L}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#888\"/><line x1=\"{L}\" y1=\"{T}\" x2=\"{L}\" y2=\"{0}\" stroke=\"#888\"/>",
        H - B,
        W - R
    );
    let mut v = 0.0;
    while v <= top + 0.5 {
        let _ = write!(
            s,
            "<line x1=\"{L}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#eee\"/><text class=\"tick\" x=\"{2}\" y=\"{3:.1}\" font-size=\"11\" text-anchor=\"end\">{4}</text>",
            y(v),
            W - R,
            L - 6.0,
            y(v) + 4.0,
            short_duration(Some(v))
        );
        v += step;
    }
    let tstep = TIME_STEPS
        .iter()
        .copied()
        .find(|s| span / *s as f64 <= 6.0)
        .unwrap_or(31_536_000);
    let format = match tstep {
        t if t < 86_400 => "%m-%d %H:%M",
        t if t < 2_592_000 => "%Y-%m-%d",
        _ => "%b %Y",
    };
    // The first tick: t0 rounded up to the step in local time (to a local
    // midnight for steps of a day or more).
    let local0 = t0.with_timezone(&tz);
    let midnight = |d: chrono::NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .and_then(|d| d.and_local_timezone(tz).earliest())
            .map(|d| d.with_timezone(&Utc))
    };
    let mut tick = if tstep >= 86_400 {
        local0
            .date_naive()
            .succ_opt()
            .and_then(midnight)
            .unwrap_or(t0)
    } else {
        // Whole steps from the local midnight before t0.
        let mut t = midnight(local0.date_naive()).unwrap_or(t0);
        while t < t0 {
            t += chrono::Duration::seconds(tstep);
        }
        t
    };
    // Steps of a month or more: the first of a month (of a quarter, half
    // year, year).
    let months = match tstep {
        2_592_000 => 1,
        7_776_000 => 3,
        15_552_000 => 6,
        31_536_000 => 12,
        _ => 0,
    };
    let month_ticks = |from: chrono::NaiveDate| {
        use chrono::Datelike;
        let mut out = Vec::new();
        let mut d = from.with_day(1).unwrap_or(from);
        while out.len() < 12 {
            if d.month0() % months == 0 {
                if let Some(t) = midnight(d).filter(|t| *t >= t0 && *t <= t1) {
                    out.push(t);
                }
            }
            d = d.checked_add_months(chrono::Months::new(1)).unwrap_or(d);
            if midnight(d).is_none_or(|t| t > t1) {
                break;
            }
        }
        out
    };
    let ticks: Vec<DateTime<Utc>> = if months > 0 {
        month_ticks(local0.date_naive())
    } else {
        let mut v = Vec::new();
        while tick <= t1 && v.len() < 12 {
            v.push(tick);
            tick += chrono::Duration::seconds(tstep);
        }
        v
    };
    for tick in ticks {
        let _ = write!(
            s,
            "<line x1=\"{0:.1}\" y1=\"{1}\" x2=\"{0:.1}\" y2=\"{2}\" stroke=\"#888\"/><text class=\"tick\" x=\"{0:.1}\" y=\"{3}\" font-size=\"11\" text-anchor=\"middle\">{4}</text>",
            x(tick),
            H - B,
            H - B + 4.0,
            H - B + 16.0,
            tick.with_timezone(&tz).format(format)
        );
    }
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#666\" text-anchor=\"end\">{}</text>",
        W - R,
        H - 6.0,
        escape(tz.name())
    );
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
        .filter_map(|p| p.1.map(|v| format!("{:.1},{:.1}", x(p.0), y(v))))
        .collect();
    if path.len() > 1 {
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"#3366aa\" stroke-width=\"1.5\" points=\"{}\"/>",
            path.join(" ")
        );
    }
    for p in points {
        let when = p.0.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z");
        match p.1 {
            Some(v) => {
                let _ = write!(
                    s,
                    "<circle class=\"drill {3}\" cx=\"{0:.1}\" cy=\"{1:.1}\" r=\"4.5\" fill=\"{2}\"><title>{4} {3} {5}</title></circle>",
                    x(p.0),
                    y(v),
                    verdict_colour(p.2),
                    escape(p.2),
                    when,
                    short_duration(Some(v))
                );
            }
            None => {
                let (cx, cy) = (x(p.0), H - B - 1.0);
                let _ = write!(
                    s,
                    "<path class=\"drill {3} missing\" d=\"M{0:.1},{1:.1} l-6,-10 h12 z\" fill=\"{2}\"><title>{4} {3}: {5}</title></path>",
                    cx,
                    cy,
                    verdict_colour(p.2),
                    escape(p.2),
                    when,
                    escape(missing)
                );
            }
        }
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

/// The history page: on top a banner per configured tier (`statuses`:
/// the same facts as `drill status`); per tier, RTO and snapshot age of
/// every drill over time (with `max_rto` and `max_snapshot_age` drawn; a
/// drill without the figure is a mark on the axis); the ledger strips;
/// then every drill with a link to its page. `rows` oldest first, as in
/// `history.csv`; times in `tz`.
pub fn render_history(
    rows: &[HistoryRow],
    statuses: &[crate::drill::status::TierStatus],
    max_rto: Option<f64>,
    max_snapshot_age: Option<f64>,
    tz: chrono_tz::Tz,
    ledger: &[(String, String, Vec<crate::ledger::Mark>)],
) -> String {
    let mut b = String::new();
    let when = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string();
    let _ = writeln!(b, "<h1>Restore drills</h1>");
    if !statuses.is_empty() {
        let _ = writeln!(b, "<div class=\"scroll\"><table class=\"banner\"><tr><th>tier</th><th>last drill</th><th>last passed drill</th><th>snapshot age then</th><th>next due</th></tr>");
        for st in statuses {
            let last = match &st.last {
                Some(r) => format!(
                    "{} <span class=\"{1}\">{1}</span>",
                    when(r.started_at),
                    escape(&r.verdict)
                ),
                None => "<span class=\"unknown\">never drilled</span>".into(),
            };
            let passed = st
                .last_passed
                .as_ref()
                .map(|r| when(r.started_at))
                .unwrap_or_else(|| "<span class=\"failed\">none</span>".into());
            let age = st
                .last_passed
                .as_ref()
                .map(|r| short_duration(r.snapshot_age_seconds))
                .unwrap_or_default();
            let due = match (st.due, st.overdue_seconds) {
                (Some(_), Some(o)) if o > 0.0 => format!(
                    "<span class=\"failed\">overdue by {}</span>",
                    short_duration(Some(o))
                ),
                (Some(d), _) => when(d),
                (None, _) if st.last_passed.is_none() && st.last.is_some() => {
                    "<span class=\"failed\">overdue: no drill has passed</span>".into()
                }
                (None, _) => "no schedule".into(),
            };
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td>{last}</td><td>{passed}</td><td>{age}</td><td>{due}</td></tr>",
                escape(&st.tier)
            );
        }
        let _ = writeln!(b, "</table></div>");
    }
    let _ = writeln!(
        b,
        "<p>{} drill(s) in <code>history.csv</code>; times in {}.</p>",
        rows.len(),
        escape(tz.name())
    );
    let _ = writeln!(
        b,
        "<p class=\"legend\"><span style=\"color:#177a2c\">● passed</span><span style=\"color:#b3261e\">● failed</span><span style=\"color:#8a5a00\">● error</span><span>▼ on the axis: no figure (nothing restored, or no snapshot reached)</span><span style=\"color:#b3261e\">╌ policy limit</span></p>"
    );
    let mut tiers: Vec<&str> = rows.iter().map(|r| r.tier.as_str()).collect();
    tiers.sort_unstable();
    tiers.dedup();
    for tier in &tiers {
        let of_tier: Vec<&HistoryRow> = rows.iter().filter(|r| r.tier == *tier).collect();
        let rto: Vec<Point<'_>> = of_tier
            .iter()
            .map(|r| (r.started_at, r.rto_seconds, r.verdict.as_str()))
            .collect();
        let age: Vec<Point<'_>> = of_tier
            .iter()
            .map(|r| (r.started_at, r.snapshot_age_seconds, r.verdict.as_str()))
            .collect();
        let _ = writeln!(b, "<h2>Tier {}</h2>", escape(tier));
        let _ = writeln!(
            b,
            "{}",
            chart(
                &format!("RTO per drill — {tier}"),
                &rto,
                max_rto,
                "no RTO: nothing was restored",
                tz
            )
        );
        let _ = writeln!(
            b,
            "{}",
            chart(
                &format!("Snapshot age per drill — {tier}"),
                &age,
                max_snapshot_age,
                "no snapshot age: no snapshot was reached",
                tz
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
    let _ = writeln!(b, "<h2>Drills</h2>\n<div class=\"scroll\"><table><tr><th>started</th><th>tier</th><th>verdict</th><th>snapshot</th><th>RTO</th><th>snapshot age</th><th>restored</th><th>checks passed / failed</th><th>report</th></tr>");
    for r in rows.iter().rev() {
        let page = r.report.strip_suffix(".json").map(|s| format!("{s}.html"));
        let _ = writeln!(
            b,
            "<tr><td>{0}</td><td>{1}</td><td class=\"{2}\">{2}</td><td><code>{3}</code></td><td class=\"n\">{4}</td><td class=\"n\">{5}</td><td class=\"n\">{6}</td><td class=\"n\">{7} / {8}</td><td>{9}</td></tr>",
            when(r.started_at),
            escape(&r.tier),
            escape(&r.verdict),
            if r.snapshot.is_empty() {
                "none".to_string()
            } else {
                escape(r.snapshot.get(..8).unwrap_or(&r.snapshot))
            },
            r.rto_seconds.map_or("—".into(), |v| short_duration(Some(v))),
            r.snapshot_age_seconds
                .map_or("—".into(), |v| short_duration(Some(v))),
            r.bytes_restored.map(human_bytes).unwrap_or_default(),
            r.checks_passed.map(|v| v.to_string()).unwrap_or_default(),
            r.checks_failed.map(|v| v.to_string()).unwrap_or_default(),
            match page {
                Some(p) => format!("<a href=\"{0}\">{0}</a>", escape(&p)),
                None => escape(&r.report),
            }
        );
    }
    let _ = writeln!(b, "</table></div>");
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
        let pts = [
            (t(1), Some(60.0), "passed"),
            (t(2), Some(7200.0), "failed"),
            (t(3), None, "error"),
        ];
        let tz = chrono_tz::Asia::Seoul;
        let svg = chart("RTO", &pts, Some(3600.0), "no RTO", tz);
        assert_eq!(svg.matches("<circle").count(), 2);
        assert_eq!(svg.matches("class=\"drill error missing\"").count(), 1);
        assert!(svg.contains("class=\"limit\""));
        assert!(svg.contains("limit 1h"));
        // Round ticks: 0, 30m, 1h, … 2h 30m for a top of 7200 s × 1.05.
        let ticks: Vec<&str> = svg
            .split("<text class=\"tick\"")
            .skip(1)
            .filter_map(|t| t.split('>').nth(1)?.split('<').next())
            .collect();
        assert!(
            ticks.starts_with(&["0s", "30m", "1h", "1h 30m", "2h", "2h 30m"]),
            "{ticks:?}"
        );
        // Times in the zone, on round hours: 2027-01-02 00:00 in Seoul.
        assert!(ticks.contains(&"01-02 00:00"), "{ticks:?}");
        assert!(ticks.contains(&"01-02 12:00"), "{ticks:?}");
        assert!(chart("RTO", &[], None, "", tz).contains("no drills recorded yet"));
    }

    #[test]
    fn axes_take_round_steps_and_bytes_read_as_iec() {
        assert_eq!(duration_axis(17_820.0), (3600.0, 18_000.0));
        assert_eq!(duration_axis(50.0), (10.0, 50.0));
        assert_eq!(duration_axis(0.5), (1.0, 1.0));
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(981_467_136), "936 MiB");
    }
}
