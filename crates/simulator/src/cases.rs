//! The hidden cases and the hard negatives a site may be planted as.

use super::*;

impl Builder<'_> {
    pub(crate) fn case(
        &mut self,
        case: Scenario,
        rec: &mut MeterRecord,
        registered: &mut bool,
        tamper: &mut Option<Tamper>,
    ) -> Profile {
        let (site, meter) = (rec.site_id.clone(), rec.meter_id.clone());
        let miner = |b: &mut Self,
                     base: Profile,
                     kw: f64,
                     schedule: Schedule,
                     scenario: Scenario,
                     required: bool| {
            let onset = b.onset();
            b.label(TargetType::Site, &site, scenario, onset, required);
            Profile::Miner {
                base: Box::new(base),
                kw,
                onset,
                schedule,
            }
        };
        match case {
            Scenario::MiningFarmResidential => {
                let kw = if self.cfg.scenarios == Scenarios::Demo && self.meters.is_empty() {
                    86.0
                } else {
                    self.log_uniform(20.0, 150.0)
                };
                let base = self.household();
                miner(self, base, kw, Schedule::Always, case, true)
            }
            Scenario::SmallMinerResidential => {
                let kw = self.rng.range(1.0, 4.0);
                let base = self.household();
                miner(self, base, kw, Schedule::Always, case, false)
            }
            Scenario::HomeMiner => {
                rec.permitted_kw = Some(15.0);
                let kw = self.rng.range(5.0, 9.0);
                let base = self.household();
                miner(self, base, kw, Schedule::Always, case, true)
            }
            Scenario::MiningFarmCommercial => {
                rec.customer_class = Some(CustomerClass::Commercial);
                let (shop, permit) = self.shop();
                let kw = if self.cfg.scenarios == Scenarios::Demo {
                    60.0
                } else {
                    self.log_uniform(20.0, 500.0)
                };
                rec.permitted_kw = Some(permit.max(100.0));
                miner(self, shop, kw, Schedule::Always, case, true)
            }
            Scenario::MiningFarmIndustrial => {
                rec.customer_class = Some(CustomerClass::Industrial);
                let (factory, permit) = self.factory();
                rec.permitted_kw = Some(permit);
                let kw = self.log_uniform(100.0, 5000.0);
                miner(self, factory, kw, Schedule::Always, case, true)
            }
            Scenario::SmallRigsIndustrial => {
                // Rigs adding half to nine tenths of a factory's night and weekend floor,
                // well inside its permit: no doubling, no flat day.
                rec.customer_class = Some(CustomerClass::Industrial);
                let kw = self.rng.range(80.0, 400.0);
                let rigs = kw * 0.22 * self.rng.range(0.5, 0.9);
                let factory = Profile::Factory {
                    kw,
                    seed: self.rng.next_u64(),
                };
                rec.permitted_kw = Some((kw * 1.5).round());
                miner(self, factory, rigs, Schedule::Always, case, false)
            }
            Scenario::NightMiner => {
                rec.permitted_kw = Some(15.0);
                let kw = self.rng.range(8.0, 40.0);
                let base = self.household();
                miner(
                    self,
                    base,
                    kw,
                    Schedule::Night {
                        from: 23.0,
                        to: 7.0,
                    },
                    case,
                    true,
                )
            }
            Scenario::DutyCycledMiner => {
                let kw = self.rng.range(10.0, 40.0);
                let base = self.household();
                miner(self, base, kw, Schedule::Duty { on: 2, off: 1 }, case, true)
            }
            Scenario::DutyCycledInPermit => {
                // Rigs switched two hours on, one off, all within a home's 15 kW permit.
                rec.permitted_kw = Some(15.0);
                let kw = self.rng.range(5.0, 9.0);
                let base = self.household();
                miner(self, base, kw, Schedule::Duty { on: 2, off: 1 }, case, true)
            }
            Scenario::SteppedMiner => {
                // Rigs added one by one: 1.5 kW more every other day, up to 6-9 kW.
                rec.permitted_kw = Some(15.0);
                let kw = self.rng.range(6.0, 9.0);
                let base = self.household();
                let schedule = Schedule::Steps {
                    step_kw: 1.5,
                    every_days: 2.0,
                };
                miner(self, base, kw, schedule, case, false)
            }
            Scenario::RampUpMiner => {
                let kw = self.rng.range(20.0, 80.0);
                let base = self.household();
                miner(self, base, kw, Schedule::Ramp { days: 4.0 }, case, true)
            }
            Scenario::UnregisteredMeter => {
                // Wired in before the data begins: every reading of it is unauthorized.
                *registered = false;
                self.label(TargetType::Meter, &meter, case, self.cfg.start, true);
                // Its energy flows through its feeder's head, and no registered meter counts
                // it (the detector never takes an unregistered meter's word for its feeder).
                let feeder = rec.feeder_id.clone();
                let at_feeder = case.at_feeder().expect("an unregistered meter");
                self.label(
                    TargetType::Feeder,
                    &feeder,
                    at_feeder,
                    self.cfg.start,
                    false,
                );
                let kw = self.rng.range(5.0, 60.0);
                Profile::Miner {
                    base: Box::new(Profile::Off),
                    kw,
                    onset: self.cfg.start,
                    schedule: Schedule::Always,
                }
            }
            Scenario::DisconnectedConsumption | Scenario::SuspendedConsumption => {
                rec.status = if case == Scenario::DisconnectedConsumption {
                    SiteStatus::Disconnected
                } else {
                    SiteStatus::Suspended
                };
                let switched_on = self.onset();
                let inner = self.household();
                // The case begins with the first energy actually drawn (a replayed household
                // may be away, at zero, when the site is switched back on).
                let end = self.cfg.start + i64::from(self.cfg.days) * 86_400;
                let onset = (switched_on..end)
                    .step_by(900)
                    .find(|&t| {
                        inner.kw(
                            At {
                                utc: t + 450,
                                local: t + 450 + self.utc_offset,
                            },
                            0,
                        ) >= 0.004
                    })
                    .unwrap_or(switched_on);
                self.label(TargetType::Site, &site, case, onset, true);
                Profile::After {
                    inner: Box::new(inner),
                    onset: switched_on,
                }
            }
            Scenario::CapacityExceedance | Scenario::CapacityCreep => {
                rec.customer_class = Some(CustomerClass::Commercial);
                rec.permitted_kw = Some(20.0);
                let onset = self.onset();
                self.label(TargetType::Site, &site, case, onset, true);
                let days = if case == Scenario::CapacityCreep {
                    4.0
                } else {
                    0.01
                };
                let inner = Profile::Shop {
                    peak_kw: 16.0,
                    seed: self.rng.next_u64(),
                };
                Profile::Creep {
                    inner: Box::new(inner),
                    factor: 2.4,
                    onset,
                    days,
                }
            }
            Scenario::TamperZeroing
            | Scenario::TamperBypass
            | Scenario::TamperReverse
            | Scenario::TamperShunt => {
                let onset = self.onset();
                self.label(TargetType::Site, &site, case, onset, false);
                // What the meter no longer counts still flows through the feeder head.
                let feeder = rec.feeder_id.clone();
                let at_feeder = case.at_feeder().expect("a tamper case");
                self.label(TargetType::Feeder, &feeder, at_feeder, onset, false);
                *tamper = Some(match case {
                    Scenario::TamperZeroing => Tamper::Zero { onset },
                    Scenario::TamperBypass => Tamper::Bypass { share: 0.35, onset },
                    Scenario::TamperShunt => Tamper::Shunt { share: 0.2, onset },
                    _ => Tamper::Reverse { onset },
                });
                rec.customer_class = Some(CustomerClass::Commercial);
                let (shop, permit) = self.shop();
                rec.permitted_kw = Some(permit);
                shop
            }
            Scenario::LicensedFarm => {
                rec.customer_class = Some(CustomerClass::Mining);
                rec.licensed_mining = true;
                let kw = self.log_uniform(200.0, 2000.0);
                rec.permitted_kw = Some((kw * 1.25).round());
                Profile::Flat {
                    kw,
                    noise: 0.01,
                    seed: self.rng.next_u64(),
                }
            }
            Scenario::ColdStorage => {
                rec.customer_class = Some(CustomerClass::Commercial);
                let kw = self.rng.range(30.0, 80.0);
                rec.permitted_kw = Some((kw * 1.6).round());
                Profile::Flat {
                    kw,
                    noise: 0.05,
                    seed: self.rng.next_u64(),
                }
            }
            Scenario::Hospital => {
                rec.customer_class = Some(CustomerClass::Public);
                let kw = self.rng.range(150.0, 300.0);
                rec.permitted_kw = Some((kw * 1.7).round());
                Profile::Hospital {
                    kw,
                    seed: self.rng.next_u64(),
                }
            }
            Scenario::Bakery => {
                rec.customer_class = Some(CustomerClass::Commercial);
                let kw = self.rng.range(20.0, 50.0);
                rec.permitted_kw = Some((kw * 1.5).round());
                Profile::Bakery {
                    kw,
                    seed: self.rng.next_u64(),
                }
            }
            Scenario::SuspendedQuiet => {
                rec.status = SiteStatus::Suspended;
                Profile::Off
            }
            Scenario::SplitFarm => {
                // Three neighbours' meters, each carrying a third of one farm: each part under
                // a home miner's size and inside its permit; switched on together.
                let (onset, kw, left, (lat, lon)) = match self.split {
                    Some(s) if s.2 > 0 => s,
                    _ => {
                        let here = (rec.lat.unwrap_or(0.0), rec.lon.unwrap_or(0.0));
                        (self.onset(), self.rng.range(2.5, 4.0), 3, here)
                    }
                };
                self.split = Some((onset, kw, left - 1, (lat, lon)));
                // Next door: within about 60 m of the first part.
                rec.lat = Some(lat + self.rng.range(-0.0004, 0.0004));
                rec.lon = Some(lon + self.rng.range(-0.0004, 0.0004));
                self.label(TargetType::Site, &site, case, onset, true);
                Profile::Miner {
                    base: Box::new(self.household()),
                    kw,
                    onset,
                    schedule: Schedule::Always,
                }
            }
            Scenario::PublicBuildingMiner => {
                // Rigs in a school that run while it stands empty: evenings to mornings and
                // weekends, inside the building's permit.
                rec.customer_class = Some(CustomerClass::Public);
                let kw = self.rng.range(20.0, 60.0);
                rec.permitted_kw = Some((kw * 2.0).round());
                let school = Profile::School {
                    kw,
                    seed: self.rng.next_u64(),
                };
                let rigs = kw * self.rng.range(0.4, 0.8);
                let schedule = Schedule::NightsAndWeekends {
                    from: 18.0,
                    to: 7.0,
                };
                miner(self, school, rigs, schedule, case, true)
            }
            Scenario::EvDepot => {
                rec.customer_class = Some(CustomerClass::Commercial);
                let kw = self.rng.range(6.0, 10.0).round() * 11.0;
                rec.permitted_kw = Some((kw * 1.3).round());
                Profile::EvDepot {
                    kw,
                    seed: self.rng.next_u64(),
                }
            }
            Scenario::Greenhouse => {
                rec.customer_class = Some(CustomerClass::Agricultural);
                let kw = self.rng.range(30.0, 120.0);
                rec.permitted_kw = Some((kw * 1.4).round());
                Profile::Greenhouse {
                    kw,
                    hours: self.rng.range(16.0, 18.0),
                    seed: self.rng.next_u64(),
                }
            }
            Scenario::MeterGlitch => {
                let home = self.ordinary_household(rec);
                let at = self.onset().div_euclid(900) * 900;
                Profile::Glitch {
                    inner: Box::new(home),
                    at,
                    kw: self.rng.range(200.0, 900.0),
                }
            }
            Scenario::MoveIn => {
                // Empty (nothing drawn) until a family moves in.
                let home = self.ordinary_household(rec);
                Profile::After {
                    inner: Box::new(home),
                    onset: self.onset(),
                }
            }
            Scenario::ClockHourOff => self.ordinary_household(rec),
            other => unreachable!("{other} is not planted at a site"),
        }
    }
}
