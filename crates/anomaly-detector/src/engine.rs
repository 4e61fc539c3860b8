//! The detection engine: an I/O-free state machine. Feed it register updates and readings in
//! any order; it advances on event time (per meter) and returns alerts. No clock, no files,
//! no Kafka: the same inputs give the same alerts, with the same ids, wherever it runs.
//!
//! The engine routes: a reading goes to its meter's series, closed hours go to the detectors
//! ([`crate::detectors`]), their findings to the site's case ([`crate::case`]), and a feeder
//! head's readings close the feeder's balanced hours. It holds each detector's state for it.

use crate::case::{self, Settle};
use crate::config::{Detectors, EngineConfig};
use crate::crowd::Crowd;
use crate::detectors::bypass::{BypassDetector, DropState, Member, Unmetered};
use crate::detectors::capacity::CapacityState;
use crate::detectors::feeder::{BalanceState, FeederId, Side, Silent, WINDOW};
use crate::detectors::generation::GenerationState;
use crate::detectors::mining::Flat;
use crate::detectors::peer::{PeerTrack, Peers};
use crate::detectors::register::RegisterChecks;
use crate::detectors::season::Season;
use crate::detectors::split::{Parts, SplitTrack};
use crate::detectors::step::StepState;
use crate::detectors::tamper::TamperState;
use crate::detectors::{ConfigError, HourCx, SiteDetector};
use crate::episode::{Episode, Target};
use crate::meter_index::MeterIndex;
use crate::order::Order;
use crate::series::{Admitted, Closed, ClosedHour, Series, HOUR};
use gridwatch_core::events::ReadingUse;
use gridwatch_core::{
    Alert, AlertKind, AlertStatus, Explanation, Holiday, MeterRecord, Outcome, Quality, Reading,
    RegistryUpdate, Role, Verdict, WeatherObs,
};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// A meter's state: its demand series, each detector's part, and its episodes (the site's
/// case, and the register checks').
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MeterState {
    pub series: Series,
    pub capacity: CapacityState,
    pub step: StepState,
    pub tamper: TamperState,
    pub generation: GenerationState,
    pub peer: PeerTrack,
    pub split: SplitTrack,
    pub drop: DropState,
    pub episodes: Vec<Episode>,
    /// The site's last case an inspector closed, and the load it was closed at (boxed: few
    /// sites have one, and every meter carries the pointer).
    pub closure: Option<Box<Closure>>,
}

/// An inspector's verdict on a site's case: `confirmed` or `cleared`, when, at what load, and
/// which detectors had spoken on it. While the site's load stays as it was, those detectors'
/// findings at that load are not news; a rise beyond it, or another detector, opens a new case
/// that says the site was closed before and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Closure {
    pub status: AlertStatus,
    pub at: i64,
    pub level_kw: f64,
    pub kinds: Vec<AlertKind>,
    pub explained_by: Option<Explanation>,
}

impl Closure {
    /// The same load the inspector saw: at most a quarter (and 1 kW) above it.
    fn covers(&self, r: &crate::case::Raised) -> bool {
        self.kinds.contains(&r.kind) && r.finding.est_excess_kw <= self.level_kw * 1.25 + 1.0
    }

    fn words(&self) -> String {
        let date = gridwatch_core::time::format_rfc3339(self.at);
        let date = date.get(..10).unwrap_or(&date);
        match (self.status, self.explained_by) {
            (AlertStatus::Cleared, Some(e)) => format!(
                "the site was cleared by inspection on {date} ({}, {} kW): this is more",
                e.as_str().replace('_', " "),
                crate::detectors::fmt_kw(self.level_kw)
            ),
            (AlertStatus::Cleared, None) => format!(
                "the site was cleared by inspection on {date} at {} kW: this is more",
                crate::detectors::fmt_kw(self.level_kw)
            ),
            _ => format!("unauthorized use was confirmed here on {date}"),
        }
    }
}

impl MeterState {
    fn new() -> MeterState {
        MeterState {
            series: Series::new(),
            capacity: CapacityState::default(),
            step: StepState::default(),
            tamper: TamperState::default(),
            generation: GenerationState::default(),
            peer: PeerTrack::default(),
            split: SplitTrack::default(),
            drop: DropState::default(),
            episodes: Vec::new(),
            closure: None,
        }
    }
}

