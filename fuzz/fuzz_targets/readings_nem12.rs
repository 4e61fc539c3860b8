//! NEM12, as `gridwatch run`, `gridwatch ingest` and `POST /v1/readings` read it: any bytes are
//! readings, rejects or one error naming the line, never a panic.
#![no_main]
use gridwatch_ingester::{Format, Records, Validation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for item in Records::new(data, Format::Nem12, Validation::default()) {
        let _ = item;
    }
});
