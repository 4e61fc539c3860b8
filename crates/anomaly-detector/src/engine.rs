//! The detection engine: an I/O-free state machine. Feed it register updates and readings in
//! any order; it advances on event time (per meter) and returns alerts. No clock, no files,
//! no Kafka: the same inputs give the same alerts, with the same ids, wherever it runs.

use crate::episode::{round, Episode, Finding, Target};
use crate::feeder::{Feeder, WINDOW};
use crate::meter::{Admit, ClosedHour, MeterState, HOUR, OPEN_RING};
use crate::peer::{DayView, Peers};
use gridwatch_core::{
    Alert, AlertKind, CustomerClass, DetectorConfig, MeterRecord, Reading, RegistryUpdate, Role,
    SiteStatus,
};
use rustc_hash::FxHashMap;
use serde_json::{json, Map, Value};

/// Counters of what the engine has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub readings: u64,
    pub duplicates: u64,
    pub late: u64,
    pub alerts: u64,
}

/// What became of one reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Counted,
    /// The same (meter, ts) was already counted.
    Duplicate,
    /// Its hour had already closed: more than the allowed lateness behind its meter.
    Late,
}

struct Slot {
    reg: Option<MeterRecord>,
    /// The feeder this meter measures (a head) or belongs to (a customer).
    feeder: Option<u32>,
    st: MeterState,
}

pub struct Engine {
    cfg: DetectorConfig,
    /// Hours from UTC to `detector.timezone`'s standard time, for sites without their own.
    default_shift_h: i8,
    index: FxHashMap<Box<str>, u32>,
    slots: Vec<Slot>,
    feeder_index: FxHashMap<Box<str>, u32>,
    feeders: Vec<Feeder>,
    stats: Stats,
}

/// Typical always-on and mean demand of a household, for the excess at residences without
/// history of their own.
const HOUSEHOLD_FLOOR_KW: f64 = 0.3;
const HOUSEHOLD_KW: f64 = 0.6;

