//! The per-course fold: one pure function from a course stream's events to a [`CourseView`].
//!
//! Every projection of a course (status, contact frequency, actions, contact history) is a
//! read-time rendering of this one fold, so the incremental engine, a full rebuild and an
//! as-of replay all run the same code and cannot diverge. The fold keeps facts only; anything
//! that depends on "today" (overdue, due soon, warnings) is computed when read, against the
//! injected clock (see [`super::views`]).
//!
//! Observations (contacts, check-ins, guidance, meetings, goal progress, assessments, support
//! needs, contact plans) are the only correctable events. Each is kept with its *effective*
//! payload: a correction replaces the payload (the original's `occurred_at` and position stay,
//! so it keeps its place in the timeline), a retraction marks it retracted and every view skips
//! it. The log still holds both; the view records which event did the correcting.
//!
//! Free texts of the high-volume observations (contact summaries, check-in notes, meeting
//! decisions) are not copied here: the history fetches them from the log by event id when a
//! page is read. That keeps the persisted state small enough to rebuild a million events in a
//! couple of seconds.

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::digest::Digest;
use super::obs_list::ObsList;
use crate::domain::common::iso_date;
use crate::domain::course::state::GoalStatus;
use crate::domain::course::*;
use crate::domain::{
    AccountId, ActionId, Actor, AgreementId, Channel, CompanyId, CourseId, Direction, EventMeta, GoalId, LifeDomain,
    LongText, PlacementId, ProgrammeKind, Role, ShortText,
};

/// Where an event's record sits in its log segment, as the reader that applied it saw it (0:
/// unknown, e.g. folded from envelopes). A hint for reading the event again without the index,
/// not part of what a view says: any two hints compare equal, so a view folded from envelopes
/// equals the engine's.
#[derive(Debug, Clone, Copy, Default)]
pub struct SegmentOffset(pub u32);

impl PartialEq for SegmentOffset {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for SegmentOffset {}

/// Where an event sits in the log, besides its envelope metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub position: u64,
    pub offset: SegmentOffset,
    pub meta: EventMeta,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub account_id: AccountId,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_id: Option<CompanyId>,
}

/// One holder of one role, from assignment to unassignment (`to = None`: still holds it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenure {
    pub account_id: AccountId,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub to: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goal {
    pub goal_id: GoalId,
    pub parent: Option<GoalId>,
    /// A sub-goal's is its parent's, resolved when it is set.
    pub life_domain: Option<LifeDomain>,
    pub title: ShortText,
    pub status: GoalStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub set_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub closed_at: Option<OffsetDateTime>,
}

