//! The hot path of `scan`: matching a block of whole lines at once, and cutting a file into such
//! blocks for several threads.
//!
//! A block is searched as one buffer with the rule set's combined prefilter (Aho-Corasick over
//! every rule's literals); only the line around each find is cut out and offered to the rules,
//! lines are counted with a vectorised newline count, and nothing is copied or allocated for a
//! line no rule matches. A block's result ([`Chunk`]) holds its hits in order, with IPs and
//! account names numbered per block, so that merging them into the [`Aggregate`] in block order
//! (`Merger`) does one map lookup per distinct key and block instead of two per hit. Merging in
//! order keeps every figure exact, including first threshold crossings, which depend on the
//! order of one IP's failures.
//!
//! What cannot be decided inside a block is left to the merge, which sees the blocks in order:
//! - a line that a rule with state (Dovecot, OpenSMTPD, sendmail, UW-IMAP pair lines of one
//!   session) may match is passed on as text ([`Item::Deferred`]) and offered to the
//!   sequential rule set there, from that rule on;
//! - a hit without a stamp takes the time of the previous stamped line, which may lie in an
//!   earlier block: the block records the last line before it that looks stamped (its first
//!   bytes), and the merge runs the same [`StampTracker`] as a line-by-line scan would.
//!
//! Files are cut at fixed offsets; each block owns the lines that start inside it (it reads one
//! byte before its start to know, and past its end to finish its last line, at most
//! `max_line_bytes` further since a longer line is cut anyway). Workers take blocks in turn and
//! never run more than a few blocks ahead of the merge, which bounds memory.

use super::aggregate::{Aggregate, Observed, Slot};
use super::{looks_stamped, StampTracker, STAMP_PREFIX};
use crate::rules::{Hit, HitKind, ParseCtx, RuleSet};
use jiff::Timestamp;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::net::IpAddr;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Condvar, Mutex};

/// Size of the blocks read from a stream (stdin, gzip).
pub(crate) const STREAM_BLOCK: usize = 2 * 1024 * 1024;
/// Bounds of the blocks a file is cut into.
const MIN_FILE_BLOCK: u64 = 1024 * 1024;
const MAX_FILE_BLOCK: u64 = 16 * 1024 * 1024;
/// How many blocks workers may run ahead of the merge, per worker.
const AHEAD_PER_WORKER: usize = 2;
/// Extension reads past a block's end.
const EXTEND_STEP: usize = 64 * 1024;
/// Marks a hit without a user name.
const NO_USER: u32 = u32::MAX;

/// The first bytes of a line that looks stamped (lossy UTF-8), as [`StampTracker::see`] keeps.
#[derive(Clone, Copy)]
pub(crate) struct Prefix {
    bytes: [u8; STAMP_PREFIX],
    len: u8,
}

