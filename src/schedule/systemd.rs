//! systemd units (Linux) that run the drill on its schedule: a oneshot
//! service and a timer whose `OnCalendar=` is the cron expression in the
//! configured zone (systemd.time(7): `DOW YYYY-MM-DD HH:MM:SS ZONE`; a
//! weekday and a date must both match, as in the drill's cron expressions).

use std::path::PathBuf;

use super::{Fields, Schedule};

/// What the units run.
#[derive(Debug, Clone)]
pub struct Units {
    /// Unit name without suffix, e.g. `drill` for `drill.service` and
    /// `drill.timer`.
    pub name: String,
    /// Absolute path of the drill binary.
    pub program: PathBuf,
    /// Absolute path of the config.
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

/// The `OnCalendar=` value for `schedule` in `tz`, e.g.
/// `*-01,04,07,10-15 03:00:00 Asia/Seoul`.
pub fn on_calendar(schedule: &Schedule, tz: chrono_tz::Tz) -> String {
    let Fields {
        seconds,
        minutes,
        hours,
        days_of_month,
        months,
        days_of_week,
        years,
    } = schedule.fields();
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    let dow = days_of_week
        .map(|d| {
            let names: Vec<&str> = d.iter().map(|x| DAYS[*x as usize % 7]).collect();
            format!("{} ", names.join(","))
        })
        .unwrap_or_default();
    format!(
        "{dow}{}-{}-{} {}:{}:{} {}",
        list(&years, 4),
        list(&months, 2),
        list(&days_of_month, 2),
        list(&hours, 2),
        list(&minutes, 2),
        list(&seconds, 2),
        tz.name()
    )
}

fn exec(u: &Units) -> String {
    let quote = |p: &str| {
        if p.contains([' ', '"', '\\']) {
            format!("\"{}\"", p.replace('\\', "\\\\").replace('"', "\\\""))
        } else {
            p.to_string()
        }
    };
    let mut s = format!(
        "{} --config {} run",
        quote(&u.program.display().to_string()),
        quote(&u.config.display().to_string())
    );
    if let Some(t) = &u.tier {
        s.push_str(&format!(" --tier {}", quote(t)));
    }
    s
}

/// The service unit.
pub fn service(u: &Units, schedule: &Schedule) -> String {
    let dir = u
        .config
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/".into());
    format!(
        "[Unit]\n\
         Description=drill: restore drill of PostgreSQL backups (schedule {expr})\n\
         Wants=network-online.target\n\
         After=network-online.target docker.service\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         WorkingDirectory={dir}\n\
         ExecStart={exec}\n\
         # exit 1: the backup is bad; 2: configuration; 3: no verdict; 4: passed but not notified\n",
        expr = schedule.expression(),
        exec = exec(u),
    )
}

/// The timer unit.
pub fn timer(u: &Units, schedule: &Schedule, tz: chrono_tz::Tz) -> String {
    format!(
        "[Unit]\n\
         Description=drill schedule: {expr} in {zone}\n\
         \n\
         [Timer]\n\
         OnCalendar={cal}\n\
         # run a drill missed while the host was off\n\
         Persistent=true\n\
         Unit={name}.service\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        expr = schedule.expression(),
        zone = tz.name(),
        cal = on_calendar(schedule, tz),
        name = u.name,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarterly_on_calendar() {
        let s = Schedule::parse("0 0 3 15 1,4,7,10 *").unwrap();
        assert_eq!(
            on_calendar(&s, chrono_tz::Asia::Seoul),
            "*-01,04,07,10-15 03:00:00 Asia/Seoul"
        );
        let s = Schedule::parse("0 30 2 * * Mon-Fri").unwrap();
        assert_eq!(
            on_calendar(&s, chrono_tz::UTC),
            "Mon,Tue,Wed,Thu,Fri *-*-* 02:30:00 UTC"
        );
    }
}