pub(crate) struct Slot {
    pub reg: Option<MeterRecord>,
    /// The feeder this meter measures (a head) or belongs to (a customer).
    pub feeder: Option<u32>,
    /// Its region (the register's `region`, else its feeder), for the season.
    pub region: Option<u32>,
    /// While unregistered: the crowds ([`Crowd`]) whose caps it counts toward.
    pub held: Option<Held>,
    pub st: MeterState,
}

/// The crowds an unregistered meter with a slot counts toward: its named feeder's, if that
/// feeder is registered, and its region's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Held {
    pub feeder: Option<u32>,
    pub region: u32,
}

/// A feeder's state: its balance, its customers' peer groups, and its imbalance episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FeederState {
    pub balance: BalanceState,
    pub peers: Peers,
    pub parts: Parts,
    pub episode: Option<Episode>,
}

pub(crate) struct FeederSlot {
    pub id: String,
    /// Registered customer meters on the feeder (engine slots), in registration order.
    pub members: Vec<u32>,
    pub st: FeederState,
}

pub struct Engine {
    pub(crate) cfg: EngineConfig,
    pub(crate) d: Detectors,
    /// Meter ids to slots ([`MeterIndex`]).
    pub(crate) index: MeterIndex,
    /// Site ids to the slots of their registered meters, for inspection outcomes: derived from
    /// the slots' register rows, rebuilt when an outcome needs it after a row changed (`None`).
    /// Not in the checkpoint.
    pub(crate) sites: Option<FxHashMap<Box<str>, Vec<u32>>>,
    pub(crate) slots: Vec<Slot>,
    pub(crate) feeder_index: FxHashMap<Box<str>, u32>,
    pub(crate) feeders: Vec<FeederSlot>,
    pub(crate) region_index: FxHashMap<Box<str>, u32>,
    pub(crate) regions: Vec<Season>,
    pub(crate) crowd_index: FxHashMap<Box<str>, u32>,
    pub(crate) crowds: Vec<Crowd>,
    /// Register rows waiting for their `effective_from`, per meter slot, earliest first.
    pub(crate) pending: FxHashMap<u32, Vec<MeterRecord>>,
    /// Readings held for the order window.
    pub(crate) order: Order,
    /// Inspection outcomes waiting for the stream to reach their `visited_at`, earliest first.
    pub(crate) outcomes: Vec<Outcome>,
    /// Every outcome taken, by (target, visit): read again (a restart reads the outcomes topic
    /// from its start), it is not applied twice.
    pub(crate) outcomes_seen: std::collections::BTreeSet<(String, i64)>,
}

impl Engine {
    /// An engine with these settings; fails naming the first key it refuses.
    pub fn new(cfg: EngineConfig) -> Result<Engine, ConfigError> {
        let d = cfg.build()?;
        Ok(Engine {
            d,
            index: MeterIndex::default(),
            sites: None,
            slots: Vec::new(),
            feeder_index: FxHashMap::default(),
            feeders: Vec::new(),
            region_index: FxHashMap::default(),
            regions: Vec::new(),
            crowd_index: FxHashMap::default(),
            crowds: Vec::new(),
            pending: FxHashMap::default(),
            order: Order::new(cfg.order_window_s),
            outcomes: Vec::new(),
            outcomes_seen: Default::default(),
            cfg,
        })
    }

    /// Meters tracked (registered or seen).
    pub fn meters(&self) -> usize {
        self.slots.len()
    }

    /// Mean detection state per meter, for memory budgeting: its fixed part, plus what its
    /// open hours, estimates and episodes hold on the heap now (the register row and the id
    /// index are not counted).
    pub fn state_bytes_per_meter(&self) -> usize {
        let heap: usize = self
            .slots
            .iter()
            .map(|s| {
                s.st.series.heap_bytes() + s.st.episodes.capacity() * std::mem::size_of::<Episode>()
            })
            .sum();
        let held = self.order.heap_bytes();
        std::mem::size_of::<Slot>() + (heap + held) / self.slots.len().max(1)
    }

    /// What the meter index costs per meter: the id and its share of the hash table.
    pub fn index_bytes_per_meter(&self) -> usize {
        self.index.bytes_per_meter()
    }

    fn slot_of(&mut self, meter_id: &str) -> usize {
        if let Some(i) = self.index.get(meter_id) {
            return i;
        }
        let i = self.slots.len();
        self.index.insert(meter_id);
        self.slots.push(Slot {
            reg: None,
            feeder: None,
            region: None,
            held: None,
            st: MeterState::new(),
        });
        i
    }

