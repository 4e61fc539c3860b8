//! Event-time helpers: RFC 3339 parsing and formatting on whole epoch seconds, without a
//! time-zone database. Timestamps in gridwatch are `i64` seconds since the Unix epoch (UTC).

/// Parses an RFC 3339 timestamp (`2026-01-05T00:15:00Z`, `2026-01-05T06:15:00+06:00`,
/// `2026-01-05 00:15:00.000Z`) into epoch seconds. Fractional seconds are rounded to the
/// nearest second. Returns a short reason on failure.
pub fn parse_rfc3339(s: &str) -> Result<i64, &'static str> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return Err("timestamp too short for RFC 3339 (want e.g. 2026-01-05T00:15:00Z)");
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, &'static str> {
        let mut v = 0i64;
        for &c in &b[r] {
            if !c.is_ascii_digit() {
                return Err("timestamp has a non-digit where a digit belongs");
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Ok(v)
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err("timestamp is not RFC 3339 (want YYYY-MM-DDTHH:MM:SS plus Z or an offset)");
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("timestamp has an impossible date");
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err("timestamp has an impossible time of day");
    }
    let mut i = 19;
    let mut frac_round = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err("timestamp has an empty fraction of a second");
        }
        if b[start] >= b'5' {
            frac_round = 1;
        }
    }
    let offset = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return Err("timestamp has an impossible UTC offset");
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return Err("timestamp lacks a time zone (Z or +HH:MM) or has trailing text"),
    };
    let secs =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second.min(59);
    Ok(secs + frac_round - offset)
}

/// Formats epoch seconds as `YYYY-MM-DDTHH:MM:SSZ`.
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
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// The UTC calendar date of epoch seconds, as `YYYY-MM-DD`.
pub fn format_date(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
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

    #[test]
    fn civil_conversions_agree_over_centuries() {
        for z in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }
}
