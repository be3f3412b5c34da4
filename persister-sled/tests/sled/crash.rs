//! The kill test: a child process writes batches and flushes, printing `ACK n` after
//! each successful flush; the parent kills it (SIGKILL on unix) at random moments,
//! reopens the store, and checks that each document holds exactly its batches up to
//! some batch at or after the last acknowledged one: nothing acknowledged lost, no
//! batch half there. (The prefix is per document: each handle holds its writes until
//! its own flush.)
//!
//! `PERSISTER_KILLS` sets the number of kills (default 100); `PERSISTER_SEED` the seed
//! of the kill delays.

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::time::Duration;

use persister_core::{ActorId, Batch, DocumentState, Persister, Result, Store};
use persister_sled::{SledPersister, SledStore};

use crate::child;
use persister_testkit::{Contents, Rng};

use persister_testkit::env_count;

const DOCS: [&str; 2] = ["left", "right"];

/// Actors whose ids are prefixes of each other.
fn actor(n: u64) -> ActorId {
    ActorId::new(vec![0xaa; 1 + (n % 3) as usize])
}

/// Batch `n` (from 1) of the workload and the document it goes to. Deterministic, so
/// the state after any prefix can be replayed. The document's first 8 bytes are `n`.
fn batch(n: u64) -> (usize, Batch) {
    let filler = if n.is_multiple_of(25) {
        150 * 1024
    } else {
        (n % 64) as usize
    };
    let mut document = n.to_be_bytes().to_vec();
    document.extend(std::iter::repeat_n(n as u8, filler));
    let mut batch = Batch::new()
        .insert_change(actor(n), n, vec![n as u8; 1 + (n * 37 % 300) as usize])
        .set_document(document)
        .set_sync_state(vec![(n % 4) as u8], vec![n as u8; (n % 50) as usize]);
    if n > 12 {
        // A change of the same document (n - 12 has n's parity), as compaction would.
        batch = batch.remove_change(actor(n - 12), n - 12);
    }
    if n.is_multiple_of(5) {
        batch = batch.remove_sync_state(vec![((n + 2) % 4) as u8]);
    }
    (batch_doc(n), batch)
}

/// The last batch applied to each document, read from its document.
fn last_applied(docs: &[SledPersister]) -> Result<[u64; 2]> {
    let mut last = [0; 2];
    for (last, doc) in last.iter_mut().zip(docs) {
        if let Some(document) = doc.get_document()? {
            let n: [u8; 8] = document[..8].try_into().expect("8 bytes of batch number");
            *last = u64::from_be_bytes(n);
        }
    }
    Ok(last)
}

/// The child: continues the workload where the store stops, flushing after a random
/// number of batches and acknowledging each flush on stdout, until killed.
pub fn writer(dir: &Path) -> Result<()> {
    let store = SledStore::open(dir)?;
    let mut docs = DOCS
        .iter()
        .map(|id| store.open_document(&(*id).into()))
        .collect::<Result<Vec<_>>>()?;
    let last = last_applied(&docs)?;
    let start = last.iter().min().copied().unwrap_or(0) + 1;
    let mut rng = Rng::new(start ^ u64::from(std::process::id()));
    let mut stdout = std::io::stdout();
    for n in start.. {
        let (doc, batch) = batch(n);
        // A kill between the flushes of the two documents leaves one ahead.
        if n <= last[doc] {
            continue;
        }
        docs[doc].apply(batch)?;
        if rng.below(4) == 0 {
            for doc in &mut docs {
                doc.flush()?;
            }
            writeln!(stdout, "ACK {n}")
                .and_then(|()| stdout.flush())
                .expect("stdout");
        }
    }
    Ok(())
}

/// Whether the writer ended by the kill (it never stops on its own but on an error).
#[cfg(unix)]
fn killed(status: std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(9)
}

#[cfg(not(unix))]
fn killed(status: std::process::ExitStatus) -> bool {
    !status.success()
}

/// The expected documents: document `d` after its batches in `1..=upto[d]`, replayed
/// incrementally.
#[derive(Default)]
struct Model {
    upto: [u64; 2],
    docs: [DocumentState; 2],
}

impl Model {
    fn advance_to(&mut self, d: usize, upto: u64) {
        if upto < self.upto[d] {
            self.upto[d] = 0;
            self.docs[d] = DocumentState::default();
        }
        while self.upto[d] < upto {
            self.upto[d] += 1;
            let (doc, batch) = batch(self.upto[d]);
            if doc == d {
                self.docs[d].apply(batch);
            }
        }
    }
}

/// The last batch of document `d` at or before batch `n` (0 when none).
fn last_of(d: usize, n: u64) -> u64 {
    (1..=n).rev().find(|&m| batch_doc(m) == d).unwrap_or(0)
}

fn batch_doc(n: u64) -> usize {
    (n % 2) as usize
}

#[test]
fn killed_writer_keeps_every_acknowledged_batch_whole() -> Result<()> {
    let kills = env_count("PERSISTER_KILLS", 100);
    let mut rng = Rng::new(env_count("PERSISTER_SEED", 0x5eed));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("store");
    let mut model = Model::default();
    let mut acked_ever = 0;
    for kill in 0..kills {
        let mut child = child::command("crash-writer", &path)
            .spawn()
            .expect("spawn the writer");
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, acks) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout)
                .lines()
                .map_while(std::result::Result::ok)
            {
                // libtest may print its test name on the same line first.
                let ack = line
                    .split_once("ACK ")
                    .and_then(|(_, n)| n.parse::<u64>().ok());
                if let Some(n) = ack {
                    let _ = send.send(n);
                }
            }
        });
        // One kill in five at a random moment from the start (opening and recovery
        // included); the others at a random moment after the first acknowledgement.
        if kill.is_multiple_of(5) {
            std::thread::sleep(Duration::from_millis(rng.below(100)));
        } else {
            let first = acks.recv().expect("the writer died before its first flush");
            acked_ever = acked_ever.max(first);
            std::thread::sleep(Duration::from_millis(rng.below(30)));
        }
        child.kill().expect("kill the writer");
        let status = child.wait().expect("reap the writer");
        assert!(
            killed(status),
            "kill {kill}: the writer stopped on its own: {status}"
        );
        reader.join().expect("the ack reader");
        acked_ever = acks.try_iter().fold(acked_ever, u64::max);

        let store = SledStore::open(&path)?;
        let docs = DOCS
            .iter()
            .map(|id| store.open_document(&(*id).into()))
            .collect::<Result<Vec<_>>>()?;
        let applied = last_applied(&docs)?;
        for (d, doc) in docs.iter().enumerate() {
            let acked = last_of(d, acked_ever);
            assert!(
                applied[d] >= acked,
                "kill {kill}: batch {acked} of document {} was acknowledged, but it holds only up to {}",
                doc.id(),
                applied[d]
            );
            model.advance_to(d, applied[d]);
            let expected = &model.docs[d];
            assert!(
                Contents::read(doc)? == Contents::of(expected),
                "kill {kill}: document {} is not the state after its batches up to {}",
                doc.id(),
                applied[d]
            );
            assert_eq!(doc.sizes(), expected.sizes(), "kill {kill}");
        }
    }
    println!(
        "{kills} kills; {acked_ever} batches acknowledged, {:?} found",
        model.upto
    );
    Ok(())
}
