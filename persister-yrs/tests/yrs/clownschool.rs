//! The concurrent clownschool trace: one persisted document per agent, each syncing
//! with the others through the Yjs sync protocol.
//!
//! Each transaction was typed on the merged state of its `parents`. Before applying
//! one, the agent's document receives, as sync-protocol `Update` messages, the update
//! of every ancestor transaction it lacks, and nothing else: an agent's own earlier
//! transactions are ancestors of its later ones, so its document then holds exactly
//! the state the transaction was typed on (yrs, unlike automerge, cannot type on an
//! older state). At the end every pair of documents runs a full sync (state vectors,
//! then what each lacks), and every document, reloaded, holds the same text.

use persister_core::FlushPolicy;
use persister_traces::Trace;
use persister_yrs::Options;
use yrs::sync::SyncMessage;
use yrs::updates::decoder::Decode;
use yrs::{Doc as YDoc, GetString, Transact, Update};

use crate::support::{
    Replica, TEXT, TestResult, apply_txn, backend_tests, full_trace, load_trace, sync_pair,
    transmit,
};

/// Transactions replayed by default; `PERSISTER_FULL_TRACE=1` replays all 23,136.
const DEFAULT_TXNS: usize = 1_500;
/// Every document is flushed, dropped and reloaded every this many transactions.
const RELOAD_EVERY: usize = 500;

backend_tests! {
    [memory, redb, sled, fs, postgres]

    fn clownschool_peers_converge(backend: Backend) -> TestResult {
        let Some(trace) = load_trace("clownschool")? else {
            return Ok(());
        };
        let txns = if full_trace() { trace.txns.len() } else { DEFAULT_TXNS };
        let agents = trace.num_agents.ok_or("not a concurrent trace")?;
        let options = Options::default().with_flush(FlushPolicy::EveryBatches(1_000));
        let mut peers = (0..agents)
            .map(|_| Replica::new(&backend, options.clone()))
            .collect::<TestResult<Vec<_>>>()?;

        // The update each transaction made, and which transactions each agent holds.
        let mut updates: Vec<Vec<u8>> = Vec::with_capacity(txns);
        let mut holds = vec![vec![false; txns]; agents];
        let mut delivered = 0;
        for (i, txn) in trace.txns[..txns].iter().enumerate() {
            let agent = txn.agent.ok_or("txn without agent")?;
            for ancestor in missing_ancestors(&trace, &holds[agent], i)? {
                let message = transmit(SyncMessage::Update(updates[ancestor].clone()))?;
                let answer = peers[agent].doc()?.receive_sync_message(message)?;
                assert!(answer.is_none(), "an update needs no answer");
                holds[agent][ancestor] = true;
                delivered += 1;
            }
            let doc = peers[agent].doc()?;
            let text = doc.doc().get_or_insert_text(TEXT);
            let update = doc.edit(|t| {
                apply_txn(t, &text, txn);
                t.encode_update_v1()
            })?;
            updates.push(update);
            holds[agent][i] = true;
            if (i + 1) % RELOAD_EVERY == 0 {
                for peer in &mut peers {
                    peer.doc()?.flush()?;
                    peer.reload()?;
                }
            }
        }

        // Everyone syncs with everyone, then every document restarts.
        let mut carried = 0;
        for a in 0..agents {
            for b in a + 1..agents {
                let (left, right) = peers.split_at_mut(b);
                carried += sync_pair(left[a].doc()?, right[0].doc()?)?;
            }
        }
        let expected = if txns == trace.txns.len() {
            trace.end_content.clone()
        } else {
            reference_text(&updates)?
        };
        for (agent, peer) in peers.iter_mut().enumerate() {
            peer.doc()?.flush()?;
            peer.reload()?;
            assert_eq!(peer.text()?, expected, "document of agent {agent}");
            assert_eq!(peer.doc()?.persister().sizes().sync_state_count, 0);
        }
        println!(
            "{}: {txns} transactions, {delivered} updates delivered, {carried} bytes in the final syncs",
            backend.name()
        );
        assert!(delivered > 0, "the replay exercised no merge");
        Ok(())
    }
}

/// The ancestors of transaction `txn` that an agent holding `holds` lacks, oldest
/// first (an ancestor always has a smaller index).
fn missing_ancestors(trace: &Trace, holds: &[bool], txn: usize) -> TestResult<Vec<usize>> {
    let mut seen = vec![false; txn];
    let mut stack: Vec<usize> = trace.txns[txn]
        .parents
        .clone()
        .ok_or("txn without parents")?;
    let mut missing = Vec::new();
    while let Some(t) = stack.pop() {
        if t >= txn {
            return Err(format!("transaction {txn} has parent {t}, not an ancestor").into());
        }
        if seen[t] || holds[t] {
            continue;
        }
        seen[t] = true;
        missing.push(t);
        stack.extend(trace.txns[t].parents.iter().flatten());
    }
    missing.sort_unstable();
    Ok(missing)
}

/// The text of every update applied to one in-memory yrs document, without persister
/// or sync.
fn reference_text(updates: &[Vec<u8>]) -> TestResult<String> {
    let doc = YDoc::new();
    let text = doc.get_or_insert_text(TEXT);
    {
        let mut txn = doc.transact_mut();
        for update in updates {
            txn.apply_update(Update::decode_v1(update)?)?;
        }
    }
    Ok(text.get_string(&doc.transact()))
}
