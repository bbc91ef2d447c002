//! What decisions need to know about a course, and `apply`, which folds events into it.
//!
//! `apply` has no logic: no validation, no clock, no branching on whether an event "makes
//! sense". Every event it sees was accepted by `decide` (or is history that must replay as it
//! was), so it only records facts.

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::events::*;
use crate::domain::common::{
    AccountId, ActionId, AgreementId, CompanyId, CourseId, EventMeta, GoalId, LifeDomain, PlacementId, Role, iso_date,
};
use crate::domain::programme::ProgrammeKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CourseStatus {
    /// No `CourseOpened` yet.
    #[default]
    NotOpened,
    Open,
    Closed,
}

/// One current assignment of an account to a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub account_id: AccountId,
    pub role: Role,
    pub company_id: Option<CompanyId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoalStatus {
    Open,
    Achieved,
    Dropped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoalState {
    pub parent: Option<GoalId>,
    /// `None` for a sub-goal: it shares its parent's.
    pub life_domain: Option<LifeDomain>,
    pub status: GoalStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    Open,
    Completed,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionState {
    pub owner: AccountId,
    #[serde(with = "iso_date")]
    pub due: Date,
    /// The day it was agreed (from the event's `occurred_at`).
    #[serde(with = "iso_date")]
    pub agreed_on: Date,
    pub status: ActionStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementState {
    pub company_id: CompanyId,
    pub mentor: Option<AccountId>,
    #[serde(with = "iso_date")]
    pub start_date: Date,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgreementState {
    pub placement_id: PlacementId,
    pub mentor: AccountId,
    #[serde(with = "iso_date")]
    pub valid_from: Date,
    #[serde(with = "iso_date")]
    pub valid_to: Date,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    Standing,
    Corrected,
    Retracted,
}

/// What a correction or retraction needs to know of its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownEvent {
    pub event_type: &'static str,
    pub actor: AccountId,
    pub status: EventStatus,
}

/// What the course remembers of its events, for corrections and retractions: its newest
/// [`KnownEvents::WINDOW`] events (one slot of 24 bytes each: the id, the type as its index in
/// [`CourseEvent::TYPES`], the actor as an index into the course's few distinct actors), the
/// status of every event ever corrected or retracted (few), and older events the application
/// looked up in the log for a decision ([`KnownEvents::remember`]).
///
/// Why a window: a slot per event of every cached course was, after the log index, the largest
/// part of a running server's memory that grew with the record (24 bytes per event, ~32 with a
/// vector's spare room: 50 MB at a million events). Corrections usually follow their target
/// closely; one of an older event costs the application one read of the log by event id.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KnownEvents {
    /// The newest events, oldest first; at most `WINDOW`.
    recent: std::collections::VecDeque<KnownSlot>,
    actors: Vec<AccountId>,
    /// Every event corrected or retracted, with its latest status.
    changed: Vec<(Uuid, EventStatus)>,
    /// Older events looked up for a decision; at most `WINDOW`, oldest dropped first.
    remembered: std::collections::VecDeque<KnownSlot>,
    /// Events pushed in all.
    count: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct KnownSlot {
    id: Uuid,
    actor: u32,
    event_type: u32,
}

impl KnownEvents {
    /// How many of the newest events are kept.
    pub const WINDOW: usize = 32;

    /// Events pushed in all (not only those kept).
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// What is known of event `id`: `None` if it is not one of the newest [`Self::WINDOW`] nor
    /// remembered, which for an older event of the course means "look it up and
    /// [`Self::remember`] it".
    pub fn get(&self, id: Uuid) -> Option<KnownEvent> {
        let slot = self.recent.iter().rev().chain(self.remembered.iter().rev()).find(|s| s.id == id)?;
        Some(KnownEvent {
            // Both indexes were made by `slot`; an index out of range would be a bug, and reads
            // as a type no correction accepts rather than a panic.
            event_type: CourseEvent::TYPES.get(slot.event_type as usize).map_or("", |(t, _)| *t),
            actor: self.actors.get(slot.actor as usize).copied().unwrap_or(AccountId(Uuid::nil())),
            status: self.changed.iter().rev().find(|(c, _)| *c == id).map_or(EventStatus::Standing, |(_, s)| *s),
        })
    }

    /// An older event of this course, as the log holds it (its type and actor), so a decision
    /// about it can be made. Not for events of other courses: the caller checks the stream.
    pub fn remember(&mut self, id: Uuid, event_type: &str, actor: AccountId) {
        if self.get(id).is_some() {
            return;
        }
        let slot = self.slot(id, event_type, actor);
        if self.remembered.len() == Self::WINDOW {
            self.remembered.pop_front();
        }
        self.remembered.push_back(slot);
    }

    fn slot(&mut self, id: Uuid, event_type: &str, actor: AccountId) -> KnownSlot {
        let event_type = CourseEvent::TYPES.iter().position(|(t, _)| *t == event_type).unwrap_or(usize::MAX);
        let actor = match self.actors.iter().rposition(|a| *a == actor) {
            Some(i) => i,
            None => {
                self.actors.push(actor);
                self.actors.len() - 1
            }
        };
        KnownSlot {
            id,
            actor: u32::try_from(actor).unwrap_or(u32::MAX),
            event_type: u32::try_from(event_type).unwrap_or(u32::MAX),
        }
    }

    fn push(&mut self, id: Uuid, event_type: &'static str, actor: AccountId) {
        let slot = self.slot(id, event_type, actor);
        if self.recent.len() == Self::WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(slot);
        self.count += 1;
    }

    fn set_status(&mut self, id: Uuid, status: EventStatus) {
        match self.changed.iter_mut().rev().find(|(c, _)| *c == id) {
            Some(c) => c.1 = status,
            None => self.changed.push((id, status)),
        }
    }
}

/// A map by id, kept as a sorted vector: a course holds a few goals, actions, placements and
/// agreements, and a `BTreeMap` allocates a node of eleven slots for the first one (~600 bytes
/// here), four maps per cached course — 20 MB of the decision cache at 10,000 courses
/// (heaptrack's peak under the comparison's write load). Lookups are a binary search; an
/// insert of a new id shifts the later ones (few). Serialized as a map, like a `BTreeMap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for IdMap<K, V> {
    fn default() -> Self {
        IdMap(Vec::new())
    }
}

impl<K: Ord, V> IdMap<K, V> {
    fn find(&self, k: &K) -> Result<usize, usize> {
        self.0.binary_search_by(|(x, _)| x.cmp(k))
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        self.find(k).ok().map(|i| &self.0[i].1)
    }

    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.find(k).ok().map(|i| &mut self.0[i].1)
    }

    pub fn contains_key(&self, k: &K) -> bool {
        self.find(k).is_ok()
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        match self.find(&k) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, v)),
            Err(i) => {
                self.0.insert(i, (k, v));
                None
            }
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// In key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// In key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }
}

