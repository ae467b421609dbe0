//! Content hashes: what identifies an image wherever it is trained. A model file records the
//! hashes of its held-out images, so any machine holding the same files can score exactly
//! them. The browser computes the same value with `crypto.subtle.digest('SHA-256', bytes)`.

use sha2::{Digest, Sha256};

/// Hex digits kept of the SHA-256: 64 bits, ample to tell a user's images apart.
pub const CONTENT_HASH_DIGITS: usize = 16;

/// The first [`CONTENT_HASH_DIGITS`] hex digits of the SHA-256 of an image file's bytes.
pub fn content_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest[..CONTENT_HASH_DIGITS / 2]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_sha256() {
        // FIPS 180-2's "abc" example: ba7816bf8f01cfea414140de5dae2223...
        assert_eq!(content_hash(b"abc"), "ba7816bf8f01cfea");
    }
}
