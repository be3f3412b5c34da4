use super::*;
use crate::{ChangeEntry, MAX_BATCH_LEN, MAX_VALUE_LEN};
use crate::{EngineStore, MemoryEngine, Store};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn insert(actor: &ActorId, seq: u64) -> Write {
    Write::InsertChange {
        actor: actor.clone(),
        seq,
        value: vec![1; 10],
    }
}

fn on_disk<P>(inner: P, disk: &Disk) -> OnDisk<P> {
    OnDisk {
        inner,
        disk: disk.clone(),
    }
}

#[test]
fn a_batch_not_applied_stays_queued_whole() -> Result<(), Error> {
    let store = EngineStore::new(MemoryEngine::new());
    let disk = Disk::new();
    let mut writer = DocumentWriter::new(
        on_disk(store.open_document(&"d".into())?, &disk),
        FlushPolicy::Manual,
    );
    let actor = ActorId::new([1]);
    disk.full();
    assert!(
        writer
            .write([insert(&actor, 1), insert(&actor, 2)])
            .is_err()
    );
    assert_eq!(
        (writer.queued_writes(), writer.sizes().change_count),
        (2, 0)
    );
    // Still refused; the queue is kept, in order.
    assert!(writer.write([insert(&actor, 3)]).is_err());
    assert_eq!(writer.queued_writes(), 3);
    assert!(
        !writer.flush_failed(),
        "a write not applied is no failed flush"
    );
    disk.free();
    writer.write([insert(&actor, 4)])?;
    assert_eq!(writer.queued_writes(), 0);
    assert_eq!(disk.inserted(), vec![vec![1, 2, 3, 4]]);
    assert_eq!(writer.sizes().change_count, 4);
    Ok(())
}

