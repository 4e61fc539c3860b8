//! Event-time helpers on whole epoch seconds, by `jiff`: RFC 3339 parsing and formatting,
//! UTC dates, and the standard offset of an IANA zone. Timestamps in gridwatch are `i64`
//! seconds since the Unix epoch (UTC).

/// Parses an RFC 3339 timestamp (`2026-01-05T00:15:00Z`, `2026-01-05T06:15:00+06:00`,
/// `2026-01-05 00:15:00.000Z`) into epoch seconds, with `jiff`. Fractional seconds are rounded
/// to the nearest second. A timestamp needs its offset (`Z` or `±HH:MM`): a local time alone
/// doesn't say when it was.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    if let Some(secs) = utc_seconds(s.as_bytes()) {
        return Ok(secs);
    }
    let t: jiff::Timestamp = s.parse().map_err(|e| {
        format!("not an RFC 3339 timestamp with an offset (e.g. 2026-01-05T00:15:00Z): {e}")
    })?;
    if t.subsec_nanosecond() == 0 {
        return Ok(t.as_second());
    }
    let rounded = t
        .round(jiff::Unit::Second)
        .map_err(|e| format!("timestamp out of range: {e}"))?;
    Ok(rounded.as_second())
}

/// The common form, `YYYY-MM-DDTHH:MM:SSZ` exactly, read without a general parser: what every
/// simulated file and most head-ends send, parsed once per reading (jiff took 6 % of an embedded
/// run). Anything else, or anything out of range, is `None` and goes to jiff, whose answers and
/// errors stand.
fn utc_seconds(b: &[u8]) -> Option<i64> {
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        b[from..to].iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    // Leap seconds (:60) are jiff's to judge.
    if !(1..=month_days).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Days from 1970-01-01 to the date (the proleptic Gregorian calendar, in 400-year eras).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// The standard (winter, non-DST) UTC offset of an IANA time zone, in whole hours: the local
/// clock the diurnal cycle follows all year. DST moves the clock, not the sun, so night and
/// day are judged on standard time. The smaller of the zone's offsets on 1 January and 1 July
/// 2026 (daylight saving always adds).
pub fn standard_offset_hours(zone: &str) -> Result<i64, String> {
    let tz = jiff::tz::TimeZone::get(zone)
        .map_err(|_| format!("{zone:?} is not an IANA time zone (e.g. Asia/Almaty)"))?;
    let at = |secs: i64| {
        jiff::Timestamp::from_second(secs)
            .map(|t| tz.to_offset(t).seconds())
            .unwrap_or(0)
    };
    let (january, july) = (1_767_225_600, 1_782_864_000);
    Ok(i64::from(at(january).min(at(july))).div_euclid(3600))
}

pub fn format_rfc3339(secs: i64) -> String {
    match jiff::Timestamp::from_second(secs) {
        Ok(t) => t.to_string(),
        // Beyond jiff's range (years -9999 to 9999): no parsed reading gets here.
        Err(_) => format!("{secs}s since 1970-01-01T00:00:00Z"),
    }
}

/// The UTC calendar date of epoch seconds.
pub fn utc_date(secs: i64) -> jiff::civil::Date {
    let t = jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    jiff::tz::Offset::UTC.to_datetime(t).date()
}

/// The UTC calendar date of epoch seconds, as `YYYY-MM-DD`.
pub fn format_date(secs: i64) -> String {
    utc_date(secs).to_string()
}

/// Serde adapter: epoch seconds on the Rust side, an RFC 3339 string on the wire.
pub mod serde_rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(secs: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_rfc3339(*secs))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

/// Serde adapter for an optional timestamp: `None` as null, else as [`serde_rfc3339`].
pub mod serde_rfc3339_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(secs: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match secs {
            Some(secs) => s.serialize_some(&super::format_rfc3339(*secs)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?
            .map(|s| super::parse_rfc3339(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_offsets_ignore_daylight_saving() {
        assert_eq!(standard_offset_hours("Asia/Almaty"), Ok(5));
        assert_eq!(standard_offset_hours("Europe/Berlin"), Ok(1));
        assert_eq!(standard_offset_hours("America/New_York"), Ok(-5));
        assert_eq!(standard_offset_hours("Australia/Sydney"), Ok(10));
        assert_eq!(standard_offset_hours("UTC"), Ok(0));
        assert!(standard_offset_hours("Mars/Olympus")
            .unwrap_err()
            .contains("not an IANA time zone"));
    }

    #[test]
    fn round_trips_and_offsets() {
        let t = parse_rfc3339("2026-01-05T00:15:00Z").unwrap();
        assert_eq!(format_rfc3339(t), "2026-01-05T00:15:00Z");
        assert_eq!(parse_rfc3339("2026-01-05T06:15:00+06:00").unwrap(), t);
        assert_eq!(parse_rfc3339("2026-01-04T23:15:00-01:00").unwrap(), t);
        assert_eq!(parse_rfc3339("2026-01-05 00:14:59.6Z").unwrap(), t);
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(format_date(t), "2026-01-05");
        assert_eq!(
            parse_rfc3339("2024-02-29T12:00:00Z")
                .map(format_rfc3339)
                .unwrap(),
            "2024-02-29T12:00:00Z"
        );
    }

    #[test]
    fn rejects_bad_timestamps() {
        for bad in [
            "",
            "2026-01-05",
            "2026-01-05T00:15:00",
            "2026-13-05T00:15:00Z",
            "2026-02-30T00:15:00Z",
            "2026-01-05T24:15:00Z",
            "2026-01-05T00:15:00Zjunk",
            "2026-01-05T00:15:00+6",
            "20x6-01-05T00:15:00Z",
            "2026-01-05T00:15:00.Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad} should be rejected");
        }
    }

    /// The fast path gives jiff's seconds for every date from year 0 to 9999 it is tried on,
    /// and hands jiff whatever it doesn't read.
    #[test]
    fn the_common_form_is_read_as_jiff_reads_it() {
        let jiff_seconds = |s: &str| s.parse::<jiff::Timestamp>().ok().map(|t| t.as_second());
        let max = jiff::Timestamp::MAX.as_second();
        let mut secs = jiff::Timestamp::MIN.as_second();
        let mut tried = 0;
        while secs < max {
            let text = format_rfc3339(secs);
            if text.len() == 20 {
                assert_eq!(utc_seconds(text.as_bytes()), Some(secs), "{text}");
                assert_eq!(jiff_seconds(&text), Some(secs), "{text}");
                tried += 1;
            }
            secs += 1_577_777;
        }
        assert!(tried > 190_000, "{tried}");
        // Every day around the leap-year rules' edges, at the day's last second.
        for year in [
            1, 1899, 1900, 1969, 1970, 1999, 2000, 2024, 2100, 2400, 9999,
        ] {
            let start = parse_rfc3339(&format!("{year:04}-01-01T00:00:00Z")).unwrap();
            for day in 0..366 {
                let t = (start + day * 86_400 + 86_399).min(max);
                let text = format_rfc3339(t);
                assert_eq!(utc_seconds(text.as_bytes()), Some(t), "{text}");
            }
        }
        for other in [
            "2026-01-05T00:15:60Z",
            "2026-01-05t00:15:00Z",
            "2026-01-05T00:15:00z",
            "2026-02-29T00:15:00Z",
            "2026-00-05T00:15:00Z",
            "2026-01-00T00:15:00Z",
            "+026-01-05T00:15:00Z",
        ] {
            assert_eq!(utc_seconds(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(0).to_string(), "1970-01-01");
        assert_eq!(utc_date(-1).to_string(), "1969-12-31");
        assert_eq!(utc_date(1_709_208_000).month(), 2);
    }
}