    fn crowd_of(&mut self, key: String) -> u32 {
        if let Some(&c) = self.crowd_index.get(key.as_str()) {
            return c;
        }
        let c = self.crowds.len() as u32;
        self.crowd_index.insert(key.as_str().into(), c);
        self.crowds.push(Crowd::new(key));
        c
    }

    /// A registered feeder's region: its first customer's (the register's `region`, else the
    /// feeder itself).
    fn region_name_of(&self, f: u32) -> String {
        let fd = &self.feeders[f as usize];
        fd.members
            .first()
            .and_then(|&m| self.slots[m as usize].region)
            .and_then(|k| {
                self.region_index
                    .iter()
                    .find(|(_, &v)| v == k)
                    .map(|(name, _)| name.to_string())
            })
            .unwrap_or_else(|| fd.id.clone())
    }

    /// A reading from a meter never seen and not in the register: a slot of its own while its
    /// crowds have room (`Some`), else folded into the narrowest full crowd's case (`None`).
    /// A `feeder_id` on the reading only picks the crowd: it never joins the meter to the
    /// feeder's balance or peers.
    fn admit_unregistered(&mut self, r: &Reading, out: &mut Vec<Alert>) -> Option<usize> {
        let feeder = r
            .feeder_id
            .as_deref()
            .and_then(|f| self.feeder_index.get(f).copied());
        let region = feeder.map(|f| self.region_name_of(f));
        let fc = feeder.map(|f| self.crowd_of(format!("feeder {}", self.feeders[f as usize].id)));
        let rc = self.crowd_of(match &region {
            Some(g) => format!("region {g}"),
            None => "unknown feeder".to_string(),
        });
        let (cap_f, cap_r) = (
            self.cfg.max_unregistered_per_feeder,
            self.cfg.max_unregistered_per_region,
        );
        let feeder_full = fc.is_some_and(|c| self.crowds[c as usize].held >= cap_f);
        let region_full = self.crowds[rc as usize].held >= cap_r;
        if !feeder_full && !region_full {
            for c in fc.into_iter().chain([rc]) {
                self.crowds[c as usize].held += 1;
            }
            let i = self.slot_of(&r.meter_id);
            self.slots[i].held = Some(Held {
                feeder: fc,
                region: rc,
            });
            return Some(i);
        }
        let (c, cap) = match fc {
            Some(c) if feeder_full => (c, cap_f),
            _ => (rc, cap_r),
        };
        let feeder_id = feeder.map(|f| self.feeders[f as usize].id.as_str());
        out.extend(self.crowds[c as usize].fold(
            r,
            feeder_id,
            region.as_deref(),
            cap,
            self.cfg.update_interval_s,
        ));
        None
    }

    fn feeder_of(&mut self, feeder_id: &str) -> u32 {
        if let Some(&f) = self.feeder_index.get(feeder_id) {
            return f;
        }
        let f = self.feeders.len() as u32;
        self.feeder_index.insert(feeder_id.into(), f);
        self.feeders.push(FeederSlot {
            id: feeder_id.to_string(),
            members: Vec::new(),
            st: FeederState {
                balance: BalanceState::new(),
                peers: Peers::default(),
                parts: Parts::default(),
                episode: None,
            },
        });
        f
    }

    fn region_of(&mut self, region: &str) -> u32 {
        if let Some(&k) = self.region_index.get(region) {
            return k;
        }
        let k = self.regions.len() as u32;
        self.region_index.insert(region.into(), k);
        self.regions.push(Season::default());
        k
    }

    /// Applies a register change. Each detector says which of its evidence the change makes
    /// moot (a raised permit, a mining licence, a registration, a reactivation); that evidence
    /// is withdrawn, and a case left without any resolves.
    ///
    /// A change to a registered meter's row that carries an `effective_from` its readings have
    /// not reached waits, and applies before the first reading at or after that time: wherever
    /// the row falls in the stream (read before the readings, between them, or again after a
    /// restart), it takes effect at the same point of the meter's data. A meter's first row
    /// applies at once (a meter in the register is never taken for an unregistered one); a
    /// delete applies at once and drops the meter's waiting rows (of a meter the engine has
    /// never seen, it does nothing).
    pub fn apply_registry(&mut self, update: RegistryUpdate, out: &mut Vec<Alert>) {
        let (meter_id, reg) = match update {
            RegistryUpdate::Upsert(r) => (r.meter_id.clone(), Some(r)),
            // A meter this engine never had (its readings go to another partition's) stays so.
            RegistryUpdate::Delete { meter_id } if !self.index.contains(meter_id.as_str()) => {
                return
            }
            RegistryUpdate::Delete { meter_id } => (meter_id, None),
        };
        let i = self.slot_of(&meter_id);
        match &reg {
            Some(r) => {
                let slot = &self.slots[i];
                if let Some(t) = r.effective_from {
                    if slot.reg.is_some() && slot.st.series.max_ts() < t {
                        self.hold(i as u32, reg.expect("matched Some"));
                        return;
                    }
                }
            }
            None => {
                self.pending.remove(&(i as u32));
            }
        }
        let at = self.slots[i].st.series.max_ts();
        self.apply_row(i, &meter_id, reg, at, out);
    }

