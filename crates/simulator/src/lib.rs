//! A simulated utility: a register of feeders and sites, interval readings with realistic
//! load shapes, hidden unauthorized connections, hard negatives, and the ground truth.
//! Output is streamed in event-time order, so fleet size is bounded by time, not memory.

mod profile;
mod rng;
pub mod score;

pub use profile::Profile;
pub use rng::Rng;

use gridwatch_core::time::format_rfc3339;
use gridwatch_core::{CustomerClass, MeterRecord, Role, SiteStatus};
use std::io::{self, Write};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub sites: usize,
    pub days: u32,
    pub seed: u64,
    /// First interval start, epoch seconds (UTC).
    pub start: i64,
    pub interval_s: u32,
    /// Share of readings sent twice (duplicates).
    pub duplicate_rate: f64,
    /// Share of meters with a communication gap of a few hours.
    pub gap_rate: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            sites: 300,
            days: 14,
            seed: 7,
            start: 1_767_571_200, // 2026-01-05T00:00:00Z, a Monday
            interval_s: 900,
            duplicate_rate: 0.002,
            gap_rate: 0.05,
        }
    }
}

/// One ground-truth label (`labels.csv`).
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub target_type: String,
    pub target_id: String,
    pub scenario: String,
    pub onset: i64,
    /// Must be found (false for cases below the detection targets).
    pub required: bool,
}

/// One simulated meter: its register row (absent for an unregistered meter), its load, and
/// its feeder.
#[derive(Debug, Clone)]
pub struct SimMeter {
    pub record: MeterRecord,
    pub registered: bool,
    pub profile: Profile,
    pub gap: Option<(i64, i64)>,
}

/// A whole simulated utility.
#[derive(Debug, Clone)]
pub struct Utility {
    pub cfg: SimConfig,
    pub meters: Vec<SimMeter>,
    pub labels: Vec<Label>,
    /// Per feeder: head meter id, technical loss ratio.
    pub feeders: Vec<(String, String, f64)>,
}

const REGIONS: [(&str, f64, f64); 3] = [
    ("Pavlodar", 52.29, 76.95),
    ("Ekibastuz", 51.72, 75.32),
    ("Karaganda", 49.80, 73.10),
];

