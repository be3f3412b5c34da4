//! Failing disks: nothing is acknowledged before it is durable, nothing failed is
//! reported as absent, and queued writes share one batch and one flush.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use persister_core::{Batch, DocumentId, Error, MemoryStore, Persister, Store};
use persister_samod::acceptance::{block_on, key};
use persister_samod::{Event, Options, SamodStorage};
use samod::storage::Storage;

use crate::support::{FaultyStore, Result, poll_once, stopped_child};

/// What the hook saw, as short lines.
fn recorder() -> (Options, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let options = Options::new()
        .backoff(Duration::from_millis(1), Duration::from_millis(20))
        .on_event(move |event| {
            let line = match event {
                Event::Failed { action, .. } => format!("failed {action}"),
                Event::Recovered { .. } => "recovered".to_string(),
                Event::Durable { key, deleted } => format!("durable {key} {deleted}"),
                Event::Refused { key, .. } => format!("refused {key}"),
                _ => "other".to_string(),
            };
            let _ = tx.send(line);
        });
    (options, rx)
}

fn wait_for(rx: &mpsc::Receiver<String>, wanted: &str) -> Result<Vec<String>> {
    let mut seen = Vec::new();
    loop {
        let line = rx.recv()?;
        let done = line.starts_with(wanted);
        seen.push(line);
        if done {
            return Ok(seen);
        }
    }
}

#[test]
fn a_failed_flush_is_retried_and_acknowledged_only_after() -> Result {
    let store = MemoryStore::new();
    let (options, events) = recorder();
    let storage = SamodStorage::on_store(store.clone(), options)?;
    store.fail_next_flush();
    block_on(storage.put(key(&["doc", "sync-state", "p"]), b"value".to_vec()));
    let seen = wait_for(&events, "durable")?;
    assert_eq!(
        seen,
        vec![
            "failed flush",
            "recovered",
            "durable doc/sync-state/p false"
        ]
    );
    assert_eq!(
        block_on(storage.load(key(&["doc", "sync-state", "p"]))),
        Some(b"value".to_vec())
    );
    assert!(storage.health().is_healthy());
    assert_eq!(storage.health().failures, 1);
    Ok(())
}

#[test]
fn a_broken_store_holds_writes_and_reads_until_it_works_again() -> Result {
    let store = FaultyStore::default();
    let (options, events) = recorder();
    let storage = SamodStorage::open_with(
        {
            let s = store.clone();
            move || Ok(s.clone())
        },
        options,
    )?;
    block_on(storage.put(key(&["doc", "sync-state", "old"]), b"old".to_vec()));
    wait_for(&events, "durable")?;

    store.faults.broken.store(true, Ordering::SeqCst);
    let mut put = Box::pin(storage.put(key(&["doc", "sync-state", "new"]), b"new".to_vec()));
    let mut load = Box::pin(storage.load(key(&["doc", "sync-state", "old"])));
    // Three failed attempts: the put is not acknowledged, the load reports nothing.
    for _ in 0..3 {
        wait_for(&events, "failed")?;
    }
    assert!(
        poll_once(&mut put).is_none(),
        "a put was acknowledged while the store was broken"
    );
    assert!(
        poll_once(&mut load).is_none(),
        "a load answered while the store was broken"
    );
    let health = storage.health();
    assert!(!health.is_healthy());
    assert!(
        health
            .last_error
            .is_some_and(|e| e.contains("the disk is broken"))
    );

    store.faults.broken.store(false, Ordering::SeqCst);
    block_on(put);
    assert_eq!(block_on(load), Some(b"old".to_vec()));
    assert_eq!(
        block_on(storage.load(key(&["doc", "sync-state", "new"]))),
        Some(b"new".to_vec())
    );
    assert!(storage.health().is_healthy());
    Ok(())
}

