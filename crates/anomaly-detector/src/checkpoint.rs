//! Engine checkpoints: the whole detection state as bytes, and back. A service saves one with
//! the input offsets it covers and, after a restart, replays only the readings since, instead
//! of every retained reading (see docs/ARCHITECTURE.md, "Checkpoints").
//!
//! Layout: the magic `GWENGINE`, the format version (u32, little endian), then a postcard body:
//! the detector settings the state was built under (as JSON), every meter's slot with its id,
//! every feeder, every region, every crowd of unregistered meters, the register rows waiting for
//! their `effective_from`, the readings the order window holds. A checkpoint of another format
//! version, or made under other settings, is refused with the reason, and the caller rebuilds
//! the state by a full replay: state learned under other thresholds would not be the state
//! those readings give now.

use crate::config::EngineConfig;
use crate::crowd::Crowd;
use crate::detectors::season::Season;
use crate::engine::{Engine, FeederSlot, FeederState, Held, MeterState, Slot};
use crate::order::Order;
use gridwatch_core::MeterRecord;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Bump whenever any state type's layout changes (a field added, removed, retyped or moved):
/// the test `checkpoint_layout_is_pinned` fails until it is.
pub const FORMAT_VERSION: u32 = 7;
const MAGIC: &[u8; 8] = b"GWENGINE";

/// Why a checkpoint cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub enum RestoreError {
    /// Not a checkpoint at all (another file, or cut short before its header).
    NotACheckpoint,
    /// Written by a binary with another state layout.
    Version { found: u32 },
    /// Written under other detector settings.
    Settings,
    /// The body does not decode (a torn or damaged file).
    Corrupt(String),
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreError::NotACheckpoint => write!(f, "not an engine checkpoint"),
            RestoreError::Version { found } => write!(
                f,
                "state format version {found}, this binary reads version {FORMAT_VERSION}"
            ),
            RestoreError::Settings => {
                write!(f, "made under other detector settings than these")
            }
            RestoreError::Corrupt(e) => write!(f, "damaged: {e}"),
        }
    }
}

impl std::error::Error for RestoreError {}

#[derive(Serialize)]
struct BodyOut<'a> {
    settings: String,
    slots: Vec<SlotOut<'a>>,
    feeders: Vec<FeederOut<'a>>,
    regions: Vec<(&'a str, &'a Season)>,
    crowds: &'a [Crowd],
    pending: Vec<(u32, &'a [MeterRecord])>,
    order: &'a Order,
    outcomes: &'a [gridwatch_core::Outcome],
    outcomes_seen: &'a std::collections::BTreeSet<(String, i64)>,
}

#[derive(Serialize)]
struct SlotOut<'a> {
    id: &'a str,
    reg: Option<&'a MeterRecord>,
    feeder: Option<u32>,
    region: Option<u32>,
    held: Option<Held>,
    st: &'a MeterState,
}

#[derive(Serialize)]
struct FeederOut<'a> {
    id: &'a str,
    members: &'a [u32],
    st: &'a FeederState,
}

#[derive(Deserialize)]
struct BodyIn {
    settings: String,
    slots: Vec<SlotIn>,
    feeders: Vec<FeederIn>,
    regions: Vec<(String, Season)>,
    crowds: Vec<Crowd>,
    pending: Vec<(u32, Vec<MeterRecord>)>,
    order: Order,
    outcomes: Vec<gridwatch_core::Outcome>,
    outcomes_seen: std::collections::BTreeSet<(String, i64)>,
}

#[derive(Deserialize)]
struct SlotIn {
    id: String,
    reg: Option<MeterRecord>,
    feeder: Option<u32>,
    region: Option<u32>,
    held: Option<Held>,
    st: MeterState,
}

#[derive(Deserialize)]
struct FeederIn {
    id: String,
    members: Vec<u32>,
    st: FeederState,
}

fn settings_json(cfg: &EngineConfig) -> String {
    serde_json::to_string(cfg).expect("engine settings serialize")
}

/// Names by index, from a name → index map.
fn names<K: AsRef<str>>(index: &rustc_hash::FxHashMap<K, u32>, len: usize) -> Vec<&str> {
    let mut out = vec![""; len];
    for (name, &i) in index {
        out[i as usize] = name.as_ref();
    }
    out
}

