//! A hot, sunny utility's data as its MDM sends them: rooftop PV with net metering, estimates
//! the head-end fills missing days with (and the actuals it sends days later, or never), and
//! multi-day communication outages backfilled after live reads resume.
//!
//! Drawn from their own random stream, so a utility simulated without them is the same as
//! before they existed.

use crate::profile::{u, At};

/// Rooftop PV on a site: `before_kw` at noon under a clear sky until `onset`, `kw` from then
/// (panels installed, or more added); the site exports what it does not use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pv {
    pub before_kw: f64,
    pub kw: f64,
    pub onset: i64,
}

impl Pv {
    /// Generation (kW) at local time `at`: a half-sine from 06:30 to 18:30 local, peaking at
    /// 12:30, under the day's clouds (a region's sky is the same for all its sites that day).
    pub fn kw(&self, at: At, seed: u64, region: u64) -> f64 {
        let kw = if at.utc < self.onset {
            self.before_kw
        } else {
            self.kw
        };
        let h = at.local.rem_euclid(86_400) as f64 / 3600.0;
        if !(6.5..18.5).contains(&h) {
            return 0.0;
        }
        let day = at.local.div_euclid(86_400);
        let sky = 0.35 + 0.65 * u(seed, day, 0x50_0000 + region).sqrt();
        let passing = 0.9 + 0.1 * u(seed, at.utc.div_euclid(900), 0x51_0000 + region);
        kw * sky * passing * (std::f64::consts::PI * (h - 6.5) / 12.0).sin()
    }
}

/// What a head-end sends for a meter-day it did not read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Estimate {
    /// The meter's average over the day, spread flat.
    FlatAverage,
    /// The same interval a week before.
    LastWeek,
    /// A flat figure ten times the day's average (a units slip in the MDM).
    Absurd,
}

/// The head-end's estimates for one meter: each day estimated with probability `rate`; the
/// actuals follow 1–8 days later, or never for one estimated day in five.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimates {
    pub rate: f64,
    pub salt: u64,
}

impl Estimates {
    /// The estimate sent for local day `day`, if any, and how many days later the actuals come
    /// (`None`: never).
    pub fn on(&self, seed: u64, day: i64) -> Option<(Estimate, Option<i64>)> {
        if self.rate <= 0.0 || u(seed, day, self.salt) >= self.rate {
            return None;
        }
        let kind = match (u(seed, day, self.salt ^ 1) * 3.0) as u8 {
            0 => Estimate::FlatAverage,
            1 => Estimate::LastWeek,
            _ => Estimate::Absurd,
        };
        let k = u(seed, day, self.salt ^ 2);
        let late = (k >= 0.2).then(|| 1 + (k * 8.0) as i64 % 8);
        Some((kind, late))
    }
}

/// A comms outage of 2–4 days: nothing from `start` to `end`; live reads resume at `end`, and
/// the head-end backfills the gap at `backfill` (6–24 h later).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outage {
    pub start: i64,
    pub end: i64,
    pub backfill: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pv_makes_nothing_at_night_and_most_at_noon() {
        let pv = Pv {
            before_kw: 0.0,
            kw: 5.0,
            onset: 0,
        };
        let at = |h: i64| At {
            utc: 10 * 86_400 + h * 3600,
            local: 10 * 86_400 + h * 3600,
        };
        assert_eq!(pv.kw(at(3), 1, 0), 0.0);
        assert_eq!(pv.kw(at(21), 1, 0), 0.0);
        let noon = pv.kw(at(12), 1, 0);
        assert!(noon > 1.5 && noon <= 5.0, "{noon}");
        assert!(pv.kw(at(8), 1, 0) < noon);
        let later = Pv {
            before_kw: 0.0,
            kw: 5.0,
            onset: 20 * 86_400,
        };
        assert_eq!(later.kw(at(12), 1, 0), 0.0, "no panels before the onset");
    }

    #[test]
    fn estimates_come_at_their_rate_and_most_are_corrected() {
        let e = Estimates {
            rate: 0.1,
            salt: 77,
        };
        let days: Vec<_> = (0..5000).filter_map(|d| e.on(3, d)).collect();
        assert!((400..600).contains(&days.len()), "{}", days.len());
        let never = days.iter().filter(|(_, late)| late.is_none()).count();
        assert!((60..140).contains(&never), "{never}");
        assert!(days
            .iter()
            .filter_map(|(_, late)| *late)
            .all(|d| (1..=8).contains(&d)));
    }
}
