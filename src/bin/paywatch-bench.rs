//! `paywatch-bench`: drives a running paywatch and its database, and
//! measures what a merchant's screen would see.
//!
//! It opens WebSocket clients over invoice and address rooms, inserts
//! payments from several writer connections (a few of them committing out of
//! id order), and records for every delivered frame the delay from the
//! writer's COMMIT returning to the client receiving it, plus frames
//! expected and received, duplicates and cross-room leaks. It reads
//! paywatch's RSS and CPU time from /proc, and measures in the same run the
//! INSERT rate PostgreSQL itself allows with and without a NOTIFY trigger,
//! so every figure can be read as a ratio to that ceiling.
//!
//! It runs on one thread so that it does not take the server's CPU.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use cashaddr::CashEnc;
use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use paywatch::address::CashAddr;
use paywatch::cli::room_path;
use paywatch::ids::InvoiceId;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// 1,100 clients (200 invoice rooms × 5, 20 address rooms × 5) at 1,500 payments/s.
    Steady,
    /// Payments as fast as the writers can commit, to the steady rooms.
    Burst,
    /// One room with 5,000 clients, a payment every 200 ms.
    FanOut,
    /// 10,000 idle connections: memory per connection.
    IdleConns,
    /// 10,000 clients connecting at once, each getting its snapshot.
    ReconnectStorm,
    /// A few seconds with small numbers, for CI.
    Smoke,
}

/// Load generator and latency meter for a running paywatch.
#[derive(Debug, Parser)]
#[command(name = "paywatch-bench")]
struct Args {
    /// What to run.
    #[arg(long, value_enum, default_value = "smoke")]
    scenario: Scenario,
    /// The paywatch server.
    #[arg(long, env = "PAYWATCH_URL", default_value = "ws://127.0.0.1:8080")]
    url: url::Url,
    /// The database paywatch serves (writers insert here; the role must be
    /// able to create a table for the ceiling measurement).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// paywatch's process id, for RSS and CPU time (default: the process
    /// named `paywatch` with the lowest pid).
    #[arg(long)]
    pid: Option<u32>,
    /// Override the scenario's client count.
    #[arg(long)]
    clients: Option<usize>,
    /// Override the scenario's room count (invoice rooms; address rooms are a tenth).
    #[arg(long)]
    rooms: Option<usize>,
    /// Override the scenario's payments per second (0: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// Override the scenario's measured duration in seconds.
    #[arg(long)]
    seconds: Option<f64>,
    /// Override the scenario's warm-up: seconds of the same load before
    /// measuring. Warm-up payments are checked for loss, duplicates and
    /// leaks, but leave latency, rates and CPU time out.
    #[arg(long)]
    warmup: Option<f64>,
    /// Writer connections.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Seconds to wait once every client is connected before sampling the
    /// server's memory again (default: 15 for idle-conns, else 0), so that
    /// what the connecting burst freed can be returned by the allocator.
    #[arg(long)]
    settle: Option<f64>,
    /// Skip the PostgreSQL ceiling measurement.
    #[arg(long)]
    no_ceiling: bool,
    /// Seconds each ceiling measurement runs.
    #[arg(long, default_value_t = 5.0)]
    ceiling_seconds: f64,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

struct Plan {
    invoice_rooms: usize,
    address_rooms: usize,
    clients_per_room: usize,
    rate: f64,
    seconds: f64,
    warmup: f64,
}

impl Plan {
    fn of(args: &Args) -> Plan {
        let mut plan = match args.scenario {
            Scenario::Steady => Plan {
                invoice_rooms: 200,
                address_rooms: 20,
                clients_per_room: 5,
                rate: 1500.0,
                seconds: 20.0,
                warmup: 5.0,
            },
            Scenario::Burst => Plan {
                invoice_rooms: 200,
                address_rooms: 20,
                clients_per_room: 5,
                rate: 0.0,
                seconds: 10.0,
                warmup: 2.0,
            },
            Scenario::FanOut => Plan {
                invoice_rooms: 1,
                address_rooms: 0,
                clients_per_room: 5000,
                rate: 5.0,
                seconds: 20.0,
                warmup: 2.0,
            },
            // The same clients; the storm connects them all at once.
            Scenario::IdleConns | Scenario::ReconnectStorm => Plan {
                invoice_rooms: 100,
                address_rooms: 0,
                clients_per_room: 100,
                rate: 0.0,
                seconds: 0.0,
                warmup: 0.0,
            },
            Scenario::Smoke => Plan {
                invoice_rooms: 4,
                address_rooms: 2,
                clients_per_room: 3,
                rate: 50.0,
                seconds: 2.0,
                warmup: 0.5,
            },
        };
        if let Some(rooms) = args.rooms {
            plan.invoice_rooms = rooms;
            plan.address_rooms = rooms / 10;
        }
        if let Some(clients) = args.clients {
            plan.clients_per_room = clients.div_ceil(plan.room_count().max(1));
        }
        if let Some(rate) = args.rate {
            plan.rate = rate;
        }
        if let Some(seconds) = args.seconds {
            plan.seconds = seconds;
        }
        if let Some(warmup) = args.warmup {
            plan.warmup = warmup;
        }
        plan
    }

