//! Signed checkpoints in the C2SP `tlog-checkpoint` text format, signed as C2SP signed
//! notes with Ed25519, so any tool that speaks those formats can check them.
//!
//! ```text
//! nanhai.tongchou/ledger          ← origin
//! 1234567                         ← tree size
//! qz4yD3s1…=                      ← root hash, base64
//!
//! — nanhai.tongchou/ledger AbCd…= ← key hash (4 bytes) ‖ signature, base64
//! ```

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The longest signed note the checkpoint log takes: an origin, a size, a root and a few
/// signatures fit many times over, and a longer length there is damage, not a note.
pub const MAX_NOTE_BYTES: usize = 4096;

/// What a checkpoint states: the log `origin` had `size` entries with this `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("not a checkpoint: {0}")]
    Malformed(String),
    #[error("no valid signature by key '{0}'")]
    BadSignature(String),
    #[error("not a key: {0}")]
    BadKey(String),
}

/// The 4-byte key hash of the signed-note format for an Ed25519 key.
fn key_hash(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n\x01");
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['+', ' ', '\n'])
}

/// A named Ed25519 key that signs checkpoints.
pub struct NoteSigner {
    pub name: String,
    key: SigningKey,
}

/// A named public key that verifies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    pub name: String,
    key: VerifyingKey,
}

impl NoteSigner {
    pub fn generate(name: &str) -> Result<NoteSigner, CheckpointError> {
        if !valid_name(name) {
            return Err(CheckpointError::BadKey(format!("key name '{name}'")));
        }
        Ok(NoteSigner {
            name: name.to_string(),
            key: SigningKey::generate(&mut rand_core::OsRng),
        })
    }

