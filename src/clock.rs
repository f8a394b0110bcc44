//! Time, injected wherever ages, RTO or schedules are computed, so tests can
//! fix it.

use chrono::{DateTime, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system clock shifted so that it read a given instant when made: it
/// advances in real time from there (durations such as RTO stay real).
/// `drill` uses it when `DRILL_NOW` is set, to rehearse a date (e.g. which
/// cold disk a quarter's rotation expects) and in tests.
#[derive(Debug, Clone, Copy)]
pub struct ShiftedClock {
    offset: chrono::TimeDelta,
}

impl ShiftedClock {
    /// A clock that reads `now` at this moment.
    pub fn starting_at(now: DateTime<Utc>) -> Self {
        ShiftedClock {
            offset: now - Utc::now(),
        }
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }
}

/// Environment variable read by [`from_env`].
pub const NOW_VARIABLE: &str = "DRILL_NOW";

/// The system clock, or a [`ShiftedClock`] starting at `DRILL_NOW` (RFC
/// 3339, e.g. `2027-02-15T03:00:00+09:00`) when that is set.
///
/// # Errors
/// A message naming the variable when its value is not RFC 3339.
pub fn from_env() -> Result<Box<dyn Clock>, String> {
    match std::env::var(NOW_VARIABLE) {
        Ok(v) if !v.trim().is_empty() => DateTime::parse_from_rfc3339(v.trim())
            .map(|t| Box::new(ShiftedClock::starting_at(t.with_timezone(&Utc))) as Box<dyn Clock>)
            .map_err(|e| {
                format!("{NOW_VARIABLE}=`{v}` is not an RFC 3339 time (e.g. 2027-02-15T03:00:00+09:00): {e}")
            }),
        _ => Ok(Box::new(SystemClock)),
    }
}
