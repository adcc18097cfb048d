//! What one ledger entry says (DESIGN.md §6). Entries are JSON objects whose first key is
//! `seq`, their place in the log, written by the ledger itself so that a deleted, added or
//! swapped entry shows where it happened. They name fields, masks and filters, never the
//! values read: a person or enterprise touched appears only as a keyed hash ([`SubjectKey`]).

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How a recorded action ended.
pub const ALLOWED: &str = "allowed";
pub const DENIED: &str = "denied";
pub const FAILED: &str = "failed";

/// The length of a subject's keyed hash.
pub const SUBJECT_BYTES: usize = 16;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// RFC 3339 with the China offset.
    pub time: String,
    /// statement, download, pull, catalog_change, load, access_request, decision,
    /// grant_change, sign_in, sign_in_failed, subject_lookup, ledger_started, key_rotated …
    pub kind: String,
    /// rest, pg, cli, web, exchange or ledger.
    pub front_door: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub masks: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub row_filters: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// `sha256:` and the hex digest of the result as delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_digest: Option<String>,
    /// Keyed hashes of the people and enterprises whose raw rows the action touched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    /// When they are too many to list here: `sha256:` of their set (the sorted 16-byte
    /// hashes), which is kept beside the ledger and checked against this digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_set: Option<String>,
    /// How many subjects the action touched, listed or in the set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_count: Option<u64>,
    /// The set `subject_set` names, stored by whoever records the entry before the entry.
    #[serde(skip)]
    pub subject_hashes: Vec<[u8; SUBJECT_BYTES]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

impl Entry {
    pub fn new(kind: &str, front_door: &str, outcome: &str) -> Entry {
        Entry {
            time: now(),
            kind: kind.into(),
            front_door: front_door.into(),
            outcome: outcome.into(),
            ..Entry::default()
        }
    }

    /// The bytes handed to the ledger: everything but `seq`, which the ledger puts first.
    pub fn to_bytes(&self) -> Vec<u8> {
        if self.seq.is_none() {
            return serde_json::to_vec(self).expect("an entry serializes");
        }
        let mut unnumbered = self.clone();
        unnumbered.seq = None;
        serde_json::to_vec(&unnumbered).expect("an entry serializes")
    }

    pub fn parse(bytes: &[u8]) -> Result<Entry, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// The current time in China, as entries carry it.
pub fn now() -> String {
    china_time(jiff::Timestamp::now())
}

/// A moment as entries carry it: RFC 3339, milliseconds, China's offset, so that times
/// compare as text.
pub fn china_time(at: jiff::Timestamp) -> String {
    at.to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(8)))
        .strftime("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string()
}

/// The most bytes [`numbered`] adds to an entry.
pub const MOST_NUMBERING_ADDS: usize = r#""seq":18446744073709551615,"#.len();

/// Puts `"seq":N` first in an unnumbered entry (a JSON object).
pub fn numbered(seq: u64, unnumbered: &[u8]) -> Vec<u8> {
    let rest = unnumbered.strip_prefix(b"{").unwrap_or(unnumbered);
    let mut out = format!("{{\"seq\":{seq}").into_bytes();
    if rest.first().is_some_and(|&b| b != b'}') {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    out
}

/// The `seq` an entry starts with, read without parsing the rest.
pub fn seq_of(entry: &[u8]) -> Option<u64> {
    let rest = entry.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || !matches!(rest.get(digits), Some(b',' | b'}')) {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// The secret that turns an ID into the subject hash stored in entries and the index, so
/// that neither reveals who was looked at to someone without the key.
#[derive(Clone)]
pub struct SubjectKey {
    key: [u8; 32],
    /// The HMAC with the key already absorbed, cloned for each ID.
    keyed: Hmac<Sha256>,
}

impl SubjectKey {
    pub fn generate() -> SubjectKey {
        let mut key = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut key);
        SubjectKey::from_bytes(key)
    }

    fn from_bytes(key: [u8; 32]) -> SubjectKey {
        let keyed = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
        SubjectKey { key, keyed }
    }

    pub fn from_hex(text: &str) -> Option<SubjectKey> {
        hex::decode(text.trim())
            .ok()?
            .try_into()
            .ok()
            .map(SubjectKey::from_bytes)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.key)
    }

    /// HMAC-SHA-256 of the ID as written on a card (trimmed, upper case), first 16 bytes,
    /// in hex.
    pub fn subject(&self, id: &str) -> String {
        hex::encode(self.subject_bytes(id))
    }

    /// [`SubjectKey::subject`] as bytes.
    pub fn subject_bytes(&self, id: &str) -> [u8; SUBJECT_BYTES] {
        let mut mac = self.keyed.clone();
        mac.update(id.trim().to_uppercase().as_bytes());
        mac.finalize().into_bytes()[..SUBJECT_BYTES]
            .try_into()
            .expect("a SHA-256 MAC is longer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_ledger_number_comes_first_and_reads_back() {
        let mut e = Entry::new("statement", "rest", DENIED);
        e.user = Some("wang".into());
        let bytes = numbered(41, &e.to_bytes());
        assert!(bytes.starts_with(b"{\"seq\":41,\"time\":"));
        assert_eq!(seq_of(&bytes), Some(41));
        let back = Entry::parse(&bytes).unwrap();
        assert_eq!(back.seq, Some(41));
        assert_eq!(back.user.as_deref(), Some("wang"));
        assert_eq!(numbered(0, b"{}"), b"{\"seq\":0}");
        assert_eq!(seq_of(b"{\"seq\":0}"), Some(0));
        let unnumbered = br#"{"user":"analyst"}"#;
        assert_eq!(
            numbered(u64::MAX, unnumbered).len(),
            unnumbered.len() + MOST_NUMBERING_ADDS
        );
        assert_eq!(seq_of(b"{\"seq\":12x}"), None);
        assert_eq!(seq_of(b"{\"time\":1,\"seq\":1}"), None);
    }

    #[test]
    fn subjects_do_not_show_the_id_and_match_however_it_is_written() {
        let key = SubjectKey::generate();
        let id = "44060519800101123x";
        let hashed = key.subject(id);
        assert_eq!(hashed.len(), 32);
        assert!(!hashed.contains("4406051980"));
        assert_eq!(key.subject(" 44060519800101123X "), hashed);
        assert_ne!(SubjectKey::generate().subject(id), hashed);
        assert_eq!(
            SubjectKey::from_hex(&key.to_hex()).unwrap().subject(id),
            hashed
        );
    }

    proptest! {
        #[test]
        fn any_number_survives_numbering(seq in any::<u64>(), user in "\\PC{0,20}") {
            let mut e = Entry::new("sign_in", "cli", ALLOWED);
            e.user = Some(user);
            let bytes = numbered(seq, &e.to_bytes());
            prop_assert_eq!(seq_of(&bytes), Some(seq));
            let back = Entry::parse(&bytes).unwrap();
            prop_assert_eq!(back.seq, Some(seq));
            prop_assert_eq!(back.user, e.user);
        }
    }
}