impl Prefix {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// The time of a hit, or what is needed to find it.
pub(crate) enum When {
    At(Timestamp),
    /// No stamp on the line: the time of the previous stamped line. `before`: the last line
    /// that looks stamped between the previous item of the block and this one; `own`: this
    /// line, if it looks stamped (index into [`Chunk::prefixes`]).
    Stampless {
        before: Option<u32>,
        own: Option<u32>,
    },
}

pub(crate) struct ChunkHit {
    /// Line number within the block, from 1.
    line: u64,
    /// Index into [`Chunk::ips`].
    ip: u32,
    /// Index into [`Chunk::users`], or [`NO_USER`].
    user: u32,
    attempts: u32,
    service: &'static str,
    kind: HitKind,
    when: When,
}

pub(crate) enum Item {
    Hit(ChunkHit),
    /// A line for the rules with state, from rule `first` on (the rules before it returned
    /// `None`). `text`: its range in [`Chunk::text`].
    Deferred {
        line: u64,
        text: (usize, usize),
        first: usize,
        before: Option<u32>,
    },
}

/// What matching one block found, in line order.
#[derive(Default)]
pub(crate) struct Chunk {
    pub lines: u64,
    pub bytes: u64,
    items: Vec<Item>,
    ips: Vec<IpAddr>,
    users: Vec<Box<str>>,
    prefixes: Vec<Prefix>,
    /// Deferred lines, one after the other.
    text: String,
    /// The last line that looks stamped after the last item.
    tail: Option<u32>,
}

/// A line as the rules see it: cut to `max` bytes, then one trailing CR removed (the newline
/// is not part of `raw`). The same as `input::for_each_line` gives.
fn line_view(raw: &[u8], max: usize) -> &[u8] {
    let v = &raw[..raw.len().min(max)];
    match v.last() {
        Some(b'\r') => &v[..v.len() - 1],
        _ => v,
    }
}

fn lossy(b: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}

/// The stamp prefix of a line (its view, raw bytes), if it looks stamped.
fn stamp_prefix(view: &[u8]) -> Option<Prefix> {
    match view.first() {
        Some(c) if c.is_ascii_digit() || c.is_ascii_uppercase() || *c == b'@' => {}
        _ => return None,
    }
    // Lossy conversion never moves a byte to an earlier place, so the first STAMP_PREFIX
    // bytes of the converted line come from its first STAMP_PREFIX + 16 bytes.
    let head = lossy(&view[..view.len().min(STAMP_PREFIX + 16)]);
    let b = head.as_bytes();
    if !looks_stamped(b) {
        return None;
    }
    let n = b.len().min(STAMP_PREFIX);
    let mut p = Prefix {
        bytes: [0; STAMP_PREFIX],
        len: n as u8,
    };
    p.bytes[..n].copy_from_slice(&b[..n]);
    Some(p)
}

/// Matches blocks of lines with its own copy of the rules (only the rules without state run
/// here).
pub(crate) struct Matcher {
    rules: RuleSet,
    ctx: ParseCtx,
    max_line_bytes: usize,
    // foldhash: randomly seeded per process like std's SipHash, and faster on these keys (one
    // lookup of each per hit).
    ip_ids: foldhash::HashMap<IpAddr, u32>,
    user_ids: foldhash::HashMap<Box<str>, u32>,
}

impl Matcher {
    pub fn new(rules: RuleSet, ctx: ParseCtx, max_line_bytes: usize) -> Self {
        Matcher {
            rules,
            ctx,
            max_line_bytes: max_line_bytes.max(1),
            ip_ids: foldhash::HashMap::default(),
            user_ids: foldhash::HashMap::default(),
        }
    }

    /// The last line in `region[from..to]` that looks stamped (`from` and `to` are line
    /// starts, or `to` the end of the region).
    fn latest_stamp(&self, region: &[u8], from: usize, to: usize, out: &mut Chunk) -> Option<u32> {
        let mut end = to;
        while end > from {
            let content_end = if region[end - 1] == b'\n' {
                end - 1
            } else {
                end
            };
            let start =
                memchr::memrchr(b'\n', &region[from..content_end]).map_or(from, |i| from + i + 1);
            if let Some(p) =
                stamp_prefix(line_view(&region[start..content_end], self.max_line_bytes))
            {
                out.prefixes.push(p);
                return Some(out.prefixes.len() as u32 - 1);
            }
            end = start;
        }
        None
    }

    fn push_hit(&mut self, out: &mut Chunk, hit: Hit, line: u64, when: When) {
        let next = out.ips.len() as u32;
        let ip = *self.ip_ids.entry(hit.ip).or_insert_with(|| {
            out.ips.push(hit.ip);
            next
        });
        let user = match hit.user {
            None => NO_USER,
            Some(u) => match self.user_ids.get(u.as_str()) {
                Some(&i) => i,
                None => {
                    let i = out.users.len() as u32;
                    let u = u.into_boxed_str();
                    out.users.push(u.clone());
                    self.user_ids.insert(u, i);
                    i
                }
            },
        };
        out.items.push(Item::Hit(ChunkHit {
            line,
            ip,
            user,
            attempts: hit.attempts,
            service: hit.service,
            kind: hit.kind,
            when,
        }));
    }

