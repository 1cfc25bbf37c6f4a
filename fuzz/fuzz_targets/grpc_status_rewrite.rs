//! The status rewrite every server applies to tonic's codec errors (what chat-svc's `decode.rs`
//! did for chat alone): an answer whose `grpc-status` and `grpc-message` are the two halves of
//! the input (split at the first NUL) changes only from `INTERNAL` to `INVALID_ARGUMENT` or
//! from `OUT_OF_RANGE` to `RESOURCE_EXHAUSTED`; anything else passes through untouched.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (status, message) = match data.iter().position(|&byte| byte == 0) {
        Some(split) => (&data[..split], &data[split + 1..]),
        None => (data, &[][..]),
    };
    let mut answer = http::Response::new(String::new());
    for (name, value) in [("grpc-status", status), ("grpc-message", message)] {
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            answer.headers_mut().insert(name, value);
        }
    }
    let before = answer.headers().get("grpc-status").map(|value| value.as_bytes().to_vec());
    let rewritten = svc_kit::server::caller_fault_status(answer);
    let after = rewritten.headers().get("grpc-status").map(|value| value.as_bytes().to_vec());
    match (before.as_deref(), after.as_deref()) {
        (before, after) if before == after => {}
        (Some(b"13"), Some(b"3")) | (Some(b"11"), Some(b"8")) => {}
        (before, after) => panic!("rewrote {before:?} into {after:?}"),
    }
});
