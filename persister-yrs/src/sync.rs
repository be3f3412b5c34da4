//! Sync with peers through the Yjs sync protocol: state vectors and updates.

use persister_core::Persister;
use yrs::sync::SyncMessage;
use yrs::{ReadTxn, StateVector, Transact};

use crate::{Error, PersistentYDoc, Result};

impl<P: Persister<Error = persister_core::Error>> PersistentYDoc<P> {
    /// The first message of a sync: this document's state vector
    /// ([`SyncMessage::SyncStep1`]). The peer answers with
    /// [`SyncMessage::SyncStep2`], what this document lacks.
    pub fn sync_step1(&self) -> SyncMessage {
        SyncMessage::SyncStep1(self.state_vector())
    }

    /// Everything this document holds that a peer with the state vector `remote` lacks,
    /// as one v1 update (updates yrs holds pending included, as Yjs does).
    pub fn encode_diff(&self, remote: &StateVector) -> Vec<u8> {
        self.doc.transact().encode_state_as_update_v1(remote)
    }

    /// Handles one message of the Yjs sync protocol and returns the answer, if any.
    ///
    /// - [`SyncMessage::SyncStep1`] (a peer's state vector) is answered with
    ///   [`SyncMessage::SyncStep2`] carrying what the peer lacks; nothing is written.
    /// - [`SyncMessage::SyncStep2`] and [`SyncMessage::Update`] are applied as
    ///   [`apply_update`](Self::apply_update) does, and stored before this returns.
    pub fn receive_sync_message(&mut self, message: SyncMessage) -> Result<Option<SyncMessage>> {
        match message {
            SyncMessage::SyncStep1(remote) => {
                Ok(Some(SyncMessage::SyncStep2(self.encode_diff(&remote))))
            }
            SyncMessage::SyncStep2(update) | SyncMessage::Update(update) => {
                self.apply_update(&update)?;
                Ok(None)
            }
        }
    }

    /// Applies a peer's v1 update in one transaction and writes what it brought before
    /// returning.
    ///
    /// What the document integrates is written as the transaction's update. If part of
    /// `update` waits for updates not received yet (yrs holds it pending), `update` is
    /// written whole as well, so the pending part survives a restart. If yrs refuses
    /// the update, whatever it applied is still written and [`Error::InvalidUpdate`]
    /// is returned.
    pub fn apply_update(&mut self, update: &[u8]) -> Result<()> {
        let invalid = |reason: String| Error::InvalidUpdate { reason };
        let decoded = crate::doc::decode_update(update).map_err(invalid)?;
        let (applied, pending) = {
            let mut txn = self.doc.transact_mut();
            let applied = txn.apply_update(decoded);
            (applied, txn.has_missing_updates())
        };
        let extra = if pending {
            vec![update.to_vec()]
        } else {
            Vec::new()
        };
        let written = self.write_captured(extra);
        applied.map_err(|e| invalid(e.to_string()))?;
        written
    }
}
