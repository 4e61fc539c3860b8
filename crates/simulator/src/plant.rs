//! Planting a utility: its feeders and sites, the ordinary customers and their rooftop PV.
//! The hidden cases are in [`crate::cases`], the feeder taps in [`crate::grid`].

use super::*;

/// Plants sites, cases and negatives.
pub(crate) struct Builder<'a> {
    pub(crate) cfg: &'a SimConfig,
    pub(crate) rng: Rng,
    /// Draws how each meter's data are delivered (apart from `rng`, so that utilities
    /// simulated before delivery options existed stay the same).
    pub(crate) delivery: Rng,
    /// Draws the sunbelt's PV, estimates and outages ([`sunbelt`]), apart from both.
    pub(crate) sun: Rng,
    pub(crate) meters: Vec<SimMeter>,
    pub(crate) feeders: Vec<SimFeeder>,
    pub(crate) labels: Vec<Label>,
    pub(crate) first_day: i64,
    pub(crate) utc_offset: i64,
    /// The split farm being planted: its onset, each part's power, the parts still to plant
    /// and where the first stands (its parts are next-door neighbours).
    pub(crate) split: Option<(i64, f64, u8, (f64, f64))>,
}

impl<'a> Builder<'a> {
    pub(crate) fn new(cfg: &'a SimConfig, tz: &jiff::tz::TimeZone) -> Self {
        let mut rng = Rng::fork(cfg.seed, 1);
        let n_feeders = cfg.sites.div_ceil(FEEDER_SITES).max(1);
        let feeders = (0..n_feeders)
            .map(|f| SimFeeder {
                feeder_id: format!("F{:02}", f + 1),
                head_meter: format!("H{:02}", f + 1),
                loss_ratio: rng.range(0.03, 0.07),
                nominal_kw: 0.0,
                taps: Vec::new(),
            })
            .collect();
        let offset = tz
            .to_offset(jiff::Timestamp::from_second(cfg.start).expect("in range"))
            .seconds();
        let utc_offset = i64::from(offset);
        let first_day = (cfg.start + utc_offset).div_euclid(86_400);
        Builder {
            cfg,
            rng,
            delivery: Rng::fork(cfg.seed, 3),
            sun: Rng::fork(cfg.seed, 7),
            meters: Vec::new(),
            feeders,
            labels: Vec::new(),
            first_day,
            utc_offset,
            split: None,
        }
    }

    /// An onset with history before it and time to detect after it.
    pub(crate) fn onset(&mut self) -> i64 {
        let days = i64::from(self.cfg.days);
        let (lo, hi) = (1, (days - 3).clamp(2, 6));
        self.cfg.start + lo * 86_400 + self.rng.below(((hi - lo) * 96) as u64) as i64 * 900
    }

    pub(crate) fn label(
        &mut self,
        target_type: TargetType,
        id: &str,
        scenario: Scenario,
        onset: i64,
        required: bool,
    ) {
        self.labels.push(Label {
            target_type,
            target_id: id.into(),
            scenario,
            onset,
            required,
        });
    }

    /// A household at a case site (it doesn't heat with electricity: its permit is the case's).
    pub(crate) fn household(&mut self) -> Profile {
        let seed = self.rng.next_u64();
        Profile::household(
            seed,
            self.first_day,
            i64::from(self.cfg.days),
            self.weather(),
            false,
        )
    }

    pub(crate) fn weather(&self) -> Option<winter::Weather> {
        (self.cfg.winter || self.cfg.summer).then_some(winter::Weather {
            seed: self.cfg.seed,
            first_day: self.first_day,
            days: i64::from(self.cfg.days),
            summer: self.cfg.summer,
        })
    }

    pub(crate) fn shop(&mut self) -> (Profile, f64) {
        let peak = self.rng.range(8.0, 40.0);
        (
            Profile::Shop {
                peak_kw: peak,
                seed: self.rng.next_u64(),
            },
            (peak * self.rng.range(1.4, 2.0)).round(),
        )
    }

    pub(crate) fn factory(&mut self) -> (Profile, f64) {
        let kw = self.rng.range(80.0, 400.0);
        (
            Profile::Factory {
                kw,
                seed: self.rng.next_u64(),
            },
            (kw * 1.5).round(),
        )
    }

