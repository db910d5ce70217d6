/// Splits fuzz input into command arguments on NUL bytes, so the fuzzer can produce
/// any token sequence, binary tokens included.
pub fn tokens(data: &[u8]) -> Vec<&[u8]> {
    data.split(|b| *b == 0).collect()
}
