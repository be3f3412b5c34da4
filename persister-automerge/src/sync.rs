//! Sync with peers, each peer's `sync::State` persisted.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use automerge::sync::{self, SyncDoc};
use persister_core::{Batch, Persister, Write};

use crate::doc::Peer;
use crate::error::hex;
use crate::{Error, PersistentDoc, Result};

impl<P: Persister<Error = persister_core::Error>> PersistentDoc<P> {
    /// The next sync message for `peer_id`, or `None` when there is nothing to send
    /// (the peer is up to date, or a message is in flight).
    ///
    /// The peer's state is read from the persister on first use in this session and
    /// written back only if its encoding changed (automerge encodes only what outlives
    /// a connection: the heads both sides are known to share).
    ///
    /// If that write fails, the in-memory state is put back as it was, so the message
    /// is not counted as sent: call again once the persister works (after
    /// [`Error::FlushFailed`], on the document loaded again from the reopened store).
    pub fn generate_sync_message(&mut self, peer_id: &[u8]) -> Result<Option<sync::Message>> {
        self.check_usable()?;
        check_peer_id(peer_id)?;
        let peer = load_peer(
            &mut self.peers,
            self.writer.persister(),
            &mut self.doc,
            peer_id,
        )?;
        let before = peer.state.clone();
        let doc = &mut self.doc;
        let generated = crate::doc::guarded(|| doc.sync().generate_sync_message(&mut peer.state));
        let message = match generated {
            Ok(message) => message,
            Err(panic) => {
                if let Some(peer) = self.peers.get_mut(peer_id) {
                    peer.state = before;
                }
                let reason = format!("answering peer {}: {panic}", hex(peer_id));
                return Err(self.break_with(reason));
            }
        };
        if let Some(state) = self.sync_state_write(peer_id)
            && let Err(e) = self.write_changes(Vec::new(), Some(state))
        {
            if let Some(peer) = self.peers.get_mut(peer_id) {
                peer.state = before;
            }
            return Err(e);
        }
        Ok(message)
    }

    /// Applies a sync message from `peer_id`, then writes the changes it brought and
    /// the peer's new sync state in one atomic batch.
    ///
    /// Changes whose dependencies have not arrived yet wait in automerge's queue and
    /// are written once they apply. If automerge refuses the message, whatever it
    /// applied before failing is still written and [`Error::Automerge`] is returned.
    ///
    /// A message that passes automerge's checksums but breaks its consistency checks
    /// (automerge panics applying it), or that brings a change automerge would store
    /// under another hash, gives [`Error::Broken`]: nothing of it is written, and the
    /// document must be loaded again. A message carrying a Bloom filter automerge could
    /// not use (no bits, or more probes or bytes than it can compute) is refused with
    /// [`Error::RefusedSyncMessage`] before anything of it is applied; the document
    /// stays as it was and usable. A change whose actor id no persister stores (longer
    /// than [`MAX_ACTOR_ID_LEN`](persister_core::MAX_ACTOR_ID_LEN)) gives
    /// [`Error::Broken`] too.
    ///
    /// A `peer_id` longer than [`MAX_PEER_ID_LEN`](persister_core::MAX_PEER_ID_LEN),
    /// whose sync state no persister stores, is refused with [`Error::Persister`] before
    /// anything is applied, here as in [`generate_sync_message`](Self::generate_sync_message)
    /// and [`remove_peer`](Self::remove_peer).
    pub fn receive_sync_message(&mut self, peer_id: &[u8], message: sync::Message) -> Result<()> {
        self.check_usable()?;
        check_peer_id(peer_id)?;
        if let Some(reason) = message.have.iter().find_map(|have| bad_bloom(&have.bloom)) {
            // Automerge keeps the filter and divides by its size, or loops over its
            // probes, when it next answers the peer: refused before anything is applied.
            return Err(Error::RefusedSyncMessage {
                peer: peer_id.to_vec(),
                reason,
            });
        }
        let before = self.doc.get_heads();
        let peer = load_peer(
            &mut self.peers,
            self.writer.persister(),
            &mut self.doc,
            peer_id,
        )?;
        let doc = &mut self.doc;
        let received =
            match crate::doc::guarded(|| doc.sync().receive_sync_message(&mut peer.state, message))
            {
                Ok(received) => received,
                Err(reason) => {
                    // Its in-memory state may be half updated too: never written.
                    self.peers.remove(peer_id);
                    return Err(self.break_with(format!(
                        "a sync message from peer {}: {reason}",
                        hex(peer_id)
                    )));
                }
            };
        let mut changes = self.changes_since(&before, None);
        self.check_storable(&mut changes, None)?;
        let state = self.sync_state_write(peer_id);
        let written = self.write_changes(changes, state);
        received.map_err(Error::from)?;
        written
    }