impl Engine {
    /// An engine with these thresholds. Fails when the allowed lateness exceeds what the
    /// per-meter ring can hold.
    pub fn new(cfg: DetectorConfig) -> Result<Engine, String> {
        let max_lateness = (OPEN_RING as i64 - 2) * HOUR;
        if !(0..=max_lateness).contains(&cfg.allowed_lateness_s) {
            return Err(format!(
                "detector.allowed_lateness_s must be between 0 and {max_lateness}, got {}",
                cfg.allowed_lateness_s
            ));
        }
        if !(1..=24).contains(&cfg.mining_fast_hours) {
            return Err("detector.mining_fast_hours must be between 1 and 24".into());
        }
        let positive = [
            ("peer_cusum_limit", cfg.peer_cusum_limit),
            ("step_cusum_limit", cfg.step_cusum_limit),
            ("feeder_cusum_limit", cfg.feeder_cusum_limit),
            ("feeder_min_share", cfg.feeder_min_share),
            ("tamper_drop_share", cfg.tamper_drop_share),
        ];
        for (key, value) in positive {
            if !(value > 0.0 && value.is_finite()) {
                return Err(format!(
                    "detector.{key} must be a positive number, got {value}"
                ));
            }
        }
        if !(cfg.tamper_vi_pf_floor > 0.0 && cfg.tamper_vi_pf_floor <= 1.0) {
            return Err(format!(
                "detector.tamper_vi_pf_floor must be in (0, 1], got {}",
                cfg.tamper_vi_pf_floor
            ));
        }
        if cfg.peer_min_peers < 2 || cfg.peer_learn_days < 1 || cfg.peer_min_days < 1 {
            return Err(
                "detector.peer_min_peers must be at least 2, peer_learn_days and peer_min_days at least 1"
                    .into(),
            );
        }
        let default_shift_h = match &cfg.timezone {
            Some(zone) => gridwatch_core::time::standard_offset_hours(zone)
                .map_err(|e| format!("detector.timezone: {e}"))? as i8,
            None => 0,
        };
        Ok(Engine {
            cfg,
            default_shift_h,
            index: FxHashMap::default(),
            slots: Vec::new(),
            feeder_index: FxHashMap::default(),
            feeders: Vec::new(),
            stats: Stats::default(),
        })
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Meters tracked (registered or seen).
    pub fn meters(&self) -> usize {
        self.slots.len()
    }

    fn slot_of(&mut self, meter_id: &str) -> usize {
        if let Some(&i) = self.index.get(meter_id) {
            return i as usize;
        }
        let i = self.slots.len();
        self.index.insert(meter_id.into(), i as u32);
        self.slots.push(Slot {
            reg: None,
            feeder: None,
            st: MeterState::new(),
        });
        i
    }

    fn feeder_of(&mut self, feeder_id: &str) -> u32 {
        if let Some(&f) = self.feeder_index.get(feeder_id) {
            return f;
        }
        let f = self.feeders.len() as u32;
        self.feeder_index.insert(feeder_id.into(), f);
        self.feeders.push(Feeder::new(feeder_id));
        f
    }

    /// Applies a register change. A meter that gains a register row resolves its
    /// `unregistered_meter` episode; a site that becomes active resolves
    /// `disconnected_consumption`.
    pub fn apply_registry(&mut self, update: RegistryUpdate, out: &mut Vec<Alert>) {
        let (meter_id, reg) = match update {
            RegistryUpdate::Upsert(r) => (r.meter_id.clone(), Some(r)),
            RegistryUpdate::Delete { meter_id } => (meter_id, None),
        };
        let i = self.slot_of(&meter_id);
        // Keep each feeder's customer meters, for the completeness of its balance, its peers
        // and its suspects; a row re-sent unchanged (a whole register reloaded) moves nothing.
        let was_customer = self.slots[i]
            .reg
            .as_ref()
            .is_some_and(|r| r.role == Role::Customer);
        let feeder = reg.as_ref().map(|r| self.feeder_of(&r.feeder_id));
        let is_customer = reg.as_ref().is_some_and(|r| r.role == Role::Customer);
        let old_membership = self.slots[i].feeder.filter(|_| was_customer);
        let new_membership = feeder.filter(|_| is_customer);
        if old_membership != new_membership {
            if let Some(f) = old_membership {
                self.feeders[f as usize]
                    .members
                    .retain(|&m| m as usize != i);
            }
            if let Some(f) = new_membership {
                self.feeders[f as usize].members.push(i as u32);
            }
        }
        let slot = &mut self.slots[i];
        let old_permit = slot.reg.as_ref().and_then(|r| r.permitted_kw);
        let was_licensed = slot.reg.as_ref().is_some_and(|r| r.licensed_mining);
        slot.st.local_shift_h = reg.as_ref().map_or(self.default_shift_h, |r| {
            local_shift_h(r, self.default_shift_h)
        });
        slot.reg = reg;
        slot.feeder = feeder;
        let at = slot.st.max_ts();
        let mut closing = Vec::new();
        // A permit raised or a licence granted settles the cases it covers at once; if the load
        // still exceeds the new terms, the next hours open a new case against them.
        let new_permit = slot.reg.as_ref().and_then(|r| r.permitted_kw);
        let raised = match (old_permit, new_permit) {
            (Some(a), Some(b)) => b > a,
            (Some(_), None) => true,
            _ => false,
        };
        if raised {
            closing.push((AlertKind::CapacityExceeded, "the permit was raised"));
            slot.st.over_hours = 0;
        }
        if !was_licensed && slot.reg.as_ref().is_some_and(|r| r.licensed_mining) {
            closing.push((
                AlertKind::MiningSignature,
                "the site was licensed for mining",
            ));
            closing.push((AlertKind::StepChange, "the site was licensed for mining"));
        }
        if slot.reg.is_some() {
            closing.push((
                AlertKind::UnregisteredMeter,
                "the meter was added to the register",
            ));
        }
        if slot
            .reg
            .as_ref()
            .is_some_and(|r| r.status == SiteStatus::Active)
        {
            closing.push((
                AlertKind::DisconnectedConsumption,
                "the site is active in the register",
            ));
        }
        let before = out.len();
        let t = Target {
            meter_id: Some(&meter_id),
            reg: slot.reg.as_ref(),
            feeder_hint: None,
        };
        for (kind, reason) in closing {
            let Some(p) = slot
                .st
                .episodes
                .iter()
                .position(|e| e.kind == kind || (is_case_kind(kind) && is_case_kind(e.kind)))
            else {
                continue;
            };
            // A site's case settles once no detector's evidence is left standing.
            let ep = &mut slot.st.episodes[p];
            ep.detectors.retain(|(k, _)| *k != kind);
            if ep.detectors.is_empty() {
                let mut ep = slot.st.episodes.swap_remove(p);
                out.extend(ep.resolve(at, reason, &t));
            }
        }
        self.stats.alerts += (out.len() - before) as u64;
    }

    /// Takes one validated reading; appends any alerts it raises to `out`.
    pub fn on_reading(&mut self, r: &Reading, out: &mut Vec<Alert>) -> Use {
        let i = self.slot_of(&r.meter_id);
        if self.slots[i].feeder.is_none() {
            if let Some(hint) = &r.feeder_id {
                self.slots[i].feeder = Some(self.feeder_of(hint));
            }
        }
        let before = out.len();
        let cfg = &self.cfg;
        let Slot { reg, feeder, st } = &mut self.slots[i];
        let t = Target {
            meter_id: Some(&r.meter_id),
            reg: reg.as_ref(),
            feeder_hint: r.feeder_id.as_deref(),
        };

        let feeders = &mut self.feeders;
        if let Some(h) = st.must_close_before(r.ts) {
            st.skip_empty_to(h);
            while let Some(closed) = st.pop_closed(i64::MIN, h) {
                let peers = feeder.map(|f| &mut feeders[f as usize].peers);
                on_closed_hour(cfg, st, closed, &t, peers, out);
            }
        }
        let used = match st.admit(r.ts, r.interval_s, r.kwh) {
            Admit::Duplicate => {
                self.stats.duplicates += 1;
                Use::Duplicate
            }
            Admit::Late => {
                self.stats.late += 1;
                Use::Late
            }
            Admit::Accepted => {
                self.stats.readings += 1;
                if let Some(export) = r.kwh_export {
                    st.add_export(r.ts, export);
                }
                if let (Some(v), Some(a)) = (r.voltage_v, r.current_a) {
                    // Energy registered either way counts: a reversed meter still registers
                    // what flows (night export catches it).
                    let registered = r.kwh + r.kwh_export.unwrap_or(0.0);
                    let limits = (cfg.tamper_vi_min_a, cfg.tamper_vi_pf_floor);
                    st.add_vi(r.ts, r.interval_s, registered, (v, a), limits);
                }
                on_accepted(cfg, st, r, &t, out);
                let watermark = st.max_ts() - cfg.allowed_lateness_s;
                while let Some(closed) = st.pop_closed(watermark, i64::MIN) {
                    let peers = feeder.map(|f| &mut feeders[f as usize].peers);
                    on_closed_hour(cfg, st, closed, &t, peers, out);
                }
                let mut head_of = None;
                if let Some(f) = *feeder {
                    let fd = &mut feeders[f as usize];
                    if reg.as_ref().is_some_and(|r| r.role == Role::FeederHead) {
                        fd.add_head(r.ts, r.interval_s, r.kwh);
                        head_of = Some(f);
                    } else {
                        fd.add_customer(r.ts, r.interval_s, r.kwh);
                    }
                }
                if let Some(f) = head_of {
                    balance(cfg, &mut feeders[f as usize], &mut self.slots, out);
                }
                Use::Counted
            }
        };
        self.stats.alerts += (out.len() - before) as u64;
        used
    }

    /// Size of the per-meter detection state, for memory budgeting.
    pub fn state_bytes_per_meter(&self) -> usize {
        std::mem::size_of::<Slot>()
    }
}

/// Closes the feeder's hours its head meter has passed, and judges each balanced one. While
/// the feeder draws unexplained energy, its customers whose own demand dropped by a matching
/// amount are named in the evidence; a business among them with a drop held for a day is a
/// `tamper` case of its own (a bypass around its meter).
fn balance(cfg: &DetectorConfig, fd: &mut Feeder, slots: &mut [Slot], out: &mut Vec<Alert>) {
    while let Some(closed) = fd.pop_closed(cfg.allowed_lateness_s + HOUR) {
        // An hour held back for missing readings neither confirms nor clears a case.
        let Some(b) = closed else { continue };
        let id = fd.id.clone();
        let t = Target {
            meter_id: None,
            reg: None,
            feeder_hint: Some(&id),
        };
        match fd.judge(b, cfg) {
            Some(mut f) => {
                let suspects = coincident_drops(fd, slots, b.end, f.est_excess_kw);
                if !suspects.is_empty() {
                    let named: Vec<String> = suspects
                        .iter()
                        .take(3)
                        .filter_map(|&(m, _)| slots[m as usize].reg.as_ref())
                        .map(|r| r.site_id.clone())
                        .collect();
                    f.summary = format!(
                        "{}. Demand dropped at the same time at {}",
                        f.summary,
                        named.join(", ")
                    );
                    let listed = suspects
                        .iter()
                        .filter_map(|&(m, r)| {
                            let slot = &slots[m as usize];
                            slot.reg.as_ref().map(|reg| {
                                json!({
                                    "site_id": reg.site_id,
                                    "meter_id": reg.meter_id,
                                    "drop_kw": round(f64::from(slot.st.drop_kw), 2),
                                    "dropped_from_kw": round(f64::from(slot.st.drop_from_kw), 2),
                                    "drop_hours": slot.st.drop_hours,
                                    "correlation": round(r, 2),
                                })
                            })
                        })
                        .collect();
                    f.evidence
                        .insert("suspect_sites".into(), Value::Array(listed));
                }
                let unmetered_kw = f.est_excess_kw;
                let start = b.end - 12 * HOUR;
                let ep = fd
                    .episode
                    .get_or_insert_with(|| Episode::new(AlertKind::FeederImbalance, &id, start));
                ep.quiet_hours = 0;
                out.extend(ep.activate(f, b.end, b.end, true, cfg.update_interval_s, &t));
                if ep.opened {
                    for (m, r) in suspects {
                        bypass(
                            cfg,
                            &mut slots[m as usize],
                            &id,
                            unmetered_kw,
                            r,
                            b.end,
                            out,
                        );
                    }
                }
            }
            None => {
                if let Some(ep) = &mut fd.episode {
                    ep.quiet_hours += 1;
                    if ep.is_over(cfg.resolve_after_s) {
                        let reason = format!("the feeder balanced for {} h", ep.quiet_hours);
                        out.extend(ep.resolve(b.end, &reason, &t));
                        fd.episode = None;
                    }
                }
            }
        }
    }
}

/// Customers of the feeder whose demand dropped (and stays down) by roughly the unmetered
/// load, and whose remaining readings move with it hour by hour — what a bypass of part of a
/// load looks like, and what a weekend or a holiday does not. Returns (slot, correlation of
/// the meter's hourly demand with the feeder's unexplained kW), best first.
fn coincident_drops(fd: &Feeder, slots: &[Slot], end: i64, unmetered_kw: f64) -> Vec<(u32, f64)> {
    let residuals = fd.residuals();
    let mut found: Vec<(u32, f64)> = fd
        .members
        .iter()
        .filter_map(|&m| {
            let st = &slots[m as usize].st;
            let ratio = f64::from(st.drop_kw) / unmetered_kw.max(1e-6);
            if st.drop_hours == 0 || !(0.4..=2.5).contains(&ratio) {
                return None;
            }
            let pairs: Vec<(f64, f64)> = residuals
                .iter()
                .enumerate()
                .filter_map(|(k, &u)| {
                    let hour_end = end - (WINDOW - 1 - k) as i64 * HOUR;
                    st.hour_kw(hour_end).map(|kw| (kw, u))
                })
                .collect();
            let r = correlation(&pairs)?;
            (pairs.len() * 3 >= WINDOW * 2 && r >= 0.6).then_some((m, r))
        })
        .collect();
    // Ties go by meter id, not slot: slots follow the order the register arrived in, which
    // differs between a file and a compacted topic.
    let id = |m: u32| slots[m as usize].reg.as_ref().map(|r| r.meter_id.as_str());
    found.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| id(a.0).cmp(&id(b.0))));
    found
}

