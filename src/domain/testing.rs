//! Test fixtures: fixed accounts and ids, text helpers, one example of every event, and the
//! `given(events).when(cmd).then(events)` helper.

use time::macros::{date, datetime};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::common::*;
use super::company::*;
use super::course::*;
use super::programme::ProgrammeKind;

pub const T0: OffsetDateTime = datetime!(2025-06-02 09:00 UTC);
/// `now` of a `when`: a day after the background.
pub const NOW: OffsetDateTime = datetime!(2025-06-03 12:00 UTC);

pub fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

pub const COURSE: CourseId = CourseId(Uuid::from_u128(0xC0));
pub const COMPANY: CompanyId = CompanyId(Uuid::from_u128(0xC1));
pub const YP: AccountId = AccountId(Uuid::from_u128(1));
pub const CW: AccountId = AccountId(Uuid::from_u128(2));
pub const YC: AccountId = AccountId(Uuid::from_u128(3));
pub const TEACHER: AccountId = AccountId(Uuid::from_u128(4));
pub const MENTOR: AccountId = AccountId(Uuid::from_u128(5));
pub const NET: AccountId = AccountId(Uuid::from_u128(6));
pub const STRANGER: AccountId = AccountId(Uuid::from_u128(9));
pub const GOAL: GoalId = GoalId(Uuid::from_u128(0x60));
pub const SUB_GOAL: GoalId = GoalId(Uuid::from_u128(0x61));
pub const ACTION: ActionId = ActionId(Uuid::from_u128(0xA0));
pub const PLACEMENT: PlacementId = PlacementId(Uuid::from_u128(0x90));
pub const AGREEMENT: AgreementId = AgreementId(Uuid::from_u128(0xAA));

pub fn actor(account_id: AccountId, role: Role) -> Actor {
    Actor { account_id, role }
}
pub fn caseworker() -> Actor {
    actor(CW, Role::Caseworker)
}
pub fn coordinator() -> Actor {
    actor(YC, Role::YouthCoordinator)
}
pub fn teacher() -> Actor {
    actor(TEACHER, Role::Teacher)
}
pub fn mentor() -> Actor {
    actor(MENTOR, Role::Mentor)
}

pub fn s(text: &str) -> ShortText {
    ShortText::try_from(text).unwrap()
}
pub fn l(text: &str) -> LongText {
    LongText::try_from(text).unwrap()
}

// -- one builder per payload, with sensible values

pub fn opened() -> CourseOpened {
    CourseOpened {
        course_id: COURSE,
        young_person: YP,
        programme: ProgrammeKind::Ressourceforloeb,
        referring_caseworker: CW,
        municipality: s("Aarhus Kommune"),
        start_date: date!(2025 - 06 - 01),
    }
}
pub fn assigned(account_id: AccountId, role: Role) -> ParticipantAssigned {
    ParticipantAssigned {
        account_id,
        role,
        relation: (role == Role::Network).then(|| s("mother")),
        company_id: (role == Role::Mentor).then_some(COMPANY),
    }
}
pub fn contact() -> ContactLogged {
    ContactLogged {
        with: vec![YP],
        channel: Channel::Phone,
        direction: Direction::ToYoungPerson,
        outreach: true,
        individual: true,
        duration_minutes: 20,
        summary: l("Talked about getting up in time for the morning shift."),
    }
}
pub fn check_in() -> CheckInLogged {
    CheckInLogged {
        placement_id: PLACEMENT,
        attendance: Attendance::Present,
        wellbeing: 4,
        tasks_done: vec![s("stocked shelves")],
        concerns: None,
        next_step: Some(l("Try the till with a colleague next week.")),
    }
}
pub fn guidance() -> GuidanceSessionHeld {
    GuidanceSessionHeld {
        work_tasks: vec![s("washing up"), s("prepping salad")],
        goal_ids: vec![GOAL],
        duration_minutes: 30,
        summary: l("Went through the prep list; practised asking for help."),
    }
}
pub fn goal() -> GoalSet {
    GoalSet {
        goal_id: GOAL,
        life_domain: LifeDomain::WorkLife,
        title: s("Work 15 hours a week in a kitchen"),
        description: None,
    }
}
pub fn sub_goal() -> SubGoalSet {
    SubGoalSet {
        goal_id: SUB_GOAL,
        parent_goal_id: GOAL,
        title: s("Arrive on time three days in a row"),
        description: None,
    }
}
pub fn progress() -> GoalProgressRecorded {
    GoalProgressRecorded { goal_id: GOAL, percent: Some(40), note: l("On time 4 of 5 days.") }
}
pub fn action() -> ActionAgreed {
    ActionAgreed {
        action_id: ACTION,
        what: s("Apply for a bus card"),
        owner: TEACHER,
        due: date!(2025 - 06 - 20),
        method: Some(s("together at the citizen service")),
        goal_id: Some(GOAL),
        agreed_by: vec![YP, TEACHER, CW],
    }
}
pub fn placement() -> PlacementStarted {
    PlacementStarted {
        placement_id: PLACEMENT,
        kind: PlacementKind::PracticeArena,
        company_id: COMPANY,
        workplace: Workplace::Ordinary,
        mentor: Some(MENTOR),
        hours_per_week: 12,
        tasks: vec![MatchedTask { task: s("kitchen prep"), goal_ids: vec![GOAL] }],
        start_date: date!(2025 - 06 - 02),
    }
}
pub fn placement_ended() -> PlacementEnded {
    PlacementEnded {
        placement_id: PLACEMENT,
        end_date: date!(2025 - 09 - 30),
        outcome: PlacementOutcome::Completed,
        note: None,
    }
}
pub fn agreement() -> MentorAgreementMade {
    MentorAgreementMade {
        agreement_id: AGREEMENT,
        placement_id: PLACEMENT,
        mentor: MENTOR,
        valid_from: date!(2025 - 06 - 02),
        valid_to: date!(2025 - 12 - 01),
        goal_ids: vec![GOAL],
        tasks: vec![s("kitchen prep")],
        hours_per_week: 2,
    }
}
pub fn meeting() -> MeetingHeld {
    MeetingHeld {
        kind: MeetingKind::Network,
        attendees: vec![YP, NET, CW],
        other_attendees: vec![s("psychiatric nurse")],
        decisions: vec![l("Mother drives on Mondays until the bus card is in place.")],
    }
}
pub fn contact_plan() -> ContactPlanAgreed {
    ContactPlanAgreed { every_days: 14, by: vec![CW, YC], note: None }
}

