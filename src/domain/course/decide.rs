//! `decide`: a pure function from (state, command, context) to new events or a refusal.
//!
//! Order of checks, so a refusal names the most fundamental problem: the clock, the course's
//! lifecycle, who is acting, references to things in the course, then the shape of the events
//! produced (ranges, bounds, periods — [`validate`], which also checks a correction's
//! replacement).

use time::{Date, Duration, OffsetDateTime, Time};
use uuid::Uuid;

use super::commands::CourseCommand;
use super::events::*;
use super::state::{ActionStatus, CourseState, CourseStatus, EventStatus, GoalStatus};
use crate::domain::common::{
    AccountId, CommandContext, GoalId, MAX_DATE, MAX_ITEMS, MIN_DATE, PlacementId, Role, add_months,
};
use crate::domain::error::DomainError;

/// How far ahead of the server's clock `occurred_at` may be (phones' clocks drift).
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);
/// The longest period of a mentor agreement, and of each renewal.
pub const MAX_AGREEMENT_MONTHS: u32 = 6;
/// Weekly hours of a placement or a mentor agreement.
pub const HOURS_PER_WEEK: (i64, i64) = (1, 60);
/// Wellbeing scale of a check-in.
pub const WELLBEING: (i64, i64) = (1, 5);
/// Longest contact, guidance session: a day.
pub const MAX_DURATION_MINUTES: i64 = 24 * 60;
/// Contact plan frequency: at least once a quarter.
pub const CONTACT_EVERY_DAYS: (i64, i64) = (1, 92);

type Decision = Result<Vec<CourseEvent>, DomainError>;

/// Decides a course command. Pure: same inputs, same answer; no clock, no I/O, no panics.
pub fn decide(state: &CourseState, cmd: &CourseCommand, ctx: &CommandContext) -> Decision {
    if ctx.occurred_at > ctx.now + MAX_CLOCK_SKEW {
        return Err(DomainError::OccurredInFuture);
    }
    let events = match cmd {
        CourseCommand::OpenCourse(e) => open_course(state, e, ctx)?,
        CourseCommand::CorrectEvent(e) => {
            // Corrections are the one write a closed course accepts.
            require_opened(state)?;
            correct(state, e, ctx)?
        }
        CourseCommand::RetractEvent(e) => {
            require_opened(state)?;
            retract(state, e, ctx)?
        }
        other => {
            require_opened(state)?;
            if state.status == CourseStatus::Closed {
                return Err(DomainError::CourseClosed);
            }
            if let Some(earliest) = earliest_occurrence(state)
                && ctx.occurred_at < earliest
            {
                return Err(DomainError::OccurredBeforeCourse);
            }
            decide_open_course(state, other, ctx)?
        }
    };
    for event in &events {
        validate(event)?;
    }
    Ok(events)
}

