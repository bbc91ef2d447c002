//! The persisted form of a [`CourseView`]: a compact, checksummed binary record.
//!
//! The store used to hold each view as JSON (≈ 35 KB per course of 100 events: field names,
//! RFC 3339 timestamps and 36-character UUIDs for every observation), which made the final
//! write of a rebuild and the decode on reopen cost seconds. This form is ≈ 10× smaller and
//! decodes without parsing text.
//!
//! # Layout
//!
//! A course is stored as one *head* record and, once it has more than [`CHUNK_OBS`]
//! observations, *chunks* of exactly [`CHUNK_OBS`] observations each, so that a persist
//! rewrites what changed, not the whole history: the head (everything but the sealed
//! observations) and, rarely, a chunk whose observation a correction or retraction changed.
//! Both records are framed the same way:
//!
//! ```text
//! u32 LE   crc32c of everything after it
//! varint   n, the number of distinct accounts in the record
//! n × 16   UUIDs; every AccountId, CompanyId, GoalId and PlacementId in the body is a
//!          varint index into this table (they recur in nearly every observation)
//! body     head:  the CourseView, field by field in declaration order, whose observations
//!                 are the tail after the sealed chunks; then the chunks' CRCs (Vec<u32>)
//!          chunk: the observations (Vec<Observation>)
//! ```
//!
//! A head names the CRC (the first four bytes) of every chunk it is the head of, so a chunk
//! written by a persist that did not finish is told from the one the head was written with.
//!
//! - integers are LEB128 varints (signed ones zigzagged); `bool` is one byte, 0 or 1;
//! - other UUIDs are 16 raw bytes; texts are a varint byte length and UTF-8, re-validated
//!   through the domain's `Text::try_from`;
//! - `OffsetDateTime` is unix seconds, nanoseconds and the UTC offset in seconds (so a value
//!   round-trips exactly, offset included); `Date` is its Julian day number;
//! - `Option` is a 0/1 tag byte then the value; `Vec` is a varint length then the items;
//! - enums are a one-byte variant code fixed in this file (never reorder: append, and bump
//!   `FORMAT` in `mod.rs` whenever this layout changes).
//!
//! Decoding is strict: a bad checksum, an unknown code, an out-of-range number, invalid text
//! or trailing bytes all fail, and the engine then rebuilds the store from the log. The struct
//! impls destructure and rebuild every field, so adding a field to a view type does not
//! compile until it is added here too.

use std::collections::HashMap;

use time::{Date, OffsetDateTime, UtcOffset};
use uuid::Uuid;

use super::course::*;
use super::obs_list::ObsList;
use crate::domain::course::state::GoalStatus;
use crate::domain::course::{
    AssessmentKind, Attendance, MeetingKind, Outcome, Phase, PlacementKind, PlacementOutcome, SupportArea, Workplace,
};
use crate::domain::{
    AccountId, ActionId, Actor, AgreementId, Channel, CompanyId, CourseId, Direction, GoalId, LifeDomain, PlacementId,
    ProgrammeKind, Role, Text,
};

/// Observations per sealed chunk (the in-memory chunks are the stored ones). A head carries at
/// most this many less one in its tail, so a persist of a course that only grew rewrites at most
/// that many observations and its head.
pub use super::obs_list::CHUNK_OBS;

/// Encodes a head: the view's fields, its tail of observations, and the CRCs of its sealed chunks
/// (one per sealed chunk of the view).
pub fn encode_head(view: &CourseView, chunk_crcs: &[u32]) -> Vec<u8> {
    encode_head_with(view, view.observations.tail(), chunk_crcs)
}

fn encode_head_with(view: &CourseView, tail: &[Observation], chunk_crcs: &[u32]) -> Vec<u8> {
    frame(64 + 40 * tail.len(), |e| {
        put_head(view, e);
        put_slice(tail, e);
        put_slice(chunk_crcs, e);
    })
}

/// Decodes a head: the view with only its tail as observations, and its chunks' CRCs. `None` also
/// for a tail of a chunk or more, which no persist writes.
pub fn decode_head(bytes: &[u8]) -> Option<(CourseView, Vec<u32>)> {
    decode_head_any(bytes).filter(|(view, _)| view.observations.sealed_chunks() == 0)
}

fn decode_head_any(bytes: &[u8]) -> Option<(CourseView, Vec<u32>)> {
    unframe(bytes, |d| {
        let mut view = get_head(d)?;
        view.observations = ObsList::from(Vec::<Observation>::get(d)?);
        Some((view, Bin::get(d)?))
    })
}

