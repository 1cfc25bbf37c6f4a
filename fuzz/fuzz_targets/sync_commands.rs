//! sync-svc: a run of command requests → prost → validation → the timeline rules, each state
//! reached encoded as watchers receive it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sync_svc::fuzzing::commands(data));