/// Things may be logged from the course's start date (a running course migrated into the
/// system has history before it was opened here) or from when it was opened, whichever is
/// earlier.
fn earliest_occurrence(state: &CourseState) -> Option<OffsetDateTime> {
    let start = state.start_date.map(|d| d.with_time(Time::MIDNIGHT).assume_utc());
    match (state.opened_at, start) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn decide_open_course(state: &CourseState, cmd: &CourseCommand, ctx: &CommandContext) -> Decision {
    use CourseCommand as C;
    Ok(match cmd {
        C::ChangePhase(e) => {
            coordinator(state, ctx)?;
            if state.phase == Some(e.phase) {
                return Err(DomainError::PhaseUnchanged);
            }
            vec![e.clone().into()]
        }
        C::CloseCourse(e) => {
            coordinator(state, ctx)?;
            if let Some(id) = state.active_placement {
                return Err(DomainError::PlacementAlreadyActive { id: id.0 });
            }
            vec![e.clone().into()]
        }
        C::AssignParticipant(e) => {
            may_assign(state, ctx)?;
            if e.role == Role::YoungPerson {
                return Err(DomainError::YoungPersonIsFixed);
            }
            if state.is_assigned(e.account_id, e.role) {
                return Err(DomainError::AlreadyAssigned { account_id: e.account_id.0, role: e.role.as_str() });
            }
            vec![e.clone().into()]
        }
        C::UnassignParticipant(e) => {
            may_assign(state, ctx)?;
            if e.role == Role::YoungPerson {
                return Err(DomainError::YoungPersonIsFixed);
            }
            if !state.is_assigned(e.account_id, e.role) {
                return Err(DomainError::NotAssigned { account_id: e.account_id.0, role: e.role.as_str() });
            }
            vec![e.clone().into()]
        }
        C::LogContact(e) => {
            professional(state, ctx)?;
            if e.with.is_empty() {
                return Err(DomainError::MissingField { field: "with" });
            }
            participants(state, &e.with)?;
            vec![e.clone().into()]
        }
        C::LogCheckIn(e) => {
            if !(ctx.actor.role == Role::Mentor && state.is_assigned(ctx.actor.account_id, Role::Mentor)) {
                return Err(DomainError::NotCourseMentor);
            }
            active_placement(state, e.placement_id)?;
            vec![e.clone().into()]
        }
        C::HoldGuidanceSession(e) => {
            if !matches!(ctx.actor.role, Role::Teacher | Role::YouthCoordinator) {
                return Err(DomainError::not_permitted(ctx.actor.role));
            }
            assigned(state, ctx)?;
            if e.work_tasks.is_empty() {
                return Err(DomainError::MissingField { field: "work_tasks" });
            }
            goals(state, &e.goal_ids)?;
            vec![e.clone().into()]
        }
        C::SetGoal(e) => {
            professional(state, ctx)?;
            unused(state, e.goal_id.0)?;
            vec![e.clone().into()]
        }
        C::SetSubGoal(e) => {
            professional(state, ctx)?;
            unused(state, e.goal_id.0)?;
            open_goal(state, e.parent_goal_id)?;
            vec![e.clone().into()]
        }
        C::RecordGoalProgress(e) => {
            professional(state, ctx)?;
            open_goal(state, e.goal_id)?;
            vec![e.clone().into()]
        }
        C::AchieveGoal(e) => {
            professional(state, ctx)?;
            open_goal(state, e.goal_id)?;
            vec![e.clone().into()]
        }
        C::DropGoal(e) => {
            professional(state, ctx)?;
            open_goal(state, e.goal_id)?;
            vec![e.clone().into()]
        }
        C::AgreeAction(e) => {
            professional(state, ctx)?;
            unused(state, e.action_id.0)?;
            participants(state, &[e.owner])?;
            participants(state, &e.agreed_by)?;
            if let Some(goal) = e.goal_id {
                open_goal(state, goal)?;
            }
            if e.due < ctx.occurred_at.date() {
                return Err(DomainError::DueBeforeAgreement);
            }
            vec![e.clone().into()]
        }
        C::CompleteAction(e) => {
            professional(state, ctx)?;
            open_action(state, e.action_id)?;
            vec![e.clone().into()]
        }
        C::CancelAction(e) => {
            professional(state, ctx)?;
            open_action(state, e.action_id)?;
            vec![e.clone().into()]
        }
        C::RescheduleAction(e) => {
            professional(state, ctx)?;
            let action = open_action(state, e.action_id)?;
            if e.due < action.agreed_on {
                return Err(DomainError::DueBeforeAgreement);
            }
            vec![e.clone().into()]
        }
        C::StartPlacement(e) => {
            professional(state, ctx)?;
            unused(state, e.placement_id.0)?;
            if let Some(id) = state.active_placement {
                return Err(DomainError::PlacementAlreadyActive { id: id.0 });
            }
            if let Some(mentor) = e.mentor {
                course_mentor(state, mentor)?;
            }
            for task in &e.tasks {
                goals(state, &task.goal_ids)?;
            }
            vec![e.clone().into()]
        }
        C::EndPlacement(e) => {
            professional(state, ctx)?;
            let placement = active_placement(state, e.placement_id)?;
            if e.end_date < placement.start_date {
                return Err(DomainError::DateOrder { field: "end_date", before: "start_date" });
            }
            vec![e.clone().into()]
        }
        C::MakeMentorAgreement(e) => {
            professional(state, ctx)?;
            unused(state, e.agreement_id.0)?;
            known_placement(state, e.placement_id)?;
            course_mentor(state, e.mentor)?;
            goals(state, &e.goal_ids)?;
            vec![e.clone().into()]
        }
        C::RenewMentorAgreement(e) => {
            professional(state, ctx)?;
            let agreement =
                state.agreements.get(&e.agreement_id).ok_or(DomainError::UnknownAgreement { id: e.agreement_id.0 })?;
            if e.valid_to <= agreement.valid_to {
                return Err(DomainError::DateOrder { field: "valid_to", before: "the current end of the agreement" });
            }
            // The renewal period runs from the day after the current end.
            let from = agreement.valid_to.next_day().unwrap_or(agreement.valid_to);
            if !period_fits(from, e.valid_to) {
                return Err(DomainError::AgreementTooLong { max_months: MAX_AGREEMENT_MONTHS });
            }
            vec![e.clone().into()]
        }
        C::RecordAssessment(e) => {
            professional(state, ctx)?;
            if let Some(id) = e.placement_id {
                known_placement(state, id)?;
            }
            vec![e.clone().into()]
        }
        C::RecordSupportNeed(e) => {
            professional(state, ctx)?;
            vec![e.clone().into()]
        }
        C::RecordMeeting(e) => {
            professional(state, ctx)?;
            if e.attendees.is_empty() {
                return Err(DomainError::MissingField { field: "attendees" });
            }
            participants(state, &e.attendees)?;
            vec![e.clone().into()]
        }
        C::AgreeContactPlan(e) => {
            professional(state, ctx)?;
            if e.by.is_empty() {
                return Err(DomainError::MissingField { field: "by" });
            }
            participants(state, &e.by)?;
            vec![e.clone().into()]
        }
        // Handled by `decide` before the course's lifecycle checks.
        C::OpenCourse(_) | C::CorrectEvent(_) | C::RetractEvent(_) => {
            return Err(DomainError::CourseAlreadyOpened);
        }
    })
}

fn open_course(state: &CourseState, e: &CourseOpened, ctx: &CommandContext) -> Decision {
    if !ctx.actor.role.is_coordinator() {
        return Err(DomainError::not_permitted(ctx.actor.role));
    }
    if state.status != CourseStatus::NotOpened {
        return Err(DomainError::CourseAlreadyOpened);
    }
    check_date("start_date", e.start_date)?;
    e.programme.spec().admits_start(e.start_date)?;
    if e.young_person == e.referring_caseworker {
        return Err(DomainError::UnexpectedField { field: "referring_caseworker" });
    }
    let mut events = vec![CourseEvent::from(e.clone())];
    // The opener works on the course from day one, unless they are the referring caseworker,
    // whom `CourseOpened` already assigns.
    let opener = ctx.actor;
    if !(opener.role == Role::Caseworker && opener.account_id == e.referring_caseworker) {
        events.push(
            ParticipantAssigned { account_id: opener.account_id, role: opener.role, relation: None, company_id: None }
                .into(),
        );
    }
    Ok(events)
}

fn correct(state: &CourseState, e: &EventCorrected, ctx: &CommandContext) -> Decision {
    let target = correctable_target(state, e.target_event_id, ctx)?;
    let replacement = e.replacement.event_type();
    if target != replacement {
        return Err(DomainError::CorrectionTypeMismatch { target, replacement });
    }
    Ok(vec![e.clone().into()])
}

fn retract(state: &CourseState, e: &EventRetracted, ctx: &CommandContext) -> Decision {
    correctable_target(state, e.target_event_id, ctx)?;
    Ok(vec![e.clone().into()])
}

/// Checks that `id` is an event of this course that `ctx.actor` may correct or retract, and
/// returns its type.
fn correctable_target(state: &CourseState, id: Uuid, ctx: &CommandContext) -> Result<&'static str, DomainError> {
    let known = state.events.get(id).ok_or(DomainError::UnknownEvent { id })?;
    let event_type = known.event_type;
    if !CORRECTABLE_TYPES.contains(&event_type) {
        return Err(DomainError::NotCorrectable { event_type });
    }
    if known.status == EventStatus::Retracted {
        return Err(DomainError::EventRetracted { id });
    }
    let own = known.actor == ctx.actor.account_id;
    let coordinating = ctx.actor.role.is_coordinator() && state.is_assigned(ctx.actor.account_id, ctx.actor.role);
    if !(own || coordinating) {
        return Err(DomainError::not_permitted(ctx.actor.role));
    }
    Ok(event_type)
}