impl<K: Ord, V> std::ops::Index<&K> for IdMap<K, V> {
    type Output = V;

    fn index(&self, k: &K) -> &V {
        self.get(k).expect("no entry for this id")
    }
}

impl<K: Serialize, V: Serialize> Serialize for IdMap<K, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de, K: Ord + Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for IdMap<K, V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = std::collections::BTreeMap::<K, V>::deserialize(d)?;
        Ok(IdMap(m.into_iter().collect()))
    }
}

/// The decision state of one course. `Default` is "no course yet".
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CourseState {
    pub status: CourseStatus,
    pub course_id: Option<CourseId>,
    pub programme: Option<ProgrammeKind>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub opened_at: Option<OffsetDateTime>,
    pub opened_by: Option<AccountId>,
    pub young_person: Option<AccountId>,
    #[serde(default, with = "iso_date::option")]
    pub start_date: Option<Date>,
    pub phase: Option<Phase>,
    pub outcome: Option<Outcome>,
    /// Current assignments, in order of assignment.
    pub participants: Vec<Assignment>,
    pub goals: IdMap<GoalId, GoalState>,
    pub actions: IdMap<ActionId, ActionState>,
    pub placements: IdMap<PlacementId, PlacementState>,
    pub active_placement: Option<PlacementId>,
    pub agreements: IdMap<AgreementId, AgreementState>,
    pub events: KnownEvents,
    /// Stream version of the last applied event (0: none).
    pub version: u64,
}

impl CourseState {
    /// Folds a whole history.
    pub fn from_events<'a>(events: impl IntoIterator<Item = (&'a CourseEvent, &'a EventMeta)>) -> Self {
        let mut state = Self::default();
        for (event, meta) in events {
            apply(&mut state, event, meta);
        }
        state
    }

    pub fn is_assigned(&self, account_id: AccountId, role: Role) -> bool {
        self.participants.iter().any(|a| a.account_id == account_id && a.role == role)
    }

    pub fn is_participant(&self, account_id: AccountId) -> bool {
        self.participants.iter().any(|a| a.account_id == account_id)
    }

    /// Is the id already used by any goal, action, placement or agreement?
    pub fn id_in_use(&self, id: Uuid) -> bool {
        self.goals.contains_key(&GoalId(id))
            || self.actions.contains_key(&ActionId(id))
            || self.placements.contains_key(&PlacementId(id))
            || self.agreements.contains_key(&AgreementId(id))
    }
}

