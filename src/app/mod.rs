//! The application layer: turns an authenticated request into a decision and an append, and
//! answers "may this account see this course?". It knows the log and the domain, not HTTP.
//!
//! Course and company decision states are cached in memory and always brought up to date from
//! the log before a decision (so the cache can never be wrong, only stale, and staleness is
//! fixed by reading the stream's tail). Writes to one course are serialised by a per-course
//! lock; writes to different courses run in parallel and meet only in the log's group commit.

pub mod access;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::domain::{
    AccountId, Actor, CommandContext, CompanyCommand, CompanyEvent, CompanyId, CompanyState, CourseCommand,
    CourseEvent, CourseId, CourseState, DomainError, EventMeta, Role, apply, apply_company, decide, decide_company,
};
use crate::log::{AppendError, EventLog, ExpectedVersion, LogActor, Metadata, NewEvent, StreamId};

pub use access::Permission;

/// Who is asking. Built by the HTTP layer from a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub account_id: AccountId,
    pub role: Role,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor { account_id: self.account_id, role: self.role }
    }
}

/// Options a write may carry besides its command.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `If-Match`: the stream version the client last saw.
    pub if_match: Option<u64>,
    /// The client's own id for the (first) event: a retry with the same id appends nothing.
    pub event_id: Option<Uuid>,
    /// When it happened, if not now (an offline check-in synced later).
    pub occurred_at: Option<OffsetDateTime>,
    pub correlation_id: Option<Uuid>,
    pub device_id: Option<String>,
}

/// What a successful write reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Written {
    /// The id of the (first) event written.
    pub event_id: Uuid,
    /// Its global log position.
    pub position: u64,
    /// The stream's version after the write.
    pub version: u64,
    /// True when this repeated an earlier, identical write: nothing new was stored.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// The id of what the write created (a course, company, goal, action, placement or
    /// agreement), when it created something.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
}

/// One error enum for the layer; `api::problem` maps it to HTTP in one place.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Unknown, or not visible to the caller: the same answer, so ids leak nothing.
    #[error("not found")]
    NotFound,
    #[error("your role may not {0}")]
    Forbidden(&'static str),
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("the stream is at version {current}, not the one in If-Match")]
    PreconditionFailed { current: u64 },
    #[error("someone else wrote to this course at the same time; retry")]
    Concurrent,
    #[error("event id {0} is already used by different content")]
    EventIdConflict(Uuid),
    #[error("{0}")]
    Invalid(String),
    #[error("storage unavailable: {0}")]
    Storage(String),
    #[error("the record could not be read: {0}")]
    Damaged(String),
}

impl From<AppendError> for AppError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::WrongExpectedVersion { .. } => AppError::Concurrent,
            AppendError::EventIdConflict { event_id } => AppError::EventIdConflict(event_id),
            AppendError::Invalid(m) => AppError::Invalid(m),
            AppendError::Storage(m) => AppError::Storage(m),
            AppendError::Closed => AppError::Storage("shutting down".into()),
        }
    }
}

#[derive(Default)]
struct Slot<S> {
    version: u64,
    state: S,
}

/// A bounded map of per-stream decision states. Eviction drops a state; it is rebuilt from the
/// log when next needed.
struct Cache<K, S> {
    map: Mutex<HashMap<K, Arc<tokio::sync::Mutex<Slot<S>>>>>,
    capacity: usize,
}

impl<K: std::hash::Hash + Eq + Copy, S: Default> Cache<K, S> {
    fn new(capacity: usize) -> Self {
        Cache { map: Mutex::new(HashMap::new()), capacity }
    }

    fn slot(&self, key: K) -> Arc<tokio::sync::Mutex<Slot<S>>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(&key) {
            return s.clone();
        }
        if map.len() >= self.capacity {
            // Drop about half of the slots nobody holds (every other one in the map's arbitrary
            // order): cheap, never wrong, and unlike dropping all of them it does not turn a
            // working set just over the capacity into a miss on every request.
            let mut drop_this = false;
            map.retain(|_, s| {
                drop_this = !drop_this;
                Arc::strong_count(s) > 1 || !drop_this
            });
        }
        let s = Arc::new(tokio::sync::Mutex::new(Slot::default()));
        map.insert(key, s.clone());
        s
    }
}

