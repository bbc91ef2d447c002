//! The `vivirk` command line: parses arguments and hands over to the library. Nothing here
//! knows how the log or the API work inside.

mod audit;
mod bench;
mod debug;
mod demo;
mod seed;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::log::{self, EventLog, LogConfig};

#[derive(Parser)]
#[command(name = "vivirk", version, about = "The shared record of long programmes for young people")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API on a data directory (created on first start).
    Serve(crate::settings::ServeArgs),
    /// Load a realistic demo data set (accounts in every role, companies, courses with months of
    /// history) into a data directory. Stop the server first.
    Demo(demo::DemoArgs),
    /// Recompute the hash chains of the log and name the first position that does not verify;
    /// or, with --file, check an export (or a downloaded course record) without a data
    /// directory or a server, and name its first bad line.
    Verify {
        #[arg(long, env = "VIVIRK_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// Check one stream's chain (and each of its events' own hashes) only.
        #[arg(long, conflicts_with = "file")]
        stream: Option<String>,
        /// An export file (`vivirk export`, `GET /v1/courses/{id}/record`).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Pin the checkpoint public key (a JWK file, or the JSON itself) instead of trusting
        /// the one the export carries.
        #[arg(long, requires = "file")]
        key: Option<String>,
    },
    /// Write an export (JSON lines: a header with the latest signed checkpoint and the public
    /// key, then envelopes) of one course or the whole log. Stop the server first.
    Export(audit::ExportArgs),
    /// Print a course's history, event by event, with its state after each; from a data
    /// directory (server stopped) or an export file.
    Replay(audit::ReplayArgs),
    /// The checkpoint signing key.
    Keys {
        #[command(subcommand)]
        command: audit::KeysCommand,
    },
    /// Write the OpenAPI document (default `openapi/openapi.json`).
    Openapi {
        #[arg(long, default_value = "openapi/openapi.json")]
        out: PathBuf,
    },
    /// Maintain the derived sled index.
    Index {
        #[command(subcommand)]
        command: IndexCommand,
    },
    /// Maintain the projections (course status, contact frequency, actions, contact history).
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Benchmarks that print figures from a real run.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    #[command(hide = true)]
    Debug {
        #[command(subcommand)]
        command: debug::DebugCommand,
    },
}

