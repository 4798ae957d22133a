//! The `paywatch` command line: `serve`, `migrate`, and the helpers operators
//! and scripts reach for (`invoice create`, `pay`, `watch`).

use anyhow::Context;
use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::App;
use crate::address::CashAddr;
use crate::config::{Config, DatabaseConfig};
use crate::database;
use crate::ids::{InvoiceId, TokenId, Txid};
use crate::invoice::{self, NewInvoice};

/// Pushes payments committed to PostgreSQL to browsers over read-only WebSockets.
#[derive(Debug, Parser)]
#[command(name = "paywatch", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service.
    Serve(Box<Config>),
    /// Apply the migrations in migrations/ to the database.
    Migrate(DatabaseConfig),
    /// Manage invoices.
    Invoice {
        /// What to do with invoices.
        #[command(subcommand)]
        command: InvoiceCommand,
    },
    /// Insert a payment row over SQL (demos and tests); prints its id.
    Pay(PayArgs),
    /// Print a room's frames, one JSON document per line.
    Watch(WatchArgs),
}

/// Invoice subcommands.
#[derive(Debug, Subcommand)]
pub enum InvoiceCommand {
    /// Create an invoice; prints its id.
    Create {
        /// Amount to ask for, in satoshis.
        #[arg(long)]
        amount: i64,
        /// Merchant's memo.
        #[arg(long, default_value = "")]
        memo: String,
        /// Seconds until the invoice expires.
        #[arg(long, default_value_t = crate::api::DEFAULT_EXPIRES_IN_S)]
        expires_in: i64,
        /// CashAddr the invoice is to be paid to (shown as a QR code on its page).
        #[arg(long)]
        address: Option<CashAddr>,
        /// Database settings.
        #[command(flatten)]
        database: DatabaseConfig,
    },
}

/// Arguments of `paywatch pay`.
#[derive(Debug, clap::Args)]
pub struct PayArgs {
    /// Invoice paid (32 hex digits or hyphenated UUID).
    #[arg(long, required_unless_present = "address")]
    invoice: Option<InvoiceId>,
    /// Receiving CashAddr.
    #[arg(long)]
    address: Option<CashAddr>,
    /// CashToken category (needs --address).
    #[arg(long, requires = "address")]
    token_id: Option<TokenId>,
    /// Amount paid, in satoshis.
    #[arg(long)]
    amount: i64,
    /// Transaction id; random if omitted.
    #[arg(long)]
    txid: Option<Txid>,
    /// Payer's memo.
    #[arg(long, default_value = "")]
    memo: String,
    /// Database settings.
    #[command(flatten)]
    database: DatabaseConfig,
}

