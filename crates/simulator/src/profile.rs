//! Load shapes in local time. Every value is a pure function of (seed, time), so a profile can
//! be evaluated at any instant in any order and always gives the same demand.

/// The simulated utility's local time is UTC+5 (Kazakhstan).
pub const LOCAL_OFFSET_S: i64 = 5 * 3600;

#[derive(Debug, Clone)]
pub enum Profile {
    /// A household: always-on base, morning and evening peaks, appliance spikes, and
    /// optionally electric heating, an EV charger and a vacation.
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
    /// Irrigation pumps by day, on some days.
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
    },
    /// Nothing before `onset`, then the inner load (consumption on a disconnected site).
    After {
        inner: Box<Profile>,
        onset: i64,
    },
    /// The inner load, multiplied by `factor` from `onset` (capacity creep).
    Grow {
        inner: Box<Profile>,
        factor: f64,
        onset: i64,
    },
    Off,
}

#[derive(Debug, Clone)]
pub struct Household {
    seed: u64,
    base_kw: f64,
    morning_kw: f64,
    evening_kw: f64,
    heating_kw: f64,
    ev_kw: f64,
    vacation: Option<(i64, i64)>,
}

/// A uniform number in [0, 1) for (seed, time, salt): stateless noise.
fn u(seed: u64, t: i64, salt: u64) -> f64 {
    let mut z = seed
        ^ (t as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ salt.wrapping_mul(0xd6e8_feb8_6659_fd93);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// Local hour of day as a fraction, local day number and weekday (0 = Monday).
fn local(t: i64) -> (f64, i64, i64) {
    let l = t + LOCAL_OFFSET_S;
    let day = l.div_euclid(86_400);
    (
        l.rem_euclid(86_400) as f64 / 3600.0,
        day,
        (day + 3).rem_euclid(7),
    )
}

fn bump(h: f64, centre: f64, width: f64) -> f64 {
    let d = (h - centre).abs().min(24.0 - (h - centre).abs());
    (-(d * d) / (2.0 * width * width)).exp()
}

impl Profile {
    /// A household whose habits are drawn from `seed`.
    pub fn household(seed: u64) -> Profile {
        let r = |salt| u(seed, 0, salt);
        let vac_start = (r(6) * 10.0) as i64;
        Profile::Household(Household {
            seed,
            base_kw: 0.08 + 0.35 * r(1) * r(1),
            morning_kw: 0.2 + 1.0 * r(2),
            evening_kw: 0.4 + 1.6 * r(3),
            heating_kw: if r(4) < 0.15 { 1.0 + 2.0 * r(7) } else { 0.0 },
            ev_kw: if r(5) < 0.08 { 7.4 } else { 0.0 },
            vacation: (r(8) < 0.05).then_some((vac_start, vac_start + 3 + (r(9) * 4.0) as i64)),
        })
    }

    /// Mean demand (kW) around instant `t` (epoch seconds) for meter number `salt`.
    pub fn kw(&self, t: i64, salt: u64) -> f64 {
        let (h, day, wd) = local(t);
        let slot = t.div_euclid(900);
        let n = |seed: u64, k: u64| u(seed, slot, k);
        match self {
            Profile::Household(p) => p.kw(t, h, day, wd),
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
                let runs = u(*seed, day, 3) < 0.6 && (6.0..18.0).contains(&h);
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
            Profile::Miner { base, kw, onset } => {
                let rigs = if t >= *onset {
                    kw * (0.98 + 0.04 * u(*onset as u64, slot, salt))
                } else {
                    0.0
                };
                base.kw(t, salt) + rigs
            }
            Profile::After { inner, onset } => {
                if t >= *onset {
                    inner.kw(t, salt)
                } else {
                    0.0
                }
            }
            Profile::Grow {
                inner,
                factor,
                onset,
            } => inner.kw(t, salt) * if t >= *onset { *factor } else { 1.0 },
            Profile::Off => 0.0,
        }
    }
}

impl Household {
    fn kw(&self, t: i64, h: f64, day: i64, wd: i64) -> f64 {
        let slot = t.div_euclid(900);
        let n = |k: u64| u(self.seed, slot, k);
        let first_day = day - (u(self.seed, 0, 10) * 3.0) as i64;
        if let Some((a, b)) = self.vacation {
            let d = first_day.rem_euclid(14);
            if d >= a && d < b {
                return self.base_kw * (0.5 + 0.3 * n(1));
            }
        }
        let weekend = wd >= 5;
        let morning = self.morning_kw * bump(h, if weekend { 9.5 } else { 7.5 }, 1.2);
        let evening = self.evening_kw * bump(h, 19.5, 2.0);
        let midday = if weekend {
            0.4 * self.evening_kw * bump(h, 13.0, 2.5)
        } else {
            0.0
        };
        // Appliances: kettles, ovens, washing machines, as short random spikes.
        let spike = if n(2) < 0.06 { 1.0 + 2.0 * n(3) } else { 0.0 };
        // The fridge cycles; the base drifts a little.
        let base = self.base_kw * (0.8 + 0.4 * n(4));
        let heating = if self.heating_kw > 0.0 {
            let night = if (6.0..22.0).contains(&h) { 0.0 } else { 1.0 };
            self.heating_kw * (0.45 + 0.55 * night) * (0.4 + 0.6 * n(5))
        } else {
            0.0
        };
        let ev = if self.ev_kw > 0.0 && u(self.seed, day, 11) < 0.45 {
            let start = 22.0 + 3.0 * u(self.seed, day, 12);
            let len = 1.5 + 3.0 * u(self.seed, day, 13);
            let into = (h - start).rem_euclid(24.0);
            if into < len {
                self.ev_kw
            } else {
                0.0
            }
        } else {
            0.0
        };
        (base + (morning + evening + midday) * (0.6 + 0.8 * n(6)) + spike + heating + ev).max(0.0)
    }
}