/// Encodes a sealed chunk of observations.
pub fn encode_chunk(observations: &[Observation]) -> Vec<u8> {
    frame(40 * observations.len(), |e| put_slice(observations, e))
}

pub fn decode_chunk(bytes: &[u8]) -> Option<Vec<Observation>> {
    unframe(bytes, Bin::get)
}

/// The CRC a head names a chunk by: the record's own checksum.
pub fn record_crc(record: &[u8]) -> Option<u32> {
    record.first_chunk::<4>().map(|c| u32::from_le_bytes(*c))
}

/// A whole view as one record: a head with no sealed chunks (tests and fuzzing).
#[cfg(any(test, fuzzing))]
pub fn encode(view: &CourseView) -> Vec<u8> {
    let all: Vec<Observation> = view.observations.iter().cloned().collect();
    encode_head_with(view, &all, &[])
}

/// Decodes [`encode`]'s record; `None` if it is damaged, not in this format, or names chunks.
#[cfg(any(test, fuzzing))]
pub fn decode(bytes: &[u8]) -> Option<CourseView> {
    decode_head_any(bytes).and_then(|(view, crcs)| crcs.is_empty().then_some(view))
}

fn frame(capacity: usize, body: impl FnOnce(&mut Enc)) -> Vec<u8> {
    let mut e = Enc { buf: Vec::with_capacity(capacity), ids: HashMap::new(), table: vec![] };
    body(&mut e);
    let mut out = Vec::with_capacity(4 + 10 + 16 * e.table.len() + e.buf.len());
    out.extend_from_slice(&[0; 4]);
    put_varint(&mut out, e.table.len() as u64);
    for id in &e.table {
        out.extend_from_slice(id.as_bytes());
    }
    out.extend_from_slice(&e.buf);
    let crc = crc32c::crc32c(&out[4..]);
    out[..4].copy_from_slice(&crc.to_le_bytes());
    out
}

fn unframe<T>(bytes: &[u8], body: impl FnOnce(&mut Dec<'_>) -> Option<T>) -> Option<T> {
    let (crc, rest) = bytes.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*crc) != crc32c::crc32c(rest) {
        return None;
    }
    let mut d = Dec { buf: rest, table: Vec::new() };
    let n = d.len(16)?;
    let mut table = Vec::with_capacity(n);
    for _ in 0..n {
        table.push(Uuid::get(&mut d)?);
    }
    d.table = table;
    let value = body(&mut d)?;
    d.buf.is_empty().then_some(value)
}

struct Enc {
    buf: Vec<u8>,
    ids: HashMap<Uuid, u32>,
    table: Vec<Uuid>,
}

struct Dec<'a> {
    buf: &'a [u8],
    table: Vec<Uuid>,
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

impl Dec<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(*b)
    }

    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (b, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(b)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return None;
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// A length of items that take at least `min_item` bytes each: bounded by what is left, so
    /// a damaged length cannot make us allocate wildly.
    fn len(&mut self, min_item: usize) -> Option<usize> {
        let n = usize::try_from(self.varint()?).ok()?;
        (n.checked_mul(min_item)? <= self.buf.len()).then_some(n)
    }
}

