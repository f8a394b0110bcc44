//! Progress on stderr. One plain line per phase, fit for launchd logs and
//! CI, and during a long restore or check one line every
//! [`PLAIN_INTERVAL`] seconds; on a terminal, the same lines above
//! indicatif bars: per database the bytes restored of the dump's size (from
//! `restic ls`) with rate and ETA, then a spinner per running check.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::drill::RunOutcome;
use crate::report::{Event, EventSink, Status, Verdict};

/// Seconds between two plain progress lines of one restore or check.
pub const PLAIN_INTERVAL: f64 = 10.0;

/// Prints events on stderr: lines, and bars when stderr is a terminal.
pub struct Terminal {
    quiet: bool,
    verbose: u8,
    tz: chrono_tz::Tz,
    bars: Option<Bars>,
    /// Plain mode: when (seconds into it) each restore or check last had a
    /// progress line.
    last_line: Mutex<HashMap<String, f64>>,
}

/// The live bars of a terminal.
struct Bars {
    multi: MultiProgress,
    /// By database (restores) or `database/check` (checks).
    live: Mutex<HashMap<String, ProgressBar>>,
}

impl Terminal {
    /// A printer; `quiet` keeps only warnings and the verdict. Bars are
    /// drawn when stderr is a terminal (not `TERM=dumb`) and not `quiet`.
    pub fn new(quiet: bool, verbose: u8, tz: chrono_tz::Tz) -> Self {
        let bars = (!quiet
            && std::io::stderr().is_terminal()
            && std::env::var("TERM").map_or(true, |t| t != "dumb"))
        .then(|| Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            live: Mutex::new(HashMap::new()),
        });
        Terminal {
            quiet,
            verbose,
            tz,
            bars,
            last_line: Mutex::new(HashMap::new()),
        }
    }

    fn line(&self, text: &str) {
        let now = chrono::Utc::now()
            .with_timezone(&self.tz)
            .format("%H:%M:%S");
        let print = || {
            let _ = writeln!(std::io::stderr().lock(), "[{now}] {text}");
        };
        match &self.bars {
            Some(b) => b.multi.suspend(print),
            None => print(),
        }
    }

    /// Plain mode: whether the restore or check `key`, `seconds` into it,
    /// is due a progress line.
    fn due(&self, key: &str, seconds: f64) -> bool {
        let mut last = self.last_line.lock().expect("progress lock");
        let at = last.entry(key.to_string()).or_insert(0.0);
        if seconds - *at >= PLAIN_INTERVAL {
            *at = seconds;
            true
        } else {
            false
        }
    }

    /// Add a bar (replacing any under the same key).
    fn add_bar(&self, key: String, bar: ProgressBar) {
        if let Some(b) = &self.bars {
            let bar = b.multi.add(bar);
            if let Some(old) = b.live.lock().expect("bars lock").insert(key, bar) {
                old.finish_and_clear();
            }
        }
    }

    /// Do `f` to the bar under `key`, if there is one.
    fn with_bar(&self, key: &str, f: impl FnOnce(&ProgressBar)) {
        if let Some(b) = &self.bars {
            if let Some(bar) = b.live.lock().expect("bars lock").get(key) {
                f(bar);
            }
        }
    }

    /// Take the bar under `key` off the screen.
    fn remove_bar(&self, key: &str) {
        if let Some(b) = &self.bars {
            if let Some(bar) = b.live.lock().expect("bars lock").remove(key) {
                bar.finish_and_clear();
                b.multi.remove(&bar);
            }
        }
    }
}

/// The bar of a restore: bytes read of the dump's size, rate, ETA.
fn restore_bar(database: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:.bold} restore [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
    ) {
        bar.set_style(
            style
                .progress_chars("=> ")
                .with_key("eta", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&crate::duration::human(s.eta()));
                }),
        );
    }
    bar.set_prefix(database.to_string());
    bar
}

/// The spinner of a running check.
fn check_spinner(database: &str, name: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {prefix:.bold} check {msg} {elapsed}")
    {
        bar.set_style(style.with_key(
            "elapsed",
            |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&crate::duration::human(s.elapsed()));
            },
        ));
    }
    bar.set_prefix(database.to_string());
    bar.set_message(name.to_string());
    bar
}

/// `restored 512.0 MiB of 1.0 GiB (50%) in 20s, 25.6 MiB/s, about 20s
/// left`: a plain progress line's body.
pub fn restore_progress_line(bytes: u64, total: u64, seconds: f64) -> String {
    let rate = if seconds > 0.0 {
        bytes as f64 / seconds
    } else {
        0.0
    };
    let percent = (bytes.min(total) * 100)
        .checked_div(total)
        .map(|p| format!(" ({p}%)"))
        .unwrap_or_default();
    let left = if rate > 0.0 && total > bytes {
        format!(", about {} left", age((total - bytes) as f64 / rate))
    } else {
        String::new()
    };
    format!(
        "restored {} of {}{percent} in {}, {}/s{left}",
        size(bytes),
        size(total),
        age(seconds),
        size(rate as u64)
    )
}

