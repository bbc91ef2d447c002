//! `vivirk export`, `vivirk verify --file`, `vivirk replay`, `vivirk keys show`.
//!
//! Tools that read a data directory open the log (which takes its lock, so the server must be
//! stopped) and leave a trace in the access log like any other use: account none, role
//! `operator`, with the `--purpose` given.

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use uuid::Uuid;

use crate::audit::access::AccessStore;
use crate::audit::checkpoint::latest_in;
use crate::audit::export::{CheckpointCheck, Scope, verify_export, write_export};
use crate::audit::{AccessEntry, AccessKind, AuditStore, CheckpointKey, Checkpoints, PublicKey};
use crate::clock::{Clock, SystemClock};
use crate::domain::CourseId;
use crate::log::{EventLog, LogConfig, OwnedEnvelopeJson, StreamId};

#[derive(Args)]
pub struct ExportArgs {
    #[arg(long, env = "VIVIRK_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Export one course (default: the whole log).
    #[arg(long)]
    course: Option<Uuid>,
    #[arg(long)]
    out: PathBuf,
    /// Why the export is made (kept in the access log).
    #[arg(long)]
    purpose: String,
}

#[derive(Args)]
pub struct ReplayArgs {
    #[arg(long, env = "VIVIRK_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// The course (required with a data directory; with --file, the file's course).
    #[arg(long)]
    course: Option<Uuid>,
    /// Replay an export or a downloaded record instead of a data directory (verify it first).
    #[arg(long, conflicts_with = "purpose")]
    file: Option<PathBuf>,
    /// Why the course is replayed (required with a data directory; kept in the access log).
    #[arg(long)]
    purpose: Option<String>,
    /// One JSON object per event: `{"event", "state"}`.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Print the checkpoint public key as a JWK (what `/.well-known/vivirk-checkpoint-key`
    /// serves), to hand to auditors.
    Show {
        #[arg(long, env = "VIVIRK_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(1)
}

fn open_log(data_dir: &Path) -> Result<EventLog, String> {
    if !data_dir.join("log").is_dir() {
        return Err(format!("{} holds no log", data_dir.display()));
    }
    EventLog::open(LogConfig::new(data_dir)).map(|(log, _)| log).map_err(|e| e.to_string())
}

fn trace_use(
    store: &AuditStore,
    course: Option<Uuid>,
    kind: AccessKind,
    tool: &str,
    purpose: &str,
) -> Result<(), String> {
    let purpose = purpose.trim();
    if purpose.is_empty() || purpose.chars().count() > crate::api::MAX_PURPOSE {
        return Err(format!("--purpose must be 1..={} characters", crate::api::MAX_PURPOSE));
    }
    let entry = AccessEntry {
        at: SystemClock.now(),
        account_id: None,
        role: "operator".into(),
        course_id: course,
        kind,
        resource: tool.into(),
        criteria: None,
        purpose: Some(purpose.to_owned()),
    };
    AccessStore::new(store.clone()).and_then(|s| s.write(&[entry])).map_err(|e| e.to_string())
}

pub fn export(args: ExportArgs) -> ExitCode {
    let log = match open_log(&args.data_dir) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let store = match AuditStore::open(&args.data_dir) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    // Sign the head now if there is a key (the server would on its next tick), so the export is
    // covered to its end; without a key (never served), export the chains alone.
    let (checkpoint, key) = match CheckpointKey::load(&args.data_dir) {
        Ok(key) => {
            let public = key.public().clone();
            let cps = Checkpoints::new(key, store.clone(), log.clone(), std::sync::Arc::new(SystemClock));
            match cps.sign_if_moved() {
                Ok(cp) => (cp, Some(public)),
                Err(e) => return fail(e),
            }
        }
        Err(_) => match latest_in(&store) {
            Ok(cp) => (cp, None),
            Err(e) => return fail(e),
        },
    };
    if checkpoint.is_some() && key.is_none() {
        return fail("stored checkpoints but no checkpoint key to publish with them");
    }
    let scope = args.course.map_or(Scope::Full, |course_id| Scope::Course { course_id });
    if let Err(e) = trace_use(&store, args.course, AccessKind::Export, "vivirk export", &args.purpose) {
        return fail(e);
    }
    let file = match std::fs::File::create(&args.out) {
        Ok(f) => f,
        Err(e) => return fail(format!("{}: {e}", args.out.display())),
    };
    let mut out = BufWriter::new(file);
    match write_export(&log, scope, checkpoint.clone(), key, SystemClock.now(), &mut out) {
        Ok(n) => {
            if let Err(e) = out.into_inner().map_err(|e| e.into_error()).and_then(|f| f.sync_all()) {
                return fail(format!("{}: {e}", args.out.display()));
            }
            let cp =
                checkpoint.map(|c| format!("checkpoint at position {}", c.position)).unwrap_or("no checkpoint".into());
            println!("wrote {n} events to {} ({cp})", args.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn read_key(arg: &str) -> Result<PublicKey, String> {
    let text = if arg.trim_start().starts_with('{') {
        arg.to_owned()
    } else {
        std::fs::read_to_string(arg).map_err(|e| format!("{arg}: {e}"))?
    };
    let key: PublicKey = serde_json::from_str(&text).map_err(|e| format!("--key is not a checkpoint JWK: {e}"))?;
    key.verifying_key()?;
    Ok(key)
}

pub fn verify_file(file: &Path, key: Option<&str>) -> ExitCode {
    let pinned = match key.map(read_key).transpose() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) => return fail(format!("{}: {e}", file.display())),
    };
    match verify_export(BufReader::new(f), pinned.as_ref()) {
        Ok(r) => {
            let scope = match r.scope {
                Scope::Full => "the whole log".to_owned(),
                Scope::Course { course_id } => format!("course {course_id}"),
            };
            let last = r.last.map(|(p, h)| format!("; last position {p}, hash {h}")).unwrap_or_default();
            println!("ok: {} events of {scope} verified{last}", r.events);
            let key = match &r.key {
                Some((kid, true)) => format!("key {kid} (pinned)"),
                Some((kid, false)) => {
                    format!("key {kid} (taken from the file: compare it with the published key, or pass --key)")
                }
                None => String::new(),
            };
            match r.checkpoint {
                CheckpointCheck::Absent => println!("no signed checkpoint: the chains are consistent, nothing more"),
                CheckpointCheck::Matched { position } => {
                    println!("signed checkpoint at position {position} matches, {key}: nothing up to it was rewritten")
                }
                CheckpointCheck::NotCovered { position } => println!(
                    "signed checkpoint at position {position} is valid ({key}) but not an event of this course; \
                     the course's own chain is checked"
                ),
            }
            ExitCode::SUCCESS
        }
        Err(f) => {
            println!("FAILED at {f}");
            ExitCode::from(1)
        }
    }
}

pub fn replay(args: ReplayArgs) -> ExitCode {
    let (course, envs) = match &args.file {
        Some(file) => match envelopes_of_file(file, args.course) {
            Ok(x) => x,
            Err(e) => return fail(e),
        },
        None => {
            let Some(course) = args.course else { return fail("--course is required with a data directory") };
            let Some(purpose) = &args.purpose else { return fail("--purpose is required with a data directory") };
            let log = match open_log(&args.data_dir) {
                Ok(l) => l,
                Err(e) => return fail(e),
            };
            let envs = match log.read_stream(&StreamId::for_entity("course", course), 1, false, usize::MAX) {
                Ok(e) => e,
                Err(e) => return fail(e),
            };
            if envs.is_empty() {
                return fail(format!("no course {course}"));
            }
            let traced = AuditStore::open(&args.data_dir)
                .map_err(|e| e.to_string())
                .and_then(|s| trace_use(&s, Some(course), AccessKind::Replay, "vivirk replay", purpose));
            if let Err(e) = traced {
                return fail(e);
            }
            (course, envs)
        }
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match crate::audit::replay::write_replay(CourseId(course), &envs, args.json, &mut out).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`| head`) is not an error worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// The envelopes of one course from an export file. The file is not verified here: run
/// `vivirk verify --file` first.
fn envelopes_of_file(file: &Path, course: Option<Uuid>) -> Result<(Uuid, Vec<crate::log::Envelope>), String> {
    use std::io::BufRead;
    let f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut lines = BufReader::new(f).lines();
    let header = lines.next().ok_or("the file is empty")?.map_err(|e| e.to_string())?;
    let header: crate::audit::ExportHeader =
        serde_json::from_str(&header).map_err(|e| format!("line 1 is not an export header: {e}"))?;
    let course = match (header.scope, course) {
        (Scope::Course { course_id }, None) => course_id,
        (Scope::Course { course_id }, Some(c)) if c == course_id => c,
        (Scope::Course { course_id }, Some(c)) => return Err(format!("the file is course {course_id}, not {c}")),
        (Scope::Full, Some(c)) => c,
        (Scope::Full, None) => return Err("a full export: name the course with --course".into()),
    };
    let stream = StreamId::for_entity("course", course);
    let mut envs = Vec::new();
    for (i, line) in lines.enumerate() {
        let line = line.map_err(|e| e.to_string())?;
        let e: OwnedEnvelopeJson =
            serde_json::from_str(&line).map_err(|err| format!("line {}: not an envelope: {err}", i + 2))?;
        if e.stream == stream.as_str() {
            envs.push(crate::audit::replay::envelope_of(e).map_err(|err| format!("line {}: {err}", i + 2))?);
        }
    }
    Ok((course, envs))
}

pub fn keys(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::Show { data_dir } => match CheckpointKey::load(&data_dir) {
            Ok(k) => {
                println!("{}", serde_json::to_string_pretty(k.public()).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("{e} (the server creates the key on its first start)")),
        },
    }
}
