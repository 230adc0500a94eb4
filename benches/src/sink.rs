//! An HTTP server on loopback that reads every request body to the end and
//! drops it (answering 204, as a write API does): what the loader reaches
//! when the server costs nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;

/// A running discard server; it stops when the runtime that spawned it does,
/// or on [`Sink::stop`].
pub struct Sink {
    /// `http://127.0.0.1:<port>/write`
    pub url: String,
    received: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    /// Binds a free loopback port and serves on the current runtime.
    ///
    /// # Errors
    ///
    /// When the port cannot be bound.
    pub async fn start() -> Result<Sink> {
        let received = Arc::new(AtomicU64::new(0));
        let app = axum::Router::new()
            .fallback(discard)
            .layer(DefaultBodyLimit::disable())
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the discard sink")?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Sink {
            url: format!("http://{addr}/write"),
            received,
            task,
        })
    }

    /// Body bytes read so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

async fn discard(State(received): State<Arc<AtomicU64>>, body: axum::body::Bytes) -> StatusCode {
    received.fetch_add(body.len() as u64, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_and_drops() {
        let sink = Sink::start().await.unwrap();
        let client = reqwest::Client::new();
        let resp = client
            .post(format!("{}?db=x", sink.url))
            .body(vec![b'a'; 100_000])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
        assert_eq!(sink.received(), 100_000);
        sink.stop();
    }
}