    /// Keeps a row until its meter's readings reach its `effective_from`. A row with the same
    /// time as one waiting replaces it (a corrected row); one already waiting is kept once (a
    /// register read again after a restart).
    fn hold(&mut self, i: u32, row: MeterRecord) {
        let rows = self.pending.entry(i).or_default();
        match rows.binary_search_by_key(&row.effective_from, |r| r.effective_from) {
            Ok(p) => rows[p] = row,
            Err(p) => rows.insert(p, row),
        }
    }

    /// Applies the waiting rows of slot `i` whose time a reading at `ts` has reached, each at
    /// its own `effective_from`.
    fn apply_due(&mut self, i: usize, ts: i64, out: &mut Vec<Alert>) {
        let key = i as u32;
        let Some(rows) = self.pending.get_mut(&key) else {
            return;
        };
        let n = rows.partition_point(|r| r.effective_from.is_some_and(|t| t <= ts));
        if n == 0 {
            return;
        }
        let due: Vec<MeterRecord> = rows.drain(..n).collect();
        if rows.is_empty() {
            self.pending.remove(&key);
        }
        for row in due {
            let at = row.effective_from.unwrap_or(ts);
            let meter_id = row.meter_id.clone();
            self.apply_row(i, &meter_id, Some(row), at, out);
        }
    }

    /// Puts `reg` in force for slot `i` (the meter `meter_id`); withdrawals are stamped `at`.
    fn apply_row(
        &mut self,
        i: usize,
        meter_id: &str,
        reg: Option<MeterRecord>,
        at: i64,
        out: &mut Vec<Alert>,
    ) {
        if reg.is_some() {
            if let Some(h) = self.slots[i].held.take() {
                for c in h.feeder.into_iter().chain([h.region]) {
                    self.crowds[c as usize].held -= 1;
                }
            }
        }
        // Keep each feeder's customer meters, for the completeness of its balance, its peers
        // and its suspects; a row re-sent unchanged (a whole register reloaded) moves nothing.
        let customer =
            |r: &Option<MeterRecord>| r.as_ref().is_some_and(|r| r.role == Role::Customer);
        let was_customer = customer(&self.slots[i].reg);
        let feeder = reg.as_ref().map(|r| self.feeder_of(&r.feeder_id));
        let region = reg
            .as_ref()
            .map(|r| self.region_of(r.region.as_deref().unwrap_or(&r.feeder_id)));
        let old_membership = self.slots[i].feeder.filter(|_| was_customer);
        let new_membership = feeder.filter(|_| customer(&reg));
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
        let d = &self.d;
        let slot = &mut self.slots[i];
        slot.st.series.local_shift_h = reg
            .as_ref()
            .map_or(d.default_shift_h, |r| local_shift_h(r, d.default_shift_h));
        let old = std::mem::replace(&mut slot.reg, reg);
        if old.as_ref().map(|r| &r.site_id) != slot.reg.as_ref().map(|r| &r.site_id) {
            self.sites = None;
        }
        slot.feeder = feeder;
        slot.region = region;
        let (old, new) = (old.as_ref(), slot.reg.as_ref());
        let st = &mut slot.st;
        let mut settled = Vec::new();
        settled.extend(
            d.capacity
                .on_register(old, new, &mut st.capacity)
                .map(|why| (AlertKind::CapacityExceeded, why)),
        );
        settled.extend(
            d.mining
                .on_register(old, new, &mut ())
                .map(|why| (AlertKind::MiningSignature, why)),
        );
        settled.extend(
            d.step
                .on_register(old, new, &mut st.step)
                .map(|why| (AlertKind::StepChange, why)),
        );
        settled.extend(
            d.generation
                .on_register(old, new, &mut st.generation)
                .map(|why| (AlertKind::UnregisteredGeneration, why)),
        );
        settled.extend(RegisterChecks::on_register(new));
        let t = Target {
            meter_id: Some(meter_id),
            reg: new,
            feeder_hint: None,
        };
        for (kind, reason) in settled {
            case::withdraw(&mut st.episodes, kind, reason, at, &t, out);
        }
    }

