//! Content digests: `algorithm:hex`, as the OCI image spec defines them
//! (descriptor.md, "Digests").
//!
//! A [`Digest`] is always well formed: its algorithm is one lkcache can
//! compute (sha256, sha384, sha512) and its hex part has exactly the length
//! that algorithm produces, in lower case. A [`Hasher`] computes a digest
//! while bytes stream past, so no blob is ever read twice.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// A hash algorithm that lkcache can compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the algorithm of nearly every registry.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// Returns the name used in digest strings and in `blobs/<alg>/`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Returns the length in hex characters of this algorithm's digests.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha384 => 96,
            Algorithm::Sha512 => 128,
        }
    }

    fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha384" => Some(Algorithm::Sha384),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The string has no `algorithm:` prefix or an empty part.
    #[error("digest `{0}` is not of the form `algorithm:hex`")]
    InvalidFormat(String),
    /// The algorithm is well formed but not one lkcache computes.
    #[error("digest `{0}` uses an unsupported algorithm (supported: sha256, sha384, sha512)")]
    Unsupported(String),
    /// The hex part has the wrong length for its algorithm.
    #[error("digest `{digest}` has {actual} hex characters, {algorithm} needs {expected}")]
    InvalidLength {
        /// The whole digest string.
        digest: String,
        /// The algorithm named.
        algorithm: &'static str,
        /// The length the algorithm needs.
        expected: usize,
        /// The length found.
        actual: usize,
    },
    /// The hex part holds characters other than `0-9a-f`.
    #[error("digest `{0}` has characters other than lower-case hex")]
    InvalidHex(String),
}

/// A content digest such as `sha256:e3b0c442...`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Computes the digest of `bytes` with `algorithm`.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::new(algorithm);
        hasher.update(bytes);
        hasher.finish()
    }

    /// Computes the SHA-256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha256, bytes)
    }

    /// Returns the algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Returns the hex part, in lower case.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Returns a short form for messages: the first 12 hex characters.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Digest, DigestError> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(DigestError::InvalidFormat(s.to_string()));
        };
        if !is_algorithm_component(alg) || hex.is_empty() {
            return Err(DigestError::InvalidFormat(s.to_string()));
        }
        let Some(algorithm) = Algorithm::from_name(alg) else {
            return Err(DigestError::Unsupported(s.to_string()));
        };
        if hex.len() != algorithm.hex_len() {
            return Err(DigestError::InvalidLength {
                digest: s.to_string(),
                algorithm: algorithm.name(),
                expected: algorithm.hex_len(),
                actual: hex.len(),
            });
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(DigestError::InvalidHex(s.to_string()));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }
}

/// Tells whether `alg` matches the image spec's algorithm grammar:
/// `[a-z0-9]+ ([+._-] [a-z0-9]+)*`.
fn is_algorithm_component(alg: &str) -> bool {
    !alg.is_empty()
        && alg.split(['+', '.', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Computes a digest incrementally, while bytes stream past.
#[derive(Clone)]
pub struct Hasher {
    state: HasherState,
    bytes: u64,
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
enum HasherState {
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// Starts a hash with `algorithm`.
    pub fn new(algorithm: Algorithm) -> Hasher {
        let state = match algorithm {
            Algorithm::Sha256 => HasherState::Sha256(sha2::Sha256::new()),
            Algorithm::Sha384 => HasherState::Sha384(sha2::Sha384::new()),
            Algorithm::Sha512 => HasherState::Sha512(sha2::Sha512::new()),
        };
        Hasher { state, bytes: 0 }
    }

    /// Feeds `bytes` into the hash.
    pub fn update(&mut self, bytes: &[u8]) {
        self.bytes += bytes.len() as u64;
        match &mut self.state {
            HasherState::Sha256(h) => h.update(bytes),
            HasherState::Sha384(h) => h.update(bytes),
            HasherState::Sha512(h) => h.update(bytes),
        }
    }

    /// Returns how many bytes have been hashed so far.
    pub fn len_bytes(&self) -> u64 {
        self.bytes
    }

    /// Finishes the hash and returns the digest.
    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self.state {
            HasherState::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            HasherState::Sha384(h) => (Algorithm::Sha384, hex::encode(h.finalize())),
            HasherState::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn computes_sha256_of_empty_input() {
        assert_eq!(Digest::sha256_of(b"").to_string(), EMPTY_SHA256);
    }

    #[test]
    fn parses_and_rejects_digest_strings() {
        let cases: &[(&str, bool)] = &[
            (EMPTY_SHA256, true),
            ("sha256:abc", false),
            ("sha256:", false),
            ("sha256", false),
            (":abc", false),
            ("md5:d41d8cd98f00b204e9800998ecf8427e", false),
            (
                "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                false,
            ),
            (&format!("sha512:{}", "a".repeat(128)), true),
            (&format!("sha384:{}", "0".repeat(96)), true),
        ];
        for (input, valid) in cases {
            assert_eq!(input.parse::<Digest>().is_ok(), *valid, "{input}");
        }
    }

    #[test]
    fn streaming_hash_equals_one_shot_hash() {
        let data = b"hello, layers".repeat(1000);
        let mut hasher = Hasher::new(Algorithm::Sha512);
        for chunk in data.chunks(7) {
            hasher.update(chunk);
        }
        assert_eq!(hasher.len_bytes(), data.len() as u64);
        assert_eq!(hasher.finish(), Digest::of(Algorithm::Sha512, &data));
    }
}
