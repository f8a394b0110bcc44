//! The launchd agent (macOS) that runs the drill on its schedule.
//!
//! The cron expression becomes `StartCalendarInterval`: one dictionary per
//! combination of the restricted fields (`Month`, `Day`, `Weekday`, `Hour`,
//! `Minute`; a key left out is a wildcard), as launchd.plist(5) describes.
//! When both day fields are restricted, crontab(5) runs on either, so the
//! days of the month and the days of the week get dictionaries of their
//! own. launchd starts jobs on whole minutes and has no year; a
//! day-of-month field that needs the day of the week to match as well (one
//! starting with `*`, e.g. `*/2`) has no launchd form either; expressions
//! that rely on those are refused with the reason.
//!
//! launchd reads the times in the Mac's own time zone. When that differs
//! from `timezone` by the same amount at every scheduled time (neither zone
//! changes its offset between them, as Asia/Seoul never does), [`shift`]
//! moves the entries into the Mac's zone; when daylight saving would make
//! the difference change, [`zone_shift`] says so and nothing is converted.

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

/// One `StartCalendarInterval` dictionary; `None` leaves the key out (a
/// wildcard). Values as launchd.plist(5) counts them: `month` 1–12, `day`
/// 1–31, `weekday` 0 = Sunday … 6 = Saturday, `hour` 0–23, `minute` 0–59.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CalendarEntry {
    /// `Month`, 1–12.
    pub month: Option<u32>,
    /// `Day` of the month, 1–31.
    pub day: Option<u32>,
    /// `Weekday`, 0 = Sunday … 6 = Saturday.
    pub weekday: Option<u32>,
    /// `Hour`, 0–23.
    pub hour: Option<u32>,
    /// `Minute`, 0–59.
    pub minute: Option<u32>,
}