    /// Takes a region's public holiday (`region` as for the weather): businesses stand as on a
    /// Sunday, which neither starts a bypass's drop clock nor teaches them their normal.
    pub fn on_holiday(&mut self, h: &Holiday) {
        let k = self.region_of(&h.region);
        self.regions[k as usize].holiday(h.date);
    }

    /// Takes a region's outdoor temperature for an hour (`region` as the register names it, or
    /// the feeder of sites without one). Weather explains heating only for days judged after
    /// it arrives: load it ahead of the readings it covers.
    pub fn on_weather(&mut self, w: &WeatherObs) {
        let k = self.region_of(&w.region);
        self.regions[k as usize].weather(w.ts, w.temp_c);
    }

    /// Takes one validated reading through the order window (`order_window_s`): it is judged
    /// now, or held and judged once the window has passed it, and so may release earlier ones.
    /// `seen` hears of every reading judged, with the `tag` it was offered with (a line, an
    /// offset) and what the engine made of it; alerts go to `out`. With no window, this is
    /// [`Engine::on_reading`].
    pub fn offer(
        &mut self,
        r: &Reading,
        tag: u64,
        out: &mut Vec<Alert>,
        seen: &mut impl FnMut(u64, &Reading, ReadingUse),
    ) {
        if self.order.hold(r, tag) {
            self.judge_held(Order::due, out, seen);
        } else {
            let used = self.on_reading(r, out);
            seen(tag, r, used);
        }
    }

    /// Judges every reading the order window still holds (the end of a finite input).
    pub fn release_held(
        &mut self,
        out: &mut Vec<Alert>,
        seen: &mut impl FnMut(u64, &Reading, ReadingUse),
    ) {
        self.judge_held(Order::next, out, seen);
    }

    /// Judges the held readings `take` hands out, in its order.
    fn judge_held(
        &mut self,
        take: fn(&mut Order) -> Option<(u64, Reading)>,
        out: &mut Vec<Alert>,
        seen: &mut impl FnMut(u64, &Reading, ReadingUse),
    ) {
        while let Some((tag, r)) = take(&mut self.order) {
            let used = self.on_reading(&r, out);
            seen(tag, &r, used);
        }
    }

    /// Readings the order window holds.
    /// Takes an inspection outcome: it applies when the stream reaches its `visited_at` (at
    /// once if it already has), so a backtest applies each at its time and a replay applies it
    /// where the live run did.
    pub fn add_outcome(&mut self, o: Outcome) {
        if !self
            .outcomes_seen
            .insert((o.target_id.clone(), o.visited_at))
        {
            return;
        }
        let at = self
            .outcomes
            .partition_point(|p| p.visited_at <= o.visited_at);
        self.outcomes.insert(at, o);
    }

    /// Applies the outcomes due by event time `t` (`i64::MAX`: all, at the end of a run).
    pub fn apply_outcomes_until(&mut self, t: i64, out: &mut Vec<Alert>) {
        let due = self.outcomes.partition_point(|o| o.visited_at <= t);
        let due: Vec<Outcome> = self.outcomes.drain(..due).collect();
        for o in &due {
            self.apply_outcome(o, out);
        }
    }

    /// Outcomes waiting for their time.
    pub fn outcomes_pending(&self) -> usize {
        self.outcomes.len()
    }

