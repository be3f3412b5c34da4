//! Storage engines: the narrow interface a backend implements, under the one handle
//! and store that this crate builds on it ([`EngineStore`](crate::EngineStore),
//! [`EnginePersister`](crate::EnginePersister)).
//!
//! A backend that implements [`Engine`] gets the whole [`Persister`](crate::Persister)
//! contract from core: the write prologue (poison, limits, empty batches), writes held
//! in memory until `flush` with reads merged over them, the flush a handle makes past
//! its memory bound, exact O(1) sizes, poisoning after a failed commit, documents that
//! exist only in a handle's held writes, what a drop does (contract point 12), and
//! group commit (flushes of different handles that arrive together share one
//! [`commit`](Engine::commit)). The engine only stores and reads.

use std::fmt;
use std::path::Path;

use crate::{ActorId, ChangeEntry, DocumentId, HeldWrites, Recovered, Result, StoredSizes};

/// What an engine holds for one stored document: where its entries are, and its sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<A> {
    /// Where the engine keeps the document's entries (redb: the document's number).
    pub address: A,
    /// The document's sizes, as the engine stored them with its data.
    pub sizes: StoredSizes,
}

/// A key whose stored value's length the handle needs, to keep its sizes exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredKey<'a> {
    /// The change `(actor, seq)`.
    Change(&'a ActorId, u64),
    /// The sync state of a peer.
    SyncState(&'a [u8]),
}

/// One document's writes on their way to the engine: what a handle held since its
/// last flush, and the document's sizes with them applied.
#[derive(Debug)]
pub struct PendingDocument<A> {
    /// The document.
    pub id: DocumentId,
    /// Where the engine keeps it, or `None` for a document not stored yet: the engine's
    /// [`commit`](Engine::commit) sets it.
    pub address: Option<A>,
    /// The document's sizes once these writes are applied; the engine stores them with
    /// the data, in the same atomic commit.
    pub sizes: StoredSizes,
    /// The newest value of each key written since the last commit (`None` for a
    /// removal). A removal is held only for a key the engine may hold.
    pub writes: HeldWrites,
}

/// A storage engine: the part of a backend that stores and reads, and nothing more.
///
/// Every method is called from any thread (an engine is `Send + Sync`), with different
/// documents at the same time; [`commit`](Engine::commit) calls never overlap (the
/// store runs one at a time). Errors are [`Error`](crate::Error)s that name the store's
/// path and say what to do, as the contract asks; an engine never panics on damaged
/// data, and a read of damaged data fails rather than returning less.
///
/// The methods and what each must guarantee:
pub trait Engine: Send + Sync + 'static {
    /// Where a stored document's entries are (redb: a number), as [`read_record`]
    /// gives it and [`commit`](Engine::commit) assigns it to a new document.
    ///
    /// [`read_record`]: Engine::read_record
    type Address: Clone + Send + Sync + fmt::Debug + 'static;

    /// The store's path, for messages.
    fn path(&self) -> &Path;

    /// The most payload bytes a handle holds before it flushes what it holds (the
    /// backend's documented option).
    fn max_pending_bytes(&self) -> usize;

    /// Fails when the store cannot be written (opened read-only), with an error that
    /// says how to open it for writing. Called before every write.
    fn check_writable(&self) -> Result<()> {
        Ok(())
    }

    /// The record of document `id`, or `None` when the engine does not hold it.
    fn read_record(&self, id: &DocumentId) -> Result<Option<Record<Self::Address>>>;

    /// For each of `actors`, the highest seq of its stored changes in the document at
    /// `address`, or `None` when it has none; in the order given.
    fn max_seqs(&self, address: &Self::Address, actors: &[&ActorId]) -> Result<Vec<Option<u64>>>;

    /// For each of `keys`, the length of the value stored under it in the document at
    /// `address`, or `None` when nothing is; in the order given.
    fn stored_lengths(
        &self,
        address: &Self::Address,
        keys: &[StoredKey<'_>],
    ) -> Result<Vec<Option<u64>>>;

    /// Every stored change of the document at `address`, ordered by `(actor bytes,
    /// seq)`. The handle checks their count and bytes against the document's record.
    fn read_changes(&self, address: &Self::Address) -> Result<Vec<ChangeEntry>>;

    /// The stored compacted document of the document at `address`, if any.
    fn read_document(&self, address: &Self::Address) -> Result<Option<Vec<u8>>>;

    /// The stored sync state of `peer` in the document at `address`, if any.
    fn read_sync_state(&self, address: &Self::Address, peer: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Every stored sync state's peer id, ordered by its bytes, with the state's length.
    fn read_peers(&self, address: &Self::Address) -> Result<Vec<(Vec<u8>, u64)>>;

    /// Applies the writes of every document of `documents`, with their sizes, in one
    /// atomic step: after a crash either all of them are there or none. With `durable`,
    /// they are durable when this returns `Ok` (a sync); without, they may be lost by a
    /// crash, but never torn. Sets the [`address`](PendingDocument::address) of every
    /// document not stored yet.
    ///
    /// An `Err` means none of the writes may be relied on: the store poisons every
    /// handle the commit carried, and itself, until it is reopened. An engine that
    /// applied the writes but failed to make them durable sets the addresses all the
    /// same, so that reads check what it now holds.
    fn commit(&self, documents: &mut [PendingDocument<Self::Address>], durable: bool)
    -> Result<()>;

    /// The ids of every stored document, in any order.
    fn list_documents(&self) -> Result<Vec<DocumentId>>;

    /// Removes the document `id` and all its entries in one atomic step that is durable
    /// when this returns; a document the engine does not hold is not an error.
    fn remove_document(&self, id: &DocumentId) -> Result<()>;

    /// Every torn tail that recovery dropped (or found, when read-only) since the
    /// engine was opened. Engines without torn tails keep the default, an empty list.
    fn recovered(&self) -> Vec<Recovered> {
        Vec::new()
    }

    /// The format version of what the engine holds, as
    /// [`Store::format_version`](crate::Store::format_version) gives it; the default is
    /// `None`.
    fn format_version(&self) -> Option<u32> {
        None
    }

    /// Releases the engine's files and locks, reporting what went wrong; dropping the
    /// engine must release them too, before the drop returns.
    fn close(self) -> Result<()>
    where
        Self: Sized,
    {
        drop(self);
        Ok(())
    }
}

/// Appends the order-preserving encoding of an actor id to `key`: every `00` byte
/// written as `00 FF`, then the terminator `00 00`.
///
/// Keys that hold an actor id this way sort by the actor's bytes (contract point 3): the
/// terminator is below any byte an encoded id can continue with, so an id sorts before
/// every longer id it is a prefix of. Whatever follows the terminator (a big-endian seq)
/// then orders within the actor.
///
/// ```
/// use persister_core::{ActorId, push_actor_key, split_actor_key};
///
/// let mut key = Vec::new();
/// push_actor_key(&mut key, b"a\0b");
/// assert_eq!(key, b"a\0\xffb\0\0");
/// key.extend_from_slice(&7u64.to_be_bytes());
/// let (actor, rest) = split_actor_key(&key).unwrap();
/// assert_eq!(actor, ActorId::new(b"a\0b".to_vec()));
/// assert_eq!(rest, 7u64.to_be_bytes());
/// ```
pub fn push_actor_key(key: &mut Vec<u8>, actor: &[u8]) {
    key.reserve(actor.len() + 2);
    for &byte in actor {
        key.push(byte);
        if byte == 0 {
            key.push(0xff);
        }
    }
    key.extend_from_slice(&[0, 0]);
}

/// Decodes an actor id written by [`push_actor_key`] at the start of `key`, and returns
/// it with the bytes after its terminator; `None` when the bytes are not such an
/// encoding, or the id is empty or longer than [`MAX_ACTOR_ID_LEN`](crate::MAX_ACTOR_ID_LEN).
pub fn split_actor_key(key: &[u8]) -> Option<(ActorId, &[u8])> {
    // Most ids hold no 00 byte, and their encoding is the id itself then the
    // terminator: taken as it stands, without decoding byte by byte.
    let nul = key.iter().position(|&byte| byte == 0)?;
    if key.get(nul + 1) == Some(&0) {
        if nul == 0 || nul > crate::MAX_ACTOR_ID_LEN {
            return None;
        }
        return Some((ActorId::from(&key[..nul]), key.get(nul + 2..)?));
    }
    split_escaped_actor_key(key)
}

/// [`split_actor_key`] for an id with a 00 byte, written `00 FF`.
fn split_escaped_actor_key(key: &[u8]) -> Option<(ActorId, &[u8])> {
    // Decoded on the stack: a short id then needs no allocation at all.
    let mut actor = [0u8; crate::MAX_ACTOR_ID_LEN];
    let mut len = 0;
    let mut i = 0;
    loop {
        let byte = match (*key.get(i)?, key.get(i + 1).copied()) {
            (0, Some(0)) => break,
            (0, Some(0xff)) => {
                i += 2;
                0
            }
            (0, _) => return None,
            (byte, _) => {
                i += 1;
                byte
            }
        };
        *actor.get_mut(len)? = byte;
        len += 1;
    }
    if len == 0 {
        return None;
    }
    Some((ActorId::from(&actor[..len]), key.get(i + 2..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(actor: &[u8], seq: u64) -> Vec<u8> {
        let mut key = Vec::new();
        push_actor_key(&mut key, actor);
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    #[test]
    fn actor_keys_sort_by_actor_bytes_then_numeric_seq() {
        let actors: &[&[u8]] = &[
            b"a",
            b"a\0",
            b"a\0\0",
            b"a\0\x01",
            b"a\x01",
            b"ab",
            b"b",
            b"\0",
            b"\0\xff",
            b"\xff",
            b"\xff\xff",
            &[0xff; 255],
        ];
        let seqs = [0, 1, 2, 255, 256, 1 << 32, u64::MAX - 1, u64::MAX];
        let mut by_key = Vec::new();
        for actor in actors {
            for &seq in &seqs {
                by_key.push((key(actor, seq), (actor.to_vec(), seq)));
            }
        }
        by_key.sort_by(|a, b| a.0.cmp(&b.0));
        let mut by_value = by_key.clone();
        by_value.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(by_key, by_value);
    }

    #[test]
    fn actor_keys_round_trip() {
        for actor in [&b"x"[..], b"\0", b"\0\0\xff\0", &[0; 255], &[0xff; 255]] {
            for seq in [0, 1, u64::MAX] {
                let key = key(actor, seq);
                let (decoded, rest) = split_actor_key(&key).expect("decodes");
                assert_eq!(decoded, ActorId::new(actor.to_vec()));
                assert_eq!(rest, seq.to_be_bytes());
            }
        }
    }

    #[test]
    fn malformed_actor_keys_are_refused() {
        for bad in [
            &b""[..],
            b"a",
            b"a\0",
            // an empty actor
            b"\0\0",
            // a NUL followed by neither 00 nor FF
            b"a\0\x01\0\0",
        ] {
            assert_eq!(split_actor_key(bad), None, "{bad:?}");
        }
        assert_eq!(split_actor_key(&key(&[1; 256], 1)), None);
        assert_eq!(split_actor_key(&key(&[0; 256], 1)), None);
    }

    /// The shortcut for ids without a 00 byte decodes every key as the byte-wise
    /// decoding does: every string of up to 7 bytes of 00, 01 and FF.
    #[test]
    fn the_shortcut_agrees_with_the_bytewise_decoding() {
        let mut key = Vec::new();
        for len in 0..=7u32 {
            for n in 0..3usize.pow(len) {
                key.clear();
                let mut rest = n;
                for _ in 0..len {
                    key.push([0, 1, 0xff][rest % 3]);
                    rest /= 3;
                }
                assert_eq!(
                    split_actor_key(&key),
                    split_escaped_actor_key(&key),
                    "{key:?}"
                );
            }
        }
        for actor in [&[1; 255][..], &[1; 256]] {
            let key = self::key(actor, 7);
            assert_eq!(split_actor_key(&key), split_escaped_actor_key(&key));
        }
    }
}
