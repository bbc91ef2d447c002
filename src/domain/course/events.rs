//! Course events: what happened in a course, past tense, one payload type per event type.
//!
//! Payloads never carry who, when or the event id: the log's envelope does ([`EventMeta`]).
//! Each payload is the contract of one `events/schemas/{Type}.v{N}.json`.
//!
//! [`EventMeta`]: crate::domain::EventMeta

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::Date;
use uuid::Uuid;

use crate::domain::common::{
    AccountId, ActionId, AgreementId, Channel, CompanyId, CourseId, Direction, GoalId, IsoDate, LifeDomain, LongText,
    PlacementId, Role, ShortText, iso_date,
};
use crate::domain::error::DecodeError;
use crate::domain::events_macro::event_enum;
use crate::domain::programme::ProgrammeKind;

// ---------------------------------------------------------------------------------------------
// vocabularies

/// Where the course stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Intake,
    Assessment,
    Practice,
    Internship,
    EmploymentBound,
}

/// How a course ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Job,
    Education,
    FlexJob,
    Other,
    DroppedOut,
}

/// Whether the young person showed up, as a mentor saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Attendance {
    Present,
    Late,
    AbsentNotified,
    AbsentUnnotified,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlacementKind {
    PracticeArena,
    WorkTrial,
    Internship,
    Employment,
}

/// The provider's own social-economic enterprise, or an affiliated ordinary company.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Workplace {
    SocialEconomic,
    Ordinary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlacementOutcome {
    Completed,
    EndedEarly,
    ContinuedAsEmployment,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssessmentKind {
    WorkTrial,
    IndustryClarification,
}

/// The three areas of support need: personal, social and work-related.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SupportArea {
    Personal,
    Social,
    Work,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MeetingKind {
    Coordination,
    Network,
    Tactical,
    Strategic,
}

/// A work task of a placement and the goals it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchedTask {
    pub task: ShortText,
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub goal_ids: Vec<GoalId>,
}

// ---------------------------------------------------------------------------------------------
// payloads

/// A course was opened for a young person under a programme.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CourseOpened {
    pub course_id: CourseId,
    pub young_person: AccountId,
    pub programme: ProgrammeKind,
    pub referring_caseworker: AccountId,
    pub municipality: ShortText,
    #[serde(with = "iso_date")]
    #[schemars(with = "IsoDate")]
    pub start_date: Date,
}

/// The course moved into another phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PhaseChanged {
    pub phase: Phase,
}

/// The course ended with an outcome. Nothing but corrections may follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CourseClosed {
    pub outcome: Outcome,
    pub note: Option<LongText>,
}

/// Someone took up a role on the course. `relation` is given for network members (e.g.
/// "mother"), `company_id` for mentors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParticipantAssigned {
    pub account_id: AccountId,
    pub role: Role,
    pub relation: Option<ShortText>,
    pub company_id: Option<CompanyId>,
}

/// Someone left a role on the course. The history of assignments shows continuity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParticipantUnassigned {
    pub account_id: AccountId,
    pub role: Role,
    pub reason: Option<LongText>,
}

/// A contact between the actor (a professional) and others on the course (v2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactLogged {
    /// Who the actor was in contact with (course participants, usually the young person).
    #[schemars(length(max = 50))]
    pub with: Vec<AccountId>,
    pub channel: Channel,
    pub direction: Direction,
    /// The professional took the initiative to reach the young person.
    pub outreach: bool,
    /// An individual conversation (counts towards e.g. LAB § 31, stk. 3). New in v2.
    pub individual: bool,
    #[schemars(range(min = 0, max = 1440))]
    pub duration_minutes: u16,
    pub summary: LongText,
}

/// `ContactLogged` as written before v2: without `individual`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename = "ContactLogged")]
pub struct ContactLoggedV1 {
    #[schemars(length(max = 50))]
    pub with: Vec<AccountId>,
    pub channel: Channel,
    pub direction: Direction,
    pub outreach: bool,
    #[schemars(range(min = 0, max = 1440))]
    pub duration_minutes: u16,
    pub summary: LongText,
}

