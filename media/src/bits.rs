//! An MSB-first bit reader with the H.264 Exp-Golomb codes (ITU-T H.264 §9.1), shared by
//! the SPS and AudioSpecificConfig parsers. Every read names the syntax element it reads,
//! so a short buffer reports which field ran out and at which bit.

/// A read ran past the end of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutOfBits {
    pub(crate) field: &'static str,
    pub(crate) bit_offset: usize,
}

pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Position of the next bit, counted from the MSB of `data[0]`.
    bit_offset: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            bit_offset: 0,
        }
    }

    fn bit(&mut self, field: &'static str) -> Result<u32, OutOfBits> {
        let byte = self.data.get(self.bit_offset / 8).ok_or(OutOfBits {
            field,
            bit_offset: self.bit_offset,
        })?;
        let bit = (byte >> (7 - self.bit_offset % 8)) & 1;
        self.bit_offset += 1;
        Ok(u32::from(bit))
    }

    /// `u(n)` for n ≤ 32.
    pub(crate) fn u(&mut self, bits: u32, field: &'static str) -> Result<u32, OutOfBits> {
        debug_assert!(bits <= 32);
        let start = self.bit_offset;
        let mut value: u64 = 0;
        for _ in 0..bits {
            let bit = self.bit(field).map_err(|_| OutOfBits {
                field,
                bit_offset: start,
            })?;
            value = (value << 1) | u64::from(bit);
        }
        // At most 32 bits were shifted in.
        Ok(value as u32)
    }

    pub(crate) fn flag(&mut self, field: &'static str) -> Result<bool, OutOfBits> {
        Ok(self.bit(field)? == 1)
    }

    /// `ue(v)`, H.264 §9.1: leadingZeroBits zeros, a one, then that many info bits.
    /// Codes longer than 32 bits do not occur in a conforming stream (every ue(v) element
    /// fits in 32 bits) and are reported as running out of bits.
    pub(crate) fn ue(&mut self, field: &'static str) -> Result<u32, OutOfBits> {
        let start = self.bit_offset;
        let out_of_bits = OutOfBits {
            field,
            bit_offset: start,
        };
        let mut leading_zero_bits = 0;
        while self.bit(field).map_err(|_| out_of_bits)? == 0 {
            leading_zero_bits += 1;
            if leading_zero_bits > 31 {
                return Err(out_of_bits);
            }
        }
        let suffix = u64::from(self.u(leading_zero_bits, field).map_err(|_| out_of_bits)?);
        // 2^31 - 1 + (2^31 - 1) fits in u32.
        Ok(((1u64 << leading_zero_bits) - 1 + suffix) as u32)
    }

    /// `se(v)`, H.264 §9.1.1: codeNum k maps to (−1)^(k+1) · Ceil(k ÷ 2).
    pub(crate) fn se(&mut self, field: &'static str) -> Result<i32, OutOfBits> {
        let code_num = i64::from(self.ue(field)?);
        let magnitude = (code_num + 1) / 2;
        // |value| ≤ 2^31, and only +2^31 would not fit: clamp that one malformed case.
        let value = if code_num % 2 == 1 {
            magnitude
        } else {
            -magnitude
        };
        Ok(value.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_table() {
        // H.264 Table 9-2 / 9-3: bit strings 1, 010, 011, 00100, 00101 are codeNum 0..4,
        // and se(v) maps codeNum 0..4 to 0, 1, -1, 2, -2.
        // 1 010 011 00100 00101 -> 1010 0110 0100 0010 1(000 padding)
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = BitReader::new(&data);
        let codes: Vec<u32> = (0..5).map(|_| r.ue("x").unwrap()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4]);
        let mut r = BitReader::new(&data);
        let signed: Vec<i32> = (0..5).map(|_| r.se("x").unwrap()).collect();
        assert_eq!(signed, [0, 1, -1, 2, -2]);
    }

    #[test]
    fn fixed_width_and_exhaustion() {
        let mut r = BitReader::new(&[0xAB, 0xCD]);
        assert_eq!(r.u(4, "a").unwrap(), 0xA);
        assert_eq!(r.u(8, "b").unwrap(), 0xBC);
        assert!(r.flag("c").unwrap());
        assert_eq!(
            r.u(4, "d"),
            Err(OutOfBits {
                field: "d",
                bit_offset: 13
            })
        );
        // All-zero input never terminates a ue(v) code.
        assert!(BitReader::new(&[0; 8]).ue("z").is_err());
    }
}
