//! The concurrent clownschool trace: one persisted peer per agent, forks and merges
//! through sync.
//!
//! Each transaction was typed on the merged state of its `parents`. Before applying
//! one, the agent's peer syncs with the peers of the agents that typed the parents it
//! lacks; a sync brings everything the other peer holds, which can be more than the
//! parents, so the patches are applied on the document isolated at the parents' heads
//! (`AutoCommit::isolate`), exactly the state they were typed on.

use automerge::{AutoCommit, AutomergeError, ChangeHash, ObjId, ReadDoc};
use persister_core::FlushPolicy;
use persister_traces::{Trace, Txn};

use crate::support::{
    Replica, TestResult, apply_txn, backend_tests, full_trace, load_trace, sync_until_quiet,
    text_object, text_options,
};

/// Transactions replayed by default; `PERSISTER_FULL_TRACE=1` replays all 23,136.
const DEFAULT_TXNS: usize = 1_500;
/// Every peer is flushed, dropped and reloaded every this many transactions.
const RELOAD_EVERY: usize = 500;

backend_tests! {
    [memory, redb, sled, fs]

    fn clownschool_peers_converge(backend: Backend) -> TestResult {
        let Some(trace) = load_trace("clownschool")? else {
            return Ok(());
        };
        let txns = if full_trace() { trace.txns.len() } else { DEFAULT_TXNS };
        let agents = trace.num_agents.ok_or("not a concurrent trace")?;
        let options = text_options().with_flush(FlushPolicy::EveryBatches(1_000));
        let mut peers = (0..agents)
            .map(|_| Replica::new(&backend, options.clone()))
            .collect::<TestResult<Vec<_>>>()?;

        // Peer 0 creates the text object; the others get it by sync. `parents: []`
        // means this state.
        let text = text_object(peers[0].doc()?)?;
        let root = peers[0].doc()?.heads();
        for other in 1..agents {
            sync_peers(&mut peers, 0, other)?;
        }

        let mut hashes: Vec<ChangeHash> = Vec::with_capacity(txns);
        let (mut syncs, mut isolated) = (0, 0);
        for (i, txn) in trace.txns[..txns].iter().enumerate() {
            let agent = txn.agent.ok_or("txn without agent")?;
            let parents = txn.parents.as_deref().ok_or("txn without parents")?;
            let mut at: Vec<ChangeHash> = parents.iter().map(|&p| hashes[p]).collect();
            if at.is_empty() {
                at.clone_from(&root);
            }
            at.sort();
            for &p in parents {
                if !ReadDoc::get_missing_deps(peers[agent].doc()?.doc(), &[hashes[p]]).is_empty() {
                    let source = trace.txns[p].agent.ok_or("txn without agent")?;
                    sync_peers(&mut peers, agent, source)?;
                    syncs += 1;
                }
            }
            let (hash, was_isolated) = peers[agent].doc()?.edit(|d| type_at(d, &text, &at, txn))?;
            isolated += usize::from(was_isolated);
            hashes.push(hash);
            if (i + 1) % RELOAD_EVERY == 0 {
                for peer in &mut peers {
                    peer.doc()?.flush()?;
                    peer.reload()?;
                }
            }
        }

        // Everyone syncs with everyone, then every peer restarts.
        for _ in 0..2 {
            for a in 0..agents {
                for b in a + 1..agents {
                    sync_peers(&mut peers, a, b)?;
                }
            }
        }
        let expected = if txns == trace.txns.len() {
            trace.end_content.clone()
        } else {
            reference_text(&trace, txns)?
        };
        for (agent, peer) in peers.iter_mut().enumerate() {
            peer.doc()?.flush()?;
            peer.reload()?;
            assert_eq!(peer.text()?, expected, "peer of agent {agent}");
            assert_eq!(peer.doc()?.orphaned_changes(), 0);
        }
        println!(
            "{}: {txns} transactions, {syncs} syncs, {isolated} typed on an isolated state",
            backend.name()
        );
        assert!(syncs > 0 && isolated > 0, "the replay exercised no merge");
        Ok(())
    }
}

/// Applies `txn` on the state at `heads` and commits it; returns the new change's hash
/// and whether the document had to be isolated.
fn type_at(
    d: &mut AutoCommit,
    text: &ObjId,
    at: &[ChangeHash],
    txn: &Txn,
) -> Result<(ChangeHash, bool), AutomergeError> {
    if d.get_heads() == at {
        apply_txn(d, text, txn)?;
        return Ok((d.commit().ok_or(AutomergeError::Fail)?, false));
    }
    d.isolate(at);
    let applied = apply_txn(d, text, txn);
    let hash = d.commit();
    d.integrate();
    applied?;
    Ok((hash.ok_or(AutomergeError::Fail)?, true))
}

/// The text after the first `txns` transactions, computed independently of peers and
/// sync: one in-memory document, each transaction typed on the state of its parents.
fn reference_text(trace: &Trace, txns: usize) -> TestResult<String> {
    let mut d = AutoCommit::new_with_encoding(automerge::TextEncoding::UnicodeCodePoint);
    let text = automerge::transaction::Transactable::put_object(
        &mut d,
        automerge::ROOT,
        "text",
        automerge::ObjType::Text,
    )?;
    let root = d.commit().ok_or("no root change")?;
    let mut hashes = Vec::with_capacity(txns);
    for txn in &trace.txns[..txns] {
        let parents = txn.parents.as_deref().ok_or("txn without parents")?;
        let mut at: Vec<ChangeHash> = parents.iter().map(|&p| hashes[p]).collect();
        if at.is_empty() {
            at.push(root);
        }
        at.sort();
        hashes.push(type_at(&mut d, &text, &at, txn)?.0);
    }
    Ok(d.text(&text)?)
}

/// Syncs the peers of agents `a` and `b` until both hold the same changes.
fn sync_peers(peers: &mut [Replica], a: usize, b: usize) -> TestResult {
    let (low, high) = (a.min(b), a.max(b));
    let (left, right) = peers.split_at_mut(high);
    let (low_id, high_id) = ([b'p', low as u8], [b'p', high as u8]);
    sync_until_quiet(
        (&mut left[low], &low_id),
        (&mut right[0], &high_id),
        |_, _, _| Ok(()),
    )?;
    Ok(())
}
