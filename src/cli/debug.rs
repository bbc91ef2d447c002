//! Hidden helpers for the crash tests: a process that appends until it is killed and reports
//! every acknowledged event on stdout.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use uuid::Uuid;

use crate::log::{EventLog, ExpectedVersion, LogConfig, StreamId};

#[derive(Subcommand)]
pub enum DebugCommand {
    /// Append from `tasks` concurrent tasks until killed; print `ack TASK EVENT_ID POSITION`
    /// for every acknowledged event, flushed line by line.
    AppendLoop {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 8)]
        tasks: usize,
        /// Segment size, small to make the crash test cross segment rolls.
        #[arg(long, default_value_t = 64 << 20)]
        segment_size: u64,
    },
}

pub fn run(cmd: DebugCommand) -> ExitCode {
    let DebugCommand::AppendLoop { data_dir, tasks, segment_size } = cmd;
    let mut config = LogConfig::new(&data_dir);
    config.segment_size = segment_size;
    let log = match EventLog::open(config) {
        Ok((log, _)) => log,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    println!("ready {}", log.head().0);
    let _ = std::io::stdout().flush();
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else { return ExitCode::from(1) };
    rt.block_on(async move {
        let mut handles = Vec::new();
        for t in 0..tasks {
            let log = log.clone();
            handles.push(tokio::spawn(async move {
                // A few shared streams so tasks interleave in the same stream, and some
                // three-event appends so atomicity is exercised too.
                let mut i = 0u64;
                loop {
                    let stream = StreamId::for_entity("course", Uuid::from_u128((t as u128 + i as u128) % 5));
                    let n = if i.is_multiple_of(4) { 3 } else { 1 };
                    let events: Vec<_> = (0..n).map(|k| super::bench::sample_event(i * 3 + k)).collect();
                    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
                    match log.append(&stream, ExpectedVersion::Any, events).await {
                        Ok(r) => {
                            let mut out = std::io::stdout().lock();
                            for (k, id) in ids.iter().enumerate() {
                                let _ = writeln!(out, "ack {t} {id} {}", r.first_position + k as u64);
                            }
                            let _ = out.flush();
                        }
                        Err(e) => {
                            eprintln!("append failed: {e}");
                            return;
                        }
                    }
                    i += 1;
                }
            }));
        }
        for h in handles {
            let _ = h.await;
        }
    });
    ExitCode::SUCCESS
}