/// The application: the log plus decision caches.
pub struct Vivirk {
    pub log: EventLog,
    pub clock: SharedClock,
    courses: Cache<CourseId, CourseState>,
    companies: Cache<CompanyId, CompanyState>,
}

pub fn course_stream(id: CourseId) -> StreamId {
    StreamId::for_entity("course", id.0)
}

pub fn company_stream(id: CompanyId) -> StreamId {
    StreamId::for_entity("company", id.0)
}

/// A time as the log stores it and gives it back: UTC, at nanosecond precision.
fn as_stored(t: OffsetDateTime) -> OffsetDateTime {
    crate::log::envelope::from_nanos(crate::log::envelope::to_nanos(t).unwrap_or(0))
}

fn meta_of(e: &crate::log::Envelope) -> Result<EventMeta, AppError> {
    let role: Role = serde_json::from_value(serde_json::Value::String(e.actor.role.clone()))
        .map_err(|_| AppError::Damaged(format!("unknown role at position {}", e.position)))?;
    Ok(EventMeta {
        event_id: e.event_id,
        stream_version: e.stream_version,
        occurred_at: e.occurred_at,
        recorded_at: e.recorded_at,
        actor: Actor { account_id: AccountId(e.actor.account_id), role },
    })
}

/// Decodes a course envelope into its event and metadata.
pub fn decode_course(e: &crate::log::Envelope) -> Result<(CourseEvent, EventMeta), AppError> {
    let ev = CourseEvent::decode(&e.event_type, e.schema_version, &e.data)
        .map_err(|err| AppError::Damaged(format!("position {}: {err}", e.position)))?;
    Ok((ev, meta_of(e)?))
}

fn decode_company(e: &crate::log::Envelope) -> Result<(CompanyEvent, EventMeta), AppError> {
    let ev = CompanyEvent::decode(&e.event_type, e.schema_version, &e.data)
        .map_err(|err| AppError::Damaged(format!("position {}: {err}", e.position)))?;
    Ok((ev, meta_of(e)?))
}

