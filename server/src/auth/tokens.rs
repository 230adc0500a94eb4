//! API tokens: created once and shown once, stored as SHA-256 hashes in
//! `_auth/tokens.json` on the object store, so that every node reading the
//! store knows them and a leaked store does not leak a usable token.
//!
//! # Invariants
//! - The secret of a token never reaches the store or a log; only its hash.
//! - A token created or revoked elsewhere (`fleetlake token create` on the
//!   same store, another node) is seen within [`REFRESH`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::scope::Scope;

const TOKENS_PATH: &str = "_auth/tokens.json";
/// How stale the in-memory copy of the token list may get.
pub const REFRESH: Duration = Duration::from_secs(2);
/// Every secret starts so (and secret scanners can find a leaked one).
const PREFIX: &str = "flk_";
const MAX_NAME_LEN: usize = 128;

/// One token as stored and as listed: everything but the secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    /// Hex SHA-256 of the secret.
    pub hash: String,
    #[serde(with = "scopes_text")]
    pub scopes: Vec<Scope>,
    pub created: String,
}

mod scopes_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Scope;

    pub fn serialize<S: Serializer>(v: &[Scope], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(ToString::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Scope>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| s.parse().map_err(serde::de::Error::custom))
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(String),
    #[error("token store {TOKENS_PATH}: {0}")]
    Store(#[from] object_store::Error),
    #[error("token store {TOKENS_PATH} is not valid JSON: {0}")]
    Corrupt(#[from] serde_json::Error),
}

#[derive(Debug)]
struct Cached {
    by_hash: HashMap<String, Arc<TokenRecord>>,
    loaded: Option<Instant>,
}

/// The tokens of one store.
#[derive(Debug)]
pub struct TokenStore {
    store: Arc<dyn ObjectStore>,
    cache: tokio::sync::Mutex<Cached>,
}

fn hash(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl TokenStore {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            cache: tokio::sync::Mutex::new(Cached {
                by_hash: HashMap::new(),
                loaded: None,
            }),
        }
    }

    async fn read(&self) -> Result<Vec<TokenRecord>, TokenError> {
        match self.store.get(&Path::from(TOKENS_PATH)).await {
            Ok(r) => Ok(serde_json::from_slice(&r.bytes().await?)?),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    async fn write(&self, tokens: &[TokenRecord]) -> Result<(), TokenError> {
        let body = serde_json::to_vec_pretty(tokens)?;
        self.store
            .put(&Path::from(TOKENS_PATH), PutPayload::from(body))
            .await?;
        Ok(())
    }

    fn remember(cache: &mut Cached, tokens: Vec<TokenRecord>) {
        cache.by_hash = tokens
            .into_iter()
            .map(|t| (t.hash.clone(), Arc::new(t)))
            .collect();
        cache.loaded = Some(Instant::now());
    }

    /// Every token, without secrets, oldest first.
    ///
    /// # Errors
    /// The store cannot be read or holds something else than a token list.
    pub async fn list(&self) -> Result<Vec<TokenRecord>, TokenError> {
        let mut tokens = self.read().await?;
        tokens.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
        Ok(tokens)
    }

    /// Creates a token; returns it and its secret, which exists nowhere else.
    ///
    /// # Errors
    /// An empty or long name, no scopes, or a store failure.
    pub async fn create(
        &self,
        name: &str,
        scopes: Vec<Scope>,
    ) -> Result<(TokenRecord, String), TokenError> {
        if name.trim().is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control)
        {
            return Err(TokenError::Invalid(format!(
                "token name must be 1 to {MAX_NAME_LEN} printable characters"
            )));
        }
        if scopes.is_empty() {
            return Err(TokenError::Invalid(
                "a token needs at least one scope (e.g. read:fleet, write:*, admin)".into(),
            ));
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| TokenError::Invalid(format!("no randomness for a token: {e}")))?;
        let secret = format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        let mut id_bytes = [0u8; 8];
        getrandom::fill(&mut id_bytes)
            .map_err(|e| TokenError::Invalid(format!("no randomness for a token id: {e}")))?;
        let record = TokenRecord {
            id: id_bytes.iter().map(|b| format!("{b:02x}")).collect(),
            name: name.to_string(),
            hash: hash(&secret),
            scopes,
            created: fleetlake_time::rfc3339(
                chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
            ),
        };
        let mut cache = self.cache.lock().await;
        let mut tokens = self.read().await?;
        tokens.push(record.clone());
        self.write(&tokens).await?;
        Self::remember(&mut cache, tokens);
        Ok((record, secret))
    }

    /// Revokes the token `id`; false if there is none.
    ///
    /// # Errors
    /// A store failure.
    pub async fn revoke(&self, id: &str) -> Result<bool, TokenError> {
        let mut cache = self.cache.lock().await;
        let mut tokens = self.read().await?;
        let before = tokens.len();
        tokens.retain(|t| t.id != id);
        let found = tokens.len() != before;
        if found {
            self.write(&tokens).await?;
        }
        Self::remember(&mut cache, tokens);
        Ok(found)
    }

    /// The token whose secret this is, if any. Re-reads the store when the
    /// copy in memory is older than [`REFRESH`].
    ///
    /// # Errors
    /// The store cannot be read (callers answer 503: an outage must not
    /// open the doors, nor lock everyone out for good).
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Arc<TokenRecord>>, TokenError> {
        let mut cache = self.cache.lock().await;
        if cache.loaded.is_none_or(|t| t.elapsed() > REFRESH) {
            let tokens = self.read().await?;
            Self::remember(&mut cache, tokens);
        }
        Ok(cache.by_hash.get(&hash(secret)).cloned())
    }

    /// Whether any token exists (start-up says how to create the first).
    ///
    /// # Errors
    /// A store failure.
    pub async fn is_empty(&self) -> Result<bool, TokenError> {
        Ok(self.read().await?.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn secrets_are_shown_once_and_stored_hashed() {
        let store = Arc::new(InMemory::new());
        let tokens = TokenStore::new(store.clone());
        let (rec, secret) = tokens
            .create("grafana", vec!["read:fleet".parse().unwrap()])
            .await
            .unwrap();
        assert!(secret.starts_with(PREFIX) && secret.len() > 40);
        let raw = store.get(&Path::from(TOKENS_PATH)).await.unwrap();
        let text = String::from_utf8(raw.bytes().await.unwrap().to_vec()).unwrap();
        assert!(!text.contains(&secret), "the secret reached the store");
        assert!(text.contains(&rec.hash) && text.contains("read:fleet"));
        let found = tokens.authenticate(&secret).await.unwrap().unwrap();
        assert_eq!(found.id, rec.id);
        assert!(tokens.authenticate("flk_guess").await.unwrap().is_none());

        // Another process on the same store sees it, and a revoke.
        let other = TokenStore::new(store.clone());
        assert!(other.authenticate(&secret).await.unwrap().is_some());
        assert!(tokens.revoke(&rec.id).await.unwrap());
        assert!(!tokens.revoke(&rec.id).await.unwrap());
        assert!(tokens.authenticate(&secret).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn names_and_scopes_are_checked() {
        let tokens = TokenStore::new(Arc::new(InMemory::new()));
        assert!(tokens.create("", vec![]).await.is_err());
        assert!(tokens.create("x", vec![]).await.is_err());
        let long = "n".repeat(MAX_NAME_LEN + 1);
        assert!(
            tokens
                .create(&long, vec!["admin".parse().unwrap()])
                .await
                .is_err()
        );
        assert!(tokens.is_empty().await.unwrap());
    }
}
