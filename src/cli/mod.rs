//! The `vivirk` command line: parses arguments and hands over to the library. Nothing here
//! knows how the log or the API work inside.

mod bench;
mod debug;
mod demo;

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
    /// Recompute the hash chains of the log and name the first position that does not verify.
    Verify {
        #[arg(long, env = "VIVIRK_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// Check one stream's chain (and each of its events' own hashes) only.
        #[arg(long)]
        stream: Option<String>,
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

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => crate::serve::run(args),
        Command::Verify { data_dir, stream } => {
            init_tracing(false);
            verify(&data_dir, stream.as_deref())
        }
        Command::Index { command: IndexCommand::Rebuild { data_dir } } => {
            init_tracing(false);
            rebuild_index(&data_dir)
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
