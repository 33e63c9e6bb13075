//! One timestamp type for every time a record carries.
//!
//! Records used to hold RFC 3339 strings that the journal, the query builder and the filter
//! each parsed back to nanoseconds. A [`Timestamp`] is the number (ns since the Unix epoch, UTC)
//! and is written as RFC 3339 only at the edges: the record's JSON (byte for byte what the
//! strings were, so old journal records keep verifying), the gRPC fields and the CLI.
use std::{fmt, str::FromStr};

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

/// A point in time: nanoseconds since the Unix epoch, UTC. `i64` nanoseconds reach the years
/// 1677 to 2262, as the journal's `time_ns` column does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Text that is not an RFC 3339 time, or one outside what [`Timestamp`] holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimestampError {
    text: String,
}

impl fmt::Display for TimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an RFC 3339 time (like 2026-12-01T10:00:00Z) between 1677 and 2262",
            self.text
        )
    }
}

impl std::error::Error for TimestampError {}

impl Timestamp {
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);

    pub fn now() -> Self {
        // Saturates rather than wrapping after 2262; a clock that far off is not a real time.
        let ns = OffsetDateTime::now_utc().unix_timestamp_nanos();
        Timestamp(i64::try_from(ns).unwrap_or(i64::MAX))
    }

    pub const fn from_unix_nanos(ns: i64) -> Self {
        Timestamp(ns)
    }

    pub const fn unix_nanos(self) -> i64 {
        self.0
    }

    /// The RFC 3339 text (UTC, with as many fractional digits as the time needs).
    pub fn to_rfc3339(self) -> String {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0))
            .ok()
            .and_then(|at| at.format(&Rfc3339).ok())
            // Every i64 of nanoseconds is a formattable date; this is never reached.
            .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
    }

    pub fn parse_rfc3339(text: &str) -> Result<Self, TimestampError> {
        OffsetDateTime::parse(text, &Rfc3339)
            .ok()
            .and_then(|at| i64::try_from(at.unix_timestamp_nanos()).ok())
            .map(Timestamp)
            .ok_or_else(|| TimestampError {
                text: text.to_string(),
            })
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Timestamp::parse_rfc3339(text)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_with_the_digits_it_needs() {
        for text in [
            "2026-12-01T10:00:00Z",
            "2026-12-01T10:00:00.5Z",
            "2026-12-01T10:00:00.123456789Z",
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999999Z",
        ] {
            let at: Timestamp = text.parse().unwrap();
            assert_eq!(at.to_rfc3339(), text);
            let json = serde_json::to_string(&at).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), at);
        }
        assert_eq!(
            Timestamp::parse_rfc3339("2026-12-01T10:00:00.5Z")
                .unwrap()
                .unix_nanos(),
            1_796_119_200_500_000_000
        );
    }

    #[test]
    fn offsets_are_read_as_the_same_instant_and_written_in_utc() {
        let at = Timestamp::parse_rfc3339("2026-12-01T12:00:00+02:00").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-12-01T10:00:00Z");
    }

    #[test]
    fn text_that_is_not_a_time_is_refused_with_what_was_wrong() {
        for text in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "9999-01-01T00:00:00Z",
        ] {
            let error = Timestamp::parse_rfc3339(text).unwrap_err();
            assert!(
                error.to_string().contains("is not an RFC 3339 time"),
                "{error}"
            );
        }
        assert!(serde_json::from_str::<Timestamp>("\"later\"").is_err());
        assert!(serde_json::from_str::<Timestamp>("12").is_err());
    }

    #[test]
    fn the_extremes_of_i64_format() {
        assert_eq!(
            Timestamp::from_unix_nanos(i64::MAX).to_rfc3339(),
            "2262-04-11T23:47:16.854775807Z"
        );
        assert!(Timestamp::from_unix_nanos(i64::MIN)
            .to_rfc3339()
            .starts_with("1677-09-21"));
    }
}
