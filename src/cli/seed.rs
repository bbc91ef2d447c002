//! `vivirk bench seed` (hidden): a data directory for the comparison with PostgreSQL
//! (`benches/compare.sh`). N events over C courses, generated exactly as `vivirk bench
//! projections` generates them (opened, staffed, planned, then mostly contacts, check-ins,
//! guidance sessions and meetings, a few corrections) and appended straight to the log (real
//! envelopes, hashes and index; no fsync per append, the data is flushed at the end). The courses'
//! caseworkers and mentors are real accounts with a known password, so their tokens can read and
//! write them through `vivirk serve`. A JSON manifest names the courses, each one's placement and
//! who staffs it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::auth::{Auth, AuthConfig, NewAccount, Principal};
use crate::clock::{SharedClock, SystemClock};
use crate::domain::{AccountId, Role};
use crate::log::{Durability, EventLog, LogConfig, StreamId};
use crate::projections::bench::{Gen, Staff, append_interleaved, course_events_staffed, course_id};

#[derive(clap::Args)]
pub struct SeedArgs {
    /// A fresh data directory (refused if its log holds events).
    #[arg(long)]
    data_dir: PathBuf,
    /// Course events in total (events / courses per course, at least 10).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    #[arg(long, default_value_t = 10_000)]
    courses: u64,
    /// Caseworker accounts `bench.cw.{i}`; course c is staffed by caseworker c mod this.
    #[arg(long, default_value_t = 4)]
    caseworkers: u64,
    /// Mentor accounts `bench.mentor.{i}`; course c is staffed by mentor c mod this.
    #[arg(long, default_value_t = 8)]
    mentors: u64,
    /// The password of every bench account.
    #[arg(long, default_value = "bench-password-2026")]
    password: String,
    /// Where to write the manifest (JSON).
    #[arg(long)]
    manifest: PathBuf,
}

pub fn run(args: SeedArgs) -> ExitCode {
    match seed(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn seed(mut a: SeedArgs) -> Result<(), String> {
    a.caseworkers = a.caseworkers.max(1);
    a.mentors = a.mentors.max(1);
    let started = Instant::now();
    std::fs::create_dir_all(&a.data_dir).map_err(|e| format!("{}: {e}", a.data_dir.display()))?;
    let mut config = LogConfig::new(&a.data_dir);
    config.durability = Durability::None;
    let (log, report) = EventLog::open(config).map_err(|e| e.to_string())?;
    if report.head != 0 {
        return Err(format!("{} already holds {} events; seed a fresh directory", a.data_dir.display(), report.head));
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let (cws, mentors) = rt.block_on(accounts(&a, &log))?;

    let per_course = (a.events / a.courses.max(1)).max(10);
    let mut g = Gen { n: 0 };
    let mut streams = Vec::with_capacity(a.courses as usize);
    let mut courses = Vec::with_capacity(a.courses as usize);
    for c in 0..a.courses {
        let (cw, mentor) = (&cws[(c % a.caseworkers) as usize], &mentors[(c % a.mentors) as usize]);
        let staff = Staff { caseworker: cw.1, mentor: mentor.1 };
        let events = course_events_staffed(&mut g, c, per_course, Some(staff))?;
        let placement = events
            .iter()
            .find(|e| e.event_type == "PlacementStarted")
            .and_then(|e| serde_json::from_slice::<serde_json::Value>(&e.data).ok())
            .and_then(|v| v.get("placement_id").and_then(|p| p.as_str()).map(str::to_owned))
            .ok_or("a generated course without a placement")?;
        courses.push(json!({"id": course_id(c).0, "placement_id": placement, "caseworker": cw.0, "mentor": mentor.0}));
        streams.push((StreamId::for_entity("course", course_id(c).0), events));
    }
    let appended = append_interleaved(&log, streams)?;
    log.flush_index().map_err(|e| e.to_string())?;
    rt.block_on(log.shutdown());
    let manifest = json!({
        "events": appended,
        "head": log.committed(),
        "per_course": per_course,
        "password": a.password,
        "caseworkers": cws.iter().map(|c| &c.0).collect::<Vec<_>>(),
        "mentors": mentors.iter().map(|m| &m.0).collect::<Vec<_>>(),
        "courses": courses,
    });
    let text = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    std::fs::write(&a.manifest, text).map_err(|e| format!("{}: {e}", a.manifest.display()))?;
    println!(
        "seeded {appended} course events over {} courses (log head {}) in {:.1}s; manifest {}",
        a.courses,
        log.committed(),
        started.elapsed().as_secs_f64(),
        a.manifest.display()
    );
    Ok(())
}

/// The initial admin, then `bench.cw.{i}` caseworkers and `bench.mentor.{i}` mentors.
async fn accounts(
    a: &SeedArgs,
    log: &EventLog,
) -> Result<(Vec<(String, AccountId)>, Vec<(String, AccountId)>), String> {
    let clock: SharedClock = Arc::new(SystemClock);
    let auth_db = crate::open_sled(&a.data_dir.join("auth"), Some(1000)).map_err(|e| e.to_string())?;
    let auth =
        Auth::open(&a.data_dir, log.clone(), auth_db, clock, AuthConfig::default()).map_err(|e| e.to_string())?;
    auth.bootstrap_admin().await.map_err(|e| e.to_string())?;
    let admin = auth.list_accounts().into_iter().find(|v| v.role == Role::Admin).ok_or("no admin account")?;
    let admin = Principal { account_id: admin.account_id, role: Role::Admin, username: admin.username };
    let mut made = [Vec::new(), Vec::new()];
    for (out, (prefix, role, n)) in
        made.iter_mut().zip([("bench.cw", Role::Caseworker, a.caseworkers), ("bench.mentor", Role::Mentor, a.mentors)])
    {
        for i in 0..n {
            let username = format!("{prefix}.{i}");
            let new = NewAccount {
                username: username.clone(),
                display_name: username.clone(),
                role,
                password: a.password.clone(),
            };
            let v = auth.create_account(&admin, new).await.map_err(|e| format!("{username}: {e}"))?;
            out.push((username, v.account_id));
        }
    }
    let [cws, mentors] = made;
    Ok((cws, mentors))
}