/// Pearson correlation; `None` when either side is (nearly) constant.
fn correlation(pairs: &[(f64, f64)]) -> Option<f64> {
    let n = pairs.len() as f64;
    let (mx, my) = pairs
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx).powi(2);
        syy += (y - my).powi(2);
    }
    let floor = 1e-6 * n;
    (sxx > floor * mx.abs().max(1.0) && syy > floor * my.abs().max(1.0))
        .then(|| sxy / (sxx * syy).sqrt())
}

/// A business whose demand dropped a day ago and stayed down by about what its feeder now
/// draws unmetered: energy going around its meter. Households are named on the feeder's
/// alert only: a household's vacation looks the same.
fn bypass(
    cfg: &DetectorConfig,
    slot: &mut Slot,
    feeder_id: &str,
    unmetered_kw: f64,
    correlation: f64,
    at: i64,
    out: &mut Vec<Alert>,
) {
    let Slot { reg, st, .. } = slot;
    let Some(reg) = reg.as_ref() else { return };
    let drop = f64::from(st.drop_kw);
    let ratio = drop / unmetered_kw.max(1e-6);
    if reg.customer_class == Some(CustomerClass::Residential)
        || i64::from(st.drop_hours) * HOUR < cfg.tamper_drop_min_duration_s
        || correlation < 0.8
        || !(0.5..=2.0).contains(&ratio)
    {
        return;
    }
    let from = f64::from(st.drop_from_kw);
    let t = Target {
        meter_id: Some(&reg.meter_id),
        reg: Some(reg),
        feeder_hint: None,
    };
    let cx = HourCtx {
        cfg,
        reg,
        hour: ClosedHour {
            end: at,
            kw: from - drop,
            export_kw: 0.0,
            vi_bad_share: 0.0,
            vi_missing_kw: 0.0,
        },
        target: &reg.site_id,
        t: &t,
    };
    let f = Finding {
        score: (0.5 + 0.4 * correlation).min(1.0),
        est_excess_kw: drop,
        excess_kwh: drop,
        evidence: evidence([
            ("dropped_from_kw", round(from, 2)),
            ("drop_kw", round(drop, 2)),
            ("drop_hours", f64::from(st.drop_hours)),
            ("feeder_unmetered_kw", round(unmetered_kw, 2)),
            ("correlation", round(correlation, 2)),
        ])
        .with(
            "drop_seen_at",
            &gridwatch_core::time::format_rfc3339(st.drop_seen),
        )
        .with("pattern", "sudden_drop")
        .with("customer_class", class_name(reg)),
        summary: format!(
            "Demand fell from {} kW to {} kW and stayed down for {} h while feeder {} began drawing {} kW its meters don't explain, hour by hour in step with this meter (r = {:.2}): a bypass around it",
            fmt_kw(from),
            fmt_kw(from - drop),
            st.drop_hours + 24,
            feeder_id,
            fmt_kw(unmetered_kw),
            correlation
        ),
    };
    let raised = vec![Raised {
        kind: AlertKind::Tamper,
        start: at - i64::from(st.drop_hours + 24) * HOUR,
        finding: f,
        ready: true,
    }];
    settle_case(cx, st, raised, out);
}