/// Arguments of `paywatch watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Invoice to watch.
    #[arg(required_unless_present = "address", conflicts_with = "address")]
    invoice: Option<InvoiceId>,
    /// Watch an address room instead.
    #[arg(long)]
    address: Option<CashAddr>,
    /// With --address: only this token's payments.
    #[arg(long, requires = "address")]
    token_id: Option<TokenId>,
    /// Base URL of the paywatch server.
    #[arg(long, env = "PAYWATCH_URL", default_value = "ws://127.0.0.1:8080")]
    url: url::Url,
    /// Subscribe through the JSON-RPC endpoint (/ws/rpc) instead of the room
    /// endpoint; the output is the same.
    #[arg(long)]
    rpc: bool,
    /// Print each frame as one JSON document per line, for scripts.
    #[arg(long)]
    json: bool,
    /// Resume after this cursor (a frame's `cursor`) instead of starting
    /// from a snapshot.
    #[arg(long, conflicts_with = "rpc")]
    after: Option<String>,
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(config) => serve(*config).await,
        Command::Migrate(database) => {
            let pool = pool(&database).await?;
            database::migrate(&pool).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Invoice {
            command:
                InvoiceCommand::Create {
                    amount,
                    memo,
                    expires_in,
                    address,
                    database,
                },
        } => {
            anyhow::ensure!(amount > 0, "--amount must be positive");
            let pool = pool(&database).await?;
            let created = invoice::create(
                &pool,
                &NewInvoice {
                    amount_sats: amount,
                    memo,
                    expires_in_s: expires_in,
                    address,
                },
            )
            .await?;
            println!("{}", created.id);
            Ok(())
        }
        Command::Pay(args) => pay(args).await,
        Command::Watch(args) => watch(args).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = App::build(config).await?;
    app.run_until_stopped(shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

/// A pool for a one-off command; in zero-config mode the database is created
/// and migrated first, so `paywatch pay` works on a fresh machine.
async fn pool(config: &DatabaseConfig) -> anyhow::Result<sqlx::PgPool> {
    let located = database::locate(config).await?;
    let pool = database::connect(&located.options, 2).await?;
    if located.zero_config {
        database::migrate(&pool).await?;
    }
    Ok(pool)
}

async fn pay(args: PayArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.amount > 0, "--amount must be positive");
    let pool = pool(&args.database).await?;
    let txid = args.txid.unwrap_or_else(Txid::random);
    let id: i64 = sqlx::query_scalar(
        "insert into payments (invoice_id, address, token_id, txid, amount_sats, memo) \
         values ($1, $2, $3, $4, $5, $6) returning id",
    )
    .bind(args.invoice.map(|id| id.as_uuid()))
    .bind(args.address.as_ref().map(CashAddr::as_str))
    .bind(args.token_id.as_ref().map(TokenId::as_str))
    .bind(txid.as_str())
    .bind(args.amount)
    .bind(&args.memo)
    .fetch_one(&pool)
    .await
    .context("inserting the payment")?;
    println!("{id}");
    Ok(())
}

/// The path of a room's WebSocket endpoint.
pub fn room_path(
    invoice: Option<InvoiceId>,
    address: Option<&CashAddr>,
    token: Option<&TokenId>,
) -> Option<String> {
    match (invoice, address, token) {
        (Some(id), None, None) => Some(format!("/ws/jpp/invoice/{}/", id.as_uuid().simple())),
        (None, Some(address), None) => Some(format!("/ws/watch/address/{address}/")),
        (None, Some(address), Some(token)) => {
            Some(format!("/ws/watch/address/{address}/{}/", token.as_str()))
        }
        _ => None,
    }
}

async fn watch(args: WatchArgs) -> anyhow::Result<()> {
    let path = room_path(args.invoice, args.address.as_ref(), args.token_id.as_ref())
        .context("give an invoice id, or --address [--token-id]")?;
    let mut url = args.url.join(if args.rpc { "/ws/rpc" } else { &path })?;
    if let Some(after) = &args.after {
        url.query_pairs_mut().append_pair("after", after);
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .with_context(|| format!("connecting to {url}"))?;
    if args.rpc {
        let request = match (args.invoice, &args.address, &args.token_id) {
            (Some(id), _, _) => {
                serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "invoice.subscribe", "params": {"id": id}})
            }
            (None, Some(address), token) => {
                serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "address.subscribe", "params": {"address": address, "token_id": token}})
            }
            (None, None, _) => anyhow::bail!("give an invoice id, or --address [--token-id]"),
        };
        socket
            .send(Message::Text(request.to_string().into()))
            .await?;
    }
    while let Some(message) = socket.next().await {
        match message? {
            Message::Text(text) => {
                let frame: serde_json::Value = serde_json::from_str(&text)?;
                let event = if args.rpc {
                    if let Some(error) = frame.get("error") {
                        anyhow::bail!("subscribe failed: {}", error["message"]);
                    }
                    match frame.pointer("/params/event") {
                        Some(event) => event.clone(),
                        // The subscribe response itself.
                        None => continue,
                    }
                } else {
                    frame
                };
                if args.json {
                    println!("{event}");
                } else {
                    println!("{}", describe(&event));
                }
            }
            Message::Close(frame) => {
                if let Some(frame) = frame {
                    eprintln!("closed by server: {} {}", frame.code, frame.reason);
                }
                break;
            }
            _ => {}
        }
    }
    Ok(())
}

/// One line for a person. Text from the database is printed escaped, so a
/// memo cannot send control sequences to the terminal.
fn describe(frame: &serde_json::Value) -> String {
    let text = |value: &serde_json::Value| value.as_str().unwrap_or("").escape_debug().to_string();
    let invoice = |invoice: &serde_json::Value| {
        format!(
            "invoice {} {} {}/{} sats",
            text(&invoice["id"]),
            text(&invoice["status"]),
            invoice["paid_sats"],
            invoice["amount_sats"]
        )
    };
    match frame["type"].as_str() {
        Some("snapshot") => {
            let payments = frame["payments"].as_array().map_or(0, Vec::len);
            match frame.get("invoice") {
                Some(found) => format!("snapshot  {}, {payments} payments", invoice(found)),
                None => format!(
                    "snapshot  {}, {payments} recent payments",
                    text(&frame["address"])
                ),
            }
        }
        Some("payment_received") => {
            let mut line = format!(
                "payment   #{} {} sats txid {}",
                frame["event_id"],
                frame["amount_sats"],
                text(&frame["txid"])
            );
            if frame["memo"].as_str().is_some_and(|m| !m.is_empty()) {
                line.push_str(&format!(" memo \"{}\"", text(&frame["memo"])));
            }
            if frame["invoice"].is_object() {
                line.push_str(&format!("  {}", invoice(&frame["invoice"])));
            }
            line
        }
        _ => frame.to_string(),
    }
}
