//! The calendar: public holidays per region (`region,date,name`), on which shops, offices,
//! schools and factories stand as on a Sunday. Optional input: from a file for the embedded
//! run, from the compacted `gridwatch.holidays` topic (key `region|date`) for the services.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A public holiday in a region, on a local calendar date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// Fields it doesn't know are ignored: records written by a newer producer still decode.
pub struct Holiday {
    /// The register's `region` (or, for sites without one, their feeder).
    pub region: String,
    /// The local date, days since 1970-01-01; `YYYY-MM-DD` on the wire.
    #[serde(serialize_with = "date_out", deserialize_with = "date_in")]
    pub date: i64,
    pub name: String,
}

/// The CSV header of a holidays file.
pub const HOLIDAYS_HEADER: [&str; 3] = ["region", "date", "name"];

impl Holiday {
    /// Its key on the compacted topic.
    pub fn key(&self) -> String {
        format!("{}|{}", self.region, format_day(self.date))
    }

    /// Checks what a parser can't; the error names the field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.region.trim().is_empty() {
            return Err(("region", "empty".into()));
        }
        if self.name.chars().count() > 200 || self.name.chars().any(char::is_control) {
            return Err(("name", "at most 200 printable characters".into()));
        }
        Ok(())
    }
}

/// `YYYY-MM-DD` as days since 1970-01-01.
pub fn parse_day(s: &str) -> Result<i64, String> {
    let d: jiff::civil::Date = s
        .trim()
        .parse()
        .map_err(|e| format!("{s:?} is not a date (YYYY-MM-DD): {e}"))?;
    let days = d
        .since(jiff::civil::date(1970, 1, 1))
        .map_err(|e| e.to_string())?
        .get_days();
    Ok(i64::from(days))
}

/// Days since 1970-01-01 as `YYYY-MM-DD`.
pub fn format_day(day: i64) -> String {
    crate::time::format_date(day * 86_400)
}

fn date_out<S: Serializer>(day: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_day(*day))
}

fn date_in<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    parse_day(&s).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_key() {
        assert_eq!(parse_day("1970-01-02"), Ok(1));
        assert_eq!(format_day(20_460), "2026-01-07");
        assert_eq!(parse_day("2026-01-07"), Ok(20_460));
        assert!(parse_day("2026-02-30").is_err());
        let h: Holiday =
            serde_json::from_str(r#"{"region":"Pavlodar","date":"2026-01-07","name":"Christmas"}"#)
                .unwrap();
        assert_eq!(h.date, 20_460);
        assert_eq!(h.key(), "Pavlodar|2026-01-07");
        assert_eq!(
            serde_json::to_string(&h).unwrap(),
            r#"{"region":"Pavlodar","date":"2026-01-07","name":"Christmas"}"#
        );
    }
}
