//! The quoted log lines of one detector, in one ring of bytes with a fixed budget.
//!
//! An alert quotes the last few lines of its key. Keeping them per key cost a `String` (and a
//! list) for every tracked key, most of which never alert: at a million keys that was most of
//! the detector's memory. Here every line is appended once to a ring of at most
//! [`LINE_STORE_BYTES`]; a record holds the id of the previous line of the same key, so a key
//! keeps only the id of its latest line and walks back from it. When the ring is full the
//! oldest bytes go: a key whose lines are older than the whole ring quotes fewer lines (or
//! none), and memory stays the same whatever the number of keys.
//!
//! Record layout: `prev` (8 bytes, little endian, [`NONE`] for none), `len` (2 bytes), the
//! line's bytes. An id is the absolute position of its record (bytes ever written before it).

use std::collections::VecDeque;

/// Bytes of quoted lines kept per detector: about 50,000 lines of a typical 160-byte mail log
/// line, several minutes of a heavy attack, whatever the number of keys. Three detectors (IPs,
/// subnets, accounts) at most: 24 MiB in all.
pub const LINE_STORE_BYTES: usize = 8 << 20;

/// No line.
pub const NONE: u64 = u64::MAX;

const HEADER: usize = 10;

/// See the [module docs](self).
#[derive(Debug)]
pub struct LineStore {
    buf: VecDeque<u8>,
    budget: usize,
    /// Bytes dropped from the front: the absolute position of `buf[0]`.
    dropped: u64,
}

impl Default for LineStore {
    fn default() -> Self {
        LineStore::with_budget(LINE_STORE_BYTES)
    }
}

impl LineStore {
    pub fn with_budget(budget: usize) -> Self {
        LineStore {
            buf: VecDeque::new(),
            budget: budget.max(HEADER + u16::MAX as usize),
            dropped: 0,
        }
    }

    /// Append `line` (at most `u16::MAX` bytes; the caller cuts it) after `prev`; its id.
    pub fn push(&mut self, prev: u64, line: &str) -> u64 {
        let bytes = &line.as_bytes()[..line.len().min(u16::MAX as usize)];
        let need = HEADER + bytes.len();
        let over = (self.buf.len() + need).saturating_sub(self.budget);
        if over > 0 {
            self.buf.drain(..over);
            self.dropped += over as u64;
        }
        let id = self.dropped + self.buf.len() as u64;
        self.buf.extend(prev.to_le_bytes());
        self.buf.extend((bytes.len() as u16).to_le_bytes());
        self.buf.extend(bytes.iter().copied());
        id
    }

    /// The line with this id and the id of the line before it, while still kept.
    fn get(&self, id: u64) -> Option<(u64, String)> {
        if id == NONE || id < self.dropped {
            return None;
        }
        let at = usize::try_from(id - self.dropped).ok()?;
        if at + HEADER > self.buf.len() {
            return None;
        }
        let mut head = [0u8; HEADER];
        for (i, b) in self.buf.range(at..at + HEADER).enumerate() {
            head[i] = *b;
        }
        let prev = u64::from_le_bytes(head[..8].try_into().ok()?);
        let len = u16::from_le_bytes([head[8], head[9]]) as usize;
        let bytes: Vec<u8> = self
            .buf
            .range(at + HEADER..at + HEADER + len)
            .copied()
            .collect();
        // Lines were `&str` cut at a char boundary by the caller.
        Some((prev, String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Up to `n` lines ending with `last`, oldest first.
    pub fn lines(&self, last: u64, n: usize) -> Vec<String> {
        let mut out = Vec::with_capacity(n.min(16));
        let mut id = last;
        while out.len() < n {
            match self.get(id) {
                Some((prev, line)) => {
                    out.push(line);
                    // Ids only grow: a chain that does not go back is corrupt.
                    if prev >= id {
                        break;
                    }
                    id = prev;
                }
                None => break,
            }
        }
        out.reverse();
        out
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_one_key_come_back_in_order_and_other_keys_do_not_mix_in() {
        let mut s = LineStore::default();
        let (mut a, mut b) = (NONE, NONE);
        for i in 0..5 {
            a = s.push(a, &format!("a{i}"));
            b = s.push(b, &format!("b{i} ✓"));
        }
        assert_eq!(s.lines(a, 3), vec!["a2", "a3", "a4"]);
        assert_eq!(s.lines(b, 10), vec!["b0 ✓", "b1 ✓", "b2 ✓", "b3 ✓", "b4 ✓"]);
        assert!(s.lines(NONE, 3).is_empty());
    }

    #[test]
    fn the_ring_keeps_its_budget_and_old_lines_fade_out() {
        let mut s = LineStore::with_budget(0); // raised to the smallest budget that holds a line
        let budget = HEADER + u16::MAX as usize;
        let line = "x".repeat(1000);
        let first = s.push(NONE, &line);
        let mut last = first;
        for _ in 0..200 {
            last = s.push(last, &line);
            assert!(s.len() <= budget);
        }
        assert!(s.get(first).is_none());
        let kept = s.lines(last, 1000);
        assert_eq!(kept.len(), budget / (HEADER + 1000));
        assert!(kept.iter().all(|l| *l == line));
    }
}
