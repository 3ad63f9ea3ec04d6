//! Durations on the command line, in the forms people write: a number and a unit, several
//! of them in a row (`90s`, `45m`, `1h30m`, `1h 30m`, `2d`, `90min`), as the `humantime`
//! crate reads them. `--margin` also takes a bare whole number of seconds, as it always has.

use chrono::TimeDelta;
use lipachat_session::WindowRule;

/// What a refusal tells people to write.
const EXAMPLES: &str = "write a number and a unit, such as 90s, 45m, 1h30m or 2d";

/// Parses a duration with its unit (`90s`, `1h30m`, `2d`).
pub fn parse_duration(input: &str) -> Result<TimeDelta, String> {
    let text = input.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text:?} has no unit; {EXAMPLES} (for {text} seconds: {text}s)"
        ));
    }
    let parsed = humantime::parse_duration(text).map_err(|error| match error {
        humantime::DurationError::NumberOverflow => format!("{text:?} is too long a duration"),
        error => format!("{text:?} is not a duration ({error}); {EXAMPLES}"),
    })?;
    TimeDelta::from_std(parsed).map_err(|_| format!("{text:?} is too long a duration"))
}

/// Parses the safety margin: a duration ([`parse_duration`]) or a bare whole number of
/// seconds (`90`), shorter than WhatsApp's 24-hour window.
pub fn parse_margin(input: &str) -> Result<TimeDelta, String> {
    let text = input.trim();
    let margin = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<i64>()
            .ok()
            .and_then(TimeDelta::try_seconds)
            .ok_or_else(|| format!("{text:?} is too long a duration"))?
    } else {
        parse_duration(text)?
    };
    if margin >= WindowRule::DEFAULT_WINDOW {
        return Err(format!(
            "{text:?}: the margin must be shorter than the 24-hour window"
        ));
    }
    Ok(margin)
}

/// A duration as people write it, in the form [`parse_duration`] reads (`1m`, `1h 30m`).
pub fn format(duration: TimeDelta) -> String {
    match duration.to_std() {
        Ok(duration) => humantime::format_duration(duration).to_string(),
        Err(_) => format!("-{}", format(-duration)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units() {
        assert_eq!(parse_duration("90s"), Ok(TimeDelta::seconds(90)));
        assert_eq!(parse_duration("45m"), Ok(TimeDelta::minutes(45)));
        assert_eq!(parse_duration(" 1d "), Ok(TimeDelta::days(1)));
        assert_eq!(parse_duration("2d"), Ok(TimeDelta::days(2)));
        assert_eq!(parse_duration("1h30m"), Ok(TimeDelta::minutes(90)));
        assert_eq!(parse_duration("1h 30m"), Ok(TimeDelta::minutes(90)));
        assert_eq!(parse_duration("90min"), Ok(TimeDelta::minutes(90)));
        assert_eq!(parse_duration("250ms"), Ok(TimeDelta::milliseconds(250)));
        assert_eq!(parse_duration("0s"), Ok(TimeDelta::zero()));
        assert_eq!(parse_duration("1.5h"), Ok(TimeDelta::minutes(90)));
        for bad in ["", "s", "-5m", "1.5", "+3s", "é", "2 fortnights", "soon"] {
            let refused = parse_duration(bad);
            assert!(
                refused.as_ref().is_err_and(|e| e.contains("1h30m")),
                "{bad:?}: {refused:?}"
            );
        }
        assert!(
            parse_duration("90").is_err_and(|e| e.contains("has no unit") && e.contains("90s"))
        );
        assert!(parse_duration("99999999999999999999d").is_err());
        assert!(parse_duration("9223372036854775807d").is_err());
    }

    #[test]
    fn margins_take_bare_seconds_too() {
        assert_eq!(parse_margin("90"), Ok(TimeDelta::seconds(90)));
        assert_eq!(parse_margin("0"), Ok(TimeDelta::zero()));
        assert_eq!(parse_margin("2m"), Ok(TimeDelta::minutes(2)));
        assert_eq!(parse_margin("1m 30s"), Ok(TimeDelta::seconds(90)));
        assert_eq!(parse_margin("23h59m"), Ok(TimeDelta::minutes(24 * 60 - 1)));
        for bad in [
            "86400",
            "1d",
            "24h",
            "-1",
            "-1s",
            "1.5",
            "99999999999999999999",
        ] {
            assert!(parse_margin(bad).is_err(), "{bad:?}");
        }
        assert!(parse_margin("1d").is_err_and(|e| e.contains("shorter than the 24-hour window")));
    }

    #[test]
    fn formatted_durations_read_back() {
        for delta in [
            TimeDelta::seconds(60),
            TimeDelta::minutes(90),
            TimeDelta::hours(1),
            TimeDelta::zero(),
        ] {
            assert_eq!(
                parse_duration(&format(delta)),
                Ok(delta),
                "{}",
                format(delta)
            );
        }
        assert_eq!(format(TimeDelta::seconds(60)), "1m");
        assert_eq!(format(TimeDelta::minutes(90)), "1h 30m");
    }
}
