//! `fleetlake token`: create, list and revoke API tokens directly on the
//! store (no server needed, so the first admin token can be made before
//! authentication is on; a running server sees changes within seconds).

use clap::{Args, Subcommand};
use fleetlake_server::auth::{Scope, TokenStore};

use crate::config::StoreArgs;

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    store: StoreArgs,

    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print its secret (shown only this once).
    Create {
        /// A name for people: who or what uses the token.
        #[arg(long)]
        name: String,
        /// `read`, `write`, `rules` or `admin`, with `:<database>` or `:*`
        /// (default `*`); repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<Scope>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id.
    Revoke { id: String },
}

pub async fn run(args: TokenArgs) -> anyhow::Result<()> {
    let url = args.store.object_store_url();
    let store = fleetlake_storage::store::open(&url)?;
    let tokens = TokenStore::new(store);
    match args.command {
        TokenCommand::Create { name, scopes } => {
            let (record, secret) = tokens.create(&name, scopes).await?;
            eprintln!(
                "created token {} ({}) with scopes {}; its secret is shown only now:",
                record.name,
                record.id,
                scopes_text(&record.scopes)
            );
            println!("{secret}");
        }
        TokenCommand::List => {
            for t in tokens.list().await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    t.id,
                    t.name,
                    scopes_text(&t.scopes),
                    t.created
                );
            }
        }
        TokenCommand::Revoke { id } => {
            if !tokens.revoke(&id).await? {
                anyhow::bail!("no token with id {id:?}");
            }
            eprintln!("revoked {id}");
        }
    }
    Ok(())
}

fn scopes_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