    fn room_count(&self) -> usize {
        self.invoice_rooms + self.address_rooms
    }
}

/// A room the bench created: where to connect, and how to pay into it.
#[derive(Clone)]
enum Room {
    Invoice(Uuid),
    Address(CashAddr),
}

impl Room {
    fn path(&self) -> String {
        let path = match self {
            Room::Invoice(id) => room_path(Some(InvoiceId::from(*id)), None, None),
            Room::Address(address) => room_path(None, Some(address), None),
        };
        path.expect("one invoice, or one address without a token, names a room")
    }
}

#[derive(Deserialize)]
struct Frame {
    r#type: String,
    #[serde(default)]
    event_id: i64,
}

/// What one client saw.
struct Seen {
    room: usize,
    frames: Vec<(i64, Instant)>,
    connected_in: Duration,
}

/// Committed payments: id to (room, when COMMIT returned).
type Ledger = Arc<Mutex<HashMap<i64, (usize, Instant)>>>;

#[derive(Clone, Copy, Default)]
struct ProcSample {
    rss_kb: u64,
    cpu_ticks: u64,
}

fn find_pid() -> Option<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid: &u32| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "paywatch")
        })
        .collect();
    pids.sort_unstable();
    pids.first().copied()
}

fn sample(pid: Option<u32>) -> Option<ProcSample> {
    let pid = pid?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ProcSample {
        rss_kb,
        cpu_ticks: utime + stime,
    })
}

/// Ticks per second of /proc CPU times (USER_HZ), 100 on Linux.
const TICKS_PER_S: f64 = 100.0;

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

async fn create_rooms(pool: &PgPool, plan: &Plan) -> anyhow::Result<Vec<Room>> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "insert into invoices (amount_sats, memo) select 100000000, 'bench' from generate_series(1, $1) returning id",
    )
    .bind(plan.invoice_rooms as i64)
    .fetch_all(pool)
    .await?;
    let mut rooms: Vec<Room> = ids.into_iter().map(Room::Invoice).collect();
    let salt: [u8; 8] = rand::random();
    for n in 0..plan.address_rooms {
        let mut hash = [0u8; 20];
        hash[..8].copy_from_slice(&salt);
        hash[8..16].copy_from_slice(&(n as u64).to_be_bytes());
        let address = hash.encode_p2pkh("bitcoincash").context("address")?;
        rooms.push(Room::Address(CashAddr::parse(&address)?));
    }
    Ok(rooms)
}

