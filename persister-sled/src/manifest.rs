//! Per-document manifests and the store manifest: counts and running checksums, written
//! in the same sled batch as the data they describe.

use persister_core::StoredSizes;

/// Count, bytes and digest of a set of entries (a document's changes or sync states).
///
/// The digest is the wrapping sum of the entries' hashes, so it is updated in O(1) when
/// an entry is added or removed, and a read that finds the same count and bytes but a
/// stale or foreign entry still disagrees with it (unless 32-bit hashes collide).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub count: u64,
    pub bytes: u64,
    pub digest: u64,
}

impl Tally {
    pub(crate) fn add(&mut self, hash: u32, len: u64) {
        self.count = self.count.wrapping_add(1);
        self.bytes = self.bytes.wrapping_add(len);
        self.digest = self.digest.wrapping_add(u64::from(hash));
    }

    /// Accounts an entry out; `None` (and no change) when the tally holds fewer entries
    /// or bytes than that, which only a damaged manifest can cause.
    pub(crate) fn remove(&mut self, hash: u32, len: u64) -> Option<()> {
        let count = self.count.checked_sub(1)?;
        let bytes = self.bytes.checked_sub(len)?;
        self.count = count;
        self.bytes = bytes;
        self.digest = self.digest.wrapping_sub(u64::from(hash));
        Some(())
    }

    fn encode(&self, out: &mut Vec<u8>) {
        for field in [self.count, self.bytes, self.digest] {
            out.extend_from_slice(&field.to_be_bytes());
        }
    }

    fn decode(bytes: &mut Reader<'_>) -> Option<Self> {
        Some(Self {
            count: bytes.u64()?,
            bytes: bytes.u64()?,
            digest: bytes.u64()?,
        })
    }
}

/// What one document holds, as its manifest records it.
///
/// Encoded (61 bytes, big-endian): changes tally (count, bytes, digest: 3 × u64), sync
/// states tally (3 × u64), then the document: a flag byte (0 none, 1 some), its length
/// (u64) and its entry hash (u32), both 0 when there is none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub changes: Tally,
    pub sync_states: Tally,
    /// The document's `(hash, length)`, when there is one.
    pub document: Option<(u32, u64)>,
}

impl Manifest {
    pub(crate) const LEN: usize = 61;

    pub(crate) fn sizes(&self) -> StoredSizes {
        StoredSizes {
            changes: self.changes.bytes,
            document: self.document.map_or(0, |(_, len)| len),
            sync_states: self.sync_states.bytes,
            change_count: self.changes.count,
            sync_state_count: self.sync_states.count,
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        self.changes.encode(&mut out);
        self.sync_states.encode(&mut out);
        let (flag, (hash, len)) = match self.document {
            Some(document) => (1, document),
            None => (0, (0, 0)),
        };
        out.push(flag);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&hash.to_be_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        let changes = Tally::decode(&mut r)?;
        let sync_states = Tally::decode(&mut r)?;
        let (flag, len, hash) = (r.u8()?, r.u64()?, r.u32()?);
        let document = match flag {
            0 if len == 0 && hash == 0 => None,
            1 => Some((hash, len)),
            _ => return None,
        };
        r.0.is_empty().then_some(Self {
            changes,
            sync_states,
            document,
        })
    }
}

/// The store manifest: the sequence number of the last batch applied, and the count and
/// digest (wrapping sum of crc32c of the manifest keys) of the existing documents.
///
/// Encoded as three big-endian u64s. Every batch rewrites it, so the sequence number in
/// the store tells how many batches survived; the mark file says how many were flushed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StoreManifest {
    pub seq: u64,
    pub documents: Tally,
}

impl StoreManifest {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.documents.count.to_be_bytes());
        out.extend_from_slice(&self.documents.digest.to_be_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        let (seq, count, digest) = (r.u64()?, r.u64()?, r.u64()?);
        r.0.is_empty().then_some(Self {
            seq,
            documents: Tally {
                count,
                bytes: 0,
                digest,
            },
        })
    }

    /// The hash that stands for a document in the store's digest.
    pub(crate) fn document_hash(manifest_key: &[u8]) -> u32 {
        crc32c::crc32c(manifest_key)
    }
}

/// Reads big-endian integers off the front of a slice.
pub(crate) struct Reader<'a>(pub &'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips() {
        let mut m = Manifest::default();
        m.changes.add(7, 100);
        m.changes.add(9, 1);
        m.sync_states.add(u32::MAX, 5);
        m.document = Some((42, 1000));
        let encoded = m.encode();
        assert_eq!(encoded.len(), Manifest::LEN);
        assert_eq!(Manifest::decode(&encoded), Some(m));
        assert_eq!(Manifest::decode(&encoded[1..]), None);
        let none = Manifest::default().encode();
        assert_eq!(Manifest::decode(&none), Some(Manifest::default()));
        let mut bad_flag = none;
        bad_flag[48] = 2;
        assert_eq!(Manifest::decode(&bad_flag), None);
    }

    #[test]
    fn tally_undoes_what_it_added() {
        let mut t = Tally::default();
        t.add(u32::MAX, 10);
        t.add(3, 4);
        assert_eq!(t.remove(u32::MAX, 10), Some(()));
        assert_eq!(t.remove(3, 5), None);
        let mut only = Tally::default();
        only.add(3, 4);
        assert_eq!(t, only);
    }

    #[test]
    fn store_manifest_round_trips() {
        let mut s = StoreManifest {
            seq: 12,
            ..Default::default()
        };
        s.documents
            .add(StoreManifest::document_hash(b"\x01\x00\x01a"), 0);
        assert_eq!(StoreManifest::decode(&s.encode()), Some(s));
        assert_eq!(StoreManifest::decode(&s.encode()[..23]), None);
    }
}
