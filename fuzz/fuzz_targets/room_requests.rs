//! room-svc: request bytes → prost → the handlers' conversions and validation → the caller's
//! status.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| room_svc::fuzzing::request(data));
