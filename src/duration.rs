//! The one way drill writes a duration for a person: terminal lines, error
//! messages, Markdown and HTML reports, Slack messages. Machine outputs
//! (JSON, CSV, metrics, JUnit) carry plain seconds instead.
//!
//! The shape: under 10 s with one decimal (`0.3s`, `4.2s`, `2s`); under a
//! minute in whole seconds (`45s`); from a minute on, the largest unit of
//! days, hours, minutes and seconds and the one after it when that is not
//! zero, the rest cut off (`1m 30s`, `1h`, `1h 30m`, `26h` is `1d 2h`). The unit letters are those a
//! config's durations are written with (`90s`, `4h`, `26h`), so what drill
//! prints can be pasted back into `drill.toml`.

use std::time::Duration;

/// `seconds` for a person (see the module docs); negative or not a number
/// reads as `0s`.
pub fn human_seconds(seconds: f64) -> String {
    let s = if seconds.is_finite() && seconds > 0.0 {
        seconds
    } else {
        0.0
    };
    let tenths = (s * 10.0).round();
    if tenths < 100.0 {
        // Under 10 s: one decimal, `.0` dropped.
        let whole = tenths / 10.0;
        return if tenths % 10.0 == 0.0 {
            format!("{whole:.0}s")
        } else {
            format!("{whole:.1}s")
        };
    }
    let s = s.round() as u64;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "m"), (sec, "s")]
        .iter()
        .skip_while(|(v, _)| *v == 0)
        .take(2)
        .filter(|(v, _)| *v > 0)
        .map(|(v, u)| format!("{v}{u}"))
        .collect();
    parts.join(" ")
}

/// A measured duration and its limit for a person, told apart: as
/// [`human_or_unknown`], unless both would read the same though the whole
/// seconds differ (`26h 0m 30s` over a limit of `26h`); then both in every
/// unit down to seconds (`1d 2h 0m 30s` and `1d 2h 0m 0s`).
pub fn against_limit(actual: Option<f64>, limit: Option<f64>) -> (String, String) {
    let (a, l) = (human_or_unknown(actual), human_or_unknown(limit));
    match (actual, limit) {
        (Some(x), Some(y)) if a == l && x.max(0.0).round() != y.max(0.0).round() => {
            (every_unit(x), every_unit(y))
        }
        _ => (a, l),
    }
}

/// Whole seconds in every unit from the largest non-zero one down to
/// seconds (`1d 2h 0m 30s`).
fn every_unit(seconds: f64) -> String {
    let s = if seconds.is_finite() && seconds > 0.0 {
        seconds.round() as u64
    } else {
        0
    };
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "m"), (sec, "s")]
        .iter()
        .skip_while(|(v, u)| *v == 0 && *u != "s")
        .map(|(v, u)| format!("{v}{u}"))
        .collect();
    parts.join(" ")
}

/// [`human_seconds`] of a [`Duration`].
pub fn human(d: Duration) -> String {
    human_seconds(d.as_secs_f64())
}

/// [`human_seconds`], or `unknown` when there is no value (a duration that
/// was not measured).
pub fn human_or_unknown(seconds: Option<f64>) -> String {
    seconds.map_or_else(|| "unknown".into(), human_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_durations_keep_a_decimal() {
        assert_eq!(human_seconds(0.0), "0s");
        assert_eq!(human_seconds(0.04), "0s");
        assert_eq!(human_seconds(0.25), "0.3s");
        assert_eq!(human_seconds(2.0), "2s");
        assert_eq!(human_seconds(4.24), "4.2s");
        assert_eq!(human_seconds(9.96), "10s");
    }

    #[test]
    fn seconds_then_two_largest_units() {
        assert_eq!(human_seconds(45.2), "45s");
        assert_eq!(human_seconds(59.6), "1m");
        assert_eq!(human_seconds(90.0), "1m 30s");
        assert_eq!(human_seconds(3600.0), "1h");
        assert_eq!(human_seconds(3601.0), "1h");
        assert_eq!(human_seconds(3660.0), "1h 1m");
        assert_eq!(human_seconds(5400.0), "1h 30m");
        assert_eq!(human_seconds(5459.0), "1h 30m");
        assert_eq!(human_seconds(26.0 * 3600.0), "1d 2h");
        assert_eq!(human_seconds(86_400.0 + 59.0), "1d");
        assert_eq!(human_seconds(90.0 * 86_400.0 + 7200.0), "90d 2h");
    }

    #[test]
    fn a_value_just_over_its_limit_reads_differently() {
        let day2h = 26.0 * 3600.0;
        assert_eq!(
            against_limit(Some(day2h + 30.0), Some(day2h)),
            ("1d 2h 0m 30s".to_string(), "1d 2h 0m 0s".to_string())
        );
        assert_eq!(
            against_limit(Some(5400.0), Some(7200.0)),
            ("1h 30m".to_string(), "2h".to_string())
        );
        assert_eq!(
            against_limit(Some(45.0), None),
            ("45s".to_string(), "unknown".to_string())
        );
        assert_eq!(every_unit(30.0), "30s");
    }

    #[test]
    fn nothing_negative_or_unknown_slips_through() {
        assert_eq!(human_seconds(-5.0), "0s");
        assert_eq!(human_seconds(f64::NAN), "0s");
        assert_eq!(human_or_unknown(None), "unknown");
        assert_eq!(human_or_unknown(Some(120.0)), "2m");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_secs(120)), "2m");
    }
}