impl Engine {
    /// The engine's whole state, versioned, for [`Engine::restore`].
    pub fn checkpoint(&self) -> Vec<u8> {
        let ids: Vec<&str> = self.index.ids().collect();
        let mut pending: Vec<(u32, &[MeterRecord])> = self
            .pending
            .iter()
            .map(|(&i, rows)| (i, rows.as_slice()))
            .collect();
        pending.sort_unstable_by_key(|&(i, _)| i);
        let regions = names(&self.region_index, self.regions.len());
        let body = BodyOut {
            settings: settings_json(&self.cfg),
            slots: self
                .slots
                .iter()
                .zip(ids)
                .map(|(s, id)| SlotOut {
                    id,
                    reg: s.reg.as_ref(),
                    feeder: s.feeder,
                    region: s.region,
                    held: s.held,
                    st: &s.st,
                })
                .collect(),
            feeders: self
                .feeders
                .iter()
                .map(|f| FeederOut {
                    id: &f.id,
                    members: &f.members,
                    st: &f.st,
                })
                .collect(),
            regions: regions.into_iter().zip(&self.regions).collect(),
            crowds: &self.crowds,
            pending,
            order: &self.order,
            outcomes: &self.outcomes,
            outcomes_seen: &self.outcomes_seen,
        };
        let mut out = Vec::with_capacity(64 + self.slots.len() * 512);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        postcard::to_io(&body, &mut out).expect("writing to memory cannot fail");
        out
    }

    /// An engine with `cfg` and the state of a checkpoint made under the same settings.
    pub fn restore(cfg: EngineConfig, bytes: &[u8]) -> Result<Engine, RestoreError> {
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or(RestoreError::NotACheckpoint)?;
        let (version, body) = rest
            .split_first_chunk::<4>()
            .ok_or(RestoreError::NotACheckpoint)?;
        let found = u32::from_le_bytes(*version);
        if found != FORMAT_VERSION {
            return Err(RestoreError::Version { found });
        }
        let body: BodyIn =
            postcard::from_bytes(body).map_err(|e| RestoreError::Corrupt(e.to_string()))?;
        if body.settings != settings_json(&cfg) {
            return Err(RestoreError::Settings);
        }
        let corrupt = |what: &str| RestoreError::Corrupt(what.to_string());
        let mut e = Engine::new(cfg).map_err(|e| RestoreError::Corrupt(e.to_string()))?;
        let (n_feeders, n_regions) = (body.feeders.len() as u32, body.regions.len() as u32);
        let n_crowds = body.crowds.len() as u32;
        for (i, s) in body.slots.into_iter().enumerate() {
            if s.feeder.is_some_and(|f| f >= n_feeders) || s.region.is_some_and(|r| r >= n_regions)
            {
                return Err(corrupt("a meter points past the feeders or regions"));
            }
            if s.held
                .is_some_and(|h| h.region >= n_crowds || h.feeder.is_some_and(|c| c >= n_crowds))
            {
                return Err(corrupt("a meter points past the crowds"));
            }
            if e.index.insert(&s.id) != Some(i) {
                return Err(corrupt("a meter id appears twice"));
            }
            e.slots.push(Slot {
                reg: s.reg,
                feeder: s.feeder,
                region: s.region,
                held: s.held,
                st: s.st,
            });
        }
        let n_slots = e.slots.len() as u32;
        for (i, f) in body.feeders.into_iter().enumerate() {
            if f.members.iter().any(|&m| m >= n_slots) {
                return Err(corrupt("a feeder member points past the meters"));
            }
            if e.feeder_index
                .insert(f.id.as_str().into(), i as u32)
                .is_some()
            {
                return Err(corrupt("a feeder id appears twice"));
            }
            e.feeders.push(FeederSlot {
                id: f.id,
                members: f.members,
                st: f.st,
            });
        }
        for (i, (name, season)) in body.regions.into_iter().enumerate() {
            if e.region_index.insert(name.into(), i as u32).is_some() {
                return Err(corrupt("a region appears twice"));
            }
            e.regions.push(season);
        }
        for (i, c) in body.crowds.into_iter().enumerate() {
            if !c.is_sound() {
                return Err(corrupt("a crowd's sketch is misshapen"));
            }
            if e.crowd_index
                .insert(c.key.as_str().into(), i as u32)
                .is_some()
            {
                return Err(corrupt("a crowd appears twice"));
            }
            e.crowds.push(c);
        }
        for (i, rows) in body.pending {
            let in_order = rows
                .windows(2)
                .all(|w| w[0].effective_from < w[1].effective_from);
            if i >= n_slots || rows.is_empty() || !in_order {
                return Err(corrupt("a waiting register row is misplaced"));
            }
            if e.pending.insert(i, rows).is_some() {
                return Err(corrupt("a meter's waiting rows appear twice"));
            }
        }
        e.order = body.order.with_window(e.cfg.order_window_s);
        e.outcomes = body.outcomes;
        e.outcomes_seen = body.outcomes_seen;
        Ok(e)
    }
}
