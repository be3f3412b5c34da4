//! The tables of a store and the byte encoding of their keys and values.
//!
//! Every key is a byte string compared byte by byte (redb's `&[u8]` order), and every
//! integer in a key or value is big-endian, so the order of keys is the order this file
//! promises, on every platform. See the crate documentation for the table overview.

use std::ops::Range;

use persister_core::{ActorId, StoredSizes, push_actor_key, split_actor_key};

use crate::log::{KEY_LEN, Keying};
use redb::TableDefinition;

/// The format of our tables. A file with another value is refused.
pub(crate) const FORMAT_NAME: &[u8] = b"persister-redb";

/// The version of our table layout this build writes: 3, a store with a commit log
/// whose records carry a key (log format version 2).
///
/// Layout 1 (no commit log, no `"log"` entry) is read and written too, without a log.
/// Layout 2 (a commit log without a key, log format version 1) is read and written
/// too; a writable open with `RedbOptions::migrate_format` makes it layout 3: the layouts
/// differ only in the `"log"` entry and the log's format.
pub(crate) const FORMAT_VERSION: u32 = 3;

/// The first layout with a commit log.
pub(crate) const FIRST_WITH_LOG: u32 = 2;

/// The first layout whose commit log's records carry a key.
pub(crate) const FIRST_KEYED: u32 = 3;

/// The redb file format version redb 4 and 5 write, named when redb asks for an upgrade.
pub(crate) const REDB_FILE_FORMAT: u32 = 3;

/// `persister_meta`: `"format"` → [`FORMAT_NAME`], `"format_version"` → u32 BE,
/// `"next_document"` → u64 BE (the number the next new document gets), and from layout
/// 2 `"log"` → a [`LogEntry`].
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("persister_meta");
/// `persister_documents`: document id bytes → [`DocumentRecord`] (48 bytes).
pub(crate) const DOCUMENTS: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("persister_documents");
/// `persister_changes`: [`change_key`] → change bytes.
pub(crate) const CHANGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("persister_changes");
/// `persister_compacted`: document number (u64 BE) → compacted document bytes.
pub(crate) const COMPACTED: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("persister_compacted");
/// `persister_sync_states`: [`sync_state_key`] → sync state bytes.
pub(crate) const SYNC_STATES: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("persister_sync_states");

pub(crate) const META_FORMAT: &str = "format";
pub(crate) const META_VERSION: &str = "format_version";
pub(crate) const META_NEXT_DOCUMENT: &str = "next_document";
pub(crate) const META_LOG: &str = "log";

/// The state of the commit log a store names: the epoch its records continue,
/// whether it is open (it may hold commits the file does not), how many of the epoch's
/// records the file already holds (each logged commit updates it in the same
/// transaction, so a replay skips them), and the format of its records with the key
/// they carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LogEntry {
    pub epoch: u64,
    pub open: bool,
    pub applied: u64,
    /// [`Keying::Unkeyed`] in a store of layout 2. In layout 3, the key of the last log
    /// made (zeroes before the first), which matters only while the log is open.
    pub keying: Keying,
}

/// The length of a [`LogEntry`] of layout 2.
const UNKEYED_ENTRY_LEN: usize = 17;
/// The length of a [`LogEntry`] of layout 3.
const KEYED_ENTRY_LEN: usize = UNKEYED_ENTRY_LEN + KEY_LEN;

impl LogEntry {
    /// Epoch (u64 BE), open (one byte, 1 or 0), applied (u64 BE): 17 bytes; in layout
    /// 3, then the log's key (16 bytes): 33 bytes.
    pub fn encode(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(KEYED_ENTRY_LEN);
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.push(u8::from(self.open));
        out.extend_from_slice(&self.applied.to_be_bytes());
        if let Keying::Keyed(key) = self.keying {
            out.extend_from_slice(&key);
        }
        out
    }

    /// The entry of a store of layout `version` (2 or more).
    pub fn decode(bytes: &[u8], version: u32) -> Option<Self> {
        let keying = match (version >= FIRST_KEYED, bytes.len()) {
            (false, UNKEYED_ENTRY_LEN) => Keying::Unkeyed,
            (true, KEYED_ENTRY_LEN) => Keying::Keyed(bytes[UNKEYED_ENTRY_LEN..].try_into().ok()?),
            _ => return None,
        };
        let open = match bytes[8] {
            0 => false,
            1 => true,
            _ => return None,
        };
        Some(Self {
            epoch: u64_be(&bytes[..8])?,
            open,
            applied: u64_be(&bytes[9..UNKEYED_ENTRY_LEN])?,
            keying,
        })
    }
}

/// Names the commit log's state `entry` within `txn`.
pub(crate) fn set_log_state(
    txn: &redb::WriteTransaction,
    entry: LogEntry,
    path: &std::path::Path,
) -> persister_core::Result<()> {
    use crate::error::RedbResultExt;
    let mut meta = txn.open_table(META).or_store("write to", path)?;
    meta.insert(META_LOG, entry.encode().as_slice())
        .or_store("write to", path)?;
    Ok(())
}

/// The first number given to a document.
pub(crate) const FIRST_DOCUMENT: u64 = 1;

/// What `persister_documents` holds for one document: its number, which prefixes all
/// its keys, and its exact sizes, updated in the same transaction as its data.
///
/// Encoded as six u64 BE: number, changes, document, sync_states, change_count,
/// sync_state_count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DocumentRecord {
    pub number: u64,
    pub sizes: StoredSizes,
}

pub(crate) const RECORD_LEN: usize = 48;

