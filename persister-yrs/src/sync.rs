//! Sync with peers through the Yjs sync protocol: state vectors and updates.

use persister_core::Persister;
use yrs::sync::SyncMessage;
use yrs::{ReadTxn, StateVector, Transact};

use crate::doc::{guarded, lock};
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
    ///
    /// # Errors
    ///
    /// [`Error::Broken`] when the document is unusable, or yrs cannot encode its state
    /// (it then is).
    pub fn encode_diff(&self, remote: &StateVector) -> Result<Vec<u8>> {
        self.usable()?;
        guarded(|| self.doc.transact().encode_state_as_update_v1(remote))
            .map_err(|reason| self.break_with(format!("encoding its state: {reason}")))
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
                Ok(Some(SyncMessage::SyncStep2(self.encode_diff(&remote)?)))
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
    ///
    /// An update that makes yrs panic as it applies it, or that leaves the document in
    /// a state yrs cannot encode or whose update does not decode again, is written not
    /// at all: the document is then unusable ([`Error::Broken`]), and the store holds
    /// everything before it.
    pub fn apply_update(&mut self, update: &[u8]) -> Result<()> {
        self.usable()?;
        let invalid = |reason: String| Error::InvalidUpdate { reason };
        let decoded = crate::doc::decode_update(update).map_err(invalid)?;
        let before = lock(&self.captured).len();
        // The apply guarded, and the transaction's commit (when it is dropped) too.
        let outcome = guarded(|| {
            let mut txn = self.doc.transact_mut();
            let applied = guarded(|| txn.apply_update(decoded));
            let pending = txn.has_missing_updates();
            (applied, pending)
        });
        let checked = match outcome {
            Ok((Ok(applied), pending)) => self
                .check_applied(before, pending)
                .map(|()| (applied, pending)),
            Ok((Err(reason), _)) | Err(reason) => Err(reason),
        };
        let (applied, pending) = match checked {
            Ok(applied) => applied,
            Err(reason) => {
                lock(&self.captured).truncate(before);
                return Err(self.break_with(format!(
                    "a peer's update of {} bytes: {reason}; nothing of it was written",
                    update.len()
                )));
            }
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

    /// Checks what applying a peer's update left, before anything of it is written:
    /// every update captured since `before` decodes again, and a document holding
    /// pending updates still encodes (yrs merges them as it encodes, and panics on some).
    pub(crate) fn check_applied(
        &self,
        before: usize,
        pending: bool,
    ) -> std::result::Result<(), String> {
        for update in lock(&self.captured).iter().skip(before) {
            crate::doc::decode_update(update).map_err(|reason| {
                format!("yrs made an update of it that does not decode ({reason})")
            })?;
        }
        if pending {
            guarded(|| {
                let txn = self.doc.transact();
                txn.encode_state_as_update_v1(&txn.state_vector())
            })
            .map_err(|reason| {
                format!("it left updates pending that yrs cannot encode ({reason})")
            })?;
        }
        Ok(())
    }
}
