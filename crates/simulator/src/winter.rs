//! Winter and summer: an outdoor temperature with a cold snap (or a heat wave), and the ways
//! homes heat (or cool) with electricity — the seasons' hard negatives. Like every profile, a
//! pure function of (seed, time).

use crate::profile::{u, At};

/// Heating degrees are counted below this outdoor temperature (°C).
const BALANCE_C: f64 = 16.0;
/// Heating degrees at which a heating system runs flat out (−22 °C outside).
const FULL_DEGREES: f64 = 38.0;
/// Air conditioners start above this outdoor temperature and run flat out this many degrees
/// above it (40 °C).
const COOL_ABOVE_C: f64 = 24.0;
const FULL_COOLING: f64 = 16.0;

/// The utility's outdoor temperature: a cold winter (around −7 °C) with a cold snap of about
/// −25 °C for four days, 40 % of the way into the run; or (`summer`) a hot summer (around
/// +27 °C) with a heat wave near +39 °C.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weather {
    pub seed: u64,
    /// First local day of the run (days since the epoch) and its length in days.
    pub first_day: i64,
    pub days: i64,
    pub summer: bool,
}

impl Weather {
    /// The cold snap (or heat wave): local days `[from, to)`.
    pub fn snap(&self) -> (i64, i64) {
        let from = self.first_day + (self.days * 2 / 5).max(1);
        (from, from + 4.min(self.days / 3).max(1))
    }

    /// Mean temperature (°C) of local day `day`; the days either side of the snap are halfway.
    pub fn day_mean_c(&self, day: i64) -> f64 {
        let (usual, extreme) = if self.summer {
            (27.0, 39.0)
        } else {
            (-7.0, -25.0)
        };
        let ordinary = usual + 8.0 * (u(self.seed, day, 40) - 0.5);
        let cold = extreme + 3.0 * (u(self.seed, day, 41) - 0.5);
        let (from, to) = self.snap();
        if (from..to).contains(&day) {
            cold
        } else if day == from - 1 || day == to {
            (ordinary + cold) / 2.0
        } else {
            ordinary
        }
    }

    /// Outdoor temperature (°C) at an instant: the day's mean, coldest before dawn.
    pub fn temp_c(&self, at: At) -> f64 {
        let day = at.local.div_euclid(86_400);
        let h = at.local.rem_euclid(86_400) as f64 / 3600.0;
        let swing = if self.summer { 6.0 } else { 4.0 };
        self.day_mean_c(day) + swing * ((h - 15.0) / 24.0 * std::f64::consts::TAU).cos()
    }
}

/// How a home heats with electricity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Heating {
    None,
    /// Resistance heaters under thermostats: on and off, on for longer the colder it is, all
    /// day at the snap's depth.
    Resistance {
        kw: f64,
    },
    /// Night storage heaters: a flat charge from the night tariff's start (22:00), for longer
    /// the colder the day.
    Storage {
        kw: f64,
    },
    /// A heat pump: modulating around the clock, its efficiency falling with the cold.
    HeatPump {
        kw: f64,
    },
    /// Air conditioning in summer: on for longer the hotter it is, much of the day and night
    /// in a heat wave.
    AirCon {
        kw: f64,
    },
}

impl Heating {
    /// A home's heating, drawn from its seed: half heat otherwise, a fifth with heat pumps,
    /// the rest with resistance or storage heaters.
    pub fn draw(seed: u64) -> Heating {
        let r = u(seed, 0, 42);
        let size = u(seed, 0, 43);
        if r < 0.5 {
            Heating::None
        } else if r < 0.7 {
            Heating::HeatPump {
                kw: 3.0 + 5.0 * size,
            }
        } else if r < 0.85 {
            Heating::Resistance {
                kw: 4.0 + 8.0 * size,
            }
        } else {
            Heating::Storage {
                kw: 8.0 + 14.0 * size,
            }
        }
    }

    /// A home's cooling in a summer run, drawn from its seed: a little over half cool.
    pub fn draw_summer(seed: u64) -> Heating {
        if u(seed, 0, 42) < 0.55 {
            Heating::AirCon {
                kw: 2.0 + 4.0 * u(seed, 0, 43),
            }
        } else {
            Heating::None
        }
    }

