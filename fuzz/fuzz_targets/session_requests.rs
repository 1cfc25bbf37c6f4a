//! session-svc: request bytes → prost → the handlers' validation → the caller's status; and the
//! headers that decide the cookie's `Secure` attribute.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    session_svc::fuzzing::request(data);
    session_svc::fuzzing::forwarded_headers(data);
});
