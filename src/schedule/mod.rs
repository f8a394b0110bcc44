//! The drill schedule: a cron expression in the crontab(5) dialect, read in
//! the configured time zone.
//!
//! The dialect (parsed by the `croner` crate):
//!
//! - five fields, as in crontab(5): `minute hour day-of-month month
//!   day-of-week`, e.g. `0 3 15 1,4,7,10 *` (03:00 on the 15th of January,
//!   April, July and October);
//! - or six, with seconds first: `second minute hour day-of-month month
//!   day-of-week`, e.g. `0 0 3 15 1,4,7,10 *`;
//! - or seven, with a year last (drill's older dialect had one).
//!
//! Each field takes numbers, `*`, ranges (`1-5`), lists (`1,4,7`) and steps
//! (`*/15`, `0-30/10`); months and weekdays also take names (`Jan`, `Mon`).
//! Day of week counts 0 = Sunday, 1 = Monday … 6 = Saturday, and 7 is Sunday
//! again. `@yearly`, `@monthly`, `@weekly`, `@daily` and `@hourly` stand
//! for their five-field forms. When both day of month and day of week are
//! restricted (neither starts with `*`), a day matches when *either* does,
//! as crontab(5) says; when one of them starts with `*` (`*/2`), both must
//! match. Quartz's `L`, `W`, `#` and croner's `+` are refused, since
//! launchd and systemd cannot follow them.
//!
//! Before, drill read the six-field form with the `cron` crate, where
//! 1 = Sunday … 7 = Saturday and a restricted day of month and day of week
//! both had to match; [`Schedule::warnings`] says where an expression now
//! means other days than it did then.

pub mod launchd;
pub mod systemd;

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// How long a scheduler waits, in seconds, after asking a running drill to
/// stop (SIGTERM) before it kills it: launchd's `ExitTimeOut`, systemd's
/// `TimeoutStopSec`. An interrupted drill gets 60 s to stop its work,
/// remove its sandboxes and write its report, then sweeps its sandboxes;
/// this leaves room for all of it.
pub const STOP_TIMEOUT_SECS: u32 = 120;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    cron: Cron,
    warnings: Vec<String>,
}

const DAY_NAMES: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

fn day_names(days: &[u16]) -> String {
    days.iter()
        .map(|d| DAY_NAMES[usize::from(*d) % 7])
        .collect::<Vec<_>>()
        .join(", ")
}

fn parser(dom_and_dow: bool, quartz_weekdays: bool) -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Optional)
        .dom_and_dow(dom_and_dow)
        .alternative_weekdays(quartz_weekdays)
        .build()
}

fn starts_with_star(field: &str) -> bool {
    field.starts_with(['*', '?'])
}

