//! The workload: changes of random bytes from a few actors, the same for every column.

use persister_testkit::Rng;

/// One change as the workload generates it, before a column converts it to its own types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawChange {
    /// The actor's 16 bytes (the size of an Automerge actor id).
    pub actor: [u8; 16],
    /// The change's sequence number for its actor, from 1.
    pub seq: u64,
    /// The change's bytes.
    pub value: Vec<u8>,
}

impl RawChange {
    /// Bytes of key and value, as `persister_core::Write::payload_len` counts them.
    pub fn payload_len(&self) -> u64 {
        (self.actor.len() + 8 + self.value.len()) as u64
    }
}

/// The parameters of a change workload.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// How many changes in all.
    pub changes: usize,
    /// How many actors share them, round robin.
    pub actors: usize,
    /// Bytes per change.
    pub value_len: usize,
    /// The random seed.
    pub seed: u64,
}

impl Workload {
    /// `changes` changes of 100 random bytes from 4 actors.
    pub fn new(changes: usize) -> Self {
        Self {
            changes,
            actors: 4,
            value_len: 100,
            seed: 0x5eed_0001,
        }
    }

    /// Every change, in the order they are written: actors take turns, and each
    /// actor's sequence numbers count up from 1.
    pub fn generate(&self) -> Vec<RawChange> {
        let mut rng = Rng::new(self.seed);
        let actors: Vec<[u8; 16]> = (0..self.actors.max(1))
            .map(|_| {
                let mut id = [0; 16];
                rng.fill(&mut id);
                id
            })
            .collect();
        (0..self.changes)
            .map(|i| {
                let mut value = vec![0; self.value_len];
                rng.fill(&mut value);
                RawChange {
                    actor: actors[i % actors.len()],
                    seq: (i / actors.len()) as u64 + 1,
                    value,
                }
            })
            .collect()
    }
}

/// A digest of change values in order, to check that a load returned exactly what was
/// written without keeping a second copy of it.
pub fn digest<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    // FNV-1a over lengths and bytes: not cryptographic, only a consistency check.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |byte: u8| {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    };
    for value in values {
        for byte in (value.len() as u64).to_le_bytes() {
            eat(byte);
        }
        for &byte in value {
            eat(byte);
        }
    }
    hash
}

/// The digest `get_changes` must match: values ordered by `(actor bytes, seq)`.
pub fn expected_digest(changes: &[RawChange]) -> u64 {
    let mut sorted: Vec<&RawChange> = changes.iter().collect();
    sorted.sort_by_key(|c| (c.actor, c.seq));
    digest(sorted.iter().map(|c| c.value.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_is_deterministic_and_round_robin() {
        let a = Workload::new(9).generate();
        assert_eq!(a, Workload::new(9).generate());
        assert_eq!(a[0].seq, 1);
        assert_eq!(a[4].seq, 2);
        assert_eq!(a[0].actor, a[4].actor);
        assert_ne!(a[0].actor, a[1].actor);
        assert!(
            a.iter()
                .all(|c| c.value.len() == 100 && c.payload_len() == 124)
        );
    }

    #[test]
    fn digest_depends_on_order_and_boundaries() {
        assert_ne!(digest([&b"ab"[..], b"c"]), digest([&b"a"[..], b"bc"]));
        assert_ne!(digest([&b"a"[..], b"b"]), digest([&b"b"[..], b"a"]));
    }
}
