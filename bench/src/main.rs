//! Benchmarks side by side with Jupyter's ipykernel, measured in the same run.
//!
//! ```text
//! scripts/bench                  # everything, with the peer; writes bench-results.json and docs/performance.md
//! cargo run --release -p bench -- --quick --no-peer   # a smoke run
//! ```
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    missing_docs,
    unreachable_pub
)]

mod kernels;
mod processes;
mod scenarios;
mod stats;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};
use stats::{Summary, human};

#[derive(Parser)]
struct Cli {
    /// Tiny sample sizes: checks the harness works, measures nothing worth reporting
    #[arg(long)]
    quick: bool,
    /// The Python with ipykernel and jupyter_client, for the peer's side
    #[arg(long)]
    python: Option<PathBuf>,
    /// Skip the peer
    #[arg(long, conflicts_with = "python")]
    no_peer: bool,
    /// The built echo-agent example [default: next to this binary, ../examples/echo-agent]
    #[arg(long)]
    echo_agent: Option<PathBuf>,
    /// The release .wasm of runtime-wasm, for its size
    #[arg(long)]
    wasm: Option<PathBuf>,
    /// Where to write the JSON results
    #[arg(long, default_value = "bench-results.json")]
    out: PathBuf,
    /// Measure the memory of N idle agents in this process, print JSON and exit
    #[arg(long, hide = true)]
    measure_agents: Option<usize>,
    /// Only these scenarios, e.g. `B2,B5` [default: all]
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// A markdown file whose table (between `<!-- bench:begin -->` and `<!-- bench:end -->`)
    /// is replaced with this run's
    #[arg(long)]
    doc: Option<PathBuf>,
}

/// The programs the cross-process scenarios start.
struct Binaries {
    echo_agent: PathBuf,
    native_bench: PathBuf,
    hub: PathBuf,
    /// The notebook CLI (B13's `run-file`).
    notebook: PathBuf,
    /// The Python whose nbclient B13 measures (--python's, else the kernelspec's).
    python: Option<PathBuf>,
}

/// One row of the report.
struct Row {
    id: &'static str,
    scenario: String,
    ours: String,
    peer: String,
    ratio: Option<f64>,
    target: &'static str,
    met: Option<bool>,
    data: Value,
}

fn sizes(quick: bool) -> Sizes {
    if quick {
        Sizes {
            round_trips: 100,
            cross: 20,
            flood: 2_000,
            slow: 500,
            cancels: 20,
            starts: 20,
            process_starts: 2,
            agents: 50,
            append: 5_000,
            fold: 20_000,
            start_runs: 2,
            lengths: &[1_000, 20_000],
            agents_per_file: &[1, 4],
            idle_window: Duration::from_secs(1),
            subscribers: &[1, 3],
            fanout_commits: 20,
            scaling: &[1, 10],
            scaling_samples: 50,
            kernel_samples: 20,
            notebook_runs: 2,
            kernel_cancels: 2,
            pg_notebooks: &[1, 10],
            pg_writers: 10,
            pg_seconds: 1.0,
        }
    } else {
        Sizes {
            round_trips: 2_000,
            cross: 500,
            flood: 100_000,
            slow: 20_000,
            cancels: 500,
            starts: 500,
            process_starts: 20,
            agents: 1_000,
            append: 200_000,
            fold: 1_000_000,
            start_runs: 5,
            lengths: &[1_000, 10_000, 100_000, 1_000_000],
            agents_per_file: &[1, 10, 100],
            idle_window: Duration::from_secs(16),
            subscribers: &[1, 10, 50],
            fanout_commits: 200,
            scaling: &[1, 10, 100],
            scaling_samples: 1_000,
            kernel_samples: 500,
            notebook_runs: 7,
            kernel_cancels: 10,
            pg_notebooks: &[1, 10, 100, 1_000],
            pg_writers: 100,
            pg_seconds: 5.0,
        }
    }
}

struct Sizes {
    round_trips: usize,
    cross: usize,
    flood: usize,
    slow: usize,
    cancels: usize,
    starts: usize,
    process_starts: usize,
    agents: usize,
    append: usize,
    fold: usize,
    /// B17: agent starts of each kind.
    start_runs: usize,
    /// B22: notebook lengths, in events.
    lengths: &'static [usize],
    /// B23: echo-agent processes on one file, and how long they are watched idle.
    agents_per_file: &'static [usize],
    idle_window: Duration,
    /// B24: subscriber processes of one notebook, and the commits they follow.
    subscribers: &'static [usize],
    fanout_commits: usize,
    scaling: &'static [usize],
    scaling_samples: usize,
    /// B12 and B14: executions and cancels on a kernel.
    kernel_samples: usize,
    /// B13: whole-notebook runs of each.
    notebook_runs: usize,
    kernel_cancels: usize,
    /// B21: notebooks in the database.
    pg_notebooks: &'static [usize],
    /// B20: writers (and notebooks), and for how long.
    pg_writers: usize,
    pg_seconds: f64,
}

