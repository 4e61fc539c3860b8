//! A simulated utility: a register of feeders and sites, interval readings with realistic load
//! shapes (households replay real ones), hidden unauthorized connections, hard negatives,
//! data faults, and the ground truth. Readings are produced interval by interval, so fleet
//! size is bounded by time, not memory.

mod cases;
mod delivery;
mod grid;
pub mod household;
mod plant;
mod profile;
mod rng;
pub mod scenario;
pub mod score;
pub mod sunbelt;
mod truth;
pub mod winter;

use plant::Builder;
pub use profile::{At, Profile, Schedule};
pub use rng::Rng;
pub use scenario::{Scenario, TargetType};
pub use truth::{read_labels, Label};

use gridwatch_core::time::format_rfc3339;
use gridwatch_core::{CustomerClass, MeterRecord, Role, SiteStatus};
use std::collections::BinaryHeap;
use std::io::{self, Write};

/// Which hidden cases to plant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenarios {
    /// The demo's handful: farms at residences and a shop, a home miner, an unregistered meter,
    /// consumption on a disconnected site, a site over its permit.
    Demo,
    /// The whole library, scaled with the number of sites.
    Full,
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub sites: usize,
    pub days: u32,
    pub seed: u64,
    /// First interval start, epoch seconds (UTC).
    pub start: i64,
    pub interval_s: u32,
    /// The utility's time zone: load shapes follow its local clock, DST included.
    pub tz: String,
    pub scenarios: Scenarios,
    /// Share of readings sent twice.
    pub duplicate_rate: f64,
    /// Share of meters with a communication gap of 2–30 hours.
    pub gap_rate: f64,
    /// Share of readings sent 1–3 intervals late.
    pub out_of_order_rate: f64,
    /// Share of readings sent 6–12 hours late (inside the detector's 48-hour horizon).
    pub late_rate: f64,
    /// Share of meters whose clock is off by 1–5 minutes.
    pub skew_rate: f64,
    /// A winter with a cold snap: homes heat with electricity (resistance, storage heaters,
    /// heat pumps) and `weather.csv` holds the temperature.
    pub winter: bool,
    /// A summer with a heat wave (about +39 °C): homes cool with air conditioning and
    /// `weather.csv` holds the temperature.
    pub summer: bool,
    /// Share of customer meters whose head-end delivers each day's intervals in one batch,
    /// between 01:00 and 05:00 the next day.
    pub batched_share: f64,
    /// Share of communication gaps the head-end backfills when the meter is back.
    pub backfill_share: f64,
    /// Share of ordinary homes with registered rooftop PV (net metered); above 0 it also
    /// plants unregistered PV and PV beyond its registration, as labelled cases.
    pub pv_share: f64,
    /// Share of meter-days the head-end sends as estimates (a flat average, last week's copy, or
    /// an absurd figure), with the actuals 1–8 days later or never.
    pub estimate_rate: f64,
    /// Share of customer meters with a 2–4 day comms outage, backfilled 6–24 h after live
    /// reads resume.
    pub outage_share: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            sites: 300,
            days: 14,
            seed: 7,
            start: 1_767_571_200, // 2026-01-05T00:00:00Z, a Monday
            interval_s: 900,
            tz: "Asia/Almaty".into(),
            scenarios: Scenarios::Full,
            duplicate_rate: 0.002,
            gap_rate: 0.05,
            out_of_order_rate: 0.005,
            late_rate: 0.0005,
            skew_rate: 0.01,
            winter: false,
            summer: false,
            batched_share: 0.0,
            backfill_share: 0.0,
            pv_share: 0.0,
            estimate_rate: 0.0,
            outage_share: 0.0,
        }
    }
}

/// How a meter misreports what flows through it (the feeder head still sees the truth).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tamper {
    /// Reports zero from onset.
    Zero { onset: i64 },
    /// Reports only `share` of the load from onset (a bypass of the rest).
    Bypass { share: f64, onset: i64 },
    /// Reports the load as exported (a reversed meter) from onset.
    Reverse { onset: i64 },
    /// Registers only `share` of the load from onset while its voltage and current channels
    /// still show all of it (a shunted current element).
    Shunt { share: f64, onset: i64 },
}

