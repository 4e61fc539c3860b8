//! Typed evidence: what each detector looked at, one struct per kind and pattern. An alert's
//! `evidence` object is rendered from these ([`render`]); the field names and number shapes are
//! the alert contract (`hours_over` is `3.0`, a suspect's `drop_hours` is `3`). The structs
//! round-trip through serde, externally tagged, so a checkpoint can hold them.

use gridwatch_core::{AlertKind, CustomerClass, SiteStatus};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// One piece of evidence on an alert. A case carries several (one per detector that spoke
/// this hour, plus the detectors' scores); on a clash of keys the later piece wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Evidence {
    Unregistered(Unregistered),
    /// Unregistered meters past the caps, folded into one case.
    Crowded(Crowded),
    Disconnected(Disconnected),
    Capacity(Capacity),
    Mining(Mining),
    Block(Block),
    Step(Step),
    Tamper(Tamper),
    Generation(Generation),
    Bypass(Bypass),
    Peer(Peer),
    Split(Split),
    Feeder(Feeder),
    /// The feeder's customers whose demand dropped as its unmetered load began.
    SuspectSites(Vec<SuspectSite>),
    /// Each detector that has spoken on a site's case, with its latest score.
    Detectors(Vec<(AlertKind, f64)>),
}

/// The customer class as alerts name it: `unclassified` where the register has none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassName(pub Option<CustomerClass>);

impl ClassName {
    pub fn as_str(self) -> &'static str {
        self.0.map_or("unclassified", CustomerClass::as_str)
    }
}

impl Serialize for ClassName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ClassName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "unclassified" {
            return Ok(ClassName(None));
        }
        s.parse()
            .map(|c| ClassName(Some(c)))
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unregistered {
    pub mean_kw: f64,
    pub kwh_since_first_seen: f64,
}

