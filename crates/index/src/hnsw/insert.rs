//! Adding a node: find its neighbours level by level, choose them with the paper's
//! heuristic, link both ways. Several inserts run at once; each link list is rewritten
//! under its node's lock only.

use super::search::Probe;
use super::HnswIndex;
use crate::error::Result;
use crate::slots::{label_word, DELETED};
use crate::topk::Key;
use crate::words::load;

impl HnswIndex {
    /// Inserts a prepared vector. Caller holds the structure lock shared.
    pub(super) fn insert(&self, id: u32, q: &[f32]) -> Result<()> {
        let level = self.level_for(id);
        // Published before any link points here, so every reachable node has a label.
        let slot = self.ids.claim(id, &self.pool, |s| {
            self.graph.init_slot(s, level, q)?;
            self.graph.set_label_word(s, label_word(id));
            Ok(())
        })?;

        // A node rising above the current top must hold the entry lock for its whole
        // insert, so that two such nodes do not both become the entry.
        let mut entry_guard = None;
        let mut entry = self.entry();
        if entry.is_none_or(|(_, top)| level > top) {
            entry_guard = Some(self.entry_lock.lock());
            entry = self.entry();
        }
        let Some((ep, top)) = entry else {
            self.set_entry(Some((slot, level)));
            return Ok(());
        };
        if level <= top {
            entry_guard = None;
        }

        let probe = self.exact(q);
        let (mut cur, mut cur_d) = (ep, probe.distance(ep));
        for l in (level + 1..=top).rev() {
            (cur, cur_d) = self.greedy(&probe, cur, cur_d, l);
        }
        let mut state = self.scratch.take();
        let mut found = std::mem::take(&mut state.results);
        let mut sorted = std::mem::take(&mut state.sorted);
        for l in (0..=level.min(top)).rev() {
            found.reset(self.params.ef_construction);
            let accept = |s: u32| s != slot && self.graph.label_word(s) & DELETED == 0;
            self.walk_layer(&probe, (cur, cur_d), l, accept, &mut state, &mut found);
            found.drain_sorted(&mut sorted);
            // New nodes get M links at every level (level 0 can grow to 2·M through back
            // links), as in hnswlib: measured, it gives the same recall per ef with fewer
            // distance computations per hop.
            let chosen = self.select(&sorted, self.graph.m);
            self.link_self(slot, l, &chosen);
            for &n in &chosen {
                self.link_back(n, slot, l);
            }
            if let Some(best) = sorted.first() {
                (cur, cur_d) = (best.id(), best.distance());
            }
        }
        (state.results, state.sorted) = (found, sorted);
        self.scratch.give_back(state);
        if level > top {
            self.set_entry(Some((slot, level)));
        }
        drop(entry_guard);
        Ok(())
    }

    /// The neighbour-selection heuristic (HNSW paper, algorithm 4): walking candidates
    /// from closest to farthest, keep one only if it is closer to the base than to every
    /// neighbour kept so far. It keeps links pointing in diverse directions, which is what
    /// lets the graph cross between clusters. `sorted` is ordered by distance to the base.
    pub(super) fn select(&self, sorted: &[Key], max: usize) -> Vec<u32> {
        if sorted.len() <= max {
            return sorted.iter().map(|k| k.id()).collect();
        }
        let mut kept: Vec<u32> = Vec::with_capacity(max);
        for c in sorted {
            let v = self.graph.vector(c.id());
            let diverse = kept
                .iter()
                .all(|&s| self.metric.distance(v, self.graph.vector(s)) >= c.distance());
            if diverse {
                kept.push(c.id());
                if kept.len() == max {
                    break;
                }
            }
        }
        kept
    }

    /// Writes the new node's own list at `level`, keeping links other inserts added to it
    /// meanwhile (a concurrent insert may reach it through a higher level first).
    fn link_self(&self, slot: u32, level: usize, chosen: &[u32]) {
        let _lock = self.graph.lock(slot);
        let existing: Vec<u32> = self.graph.links(slot, level).iter().map(load).collect();
        if existing.is_empty() {
            self.graph.set_links(slot, level, chosen);
            return;
        }
        let mut all: Vec<u32> = chosen.to_vec();
        all.extend(existing.into_iter().filter(|s| !chosen.contains(s)));
        let merged = self.prune(slot, &all, level);
        self.graph.set_links(slot, level, &merged);
    }

    /// Adds `new` to `n`'s list at `level`, pruning with the heuristic when it is full.
    pub(super) fn link_back(&self, n: u32, new: u32, level: usize) {
        let _lock = self.graph.lock(n);
        let links = self.graph.links(n, level);
        if links.iter().any(|l| load(l) == new) || self.graph.try_push_link(n, level, new) {
            return;
        }
        let mut all: Vec<u32> = links.iter().map(load).collect();
        all.push(new);
        let pruned = self.prune(n, &all, level);
        self.graph.set_links(n, level, &pruned);
    }

    /// Chooses at most `max_links(level)` of `candidates` as `base`'s neighbours. Deleted
    /// candidates are dropped: a link to a tombstone only delays the repair.
    pub(super) fn prune(&self, base: u32, candidates: &[u32], level: usize) -> Vec<u32> {
        let bv = self.graph.vector(base);
        let mut keyed: Vec<Key> = candidates
            .iter()
            .filter(|&&c| c != base && self.graph.label_word(c) & DELETED == 0)
            .map(|&c| Key::new(self.metric.distance(bv, self.graph.vector(c)), c))
            .collect();
        keyed.sort_unstable();
        keyed.dedup_by_key(|k| k.id());
        self.select(&keyed, self.graph.max_links(level))
    }
}