    /// Match `region`, whole lines (the last may lack its newline).
    pub fn run(&mut self, region: &[u8]) -> Chunk {
        let mut out = Chunk {
            bytes: region.len() as u64,
            ..Chunk::default()
        };
        self.ip_ids.clear();
        self.user_ids.clear();
        let len = region.len();
        let mut pos = 0; // start of the first line not looked at yet
        let mut lines = 0u64; // newlines in region[..counted]
        let mut counted = 0;
        let mut seen_from = 0; // lines from here on may hold the stamp of a stampless hit
        while pos < len {
            let (start, end) = match self.rules.prefilter() {
                Some(pf) => match pf.find(&region[pos..]) {
                    None => break,
                    Some(m) => {
                        let at = pos + m.start();
                        let start =
                            memchr::memrchr(b'\n', &region[pos..at]).map_or(pos, |i| pos + i + 1);
                        let end = memchr::memchr(b'\n', &region[at..]).map_or(len, |i| at + i);
                        (start, end)
                    }
                },
                None => (
                    pos,
                    memchr::memchr(b'\n', &region[pos..]).map_or(len, |i| pos + i),
                ),
            };
            pos = end + 1;
            let view = line_view(&region[start..end], self.max_line_bytes);
            let text = lossy(view);
            let mut outcome = None;
            for i in 0..self.rules.len() {
                if self.rules.is_stateless(i) {
                    if let Some(hit) = self.rules.parse_with(i, &text, &self.ctx) {
                        outcome = Some(Ok(hit));
                        break;
                    }
                } else if self.rules.may_match(i, text.as_bytes()) {
                    outcome = Some(Err(i));
                    break;
                }
            }
            let Some(outcome) = outcome else { continue };
            lines += memchr::memchr_iter(b'\n', &region[counted..start]).count() as u64;
            counted = start;
            let no = lines + 1;
            match outcome {
                Ok(hit) => {
                    let when = match hit.time {
                        Some(t) => When::At(t),
                        None => {
                            let before = self.latest_stamp(region, seen_from, start, &mut out);
                            let own = stamp_prefix(text.as_bytes()).map(|p| {
                                out.prefixes.push(p);
                                out.prefixes.len() as u32 - 1
                            });
                            When::Stampless { before, own }
                        }
                    };
                    self.push_hit(&mut out, hit, no, when);
                }
                Err(first) => {
                    let before = self.latest_stamp(region, seen_from, start, &mut out);
                    let from = out.text.len();
                    out.text.push_str(&text);
                    out.items.push(Item::Deferred {
                        line: no,
                        text: (from, out.text.len()),
                        first,
                        before,
                    });
                }
            }
            seen_from = pos.min(len);
        }
        lines += memchr::memchr_iter(b'\n', &region[counted..]).count() as u64;
        if region.last().is_some_and(|&c| c != b'\n') {
            lines += 1;
        }
        out.lines = lines;
        out.tail = self.latest_stamp(region, seen_from, len, &mut out);
        out
    }
}

/// Puts blocks, in order, into the aggregate: the sequential half of a scan.
pub(crate) struct Merger<'a> {
    pub agg: &'a mut Aggregate,
    /// The rule set that sees deferred lines (its rules with state carry over blocks).
    pub rules: &'a mut RuleSet,
    pub ctx: &'a ParseCtx,
    pub file: u32,
    pub stamps: StampTracker,
    /// Lines of the blocks merged so far, and those that matched.
    pub lines: u64,
    pub matched: u64,
    ip_slots: Vec<Slot>,
    user_slots: Vec<Slot>,
}

impl<'a> Merger<'a> {
    pub fn new(
        agg: &'a mut Aggregate,
        rules: &'a mut RuleSet,
        ctx: &'a ParseCtx,
        file: u32,
    ) -> Self {
        Merger {
            agg,
            rules,
            ctx,
            file,
            stamps: StampTracker::new(),
            lines: 0,
            matched: 0,
            ip_slots: Vec::new(),
            user_slots: Vec::new(),
        }
    }

    pub fn merge(&mut self, chunk: &Chunk) {
        self.ip_slots.clear();
        self.ip_slots.resize(chunk.ips.len(), None);
        self.user_slots.clear();
        self.user_slots.resize(chunk.users.len(), None);
        let see = |stamps: &mut StampTracker, p: Option<u32>| {
            if let Some(p) = p {
                stamps.see(chunk.prefixes[p as usize].as_bytes());
            }
        };
        for item in &chunk.items {
            match item {
                Item::Hit(h) => {
                    let time = match h.when {
                        When::At(t) => {
                            self.stamps.stamped(t);
                            Some(t)
                        }
                        When::Stampless { before, own } => {
                            see(&mut self.stamps, before);
                            let t = self.stamps.previous(self.ctx);
                            see(&mut self.stamps, own);
                            t
                        }
                    };
                    self.matched += 1;
                    let obs = Observed {
                        ip: chunk.ips[h.ip as usize],
                        service: h.service,
                        attempts: h.attempts,
                        kind: h.kind,
                        time,
                        file: self.file,
                        line: self.lines + h.line,
                    };
                    let user = (h.user != NO_USER).then(|| {
                        (
                            &*chunk.users[h.user as usize],
                            &mut self.user_slots[h.user as usize],
                        )
                    });
                    self.agg
                        .observe_keyed(&obs, &mut self.ip_slots[h.ip as usize], user);
                }
                Item::Deferred {
                    line,
                    text,
                    first,
                    before,
                } => {
                    see(&mut self.stamps, *before);
                    let text = &chunk.text[text.0..text.1];
                    match self.rules.parse_from(*first, text, self.ctx) {
                        Some(hit) => {
                            self.matched += 1;
                            let time = match hit.time {
                                Some(t) => {
                                    self.stamps.stamped(t);
                                    Some(t)
                                }
                                None => {
                                    let t = self.stamps.previous(self.ctx);
                                    self.stamps.see(text.as_bytes());
                                    t
                                }
                            };
                            self.agg.observe(&hit, time, self.file, self.lines + line);
                        }
                        None => self.stamps.see(text.as_bytes()),
                    }
                }
            }
        }
        see(&mut self.stamps, chunk.tail);
        self.lines += chunk.lines;
    }
}

