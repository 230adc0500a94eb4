//! One memory budget for the whole server, shared by the write buffer,
//! flushes, queries and compaction.
//!
//! Each of them also keeps a limit of its own (the buffer's budget, a
//! query's limit, a merge's limit); this one bounds their sum, so that a
//! burst of queries during a flush and a compaction cannot together take
//! the machine's memory. What asks for more than is left is refused and
//! handles it as it can: a write gets 503 with Retry-After, a query's
//! sort spills or the query gets 503, a merge spills or waits for the next
//! round. A flush is never refused: it is what frees the buffer.
//!
//! Part of the limit can be kept for the write buffer (the server keeps
//! its whole `--memory-budget`): the other consumers share the rest, so
//! a burst of queries never refuses the fleet's writes.
//!
//! The accounting is of what the consumers say they hold (Arrow batches,
//! DataFusion reservations, a merge's estimated readers and writer), not of
//! the allocator; the process's RSS is that plus what nobody accounts for
//! (the series index, caches, the allocator's slack).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Words every refusal's message starts with, so that an error that went
/// through another library's error type (DataFusion's `ResourcesExhausted`)
/// can still be told apart from a consumer's own limit.
pub const EXHAUSTED: &str = "the server's memory budget";

/// Who holds memory of the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    /// Rows buffered (and being written) before a flush.
    WriteBuffer,
    /// A flush's sort order, slices and encoded files.
    Flush,
    /// Queries of users, Grafana and rules.
    Query,
    /// Merges and rollups.
    Compaction,
}

impl Consumer {
    pub const ALL: [Consumer; 4] = [
        Consumer::WriteBuffer,
        Consumer::Flush,
        Consumer::Query,
        Consumer::Compaction,
    ];

    /// The consumer's name in metrics and messages.
    pub fn name(self) -> &'static str {
        match self {
            Consumer::WriteBuffer => "write_buffer",
            Consumer::Flush => "flush",
            Consumer::Query => "query",
            Consumer::Compaction => "compaction",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A refusal: granting `wanted` more bytes to `consumer` would pass the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{EXHAUSTED} of {limit} bytes is in use ({held}; {write_reserve} bytes of it are kept for \
     the write buffer); {} asked for {wanted} more bytes: retry when running queries, flushes or \
     compactions have finished, or raise --memory-limit",
    consumer.name()
)]
pub struct Exhausted {
    pub consumer: Consumer,
    pub wanted: usize,
    pub limit: usize,
    pub write_reserve: usize,
    /// What each consumer held at the refusal, e.g. `query 812 MB, flush 0 B`.
    pub held: String,
}