    /// Its rated power (kW): what its connection must carry beyond the household's.
    pub fn rated_kw(&self) -> f64 {
        match *self {
            Heating::None => 0.0,
            Heating::Resistance { kw }
            | Heating::Storage { kw }
            | Heating::HeatPump { kw }
            | Heating::AirCon { kw } => kw,
        }
    }

    /// Mean demand (kW) in the quarter-hour around `at`.
    pub fn kw(&self, w: &Weather, at: At, seed: u64) -> f64 {
        let quarter = at.utc.div_euclid(900);
        let degrees = (BALANCE_C - w.temp_c(at)).max(0.0);
        let need = (degrees / FULL_DEGREES).min(1.0);
        match *self {
            Heating::None => 0.0,
            Heating::Resistance { kw } => {
                // A thermostat's duty within the quarter, around what the cold asks.
                let duty = (need * (0.7 + 0.6 * u(seed, quarter, 44))).min(1.0);
                kw * duty
            }
            Heating::Storage { kw } => {
                let day = at.local.div_euclid(86_400);
                let h = at.local.rem_euclid(86_400) as f64 / 3600.0;
                // The charge that starts at 22:00 belongs to the coming day's cold.
                let (charge_day, since) = if h >= 22.0 {
                    (day + 1, h - 22.0)
                } else {
                    (day, h + 2.0)
                };
                let day_need =
                    ((BALANCE_C - w.day_mean_c(charge_day)) / FULL_DEGREES).clamp(0.0, 1.0);
                let hours = (2.0 + 7.0 * day_need).min(9.0);
                if since < hours {
                    kw
                } else {
                    0.0
                }
            }
            Heating::HeatPump { kw } => {
                let t = w.temp_c(at);
                let cop = (3.2 + 0.07 * t).clamp(1.6, 4.0);
                let thermal = 3.2 * kw * need;
                (thermal / cop).min(kw) * (0.95 + 0.1 * u(seed, quarter, 45))
            }
            Heating::AirCon { kw } => {
                let cooling = ((w.temp_c(at) - COOL_ABOVE_C) / FULL_COOLING).clamp(0.0, 1.0);
                (kw * cooling * (0.7 + 0.6 * u(seed, quarter, 46))).min(kw)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(local_day: i64, hour: i64) -> At {
        let local = local_day * 86_400 + hour * 3600;
        At { utc: local, local }
    }

    #[test]
    fn the_snap_is_cold_and_heating_follows_it() {
        let w = Weather {
            seed: 3,
            first_day: 20_458,
            days: 14,
            summer: false,
        };
        let (from, to) = w.snap();
        assert_eq!(to - from, 4);
        assert!(w.day_mean_c(from + 1) < -22.0 && w.day_mean_c(w.first_day) > -12.0);
        let storage = Heating::Storage { kw: 15.0 };
        let charge = |day| {
            (0..24)
                .filter(|&h| storage.kw(&w, at(day, h), 1) > 0.0)
                .count()
        };
        assert!(
            charge(from + 1) > charge(w.first_day),
            "longer charges in the cold"
        );
        let pump = Heating::HeatPump { kw: 6.0 };
        assert!(pump.kw(&w, at(from + 1, 4), 1) > 2.0 * pump.kw(&w, at(w.first_day, 15), 1));
    }

    #[test]
    fn the_heat_wave_is_hot_and_air_conditioning_follows_it() {
        let w = Weather {
            seed: 3,
            first_day: 20_640,
            days: 14,
            summer: true,
        };
        let (from, _) = w.snap();
        assert!(w.day_mean_c(from + 1) > 36.0 && w.day_mean_c(w.first_day) < 32.0);
        let ac = Heating::AirCon { kw: 5.0 };
        let day_kwh = |day| (0..24).map(|h| ac.kw(&w, at(day, h), 1)).sum::<f64>();
        let mildest = (w.first_day..w.first_day + w.days)
            .map(day_kwh)
            .fold(f64::INFINITY, f64::min);
        assert!(
            day_kwh(from + 1) > 2.0 * mildest,
            "{} vs {mildest}",
            day_kwh(from + 1)
        );
    }
}
