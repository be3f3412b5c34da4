//! The payload of a record: one batch of writes.
//!
//! | size | field |
//! |---|---|
//! | 4 | w, the number of writes (u32) |
//! | ... | w writes, each a tag byte and its fields |
//!
//! | tag | write | fields after the tag |
//! |---|---|---|
//! | 1 | insert change | actor length a (u8, 1..=255), actor, seq (u64), value length v (u32), value |
//! | 2 | remove change | actor length a (u8, 1..=255), actor, seq (u64) |
//! | 3 | set document | value length v (u32), value |
//! | 4 | set sync state | peer length p (u16, at most [`MAX_PEER_ID_LEN`]), peer, state length v (u32), state |
//! | 5 | remove sync state | peer length p (u16), peer |
//!
//! Integers are little-endian. Value lengths are at most [`MAX_VALUE_LEN`]. Writes
//! apply in order. The decoder checks every length against the bytes left in the
//! payload and against its maximum before it copies anything, and a payload with bytes
//! left over after its `w` writes is invalid.

use persister_core::{ActorId, Batch, MAX_ACTOR_ID_LEN, MAX_PEER_ID_LEN, MAX_VALUE_LEN, Write};

const INSERT_CHANGE: u8 = 1;
const REMOVE_CHANGE: u8 = 2;
const SET_DOCUMENT: u8 = 3;
const SET_SYNC_STATE: u8 = 4;
const REMOVE_SYNC_STATE: u8 = 5;

/// The fewest bytes a write can take (a sync-state removal with an empty peer id).
const MIN_WRITE_LEN: usize = 3;

/// The encoded length of an insert-change write with an actor of `actor` bytes and a
/// value of `value` bytes.
pub(crate) fn insert_change_len(actor: usize, value: usize) -> u64 {
    (14 + actor + value) as u64
}

/// The encoded length of a set-document write of `value` bytes.
pub(crate) fn set_document_len(value: usize) -> u64 {
    (5 + value) as u64
}

/// The encoded length of a set-sync-state write.
pub(crate) fn set_sync_state_len(peer: usize, state: usize) -> u64 {
    (7 + peer + state) as u64
}

fn write_len(write: &Write) -> u64 {
    match write {
        Write::InsertChange { actor, value, .. } => {
            insert_change_len(actor.as_bytes().len(), value.len())
        }
        Write::RemoveChange { actor, .. } => (10 + actor.as_bytes().len()) as u64,
        Write::SetDocument(value) => set_document_len(value.len()),
        Write::SetSyncState { peer, state } => set_sync_state_len(peer.len(), state.len()),
        Write::RemoveSyncState { peer } => (3 + peer.len()) as u64,
    }
}

/// The encoded length of `batch`'s payload.
pub(crate) fn encoded_len(batch: &Batch) -> u64 {
    4 + batch.writes().iter().map(write_len).sum::<u64>()
}

/// Appends the payload of `batch`, which has been validated, so every length fits its
/// field.
pub(crate) fn encode(out: &mut Vec<u8>, batch: &Batch) {
    out.extend_from_slice(&(batch.len() as u32).to_le_bytes());
    for write in batch.writes() {
        match write {
            Write::InsertChange { actor, seq, value } => put_insert_change(out, actor, *seq, value),
            Write::RemoveChange { actor, seq } => {
                out.push(REMOVE_CHANGE);
                put_actor(out, actor);
                out.extend_from_slice(&seq.to_le_bytes());
            }
            Write::SetDocument(value) => put_set_document(out, value),
            Write::SetSyncState { peer, state } => put_set_sync_state(out, peer, state),
            Write::RemoveSyncState { peer } => {
                out.push(REMOVE_SYNC_STATE);
                put_peer(out, peer);
            }
        }
    }
}

/// Appends an insert-change write.
pub(crate) fn put_insert_change(out: &mut Vec<u8>, actor: &ActorId, seq: u64, value: &[u8]) {
    out.push(INSERT_CHANGE);
    put_actor(out, actor);
    out.extend_from_slice(&seq.to_le_bytes());
    put_value(out, value);
}

/// Appends a set-document write.
pub(crate) fn put_set_document(out: &mut Vec<u8>, value: &[u8]) {
    out.push(SET_DOCUMENT);
    put_value(out, value);
}

/// Appends a set-sync-state write.
pub(crate) fn put_set_sync_state(out: &mut Vec<u8>, peer: &[u8], state: &[u8]) {
    out.push(SET_SYNC_STATE);
    put_peer(out, peer);
    put_value(out, state);
}

fn put_actor(out: &mut Vec<u8>, actor: &ActorId) {
    out.push(actor.as_bytes().len() as u8);
    out.extend_from_slice(actor.as_bytes());
}

fn put_peer(out: &mut Vec<u8>, peer: &[u8]) {
    out.extend_from_slice(&(peer.len() as u16).to_le_bytes());
    out.extend_from_slice(peer);
}

