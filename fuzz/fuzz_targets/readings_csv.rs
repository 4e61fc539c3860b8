//! Readings CSV, as `gridwatch run`, `gridwatch ingest` and `POST /v1/readings` read it.
#![no_main]
use gridwatch_ingester::{Format, Records, Validation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for item in Records::new(data, Format::Csv, Validation::default()) {
        let _ = item;
    }
});
