//! Load shapes in local time. Every value is a pure function of (seed, time), so a profile can
//! be evaluated at any instant in any order and always gives the same demand.

use crate::household;
use crate::winter::{Heating, Weather};

/// An instant: UTC epoch seconds, and the same instant as local wall-clock seconds.
#[derive(Debug, Clone, Copy)]
pub struct At {
    pub utc: i64,
    pub local: i64,
}

/// The utility's public holidays (month, day, name): Kazakhstan's. Businesses, offices and
/// schools stand as on a Sunday.
pub const HOLIDAYS: [(i8, i8, &str); 14] = [
    (1, 1, "New Year"),
    (1, 2, "New Year"),
    (1, 7, "Orthodox Christmas"),
    (3, 8, "International Women's Day"),
    (3, 21, "Nauryz"),
    (3, 22, "Nauryz"),
    (3, 23, "Nauryz"),
    (5, 1, "Unity Day"),
    (5, 7, "Defender of the Fatherland Day"),
    (5, 9, "Victory Day"),
    (7, 6, "Capital Day"),
    (8, 30, "Constitution Day"),
    (10, 25, "Republic Day"),
    (12, 16, "Independence Day"),
];

/// The holiday on local day `day` (days since 1970-01-01), if any.
pub fn holiday(day: i64) -> Option<&'static str> {
    let date = gridwatch_core::time::utc_date(day * 86_400);
    HOLIDAYS
        .iter()
        .find(|(m, d, _)| *m == date.month() && *d == date.day())
        .map(|h| h.2)
}

impl At {
    /// Local hour of day as a fraction, local day number, weekday (0 = Monday; a public
    /// holiday is a Sunday), month (1–12).
    fn parts(self) -> (f64, i64, i64, i64) {
        let day = self.local.div_euclid(86_400);
        let month = i64::from(gridwatch_core::time::utc_date(day * 86_400).month());
        let weekday = if holiday(day).is_some() {
            6
        } else {
            (day + 3).rem_euclid(7)
        };
        (
            self.local.rem_euclid(86_400) as f64 / 3600.0,
            day,
            weekday,
            month,
        )
    }
}

/// When added rigs draw power.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// Around the clock.
    Always,
    /// Only in a nightly window of local hours (the cheap tariff), e.g. 23 to 7.
    Night { from: f64, to: f64 },
    /// On for `on` hours, off for `off` hours, repeating.
    Duty { on: i64, off: i64 },
    /// Around the clock, ramping up linearly over `days` as rigs are added.
    Ramp { days: f64 },
    /// When a public building stands empty: a nightly window of local hours, and all weekend.
    NightsAndWeekends { from: f64, to: f64 },
    /// Rigs added one at a time: `step_kw` more every `every_days` days, up to the full power
    /// (the miner's `kw`); the share is of that full power.
    Steps { step_kw: f64, every_days: f64 },
}

#[derive(Debug, Clone)]
pub enum Profile {
    /// A real household from the library, scaled, optionally with electric heating, an EV
    /// charger and a vacation.
    Household(Household),
    /// A shop: open 09–19, closed on Sundays.
    Shop {
        peak_kw: f64,
        seed: u64,
    },
    /// A legitimately flat load (cold storage, licensed farm).
    Flat {
        kw: f64,
        noise: f64,
        seed: u64,
    },
    Hospital {
        kw: f64,
        seed: u64,
    },
    /// Heavy at night (01–07), light by day.
    Bakery {
        kw: f64,
        seed: u64,
    },
    /// Two shifts on weekdays.
    Factory {
        kw: f64,
        seed: u64,
    },
    /// Irrigation pumps by day in the growing season (April–September), on most days.
    Pump {
        kw: f64,
        seed: u64,
    },
    School {
        kw: f64,
        seed: u64,
    },
    /// Mining rigs added to a base load from `onset`.
    Miner {
        base: Box<Profile>,
        kw: f64,
        onset: i64,
        schedule: Schedule,
    },
    /// An EV fleet depot: its vehicles charge from 22:00 for four to seven hours on weekday
    /// nights, a little by day.
    EvDepot {
        kw: f64,
        seed: u64,
    },
    /// A greenhouse under grow lights: on for `hours` a day from 04:00, every day, the heating
    /// and fans a fifth of it the rest of the time.
    Greenhouse {
        kw: f64,
        hours: f64,
        seed: u64,
    },
    /// One absurd interval (a meter's glitch: `kw` for the quarter-hour starting at `at`) in an
    /// otherwise ordinary load.
    Glitch {
        inner: Box<Profile>,
        at: i64,
        kw: f64,
    },
    /// Nothing before `onset`, then the inner load (consumption on a disconnected site).
    After {
        inner: Box<Profile>,
        onset: i64,
    },
    /// The inner load, growing from `onset` to `factor` times itself over `days` (capacity creep).
    Creep {
        inner: Box<Profile>,
        factor: f64,
        onset: i64,
        days: f64,
    },
    Off,
}

