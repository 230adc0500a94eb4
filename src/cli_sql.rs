//! `fleetlake sql`: run a query on a running server and print the result.

use clap::Args;

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The SQL query.
    pub query: String,
    /// Base URL of the server.
    #[arg(long, env = "FLEETLAKE_URL", default_value = "http://127.0.0.1:8086")]
    pub url: String,
    /// Database to query.
    #[arg(long, env = "FLEETLAKE_DB", default_value = "fleet")]
    pub db: String,
    /// Output format: pretty, json, jsonl or csv.
    #[arg(long, default_value = "pretty")]
    pub format: String,
    /// API token, when the server requires one (`fleetlake token create`).
    #[arg(long, env = "FLEETLAKE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

pub async fn run(args: SqlArgs) -> anyhow::Result<()> {
    let url = format!("{}/api/v1/sql", args.url.trim_end_matches('/'));
    let request = reqwest::Client::new()
        .post(&url)
        .json(&serde_json::json!({"sql": args.query, "db": args.db, "format": args.format}));
    let body = crate::cli_client::send(request, args.token.as_deref(), &url, "query").await?;
    print!("{body}");
    Ok(())
}