impl CalendarEntry {
    /// The keys present, in launchd's spelling and the plist's order.
    pub fn keys(&self) -> Vec<(&'static str, u32)> {
        [
            ("Month", self.month),
            ("Day", self.day),
            ("Weekday", self.weekday),
            ("Hour", self.hour),
            ("Minute", self.minute),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
}

/// A field's values (`None`: every value) and the key they go to.
type Key<'a> = (Option<&'a Vec<u32>>, fn(&mut CalendarEntry, u32));

/// A day-of-month set and a day-of-week set (`None`: every day).
type Days<'a> = (Option<&'a Vec<u32>>, Option<&'a Vec<u32>>);

/// Every combination of `fields`' values; `None` fields stay wildcards.
fn combine(fields: [Key<'_>; 5]) -> Vec<CalendarEntry> {
    let mut entries = vec![CalendarEntry::default()];
    for (values, set) in fields {
        let Some(values) = values else { continue };
        entries = entries
            .into_iter()
            .flat_map(|e| {
                values.iter().map(move |v| {
                    let mut e = e.clone();
                    set(&mut e, *v);
                    e
                })
            })
            .collect();
    }
    entries
}

/// The `StartCalendarInterval` entries equivalent to `schedule`, in the
/// schedule's own time zone.
///
/// # Errors
/// Why launchd cannot express it: seconds other than `0`, a year field, a
/// day of month and a day of week that must both match, or more than
/// [`MAX_ENTRIES`] entries.
pub fn calendar(schedule: &Schedule) -> Result<Vec<CalendarEntry>, String> {
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
    let len = |v: &Option<Vec<u32>>| v.as_ref().map_or(1, Vec::len);
    let per_day = len(&months) * len(&hours) * len(&minutes);
    // (day of month, day of week) sets, each one group of dictionaries
    let groups: Vec<Days<'_>> =
        match (&days_of_month, &days_of_week) {
            (Some(_), Some(_)) if day_rule == super::DayRule::Both => {
                return Err(format!(
                    "`{expr}` needs both the day of the month and the day of the week to match (a day field starting with `*`); launchd starts a job when either matches: restrict only one of them, or list the days"
                ))
            }
            (Some(d), Some(w)) => vec![(Some(d), None), (None, Some(w))],
            (d, w) => vec![(d.as_ref(), w.as_ref())],
        };
    let count: usize = groups
        .iter()
        .map(|(d, w)| per_day * d.map_or(1, |v| v.len()) * w.map_or(1, |v| v.len()))
        .sum();
    if count > MAX_ENTRIES {
        return Err(format!(
            "`{expr}` would need {count} StartCalendarInterval entries (drill writes at most {MAX_ENTRIES}); use a coarser schedule"
        ));
    }
    Ok(groups
        .into_iter()
        .flat_map(|(days, weekdays)| {
            combine([
                (months.as_ref(), |e, v| e.month = Some(v)),
                (days, |e, v| e.day = Some(v)),
                (weekdays, |e, v| e.weekday = Some(v)),
                (hours.as_ref(), |e, v| e.hour = Some(v)),
                (minutes.as_ref(), |e, v| e.minute = Some(v)),
            ])
        })
        .collect())
}

/// How many minutes `host`'s wall clock is ahead of `tz`'s (negative:
/// behind) at every one of `instants`, e.g. −540 for a Mac on UTC and
/// `timezone = "Asia/Seoul"`.
///
/// # Errors
/// When the difference is not the same at all of them (daylight saving in
/// one zone and not the other, or at other dates), naming two instants
/// where it differs.
pub fn zone_shift<H: chrono::TimeZone>(
    tz: chrono_tz::Tz,
    host: &H,
    instants: &[chrono::DateTime<chrono::Utc>],
) -> Result<i32, String> {
    use chrono::Offset;
    let diff = |t: &chrono::DateTime<chrono::Utc>| {
        let host = t.with_timezone(host).offset().fix().local_minus_utc();
        let zone = t.with_timezone(&tz).offset().fix().local_minus_utc();
        (host - zone) / 60
    };
    let Some(first) = instants.first() else {
        return Ok(0);
    };
    let d0 = diff(first);
    match instants.iter().find(|t| diff(t) != d0) {
        None => Ok(d0),
        Some(t) => {
            let say = |t: &chrono::DateTime<chrono::Utc>| {
                let d = diff(t);
                format!(
                    "{} {} at {}",
                    hours_and_minutes(d.abs()),
                    if d < 0 { "behind" } else { "ahead of" },
                    t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z")
                )
            };
            Err(format!(
                "this host's time zone is {} but {}, so with daylight saving the drill would move by {} if the times were converted; launchd reads StartCalendarInterval in the host's zone: set the Mac's time zone to {tz} (or `timezone` to the Mac's)",
                say(first).replacen(" at ", &format!(" {tz} at "), 1),
                say(t),
                hours_and_minutes((diff(t) - d0).abs()),
            ))
        }
    }
}

/// A shift from [`zone_shift`] in words: `9h behind Asia/Seoul`,
/// `5h30m ahead of UTC`.
pub fn shift_words(minutes: i32, tz: chrono_tz::Tz) -> String {
    let way = if minutes < 0 { "behind" } else { "ahead of" };
    format!("{} {way} {tz}", hours_and_minutes(minutes.abs()))
}

/// `9h`, `5h30m`, `45m`.
fn hours_and_minutes(minutes: i32) -> String {
    match (minutes / 60, minutes % 60) {
        (h, 0) => format!("{h}h"),
        (0, m) => format!("{m}m"),
        (h, m) => format!("{h}h{m}m"),
    }
}

/// The fewest days months `month` (or any month) can have: February 28.
fn shortest(month: Option<u32>) -> i64 {
    match month {
        None | Some(2) => 28,
        Some(4 | 6 | 9 | 11) => 30,
        Some(_) => 31,
    }
}

/// `entries` moved by `minutes` (as from [`zone_shift`]): the same
/// instants read on a wall clock that far ahead (negative: behind). A time
/// that crosses midnight moves its `Day` and `Weekday` along.
///
/// # Errors
/// When a moved entry has no launchd form: it would cross the end of a
/// month (a `Day` of 1 going back, or past the 28th in February), a month
/// or day restriction with wildcard hours or minutes, or wildcard minutes
/// and a shift that is not whole hours.
pub fn shift(entries: &[CalendarEntry], minutes: i32) -> Result<Vec<CalendarEntry>, String> {
    if minutes == 0 {
        return Ok(entries.to_vec());
    }
    let by = i64::from(minutes);
    let dated = |e: &CalendarEntry| e.month.is_some() || e.day.is_some() || e.weekday.is_some();
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let mut n = e.clone();
        let carry = match (e.hour, e.minute) {
            (Some(h), Some(m)) => {
                let t = i64::from(h) * 60 + i64::from(m) + by;
                n.hour = Some(t.rem_euclid(1440) as u32 / 60);
                n.minute = Some(t.rem_euclid(60) as u32);
                t.div_euclid(1440)
            }
            (Some(h), None) if by % 60 == 0 => {
                let t = i64::from(h) + by / 60;
                n.hour = Some(t.rem_euclid(24) as u32);
                t.div_euclid(24)
            }
            (Some(_), None) => {
                return Err(format!(
                    "the host's zone is {} off the config's, which moves every minute of the hour: give the minute field a value",
                    hours_and_minutes(minutes.abs())
                ))
            }
            (None, _) if dated(e) => {
                return Err(
                    "with every hour on given days, the days' boundaries move with the time zone: give the hour field a value, or set the Mac's zone to `timezone`".into(),
                )
            }
            (None, m) => {
                n.minute = m.map(|m| (i64::from(m) + by).rem_euclid(60) as u32);
                0
            }
        };
        if carry != 0 {
            if let Some(w) = e.weekday {
                n.weekday = Some((i64::from(w) + carry).rem_euclid(7) as u32);
                if e.month.is_some() {
                    return Err("a weekday in given months moves across the month's boundary in the host's zone, which launchd cannot follow: set the Mac's zone to `timezone`".into());
                }
            }
            if let Some(d) = e.day {
                let moved = i64::from(d) + carry;
                if moved < 1 || moved > shortest(e.month) {
                    return Err(format!(
                        "day {d} at {:02}:{:02} falls in {} month in the host's zone, which launchd cannot name: choose a day between 2 and 27, or set the Mac's zone to `timezone`",
                        e.hour.unwrap_or(0),
                        e.minute.unwrap_or(0),
                        if moved < 1 { "the previous" } else { "another" }
                    ));
                }
                n.day = Some(moved as u32);
            } else if e.month.is_some() && e.weekday.is_none() {
                return Err("every day of given months moves across the months' boundaries in the host's zone, which launchd cannot follow: set the Mac's zone to `timezone`".into());
            }
        }
        out.push(n);
    }
    Ok(out)
}

/// The LaunchAgent plist (XML) for `agent` starting at `entries` (from
/// [`calendar`], moved by [`shift`] where the Mac's zone differs), with
/// `ExitTimeOut` of [`super::STOP_TIMEOUT_SECS`] so that a drill stopped
/// by launchd has time to remove its sandboxes.
///
/// # Errors
/// When the plist cannot be serialised.
pub fn plist(agent: &Agent, entries: &[CalendarEntry]) -> Result<String, String> {
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
                .iter()
                .map(|e| {
                    let mut c = Dictionary::new();
                    for (k, v) in e.keys() {
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
    d.insert(
        "ExitTimeOut".into(),
        Value::Integer(super::STOP_TIMEOUT_SECS.into()),
    );
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
    use chrono::{Datelike, TimeZone, Timelike, Utc};

    fn entry(keys: &[(&'static str, u32)]) -> Vec<(&'static str, u32)> {
        keys.to_vec()
    }

    fn keys(c: &[CalendarEntry]) -> Vec<Vec<(&'static str, u32)>> {
        c.iter().map(CalendarEntry::keys).collect()
    }

    #[test]
    fn quarterly_gives_four_entries() {
        for expr in ["0 3 15 1,4,7,10 *", "0 0 3 15 1,4,7,10 *"] {
            let c = calendar(&Schedule::parse(expr).unwrap()).unwrap();
            assert_eq!(c.len(), 4);
            assert_eq!(
                c[1].keys(),
                entry(&[("Month", 4), ("Day", 15), ("Hour", 3), ("Minute", 0)])
            );
        }
    }

    #[test]
    fn weekdays_count_from_sunday_zero() {
        for expr in ["30 2 * * Sun,Wed", "30 2 * * 7,3", "0 30 2 * * 0,3"] {
            let c = calendar(&Schedule::parse(expr).unwrap()).unwrap();
            assert_eq!(
                keys(&c),
                vec![
                    entry(&[("Weekday", 0), ("Hour", 2), ("Minute", 30)]),
                    entry(&[("Weekday", 3), ("Hour", 2), ("Minute", 30)])
                ],
                "{expr}"
            );
        }
    }

    #[test]
    fn both_day_fields_restricted_give_entries_for_each() {
        let c = calendar(&Schedule::parse("0 3 1,15 * Mon").unwrap()).unwrap();
        assert_eq!(
            keys(&c),
            vec![
                entry(&[("Day", 1), ("Hour", 3), ("Minute", 0)]),
                entry(&[("Day", 15), ("Hour", 3), ("Minute", 0)]),
                entry(&[("Weekday", 1), ("Hour", 3), ("Minute", 0)]),
            ]
        );
    }

    #[test]
    fn what_launchd_cannot_express_is_refused() {
        let err = |e: &str| calendar(&Schedule::parse(e).unwrap()).unwrap_err();
        assert!(err("30 0 3 * * *").contains("seconds field"));
        assert!(err("0 3 */2 * Mon").contains("either matches"));
        assert!(err("0 0 3 1 1 * 2027").contains("no year"));
        assert!(err("0-58 * 1-15 * *").contains("885 StartCalendarInterval entries"));
        // every minute is one entry with no keys at all
        assert_eq!(
            calendar(&Schedule::parse("* * * * *").unwrap()).unwrap(),
            vec![CalendarEntry::default()]
        );
    }

    /// Does a launchd entry fire at this wall-clock time?
    fn fires(e: &CalendarEntry, t: chrono::NaiveDateTime) -> bool {
        e.month.is_none_or(|v| v == t.month())
            && e.day.is_none_or(|v| v == t.day())
            && e.weekday
                .is_none_or(|v| v == t.weekday().num_days_from_sunday())
            && e.hour.is_none_or(|v| v == t.hour())
            && e.minute.is_none_or(|v| v == t.minute())
    }

    #[test]
    fn seoul_times_convert_to_a_mac_on_utc() {
        let s = Schedule::parse("0 3 15 1,4,7,10 *").unwrap();
        let seoul = chrono_tz::Asia::Seoul;
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap();
        let instants: Vec<_> = s
            .upcoming(now, seoul, 20)
            .iter()
            .map(|t| t.with_timezone(&Utc))
            .collect();
        let by = zone_shift(seoul, &chrono_tz::UTC, &instants).unwrap();
        assert_eq!(by, -540);
        let moved = shift(&calendar(&s).unwrap(), by).unwrap();
        assert_eq!(
            moved[0].keys(),
            entry(&[("Month", 1), ("Day", 14), ("Hour", 18), ("Minute", 0)])
        );
        for t in &instants {
            assert!(
                moved.iter().any(|e| fires(e, t.naive_utc())),
                "{t} not covered"
            );
        }
        // weekdays move with the day; Kolkata is 3h30m behind Seoul
        let s = Schedule::parse("15 2 * * Mon").unwrap();
        let instants: Vec<_> = s
            .upcoming(now, seoul, 60)
            .iter()
            .map(|t| t.with_timezone(&Utc))
            .collect();
        let kolkata = chrono_tz::Asia::Kolkata;
        let by = zone_shift(seoul, &kolkata, &instants).unwrap();
        assert_eq!(by, -210);
        let moved = shift(&calendar(&s).unwrap(), by).unwrap();
        assert_eq!(
            keys(&moved),
            vec![entry(&[("Weekday", 0), ("Hour", 22), ("Minute", 45)])]
        );
        for t in &instants {
            let local = t.with_timezone(&kolkata).naive_local();
            assert!(moved.iter().any(|e| fires(e, local)), "{t}");
        }
    }

    #[test]
    fn conversions_that_daylight_saving_or_month_ends_would_break_are_refused() {
        let seoul = chrono_tz::Asia::Seoul;
        let s = Schedule::parse("0 3 15 1,4,7,10 *").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap();
        let instants: Vec<_> = s
            .upcoming(now, seoul, 8)
            .iter()
            .map(|t| t.with_timezone(&Utc))
            .collect();
        let e = zone_shift(seoul, &chrono_tz::America::New_York, &instants).unwrap_err();
        assert!(
            e.contains("14h behind Asia/Seoul at 2027-01-15 03:00 KST")
                && e.contains("13h behind at 2027-04-15 03:00 KST")
                && e.contains("daylight saving"),
            "{e}"
        );
        let day_one = calendar(&Schedule::parse("0 3 1 * *").unwrap()).unwrap();
        assert!(shift(&day_one, -540).unwrap_err().contains("previous"));
        let every_hour = calendar(&Schedule::parse("0 * * * Mon").unwrap()).unwrap();
        assert!(shift(&every_hour, -540).unwrap_err().contains("hour field"));
        // February 28th plus a day is not the 29th in most years
        let feb = calendar(&Schedule::parse("0 20 28 2 *").unwrap()).unwrap();
        assert!(shift(&feb, 300).is_err());
        assert_eq!(
            shift(
                &calendar(&Schedule::parse("0 20 27 2 *").unwrap()).unwrap(),
                300
            )
            .unwrap()[0]
                .keys(),
            entry(&[("Month", 2), ("Day", 28), ("Hour", 1), ("Minute", 0)])
        );
    }
}
