//! Subtitle files (SRT, WebVTT, ASS/SSA in any encoding) through media-svc's converter.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| media_svc::fuzzing::subtitle_file(data));