fn main() {
    let cli = Cli::parse();
    if let Some(count) = cli.measure_agents {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let before = scenarios::own_rss_kib();
        let notebooks = runtime.block_on(scenarios::memory_notebooks(count));
        let after = scenarios::own_rss_kib();
        println!(
            "{}",
            json!({"agents": notebooks.len(), "rss_before_kib": before, "rss_after_kib": after,
                   "rss_growth_kib": after.saturating_sub(before)})
        );
        return;
    }
    let size = sizes(cli.quick);
    let exe_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let echo_agent = cli
        .echo_agent
        .clone()
        .unwrap_or_else(|| exe_dir.join("examples").join("echo-agent"));
    let native_bench = echo_agent.with_file_name("native-bench");
    let hub = exe_dir.join("runtime-hub");
    assert!(
        echo_agent.exists(),
        "{} is missing: build the examples first",
        echo_agent.display()
    );
    let scratch = std::env::temp_dir().join(format!("bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();

    // B12 and B14 run the `python3` kernelspec: --python's environment's, else the first
    // found the way Jupyter finds them.
    let kernel_dirs = match &cli.python {
        Some(python) => python
            .parent()
            .and_then(Path::parent)
            .map(|venv| vec![venv.join("share").join("jupyter")])
            .unwrap_or_default(),
        None => runtime_native::jupyter::kernelspec::search_path(),
    };
    let kernel = runtime_native::jupyter::kernelspec::find("python3", &kernel_dirs).ok();
    let peer = match (&cli.python, cli.no_peer) {
        (Some(python), _) => Some(run_peer(python, cli.quick)),
        (None, true) => None,
        (None, false) => panic!("pass --python <venv python> (scripts/bench does) or --no-peer"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let wants = |id: &str| cli.only.is_empty() || cli.only.iter().any(|only| only == id);
    let rows = runtime.block_on(measure(
        &size,
        &wants,
        &Binaries {
            notebook: echo_agent.with_file_name("notebook"),
            echo_agent,
            native_bench,
            hub,
            python: cli.python.clone(),
        },
        cli.wasm.as_deref(),
        &scratch,
        peer.as_ref(),
        kernel.as_ref(),
    ));
    let _ = std::fs::remove_dir_all(&scratch);

    let table = markdown(&rows);
    println!("{table}");
    let results = json!({
        "date": command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "commit": command_output("git", &["rev-parse", "--short", "HEAD"]),
        "machine": machine(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "quick": cli.quick,
        "peer": peer,
        "rows": rows.iter().map(|r| json!({"id": r.id, "scenario": r.scenario, "ours": r.ours, "peer": r.peer,
            "ratio_ours_over_peer": r.ratio, "target": r.target, "met": r.met, "data": r.data})).collect::<Vec<_>>(),
    });
    std::fs::write(&cli.out, serde_json::to_string_pretty(&results).unwrap()).unwrap();
    if let Some(doc) = &cli.doc {
        replace_table(doc, &results, &table);
    }
    eprintln!("wrote {}", cli.out.display());
}

fn run_peer(python: &Path, quick: bool) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peer")
        .join("jupyter_bench.py");
    let mut command = Command::new(python);
    command.arg(script);
    if quick {
        command.arg("--quick");
    }
    let output = command.output().expect("python runs");
    assert!(
        output.status.success(),
        "the peer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the peer prints JSON")
}

fn peer_summary(peer: Option<&Value>, key: &str) -> Option<Summary> {
    peer.and_then(|p| Summary::from_json(&p[key]))
}

/// "median / p99" of a native-bench result.
fn median_and_p99(result: &Value) -> String {
    format!(
        "{} / {}",
        human(result["median_us"].as_f64().unwrap_or(f64::NAN)),
        human(result["p99_us"].as_f64().unwrap_or(f64::NAN))
    )
}

/// B2's row, loaded or not: round trips across processes against ipykernel's.
fn cross_process_row(
    id: &'static str,
    scenario: &str,
    ours: Summary,
    peer: Option<Summary>,
) -> Row {
    let (shown, theirs, ratio) = medians(ours, peer);
    Row {
        id,
        scenario: scenario.into(),
        ours: shown,
        peer: theirs,
        ratio,
        target: "median ≤ 1 ms; ≥ 5× faster",
        met: Some(ours.median_us <= 1_000.0 && ratio.is_none_or(|r| r <= 0.2)),
        data: ours.to_json(),
    }
}

fn medians(ours: Summary, theirs: Option<Summary>) -> (String, String, Option<f64>) {
    let show = |s: Summary| format!("{} / {}", human(s.median_us), human(s.p99_us));
    (
        show(ours),
        theirs.map_or("—".into(), show),
        theirs.map(|t| ours.median_us / t.median_us),
    )
}

async fn measure(
    size: &Sizes,
    wants: &dyn Fn(&str) -> bool,
    binaries: &Binaries,
    wasm: Option<&Path>,
    scratch: &Path,
    peer: Option<&Value>,
    kernel: Option<&runtime_native::jupyter::KernelSpec>,
) -> Vec<Row> {
    let Binaries {
        echo_agent,
        native_bench,
        hub,
        notebook: notebook_cli,
        python,
    } = binaries;
    let (echo_agent, native_bench, hub) =
        (echo_agent.as_path(), native_bench.as_path(), hub.as_path());
    let mut rows = Vec::new();
    let peer_round_trip = peer_summary(peer, "execute_1_round_trip");

    let mut one = scenarios::memory_notebooks(1).await;
    if wants("B1") {
        eprintln!("B1: in-process round trips");
        let b1 = scenarios::round_trips(&mut one, size.round_trips).await;
        let (ours, theirs, ratio) = medians(b1, peer_round_trip);
        rows.push(Row {
            id: "B1",
            scenario: "echo round trip in process (MemoryStore) vs ipykernel execute \"1\" → idle"
                .into(),
            ours,
            peer: theirs,
            ratio,
            target: "median ≤ 20 µs",
            met: Some(b1.median_us <= 20.0),
            data: b1.to_json(),
        });
    }

    if wants("B2") {
        eprintln!("B2: cross-process round trips");
        let b2 = processes::cross_process_round_trips(echo_agent, scratch, size.cross).await;
        rows.push(cross_process_row(
            "B2",
            "echo round trip across processes (SqliteStore) vs ipykernel execute \"1\" → idle",
            b2,
            peer_round_trip,
        ));
        let latency = processes::native_bench(
            native_bench,
            &["latency", "--count", &size.cross.to_string()],
        );
        rows.push(Row {
            id: "B2b",
            scenario: "one commit in a process → a subscriber in another (SqliteStore)".into(),
            ours: median_and_p99(&latency),
            peer: "—".into(),
            ratio: None,
            target: "a couple of ms",
            met: Some(latency["median_us"].as_f64().unwrap() <= 2_000.0),
            data: latency,
        });
    }

    if wants("B2L") {
        eprintln!("B2L: cross-process round trips with a core kept busy");
        let load = processes::Spinner::start();
        let b2 = processes::cross_process_round_trips(echo_agent, scratch, size.cross).await;
        drop(load);
        rows.push(cross_process_row(
            "B2L",
            "B2 with one core kept busy by a spinning process (ipykernel measured unloaded)",
            b2,
            peer_round_trip,
        ));
    }

    if wants("B15") {
        eprintln!("B15: round trips through a hub");
        assert!(
            hub.exists(),
            "{} is missing: build runtime-hub first",
            hub.display()
        );
        let b15 = processes::hub_round_trips(hub, echo_agent, scratch, size.cross).await;
        let (ours, theirs, ratio) = medians(b15, peer_round_trip);
        rows.push(Row {
            id: "B15",
            scenario: "echo round trip through a hub on loopback (hub, agent and client in three processes) vs ipykernel execute \"1\" → idle".into(),
            ours,
            peer: theirs,
            ratio,
            target: "median ≤ 1 ms",
            met: Some(b15.median_us <= 1_000.0),
            data: b15.to_json(),
        });
    }

    if wants("B16") {
        eprintln!("B16: {} agents on one hub", size.agents);
        let (per_connection, b16) =
            processes::hub_under_many_agents(hub, scratch, size.agents, size.cross).await;
        rows.push(Row {
            id: "B16",
            scenario: format!(
                "{} agents on one hub, each on its own notebook and connection: hub RSS per connection; round trip under that load",
                size.agents
            ),
            ours: format!(
                "{per_connection:.1} KiB per connection; {} / {}",
                human(b16.median_us),
                human(b16.p99_us)
            ),
            peer: "—".into(),
            ratio: None,
            target: "≤ 64 KiB per connection",
            met: Some(per_connection <= 64.0),
            data: json!({"kib_per_connection": per_connection, "round_trip": b16.to_json()}),
        });
    }

    if wants("B18") {
        let (subscribers, events) = if size.cross < 100 {
            (20, 200)
        } else {
            (100, 2_000)
        };
        eprintln!("B18: {subscribers} subscribers of one notebook on a hub");
        let (cpu_per_event, took) = processes::hub_fan_out(hub, scratch, subscribers, events).await;
        rows.push(Row {
            id: "B18",
            scenario: format!(
                "{subscribers} subscribers of one notebook on a hub, {events} events committed one by one: hub CPU per event, until all saw the last"
            ),
            ours: format!(
                "{cpu_per_event:.0} µs of hub CPU per event ({:.1} µs per event per subscriber); {} in all",
                cpu_per_event / subscribers as f64,
                human(took.as_secs_f64() * 1e6)
            ),
            peer: "—".into(),
            ratio: None,
            target: "measured (no target yet)",
            met: None,
            data: json!({"subscribers": subscribers, "events": events,
                         "hub_cpu_us_per_event": cpu_per_event, "total_ms": took.as_secs_f64() * 1e3}),
        });
    }

    if (wants("B19") || wants("B20") || wants("B21")) && std::env::var_os("DATABASE_URL").is_none()
    {
        panic!(
            "B19-B21 need a PostgreSQL server: set DATABASE_URL, or run through \
             `scripts/postgres run` (scripts/bench does)"
        );
    }

    if wants("B19") {
        eprintln!("B19: commit → subscriber in another process through PostgreSQL");
        let database = tests::postgres::fresh_database().await;
        let latency = processes::native_bench(
            native_bench,
            &[
                "latency",
                "--count",
                &size.cross.to_string(),
                "--store",
                &database,
            ],
        );
        rows.push(Row {
            id: "B19",
            scenario: "one commit in a process → a subscriber in another, through PostgreSQL on loopback (fsync on)".into(),
            ours: median_and_p99(&latency),
            peer: "—".into(),
            ratio: None,
            target: "measured (a probe read 1.0-1.2 ms)",
            met: None,
            data: latency,
        });
    }

    if wants("B20") {
        let (writers, seconds) = (size.pg_writers, size.pg_seconds);
        eprintln!("B20: throughput of 1, 2 and 4 hubs on one PostgreSQL database");
        let mut figures = Vec::new();
        for synchronous in [true, false] {
            for hubs in [1, 2, 4] {
                let database = tests::postgres::fresh_database().await;
                if !synchronous {
                    tests::postgres::execute(
                        &database,
                        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET synchronous_commit = off', \
                         current_database()); END $$",
                    )
                    .await;
                }
                let per_second = processes::hubs_throughput(
                    hub,
                    scratch,
                    &database,
                    hubs,
                    writers,
                    5,
                    Duration::from_secs_f64(seconds),
                )
                .await;
                figures.push(json!({"synchronous_commit": synchronous, "hubs": hubs,
                    "commits_per_s": per_second, "events_per_s": per_second * 5.0}));
            }
        }
        let show = |synchronous: bool| {
            figures
                .iter()
                .filter(|f| f["synchronous_commit"] == synchronous)
                .map(|f| {
                    format!(
                        "{} hub(s) {:.0}/s ({:.0} events/s)",
                        f["hubs"],
                        f["commits_per_s"].as_f64().unwrap(),
                        f["events_per_s"].as_f64().unwrap()
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        rows.push(Row {
            id: "B20",
            scenario: format!(
                "{writers} clients on {writers} notebooks committing batches of 5 events as fast as they can for {seconds} s, through 1, 2 or 4 hubs on one PostgreSQL database: commits/s"
            ),
            ours: format!(
                "synchronous_commit on: {}; off: {}",
                show(true),
                show(false)
            ),
            peer: "—".into(),
            ratio: None,
            target: "measured (no target yet)",
            met: None,
            data: json!(figures),
        });
    }

    if wants("B21") {
        eprintln!("B21: round trips through a hub on PostgreSQL as notebooks grow");
        let mut figures = Vec::new();
        for &notebooks in size.pg_notebooks {
            let database = tests::postgres::fresh_database().await;
            let took = processes::round_trips_among_notebooks(
                hub,
                echo_agent,
                scratch,
                &database,
                notebooks - 1,
                20,
                size.cross,
            )
            .await;
            figures.push((notebooks, took));
        }
        let first = figures[0].1.median_us;
        let (last_notebooks, last) = figures[figures.len() - 1];
        rows.push(Row {
            id: "B21",
            scenario: format!(
                "echo round trip through a hub on PostgreSQL with 1 to {last_notebooks} notebooks in the database (20 events each): median / p99"
            ),
            ours: figures
                .iter()
                .map(|(n, s)| format!("{n}: {} / {}", human(s.median_us), human(s.p99_us)))
                .collect::<Vec<_>>()
                .join("; "),
            peer: "—".into(),
            ratio: Some(last.median_us / first),
            target: "flat: the largest within 1.5× of one notebook",
            met: Some(last.median_us <= first * 1.5),
            data: json!(figures
                .iter()
                .map(|(n, s)| json!({"notebooks": n, "round_trip": s.to_json()}))
                .collect::<Vec<_>>()),
        });
    }

    if wants("B3") {
        eprintln!("B3: output flood");
        let peer_flood = peer.map(|p| &p["flood_flushed"]);
        let peer_per_line = peer_flood.and_then(|f| f["per_line_us"].as_f64());
        for (label, kind) in [
            ("yielding after each line", "flood"),
            ("without yielding", "flood-tight"),
        ] {
            let took = scenarios::flood(&mut one, size.flood, kind).await;
            let per_line = took.as_secs_f64() * 1e6 / size.flood as f64;
            let ratio = peer_per_line.map(|p| per_line / p);
            rows.push(Row { id: "B3", scenario: format!("{} stdout lines in process, {label}, until observed vs ipykernel flushed prints", size.flood),
                ours: format!("{} total, {} per line", human(took.as_secs_f64() * 1e6), human(per_line)),
                peer: peer_flood.map_or("—".into(), |f| format!("{} per line ({} lines)", human(f["per_line_us"].as_f64().unwrap_or(0.0)), f["lines"])),
                ratio, target: "≤ 100 ms; ≥ 20× faster per line",
                met: Some(took <= Duration::from_millis(100) && ratio.is_none_or(|r| r <= 0.05)),
                data: json!({"lines": size.flood, "total_us": took.as_secs_f64() * 1e6, "per_line_us": per_line}) });
        }
        let sqlite_path = scratch.join("flood.db");
        let sqlite_store = runtime_native::SqliteStore::open(&sqlite_path, "nb").unwrap();
        let reader = runtime_native::SqliteStore::open(&sqlite_path, "nb").unwrap();
        let mut on_sqlite = vec![scenarios::Notebook::start(sqlite_store, &reader).await];
        let took = scenarios::flood(&mut on_sqlite, size.flood, "flood").await;
        let per_line = took.as_secs_f64() * 1e6 / size.flood as f64;
        let ratio = peer_per_line.map(|p| per_line / p);
        rows.push(Row { id: "B3", scenario: format!("{} stdout lines via SQLite, yielding after each line, until observed by another connection", size.flood),
            ours: format!("{} total, {} per line", human(took.as_secs_f64() * 1e6), human(per_line)),
            peer: peer_flood.map_or("—".into(), |f| format!("{} per line", human(f["per_line_us"].as_f64().unwrap_or(0.0)))),
            ratio, target: "≤ 1 s; ≥ 20× faster per line", met: Some(took <= Duration::from_secs(1) && ratio.is_none_or(|r| r <= 0.05)),
            data: json!({"lines": size.flood, "total_us": took.as_secs_f64() * 1e6, "per_line_us": per_line}) });
        for notebook in on_sqlite {
            notebook.stop().await;
        }
    }

    if wants("B4") {
        eprintln!("B4: slow consumer");
        let (sent, received) = scenarios::slow_consumer(scratch, size.slow).await;
        let peer_slow = peer.map(|p| &p["slow_consumer"]);
        let peer_late = peer.map(|p| &p["slow_consumer_late_sub"]);
        let peer_reader = |s: &Value, who: &str| {
            format!(
                "{who}: {} of {} received, {:.1} % lost, final idle {}",
                s["received"],
                s["lines"],
                s["lost_percent"].as_f64().unwrap_or(0.0),
                if s["idle_seen"].as_bool() == Some(true) {
                    "seen"
                } else {
                    "lost"
                }
            )
        };
        rows.push(Row {
            id: "B4",
            scenario: format!(
                "slow consumer: {sent} lines, read only after completion (the peer: through jupyter_client, whose thread drains iopub meanwhile; and a zmq SUB socket with default options read late)"
            ),
            ours: format!(
                "{received} of {sent} received, {:.1} % lost",
                100.0 * (sent - received) as f64 / sent as f64
            ),
            peer: match (peer_slow, peer_late) {
                (Some(slow), Some(late)) => format!(
                    "{}; {}",
                    peer_reader(slow, "jupyter_client"),
                    peer_reader(late, "late SUB")
                ),
                _ => "—".into(),
            },
            ratio: None,
            target: "0 lost",
            met: Some(received == sent),
            data: json!({"sent": sent, "received": received, "peer": peer_slow, "peer_late_sub": peer_late}),
        });
    }

    if wants("B12") || wants("B13") || wants("B14") {
        match kernel {
            None => eprintln!("B12, B13, B14: skipped, no python3 kernelspec (pass --python)"),
            Some(spec) => {
                if wants("B12") {
                    eprintln!("B12: executions on ipykernel through the agent and directly");
                    let (agent, direct) =
                        kernels::round_trips(spec, scratch, size.kernel_samples).await;
                    let added = agent.median_us - direct.median_us;
                    rows.push(Row {
                    id: "B12",
                    scenario: "execute \"1\" on ipykernel: through the agent and its Jupyter backend (request → completion observed, in process) vs a second kernel driven directly with the same client crate (execute_request → reply and idle), in turn".into(),
                    ours: format!("{} / {} (added: {} at the median)", human(agent.median_us), human(agent.p99_us), human(added)),
                    peer: format!("{} / {} (directly)", human(direct.median_us), human(direct.p99_us)),
                    ratio: Some(agent.median_us / direct.median_us),
                    target: "added ≤ 0.2 ms at the median",
                    met: Some(added <= 200.0),
                    data: json!({"agent": agent.to_json(), "direct": direct.to_json(), "added_median_us": added}),
                });
                }
                if wants("B13") {
                    eprintln!("B13: a notebook of 50 cells, run-file vs nbclient");
                    let python = python
                        .clone()
                        .unwrap_or_else(|| PathBuf::from(&spec.argv[0]));
                    let (ours, theirs) = kernels::notebook_runs(
                        spec,
                        notebook_cli,
                        &python,
                        scratch,
                        size.notebook_runs,
                    );
                    rows.push(Row {
                    id: "B13",
                    scenario: format!("a notebook of {} small cells (`x = n * 2; print(x)`) run end to end, kernel start and writing the file included: `notebook run-file` vs nbclient's NotebookClient in a Python process, in turn, same kernelspec", kernels::NOTEBOOK_CELLS),
                    ours: format!("{} / {}", human(ours.median_us), human(ours.p99_us)),
                    peer: format!("{} / {}", human(theirs.median_us), human(theirs.p99_us)),
                    ratio: Some(ours.median_us / theirs.median_us),
                    target: "faster than nbclient",
                    met: Some(ours.median_us < theirs.median_us),
                    data: json!({"ours": ours.to_json(), "nbclient": theirs.to_json()}),
                });
                }
                if wants("B14") {
                    eprintln!("B14: interrupt of time.sleep(30) through the agent");
                    let cancel = kernels::cancels(spec, size.kernel_cancels).await;
                    let (ours, theirs, ratio) =
                        medians(cancel, peer_summary(peer, "interrupt_to_idle"));
                    rows.push(Row {
                    id: "B14",
                    scenario: "cancel of time.sleep(30) on ipykernel through the agent → cancelled observed (SIGINT to the kernel's group) vs jupyter_client's interrupt_kernel → idle".into(),
                    ours,
                    peer: theirs,
                    ratio,
                    target: "measured, against the peer",
                    met: None,
                    data: json!({"ours": cancel.to_json()}),
                });
                }
            }
        }
    }

    if wants("B5") {
        eprintln!("B5: cancel");
        let b5 = scenarios::cancels(&mut one[0], size.cancels).await;
        let (ours, theirs, ratio) = medians(b5, peer_summary(peer, "interrupt_to_idle"));
        rows.push(Row { id: "B5", scenario: "cancel a running cooperative handler → cancelled observed, in process (vs ipykernel interrupt → idle)".into(),
            ours, peer: theirs, ratio, target: "≤ 1 ms", met: Some(b5.median_us <= 1_000.0), data: b5.to_json() });
    }

    for notebook in one {
        notebook.stop().await;
    }

    if wants("B11") {
        eprintln!("B11: cancel a process job");
        let grace = std::time::Duration::from_millis(100);
        let samples = size.cancels.min(30);
        let cases = [
            (
                "a bash job that honours SIGINT",
                "echo ready; sleep 60",
                "SIGINT",
            ),
            (
                "a bash job that ignores SIGINT and SIGTERM",
                "trap '' INT TERM; echo ready; sleep 60 & wait",
                "SIGKILL",
            ),
        ];
        for (what, source, step) in cases {
            let b11 = scenarios::process_cancels(source, grace, samples).await;
            let interrupt = peer_summary(peer, "interrupt_to_idle");
            let (ours, theirs, ratio) = medians(b11, interrupt);
            let met = match step {
                "SIGINT" => b11.median_us <= 20_000.0,
                _ => b11.median_us <= 2.0 * 100_000.0 + 20_000.0,
            };
            rows.push(Row { id: "B11", scenario: format!("cancel {what} → cancelled observed; ends at {step}; ladder graces 100 ms (vs ipykernel interrupt → idle)"),
                ours, peer: theirs, ratio, target: if step == "SIGINT" { "≤ 20 ms" } else { "≤ both graces + 20 ms" }, met: Some(met), data: b11.to_json() });
        }
    }

    if wants("B6") {
        eprintln!("B6: start");
        let b6 = scenarios::starts(size.starts).await;
        rows.push(Row {
            id: "B6",
            scenario: "agent constructed → ready observed, in process".into(),
            ours: format!("{} / {}", human(b6.median_us), human(b6.p99_us)),
            peer: "—".into(),
            ratio: None,
            target: "≤ 1 ms",
            met: Some(b6.median_us <= 1_000.0),
            data: b6.to_json(),
        });
        let b6p = processes::process_starts(echo_agent, scratch, size.process_starts).await;
        let (ours, theirs, ratio) = medians(b6p, peer_summary(peer, "start"));
        rows.push(Row {
            id: "B6",
            scenario: "echo-agent process spawned → ready (vs kernel start → ready)".into(),
            ours,
            peer: theirs,
            ratio,
            target: "≤ 50 ms",
            met: Some(b6p.median_us <= 50_000.0),
            data: b6p.to_json(),
        });
    }

    if wants("B7") {
        eprintln!("B7: memory");
        let idle = processes::native_bench(native_bench, &["idle", "--seconds", "3"]);
        let rss = idle["rss_kib"].as_u64().unwrap();
        let peer_rss = peer.and_then(|p| p["idle_rss_kib"].as_u64());
        rows.push(Row {
            id: "B7",
            scenario: "echo-agent process idle RSS (vs idle ipykernel)".into(),
            ours: format!(
                "{:.1} MiB (CPU {:.2} % idle)",
                rss as f64 / 1024.0,
                idle["cpu_percent"].as_f64().unwrap_or(0.0)
            ),
            peer: peer_rss.map_or("—".into(), |r| format!("{:.1} MiB", r as f64 / 1024.0)),
            ratio: peer_rss.map(|r| rss as f64 / r as f64),
            target: "≤ 8 MiB",
            met: Some(rss <= 8 * 1024),
            data: idle,
        });
        // In a fresh process: memory freed by earlier scenarios would be reused and hide it.
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--no-peer", "--measure-agents", &size.agents.to_string()])
            .output()
            .unwrap();
        let measured: Value =
            serde_json::from_slice(&output.stdout).expect("the agents measure prints JSON");
        let total = measured["rss_growth_kib"].as_u64().unwrap();
        rows.push(Row {
            id: "B7",
            scenario: format!(
                "{} agents on {} notebooks in one process (RSS growth)",
                size.agents, size.agents
            ),
            ours: format!(
                "{:.1} MiB total, {:.1} KiB each",
                total as f64 / 1024.0,
                total as f64 / size.agents as f64
            ),
            peer: "—".into(),
            ratio: None,
            target: "≤ 64 MiB for 1,000",
            met: Some(total <= 64 * 1024),
            data: measured,
        });
    }

    if wants("B8") {
        eprintln!("B8: wasm size");
        if let Some(wasm) = wasm {
            let raw = std::fs::metadata(wasm).unwrap().len();
            let gzip = command_output(
                "sh",
                &["-c", &format!("gzip -9 -c '{}' | wc -c", wasm.display())],
            )
            .parse::<u64>()
            .unwrap_or(0);
            rows.push(Row {
                id: "B8",
                scenario: "runtime-wasm release .wasm (raw, gzip)".into(),
                ours: format!(
                    "{:.1} KB raw, {:.1} KB gzip",
                    raw as f64 / 1000.0,
                    gzip as f64 / 1000.0
                ),
                peer: "—".into(),
                ratio: None,
                target: "≤ 250 KB raw",
                met: Some(raw <= 250_000),
                data: json!({"raw_bytes": raw, "gzip_bytes": gzip}),
            });
        }
    }

    if wants("B9") {
        eprintln!("B9: SQLite throughput");
        let per_second = processes::sqlite_append(scratch, size.append).await;
        rows.push(Row {
            id: "B9",
            scenario: format!(
                "SqliteStore batched append ({} events, 1,000 per commit)",
                size.append
            ),
            ours: format!("{:.0} events/s", per_second),
            peer: "—".into(),
            ratio: None,
            target: "≥ 200,000 events/s",
            met: Some(per_second >= 200_000.0),
            data: json!({"events": size.append, "events_per_second": per_second}),
        });
        let fold = processes::sqlite_fold(scratch, size.fold).await;
        rows.push(Row {
            id: "B9",
            scenario: format!("reopen and fold {} events", size.fold),
            ours: human(fold.as_secs_f64() * 1e6),
            peer: "—".into(),
            ratio: None,
            target: "≤ 2 s",
            met: Some(fold <= Duration::from_secs(2)),
            data: json!({"events": size.fold, "total_us": fold.as_secs_f64() * 1e6}),
        });
    }

    if wants("B17") {
        eprintln!("B17: agent start on a {}-event notebook", size.fold);
        let start =
            processes::agent_start_on_a_long_notebook(scratch, size.fold, size.start_runs).await;
        let ratio = start.from_snapshot.median_us / start.full_fold.median_us;
        rows.push(Row {
            id: "B17",
            scenario: format!(
                "echo agent start → ready on a {}-event SQLite notebook (lean snapshot of {} KiB; full fold beside it)",
                size.fold,
                start.snapshot_bytes / 1024
            ),
            ours: human(start.from_snapshot.median_us),
            peer: format!("{} (full fold)", human(start.full_fold.median_us)),
            ratio: Some(ratio),
            target: "≤ 50 ms",
            met: Some(start.from_snapshot.median_us <= 50_000.0),
            data: json!({
                "events": size.fold,
                "from_snapshot": start.from_snapshot.to_json(),
                "full_fold": start.full_fold.to_json(),
                "snapshot_bytes": start.snapshot_bytes,
            }),
        });
    }

    if wants("B22") {
        eprintln!("B22: agent start, idle memory and status by notebook length");
        let notebook = echo_agent.with_file_name("notebook");
        let mut figures = Vec::new();
        for &events in size.lengths {
            figures.push(
                processes::start_and_memory_by_length(echo_agent, &notebook, scratch, events).await,
            );
        }
        let longest = figures.last().expect("lengths");
        let show = figures
            .iter()
            .map(|f| {
                format!(
                    "{}: start {}, idle RSS {:.1} MiB, status {}",
                    f.events,
                    human(f.start.as_secs_f64() * 1e6),
                    f.idle_rss_kib as f64 / 1024.0,
                    human(f.status.as_secs_f64() * 1e6)
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        rows.push(Row {
            id: "B22",
            scenario: "echo-agent process start (from the snapshot an earlier agent left), its idle RSS, and `notebook status`, by notebook length in events".into(),
            ours: show,
            peer: "—".into(),
            ratio: None,
            target: "at the longest: start ≤ 50 ms, idle RSS ≤ 16 MiB, status ≤ 100 ms",
            met: Some(
                longest.start <= Duration::from_millis(50)
                    && longest.idle_rss_kib <= 16 * 1024
                    && longest.status <= Duration::from_millis(100),
            ),
            data: json!(figures.iter().map(|f| json!({
                "events": f.events,
                "start_us": f.start.as_secs_f64() * 1e6,
                "idle_rss_kib": f.idle_rss_kib,
                "status_us": f.status.as_secs_f64() * 1e6,
            })).collect::<Vec<_>>()),
        });
    }

    if wants("B23") {
        eprintln!("B23: agents sharing one SQLite file");
        let mut figures = Vec::new();
        for &agents in size.agents_per_file {
            figures.push(
                processes::agents_sharing_a_file(
                    echo_agent,
                    scratch,
                    agents,
                    size.idle_window,
                    size.cross,
                )
                .await,
            );
        }
        let one = figures.first().expect("counts").round_trips.median_us;
        let most = figures.last().expect("counts");
        let show = figures
            .iter()
            .map(|f| {
                format!(
                    "{}: {} / {}, idle CPU {:.2} % of a core, {} lost",
                    f.agents,
                    human(f.round_trips.median_us),
                    human(f.round_trips.p99_us),
                    f.idle_cpu_percent,
                    f.lost
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let ratio = most.round_trips.median_us / one;
        rows.push(Row {
            id: "B23",
            scenario: "echo-agent processes on one SQLite file, each on its own notebook: round trip on one (median / p99), the agents' CPU while all idle, agents lost".into(),
            ours: show,
            peer: "—".into(),
            ratio: Some(ratio),
            target: "at the most agents: round trip within 2× of one agent, idle CPU < 1 % of a core, none lost",
            met: Some(ratio <= 2.0 && most.idle_cpu_percent < 1.0 && most.lost == 0),
            data: json!(figures.iter().map(|f| json!({
                "agents": f.agents,
                "round_trips": f.round_trips.to_json(),
                "idle_cpu_percent": f.idle_cpu_percent,
                "lost": f.lost,
            })).collect::<Vec<_>>()),
        });
    }

    if wants("B24") {
        eprintln!("B24: subscriber processes of one notebook");
        let mut figures = Vec::new();
        for &subscribers in size.subscribers {
            figures.push(
                processes::subscribers_of_one_notebook(
                    native_bench,
                    scratch,
                    subscribers,
                    size.fanout_commits,
                )
                .await,
            );
        }
        let one = figures.first().expect("counts").all_saw.median_us;
        let most = figures.last().expect("counts");
        let show = figures
            .iter()
            .map(|f| {
                format!(
                    "{}: all saw it {} / {}, each {} / {}, slowest {}, their CPU {:.0} µs per commit",
                    f.subscribers,
                    human(f.all_saw.median_us),
                    human(f.all_saw.p99_us),
                    human(f.each_saw.median_us),
                    human(f.each_saw.p99_us),
                    human(f.slowest_us),
                    f.cpu_us_per_commit,
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        rows.push(Row {
            id: "B24",
            scenario: format!(
                "subscriber processes of one notebook on one SQLite file, {} commits one at a time from idle: commit → the last subscriber saw it, and any one did (median / p99), their CPU per commit",
                size.fanout_commits
            ),
            ours: show,
            peer: "—".into(),
            ratio: Some(most.all_saw.median_us / one),
            target: "no missed wake-up (slowest < 250 ms); measured",
            met: Some(figures.iter().all(|f| f.slowest_us < 250_000.0)),
            data: json!(figures.iter().map(|f| json!({
                "subscribers": f.subscribers,
                "all_saw": f.all_saw.to_json(),
                "each_saw": f.each_saw.to_json(),
                "slowest_us": f.slowest_us,
                "cpu_us_per_commit": f.cpu_us_per_commit,
            })).collect::<Vec<_>>()),
        });
    }

    if wants("B10") {
        eprintln!("B10: scaling");
        let mut per_execution = Vec::new();
        let mut per_line = Vec::new();
        for &count in size.scaling {
            let mut notebooks = scenarios::memory_notebooks(count).await;
            let summary = scenarios::round_trips(&mut notebooks, size.scaling_samples).await;
            let flood = scenarios::flood(&mut notebooks, size.flood, "flood").await;
            per_execution.push((count, summary.median_us));
            per_line.push((count, flood.as_secs_f64() * 1e6 / size.flood as f64));
            for notebook in notebooks {
                notebook.stop().await;
            }
        }
        let spread = |values: &[(usize, f64)]| {
            let max = values.iter().map(|v| v.1).fold(f64::MIN, f64::max);
            let min = values.iter().map(|v| v.1).fold(f64::MAX, f64::min);
            max / min
        };
        let show = |values: &[(usize, f64)]| {
            values
                .iter()
                .map(|(n, v)| format!("{n}: {}", human(*v)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        rows.push(Row {
            id: "B10",
            scenario: "B1 round trip (median) with 1 / 10 / 100 notebooks in one process".into(),
            ours: format!(
                "{} (spread {:.2}×)",
                show(&per_execution),
                spread(&per_execution)
            ),
            peer: "—".into(),
            ratio: None,
            target: "flat within 2×",
            met: Some(spread(&per_execution) <= 2.0),
            data: json!({"per_execution_us": per_execution}),
        });
        rows.push(Row {
            id: "B10",
            scenario: "B3 per-line cost with the flood split over 1 / 10 / 100 notebooks".into(),
            ours: format!("{} (spread {:.2}×)", show(&per_line), spread(&per_line)),
            peer: "—".into(),
            ratio: None,
            target: "flat within 2×",
            met: Some(spread(&per_line) <= 2.0),
            data: json!({"per_line_us": per_line}),
        });
    }

    rows
}

fn markdown(rows: &[Row]) -> String {
    let mut table = String::from(
        "| id | scenario | ours (median / p99) | ipykernel (median / p99) | ours ÷ theirs | target | met |\n",
    );
    table.push_str("| --- | --- | --- | --- | --- | --- | --- |\n");
    for row in rows {
        // B7 compares memory; every other ratio compares time.
        let better = if row.id == "B7" { "smaller" } else { "faster" };
        let ratio = row.ratio.map_or("—".into(), |r| {
            if r < 0.5 {
                format!("{r:.4} ({:.0}× {better})", 1.0 / r)
            } else if r < 1.0 {
                format!("{r:.4} ({:.1}× {better})", 1.0 / r)
            } else {
                format!("{r:.2}")
            }
        });
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            row.id, row.scenario, row.ours, row.peer, ratio, row.target, met
        ));
    }
    table
}

fn replace_table(doc: &Path, results: &Value, table: &str) {
    let text = std::fs::read_to_string(doc).unwrap_or_default();
    let (Some(begin), Some(end)) = (
        text.find("<!-- bench:begin -->"),
        text.find("<!-- bench:end -->"),
    ) else {
        eprintln!("{} has no bench markers; left as is", doc.display());
        return;
    };
    let header = format!(
        "<!-- bench:begin -->\nMeasured {} at commit {} on {}, with `{}`.\n\n",
        results["date"].as_str().unwrap_or(""),
        results["commit"].as_str().unwrap_or(""),
        results["machine"].as_str().unwrap_or(""),
        results["command"].as_str().unwrap_or(""),
    );
    let updated = format!("{}{header}{table}\n{}", &text[..begin], &text[end..]);
    std::fs::write(doc, updated).unwrap();
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    format!(
        "{cores} cores, {cpu}, {}",
        command_output("uname", &["-sr"])
    )
}