/// What the application needs to know about one kind of stream, so that catching up and the
/// decide-then-append flow are written once for courses and companies.
trait StreamKind {
    type Id: Copy;
    type State;
    type Event;
    type Command;
    fn stream(id: Self::Id) -> StreamId;
    fn decode(e: &crate::log::Envelope) -> Result<(Self::Event, EventMeta), AppError>;
    fn apply(state: &mut Self::State, event: &Self::Event, meta: &EventMeta);
    fn decide(state: &Self::State, cmd: &Self::Command, ctx: &CommandContext) -> Result<Vec<Self::Event>, DomainError>;
    /// (event type, schema version, data).
    fn encode(event: &Self::Event) -> (&'static str, u16, Vec<u8>);
    /// Looks up in the log what the state does not keep but the command needs (a course keeps
    /// only its newest events for corrections; see `KnownEvents`).
    fn recall(
        _log: &EventLog,
        _stream: &StreamId,
        _state: &mut Self::State,
        _cmd: &Self::Command,
    ) -> Result<(), AppError> {
        Ok(())
    }
}

struct Courses;
struct Companies;

impl StreamKind for Courses {
    type Id = CourseId;
    type State = CourseState;
    type Event = CourseEvent;
    type Command = CourseCommand;
    fn stream(id: CourseId) -> StreamId {
        course_stream(id)
    }
    fn decode(e: &crate::log::Envelope) -> Result<(CourseEvent, EventMeta), AppError> {
        decode_course(e)
    }
    fn apply(state: &mut CourseState, event: &CourseEvent, meta: &EventMeta) {
        apply(state, event, meta)
    }
    fn decide(state: &CourseState, cmd: &CourseCommand, ctx: &CommandContext) -> Result<Vec<CourseEvent>, DomainError> {
        decide(state, cmd, ctx)
    }
    fn encode(event: &CourseEvent) -> (&'static str, u16, Vec<u8>) {
        (event.event_type(), event.schema_version(), event.to_data())
    }
    fn recall(log: &EventLog, stream: &StreamId, state: &mut CourseState, cmd: &CourseCommand) -> Result<(), AppError> {
        recall_course_target(log, stream, state, cmd)
    }
}

/// Before a correction or retraction: an older target the course's state no longer keeps is read
/// from the log by its id and remembered (see `KnownEvents`). Only an event of this course, at or
/// before the state's version; anything else stays unknown, and `decide` answers that.
pub fn recall_course_target(
    log: &EventLog,
    stream: &StreamId,
    state: &mut CourseState,
    cmd: &CourseCommand,
) -> Result<(), AppError> {
    let target = match cmd {
        CourseCommand::CorrectEvent(e) => e.target_event_id,
        CourseCommand::RetractEvent(e) => e.target_event_id,
        _ => return Ok(()),
    };
    if state.events.get(target).is_some() {
        return Ok(());
    }
    if let Some(env) = log.read_event(target).map_err(|e| AppError::Damaged(e.to_string()))?
        && &env.stream == stream
        && env.stream_version <= state.version
    {
        let meta = meta_of(&env)?;
        state.events.remember(target, &env.event_type, meta.actor.account_id);
    }
    Ok(())
}

impl StreamKind for Companies {
    type Id = CompanyId;
    type State = CompanyState;
    type Event = CompanyEvent;
    type Command = CompanyCommand;
    fn stream(id: CompanyId) -> StreamId {
        company_stream(id)
    }
    fn decode(e: &crate::log::Envelope) -> Result<(CompanyEvent, EventMeta), AppError> {
        decode_company(e)
    }
    fn apply(state: &mut CompanyState, event: &CompanyEvent, meta: &EventMeta) {
        apply_company(state, event, meta)
    }
    fn decide(
        state: &CompanyState,
        cmd: &CompanyCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<CompanyEvent>, DomainError> {
        decide_company(state, cmd, ctx)
    }
    fn encode(event: &CompanyEvent) -> (&'static str, u16, Vec<u8>) {
        (event.event_type(), event.schema_version(), event.to_data())
    }
}

/// How many courses' decision states are kept by default. A state is small (the course's
/// participants, goals, actions, placements and agreements, and its newest 32 events for
/// corrections), so this holds every course of a large municipality; a write to a course that
/// is not kept first reads all of its events from the log, which at 10,000 courses written at
/// random was what bounded the write rate (README, "What changed the numbers").
pub const DEFAULT_DECISION_CACHE: usize = 16_384;

impl Vivirk {
    pub fn new(log: EventLog, clock: SharedClock) -> Self {
        Self::with_decision_cache(log, clock, DEFAULT_DECISION_CACHE)
    }

    /// Keeps up to `courses` course decision states in memory (see [`DEFAULT_DECISION_CACHE`]).
    pub fn with_decision_cache(log: EventLog, clock: SharedClock, courses: usize) -> Self {
        Vivirk { log, clock, courses: Cache::new(courses.max(1)), companies: Cache::new(1024) }
    }

    /// Reads the stream's events after `slot.version` and applies them.
    fn catch_up<K: StreamKind>(&self, id: K::Id, slot: &mut Slot<K::State>) -> Result<(), AppError> {
        let stream = K::stream(id);
        loop {
            let events = self
                .log
                .read_stream(&stream, slot.version + 1, false, 1000)
                .map_err(|e| AppError::Damaged(e.to_string()))?;
            if events.is_empty() {
                return Ok(());
            }
            for e in &events {
                let (ev, meta) = K::decode(e)?;
                K::apply(&mut slot.state, &ev, &meta);
                slot.version = e.stream_version;
            }
        }
    }

