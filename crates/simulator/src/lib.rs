//! A simulated utility: a register of feeders and sites, interval readings with realistic load
//! shapes (households replay real ones), hidden unauthorized connections, hard negatives,
//! data faults, and the ground truth. Readings are produced interval by interval, so fleet
//! size is bounded by time, not memory.

pub mod household;
mod profile;
mod rng;
pub mod scenario;
pub mod score;
pub mod sunbelt;
pub mod winter;

pub use profile::{At, Profile, Schedule};
pub use rng::Rng;
pub use scenario::{Scenario, TargetType};

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

/// One ground-truth label (`labels.csv`).
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub target_type: TargetType,
    pub target_id: String,
    pub scenario: Scenario,
    pub onset: i64,
    /// Counts toward the detection targets (false for cases below them).
    pub required: bool,
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

    /// Produces every reading in emission order: interval by interval, with the configured
    /// faults (duplicates, gaps, out-of-order and late readings, skewed clocks). Feeder heads
    /// measure their customers' true load, technical losses that grow with load, and any
    /// unmetered taps. Returns the number of readings emitted.
    pub fn readings<E>(
        &self,
        mut emit: impl FnMut(&SimReading<'_>) -> Result<(), E>,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<u64, E> {
        let cfg = &self.cfg;
        let step = i64::from(cfg.interval_s);
        let steps = i64::from(cfg.days) * 86_400 / step;
        let hours = step as f64 / 3600.0;
        let mut fault = Rng::fork(cfg.seed, 2);
        let mut feeder_kw = vec![0.0; self.feeders.len()];
        // Delayed readings: (emit at step, sequence) → reading values.
        let mut delayed: BinaryHeap<Delayed> = BinaryHeap::new();
        let mut seq = 0u64;
        let mut n = 0u64;
        let steps_a_day = 86_400 / step;
        // A meter-day's average net demand (kW), for the head-end's flat estimates.
        let mut day_mean: std::collections::HashMap<(usize, i64), f64> = Default::default();
        for s in 1..=steps {
            let ts = cfg.start + s * step;
            let at = self.local(ts - step / 2);
            feeder_kw.iter_mut().for_each(|k| *k = 0.0);
            for (i, m) in self.meters.iter().enumerate() {
                let kw = m.profile.kw(at, i as u64);
                let f = i % self.feeders.len();
                let pv_kw = m.pv.map_or(0.0, |p| p.kw(at, cfg.seed, f as u64));
                feeder_kw[f] += kw - pv_kw;
                // Held back by the head-end: a gap it backfills when the meter is back, a
                // multi-day outage backfilled hours after live reads resume, or a day's batch
                // delivered the next night.
                let in_gap = m.gap.filter(|&(a, b)| ts > a && ts <= b);
                let in_outage = m.outage.filter(|o| ts > o.start && ts <= o.end);
                let held = match (in_gap, in_outage) {
                    (_, Some(o)) => (o.backfill - cfg.start) / step - s,
                    (Some(_), None) if !m.backfills => continue,
                    (Some((_, b)), None) => (b - cfg.start) / step + 1 - s,
                    (None, None) if m.batched => self.batch_due(ts, i) - s,
                    (None, None) => 0,
                };
                let (import, export) = match m.tamper {
                    Some(Tamper::Zero { onset }) if ts > onset => (0.0, None),
                    Some(Tamper::Bypass { share, onset } | Tamper::Shunt { share, onset })
                        if ts > onset =>
                    {
                        (kw * share, None)
                    }
                    Some(Tamper::Reverse { onset }) if ts > onset => (0.0, Some(kw * hours)),
                    _ => (kw, None),
                };
                // Net metering: the panels serve the site first, the rest is exported.
                let (import, export) = match m.pv {
                    Some(_) => (
                        (import - pv_kw).max(0.0),
                        Some((pv_kw - import).max(0.0) * hours),
                    ),
                    None => (import, export),
                };
                let mut kwh = round3(import * hours);
                let mut export = export.map(round3);
                let mut quality = gridwatch_core::Quality::Actual;
                // The head-end estimates the day: the estimate goes out now, the actual (if
                // ever) days later.
                let day = at.local.div_euclid(86_400);
                if let Some((kind, late)) = m.estimates.on(cfg.seed ^ i as u64, day) {
                    if let Some(d) = late.filter(|d| s + d * steps_a_day <= steps) {
                        seq += 1;
                        delayed.push(Delayed {
                            due: s + d * steps_a_day,
                            seq,
                            meter: i,
                            ts: ts + m.skew_s,
                            kwh,
                            export,
                            vi: None,
                            quality,
                        });
                    }
                    let net_kw = match kind {
                        sunbelt::Estimate::LastWeek => {
                            let week = self.local(ts - step / 2 - 7 * 86_400);
                            let pv = m.pv.map_or(0.0, |p| p.kw(week, cfg.seed, f as u64));
                            m.profile.kw(week, i as u64) - pv
                        }
                        flat => {
                            let mean = *day_mean.entry((i, day)).or_insert_with(|| {
                                let from = day * 86_400 - (at.local - at.utc);
                                (0..steps_a_day)
                                    .map(|k| {
                                        let t = self.local(from + k * step + step / 2);
                                        let pv = m.pv.map_or(0.0, |p| p.kw(t, cfg.seed, f as u64));
                                        m.profile.kw(t, i as u64) - pv
                                    })
                                    .sum::<f64>()
                                    / steps_a_day as f64
                            });
                            if flat == sunbelt::Estimate::Absurd {
                                10.0 * mean.abs()
                            } else {
                                mean
                            }
                        }
                    };
                    kwh = round3(net_kw.max(0.0) * hours);
                    export = m.pv.map(|_| round3((-net_kw).max(0.0) * hours));
                    quality = gridwatch_core::Quality::Estimated;
                }
                // Voltage 225–235 V; current at power factor 0.85–0.98 of what flows through
                // the meter: all of the load for a shunted current element (it hides energy
                // from the register, not current from the channel) or a reversed meter, only
                // the metered part past a bypass.
                let through = match m.tamper {
                    Some(Tamper::Shunt { .. } | Tamper::Reverse { .. }) => kw,
                    _ => import,
                };
                let vi = m.reports_vi.then(|| {
                    let v = 225.0 + 10.0 * profile::u(cfg.seed, ts, i as u64 ^ 0x5a);
                    let pf = 0.85 + 0.13 * profile::u(cfg.seed, i as i64, 0x5b);
                    let a = through * 1000.0 / (v * pf);
                    ((v * 10.0).round() / 10.0, (a * 100.0).round() / 100.0)
                });
                let copies = if fault.chance(cfg.duplicate_rate) {
                    2
                } else {
                    1
                };
                let delay = if fault.chance(cfg.late_rate) {
                    (6 + fault.below(7) as i64) * 3600 / step
                } else if fault.chance(cfg.out_of_order_rate) {
                    1 + fault.below(3) as i64
                } else {
                    0
                }
                .max(held);
                for _ in 0..copies {
                    if delay > 0 && s + delay <= steps {
                        seq += 1;
                        delayed.push(Delayed {
                            due: s + delay,
                            seq,
                            meter: i,
                            ts: ts + m.skew_s,
                            kwh,
                            export,
                            vi,
                            quality,
                        });
                    } else {
                        emit(&SimReading {
                            meter_id: &m.record.meter_id,
                            ts: ts + m.skew_s,
                            interval_s: cfg.interval_s,
                            kwh,
                            kwh_export: export,
                            vi,
                            feeder_id: &m.record.feeder_id,
                            quality,
                        })?;
                        n += 1;
                    }
                }
            }
            for (f, feeder) in self.feeders.iter().enumerate() {
                let load =
                    feeder_kw[f] + feeder.taps.iter().map(|t| t.kw(at, f as u64)).sum::<f64>();
                // Resistive losses grow with the square of the current: `loss_ratio` of the load
                // at the feeder's nominal demand, more above it, less below.
                // With PV the net flow can reverse: the head then reports export.
                let loss = feeder.loss_ratio * load.abs() * (load.abs() / feeder.nominal_kw);
                let flow = load + loss * load.signum();
                emit(&SimReading {
                    meter_id: &feeder.head_meter,
                    ts,
                    interval_s: cfg.interval_s,
                    kwh: round3(flow.max(0.0) * hours),
                    kwh_export: (flow < 0.0).then(|| round3(-flow * hours)),
                    vi: None,
                    feeder_id: &feeder.feeder_id,
                    quality: gridwatch_core::Quality::Actual,
                })?;
                n += 1;
            }
            while delayed.peek().is_some_and(|d| d.due <= s) {
                let d = delayed.pop().expect("peeked");
                let m = &self.meters[d.meter];
                emit(&SimReading {
                    meter_id: &m.record.meter_id,
                    ts: d.ts,
                    interval_s: cfg.interval_s,
                    kwh: d.kwh,
                    kwh_export: d.export,
                    vi: d.vi,
                    feeder_id: &m.record.feeder_id,
                    quality: d.quality,
                })?;
                n += 1;
            }
            if s % 96 == 0 || s == steps {
                progress(s as u64, steps as u64);
            }
        }
        Ok(n)
    }

    /// The step at which a batched meter's reading of `ts` is delivered: between 01:00 and
    /// 05:00 local time the next day (each meter at its own time).
    fn batch_due(&self, ts: i64, meter: usize) -> i64 {
        let at = self.local(ts - 1);
        let next_day = (at.local.div_euclid(86_400) + 1) * 86_400;
        let offset_s = 3600 + (profile::u(self.cfg.seed, meter as i64, 0x6b) * 4.0 * 3600.0) as i64;
        let due_utc = next_day + offset_s - (at.local - at.utc);
        let step = i64::from(self.cfg.interval_s);
        (due_utc - self.cfg.start + step - 1) / step
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

    /// All readings as contract CSV
    /// (`meter_id,ts,interval_s,kwh,feeder_id,kwh_export,voltage_v,current_a,quality`; the
    /// quality empty for an actual).
    pub fn write_readings(
        &self,
        w: &mut impl Write,
        progress: impl FnMut(u64, u64),
    ) -> io::Result<u64> {
        writeln!(
            w,
            "meter_id,ts,interval_s,kwh,feeder_id,kwh_export,voltage_v,current_a,quality"
        )?;
        let mut line = String::with_capacity(96);
        self.readings(
            |r| {
                use std::fmt::Write as _;
                line.clear();
                let _ = write!(
                    line,
                    "{},{},{},{},{},",
                    r.meter_id,
                    format_rfc3339(r.ts),
                    r.interval_s,
                    r.kwh,
                    r.feeder_id
                );
                if let Some(e) = r.kwh_export {
                    let _ = write!(line, "{e}");
                }
                match r.vi {
                    Some((v, a)) => {
                        let _ = write!(line, ",{v},{a},");
                    }
                    None => line.push_str(",,,"),
                }
                if r.quality == gridwatch_core::Quality::Estimated {
                    line.push_str("estimated");
                }
                line.push('\n');
                w.write_all(line.as_bytes())
            },
            progress,
        )
    }
}

/// A reading held back to be sent late; the heap pops the earliest due first.
struct Delayed {
    due: i64,
    seq: u64,
    meter: usize,
    ts: i64,
    kwh: f64,
    export: Option<f64>,
    vi: Option<(f64, f64)>,
    quality: gridwatch_core::Quality,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}

impl Eq for Delayed {}

impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Plants sites, cases and negatives.
struct Builder<'a> {
    cfg: &'a SimConfig,
    rng: Rng,
    /// Draws how each meter's data are delivered (apart from `rng`, so that utilities
    /// simulated before delivery options existed stay the same).
    delivery: Rng,
    /// Draws the sunbelt's PV, estimates and outages ([`sunbelt`]), apart from both.
    sun: Rng,
    meters: Vec<SimMeter>,
    feeders: Vec<SimFeeder>,
    labels: Vec<Label>,
    first_day: i64,
    utc_offset: i64,
    /// The split farm being planted: its onset, each part's power, the parts still to plant
    /// and where the first stands (its parts are next-door neighbours).
    split: Option<(i64, f64, u8, (f64, f64))>,
}