impl Schedule {
    /// Parse `expression` in the dialect the module describes: five
    /// crontab(5) fields, or six with seconds first, or seven with a year
    /// last; e.g. `0 3 15 1,4,7,10 *` (03:00 on the 15th of January, April,
    /// July and October).
    ///
    /// # Errors
    /// What is wrong with it: the number of fields, a value out of range, or
    /// a Quartz or croner extension (`L`, `W`, `#`, `+`).
    pub fn parse(expression: &str) -> Result<Self, String> {
        let expression = expression.trim();
        let fields: Vec<&str> = expression.split_whitespace().collect();
        let nickname = expression.starts_with('@');
        if !nickname && !(5..=7).contains(&fields.len()) {
            return Err(format!(
                "it has {} field(s); drill takes five (crontab(5): minute hour day-of-month month day-of-week), or six with seconds first",
                fields.len()
            ));
        }
        // Day of month and day of week among the fields.
        let (dom, dow) = if nickname {
            ("*", "*")
        } else {
            let first_date = if fields.len() == 5 { 2 } else { 3 };
            (fields[first_date], fields[first_date + 2])
        };
        if dow.starts_with('+') {
            return Err(
                "`+` in the day of week is not crontab(5); restrict only one of the two day fields, or start one with `*` to need both"
                    .into(),
            );
        }
        // crontab(5): both restricted ⇒ either matches; one starting
        // with `*` ⇒ both must (Vixie cron's rule, which croner applies only
        // to a bare `*`).
        let both = starts_with_star(dom) || starts_with_star(dow);
        let cron = parser(both, false)
            .parse(expression)
            .map_err(|e| e.to_string())?;
        if cron.pattern.days.has_modifiers() || cron.pattern.days_of_week.has_modifiers() {
            return Err(
                "`L`, `W` and `#` are not crontab(5) and launchd and systemd cannot follow them; list the days instead"
                    .into(),
            );
        }
        let mut warnings = Vec::new();
        // The older dialect had six or seven fields, 1 = Sunday, and needed
        // both restricted day fields to match.
        if !nickname && fields.len() >= 6 {
            let days = |v: Vec<u16>| -> Vec<u16> {
                let mut v: Vec<u16> = v.into_iter().map(|d| d % 7).collect();
                v.sort_unstable();
                v.dedup();
                v
            };
            let now = days(cron.pattern.days_of_week.values());
            let before = parser(true, true)
                .parse(expression)
                .ok()
                .map(|c| days(c.pattern.days_of_week.values()));
            if let Some(before) = before.filter(|b| *b != now) {
                warnings.push(format!(
                    "day-of-week `{dow}` means {} (crontab(5): 0 and 7 = Sunday, 1 = Monday); drill before this version read it as {}; write day names (`Mon`) to be clear",
                    day_names(&now),
                    day_names(&before)
                ));
            }
            if !both {
                warnings.push(format!(
                    "day-of-month `{dom}` and day-of-week `{dow}` are both restricted, so a day matches when either does (crontab(5)); drill before this version needed both"
                ));
            }
        }
        Ok(Schedule {
            expression: expression.to_string(),
            cron,
            warnings,
        })
    }

    /// The expression as written (trimmed).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// What an operator should know about how the expression is read: where
    /// a six-field expression now means other days than drill's older
    /// dialect gave it (day of week 1 = Sunday, restricted day fields both
    /// needed). Each is one sentence naming the days; empty for most
    /// expressions and for every five-field one.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The first `count` scheduled times strictly after `t`, in `tz`. A
    /// fixed time that daylight saving skips runs right after the gap, and
    /// one it repeats runs once; times from `*` or steps in the second,
    /// minute or hour field that fall in a gap are skipped, and run twice
    /// in a repeated hour (croner's rules, after Vixie cron).
    pub fn upcoming(
        &self,
        t: DateTime<Utc>,
        tz: chrono_tz::Tz,
        count: usize,
    ) -> Vec<DateTime<chrono_tz::Tz>> {
        self.cron
            .iter_after(t.with_timezone(&tz))
            .take(count)
            .collect()
    }

    /// The first scheduled time strictly after `t`, in `tz`.
    pub fn next_after(
        &self,
        t: DateTime<Utc>,
        tz: chrono_tz::Tz,
    ) -> Option<DateTime<chrono_tz::Tz>> {
        self.upcoming(t, tz, 1).into_iter().next()
    }

    /// The expression's fields as sets (`None` for every value), for
    /// translating it to another scheduler. Day of week counts 0 = Sunday
    /// … 6 = Saturday; [`Fields::day_rule`] says how the two day fields
    /// combine.
    pub fn fields(&self) -> Fields {
        let p = &self.cron.pattern;
        // `None` when every value from `min` to `max` is in.
        let set = |v: Vec<u16>, min: u16, max: u16| -> Option<Vec<u32>> {
            (v.len() != usize::from(max - min) + 1).then(|| v.into_iter().map(u32::from).collect())
        };
        macro_rules! field {
            ($c:expr) => {
                set($c.values(), $c.min, $c.max)
            };
        }
        let mut days_of_month = field!(p.days);
        // croner folds 7 into 0, so the field is every day at seven values.
        let mut days_of_week = {
            let v = p.days_of_week.values();
            (v.len() < 7).then(|| v.into_iter().map(u32::from).collect())
        };
        let day_rule = if p.matches_dom_and_dow() {
            DayRule::Both
        } else {
            DayRule::Either
        };
        // Either of two fields, one of which is every day: every day.
        if day_rule == DayRule::Either && (days_of_month.is_none() || days_of_week.is_none()) {
            days_of_month = None;
            days_of_week = None;
        }
        Fields {
            seconds: field!(p.seconds),
            minutes: field!(p.minutes),
            hours: field!(p.hours),
            days_of_month,
            months: field!(p.months),
            days_of_week,
            day_rule,
            years: field!(p.years),
        }
    }
}

