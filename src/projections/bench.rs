//! `vivirk bench projections`: a realistic log of N events over M courses (opened, staffed,
//! with goals, a placement and mentor agreement, a contact plan, actions, then mostly
//! contacts, check-ins, guidance sessions and meetings, with a few corrections), then:
//! the rebuild rate from position 1 (including the final persist), reopening from the store,
//! and p50/p99 of a 50-item contact-history page and of a course status read, in process.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use time::macros::{date, datetime};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::{HistoryFilter, ProjectionConfig, Projections};
use crate::clock::{ManualClock, SharedClock};
use crate::domain::course::*;
use crate::domain::{AccountId, ActionId, AgreementId, Channel, CompanyId, CourseId, Direction, GoalId, LifeDomain};
use crate::domain::{PlacementId, ProgrammeKind, Role};
use crate::log::{Durability, EventLog, ExpectedVersion, LogActor, LogConfig, Metadata, NewEvent, StreamId};

fn text<const N: usize>(s: &str) -> Result<crate::domain::Text<N>, String> {
    crate::domain::Text::try_from(s).map_err(|e| e.to_string())
}

#[doc(hidden)] // also generates the history of benches/hot_paths.rs
pub struct Gen {
    pub n: u64,
}

impl Gen {
    fn id(&mut self) -> Uuid {
        self.n += 1;
        Uuid::from_u128(0xB000_0000_0000 + u128::from(self.n))
    }
}

fn ev(event: &CourseEvent, id: Uuid, actor: (AccountId, Role), at: OffsetDateTime) -> NewEvent {
    NewEvent {
        event_id: id,
        event_type: event.event_type().into(),
        schema_version: event.schema_version(),
        occurred_at: at,
        actor: LogActor { account_id: actor.0.0, role: actor.1.as_str().into() },
        metadata: Metadata::default(),
        data: event.to_data(),
    }
}

/// The id of generated course `c`.
pub(crate) fn course_id(c: u64) -> CourseId {
    CourseId(Uuid::from_u128(0xC0_0000 + u128::from(c)))
}

/// The caseworker and mentor of a generated course, when they must be real accounts (so that
/// their tokens can read and write it: `vivirk bench seed`). Everyone else stays a bare id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Staff {
    pub(crate) caseworker: AccountId,
    pub(crate) mentor: AccountId,
}

/// One course's events, in order.
#[doc(hidden)]
pub fn course_events(g: &mut Gen, c: u64, per_course: u64) -> Result<Vec<NewEvent>, String> {
    course_events_staffed(g, c, per_course, None)
}