impl<'a> Builder<'a> {
    fn new(cfg: &'a SimConfig, tz: &jiff::tz::TimeZone) -> Self {
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
    fn onset(&mut self) -> i64 {
        let days = i64::from(self.cfg.days);
        let (lo, hi) = (1, (days - 3).clamp(2, 6));
        self.cfg.start + lo * 86_400 + self.rng.below(((hi - lo) * 96) as u64) as i64 * 900
    }

    fn label(
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
    fn household(&mut self) -> Profile {
        let seed = self.rng.next_u64();
        Profile::household(
            seed,
            self.first_day,
            i64::from(self.cfg.days),
            self.weather(),
            false,
        )
    }

    fn weather(&self) -> Option<winter::Weather> {
        (self.cfg.winter || self.cfg.summer).then_some(winter::Weather {
            seed: self.cfg.seed,
            first_day: self.first_day,
            days: i64::from(self.cfg.days),
            summer: self.cfg.summer,
        })
    }

    fn shop(&mut self) -> (Profile, f64) {
        let peak = self.rng.range(8.0, 40.0);
        (
            Profile::Shop {
                peak_kw: peak,
                seed: self.rng.next_u64(),
            },
            (peak * self.rng.range(1.4, 2.0)).round(),
        )
    }

    fn factory(&mut self) -> (Profile, f64) {
        let kw = self.rng.range(80.0, 400.0);
        (
            Profile::Factory {
                kw,
                seed: self.rng.next_u64(),
            },
            (kw * 1.5).round(),
        )
    }

    fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + (hi.ln() - lo.ln()) * self.rng.f64()).exp()
    }

