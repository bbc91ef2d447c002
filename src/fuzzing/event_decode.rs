//! Stored event payloads: decoding with upcasts, and replaying what decodes.
//!
//! Input: lines of `[role ]EventType schema_version data`, e.g.
//! `mentor CheckInLogged 1 {"placement_id":…}`: one stored event each, in stream order (the
//! role, default `caseworker`, is the actor's). The seeds are `events/examples` and
//! `events/fixtures`.
//!
//! For each line, as a course, a company and an account event:
//! - `decode` either refuses or gives an event of that type whose `to_data` decodes to the same
//!   event and encodes to the same bytes (`ContactLogged` v1 upcasts to v2 with
//!   `individual: false`); the value path (`decode_value`, used for the replacement inside a
//!   correction) and the projections' `decode_envelope` agree with it, and the self-describing
//!   form inside a correction round-trips;
//! - what decodes is applied to the decision state and to the projections' view, whatever it
//!   holds (`apply` has no logic and replay must never fail);
//!
//! then the read models are computed from the view, and the view survives its persisted form.

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::auth::accounts::AccountEvent;
use crate::domain::course::state::apply;
use crate::domain::{
    AccountId, Actor, CompanyEvent, CompanyState, CourseEvent, CourseId, CourseState, EventMeta, Role, apply_company,
};
use crate::log::{Envelope, Hash, LogActor, Metadata, StreamId};
use crate::projections::views::{self, HistoryFilter};
use crate::projections::{CourseView, Recorded, codec, cph, decode_envelope};

/// At most this many lines are read.
const MAX_LINES: usize = 64;
pub const COURSE: CourseId = CourseId(Uuid::from_u128(0xC0));
/// The first event's time; each line is a minute later.
pub const T0: OffsetDateTime = time::macros::datetime!(2025-06-02 09:00 UTC);
/// When the read models are computed.
pub const NOW: OffsetDateTime = time::macros::datetime!(2025-09-01 12:00 UTC);

/// The account acting in `role` (the ids of `events/examples`: young person 1, caseworker 2 …).
pub fn account_of(role: Role) -> AccountId {
    let n = match role {
        Role::YoungPerson => 1,
        Role::Caseworker => 2,
        Role::YouthCoordinator => 3,
        Role::Teacher => 4,
        Role::Mentor => 5,
        Role::Network => 6,
        Role::Auditor => 7,
        Role::Admin => 8,
    };
    AccountId(Uuid::from_u128(n))
}

fn parse_line(line: &[u8]) -> Option<(Role, &str, u16, &[u8])> {
    let mut rest = line;
    let mut token = || {
        let i = rest.iter().position(|b| *b == b' ')?;
        let t = std::str::from_utf8(&rest[..i]).ok()?;
        rest = &rest[i + 1..];
        Some(t)
    };
    let mut first = token()?;
    let mut role = Role::Caseworker;
    if let Some(r) = Role::ALL.iter().find(|r| r.as_str() == first) {
        role = *r;
        first = token()?;
    }
    let version = token()?.parse().ok()?;
    Some((role, first, version, rest))
}

pub fn check(data: &[u8]) {
    let mut state = CourseState::default();
    let mut view = CourseView::new(COURSE);
    let mut company = CompanyState::default();
    let mut n = 0u64;
    for line in data.split(|b| *b == b'\n').take(MAX_LINES) {
        let Some((role, event_type, version, payload)) = parse_line(line) else { continue };
        n += 1;
        let at = T0 + Duration::minutes(n as i64);
        let meta = EventMeta {
            event_id: Uuid::from_u128(1000 + u128::from(n)),
            stream_version: n,
            occurred_at: at,
            recorded_at: at,
            actor: Actor { account_id: account_of(role), role },
        };
        if let Some(event) = course_event(event_type, version, payload, &meta) {
            apply(&mut state, &event, &meta);
            view.apply(&Recorded { position: n, offset: Default::default(), meta: meta.clone() }, &event);
        }
        if let Some(event) = company_event(event_type, version, payload) {
            apply_company(&mut company, &event, &meta);
        }
        account_event(event_type, version, payload);
    }
    read_models(&view);
}