// ---------------------------------------------------------------------------------------------
// who may act

fn require_opened(state: &CourseState) -> Result<(), DomainError> {
    match state.status {
        CourseStatus::NotOpened => Err(DomainError::CourseNotOpened),
        CourseStatus::Open | CourseStatus::Closed => Ok(()),
    }
}

/// The actor holds, on this course, the role they act in.
fn assigned(state: &CourseState, ctx: &CommandContext) -> Result<(), DomainError> {
    if state.is_assigned(ctx.actor.account_id, ctx.actor.role) { Ok(()) } else { Err(DomainError::NotAParticipant) }
}

/// Teacher, youth coordinator, caseworker or mentor, assigned to the course.
fn professional(state: &CourseState, ctx: &CommandContext) -> Result<(), DomainError> {
    if !ctx.actor.role.is_professional() {
        return Err(DomainError::not_permitted(ctx.actor.role));
    }
    assigned(state, ctx)
}

/// Caseworker or youth coordinator, assigned to the course.
fn coordinator(state: &CourseState, ctx: &CommandContext) -> Result<(), DomainError> {
    if !ctx.actor.role.is_coordinator() {
        return Err(DomainError::not_permitted(ctx.actor.role));
    }
    assigned(state, ctx)
}

/// A coordinator on the course, or whoever opened it (so an opener can staff a course).
fn may_assign(state: &CourseState, ctx: &CommandContext) -> Result<(), DomainError> {
    if !ctx.actor.role.is_coordinator() {
        return Err(DomainError::not_permitted(ctx.actor.role));
    }
    if state.opened_by == Some(ctx.actor.account_id) {
        return Ok(());
    }
    assigned(state, ctx)
}