/// Folds one event into the state. No logic: see the module docs.
pub fn apply(state: &mut CourseState, event: &CourseEvent, meta: &EventMeta) {
    state.version = meta.stream_version;
    state.events.push(meta.event_id, event.event_type(), meta.actor.account_id);
    match event {
        CourseEvent::CourseOpened(e) => {
            state.status = CourseStatus::Open;
            state.course_id = Some(e.course_id);
            state.programme = Some(e.programme);
            state.opened_at = Some(meta.occurred_at);
            state.opened_by = Some(meta.actor.account_id);
            state.young_person = Some(e.young_person);
            state.start_date = Some(e.start_date);
            state.phase = Some(Phase::Intake);
            state.participants.push(Assignment {
                account_id: e.young_person,
                role: Role::YoungPerson,
                company_id: None,
            });
            state.participants.push(Assignment {
                account_id: e.referring_caseworker,
                role: Role::Caseworker,
                company_id: None,
            });
        }
        CourseEvent::PhaseChanged(e) => state.phase = Some(e.phase),
        CourseEvent::CourseClosed(e) => {
            state.status = CourseStatus::Closed;
            state.outcome = Some(e.outcome);
        }
        CourseEvent::ParticipantAssigned(e) => {
            state.participants.push(Assignment { account_id: e.account_id, role: e.role, company_id: e.company_id })
        }
        CourseEvent::ParticipantUnassigned(e) => {
            state.participants.retain(|a| !(a.account_id == e.account_id && a.role == e.role))
        }
        CourseEvent::GoalSet(e) => {
            state.goals.insert(
                e.goal_id,
                GoalState { parent: None, life_domain: Some(e.life_domain), status: GoalStatus::Open },
            );
        }
        CourseEvent::SubGoalSet(e) => {
            state.goals.insert(
                e.goal_id,
                GoalState { parent: Some(e.parent_goal_id), life_domain: None, status: GoalStatus::Open },
            );
        }
        CourseEvent::GoalAchieved(e) => set_goal_status(state, e.goal_id, GoalStatus::Achieved),
        CourseEvent::GoalDropped(e) => set_goal_status(state, e.goal_id, GoalStatus::Dropped),
        CourseEvent::ActionAgreed(e) => {
            state.actions.insert(
                e.action_id,
                ActionState {
                    owner: e.owner,
                    due: e.due,
                    agreed_on: meta.occurred_at.date(),
                    status: ActionStatus::Open,
                },
            );
        }
        CourseEvent::ActionCompleted(e) => set_action_status(state, e.action_id, ActionStatus::Completed),
        CourseEvent::ActionCancelled(e) => set_action_status(state, e.action_id, ActionStatus::Cancelled),
        CourseEvent::ActionRescheduled(e) => {
            if let Some(a) = state.actions.get_mut(&e.action_id) {
                a.due = e.due;
            }
        }
        CourseEvent::PlacementStarted(e) => {
            state.placements.insert(
                e.placement_id,
                PlacementState { company_id: e.company_id, mentor: e.mentor, start_date: e.start_date, active: true },
            );
            state.active_placement = Some(e.placement_id);
        }
        CourseEvent::PlacementEnded(e) => {
            if let Some(p) = state.placements.get_mut(&e.placement_id) {
                p.active = false;
            }
            if state.active_placement == Some(e.placement_id) {
                state.active_placement = None;
            }
        }
        CourseEvent::MentorAgreementMade(e) => {
            state.agreements.insert(
                e.agreement_id,
                AgreementState {
                    placement_id: e.placement_id,
                    mentor: e.mentor,
                    valid_from: e.valid_from,
                    valid_to: e.valid_to,
                },
            );
        }
        CourseEvent::MentorAgreementRenewed(e) => {
            if let Some(a) = state.agreements.get_mut(&e.agreement_id) {
                a.valid_to = e.valid_to;
            }
        }
        CourseEvent::EventCorrected(e) => set_event_status(state, e.target_event_id, EventStatus::Corrected),
        CourseEvent::EventRetracted(e) => set_event_status(state, e.target_event_id, EventStatus::Retracted),
        // Observations: they matter to projections, not to decisions.
        CourseEvent::ContactLogged(_)
        | CourseEvent::CheckInLogged(_)
        | CourseEvent::GuidanceSessionHeld(_)
        | CourseEvent::GoalProgressRecorded(_)
        | CourseEvent::AssessmentRecorded(_)
        | CourseEvent::SupportNeedRecorded(_)
        | CourseEvent::MeetingHeld(_)
        | CourseEvent::ContactPlanAgreed(_) => {}
    }
}