trait Bin: Sized {
    fn put(&self, e: &mut Enc);
    fn get(d: &mut Dec<'_>) -> Option<Self>;
}

impl Bin for SegmentOffset {
    fn put(&self, e: &mut Enc) {
        self.0.put(e);
    }
    fn get(d: &mut Dec<'_>) -> Option<Self> {
        u32::get(d).map(SegmentOffset)
    }
}

impl Bin for u64 {
    fn put(&self, e: &mut Enc) {
        put_varint(&mut e.buf, *self);
    }
    fn get(d: &mut Dec<'_>) -> Option<Self> {
        d.varint()
    }
}

macro_rules! bin_uint {
    ($($t:ty),*) => {$(
        impl Bin for $t {
            fn put(&self, e: &mut Enc) {
                put_varint(&mut e.buf, u64::from(*self));
            }
            fn get(d: &mut Dec<'_>) -> Option<Self> {
                <$t>::try_from(d.varint()?).ok()
            }
        }
    )*};
}
bin_uint!(u8, u16, u32);

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

impl Bin for i64 {
    fn put(&self, e: &mut Enc) {
        put_varint(&mut e.buf, zigzag(*self));
    }
    fn get(d: &mut Dec<'_>) -> Option<Self> {
        Some(unzigzag(d.varint()?))
    }
}

impl Bin for bool {
    fn put(&self, e: &mut Enc) {
        e.buf.push(u8::from(*self));
    }
    fn get(d: &mut Dec<'_>) -> Option<Self> {
        match d.byte()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
}

impl Bin for Uuid {
    fn put(&self, e: &mut Enc) {
        e.buf.extend_from_slice(self.as_bytes());
    }
    fn get(d: &mut Dec<'_>) -> Option<Self> {
        Some(Uuid::from_bytes(d.bytes(16)?.try_into().ok()?))
    }
}

impl Enc {
    fn interned(&mut self, id: Uuid) {
        let next = self.table.len() as u32;
        let i = *self.ids.entry(id).or_insert(next);
        if i == next {
            self.table.push(id);
        }
        put_varint(&mut self.buf, u64::from(i));
    }
}

impl Dec<'_> {
    fn interned(&mut self) -> Option<Uuid> {
        let i = usize::try_from(self.varint()?).ok()?;
        self.table.get(i).copied()
    }
}

/// Ids that recur within a course (accounts in nearly every observation, the goal or placement
/// an observation is about) go through the record's table; the others are written out.
macro_rules! bin_id {
    (interned: $($i:ident),*; plain: $($p:ident),*) => {
        $(
            impl Bin for $i {
                fn put(&self, e: &mut Enc) {
                    e.interned(self.0);
                }
                fn get(d: &mut Dec<'_>) -> Option<Self> {
                    Some($i(d.interned()?))
                }
            }
        )*
        $(
            impl Bin for $p {
                fn put(&self, e: &mut Enc) {
                    self.0.put(e);
                }
                fn get(d: &mut Dec<'_>) -> Option<Self> {
                    Some($p(Uuid::get(d)?))
                }
            }
        )*
    };
}
bin_id!(interned: AccountId, CompanyId, GoalId, PlacementId; plain: CourseId, ActionId, AgreementId);

impl<const MAX: usize> Bin for Text<MAX> {
    fn put(&self, e: &mut Enc) {
        let s = self.as_str().as_bytes();
        put_varint(&mut e.buf, s.len() as u64);
        e.buf.extend_from_slice(s);
    }
    fn get(d: &mut Dec<'_>) -> Option<Self> {
        let n = d.len(1)?;
        let s = std::str::from_utf8(d.bytes(n)?).ok()?;
        Text::try_from(s).ok()
    }
}

impl Bin for OffsetDateTime {
    fn put(&self, e: &mut Enc) {
        self.unix_timestamp().put(e);
        self.nanosecond().put(e);
        i64::from(self.offset().whole_seconds()).put(e);
    }
    fn get(d: &mut Dec<'_>) -> Option<Self> {
        let secs = i64::get(d)?;
        let nanos = u32::get(d)?;
        let offset = i32::try_from(i64::get(d)?).ok()?;
        let t = OffsetDateTime::from_unix_timestamp(secs).ok()?.replace_nanosecond(nanos).ok()?;
        t.checked_to_offset(UtcOffset::from_whole_seconds(offset).ok()?)
    }
}

impl Bin for Date {
    fn put(&self, e: &mut Enc) {
        i64::from(self.to_julian_day()).put(e);
    }
    fn get(d: &mut Dec<'_>) -> Option<Self> {
        Date::from_julian_day(i32::try_from(i64::get(d)?).ok()?).ok()
    }
}

impl<T: Bin> Bin for Option<T> {
    fn put(&self, e: &mut Enc) {
        match self {
            None => e.buf.push(0),
            Some(v) => {
                e.buf.push(1);
                v.put(e);
            }
        }
    }
    fn get(d: &mut Dec<'_>) -> Option<Self> {
        match d.byte()? {
            0 => Some(None),
            1 => Some(Some(T::get(d)?)),
            _ => None,
        }
    }
}

/// A varint length, then the items (a `Vec`'s form).
fn put_slice<T: Bin>(items: &[T], e: &mut Enc) {
    put_varint(&mut e.buf, items.len() as u64);
    for v in items {
        v.put(e);
    }
}

impl<T: Bin> Bin for Vec<T> {
    fn put(&self, e: &mut Enc) {
        put_slice(self, e);
    }
    fn get(d: &mut Dec<'_>) -> Option<Self> {
        let n = d.len(1)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(T::get(d)?);
        }
        Some(out)
    }
}