// ---------------------------------------------------------------------------------------------
// references

fn participants(state: &CourseState, ids: &[AccountId]) -> Result<(), DomainError> {
    match ids.iter().find(|id| !state.is_participant(**id)) {
        Some(id) => Err(DomainError::UnknownParticipant { account_id: id.0 }),
        None => Ok(()),
    }
}

fn course_mentor(state: &CourseState, id: AccountId) -> Result<(), DomainError> {
    if state.is_assigned(id, Role::Mentor) { Ok(()) } else { Err(DomainError::NotAMentor { account_id: id.0 }) }
}

fn unused(state: &CourseState, id: Uuid) -> Result<(), DomainError> {
    if state.id_in_use(id) { Err(DomainError::DuplicateId { id }) } else { Ok(()) }
}

fn goals(state: &CourseState, ids: &[GoalId]) -> Result<(), DomainError> {
    match ids.iter().find(|id| !state.goals.contains_key(id)) {
        Some(id) => Err(DomainError::UnknownGoal { id: id.0 }),
        None => Ok(()),
    }
}

fn open_goal(state: &CourseState, id: GoalId) -> Result<(), DomainError> {
    let goal = state.goals.get(&id).ok_or(DomainError::UnknownGoal { id: id.0 })?;
    match goal.status {
        GoalStatus::Open => Ok(()),
        GoalStatus::Achieved | GoalStatus::Dropped => Err(DomainError::GoalNotOpen { id: id.0 }),
    }
}

fn open_action(
    state: &CourseState,
    id: crate::domain::common::ActionId,
) -> Result<&super::state::ActionState, DomainError> {
    let action = state.actions.get(&id).ok_or(DomainError::UnknownAction { id: id.0 })?;
    match action.status {
        ActionStatus::Open => Ok(action),
        ActionStatus::Completed | ActionStatus::Cancelled => Err(DomainError::ActionNotOpen { id: id.0 }),
    }
}

fn known_placement(state: &CourseState, id: PlacementId) -> Result<&super::state::PlacementState, DomainError> {
    state.placements.get(&id).ok_or(DomainError::UnknownPlacement { id: id.0 })
}

fn active_placement(state: &CourseState, id: PlacementId) -> Result<&super::state::PlacementState, DomainError> {
    let placement = known_placement(state, id)?;
    if placement.active { Ok(placement) } else { Err(DomainError::PlacementNotActive { id: id.0 }) }
}

// ---------------------------------------------------------------------------------------------
// the shape of an event, independent of the course