fn episode<'a>(
    st: &'a mut MeterState,
    kind: AlertKind,
    target: &str,
    start: i64,
) -> &'a mut Episode {
    match st.episodes.iter().position(|e| e.kind == kind) {
        Some(p) => &mut st.episodes[p],
        None => {
            st.episodes.push(Episode::new(kind, target, start));
            st.episodes.last_mut().expect("just pushed")
        }
    }
}

/// Per-reading detectors: those that must answer within an hour of event time.
fn on_accepted(
    cfg: &DetectorConfig,
    st: &mut MeterState,
    r: &Reading,
    t: &Target<'_>,
    out: &mut Vec<Alert>,
) {
    let kw = r.mean_kw();
    let target = Episode::target_id(t).to_string();
    match t.reg {
        None => {
            let ep = episode(st, AlertKind::UnregisteredMeter, &target, r.start());
            let kwh_so_far = ep.excess_kwh + r.kwh;
            // The mean since the case began: steady, so updates come with news, not noise.
            let mean_kw = kwh_so_far * 3600.0 / ((r.ts - ep.start) as f64).max(1.0);
            let score = (0.6 + 0.4 * (mean_kw / 20.0).min(1.0)).min(1.0);
            let f = Finding {
                score,
                est_excess_kw: mean_kw,
                excess_kwh: r.kwh,
                evidence: evidence([
                    ("mean_kw", round(kw, 2)),
                    ("kwh_since_first_seen", round(kwh_so_far, 2)),
                ]),
                summary: format!(
                    "Meter {} is not in the register; {:.1} kWh since {}",
                    r.meter_id,
                    kwh_so_far,
                    gridwatch_core::time::format_rfc3339(ep.start)
                ),
            };
            out.extend(ep.activate(f, r.ts, r.ts, true, cfg.update_interval_s, t));
        }
        Some(reg) if reg.status != SiteStatus::Active && r.kwh > 0.0 => {
            let ep = episode(st, AlertKind::DisconnectedConsumption, &target, r.start());
            let total = ep.excess_kwh + r.kwh;
            let mean_kw = total * 3600.0 / ((r.ts - ep.start) as f64).max(1.0);
            let f = Finding {
                score: (0.7 + 0.3 * (total / 10.0).min(1.0)).min(1.0),
                est_excess_kw: mean_kw,
                excess_kwh: r.kwh,
                evidence: evidence([
                    ("mean_kw", round(kw, 2)),
                    ("kwh_since_first", round(total, 2)),
                ])
                .with("register_status", reg.status.as_str()),
                summary: format!(
                    "{:.1} kWh consumed since {} on a {} site ({} kW now)",
                    total,
                    gridwatch_core::time::format_rfc3339(ep.start),
                    reg.status,
                    fmt_kw(kw)
                ),
            };
            let ready = total >= cfg.disconnected_min_kwh;
            out.extend(ep.activate(f, r.ts, r.ts, ready, cfg.update_interval_s, t));
        }
        Some(_) => {}
    }
}

/// Hourly detectors, run as each hour closes on the meter's watermark.
fn on_closed_hour(
    cfg: &DetectorConfig,
    st: &mut MeterState,
    hour: Option<ClosedHour>,
    t: &Target<'_>,
    peers: Option<&mut Peers>,
    out: &mut Vec<Alert>,
) {
    let Some(hour) = hour else { return };
    let target = Episode::target_id(t).to_string();
    let customer = t.reg.filter(|r| r.role == Role::Customer);
    if let Some(reg) = customer {
        let cx = HourCtx {
            cfg,
            reg,
            hour,
            target: &target,
            t,
        };
        let mut found = Vec::new();
        if reg.customer_class != Some(CustomerClass::Residential) {
            track_step(cx, st);
        }
        capacity(cx, st, &mut found);
        mining(cx, st, &mut found);
        tamper(cx, st, &mut found);
        peer_outlier(cx, st, peers, &mut found);
        settle_case(cx, st, found, out);
    }
    if customer.is_some() {
        st.track_drop(hour.end, cfg.tamper_drop_share, cfg.tamper_drop_min_kw);
    }
    if st.episodes.is_empty() {
        st.learn_baseline(hour.end, hour.kw);
    }
    // Episodes whose condition has been quiet for long enough resolve. Only hours with data
    // count: a communication gap neither confirms nor clears a case.
    let mut k = 0;
    while k < st.episodes.len() {
        let ep = &mut st.episodes[k];
        if ep.last_active > hour.end - HOUR {
            ep.quiet_hours = 0;
        } else {
            ep.quiet_hours += 1;
        }
        if ep.is_over(cfg.resolve_after_s) {
            let mut ep = st.episodes.swap_remove(k);
            let reason = format!("no {} for {} h", ep.kind, ep.quiet_hours);
            out.extend(ep.resolve(hour.end, &reason, t));
        } else {
            k += 1;
        }
    }
}

