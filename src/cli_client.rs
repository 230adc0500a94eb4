//! The HTTP side of the client subcommands (`fleetlake sql`, `fleetlake
//! diagnose`): one request with the token, the body back, and a failure
//! worded from the server's `{"error": …}` message.

use anyhow::{Context, bail};

/// Sends `request` (with `token` as a bearer token, if any) and returns the
/// body of a successful answer; else an error `"{what} failed (status):
/// message"`.
pub async fn send(
    request: reqwest::RequestBuilder,
    token: Option<&str>,
    url: &str,
    what: &str,
) -> anyhow::Result<String> {
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response = request
        .send()
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let status = response.status();
    let body = response.text().await.context("reading the response")?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or(body);
        bail!("{what} failed ({status}): {message}");
    }
    Ok(body)
}
