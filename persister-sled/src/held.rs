//! Writes a handle has applied but not yet written to sled.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;

use crate::layout;

/// The newest value of each sled key a handle wrote since it last wrote to sled: the
/// framed value (as it will be stored), or `None` where the handle removed the key.
/// Reads look here first, then in sled.
#[derive(Default)]
pub(crate) struct Held {
    entries: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Payload bytes of the batches held, which bounds the memory they take.
    bytes: usize,
}

impl Held {
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// What is held under `key`: `None` when nothing (read sled), `Some(None)` when it
    /// was removed, `Some(Some(framed))` when it was written.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.entries.get(key).map(Option::as_deref)
    }

    /// Takes in the writes of one batch, whose payload is `bytes` long.
    pub(crate) fn extend(&mut self, writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>, bytes: usize) {
        if self.entries.is_empty() {
            self.entries = writes;
        } else {
            self.entries.extend(writes);
        }
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// Every held key and value, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_slice(), value.as_deref()))
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
            .map(move |(key, value)| (&key[prefix.len()..], value.as_deref().map(payload)))
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
    let mut held = held.peekable();
    let mut out = Vec::with_capacity(stored.len());
    let push = |out: &mut Vec<_>, (suffix, value): (&[u8], Option<&[u8]>)| {
        if let Some(value) = value {
            out.push((suffix.to_vec(), value.to_vec()));
        }
    };
    for (suffix, payload) in stored {
        while let Some(entry) = held.next_if(|(key, _)| *key < suffix.as_slice()) {
            push(&mut out, entry);
        }
        match held.next_if(|(key, _)| *key == suffix.as_slice()) {
            Some(entry) => push(&mut out, entry),
            None => out.push((suffix, payload)),
        }
    }
    for entry in held {
        push(&mut out, entry);
    }
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

    fn framed(key: &[u8], payload: &[u8]) -> Option<Vec<u8>> {
        Some(layout::frame(key, payload))
    }

    #[test]
    fn merge_replaces_removes_and_inserts_in_key_order() {
        let mut held = Held::default();
        let writes = BTreeMap::from([
            (b"pa".to_vec(), framed(b"pa", b"new a")),
            (b"pc".to_vec(), None),
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
}