/// A crowd of unregistered meters past `max_unregistered_per_feeder` (or `_per_region`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Crowded {
    /// Distinct meters folded in (estimated past a few hundred, about ±7 %).
    pub unregistered_meters: u64,
    pub readings: u64,
    pub kwh: f64,
    /// The cap: how many unregistered meters of this crowd have their own case.
    pub tracked_one_by_one: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disconnected {
    pub mean_kw: f64,
    pub kwh_since_first: f64,
    pub register_status: SiteStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    pub mean_kw: f64,
    pub permitted_kw: f64,
    pub ratio_to_permit: f64,
    pub hours_over: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mining {
    pub load_factor: f64,
    pub mean_kw: f64,
    pub floor_kw: f64,
    pub hours: f64,
    pub baseline_floor_kw: f64,
    /// Left out of an alert where unknown (see [`Evidence::fields`]).
    pub night_day_ratio: Option<f64>,
    pub permitted_kw: Option<f64>,
    pub customer_class: ClassName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockPattern {
    /// The same flat block of hours two days running (a night-tariff miner).
    RecurringBlock,
    /// On and off all day at a mining level, two days running.
    DutyCycle,
    /// A new load at hours a public building usually stands empty, two days running.
    OffHours,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Block {
    pub block_kw: f64,
    pub outside_kw: f64,
    pub block_hours: f64,
    pub block_start_local_hour: f64,
    pub permitted_kw: Option<f64>,
    pub customer_class: ClassName,
    pub pattern: BlockPattern,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub floor_kw: f64,
    pub baseline_floor_kw: f64,
    pub added_kw: f64,
    pub mean_kw: f64,
    pub baseline_kw: f64,
    pub cusum: f64,
    pub customer_class: ClassName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TamperPattern {
    ReverseEnergyAtNight,
    EnergyBelowVoltageCurrent,
    ZeroReads,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tamper {
    pub baseline_kw: f64,
    pub export_kw: f64,
    pub zero_hours: f64,
    pub night_export_hours: f64,
    pub vi_hours: f64,
    pub unregistered_kw: f64,
    pub pattern: TamperPattern,
    pub customer_class: ClassName,
}

/// `unregistered_generation`: what a site exported beyond its registered generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    pub exported_kwh: f64,
    pub export_hours: f64,
    pub peak_export_kw: f64,
    pub generation_kw: f64,
    /// The export came by day (the shape of solar panels), not at night.
    pub midday: bool,
    pub customer_class: ClassName,
}

/// The only pattern of a bypass case: demand fell and stayed down as the feeder's unmetered
/// load began.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BypassPattern {
    SuddenDrop,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bypass {
    pub dropped_from_kw: f64,
    pub drop_kw: f64,
    pub drop_hours: f64,
    pub feeder_unmetered_kw: f64,
    pub correlation: f64,
    #[serde(with = "gridwatch_core::time::serde_rfc3339")]
    pub drop_seen_at: i64,
    pub pattern: BypassPattern,
    pub customer_class: ClassName,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    pub ratio_to_peers: f64,
    pub usual_ratio_to_peers: f64,
    pub peer_median_kw: f64,
    pub peers: f64,
    pub robust_z: f64,
    pub cusum: f64,
    pub added_kw: f64,
    pub customer_class: ClassName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadShape {
    /// Steady, and on in every hour since it first showed.
    Flat,
    Variable,
}

impl LoadShape {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadShape::Flat => "flat",
            LoadShape::Variable => "variable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feeder {
    pub unmetered_kw: f64,
    pub unmetered_share: f64,
    pub loss_ratio_expected: f64,
    pub loss_ratio_observed: f64,
    pub head_kw: f64,
    pub customers_kw: f64,
    pub customers: f64,
    pub shape: LoadShape,
    pub cusum: f64,
}

/// One part of a farm split over neighbouring meters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// What this site adds to every hour (kW), and the parts together.
    pub part_kw: f64,
    pub total_kw: f64,
    pub parts: f64,
    /// The other parts' sites, by site id.
    pub other_sites: Vec<String>,
    pub baseline_floor_kw: f64,
    pub customer_class: ClassName,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuspectSite {
    pub site_id: String,
    pub meter_id: String,
    pub drop_kw: f64,
    pub dropped_from_kw: f64,
    pub drop_hours: u32,
    pub correlation: f64,
}

fn object(v: &impl Serialize) -> Map<String, Value> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        _ => unreachable!("evidence structs serialize to objects"),
    }
}

impl Evidence {
    /// The JSON fields this piece contributes to an alert's `evidence`.
    fn fields(&self) -> Map<String, Value> {
        match self {
            Evidence::Unregistered(e) => object(e),
            Evidence::Crowded(e) => object(e),
            Evidence::Disconnected(e) => object(e),
            Evidence::Capacity(e) => object(e),
            Evidence::Mining(e) => {
                let mut m = object(e);
                if e.night_day_ratio.is_none() {
                    m.remove("night_day_ratio");
                }
                m
            }
            Evidence::Block(e) => object(e),
            Evidence::Step(e) => object(e),
            Evidence::Tamper(e) => object(e),
            Evidence::Generation(e) => object(e),
            Evidence::Bypass(e) => object(e),
            Evidence::Peer(e) => object(e),
            Evidence::Split(e) => object(e),
            Evidence::Feeder(e) => object(e),
            Evidence::SuspectSites(s) => {
                Map::from_iter([("suspect_sites".to_string(), serde_json::json!(s))])
            }
            Evidence::Detectors(d) => {
                let scores: Map<String, Value> = d
                    .iter()
                    .map(|(k, s)| (k.as_str().to_string(), serde_json::json!(round(*s, 3))))
                    .collect();
                Map::from_iter([("detectors".to_string(), Value::Object(scores))])
            }
        }
    }
}

/// An alert's `evidence` object: the pieces in order, a later piece winning a clash of keys.
pub fn render(pieces: &[Evidence]) -> Map<String, Value> {
    let mut out = Map::new();
    for p in pieces {
        out.append(&mut p.fields());
    }
    out
}

pub(crate) fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_round_trips_and_renders_the_contract_shapes() {
        let pieces = vec![
            Evidence::Capacity(Capacity {
                mean_kw: 30.5,
                permitted_kw: 12.0,
                ratio_to_permit: 2.54,
                hours_over: 3.0,
            }),
            Evidence::Block(Block {
                block_kw: 9.0,
                outside_kw: 0.5,
                block_hours: 7.0,
                block_start_local_hour: 23.0,
                permitted_kw: None,
                customer_class: ClassName(None),
                pattern: BlockPattern::DutyCycle,
            }),
            Evidence::Detectors(vec![(AlertKind::CapacityExceeded, 0.91234)]),
        ];
        let json = serde_json::to_string(&render(&pieces)).unwrap();
        assert_eq!(
            json,
            r#"{"block_hours":7.0,"block_kw":9.0,"block_start_local_hour":23.0,"customer_class":"unclassified","detectors":{"capacity_exceeded":0.912},"hours_over":3.0,"mean_kw":30.5,"outside_kw":0.5,"pattern":"duty_cycle","permitted_kw":null,"ratio_to_permit":2.54}"#
        );
        let back: Vec<Evidence> =
            serde_json::from_str(&serde_json::to_string(&pieces).unwrap()).unwrap();
        assert_eq!(back, pieces);
    }
}
