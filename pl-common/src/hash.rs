//! murmur3 (x86, 32-bit): the flow hash that indexes Maglev tables, and the permutation
//! seeds Maglev builds from. The same code runs in the XDP program and on the host.

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline(always)]
const fn block(h: u32, k: u32) -> u32 {
    let k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
const fn finish(mut h: u32, len: u32) -> u32 {
    h ^= len;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// murmur3_32 of four little-endian words (16 bytes): the fixed-size form the data path
/// uses, unrolled so the verifier sees no loop.
#[inline(always)]
pub const fn murmur3_words(w: [u32; 4], seed: u32) -> u32 {
    let h = block(seed, w[0]);
    let h = block(h, w[1]);
    let h = block(h, w[2]);
    let h = block(h, w[3]);
    finish(h, 16)
}

/// murmur3_32 of ten little-endian words (40 bytes): the IPv6 flow key.
#[inline(always)]
pub const fn murmur3_words10(w: &[u32; 10], seed: u32) -> u32 {
    let mut h = seed;
    let mut i = 0;
    while i < 10 {
        h = block(h, w[i]);
        i += 1;
    }
    finish(h, 40)
}

/// murmur3_32 of any byte string (host side: Maglev seeds, tests).
pub fn murmur3(data: &[u8], seed: u32) -> u32 {
    let mut h = seed;
    let mut blocks = data.chunks_exact(4);
    for b in &mut blocks {
        h = block(h, u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, b) in tail.iter().enumerate() {
            k |= u32::from(*b) << (8 * i);
        }
        h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    }
    finish(h, data.len() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Published murmur3_x86_32 vectors, cross-checked with the Python mmh3 package.
    #[test]
    fn golden_vectors() {
        assert_eq!(murmur3(b"", 0), 0);
        assert_eq!(murmur3(b"hello", 0), 0x248b_fa47);
        assert_eq!(
            murmur3(b"The quick brown fox jumps over the lazy dog", 0),
            0x2e4f_f723
        );
    }

    #[test]
    fn ten_word_form_equals_byte_form() {
        let bytes: [u8; 40] = core::array::from_fn(|i| (i * 7) as u8);
        let words: [u32; 10] = core::array::from_fn(|i| {
            u32::from_le_bytes([
                bytes[4 * i],
                bytes[4 * i + 1],
                bytes[4 * i + 2],
                bytes[4 * i + 3],
            ])
        });
        assert_eq!(murmur3_words10(&words, 0x706c), murmur3(&bytes, 0x706c));
    }

    #[test]
    fn word_form_equals_byte_form() {
        let bytes: [u8; 16] = [
            10, 0, 0, 10, 10, 0, 0, 100, 0x9c, 0x40, 0x01, 0xbb, 1, 0, 6, 0,
        ];
        let words = [0, 1, 2, 3].map(|i| {
            u32::from_le_bytes([
                bytes[4 * i],
                bytes[4 * i + 1],
                bytes[4 * i + 2],
                bytes[4 * i + 3],
            ])
        });
        assert_eq!(murmur3_words(words, 0x706c), murmur3(&bytes, 0x706c));
        assert_eq!(
            murmur3(&bytes, 0x706c),
            0x0ba9_c7ca,
            "mmh3.hash(bytes, 0x706c)"
        );
    }
}