    fn apply_outcome(&mut self, o: &Outcome, out: &mut Vec<Alert>) {
        let at = o.visited_at;
        if let Some(&f) = self.feeder_index.get(o.target_id.as_str()) {
            let fd = &mut self.feeders[f as usize];
            let t = Target {
                meter_id: None,
                reg: None,
                feeder_hint: Some(&fd.id),
            };
            match o.verdict {
                Verdict::NoAccess => {
                    if let Some(ep) = &mut fd.st.episode {
                        out.extend(ep.no_access(at, &t));
                    }
                }
                _ => {
                    if let Some(mut ep) = fd.st.episode.take() {
                        out.extend(ep.close(o, &t));
                    }
                }
            }
            return;
        }
        // The target's meters: by the site index, or the meter's own slot.
        let sites = self.sites.get_or_insert_with(|| {
            let mut m: FxHashMap<Box<str>, Vec<u32>> = FxHashMap::default();
            for (i, s) in self.slots.iter().enumerate() {
                if let Some(r) = &s.reg {
                    m.entry(r.site_id.as_str().into())
                        .or_default()
                        .push(i as u32);
                }
            }
            m
        });
        let mut targets: Vec<u32> = sites.get(o.target_id.as_str()).cloned().unwrap_or_default();
        if let Some(i) = self.index.position(&o.target_id) {
            if !targets.contains(&(i as u32)) {
                targets.push(i as u32);
            }
        }
        targets.sort_unstable();
        for &i in &targets {
            let slot = &mut self.slots[i as usize];
            if !slot
                .reg
                .as_ref()
                .is_some_and(|r| r.site_id == o.target_id || r.meter_id == o.target_id)
            {
                continue;
            }
            let reg = slot.reg.as_ref();
            let meter_id = reg.map(|r| r.meter_id.as_str());
            let t = Target {
                meter_id,
                reg,
                feeder_hint: None,
            };
            let st = &mut slot.st;
            let Some(p) = st.episodes.iter().position(|e| e.opened) else {
                continue;
            };
            if o.verdict == Verdict::NoAccess {
                out.extend(st.episodes[p].no_access(at, &t));
                continue;
            }
            let mut ep = st.episodes.swap_remove(p);
            let level_kw =
                o.kw.unwrap_or(0.0)
                    .max(ep.emitted_kw)
                    .max(ep.last.as_ref().map_or(0.0, |l| l.est_excess_kw));
            let mut kinds: Vec<AlertKind> = ep.detectors.iter().map(|(k, _)| *k).collect();
            kinds.push(ep.kind);
            let closed = ep.close(o, &t);
            if let Some(a) = &closed {
                st.closure = Some(Box::new(Closure {
                    status: a.status,
                    at,
                    level_kw,
                    kinds,
                    explained_by: o.explained_by,
                }));
            }
            out.extend(closed);
        }
    }

    pub fn held(&self) -> usize {
        self.order.len()
    }

    /// Takes one validated reading and judges it now, whatever the order window; appends any
    /// alerts it raises to `out`, and says what it made of the reading.
    pub fn on_reading(&mut self, r: &Reading, out: &mut Vec<Alert>) -> ReadingUse {
        if self.outcomes.first().is_some_and(|o| o.visited_at <= r.ts) {
            self.apply_outcomes_until(r.ts, out);
        }
        let i = match self.index.get(r.meter_id.as_str()) {
            Some(i) => i,
            None => match self.admit_unregistered(r, out) {
                Some(i) => i,
                None => return ReadingUse::Counted,
            },
        };
        if !self.pending.is_empty() {
            self.apply_due(i, r.ts, out);
        }
        let (cfg, d) = (&self.cfg, &self.d);
        let Slot {
            reg,
            feeder,
            region,
            st,
            ..
        } = &mut self.slots[i];
        let regions = &mut self.regions;
        let t = Target {
            meter_id: Some(&r.meter_id),
            reg: reg.as_ref(),
            feeder_hint: r.feeder_id.as_deref(),
        };
        let feeders = &mut self.feeders;
        let horizon = cfg.lateness_horizon_s;
        // A newer reading may put the oldest open hours beyond the horizon: they close first.
        st.series.advance(r);
        while let Some(closed) = st.series.pop_closed(horizon) {
            let (peers, split) = feeder_parts(feeders, *feeder);
            let season = region.map(|k| &mut regions[k as usize]);
            on_closed_hour(cfg, d, st, closed, &t, (peers, split, season), out);
        }
        let admitted = st.series.admit(r, horizon);
        let mut balance_of = None;
        if matches!(
            admitted,
            Admitted::Counted | Admitted::Corrected(_) | Admitted::BeforeStart
        ) {
            if let (Some(v), Some(a), Quality::Actual) = (r.voltage_v, r.current_a, r.quality) {
                // Energy registered either way counts: a reversed meter still registers
                // what flows (night export catches it).
                let registered = r.kwh + r.kwh_export.unwrap_or(0.0);
                let limits = d.tamper.vi_limits();
                st.series
                    .add_vi(r.ts, r.interval_s, registered, (v, a), limits);
            }
            out.extend(
                d.register
                    .on_reading(&mut st.episodes, r, &t, cfg.update_interval_s),
            );
            if let Some(f) = *feeder {
                balance_of = Some(f as usize);
                let side = if reg.as_ref().is_some_and(|r| r.role == Role::FeederHead) {
                    Side::Head
                } else {
                    Side::Customers
                };
                let balance = &mut feeders[f as usize].st.balance;
                // Net energy on both sides: a PV customer's export feeds its neighbours, and a
                // head whose feeder sends power upstream reports it as export.
                if let Admitted::Corrected(old) = admitted {
                    let net = f64::from(old.kwh) - f64::from(old.export_kwh);
                    balance.remove_estimate(side, old.ts, old.interval_s, net);
                }
                let net = r.kwh - r.kwh_export.unwrap_or(0.0);
                balance.add(side, r.ts, r.interval_s, net, r.quality);
            }
            while let Some(closed) = st.series.pop_closed(horizon) {
                let (peers, split) = feeder_parts(feeders, *feeder);
                let season = region.map(|k| &mut regions[k as usize]);
                on_closed_hour(cfg, d, st, closed, &t, (peers, split, season), out);
            }
        }
        if let Some(f) = balance_of {
            balance_feeder(cfg, d, &mut feeders[f], &mut self.slots, out);
        }
        admitted.reading_use()
    }
}