impl Utility {
    /// Builds the register and the hidden cases for `cfg`; deterministic for its seed.
    pub fn generate(cfg: SimConfig) -> Utility {
        let mut rng = Rng::fork(cfg.seed, 1);
        let n_feeders = cfg.sites.div_ceil(50).max(1);
        let horizon = cfg.start + i64::from(cfg.days) * 86_400;
        let mut meters = Vec::with_capacity(cfg.sites);
        let mut labels = Vec::new();
        let feeders: Vec<(String, String, f64)> = (0..n_feeders)
            .map(|f| {
                (
                    format!("F{:02}", f + 1),
                    format!("H{:02}", f + 1),
                    rng.range(0.03, 0.07),
                )
            })
            .collect();
        // Onsets fall in the second to fifth day, so every case has history before it.
        let onset = |rng: &mut Rng| {
            cfg.start + 86_400 + rng.below(u64::from(cfg.days.min(5) - 1).max(1) * 96) as i64 * 900
        };
        for i in 0..cfg.sites {
            let feeder = &feeders[i % n_feeders].0;
            let (region, lat0, lon0) = REGIONS[(i % n_feeders) % REGIONS.len()];
            let site_id = format!("S{:05}", i + 1);
            let meter_id = format!("M{:06}", 100_000 + i + 1);
            let mut rec = MeterRecord {
                site_id: site_id.clone(),
                meter_id: meter_id.clone(),
                feeder_id: feeder.clone(),
                role: Role::Customer,
                customer_class: Some(CustomerClass::Residential),
                permitted_kw: Some(12.0),
                status: SiteStatus::Active,
                licensed_mining: false,
                lat: Some(lat0 + rng.range(-0.05, 0.05)),
                lon: Some(lon0 + rng.range(-0.05, 0.05)),
                region: Some(region.to_string()),
                timezone: None,
            };
            let mut registered = true;
            let seed = rng.next_u64();
            // The first sites carry the hidden cases and the hard negatives, spread over feeders.
            let profile = match i {
                0 | 11 => {
                    let kw = if i == 0 { 86.0 } else { rng.range(20.0, 60.0) };
                    let t = onset(&mut rng);
                    labels.push(label("site", &site_id, "mining_farm_residential", t, true));
                    Profile::Miner {
                        base: Box::new(Profile::household(seed)),
                        kw,
                        onset: t,
                    }
                }
                1 => {
                    let t = onset(&mut rng);
                    labels.push(label("site", &site_id, "home_miner", t, true));
                    rec.permitted_kw = Some(15.0);
                    Profile::Miner {
                        base: Box::new(Profile::household(seed)),
                        kw: 6.0,
                        onset: t,
                    }
                }
                2 => {
                    let t = onset(&mut rng);
                    labels.push(label("site", &site_id, "mining_farm_commercial", t, true));
                    rec.customer_class = Some(CustomerClass::Commercial);
                    rec.permitted_kw = Some(100.0);
                    Profile::Miner {
                        base: Box::new(Profile::Shop {
                            peak_kw: 14.0,
                            seed,
                        }),
                        kw: 60.0,
                        onset: t,
                    }
                }
                3 => {
                    // Wired in before the data begins: every reading of it is unauthorized.
                    registered = false;
                    labels.push(label(
                        "meter",
                        &meter_id,
                        "unregistered_meter",
                        cfg.start,
                        true,
                    ));
                    Profile::Miner {
                        base: Box::new(Profile::Off),
                        kw: 35.0,
                        onset: cfg.start,
                    }
                }
                4 => {
                    rec.status = SiteStatus::Disconnected;
                    let t = onset(&mut rng);
                    labels.push(label("site", &site_id, "disconnected_consumption", t, true));
                    Profile::After {
                        inner: Box::new(Profile::household(seed)),
                        onset: t,
                    }
                }
                5 => {
                    rec.customer_class = Some(CustomerClass::Commercial);
                    rec.permitted_kw = Some(20.0);
                    let t = onset(&mut rng);
                    labels.push(label("site", &site_id, "capacity_exceedance", t, true));
                    Profile::Grow {
                        inner: Box::new(Profile::Shop {
                            peak_kw: 16.0,
                            seed,
                        }),
                        factor: 2.4,
                        onset: t,
                    }
                }
                6 => {
                    rec.customer_class = Some(CustomerClass::Mining);
                    rec.licensed_mining = true;
                    rec.permitted_kw = Some(650.0);
                    Profile::Flat {
                        kw: 520.0,
                        noise: 0.01,
                        seed,
                    }
                }
                7 => {
                    rec.customer_class = Some(CustomerClass::Commercial);
                    rec.permitted_kw = Some(90.0);
                    Profile::Flat {
                        kw: 55.0,
                        noise: 0.05,
                        seed,
                    } // cold storage
                }
                8 => {
                    rec.customer_class = Some(CustomerClass::Public);
                    rec.permitted_kw = Some(400.0);
                    Profile::Hospital { kw: 240.0, seed }
                }
                9 => {
                    rec.customer_class = Some(CustomerClass::Commercial);
                    rec.permitted_kw = Some(60.0);
                    Profile::Bakery { kw: 40.0, seed }
                }
                10 => {
                    rec.status = SiteStatus::Suspended;
                    Profile::Off
                }
                _ => {
                    let roll = rng.f64();
                    if roll < 0.80 {
                        Profile::household(seed)
                    } else if roll < 0.90 {
                        rec.customer_class = Some(CustomerClass::Commercial);
                        let peak = rng.range(8.0, 40.0);
                        rec.permitted_kw = Some((peak * rng.range(1.4, 2.0)).round());
                        Profile::Shop {
                            peak_kw: peak,
                            seed,
                        }
                    } else if roll < 0.94 {
                        rec.customer_class = Some(CustomerClass::Industrial);
                        let kw = rng.range(80.0, 400.0);
                        rec.permitted_kw = Some((kw * 1.5).round());
                        Profile::Factory { kw, seed }
                    } else if roll < 0.97 {
                        rec.customer_class = Some(CustomerClass::Agricultural);
                        rec.permitted_kw = Some(40.0);
                        Profile::Pump {
                            kw: rng.range(10.0, 25.0),
                            seed,
                        }
                    } else {
                        rec.customer_class = Some(CustomerClass::Public);
                        let kw = rng.range(20.0, 60.0);
                        rec.permitted_kw = Some((kw * 2.0).round());
                        Profile::School { kw, seed }
                    }
                }
            };
            let gap = rng.chance(cfg.gap_rate).then(|| {
                let s = cfg.start + rng.below(u64::from(cfg.days) * 24) as i64 * 3600;
                (s, (s + rng.range(2.0, 30.0) as i64 * 3600).min(horizon))
            });
            meters.push(SimMeter {
                record: rec,
                registered,
                profile,
                gap,
            });
        }
        Utility {
            cfg,
            meters,
            labels,
            feeders,
        }
    }