/// One example of every course event type, in `CourseEvent::TYPES` order.
pub fn course_examples() -> Vec<CourseEvent> {
    vec![
        opened().into(),
        PhaseChanged { phase: Phase::Practice }.into(),
        CourseClosed { outcome: Outcome::FlexJob, note: Some(l("Flex job at the canteen, 20 hours a week.")) }.into(),
        assigned(NET, Role::Network).into(),
        ParticipantUnassigned { account_id: TEACHER, role: Role::Teacher, reason: Some(l("Moved to another school.")) }
            .into(),
        contact().into(),
        check_in().into(),
        guidance().into(),
        goal().into(),
        sub_goal().into(),
        progress().into(),
        GoalAchieved { goal_id: SUB_GOAL, note: None }.into(),
        GoalDropped { goal_id: GOAL, reason: l("Chose retail instead.") }.into(),
        action().into(),
        ActionCompleted { action_id: ACTION, note: None }.into(),
        ActionRescheduled {
            action_id: ACTION,
            due: date!(2025 - 06 - 27),
            reason: l("Citizen service closed for the holiday."),
        }
        .into(),
        ActionCancelled { action_id: ACTION, reason: l("Got a bike instead.") }.into(),
        placement().into(),
        placement_ended().into(),
        agreement().into(),
        MentorAgreementRenewed { agreement_id: AGREEMENT, valid_to: date!(2026 - 05 - 31) }.into(),
        AssessmentRecorded {
            kind: AssessmentKind::WorkTrial,
            placement_id: Some(PLACEMENT),
            findings: l("Works steadily for 3 hours; needs a fixed task list."),
            recommendation: Some(l("Kitchen or warehouse with a visual plan.")),
        }
        .into(),
        SupportNeedRecorded {
            area: SupportArea::Social,
            life_domain: LifeDomain::EverydayLife,
            description: l("Needs a known person at the start of each shift."),
        }
        .into(),
        meeting().into(),
        contact_plan().into(),
        EventCorrected {
            target_event_id: id(1005),
            reason: l("Wrong duration."),
            replacement: Box::new(ContactLogged { duration_minutes: 45, ..contact() }.into()),
        }
        .into(),
        EventRetracted { target_event_id: id(1006), reason: l("Logged on the wrong course.") }.into(),
    ]
}

pub fn company_examples() -> Vec<CompanyEvent> {
    vec![
        CompanyRegistered {
            company_id: COMPANY,
            name: s("Kantinen ApS"),
            industry: s("Food service"),
            kind: Workplace::Ordinary,
            cvr: Some(s("12345678")),
        }
        .into(),
        MentorRegistered { account_id: MENTOR, position: Some(s("Kitchen manager")) }.into(),
        RelationalCapacityAssessed {
            score: 4,
            notes: l("Stable team, experienced with trainees; busy at lunch."),
            tasks_offered: vec![s("kitchen prep"), s("washing up")],
        }
        .into(),
    ]
}

