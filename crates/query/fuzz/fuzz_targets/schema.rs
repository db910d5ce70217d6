//! FT.CREATE arguments: any token sequence parses or errors, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "tokens.rs"]
mod tokens;

fuzz_target!(|data: &[u8]| {
    let _ = shoal_query::schema::parse_create(&tokens::tokens(data));
});
