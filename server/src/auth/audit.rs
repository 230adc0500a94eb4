//! The audit trail of admin actions: who deleted data, changed retention,
//! created or revoked a token, approved an action, changed a rule.
//!
//! Each event is one JSON object under `_audit/<day>/` on the object store
//! (object stores have no append; one object per event also survives a
//! crash between two events) and one row of `system.audit`, which holds the
//! newest [`KEEP`] events of this process and those found at start.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use fleetlake_query::system::Columns;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

const ROOT: &str = "_audit";
/// Events kept in memory for `system.audit`.
pub const KEEP: usize = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEvent {
    pub time_ns: i64,
    /// `token <name> (<id>)` or `anonymous`.
    pub principal: String,
    /// e.g. `delete`, `retention`, `token.create`, `rule.put`.
    pub action: String,
    /// What it acted on: a database, a table, a rule, a token id.
    pub target: String,
    /// `ok`, or the error the request got.
    pub outcome: String,
}

#[derive(Debug)]
pub struct AuditLog {
    store: Arc<dyn ObjectStore>,
    recent: Mutex<VecDeque<AuditEvent>>,
}

impl AuditLog {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// Reads the newest [`KEEP`] events of earlier runs.
    ///
    /// # Errors
    /// The store cannot be listed.
    pub async fn load(&self) -> object_store::Result<()> {
        let mut metas: Vec<_> = self
            .store
            .list(Some(&Path::from(ROOT)))
            .try_collect()
            .await?;
        metas.sort_by(|a, b| a.location.cmp(&b.location));
        let start = metas.len().saturating_sub(KEEP);
        let mut events = Vec::new();
        for m in &metas[start..] {
            let bytes = self.store.get(&m.location).await?.bytes().await?;
            match serde_json::from_slice::<AuditEvent>(&bytes) {
                Ok(e) => events.push(e),
                Err(e) => warn!(path = %m.location, error = %e, "unreadable audit event skipped"),
            }
        }
        let mut recent = self.recent.lock();
        recent.extend(events);
        while recent.len() > KEEP {
            recent.pop_front();
        }
        Ok(())
    }

    /// Records an event: logged at once, persisted, listed in `system.audit`.
    /// A store failure is logged, never fails the action it records.
    pub async fn record(&self, principal: &str, action: &str, target: &str, outcome: &str) {
        let time_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let event = AuditEvent {
            time_ns,
            principal: principal.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            outcome: outcome.to_string(),
        };
        info!(principal, action, target, outcome, "audit");
        let day = fleetlake_time::rfc3339(time_ns);
        let mut suffix = [0u8; 4];
        let _ = getrandom::fill(&mut suffix);
        let path = Path::from(format!(
            "{ROOT}/{}/{time_ns:020}-{:08x}.json",
            &day[..10],
            u32::from_le_bytes(suffix)
        ));
        match serde_json::to_vec(&event) {
            Ok(body) => {
                if let Err(e) = self.store.put(&path, PutPayload::from(body)).await {
                    warn!(error = %e, action, "audit event not persisted");
                }
            }
            Err(e) => warn!(error = %e, "audit event not serialized"),
        }
        let mut recent = self.recent.lock();
        recent.push_back(event);
        if recent.len() > KEEP {
            recent.pop_front();
        }
    }

    pub fn events(&self) -> Vec<AuditEvent> {
        self.recent.lock().iter().cloned().collect()
    }
}

impl fleetlake_query::system::SystemTable for AuditLog {
    fn name(&self) -> &str {
        "audit"
    }

    fn batch(&self) -> datafusion::common::Result<RecordBatch> {
        let events = self.events();
        Columns::new(&events)
            .time("time", |e| e.time_ns)
            .str("principal", |e| &e.principal)
            .str("action", |e| &e.action)
            .str("target", |e| &e.target)
            .str("outcome", |e| &e.outcome)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn events_persist_and_come_back() {
        let store = Arc::new(InMemory::new());
        let log = AuditLog::new(store.clone());
        log.record("token ops (1)", "retention", "fleet.cpu", "ok")
            .await;
        log.record("anonymous", "delete", "fleet.cpu", "ok").await;
        let again = AuditLog::new(store);
        again.load().await.unwrap();
        let events = again.events();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].action, "retention");
        assert_eq!(events[1].principal, "anonymous");
        use fleetlake_query::system::SystemTable;
        assert_eq!(again.batch().unwrap().num_rows(), 2);
    }
}