/// A feeder's per-feeder state of the site detectors: its peer groups and its split-farm parts.
fn feeder_parts(
    feeders: &mut [FeederSlot],
    feeder: Option<u32>,
) -> (Option<&mut Peers>, Option<&mut Parts>) {
    match feeder {
        Some(f) => {
            let st = &mut feeders[f as usize].st;
            (Some(&mut st.peers), Some(&mut st.parts))
        }
        None => (None, None),
    }
}

/// The site detectors, run as each of a meter's hours closes on its watermark; then the
/// slow baselines learn (while no episode runs) and quiet episodes resolve.
fn on_closed_hour(
    cfg: &EngineConfig,
    d: &Detectors,
    st: &mut MeterState,
    closed: Closed<ClosedHour>,
    t: &Target<'_>,
    (peers, split, season): (Option<&mut Peers>, Option<&mut Parts>, Option<&mut Season>),
    out: &mut Vec<Alert>,
) {
    let Closed::Data(hour) = closed else { return };
    let customer = t.reg.filter(|r| r.role == Role::Customer);
    // A season many of the region's customers share (a cold snap) is not the site's own
    // normal: its baselines hold still through it, as through an episode.
    let mut seasonal = false;
    let mut moved_in = false;
    // A public holiday at the site, by its local day: a business closed is neither a drop
    // nor its normal.
    let local_day =
        (hour.end - HOUR + i64::from(st.series.local_shift_h) * HOUR).div_euclid(86_400);
    let holiday = season.as_deref().is_some_and(|s| s.is_holiday(local_day));
    let business = t.reg.is_some_and(|r| {
        r.customer_class
            .is_some_and(|c| c != gridwatch_core::CustomerClass::Residential)
    });
    if hour.end % 86_400 == 0 {
        if let Some(w) = st.series.window(hour.end, 24) {
            moved_in = st.series.note_day(hour.end, w);
        }
    }
    if let Some(reg) = customer {
        let mut cx = HourCx {
            reg,
            hour,
            series: &st.series,
            day: st.series.window(hour.end, 24),
            flat: Flat::None,
            has_case: !st.episodes.is_empty(),
            tolerance: d.tolerance,
            common_rise: d.peer.common_rise(season.as_deref(), reg, hour.end),
            rose_day_before: d
                .peer
                .common_rise(season.as_deref(), reg, hour.end - 24 * HOUR)
                .is_some(),
            peers,
            split,
            season,
            moved_in,
        };
        cx.flat = d.mining.classify(&cx);
        seasonal = cx.common_rise.is_some();
        let day = cx.day;
        let found: Vec<_> = [
            d.step.on_hour(&mut cx, &mut st.step),
            d.capacity.on_hour(&mut cx, &mut st.capacity),
            d.mining.on_hour(&mut cx, &mut ()),
            d.blocks.on_hour(&mut cx, &mut ()),
            d.tamper.on_hour(&mut cx, &mut st.tamper),
            d.generation.on_hour(&mut cx, &mut st.generation),
            d.peer.on_hour(&mut cx, &mut st.peer),
            d.split.on_hour(&mut cx, &mut st.split),
        ]
        .into_iter()
        .flatten()
        .collect();
        // What an inspector saw and closed is not news while the load stays as it was; more
        // than that is, and says so.
        let mut found = found;
        if let Some(c) = &st.closure {
            found.retain(|r| !c.covers(r));
            for r in &mut found {
                r.finding.summary = format!("{}; {}", r.finding.summary, c.words());
            }
        }
        let s = Settle {
            target: t.id(),
            t,
            at: hour.end,
            update_interval_s: cfg.update_interval_s,
        };
        case::settle(s, &mut st.episodes, found, out);
        if !holiday {
            d.bypass.track(day, &st.series, hour.end, &mut st.drop);
        }
    }
    // A site without two days of history (new, or lived in again) learns through a season
    // too: there is no usual of its own to keep, and its first days are its normal.
    if st.episodes.is_empty()
        && (!seasonal || st.series.baseline_hours < 48)
        && !(holiday && business)
    {
        st.series.learn_baseline(hour.end, hour.kw);
    }
    case::resolve_quiet(&mut st.episodes, hour.end, cfg.resolve_after_s, t, out);
}