impl From<ContactLoggedV1> for ContactLogged {
    /// v1 did not record whether a contact was an individual conversation; counting it as one
    /// would overstate compliance with a contact requirement, so it upcasts to `false`.
    fn from(v1: ContactLoggedV1) -> Self {
        Self {
            with: v1.with,
            channel: v1.channel,
            direction: v1.direction,
            outreach: v1.outreach,
            individual: false,
            duration_minutes: v1.duration_minutes,
            summary: v1.summary,
        }
    }
}

/// A mentor's check-in from the workplace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckInLogged {
    pub placement_id: PlacementId,
    pub attendance: Attendance,
    /// 1 (very poor) to 5 (very good).
    #[schemars(range(min = 1, max = 5))]
    pub wellbeing: u8,
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub tasks_done: Vec<ShortText>,
    pub concerns: Option<LongText>,
    pub next_step: Option<LongText>,
}

/// A teacher or youth coordinator gave guidance tied to work tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GuidanceSessionHeld {
    #[schemars(length(max = 50))]
    pub work_tasks: Vec<ShortText>,
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub goal_ids: Vec<GoalId>,
    #[schemars(range(min = 0, max = 1440))]
    pub duration_minutes: u16,
    pub summary: LongText,
}

/// A goal was set in a life domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GoalSet {
    pub goal_id: GoalId,
    pub life_domain: LifeDomain,
    pub title: ShortText,
    pub description: Option<LongText>,
}

/// A sub-goal was set under a goal; it shares the goal's life domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubGoalSet {
    pub goal_id: GoalId,
    pub parent_goal_id: GoalId,
    pub title: ShortText,
    pub description: Option<LongText>,
}

/// Progress on a goal or sub-goal was noted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GoalProgressRecorded {
    pub goal_id: GoalId,
    /// 0–100, if the parties estimate one.
    #[schemars(range(min = 0, max = 100))]
    pub percent: Option<u8>,
    pub note: LongText,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GoalAchieved {
    pub goal_id: GoalId,
    pub note: Option<LongText>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GoalDropped {
    pub goal_id: GoalId,
    pub reason: LongText,
}

/// The parties agreed an action: what, who owns it, by when, how, towards which goal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionAgreed {
    pub action_id: ActionId,
    pub what: ShortText,
    pub owner: AccountId,
    #[serde(with = "iso_date")]
    #[schemars(with = "IsoDate")]
    pub due: Date,
    pub method: Option<ShortText>,
    pub goal_id: Option<GoalId>,
    /// The participants who agreed it.
    #[schemars(length(max = 50))]
    pub agreed_by: Vec<AccountId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionCompleted {
    pub action_id: ActionId,
    pub note: Option<LongText>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRescheduled {
    pub action_id: ActionId,
    #[serde(with = "iso_date")]
    #[schemars(with = "IsoDate")]
    pub due: Date,
    pub reason: LongText,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionCancelled {
    pub action_id: ActionId,
    pub reason: LongText,
}

/// The young person started in a practice arena, work trial, internship or job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementStarted {
    pub placement_id: PlacementId,
    pub kind: PlacementKind,
    pub company_id: CompanyId,
    pub workplace: Workplace,
    /// The course mentor at the workplace, if one is assigned yet.
    pub mentor: Option<AccountId>,
    /// 1–60.
    #[schemars(range(min = 1, max = 60))]
    pub hours_per_week: u8,
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub tasks: Vec<MatchedTask>,
    #[serde(with = "iso_date")]
    #[schemars(with = "IsoDate")]
    pub start_date: Date,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementEnded {
    pub placement_id: PlacementId,
    #[serde(with = "iso_date")]
    #[schemars(with = "IsoDate")]
    pub end_date: Date,
    pub outcome: PlacementOutcome,
    pub note: Option<LongText>,
}

/// A mentor agreement for a placement: period (at most 6 months), goals, tasks and hours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MentorAgreementMade {
    pub agreement_id: AgreementId,
    pub placement_id: PlacementId,
    pub mentor: AccountId,
    #[serde(with = "iso_date")]
    #[schemars(with = "IsoDate")]
    pub valid_from: Date,
    #[serde(with = "iso_date")]
    #[schemars(with = "IsoDate")]
    pub valid_to: Date,
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub goal_ids: Vec<GoalId>,
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub tasks: Vec<ShortText>,
    /// Mentor hours per week, 1–60.
    #[schemars(range(min = 1, max = 60))]
    pub hours_per_week: u8,
}

/// A mentor agreement was extended by a further period of at most 6 months.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MentorAgreementRenewed {
    pub agreement_id: AgreementId,
    #[serde(with = "iso_date")]
    #[schemars(with = "IsoDate")]
    pub valid_to: Date,
}

/// Findings from a work trial or an industry clarification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssessmentRecorded {
    pub kind: AssessmentKind,
    pub placement_id: Option<PlacementId>,
    pub findings: LongText,
    pub recommendation: Option<LongText>,
}

