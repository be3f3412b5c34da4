//! For backend crates: the CRC-32C of any range of a buffer in time independent of the
//! range's length, for scanning a log's tail for intact records.
//!
//! A reader that finds a record cut short must tell a torn tail (a crash while the last
//! write was on its way: drop it) from damage (an intact record follows: report it),
//! and so tries to read a record at every byte after the bad one. Computing each
//! candidate's checksum over the payload its length field claims would cost time in
//! the square of the tail (bytes that look like record headers, in an application's
//! values, each claim megabytes). [`RangeCrc`] answers each in constant time instead.
//!
//! ```
//! use persister_core::checksum::RangeCrc;
//!
//! let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
//! let crcs = RangeCrc::new(&bytes, 10);
//! assert_eq!(crcs.crc(100, 900), crc32c::crc32c(&bytes[100..900]));
//! ```

use std::cell::OnceCell;

/// The CRC-32C of any range of `bytes[base..]`: from the CRC-32C of every
/// [`RangeCrc::STEP`]-byte prefix, and tables for the operator that appends `2^k` zero
/// bytes to a CRC (a linear map), built on first use.
///
/// For `crc(AB) = crc32c_append(crc(A), B)`: `crc(B) = crc(AB) ^ Z(crc(A), len(B))`,
/// where `Z(c, n)` appends `n` zero bytes to `c` without the initial and final
/// inversions (what `crc32c_combine(c, 0, n)` computes).
#[derive(Debug)]
pub struct RangeCrc<'a> {
    bytes: &'a [u8],
    base: usize,
    /// `marks[i]` is the CRC-32C of `bytes[base..base + i * STEP]`.
    marks: Vec<u32>,
    /// `shifts[k]`: the operator for `2^k` zero bytes, as four byte-indexed tables.
    shifts: OnceCell<Vec<[[u32; 256]; 4]>>,
}

impl<'a> RangeCrc<'a> {
    /// The distance between two prefixes whose checksums are kept: a range's checksum
    /// reads at most twice this many bytes.
    pub const STEP: usize = 64;

    /// Reads `bytes[base..]` once, keeping a checksum every [`RangeCrc::STEP`] bytes.
    pub fn new(bytes: &'a [u8], base: usize) -> Self {
        let base = base.min(bytes.len());
        let mut marks = vec![0];
        let mut crc = 0;
        for chunk in bytes[base..].chunks_exact(Self::STEP) {
            crc = crc32c::crc32c_append(crc, chunk);
            marks.push(crc);
        }
        Self {
            bytes,
            base,
            marks,
            shifts: OnceCell::new(),
        }
    }

    /// The CRC-32C of `bytes[start..end]`.
    ///
    /// # Panics
    ///
    /// Unless `base <= start <= end <= bytes.len()`.
    pub fn crc(&self, start: usize, end: usize) -> u32 {
        assert!(self.base <= start && start <= end && end <= self.bytes.len());
        self.prefix(end) ^ self.shift(self.prefix(start), end - start)
    }

    /// `Z(x, n)`: `n` zero bytes appended to the CRC `x` without the initial and final
    /// inversions, what `crc32c_combine(x, 0, n)` computes, for `n` up to the length of
    /// `bytes[base..]`. With it, the CRC of `head ‖ bytes[start..end]` is
    /// `crc(start, end) ^ shift(crc32c(head), end - start)`.
    pub fn shift(&self, x: u32, n: usize) -> u32 {
        let shifts = self.shifts.get_or_init(|| self.shift_tables());
        let (mut x, mut n, mut k) = (x, n, 0);
        while n != 0 {
            if n & 1 == 1 {
                let t = &shifts[k];
                x = t[0][(x & 0xff) as usize]
                    ^ t[1][((x >> 8) & 0xff) as usize]
                    ^ t[2][((x >> 16) & 0xff) as usize]
                    ^ t[3][(x >> 24) as usize];
            }
            n >>= 1;
            k += 1;
        }
        x
    }

    /// The CRC-32C of `bytes[base..end]`.
    fn prefix(&self, end: usize) -> u32 {
        let i = (end - self.base) / Self::STEP;
        let from = self.base + i * Self::STEP;
        crc32c::crc32c_append(self.marks[i], &self.bytes[from..end])
    }

    /// The tables of the operators for `2^k` zero bytes, for every `2^k` up to the
    /// longest range of `bytes[base..]`.
    fn shift_tables(&self) -> Vec<[[u32; 256]; 4]> {
        fn apply(columns: &[u32; 32], x: u32) -> u32 {
            (0..32)
                .filter(|j| x >> j & 1 == 1)
                .fold(0, |acc, j| acc ^ columns[j])
        }
        let longest = self.bytes.len() - self.base;
        let count = (usize::BITS - longest.leading_zeros()) as usize;
        // The operator for one zero byte, column by column.
        let mut columns: [u32; 32] = std::array::from_fn(|j| crc32c::crc32c_combine(1 << j, 0, 1));
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let mut table = [[0u32; 256]; 4];
            for (m, part) in table.iter_mut().enumerate() {
                for b in 1..256usize {
                    let low = b.trailing_zeros() as usize;
                    part[b] = part[b & (b - 1)] ^ columns[8 * m + low];
                }
            }
            out.push(table);
            // Twice the operator: the one for twice as many zero bytes.
            columns = std::array::from_fn(|j| apply(&columns, apply(&columns, 1 << j)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_crcs_match_direct_ones() {
        let bytes: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for base in [0, 1, 63, 64, 200] {
            let crcs = RangeCrc::new(&bytes, base);
            for start in (base..bytes.len()).step_by(37) {
                for end in (start..=bytes.len()).step_by(101).chain([bytes.len()]) {
                    assert_eq!(crcs.crc(start, end), crc32c::crc32c(&bytes[start..end]));
                }
            }
        }
    }

    #[test]
    fn a_shifted_head_checksum_gives_the_checksum_of_head_and_range() {
        let bytes: Vec<u8> = (0..3000u32).map(|i| (i * 31 + 7) as u8).collect();
        let head = b"record header";
        let crcs = RangeCrc::new(&bytes, 0);
        for (start, end) in [(0, 0), (5, 700), (64, 128), (1000, 3000)] {
            let mut whole = head.to_vec();
            whole.extend_from_slice(&bytes[start..end]);
            let combined = crcs.crc(start, end) ^ crcs.shift(crc32c::crc32c(head), end - start);
            assert_eq!(combined, crc32c::crc32c(&whole));
        }
    }
}