/// How the day-of-month and day-of-week fields combine when both are
/// restricted (crontab(5)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayRule {
    /// A day matches when either field does (both fields restricted).
    Either,
    /// A day matches when both do (a field starting with `*`, e.g. `*/2`).
    Both,
}

/// A cron expression's fields; each `None` means every value (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    /// Seconds 0–59.
    pub seconds: Option<Vec<u32>>,
    /// Minutes 0–59.
    pub minutes: Option<Vec<u32>>,
    /// Hours 0–23.
    pub hours: Option<Vec<u32>>,
    /// Days of the month 1–31.
    pub days_of_month: Option<Vec<u32>>,
    /// Months 1–12.
    pub months: Option<Vec<u32>>,
    /// Days of the week, 0 = Sunday … 6 = Saturday.
    pub days_of_week: Option<Vec<u32>>,
    /// How `days_of_month` and `days_of_week` combine when both are `Some`.
    /// When the rule is `Either` and one field is every day, both are
    /// `None`.
    pub day_rule: DayRule,
    /// Years.
    pub years: Option<Vec<u32>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone};

    fn after() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap()
    }

    fn times(expr: &str, count: usize) -> Vec<String> {
        Schedule::parse(expr)
            .unwrap()
            .upcoming(after(), chrono_tz::Asia::Seoul, count)
            .iter()
            .map(|t| t.to_rfc3339())
            .collect()
    }

    #[test]
    fn quarterly_at_three_in_seoul_five_and_six_fields() {
        let quarterly = [
            "2027-01-15T03:00:00+09:00",
            "2027-04-15T03:00:00+09:00",
            "2027-07-15T03:00:00+09:00",
            "2027-10-15T03:00:00+09:00",
        ];
        assert_eq!(times("0 3 15 1,4,7,10 *", 4), quarterly);
        assert_eq!(times("0 0 3 15 1,4,7,10 *", 4), quarterly);
        assert_eq!(times("0 0 3 15 Jan,Apr,Jul,Oct * 2027", 5), quarterly);
        let s = Schedule::parse("0 3 15 1,4,7,10 *").unwrap();
        assert_eq!(
            s.next_after(after(), chrono_tz::Asia::Seoul)
                .unwrap()
                .to_rfc3339(),
            quarterly[0]
        );
        assert!(s.warnings().is_empty());
        assert!(Schedule::parse("every day").is_err());
        assert!(Schedule::parse("0 3 * *").unwrap_err().contains("five"));
    }

    #[test]
    fn weekdays_count_as_in_crontab() {
        // 2026-11-30 is a Monday.
        let weekday = |expr: &str| {
            Schedule::parse(expr)
                .unwrap()
                .next_after(after(), chrono_tz::Asia::Seoul)
                .unwrap()
                .weekday()
                .num_days_from_sunday()
        };
        assert_eq!(weekday("0 3 * * 1"), 1);
        assert_eq!(weekday("0 0 3 * * 1"), 1);
        assert_eq!(weekday("0 3 * * 0"), 0);
        assert_eq!(weekday("0 3 * * 7"), 0);
        assert_eq!(weekday("0 3 * * Sat"), 6);
        assert_eq!(weekday("0 0 3 * * 6"), 6);
        let f = Schedule::parse("0 3 * * 1-5").unwrap().fields();
        assert_eq!(f.days_of_week, Some(vec![1, 2, 3, 4, 5]));
        let f = Schedule::parse("0 3 * * 5-7").unwrap().fields();
        assert_eq!(f.days_of_week, Some(vec![0, 5, 6]));
        // every day, however written
        for every in ["0 3 * * 0-6", "0 3 * * 1-7", "0 3 * * *"] {
            assert_eq!(
                Schedule::parse(every).unwrap().fields().days_of_week,
                None,
                "{every}"
            );
        }
    }

    #[test]
    fn restricted_day_fields_match_either_as_in_vixie_cron() {
        // the 15th, or any Monday
        assert_eq!(
            times("0 3 15 12 Mon", 4),
            [
                "2026-12-07T03:00:00+09:00",
                "2026-12-14T03:00:00+09:00",
                "2026-12-15T03:00:00+09:00",
                "2026-12-21T03:00:00+09:00"
            ]
        );
        let f = Schedule::parse("0 3 15 12 Mon").unwrap().fields();
        assert_eq!(
            (f.days_of_month, f.days_of_week, f.day_rule),
            (Some(vec![15]), Some(vec![1]), DayRule::Either)
        );
        // a field starting with `*` makes both needed: odd days that are Mondays
        assert_eq!(
            times("0 3 */2 12 Mon", 2),
            ["2026-12-07T03:00:00+09:00", "2026-12-21T03:00:00+09:00"]
        );
        let f = Schedule::parse("0 3 */2 12 Mon").unwrap().fields();
        assert_eq!(f.day_rule, DayRule::Both);
        assert_eq!(f.days_of_month.unwrap().len(), 16);
        // either of a field and every day: every day
        let f = Schedule::parse("0 3 1-31 * Mon").unwrap().fields();
        assert_eq!((f.days_of_month, f.days_of_week), (None, None));
    }

    #[test]
    fn extensions_and_bad_values_are_refused() {
        for bad in [
            "0 3 L * *",
            "0 3 15W * *",
            "0 3 * * 5#2",
            "0 3 * * 5L",
            "0 3 1 * +Mon",
            "0 3 * * 8",
            "0 24 * * *",
            "0 0 3 15 1 * 2027 1",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
        let daily = Schedule::parse("@daily").unwrap();
        assert_eq!(daily.fields().hours, Some(vec![0]));
        assert!(daily.warnings().is_empty());
    }

    #[test]
    fn six_fields_whose_days_changed_are_warned_about() {
        let w = |e: &str| Schedule::parse(e).unwrap().warnings().to_vec();
        let monday = w("0 0 3 * * 1");
        assert_eq!(monday.len(), 1, "{monday:?}");
        assert!(
            monday[0].contains("`1` means Monday") && monday[0].contains("read it as Sunday"),
            "{monday:?}"
        );
        let seven = w("0 0 3 * * 7");
        assert!(
            seven[0].contains("means Sunday") && seven[0].contains("as Saturday"),
            "{seven:?}"
        );
        let range = w("0 0 3 * * 2-6");
        assert!(
            range[0].contains("Tuesday, Wednesday, Thursday, Friday, Saturday")
                && range[0].contains("as Monday, Tuesday, Wednesday, Thursday, Friday"),
            "{range:?}"
        );
        let either = w("0 0 3 15 * Mon");
        assert_eq!(either.len(), 1, "{either:?}");
        assert!(either[0].contains("either"), "{either:?}");
        // same days in both dialects, or never valid before: no warning
        for quiet in [
            "0 0 3 * * Mon-Fri",
            "0 0 3 * * 1-7",
            "0 0 3 * * *",
            "0 0 3 * * 0",
            "0 0 3 15 1,4,7,10 *",
            "0 3 * * 1",
        ] {
            assert!(w(quiet).is_empty(), "{quiet}: {:?}", w(quiet));
        }
    }
}
