//! Time arguments as people type them: `14d`, `2h`, `90m`, a date or an RFC 3339 time.
use anyhow::{bail, Context as _};
use fim_model::Timestamp;
use time::{
    format_description::well_known::Rfc3339, Date, OffsetDateTime, PrimitiveDateTime, Time,
};

/// Nanoseconds since the epoch for `--since`/`--until`: a span back from now, or a time.
pub fn parse_point(text: &str, now: OffsetDateTime) -> anyhow::Result<i64> {
    let text = text.trim();
    if let Some(span) = parse_span(text) {
        return Ok((now - span).unix_timestamp_nanos() as i64);
    }
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(at.unix_timestamp_nanos() as i64);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(date) = Date::parse(text, &format) {
        let at = PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc();
        return Ok(at.unix_timestamp_nanos() as i64);
    }
    bail!("{text:?} is not a time: use a span back from now (30s, 15m, 2h, 14d, 2w), a date (2026-11-01) or RFC 3339 (2026-11-01T12:00:00Z)")
}

fn parse_span(text: &str) -> Option<time::Duration> {
    let unit = text.chars().last()?;
    let number: i64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    if number < 0 {
        return None;
    }
    Some(match unit {
        's' => time::Duration::seconds(number),
        'm' => time::Duration::minutes(number),
        'h' => time::Duration::hours(number),
        'd' => time::Duration::days(number),
        'w' => time::Duration::weeks(number),
        _ => return None,
    })
}

/// Parses with context naming the option.
pub fn option(
    name: &str,
    text: &Option<String>,
    now: OffsetDateTime,
) -> anyhow::Result<Option<Timestamp>> {
    text.as_deref()
        .map(|text| {
            parse_point(text, now)
                .map(Timestamp::from_unix_nanos)
                .with_context(|| format!("--{name}"))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_dates_and_times() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        assert_eq!(
            parse_point("14d", now).unwrap(),
            (1_000_000 - 14 * 86_400) * 1_000_000_000
        );
        assert_eq!(
            parse_point("30s", now).unwrap(),
            (1_000_000 - 30) * 1_000_000_000
        );
        assert_eq!(
            parse_point("1970-01-02", now).unwrap(),
            86_400 * 1_000_000_000
        );
        assert_eq!(
            parse_point("1970-01-01T00:00:10Z", now).unwrap(),
            10 * 1_000_000_000
        );
        let error = parse_point("yesterday", now).unwrap_err().to_string();
        assert!(error.starts_with("\"yesterday\" is not a time"), "{error}");
    }
}
