//! An HTTP body of readings: a JSON array (or one object), the ingester's own parse.
#![no_main]
use gridwatch_ingester::http::parse_body;
use gridwatch_ingester::Validation;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_body("application/json", data, "fuzz", Validation::default());
});