#[test]
fn writes_queued_on_a_document_share_one_batch_and_one_flush() -> Result {
    let store = FaultyStore::default();
    let storage = SamodStorage::on_store(store.clone(), Options::new())?;
    let before = store.faults.flushes.load(Ordering::SeqCst);
    store.faults.close_gate();
    let first = storage.put(key(&["doc", "incremental", "first"]), vec![0]);
    store.faults.wait_for_flush_at_gate();
    // The worker is inside the first flush: these 50 queue behind it.
    let rest: Vec<_> = (1..=50u8)
        .map(|i| storage.put(key(&["doc", "incremental", &format!("k{i}")]), vec![i]))
        .collect();
    store.faults.open_gate();
    block_on(first);
    for put in rest {
        block_on(put);
    }
    assert_eq!(
        store.faults.flushes.load(Ordering::SeqCst) - before,
        2,
        "one flush for the first put, one for the 50 queued"
    );
    assert_eq!(
        block_on(storage.load_range(key(&["doc", "incremental"]))).len(),
        51
    );
    Ok(())
}

#[test]
fn a_key_too_long_for_the_store_is_refused_and_never_acknowledged() -> Result {
    let (options, events) = recorder();
    let storage = SamodStorage::on_store(MemoryStore::new(), options)?;
    let long = "x".repeat(2000);
    let mut put = Box::pin(storage.put(key(&["doc", &long]), vec![1]));
    assert!(
        wait_for(&events, "refused")?
            .iter()
            .any(|l| l.starts_with("refused doc/"))
    );
    assert!(poll_once(&mut put).is_none());
    assert_eq!(storage.health().refused, 1);
    // Later operations go on.
    block_on(storage.put(key(&["doc", "short"]), vec![2]));
    assert_eq!(
        block_on(storage.load(key(&["doc", "short"]))),
        Some(vec![2])
    );
    Ok(())
}

#[test]
fn a_document_id_too_long_for_the_store_is_refused_and_never_retried() -> Result {
    let (options, events) = recorder();
    let storage = SamodStorage::on_store(MemoryStore::new(), options)?;
    // A valid samod key whose first part, the document id, is over the store's limit.
    let long = "d".repeat(persister_core::MAX_DOCUMENT_ID_LEN + 1);
    let mut put = Box::pin(storage.put(key(&[&long, "sync-state", "p"]), vec![1]));
    let mut load = Box::pin(storage.load(key(&[&long, "sync-state", "p"])));
    let mut refused = 0;
    while refused < 2 {
        let line = events.recv()?;
        assert!(
            !line.starts_with("failed"),
            "the operation was tried instead of refused: {line}"
        );
        refused += usize::from(line.starts_with("refused"));
    }
    assert!(poll_once(&mut put).is_none());
    assert!(poll_once(&mut load).is_none());
    let health = storage.health();
    assert_eq!((health.refused, health.failures), (2, 0));
    // Later operations go on, and closing returns.
    block_on(storage.put(key(&["doc", "short"]), vec![2]));
    assert_eq!(
        block_on(storage.load(key(&["doc", "short"]))),
        Some(vec![2])
    );
    storage.close()?;
    assert!(storage.health().closed);
    Ok(())
}