/// Fieldless enums: one byte per variant, codes fixed by the order listed here. The encoder's
/// match is exhaustive, so a new variant does not compile until it is given a code.
macro_rules! bin_enum {
    ($($t:ident { $($v:ident = $code:literal),* $(,)? })*) => {$(
        impl Bin for $t {
            fn put(&self, e: &mut Enc) {
                e.buf.push(match self { $($t::$v => $code,)* });
            }
            fn get(d: &mut Dec<'_>) -> Option<Self> {
                match d.byte()? {
                    $($code => Some($t::$v),)*
                    _ => None,
                }
            }
        }
    )*};
}

bin_enum! {
    Role { YoungPerson = 0, Teacher = 1, YouthCoordinator = 2, Caseworker = 3, Network = 4, Mentor = 5, Auditor = 6,
        Admin = 7 }
    ProgrammeKind { Ressourceforloeb = 0, Jobafklaringsforloeb = 1, Stu = 2, Fgu = 3, Other = 4 }
    Phase { Intake = 0, Assessment = 1, Practice = 2, Internship = 3, EmploymentBound = 4 }
    Outcome { Job = 0, Education = 1, FlexJob = 2, Other = 3, DroppedOut = 4 }
    GoalStatus { Open = 0, Achieved = 1, Dropped = 2 }
    ActionOutcome { Open = 0, Done = 1, Cancelled = 2 }
    LifeDomain { WorkLife = 0, EverydayLife = 1, LeisureLife = 2 }
    PlacementKind { PracticeArena = 0, WorkTrial = 1, Internship = 2, Employment = 3 }
    Workplace { SocialEconomic = 0, Ordinary = 1 }
    PlacementOutcome { Completed = 0, EndedEarly = 1, ContinuedAsEmployment = 2, Other = 3 }
    Channel { InPerson = 0, Phone = 1, Video = 2, Text = 3, Email = 4, App = 5 }
    Direction { ToYoungPerson = 0, FromYoungPerson = 1 }
    Attendance { Present = 0, Late = 1, AbsentNotified = 2, AbsentUnnotified = 3 }
    MeetingKind { Coordination = 0, Network = 1, Tactical = 2, Strategic = 3 }
    AssessmentKind { WorkTrial = 0, IndustryClarification = 1 }
    SupportArea { Personal = 0, Social = 1, Work = 2 }
}

/// Structs: every field, in the order listed (destructured, so none can be forgotten).
macro_rules! bin_struct {
    ($($t:ident { $($f:ident),* $(,)? })*) => {$(
        impl Bin for $t {
            fn put(&self, e: &mut Enc) {
                let $t { $($f),* } = self;
                $($f.put(e);)*
            }
            fn get(d: &mut Dec<'_>) -> Option<Self> {
                Some($t { $($f: Bin::get(d)?,)* })
            }
        }
    )*};
}

bin_struct! {
    Actor { account_id, role }
    Participant { account_id, role, since, company_id }
    Tenure { account_id, role, from, to }
    Goal { goal_id, parent, life_domain, title, status, set_at, closed_at }
    Reschedule { from, to, reason, by, at }
    Action { action_id, what, owner, due, method, goal_id, agreed_by, recorded_by, agreed_at, outcome, closed_at,
        reschedules }
    Placement { placement_id, kind, company_id, workplace, mentor, hours_per_week, start_date, end_date, outcome }
    Agreement { agreement_id, placement_id, mentor, valid_from, valid_to, hours_per_week, renewals }
    Closure { outcome, at }
    Observation { event_id, position, offset, occurred_at, actor, status, obs }
}

/// Every field of a view but its observations (destructured, so none can be forgotten).
fn put_head(view: &CourseView, e: &mut Enc) {
    let CourseView {
        course_id,
        version,
        position,
        young_person,
        programme,
        municipality,
        start_date,
        opened_at,
        phase,
        phase_since,
        closed,
        participants,
        tenures,
        goals,
        actions,
        placements,
        active_placement,
        agreements,
        observations: _,
        digest: _,
    } = view;
    course_id.put(e);
    version.put(e);
    position.put(e);
    young_person.put(e);
    programme.put(e);
    municipality.put(e);
    start_date.put(e);
    opened_at.put(e);
    phase.put(e);
    phase_since.put(e);
    closed.put(e);
    participants.put(e);
    tenures.put(e);
    goals.put(e);
    actions.put(e);
    placements.put(e);
    active_placement.put(e);
    agreements.put(e);
}