#[derive(Debug, Clone)]
pub struct Household {
    seed: u64,
    library: usize,
    week_offset: i64,
    scale: f64,
    heating_kw: f64,
    ev_kw: f64,
    /// Local day numbers of a vacation (only the fridge runs).
    vacation: Option<(i64, i64)>,
    /// In a winter run, the weather and how the home heats (in place of `heating_kw`).
    winter: Option<(Weather, Heating)>,
}

/// A uniform number in [0, 1) for (seed, time, salt): stateless noise.
pub(crate) fn u(seed: u64, t: i64, salt: u64) -> f64 {
    let mut z = seed
        ^ (t as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ salt.wrapping_mul(0xd6e8_feb8_6659_fd93);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

fn bump(h: f64, centre: f64, width: f64) -> f64 {
    let d = (h - centre).abs().min(24.0 - (h - centre).abs());
    (-(d * d) / (2.0 * width * width)).exp()
}

impl Schedule {
    fn share(self, at: At, onset: i64, full_kw: f64) -> f64 {
        if at.utc < onset {
            return 0.0;
        }
        let h = at.local.rem_euclid(86_400) as f64 / 3600.0;
        match self {
            Schedule::Always => 1.0,
            Schedule::Night { from, to } => {
                let inside = if from > to {
                    h >= from || h < to
                } else {
                    h >= from && h < to
                };
                if inside {
                    1.0
                } else {
                    0.0
                }
            }
            Schedule::Duty { on, off } => {
                let hours = (at.utc - onset).div_euclid(3600);
                if hours.rem_euclid(on + off) < on {
                    1.0
                } else {
                    0.0
                }
            }
            Schedule::Ramp { days } => {
                ((at.utc - onset) as f64 / (days * 86_400.0)).clamp(0.05, 1.0)
            }
            Schedule::NightsAndWeekends { from, to } => {
                let weekend = at.parts().2 >= 5;
                let night = Schedule::Night { from, to }.share(at, onset, full_kw);
                if weekend {
                    1.0
                } else {
                    night
                }
            }
            Schedule::Steps {
                step_kw,
                every_days,
            } => {
                let steps = 1.0 + ((at.utc - onset) as f64 / (every_days * 86_400.0)).floor();
                (steps * step_kw / full_kw).min(1.0)
            }
        }
    }
}

impl Profile {
    /// A household replaying a real one, with habits drawn from `seed`, starting on local
    /// day `first_day` of the simulation (for the vacation).
    /// In a winter run (`weather`), a home `may_heat` heats by a drawn [`Heating`].
    pub fn household(
        seed: u64,
        first_day: i64,
        days: i64,
        weather: Option<Weather>,
        may_heat: bool,
    ) -> Profile {
        let r = |salt| u(seed, 0, salt);
        let vac_len = 3 + (r(9) * 5.0) as i64;
        let vac_start = first_day + (r(6) * (days - vac_len).max(1) as f64) as i64;
        let library = (r(1) * household::count() as f64) as usize;
        // Electric heating goes to homes without a large always-on load of their own.
        let heated = r(4) < 0.12 && household::day_floor_kw(library) < 2.0;
        Profile::Household(Household {
            seed,
            library,
            week_offset: (r(2) * 8.0) as i64,
            scale: 0.75 + 0.35 * r(3),
            heating_kw: if heated && weather.is_none() {
                1.0 + 2.5 * r(7)
            } else {
                0.0
            },
            ev_kw: if r(5) < 0.08 {
                if r(10) < 0.7 {
                    7.4
                } else {
                    11.0
                }
            } else {
                0.0
            },
            vacation: (r(8) < 0.06).then_some((vac_start, vac_start + vac_len)),
            winter: weather.map(|w| {
                let heating = match (may_heat, w.summer) {
                    (false, _) => Heating::None,
                    (true, false) => Heating::draw(seed),
                    (true, true) => Heating::draw_summer(seed),
                };
                (w, heating)
            }),
        })
    }

    /// Mean demand (kW) around instant `at` for meter number `salt`.
    pub fn kw(&self, at: At, salt: u64) -> f64 {
        let (h, day, wd, month) = at.parts();
        let slot = at.utc.div_euclid(900);
        let n = |seed: u64, k: u64| u(seed, slot, k);
        match self {
            Profile::Household(p) => p.kw(at, h, day),
            Profile::Shop { peak_kw, seed } => {
                let open = wd != 6 && (9.0..19.0).contains(&h);
                peak_kw
                    * if open {
                        0.8 + 0.2 * n(*seed, 1)
                    } else {
                        0.1 + 0.04 * n(*seed, 2)
                    }
            }
            Profile::Flat { kw, noise, seed } => kw * (1.0 + noise * (2.0 * n(*seed, 1) - 1.0)),
            Profile::Hospital { kw, seed } => {
                kw * (0.85 + 0.25 * bump(h, 13.0, 4.0) + 0.06 * n(*seed, 1))
            }
            Profile::Bakery { kw, seed } => {
                let f = if (1.0..7.0).contains(&h) {
                    1.0
                } else if (7.0..14.0).contains(&h) {
                    0.3
                } else {
                    0.12
                };
                kw * f * (0.9 + 0.2 * n(*seed, 1))
            }
            Profile::Factory { kw, seed } => {
                let on = wd < 5 && (6.0..22.0).contains(&h);
                kw * if on {
                    0.85 + 0.15 * n(*seed, 1)
                } else {
                    0.2 + 0.05 * n(*seed, 2)
                }
            }
            Profile::Pump { kw, seed } => {
                let season = (4..=9).contains(&month);
                let runs = season && u(*seed, day, 3) < 0.8 && (6.0..18.0).contains(&h);
                if runs {
                    kw * (0.95 + 0.05 * n(*seed, 1))
                } else {
                    0.3 + 0.2 * n(*seed, 2)
                }
            }
            Profile::School { kw, seed } => {
                let on = wd < 5 && (8.0..16.0).contains(&h);
                kw * if on {
                    0.8 + 0.2 * n(*seed, 1)
                } else {
                    0.12 + 0.05 * n(*seed, 2)
                }
            }
            Profile::Miner {
                base,
                kw,
                onset,
                schedule,
            } => {
                let rigs = kw
                    * schedule.share(at, *onset, *kw)
                    * (0.98 + 0.04 * u(*onset as u64, slot, salt));
                base.kw(at, salt) + rigs
            }
            Profile::After { inner, onset } => {
                if at.utc >= *onset {
                    inner.kw(at, salt)
                } else {
                    0.0
                }
            }
            Profile::Creep {
                inner,
                factor,
                onset,
                days,
            } => {
                let grown = ((at.utc - onset) as f64 / (days * 86_400.0)).clamp(0.0, 1.0);
                inner.kw(at, salt) * (1.0 + (factor - 1.0) * grown)
            }
            Profile::EvDepot { kw, seed } => {
                let weekday_night = (wd < 5 && h >= 22.0) || (wd > 0 && wd <= 5 && h < 5.0);
                let hours = 4.0 + 3.0 * u(*seed, day, 5);
                let since = if h >= 22.0 { h - 22.0 } else { h + 2.0 };
                if weekday_night && since < hours {
                    kw * (0.9 + 0.1 * n(*seed, 1))
                } else {
                    kw * (0.03 + 0.02 * n(*seed, 2))
                }
            }
            Profile::Greenhouse { kw, hours, seed } => {
                let lit = (h - 4.0).rem_euclid(24.0) < *hours;
                kw * if lit {
                    0.97 + 0.03 * n(*seed, 1)
                } else {
                    0.2 + 0.05 * n(*seed, 2)
                }
            }
            Profile::Glitch {
                inner,
                at: when,
                kw,
            } => {
                if slot == when.div_euclid(900) {
                    *kw
                } else {
                    inner.kw(at, salt)
                }
            }
            Profile::Off => 0.0,
        }
    }
}

impl Household {
    /// The permit such a home would hold: 12 kW, more with an EV charger or electric heating.
    pub fn permit_kw(&self) -> f64 {
        let ev = if self.ev_kw > 10.0 {
            8.0
        } else if self.ev_kw > 0.0 {
            4.0
        } else {
            0.0
        };
        let heat = match self.winter {
            Some((_, heating)) => heating.rated_kw(),
            None if self.heating_kw > 0.0 => 4.0,
            None => 0.0,
        };
        12.0 + ev + heat
    }

    fn kw(&self, at: At, h: f64, day: i64) -> f64 {
        let half_hour = ((h * 2.0) as usize).min(47);
        let base = household::kw(
            self.library,
            household::day_for(day, self.week_offset),
            half_hour,
        ) * self.scale;
        // Split the real half-hour's energy unevenly between its two quarter-hours.
        let quarter = at.utc.div_euclid(900);
        let split = 0.6 + 0.8 * u(self.seed, quarter.div_euclid(2), 20);
        let real = if quarter.rem_euclid(2) == 0 {
            base * split
        } else {
            base * (2.0 - split)
        };
        if self.vacation.is_some_and(|(a, b)| day >= a && day < b) {
            return 0.08 + 0.06 * u(self.seed, quarter, 21);
        }
        let heating = if let Some((w, heating)) = &self.winter {
            heating.kw(w, at, self.seed)
        } else if self.heating_kw > 0.0 {
            let night = if (6.0..22.0).contains(&h) { 0.45 } else { 1.0 };
            self.heating_kw * night * (0.3 + 0.7 * u(self.seed, quarter, 22))
        } else {
            0.0
        };
        let ev = if self.ev_kw > 0.0 && u(self.seed, day, 23) < 0.45 {
            let start = 21.0 + 3.0 * u(self.seed, day, 24);
            let len = 1.5 + 3.5 * u(self.seed, day, 25);
            if h >= start && h < start + len {
                self.ev_kw
            } else {
                0.0
            }
        } else {
            0.0
        };
        real + heating + ev
    }
}