#[test]
fn an_unknown_layout_version_is_refused_by_name() -> Result {
    let store = MemoryStore::new();
    {
        let mut layout = store.open_document(&DocumentId::from("/"))?;
        let mut record = b"persister-samod\0".to_vec();
        record.extend_from_slice(&2u32.to_be_bytes());
        layout.apply(Batch::new().set_sync_state(vec![0], record))?;
        layout.close()?;
    }
    let err = SamodStorage::on_store(store, Options::new()).err();
    assert!(
        matches!(
            &err,
            Some(Error::UnsupportedFormat {
                what: "persister-samod layout",
                found: 2,
                supported: 1,
                ..
            })
        ),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn closing_releases_the_store_for_the_next_open() -> Result {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("store.redb");
    for round in 0..3u8 {
        let p = path.clone();
        let storage = SamodStorage::open(move || persister_redb::RedbStore::open(&p))?;
        block_on(storage.put(key(&["doc", "round", &round.to_string()]), vec![round]));
        assert_eq!(
            block_on(storage.load_range(key(&["doc", "round"]))).len(),
            usize::from(round) + 1
        );
        let clone = storage.clone();
        storage.close()?;
        drop(clone);
    }
    Ok(())
}

#[test]
fn the_worker_answers_any_executor() -> Result {
    // Futures completed from another thread, awaited on a thread with no runtime.
    let storage = Arc::new(SamodStorage::on_store(MemoryStore::new(), Options::new())?);
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let storage = Arc::clone(&storage);
            std::thread::spawn(move || {
                for i in 0..25u8 {
                    block_on(
                        storage.put(key(&[&format!("doc{t}"), "k", &i.to_string()]), vec![t, i]),
                    );
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().map_err(|_| "a writer panicked")?;
    }
    assert_eq!(block_on(storage.load_range(key(&[]))).len(), 100);
    Ok(())
}

/// A `load_range` whose prefix is one document id: the document's keys, whatever the
/// id's length within the store's limit. An id of 1,024 bytes (the most a store takes)
/// holds keys, but its prefix was checked as a key of the reserved document (where it
/// is an entry over the limit by its tag byte) and refused: the range never answered,
/// and under `WhenUnusable::Exit` the process ended. An id over the limit holds
/// nothing: its range is empty.
#[test]
fn a_range_over_one_long_document_id_answers_its_keys() -> Result {
    let (tx, events) = mpsc::channel();
    let hook_tx = tx.clone();
    let options = Options::new()
        .backoff(Duration::from_millis(1), Duration::from_millis(20))
        .on_event(move |event| match event {
            Event::Failed { action, error, .. } => {
                let _ = hook_tx.send(format!("failed {action}: {error}"));
            }
            Event::Refused { error, .. } => {
                let _ = hook_tx.send(format!("refused: {error}"));
            }
            _ => {}
        });
    let storage = SamodStorage::on_store(MemoryStore::new(), options)?;
    let longest = "d".repeat(persister_core::MAX_DOCUMENT_ID_LEN);
    block_on(storage.put(key(&[&longest, "k"]), vec![7]));
    let too_long = "d".repeat(persister_core::MAX_DOCUMENT_ID_LEN + 1);
    for (id, expected) in [(longest.clone(), 1), (too_long, 0)] {
        let ranging = storage.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            let found = block_on(ranging.load_range(key(&[&id])));
            let _ = tx.send(format!("answered {}", found.len()));
        });
        let first = events.recv()?;
        assert_eq!(
            first,
            format!("answered {expected}"),
            "the range was not answered"
        );
    }
    storage.close()?;
    Ok(())
}

/// A panic on the worker thread (here the event hook's) ends the worker; the health
/// then says so, with the panic's message, instead of that all is well.
#[test]
fn a_panic_on_the_worker_is_reported_by_the_health() -> Result {
    let options = Options::new().on_event(|event| {
        if let Event::Durable { .. } = event {
            panic!("the hook gave up");
        }
    });
    let storage = SamodStorage::on_store(MemoryStore::new(), options)?;
    let mut put = Box::pin(storage.put(key(&["doc", "sync-state", "p"]), b"value".to_vec()));
    let _ = poll_once(&mut put);
    // Returns once the worker thread has ended, which the panic made it do, and says
    // that the queued put was not stored.
    let closed = storage.close();
    assert!(
        matches!(&closed, Err(persister_core::Error::Poisoned { reason }) if reason.contains("panicked") && reason.contains("not stored")),
        "{closed:?}"
    );
    // Closing again reports it again.
    assert!(storage.close().is_err());
    let health = storage.health();
    assert!(health.closed, "{health:?}");
    assert!(!health.is_healthy());
    let error = health.last_error.unwrap_or_default();
    assert!(error.contains("panicked (the hook gave up)"), "{error}");
    Ok(())
}

const PANIC_CHILD: &str = "PERSISTER_SAMOD_PANIC_CHILD";

/// With `WhenUnusable::Exit`, a panic that ends the worker ends the process, as any
/// state in which nothing can be stored does: otherwise every storage future, and
/// samod's `Repo::stop`, waits for ever, and the supervisor the option is for never
/// restarts the process.
#[test]
fn with_exit_chosen_a_panic_on_the_worker_stops_the_process() -> Result {
    let stderr = stopped_child("faults::panic_exit_child", PANIC_CHILD)?;
    assert!(stderr.contains("worker thread panicked"), "{stderr}");
    Ok(())
}

#[test]
#[ignore = "the child process of with_exit_chosen_a_panic_on_the_worker_stops_the_process"]
fn panic_exit_child() -> Result {
    std::env::var(PANIC_CHILD)
        .map_err(|_| "run with_exit_chosen_a_panic_on_the_worker_stops_the_process instead")?;
    let options = Options::new()
        .when_unusable(persister_samod::WhenUnusable::Exit { after_failures: 3 })
        .on_event(|event| {
            if let Event::Durable { .. } = event {
                panic!("the hook gave up");
            }
        });
    let storage = SamodStorage::on_store(MemoryStore::new(), options)?;
    let mut put = Box::pin(storage.put(key(&["doc", "sync-state", "p"]), b"value".to_vec()));
    let _ = poll_once(&mut put);
    // Returns once the worker thread has ended; the process should end before.
    let _ = storage.close();
    Err(format!(
        "the process should have stopped, but the storage closed with {:?} and the put pending",
        storage.health()
    )
    .into())
}

#[cfg(target_os = "linux")]
const SPIN_CHILD: &str = "PERSISTER_SAMOD_SPIN_CHILD";

/// Closing while the store is broken, after a range over every document failed: the
/// worker gave the range up but kept its retry time, long past, and so woke at once,
/// again and again, burning a core until the next retry of the write it waits for.
/// Run in a process of its own, which measures its own CPU time (Linux's `/proc`).
#[cfg(target_os = "linux")]
#[test]
fn closing_on_a_broken_store_waits_without_spinning() -> Result {
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(["faults::spin_child", "--exact", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(SPIN_CHILD, "1")
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    Ok(())
}

/// This process's CPU time so far (user and system), in clock ticks.
#[cfg(target_os = "linux")]
fn cpu_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The fields after the command name, which is in parentheses.
    let (_, fields) = stat
        .rsplit_once(')')
        .ok_or("no command in /proc/self/stat")?;
    let fields: Vec<&str> = fields.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

#[cfg(target_os = "linux")]
#[test]
#[ignore = "the child process of closing_on_a_broken_store_waits_without_spinning"]
fn spin_child() -> Result {
    std::env::var(SPIN_CHILD)
        .map_err(|_| "run closing_on_a_broken_store_waits_without_spinning instead")?;
    let store = FaultyStore::default();
    let (tx, failures) = mpsc::channel();
    let backoff = Duration::from_millis(300);
    let options = Options::new()
        .backoff(backoff, backoff)
        .on_event(move |event| {
            if let Event::Failed { document, .. } = event {
                let _ = tx.send(DocumentId::clone(document));
            }
        });
    let storage = SamodStorage::on_store(store.clone(), options)?;
    store.faults.broken.store(true, Ordering::SeqCst);
    // A range over every document (it fails), and a write behind it.
    let _range = storage.load_range(key(&[]));
    let put = storage.put(key(&["doc", "sync-state", "p"]), b"value".to_vec());
    // Every wait is bounded: a worker that stopped retrying fails the test, not hangs it.
    let next = || failures.recv_timeout(Duration::from_secs(60));
    assert_eq!(next()?, DocumentId::from("/"));
    let closing = storage.clone();
    let closer = std::thread::spawn(move || closing.close());
    // Closing gives the range up; the write is tried, and fails, every 300 ms.
    while next()? != DocumentId::from("doc") {}
    let before = cpu_ticks()?;
    for _ in 0..3 {
        while next()? != DocumentId::from("doc") {}
    }
    let spent = cpu_ticks()? - before;
    store.faults.broken.store(false, Ordering::SeqCst);
    block_on(put);
    closer.join().map_err(|_| "the closer panicked")??;
    // Three waits of 300 ms: a spinning worker spends most of it on the CPU.
    assert!(
        spent < 30,
        "the worker spent {spent} clock ticks of CPU time waiting 900 ms for a retry"
    );
    Ok(())
}