    /// The register as CSV (the unregistered meters left out), feeder heads first.
    pub fn write_registry(&self, w: &mut impl Write) -> io::Result<()> {
        writeln!(w, "{}", gridwatch_core::registry::REGISTRY_HEADER.join(","))?;
        for (feeder, head, _) in &self.feeders {
            writeln!(w, "{feeder},{head},{feeder},feeder_head,,,active,false,,,")?;
        }
        for m in self.meters.iter().filter(|m| m.registered) {
            let r = &m.record;
            writeln!(
                w,
                "{},{},{},customer,{},{},{},{},{},{},{}",
                r.site_id,
                r.meter_id,
                r.feeder_id,
                r.customer_class.map_or("", |c| c.as_str()),
                r.permitted_kw.map_or(String::new(), |p| p.to_string()),
                r.status,
                r.licensed_mining,
                r.lat.map_or(String::new(), |v| format!("{v:.4}")),
                r.lon.map_or(String::new(), |v| format!("{v:.4}")),
                r.region.as_deref().unwrap_or("")
            )?;
        }
        Ok(())
    }

    pub fn write_labels(&self, w: &mut impl Write) -> io::Result<()> {
        writeln!(w, "target_type,target_id,scenario,onset,required")?;
        for l in &self.labels {
            writeln!(
                w,
                "{},{},{},{},{}",
                l.target_type,
                l.target_id,
                l.scenario,
                format_rfc3339(l.onset),
                l.required
            )?;
        }
        Ok(())
    }

    /// Streams every reading as contract CSV, interval by interval; feeder heads measure
    /// their customers plus technical losses. Returns the number of data rows written.
    pub fn write_readings(
        &self,
        w: &mut impl Write,
        mut progress: impl FnMut(u64, u64),
    ) -> io::Result<u64> {
        let cfg = &self.cfg;
        let step = i64::from(cfg.interval_s);
        let steps = i64::from(cfg.days) * 86_400 / step;
        let mut fault = Rng::fork(cfg.seed, 2);
        let mut feeder_kw = vec![0.0; self.feeders.len()];
        let mut rows = 0u64;
        let mut line = String::with_capacity(96);
        writeln!(w, "meter_id,ts,interval_s,kwh,feeder_id")?;
        for s in 1..=steps {
            let ts = cfg.start + s * step;
            feeder_kw.iter_mut().for_each(|k| *k = 0.0);
            for (i, m) in self.meters.iter().enumerate() {
                let kw = m.profile.kw(ts - step / 2, i as u64);
                feeder_kw[i % self.feeders.len()] += kw;
                if m.gap.is_some_and(|(a, b)| ts > a && ts <= b) {
                    continue;
                }
                line.clear();
                let kwh = kw * step as f64 / 3600.0;
                use std::fmt::Write as _;
                let _ = writeln!(
                    line,
                    "{},{},{},{:.3},{}",
                    m.record.meter_id,
                    format_rfc3339(ts),
                    step,
                    kwh,
                    m.record.feeder_id
                );
                w.write_all(line.as_bytes())?;
                rows += 1;
                if fault.chance(cfg.duplicate_rate) {
                    w.write_all(line.as_bytes())?;
                    rows += 1;
                }
            }
            for (f, (feeder, head, loss)) in self.feeders.iter().enumerate() {
                let kwh = feeder_kw[f] * (1.0 + loss) * step as f64 / 3600.0;
                writeln!(w, "{head},{},{step},{kwh:.3},{feeder}", format_rfc3339(ts))?;
                rows += 1;
            }
            if s % 96 == 0 || s == steps {
                progress(s as u64, steps as u64);
            }
        }
        Ok(rows)
    }
}

