//! Refusals. `DomainError` is closed: every variant has a stable snake_case code (part of the
//! API contract, never renamed) and a human message. [`ERROR_CODES`] is the published table.

use thiserror::Error;
use uuid::Uuid;

use super::common::Role;

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    // -- the course's lifecycle
    #[error("the course has not been opened")]
    CourseNotOpened,
    #[error("the course has already been opened")]
    CourseAlreadyOpened,
    #[error("the course is closed; only corrections and retractions may be recorded")]
    CourseClosed,
    #[error("{programme} is closed to new citizens from {closed_from}; running courses continue")]
    ProgrammeClosedToNewCitizens { programme: &'static str, closed_from: time::Date },
    #[error("{programme} cannot start before {opens}")]
    ProgrammeNotYetOpen { programme: &'static str, opens: time::Date },
    #[error("the course is already in that phase")]
    PhaseUnchanged,

    // -- who may act
    #[error("a {role} may not do this")]
    NotPermitted { role: &'static str },
    #[error("you are not assigned to this course in the role you act in")]
    NotAParticipant,
    #[error("only a mentor assigned to this course may log a check-in")]
    NotCourseMentor,

    // -- time
    #[error("occurred_at is more than 5 minutes in the future")]
    OccurredInFuture,
    #[error("occurred_at is before the course was opened")]
    OccurredBeforeCourse,
    #[error("{field} is outside {min}..={max}")]
    DateOutOfRange { field: &'static str, min: time::Date, max: time::Date },
    #[error("{field} is before {before}")]
    DateOrder { field: &'static str, before: &'static str },

    // -- shapes of values
    #[error("text must not be blank")]
    TextBlank,
    #[error("text is {len} characters; at most {max} are allowed")]
    TextTooLong { max: usize, len: usize },
    #[error("{field} has {len} items; at most {max} are allowed")]
    TooManyItems { field: &'static str, max: usize, len: usize },
    #[error("{field} is {value}; it must be within {min}..={max}")]
    OutOfRange { field: &'static str, value: i64, min: i64, max: i64 },
    #[error("{field} is required here")]
    MissingField { field: &'static str },
    #[error("{field} does not apply here")]
    UnexpectedField { field: &'static str },

    // -- participants
    #[error("{role} cannot be a course participant")]
    NotAParticipantRole { role: &'static str },
    #[error("account {account_id} is already assigned as {role}")]
    AlreadyAssigned { account_id: Uuid, role: &'static str },
    #[error("account {account_id} is not assigned as {role}")]
    NotAssigned { account_id: Uuid, role: &'static str },
    #[error("the course's young person is fixed when it is opened")]
    YoungPersonIsFixed,
    #[error("account {account_id} is not a participant of this course")]
    UnknownParticipant { account_id: Uuid },
    #[error("account {account_id} is not assigned as mentor on this course")]
    NotAMentor { account_id: Uuid },

    // -- goals, actions, placements, agreements
    #[error("id {id} is already used in this course")]
    DuplicateId { id: Uuid },
    #[error("no goal {id} in this course")]
    UnknownGoal { id: Uuid },
    #[error("goal {id} is already achieved or dropped")]
    GoalNotOpen { id: Uuid },
    #[error("no action {id} in this course")]
    UnknownAction { id: Uuid },
    #[error("action {id} is already completed or cancelled")]
    ActionNotOpen { id: Uuid },
    #[error("the due date is before the day the action was agreed")]
    DueBeforeAgreement,
    #[error("no placement {id} in this course")]
    UnknownPlacement { id: Uuid },
    #[error("placement {id} is not active")]
    PlacementNotActive { id: Uuid },
    #[error("placement {id} is still active; end it first")]
    PlacementAlreadyActive { id: Uuid },
    #[error("no mentor agreement {id} in this course")]
    UnknownAgreement { id: Uuid },
    #[error("a mentor agreement period may be at most {max_months} months")]
    AgreementTooLong { max_months: u32 },

    // -- corrections
    #[error("no event {id} in this course")]
    UnknownEvent { id: Uuid },
    #[error("{event_type} cannot be corrected or retracted; record its compensating event")]
    NotCorrectable { event_type: &'static str },
    #[error("a correction of {target} must carry a {target}, not a {replacement}")]
    CorrectionTypeMismatch { target: &'static str, replacement: &'static str },
    #[error("event {id} has been retracted")]
    EventRetracted { id: Uuid },

    // -- companies
    #[error("the company has not been registered")]
    CompanyNotRegistered,
    #[error("the company has already been registered")]
    CompanyAlreadyRegistered,
    #[error("account {account_id} is already registered as a mentor of this company")]
    MentorAlreadyRegistered { account_id: Uuid },
}

impl DomainError {
    pub(crate) fn not_permitted(role: Role) -> Self {
        Self::NotPermitted { role: role.as_str() }
    }

    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        use DomainError::*;
        match self {
            CourseNotOpened => "course_not_opened",
            CourseAlreadyOpened => "course_already_opened",
            CourseClosed => "course_closed",
            ProgrammeClosedToNewCitizens { .. } => "programme_closed_to_new_citizens",
            ProgrammeNotYetOpen { .. } => "programme_not_yet_open",
            PhaseUnchanged => "phase_unchanged",
            NotPermitted { .. } => "not_permitted",
            NotAParticipant => "not_a_participant",
            NotCourseMentor => "not_course_mentor",
            OccurredInFuture => "occurred_in_future",
            OccurredBeforeCourse => "occurred_before_course",
            DateOutOfRange { .. } => "date_out_of_range",
            DateOrder { .. } => "date_order",
            TextBlank => "text_blank",
            TextTooLong { .. } => "text_too_long",
            TooManyItems { .. } => "too_many_items",
            OutOfRange { .. } => "out_of_range",
            MissingField { .. } => "missing_field",
            UnexpectedField { .. } => "unexpected_field",
            NotAParticipantRole { .. } => "not_a_participant_role",
            AlreadyAssigned { .. } => "already_assigned",
            NotAssigned { .. } => "not_assigned",
            YoungPersonIsFixed => "young_person_is_fixed",
            UnknownParticipant { .. } => "unknown_participant",
            NotAMentor { .. } => "not_a_mentor",
            DuplicateId { .. } => "duplicate_id",
            UnknownGoal { .. } => "unknown_goal",
            GoalNotOpen { .. } => "goal_not_open",
            UnknownAction { .. } => "unknown_action",
            ActionNotOpen { .. } => "action_not_open",
            DueBeforeAgreement => "due_before_agreement",
            UnknownPlacement { .. } => "unknown_placement",
            PlacementNotActive { .. } => "placement_not_active",
            PlacementAlreadyActive { .. } => "placement_already_active",
            UnknownAgreement { .. } => "unknown_agreement",
            AgreementTooLong { .. } => "agreement_too_long",
            UnknownEvent { .. } => "unknown_event",
            NotCorrectable { .. } => "not_correctable",
            CorrectionTypeMismatch { .. } => "correction_type_mismatch",
            EventRetracted { .. } => "event_retracted",
            CompanyNotRegistered => "company_not_registered",
            CompanyAlreadyRegistered => "company_already_registered",
            MentorAlreadyRegistered { .. } => "mentor_already_registered",
        }
    }
}

/// Every refusal code with what it means, for the API's published error table.
pub const ERROR_CODES: &[(&str, &str)] = &[
    ("course_not_opened", "The course stream has no CourseOpened event yet."),
    ("course_already_opened", "The course has already been opened."),
    ("course_closed", "The course is closed; only corrections and retractions are accepted."),
    (
        "programme_closed_to_new_citizens",
        "The programme kind no longer admits new courses starting on this date (e.g. ressourceforløb from 2026-01-01).",
    ),
    ("programme_not_yet_open", "The programme kind does not admit courses starting before its valid_from date."),
    ("phase_unchanged", "The course is already in the requested phase."),
    ("not_permitted", "The actor's role may not perform this command."),
    ("not_a_participant", "The actor is not assigned to the course in the role they act in."),
    ("not_course_mentor", "Only a mentor assigned to the course may log a check-in."),
    ("occurred_in_future", "occurred_at is more than 5 minutes after the server's clock."),
    ("occurred_before_course", "occurred_at is before the course was opened."),
    ("date_out_of_range", "A calendar date is outside 1900-01-01..=2199-12-31."),
    ("date_order", "A date is before the date it must follow (e.g. an end before its start)."),
    ("text_blank", "A text is empty or whitespace only."),
    ("text_too_long", "A text exceeds its bound (200 characters for names, 4000 for summaries and notes)."),
    ("too_many_items", "A list has more than 50 items."),
    ("out_of_range", "A number is outside its allowed range (e.g. wellbeing 1–5)."),
    ("missing_field", "A field required in this case is missing (e.g. relation for network, company for mentor)."),
    ("unexpected_field", "A field was given that does not apply in this case."),
    ("not_a_participant_role", "auditor and admin cannot be course participants."),
    ("already_assigned", "The account already holds that role on the course."),
    ("not_assigned", "The account does not hold that role on the course."),
    ("young_person_is_fixed", "The course's young person is set when it opens and cannot be reassigned."),
    ("unknown_participant", "A referenced account is not a current participant of the course."),
    ("not_a_mentor", "A referenced account is not assigned as mentor on the course."),
    ("duplicate_id", "A new goal, action, placement or agreement reuses an id already used in the course."),
    ("unknown_goal", "No goal with that id in the course."),
    ("goal_not_open", "The goal is already achieved or dropped."),
    ("unknown_action", "No agreed action with that id in the course."),
    ("action_not_open", "The action is already completed or cancelled."),
    ("due_before_agreement", "A due date is before the day the action was agreed."),
    ("unknown_placement", "No placement with that id in the course."),
    ("placement_not_active", "The placement is not active (already ended)."),
    ("placement_already_active", "Another placement is active; end it before starting a new one."),
    ("unknown_agreement", "No mentor agreement with that id in the course."),
    ("agreement_too_long", "A mentor agreement period exceeds 6 months."),
    ("unknown_event", "The corrected or retracted event id is not in this course's stream."),
    (
        "not_correctable",
        "Corrections and retractions apply to recorded observations; lifecycle events are reversed by their compensating event, and corrections cannot themselves be corrected.",
    ),
    ("correction_type_mismatch", "A correction must carry a payload of the same event type as its target."),
    ("event_retracted", "The target event has been retracted."),
    ("company_not_registered", "The company stream has no CompanyRegistered event yet."),
    ("company_already_registered", "The company has already been registered."),
    ("mentor_already_registered", "The account is already a registered mentor of the company."),
];

/// Why stored bytes could not be read as an event.
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("unknown event type {0:?}")]
    UnknownEventType(String),
    #[error("{event_type} has no schema version {version}")]
    UnsupportedVersion { event_type: String, version: u16 },
    #[error("{event_type} v{version} is malformed: {source}")]
    Malformed {
        event_type: String,
        version: u16,
        #[source]
        source: serde_json::Error,
    },
}
