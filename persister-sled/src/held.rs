//! Writes a handle has applied but not yet written to sled.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::ops::Bound;

use crate::layout;

/// The newest value of each sled key a handle wrote since it last wrote to sled. Reads
/// look here first, then in sled.
#[derive(Default)]
pub(crate) struct Held {
    entries: BTreeMap<Vec<u8>, Entry>,
    /// Payload bytes of the batches held, which bounds the memory they take.
    bytes: usize,
}

/// What a handle holds for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The framed value (as it will be stored), or `None` where the handle removed it.
    pub value: Option<Vec<u8>>,
    /// Whether sled may hold the key. A removal of a key sled does not hold (a change
    /// written and compacted away between two flushes) never goes to sled.
    pub in_sled: bool,
}

impl Entry {
    /// What sled must do for this key when the held writes go to it: `None` for nothing,
    /// `Some(None)` to remove it, `Some(Some(framed))` to write it.
    pub(crate) fn write(&self) -> Option<Option<&[u8]>> {
        match (&self.value, self.in_sled) {
            (None, false) => None,
            (value, _) => Some(value.as_deref()),
        }
    }
}

impl Held {
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// What is held under `key`, if anything (else read sled).
    pub(crate) fn entry(&self, key: &[u8]) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// The value held under `key`: `None` when nothing (read sled), `Some(None)` when it
    /// was removed, `Some(Some(framed))` when it was written.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.entries.get(key).map(|entry| entry.value.as_deref())
    }

    /// Takes in the writes of one batch, whose payload is `bytes` long.
    pub(crate) fn extend(&mut self, writes: BTreeMap<Vec<u8>, Entry>, bytes: usize) {
        if self.entries.is_empty() {
            self.entries = writes;
        } else {
            self.entries.extend(writes);
        }
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// Every held key and entry, in key order.
    pub(crate) fn into_entries(self) -> impl Iterator<Item = (Vec<u8>, Entry)> {
        self.entries.into_iter()
    }

    /// What sled must do for each held key, in key order: write the framed value, or
    /// remove the key (`None`).
    pub(crate) fn writes(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.entries
            .iter()
            .filter_map(|(key, entry)| Some((key.as_slice(), entry.write()?)))
    }

    /// The held entries whose keys start with `prefix`, in key order, as the key suffix
    /// after `prefix` and the payload (unframed), or `None` for a removal.
    pub(crate) fn under<'a>(
        &'a self,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        self.entries
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(key, _)| key.starts_with(prefix))
            .map(move |(key, entry)| (&key[prefix.len()..], entry.value.as_deref().map(payload)))
    }
}

/// The payload of a framed value that this crate built itself.
pub(crate) fn payload(framed: &[u8]) -> &[u8] {
    layout::split(framed).map_or(&[][..], |(_, payload)| payload)
}

/// Merges `stored` (sled's entries under a prefix: key suffix and payload, in key
/// order) with the held entries under the same prefix, which replace or remove them.
pub(crate) fn merge<'a>(
    stored: Vec<(Vec<u8>, Vec<u8>)>,
    held: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::with_capacity(stored.len());
    let stored = stored.into_iter().map(Ok::<_, Infallible>);
    let held = held.map(|(suffix, value)| (suffix.to_vec(), value.map(<[u8]>::to_vec)));
    let Ok(()) = persister_core::merge_held(stored, held, |key, value| out.push((key, value)));
    out
}

/// Counts, not contents: the held writes may take megabytes.
impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held")
            .field("entries", &self.entries.len())
            .field("bytes", &self.bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(key: &[u8], payload: &[u8]) -> Entry {
        Entry {
            value: Some(layout::frame(key, payload)),
            in_sled: true,
        }
    }

    fn removed(in_sled: bool) -> Entry {
        Entry {
            value: None,
            in_sled,
        }
    }

    #[test]
    fn merge_replaces_removes_and_inserts_in_key_order() {
        let mut held = Held::default();
        let writes = BTreeMap::from([
            (b"pa".to_vec(), framed(b"pa", b"new a")),
            (b"pc".to_vec(), removed(true)),
            (b"pd".to_vec(), framed(b"pd", b"d")),
            (b"q".to_vec(), framed(b"q", b"other prefix")),
        ]);
        held.extend(writes, 10);
        let stored = vec![
            (b"a".to_vec(), b"old a".to_vec()),
            (b"b".to_vec(), b"b".to_vec()),
            (b"c".to_vec(), b"c".to_vec()),
        ];
        let merged = merge(stored, held.under(b"p"));
        assert_eq!(
            merged,
            vec![
                (b"a".to_vec(), b"new a".to_vec()),
                (b"b".to_vec(), b"b".to_vec()),
                (b"d".to_vec(), b"d".to_vec()),
            ]
        );
        assert_eq!(held.bytes(), 10);
        assert_eq!(held.get(b"pc"), Some(None));
        assert_eq!(held.get(b"pz"), None);
    }

    #[test]
    fn merge_of_held_entries_before_and_after_every_stored_one() {
        let mut held = Held::default();
        held.extend(
            BTreeMap::from([
                (b"x0".to_vec(), framed(b"x0", b"0")),
                (b"x9".to_vec(), framed(b"x9", b"9")),
            ]),
            2,
        );
        let stored = vec![(b"5".to_vec(), b"5".to_vec())];
        let keys: Vec<_> = merge(stored, held.under(b"x"))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![b"0".to_vec(), b"5".to_vec(), b"9".to_vec()]);
    }

    #[test]
    fn removals_of_keys_sled_does_not_hold_never_reach_sled() {
        let mut held = Held::default();
        held.extend(
            BTreeMap::from([
                (b"a".to_vec(), removed(false)),
                (b"b".to_vec(), removed(true)),
                (b"c".to_vec(), framed(b"c", b"c")),
            ]),
            0,
        );
        let writes: Vec<_> = held
            .writes()
            .map(|(key, value)| (key, value.is_some()))
            .collect();
        assert_eq!(writes, vec![(&b"b"[..], false), (&b"c"[..], true)]);
        assert_eq!(held.get(b"a"), Some(None), "reads still see the removal");
    }
}