/// A need for support in an area and life domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SupportNeedRecorded {
    pub area: SupportArea,
    pub life_domain: LifeDomain,
    pub description: LongText,
}

/// A meeting about the course: who attended and what was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MeetingHeld {
    pub kind: MeetingKind,
    /// Course participants who attended.
    #[schemars(length(max = 50))]
    pub attendees: Vec<AccountId>,
    /// Others who attended, by name or function (e.g. "team leader, jobcenter").
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub other_attendees: Vec<ShortText>,
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub decisions: Vec<LongText>,
}

/// How often the young person is to be contacted, and by whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactPlanAgreed {
    /// At least one contact every this many days (1–92).
    #[schemars(range(min = 1, max = 92))]
    pub every_days: u16,
    /// The participants responsible for the contact.
    #[schemars(length(max = 50))]
    pub by: Vec<AccountId>,
    pub note: Option<LongText>,
}

/// An earlier event of this course is superseded by `replacement` (same event type). The
/// original stays in the record; projections show the replacement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventCorrected {
    pub target_event_id: Uuid,
    pub reason: LongText,
    pub replacement: Box<CourseEvent>,
}

/// An earlier event of this course is withdrawn. It stays in the record; projections skip it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventRetracted {
    pub target_event_id: Uuid,
    pub reason: LongText,
}

event_enum! {
    /// Everything that can happen in a course. Closed: a new kind of event is a new variant.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum CourseEvent {
        CourseOpened = 1,
        PhaseChanged = 1,
        CourseClosed = 1,
        ParticipantAssigned = 1,
        ParticipantUnassigned = 1,
        ContactLogged = 2,
        CheckInLogged = 1,
        GuidanceSessionHeld = 1,
        GoalSet = 1,
        SubGoalSet = 1,
        GoalProgressRecorded = 1,
        GoalAchieved = 1,
        GoalDropped = 1,
        ActionAgreed = 1,
        ActionCompleted = 1,
        ActionRescheduled = 1,
        ActionCancelled = 1,
        PlacementStarted = 1,
        PlacementEnded = 1,
        MentorAgreementMade = 1,
        MentorAgreementRenewed = 1,
        AssessmentRecorded = 1,
        SupportNeedRecorded = 1,
        MeetingHeld = 1,
        ContactPlanAgreed = 1,
        EventCorrected = 1,
        EventRetracted = 1,
    }
}

impl CourseEvent {
    /// Reads a stored payload, upcasting old schema versions to the current type.
    pub fn decode(event_type: &str, schema_version: u16, data: &[u8]) -> Result<Self, DecodeError> {
        // Upcasts: one arm per superseded (type, version).
        if let ("ContactLogged", 1) = (event_type, schema_version) {
            return serde_json::from_slice::<ContactLoggedV1>(data).map(|v1| Self::ContactLogged(v1.into())).map_err(
                |source| DecodeError::Malformed { event_type: event_type.to_owned(), version: schema_version, source },
            );
        }
        Self::decode_current_version(event_type, schema_version, data)
    }