fn get_head(d: &mut Dec<'_>) -> Option<CourseView> {
    Some(CourseView {
        course_id: Bin::get(d)?,
        version: Bin::get(d)?,
        position: Bin::get(d)?,
        young_person: Bin::get(d)?,
        programme: Bin::get(d)?,
        municipality: Bin::get(d)?,
        start_date: Bin::get(d)?,
        opened_at: Bin::get(d)?,
        phase: Bin::get(d)?,
        phase_since: Bin::get(d)?,
        closed: Bin::get(d)?,
        participants: Bin::get(d)?,
        tenures: Bin::get(d)?,
        goals: Bin::get(d)?,
        actions: Bin::get(d)?,
        placements: Bin::get(d)?,
        active_placement: Bin::get(d)?,
        agreements: Bin::get(d)?,
        observations: ObsList::new(),
        digest: DigestCell::default(),
    })
}

impl Bin for ObsStatus {
    fn put(&self, e: &mut Enc) {
        match self {
            ObsStatus::Standing => e.buf.push(0),
            ObsStatus::Corrected { by } => {
                e.buf.push(1);
                by.put(e);
            }
            ObsStatus::Retracted { by } => {
                e.buf.push(2);
                by.put(e);
            }
        }
    }
    fn get(d: &mut Dec<'_>) -> Option<Self> {
        match d.byte()? {
            0 => Some(ObsStatus::Standing),
            1 => Some(ObsStatus::Corrected { by: Uuid::get(d)? }),
            2 => Some(ObsStatus::Retracted { by: Uuid::get(d)? }),
            _ => None,
        }
    }
}

impl Bin for Obs {
    fn put(&self, e: &mut Enc) {
        match self {
            Obs::Contact { with, channel, direction, outreach, individual, minutes } => {
                e.buf.push(0);
                with.put(e);
                channel.put(e);
                direction.put(e);
                outreach.put(e);
                individual.put(e);
                minutes.put(e);
            }
            Obs::CheckIn { placement_id, attendance, wellbeing } => {
                e.buf.push(1);
                placement_id.put(e);
                attendance.put(e);
                wellbeing.put(e);
            }
            Obs::Guidance { goal_ids, minutes } => {
                e.buf.push(2);
                goal_ids.put(e);
                minutes.put(e);
            }
            Obs::Meeting { kind, attendees } => {
                e.buf.push(3);
                kind.put(e);
                attendees.put(e);
            }
            Obs::GoalProgress { goal_id, percent } => {
                e.buf.push(4);
                goal_id.put(e);
                percent.put(e);
            }
            Obs::Assessment { kind, placement_id } => {
                e.buf.push(5);
                kind.put(e);
                placement_id.put(e);
            }
            Obs::SupportNeed { area, life_domain, description } => {
                e.buf.push(6);
                area.put(e);
                life_domain.put(e);
                description.put(e);
            }
            Obs::ContactPlan { every_days, by } => {
                e.buf.push(7);
                every_days.put(e);
                by.put(e);
            }
        }
    }
    fn get(d: &mut Dec<'_>) -> Option<Self> {
        Some(match d.byte()? {
            0 => Obs::Contact {
                with: Bin::get(d)?,
                channel: Bin::get(d)?,
                direction: Bin::get(d)?,
                outreach: Bin::get(d)?,
                individual: Bin::get(d)?,
                minutes: Bin::get(d)?,
            },
            1 => Obs::CheckIn { placement_id: Bin::get(d)?, attendance: Bin::get(d)?, wellbeing: Bin::get(d)? },
            2 => Obs::Guidance { goal_ids: Bin::get(d)?, minutes: Bin::get(d)? },
            3 => Obs::Meeting { kind: Bin::get(d)?, attendees: Bin::get(d)? },
            4 => Obs::GoalProgress { goal_id: Bin::get(d)?, percent: Bin::get(d)? },
            5 => Obs::Assessment { kind: Bin::get(d)?, placement_id: Bin::get(d)? },
            6 => Obs::SupportNeed { area: Bin::get(d)?, life_domain: Bin::get(d)?, description: Bin::get(d)? },
            7 => Obs::ContactPlan { every_days: Bin::get(d)?, by: Bin::get(d)? },
            _ => return None,
        })
    }
}
