//! The bounded per-key map of a detector: keys in recency order, the least recently seen evicted
//! beyond the cap, in as little memory per key as we could make it.
//!
//! `lru::LruCache` allocates one node per key (key, value and two pointers, plus the
//! allocator's own header) and sizes its index for the whole cap up front: with a cap of a
//! million and three detectors that was over 100 MiB before the first hit. Here the entries
//! live in one dense `Vec` (no per-key allocation; a removed entry is replaced by the last one),
//! linked in recency order by `u32` indices, and the index is a `hashbrown::HashTable` of `u32`
//! positions that grows with the keys actually tracked (5 bytes a slot). The hasher is std's
//! randomly keyed SipHash: attackers choose the keys.

use hashbrown::HashTable;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};

/// End of the recency list.
const NIL: u32 = u32::MAX;

/// Most keys a map can hold (positions are `u32`, and `NIL` is reserved).
pub const MAX_KEYS: usize = (u32::MAX - 1) as usize;

struct Entry<K, V> {
    key: K,
    val: V,
    /// Towards the most recently seen.
    newer: u32,
    /// Towards the least recently seen.
    older: u32,
}

/// See the [module docs](self).
pub struct KeyMap<K, V> {
    index: HashTable<u32>,
    entries: Vec<Entry<K, V>>,
    hasher: RandomState,
    /// Most recently seen.
    newest: u32,
    /// Least recently seen: evicted first.
    oldest: u32,
    cap: usize,
}

