//! A DataFusion memory pool that also takes its bytes from the server's
//! [`MemoryBudget`]: a query keeps its own limit (the inner pool) and all
//! queries, flushes and compactions together stay within the budget.

use std::sync::Arc;

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use fleetlake_storage::memory_budget::{Consumer, MemoryBudget};

/// `inner` (a query's own limit and spilling policy) in front of the
/// shared budget. A refusal by the budget is a `ResourcesExhausted` whose
/// message starts with [`fleetlake_storage::memory_budget::EXHAUSTED`]:
/// spilling operators spill, the others fail the query with it.
#[derive(Debug)]
pub struct BudgetPool<P> {
    inner: P,
    budget: Arc<MemoryBudget>,
    consumer: Consumer,
}

impl<P: MemoryPool> BudgetPool<P> {
    pub fn new(inner: P, budget: Arc<MemoryBudget>, consumer: Consumer) -> Self {
        Self {
            inner,
            budget,
            consumer,
        }
    }
}

impl<P: MemoryPool> std::fmt::Display for BudgetPool<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} within a memory budget of {} bytes ({} held)",
            self.inner,
            self.budget.limit(),
            self.budget.used()
        )
    }
}

impl<P: MemoryPool> MemoryPool for BudgetPool<P> {
    fn name(&self) -> &str {
        "budget"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional);
        self.budget.grow(self.consumer, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink);
        self.budget.shrink(self.consumer, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        // The query's own limit first: past it the query is too big, which
        // is its author's to fix; past the budget the server is busy.
        self.inner.try_grow(reservation, additional)?;
        if let Err(e) = self.budget.try_grow(self.consumer, additional) {
            self.inner.shrink(reservation, additional);
            return Err(DataFusionError::ResourcesExhausted(e.to_string()));
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::GreedyMemoryPool;
    use fleetlake_storage::memory_budget::EXHAUSTED;

    fn pool(limit: usize, budget: &Arc<MemoryBudget>) -> Arc<dyn MemoryPool> {
        Arc::new(BudgetPool::new(
            GreedyMemoryPool::new(limit),
            Arc::clone(budget),
            Consumer::Query,
        ))
    }

    #[test]
    fn two_queries_share_the_budget_and_keep_their_own_limits() {
        let budget = MemoryBudget::new(1000);
        let (a, b) = (pool(800, &budget), pool(800, &budget));
        let ra = MemoryConsumer::new("a").register(&a);
        let rb = MemoryConsumer::new("b").register(&b);
        ra.try_grow(700).unwrap();
        assert_eq!(budget.used(), 700);
        // Within b's own limit, past the budget: the budget's refusal.
        let e = rb.try_grow(400).unwrap_err().to_string();
        assert!(e.contains(EXHAUSTED), "{e}");
        assert_eq!(
            (b.reserved(), budget.used()),
            (0, 700),
            "a refusal takes nothing"
        );
        // Past a's own limit: the inner pool's refusal, not the budget's.
        let e = ra.try_grow(200).unwrap_err().to_string();
        assert!(!e.contains(EXHAUSTED), "{e}");
        rb.try_grow(300).unwrap();
        drop(ra);
        assert_eq!(budget.used(), 300);
        rb.free();
        assert_eq!(budget.used(), 0);
    }
}
