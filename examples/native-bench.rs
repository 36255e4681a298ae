//! Measures the native adapter and prints one JSON object.
//!
//! ```text
//! cargo run --release --example native-bench -- latency --count 500
//! cargo run --release --example native-bench -- idle --seconds 10
//! ```
//!
//! - `latency`: a second process commits one event at a time to a SQLite store (or the
//!   PostgreSQL database `--store postgres://…` names), each from idle; this process
//!   subscribes and reports how long each took from just before `commit` in the writer to
//!   arriving here (median, p99).
//! - `follower` (started by the bench's B24, many at once): follows a notebook, says `ready`
//!   once it has seen the first event, then prints the latency of each of `--count` timed
//!   events as one JSON line and waits for its stdin to close.
//! - `idle`: starts an echo-agent, lets it settle, then reports the CPU it used and its
//!   resident memory while idle (Linux: read from /proc).
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use futures::StreamExt;
use runtime_core::{CellDeleted, Event, Store};
use runtime_native::{PostgresStore, SqliteStore};
use serde_json::json;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Cross-process commit-to-subscriber latency on one SQLite file, or a PostgreSQL database
    Latency {
        /// A PostgreSQL database (postgres://…) instead of a new SQLite file
        #[arg(long)]
        store: Option<String>,
        /// Events to time
        #[arg(long, default_value_t = 500)]
        count: usize,
        /// Pause between commits, so each one wakes an idle subscriber
        #[arg(long, default_value_t = 2)]
        interval_ms: u64,
    },
    /// An idle echo-agent's CPU use and resident memory
    Idle {
        /// How long to watch it idle
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// One subscriber of many on one notebook (started by the bench)
    #[command(hide = true)]
    Follower {
        #[arg(long)]
        store: String,
        #[arg(long)]
        notebook: String,
        #[arg(long)]
        count: usize,
    },
    /// The writer side of `latency` (started by it)
    #[command(hide = true)]
    Writer {
        #[arg(long)]
        store: String,
        #[arg(long)]
        notebook: String,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        interval_ms: u64,
    },
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "native-bench-{}-{}",
        std::process::id(),
        now_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    match Cli::parse().command {
        Bench::Latency {
            store,
            count,
            interval_ms,
        } => latency(store, count, interval_ms).await,
        Bench::Idle { seconds } => idle(seconds).await,
        Bench::Follower {
            store,
            notebook,
            count,
        } => follower(&store, &notebook, count).await,
        Bench::Writer {
            store,
            notebook,
            count,
            interval_ms,
        } => writer(&store, &notebook, count, interval_ms).await,
    }
}

/// The store at `location`: a PostgreSQL database or a SQLite file.
async fn open(location: &str, notebook: &str) -> Arc<dyn Store> {
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        Arc::new(PostgresStore::connect(location, notebook).await.unwrap())
    } else {
        Arc::new(SqliteStore::open(location, notebook).unwrap())
    }
}

async fn latency(store: Option<String>, count: usize, interval_ms: u64) {
    let dir = scratch_dir();
    let location = store.unwrap_or_else(|| dir.join("latency.db").display().to_string());
    let notebook = format!("bench-{}", now_nanos());
    let store = open(&location, &notebook).await;
    let mut log = store.subscribe(1);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "writer",
            "--count",
            &count.to_string(),
            "--interval-ms",
            &interval_ms.to_string(),
            "--notebook",
            &notebook,
            "--store",
            &location,
        ])
        .spawn()
        .unwrap();
    let mut micros = Vec::with_capacity(count);
    while micros.len() < count {
        let entry = log.next().await.unwrap().unwrap();
        micros.extend(latency_of(&entry.event, now_nanos()));
    }
    assert!(child.wait().unwrap().success());
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize];
    let scenario = if location.starts_with("postgres") {
        "postgres_cross_process_commit_to_subscriber"
    } else {
        "sqlite_cross_process_commit_to_subscriber"
    };
    println!(
        "{}",
        json!({"scenario": scenario, "n": count,
               "median_us": at(0.5), "p99_us": at(0.99), "min_us": micros[0]})
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The latency of one timed event: its cell id is `t:<nanoseconds when committed>`.
fn latency_of(event: &Event, arrived: u128) -> Option<f64> {
    let Event::CellDeleted(deleted) = event else {
        return None;
    };
    let sent: u128 = deleted.cell_id.as_str().strip_prefix("t:")?.parse().ok()?;
    Some(arrived.saturating_sub(sent) as f64 / 1_000.0)
}

async fn follower(location: &str, notebook: &str, count: usize) {
    use std::io::{Read, Write};
    let store = open(location, notebook).await;
    let mut log = store.subscribe(1);
    let mut micros = Vec::with_capacity(count);
    let mut ready = false;
    while micros.len() < count {
        let entry = log.next().await.unwrap().unwrap();
        let arrived = now_nanos();
        match latency_of(&entry.event, arrived) {
            Some(latency) => micros.push(latency),
            None if !ready => {
                ready = true;
                println!("ready");
                std::io::stdout().flush().unwrap();
            }
            None => {}
        }
    }
    println!("{}", json!({ "micros": micros }));
    std::io::stdout().flush().unwrap();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

async fn writer(location: &str, notebook: &str, count: usize, interval_ms: u64) {
    let store = open(location, notebook).await;
    // Let the reader subscribe and go idle first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..count {
        tokio::time::sleep(Duration::from_millis(interval_ms)).await;
        let event = CellDeleted {
            cell_id: format!("t:{}", now_nanos()).into(),
        };
        store.commit(vec![event.into()]).await.unwrap();
    }
}

async fn idle(seconds: u64) {
    let dir = scratch_dir();
    let path = dir.join("idle.db");
    let agent_binary = std::env::current_exe()
        .unwrap()
        .with_file_name("echo-agent");
    let mut agent = Command::new(agent_binary)
        .args(["--client-id", "bench", "--store"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = agent.id();
    // Wait until it serves the notebook, then let it settle.
    let store = SqliteStore::open(&path, "default").unwrap();
    let mut log = store.subscribe(1);
    while !matches!(
        &*log.next().await.unwrap().unwrap().event,
        Event::RuntimeSessionStarted(_)
    ) {}
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ticks_before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let ticks = cpu_ticks(pid) - ticks_before;
    let rss_kib = rss_kib(pid);
    let hz = clock_ticks_per_second();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = agent.wait();
    println!(
        "{}",
        json!({"scenario": "echo_agent_idle", "seconds": seconds,
               "cpu_percent": ticks as f64 / hz / seconds as f64 * 100.0,
               "cpu_ms": ticks as f64 / hz * 1000.0, "rss_kib": rss_kib})
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// User plus system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at state, field 3.
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn clock_ticks_per_second() -> f64 {
    let output = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(100.0)
}