fn read_full_at(file: &File, buf: &mut [u8], mut offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset) {
            Ok(0) => break,
            Ok(n) => {
                done += n;
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Blocks of a file of `len` bytes for `workers` threads: about eight per worker, so that the
/// last blocks, when one thread may be idle, are short, within bounds that keep per-block
/// costs small and memory low.
pub(crate) fn block_size(len: u64, workers: usize) -> u64 {
    (len / (workers.max(1) as u64 * 8)).clamp(MIN_FILE_BLOCK, MAX_FILE_BLOCK)
}

/// Read the lines that start in `[start, end)` of `file` (of `len` bytes) into `buf`; returns
/// their range in `buf`. On a read error, the whole lines read before it are returned with it.
fn read_block(
    file: &File,
    start: u64,
    end: u64,
    len: u64,
    max_line_bytes: usize,
    buf: &mut Vec<u8>,
) -> (std::ops::Range<usize>, Option<io::Error>) {
    let from = start.saturating_sub(1);
    let want = (end - from) as usize;
    // No clear(): blocks are mostly of one size, so the buffer is zeroed once, not per block.
    buf.resize(want, 0);
    let (got, mut error) = match read_full_at(file, buf, from) {
        Ok(n) => (n, None),
        Err(e) => (0, Some(e)),
    };
    buf.truncate(got);
    // The first line that starts at or after `start`.
    let first = if start == 0 {
        0
    } else {
        match memchr::memchr(b'\n', buf) {
            Some(i) => i + 1,
            None => return (0..0, error),
        }
    };
    if error.is_some() {
        let last = memchr::memrchr(b'\n', &buf[first..]).map_or(first, |i| first + i + 1);
        return (first..last, error);
    }
    if got < want {
        // The file became shorter: what there is ends the input.
        return (first..got, None);
    }
    // Finish the last line: up to its newline, the end of the file, or as far as is kept.
    if buf.last() != Some(&b'\n') {
        let mut pos = end;
        let stop = end.saturating_add(max_line_bytes as u64 + 1).min(len);
        while pos < stop {
            let n = EXTEND_STEP.min((stop - pos) as usize);
            let old = buf.len();
            buf.resize(old + n, 0);
            match read_full_at(file, &mut buf[old..], pos) {
                Ok(k) => {
                    buf.truncate(old + k);
                    if let Some(i) = memchr::memchr(b'\n', &buf[old..]) {
                        buf.truncate(old + i + 1);
                        break;
                    }
                    if k < n {
                        break;
                    }
                    pos += n as u64;
                }
                Err(e) => {
                    buf.truncate(old);
                    error = Some(e);
                    // Only whole lines before the error.
                    let last =
                        memchr::memrchr(b'\n', &buf[first..]).map_or(first, |i| first + i + 1);
                    return (first..last, error);
                }
            }
        }
    }
    (first..buf.len(), None)
}

/// Match the regular file `file` (of `len` bytes) on up to `workers` threads, merging blocks in
/// order with `merge`. A read error stops the scan after the lines before it.
/// `block`: the size of the blocks (see [`block_size`]).
pub(crate) fn scan_file(
    file: &File,
    len: u64,
    workers: usize,
    block: u64,
    max_line_bytes: usize,
    new_matcher: &(dyn Fn() -> Matcher + Sync),
    merge: &mut dyn FnMut(&Chunk),
) -> io::Result<()> {
    let block = block.max(1);
    let blocks = len.div_ceil(block) as usize;
    let workers = workers.clamp(1, blocks.max(1));
    let range = |k: usize| (k as u64 * block, ((k as u64 + 1) * block).min(len));
    if workers == 1 {
        let mut m = new_matcher();
        let mut buf = Vec::new();
        for k in 0..blocks {
            let (s, e) = range(k);
            let (r, err) = read_block(file, s, e, len, max_line_bytes, &mut buf);
            merge(&m.run(&buf[r]));
            if let Some(e) = err {
                return Err(e);
            }
        }
        return Ok(());
    }

    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    // Blocks merged so far: workers wait rather than run too far ahead.
    let merged = (Mutex::new(0usize), Condvar::new());
    let ahead = workers * AHEAD_PER_WORKER;
    let (tx, rx) = mpsc::channel::<(usize, Chunk, Option<io::Error>)>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, stop, merged) = (&next, &stop, &merged);
            scope.spawn(move || {
                let mut m = new_matcher();
                let mut buf = Vec::new();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= blocks {
                        break;
                    }
                    {
                        let mut done = merged.0.lock().unwrap_or_else(|e| e.into_inner());
                        while k >= *done + ahead && !stop.load(Ordering::Relaxed) {
                            done = merged.1.wait(done).unwrap_or_else(|e| e.into_inner());
                        }
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (s, e) = range(k);
                    let (r, err) = read_block(file, s, e, len, max_line_bytes, &mut buf);
                    let chunk = m.run(&buf[r]);
                    if tx.send((k, chunk, err)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut pending: HashMap<usize, (Chunk, Option<io::Error>)> = HashMap::new();
        let mut want = 0;
        let mut result = Ok(());
        let finish = |result| {
            stop.store(true, Ordering::Relaxed);
            let _g = merged.0.lock();
            merged.1.notify_all();
            result
        };
        for (k, chunk, err) in rx.iter() {
            pending.insert(k, (chunk, err));
            while let Some((chunk, err)) = pending.remove(&want) {
                merge(&chunk);
                want += 1;
                {
                    let mut done = merged.0.lock().unwrap_or_else(|e| e.into_inner());
                    *done = want;
                }
                merged.1.notify_all();
                if let Some(e) = err {
                    result = Err(e);
                    break;
                }
            }
            if result.is_err() {
                break;
            }
        }
        finish(result)
    })
}

/// Match a stream block by block on this thread, merging each with `merge`. A read error stops
/// the scan after the whole lines before it.
pub(crate) fn scan_stream(
    reader: &mut dyn Read,
    matcher: &mut Matcher,
    merge: &mut dyn FnMut(&Chunk),
) -> io::Result<()> {
    let max = matcher.max_line_bytes;
    let mut buf: Vec<u8> = Vec::with_capacity(STREAM_BLOCK);
    // Inside a line longer than `max` whose kept part is done: drop up to its newline.
    let mut skipping = false;
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity().max(STREAM_BLOCK));
        }
        let old = buf.len();
        let room = buf.capacity() - old;
        buf.resize(old + room, 0);
        let n = match reader.read(&mut buf[old..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                buf.truncate(old);
                continue;
            }
            Err(e) => {
                buf.truncate(old);
                if let Some(i) = memchr::memrchr(b'\n', &buf) {
                    merge(&matcher.run(&buf[..=i]));
                }
                return Err(e);
            }
        };
        buf.truncate(old + n);
        if n == 0 {
            if !buf.is_empty() {
                merge(&matcher.run(&buf));
            }
            return Ok(());
        }
        if skipping {
            match memchr::memchr(b'\n', &buf) {
                Some(i) => {
                    buf.drain(..=i);
                    skipping = false;
                }
                None => {
                    buf.clear();
                    continue;
                }
            }
        }
        match memchr::memrchr(b'\n', &buf) {
            Some(i) => {
                merge(&matcher.run(&buf[..=i]));
                buf.drain(..=i);
            }
            None if buf.len() > max => {
                // One line longer than is kept: match its kept part, skip the rest.
                merge(&matcher.run(&buf));
                buf.clear();
                skipping = true;
            }
            None => {}
        }
        // Keep reads large: if the partial line left fills much of the buffer, grow it.
        if buf.capacity() - buf.len() < STREAM_BLOCK / 2 {
            buf.reserve(STREAM_BLOCK);
        }
    }
}

#[cfg(test)]
#[path = "chunk_tests.rs"]
mod tests;
