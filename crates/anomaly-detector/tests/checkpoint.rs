//! Engine checkpoints: a run cut anywhere, checkpointed and restored, gives exactly the alerts
//! of the uninterrupted run; unusable checkpoints are refused with the reason.

mod common;

use common::{started_with, utility};
use gridwatch_anomaly_detector::checkpoint::FORMAT_VERSION;
use gridwatch_anomaly_detector::{Engine, EngineConfig, RestoreError};
use gridwatch_core::{
    Alert, CustomerClass, Holiday, MeterRecord, Reading, RegistryUpdate, WeatherObs,
};
use gridwatch_simulator::SimConfig;

/// A simulated winter utility, partly delivered in daily batches.
fn winter() -> (Vec<MeterRecord>, Vec<WeatherObs>, Vec<Reading>) {
    utility(SimConfig {
        sites: 240,
        days: 9,
        seed: 5,
        winter: true,
        batched_share: 0.3,
        ..SimConfig::default()
    })
}

/// Asserts two checkpoints are equal, naming the first byte where they part.
fn same_bytes(a: &[u8], b: &[u8], what: &str) {
    let at = a.iter().zip(b).position(|(x, y)| x != y);
    if let Some(i) = at {
        eprintln!("A: {}", a[i..(i + 300).min(a.len())].escape_ascii());
        eprintln!("B: {}", b[i..(i + 300).min(b.len())].escape_ascii());
    }
    assert!(
        at.is_none() && a.len() == b.len(),
        "{what}: {} vs {} bytes, first difference at {at:?}",
        a.len(),
        b.len()
    );
}

fn json(alerts: &[Alert]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| serde_json::to_string(a).unwrap())
        .collect()
}

#[test]
fn a_run_checkpointed_and_restored_anywhere_gives_the_alerts_of_one_uninterrupted_run() {
    let (records, weather, readings) = winter();
    let mut whole = started_with(EngineConfig::default(), &records, &weather);
    let mut want = Vec::new();
    for r in &readings {
        whole.on_reading(r, &mut want);
    }
    assert!(
        want.len() >= 10,
        "the utility raises alerts: {}",
        want.len()
    );

    let cuts = [
        1,
        readings.len() / 7,
        readings.len() / 2,
        readings.len() - 5,
    ];
    let mut e = started_with(EngineConfig::default(), &records, &weather);
    let mut got = Vec::new();
    let mut from = 0;
    for &cut in &cuts {
        for r in &readings[from..cut] {
            e.on_reading(r, &mut got);
        }
        from = cut;
        let bytes = e.checkpoint();
        e = Engine::restore(EngineConfig::default(), &bytes).unwrap();
        same_bytes(
            &e.checkpoint(),
            &bytes,
            &format!(
                "a restored engine holds exactly the state it was checkpointed with (cut {cut})"
            ),
        );
    }
    for r in &readings[from..] {
        e.on_reading(r, &mut got);
    }
    assert_eq!(json(&got), json(&want));
    same_bytes(&e.checkpoint(), &whole.checkpoint(), "the end states");
    let per_meter = whole.checkpoint().len() / whole.meters();
    assert!(
        per_meter < 2048,
        "a checkpoint stays compact: {per_meter} B per meter"
    );
}

#[test]
fn a_checkpoint_of_other_settings_another_version_or_damaged_is_refused_with_the_reason() {
    let (records, weather, readings) = winter();
    let mut e = started_with(EngineConfig::default(), &records, &weather);
    let mut out = Vec::new();
    for r in &readings[..readings.len() / 3] {
        e.on_reading(r, &mut out);
    }
    let bytes = e.checkpoint();

    let mut other = EngineConfig::default();
    other.lateness_horizon_s += 3600;
    assert_eq!(
        Engine::restore(other, &bytes).err(),
        Some(RestoreError::Settings)
    );

    let mut newer = bytes.clone();
    newer[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let err = Engine::restore(EngineConfig::default(), &newer)
        .err()
        .unwrap();
    assert_eq!(
        err,
        RestoreError::Version {
            found: FORMAT_VERSION + 1
        }
    );
    assert!(
        err.to_string().contains("this binary reads version"),
        "{err}"
    );

    for cut in [0, 5, 12, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            Engine::restore(EngineConfig::default(), &bytes[..cut]).is_err(),
            "a checkpoint cut at {cut} of {} bytes",
            bytes.len()
        );
    }
    assert_eq!(
        Engine::restore(EngineConfig::default(), b"region,ts,temp_c\n").err(),
        Some(RestoreError::NotACheckpoint)
    );
    // Flipped bytes in the body decode to an error or to some state, never a panic.
    for at in (12..bytes.len()).step_by(bytes.len() / 97 + 1) {
        let mut bad = bytes.clone();
        bad[at] ^= 0x5a;
        let _ = Engine::restore(EngineConfig::default(), &bad);
    }
}

/// FNV-1a, for a short fingerprint of bytes.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
fn checkpoint_layout_is_pinned() {
    // A small fixed state touching every kind of slot: a head, a customer with a case, a
    // meter the register doesn't know, one folded into its feeder's crowd (the cap is 1),
    // weather, a holiday and a register row waiting for its `effective_from`. If this fingerprint changes,
    // the state layout (or what these inputs leave in it) changed: bump
    // checkpoint::FORMAT_VERSION, so older checkpoints are refused rather than misread, and
    // update the fingerprint.
    let cfg = EngineConfig {
        max_unregistered_per_feeder: 1,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(cfg).unwrap();
    let mut out = Vec::new();
    let mut home = MeterRecord::customer("S1", "M1", "F1", CustomerClass::Residential, Some(12.0));
    home.region = Some("Pavlodar".into());
    for r in [MeterRecord::feeder_head("H1", "F1"), home.clone()] {
        e.apply_registry(RegistryUpdate::Upsert(r), &mut out);
    }
    let t0 = 1_767_225_600;
    e.on_weather(&WeatherObs {
        region: "Pavlodar".into(),
        ts: t0 + 3600,
        temp_c: -21.5,
    });
    e.on_holiday(&Holiday {
        region: "Pavlodar".into(),
        date: t0 / 86_400,
        name: "New Year".into(),
    });
    for i in 1..=3 * 96 {
        for (m, kw) in [("M1", 9.0), ("H1", 9.5), ("X9", 0.4), ("X8", 0.3)] {
            let r = Reading {
                feeder_id: m.starts_with('X').then(|| "F1".into()),
                ..Reading::new(m, t0 + i * 900, 900, kw / 4.0)
            };
            e.on_reading(&r, &mut out);
        }
    }
    assert!(!out.is_empty(), "the fixed state holds open cases");
    let raised = MeterRecord {
        permitted_kw: Some(20.0),
        effective_from: Some(t0 + 10 * 86_400),
        ..home
    };
    e.apply_registry(RegistryUpdate::Upsert(raised), &mut out);
    assert_eq!(
        e.meters(),
        3,
        "X8 is folded into F1's crowd, not given a slot"
    );
    let bytes = e.checkpoint();
    assert_eq!(
        (FORMAT_VERSION, bytes.len(), fnv(&bytes)),
        (7, 4490, 4361145004455867476),
        "the checkpoint layout changed: bump FORMAT_VERSION and update this fingerprint"
    );
}