/// What happened to an action's due date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reschedule {
    #[serde(with = "iso_date")]
    pub from: Date,
    #[serde(with = "iso_date")]
    pub to: Date,
    pub reason: LongText,
    pub by: AccountId,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionOutcome {
    Open,
    Done,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub action_id: ActionId,
    pub what: ShortText,
    pub owner: AccountId,
    #[serde(with = "iso_date")]
    pub due: Date,
    pub method: Option<ShortText>,
    pub goal_id: Option<GoalId>,
    pub agreed_by: Vec<AccountId>,
    /// Who recorded the agreement.
    pub recorded_by: Actor,
    #[serde(with = "time::serde::rfc3339")]
    pub agreed_at: OffsetDateTime,
    pub outcome: ActionOutcome,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub closed_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reschedules: Vec<Reschedule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub placement_id: PlacementId,
    pub kind: PlacementKind,
    pub company_id: CompanyId,
    pub workplace: Workplace,
    pub mentor: Option<AccountId>,
    pub hours_per_week: u8,
    #[serde(with = "iso_date")]
    pub start_date: Date,
    #[serde(default, with = "iso_date::option")]
    pub end_date: Option<Date>,
    pub outcome: Option<PlacementOutcome>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agreement {
    pub agreement_id: AgreementId,
    pub placement_id: PlacementId,
    pub mentor: AccountId,
    #[serde(with = "iso_date")]
    pub valid_from: Date,
    #[serde(with = "iso_date")]
    pub valid_to: Date,
    pub hours_per_week: u8,
    pub renewals: u32,
}

/// Whether an observation still stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "s")]
pub enum ObsStatus {
    Standing,
    /// Replaced by the payload of correction `by` (the last of them, if several).
    Corrected {
        by: Uuid,
    },
    Retracted {
        by: Uuid,
    },
}

/// The effective payload of an observation, without its bulky free texts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "k")]
pub enum Obs {
    Contact {
        with: Vec<AccountId>,
        channel: Channel,
        direction: Direction,
        outreach: bool,
        individual: bool,
        minutes: u16,
    },
    CheckIn {
        placement_id: PlacementId,
        attendance: Attendance,
        wellbeing: u8,
    },
    Guidance {
        goal_ids: Vec<GoalId>,
        minutes: u16,
    },
    Meeting {
        kind: MeetingKind,
        attendees: Vec<AccountId>,
    },
    GoalProgress {
        goal_id: GoalId,
        percent: Option<u8>,
    },
    Assessment {
        kind: AssessmentKind,
        placement_id: Option<PlacementId>,
    },
    SupportNeed {
        area: SupportArea,
        life_domain: LifeDomain,
        description: LongText,
    },
    ContactPlan {
        every_days: u16,
        by: Vec<AccountId>,
    },
}

impl Obs {
    /// The observation an event records, if it is one.
    fn of(event: &CourseEvent) -> Option<Obs> {
        Some(match event {
            CourseEvent::ContactLogged(e) => Obs::Contact {
                with: e.with.clone(),
                channel: e.channel,
                direction: e.direction,
                outreach: e.outreach,
                individual: e.individual,
                minutes: e.duration_minutes,
            },
            CourseEvent::CheckInLogged(e) => {
                Obs::CheckIn { placement_id: e.placement_id, attendance: e.attendance, wellbeing: e.wellbeing }
            }
            CourseEvent::GuidanceSessionHeld(e) => {
                Obs::Guidance { goal_ids: e.goal_ids.clone(), minutes: e.duration_minutes }
            }
            CourseEvent::MeetingHeld(e) => Obs::Meeting { kind: e.kind, attendees: e.attendees.clone() },
            CourseEvent::GoalProgressRecorded(e) => Obs::GoalProgress { goal_id: e.goal_id, percent: e.percent },
            CourseEvent::AssessmentRecorded(e) => Obs::Assessment { kind: e.kind, placement_id: e.placement_id },
            CourseEvent::SupportNeedRecorded(e) => {
                Obs::SupportNeed { area: e.area, life_domain: e.life_domain, description: e.description.clone() }
            }
            CourseEvent::ContactPlanAgreed(e) => Obs::ContactPlan { every_days: e.every_days, by: e.by.clone() },
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub event_id: Uuid,
    /// Log position of the original event; with `occurred_at` it orders the timeline.
    pub position: u64,
    /// Where that event's record sits in its log segment (0: unknown), so a history page reads
    /// each item's event without first looking its offset up in the index.
    #[serde(skip)]
    pub offset: SegmentOffset,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    pub actor: Actor,
    pub status: ObsStatus,
    pub obs: Obs,
}

impl Observation {
    pub fn standing(&self) -> bool {
        !matches!(self.status, ObsStatus::Retracted { .. })
    }

    /// The event whose payload is shown: the original, or the correction that replaced it.
    pub fn source_event_id(&self) -> Uuid {
        match self.status {
            ObsStatus::Corrected { by } => by,
            _ => self.event_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closure {
    pub outcome: Outcome,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Everything the projections know about one course. `Default` is "nothing seen yet".
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CourseView {
    pub course_id: Option<CourseId>,
    /// Stream version and log position of the last event folded in.
    pub version: u64,
    pub position: u64,
    pub young_person: Option<AccountId>,
    pub programme: Option<ProgrammeKind>,
    pub municipality: Option<ShortText>,
    #[serde(default, with = "iso_date::option")]
    pub start_date: Option<Date>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub opened_at: Option<OffsetDateTime>,
    pub phase: Option<Phase>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub phase_since: Option<OffsetDateTime>,
    pub closed: Option<Closure>,
    /// Current assignments, in order of assignment.
    pub participants: Vec<Participant>,
    /// Every assignment ever, in order; continuity of the people around the young person.
    pub tenures: Vec<Tenure>,
    pub goals: Vec<Goal>,
    pub actions: Vec<Action>,
    pub placements: Vec<Placement>,
    pub active_placement: Option<PlacementId>,
    pub agreements: Vec<Agreement>,
    /// Correctable events, in stream order.
    pub observations: ObsList,
    /// What status, compliance and frequency need of the observations ([`CourseView::digest`]).
    #[serde(skip)]
    pub digest: DigestCell,
}

/// A view's [`Digest`], made from its observations on first use and kept up to date from then
/// on. Not made when a store loads: that would cost every course's chunks a decode at start
/// (a fifth of a second on a million events) and memory for courses nobody reads. Derived from
/// the observations, so it takes no part in comparing views (compare [`CourseView::digest`]).
#[derive(Debug, Clone, Default)]
pub struct DigestCell(std::sync::OnceLock<Digest>);

impl PartialEq for DigestCell {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for DigestCell {}

impl DigestCell {
    /// The digest if it was made (tests: was it kept up to date, or made just now?).
    #[cfg(test)]
    pub fn made(&self) -> Option<&Digest> {
        self.0.get()
    }
}

impl CourseView {
    pub fn new(course_id: CourseId) -> Self {
        Self { course_id: Some(course_id), ..Self::default() }
    }

    /// Folds a whole history, in stream order.
    pub fn fold<'a>(course_id: CourseId, events: impl IntoIterator<Item = (&'a Recorded, &'a CourseEvent)>) -> Self {
        let mut view = Self::new(course_id);
        for (rec, event) in events {
            view.apply(rec, event);
        }
        view
    }

    /// The digest of the observations, made on first use.
    pub fn digest(&self) -> &Digest {
        self.digest.0.get_or_init(|| Digest::of(self.observations.iter(), self.young_person))
    }

    pub fn is_open(&self) -> bool {
        self.opened_at.is_some() && self.closed.is_none()
    }

    pub fn holds_any_role(&self, account: AccountId) -> bool {
        self.participants.iter().any(|p| p.account_id == account)
    }

    fn goal_mut(&mut self, id: GoalId) -> Option<&mut Goal> {
        self.goals.iter_mut().find(|g| g.goal_id == id)
    }

    fn action_mut(&mut self, id: ActionId) -> Option<&mut Action> {
        self.actions.iter_mut().find(|a| a.action_id == id)
    }

    /// Folds one event. Like the domain's `apply`, no validation: the event was accepted when it
    /// was written. References to unknown things are ignored rather than trusted.
    pub fn apply(&mut self, rec: &Recorded, event: &CourseEvent) {
        let meta = &rec.meta;
        self.version = meta.stream_version;
        self.position = rec.position;
        let at = meta.occurred_at;
        if let Some(obs) = Obs::of(event) {
            let o = Observation {
                event_id: meta.event_id,
                position: rec.position,
                offset: rec.offset,
                occurred_at: at,
                actor: meta.actor,
                status: ObsStatus::Standing,
                obs,
            };
            if let Some(d) = self.digest.0.get_mut() {
                d.add(&o, self.young_person);
            }
            self.observations.push(o);
            return;
        }
        match event {
            CourseEvent::CourseOpened(e) => {
                self.course_id = Some(e.course_id);
                self.young_person = Some(e.young_person);
                self.programme = Some(e.programme);
                self.municipality = Some(e.municipality.clone());
                self.start_date = Some(e.start_date);
                self.opened_at = Some(at);
                self.phase = Some(Phase::Intake);
                self.phase_since = Some(at);
                self.assign(e.young_person, Role::YoungPerson, None, at);
                self.assign(e.referring_caseworker, Role::Caseworker, None, at);
                // What counts as contact depends on who the young person is.
                self.digest = DigestCell::default();
            }
            CourseEvent::PhaseChanged(e) => {
                self.phase = Some(e.phase);
                self.phase_since = Some(at);
            }
            CourseEvent::CourseClosed(e) => {
                self.closed = Some(Closure { outcome: e.outcome, at });
                // Closing ends every tenure: nobody holds a role on a closed course any more,
                // but the history keeps who did.
                for t in self.tenures.iter_mut().filter(|t| t.to.is_none()) {
                    t.to = Some(at);
                }
            }
            CourseEvent::ParticipantAssigned(e) => self.assign(e.account_id, e.role, e.company_id, at),
            CourseEvent::ParticipantUnassigned(e) => {
                self.participants.retain(|p| !(p.account_id == e.account_id && p.role == e.role));
                if let Some(t) =
                    self.tenures.iter_mut().rev().find(|t| t.account_id == e.account_id && t.role == e.role)
                    && t.to.is_none()
                {
                    t.to = Some(at);
                }
            }
            CourseEvent::GoalSet(e) => self.goals.push(Goal {
                goal_id: e.goal_id,
                parent: None,
                life_domain: Some(e.life_domain),
                title: e.title.clone(),
                status: GoalStatus::Open,
                set_at: at,
                closed_at: None,
            }),
            CourseEvent::SubGoalSet(e) => {
                let life_domain = self.goals.iter().find(|g| g.goal_id == e.parent_goal_id).and_then(|g| g.life_domain);
                self.goals.push(Goal {
                    goal_id: e.goal_id,
                    parent: Some(e.parent_goal_id),
                    life_domain,
                    title: e.title.clone(),
                    status: GoalStatus::Open,
                    set_at: at,
                    closed_at: None,
                });
            }
            CourseEvent::GoalAchieved(e) => self.close_goal(e.goal_id, GoalStatus::Achieved, at),
            CourseEvent::GoalDropped(e) => self.close_goal(e.goal_id, GoalStatus::Dropped, at),
            CourseEvent::ActionAgreed(e) => self.actions.push(Action {
                action_id: e.action_id,
                what: e.what.clone(),
                owner: e.owner,
                due: e.due,
                method: e.method.clone(),
                goal_id: e.goal_id,
                agreed_by: e.agreed_by.clone(),
                recorded_by: meta.actor,
                agreed_at: at,
                outcome: ActionOutcome::Open,
                closed_at: None,
                reschedules: Vec::new(),
            }),
            CourseEvent::ActionCompleted(e) => self.close_action(e.action_id, ActionOutcome::Done, at),
            CourseEvent::ActionCancelled(e) => self.close_action(e.action_id, ActionOutcome::Cancelled, at),
            CourseEvent::ActionRescheduled(e) => {
                if let Some(a) = self.action_mut(e.action_id) {
                    a.reschedules.push(Reschedule {
                        from: a.due,
                        to: e.due,
                        reason: e.reason.clone(),
                        by: meta.actor.account_id,
                        at,
                    });
                    a.due = e.due;
                }
            }
            CourseEvent::PlacementStarted(e) => {
                self.placements.push(Placement {
                    placement_id: e.placement_id,
                    kind: e.kind,
                    company_id: e.company_id,
                    workplace: e.workplace,
                    mentor: e.mentor,
                    hours_per_week: e.hours_per_week,
                    start_date: e.start_date,
                    end_date: None,
                    outcome: None,
                });
                self.active_placement = Some(e.placement_id);
            }
            CourseEvent::PlacementEnded(e) => {
                if let Some(p) = self.placements.iter_mut().find(|p| p.placement_id == e.placement_id) {
                    p.end_date = Some(e.end_date);
                    p.outcome = Some(e.outcome);
                }
                if self.active_placement == Some(e.placement_id) {
                    self.active_placement = None;
                }
            }
            CourseEvent::MentorAgreementMade(e) => self.agreements.push(Agreement {
                agreement_id: e.agreement_id,
                placement_id: e.placement_id,
                mentor: e.mentor,
                valid_from: e.valid_from,
                valid_to: e.valid_to,
                hours_per_week: e.hours_per_week,
                renewals: 0,
            }),
            CourseEvent::MentorAgreementRenewed(e) => {
                if let Some(a) = self.agreements.iter_mut().find(|a| a.agreement_id == e.agreement_id) {
                    a.valid_to = e.valid_to;
                    a.renewals += 1;
                }
            }
            CourseEvent::EventCorrected(e) => {
                if let Some(obs) = Obs::of(&e.replacement) {
                    self.change_observation(e.target_event_id, |o| {
                        if o.standing() {
                            o.obs = obs;
                            o.status = ObsStatus::Corrected { by: meta.event_id };
                        }
                    });
                }
            }
            CourseEvent::EventRetracted(e) => {
                self.change_observation(e.target_event_id, |o| o.status = ObsStatus::Retracted { by: meta.event_id });
            }
            // Nothing else to keep; observations were handled above.
            _ => {}
        }
    }

    /// Changes an observation in place (a correction or retraction), and the digest with it.
    fn change_observation(&mut self, event_id: Uuid, change: impl FnOnce(&mut Observation)) {
        let Some(o) = self.observations.rfind_mut(|o| o.event_id == event_id) else { return };
        if self.digest.0.get().is_none() {
            // No digest to keep: it will be made from the observations as they are.
            change(o);
            return;
        }
        let before = o.clone();
        change(o);
        if *o == before {
            return;
        }
        let after = o.clone();
        if let Some(d) = self.digest.0.get_mut()
            && d.replace(&before, &after, self.young_person)
        {
            d.rescan_latest(self.observations.iter(), self.young_person);
        }
    }

    fn assign(&mut self, account_id: AccountId, role: Role, company_id: Option<CompanyId>, at: OffsetDateTime) {
        self.participants.push(Participant { account_id, role, since: at, company_id });
        self.tenures.push(Tenure { account_id, role, from: at, to: None });
    }

    fn close_goal(&mut self, id: GoalId, status: GoalStatus, at: OffsetDateTime) {
        if let Some(g) = self.goal_mut(id) {
            g.status = status;
            g.closed_at = Some(at);
        }
    }

    fn close_action(&mut self, id: ActionId, outcome: ActionOutcome, at: OffsetDateTime) {
        if let Some(a) = self.action_mut(id) {
            a.outcome = outcome;
            a.closed_at = Some(at);
        }
    }
}
