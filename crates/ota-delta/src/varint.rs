//! LEB128 variable-length integers.

use crate::error::{DeltaError, Result};
use std::io::Read;

/// Appends `v` as LEB128.
pub fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a signed value, zig-zag encoded.
pub fn put_signed(out: &mut Vec<u8>, v: i64) {
    put(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Reads one LEB128 value.
pub fn get(r: &mut impl Read) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let mut b = [0u8];
        r.read_exact(&mut b)
            .map_err(|e| DeltaError::corrupt(format!("truncated patch ({e})")))?;
        let bits = u64::from(b[0] & 0x7f);
        if shift == 63 && bits > 1 {
            return Err(DeltaError::corrupt("varint overflows 64 bits"));
        }
        v |= bits << shift;
        if b[0] & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DeltaError::corrupt("varint longer than 10 bytes"))
}

/// Reads one zig-zag signed value.
pub fn get_signed(r: &mut impl Read) -> Result<i64> {
    let v = get(r)?;
    Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn roundtrip(u: u64, s: i64) {
            let mut b = Vec::new();
            put(&mut b, u);
            put_signed(&mut b, s);
            let mut r = &b[..];
            prop_assert_eq!(get(&mut r).unwrap(), u);
            prop_assert_eq!(get_signed(&mut r).unwrap(), s);
        }
    }

    #[test]
    fn rejects_overlong() {
        assert!(get(&mut &[0xffu8; 11][..]).is_err());
        assert!(get(&mut &[0x80u8][..]).is_err());
    }
}
