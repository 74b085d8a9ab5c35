//! The fleet store's circuit breaker and the bounded buffer of hits not yet accepted by the
//! store. Both are pure (time is passed in), so they are tested without a store or sleeps.
//! The breaker opens after [`BREAKER_FAILURES`] failed calls in a row; while open, no call is
//! tried for [`BREAKER_OPEN_FOR`], then one probe goes through (half-open) and its outcome
//! closes or reopens it. The buffer keeps hits in arrival order and drops the oldest (counted)
//! beyond its cap.

use super::FleetHit;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Failed calls in a row that open the breaker: one lost packet or a store restart's first
/// refused connection should not switch the fleet to local detection.
pub const BREAKER_FAILURES: u32 = 3;

/// How long an open breaker waits before one probe: short, so hits are replayed soon after the
/// store returns, yet a dead store costs one timed-out call per second at most.
pub const BREAKER_OPEN_FOR: Duration = Duration::from_secs(1);

/// The breaker's state.
#[derive(Debug)]
pub struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    /// Since when calls have failed (first failure of the current run), for the health alert.
    down_since: Option<Instant>,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker::new()
    }
}

impl Breaker {
    pub fn new() -> Breaker {
        Breaker {
            failures: 0,
            open_until: None,
            down_since: None,
        }
    }

    /// May a call be tried now?
    pub fn allow(&self, now: Instant) -> bool {
        self.open_until.is_none_or(|t| now >= t)
    }

    /// Record a call's outcome.
    pub fn record(&mut self, ok: bool, now: Instant) {
        if ok {
            self.failures = 0;
            self.open_until = None;
            self.down_since = None;
            return;
        }
        self.failures = self.failures.saturating_add(1);
        self.down_since.get_or_insert(now);
        if self.failures >= BREAKER_FAILURES {
            self.open_until = Some(now + BREAKER_OPEN_FOR);
        }
    }

    /// Is the store taken as unavailable (breaker open, or half-open awaiting its probe)?
    pub fn is_open(&self) -> bool {
        self.failures >= BREAKER_FAILURES
    }

    /// Since when the store has been failing, if it is.
    pub fn down_since(&self) -> Option<Instant> {
        self.down_since
    }
}

/// Hits waiting for the store, oldest first, at most `cap`. Each hit gets a sequence number so
/// that hits dropped while a batch was in flight never make the batch's removal take others.
#[derive(Debug)]
pub struct Buffer {
    hits: VecDeque<(u64, FleetHit)>,
    next: u64,
    cap: usize,
    /// Hits dropped because the buffer was full.
    pub dropped: u64,
}

impl Buffer {
    pub fn new(cap: usize) -> Buffer {
        Buffer {
            hits: VecDeque::new(),
            next: 0,
            cap: cap.max(1),
            dropped: 0,
        }
    }

    pub fn push(&mut self, h: FleetHit) {
        if self.hits.len() >= self.cap {
            self.hits.pop_front();
            self.dropped += 1;
        }
        self.hits.push_back((self.next, h));
        self.next += 1;
    }

    pub fn len(&self) -> usize {
        self.hits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hits.is_empty()
    }

    /// A copy of the oldest `n` hits (they stay until [`Buffer::consume_through`]) and the
    /// sequence number of the last one.
    pub fn peek(&self, n: usize) -> (u64, Vec<FleetHit>) {
        let v: Vec<_> = self.hits.iter().take(n).collect();
        let last = v.last().map(|(s, _)| *s).unwrap_or(0);
        (last, v.into_iter().map(|(_, h)| h.clone()).collect())
    }

    /// Remove the hits up to sequence number `last` (those the store accepted).
    pub fn consume_through(&mut self, last: u64) {
        while self.hits.front().is_some_and(|(s, _)| *s <= last) {
            self.hits.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(offset: u64) -> FleetHit {
        FleetHit {
            time_ms: 0,
            ip: "192.0.2.1".parse().unwrap(),
            subnet: None,
            account: None,
            inode: 1,
            offset,
            attempts: 1,
        }
    }

    #[test]
    fn breaker_opens_after_failures_in_a_row_and_probes_after_a_while() {
        let t0 = Instant::now();
        let mut b = Breaker::new();
        b.record(false, t0);
        b.record(false, t0);
        assert!(b.allow(t0) && !b.is_open(), "two failures keep it closed");
        assert_eq!(b.down_since(), Some(t0));
        b.record(false, t0);
        assert!(b.is_open());
        assert!(!b.allow(t0 + BREAKER_OPEN_FOR / 2));
        assert!(b.allow(t0 + BREAKER_OPEN_FOR), "half-open: one probe");
        b.record(false, t0 + BREAKER_OPEN_FOR);
        assert!(!b.allow(t0 + BREAKER_OPEN_FOR + BREAKER_OPEN_FOR / 2));
        assert_eq!(b.down_since(), Some(t0), "down since the first failure");
        b.record(true, t0 + 3 * BREAKER_OPEN_FOR);
        assert!(!b.is_open() && b.allow(t0) && b.down_since().is_none());
    }

    #[test]
    fn success_between_failures_resets_the_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new();
        for _ in 0..10 {
            b.record(false, t0);
            b.record(false, t0);
            b.record(true, t0);
        }
        assert!(!b.is_open());
    }

    #[test]
    fn buffer_drops_oldest_beyond_cap_and_consumes_in_order() {
        let mut buf = Buffer::new(3);
        for o in 0..5 {
            buf.push(hit(o));
        }
        assert_eq!(buf.dropped, 2);
        let (last, batch) = buf.peek(2);
        let offs: Vec<u64> = batch.iter().map(|h| h.offset).collect();
        assert_eq!(offs, vec![2, 3]);
        // While the batch is in flight, two more arrive and push out 2 and 3 themselves.
        buf.push(hit(5));
        buf.push(hit(6));
        buf.consume_through(last);
        let offs: Vec<u64> = buf.peek(10).1.iter().map(|h| h.offset).collect();
        assert_eq!(offs, vec![4, 5, 6], "no unsent hit removed");
        let (last, _) = buf.peek(10);
        buf.consume_through(last);
        assert!(buf.is_empty());
    }
}