fn size(bytes: u64) -> String {
    bytesize::ByteSize(bytes).to_string()
}

fn age(seconds: f64) -> String {
    crate::duration::human_seconds(seconds)
}

impl EventSink for Terminal {
    fn emit(&self, event: &Event) {
        if self.quiet && !matches!(event, Event::Warning { .. } | Event::Kept { .. }) {
            return;
        }
        match event {
            Event::Started { run_id, tier, repository } => {
                self.line(&format!("drill {run_id}: tier {tier} ({repository})"))
            }
            Event::SnapshotSelected {
                short_id,
                time,
                age_seconds,
            } => self.line(&format!(
                "snapshot {short_id} taken {} ({} old)",
                chrono::DateTime::parse_from_rfc3339(time)
                    .map(|t| t.with_timezone(&self.tz).format("%Y-%m-%d %H:%M:%S %Z").to_string())
                    .unwrap_or_else(|_| time.clone()),
                age(*age_seconds)
            )),
            Event::Planned { plan } => {
                if self.verbose > 0 {
                    self.line(&format!("plan {plan}"))
                }
            }
            Event::Info { message } => self.line(message),
            Event::BisectProbe {
                short_id,
                time,
                window_from,
                window_to,
                remaining,
            } => self.line(&format!(
                "bisect: testing snapshot {short_id} of {time}; {remaining} snapshot(s) left in the window {window_from}..{window_to}"
            )),
            Event::BisectJudged {
                short_id,
                verdict,
                same_as,
            } => match same_as {
                Some(s) => self.line(&format!(
                    "bisect: snapshot {short_id} {} (dumps byte-identical to {s}'s, no restore)",
                    verdict.as_str()
                )),
                None => self.line(&format!("bisect: snapshot {short_id} {}", verdict.as_str())),
            },
            Event::DumpInspecting { .. } => {}
            Event::DumpInspected {
                database,
                server,
                pg_dump,
            } => self.line(&format!(
                "{database}: dumped from PostgreSQL {} by pg_dump {}",
                server.as_deref().unwrap_or("(not stated)"),
                pg_dump.as_deref().unwrap_or("(not stated)")
            )),
            Event::SandboxStarting { database, image } => {
                self.line(&format!("{database}: starting sandbox ({image})"))
            }
            Event::SandboxReady {
                database,
                server,
                server_version,
                seconds,
            } if server_version.is_empty() => self.line(&format!(
                "{database}: sandbox started, {}; its {server} server starts once the backup is in place", age(*seconds)
            )),
            Event::SandboxReady {
                database,
                server,
                server_version,
                seconds,
            } => self.line(&format!("{database}: sandbox ready, {server} {server_version}, {}", age(*seconds))),
            Event::RestoreStarted { database, bytes } => {
                self.last_line.lock().expect("progress lock").remove(database);
                self.add_bar(database.clone(), restore_bar(database, *bytes));
                if *bytes == 0 {
                    self.line(&format!("{database}: restoring"))
                } else {
                    self.line(&format!("{database}: restoring {}", size(*bytes)))
                }
            }
            Event::RestoreProgress {
                database,
                bytes,
                total,
                seconds,
            } => {
                if self.bars.is_some() {
                    self.with_bar(database, |b| b.set_position(*bytes));
                } else if self.due(database, *seconds) {
                    self.line(&format!(
                        "{database}: {}",
                        restore_progress_line(*bytes, *total, *seconds)
                    ))
                }
            }
            Event::CheckStarted { database, name } => {
                let key = format!("{database}/{name}");
                self.last_line.lock().expect("progress lock").remove(&key);
                if self.bars.is_some() {
                    self.add_bar(key.clone(), check_spinner(database, name));
                    self.with_bar(&key, |b| b.enable_steady_tick(Duration::from_millis(120)));
                }
            }
            Event::CheckRunning {
                database,
                name,
                seconds,
            } => {
                if self.bars.is_none() && self.due(&format!("{database}/{name}"), *seconds) {
                    self.line(&format!(
                        "{database}: check {name} still running after {}",
                        age(*seconds)
                    ))
                }
            }
            Event::RestoreFinished {
                database,
                status,
                bytes,
                seconds,
                error,
            } => {
                self.remove_bar(database);
                match status {
                Status::Passed => self.line(&format!(
                    "{database}: restore passed, {} in {}",
                    size(*bytes),
                    age(*seconds)
                )),
                s => self.line(&format!(
                    "{database}: restore {}: {}",
                    s.as_str(),
                    error.as_deref().unwrap_or("")
                )),
                }
            }
            Event::CheckFinished {
                database,
                name,
                status,
                detail,
            } => {
                self.remove_bar(&format!("{database}/{name}"));
                self.line(&format!("{database}: check {name} {}: {detail}", status.as_str()))
            }
            Event::Kept {
                database,
                connect,
                also,
                remove,
                ..
            } => self.line(&format!(
                "{database}: sandbox kept: `{connect}`{}; remove with `{remove}`",
                if also.is_empty() {
                    String::new()
                } else {
                    format!(" ({also})")
                }
            )),
            Event::Warning { message } => self.line(&format!("warning: {message}")),
            Event::FallingBack { from, to } => {
                self.line(&format!("tier {from} did not pass; falling back to tier {to}"))
            }
            Event::Finished { .. } => {}
        }
    }
}

