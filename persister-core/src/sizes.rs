//! What a persister holds, in bytes and counts.

/// The bytes and counts a persister holds, as [`Persister::sizes`](crate::Persister::sizes)
/// reports them: exact, and read in O(1) without I/O.
///
/// Byte counts are of stored values only (keys are not counted), so they are the same on
/// every backend and say how much an application has asked to keep, not the space the
/// backend uses on disk.
///
/// With the feature `serde`, it serializes as a map of its five named fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct StoredSizes {
    /// Total bytes of stored change values.
    pub changes: u64,
    /// Bytes of the stored document (0 when there is none).
    pub document: u64,
    /// Total bytes of stored sync-state values.
    pub sync_states: u64,
    /// Number of stored changes.
    pub change_count: u64,
    /// Number of stored sync states.
    pub sync_state_count: u64,
}

impl StoredSizes {
    /// Bytes of changes, document and sync states together; `u64::MAX` should they
    /// add up to more (only sizes from a damaged record can).
    pub fn total_bytes(&self) -> u64 {
        self.changes
            .saturating_add(self.document)
            .saturating_add(self.sync_states)
    }

    /// Whether no bytes and no entries are stored. An empty document (`Some(vec![])`)
    /// has 0 bytes, so it is not told apart here: read
    /// [`get_document`](crate::Persister::get_document) where that matters.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Accounts a change replaced: `old` is the length of the value it replaced (`None`
    /// when the key was absent), `new` the length stored now (`None` when removed).
    pub fn replace_change(&mut self, old: Option<u64>, new: Option<u64>) {
        replace(&mut self.changes, &mut self.change_count, old, new);
    }

    /// Accounts a sync state replaced, as [`StoredSizes::replace_change`] does.
    pub fn replace_sync_state(&mut self, old: Option<u64>, new: Option<u64>) {
        replace(&mut self.sync_states, &mut self.sync_state_count, old, new);
    }

    /// Accounts the document replaced by one of `new` bytes.
    pub fn replace_document(&mut self, new: u64) {
        self.document = new;
    }
}

// Saturating: a backend bug must never turn into a count near u64::MAX.
fn replace(bytes: &mut u64, count: &mut u64, old: Option<u64>, new: Option<u64>) {
    if let Some(old) = old {
        *bytes = bytes.saturating_sub(old);
        *count = count.saturating_sub(1);
    }
    if let Some(new) = new {
        *bytes = bytes.saturating_add(new);
        *count = count.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_accounts_old_value_out() {
        let mut s = StoredSizes::default();
        s.replace_change(None, Some(10));
        s.replace_change(Some(10), Some(4));
        assert_eq!((s.changes, s.change_count), (4, 1));
        s.replace_change(Some(4), None);
        s.replace_change(Some(4), None);
        assert_eq!((s.changes, s.change_count), (0, 0));
        s.replace_sync_state(None, Some(3));
        s.replace_document(7);
        assert_eq!(s.total_bytes(), 10);
    }

    /// Sizes come from a record on disk; a damaged or buggy one must not make the total
    /// panic (debug) or wrap round to a small number (release).
    #[test]
    fn total_bytes_saturates() {
        let s = StoredSizes {
            changes: u64::MAX - 1,
            document: 5,
            sync_states: 1,
            ..StoredSizes::default()
        };
        assert_eq!(s.total_bytes(), u64::MAX);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serializes_with_named_fields() -> Result<(), serde_json::Error> {
        let s = StoredSizes {
            changes: 1,
            document: 2,
            sync_states: 3,
            change_count: 4,
            sync_state_count: 5,
        };
        let json = serde_json::to_string(&s)?;
        assert_eq!(
            json,
            r#"{"changes":1,"document":2,"sync_states":3,"change_count":4,"sync_state_count":5}"#
        );
        assert_eq!(serde_json::from_str::<StoredSizes>(&json)?, s);
        Ok(())
    }
}