/// The budget: a limit and what each consumer holds of it.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    /// Kept for the write buffer: the others hold at most `limit - write_reserve`.
    write_reserve: usize,
    /// Held by every consumer.
    used: AtomicUsize,
    /// Held by every consumer but the write buffer.
    others: AtomicUsize,
    by: [AtomicUsize; 4],
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Self::with_write_reserve(limit, 0)
    }

    /// A budget of `limit` bytes of which the consumers other than the
    /// write buffer may hold `limit - write_reserve` (at least 0).
    pub fn with_write_reserve(limit: usize, write_reserve: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            write_reserve: write_reserve.min(limit),
            used: AtomicUsize::new(0),
            others: AtomicUsize::new(0),
            by: Default::default(),
        })
    }

    /// A budget that refuses nothing (tools and tests that do not share one).
    pub fn unlimited() -> Arc<Self> {
        Self::new(usize::MAX)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// What the consumers other than the write buffer may hold together.
    pub fn others_limit(&self) -> usize {
        self.limit - self.write_reserve
    }

    /// Bytes held by every consumer together.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn used_by(&self, consumer: Consumer) -> usize {
        self.by[consumer.index()].load(Ordering::Relaxed)
    }

    /// Takes `bytes` for `consumer` if the total stays within the limit.
    ///
    /// # Errors
    /// [`Exhausted`] when it would not; nothing is taken.
    pub fn try_grow(&self, consumer: Consumer, bytes: usize) -> Result<(), Exhausted> {
        // `Relaxed`: the totals are the only things decided on; no other
        // memory is published through them.
        let take = |total: &AtomicUsize, cap: usize| {
            total
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                    used.checked_add(bytes).filter(|&n| n <= cap)
                })
                .is_ok()
        };
        let granted = if consumer == Consumer::WriteBuffer {
            take(&self.used, self.limit)
        } else {
            let taken = take(&self.others, self.others_limit());
            if taken {
                self.used.fetch_add(bytes, Ordering::Relaxed);
            }
            taken
        };
        if !granted {
            return Err(Exhausted {
                consumer,
                wanted: bytes,
                limit: self.limit,
                write_reserve: self.write_reserve,
                held: self.held(),
            });
        }
        self.by[consumer.index()].fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Takes `bytes` for `consumer` even past the limit: for memory that is
    /// already allocated, or work (a flush) that frees more than it takes.
    pub fn grow(&self, consumer: Consumer, bytes: usize) {
        if consumer != Consumer::WriteBuffer {
            self.others.fetch_add(bytes, Ordering::Relaxed);
        }
        self.used.fetch_add(bytes, Ordering::Relaxed);
        self.by[consumer.index()].fetch_add(bytes, Ordering::Relaxed);
    }

    /// Gives back `bytes` that `consumer` took.
    pub fn shrink(&self, consumer: Consumer, bytes: usize) {
        let by = self.by[consumer.index()].fetch_sub(bytes, Ordering::Relaxed);
        debug_assert!(
            by >= bytes,
            "{} gave back more than it took",
            consumer.name()
        );
        if consumer != Consumer::WriteBuffer {
            self.others.fetch_sub(bytes, Ordering::Relaxed);
        }
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    fn held(&self) -> String {
        Consumer::ALL
            .iter()
            .map(|&c| format!("{} {} B", c.name(), self.used_by(c)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Bytes of a budget held by one consumer until dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    consumer: Consumer,
    bytes: usize,
}

impl Reservation {
    /// Holds nothing yet.
    pub fn new(budget: &Arc<MemoryBudget>, consumer: Consumer) -> Self {
        Self {
            budget: Arc::clone(budget),
            consumer,
            bytes: 0,
        }
    }

    pub fn size(&self) -> usize {
        self.bytes
    }

    /// Holds `bytes` from now on, if growing to it fits in the budget.
    ///
    /// # Errors
    /// [`Exhausted`]; the reservation keeps its size.
    pub fn try_resize(&mut self, bytes: usize) -> Result<(), Exhausted> {
        if bytes > self.bytes {
            self.budget.try_grow(self.consumer, bytes - self.bytes)?;
        } else {
            self.budget.shrink(self.consumer, self.bytes - bytes);
        }
        self.bytes = bytes;
        Ok(())
    }

    /// Holds `bytes` from now on, past the limit if need be (see
    /// [`MemoryBudget::grow`]).
    pub fn resize(&mut self, bytes: usize) {
        if bytes > self.bytes {
            self.budget.grow(self.consumer, bytes - self.bytes);
        } else {
            self.budget.shrink(self.consumer, self.bytes - bytes);
        }
        self.bytes = bytes;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.shrink(self.consumer, self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_limit_and_names_the_holders() {
        let b = MemoryBudget::new(100);
        b.try_grow(Consumer::Query, 60).unwrap();
        b.try_grow(Consumer::Compaction, 40).unwrap();
        let e = b.try_grow(Consumer::Query, 1).unwrap_err();
        assert_eq!(e.wanted, 1);
        let msg = e.to_string();
        assert!(msg.starts_with(EXHAUSTED), "{msg}");
        assert!(
            msg.contains("query 60 B") && msg.contains("compaction 40 B"),
            "{msg}"
        );
        assert_eq!(b.used(), 100, "a refusal takes nothing");
        b.shrink(Consumer::Compaction, 40);
        b.try_grow(Consumer::Query, 40).unwrap();
        assert_eq!((b.used(), b.used_by(Consumer::Query)), (100, 100));
    }

    #[test]
    fn grow_passes_the_limit_and_then_others_are_refused() {
        let b = MemoryBudget::new(100);
        b.grow(Consumer::Flush, 150);
        assert_eq!(b.used(), 150);
        assert!(b.try_grow(Consumer::Query, 1).is_err());
        b.shrink(Consumer::Flush, 150);
        assert!(b.try_grow(Consumer::Query, 100).is_ok());
    }

    #[test]
    fn the_write_reserve_is_the_buffers_alone() {
        let b = MemoryBudget::with_write_reserve(100, 40);
        assert!(b.try_grow(Consumer::Query, 61).is_err());
        b.try_grow(Consumer::Query, 50).unwrap();
        b.try_grow(Consumer::Compaction, 10).unwrap();
        let e = b.try_grow(Consumer::Query, 1).unwrap_err();
        assert!(e.to_string().contains("40 bytes of it are kept"), "{e}");
        // Queries hold all they may; the buffer still fills its share.
        b.try_grow(Consumer::WriteBuffer, 40).unwrap();
        assert!(b.try_grow(Consumer::WriteBuffer, 1).is_err());
        // A flush past the limit leaves the buffer no room.
        b.shrink(Consumer::WriteBuffer, 40);
        b.grow(Consumer::Flush, 90);
        assert!(b.try_grow(Consumer::WriteBuffer, 1).is_err());
        b.shrink(Consumer::Flush, 90);
        b.try_grow(Consumer::WriteBuffer, 40).unwrap();
        assert_eq!(b.used(), 100);
    }

    #[test]
    fn a_huge_request_does_not_overflow() {
        let b = MemoryBudget::new(100);
        b.try_grow(Consumer::Query, 10).unwrap();
        assert!(b.try_grow(Consumer::Query, usize::MAX).is_err());
        assert_eq!(b.used(), 10);
    }

    #[test]
    fn reservations_resize_and_give_back_on_drop() {
        let b = MemoryBudget::new(100);
        let mut r = Reservation::new(&b, Consumer::WriteBuffer);
        r.try_resize(70).unwrap();
        assert!(r.try_resize(101).is_err());
        assert_eq!(r.size(), 70);
        r.try_resize(20).unwrap();
        assert_eq!(b.used_by(Consumer::WriteBuffer), 20);
        r.resize(500);
        assert_eq!(b.used(), 500);
        drop(r);
        assert_eq!(b.used(), 0);
    }
}