/// One simulated customer meter.
#[derive(Debug, Clone)]
pub struct SimMeter {
    pub record: MeterRecord,
    pub registered: bool,
    pub profile: Profile,
    pub tamper: Option<Tamper>,
    pub gap: Option<(i64, i64)>,
    pub skew_s: i64,
    /// Sends voltage and current with its readings (business meters do, households don't).
    pub reports_vi: bool,
    /// Its head-end delivers a day's intervals the next night; it backfills its gap.
    pub batched: bool,
    pub backfills: bool,
    /// Rooftop PV (registered or not: the register says).
    pub pv: Option<sunbelt::Pv>,
    /// The days its head-end estimates.
    pub estimates: sunbelt::Estimates,
    pub outage: Option<sunbelt::Outage>,
}

/// One feeder: its head meter, its technical-loss ratio at average load, and any unmetered
/// taps.
#[derive(Debug, Clone)]
pub struct SimFeeder {
    pub feeder_id: String,
    pub head_meter: String,
    pub loss_ratio: f64,
    /// The feeder's demand on its first day (kW): the scale of its losses, which grow with the
    /// square of the current.
    pub nominal_kw: f64,
    pub taps: Vec<Profile>,
}

/// One reading as the simulator emits it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReading<'a> {
    pub meter_id: &'a str,
    pub ts: i64,
    pub interval_s: u32,
    pub kwh: f64,
    pub kwh_export: Option<f64>,
    /// Mean voltage (V) and current (A) over the interval, where the meter sends them.
    pub vi: Option<(f64, f64)>,
    pub feeder_id: &'a str,
    pub quality: gridwatch_core::Quality,
}

impl SimReading<'_> {
    /// The reading as a head-end would deliver it (an `actual` reading naming its feeder).
    pub fn to_reading(&self) -> gridwatch_core::Reading {
        gridwatch_core::Reading {
            kwh_export: self.kwh_export,
            voltage_v: self.vi.map(|(v, _)| v),
            current_a: self.vi.map(|(_, a)| a),
            feeder_id: Some(self.feeder_id.into()),
            quality: self.quality,
            ..gridwatch_core::Reading::new(self.meter_id, self.ts, self.interval_s, self.kwh)
        }
    }
}

/// A whole simulated utility.
#[derive(Debug, Clone)]
pub struct Utility {
    pub cfg: SimConfig,
    pub meters: Vec<SimMeter>,
    pub feeders: Vec<SimFeeder>,
    pub labels: Vec<Label>,
    tz: jiff::tz::TimeZone,
}

const REGIONS: [(&str, f64, f64); 3] = [
    ("Pavlodar", 52.29, 76.95),
    ("Ekibastuz", 51.72, 75.32),
    ("Karaganda", 49.80, 73.10),
];

/// Sites per feeder.
const FEEDER_SITES: usize = 50;

impl Utility {
    /// Builds the register and the hidden cases; deterministic for the seed.
    pub fn generate(cfg: SimConfig) -> Result<Utility, String> {
        let tz =
            jiff::tz::TimeZone::get(&cfg.tz).map_err(|e| format!("time zone {:?}: {e}", cfg.tz))?;
        if cfg.days < 2 {
            return Err("simulate at least 2 days".into());
        }
        if !(60..=86_400).contains(&cfg.interval_s) || 86_400 % cfg.interval_s != 0 {
            return Err(format!("interval {} s must divide a day", cfg.interval_s));
        }
        let mut b = Builder::new(&cfg, &tz);
        b.plant();
        let (meters, feeders, labels) = (b.meters, b.feeders, b.labels);
        Ok(Utility {
            cfg,
            meters,
            feeders,
            labels,
            tz,
        })
    }

    fn local(&self, utc: i64) -> At {
        let offset = self
            .tz
            .to_offset(jiff::Timestamp::from_second(utc).expect("in range"))
            .seconds();
        At {
            utc,
            local: utc + i64::from(offset),
        }
    }

