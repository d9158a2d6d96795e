//! Hex and comparisons the digest code shares.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of `bytes`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// Lowercase hex of `bytes` into `out`, which holds two digits a byte (the rest of a
/// longer `out` is left as it is).
pub(crate) fn write_hex(bytes: &[u8], out: &mut [u8]) {
    for (b, digits) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        digits[0] = HEX[usize::from(b >> 4)];
        digits[1] = HEX[usize::from(b & 0x0f)];
    }
}

/// Compares two hex digests without data-dependent early exit; ASCII case is ignored.
pub(crate) fn ct_eq_ignore_case(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| {
        acc | (x.to_ascii_lowercase() ^ y.to_ascii_lowercase())
    });
    diff == 0
}
