//! The availability bitmap: one bit per seat, 1 = available.
//!
//! Wire layout (API.md): `ceil(n/8)` bytes, bit `i` is bit `i % 8` (least significant
//! first) of byte `i / 8`. Words are little-endian `u64`, so the wire form is the words'
//! little-endian bytes truncated to `ceil(n/8)`.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    words: Vec<u64>,
    len: usize,
    ones: usize,
}

impl Bitmap {
    /// A bitmap of `len` bits, all set (every seat available).
    pub fn all_available(len: usize) -> Self {
        let mut words = vec![u64::MAX; len.div_ceil(64)];
        if !len.is_multiple_of(64) {
            let last = words.last_mut().expect("len % 64 != 0 implies a word");
            *last = (1u64 << (len % 64)) - 1;
        }
        Bitmap { words, len, ones: len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Seats available.
    pub fn count_available(&self) -> usize {
        self.ones
    }

    #[inline]
    pub fn is_available(&self, index: u32) -> bool {
        let i = index as usize;
        i < self.len && self.words[i / 64] & (1 << (i % 64)) != 0
    }

    /// Marks a seat; returns whether the bit changed.
    #[inline]
    pub fn set_available(&mut self, index: u32, available: bool) -> bool {
        let i = index as usize;
        assert!(i < self.len, "seat index {i} out of range {}", self.len);
        let mask = 1u64 << (i % 64);
        let word = &mut self.words[i / 64];
        let was = *word & mask != 0;
        if was != available {
            *word ^= mask;
            if available {
                self.ones += 1;
            } else {
                self.ones -= 1;
            }
        }
        was != available
    }

    /// This bitmap with every bit of `other` cleared (`self AND NOT other`); bits past
    /// `other`'s length are kept.
    pub fn without(&self, other: &Bitmap) -> Bitmap {
        let mut words = self.words.clone();
        for (word, mask) in words.iter_mut().zip(&other.words) {
            *word &= !mask;
        }
        let ones = words.iter().map(|w| w.count_ones() as usize).sum();
        Bitmap { words, len: self.len, ones }
    }

    /// A bitmap of `len` bits with exactly `indexes` set (indexes past `len` are ignored).
    pub fn from_indexes(len: usize, indexes: impl IntoIterator<Item = u32>) -> Self {
        let mut map = Bitmap { words: vec![0; len.div_ceil(64)], len, ones: 0 };
        for i in indexes {
            if (i as usize) < len {
                map.set_available(i, true);
            }
        }
        map
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.words.len() * 8);
        for word in &self.words {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.truncate(self.len.div_ceil(8));
        out
    }

    /// Parses the wire form of a bitmap of `len` bits.
    pub fn from_bytes(bytes: &[u8], len: usize) -> Option<Self> {
        if bytes.len() != len.div_ceil(8) {
            return None;
        }
        let mut words = vec![0u64; len.div_ceil(64)];
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            words[i] = u64::from_le_bytes(buf);
        }
        if !len.is_multiple_of(64) && words.last().is_some_and(|w| w >> (len % 64) != 0) {
            return None;
        }
        let ones = words.iter().map(|w| w.count_ones() as usize).sum();
        Some(Bitmap { words, len, ones })
    }

    /// Indexes of the available seats, ascending.
    pub fn iter_available(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &word)| {
            let mut bits = word;
            std::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let b = bits.trailing_zeros();
                    bits &= bits - 1;
                    (w * 64) as u32 + b
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn without_clears_the_other_maps_bits() {
        let all = Bitmap::all_available(70);
        let mask = Bitmap::from_indexes(70, [0, 9, 69, 200]);
        assert_eq!(mask.count_available(), 3);
        let rest = all.without(&mask);
        assert_eq!(rest.count_available(), 67);
        assert!(!rest.is_available(0) && !rest.is_available(69) && rest.is_available(1));
    }

    #[test]
    fn wire_layout_is_least_significant_bit_first() {
        let mut map = Bitmap::all_available(10);
        assert_eq!(map.to_bytes(), vec![0xff, 0x03]);
        map.set_available(0, false);
        map.set_available(9, false);
        assert_eq!(map.to_bytes(), vec![0xfe, 0x01]);
        assert_eq!(map.count_available(), 8);
    }

    #[test]
    fn setting_a_bit_twice_changes_it_once() {
        let mut map = Bitmap::all_available(70);
        assert!(map.set_available(65, false));
        assert!(!map.set_available(65, false));
        assert_eq!(map.count_available(), 69);
        assert!(!map.is_available(65));
        assert!(!map.is_available(70), "out of range reads as unavailable");
    }

    proptest! {
        #[test]
        fn wire_form_round_trips(len in 0usize..300, flips in proptest::collection::vec(any::<u16>(), 0..100)) {
            let mut map = Bitmap::all_available(len);
            for f in flips {
                if len > 0 {
                    let i = (f as usize % len) as u32;
                    let now = map.is_available(i);
                    map.set_available(i, !now);
                }
            }
            let back = Bitmap::from_bytes(&map.to_bytes(), len).unwrap();
            prop_assert_eq!(&back, &map);
            prop_assert_eq!(map.iter_available().count(), map.count_available());
            prop_assert!(map.iter_available().all(|i| map.is_available(i)));
        }
    }
}