/// What an hourly detector looks at: the thresholds, the meter's register row, the hour that
/// closed, and who an alert would be about.
#[derive(Clone, Copy)]
struct HourCtx<'a, 'b> {
    cfg: &'a DetectorConfig,
    reg: &'a MeterRecord,
    hour: ClosedHour,
    target: &'a str,
    t: &'a Target<'b>,
}

/// One detector's word on a site in the hour that closed.
struct Raised {
    kind: AlertKind,
    start: i64,
    finding: Finding,
    /// Strong enough to open a case on its own.
    ready: bool,
}

impl HourCtx<'_, '_> {
    /// Records a detector's finding for this hour; [`settle_case`] combines them.
    fn raise(
        &self,
        kind: AlertKind,
        start: i64,
        finding: Finding,
        ready: bool,
        found: &mut Vec<Raised>,
    ) {
        found.push(Raised {
            kind,
            start,
            finding,
            ready,
        });
    }
}

/// The site-level kinds whose evidence combines into one case per site.
fn is_case_kind(kind: AlertKind) -> bool {
    matches!(
        kind,
        AlertKind::CapacityExceeded
            | AlertKind::MiningSignature
            | AlertKind::StepChange
            | AlertKind::Tamper
            | AlertKind::PeerOutlier
    )
}

/// Combines this hour's findings on a site into its one case: the case keeps the kind it
/// opened with (so its `alert_id` holds), its risk is the noisy-OR of every detector that has
/// spoken on it, its estimate the largest of this hour's, and its evidence that of the
/// strongest finding plus each detector's score. A second detector joining is an `update`,
/// never a second alert.
fn settle_case(
    cx: HourCtx<'_, '_>,
    st: &mut MeterState,
    mut found: Vec<Raised>,
    out: &mut Vec<Alert>,
) {
    found.sort_by(|a, b| {
        b.ready
            .cmp(&a.ready)
            .then(b.finding.score.total_cmp(&a.finding.score))
            .then(a.kind.cmp(&b.kind))
    });
    let Some(first) = found.first() else { return };
    let (kind, ready) = (first.kind, first.ready);
    let start = found.iter().map(|r| r.start).min().unwrap_or(first.start);
    let est_kw = found
        .iter()
        .map(|r| r.finding.est_excess_kw)
        .fold(0.0, f64::max);
    let kwh = found
        .iter()
        .map(|r| r.finding.excess_kwh)
        .fold(0.0, f64::max);
    let ep = match st.episodes.iter().position(|e| is_case_kind(e.kind)) {
        Some(p) => &mut st.episodes[p],
        None => {
            st.episodes.push(Episode::new(kind, cx.target, start));
            st.episodes.last_mut().expect("just pushed")
        }
    };
    if !ep.opened && ready && ep.kind != kind {
        ep.rekind(kind, cx.target);
    }
    for r in &found {
        ep.note(r.kind, r.finding.score);
    }
    // Every number this hour's detectors looked at; the strongest finding's win a clash.
    let mut merged = Map::new();
    for r in found.iter_mut().skip(1).rev() {
        merged.append(&mut r.finding.evidence);
    }
    let mut strongest = found.swap_remove(0).finding;
    merged.append(&mut strongest.evidence);
    strongest.evidence = merged;
    let scores: Map<String, Value> = ep
        .detectors
        .iter()
        .map(|(k, s)| (k.as_str().to_string(), json!(round(*s, 3))))
        .collect();
    if ep.detectors.len() > 1 {
        let others: Vec<String> = ep
            .detectors
            .iter()
            .filter(|(k, _)| *k != kind)
            .map(|(k, s)| format!("{k} {s:.2}"))
            .collect();
        strongest.summary = format!(
            "{}. Corroborated by {}",
            strongest.summary,
            others.join(", ")
        );
    }
    strongest
        .evidence
        .insert("detectors".into(), Value::Object(scores));
    let f = Finding {
        score: ep.risk(),
        est_excess_kw: est_kw,
        excess_kwh: kwh,
        ..strongest
    };
    let end = cx.hour.end;
    out.extend(ep.activate(f, end, end, ready, cx.cfg.update_interval_s, cx.t));
}

fn capacity(cx: HourCtx<'_, '_>, st: &mut MeterState, found: &mut Vec<Raised>) {
    let HourCtx { cfg, reg, hour, .. } = cx;
    let Some(permit) = reg.permitted_kw.filter(|p| *p > 0.0) else {
        return;
    };
    if hour.kw <= permit * (1.0 + cfg.capacity_tolerance) {
        st.over_hours = 0;
        return;
    }
    st.over_hours += 1;
    let start = hour.end - i64::from(st.over_hours) * HOUR;
    let ratio = hour.kw / permit;
    let excess = hour.kw - permit;
    let f = Finding {
        score: (0.4 + 0.5 * (ratio - 1.0)).clamp(0.4, 1.0),
        est_excess_kw: excess,
        excess_kwh: excess,
        evidence: evidence([
            ("mean_kw", round(hour.kw, 2)),
            ("permitted_kw", permit),
            ("ratio_to_permit", round(ratio, 2)),
            ("hours_over", f64::from(st.over_hours)),
        ]),
        summary: format!(
            "Demand {} kW, {:.1}× the permitted {} kW, for {} h at {}",
            fmt_kw(hour.kw),
            ratio,
            fmt_kw(permit),
            st.over_hours,
            a_site(reg)
        ),
    };
    let ready = i64::from(st.over_hours) * HOUR >= cfg.capacity_min_duration_s;
    cx.raise(AlertKind::CapacityExceeded, start, f, ready, found);
}

