//! Engine checkpoints as a restarting detector reads them from its state folder: damaged or
//! forged bytes must be refused (or restored), never panic.
#![no_main]
use gridwatch_anomaly_detector::{Engine, EngineConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Engine::restore(EngineConfig::default(), data);
});