    /// `PRIVATE+KEY+<name>+<hash>+<base64(0x01 ‖ seed)>`, as signed-note tools write it.
    pub fn encode(&self) -> String {
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex::encode(key_hash(&self.name, &self.key.verifying_key())),
            STANDARD.encode(bytes)
        )
    }

    pub fn decode(text: &str) -> Result<NoteSigner, CheckpointError> {
        let bad = || CheckpointError::BadKey("expected PRIVATE+KEY+name+hash+key".into());
        let rest = text.trim().strip_prefix("PRIVATE+KEY+").ok_or_else(bad)?;
        // Names hold no '+', hashes are hex, and the base64 key may hold '+': split from the left.
        let mut parts = rest.splitn(3, '+');
        let (name, _hash, key) = (
            parts.next().ok_or_else(bad)?,
            parts.next().ok_or_else(bad)?,
            parts.next().ok_or_else(bad)?,
        );
        let bytes = STANDARD.decode(key).map_err(|_| bad())?;
        let seed: [u8; 32] = bytes
            .get(1..)
            .and_then(|b| b.try_into().ok())
            .filter(|_| bytes[0] == 1)
            .ok_or_else(bad)?;
        Ok(NoteSigner {
            name: name.to_string(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// The checkpoint as a signed note.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        let body = checkpoint.body();
        let signature = self.key.sign(body.as_bytes());
        let mut blob = key_hash(&self.name, &self.key.verifying_key()).to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        format!("{body}\n\u{2014} {} {}\n", self.name, STANDARD.encode(blob))
    }
}

impl NoteVerifier {
    /// `<name>+<hash>+<base64(0x01 ‖ public key)>`.
    pub fn encode(&self) -> String {
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(key_hash(&self.name, &self.key)),
            STANDARD.encode(bytes)
        )
    }

    pub fn decode(text: &str) -> Result<NoteVerifier, CheckpointError> {
        let bad = || CheckpointError::BadKey("expected name+hash+key".into());
        let mut parts = text.trim().splitn(3, '+');
        let (name, hash, key) = (
            parts.next().ok_or_else(bad)?,
            parts.next().ok_or_else(bad)?,
            parts.next().ok_or_else(bad)?,
        );
        let bytes = STANDARD.decode(key).map_err(|_| bad())?;
        let public: [u8; 32] = bytes
            .get(1..)
            .and_then(|b| b.try_into().ok())
            .filter(|_| bytes[0] == 1)
            .ok_or_else(bad)?;
        let key = VerifyingKey::from_bytes(&public).map_err(|_| bad())?;
        if hex::encode(key_hash(name, &key)) != hash {
            return Err(CheckpointError::BadKey(
                "the key hash does not match the key".into(),
            ));
        }
        Ok(NoteVerifier {
            name: name.to_string(),
            key,
        })
    }

    /// Checks a signed checkpoint and returns what it states.
    pub fn open(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let (body, signatures) = note
            .split_once("\n\n")
            .map(|(b, s)| (format!("{b}\n"), s))
            .ok_or_else(|| CheckpointError::Malformed("no signature block".into()))?;
        let wanted = key_hash(&self.name, &self.key);
        let signed = signatures.lines().any(|line| {
            let Some(rest) = line.strip_prefix("\u{2014} ") else {
                return false;
            };
            let Some((name, blob)) = rest.split_once(' ') else {
                return false;
            };
            let Ok(blob) = STANDARD.decode(blob) else {
                return false;
            };
            name == self.name
                && blob.len() == 68
                && blob[..4] == wanted
                && Signature::from_slice(&blob[4..])
                    .is_ok_and(|sig| self.key.verify(body.as_bytes(), &sig).is_ok())
        });
        if !signed {
            return Err(CheckpointError::BadSignature(self.name.clone()));
        }
        Checkpoint::parse(&body)
    }
}

impl Checkpoint {
    /// The note body: origin, size, base64 root, each on its line.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// What a note states, its signatures unchecked: for listing and for choosing which
    /// key to check it with, never for trusting it.
    pub fn read_unverified(note: &str) -> Result<Checkpoint, CheckpointError> {
        let (body, _) = note
            .split_once("\n\n")
            .ok_or_else(|| CheckpointError::Malformed("no signature block".into()))?;
        Checkpoint::parse(body)
    }

    fn parse(body: &str) -> Result<Checkpoint, CheckpointError> {
        let mut lines = body.lines();
        let malformed = |what: &str| CheckpointError::Malformed(what.to_string());
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| malformed("no origin line"))?;
        let size = lines
            .next()
            .filter(|s| !s.starts_with('0') || *s == "0")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| malformed("the second line is not a tree size"))?;
        let root: Hash = lines
            .next()
            .and_then(|r| STANDARD.decode(r).ok())
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| malformed("the third line is not a base64 SHA-256 root"))?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "nanhai.tongchou/ledger".into(),
            size: 1_234_567,
            root: crate::merkle::leaf_hash(b"root"),
        }
    }

    #[test]
    fn signed_checkpoints_round_trip_through_their_text_forms() {
        let signer = NoteSigner::generate("nanhai.tongchou/ledger").unwrap();
        let note = signer.sign(&checkpoint());
        assert!(note.starts_with("nanhai.tongchou/ledger\n1234567\n"));
        assert!(note.contains("\n\n\u{2014} nanhai.tongchou/ledger "));
        let verifier = NoteVerifier::decode(&signer.verifier().encode()).unwrap();
        assert_eq!(verifier.open(&note).unwrap(), checkpoint());
        let again = NoteSigner::decode(&signer.encode()).unwrap();
        assert_eq!(again.verifier(), signer.verifier());
    }

    #[test]
    fn key_texts_round_trip_whatever_their_base64_holds() {
        // Standard base64 uses '+': enough keys that some hold it in every position class.
        for _ in 0..200 {
            let signer = NoteSigner::generate("log").unwrap();
            assert_eq!(
                NoteSigner::decode(&signer.encode()).unwrap().verifier(),
                signer.verifier()
            );
            assert_eq!(
                NoteVerifier::decode(&signer.verifier().encode()).unwrap(),
                signer.verifier()
            );
        }
    }

    #[test]
    fn another_key_or_an_edited_note_is_refused() {
        let signer = NoteSigner::generate("log").unwrap();
        let note = signer.sign(&checkpoint());
        let stranger = NoteSigner::generate("log").unwrap().verifier();
        assert_eq!(
            stranger.open(&note),
            Err(CheckpointError::BadSignature("log".into()))
        );
        let grown = note.replacen("1234567", "1234568", 1);
        assert!(signer.verifier().open(&grown).is_err());
        assert!(signer.verifier().open("log\n5\n").is_err());
        assert!(NoteSigner::generate("bad name").is_err());
        let encoded = signer.verifier().encode();
        let wrong_hash = format!("log+00000000+{}", encoded.rsplit('+').next().unwrap());
        assert!(NoteVerifier::decode(&wrong_hash).is_err());
    }

    proptest! {
        #[test]
        fn any_flipped_byte_of_a_signed_note_is_caught(at in 0usize..400, bit in 0u8..8) {
            let signer = NoteSigner::generate("log").unwrap();
            let note = signer.sign(&checkpoint());
            let mut bytes = note.clone().into_bytes();
            let at = at % bytes.len();
            bytes[at] ^= 1 << bit;
            if let Ok(text) = String::from_utf8(bytes) {
                prop_assert!(signer.verifier().open(&text).is_err());
            }
        }
    }
}