    /// The decide-then-append flow, with the stream's lock held: catch up, check the caller may
    /// (`allowed`, given the state), answer a replayed client event id with its original result,
    /// check `If-Match`, decide, append at the version decided on.
    async fn execute<K: StreamKind>(
        &self,
        slot: &tokio::sync::Mutex<Slot<K::State>>,
        p: &Principal,
        id: K::Id,
        cmd: &K::Command,
        opts: WriteOptions,
        allowed: impl FnOnce(&K::State) -> Result<(), AppError>,
    ) -> Result<Written, AppError> {
        let stream = K::stream(id);
        let mut slot = slot.lock().await;
        self.catch_up::<K>(id, &mut slot)?;
        allowed(&slot.state)?;
        if let Some(w) = self.replayed(&stream, opts.event_id)? {
            return Ok(w);
        }
        if let Some(v) = opts.if_match
            && v != slot.version
        {
            return Err(AppError::PreconditionFailed { current: slot.version });
        }
        let ctx = self.context(p, &opts);
        K::recall(&self.log, &stream, &mut slot.state, cmd)?;
        let events = K::decide(&slot.state, cmd, &ctx)?;
        let new_events = events
            .iter()
            .enumerate()
            .map(|(i, ev)| {
                let (event_type, schema_version, data) = K::encode(ev);
                self.new_event(p, &opts, i, event_type, schema_version, data, ctx.occurred_at)
            })
            .collect::<Vec<_>>();
        let metas: Vec<(Uuid, OffsetDateTime)> = new_events.iter().map(|e| (e.event_id, e.occurred_at)).collect();
        let version = slot.version;
        let (written, recorded_at) = self.append(&stream, version, new_events).await?;
        // What was just appended is applied to the slot as the log now holds it (times at the
        // log's nanosecond precision, in UTC), so the stream's next write does not read its
        // own previous event back from the log and decode it: that was ~6 % of a check-in's
        // CPU under the comparison's load. A duplicate appended nothing; the next catch-up
        // reads whatever the log has.
        if let Some(recorded_at) = recorded_at {
            for (i, (ev, (event_id, occurred_at))) in events.iter().zip(metas).enumerate() {
                let meta = EventMeta {
                    event_id,
                    stream_version: version + 1 + i as u64,
                    occurred_at: as_stored(occurred_at),
                    recorded_at,
                    actor: p.actor(),
                };
                K::apply(&mut slot.state, ev, &meta);
                slot.version = meta.stream_version;
            }
        }
        Ok(written)
    }

    /// The course's decision state and version, if the principal may see the course.
    pub async fn visible_course(&self, p: &Principal, id: CourseId) -> Result<(u64, CourseState), AppError> {
        let slot = self.courses.slot(id);
        let mut slot = slot.lock().await;
        self.catch_up::<Courses>(id, &mut slot)?;
        if !access::can_see_course(p, &slot.state) {
            return Err(AppError::NotFound);
        }
        Ok((slot.version, slot.state.clone()))
    }

    /// Whether the principal may see the course (without cloning its state).
    pub async fn check_course_visible(&self, p: &Principal, id: CourseId) -> Result<u64, AppError> {
        let slot = self.courses.slot(id);
        let mut slot = slot.lock().await;
        self.catch_up::<Courses>(id, &mut slot)?;
        if !access::can_see_course(p, &slot.state) {
            return Err(AppError::NotFound);
        }
        Ok(slot.version)
    }

    /// Decides and appends one course command.
    pub async fn execute_course(
        &self,
        p: &Principal,
        id: CourseId,
        cmd: CourseCommand,
        opts: WriteOptions,
    ) -> Result<Written, AppError> {
        let slot = self.courses.slot(id);
        let opening = matches!(cmd, CourseCommand::OpenCourse(_));
        self.execute::<Courses>(&slot, p, id, &cmd, opts, |state| {
            if !opening && !access::can_see_course(p, state) {
                return Err(AppError::NotFound);
            }
            access::require(p, Permission::for_course_command(&cmd))
        })
        .await
    }

