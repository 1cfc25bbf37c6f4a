//! What media-svc reads from untrusted HTTP requests, chosen by the first byte: tus upload
//! headers (`Upload-Length`/`Upload-Offset`, `Upload-Metadata` and the file name and room in
//! it), a signed URL's item id and query, and a file request's `Range`/`If-Range`/conditional
//! headers served the way `GET /media/<id>` serves them. Never a panic; numbers read are the
//! numbers sent; a file name keeps no path; a partial answer lies inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    match selector % 3 {
        0 => media_svc::fuzzing::upload_headers(rest),
        1 => media_svc::fuzzing::signed_url(rest),
        _ => media_svc::fuzzing::range_request(rest),
    }
});