    /// The in-memory sync state of `peer_id`, if it was used in this session.
    pub fn sync_state(&self, peer_id: &[u8]) -> Option<&sync::State> {
        self.peers.get(peer_id).map(|peer| &peer.state)
    }

    /// Forgets `peer_id`: its sync state is removed from memory and from the persister,
    /// so the next sync with it starts from scratch.
    pub fn remove_peer(&mut self, peer_id: &[u8]) -> Result<()> {
        check_peer_id(peer_id)?;
        self.peers.remove(peer_id);
        self.write_changes(
            Vec::new(),
            Some(Write::RemoveSyncState {
                peer: peer_id.to_vec(),
            }),
        )
    }

    /// The write that stores the peer's state, if its encoding changed since it was
    /// last written; the new encoding counts as written from here on (if the write
    /// fails it stays queued).
    fn sync_state_write(&mut self, peer_id: &[u8]) -> Option<Write> {
        let peer = self.peers.get_mut(peer_id)?;
        let encoded = peer.state.encode();
        let unchanged = match &peer.stored {
            Some(stored) => *stored == encoded,
            // Nothing stored equals a state that knows nothing yet.
            None => encoded == sync::State::new().encode(),
        };
        if unchanged {
            return None;
        }
        peer.stored = Some(encoded.clone());
        Some(Write::SetSyncState {
            peer: peer_id.to_vec(),
            state: encoded,
        })
    }
}

/// Refuses a peer id longer than a persister stores
/// ([`MAX_PEER_ID_LEN`](persister_core::MAX_PEER_ID_LEN)) before anything is applied:
/// its sync state could never be written, and the refused write would stay queued ahead
/// of every later one.
fn check_peer_id(peer_id: &[u8]) -> Result<()> {
    Ok(Batch::new()
        .remove_sync_state(peer_id.to_vec())
        .validate()?)
}

/// The most probes per hash a peer's Bloom filter may ask for (automerge uses 7).
const MAX_BLOOM_PROBES: u64 = 64;
/// The largest Bloom filter a peer may send, in bytes: automerge computes probes modulo
/// its size in bits as a `u32`, and adds two of them.
const MAX_BLOOM_BYTES: u64 = 1 << 28;

/// Why automerge 0.12 could not use a peer's Bloom filter without panicking, hanging or
/// allocating without bound, if it could not: a filter that holds entries must have
/// bits, at most [`MAX_BLOOM_BYTES`] of them, and at most [`MAX_BLOOM_PROBES`] probes.
fn bad_bloom(bloom: &sync::BloomFilter) -> Option<String> {
    let bytes = bloom.to_bytes();
    let mut at = 0;
    let mut leb = || {
        let mut value = 0u64;
        for shift in (0..35).step_by(7) {
            let byte = *bytes.get(at)?;
            at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    };
    // An empty filter (no entries) encodes as no bytes and is never probed.
    let entries = leb()?;
    let (bits_per_entry, probes) = (leb().unwrap_or(0), leb().unwrap_or(0));
    let len = (entries * bits_per_entry).div_ceil(8);
    (len == 0 || len > MAX_BLOOM_BYTES || probes > MAX_BLOOM_PROBES).then(|| {
        format!(
            "its Bloom filter of {entries} entries has {len} bytes and {probes} probes per hash \
             (at least 1 and at most {MAX_BLOOM_BYTES} bytes, at most {MAX_BLOOM_PROBES} probes)"
        )
    })
}

/// The peer's state, read from the persister on first use.
///
/// Shared heads the document does not hold are dropped: a stored state that names
/// them (damaged with a valid encoding, or another peer's or document's) would make
/// the peer answer every message with a reset and never send its changes.
fn load_peer<'a, P: Persister<Error = persister_core::Error>>(
    peers: &'a mut HashMap<Vec<u8>, Peer>,
    persister: &P,
    doc: &mut automerge::AutoCommit,
    peer_id: &[u8],
) -> Result<&'a mut Peer> {
    match peers.entry(peer_id.to_vec()) {
        Entry::Occupied(entry) => Ok(entry.into_mut()),
        Entry::Vacant(entry) => {
            let stored = persister.get_sync_state(peer_id)?;
            let mut state = match &stored {
                Some(bytes) => {
                    sync::State::decode(bytes).map_err(|source| Error::CorruptSyncState {
                        peer: peer_id.to_vec(),
                        source,
                    })?
                }
                None => sync::State::new(),
            };
            state
                .shared_heads
                .retain(|hash| doc.get_change_meta_by_hash(hash).is_some());
            Ok(entry.insert(Peer { state, stored }))
        }
    }
}
