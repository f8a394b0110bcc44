//! The launchd agent (macOS) that runs the drill on its schedule.
//!
//! The cron expression becomes `StartCalendarInterval`: one dictionary per
//! combination of the restricted fields (`Month`, `Day`, `Weekday`, `Hour`,
//! `Minute`; a field left out is a wildcard), as launchd.plist(5) describes.
//! launchd starts jobs on whole minutes, has no year, and starts a job when
//! either `Day` or `Weekday` matches, where the cron expression requires
//! both; expressions that rely on those are refused with the reason.
//! launchd reads the times in the host's time zone, so the plist is only
//! right on a host whose zone gives the same wall clock as `timezone`.

use std::path::{Path, PathBuf};

use plist::{Dictionary, Value};

use super::{Fields, Schedule};

/// Most `StartCalendarInterval` entries drill writes; more means the
/// expression is too fine-grained for a calendar list.
pub const MAX_ENTRIES: usize = 500;

/// `PATH` given to the job: launchd's default holds only system directories,
/// and restic and docker live in Homebrew's or /usr/local.
pub const JOB_PATH: &str = "/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

/// What the agent runs and where it logs.
#[derive(Debug, Clone)]
pub struct Agent {
    /// launchd label, e.g. `io.drill.quarterly`; also the plist's file name.
    pub label: String,
    /// Absolute path of the drill binary.
    pub program: PathBuf,
    /// Absolute path of the config the drill reads.
    pub config: PathBuf,
    /// Run only this tier (`--tier`); `None` runs the config's fallback list.
    pub tier: Option<String>,
    /// Directory of `drill.out.log` and `drill.err.log`.
    pub log_dir: PathBuf,
}

/// One `StartCalendarInterval` entry: `(key, value)` pairs in launchd's
/// spelling, wildcards left out.
pub type CalendarEntry = Vec<(&'static str, u32)>;

/// The `StartCalendarInterval` entries equivalent to `schedule`.
///
/// # Errors
/// Why launchd cannot express it: seconds other than `0`, a year field,
/// both day-of-month and day-of-week restricted, or more than
/// [`MAX_ENTRIES`] combinations.
pub fn calendar(schedule: &Schedule) -> Result<Vec<CalendarEntry>, String> {
    let Fields {
        seconds,
        minutes,
        hours,
        days_of_month,
        months,
        days_of_week,
        years,
    } = schedule.fields();
    let expr = schedule.expression();
    if seconds.as_deref() != Some(&[0]) {
        return Err(format!(
            "launchd starts jobs on whole minutes, so the seconds field of `{expr}` must be 0"
        ));
    }
    if years.is_some() {
        return Err(format!(
            "launchd has no year key: remove the year field from `{expr}`"
        ));
    }
    if days_of_month.is_some() && days_of_week.is_some() {
        return Err(format!(
            "`{expr}` restricts both the day of the month and the day of the week; the drill's schedule needs both to match, but launchd starts a job when either matches: restrict only one of them"
        ));
    }
    let fields: [(&'static str, Option<Vec<u32>>); 5] = [
        ("Month", months),
        ("Day", days_of_month),
        ("Weekday", days_of_week),
        ("Hour", hours),
        ("Minute", minutes),
    ];
    let count: usize = fields
        .iter()
        .map(|(_, v)| v.as_ref().map_or(1, Vec::len))
        .product();
    if count > MAX_ENTRIES {
        return Err(format!(
            "`{expr}` would need {count} StartCalendarInterval entries (drill writes at most {MAX_ENTRIES}); use a coarser schedule"
        ));
    }
    let mut entries: Vec<CalendarEntry> = vec![Vec::new()];
    for (key, values) in fields {
        let Some(values) = values else { continue };
        entries = entries
            .into_iter()
            .flat_map(|e| {
                values.iter().map(move |v| {
                    let mut e = e.clone();
                    e.push((key, *v));
                    e
                })
            })
            .collect();
    }
    Ok(entries)
}

/// The LaunchAgent plist (XML) for `agent` on `schedule`.
///
/// # Errors
/// As [`calendar`].
pub fn plist(agent: &Agent, schedule: &Schedule) -> Result<String, String> {
    let entries = calendar(schedule)?;
    let mut args = vec![
        Value::String(agent.program.display().to_string()),
        "--config".into(),
        Value::String(agent.config.display().to_string()),
        "run".into(),
    ];
    if let Some(t) = &agent.tier {
        args.push("--tier".into());
        args.push(Value::String(t.clone()));
    }
    let mut d = Dictionary::new();
    d.insert("Label".into(), Value::String(agent.label.clone()));
    d.insert("ProgramArguments".into(), Value::Array(args));
    d.insert(
        "StartCalendarInterval".into(),
        Value::Array(
            entries
                .into_iter()
                .map(|e| {
                    let mut c = Dictionary::new();
                    for (k, v) in e {
                        c.insert(k.into(), Value::Integer(v.into()));
                    }
                    Value::Dictionary(c)
                })
                .collect(),
        ),
    );
    let dir = agent.config.parent().unwrap_or(Path::new("/"));
    d.insert(
        "WorkingDirectory".into(),
        Value::String(dir.display().to_string()),
    );
    let mut env = Dictionary::new();
    env.insert("PATH".into(), JOB_PATH.into());
    d.insert("EnvironmentVariables".into(), Value::Dictionary(env));
    d.insert(
        "StandardOutPath".into(),
        Value::String(agent.log_dir.join("drill.out.log").display().to_string()),
    );
    d.insert(
        "StandardErrorPath".into(),
        Value::String(agent.log_dir.join("drill.err.log").display().to_string()),
    );
    d.insert("RunAtLoad".into(), Value::Boolean(false));
    let mut out = Vec::new();
    Value::Dictionary(d)
        .to_writer_xml(&mut out)
        .map_err(|e| format!("cannot write the plist: {e}"))?;
    let mut text = String::from_utf8(out).map_err(|e| e.to_string())?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarterly_gives_four_entries() {
        let s = Schedule::parse("0 0 3 15 1,4,7,10 *").unwrap();
        let c = calendar(&s).unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(
            c[1],
            vec![("Month", 4), ("Day", 15), ("Hour", 3), ("Minute", 0)]
        );
    }

    #[test]
    fn weekdays_count_from_sunday_zero() {
        let s = Schedule::parse("0 30 2 * * Sun,Wed").unwrap();
        let c = calendar(&s).unwrap();
        assert_eq!(
            c,
            vec![
                vec![("Weekday", 0), ("Hour", 2), ("Minute", 30)],
                vec![("Weekday", 3), ("Hour", 2), ("Minute", 30)]
            ]
        );
    }

    #[test]
    fn what_launchd_cannot_express_is_refused() {
        let err = |e: &str| calendar(&Schedule::parse(e).unwrap()).unwrap_err();
        assert!(err("30 0 3 * * *").contains("seconds field"));
        assert!(err("0 0 3 15 * Mon").contains("either matches"));
        assert!(err("0 0 3 1 1 * 2027").contains("no year"));
        assert!(err("0 0-58 * 1-15 * *").contains("885 StartCalendarInterval entries"));
        // every minute is one entry with no keys at all
        assert_eq!(
            calendar(&Schedule::parse("0 * * * * *").unwrap()).unwrap(),
            vec![vec![]]
        );
    }
}