    /// As [`decode`](Self::decode), from an already parsed JSON value.
    pub fn decode_value(event_type: &str, schema_version: u16, value: serde_json::Value) -> Result<Self, DecodeError> {
        let malformed =
            |source| DecodeError::Malformed { event_type: event_type.to_owned(), version: schema_version, source };
        // Upcasts: one arm per superseded (type, version).
        if let ("ContactLogged", 1) = (event_type, schema_version) {
            return serde_json::from_value::<ContactLoggedV1>(value)
                .map(|v1| Self::ContactLogged(v1.into()))
                .map_err(malformed);
        }
        let current = Self::TYPES
            .iter()
            .find(|(t, _)| *t == event_type)
            .map(|(_, v)| *v)
            .ok_or_else(|| DecodeError::UnknownEventType(event_type.to_owned()))?;
        if current != schema_version {
            return Err(DecodeError::UnsupportedVersion { event_type: event_type.to_owned(), version: schema_version });
        }
        match Self::decode_current(event_type, value) {
            Some(result) => result.map_err(malformed),
            None => Err(DecodeError::UnknownEventType(event_type.to_owned())),
        }
    }

    /// Schemas of superseded versions that stored events may still be written in.
    pub fn legacy_schemas() -> Vec<(&'static str, u16, Schema)> {
        vec![("ContactLogged", 1, schemars::schema_for!(ContactLoggedV1))]
    }

    /// Only recorded observations may be corrected or retracted. Lifecycle events (opening,
    /// assignments, goals, actions, placements, agreements, closing) are reversed by their
    /// compensating event instead, so the state decisions rely on is never rewritten after the
    /// fact, and a correction is never itself corrected.
    pub fn is_correctable(&self) -> bool {
        matches!(
            self,
            Self::ContactLogged(_)
                | Self::CheckInLogged(_)
                | Self::GuidanceSessionHeld(_)
                | Self::GoalProgressRecorded(_)
                | Self::AssessmentRecorded(_)
                | Self::SupportNeedRecorded(_)
                | Self::MeetingHeld(_)
                | Self::ContactPlanAgreed(_)
        )
    }
}

/// Names of the correctable event types (see [`CourseEvent::is_correctable`]).
pub const CORRECTABLE_TYPES: &[&str] = &[
    "ContactLogged",
    "CheckInLogged",
    "GuidanceSessionHeld",
    "GoalProgressRecorded",
    "AssessmentRecorded",
    "SupportNeedRecorded",
    "MeetingHeld",
    "ContactPlanAgreed",
];

/// Inside a correction, an event is written self-describing, exactly as it would be stored:
/// `{"event_type", "schema_version", "data"}`. Reading it goes through `decode`, so a
/// correction written before an upcast still loads.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Embedded<'a> {
    event_type: Cow<'a, str>,
    schema_version: u16,
    data: serde_json::Value,
}

impl Serialize for CourseEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Embedded {
            event_type: Cow::Borrowed(self.event_type()),
            schema_version: self.schema_version(),
            data: self.to_value(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for CourseEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let e = Embedded::deserialize(d)?;
        CourseEvent::decode_value(&e.event_type, e.schema_version, e.data).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for CourseEvent {
    fn schema_name() -> Cow<'static, str> {
        "EmbeddedCourseEvent".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A course event written as stored: its type, schema version and payload (which must validate against events/schemas/{event_type}.v{schema_version}.json).",
            "type": "object",
            "properties": {
                "event_type": { "type": "string", "enum": CORRECTABLE_TYPES },
                "schema_version": { "type": "integer", "minimum": 1, "maximum": 65535 },
                "data": { "type": "object" }
            },
            "required": ["event_type", "schema_version", "data"],
            "additionalProperties": false
        })
    }
}