    /// Plants every site: the cases first (spread over feeders), then the negatives, then
    /// ordinary customers.
    fn plant(&mut self) {
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
    fn pv(&mut self, rec: &mut MeterRecord) -> Option<sunbelt::Pv> {
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

    fn case(
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

    /// A household like the ordinary ones (it may heat with electricity), with its permit.
    fn ordinary_household(&mut self, rec: &mut MeterRecord) -> Profile {
        let seed = self.rng.next_u64();
        let days = i64::from(self.cfg.days);
        let h = Profile::household(seed, self.first_day, days, self.weather(), true);
        if let Profile::Household(p) = &h {
            rec.permitted_kw = Some(p.permit_kw());
        }
        h
    }

    fn ordinary(&mut self, rec: &mut MeterRecord) -> Profile {
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

    /// Unmetered taps on some feeders, sized against the feeder's mean demand.
    fn plant_taps(&mut self) {
        let n_feeders = self.feeders.len();
        // Feeders already unbalanced by a tampered or an unregistered meter get no tap: one case
        // per target.
        let tampered: std::collections::HashSet<String> = self
            .labels
            .iter()
            .filter(|l| l.target_type == TargetType::Feeder)
            .map(|l| l.target_id.clone())
            .collect();
        for f in 0..n_feeders {
            let kind = match f % 8 {
                0 | 4 => Scenario::FeederTapFlat,
                1 | 5 => Scenario::FeederTapDuty,
                2 | 6 => Scenario::FeederTapSmall,
                3 => Scenario::FeederTapNight,
                _ => continue,
            };
            if (n_feeders < 3 && f > 0) || tampered.contains(&self.feeders[f].feeder_id) {
                continue;
            }
            let mean = self.feeder_mean_kw(f, 7);
            let share = match kind {
                Scenario::FeederTapSmall => self.rng.range(0.03, 0.05),
                Scenario::FeederTapNight => self.rng.range(0.03, 0.08),
                _ => self.rng.range(0.06, 0.2),
            };
            let onset = self.onset();
            // A duty-cycled or night-only tap draws more while on, for the same share of energy.
            let (schedule, on_share) = match kind {
                Scenario::FeederTapDuty => (Schedule::Duty { on: 3, off: 2 }, 3.0 / 5.0),
                Scenario::FeederTapNight => (
                    Schedule::Night {
                        from: 22.0,
                        to: 6.0,
                    },
                    8.0 / 24.0,
                ),
                _ => (Schedule::Always, 1.0),
            };
            let kw = mean * share / on_share;
            self.feeders[f].taps.push(Profile::Miner {
                base: Box::new(Profile::Off),
                kw,
                onset,
                schedule,
            });
            let id = self.feeders[f].feeder_id.clone();
            self.label(
                TargetType::Feeder,
                &id,
                kind,
                onset,
                kind != Scenario::FeederTapSmall,
            );
        }
    }

    /// A quick estimate of a feeder's mean demand from a sample of its customers' first `days`.
    fn feeder_mean_kw(&self, f: usize, days: i64) -> f64 {
        let n_feeders = self.feeders.len();
        let mut total = 0.0;
        let mut samples = 0.0;
        for step in (0..days * 96).step_by(7) {
            let utc = self.cfg.start + step * 900;
            let at = At {
                utc,
                local: utc + self.utc_offset,
            };
            total += self
                .meters
                .iter()
                .enumerate()
                .skip(f)
                .step_by(n_feeders)
                .map(|(i, m)| m.profile.kw(at, i as u64))
                .sum::<f64>();
            samples += 1.0;
        }
        total / samples
    }
}

/// Reads `labels.csv`; errors name the line and field.
pub fn read_labels(input: impl io::Read, name: &str) -> Result<Vec<Label>, String> {
    const HEADER: [&str; 5] = ["target_type", "target_id", "scenario", "onset", "required"];
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let mut out = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut header_seen = false;
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(format!("{name}: {e}")),
        }
        let line = record.position().map_or(0, |p| p.line());
        if !header_seen {
            header_seen = true;
            if record.iter().ne(HEADER) {
                return Err(format!(
                    "{name}:{line}: header must be {}",
                    HEADER.join(",")
                ));
            }
            continue;
        }
        if record.iter().all(str::is_empty) {
            continue;
        }
        let at = |field: &str| format!("{name}:{line}: field {field}");
        if record.len() != 5 {
            return Err(format!(
                "{name}:{line}: expected 5 fields, found {}",
                record.len()
            ));
        }
        let target_type = record[0]
            .parse()
            .map_err(|e| format!("{}: {e}", at("target_type")))?;
        let scenario = record[2]
            .parse()
            .map_err(|e| format!("{}: {e}", at("scenario")))?;
        let onset = gridwatch_core::time::parse_rfc3339(&record[3])
            .map_err(|e| format!("{}: {e}", at("onset")))?;
        let required = match &record[4] {
            "true" => true,
            "false" => false,
            v => return Err(format!("{}: {v:?} is not true or false", at("required"))),
        };
        out.push(Label {
            target_type,
            target_id: record[1].to_string(),
            scenario,
            onset,
            required,
        });
    }
    Ok(out)
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
