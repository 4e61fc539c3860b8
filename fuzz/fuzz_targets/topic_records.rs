//! Records as the detector decodes them from its topics (anyone with access may write there):
//! readings (validated, then fed to an engine), register rows, weather and holidays.
#![no_main]
use gridwatch_anomaly_detector::{Engine, EngineConfig};
use gridwatch_core::{Holiday, MeterRecord, Reading, RegistryUpdate, Validation, WeatherObs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut engine = Engine::new(EngineConfig::default()).expect("default settings");
    let mut out = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(r) = serde_json::from_slice::<Reading>(line) {
            if r.validate(Validation::default()).is_ok() {
                engine.on_reading(&r, &mut out);
            }
        } else if let Ok(m) = serde_json::from_slice::<MeterRecord>(line) {
            engine.apply_registry(RegistryUpdate::Upsert(m), &mut out);
        } else if let Ok(w) = serde_json::from_slice::<WeatherObs>(line) {
            if w.validate().is_ok() {
                engine.on_weather(&w);
            }
        } else if let Ok(h) = serde_json::from_slice::<Holiday>(line) {
            if h.validate().is_ok() {
                engine.on_holiday(&h);
            }
        }
    }
});
