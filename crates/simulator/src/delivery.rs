//! Delivery: the readings as a head-end sends them, interval by interval — the faults
//! (duplicates, gaps, late and out-of-order readings, skewed clocks), daily batches, backfills
//! and the MDM's estimates — and the feeder heads' measurements (losses, taps, two-way flow).

use super::*;

impl Utility {
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