impl DocumentRecord {
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let s = &self.sizes;
        let fields = [
            self.number,
            s.changes,
            s.document,
            s.sync_states,
            s.change_count,
            s.sync_state_count,
        ];
        let mut out = [0; RECORD_LEN];
        for (chunk, field) in out.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&field.to_be_bytes());
        }
        out
    }

    /// `None` when `bytes` is not exactly one record.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != RECORD_LEN {
            return None;
        }
        let mut fields = [0u64; 6];
        for (field, chunk) in fields.iter_mut().zip(bytes.chunks_exact(8)) {
            *field = u64_be(chunk)?;
        }
        let [
            number,
            changes,
            document,
            sync_states,
            change_count,
            sync_state_count,
        ] = fields;
        Some(Self {
            number,
            sizes: StoredSizes {
                changes,
                document,
                sync_states,
                change_count,
                sync_state_count,
            },
        })
    }
}

/// The key of a compacted document, and the prefix of every change and sync-state key
/// of the document: its number, u64 BE.
pub(crate) fn document_key(number: u64) -> [u8; 8] {
    number.to_be_bytes()
}

/// The keys of every change or sync state of document `number`: from its prefix up to
/// the next number's. Numbers stop below `u64::MAX`, so the next one exists.
pub(crate) fn document_range(number: u64) -> Range<[u8; 8]> {
    document_key(number)..document_key(number.saturating_add(1))
}

/// The key of a change: the document number (u64 BE), the actor id in core's
/// order-preserving encoding ([`push_actor_key`]: each `00` byte written as `00 FF`,
/// then the terminator `00 00`), then seq (u64 BE), so that keys sort by actor bytes,
/// then numeric seq.
pub(crate) fn change_key(number: u64, actor: &[u8], seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + actor.len() + 4 + 8);
    encode_change_key(&mut key, number, actor, seq);
    key
}

/// Writes a [`change_key`] into `key`, replacing what it held.
pub(crate) fn encode_change_key(key: &mut Vec<u8>, number: u64, actor: &[u8], seq: u64) {
    key.clear();
    key.extend_from_slice(&document_key(number));
    push_actor_key(key, actor);
    key.extend_from_slice(&seq.to_be_bytes());
}

/// Decodes a [`change_key`] of document `number`; `None` when it is malformed or of
/// another document.
pub(crate) fn decode_change_key(number: u64, key: &[u8]) -> Option<(ActorId, u64)> {
    let (actor, seq) = split_actor_key(key.strip_prefix(&document_key(number))?)?;
    Some((actor, u64_be(seq)?))
}

/// The key of a sync state: the document number (u64 BE), then the peer id's bytes.
/// The number has a fixed width, so no peer id of one document reaches another's keys.
pub(crate) fn sync_state_key(number: u64, peer: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + peer.len());
    key.extend_from_slice(&document_key(number));
    key.extend_from_slice(peer);
    key
}

/// The peer id of a [`sync_state_key`] of document `number`.
pub(crate) fn decode_sync_state_key(number: u64, key: &[u8]) -> Option<&[u8]> {
    key.strip_prefix(&document_key(number))
}

pub(crate) fn u64_be(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

pub(crate) fn u32_be(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_keys_round_trip() {
        for actor in [&b"x"[..], b"\0", b"\0\0\xff\0", &[0; 255], &[0xff; 255]] {
            for seq in [0, 1, u64::MAX] {
                let key = change_key(u64::MAX - 1, actor, seq);
                assert_eq!(
                    decode_change_key(u64::MAX - 1, &key),
                    Some((ActorId::new(actor), seq))
                );
                assert_eq!(decode_change_key(u64::MAX - 2, &key), None);
            }
        }
    }

    #[test]
    fn malformed_change_keys_are_refused() {
        let good = change_key(1, b"a\0b", 9);
        for bad in [
            &good[..good.len() - 1],
            &good[..10],
            &[0, 0, 0, 0, 0, 0, 0, 1][..],
            // an empty actor
            &change_key(1, b"", 9)[..],
            // a NUL not followed by FF
            &[
                0, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9,
            ][..],
            // no terminator
            &[0, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 0, 0, 0, 0, 0, 9][..],
        ] {
            assert_eq!(decode_change_key(1, bad), None, "{bad:?}");
        }
        let mut too_long = change_key(1, &[1; 256], 1);
        assert_eq!(decode_change_key(1, &too_long), None);
        too_long.truncate(0);
        assert_eq!(decode_change_key(1, &too_long), None);
    }

    #[test]
    fn document_ranges_hold_exactly_their_keys() {
        let range = document_range(1);
        for key in [
            change_key(1, b"a", 0),
            change_key(1, &[0xff; 255], u64::MAX),
            sync_state_key(1, b""),
            sync_state_key(1, &[0xff; 1024]),
        ] {
            assert!(range.start.as_slice() <= key.as_slice() && key.as_slice() < &range.end[..]);
        }
        for key in [
            change_key(0, &[0xff; 255], u64::MAX),
            sync_state_key(2, b""),
        ] {
            assert!(!(range.start.as_slice() <= key.as_slice() && key.as_slice() < &range.end[..]));
        }
    }

    #[test]
    fn records_round_trip_and_refuse_other_lengths() {
        let record = DocumentRecord {
            number: 3,
            sizes: StoredSizes {
                changes: 1,
                document: u64::MAX,
                sync_states: 2,
                change_count: 4,
                sync_state_count: 5,
            },
        };
        let bytes = record.encode();
        assert_eq!(&bytes[..8], &[0, 0, 0, 0, 0, 0, 0, 3]);
        assert_eq!(DocumentRecord::decode(&bytes), Some(record));
        assert_eq!(DocumentRecord::decode(&bytes[..47]), None);
        assert_eq!(
            DocumentRecord::decode(&[bytes.as_slice(), &[0]].concat()),
            None
        );
    }
}
