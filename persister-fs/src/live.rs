//! A document's state in memory, with the length a rewrite of its log would have.

use persister_core::{DocumentState, Write};

use crate::format::batch::{insert_change_len, set_document_len, set_sync_state_len};

/// The state of one document and the bytes its live entries take in a log.
///
/// `live_len` is the sum of the encoded lengths of the writes that recreate the state
/// (one insert per change, one set per sync state, the document): what a rewrite
/// writes, apart from record framing. Every other byte of a log is dead. Old value
/// lengths come from the [`StoredSizes`](persister_core::StoredSizes) difference each
/// write makes, so the accounting costs no lookups.
#[derive(Debug, Default)]
pub(crate) struct LiveState {
    state: DocumentState,
    live_len: u64,
}

impl LiveState {
    /// Applies one write and accounts what it adds and what it makes dead.
    pub(crate) fn apply_write(&mut self, write: Write) {
        let before = self.state.sizes();
        match &write {
            Write::InsertChange { actor, value, .. } => {
                let (key, new) = (actor.as_bytes().len(), value.len());
                self.state.apply_write(write);
                let after = self.state.sizes();
                if after.change_count == before.change_count {
                    let old = before.changes + new as u64 - after.changes;
                    self.sub(insert_change_len(key, old as usize));
                }
                self.live_len += insert_change_len(key, new);
            }
            Write::RemoveChange { actor, .. } => {
                let key = actor.as_bytes().len();
                self.state.apply_write(write);
                let after = self.state.sizes();
                if after.change_count < before.change_count {
                    let old = before.changes - after.changes;
                    self.sub(insert_change_len(key, old as usize));
                }
            }
            Write::SetDocument(value) => {
                let new = value.len();
                if self.state.document().is_some() {
                    self.sub(set_document_len(before.document as usize));
                }
                self.state.apply_write(write);
                self.live_len += set_document_len(new);
            }
            Write::SetSyncState { peer, state } => {
                let (key, new) = (peer.len(), state.len());
                self.state.apply_write(write);
                let after = self.state.sizes();
                if after.sync_state_count == before.sync_state_count {
                    let old = before.sync_states + new as u64 - after.sync_states;
                    self.sub(set_sync_state_len(key, old as usize));
                }
                self.live_len += set_sync_state_len(key, new);
            }
            Write::RemoveSyncState { peer } => {
                let key = peer.len();
                self.state.apply_write(write);
                let after = self.state.sizes();
                if after.sync_state_count < before.sync_state_count {
                    let old = before.sync_states - after.sync_states;
                    self.sub(set_sync_state_len(key, old as usize));
                }
            }
        }
    }

    fn sub(&mut self, len: u64) {
        self.live_len = self.live_len.saturating_sub(len);
    }

    /// The document's state.
    pub(crate) fn state(&self) -> &DocumentState {
        &self.state
    }

    /// The encoded bytes of the live entries.
    pub(crate) fn live_len(&self) -> u64 {
        self.live_len
    }
}

#[cfg(test)]
mod tests {
    use persister_core::{ActorId, Batch};

    use super::*;
    use crate::format::batch;

    /// The live length always equals the encoding of the state as one batch.
    fn check(live: &LiveState) {
        let rewrite = batch::encoded_len(&live.state().to_batch()) - 4;
        assert_eq!(live.live_len(), rewrite);
    }

    #[test]
    fn live_length_follows_every_kind_of_write() {
        let a = ActorId::new([1; 16]);
        let b = ActorId::new([2; 3]);
        let mut live = LiveState::default();
        let writes = Batch::new()
            .insert_change(a.clone(), 1, vec![0; 100])
            .insert_change(b.clone(), 1, vec![0; 10])
            .insert_change(a.clone(), 1, vec![0; 7])
            .remove_change(a.clone(), 1)
            .remove_change(a.clone(), 1)
            .remove_change(b.clone(), 2)
            .set_document(vec![0; 50])
            .set_document(Vec::new())
            .set_document(vec![0; 3])
            .set_sync_state(b"p".to_vec(), vec![0; 40])
            .set_sync_state(b"p".to_vec(), vec![0; 4])
            .set_sync_state(Vec::new(), Vec::new())
            .remove_sync_state(b"p".to_vec())
            .remove_sync_state(b"absent".to_vec())
            .insert_change(a, 9, Vec::new());
        for write in writes {
            live.apply_write(write);
            check(&live);
        }
        assert!(live.live_len() > 0);
    }
}