    /// Decides and appends one company command.
    pub async fn execute_company(
        &self,
        p: &Principal,
        id: CompanyId,
        cmd: CompanyCommand,
        opts: WriteOptions,
    ) -> Result<Written, AppError> {
        access::require(p, Permission::ManageCompanies)?;
        let slot = self.companies.slot(id);
        self.execute::<Companies>(&slot, p, id, &cmd, opts, |_| Ok(())).await
    }

    /// Every registered company with its state.
    pub async fn companies(&self) -> Result<Vec<(CompanyId, u64, CompanyState)>, AppError> {
        let mut out = Vec::new();
        for s in self.log.entity_streams("company") {
            if let Some(id) = s.entity_id() {
                let (v, state) = self.company(CompanyId(id)).await?;
                out.push((CompanyId(id), v, state));
            }
        }
        Ok(out)
    }

    /// The company's state, for anyone signed in (companies are not personal data).
    pub async fn company(&self, id: CompanyId) -> Result<(u64, CompanyState), AppError> {
        let slot = self.companies.slot(id);
        let mut slot = slot.lock().await;
        self.catch_up::<Companies>(id, &mut slot)?;
        if slot.version == 0 {
            return Err(AppError::NotFound);
        }
        Ok((slot.version, slot.state.clone()))
    }

    fn context(&self, p: &Principal, opts: &WriteOptions) -> CommandContext {
        let now = self.clock.now();
        CommandContext { now, actor: p.actor(), occurred_at: opts.occurred_at.unwrap_or(now) }
    }