/// One course's events, in order, with `staff` as its caseworker and mentor if given.
pub(crate) fn course_events_staffed(
    g: &mut Gen,
    c: u64,
    per_course: u64,
    staff: Option<Staff>,
) -> Result<Vec<NewEvent>, String> {
    let course = course_id(c);
    let yp = AccountId(Uuid::from_u128(0x1_0000_0000 + u128::from(c)));
    let cw = staff.map_or(AccountId(Uuid::from_u128(0x2_0000 + u128::from(c % 200))), |s| s.caseworker);
    let cw = (cw, Role::Caseworker);
    let yc = (AccountId(Uuid::from_u128(0x3_0000 + u128::from(c % 150))), Role::YouthCoordinator);
    let teacher = (AccountId(Uuid::from_u128(0x4_0000 + u128::from(c % 300))), Role::Teacher);
    let mentor = staff.map_or(AccountId(Uuid::from_u128(0x5_0000 + u128::from(c % 1000))), |s| s.mentor);
    let mentor = (mentor, Role::Mentor);
    let company = CompanyId(Uuid::from_u128(0x6_0000 + u128::from(c % 400)));
    let start = datetime!(2025-01-06 08:00 UTC) + Duration::days((c % 60) as i64);
    let mut at = start;
    let mut out = Vec::with_capacity(per_course as usize);
    let mut push = |g: &mut Gen, e: CourseEvent, actor, at| {
        let id = g.id();
        out.push(ev(&e, id, actor, at));
        id
    };
    push(
        g,
        CourseOpened {
            course_id: course,
            young_person: yp,
            programme: ProgrammeKind::Ressourceforloeb,
            referring_caseworker: cw.0,
            municipality: text("Aarhus Kommune")?,
            start_date: start.date(),
        }
        .into(),
        cw,
        at,
    );
    for (who, role) in [yc, teacher, mentor] {
        let company_id = (role == Role::Mentor).then_some(company);
        push(g, ParticipantAssigned { account_id: who, role, relation: None, company_id }.into(), cw, at);
    }
    let goal = GoalId(g.id());
    push(
        g,
        GoalSet {
            goal_id: goal,
            life_domain: LifeDomain::WorkLife,
            title: text("Work 15 hours a week in a kitchen")?,
            description: None,
        }
        .into(),
        cw,
        at,
    );
    let placement = PlacementId(g.id());
    push(
        g,
        PlacementStarted {
            placement_id: placement,
            kind: PlacementKind::PracticeArena,
            company_id: company,
            workplace: Workplace::Ordinary,
            mentor: Some(mentor.0),
            hours_per_week: 12,
            tasks: vec![],
            start_date: start.date(),
        }
        .into(),
        cw,
        at,
    );
    let agreement = AgreementId(g.id());
    push(
        g,
        MentorAgreementMade {
            agreement_id: agreement,
            placement_id: placement,
            mentor: mentor.0,
            valid_from: start.date(),
            valid_to: date!(2025 - 06 - 30),
            goal_ids: vec![goal],
            tasks: vec![text("kitchen prep")?],
            hours_per_week: 2,
        }
        .into(),
        cw,
        at,
    );
    push(g, ContactPlanAgreed { every_days: 14, by: vec![cw.0, yc.0], note: None }.into(), cw, at);
    let summary: crate::domain::LongText =
        text("Talked about getting up in time for the morning shift and the bus card; agreed to call Friday.")?;
    let mut last_contact = None;
    let mut k = 8u64; // events so far
    while k < per_course {
        at += Duration::hours(20 + (k % 48) as i64);
        let e: (CourseEvent, (AccountId, Role)) = match k % 10 {
            0..=3 => (
                ContactLogged {
                    with: vec![yp],
                    channel: [Channel::Phone, Channel::InPerson, Channel::Text, Channel::Video][(k % 4) as usize],
                    direction: if k.is_multiple_of(3) { Direction::FromYoungPerson } else { Direction::ToYoungPerson },
                    outreach: k.is_multiple_of(2),
                    individual: k.is_multiple_of(5),
                    duration_minutes: 20,
                    summary: summary.clone(),
                }
                .into(),
                [cw, yc, teacher][(k % 3) as usize],
            ),
            4 | 5 => (
                CheckInLogged {
                    placement_id: placement,
                    attendance: if k.is_multiple_of(7) { Attendance::AbsentNotified } else { Attendance::Present },
                    wellbeing: (k % 5 + 1) as u8,
                    tasks_done: vec![text("stocked shelves")?],
                    concerns: None,
                    next_step: Some(text("Try the till with a colleague next week.")?),
                }
                .into(),
                mentor,
            ),
            6 => (
                GuidanceSessionHeld {
                    work_tasks: vec![text("washing up")?],
                    goal_ids: vec![goal],
                    duration_minutes: 30,
                    summary: summary.clone(),
                }
                .into(),
                teacher,
            ),
            7 => (
                MeetingHeld {
                    kind: MeetingKind::Coordination,
                    attendees: vec![yp, cw.0, yc.0],
                    other_attendees: vec![],
                    decisions: vec![text("Keep the Monday routine.")?],
                }
                .into(),
                cw,
            ),
            8 => (
                ActionAgreed {
                    action_id: ActionId(Uuid::from_u128(0xAC_0000_0000 + u128::from(c) * 1000 + u128::from(k))),
                    what: text("Apply for a bus card")?,
                    owner: teacher.0,
                    due: (at + Duration::days(14)).date(),
                    method: None,
                    goal_id: Some(goal),
                    agreed_by: vec![yp, teacher.0],
                }
                .into(),
                cw,
            ),
            _ => match last_contact {
                Some(target) if k % 20 == 9 => (
                    EventCorrected {
                        target_event_id: target,
                        reason: text("Wrong duration.")?,
                        replacement: Box::new(
                            ContactLogged {
                                with: vec![yp],
                                channel: Channel::Phone,
                                direction: Direction::ToYoungPerson,
                                outreach: true,
                                individual: true,
                                duration_minutes: 45,
                                summary: summary.clone(),
                            }
                            .into(),
                        ),
                    }
                    .into(),
                    cw,
                ),
                _ => (
                    GoalProgressRecorded { goal_id: goal, percent: Some((k % 100) as u8), note: summary.clone() }
                        .into(),
                    cw,
                ),
            },
        };
        let is_contact = matches!(e.0, CourseEvent::ContactLogged(_));
        let id = push(g, e.0, e.1, at);
        if is_contact {
            last_contact = Some(id);
        }
        k += 1;
    }
    Ok(out)
}

/// Appends the streams' events interleaved, as real traffic would, a few events per append.
/// Returns how many were appended.
pub(crate) fn append_interleaved(log: &EventLog, streams: Vec<(StreamId, Vec<NewEvent>)>) -> Result<u64, String> {
    let mut iters: Vec<_> = streams.into_iter().map(|(s, e)| (s, e.into_iter())).collect();
    let mut appended = 0u64;
    loop {
        let mut any = false;
        for (s, it) in &mut iters {
            let batch: Vec<NewEvent> = it.by_ref().take(10).collect();
            if batch.is_empty() {
                continue;
            }
            any = true;
            appended += batch.len() as u64;
            log.append_blocking(s, ExpectedVersion::Any, batch).map_err(|e| e.to_string())?;
        }
        if !any {
            return Ok(appended);
        }
    }
}

