//! Shared by the engine's integration tests: a simulated utility as engine inputs.

use gridwatch_anomaly_detector::{Engine, EngineConfig};
use gridwatch_core::time::parse_rfc3339;
use gridwatch_core::{MeterRecord, Reading, RegistryUpdate, WeatherObs};
use gridwatch_simulator::{SimConfig, Utility};

/// A simulated utility: its register, weather (if a winter or summer) and readings in
/// emission order.
pub fn utility(cfg: SimConfig) -> (Vec<MeterRecord>, Vec<WeatherObs>, Vec<Reading>) {
    let u = Utility::generate(cfg).unwrap();
    let mut records: Vec<MeterRecord> = u
        .feeders
        .iter()
        .map(|f| MeterRecord {
            timezone: Some(u.cfg.tz.clone()),
            ..MeterRecord::feeder_head(&f.head_meter, &f.feeder_id)
        })
        .collect();
    records.extend(
        u.meters
            .iter()
            .filter(|m| m.registered)
            .map(|m| MeterRecord {
                timezone: Some(u.cfg.tz.clone()),
                ..m.record.clone()
            }),
    );
    let mut csv = Vec::new();
    if let Some(w) = u.write_weather(&mut csv) {
        w.unwrap();
    }
    let weather = String::from_utf8(csv)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            WeatherObs {
                region: f[0].into(),
                ts: parse_rfc3339(f[1]).unwrap(),
                temp_c: f[2].parse().unwrap(),
            }
        })
        .collect();
    let mut readings = Vec::new();
    u.readings::<()>(
        |r| {
            readings.push(r.to_reading());
            Ok(())
        },
        |_, _| {},
    )
    .unwrap();
    (records, weather, readings)
}

/// An engine with these settings, the register and the weather taken in.
pub fn started_with(cfg: EngineConfig, records: &[MeterRecord], weather: &[WeatherObs]) -> Engine {
    let mut e = Engine::new(cfg).unwrap();
    let mut out = Vec::new();
    for r in records {
        e.apply_registry(RegistryUpdate::Upsert(r.clone()), &mut out);
    }
    for w in weather {
        e.on_weather(w);
    }
    e
}
