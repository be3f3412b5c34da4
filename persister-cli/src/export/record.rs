//! Records and their frames.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A byte string, encoded by postcard as its length and its bytes, and borrowed from
/// the input when decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Bytes<'a>(pub(super) &'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Bytes<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'a [u8]>::deserialize(deserializer).map(Bytes)
    }
}

/// One record body. The variant order is the format: never reorder.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Record<'a> {
    Begin {
        #[serde(borrow)]
        id: Bytes<'a>,
    },
    Compacted {
        #[serde(borrow)]
        document: Bytes<'a>,
    },
    Change {
        #[serde(borrow)]
        actor: Bytes<'a>,
        seq: u64,
        #[serde(borrow)]
        value: Bytes<'a>,
    },
    SyncState {
        #[serde(borrow)]
        peer: Bytes<'a>,
        #[serde(borrow)]
        state: Bytes<'a>,
    },
    End {
        documents: u64,
        digest: u32,
    },
}

/// The bytes of a frame before its body: length and checksum.
pub(super) const FRAME_HEADER_LEN: usize = 8;

/// The checksum of a frame: over the length's bytes and the body.
pub(super) fn frame_crc(len: u32, body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len.to_be_bytes()), body)
}

/// The header: magic, version, and the checksum of both.
pub(super) fn header(version: u32) -> [u8; super::HEADER_LEN] {
    let mut header = [0; super::HEADER_LEN];
    header[..8].copy_from_slice(&super::MAGIC);
    header[8..12].copy_from_slice(&version.to_be_bytes());
    let crc = crc32c::crc32c(&header[..12]);
    header[12..].copy_from_slice(&crc.to_be_bytes());
    header
}

/// The limits of `persister-core`, checked on each id, key and value.
pub(super) mod limits {
    use persister_core::{MAX_ACTOR_ID_LEN, MAX_DOCUMENT_ID_LEN, MAX_PEER_ID_LEN, MAX_VALUE_LEN};

    fn at_most(what: &str, len: usize, max: usize) -> Result<(), String> {
        if len > max {
            return Err(format!(
                "its {what} is {len} bytes, more than the maximum of {max}"
            ));
        }
        Ok(())
    }

    pub(in super::super) fn id(id: &[u8]) -> Result<(), String> {
        at_most("id", id.len(), MAX_DOCUMENT_ID_LEN)
    }

    pub(in super::super) fn actor(actor: &[u8]) -> Result<(), String> {
        if actor.is_empty() {
            return Err("a change has an empty actor id".into());
        }
        at_most("actor id", actor.len(), MAX_ACTOR_ID_LEN)
    }

    pub(in super::super) fn peer(peer: &[u8]) -> Result<(), String> {
        at_most("peer id", peer.len(), MAX_PEER_ID_LEN)
    }

    pub(in super::super) fn value(what: &str, value: &[u8]) -> Result<(), String> {
        at_most(what, value.len(), MAX_VALUE_LEN)
    }
}