/// The closing lines: verdict, reasons, where the report is.
pub fn summary(o: &RunOutcome, quiet: bool) {
    let r = &o.report;
    let mut err = std::io::stderr().lock();
    let rto = r
        .rto_seconds
        .map(|s| format!(", RTO {}", age(s)))
        .unwrap_or_default();
    if r.attempts.len() > 1 {
        for a in &r.attempts {
            let _ = writeln!(err, "tier {}: {}", a.tier, a.verdict.as_str());
        }
    }
    let _ = writeln!(err, "verdict: {}{rto}", r.verdict.as_str().to_uppercase());
    if r.verdict != Verdict::Passed {
        for reason in r.reasons.iter().take(if quiet { 3 } else { 20 }) {
            let _ = writeln!(err, "  - {reason}");
        }
    }
    if !quiet {
        for w in &r.warnings {
            let _ = writeln!(err, "warning: {w}");
        }
    }
    let _ = writeln!(err, "report: {}", o.written.json.display());
    if !quiet {
        let _ = writeln!(err, "        {}", o.written.markdown.display());
        let _ = writeln!(err, "        {}", o.written.html.display());
    }
}

/// `drill snapshots` as a table on standard output, times in `tz`.
pub fn snapshot_table(list: &[crate::drill::snapshots::SnapshotListing], tz: chrono_tz::Tz) {
    let mut out = std::io::stdout().lock();
    if list.is_empty() {
        let _ = writeln!(out, "no snapshots");
        return;
    }
    let _ = writeln!(
        out,
        "{:<8}  {:<20}  {:>10}  {:<16}  {:<12}  dumps",
        "id",
        format!("time ({tz})"),
        "age",
        "host",
        "tags"
    );
    for s in list {
        let age = age(s.age_seconds);
        let dumps: Vec<String> = s
            .dumps
            .iter()
            .map(|d| match d.size {
                Some(b) => format!("{} {}", d.database, size(b)),
                None => format!("{} MISSING", d.database),
            })
            .collect();
        let _ = writeln!(
            out,
            "{:<8}  {:<20}  {:>10}  {:<16}  {:<12}  {}",
            s.short_id,
            s.time.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"),
            age,
            s.hostname,
            if s.tags.is_empty() {
                "-".into()
            } else {
                s.tags.join(",")
            },
            dumps.join(", ")
        );
    }
}

/// `drill status` as one line per tier on standard output, times in `tz`.
pub fn status_lines(list: &[crate::drill::status::TierStatus], tz: chrono_tz::Tz, scheduled: bool) {
    let mut out = std::io::stdout().lock();
    let when = |t: chrono::DateTime<chrono::Utc>| {
        t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
    };
    let dur = age;
    for t in list {
        let mut parts = Vec::new();
        match &t.last {
            Some(l) => parts.push(format!("last drill {} ({})", when(l.started_at), l.verdict)),
            None => parts.push("never drilled".to_string()),
        }
        match &t.last_passed {
            Some(p) => parts.push(format!(
                "last passed {}{}",
                when(p.started_at),
                p.snapshot_age_seconds
                    .map(|a| format!(", snapshot {} old then", dur(a)))
                    .unwrap_or_default()
            )),
            None if t.last.is_some() => parts.push("never passed".to_string()),
            None => {}
        }
        match (t.due, t.overdue_seconds) {
            (Some(d), Some(o)) if o > 0.0 => {
                parts.push(format!("OVERDUE by {} (due {})", dur(o), when(d)))
            }
            (Some(d), _) => parts.push(format!("next due {}", when(d))),
            (None, _) if scheduled => parts.push("OVERDUE: no passed drill yet".to_string()),
            (None, _) => parts.push("no schedule configured".to_string()),
        }
        if let Some(f) = &t.ledger {
            let at = |s: &str| {
                chrono::DateTime::parse_from_rfc3339(s)
                    .map(|d| when(d.with_timezone(&chrono::Utc)))
                    .unwrap_or_else(|_| s.to_string())
            };
            match &f.newest_passed {
                Some((id, time)) => parts.push(format!(
                    "newest verified snapshot {} of {}",
                    &id[..id.len().min(8)],
                    at(time)
                )),
                None => parts.push("no snapshot verified passed".to_string()),
            }
            parts.push(match &f.oldest_unverified {
                Some((id, time)) => format!(
                    "{} of {} snapshot(s) without a verdict (oldest {} of {})",
                    f.unverified,
                    f.snapshots,
                    &id[..id.len().min(8)],
                    at(time)
                ),
                None => format!("all {} snapshot(s) have a verdict", f.snapshots),
            });
        }
        let _ = writeln!(out, "{}: {}", t.tier, parts.join("; "));
    }
}

