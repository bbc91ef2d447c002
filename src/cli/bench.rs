//! `vivirk bench log`: durable appends at 1, 16 and 64 concurrent appenders, the mean group
//! commit size, replay speed over a million events, and bytes on disk against the events' JSON.
//! Built with the one release build CI makes; figures come from a run, never from a test.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Subcommand;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::log::{Durability, EventLog, ExpectedVersion, LogActor, LogConfig, Metadata, NewEvent, StreamId};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// A data directory for `benches/compare.sh`: generated courses with real accounts.
    #[command(hide = true)]
    Seed(super::seed::SeedArgs),
    /// The projections: rebuild speed, contact-history pages and course status reads.
    Projections {
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Total events in the log.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, default_value_t = 10_000)]
        courses: u64,
    },
    /// The event log on its own, in process.
    Log {
        /// Directory for the benchmark's data (default: a fresh one under the system temp dir,
        /// removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Total events in the log before the replay is measured.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Seconds to run each concurrency level.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, value_enum, default_value = "fsync")]
        durability: Durability,
        /// Concurrency levels to measure.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        appenders: Vec<usize>,
    },
}

pub fn run(cmd: BenchCommand) -> ExitCode {
    match cmd {
        BenchCommand::Seed(args) => super::seed::run(args),
        BenchCommand::Projections { dir, events, courses } => {
            let (dir, remove) = match dir {
                Some(d) => (d, false),
                None => (std::env::temp_dir().join(format!("vivirk-bench-proj-{}", std::process::id())), true),
            };
            let r = crate::projections::bench::run(&dir, events, courses);
            if remove {
                let _ = std::fs::remove_dir_all(&dir);
            }
            match r {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        BenchCommand::Log { dir, events, seconds, durability, appenders } => {
            let (dir, remove) = match dir {
                Some(d) => (d, false),
                None => (std::env::temp_dir().join(format!("vivirk-bench-{}", std::process::id())), true),
            };
            let r = bench_log(&dir, events, seconds, durability, &appenders);
            if remove {
                let _ = std::fs::remove_dir_all(&dir);
            }
            match r {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// A mentor check-in of a realistic size (~300 bytes of JSON).
pub fn sample_event(n: u64) -> NewEvent {
    let data = serde_json::json!({
        "placement_id": Uuid::from_u128(n as u128 % 977),
        "attendance": if n.is_multiple_of(7) { "absent_notified" } else { "present" },
        "wellbeing": n % 5 + 1,
        "tasks_done": ["sorted returns", "stocked shelf 4", "lunch with the team"],
        "concerns": if n.is_multiple_of(3) { "tired after a short night" } else { "" },
        "next_step": "try the till with support on Thursday",
    });
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "CheckInLogged".into(),
        schema_version: 1,
        occurred_at: OffsetDateTime::now_utc(),
        actor: LogActor { account_id: Uuid::from_u128(n as u128 % 500 + 1), role: "mentor".into() },
        metadata: Metadata { correlation_id: Some(Uuid::new_v4()), causation_id: None, device_id: None },
        data: serde_json::to_vec(&data).unwrap_or_default(),
    }
}

fn course_stream(n: u64) -> StreamId {
    StreamId::for_entity("course", Uuid::from_u128(0xC0_0000 + (n % 10_000) as u128))
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn bench_log(
    dir: &std::path::Path,
    total: u64,
    seconds: f64,
    durability: Durability,
    levels: &[usize],
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut config = LogConfig::new(dir);
    config.durability = durability;
    let (log, _) = EventLog::open(config).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    println!("vivirk bench log — durability {durability:?}, {} cores", num_cpus());
    println!(
        "{:>10} {:>12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>11}   writer µs/event: prepare write sync index",
        "appenders", "appends/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "mean group"
    );
    for &c in levels {
        let ws = log.writer_stats();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let before =
            [load(&ws.prepare_ns), load(&ws.write_ns), load(&ws.sync_ns), load(&ws.index_ns), load(&ws.slow_syncs)];
        let batches_before = log.stats().0;
        let (n, secs, lat, groups) = rt.block_on(append_load(&log, c, Duration::from_secs_f64(seconds)));
        let after =
            [load(&ws.prepare_ns), load(&ws.write_ns), load(&ws.sync_ns), load(&ws.index_ns), load(&ws.slow_syncs)];
        let batches = log.stats().0 - batches_before;
        let per = |i: usize| (after[i] - before[i]) as f64 / 1000.0 / n.max(1) as f64;
        println!(
            "{:>10} {:>12.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>11.1}   {:>8.1} {:>5.1} {:>4.1} {:>5.1}",
            c,
            n as f64 / secs,
            pct(&lat, 0.5),
            pct(&lat, 0.9),
            pct(&lat, 0.99),
            pct(&lat, 0.999),
            pct(&lat, 1.0),
            groups,
            per(0),
            per(1),
            per(2),
            per(3)
        );
        println!(
            "{:>10} {} of {} syncs took over 10 ms (longest so far {:.1} ms)",
            "",
            after[4] - before[4],
            batches,
            load(&ws.max_sync_ns) as f64 / 1e6
        );
    }
    // Fill up to `total` events for the replay and disk figures.
    let have = log.head().0;
    if have < total {
        let started = Instant::now();
        rt.block_on(fill(&log, total - have));
        println!("filled to {} events in {:.1}s", log.head().0, started.elapsed().as_secs_f64());
    }
    let head = log.head().0;
    for pass in ["cold-ish", "warm"] {
        let started = Instant::now();
        let mut n = 0u64;
        for e in log.iter_from(1).map_err(|e| e.to_string())? {
            std::hint::black_box(e.map_err(|e| e.to_string())?);
            n += 1;
        }
        let secs = started.elapsed().as_secs_f64();
        println!("replay ({pass} page cache): {n} events in {secs:.2}s = {:.0} events/s", n as f64 / secs);
    }
    let mut json_bytes = 0u64;
    let mut data_bytes = 0u64;
    for e in log.iter_from(1).map_err(|e| e.to_string())? {
        let e = e.map_err(|e| e.to_string())?;
        json_bytes += serde_json::to_vec(&e.to_json()).map_err(|e| e.to_string())?.len() as u64 + 1;
        data_bytes += e.data.len() as u64;
    }
    log.flush_index().map_err(|e| e.to_string())?;
    let (log_bytes, index_bytes) = log.disk_usage();
    let on_disk = log_bytes + index_bytes;
    println!(
        "disk: log {} MiB + index {} MiB = {} MiB for {head} events; envelopes as JSON lines {} MiB → ratio {:.2} \
         (data payloads alone {} MiB → ratio {:.2})",
        log_bytes >> 20,
        index_bytes >> 20,
        on_disk >> 20,
        json_bytes >> 20,
        on_disk as f64 / json_bytes as f64,
        data_bytes >> 20,
        on_disk as f64 / data_bytes as f64,
    );
    Ok(())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// `c` appenders, each appending one event at a time for `dur`. Returns (appends, seconds,
/// sorted latencies in µs, mean group size).
async fn append_load(log: &EventLog, c: usize, dur: Duration) -> (u64, f64, Vec<u32>, f64) {
    let (b0, e0) = log.stats();
    let started = Instant::now();
    let deadline = started + dur;
    let mut handles = Vec::new();
    for t in 0..c {
        let log = log.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = t as u64;
            while Instant::now() < deadline {
                let s = course_stream(i * 7919);
                let t0 = Instant::now();
                if log.append(&s, ExpectedVersion::Any, vec![sample_event(i)]).await.is_err() {
                    break;
                }
                lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                i += c as u64;
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await.unwrap_or_default());
    }
    let secs = started.elapsed().as_secs_f64();
    let (b1, e1) = log.stats();
    lat.sort_unstable();
    let groups = (e1 - e0) as f64 / (b1 - b0).max(1) as f64;
    (lat.len() as u64, secs, lat, groups)
}

async fn fill(log: &EventLog, n: u64) {
    let workers = 256u64;
    let per = n.div_ceil(workers);
    let log = Arc::new(log.clone());
    let mut handles = Vec::new();
    for w in 0..workers {
        let log = log.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..per {
                let k = w + i * workers;
                if k >= n {
                    break;
                }
                let _ = log.append(&course_stream(k), ExpectedVersion::Any, vec![sample_event(k)]).await;
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
}