// -- given / when / then

/// The course opened by the caseworker and staffed with a youth coordinator, a teacher, a
/// mentor and a network member (5 events).
pub fn staffed() -> Vec<CourseEvent> {
    vec![
        opened().into(),
        assigned(YC, Role::YouthCoordinator).into(),
        assigned(TEACHER, Role::Teacher).into(),
        assigned(MENTOR, Role::Mentor).into(),
        assigned(NET, Role::Network).into(),
    ]
}

/// Event id of the n-th event (0-based) of a `given`.
pub fn ev(n: usize) -> Uuid {
    id(1000 + n as u128)
}

pub struct Given {
    history: Vec<(CourseEvent, EventMeta)>,
}

pub fn given(events: impl IntoIterator<Item = CourseEvent>) -> Given {
    Given { history: Vec::new() }.and_by(caseworker(), events)
}

impl Given {
    /// More history, recorded by `actor`.
    pub fn and_by(mut self, actor: Actor, events: impl IntoIterator<Item = CourseEvent>) -> Self {
        for event in events {
            let n = self.history.len();
            let at = T0 + Duration::minutes(n as i64);
            let meta =
                EventMeta { event_id: ev(n), stream_version: n as u64 + 1, occurred_at: at, recorded_at: at, actor };
            self.history.push((event, meta));
        }
        self
    }

    pub fn state(&self) -> CourseState {
        CourseState::from_events(self.history.iter().map(|(e, m)| (e, m)))
    }

    /// By the caseworker, happening now.
    pub fn when(self, cmd: CourseCommand) -> When {
        When { state: self.state(), cmd, ctx: CommandContext::now(NOW, caseworker()) }
    }
}

pub struct When {
    pub state: CourseState,
    pub cmd: CourseCommand,
    pub ctx: CommandContext,
}

impl When {
    pub fn by(mut self, actor: Actor) -> Self {
        self.ctx.actor = actor;
        self
    }

    pub fn at(mut self, occurred_at: OffsetDateTime) -> Self {
        self.ctx.occurred_at = occurred_at;
        self
    }

    #[track_caller]
    pub fn then(self, expected: Vec<CourseEvent>) {
        match decide(&self.state, &self.cmd, &self.ctx) {
            Ok(events) => assert_eq!(events, expected),
            Err(e) => panic!("expected events, got {} ({e})", e.code()),
        }
    }

    /// Accepted, and produced exactly the payload of the command.
    #[track_caller]
    pub fn then_ok(self) {
        let expected = echo(&self.cmd);
        self.then(vec![expected]);
    }

    #[track_caller]
    pub fn then_err(self, code: &str) {
        match decide(&self.state, &self.cmd, &self.ctx) {
            Ok(events) => panic!("expected {code}, got {events:?}"),
            Err(e) => {
                assert_eq!(e.code(), code, "{e}");
                assert!(!e.to_string().is_empty());
            }
        }
    }
}

/// The event a command carries.
pub fn echo(cmd: &CourseCommand) -> CourseEvent {
    use CourseCommand as C;
    match cmd.clone() {
        C::OpenCourse(e) => e.into(),
        C::ChangePhase(e) => e.into(),
        C::CloseCourse(e) => e.into(),
        C::AssignParticipant(e) => e.into(),
        C::UnassignParticipant(e) => e.into(),
        C::LogContact(e) => e.into(),
        C::LogCheckIn(e) => e.into(),
        C::HoldGuidanceSession(e) => e.into(),
        C::SetGoal(e) => e.into(),
        C::SetSubGoal(e) => e.into(),
        C::RecordGoalProgress(e) => e.into(),
        C::AchieveGoal(e) => e.into(),
        C::DropGoal(e) => e.into(),
        C::AgreeAction(e) => e.into(),
        C::CompleteAction(e) => e.into(),
        C::RescheduleAction(e) => e.into(),
        C::CancelAction(e) => e.into(),
        C::StartPlacement(e) => e.into(),
        C::EndPlacement(e) => e.into(),
        C::MakeMentorAgreement(e) => e.into(),
        C::RenewMentorAgreement(e) => e.into(),
        C::RecordAssessment(e) => e.into(),
        C::RecordSupportNeed(e) => e.into(),
        C::RecordMeeting(e) => e.into(),
        C::AgreeContactPlan(e) => e.into(),
        C::CorrectEvent(e) => e.into(),
        C::RetractEvent(e) => e.into(),
    }
}
