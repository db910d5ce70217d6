//! APPLY/FILTER expressions: parse or error, and a parsed one evaluates without panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shoal_query::expr::Scalar;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(expr) = shoal_query::expr::parse_expr(text) {
        let _ = expr.eval(&|name| match name {
            "n" => Some(Scalar::Number(2.5)),
            "s" => Some(Scalar::Str("text".into())),
            _ => None,
        });
    }
});