    pub(crate) fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + (hi.ln() - lo.ln()) * self.rng.f64()).exp()
    }

    /// Plants every site: the cases first (spread over feeders), then the negatives, then
    /// ordinary customers.
    pub(crate) fn plant(&mut self) {
        let n = self.cfg.sites;
        let n_feeders = self.feeders.len();
        let mut cases: Vec<Option<Scenario>> = match self.cfg.scenarios {
            Scenarios::Demo => [
                Scenario::MiningFarmResidential,
                Scenario::HomeMiner,
                Scenario::MiningFarmCommercial,
                Scenario::UnregisteredMeter,
                Scenario::DisconnectedConsumption,
                Scenario::CapacityExceedance,
                Scenario::LicensedFarm,
                Scenario::ColdStorage,
                Scenario::Hospital,
                Scenario::Bakery,
                Scenario::SuspendedQuiet,
                Scenario::MiningFarmResidential,
            ]
            .map(Some)
            .to_vec(),
            Scenarios::Full => {
                let k = n.div_ceil(300).max(1);
                let per_k = [
                    Scenario::MiningFarmResidential,
                    Scenario::MiningFarmResidential,
                    Scenario::SmallMinerResidential,
                    Scenario::HomeMiner,
                    Scenario::HomeMiner,
                    Scenario::MiningFarmCommercial,
                    Scenario::MiningFarmIndustrial,
                    Scenario::NightMiner,
                    Scenario::DutyCycledMiner,
                    Scenario::RampUpMiner,
                    Scenario::UnregisteredMeter,
                    Scenario::DisconnectedConsumption,
                    Scenario::SuspendedConsumption,
                    Scenario::CapacityCreep,
                    Scenario::TamperZeroing,
                    Scenario::TamperBypass,
                    Scenario::TamperReverse,
                    Scenario::LicensedFarm,
                    Scenario::ColdStorage,
                    Scenario::ColdStorage,
                    Scenario::Hospital,
                    Scenario::Bakery,
                    Scenario::Bakery,
                    Scenario::SuspendedQuiet,
                ];
                // Cases added later go after the blocks, so the earlier ones keep their sites
                // and feeders and the benchmark stays comparable across versions.
                let later = [Scenario::TamperShunt, Scenario::SmallRigsIndustrial];
                let mut cases: Vec<Option<Scenario>> = (0..k)
                    .flat_map(|_| per_k)
                    .chain((0..k).flat_map(|_| later))
                    .map(Some)
                    .collect();
                // The evasive cases and the hard negatives of the second round: a farm split
                // over three meters of one feeder (sites `n_feeders` apart share a feeder), then
                // the rest in the sites between.
                let evasive = [
                    Scenario::PublicBuildingMiner,
                    Scenario::DutyCycledInPermit,
                    Scenario::SteppedMiner,
                    Scenario::EvDepot,
                    Scenario::Greenhouse,
                    Scenario::MeterGlitch,
                    Scenario::MoveIn,
                    Scenario::ClockHourOff,
                ];
                for _ in 0..k {
                    let base = cases.len();
                    let mut put = |at: usize, c: Scenario| {
                        if cases.len() <= at {
                            cases.resize(at + 1, None);
                        }
                        cases[at] = Some(c);
                    };
                    for part in 0..3 {
                        put(base + part * n_feeders, Scenario::SplitFarm);
                    }
                    for (j, c) in evasive.into_iter().enumerate() {
                        put(base + 1 + j, c);
                    }
                }
                cases
            }
        };
        cases.truncate(n);
        for i in 0..n {
            let feeder = self.feeders[i % n_feeders].feeder_id.clone();
            let (region, lat0, lon0) = REGIONS[(i % n_feeders) % REGIONS.len()];
            let site_id = format!("S{:05}", i + 1);
            let meter_id = format!("M{:06}", 100_000 + i + 1);
            let mut rec = MeterRecord {
                site_id: site_id.clone(),
                meter_id: meter_id.clone(),
                feeder_id: feeder,
                role: Role::Customer,
                customer_class: Some(CustomerClass::Residential),
                permitted_kw: Some(12.0),
                status: SiteStatus::Active,
                licensed_mining: false,
                lat: Some(lat0 + self.rng.range(-0.05, 0.05)),
                lon: Some(lon0 + self.rng.range(-0.05, 0.05)),
                region: Some(region.to_string()),
                timezone: None,
                effective_from: None,
                generation_kw: None,
            };
            let mut registered = true;
            let mut tamper = None;
            let case = cases.get(i).copied().flatten();
            let profile = match case {
                Some(c) => self.case(c, &mut rec, &mut registered, &mut tamper),
                None => self.ordinary(&mut rec),
            };
            let gap = self.rng.chance(self.cfg.gap_rate).then(|| {
                let s =
                    self.cfg.start + self.rng.below(u64::from(self.cfg.days) * 24) as i64 * 3600;
                (s, s + self.rng.range(2.0, 30.0) as i64 * 3600)
            });
            let skew_s = if case == Some(Scenario::ClockHourOff) {
                3600
            } else if self.rng.chance(self.cfg.skew_rate) {
                (60 + self.rng.below(241) as i64) * if self.rng.chance(0.5) { 1 } else { -1 }
            } else {
                0
            };
            let reports_vi = rec.customer_class != Some(CustomerClass::Residential);
            let batched = self.delivery.chance(self.cfg.batched_share);
            let backfills = gap.is_some() && self.delivery.chance(self.cfg.backfill_share);
            let pv = if case.is_none() && rec.customer_class == Some(CustomerClass::Residential) {
                self.pv(&mut rec)
            } else {
                None
            };
            let estimates = sunbelt::Estimates {
                rate: self.cfg.estimate_rate,
                salt: self.sun.next_u64(),
            };
            let outage = self.sun.chance(self.cfg.outage_share).then(|| {
                let days = i64::from(self.cfg.days);
                let start =
                    self.cfg.start + self.sun.below(((days - 5).max(1) * 24) as u64) as i64 * 3600;
                let end = start + self.sun.range(48.0, 96.0) as i64 * 3600;
                let backfill = end + self.sun.range(6.0, 24.0) as i64 * 3600;
                sunbelt::Outage {
                    start,
                    end,
                    backfill,
                }
            });
            self.meters.push(SimMeter {
                record: rec,
                registered,
                profile,
                tamper,
                gap,
                skew_s,
                reports_vi,
                batched,
                backfills,
                pv,
                estimates,
                outage,
            });
        }
        for f in 0..self.feeders.len() {
            self.feeders[f].nominal_kw = self.feeder_mean_kw(f, 1).max(1.0);
        }
        if self.cfg.scenarios == Scenarios::Full {
            self.plant_taps();
        }
    }

    /// Rooftop PV on an ordinary home, at `pv_share`: registered (`generation_kw`), or, for a
    /// few, a labelled case — panels nobody registered, or panels added beyond the registration.
    pub(crate) fn pv(&mut self, rec: &mut MeterRecord) -> Option<sunbelt::Pv> {
        let share = self.cfg.pv_share;
        if share <= 0.0 || rec.status != SiteStatus::Active {
            return None;
        }
        let draw = self.sun.f64();
        let kw = (self.sun.range(3.0, 8.0) * 10.0).round() / 10.0;
        // Installed from 06:00 local of a day with history before it and time after.
        let days = i64::from(self.cfg.days);
        let day = 1 + self.sun.below((days - 3).clamp(1, 6) as u64) as i64;
        let onset = self.cfg.start + day * 86_400 + 6 * 3600 - self.utc_offset;
        let site = rec.site_id.clone();
        if draw < 0.004 {
            self.label(
                TargetType::Site,
                &site,
                Scenario::UnregisteredGeneration,
                onset,
                true,
            );
            return Some(sunbelt::Pv {
                before_kw: 0.0,
                kw,
                onset,
            });
        }
        if draw < 0.008 {
            let before = 3.0;
            rec.generation_kw = Some(before);
            self.label(
                TargetType::Site,
                &site,
                Scenario::GenerationAboveRegistered,
                onset,
                true,
            );
            return Some(sunbelt::Pv {
                before_kw: before,
                kw: kw.max(before) + 4.0,
                onset,
            });
        }
        (draw < 0.008 + share).then(|| {
            rec.generation_kw = Some(kw);
            sunbelt::Pv {
                before_kw: kw,
                kw,
                onset,
            }
        })
    }

    /// A household like the ordinary ones (it may heat with electricity), with its permit.
    pub(crate) fn ordinary_household(&mut self, rec: &mut MeterRecord) -> Profile {
        let seed = self.rng.next_u64();
        let days = i64::from(self.cfg.days);
        let h = Profile::household(seed, self.first_day, days, self.weather(), true);
        if let Profile::Household(p) = &h {
            rec.permitted_kw = Some(p.permit_kw());
        }
        h
    }

    pub(crate) fn ordinary(&mut self, rec: &mut MeterRecord) -> Profile {
        let roll = self.rng.f64();
        if roll < 0.82 {
            return self.ordinary_household(rec);
        }
        let (class, (profile, permit)) = if roll < 0.91 {
            (CustomerClass::Commercial, self.shop())
        } else if roll < 0.94 {
            (CustomerClass::Industrial, self.factory())
        } else if roll < 0.97 {
            let kw = self.rng.range(10.0, 25.0);
            (
                CustomerClass::Agricultural,
                (
                    Profile::Pump {
                        kw,
                        seed: self.rng.next_u64(),
                    },
                    40.0,
                ),
            )
        } else {
            let kw = self.rng.range(20.0, 60.0);
            (
                CustomerClass::Public,
                (
                    Profile::School {
                        kw,
                        seed: self.rng.next_u64(),
                    },
                    (kw * 2.0).round(),
                ),
            )
        };
        rec.customer_class = Some(class);
        rec.permitted_kw = Some(permit);
        profile
    }
}