/// A write no persister applies (here an empty actor id; a change over
/// `MAX_VALUE_LEN` alike) is refused at once and not queued: queued, it would go
/// ahead of every later write, and nothing would be stored again.
#[test]
fn a_write_no_persister_applies_is_refused_not_queued() -> Result<(), Error> {
    let store = EngineStore::new(MemoryEngine::new());
    let disk = Disk::new();
    let mut writer = DocumentWriter::new(
        on_disk(store.open_document(&"d".into())?, &disk),
        FlushPolicy::Manual,
    );
    let actor = ActorId::new([1]);
    let invalid = Write::InsertChange {
        actor: ActorId::new([]),
        seq: 1,
        value: vec![],
    };
    // Refused before the queued write is tried: nothing is written.
    disk.full();
    assert!(writer.write([insert(&actor, 1)]).is_err());
    disk.free();
    let refused = writer.write([insert(&actor, 2), invalid]);
    assert!(
        matches!(
            refused,
            Err(Error::InvalidInput {
                what: "actor id",
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(writer.queued_writes(), 1);
    assert!(disk.applied().is_empty());
    writer.write([insert(&actor, 3)])?;
    writer.flush()?;
    assert_eq!(disk.inserted(), vec![vec![1, 3]]);
    Ok(())
}

#[test]
fn a_failed_policy_flush_leaves_nothing_queued_and_compaction_removes_what_was_stored()
-> Result<(), Error> {
    let store = EngineStore::new(MemoryEngine::new());
    let mut writer =
        DocumentWriter::new(store.open_document(&"d".into())?, FlushPolicy::EveryBatch);
    let actor = ActorId::new([1]);
    writer.write([insert(&actor, 1)])?;
    store.fail_next_flush();
    // Applied, then the flush failed: the write is not retried (it was applied).
    assert!(!writer.flush_failed());
    assert!(writer.write([insert(&actor, 2)]).is_err());
    assert_eq!(writer.queued_writes(), 0);
    assert!(writer.flush_failed());
    drop(writer);

    // A compaction applied that changes no size (nothing stored, the same document
    // again), then a failed flush: the writer says so, whatever the sizes say.
    let store = EngineStore::new(MemoryEngine::new());
    let mut writer =
        DocumentWriter::new(store.open_document(&"d".into())?, FlushPolicy::EveryBatch);
    writer.compact(b"doc".to_vec(), [])?;
    let sizes = writer.sizes();
    store.fail_next_flush();
    assert!(writer.compact(b"doc".to_vec(), []).is_err());
    assert_eq!(writer.sizes(), sizes);
    assert!(writer.flush_failed());
    drop(writer);

    // So does flush's own.
    let store = EngineStore::new(MemoryEngine::new());
    let mut writer = DocumentWriter::new(store.open_document(&"d".into())?, FlushPolicy::Manual);
    writer.write([insert(&actor, 1)])?;
    store.fail_next_flush();
    assert!(writer.flush().is_err());
    assert!(writer.flush_failed());
    drop(writer);

    let store = EngineStore::new(MemoryEngine::new());
    let mut writer = DocumentWriter::new(store.open_document(&"d".into())?, FlushPolicy::Manual);
    writer.mark_stored(actor.clone(), 7);
    writer.write([insert(&actor, 1), insert(&actor, 2)])?;
    writer.queue([insert(&actor, 3)]);
    writer.compact(b"doc".to_vec(), [(ActorId::new([2]), 1)])?;
    let persister = writer.close()?;
    assert!(persister.get_changes()?.is_empty());
    assert_eq!(persister.get_document()?, Some(b"doc".to_vec()));
    Ok(())
}

/// A compaction drops the queued change insertions (its document holds them) and
/// documents (it replaces them), writes the other queued writes in its batch, and
/// when that batch is refused changes nothing: the queue is as it was.
#[test]
fn a_compaction_keeps_the_queue_when_refused_and_writes_what_it_does_not_cover() -> Result<(), Error>
{
    let store = EngineStore::new(MemoryEngine::new());
    let disk = Disk::new();
    let mut writer = DocumentWriter::new(
        on_disk(store.open_document(&"d".into())?, &disk),
        FlushPolicy::Manual,
    );
    let actor = ActorId::new([1]);
    writer.write([insert(&actor, 1)])?;
    disk.full();
    let peer = Write::SetSyncState {
        peer: b"p".to_vec(),
        state: b"s".to_vec(),
    };
    assert!(writer.write([insert(&actor, 2), peer]).is_err());
    assert!(writer.write([Write::SetDocument(b"old".to_vec())]).is_err());
    assert!(writer.compact(b"new".to_vec(), []).is_err());
    assert_eq!(writer.queued_writes(), 3);
    disk.free();
    writer.compact(b"new".to_vec(), [])?;
    assert_eq!(writer.queued_writes(), 0);
    assert_eq!(
        disk.applied()[1..],
        [vec![
            ("document", 0, 3),
            ("remove", 1, 9),
            ("sync state", 0, 2)
        ]]
    );
    let persister = writer.close()?;
    assert!(persister.get_changes()?.is_empty());
    assert_eq!(persister.get_document()?, Some(b"new".to_vec()));
    assert_eq!(persister.get_sync_state(b"p")?, Some(b"s".to_vec()));
    Ok(())
}

/// A write that cannot be applied (the disk is full) stays queued; it must not keep
/// the writes applied before it from being made durable by `flush` or `close`.
/// Without that, closing fails and drops the handle, which discards them (contract
/// point 12).
#[test]
fn a_write_that_cannot_apply_does_not_keep_earlier_writes_from_durability() -> Result<(), Error> {
    let store = EngineStore::new(MemoryEngine::new());
    let actor = ActorId::new([1]);
    let disk = Disk::new();
    // flush
    let mut writer = DocumentWriter::new(
        on_disk(store.open_document(&"a".into())?, &disk),
        FlushPolicy::Manual,
    );
    writer.write([insert(&actor, 1)])?;
    disk.full();
    assert!(writer.write([insert(&actor, 2)]).is_err());
    assert!(writer.flush().is_err(), "the queued write is still refused");
    drop(writer);
    assert_eq!(
        store.open_document(&"a".into())?.sizes().change_count,
        1,
        "flush: the change applied before the refused write was lost"
    );
    // close
    disk.free();
    let mut writer = DocumentWriter::new(
        on_disk(store.open_document(&"b".into())?, &disk),
        FlushPolicy::Manual,
    );
    writer.write([insert(&actor, 1)])?;
    disk.full();
    assert!(writer.write([insert(&actor, 2)]).is_err());
    assert!(writer.close().is_err(), "the queued write is still refused");
    assert_eq!(
        store.open_document(&"b".into())?.sizes().change_count,
        1,
        "close: the change applied before the refused write was lost"
    );
    Ok(())
}

fn sized(len: usize) -> Write {
    Write::SetDocument(vec![0; len])
}

/// The batches a queue is cut into: whole calls while they fit, at least one; only a
/// first call that alone does not fit is split, between writes.
#[test]
fn a_queue_is_cut_into_batches_of_whole_calls() {
    let writes: Vec<Write> = [4, 3, 2, 6, 1].into_iter().map(sized).collect();
    // Calls of 2 (7 bytes), 1 (2 bytes) and 2 (7 bytes) writes.
    let calls = [2, 1, 2];
    assert_eq!(next_batch_len(&writes, calls, 100), 5);
    assert_eq!(next_batch_len(&writes, calls, 16), 5);
    assert_eq!(next_batch_len(&writes, calls, 15), 3);
    assert_eq!(next_batch_len(&writes, calls, 9), 3);
    assert_eq!(next_batch_len(&writes, calls, 8), 2);
    assert_eq!(next_batch_len(&writes, calls, 7), 2);
    // The first call alone is too large: as many of its writes as fit, at least one.
    assert_eq!(next_batch_len(&writes, calls, 6), 1);
    assert_eq!(next_batch_len(&writes, calls, 4), 1);
    assert_eq!(next_batch_len(&writes, calls, 3), 1);
    assert_eq!(next_batch_len(&writes[2..], [1, 2], 2), 1);
    assert_eq!(next_batch_len(&writes[3..], [2], 6), 1);
    assert_eq!(next_batch_len(&writes[3..], [2], 7), 2);
}

/// What goes with a compacted document in its batch: the removals first, then the
/// queued writes it keeps by whole calls, as many as fit; the rest follows it.
#[test]
fn a_compaction_batch_takes_the_document_then_removals_then_whole_calls() {
    let actor = ActorId::new([1]);
    // Nine bytes each.
    let removals: Vec<Write> = (1..=3)
        .map(|seq| Write::RemoveChange {
            actor: actor.clone(),
            seq,
        })
        .collect();
    let kept: Vec<Write> = [2, 2, 5].into_iter().map(sized).collect();
    let calls = VecDeque::from([2, 1]);
    assert_eq!(
        first_compaction_batch(10, &removals, &kept, &calls, 100),
        (3, 3, 2)
    );
    assert_eq!(
        first_compaction_batch(10, &removals, &kept, &calls, 41),
        (3, 2, 1)
    );
    assert_eq!(
        first_compaction_batch(10, &removals, &kept, &calls, 40),
        (3, 0, 0)
    );
    // Removals that do not all fit: no queued write goes before the last of them.
    assert_eq!(
        first_compaction_batch(10, &removals, &kept, &calls, 36),
        (2, 0, 0)
    );
    // The document alone, even over the limit (the persister refuses it then).
    assert_eq!(
        first_compaction_batch(10, &removals, &kept, &calls, 18),
        (0, 0, 0)
    );
    assert_eq!(
        first_compaction_batch(200, &removals, &kept, &calls, 100),
        (0, 0, 0)
    );
}

/// The writes of one `queue` call that alone exceed a batch are split between
/// writes, in order, rather than refused forever.
#[test]
fn a_queued_call_larger_than_one_batch_is_split_between_writes() -> Result<(), Error> {
    let _one_at_a_time = gigabytes();
    let disk = Disk::new();
    let mut writer = DocumentWriter::new(on_disk(Discard, &disk), FlushPolicy::Manual);
    let actor = ActorId::new([1]);
    writer.queue((1..=4).map(|seq| largest(&actor, seq)));
    writer.queue([insert(&actor, 5)]);
    writer.flush()?;
    assert_eq!(writer.queued_writes(), 0);
    assert_eq!(disk.inserted(), vec![vec![1, 2, 3], vec![4, 5]]);
    Ok(())
}

/// What a batch held, write by write: its kind, its seq (0 for a write without one)
/// and its payload bytes.
type Shape = Vec<(&'static str, u64, usize)>;

fn shape(batch: &Batch) -> Shape {
    batch
        .writes()
        .iter()
        .map(|write| {
            let (kind, seq) = match write {
                Write::InsertChange { seq, .. } => ("insert", *seq),
                Write::RemoveChange { seq, .. } => ("remove", *seq),
                Write::SetDocument(_) => ("document", 0),
                Write::SetSyncState { .. } => ("sync state", 0),
                Write::RemoveSyncState { .. } => ("remove sync state", 0),
            };
            (kind, seq, write.payload_len())
        })
        .collect()
}

/// The disk under an [`OnDisk`] persister: how many more batches it has room for
/// (none when full), whether its next flush fails, and the shape of every batch it
/// took, in order.
#[derive(Clone)]
struct Disk {
    room: Arc<AtomicUsize>,
    fail_next_flush: Arc<AtomicBool>,
    applied: Arc<Mutex<Vec<Shape>>>,
}

impl Disk {
    fn new() -> Self {
        Self {
            room: Arc::new(AtomicUsize::new(usize::MAX)),
            fail_next_flush: Arc::default(),
            applied: Arc::default(),
        }
    }

    fn room_for(&self, batches: usize) {
        self.room.store(batches, Ordering::SeqCst);
    }

    fn full(&self) {
        self.room_for(0);
    }

    fn free(&self) {
        self.room_for(usize::MAX);
    }

    fn applied(&self) -> Vec<Shape> {
        self.applied.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// The seqs of the changes each batch inserted, after checking that no batch
    /// carried more than one batch may.
    fn inserted(&self) -> Vec<Vec<u64>> {
        let applied = self.applied();
        for batch in &applied {
            let len: usize = batch.iter().map(|&(_, _, len)| len).sum();
            assert!(len <= MAX_BATCH_LEN, "a batch of {len} bytes was applied");
        }
        applied
            .iter()
            .map(|batch| {
                batch
                    .iter()
                    .filter(|(kind, ..)| *kind == "insert")
                    .map(|&(_, seq, _)| seq)
                    .collect()
            })
            .collect()
    }

    fn enospc() -> Error {
        Error::io(
            "write",
            "<test disk>",
            std::io::Error::from_raw_os_error(28),
        )
    }
}

/// `inner` on a [`Disk`]: while the disk is full every batch is refused, as a backend
/// refuses one on `ENOSPC`, and nothing of it is applied.
struct OnDisk<P> {
    inner: P,
    disk: Disk,
}

impl<P: Persister<Error = Error>> Persister for OnDisk<P> {
    type Error = Error;

    fn apply(&mut self, batch: Batch) -> Result<(), Error> {
        let room = self.disk.room.load(Ordering::SeqCst);
        if room == 0 {
            return Err(Disk::enospc());
        }
        let shape = shape(&batch);
        self.inner.apply(batch)?;
        if room != usize::MAX {
            self.disk.room.store(room - 1, Ordering::SeqCst);
        }
        if let Ok(mut applied) = self.disk.applied.lock() {
            applied.push(shape);
        }
        Ok(())
    }

    fn get_change_entries(&self) -> Result<Vec<ChangeEntry>, Error> {
        self.inner.get_change_entries()
    }

    fn get_document(&self) -> Result<Option<Vec<u8>>, Error> {
        self.inner.get_document()
    }

    fn get_sync_state(&self, peer_id: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.inner.get_sync_state(peer_id)
    }

    fn get_peer_ids(&self) -> Result<Vec<Vec<u8>>, Error> {
        self.inner.get_peer_ids()
    }

    fn sizes(&self) -> StoredSizes {
        self.inner.sizes()
    }

    fn flush(&mut self) -> Result<usize, Error> {
        if self.disk.fail_next_flush.swap(false, Ordering::SeqCst) {
            return Err(Disk::enospc());
        }
        self.inner.flush()
    }
}

/// A persister that checks every batch against the limits, as every backend does
/// ([`Batch::validate`]), and keeps nothing: for batches of gigabytes, whose shape
/// [`Disk`] records. It has nothing to read.
struct Discard;

impl Persister for Discard {
    type Error = Error;

    fn apply(&mut self, batch: Batch) -> Result<(), Error> {
        batch.validate()
    }

    fn get_change_entries(&self) -> Result<Vec<ChangeEntry>, Error> {
        Err(Self::nothing_kept())
    }

    fn get_document(&self) -> Result<Option<Vec<u8>>, Error> {
        Err(Self::nothing_kept())
    }

    fn get_sync_state(&self, _: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        Err(Self::nothing_kept())
    }

    fn get_peer_ids(&self) -> Result<Vec<Vec<u8>>, Error> {
        Err(Self::nothing_kept())
    }

    fn sizes(&self) -> StoredSizes {
        StoredSizes::default()
    }

    fn flush(&mut self) -> Result<usize, Error> {
        Ok(0)
    }
}

impl Discard {
    fn nothing_kept() -> Error {
        Error::NotFound {
            what: "any value (this test persister keeps none)".into(),
        }
    }
}

/// The tests that queue more than [`MAX_BATCH_LEN`] hold this, so that no two of them
/// hold a gigabyte at once.
static GIGABYTES: Mutex<()> = Mutex::new(());

fn gigabytes() -> std::sync::MutexGuard<'static, ()> {
    GIGABYTES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A change of [`MAX_VALUE_LEN`] bytes. Zeroed, so that it takes memory only once
/// copied: four of them make more than [`MAX_BATCH_LEN`], each a valid write.
fn largest(actor: &ActorId, seq: u64) -> Write {
    Write::InsertChange {
        actor: actor.clone(),
        seq,
        value: vec![0; MAX_VALUE_LEN],
    }
}

fn largest_sync_state(peer: &[u8]) -> Write {
    Write::SetSyncState {
        peer: peer.to_vec(),
        state: vec![0; MAX_VALUE_LEN],
    }
}

/// An application keeps writing while the disk is full, so more than one batch may
/// carry waits in the queue, every write valid on its own. Once there is room again
/// the queue is applied as several batches, in order, each within the limits, whole
/// writes each; it stops at the first one refused and keeps the rest queued.
#[test]
fn a_queue_larger_than_one_batch_is_applied_as_several_in_order() -> Result<(), Error> {
    let _one_at_a_time = gigabytes();
    let disk = Disk::new();
    let mut writer = DocumentWriter::new(on_disk(Discard, &disk), FlushPolicy::Manual);
    let actor = ActorId::new([1]);
    disk.full();
    for seq in 1..=4 {
        assert!(writer.write([largest(&actor, seq)]).is_err());
    }
    assert_eq!(writer.queued_writes(), 4);

    // Room for one batch: the first three writes (768 MiB and their keys) go in it,
    // the fourth stays queued.
    disk.room_for(1);
    assert!(writer.flush().is_err(), "the disk filled up again");
    assert_eq!(writer.queued_writes(), 1);
    assert_eq!(disk.inserted(), vec![vec![1, 2, 3]]);

    disk.free();
    writer.write([insert(&actor, 5)])?;
    assert_eq!(writer.queued_writes(), 0);
    assert_eq!(disk.inserted(), vec![vec![1, 2, 3], vec![4, 5]]);
    assert_eq!(writer.last_stored(&actor), Some(5));
    Ok(())
}

/// One write that alone carries more than one batch may is refused at once, with an
/// error saying so, and not queued: the writes after it are stored.
#[test]
fn a_write_larger_than_one_batch_is_refused_not_queued() -> Result<(), Error> {
    let _one_at_a_time = gigabytes();
    let disk = Disk::new();
    let mut writer = DocumentWriter::new(on_disk(Discard, &disk), FlushPolicy::Manual);
    let actor = ActorId::new([1]);
    let refused = writer.write((1..=4).map(|seq| largest(&actor, seq)));
    assert!(
        matches!(
            refused,
            Err(Error::TooLarge { what: "batch", len, max })
                if len > max && max == MAX_BATCH_LEN as u64
        ),
        "{refused:?}"
    );
    assert_eq!(writer.queued_writes(), 0);
    writer.write([insert(&actor, 5)])?;
    writer.flush()?;
    assert_eq!(disk.inserted(), vec![vec![5]]);
    Ok(())
}

/// A compaction whose document and queued writes add up to more than one batch
/// stores the document (with the removals) in its first batch and the queued writes
/// after it, rather than being refused whole.
#[test]
fn a_compaction_with_more_queued_than_one_batch_takes_several() -> Result<(), Error> {
    let _one_at_a_time = gigabytes();
    let disk = Disk::new();
    let mut writer = DocumentWriter::new(on_disk(Discard, &disk), FlushPolicy::Manual);
    let actor = ActorId::new([1]);
    writer.mark_stored(actor.clone(), 7);
    disk.full();
    for peer in [b"p1", b"p2", b"p3"] {
        assert!(writer.write([largest_sync_state(peer)]).is_err());
    }
    assert!(writer.write([insert(&actor, 8)]).is_err());
    disk.free();
    writer.compact(vec![0; MAX_VALUE_LEN], [])?;
    assert_eq!(writer.queued_writes(), 0);
    let sync_state = ("sync state", 0, MAX_VALUE_LEN + 2);
    assert_eq!(
        disk.applied(),
        vec![
            vec![
                ("document", 0, MAX_VALUE_LEN),
                ("remove", 7, 9),
                sync_state,
                sync_state
            ],
            vec![sync_state],
        ]
    );
    Ok(())
}

/// A queue applied as several batches under a policy that flushes after each: when a
/// flush fails the handle refuses every later write, so nothing stays queued (as
/// after any failed policy flush) and the batches before it were applied.
#[test]
fn a_failed_flush_between_batches_of_the_queue_leaves_nothing_queued() -> Result<(), Error> {
    let _one_at_a_time = gigabytes();
    let disk = Disk::new();
    let mut writer = DocumentWriter::new(on_disk(Discard, &disk), FlushPolicy::EveryBatch);
    let actor = ActorId::new([1]);
    disk.full();
    for seq in 1..=4 {
        assert!(writer.write([largest(&actor, seq)]).is_err());
    }
    disk.free();
    disk.fail_next_flush.store(true, Ordering::SeqCst);
    assert!(writer.flush().is_err());
    assert_eq!(writer.queued_writes(), 0);
    assert_eq!(disk.inserted(), vec![vec![1, 2, 3]]);
    Ok(())
}
