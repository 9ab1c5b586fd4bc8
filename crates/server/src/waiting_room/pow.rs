//! Proof of work for queue joins: the server issues a random challenge (16 bytes, hex);
//! the client finds a `nonce` such that SHA-256(challenge || nonce), the two strings'
//! UTF-8 bytes one after the other, starts with `bits` zero bits. Finding one costs
//! 2^bits hashes on average; checking it costs one.

use sha2::{Digest, Sha256};

/// Longest nonce accepted (a decimal u64 needs 20).
pub const MAX_NONCE_CHARS: usize = 64;

/// A new random challenge: 16 bytes as 32 lower-case hex digits.
pub fn new_challenge() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Whether SHA-256(challenge || nonce) starts with at least `bits` zero bits.
pub fn verify(challenge: &str, nonce: &str, bits: u8) -> bool {
    if nonce.is_empty() || nonce.len() > MAX_NONCE_CHARS {
        return false;
    }
    let mut hasher = Sha256::new();
    hasher.update(challenge.as_bytes());
    hasher.update(nonce.as_bytes());
    leading_zero_bits(&hasher.finalize()) >= u32::from(bits)
}

pub fn leading_zero_bits(hash: &[u8]) -> u32 {
    let mut bits = 0;
    for &byte in hash {
        if byte == 0 {
            bits += 8;
        } else {
            return bits + byte.leading_zeros();
        }
    }
    bits
}

/// Finds a nonce (decimal, counting up from `start`), as a client would; returns it and
/// the hashes it took.
pub fn solve(challenge: &str, bits: u8, start: u64) -> (String, u64) {
    let mut prefix = Sha256::new();
    prefix.update(challenge.as_bytes());
    let mut nonce = start;
    loop {
        let text = nonce.to_string();
        let hash = prefix.clone().chain_update(text.as_bytes()).finalize();
        if leading_zero_bits(&hash) >= u32::from(bits) {
            return (text, nonce - start + 1);
        }
        nonce = nonce.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zero_bits_counts_across_bytes() {
        assert_eq!(leading_zero_bits(&[0x80, 0]), 0);
        assert_eq!(leading_zero_bits(&[0x01, 0xff]), 7);
        assert_eq!(leading_zero_bits(&[0, 0x10]), 11);
        assert_eq!(leading_zero_bits(&[0, 0]), 16);
    }

    #[test]
    fn a_solved_challenge_verifies_and_a_wrong_nonce_or_challenge_does_not() {
        let challenge = new_challenge();
        assert_eq!(challenge.len(), 32);
        let (nonce, _) = solve(&challenge, 12, 0);
        assert!(verify(&challenge, &nonce, 12));
        assert!(verify(&challenge, &nonce, 0), "fewer bits asked: still fine");
        // A nonce found for 12 bits has more only by luck: find a nonce that fails 12.
        let wrong = (0u64..).map(|n| n.to_string()).find(|n| !verify(&challenge, n, 12)).unwrap();
        assert!(!verify(&challenge, &wrong, 12));
        assert!(!verify(&challenge, "", 0), "a nonce is never empty");
        assert!(!verify(&challenge, &"1".repeat(MAX_NONCE_CHARS + 1), 0), "nor too long");
    }

    #[test]
    fn zero_bits_accept_any_nonce() {
        assert!(verify("anything", "0", 0));
    }
}