fn set_goal_status(state: &mut CourseState, id: GoalId, status: GoalStatus) {
    if let Some(g) = state.goals.get_mut(&id) {
        g.status = status;
    }
}

fn set_action_status(state: &mut CourseState, id: ActionId, status: ActionStatus) {
    if let Some(a) = state.actions.get_mut(&id) {
        a.status = status;
    }
}

fn set_event_status(state: &mut CourseState, id: Uuid, status: EventStatus) {
    state.events.set_status(id, status);
}

#[cfg(test)]
mod known_events_tests {
    use super::*;

    #[test]
    fn the_newest_events_are_remembered_in_24_bytes_and_older_ones_once_looked_up() {
        assert_eq!(std::mem::size_of::<KnownSlot>(), 24);
        let mut known = KnownEvents::default();
        let (a, b) = (AccountId(Uuid::from_u128(1)), AccountId(Uuid::from_u128(2)));
        let event_type = |i: u128| if i.is_multiple_of(2) { "CheckInLogged" } else { "ContactLogged" };
        for i in 0..100u128 {
            known.push(Uuid::from_u128(1000 + i), event_type(i), if i % 3 == 0 { a } else { b });
        }
        assert_eq!(known.actors.len(), 2, "actors are kept once");
        assert_eq!(known.recent.len(), KnownEvents::WINDOW);
        assert_eq!(known.len(), 100);
        // In the window.
        known.set_status(Uuid::from_u128(1099), EventStatus::Corrected);
        assert_eq!(
            known.get(Uuid::from_u128(1099)),
            Some(KnownEvent { event_type: "ContactLogged", actor: a, status: EventStatus::Corrected })
        );
        assert_eq!(
            known.get(Uuid::from_u128(1098)),
            Some(KnownEvent { event_type: "CheckInLogged", actor: b, status: EventStatus::Standing })
        );
        // Older: unknown until remembered, and its status was kept all along.
        known.set_status(Uuid::from_u128(1004), EventStatus::Retracted);
        assert_eq!(known.get(Uuid::from_u128(1004)), None);
        known.remember(Uuid::from_u128(1004), "CheckInLogged", b);
        assert_eq!(
            known.get(Uuid::from_u128(1004)),
            Some(KnownEvent { event_type: "CheckInLogged", actor: b, status: EventStatus::Retracted })
        );
        assert_eq!(known.get(Uuid::from_u128(5)), None);
        // What is remembered stays bounded too.
        for i in 0..100u128 {
            known.remember(Uuid::from_u128(i), "ContactLogged", a);
        }
        assert_eq!(known.remembered.len(), KnownEvents::WINDOW);
        assert!(known.get(Uuid::from_u128(99)).is_some());
        assert_eq!(known.get(Uuid::from_u128(0)), None);
    }
}

#[cfg(test)]
mod id_map_tests {
    use super::IdMap;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// The same inserts into an `IdMap` and a `BTreeMap` give the same answers, order and JSON.
        #[test]
        fn an_id_map_answers_like_a_btree_map(ops in prop::collection::vec((0u8..20, any::<u16>()), 0..60)) {
            let (mut ours, mut theirs) = (IdMap::default(), BTreeMap::new());
            for (k, v) in ops {
                prop_assert_eq!(ours.insert(k, v), theirs.insert(k, v));
                prop_assert_eq!(ours.len(), theirs.len());
            }
            for k in 0u8..20 {
                prop_assert_eq!(ours.get(&k), theirs.get(&k));
                prop_assert_eq!(ours.contains_key(&k), theirs.contains_key(&k));
            }
            prop_assert_eq!(ours.values().collect::<Vec<_>>(), theirs.values().collect::<Vec<_>>());
            let json = serde_json::to_string(&ours).unwrap();
            prop_assert_eq!(&json, &serde_json::to_string(&theirs).unwrap());
            let back: IdMap<u8, u16> = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, ours);
        }
    }
}
