//! Repairing tombstones out of the graph, so deletes keep recall and their memory is reused.
//!
//! A removed node stays in the graph as a tombstone: searches step through it but never
//! return it. Once tombstones reach `repair_fraction` of the nodes, one batch repair runs
//! (in the spirit of FreshDiskANN's consolidation):
//!
//! 1. every surviving node whose list names a tombstone gets a new list, chosen with the
//!    heuristic from its surviving neighbours plus the tombstones' own neighbours, so the
//!    paths that ran through the deleted node still exist;
//! 2. the entry point moves to a surviving node of the highest level;
//! 3. after a grace period (no search that could still hold a tombstone is running) the
//!    tombstones' slots are emptied and handed to the slot pool for reuse.
//!
//! Inserts and removes wait during a repair (structure lock); searches do not.

use super::HnswIndex;
use crate::slots::{id_of, DELETED};
use crate::words::load;

impl HnswIndex {
    /// Repairs every tombstone now. Deterministic: the same graph gives the same result.
    pub fn repair(&self) {
        let _exclusive = self.structure.write();
        let high = self.pool.high_water();
        let dead: Vec<bool> = (0..high)
            .map(|s| self.graph.is_backed(s) && self.graph.label_word(s) & DELETED != 0)
            .collect();
        let doomed: Vec<u32> = (0..high).filter(|&s| dead[s as usize]).collect();
        if doomed.is_empty() {
            return;
        }

        if let Some((ep, _)) = self.entry() {
            if dead[ep as usize] {
                self.set_entry(self.highest_survivor(&dead));
            }
        }

        let mut links = Vec::new();
        let mut candidates = Vec::new();
        let mut isolated = Vec::new();
        for s in 0..high {
            if dead[s as usize]
                || !self.graph.is_backed(s)
                || id_of(self.graph.label_word(s)).is_none()
            {
                continue;
            }
            for level in 0..=self.graph.level(s) {
                self.graph.links_into(s, level, &mut links);
                if !links.iter().any(|&n| dead[n as usize]) {
                    continue;
                }
                candidates.clear();
                for &n in &links {
                    if dead[n as usize] {
                        candidates.extend(
                            self.graph
                                .links(n, level)
                                .iter()
                                .map(load)
                                .filter(|&m| m != s && !dead[m as usize]),
                        );
                    } else {
                        candidates.push(n);
                    }
                }
                let chosen = self.prune(s, &candidates, level);
                if chosen.is_empty() {
                    isolated.push((s, level));
                }
                let _lock = self.graph.lock(s);
                self.graph.set_links(s, level, &chosen);
            }
        }
        // A survivor whose whole neighbourhood died (two hops deep) would be cut off:
        // find it new neighbours by a search, as an insert would.
        for (s, level) in isolated {
            self.relink(s, level);
        }
        // Then every survivor no search can reach any more gets linked from reachable
        // nodes, as an insert would be.
        for (s, level) in self.unreachable(&dead) {
            self.relink(s, level);
        }

        // No live list names a doomed slot any more; wait out searches that began before.
        self.grace.synchronize();
        for &s in &doomed {
            self.graph.set_label_word(s, 0);
        }
        self.tombstones
            .fetch_sub(doomed.len(), std::sync::atomic::Ordering::AcqRel);
        self.pool.release(doomed);
    }

    /// The surviving node of the highest level, preferring one with level-0 links (an
    /// entry point without them would strand every search), lowest slot on ties.
    fn highest_survivor(&self, dead: &[bool]) -> Option<(u32, usize)> {
        (0..dead.len() as u32)
            .filter(|&s| {
                !dead[s as usize]
                    && self.graph.is_backed(s)
                    && id_of(self.graph.label_word(s)).is_some()
            })
            .map(|s| {
                let linked = self
                    .graph
                    .links(s, 0)
                    .iter()
                    .any(|n| !dead[load(n) as usize]);
                (s, (linked, self.graph.level(s)))
            })
            .fold(
                None,
                |best: Option<(u32, (bool, usize))>, (s, rank)| match best {
                    Some((_, best_rank)) if best_rank >= rank => best,
                    Some(_) | None => Some((s, rank)),
                },
            )
            .map(|(s, (_, level))| (s, level))
    }

    /// Survivors that no path from the entry point reaches, per level. Relinked lists
    /// can cut a stretch of nodes off from the rest when the heuristic keeps few links
    /// per node (points on a line): each of them then has links, and incoming ones from
    /// its neighbours, but searches never get there.
    fn unreachable(&self, dead: &[bool]) -> Vec<(u32, usize)> {
        let high = dead.len();
        let Some((ep, top)) = self.entry() else {
            return Vec::new();
        };
        let alive = |s: u32| {
            !dead[s as usize]
                && self.graph.is_backed(s)
                && id_of(self.graph.label_word(s)).is_some()
        };
        let mut out = Vec::new();
        let mut seen = vec![false; high];
        let mut stack = Vec::new();
        for level in 0..=top {
            seen.iter_mut().for_each(|x| *x = false);
            stack.clear();
            if (ep as usize) < high {
                seen[ep as usize] = true;
            }
            stack.push(ep);
            while let Some(x) = stack.pop() {
                for n in self.graph.links(x, level) {
                    let n = load(n);
                    if (n as usize) < high && !seen[n as usize] && alive(n) {
                        seen[n as usize] = true;
                        stack.push(n);
                    }
                }
            }
            out.extend(
                (0..high as u32)
                    .filter(|&s| alive(s) && self.graph.level(s) >= level && !seen[s as usize])
                    .map(|s| (s, level)),
            );
        }
        out
    }

    /// Gives `s` neighbours at `level` by searching from the entry point, and links back.
    fn relink(&self, s: u32, level: usize) {
        let q: Vec<f32> = self.graph.vector(s).to_vec();
        let probe = self.exact(&q);
        let Some((cur, cur_d, _)) = self.descend(&probe, level) else {
            return;
        };
        let mut state = self.scratch.take();
        let mut found = std::mem::take(&mut state.results);
        found.reset(self.params.ef_construction);
        let accept = |n: u32| n != s && self.graph.label_word(n) & DELETED == 0;
        self.walk_layer(&probe, (cur, cur_d), level, accept, &mut state, &mut found);
        found.drain_sorted(&mut state.sorted);
        let chosen = self.select(&state.sorted, self.graph.m);
        state.results = found;
        self.scratch.give_back(state);
        {
            let _lock = self.graph.lock(s);
            self.graph.set_links(s, level, &chosen);
        }
        for n in chosen {
            self.link_back(n, s, level);
        }
    }
}
