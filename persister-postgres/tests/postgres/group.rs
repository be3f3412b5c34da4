//! Group commit: concurrent flushes of different handles share one transaction; a
//! failed shared commit poisons every handle it carried; a document whose lease was
//! lost fails alone.

use std::sync::atomic::{AtomicUsize, Ordering};

use persister_core::{ActorId, Batch, DocumentState, Error, Persister, Store};
use persister_postgres::{PostgresOptions, PostgresPersister, PostgresStore};
use persister_reliability::Contents;

use crate::child::writer_batch;
use crate::cluster::{Server, admin, fresh_schema, server, wait_for, waiting_on_locks};
use crate::errors::{named, terminate, test_error};

/// The contents of a document that holds `writer_batch(1..=n)`.
fn model(n: u64) -> Contents {
    let mut state = DocumentState::new();
    for k in 1..=n {
        state.apply(writer_batch(k));
    }
    Contents::of(Some(&state))
}

/// Takes the row lock of `document`'s lease in an open transaction of `client`, so that
/// a flush carrying the document waits inside its statement until the transaction ends.
fn hold_lease_row(
    client: &mut postgres::Client,
    schema: &str,
    document: &str,
) -> Result<(), Error> {
    client.batch_execute("BEGIN").map_err(test_error)?;
    client
        .query(
            &format!("SELECT 1 FROM \"{schema}\".leases WHERE document = $1 FOR UPDATE"),
            &[&document.as_bytes()],
        )
        .map_err(test_error)?;
    Ok(())
}

/// Whether the server counts statements (`pg_stat_statements`): always on the test's
/// own cluster; on `PERSISTER_POSTGRES_URL`'s server only where it is installed.
fn count_statements(client: &mut postgres::Client) -> Result<bool, Error> {
    let counted = client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .is_ok();
    if !counted && !matches!(server(), Server::Url(_)) {
        return Err(test_error(
            "pg_stat_statements is missing on the test cluster",
        ));
    }
    Ok(counted)
}

/// Many threads flush different documents at once; while one commit is held up, the
/// others queue and then share commits: the server runs fewer flush statements than
/// there were flushes, and every document holds every flushed batch.
#[test]
fn concurrent_flushes_of_many_documents_share_commits() -> Result<(), Error> {
    let url = server().url();
    let mut client = admin(&url).map_err(test_error)?;
    let counted = count_statements(&mut client)?;
    let schema = fresh_schema();
    // One group at a time, so that every other flush queues behind the held one.
    let options = PostgresOptions::default()
        .schema(schema.clone())
        .concurrent_commits(1);
    let store = PostgresStore::open_with(&url, options)?;
    let (threads, docs_per_thread, rounds) = (12usize, 4usize, 15u64);
    let mut handles: Vec<Vec<PostgresPersister>> = Vec::new();
    for t in 0..threads {
        let mut mine = Vec::new();
        for d in 0..docs_per_thread {
            mine.push(store.open_document(&format!("doc-{t}-{d}").as_str().into())?);
        }
        handles.push(mine);
    }
    let mut blocker = admin(&url).map_err(test_error)?;
    hold_lease_row(&mut blocker, &schema, "doc-0-0")?;
    let flush_all = |docs: &mut Vec<PostgresPersister>| -> Result<u64, Error> {
        let mut flushes = 0;
        for k in 1..=rounds {
            for doc in docs.iter_mut() {
                doc.apply(writer_batch(k))?;
                if doc.flush()? == 0 {
                    return Err(test_error("a flush reported nothing written"));
                }
                flushes += 1;
            }
        }
        Ok(flushes)
    };
    let flushes = std::thread::scope(|scope| -> Result<u64, Error> {
        let mut rest = handles.iter_mut();
        let first = rest.next().ok_or_else(|| test_error("no threads"))?;
        let mut running = vec![scope.spawn(|| flush_all(first))];
        // The first thread's first flush is held up inside its commit; the others
        // start only then, so their flushes queue behind it.
        wait_for("the first commit to wait for the lease row", || {
            Ok(waiting_on_locks(&mut client, &schema)? == 1)
        })
        .map_err(test_error)?;
        running.extend(rest.map(|docs| scope.spawn(|| flush_all(docs))));
        wait_for("every other thread's flush to queue", || {
            Ok(store.waiting_flushes() == threads - 1)
        })
        .map_err(test_error)?;
        blocker.batch_execute("ROLLBACK").map_err(test_error)?;
        let mut flushes = 0;
        for thread in running {
            flushes += thread
                .join()
                .map_err(|_| test_error("a flushing thread panicked"))??;
        }
        Ok(flushes)
    })?;
    assert_eq!(flushes, (threads * docs_per_thread) as u64 * rounds);
    drop(handles);
    for t in 0..threads {
        for d in 0..docs_per_thread {
            let doc = store.open_document(&format!("doc-{t}-{d}").as_str().into())?;
            assert_eq!(Contents::read(&doc)?, model(rounds), "doc-{t}-{d}");
        }
    }
    if counted {
        let row = client
            .query_one(
                "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements WHERE query LIKE $1 AND query LIKE '%dc AS (%'",
                &[&format!("%\"{schema}\".%")],
            )
            .map_err(test_error)?;
        let commits: i64 = row.get(0);
        println!("group commit: {flushes} flushes in {commits} commits");
        assert!(
            commits > 0 && (commits as u64) < flushes,
            "{flushes} flushes took {commits} commits: no group formed"
        );
    } else {
        println!(
            "not counted: pg_stat_statements is not installed on PERSISTER_POSTGRES_URL's server"
        );
    }
    Ok(())
}