/// A mining rig is a large load that never switches off: the site's demand floor (its lowest
/// hour) rises to the rigs' power and stays there, around the clock. Judged against the
/// site's class, permit, licence and its own history.
fn mining(cx: HourCtx<'_, '_>, st: &mut MeterState, found: &mut Vec<Raised>) {
    let HourCtx { cfg, reg, hour, .. } = cx;
    let residential = reg.customer_class == Some(CustomerClass::Residential);
    let min_kw = if residential {
        cfg.mining_min_kw_residential
    } else {
        cfg.mining_min_kw_other
    };
    let tolerance = 1.0 + cfg.capacity_tolerance;
    let learned = st.floor_hours >= 24;
    let unlicensed_class = residential || reg.customer_class == Some(CustomerClass::Mining);
    let day = st.window(hour.end, 24);
    let fast = st.window(hour.end, cfg.mining_fast_hours);
    // Around the clock: the 24-hour floor carries most of the load.
    let always_on =
        day.filter(|w| w.min_kw >= min_kw && w.min_kw >= cfg.mining_floor_share * w.mean_kw);
    // A farm far beyond any household is named within hours. Elsewhere a large load may be
    // legitimate for a few hours (pumps, shifts, a busy day), so it takes a full day.
    let blatant = fast.filter(|w| residential && w.min_kw >= cfg.mining_fast_kw);
    let Some(w) = always_on.or(blatant) else {
        if residential {
            night_block(cx, st, found);
        } else if let Some(w) = day.filter(|_| learned) {
            step_change(cx, st, w, found);
        }
        return;
    };
    let within_permit = reg.permitted_kw.is_none_or(|p| w.mean_kw <= p * tolerance);
    if reg.licensed_mining && within_permit {
        return;
    }
    let floor_before = st.baseline_floor_kw;
    let stepped = learned && w.min_kw - floor_before >= min_kw.max(floor_before);
    if !(unlicensed_class || !within_permit || stepped) {
        // A flat day (a factory's weekend) at a business that isn't mining by these rules may
        // still carry a smaller step.
        if !residential && learned {
            step_change(cx, st, w, found);
        }
        return;
    }
    // The added load: the rise of the floor, or of the typical hour where the window still
    // holds the hour the rigs came on.
    let (floor_typical, mean_typical) = if learned {
        (floor_before, st.baseline_kw)
    } else if residential {
        (HOUSEHOLD_FLOOR_KW, HOUSEHOLD_KW)
    } else {
        let p = reg.permitted_kw.map_or(0.0, |p| p.min(w.min_kw));
        (p, p)
    };
    let median = st.median_kw(hour.end, w.hours);
    let excess = (w.min_kw - floor_typical)
        .max(median - mean_typical)
        .max(0.0);
    let load_factor = w.mean_kw / w.max_kw;
    let score = (0.6
        + 0.15 * ((load_factor - 0.5) / 0.5).clamp(0.0, 1.0)
        + 0.15 * (excess / 50.0).min(1.0)
        + if always_on.is_some() { 0.1 } else { 0.0 })
    .min(1.0);
    let mut ev = evidence([
        ("load_factor", round(load_factor, 3)),
        ("mean_kw", round(w.mean_kw, 2)),
        ("floor_kw", round(w.min_kw, 2)),
        ("hours", f64::from(w.hours)),
        ("baseline_floor_kw", round(floor_before, 2)),
    ]);
    if let Some((night, day)) = always_on.and_then(|_| st.night_day_kw()) {
        ev.insert("night_day_ratio".into(), json!(round(night / day, 2)));
    }
    ev.insert(
        "permitted_kw".into(),
        reg.permitted_kw.map_or(Value::Null, |p| json!(p)),
    );
    ev.insert("customer_class".into(), json!(class_name(reg)));
    let permit = reg.permitted_kw.map_or("no permit limit".to_string(), |p| {
        format!("permitted {} kW", fmt_kw(p))
    });
    let f = Finding {
        score,
        est_excess_kw: excess,
        excess_kwh: excess,
        evidence: ev,
        summary: format!(
            "Constant {} kW load around the clock for {} h (mean {} kW, load factor {:.2}) at {}, {}",
            fmt_kw(w.min_kw),
            w.hours,
            fmt_kw(w.mean_kw),
            load_factor,
            a_site(reg),
            permit
        ),
    };
    let start = hour.end - i64::from(w.hours) * HOUR;
    cx.raise(AlertKind::MiningSignature, start, f, true, found);
}

/// Signs of a meter made to under-read: energy exported at night (a meter running backwards
/// while no sun shines), voltage and current that carry far more power than the meter
/// registers (where the head-end sends them), or a business whose meter reads exactly zero for
/// a day while the site is active and used to draw a few kW.
fn tamper(cx: HourCtx<'_, '_>, st: &mut MeterState, found: &mut Vec<Raised>) {
    let HourCtx { cfg, reg, hour, .. } = cx;
    if !(4..22).contains(&st.local_hour(hour.end - HOUR)) {
        st.night_export_hours = if hour.export_kw >= cfg.tamper_export_kw {
            st.night_export_hours + 1
        } else {
            0
        };
    }
    st.zero_hours = if hour.kw == 0.0 { st.zero_hours + 1 } else { 0 };
    st.vi_hours = if hour.vi_bad_share >= 0.5 {
        st.vi_hours + 1
    } else {
        0
    };
    let reverse = st.night_export_hours >= 3;
    let starved = st.vi_hours >= cfg.tamper_vi_hours;
    let residential = reg.customer_class == Some(CustomerClass::Residential);
    let zeroed = st.zero_hours >= 24
        && !residential
        && reg.status == SiteStatus::Active
        && st.baseline_kw >= cfg.tamper_zero_baseline_kw;
    if !(reverse || zeroed || starved) {
        return;
    }
    let (pattern, kw) = if reverse {
        (
            "reverse_energy_at_night",
            hour.export_kw.max(st.baseline_kw),
        )
    } else if starved {
        ("energy_below_voltage_current", hour.vi_missing_kw)
    } else {
        ("zero_reads", st.baseline_kw)
    };
    let ev = evidence([
        ("baseline_kw", round(st.baseline_kw, 2)),
        ("export_kw", round(hour.export_kw, 2)),
        ("zero_hours", f64::from(st.zero_hours)),
        ("night_export_hours", f64::from(st.night_export_hours)),
        ("vi_hours", f64::from(st.vi_hours)),
        ("unregistered_kw", round(hour.vi_missing_kw, 2)),
    ])
    .with("pattern", pattern)
    .with("customer_class", class_name(reg));
    let summary = if reverse {
        format!(
            "Meter exports {} kW at night ({} h running): a meter running backwards",
            fmt_kw(hour.export_kw),
            st.night_export_hours
        )
    } else if starved {
        format!(
            "Voltage and current show about {} kW more than the meter registers ({} kW), for {} h: a shunted or bypassed measuring element",
            fmt_kw(hour.vi_missing_kw),
            fmt_kw(hour.kw),
            st.vi_hours
        )
    } else {
        format!(
            "Meter reads exactly zero for {} h at an active {} site that drew {} kW: stopped or bypassed",
            st.zero_hours,
            class_name(reg),
            fmt_kw(st.baseline_kw)
        )
    };
    let f = Finding {
        score: if reverse || starved { 0.9 } else { 0.75 },
        est_excess_kw: kw,
        excess_kwh: kw,
        evidence: ev,
        summary,
    };
    cx.raise(AlertKind::Tamper, hour.end - HOUR, f, true, found);
}