fn label(target_type: &str, id: &str, scenario: &str, onset: i64, required: bool) -> Label {
    Label {
        target_type: target_type.into(),
        target_id: id.into(),
        scenario: scenario.into(),
        onset,
        required,
    }
}

/// Reads `labels.csv`; errors name the line and field.
pub fn read_labels(input: impl io::BufRead, name: &str) -> Result<Vec<Label>, String> {
    let mut out = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|e| format!("{name}: {e}"))?;
        if i == 0 {
            if line.trim() != "target_type,target_id,scenario,onset,required" {
                return Err(format!(
                    "{name}:1: header must be target_type,target_id,scenario,onset,required"
                ));
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let at = |field: &str| format!("{name}:{}: field {field}", i + 1);
        if f.len() != 5 {
            return Err(format!(
                "{name}:{}: expected 5 fields, found {}",
                i + 1,
                f.len()
            ));
        }
        if !["site", "meter", "feeder"].contains(&f[0]) {
            return Err(format!(
                "{}: {:?} is not site, meter or feeder",
                at("target_type"),
                f[0]
            ));
        }
        let onset = gridwatch_core::time::parse_rfc3339(f[3])
            .map_err(|e| format!("{}: {e}", at("onset")))?;
        let required = match f[4] {
            "true" => true,
            "false" => false,
            v => return Err(format!("{}: {v:?} is not true or false", at("required"))),
        };
        out.push(label(f[0], f[1], f[2], onset, required));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Utility {
        Utility::generate(SimConfig {
            sites: 60,
            days: 3,
            ..SimConfig::default()
        })
    }

    #[test]
    fn same_seed_same_files() {
        let (a, b) = (small(), small());
        let (mut ra, mut rb) = (Vec::new(), Vec::new());
        a.write_readings(&mut ra, |_, _| {}).unwrap();
        b.write_readings(&mut rb, |_, _| {}).unwrap();
        assert_eq!(ra, rb);
        let other = Utility::generate(SimConfig {
            sites: 60,
            days: 3,
            seed: 8,
            ..SimConfig::default()
        });
        let mut rc = Vec::new();
        other.write_readings(&mut rc, |_, _| {}).unwrap();
        assert_ne!(ra, rc);
    }

    #[test]
    fn labels_round_trip() {
        let u = small();
        let mut text = Vec::new();
        u.write_labels(&mut text).unwrap();
        assert_eq!(read_labels(&text[..], "labels.csv").unwrap(), u.labels);
        let bad = b"target_type,target_id,scenario,onset,required\nsite,S1,x,never,true\n";
        assert!(read_labels(&bad[..], "l.csv")
            .unwrap_err()
            .starts_with("l.csv:2: field onset"));
    }

    #[test]
    fn register_parses_and_leaves_out_the_unregistered_meter() {
        let u = small();
        let mut reg = Vec::new();
        u.write_registry(&mut reg).unwrap();
        let text = String::from_utf8(reg).unwrap();
        let unregistered = u
            .labels
            .iter()
            .find(|l| l.scenario == "unregistered_meter")
            .unwrap();
        assert!(!text.contains(&unregistered.target_id));
        assert_eq!(
            text.lines().count(),
            1 + u.feeders.len() + u.meters.len() - 1
        );
    }

    #[test]
    fn feeder_heads_carry_their_customers_plus_losses() {
        let u = Utility::generate(SimConfig {
            sites: 60,
            days: 1,
            gap_rate: 0.0,
            duplicate_rate: 0.0,
            ..SimConfig::default()
        });
        let mut out = Vec::new();
        u.write_readings(&mut out, |_, _| {}).unwrap();
        let text = String::from_utf8(out).unwrap();
        let first_ts = gridwatch_core::time::format_rfc3339(u.cfg.start + 900);
        let (mut heads, mut customers) = (0.0, 0.0);
        for l in text.lines().skip(1).filter(|l| l.contains(&first_ts)) {
            let f: Vec<&str> = l.split(',').collect();
            let kwh: f64 = f[3].parse().unwrap();
            if f[0].starts_with('H') {
                heads += kwh
            } else {
                customers += kwh
            }
        }
        let ratio = heads / customers;
        assert!((1.03..=1.07).contains(&ratio), "head/customers = {ratio}");
    }
}
