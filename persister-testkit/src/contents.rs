//! Everything a persister holds, read back whole, to compare a store with a model or
//! with another store.

use persister_core::{ChangeEntry, DocumentState, Error, Persister};

/// Everything one document holds: its changes, its document and its sync states, read
/// through the [`Persister`] API ([`Contents::read`]) or taken from a model
/// ([`Contents::of`]), so the two compare with `==`.
///
/// Sizes are left out: a caller that also checks them compares
/// [`Persister::sizes`] with [`DocumentState::sizes`] next to this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contents {
    /// The changes, as `get_change_entries` lists them.
    pub changes: Vec<ChangeEntry>,
    /// The document, as `get_document` returns it.
    pub document: Option<Vec<u8>>,
    /// Each peer of `get_peer_ids`, in that order, with its `get_sync_state`.
    pub sync_states: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Contents {
    /// Reads everything `p` holds.
    ///
    /// # Errors
    ///
    /// Any error of a read, and [`Error::NotFound`] when a peer that
    /// `get_peer_ids` lists has no sync state.
    pub fn read<P: Persister<Error = Error> + ?Sized>(p: &P) -> Result<Self, Error> {
        let mut sync_states = Vec::new();
        for peer in p.get_peer_ids()? {
            let state = p.get_sync_state(&peer)?.ok_or_else(|| Error::NotFound {
                what: "the sync state of a peer that get_peer_ids lists".into(),
            })?;
            sync_states.push((peer, state));
        }
        Ok(Self {
            changes: p.get_change_entries()?,
            document: p.get_document()?,
            sync_states,
        })
    }

    /// What a document in `state` must read as.
    pub fn of(state: &DocumentState) -> Self {
        Self {
            changes: state
                .changes()
                .map(|(actor, seq, value)| (actor.clone(), seq, value.to_vec()))
                .collect(),
            document: state.document().map(<[u8]>::to_vec),
            sync_states: state
                .sync_states()
                .map(|(peer, value)| (peer.to_vec(), value.to_vec()))
                .collect(),
        }
    }

    /// Whether the document holds nothing at all.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.document.is_none() && self.sync_states.is_empty()
    }
}