    /// The register as CSV (unregistered meters left out), feeder heads first.
    pub fn write_registry(&self, w: &mut impl Write) -> io::Result<()> {
        writeln!(
            w,
            "{},timezone,generation_kw",
            gridwatch_core::registry::REGISTRY_HEADER.join(",")
        )?;
        for f in &self.feeders {
            writeln!(
                w,
                "{},{},{},feeder_head,,,active,false,,,,{},",
                f.feeder_id, f.head_meter, f.feeder_id, self.cfg.tz
            )?;
        }
        for m in self.meters.iter().filter(|m| m.registered) {
            let r = &m.record;
            writeln!(
                w,
                "{},{},{},customer,{},{},{},{},{},{},{},{},{}",
                r.site_id,
                r.meter_id,
                r.feeder_id,
                r.customer_class.map_or("", |c| c.as_str()),
                r.permitted_kw.map_or(String::new(), |p| p.to_string()),
                r.status,
                r.licensed_mining,
                r.lat.map_or(String::new(), |v| format!("{v:.4}")),
                r.lon.map_or(String::new(), |v| format!("{v:.4}")),
                r.region.as_deref().unwrap_or(""),
                self.cfg.tz,
                r.generation_kw.map_or(String::new(), |g| g.to_string())
            )?;
        }
        Ok(())
    }

    /// The outdoor temperature of a winter run as `region,ts,temp_c` CSV (hourly, `ts` the
    /// hour's end; every region the same), or `None` without a winter.
    pub fn write_weather(&self, w: &mut impl Write) -> Option<io::Result<()>> {
        let weather = winter::Weather {
            seed: self.cfg.seed,
            first_day: self.local(self.cfg.start).local.div_euclid(86_400),
            days: i64::from(self.cfg.days),
            summer: self.cfg.summer,
        };
        (self.cfg.winter || self.cfg.summer).then(|| {
            writeln!(w, "region,ts,temp_c")?;
            for h in 1..=i64::from(self.cfg.days) * 24 {
                let end = self.cfg.start + h * 3600;
                let t = weather.temp_c(self.local(end - 1800));
                for (region, _, _) in REGIONS {
                    writeln!(w, "{region},{},{:.1}", format_rfc3339(end), t)?;
                }
            }
            Ok(())
        })
    }

