//! A split-block Bloom filter over one section's hashes (the layout Parquet uses): a lookup
//! reads one 32-byte block, and for most values an append brings the block says "surely
//! absent", so the section's entries — larger than any cache, each probe a miss — are
//! not searched at all.

/// Bytes in a block: eight 32-bit words, one bit set in each per value.
pub const BLOCK: usize = 32;
/// About one false positive in a thousand lookups: each costs a search of the entries, a
/// few pages mapped in at random.
const BITS_PER_VALUE: usize = 16;
const SALT: [u32; 8] = [
    0x47b6_137b,
    0x4497_4d91,
    0x8824_ad5b,
    0xa2b7_289d,
    0x7054_95c7,
    0x2df1_424b,
    0x9efc_4947,
    0x5c6b_fb31,
];

/// The blocks a filter of `values` values has.
pub fn blocks(values: usize) -> usize {
    (values * BITS_PER_VALUE).div_ceil(BLOCK * 8).max(1)
}

/// Hashes are uniform: the high word picks the block, the low bits the bit in each word.
fn block_of(hash: u128, blocks: usize) -> usize {
    ((u128::from((hash >> 64) as u64) * blocks as u128) >> 64) as usize
}

fn bits(hash: u128) -> [u32; 8] {
    let x = hash as u32;
    SALT.map(|salt| 1 << (x.wrapping_mul(salt) >> 27))
}

/// A filter being filled, sized for the values it will hold.
pub struct Builder {
    words: Vec<u32>,
}

impl Builder {
    pub fn new(values: usize) -> Builder {
        Builder {
            words: vec![0; blocks(values) * 8],
        }
    }

    pub fn insert(&mut self, hash: u128) {
        let block = block_of(hash, self.words.len() / 8);
        let words = &mut self.words[block * 8..block * 8 + 8];
        for (word, bit) in words.iter_mut().zip(bits(hash)) {
            *word |= bit;
        }
    }

    pub fn blocks(&self) -> usize {
        self.words.len() / 8
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }
}

/// The block of the filter's bytes that answers for `hash`.
pub fn block(filter: &[u8], hash: u128) -> &[u8] {
    let start = block_of(hash, filter.len() / BLOCK) * BLOCK;
    &filter[start..start + BLOCK]
}

/// Whether the filter's bytes may hold `hash` (false: surely not).
pub fn may_hold(filter: &[u8], hash: u128) -> bool {
    (bits(hash).iter().zip(block(filter, hash).chunks_exact(4)))
        .all(|(bit, word)| u32::from_le_bytes(word.try_into().expect("4 bytes")) & bit != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn filled(hashes: &[u128]) -> Vec<u8> {
        let mut filter = Builder::new(hashes.len());
        hashes.iter().for_each(|h| filter.insert(*h));
        filter.to_bytes()
    }

    proptest! {
        #[test]
        fn every_value_put_in_is_found(hashes in prop::collection::vec(any::<u128>(), 0..2000)) {
            let filter = filled(&hashes);
            prop_assert_eq!(filter.len(), blocks(hashes.len()) * BLOCK);
            for h in &hashes {
                prop_assert!(may_hold(&filter, *h));
            }
        }
    }

    #[test]
    fn few_values_not_put_in_pass() {
        let spread = |i: u128| twox_hash::XxHash3_128::oneshot(&i.to_le_bytes());
        let filter = filled(&(0..100_000).map(spread).collect::<Vec<_>>());
        let passed = (100_000..200_000)
            .filter(|i| may_hold(&filter, spread(*i)))
            .count();
        assert!(passed < 300, "{passed} of 100,000 absent values passed");
        assert!(
            !may_hold(&filled(&[]), spread(1)),
            "an empty filter holds nothing"
        );
    }
}