/// CPU seconds used so far by the whole process (all threads, user + system). The machine may
/// be shared, so the bench prints this next to wall-clock times.
fn cpu_seconds() -> f64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage only writes into the struct we pass.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) } != 0 {
        return 0.0;
    }
    // SAFETY: initialised above (zeroed, then filled in by a successful call).
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub fn run(dir: &Path, total: u64, courses: u64) -> Result<(), String> {
    let courses = courses.max(1);
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let clock = ManualClock::new(datetime!(2025-09-01 10:00 UTC));
    let shared: SharedClock = Arc::new(clock.clone());
    let mut config = LogConfig::new(dir);
    config.durability = Durability::None;
    config.clock = shared.clone();
    let (log, report) = EventLog::open(config).map_err(|e| e.to_string())?;
    println!("vivirk bench projections — {total} events over {courses} courses");
    if report.head == 0 {
        let started = Instant::now();
        let per_course = (total / courses).max(10);
        let mut g = Gen { n: 0 };
        let streams: Vec<_> = (0..courses)
            .map(|c| {
                let events = course_events(&mut g, c, per_course)?;
                Ok((StreamId::for_entity("course", course_id(c).0), events))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let appended = append_interleaved(&log, streams)?;
        println!("  generated {appended} events in {:.1}s", started.elapsed().as_secs_f64());
    }
    let head = log.committed();
    clock.set(datetime!(2025-09-01 10:00 UTC));

    // Decode-only pass: what reading and decoding the log costs on its own.
    let started = Instant::now();
    let cpu = cpu_seconds();
    let mut decoded = 0u64;
    for env in log.iter_from(1).map_err(|e| e.to_string())? {
        let env = env.map_err(|e| e.to_string())?;
        if super::decode_envelope(&env).is_ok() {
            decoded += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  read + decode only: {decoded} events in {secs:.2}s = {:.0} events/s (one thread; cpu {:.2}s)",
        decoded as f64 / secs,
        cpu_seconds() - cpu
    );
    let started = Instant::now();
    let cpu = cpu_seconds();
    let (p, r) =
        Projections::rebuild(log.clone(), shared.clone(), ProjectionConfig::new(dir)).map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  rebuild: {} events in {secs:.2}s = {:.0} events/s (incl. persisting {} courses; {} skipped; cpu {:.2}s)",
        r.caught_up,
        r.caught_up as f64 / secs,
        p.course_ids().len(),
        p.skipped(),
        cpu_seconds() - cpu
    );
    drop(p);
    let started = Instant::now();
    let cpu = cpu_seconds();
    let (p, r) =
        Projections::open(log.clone(), shared.clone(), ProjectionConfig::new(dir)).map_err(|e| e.to_string())?;
    println!(
        "  reopen from store: {} courses at checkpoint {} (head {head}) in {:.2}s (cpu {:.2}s)",
        r.loaded,
        r.checkpoint,
        started.elapsed().as_secs_f64(),
        cpu_seconds() - cpu
    );

    let ids = p.course_ids();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let n = 20_000;
    let mut page_ms = Vec::with_capacity(n);
    let mut items = 0usize;
    let filter = HistoryFilter::default();
    for _ in 0..n {
        let id = ids[(next() % ids.len() as u64) as usize];
        let t = Instant::now();
        let page = p.contact_history(id, &filter, None, 50).map_err(|e| e.to_string())?;
        page_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        items += page.map_or(0, |pg| pg.items.len());
    }
    page_ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "  contact history, 50-item page with payloads from the log: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({:.1} items/page)",
        pct(&page_ms, 0.5),
        pct(&page_ms, 0.99),
        pct(&page_ms, 1.0),
        items as f64 / n as f64
    );
    let mut status_ms = Vec::with_capacity(n);
    for _ in 0..n {
        let id = ids[(next() % ids.len() as u64) as usize];
        let t = Instant::now();
        let s = p.course_status(id);
        status_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(s);
    }
    status_ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "  course status: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        pct(&status_ms, 0.5),
        pct(&status_ms, 0.99),
        pct(&status_ms, 1.0)
    );
    let mut freq_ms = Vec::with_capacity(n);
    for _ in 0..n {
        let id = ids[(next() % ids.len() as u64) as usize];
        let t = Instant::now();
        std::hint::black_box(p.contact_frequency(id));
        freq_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    freq_ms.sort_by(|a, b| a.total_cmp(b));
    println!("  contact frequency: p50 {:.3} ms, p99 {:.3} ms", pct(&freq_ms, 0.5), pct(&freq_ms, 0.99));
    let t = Instant::now();
    let list = p.contact_worklist(AccountId(Uuid::from_u128(0x2_0000)));
    println!("  caseworker worklist ({} courses): {:.3} ms", list.len(), t.elapsed().as_secs_f64() * 1000.0);
    Ok(())
}