impl<K: Hash + Eq, V> KeyMap<K, V> {
    pub fn new(cap: usize) -> Self {
        KeyMap {
            index: HashTable::new(),
            entries: Vec::new(),
            hasher: RandomState::new(),
            newest: NIL,
            oldest: NIL,
            cap: cap.clamp(1, MAX_KEYS),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn hash(&self, k: &K) -> u64 {
        self.hasher.hash_one(k)
    }

    fn position(&self, k: &K) -> Option<u32> {
        let h = self.hash(k);
        self.index
            .find(h, |&i| self.entries[i as usize].key == *k)
            .copied()
    }

    /// The value of `k`, without changing its recency.
    pub fn peek(&self, k: &K) -> Option<&V> {
        self.position(k).map(|i| &self.entries[i as usize].val)
    }

    fn unlink(&mut self, i: u32) {
        let (newer, older) = {
            let e = &self.entries[i as usize];
            (e.newer, e.older)
        };
        match newer {
            NIL => self.newest = older,
            n => self.entries[n as usize].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            o => self.entries[o as usize].newer = newer,
        }
    }

    fn link_newest(&mut self, i: u32) {
        let old_newest = self.newest;
        {
            let e = &mut self.entries[i as usize];
            e.newer = NIL;
            e.older = old_newest;
        }
        match old_newest {
            NIL => self.oldest = i,
            n => self.entries[n as usize].newer = i,
        }
        self.newest = i;
    }

    /// The value of `k`, made the most recently seen; inserted with `make` when absent, after
    /// evicting the least recently seen key when the map is full. Returns the value and whether
    /// a key was evicted for it.
    pub fn get_or_insert_mut(&mut self, k: K, make: impl FnOnce() -> V) -> (&mut V, bool) {
        let (v, evicted) = self.get_or_insert_evicting(k, make);
        (v, evicted.is_some())
    }

    /// As [`KeyMap::get_or_insert_mut`], returning the evicted entry (the checkpoint journal
    /// lists its key, see `detect::wire`).
    pub fn get_or_insert_evicting(
        &mut self,
        k: K,
        make: impl FnOnce() -> V,
    ) -> (&mut V, Option<(K, V)>) {
        if let Some(i) = self.position(&k) {
            if self.newest != i {
                self.unlink(i);
                self.link_newest(i);
            }
            return (&mut self.entries[i as usize].val, None);
        }
        let evicted = if self.entries.len() >= self.cap {
            self.pop_oldest()
        } else {
            None
        };
        let i = self.entries.len() as u32;
        let h = self.hash(&k);
        self.entries.push(Entry {
            key: k,
            val: make(),
            newer: NIL,
            older: NIL,
        });
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index
            .insert_unique(h, i, |&j| hasher.hash_one(&entries[j as usize].key));
        self.link_newest(i);
        (&mut self.entries[i as usize].val, evicted)
    }

    /// Insert or replace `k` as the most recently seen; returns the evicted entry, if the map
    /// was full.
    pub fn push(&mut self, k: K, v: V) -> Option<(K, V)> {
        if let Some(i) = self.position(&k) {
            self.entries[i as usize].val = v;
            self.unlink(i);
            self.link_newest(i);
            return None;
        }
        let evicted = if self.entries.len() >= self.cap {
            self.pop_oldest()
        } else {
            None
        };
        let mut v = Some(v);
        self.get_or_insert_mut(k, || v.take().expect("inserted once"));
        evicted
    }

    /// Remove `k`.
    pub fn remove(&mut self, k: &K) -> Option<V> {
        let i = self.position(k)?;
        Some(self.remove_at(i).1)
    }

    /// Remove the least recently seen key.
    pub fn pop_oldest(&mut self) -> Option<(K, V)> {
        match self.oldest {
            NIL => None,
            i => Some(self.remove_at(i)),
        }
    }

    /// Remove the entry at `i`: unlink it, drop its index slot, and move the last entry into
    /// its place (fixing that entry's links and index slot).
    fn remove_at(&mut self, i: u32) -> (K, V) {
        self.unlink(i);
        let h = self.hash(&self.entries[i as usize].key);
        if let Ok(slot) = self.index.find_entry(h, |&j| j == i) {
            slot.remove();
        }
        let last = (self.entries.len() - 1) as u32;
        let e = self.entries.swap_remove(i as usize);
        if i != last {
            // The entry that was at `last` is now at `i`.
            let h = self.hash(&self.entries[i as usize].key);
            if let Some(slot) = self.index.find_mut(h, |&j| j == last) {
                *slot = i;
            }
            let (newer, older) = {
                let m = &self.entries[i as usize];
                (m.newer, m.older)
            };
            match newer {
                NIL => self.newest = i,
                n => self.entries[n as usize].older = i,
            }
            match older {
                NIL => self.oldest = i,
                o => self.entries[o as usize].newer = i,
            }
        }
        (e.key, e.val)
    }

    /// Entries from the least to the most recently seen.
    pub fn iter_oldest_first(&self) -> impl Iterator<Item = (&K, &V)> {
        let mut i = self.oldest;
        std::iter::from_fn(move || {
            if i == NIL {
                return None;
            }
            let e = &self.entries[i as usize];
            i = e.newer;
            Some((&e.key, &e.val))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(m: &KeyMap<u32, u32>) -> Vec<u32> {
        m.iter_oldest_first().map(|(k, _)| *k).collect()
    }

    #[test]
    fn recency_order_eviction_and_removal_agree_with_a_model() {
        // A model: a Vec in recency order, oldest first.
        let mut model: Vec<(u32, u32)> = Vec::new();
        let mut m = KeyMap::new(8);
        let mut rng = fastrand::Rng::with_seed(7);
        for step in 0..20_000u32 {
            let k = rng.u32(0..20);
            match rng.u8(0..4) {
                0 => {
                    let got = m.remove(&k);
                    let pos = model.iter().position(|e| e.0 == k);
                    assert_eq!(got, pos.map(|p| model.remove(p).1), "step {step}");
                }
                1 => {
                    let ev = m.push(k, step);
                    let want = match model.iter().position(|e| e.0 == k) {
                        Some(p) => {
                            model.remove(p);
                            None
                        }
                        None if model.len() == 8 => Some(model.remove(0)),
                        None => None,
                    };
                    model.push((k, step));
                    assert_eq!(ev, want, "step {step}");
                }
                _ => {
                    let (v, evicted) = m.get_or_insert_mut(k, || step);
                    *v += 1;
                    let want_evicted = match model.iter().position(|e| e.0 == k) {
                        Some(p) => {
                            let mut e = model.remove(p);
                            e.1 += 1;
                            model.push(e);
                            false
                        }
                        None => {
                            let ev = model.len() == 8;
                            if ev {
                                model.remove(0);
                            }
                            model.push((k, step + 1));
                            ev
                        }
                    };
                    assert_eq!(evicted, want_evicted, "step {step}");
                }
            }
            assert_eq!(keys(&m), model.iter().map(|e| e.0).collect::<Vec<_>>());
            for (k, v) in &model {
                assert_eq!(m.peek(k), Some(v));
            }
            assert_eq!(m.len(), model.len());
        }
    }
}
