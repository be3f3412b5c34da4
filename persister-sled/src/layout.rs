//! Keys and value framing of format version 1; the crate docs have the table.
//!
//! Everything lives in sled's default tree. The first key byte says what a key is:
//! store metadata, a document's manifest, or a document's data. Document ids are
//! length-prefixed, so no id's keys are a prefix of another id's. Actor ids are
//! escape-encoded with a terminator, so keys sort by actor bytes and then numeric seq.

use persister_core::{ActorId, DocumentId, Error, Result, push_actor_key, split_actor_key};

/// Store metadata: the format key and the store manifest.
const TAG_META: u8 = 0x00;
/// A document's manifest: `[TAG_MANIFEST] ++ u16be(id len) ++ id`.
const TAG_MANIFEST: u8 = 0x01;
/// A document's data: `[TAG_DATA] ++ u16be(id len) ++ id ++ [part] ++ ...`.
const TAG_DATA: u8 = 0x02;

const PART_DOCUMENT: u8 = 0x01;
const PART_CHANGE: u8 = 0x02;
const PART_SYNC_STATE: u8 = 0x03;

/// The key of the format value (magic and version).
pub(crate) const FORMAT_KEY: &[u8] = &[TAG_META, b'f', b'o', b'r', b'm', b'a', b't'];
/// The key of the store manifest (batch sequence number and document count).
pub(crate) const STORE_KEY: &[u8] = &[TAG_META, b's', b't', b'o', b'r', b'e'];
/// The prefix of every manifest key.
pub(crate) const MANIFESTS: &[u8] = &[TAG_MANIFEST];

/// The keys of one document.
#[derive(Clone, Debug)]
pub(crate) struct DocKeys {
    /// The manifest's key.
    pub manifest: Vec<u8>,
    /// The prefix of every data key of the document.
    pub data: Vec<u8>,
}

impl DocKeys {
    pub(crate) fn new(id: &DocumentId) -> Result<Self> {
        let bytes = id.as_bytes();
        let len = u16::try_from(bytes.len()).map_err(|_| Error::TooLarge {
            what: "document id",
            len: bytes.len() as u64,
            max: u64::from(u16::MAX),
        })?;
        let with_tag = |tag: u8| {
            let mut key = Vec::with_capacity(3 + bytes.len());
            key.push(tag);
            key.extend_from_slice(&len.to_be_bytes());
            key.extend_from_slice(bytes);
            key
        };
        Ok(Self {
            manifest: with_tag(TAG_MANIFEST),
            data: with_tag(TAG_DATA),
        })
    }

    pub(crate) fn document(&self) -> Vec<u8> {
        self.with_part(PART_DOCUMENT, &[])
    }

    /// The prefix of every change key.
    pub(crate) fn changes(&self) -> Vec<u8> {
        self.with_part(PART_CHANGE, &[])
    }

    /// `escape(actor) ++ 00 00 ++ u64be(seq)`: ordered by actor bytes, then seq.
    pub(crate) fn change(&self, actor: &ActorId, seq: u64) -> Vec<u8> {
        let mut key = self.actor_changes(actor);
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    /// The prefix of every change key of `actor` (and of no other actor's):
    /// `escape(actor) ++ 00 00`.
    pub(crate) fn actor_changes(&self, actor: &ActorId) -> Vec<u8> {
        let mut key = self.changes();
        push_actor_key(&mut key, actor.as_bytes());
        key
    }

    /// The prefix of every sync-state key; the peer id follows unencoded.
    pub(crate) fn sync_states(&self) -> Vec<u8> {
        self.with_part(PART_SYNC_STATE, &[])
    }

    pub(crate) fn sync_state(&self, peer: &[u8]) -> Vec<u8> {
        self.with_part(PART_SYNC_STATE, peer)
    }

    fn with_part(&self, part: u8, rest: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.data.len() + 1 + rest.len());
        key.extend_from_slice(&self.data);
        key.push(part);
        key.extend_from_slice(rest);
        key
    }
}

/// Decodes what follows the change prefix: the actor and seq, or `None` if malformed.
pub(crate) fn decode_change(suffix: &[u8]) -> Option<(ActorId, u64)> {
    let (actor, seq) = split_actor_key(suffix)?;
    Some((actor, u64::from_be_bytes(seq.try_into().ok()?)))
}

/// Decodes a manifest key back into its document id, or `None` if malformed.
pub(crate) fn decode_manifest_key(key: &[u8]) -> Option<DocumentId> {
    let (&tag, rest) = key.split_first()?;
    let len: [u8; 2] = rest.get(..2)?.try_into().ok()?;
    let id = rest.get(2..)?;
    (tag == TAG_MANIFEST && usize::from(u16::from_be_bytes(len)) == id.len())
        .then(|| DocumentId::new(id))
}

/// The checksum of an entry: crc32c of its key and then its payload. Binding the key
/// in means a value that turns up under another key fails its check.
pub(crate) fn entry_hash(key: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(key), payload)
}

/// A stored value: `u32be(entry_hash(key, payload)) ++ payload`.
pub(crate) fn frame(key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(4 + payload.len());
    value.extend_from_slice(&entry_hash(key, payload).to_be_bytes());
    value.extend_from_slice(payload);
    value
}

/// The checked payload of a stored value, with its hash; `None` if it fails the check.
pub(crate) fn unframe<'v>(key: &[u8], value: &'v [u8]) -> Option<(u32, &'v [u8])> {
    let (hash, payload) = split(value)?;
    (entry_hash(key, payload) == hash).then_some((hash, payload))
}

/// The hash and payload length a stored value claims, without checking them; used to
/// account out a value that is being replaced or removed.
pub(crate) fn claimed(value: &[u8]) -> Option<(u32, u64)> {
    split(value).map(|(hash, payload)| (hash, payload.len() as u64))
}

/// The hash and payload of a framed value, unchecked.
pub(crate) fn split(value: &[u8]) -> Option<(u32, &[u8])> {
    let (hash, payload) = value.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*hash), payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(id: &str) -> DocKeys {
        DocKeys::new(&DocumentId::from(id)).unwrap()
    }

    #[test]
    fn malformed_change_keys_are_refused() {
        assert!(decode_change(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]).is_some());
        for bad in [
            &[][..],
            &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[1, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[1, 2, 3],
        ] {
            assert_eq!(decode_change(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn documents_whose_ids_are_prefixes_share_no_key_prefix() {
        let (one, ten) = (keys("1"), keys("10"));
        assert!(!ten.data.starts_with(&one.data));
        assert!(!ten.manifest.starts_with(&one.manifest));
        let (empty, a) = (keys(""), keys("a"));
        assert!(!a.data.starts_with(&empty.data));
        assert_eq!(decode_manifest_key(&ten.manifest), Some("10".into()));
        assert_eq!(decode_manifest_key(&empty.manifest), Some("".into()));
        assert_eq!(decode_manifest_key(&ten.manifest[..3]), None);
    }

    #[test]
    fn values_are_bound_to_their_key() {
        let value = frame(b"key", b"payload");
        assert_eq!(unframe(b"key", &value).map(|v| v.1), Some(&b"payload"[..]));
        assert_eq!(unframe(b"other", &value), None);
        let mut flipped = value.clone();
        flipped[5] ^= 1;
        assert_eq!(unframe(b"key", &flipped), None);
        assert_eq!(unframe(b"key", &value[..3]), None);
        assert_eq!(claimed(&value).map(|c| c.1), Some(7));
    }
}