/// The daily CUSUM behind `step_change`'s smaller steps, run as each UTC day closes at every
/// business (whatever else the day showed, weekends included): `ln(floor ÷ floor before)`
/// beyond `step_allowance`, with the floor before frozen when the sum leaves zero.
fn track_step(cx: HourCtx<'_, '_>, st: &mut MeterState) {
    let HourCtx { cfg, hour, .. } = cx;
    if hour.end % 86_400 != 0 || st.floor_hours < 24 {
        return;
    }
    let Some(w) = st.window(hour.end, 24) else {
        return;
    };
    let from = if st.step_cusum > 0.0 {
        f64::from(st.step_from_kw)
    } else {
        st.baseline_floor_kw
    };
    let rise = ((w.min_kw + 1.0) / (from + 1.0)).ln();
    let cusum = (f64::from(st.step_cusum) + rise - cfg.step_allowance).max(0.0);
    if st.step_cusum == 0.0 {
        st.step_from_kw = from as f32;
    }
    st.step_cusum = cusum as f32;
    let added = w.min_kw - from;
    st.step_added_kw = if cusum >= cfg.step_cusum_limit && added >= cfg.mining_min_kw_other {
        added as f32
    } else {
        0.0
    };
}

/// A load that switched on and stayed, while the rest of the site's pattern (shifts, opening
/// hours) may carry on above it — rigs installed at a shop or a factory, inside its permit.
/// Two ways to see it: the 24-hour floor at least doubled against the floor the site learned,
/// by at least `mining_min_kw_other` (named within a day); or, for smaller steps, a daily
/// one-sided CUSUM of `ln(floor ÷ learned floor)` beyond `step_allowance` reaching
/// `step_cusum_limit` (a floor up by half, in about three days). The floor is the robust
/// baseline: the quietest hour of the day carries neither shifts nor weekends.
fn step_change(
    cx: HourCtx<'_, '_>,
    st: &mut MeterState,
    w: crate::meter::Window,
    found: &mut Vec<Raised>,
) {
    let HourCtx { cfg, reg, .. } = cx;
    let before = st.baseline_floor_kw;
    let doubled = w.min_kw - before >= cfg.mining_min_kw_other.max(before);
    let stepped = st.step_added_kw > 0.0;
    if !(doubled || stepped) {
        return;
    }
    let (before, added) = if doubled {
        (before, w.min_kw - before)
    } else {
        (f64::from(st.step_from_kw), f64::from(st.step_added_kw))
    };
    if reg.licensed_mining
        && reg
            .permitted_kw
            .is_some_and(|p| w.mean_kw <= p * (1.0 + cfg.capacity_tolerance))
    {
        return;
    }
    let hour = cx.hour;
    let ev = evidence([
        ("floor_kw", round(w.min_kw, 2)),
        ("baseline_floor_kw", round(before, 2)),
        ("added_kw", round(added, 2)),
        ("mean_kw", round(w.mean_kw, 2)),
        ("baseline_kw", round(st.baseline_kw, 2)),
        ("cusum", round(f64::from(st.step_cusum), 2)),
    ])
    .with("customer_class", class_name(reg));
    let f = Finding {
        score: (0.55
            + 0.3 * (added / before.max(1.0) / 4.0).min(1.0)
            + 0.15 * (added / 100.0).min(1.0))
        .min(1.0),
        est_excess_kw: added,
        excess_kwh: added,
        evidence: ev,
        summary: format!(
            "Always-on load rose from {} kW to {} kW (+{} kW) and stayed at {}",
            fmt_kw(before),
            fmt_kw(w.min_kw),
            fmt_kw(added),
            a_site(reg)
        ),
    };
    cx.raise(AlertKind::StepChange, hour.end - 24 * HOUR, f, true, found);
}