/// Checks what an event must satisfy on its own: ranges, list lengths, date bounds, periods,
/// and which optional fields a participant role needs. Texts are already bounded by their
/// types. A correction's replacement is checked the same way.
pub fn validate(event: &CourseEvent) -> Result<(), DomainError> {
    use CourseEvent as E;
    match event {
        E::CourseOpened(e) => check_date("start_date", e.start_date),
        E::ParticipantAssigned(e) => {
            if !e.role.is_participant_role() {
                return Err(DomainError::NotAParticipantRole { role: e.role.as_str() });
            }
            match (e.role, &e.relation, &e.company_id) {
                (Role::Network, None, _) => Err(DomainError::MissingField { field: "relation" }),
                (Role::Mentor, _, None) => Err(DomainError::MissingField { field: "company_id" }),
                (role, Some(_), _) if role != Role::Network => Err(DomainError::UnexpectedField { field: "relation" }),
                (role, _, Some(_)) if role != Role::Mentor => Err(DomainError::UnexpectedField { field: "company_id" }),
                _ => Ok(()),
            }
        }
        E::ParticipantUnassigned(e) => {
            if e.role.is_participant_role() {
                Ok(())
            } else {
                Err(DomainError::NotAParticipantRole { role: e.role.as_str() })
            }
        }
        E::ContactLogged(e) => {
            check_items("with", e.with.len())?;
            check_range("duration_minutes", e.duration_minutes.into(), (0, MAX_DURATION_MINUTES))
        }
        E::CheckInLogged(e) => {
            check_range("wellbeing", e.wellbeing.into(), WELLBEING)?;
            check_items("tasks_done", e.tasks_done.len())
        }
        E::GuidanceSessionHeld(e) => {
            check_items("work_tasks", e.work_tasks.len())?;
            check_items("goal_ids", e.goal_ids.len())?;
            check_range("duration_minutes", e.duration_minutes.into(), (0, MAX_DURATION_MINUTES))
        }
        E::GoalProgressRecorded(e) => match e.percent {
            Some(p) => check_range("percent", p.into(), (0, 100)),
            None => Ok(()),
        },
        E::ActionAgreed(e) => {
            check_date("due", e.due)?;
            check_items("agreed_by", e.agreed_by.len())
        }
        E::ActionRescheduled(e) => check_date("due", e.due),
        E::PlacementStarted(e) => {
            check_date("start_date", e.start_date)?;
            check_range("hours_per_week", e.hours_per_week.into(), HOURS_PER_WEEK)?;
            check_items("tasks", e.tasks.len())?;
            for task in &e.tasks {
                check_items("tasks.goal_ids", task.goal_ids.len())?;
            }
            Ok(())
        }
        E::PlacementEnded(e) => check_date("end_date", e.end_date),
        E::MentorAgreementMade(e) => {
            check_date("valid_from", e.valid_from)?;
            check_date("valid_to", e.valid_to)?;
            if e.valid_to < e.valid_from {
                return Err(DomainError::DateOrder { field: "valid_to", before: "valid_from" });
            }
            if !period_fits(e.valid_from, e.valid_to) {
                return Err(DomainError::AgreementTooLong { max_months: MAX_AGREEMENT_MONTHS });
            }
            check_items("goal_ids", e.goal_ids.len())?;
            check_items("tasks", e.tasks.len())?;
            check_range("hours_per_week", e.hours_per_week.into(), HOURS_PER_WEEK)
        }
        E::MentorAgreementRenewed(e) => check_date("valid_to", e.valid_to),
        E::MeetingHeld(e) => {
            check_items("attendees", e.attendees.len())?;
            check_items("other_attendees", e.other_attendees.len())?;
            check_items("decisions", e.decisions.len())
        }
        E::ContactPlanAgreed(e) => {
            check_range("every_days", e.every_days.into(), CONTACT_EVERY_DAYS)?;
            check_items("by", e.by.len())
        }
        E::EventCorrected(e) => {
            if !e.replacement.is_correctable() {
                return Err(DomainError::NotCorrectable { event_type: e.replacement.event_type() });
            }
            validate(&e.replacement)
        }
        E::PhaseChanged(_)
        | E::CourseClosed(_)
        | E::GoalSet(_)
        | E::SubGoalSet(_)
        | E::GoalAchieved(_)
        | E::GoalDropped(_)
        | E::ActionCompleted(_)
        | E::ActionCancelled(_)
        | E::AssessmentRecorded(_)
        | E::SupportNeedRecorded(_)
        | E::EventRetracted(_) => Ok(()),
    }
}

/// `from..=to` (both days included) spans at most [`MAX_AGREEMENT_MONTHS`]: 1 January to
/// 30 June fits, 1 January to 1 July does not.
fn period_fits(from: Date, to: Date) -> bool {
    add_months(from, MAX_AGREEMENT_MONTHS).is_some_and(|limit| to < limit)
}

fn check_date(field: &'static str, d: Date) -> Result<(), DomainError> {
    if (MIN_DATE..=MAX_DATE).contains(&d) {
        Ok(())
    } else {
        Err(DomainError::DateOutOfRange { field, min: MIN_DATE, max: MAX_DATE })
    }
}

fn check_items(field: &'static str, len: usize) -> Result<(), DomainError> {
    if len <= MAX_ITEMS { Ok(()) } else { Err(DomainError::TooManyItems { field, max: MAX_ITEMS, len }) }
}

fn check_range(field: &'static str, value: i64, (min, max): (i64, i64)) -> Result<(), DomainError> {
    if (min..=max).contains(&value) { Ok(()) } else { Err(DomainError::OutOfRange { field, value, min, max }) }
}
