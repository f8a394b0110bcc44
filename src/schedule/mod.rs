//! The drill schedule: a cron expression with a seconds field (the `cron`
//! crate's syntax: `sec min hour day-of-month month day-of-week [year]`),
//! read in the configured time zone.

pub mod launchd;
pub mod systemd;

use std::str::FromStr;

use chrono::{DateTime, Utc};
use cron::TimeUnitSpec;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    cron: cron::Schedule,
}

impl Schedule {
    /// Parse `expression`, e.g. `0 0 3 15 1,4,7,10 *` (03:00 on the 15th of
    /// January, April, July and October).
    ///
    /// # Errors
    /// The parser's message.
    pub fn parse(expression: &str) -> Result<Self, String> {
        cron::Schedule::from_str(expression)
            .map(|cron| Schedule {
                expression: expression.to_string(),
                cron,
            })
            .map_err(|e| e.to_string())
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first `count` scheduled times strictly after `t`, in `tz`.
    pub fn upcoming(
        &self,
        t: DateTime<Utc>,
        tz: chrono_tz::Tz,
        count: usize,
    ) -> Vec<DateTime<chrono_tz::Tz>> {
        self.cron.after(&t.with_timezone(&tz)).take(count).collect()
    }

    /// The first scheduled time strictly after `t`, in `tz`.
    pub fn next_after(
        &self,
        t: DateTime<Utc>,
        tz: chrono_tz::Tz,
    ) -> Option<DateTime<chrono_tz::Tz>> {
        self.cron.after(&t.with_timezone(&tz)).next()
    }

    /// The expression's fields as sets (`None` for `*`), for translating it
    /// to another scheduler. Day of week counts 0 = Sunday … 6 = Saturday.
    pub fn fields(&self) -> Fields {
        fn set(spec: &impl TimeUnitSpec) -> Option<Vec<u32>> {
            (!spec.is_all()).then(|| spec.iter().collect())
        }
        Fields {
            seconds: set(self.cron.seconds()),
            minutes: set(self.cron.minutes()),
            hours: set(self.cron.hours()),
            days_of_month: set(self.cron.days_of_month()),
            months: set(self.cron.months()),
            // the cron crate counts 1 = Sunday … 7 = Saturday
            days_of_week: set(self.cron.days_of_week())
                .map(|d| d.into_iter().map(|x| x - 1).collect()),
            years: set(self.cron.years()),
        }
    }
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
    /// Years.
    pub years: Option<Vec<u32>>,
}

/// `true` when `tz` and this host's local time zone (`TZ`, else
/// `/etc/localtime`, as launchd and systemd read it) give the same wall
/// clock at each of `instants`.
pub fn host_zone_agrees(tz: chrono_tz::Tz, instants: &[DateTime<Utc>]) -> bool {
    instants.iter().all(|t| {
        t.with_timezone(&tz).naive_local() == t.with_timezone(&chrono::Local).naive_local()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn quarterly_at_three_in_seoul() {
        let s = Schedule::parse("0 0 3 15 1,4,7,10 *").unwrap();
        let tz = chrono_tz::Asia::Seoul;
        let after = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap();
        let next = s.next_after(after, tz).unwrap();
        assert_eq!(next.to_rfc3339(), "2027-01-15T03:00:00+09:00");
        assert!(Schedule::parse("every day").is_err());
        let four: Vec<String> = s
            .upcoming(after, tz, 4)
            .iter()
            .map(|t| t.to_rfc3339())
            .collect();
        assert_eq!(
            four,
            [
                "2027-01-15T03:00:00+09:00",
                "2027-04-15T03:00:00+09:00",
                "2027-07-15T03:00:00+09:00",
                "2027-10-15T03:00:00+09:00"
            ]
        );
    }
}