/// Closes the feeder's hours its head meter has passed, and judges each balanced one. While
/// the feeder draws unexplained energy, its customers whose demand dropped by a matching
/// amount are named on its alert, and may be bypass cases of their own.
fn balance_feeder(
    cfg: &EngineConfig,
    d: &Detectors,
    fd: &mut FeederSlot,
    slots: &mut [Slot],
    out: &mut Vec<Alert>,
) {
    let horizon = cfg.lateness_horizon_s;
    loop {
        let members = &fd.members;
        let silent = |start: i64| {
            let mut gone = Silent::default();
            for &m in members {
                let series = &slots[m as usize].st.series;
                let missing = series.missing_s(start.div_euclid(HOUR));
                if missing > 0 {
                    let share = f64::from(missing) / 3600.0;
                    gone.kwh += series.last_day_kw_at(start).max(0.0) * share;
                    gone.seconds += missing;
                }
            }
            gone
        };
        let Some(closed) = fd.st.balance.pop_closed(horizon, members.len(), silent) else {
            break;
        };
        // An hour held back for missing readings neither confirms nor clears a case.
        let Closed::Data(b) = closed else { continue };
        let t = Target {
            meter_id: None,
            reg: None,
            feeder_hint: Some(&fd.id),
        };
        let who = FeederId {
            id: &fd.id,
            customers: fd.members.len(),
            flagged: fd.st.episode.as_ref().is_some_and(|e| e.opened),
        };
        let Some(mut f) = d.feeder.judge(&mut fd.st.balance, b, who) else {
            if let Some(ep) = &mut fd.st.episode {
                ep.quiet_hours += 1;
                if ep.is_over(cfg.resolve_after_s) {
                    let reason = format!("the feeder balanced for {} h", ep.quiet_hours);
                    out.extend(ep.resolve(b.end, &reason, &t));
                    fd.st.episode = None;
                }
            }
            continue;
        };
        let member = |m: u32| {
            let s = &slots[m as usize];
            Member {
                reg: s.reg.as_ref(),
                series: &s.st.series,
                drop: &s.st.drop,
            }
        };
        let residuals: [f64; WINDOW] = fd.st.balance.residuals();
        let unmetered_kw = f.est_excess_kw;
        let suspects =
            BypassDetector::coincident_drops(&fd.members, member, &residuals, b.end, unmetered_kw);
        if !suspects.is_empty() {
            let (named, words) = BypassDetector::named(&suspects, member);
            f.summary = format!("{}. {words}", f.summary);
            f.evidence.push(named);
        }
        let start = b.end - 12 * HOUR;
        let ep = fd
            .st
            .episode
            .get_or_insert_with(|| Episode::new(AlertKind::FeederImbalance, &fd.id, start));
        ep.quiet_hours = 0;
        out.extend(ep.activate(f, b.end, true, cfg.update_interval_s, &t));
        if !ep.opened {
            continue;
        }
        for s in suspects {
            let Slot { reg, st, .. } = &mut slots[s.slot as usize];
            let Some(reg) = reg.as_ref() else { continue };
            let tap = Unmetered {
                feeder_id: &fd.id,
                kw: unmetered_kw,
            };
            let Some(raised) = d.bypass.case(reg, &st.drop, tap, s.correlation, b.end) else {
                continue;
            };
            let t = Target {
                meter_id: Some(&reg.meter_id),
                reg: Some(reg),
                feeder_hint: None,
            };
            let s = Settle {
                target: &reg.site_id,
                t: &t,
                at: b.end,
                update_interval_s: cfg.update_interval_s,
            };
            case::settle(s, &mut st.episodes, vec![raised], out);
        }
    }
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
