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

/// `n`'s digits in `radix` (10, or 16 in lowercase), without leading zeros, written at
/// the end of `buf`: a port, a status code, a length or a tag without the formatting
/// machinery (every answer has some).
pub fn digits(n: u128, radix: u8, buf: &mut [u8; 40]) -> &str {
    debug_assert!(radix == 10 || radix == 16);
    let mut i = buf.len();
    let mut n = n;
    // Hex by shifts; decimal in u64 once the number fits (what is written on the hot path
    // always does): a u128 division is a library call, a u64 one by 10 a multiplication.
    if radix == 16 {
        loop {
            i -= 1;
            buf[i] = HEX[(n & 0xf) as usize];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
    } else {
        while n > u128::from(u64::MAX) {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        let mut n = n as u64;
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
    }
    // Only digits were written.
    std::str::from_utf8(&buf[i..]).expect("digits")
}

/// A digest's lowercase hex on the stack (64 digits at most: SHA-256's): the digest code
/// computes two at every sign-in, and compares them, without a heap allocation.
#[derive(Clone, Copy)]
pub struct HexDigest {
    digits: [u8; 64],
    len: u8,
}

impl HexDigest {
    /// The hex of `bytes` (at most 32 of them).
    pub(crate) fn of(bytes: &[u8]) -> HexDigest {
        assert!(bytes.len() <= 32, "a digest of at most 32 bytes");
        let mut digits = [0u8; 64];
        write_hex(bytes, &mut digits);
        HexDigest {
            digits,
            len: (bytes.len() * 2) as u8,
        }
    }

    pub fn as_str(&self) -> &str {
        // Only hex digits were written, and `len` of them.
        std::str::from_utf8(&self.digits[..usize::from(self.len)]).expect("hex digits")
    }
}

impl std::ops::Deref for HexDigest {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for HexDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for HexDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl PartialEq<&str> for HexDigest {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_is_written_as_format_writes_it() {
        for n in [0u64, 7, 10, 5060, 65_535, 1_000_000, u64::MAX] {
            assert_eq!(digits(u128::from(n), 10, &mut [0; 40]), n.to_string());
        }
        for n in [u128::from(u64::MAX) + 1, u128::MAX] {
            assert_eq!(digits(n, 10, &mut [0; 40]), n.to_string());
        }
    }

    #[test]
    fn hex_is_written_as_format_writes_it() {
        for n in [0u128, 1, 9, 10, 15, 16, 255, 0x1a24e537092ef6ee, u128::MAX] {
            let mut out = String::from("x");
            out.push_str(digits(n, 16, &mut [0; 40]));
            assert_eq!(out, format!("x{n:x}"));
        }
    }
}