/// With two concurrent commits (the default), a commit held up inside the server does
/// not hold up the others: while one document's flush waits for its lease row, other
/// threads' flushes commit in a second group beside it, and every document holds every
/// flushed batch.
#[test]
fn a_held_commit_does_not_hold_up_a_second_group() -> Result<(), Error> {
    let url = server().url();
    let schema = fresh_schema();
    let store = PostgresStore::open_with(&url, PostgresOptions::default().schema(schema.clone()))?;
    assert_eq!(store.options().concurrent_commits, 2);
    let mut held = store.open_document(&"held".into())?;
    let (threads, rounds) = (4usize, 5u64);
    let mut others = Vec::new();
    for t in 0..threads {
        others.push(store.open_document(&format!("other-{t}").as_str().into())?);
    }
    let mut client = admin(&url).map_err(test_error)?;
    let mut blocker = admin(&url).map_err(test_error)?;
    hold_lease_row(&mut blocker, &schema, "held")?;
    let done = AtomicUsize::new(0);
    let outcome = std::thread::scope(|scope| -> Result<(), Error> {
        held.apply(writer_batch(1))?;
        let held_flush = scope.spawn(|| held.flush());
        wait_for("the held commit to wait for its lease row", || {
            Ok(waiting_on_locks(&mut client, &schema)? == 1)
        })
        .map_err(test_error)?;
        let running: Vec<_> = others
            .iter_mut()
            .map(|doc| {
                let done = &done;
                scope.spawn(move || -> Result<(), Error> {
                    for k in 1..=rounds {
                        doc.apply(writer_batch(k))?;
                        doc.flush()?;
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
            })
            .collect();
        // Every other thread finishes while the held commit still waits; should they
        // not, the lock is released anyway so that the test fails rather than hangs.
        let beside = wait_for("the other flushes to commit beside the held one", || {
            Ok(done.load(Ordering::SeqCst) == threads)
        });
        let still_held = waiting_on_locks(&mut client, &schema).map_err(test_error)?;
        blocker.batch_execute("ROLLBACK").map_err(test_error)?;
        for thread in running {
            thread
                .join()
                .map_err(|_| test_error("a flushing thread panicked"))??;
        }
        let flushed = held_flush
            .join()
            .map_err(|_| test_error("the held flush panicked"))??;
        beside.map_err(test_error)?;
        assert_eq!(still_held, 1, "the held commit ended before the others");
        assert!(flushed > 0);
        Ok(())
    });
    outcome?;
    drop((held, others));
    assert_eq!(
        Contents::read(&store.open_document(&"held".into())?)?,
        model(1)
    );
    for t in 0..threads {
        let doc = store.open_document(&format!("other-{t}").as_str().into())?;
        assert_eq!(Contents::read(&doc)?, model(rounds), "other-{t}");
    }
    Ok(())
}

/// A shared commit whose connection is terminated by the server fails every flush it
/// carried: the leader gets the error, the others `Poisoned` naming it, every one of
/// those handles stays poisoned, and none of their writes is found; a flush committed
/// before in its own group is kept.
#[test]
fn failed_shared_commit_poisons_every_handle_it_carried() -> Result<(), Error> {
    let schema = fresh_schema();
    let name = format!("group_{schema}");
    let url = named(&server().url(), &name);
    // One group at a time, so that b, c and d queue behind a's held commit.
    let options = PostgresOptions::default()
        .schema(schema.clone())
        .concurrent_commits(1);
    let store = PostgresStore::open_with(&url, options)?;
    let names = ["a", "b", "c", "d"];
    let mut docs = Vec::new();
    for n in names {
        let mut doc = store.open_document(&n.into())?;
        doc.apply(writer_batch(1))?;
        docs.push(doc);
    }
    {
        let mut all: Vec<&mut PostgresPersister> = docs.iter_mut().collect();
        store.flush_documents(&mut all)?;
    }
    for doc in &mut docs {
        doc.apply(writer_batch(2))?;
    }
    let mut client = admin(&server().url()).map_err(test_error)?;
    let mut hold_a = admin(&server().url()).map_err(test_error)?;
    let mut hold_b = admin(&server().url()).map_err(test_error)?;
    hold_lease_row(&mut hold_a, &schema, "a")?;
    hold_lease_row(&mut hold_b, &schema, "b")?;
    let results = std::thread::scope(|scope| -> Result<Vec<Result<usize, Error>>, Error> {
        let mut rest = docs.iter_mut();
        let a = rest.next().ok_or_else(|| test_error("no document a"))?;
        let mut running = vec![scope.spawn(|| a.flush())];
        wait_for("a's commit to wait for its lease row", || {
            Ok(waiting_on_locks(&mut client, &schema)? == 1)
        })
        .map_err(test_error)?;
        running.extend(rest.map(|doc| scope.spawn(|| doc.flush())));
        wait_for("b, c and d to queue", || Ok(store.waiting_flushes() == 3)).map_err(test_error)?;
        hold_a.batch_execute("ROLLBACK").map_err(test_error)?;
        // a commits alone; b, c and d then share one commit, held up by b's lease row.
        wait_for("the shared commit of b, c and d to start and wait", || {
            Ok(store.waiting_flushes() == 0 && waiting_on_locks(&mut client, &schema)? == 1)
        })
        .map_err(test_error)?;
        terminate(&mut client, &name)?;
        running
            .into_iter()
            .map(|t| t.join().map_err(|_| test_error("a flush panicked")))
            .collect()
    })?;
    hold_b.batch_execute("ROLLBACK").map_err(test_error)?;
    assert!(matches!(results[0], Ok(n) if n > 0), "a: {:?}", results[0]);
    let mut poisoned = 0;
    let mut leader = 0;
    for (n, result) in names.iter().zip(&results).skip(1) {
        match result {
            Err(Error::Poisoned { reason }) if reason.contains("shared commit") => poisoned += 1,
            Err(Error::Backend { .. }) => leader += 1,
            other => panic!("{n}: expected the shared commit's error, got {other:?}"),
        }
    }
    assert_eq!((leader, poisoned), (1, 2));
    for (n, doc) in names.iter().zip(&mut docs).skip(1) {
        assert!(matches!(doc.flush(), Err(Error::Poisoned { .. })), "{n}");
        assert!(
            matches!(doc.apply(writer_batch(3)), Err(Error::Poisoned { .. })),
            "{n}"
        );
    }
    drop(docs);
    for (n, expected) in names.iter().zip([2, 1, 1, 1]) {
        let doc = store.open_document(&(*n).into())?;
        assert_eq!(Contents::read(&doc)?, model(expected), "{n}");
    }
    Ok(())
}

/// In one shared commit, a document whose lease was taken over writes nothing and its
/// handle gets `LeaseLost`; the other documents of the commit are written, and their
/// handles go on.
#[test]
fn lost_lease_fails_only_its_own_document_of_a_shared_commit() -> Result<(), Error> {
    let schema = fresh_schema();
    let url = server().url();
    let store = PostgresStore::open_with(&url, PostgresOptions::default().schema(schema.clone()))?;
    let names = ["a", "b", "c"];
    let mut docs = Vec::new();
    for n in names {
        let mut doc = store.open_document(&n.into())?;
        doc.apply(writer_batch(1))?;
        docs.push(doc);
    }
    {
        let mut all: Vec<&mut PostgresPersister> = docs.iter_mut().collect();
        store.flush_documents(&mut all)?;
    }
    for doc in &mut docs {
        doc.apply(writer_batch(2))?;
    }
    // Another holder takes b over: its token moves on (and the lease is left free, so
    // that the test can reopen b).
    let mut client = admin(&url).map_err(test_error)?;
    client
        .execute(
            &format!(
                "UPDATE \"{schema}\".leases SET token = token + 1, expires_at = now() WHERE document = $1"
            ),
            &[&b"b".as_slice()],
        )
        .map_err(test_error)?;
    let result = {
        let mut all: Vec<&mut PostgresPersister> = docs.iter_mut().collect();
        store.flush_documents(&mut all)
    };
    assert!(matches!(result, Err(Error::LeaseLost { .. })), "{result:?}");
    assert_eq!(docs[0].flush()?, 0);
    assert_eq!(docs[2].flush()?, 0);
    assert!(matches!(docs[1].flush(), Err(Error::LeaseLost { .. })));
    docs[0].apply(writer_batch(3))?;
    assert!(docs[0].flush()? > 0);
    drop(docs);
    for (n, expected) in names.iter().zip([3, 1, 2]) {
        let doc = store.open_document(&(*n).into())?;
        assert_eq!(Contents::read(&doc)?, model(expected), "{n}");
    }
    Ok(())
}

/// A group whose documents only store changes, each document already stored, runs a
/// shorter statement than one where any document is new, stores a compacted document,
/// removes a change or writes a sync state. Both kinds, in turn, write exactly what
/// each handle held, sizes included: after every round the documents are reopened and
/// compared with a model.
#[test]
fn groups_with_and_without_removals_and_sync_states_write_what_was_held() -> Result<(), Error> {
    let schema = fresh_schema();
    let url = server().url();
    let mut client = admin(&url).map_err(test_error)?;
    let counted = count_statements(&mut client)?;
    let options = PostgresOptions::default().schema(schema.clone());
    let store = PostgresStore::open_with(&url, options)?;
    let names = ["a", "b", "c"];
    let actor = || ActorId::new([3; 16]);
    let change = |seq: u64, text: &str| Batch::new().insert_change(actor(), seq, text.into());
    let rounds: [[Batch; 3]; 5] = [
        // Changes only, but the documents are new.
        [change(1, "a1"), change(1, "b1"), change(1, "c1")],
        // Changes only.
        [change(2, "a2"), change(2, "b2"), change(2, "c2")],
        // A change removed and a sync state written beside a change and a compacted
        // document.
        [
            change(3, "a3"),
            Batch::new()
                .remove_change(actor(), 1)
                .set_sync_state(b"peer".to_vec(), b"s1".to_vec()),
            change(3, "c3").set_document(b"compacted".to_vec()),
        ],
        // Changes only, one of them overwritten.
        [change(4, "a4"), change(2, "b2, again"), change(4, "c4")],
        // A compacted document replaced, a sync state removed, a change removed.
        [
            Batch::new().remove_change(actor(), 2),
            Batch::new().remove_sync_state(b"peer".to_vec()),
            change(5, "c5").set_document(b"compacted again".to_vec()),
        ],
    ];
    let mut models = vec![DocumentState::new(); names.len()];
    for (round, batches) in rounds.into_iter().enumerate() {
        let mut docs = names
            .iter()
            .map(|n| store.open_document(&(*n).into()))
            .collect::<Result<Vec<_>, _>>()?;
        for ((doc, model), batch) in docs.iter_mut().zip(&mut models).zip(batches) {
            model.apply(batch.clone());
            doc.apply(batch)?;
        }
        let mut all: Vec<&mut PostgresPersister> = docs.iter_mut().collect();
        store.flush_documents(&mut all)?;
        drop(docs);
        for (n, model) in names.iter().zip(&models) {
            let doc = store.open_document(&(*n).into())?;
            assert_eq!(
                Contents::read(&doc)?,
                Contents::of(Some(model)),
                "round {round}, document {n}"
            );
        }
    }
    if counted {
        // Rounds 2 and 4 ran the statement without the removals (`dc`), 1, 3 and 5
        // the whole one.
        let mut calls = |whole: bool| -> Result<i64, Error> {
            let row = client
                .query_one(
                    "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements WHERE query LIKE $1 AND query LIKE '%pc AS (%' AND (query LIKE '%dc AS (%') = $2",
                    &[&format!("%\"{schema}\".%"), &whole],
                )
                .map_err(test_error)?;
            Ok(row.get(0))
        };
        let shorter = calls(false)?;
        let whole = calls(true)?;
        assert_eq!((shorter, whole), (2, 3));
    } else {
        println!(
            "statements not counted: pg_stat_statements is not installed on PERSISTER_POSTGRES_URL's server"
        );
    }
    Ok(())
}