    /// A retry of a write whose event id is already stored answers with the original result.
    fn replayed(&self, stream: &StreamId, event_id: Option<Uuid>) -> Result<Option<Written>, AppError> {
        let Some(id) = event_id else { return Ok(None) };
        match self.log.read_event(id).map_err(|e| AppError::Damaged(e.to_string()))? {
            None => Ok(None),
            Some(e) if &e.stream == stream => Ok(Some(Written {
                event_id: id,
                position: e.position,
                version: e.stream_version,
                duplicate: true,
                id: None,
            })),
            Some(_) => Err(AppError::EventIdConflict(id)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn new_event(
        &self,
        p: &Principal,
        opts: &WriteOptions,
        index: usize,
        event_type: &str,
        schema_version: u16,
        data: Vec<u8>,
        occurred_at: OffsetDateTime,
    ) -> NewEvent {
        // The client's id names the first event; any further events of the same decision get
        // fresh ids (time-ordered, so ids sort roughly by creation).
        let event_id = match (index, opts.event_id) {
            (0, Some(id)) => id,
            _ => Uuid::now_v7(),
        };
        NewEvent {
            event_id,
            event_type: event_type.to_owned(),
            schema_version,
            occurred_at,
            actor: LogActor { account_id: p.account_id.0, role: p.role.as_str().to_owned() },
            metadata: Metadata {
                correlation_id: opts.correlation_id,
                causation_id: None,
                device_id: opts.device_id.clone(),
            },
            data,
        }
    }

    /// Appends at `version`; with the log's `recorded_at` when something new was stored.
    async fn append(
        &self,
        stream: &StreamId,
        version: u64,
        events: Vec<NewEvent>,
    ) -> Result<(Written, Option<OffsetDateTime>), AppError> {
        let Some(first_id) = events.first().map(|e| e.event_id) else {
            return Err(AppError::Invalid("nothing to write".into()));
        };
        let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
        let r = self.log.append(stream, expected, events).await?;
        let written = Written {
            event_id: first_id,
            position: r.first_position,
            version: r.version,
            duplicate: r.duplicate,
            id: None,
        };
        Ok((written, r.recorded_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decision_cache_stays_bounded_and_keeps_slots_in_use() {
        let cache: Cache<u32, u64> = Cache::new(4);
        let held = cache.slot(0);
        for key in 1..100 {
            let _ = cache.slot(key);
        }
        let map = cache.map.lock().unwrap();
        assert!(map.len() <= 4, "{} slots", map.len());
        assert!(Arc::ptr_eq(&map[&0], &held), "a slot someone holds was dropped");
        assert!(map.contains_key(&99), "the newest slot is kept");
    }

    /// A write applies its own events to the cached decision state instead of reading them back
    /// from the log. That state must be exactly what a fresh fold of the log gives, times
    /// included (the log keeps UTC at nanosecond precision; the client may send any offset).
    #[tokio::test]
    async fn the_state_a_write_leaves_cached_is_the_state_the_log_folds_to() {
        use crate::clock::ManualClock;
        use crate::domain::course::{ContactLogged, EventCorrected, EventRetracted};
        use crate::domain::testing::{self as t, *};
        use time::macros::datetime;

        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(datetime!(2025-06-10 08:00:00.123456789 UTC));
        let mut config = crate::log::LogConfig::new(dir.path());
        config.clock = Arc::new(clock.clone());
        let (log, _) = EventLog::open(config).unwrap();
        let app = Vivirk::new(log.clone(), Arc::new(clock.clone()));
        let who = |a: Actor| Principal { account_id: a.account_id, role: a.role };
        let (cw, mentor) = (who(caseworker()), who(t::mentor()));
        let opts = |id: u128, at: Option<OffsetDateTime>| WriteOptions {
            event_id: Some(t::id(id)),
            occurred_at: at,
            ..WriteOptions::default()
        };
        let mut writes: Vec<(&Principal, CourseCommand, WriteOptions)> = vec![
            (&cw, CourseCommand::OpenCourse(opened()), opts(1, None)),
            (&cw, CourseCommand::AssignParticipant(assigned(YC, Role::YouthCoordinator)), opts(2, None)),
            (&cw, CourseCommand::AssignParticipant(assigned(MENTOR, Role::Mentor)), opts(3, None)),
            (&cw, CourseCommand::AssignParticipant(assigned(TEACHER, Role::Teacher)), opts(11, None)),
            (&cw, CourseCommand::SetGoal(goal()), opts(4, None)),
            (&cw, CourseCommand::StartPlacement(placement()), opts(7, None)),
            // Backdated with a local offset and nanoseconds, as a phone's outbox may send it.
            (
                &mentor,
                CourseCommand::LogCheckIn(check_in()),
                opts(5, Some(datetime!(2025-06-09 16:45:01.000000007 +02:00))),
            ),
            (&cw, CourseCommand::LogContact(contact()), opts(6, None)),
            (&cw, CourseCommand::AgreeAction(action()), opts(8, None)),
        ];
        writes.push((
            &cw,
            CourseCommand::CorrectEvent(EventCorrected {
                target_event_id: t::id(6),
                reason: l("Wrong duration."),
                replacement: Box::new(ContactLogged { duration_minutes: 45, ..contact() }.into()),
            }),
            opts(9, None),
        ));
        writes.push((
            &cw,
            CourseCommand::RetractEvent(EventRetracted { target_event_id: t::id(5), reason: l("Wrong course.") }),
            opts(10, None),
        ));
        for (i, (p, cmd, o)) in writes.into_iter().enumerate() {
            clock.advance(time::Duration::nanoseconds(1_000_000_007));
            let w = app.execute_course(p, COURSE, cmd, o).await.unwrap_or_else(|e| panic!("write {i}: {e}"));
            assert_eq!(w.version, i as u64 + 1);
        }
        // A retried write appends nothing and leaves the state alone.
        let again = app.execute_course(&cw, COURSE, CourseCommand::SetGoal(goal()), opts(4, None)).await.unwrap();
        assert!(again.duplicate);

        let cached = app.visible_course(&cw, COURSE).await.unwrap();
        let fresh = Vivirk::new(log.clone(), Arc::new(clock.clone())).visible_course(&cw, COURSE).await.unwrap();
        assert_eq!(cached.0, 11);
        assert_eq!(cached, fresh, "the cached state differs from the log's");
        // `OffsetDateTime` compares instants; the serialised states also compare offsets.
        let json = |s: &CourseState| serde_json::to_string(s).unwrap();
        assert_eq!(json(&cached.1), json(&fresh.1));
    }
}