fn course_event(event_type: &str, version: u16, payload: &[u8], meta: &EventMeta) -> Option<CourseEvent> {
    let decoded = CourseEvent::decode(event_type, version, payload);
    // The projections decode the same stored event the same way.
    let env = Envelope {
        position: meta.stream_version,
        stream: StreamId::for_entity("course", COURSE.0),
        stream_version: meta.stream_version,
        event_id: meta.event_id,
        event_type: event_type.to_owned(),
        schema_version: version,
        occurred_at: meta.occurred_at,
        recorded_at: meta.recorded_at,
        actor: LogActor { account_id: meta.actor.account_id.0, role: meta.actor.role.as_str().to_owned() },
        metadata: Metadata::default(),
        data_sha256: Hash::of(payload),
        data: payload.to_vec(),
        prev_hash: Hash::default(),
        hash: Hash::default(),
        stream_prev_hash: Hash::default(),
        stream_hash: Hash::default(),
    };
    assert_eq!(
        decode_envelope(&env).ok().map(|(_, _, e)| e),
        decoded.as_ref().ok().cloned(),
        "the projections decode {event_type} v{version} differently"
    );
    let event = decoded.ok()?;
    assert_eq!(event.event_type(), event_type);
    if (event_type, version) == ("ContactLogged", 1) {
        assert!(
            matches!(&event, CourseEvent::ContactLogged(c) if !c.individual),
            "v1 contacts upcast to individual: false"
        );
        assert_eq!(event.schema_version(), 2);
    } else {
        assert_eq!(event.schema_version(), version, "{event_type} decoded from another version");
    }
    let bytes = event.to_data();
    let again = CourseEvent::decode(event.event_type(), event.schema_version(), &bytes)
        .unwrap_or_else(|e| panic!("a re-encoded {event_type} does not decode: {e}"));
    assert_eq!(again, event, "{event_type} changes when encoded and decoded again");
    assert_eq!(again.to_data(), bytes, "{event_type} encodes differently the second time");
    // The value path (a correction's replacement) agrees.
    let value: serde_json::Value = serde_json::from_slice(payload)
        .unwrap_or_else(|e| panic!("{event_type} decoded from bytes that are not a JSON value: {e}"));
    match CourseEvent::decode_value(event_type, version, value) {
        Ok(v) => assert_eq!(v, event, "decode_value and decode disagree on {event_type}"),
        Err(e) => panic!("decode accepts {event_type} v{version} but decode_value refuses it: {e}"),
    }
    // The self-describing form inside a correction.
    let embedded = serde_json::to_vec(&event).unwrap_or_else(|e| panic!("{event_type} does not embed: {e}"));
    let back: CourseEvent =
        serde_json::from_slice(&embedded).unwrap_or_else(|e| panic!("an embedded {event_type} does not decode: {e}"));
    assert_eq!(back, event, "an embedded {event_type} changes");
    Some(event)
}

fn company_event(event_type: &str, version: u16, payload: &[u8]) -> Option<CompanyEvent> {
    round_trip(event_type, version, payload, CompanyEvent::decode, |e| {
        (e.event_type(), e.schema_version(), e.to_data())
    })
}

fn account_event(event_type: &str, version: u16, payload: &[u8]) {
    round_trip(event_type, version, payload, AccountEvent::decode, |e| {
        (e.event_type(), e.schema_version(), e.to_data())
    });
}

/// For a stream without upcasts: what decodes keeps its type and version, and decode → encode →
/// decode gives the same event and the same bytes.
fn round_trip<E: PartialEq + std::fmt::Debug, D: std::fmt::Display>(
    event_type: &str,
    version: u16,
    payload: &[u8],
    decode: fn(&str, u16, &[u8]) -> Result<E, D>,
    stored: fn(&E) -> (&'static str, u16, Vec<u8>),
) -> Option<E> {
    let event = decode(event_type, version, payload).ok()?;
    let (t, v, bytes) = stored(&event);
    assert_eq!((t, v), (event_type, version));
    let again = decode(event_type, version, &bytes)
        .unwrap_or_else(|e| panic!("a re-encoded {event_type} does not decode: {e}"));
    assert_eq!(again, event, "{event_type} changes when encoded and decoded again");
    assert_eq!(stored(&again).2, bytes);
    Some(event)
}

/// Everything the API computes from a view, and the view's persisted form.
fn read_models(view: &CourseView) {
    let today = cph::local_date(NOW);
    let _ = views::course_status(view, NOW);
    let _ = views::compliance(view, today);
    let _ = views::contact_frequency(view, NOW);
    let mut actions = views::actions(view, NOW);
    views::sort_actions(&mut actions);
    for p in &view.participants {
        let _ = views::my_course(view, p.account_id, NOW);
    }
    let mut after = None;
    for _ in 0..view.observations.len() + 1 {
        let (_, next) = views::history_page(view, &HistoryFilter::default(), after, 4);
        match next {
            Some(c) => {
                assert_eq!(views::Cursor::decode(&c.encode()), Some(c), "a history cursor does not round-trip");
                after = Some(c);
            }
            None => break,
        }
    }
    let bytes = codec::encode(view);
    assert_eq!(codec::decode(&bytes).as_ref(), Some(view), "a view does not survive its persisted form");
}
