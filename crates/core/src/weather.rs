//! Weather: hourly outdoor temperature per region (`region,ts,temp_c`, `ts` the hour's end),
//! the load a cold snap or a heat wave explains. Optional input: from a file for the embedded
//! run, from the compacted `gridwatch.weather` topic (key `region|ts`) for the services.

use serde::{Deserialize, Serialize};

/// One region's outdoor temperature over the hour ending at `ts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// Fields it doesn't know are ignored: records written by a newer producer still decode.
pub struct WeatherObs {
    /// The register's `region` (or, for sites without one, their feeder).
    pub region: String,
    /// End of the hour, RFC 3339 on the wire.
    #[serde(with = "crate::time::serde_rfc3339")]
    pub ts: i64,
    pub temp_c: f64,
}

/// The CSV header of a weather file.
pub const WEATHER_HEADER: [&str; 3] = ["region", "ts", "temp_c"];

/// Coldest and hottest temperatures accepted (°C): beyond them a value is a unit or sensor error.
pub const TEMP_RANGE_C: (f64, f64) = (-90.0, 60.0);

impl WeatherObs {
    /// Its key on the compacted topic: a later value for the same region and hour replaces it.
    pub fn key(&self) -> String {
        format!("{}|{}", self.region, crate::time::format_rfc3339(self.ts))
    }

    /// Checks the fields a parser can't: the region named, the hour whole, the temperature
    /// plausible. The error names the field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.region.trim().is_empty() {
            return Err(("region", "empty".into()));
        }
        if self.ts % 3600 != 0 {
            return Err(("ts", "must be a whole hour (the hour's end)".into()));
        }
        let (lo, hi) = TEMP_RANGE_C;
        if !(lo..=hi).contains(&self.temp_c) {
            return Err((
                "temp_c",
                format!("{} °C is outside {lo}..{hi} °C", self.temp_c),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_checks() {
        let w: WeatherObs = serde_json::from_str(
            r#"{"region":"Pavlodar","ts":"2026-01-05T01:00:00Z","temp_c":-7.5}"#,
        )
        .expect("parses");
        assert_eq!(w.key(), "Pavlodar|2026-01-05T01:00:00Z");
        assert!(w.validate().is_ok());
        let half = WeatherObs {
            ts: w.ts + 1800,
            ..w.clone()
        };
        assert_eq!(half.validate().map_err(|e| e.0), Err("ts"));
        let kelvin = WeatherObs { temp_c: 265.0, ..w };
        assert_eq!(kelvin.validate().map_err(|e| e.0), Err("temp_c"));
    }
}