/// A miner that runs only in a nightly window (the cheap tariff) or another fixed block of
/// hours: at a residence, a flat block of at least `mining_min_kw_residential` for at least
/// `mining_block_hours`, at the same hours on two consecutive days, far above the rest of the
/// day. EV charging sessions are shorter; thermostat-driven heating is not flat.
fn night_block(cx: HourCtx<'_, '_>, st: &mut MeterState, found: &mut Vec<Raised>) {
    let HourCtx { cfg, reg, hour, .. } = cx;
    let level = cfg.mining_min_kw_residential;
    let block = st
        .recurring_block(hour.end, level, cfg.mining_block_flatness)
        .filter(|(_, hours, block_kw, outside_kw)| {
            *hours >= cfg.mining_block_hours && outside_kw * 2.0 <= *block_kw
        });
    // A duty cycle (on, off, on…) for most of two days: more hours at a mining level than
    // any real household in the trial data shows (at most 9 a day, two days running).
    let (today, before, high_kw, low_kw) = st.high_hours(level);
    let duty = (today >= cfg.mining_duty_hours
        && before >= cfg.mining_duty_hours
        && low_kw * 2.0 <= high_kw)
        .then_some((today, before, high_kw, low_kw));
    let (start, hours, block_kw, outside_kw, pattern) = match (block, duty) {
        (Some((start, hours, b, o)), _) => (start, hours, b, o, "recurring_block"),
        (None, Some((today, _, b, o))) => (hour.end - 24 * HOUR, today, b, o, "duty_cycle"),
        (None, None) => return,
    };
    if reg.licensed_mining
        && reg
            .permitted_kw
            .is_some_and(|p| block_kw <= p * (1.0 + cfg.capacity_tolerance))
    {
        return;
    }
    let excess = (block_kw - outside_kw).max(0.0);
    let local_start = st.local_hour(start);
    let mut ev = evidence([
        ("block_kw", round(block_kw, 2)),
        ("outside_kw", round(outside_kw, 2)),
        ("block_hours", f64::from(hours)),
        ("block_start_local_hour", local_start as f64),
    ]);
    ev.insert(
        "permitted_kw".into(),
        reg.permitted_kw.map_or(Value::Null, |p| json!(p)),
    );
    ev.insert("customer_class".into(), json!(class_name(reg)));
    ev.insert("pattern".into(), json!(pattern));
    let f = Finding {
        score: (0.6 + 0.2 * (excess / 30.0).min(1.0) + 0.2 * f64::from(hours.min(12)) / 12.0)
            .min(1.0),
        est_excess_kw: excess,
        // Energy counts for the hours inside the block only.
        excess_kwh: if hour.end - HOUR >= start && hour.end <= start + i64::from(hours) * HOUR {
            excess
        } else {
            0.0
        },
        evidence: ev,
        summary: if pattern == "duty_cycle" {
            format!(
                "Flat {} kW switching on and off, {} h a day two days running, {} kW between, at {}",
                fmt_kw(block_kw),
                hours,
                fmt_kw(outside_kw),
                a_site(reg)
            )
        } else {
            format!(
                "Flat {} kW for {} h from {:02}:00 (local standard time) two days running, {} kW the rest of the day, at {}",
                fmt_kw(block_kw),
                hours,
                local_start,
                fmt_kw(outside_kw),
                a_site(reg)
            )
        },
    };
    cx.raise(AlertKind::MiningSignature, start, f, true, found);
}

/// A customer that has come to draw far more than its peers say it would — more than its own
/// usual standing among the customers of its class on its feeder, day after day — with the
/// added load always on. Judged as each UTC day closes; raised every hour while it holds.
fn peer_outlier(
    cx: HourCtx<'_, '_>,
    st: &mut MeterState,
    peers: Option<&mut Peers>,
    found: &mut Vec<Raised>,
) {
    let HourCtx { cfg, reg, hour, .. } = cx;
    let Some(class) = reg.customer_class else {
        return;
    };
    if hour.end % 86_400 == 0 {
        let day = st.window(hour.end, 24).map(|w| DayView {
            mean_kw: w.mean_kw,
            floor_kw: w.min_kw,
            usual_floor_kw: st.baseline_floor_kw,
            may_learn: st.episodes.is_empty(),
        });
        let stats = day.zip(peers).and_then(|(d, p)| {
            p.observe(class, hour.end / 86_400 - 1, d.mean_kw, cfg.peer_min_peers)
                .map(|s| (d, s))
        });
        match stats {
            Some((d, s)) => st.peer.judge(d, s, cfg),
            None => st.peer.added_kw = 0.0,
        }
    }
    let p = st.peer;
    let added = f64::from(p.added_kw);
    if added <= 0.0
        || (reg.licensed_mining
            && reg
                .permitted_kw
                .is_some_and(|k| hour.kw <= k * (1.0 + cfg.capacity_tolerance)))
    {
        return;
    }
    let usual = f64::from(p.usual).exp();
    let ev = evidence([
        ("ratio_to_peers", round(f64::from(p.ratio), 2)),
        ("usual_ratio_to_peers", round(usual, 2)),
        ("peer_median_kw", round(f64::from(p.peer_kw), 2)),
        ("peers", f64::from(p.peers)),
        ("robust_z", round(f64::from(p.z), 1)),
        ("cusum", round(f64::from(p.cusum), 2)),
        ("added_kw", round(added, 2)),
    ])
    .with("customer_class", class_name(reg));
    let f = Finding {
        score: (0.5
            + 0.25 * (f64::from(p.cusum) / (2.0 * cfg.peer_cusum_limit)).min(1.0)
            + 0.2 * (added / 5.0).min(1.0))
        .min(1.0),
        est_excess_kw: added,
        excess_kwh: added,
        evidence: ev,
        summary: format!(
            "Draws {:.1}× the median of its {} {} peers on feeder {} (usually {:.1}×): +{} kW that stays on, day and night",
            p.ratio,
            p.peers,
            class_name(reg),
            reg.feeder_id,
            usual,
            fmt_kw(added)
        ),
    };
    let start = hour.end - 24 * HOUR;
    cx.raise(AlertKind::PeerOutlier, start, f, true, found);
}

/// Hours from UTC to the site's local time for night and day: solar time from its longitude
/// (what the sun, and so the diurnal cycle, follows), else the standard time of its register
/// `timezone`, else `default`. Never daylight saving: DST moves clocks, not loads' physics, and
/// a shift that jumped twice a year would look like a step in every site's pattern.
fn local_shift_h(reg: &MeterRecord, default: i8) -> i8 {
    if let Some(lon) = reg.lon {
        return (lon / 15.0).round() as i8;
    }
    reg.timezone
        .as_deref()
        .and_then(|z| gridwatch_core::time::standard_offset_hours(z).ok())
        .map_or(default, |h| h as i8)
}

/// "a residential site", "an industrial site": for summaries.
fn a_site(reg: &MeterRecord) -> String {
    let class = class_name(reg);
    let article = if class.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {class} site")
}

fn class_name(reg: &MeterRecord) -> &'static str {
    reg.customer_class.map_or("unclassified", |c| c.as_str())
}

fn fmt_kw(kw: f64) -> String {
    if kw >= 10.0 {
        format!("{kw:.0}")
    } else {
        format!("{kw:.1}")
    }
}

fn evidence<const N: usize>(pairs: [(&str, f64); N]) -> Map<String, Value> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect()
}

trait With {
    fn with(self, k: &str, v: &str) -> Self;
}

impl With for Map<String, Value> {
    fn with(mut self, k: &str, v: &str) -> Self {
        self.insert(k.into(), json!(v));
        self
    }
}