#[derive(Subcommand)]
enum IndexCommand {
    /// Throw the index away and rebuild it from the log, with a progress bar.
    Rebuild {
        #[arg(long, env = "VIVIRK_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Throw the projection store away and rebuild it from position 1, with a progress bar.
    /// All projections share one store and checkpoint, so naming one rebuilds them all.
    Rebuild {
        #[arg(long, env = "VIVIRK_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// course_status, contact_frequency, actions or contact_history (default: all).
        name: Option<String>,
    },
}

pub fn run() -> ExitCode {
    tune_the_allocator();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => crate::serve::run(args),
        Command::Verify { file: Some(file), key, .. } => audit::verify_file(&file, key.as_deref()),
        Command::Verify { data_dir, stream, .. } => {
            init_tracing(false);
            verify(&data_dir, stream.as_deref())
        }
        Command::Export(args) => {
            init_tracing(false);
            audit::export(args)
        }
        Command::Replay(args) => {
            init_tracing(false);
            audit::replay(args)
        }
        Command::Keys { command } => audit::keys(command),
        Command::Index { command: IndexCommand::Rebuild { data_dir } } => {
            init_tracing(false);
            rebuild_index(&data_dir)
        }
        Command::Projections { command: ProjectionsCommand::Rebuild { data_dir, name } } => {
            init_tracing(false);
            rebuild_projections(&data_dir, name.as_deref())
        }
        Command::Bench { command } => {
            init_tracing(false);
            bench::run(command)
        }
        Command::Debug { command } => debug::run(command),
        Command::Demo(args) => {
            init_tracing(false);
            demo::run(args)
        }
        Command::Openapi { out } => {
            if let Some(parent) = out.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            match std::fs::write(&out, crate::api::openapi::document_text()) {
                Ok(()) => {
                    println!("wrote {}", out.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {}: {e}", out.display());
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// Logs go to stderr; `json` for machine-read logs. Never personal data: ids only.
pub fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("VIVIRK_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

fn verify(data_dir: &std::path::Path, stream: Option<&str>) -> ExitCode {
    if let Some(s) = stream
        && let Err(e) = log::StreamId::parse(s)
    {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let started = std::time::Instant::now();
    match log::verify::verify_dir(data_dir, stream) {
        Ok(r) => {
            let head = r.head.map(|(p, h)| format!("position {p}, hash {h}")).unwrap_or_else(|| "empty".into());
            println!(
                "ok: {} events verified in {} segments ({:.2}s); head {head}",
                r.events,
                r.segments,
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(f) => {
            println!("FAILED at position {}: {}", f.position, f);
            ExitCode::from(1)
        }
    }
}

fn rebuild_index(data_dir: &std::path::Path) -> ExitCode {
    let index_dir = data_dir.join("index");
    if !data_dir.join("log").is_dir() {
        eprintln!("error: {} holds no log", data_dir.display());
        return ExitCode::from(2);
    }
    // Take the directory lock before touching the index: a running server must not lose it.
    let lock = match crate::log::lock_data_dir(data_dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if index_dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&index_dir)
    {
        eprintln!("error: cannot remove {}: {e}", index_dir.display());
        return ExitCode::from(1);
    }
    drop(lock);
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut config = LogConfig::new(data_dir);
    let b = bar.clone();
    config.progress = Some(std::sync::Arc::new(move |done, total| {
        b.set_length(total);
        b.set_position(done);
    }));
    let started = std::time::Instant::now();
    match EventLog::open(config) {
        Ok((log, report)) => {
            bar.finish();
            if let Err(e) = log.flush_index() {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "index rebuilt: {} events in {secs:.2}s ({:.0} events/s)",
                report.index_caught_up,
                report.index_caught_up as f64 / secs.max(1e-9)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            bar.abandon();
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn rebuild_projections(data_dir: &std::path::Path, name: Option<&str>) -> ExitCode {
    use crate::projections::{NAMES, ProjectionConfig, Projections};
    if let Some(n) = name
        && !NAMES.contains(&n)
    {
        eprintln!("error: unknown projection {n:?}; one of {}", NAMES.join(", "));
        return ExitCode::from(2);
    }
    if !data_dir.join("log").is_dir() {
        eprintln!("error: {} holds no log", data_dir.display());
        return ExitCode::from(2);
    }
    // Opening the log takes the data directory's lock, so a running server keeps its store.
    let log = match EventLog::open(LogConfig::new(data_dir)) {
        Ok((log, _)) => log,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let bar = indicatif::ProgressBar::new(log.committed());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut config = ProjectionConfig::new(data_dir);
    let b = bar.clone();
    config.progress = Some(std::sync::Arc::new(move |done, total| {
        b.set_length(total);
        b.set_position(done);
    }));
    let started = std::time::Instant::now();
    match Projections::rebuild(log, std::sync::Arc::new(crate::clock::SystemClock), config) {
        Ok((p, report)) => {
            bar.finish();
            let secs = started.elapsed().as_secs_f64();
            println!(
                "projections rebuilt ({}): {} events, {} courses, {} skipped, in {secs:.2}s ({:.0} events/s)",
                name.unwrap_or("all"),
                report.caught_up,
                p.course_ids().len(),
                p.skipped(),
                report.caught_up as f64 / secs.max(1e-9)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            bar.abandon();
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Two changes to glibc's malloc, both found by `benches/soak.py`.
///
/// glibc's malloc raises its mmap threshold to the size of the largest block freed (up to
/// 32 MiB) and from then on serves such blocks from its per-thread arenas, which keep them.
/// Every password hash or check allocates argon2's 19 MiB working memory on whichever
/// blocking-pool thread runs it, so after some logins most arenas held one: the server's RSS
/// went from 42 MiB to 268 MiB after 50 sequential logins and to 650–730 MiB after 300 logins
/// four at a time, and stayed there. Setting the threshold turns the dynamic one off: blocks of
/// 1 MiB and more are mapped and returned to the OS when freed.
///
/// And glibc gives threads up to eight arenas per core, each keeping what was freed in it for
/// reuse there. The server's threads (HTTP workers, the blocking pool, the writer, the
/// projections' persister) allocate in one and free in another, so free memory piled up in arenas
/// its next user does not run in: a 2-minute soak at 5,000 req/s ended with 40 MiB kept free, and
/// 12 MiB with the arenas limited to one per core (RSS growth 199 → 140 KiB per 1,000 events).
fn tune_the_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let arenas = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
        // SAFETY: mallopt only changes allocator parameters; called before any other thread starts.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
            libc::mallopt(libc::M_ARENA_MAX, arenas as libc::c_int);
        }
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod allocator_tests {
    /// How many arenas glibc has made (`<heap nr=…>` in `malloc_info`'s report).
    fn arenas() -> usize {
        let (mut buf, mut len): (*mut libc::c_char, libc::size_t) = (std::ptr::null_mut(), 0);
        // SAFETY: open_memstream allocates the buffer it reports; malloc_info writes into it;
        // the buffer is read after fclose and freed once.
        unsafe {
            let f = libc::open_memstream(&mut buf, &mut len);
            assert!(!f.is_null());
            assert_eq!(libc::malloc_info(0, f), 0);
            libc::fclose(f);
            let report = std::slice::from_raw_parts(buf as *const u8, len).to_vec();
            libc::free(buf.cast());
            String::from_utf8_lossy(&report).matches("<heap nr=").count()
        }
    }

    /// Four threads per core allocating at once get arenas of their own unless the server's
    /// tuning caps them at one per core. Run in a child process of this test binary, before any other thread
    /// of it has allocated (the harness's threads would count).
    #[test]
    fn the_allocator_keeps_one_arena_per_core() {
        const CHILD: &str = "VIVIRK_ARENA_TEST_CHILD";
        let Some(tuned) = std::env::var_os(CHILD) else {
            let exe = std::env::current_exe().unwrap();
            let run = |tuned: &str| {
                let out = std::process::Command::new(&exe)
                    .args(["--exact", "cli::allocator_tests::the_allocator_keeps_one_arena_per_core", "--nocapture"])
                    .args(["--test-threads", "1"])
                    .env(CHILD, tuned)
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
                text.lines()
                    .find_map(|l| l.split("arenas: ").nth(1)?.trim().parse::<usize>().ok())
                    .expect("the child's count")
            };
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
            let (tuned, untuned) = (run("1"), run("0"));
            assert!(tuned <= cores, "{tuned} arenas with the tuning, {cores} cores");
            assert!(untuned > cores, "the test must be able to fail: {untuned} arenas untuned");
            return;
        };
        if tuned == "1" {
            super::tune_the_allocator();
        }
        let threads = 4 * std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
        let start = std::sync::Barrier::new(threads);
        let held = std::sync::Barrier::new(threads);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    start.wait();
                    let blocks: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 4096]).collect();
                    held.wait();
                    std::hint::black_box(blocks);
                });
            }
        });
        println!("arenas: {}", arenas());
    }
}