fn put_value(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

/// Decodes the payload of a batch record, passing each write to `apply` in order.
///
/// On an error some writes may have been passed already: callers treat the whole log
/// as unreadable then.
pub(crate) fn decode(payload: &[u8], mut apply: impl FnMut(Write)) -> Result<(), &'static str> {
    let mut r = Reader(payload);
    let count = r.u32()? as usize;
    if count > r.0.len() / MIN_WRITE_LEN {
        return Err("the write count is larger than the payload can hold");
    }
    for _ in 0..count {
        let write = match r.u8()? {
            INSERT_CHANGE => {
                let actor = r.actor()?;
                let seq = r.u64()?;
                let value = r.value()?;
                Write::InsertChange { actor, seq, value }
            }
            REMOVE_CHANGE => {
                let actor = r.actor()?;
                let seq = r.u64()?;
                Write::RemoveChange { actor, seq }
            }
            SET_DOCUMENT => Write::SetDocument(r.value()?),
            SET_SYNC_STATE => {
                let peer = r.peer()?;
                let state = r.value()?;
                Write::SetSyncState { peer, state }
            }
            REMOVE_SYNC_STATE => Write::RemoveSyncState { peer: r.peer()? },
            _ => return Err("a write has an unknown tag"),
        };
        apply(write);
    }
    if !r.0.is_empty() {
        return Err("the payload has bytes after its last write");
    }
    Ok(())
}

/// Reads from the front of a slice, never past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], &'static str> {
        if len > self.0.len() {
            return Err("a length points past the end of the payload");
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or("a field is cut short by the end of the payload")?;
        self.0 = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn actor(&mut self) -> Result<ActorId, &'static str> {
        let len = usize::from(self.u8()?);
        if len == 0 {
            return Err("an actor id is empty");
        }
        debug_assert!(len <= MAX_ACTOR_ID_LEN);
        Ok(ActorId::from(self.take(len)?))
    }

    fn peer(&mut self) -> Result<Vec<u8>, &'static str> {
        let len = usize::from(u16::from_le_bytes(self.array()?));
        if len > MAX_PEER_ID_LEN {
            return Err("a peer id length is over the maximum");
        }
        Ok(self.take(len)?.to_vec())
    }

    fn value(&mut self) -> Result<Vec<u8>, &'static str> {
        let len = self.u32()? as usize;
        if len > MAX_VALUE_LEN {
            return Err("a value length is over the maximum");
        }
        Ok(self.take(len)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(batch: &Batch) -> Result<Vec<Write>, &'static str> {
        let mut out = Vec::new();
        encode(&mut out, batch);
        assert_eq!(out.len() as u64, encoded_len(batch));
        let mut writes = Vec::new();
        decode(&out, |w| writes.push(w))?;
        Ok(writes)
    }

    #[test]
    fn every_write_round_trips() -> Result<(), &'static str> {
        let batch = Batch::new()
            .insert_change(ActorId::new([1; 16]), 7, b"change".to_vec())
            .insert_change(ActorId::new(vec![2; 255]), u64::MAX, Vec::new())
            .remove_change(ActorId::new([3]), 0)
            .set_document(b"doc".to_vec())
            .set_document(Vec::new())
            .set_sync_state(Vec::new(), b"state".to_vec())
            .set_sync_state(vec![9; MAX_PEER_ID_LEN], Vec::new())
            .remove_sync_state(b"peer".to_vec());
        assert_eq!(round_trip(&batch)?, batch.writes());
        assert_eq!(round_trip(&Batch::new())?, Vec::new());
        Ok(())
    }

    #[test]
    fn truncated_payloads_are_refused() {
        let batch = Batch::new()
            .insert_change(ActorId::new([1; 16]), 7, b"change".to_vec())
            .set_sync_state(b"peer".to_vec(), b"state".to_vec());
        let mut out = Vec::new();
        encode(&mut out, &batch);
        for cut in 0..out.len() {
            assert!(decode(&out[..cut], |_| {}).is_err(), "cut at {cut}");
        }
        out.push(0);
        assert_eq!(
            decode(&out, |_| {}),
            Err("the payload has bytes after its last write")
        );
    }

    #[test]
    fn hostile_counts_and_lengths_are_refused_before_allocating() {
        // A count of 2^32 - 1 in a 4-byte payload.
        assert_eq!(
            decode(&u32::MAX.to_le_bytes(), |_| {}),
            Err("the write count is larger than the payload can hold")
        );
        // A document whose length field says 2^32 - 1.
        let mut payload = 1u32.to_le_bytes().to_vec();
        payload.push(SET_DOCUMENT);
        payload.extend_from_slice(&u32::MAX.to_le_bytes());
        payload.extend_from_slice(&[0; 16]);
        assert_eq!(
            decode(&payload, |_| {}),
            Err("a value length is over the maximum")
        );
        // A value length under the maximum but past the end.
        let len = MAX_VALUE_LEN as u32;
        payload[5..9].copy_from_slice(&len.to_le_bytes());
        assert_eq!(
            decode(&payload, |_| {}),
            Err("a length points past the end of the payload")
        );
        // A peer id length over the maximum.
        let mut payload = 1u32.to_le_bytes().to_vec();
        payload.push(REMOVE_SYNC_STATE);
        payload.extend_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(
            decode(&payload, |_| {}),
            Err("a peer id length is over the maximum")
        );
        // An empty actor and an unknown tag.
        let payload = [1, 0, 0, 0, REMOVE_CHANGE, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode(&payload, |_| {}), Err("an actor id is empty"));
        let payload = [1, 0, 0, 0, 77, 0, 0, 0];
        assert_eq!(decode(&payload, |_| {}), Err("a write has an unknown tag"));
    }
}