    /// The public holidays inside the run, per region, as `region,date,name` CSV.
    pub fn write_holidays(&self, w: &mut impl Write) -> io::Result<()> {
        writeln!(w, "region,date,name")?;
        let first = self.local(self.cfg.start).local.div_euclid(86_400);
        for day in first..first + i64::from(self.cfg.days) {
            if let Some(name) = profile::holiday(day) {
                for (region, _, _) in REGIONS {
                    let date = gridwatch_core::time::format_date(day * 86_400);
                    writeln!(w, "{region},{date},{name}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    fn utility(sites: usize, days: u32, seed: u64) -> Utility {
        Utility::generate(SimConfig {
            sites,
            days,
            seed,
            ..SimConfig::default()
        })
        .unwrap()
    }

    fn rows(u: &Utility) -> Vec<(String, i64, f64, Option<f64>)> {
        let mut v = Vec::new();
        u.readings::<()>(
            |r| {
                v.push((r.meter_id.to_string(), r.ts, r.kwh, r.kwh_export));
                Ok(())
            },
            |_, _| {},
        )
        .unwrap();
        v
    }

    #[test]
    fn same_seed_same_utility_and_readings() {
        let (a, b) = (utility(80, 3, 5), utility(80, 3, 5));
        let (mut ra, mut rb) = (Vec::new(), Vec::new());
        a.write_readings(&mut ra, |_, _| {}).unwrap();
        b.write_readings(&mut rb, |_, _| {}).unwrap();
        assert_eq!(ra, rb);
        assert_eq!(a.labels, b.labels);
        let mut rc = Vec::new();
        utility(80, 3, 6)
            .write_readings(&mut rc, |_, _| {})
            .unwrap();
        assert_ne!(ra, rc);
    }

    #[test]
    fn labels_round_trip_and_agree_with_the_register() {
        let u = utility(3000, 4, 1);
        let mut text = Vec::new();
        u.write_labels(&mut text).unwrap();
        assert_eq!(read_labels(&text[..], "labels.csv").unwrap(), u.labels);
        let kinds: HashSet<Scenario> = u.labels.iter().map(|l| l.scenario).collect();
        assert!(kinds.len() >= 8, "{kinds:?}");
        let by_site: HashMap<&str, &SimMeter> = u
            .meters
            .iter()
            .map(|m| (m.record.site_id.as_str(), m))
            .collect();
        for l in &u.labels {
            match l.target_type {
                TargetType::Site => {
                    let m = by_site[l.target_id.as_str()];
                    assert!(m.registered);
                    if l.scenario == Scenario::DisconnectedConsumption {
                        assert_eq!(m.record.status, SiteStatus::Disconnected);
                    }
                }
                TargetType::Meter => assert!(!u
                    .meters
                    .iter()
                    .any(|m| m.registered && m.record.meter_id == l.target_id)),
                TargetType::Feeder => assert!(
                    l.scenario.as_str().starts_with("tamper")
                        || l.scenario == Scenario::UnregisteredMeterFeeder
                        || u.feeders
                            .iter()
                            .any(|f| f.feeder_id == l.target_id && !f.taps.is_empty())
                ),
            }
            assert!(
                l.onset >= u.cfg.start && l.onset < u.cfg.start + i64::from(u.cfg.days) * 86_400
            );
        }
        let mut reg = Vec::new();
        u.write_registry(&mut reg).unwrap();
        let parsed = gridwatch_ingester_free_registry_check(&reg);
        assert_eq!(
            parsed,
            u.meters.iter().filter(|m| m.registered).count() + u.feeders.len()
        );
        for (row, field) in [
            ("site,S1,home_miner,never,true", "l.csv:2: field onset"),
            (
                "site,S1,x,2026-01-05T00:00:00Z,true",
                "l.csv:2: field scenario",
            ),
            (
                "house,S1,home_miner,2026-01-05T00:00:00Z,true",
                "l.csv:2: field target_type",
            ),
        ] {
            let bad = format!("target_type,target_id,scenario,onset,required\n{row}\n");
            let err = read_labels(bad.as_bytes(), "l.csv").unwrap_err();
            assert!(err.starts_with(field), "{err}");
        }
    }

    /// Rows of the register CSV with the header's width (the ingester's parser is tested
    /// against this format on its side).
    fn gridwatch_ingester_free_registry_check(csv: &[u8]) -> usize {
        let text = std::str::from_utf8(csv).unwrap();
        let width = text.lines().next().unwrap().split(',').count();
        assert_eq!(width, 13);
        text.lines()
            .skip(1)
            .inspect(|l| assert_eq!(l.split(',').count(), width, "{l}"))
            .count()
    }

    #[test]
    fn a_sunbelt_utility_has_registered_and_hidden_pv_estimates_and_late_backfills() {
        let u = Utility::generate(SimConfig {
            sites: 1200,
            days: 8,
            seed: 5,
            summer: true,
            start: 1_783_296_000, // 2026-07-06
            pv_share: 0.25,
            estimate_rate: 0.05,
            outage_share: 0.05,
            ..Default::default()
        })
        .unwrap();
        let registered_pv = u
            .meters
            .iter()
            .filter(|m| m.pv.is_some() && m.record.generation_kw.is_some())
            .count();
        assert!((200..400).contains(&registered_pv), "{registered_pv}");
        let hidden: Vec<&Label> = u
            .labels
            .iter()
            .filter(|l| {
                matches!(
                    l.scenario,
                    Scenario::UnregisteredGeneration | Scenario::GenerationAboveRegistered
                )
            })
            .collect();
        assert!(!hidden.is_empty() && hidden.iter().all(|l| l.required));
        let mut exports = 0;
        let mut estimated = 0;
        let mut behind = 0i64;
        let mut newest: std::collections::HashMap<String, i64> = Default::default();
        u.readings(
            |r| {
                exports += usize::from(r.kwh_export.is_some_and(|e| e > 0.0));
                estimated += usize::from(r.quality == gridwatch_core::Quality::Estimated);
                let n = newest.entry(r.meter_id.to_string()).or_insert(r.ts);
                behind = behind.max(*n - r.ts);
                *n = (*n).max(r.ts);
                Ok::<_, ()>(())
            },
            |_, _| {},
        )
        .unwrap();
        assert!(
            exports > 10_000 && estimated > 1_000,
            "{exports} {estimated}"
        );
        assert!(behind > 3 * 86_400, "backfills days behind: {behind} s");
        // Without the options, nothing of it.
        let plain = utility(300, 4, 5);
        assert!(plain
            .meters
            .iter()
            .all(|m| m.pv.is_none() && m.outage.is_none()));
        assert!(plain
            .labels
            .iter()
            .all(|l| l.scenario != Scenario::UnregisteredGeneration));
    }

    #[test]
    fn feeder_heads_carry_their_meters_losses_and_taps() {
        let u = Utility::generate(SimConfig {
            sites: 200,
            days: 9,
            duplicate_rate: 0.0,
            out_of_order_rate: 0.0,
            late_rate: 0.0,
            skew_rate: 0.0,
            gap_rate: 0.0,
            ..SimConfig::default()
        })
        .unwrap();
        let feeder_of: HashMap<String, usize> = u
            .meters
            .iter()
            .enumerate()
            .map(|(i, m)| (m.record.meter_id.clone(), i % u.feeders.len()))
            .collect();
        let mut sums: HashMap<(usize, i64), f64> = HashMap::new();
        let mut heads: HashMap<(usize, i64), f64> = HashMap::new();
        for (meter, ts, kwh, _) in rows(&u) {
            if let Some(f) = u.feeders.iter().position(|f| f.head_meter == meter) {
                heads.insert((f, ts), kwh);
            } else {
                *sums.entry((feeder_of[&meter], ts)).or_default() += kwh;
            }
        }
        let mut ratio_sum = 0.0;
        for (key, head) in &heads {
            let customers = sums.get(key).copied().unwrap_or(0.0);
            assert!(
                *head + 0.01 >= customers,
                "head {head} below its meters {customers} at {key:?}"
            );
            ratio_sum += head / customers.max(1e-9);
        }
        let mean_ratio = ratio_sum / heads.len() as f64;
        assert!(
            (1.03..1.25).contains(&mean_ratio),
            "head/customers = {mean_ratio}"
        );
    }

    #[test]
    fn faults_appear_as_configured() {
        let u = Utility::generate(SimConfig {
            sites: 100,
            days: 3,
            duplicate_rate: 0.01,
            out_of_order_rate: 0.02,
            late_rate: 0.002,
            ..SimConfig::default()
        })
        .unwrap();
        let r = rows(&u);
        let mut seen = HashSet::new();
        let dups = r
            .iter()
            .filter(|x| !seen.insert((x.0.clone(), x.1)))
            .count();
        assert!(dups > 0, "no duplicates");
        let mut newest: HashMap<&str, i64> = HashMap::new();
        let (mut behind, mut far_behind) = (0, 0);
        for (m, ts, _, _) in &r {
            let n = newest.entry(m).or_insert(*ts);
            if *ts < *n {
                behind += 1;
                if *n - ts >= 6 * 3600 {
                    far_behind += 1;
                }
            }
            *n = (*n).max(*ts);
        }
        assert!(
            behind > 0 && far_behind > 0,
            "out-of-order {behind}, late {far_behind}"
        );
        assert!(u.meters.iter().any(|m| m.gap.is_some()));
    }

    #[test]
    fn local_time_follows_the_zone_and_its_dst() {
        let u = Utility::generate(SimConfig {
            tz: "Europe/Berlin".into(),
            sites: 20,
            ..SimConfig::default()
        })
        .unwrap();
        let winter = u.local(1_767_571_200);
        let summer = u.local(1_783_296_000); // 2026-07-06
        assert_eq!(winter.local - winter.utc, 3600);
        assert_eq!(summer.local - summer.utc, 7200);
        assert!(Utility::generate(SimConfig {
            tz: "Mars/Olympus".into(),
            ..SimConfig::default()
        })
        .is_err());
    }
}
