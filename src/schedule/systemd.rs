//! systemd units (Linux) that run the drill on its schedule: a oneshot
//! service and a timer whose `OnCalendar=` lines are the cron expression in
//! the configured zone (systemd.time(7): `DOW YYYY-MM-DD HH:MM:SS ZONE`).
//! Within one `OnCalendar=` a weekday and a date must both match; when
//! both day fields are restricted, crontab(5) runs on either, so the days
//! of the month and the days of the week get an `OnCalendar=` each (a
//! timer elapses at the earliest of its lines, systemd.timer(5)).

use std::path::PathBuf;

use super::{DayRule, Fields, Schedule};

/// What the units run.
#[derive(Debug, Clone)]
pub struct Units {
    /// Unit name without suffix, e.g. `drill` for `drill.service` and
    /// `drill.timer`.
    pub name: String,
    /// Absolute, normalised path of the drill binary (systemd refuses
    /// relative paths and `..`).
    pub program: PathBuf,
    /// Absolute, normalised path of the config.
    pub config: PathBuf,
    /// Run only this tier (`--tier`).
    pub tier: Option<String>,
}

fn list(values: &Option<Vec<u32>>, width: usize) -> String {
    match values {
        None => "*".into(),
        Some(v) => v
            .iter()
            .map(|x| format!("{x:0width$}"))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// The `OnCalendar=` values for `schedule` in `tz`, e.g.
/// `["*-01,04,07,10-15 03:00:00 Asia/Seoul"]`; two when both day fields
/// are restricted and either may match (the days of the month, then the
/// days of the week).
pub fn on_calendar(schedule: &Schedule, tz: chrono_tz::Tz) -> Vec<String> {
    let Fields {
        seconds,
        minutes,
        hours,
        days_of_month,
        months,
        days_of_week,
        day_rule,
        years,
    } = schedule.fields();
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    let line = |dom: &Option<Vec<u32>>, dow: &Option<Vec<u32>>| {
        let dow = dow
            .as_ref()
            .map(|d| {
                let names: Vec<&str> = d.iter().map(|x| DAYS[*x as usize % 7]).collect();
                format!("{} ", names.join(","))
            })
            .unwrap_or_default();
        format!(
            "{dow}{}-{}-{} {}:{}:{} {}",
            list(&years, 4),
            list(&months, 2),
            list(dom, 2),
            list(&hours, 2),
            list(&minutes, 2),
            list(&seconds, 2),
            tz.name()
        )
    };
    match (&days_of_month, &days_of_week, day_rule) {
        (Some(_), Some(_), DayRule::Either) => {
            vec![line(&days_of_month, &None), line(&None, &days_of_week)]
        }
        _ => vec![line(&days_of_month, &days_of_week)],
    }
}

/// `s` as one word of a unit file: `%` doubled (systemd.unit(5)
/// specifiers), quoted when it holds a space, a quote or a backslash.
fn word(s: &str) -> String {
    let s = s.replace('%', "%%");
    if s.contains([' ', '"', '\\', '\'', '\t']) {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s
    }
}

fn exec(u: &Units) -> String {
    let mut s = format!(
        "{} --config {} run",
        word(&u.program.display().to_string()),
        word(&u.config.display().to_string())
    );
    if let Some(t) = &u.tier {
        s.push_str(&format!(" --tier {}", word(t)));
    }
    s
}

/// The service unit: oneshot, `KillMode=mixed` (SIGTERM to drill alone,
/// which stops its restores and removes its sandboxes; SIGKILL to what is
/// left at the timeout) and `TimeoutStopSec=` of
/// [`super::STOP_TIMEOUT_SECS`].
pub fn service(u: &Units, schedule: &Schedule) -> String {
    let dir = u
        .config
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/".into());
    format!(
        "[Unit]\n\
         Description=drill: restore drill of database backups (schedule {expr})\n\
         Wants=network-online.target\n\
         After=network-online.target docker.service\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         WorkingDirectory={dir}\n\
         ExecStart={exec}\n\
         # drill stops its restores and removes its sandboxes on SIGTERM\n\
         KillMode=mixed\n\
         TimeoutStopSec={stop}\n\
         # exit 1: the backup is bad; 2: configuration; 3: no verdict; 4: passed but not notified\n",
        expr = schedule.expression().replace('%', "%%"),
        dir = dir.replace('%', "%%"),
        exec = exec(u),
        stop = super::STOP_TIMEOUT_SECS,
    )
}

/// The timer unit.
pub fn timer(u: &Units, schedule: &Schedule, tz: chrono_tz::Tz) -> String {
    let cal: String = on_calendar(schedule, tz)
        .iter()
        .map(|c| format!("OnCalendar={c}\n"))
        .collect();
    format!(
        "[Unit]\n\
         Description=drill schedule: {expr} in {zone}\n\
         \n\
         [Timer]\n\
         {cal}\
         # run a drill missed while the host was off\n\
         Persistent=true\n\
         Unit={name}.service\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        expr = schedule.expression().replace('%', "%%"),
        zone = tz.name(),
        name = u.name,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarterly_on_calendar() {
        for expr in ["0 3 15 1,4,7,10 *", "0 0 3 15 1,4,7,10 *"] {
            let s = Schedule::parse(expr).unwrap();
            assert_eq!(
                on_calendar(&s, chrono_tz::Asia::Seoul),
                ["*-01,04,07,10-15 03:00:00 Asia/Seoul"]
            );
        }
        let s = Schedule::parse("30 2 * * Mon-Fri").unwrap();
        assert_eq!(
            on_calendar(&s, chrono_tz::UTC),
            ["Mon,Tue,Wed,Thu,Fri *-*-* 02:30:00 UTC"]
        );
        let s = Schedule::parse("0 0 3 * * 7").unwrap();
        assert_eq!(on_calendar(&s, chrono_tz::UTC), ["Sun *-*-* 03:00:00 UTC"]);
    }

    #[test]
    fn day_fields_combine_as_in_crontab() {
        let s = Schedule::parse("0 3 15 * Mon").unwrap();
        assert_eq!(
            on_calendar(&s, chrono_tz::UTC),
            ["*-*-15 03:00:00 UTC", "Mon *-*-* 03:00:00 UTC"]
        );
        let s = Schedule::parse("0 3 */10 * Mon").unwrap();
        assert_eq!(
            on_calendar(&s, chrono_tz::UTC),
            ["Mon *-*-01,11,21,31 03:00:00 UTC"]
        );
    }
}