/// Opens every client, at most `parallel` handshakes at a time; returns once
/// each has its snapshot, and the time that took.
async fn connect_all(
    base: &url::Url,
    rooms: &[Room],
    per_room: usize,
    stop: &CancellationToken,
    parallel: usize,
) -> anyhow::Result<(Vec<tokio::task::JoinHandle<anyhow::Result<Seen>>>, Duration)> {
    let started = Instant::now();
    let ready = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut handles = Vec::new();
    for (index, room) in rooms.iter().enumerate() {
        for _ in 0..per_room {
            let url = base.join(&room.path())?.to_string();
            let (stop, ready, gate) = (stop.clone(), ready.clone(), gate.clone());
            handles.push(tokio::spawn(async move {
                let permit = gate.acquire_owned().await?;
                client(url, index, stop, ready, permit).await
            }));
        }
    }
    let total = handles.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while ready.load(Ordering::Relaxed) < total {
        anyhow::ensure!(
            Instant::now() < deadline,
            "clients did not all connect within 120 s"
        );
        anyhow::ensure!(
            !handles.iter().any(|h| h.is_finished()),
            "a client ended while connecting"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok((handles, started.elapsed()))
}

/// Client protocol settings. The library's default 128 KiB read buffer is
/// zero-filled up to its capacity before every read; at one frame per read
/// that memset alone cost the load generator about as much CPU per frame as
/// the server spends, and showed up as latency.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(8 * 1024)
}

/// One client: connects, waits for its snapshot, then records every
/// `payment_received` frame until `stop`.
async fn client(
    url: String,
    room: usize,
    stop: CancellationToken,
    ready: Arc<AtomicU64>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> anyhow::Result<Seen> {
    let started = Instant::now();
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(url.as_str(), Some(client_config()), true)
            .await
            .with_context(|| format!("connecting to {url}"))?;
    // The snapshot is the first frame.
    let first = socket
        .next()
        .await
        .context("closed before the snapshot")??;
    let connected_in = started.elapsed();
    anyhow::ensure!(
        matches!(first, Message::Text(_)),
        "first frame is not the snapshot"
    );
    drop(permit);
    ready.fetch_add(1, Ordering::Relaxed);
    let mut frames = Vec::new();
    loop {
        let message = tokio::select! {
            _ = stop.cancelled() => break,
            message = socket.next() => message,
        };
        let Some(message) = message else { break };
        if let Message::Text(text) = message? {
            let received = Instant::now();
            if let Some(id) = payment_event_id(&text)? {
                frames.push((id, received));
            }
        }
    }
    Ok(Seen {
        room,
        frames,
        connected_in,
    })
}

/// The `event_id` of a `payment_received` frame, `None` for other frames.
/// paywatch writes `type` and `event_id` first, so that layout is read
/// without a JSON parse (the load generator's time per frame is part of
/// every latency it reports); any other layout falls back to a parse.
fn payment_event_id(text: &str) -> anyhow::Result<Option<i64>> {
    const PREFIX: &str = r#"{"type":"payment_received","event_id":"#;
    if let Some(rest) = text.strip_prefix(PREFIX) {
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        return Ok(Some(rest[..end].parse().context("event_id")?));
    }
    let frame: Frame = serde_json::from_str(text)?;
    Ok((frame.r#type == "payment_received").then_some(frame.event_id))
}

/// One writer: inserts at `rate` per second (0: as fast as it can) until
/// `until`; one payment in fifty is committed late, after a pause, so commits
/// leave id order. `phase` (0 to 1) offsets its schedule by that fraction
/// of its interval, so paced writers take turns instead of committing
/// together.
async fn writer(
    pool: PgPool,
    rooms: Arc<Vec<Room>>,
    (rate, phase): (f64, f64),
    until: Instant,
    ledger: Ledger,
    seed: u64,
) -> anyhow::Result<u64> {
    let mut n: u64 = 0;
    let started = Instant::now();
    while Instant::now() < until {
        if rate > 0.0 {
            let due = started + Duration::from_secs_f64((n as f64 + phase) / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let index = ((seed.wrapping_mul(6364136223846793005).wrapping_add(n)) % rooms.len() as u64)
            as usize;
        let (invoice, address) = match &rooms[index] {
            Room::Invoice(id) => (Some(*id), None),
            Room::Address(address) => (None, Some(address.as_str().to_owned())),
        };
        let txid = Uuid::new_v4().simple().to_string().repeat(2);
        let insert = sqlx::query_scalar(
            "insert into payments (invoice_id, address, txid, amount_sats) values ($1, $2, $3, 1) returning id",
        )
        .bind(invoice)
        .bind(address)
        .bind(&txid);
        // Single-statement commits, like the ceiling's writers, except the
        // late ones, which need a transaction to hold open.
        let id: i64 = if n % 50 == 49 {
            let mut tx = pool.begin().await?;
            let id = insert.fetch_one(&mut *tx).await?;
            tokio::time::sleep(Duration::from_millis(3)).await;
            tx.commit().await?;
            id
        } else {
            insert.fetch_one(&pool).await?
        };
        ledger.lock().await.insert(id, (index, Instant::now()));
        n += 1;
    }
    Ok(n)
}

/// INSERT commits per second that `writers` connections reach on a scratch
/// table shaped like payments, with or without a NOTIFY trigger on a
/// channel nobody listens to.
async fn ceiling(
    pool: &PgPool,
    writers: usize,
    seconds: f64,
    with_trigger: bool,
) -> anyhow::Result<f64> {
    let table = format!("paywatch_bench_ceiling_{}", Uuid::new_v4().simple());
    sqlx::query(&format!(
        "create table {table} (like payments including all)"
    ))
    .execute(pool)
    .await?;
    if with_trigger {
        sqlx::query(&format!(
            "create trigger bench_notify after insert on {table} for each row execute function paywatch_bench_notify()"
        ))
        .execute(pool)
        .await?;
    }
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (pool, table) = (pool.clone(), table.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                sqlx::query(&format!(
                    "insert into {table} (address, txid, amount_sats) values ('bitcoincash:qr6m7j9njldwwzlg9v7v53unlr4jkmx6eylep8ekg2', md5(random()::text) || md5(random()::text), 1)"
                ))
                .execute(&pool)
                .await?;
                n += 1;
            }
            anyhow::Ok(n)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    sqlx::query(&format!("drop table {table}"))
        .execute(pool)
        .await?;
    Ok(total as f64 / seconds)
}

async fn ceilings(pool: &PgPool, writers: usize, seconds: f64) -> anyhow::Result<(f64, f64)> {
    sqlx::query(
        "create or replace function paywatch_bench_notify() returns trigger language plpgsql as $$ \
         begin perform pg_notify('paywatch_bench_ceiling', new.id::text); return null; end $$",
    )
    .execute(pool)
    .await?;
    let with = ceiling(pool, writers, seconds, true).await?;
    let without = ceiling(pool, writers, seconds, false).await?;
    sqlx::query("drop function paywatch_bench_notify()")
        .execute(pool)
        .await?;
    Ok((with, without))
}

/// Bytes per frame in the socket floor, about a fan-out payment frame.
const FLOOR_FRAME_BYTES: usize = 600;

/// The socket floor: what the kernel and this load generator allow for a
/// fan-out, with no WebSocket, JSON or database. One plain thread writes a
/// frame to each of `clients` loopback TCP sockets in turn, `rate` times a
/// second for `seconds`; this tool's runtime reads them exactly as its
/// WebSocket clients do.
async fn socket_floor(clients: usize, rate: f64, seconds: f64) -> anyhow::Result<Floor> {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let frames = ((rate * seconds).ceil() as u64).max(1);
    let writer = std::thread::spawn(move || -> std::io::Result<(Vec<Instant>, u64)> {
        let mut sockets = Vec::with_capacity(clients);
        for _ in 0..clients {
            let (socket, _) = listener.accept()?;
            socket.set_nodelay(true)?;
            sockets.push(socket);
        }
        let mut frame = vec![b' '; FLOOR_FRAME_BYTES];
        let mut sent = Vec::new();
        let cpu_before = thread_cpu_ticks();
        let started = Instant::now();
        for k in 0..frames {
            let due = started + Duration::from_secs_f64((k + 1) as f64 / rate);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            frame[..8].copy_from_slice(&k.to_le_bytes());
            sent.push(Instant::now());
            for socket in &mut sockets {
                socket.write_all(&frame)?;
            }
        }
        Ok((sent, thread_cpu_ticks().saturating_sub(cpu_before)))
    });
    let mut readers = Vec::with_capacity(clients);
    for _ in 0..clients {
        let stream = tokio::net::TcpStream::connect(address).await?;
        readers.push(tokio::spawn(floor_reader(stream, frames)));
    }
    let mut received = Vec::new();
    for reader in readers {
        received.extend(reader.await??);
    }
    let (sent, cpu_ticks) = writer
        .join()
        .map_err(|_| anyhow::anyhow!("socket floor writer panicked"))??;
    let mut delays: Vec<u64> = received
        .into_iter()
        .map(|(k, at)| at.saturating_duration_since(sent[k as usize]).as_micros() as u64)
        .collect();
    delays.sort_unstable();
    let cpu_us_per_frame = cpu_ticks as f64 / TICKS_PER_S * 1e6 / delays.len().max(1) as f64;
    Ok(Floor {
        delays,
        cpu_us_per_frame,
    })
}

/// What the socket floor measured.
struct Floor {
    /// Every (client, frame) delay in µs, sorted.
    delays: Vec<u64>,
    /// The writing thread's CPU time per frame sent.
    cpu_us_per_frame: f64,
}

/// This thread's CPU time (utime + stime) in ticks.
fn thread_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let field = |n: usize| {
        fields
            .get(n)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Reads `frames` frames of [`FLOOR_FRAME_BYTES`]; each frame's first eight
/// bytes are its number.
async fn floor_reader(
    stream: tokio::net::TcpStream,
    frames: u64,
) -> std::io::Result<Vec<(u64, Instant)>> {
    let mut frame = [0u8; FLOOR_FRAME_BYTES];
    let mut filled = 0;
    let mut got = Vec::with_capacity(frames as usize);
    while (got.len() as u64) < frames {
        stream.readable().await?;
        match stream.try_read(&mut frame[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                if filled == FLOOR_FRAME_BYTES {
                    let mut number = [0u8; 8];
                    number.copy_from_slice(&frame[..8]);
                    got.push((u64::from_le_bytes(number), Instant::now()));
                    filled = 0;
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
    Ok(got)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let plan = Plan::of(&args);
    let clients = plan.room_count() * plan.clients_per_room;
    if let Err(error) = rlimit::increase_nofile_limit(clients as u64 * 2 + 1024) {
        eprintln!("could not raise the open-files limit: {error}");
    }
    let pid = args.pid.or_else(find_pid);
    let pool = PgPoolOptions::new()
        .max_connections(args.writers as u32 + 2)
        .connect(&args.database_url)
        .await
        .context("connecting to DATABASE_URL")?;

    let (ceiling_notify, ceiling_plain) = if args.no_ceiling {
        (None, None)
    } else {
        let (with, without) = ceilings(&pool, args.writers, args.ceiling_seconds).await?;
        (Some(with), Some(without))
    };

    // The fan-out's counterpart of the ceiling: the same clients and rate
    // over plain sockets, at most 10 s of it (for one room: every frame of
    // the floor goes to every client).
    // It holds both ends of every socket, so it needs twice the clients'
    // file descriptors; it is skipped (and says so) where the limit is lower.
    let floor_fits = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .is_ok_and(|(soft, _)| soft >= clients as u64 * 2 + 256);
    let floor = if args.scenario == Scenario::FanOut && plan.room_count() == 1 && !args.no_ceiling {
        if floor_fits {
            Some(socket_floor(clients, plan.rate, plan.seconds.min(10.0)).await?)
        } else {
            eprintln!(
                "socket floor skipped: it needs {} open files",
                clients * 2 + 256
            );
            None
        }
    } else {
        None
    };

    let rooms = Arc::new(create_rooms(&pool, &plan).await?);
    let idle = sample(pid);
    let stop = CancellationToken::new();
    // A reconnect storm opens every connection at once; otherwise at most
    // 512 handshakes are in flight.
    let parallel = if args.scenario == Scenario::ReconnectStorm {
        clients
    } else {
        512
    };
    let (handles, connect_time) =
        connect_all(&args.url, &rooms, plan.clients_per_room, &stop, parallel).await?;
    let connected = sample(pid);
    let settle = args.settle.unwrap_or(match args.scenario {
        Scenario::IdleConns => 15.0,
        _ => 0.0,
    });
    let settled = if settle > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(settle)).await;
        sample(pid)
    } else {
        None
    };

    let ledger: Ledger = Arc::new(Mutex::new(HashMap::new()));
    let write_started = Instant::now();
    let measure_start = write_started + Duration::from_secs_f64(plan.warmup);
    let warmed = tokio::spawn(async move {
        tokio::time::sleep_until(measure_start.into()).await;
        sample(pid)
    });
    if plan.seconds > 0.0 {
        let until = measure_start + Duration::from_secs_f64(plan.seconds);
        let mut writers = Vec::new();
        for w in 0..args.writers {
            writers.push(tokio::spawn(writer(
                pool.clone(),
                rooms.clone(),
                (
                    plan.rate / args.writers as f64,
                    w as f64 / args.writers as f64,
                ),
                until,
                ledger.clone(),
                w as u64 + 1,
            )));
        }
        for w in writers {
            w.await??;
        }
    }
    let write_seconds = measure_start.elapsed().as_secs_f64();
    let warmed = warmed.await?;
    // Let the last frames arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = sample(pid);
    stop.cancel();

    let ledger = ledger.lock().await;
    let per_room: HashMap<usize, HashSet<i64>> =
        ledger
            .iter()
            .fold(HashMap::new(), |mut map, (id, (room, _))| {
                map.entry(*room).or_default().insert(*id);
                map
            });
    let inserted = ledger
        .values()
        .filter(|(_, committed)| *committed >= measure_start)
        .count() as u64;
    let warmup_payments = ledger.len() as u64 - inserted;
    let (mut expected, mut received, mut duplicates, mut leaks, mut missing) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut measured_frames = 0u64;
    let mut delays_us: Vec<u64> = Vec::new();
    let mut storm_us: Vec<u64> = Vec::new();
    for handle in handles {
        let seen = handle.await??;
        storm_us.push(seen.connected_in.as_micros() as u64);
        let wanted = per_room.get(&seen.room).cloned().unwrap_or_default();
        expected += wanted.len() as u64;
        let mut got = HashSet::new();
        for (id, at) in &seen.frames {
            received += 1;
            if !got.insert(*id) {
                duplicates += 1;
            }
            match ledger.get(id) {
                Some((room, committed)) if *room == seen.room => {
                    if *committed >= measure_start {
                        measured_frames += 1;
                        delays_us.push(at.saturating_duration_since(*committed).as_micros() as u64);
                    }
                }
                _ => leaks += 1,
            }
        }
        missing += wanted.difference(&got).count() as u64;
    }
    delays_us.sort_unstable();
    storm_us.sort_unstable();

    let cpu_s = match (warmed.or(connected), loaded) {
        (Some(a), Some(b)) => Some((b.cpu_ticks - a.cpu_ticks) as f64 / TICKS_PER_S),
        _ => None,
    };
    let rss_per_conn_kb = match (idle, connected) {
        (Some(a), Some(b)) if clients > 0 => {
            Some((b.rss_kb as f64 - a.rss_kb as f64) / clients as f64)
        }
        _ => None,
    };
    let insert_rate = if write_seconds > 0.0 {
        inserted as f64 / write_seconds
    } else {
        0.0
    };
    let delivered_rate = if write_seconds > 0.0 {
        measured_frames as f64 / write_seconds
    } else {
        0.0
    };
    let result = json!({
        "scenario": format!("{:?}", args.scenario),
        "clients": clients,
        "rooms": plan.room_count(),
        "writers": args.writers,
        "target_rate": plan.rate,
        "warmup_seconds": plan.warmup,
        "seconds": write_seconds,
        "warmup_payments": warmup_payments,
        "payments_inserted": inserted,
        "frames_measured": measured_frames,
        "insert_rate": insert_rate,
        "frames_expected": expected,
        "frames_received": received,
        "frames_missing": missing,
        "duplicates": duplicates,
        "cross_room_leaks": leaks,
        "delivered_frames_per_s": delivered_rate,
        "latency_ms": {
            "p50": percentile(&delays_us, 50.0),
            "p90": percentile(&delays_us, 90.0),
            "p99": percentile(&delays_us, 99.0),
            "p99_9": percentile(&delays_us, 99.9),
            "max": delays_us.last().map_or(0.0, |v| *v as f64 / 1000.0),
        },
        "connect": {
            "all_connected_s": connect_time.as_secs_f64(),
            "snapshot_p50_ms": percentile(&storm_us, 50.0),
            "snapshot_p99_ms": percentile(&storm_us, 99.0),
        },
        "server": {
            "pid": pid,
            "rss_idle_kb": idle.map(|s| s.rss_kb),
            "rss_connected_kb": connected.map(|s| s.rss_kb),
            "rss_loaded_kb": loaded.map(|s| s.rss_kb),
            "rss_per_connection_kb": rss_per_conn_kb,
            "settle_s": settle,
            "rss_settled_kb": settled.map(|s| s.rss_kb),
            "rss_per_connection_settled_kb": match (idle, settled) {
                (Some(a), Some(b)) if clients > 0 => Some((b.rss_kb as f64 - a.rss_kb as f64) / clients as f64),
                _ => None,
            },
            "cpu_s_under_load": cpu_s,
            "cpu_us_per_frame": cpu_s.filter(|_| measured_frames > 0).map(|s| s * 1e6 / measured_frames as f64),
        },
        "ceiling": {
            "inserts_per_s_with_notify_trigger": ceiling_notify,
            "inserts_per_s_without_trigger": ceiling_plain,
            "insert_rate_ratio_to_notify_ceiling": ceiling_notify.map(|c| insert_rate / c),
        },
        "socket_floor_latency_ms": floor.as_ref().map(|floor| json!({
            "frame_bytes": FLOOR_FRAME_BYTES,
            "p50": percentile(&floor.delays, 50.0),
            "p90": percentile(&floor.delays, 90.0),
            "p99": percentile(&floor.delays, 99.0),
            "p99_9": percentile(&floor.delays, 99.9),
            "max": floor.delays.last().map_or(0.0, |v| *v as f64 / 1000.0),
            "writer_cpu_us_per_frame": floor.cpu_us_per_frame,
        })),
    });
    println!("{}", summary(&result));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)?;
    }
    anyhow::ensure!(
        missing == 0 && duplicates == 0 && leaks == 0,
        "frames lost, duplicated or leaked: {missing} missing, {duplicates} duplicates, {leaks} leaks"
    );
    Ok(())
}

fn summary(result: &serde_json::Value) -> String {
    let mut lines = Vec::new();
    let mut row = |name: &str, value: &serde_json::Value| {
        if !value.is_null() {
            lines.push(format!("{name:<40} {value}"));
        }
    };
    for (name, pointer) in [
        ("scenario", "/scenario"),
        ("clients", "/clients"),
        ("rooms", "/rooms"),
        ("warm-up payments", "/warmup_payments"),
        ("payments inserted (measured)", "/payments_inserted"),
        ("insert rate /s", "/insert_rate"),
        ("frames expected", "/frames_expected"),
        ("frames received", "/frames_received"),
        ("missing / duplicates / leaks", "/frames_missing"),
        ("latency p50 ms", "/latency_ms/p50"),
        ("latency p90 ms", "/latency_ms/p90"),
        ("latency p99 ms", "/latency_ms/p99"),
        ("latency p99.9 ms", "/latency_ms/p99_9"),
        ("latency max ms", "/latency_ms/max"),
        ("all connected in s", "/connect/all_connected_s"),
        ("snapshot p99 ms", "/connect/snapshot_p99_ms"),
        (
            "server RSS per connection KB",
            "/server/rss_per_connection_kb",
        ),
        (
            "server RSS per connection, settled KB",
            "/server/rss_per_connection_settled_kb",
        ),
        ("server CPU µs per frame", "/server/cpu_us_per_frame"),
        (
            "ceiling with NOTIFY trigger /s",
            "/ceiling/inserts_per_s_with_notify_trigger",
        ),
        (
            "ceiling without trigger /s",
            "/ceiling/inserts_per_s_without_trigger",
        ),
        (
            "insert rate / NOTIFY ceiling",
            "/ceiling/insert_rate_ratio_to_notify_ceiling",
        ),
        ("socket floor p50 ms", "/socket_floor_latency_ms/p50"),
        ("socket floor p99 ms", "/socket_floor_latency_ms/p99"),
        (
            "socket floor writer CPU µs per frame",
            "/socket_floor_latency_ms/writer_cpu_us_per_frame",
        ),
    ] {
        let value = if name.starts_with("missing") {
            json!(format!(
                "{} / {} / {}",
                result["frames_missing"], result["duplicates"], result["cross_room_leaks"]
            ))
        } else {
            result.pointer(pointer).cloned().unwrap_or_default()
        };
        row(name, &value);
    }
    lines.join("\n")
}