/// `drill bisect`'s result on standard output: the verdict sentence, every
/// snapshot judged, the diff, where the record is.
pub fn bisect_summary(r: &crate::drill::bisect::BisectReport, reports_dir: &std::path::Path) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "bisect: {}", r.summary());
    let _ = writeln!(out, "assumption: {}", r.assumption);
    for (i, t) in r.tested.iter().enumerate() {
        let how = match &t.same_as {
            Some(s) => format!("same dumps as {s}, no restore"),
            None if t.from_ledger => "the ledger's verdict, no restore".to_string(),
            None => format!("{} restore(s)", t.restores),
        };
        let _ = writeln!(
            out,
            "{:>3}. {}  {}  {:<6}  {how}",
            i + 1,
            t.short_id,
            t.time.to_rfc3339(),
            t.verdict.as_str()
        );
    }
    let _ = writeln!(
        out,
        "restores: {} for the search, {} for the diff",
        r.restores, r.diff_restores
    );
    for reason in r.reasons.iter().take(10) {
        let _ = writeln!(out, "  - {reason}");
    }
    diff_databases(&mut out, &r.diff);
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    let _ = writeln!(
        out,
        "record: {}",
        reports_dir
            .join(format!("{}.md", r.header.stem()))
            .display()
    );
}

/// `drill extract`'s result on standard output.
pub fn extract_summary(r: &crate::drill::extract::ExtractReport) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "wrote {} ({} bytes) from snapshot {} of tier {}, database `{}`:",
        r.file.display(),
        r.bytes,
        r.snapshot.short_id,
        r.tier,
        r.database
    );
    for t in &r.tables {
        let _ = writeln!(out, "  {}: {} row(s)", t.table, t.rows);
    }
    let _ = writeln!(
        out,
        "drill has not applied it; review it and load it by hand."
    );
}

/// `drill diff`'s result on standard output.
pub fn diff_summary(r: &crate::drill::diff::DiffReport) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "diff: snapshot {} ({}) → {} ({}), {} restore(s)",
        r.a.short_id,
        r.a.time.to_rfc3339(),
        r.b.short_id,
        r.b.time.to_rfc3339(),
        r.restores
    );
    diff_databases(&mut out, &r.databases);
}

fn diff_databases(out: &mut impl Write, databases: &[crate::drill::diff::DatabaseDiff]) {
    for d in databases {
        if let Some(e) = &d.error {
            let _ = writeln!(
                out,
                "{}: not compared ({}): {e}",
                d.database,
                d.status.as_str()
            );
            continue;
        }
        let lines = crate::drill::diff::table_lines(d);
        let same = d.tables.len() - lines.len();
        let _ = writeln!(
            out,
            "{}: {} table(s) differ, {same} identical; schema {}",
            d.database,
            lines.len(),
            if d.schema_diff.is_empty() {
                "identical"
            } else {
                "differs:"
            }
        );
        for l in lines {
            let _ = writeln!(out, "  {l}");
        }
        if !d.schema_diff.is_empty() {
            let _ = write!(out, "{}", d.schema_diff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::restore_progress_line;

    #[test]
    fn progress_line_gives_share_rate_and_time_left() {
        let mib = 1024 * 1024;
        assert_eq!(
            restore_progress_line(512 * mib, 1024 * mib, 20.0),
            "restored 512.0 MiB of 1.0 GiB (50%) in 20s, 25.6 MiB/s, about 20s left"
        );
        // Nothing read yet, or an empty dump: no rate to divide by.
        assert_eq!(
            restore_progress_line(0, 0, 0.0),
            "restored 0 B of 0 B in 0s, 0 B/s"
        );
    }
}
