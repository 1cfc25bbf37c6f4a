//! chat-svc: request bytes → prost → the handlers' validation → the caller's status.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| chat_svc::fuzzing::request(data));
