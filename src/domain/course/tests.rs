//! given / when / then for every course command: its events on success, each refusal by code.

use time::Duration;
use time::macros::{date, datetime};

use crate::domain::common::*;
use crate::domain::course::*;
use crate::domain::programme::ProgrammeKind;
use crate::domain::testing::*;

use CourseCommand as C;

fn with_goal() -> Vec<CourseEvent> {
    let mut h = staffed();
    h.push(goal().into());
    h
}

fn with_placement() -> Vec<CourseEvent> {
    let mut h = with_goal();
    h.push(placement().into());
    h
}

// -- opening

#[test]
fn open_by_referring_caseworker() {
    given([]).when(C::OpenCourse(opened())).then(vec![opened().into()]);
}

#[test]
fn open_by_youth_coordinator_assigns_them() {
    given([]).when(C::OpenCourse(opened())).by(coordinator()).then(vec![
        opened().into(),
        ParticipantAssigned { account_id: YC, role: Role::YouthCoordinator, relation: None, company_id: None }.into(),
    ]);
}

#[test]
fn open_refusals() {
    given([]).when(C::OpenCourse(opened())).by(teacher()).then_err("not_permitted");
    given(staffed()).when(C::OpenCourse(opened())).then_err("course_already_opened");
    given([]).when(C::OpenCourse(opened())).at(NOW + Duration::minutes(6)).then_err("occurred_in_future");
    given([]).when(C::OpenCourse(CourseOpened { referring_caseworker: YP, ..opened() })).then_err("unexpected_field");
    given([])
        .when(C::OpenCourse(CourseOpened { start_date: date!(1899 - 12 - 31), ..opened() }))
        .then_err("date_out_of_range");
}

#[test]
fn ressourceforloeb_is_closed_to_new_citizens_from_2026_but_others_are_not() {
    let late = CourseOpened { start_date: date!(2026 - 01 - 01), ..opened() };
    given([]).when(C::OpenCourse(late.clone())).then_err("programme_closed_to_new_citizens");
    let stu = CourseOpened { programme: ProgrammeKind::Stu, ..late };
    given([]).when(C::OpenCourse(stu.clone())).then(vec![stu.into()]);
}

#[test]
fn running_ressourceforloeb_continues_in_2026() {
    let mut h = given(staffed()).when(C::LogContact(contact()));
    h.ctx = CommandContext::now(datetime!(2026-03-01 10:00 UTC), caseworker());
    h.then_ok();
}

#[test]
fn nothing_before_opening() {
    given([]).when(C::LogContact(contact())).then_err("course_not_opened");
    given([])
        .when(C::RetractEvent(EventRetracted { target_event_id: ev(0), reason: l("x") }))
        .then_err("course_not_opened");
}

// -- phase and closing

#[test]
fn change_phase() {
    let cmd = C::ChangePhase(PhaseChanged { phase: Phase::Assessment });
    given(staffed()).when(cmd.clone()).then_ok();
    given(staffed()).when(cmd.clone()).by(coordinator()).then_ok();
    given(staffed()).when(cmd.clone()).by(teacher()).then_err("not_permitted");
    given(staffed()).when(cmd).by(actor(STRANGER, Role::Caseworker)).then_err("not_a_participant");
    given(staffed()).when(C::ChangePhase(PhaseChanged { phase: Phase::Intake })).then_err("phase_unchanged");
}

#[test]
fn close_course_then_only_corrections() {
    let close = CourseClosed { outcome: Outcome::Education, note: None };
    given(staffed()).when(C::CloseCourse(close.clone())).then_ok();
    given(with_placement()).when(C::CloseCourse(close.clone())).then_err("placement_already_active");
    let mut h = staffed();
    h.push(contact().into()); // ev(5)
    h.push(close.clone().into());
    given(h.clone()).when(C::LogContact(contact())).then_err("course_closed");
    given(h.clone()).when(C::CloseCourse(close)).then_err("course_closed");
    let fix = EventCorrected {
        target_event_id: ev(5),
        reason: l("Was a video call."),
        replacement: Box::new(ContactLogged { channel: Channel::Video, ..contact() }.into()),
    };
    given(h.clone()).when(C::CorrectEvent(fix)).then_ok();
    given(h).when(C::RetractEvent(EventRetracted { target_event_id: ev(5), reason: l("Wrong course.") })).then_ok();
}

// -- participants

#[test]
fn assign_participants() {
    let mut h = staffed();
    h.push(ParticipantUnassigned { account_id: TEACHER, role: Role::Teacher, reason: None }.into());
    given(h).when(C::AssignParticipant(assigned(TEACHER, Role::Teacher))).then_ok();
    given(staffed()).when(C::AssignParticipant(assigned(STRANGER, Role::Mentor))).by(coordinator()).then_ok();
    given(staffed()).when(C::AssignParticipant(assigned(STRANGER, Role::Network))).then_ok();
}

#[test]
fn assign_refusals() {
    let g = || given(staffed());
    g().when(C::AssignParticipant(assigned(TEACHER, Role::Teacher))).then_err("already_assigned");
    g().when(C::AssignParticipant(assigned(STRANGER, Role::YoungPerson))).then_err("young_person_is_fixed");
    g().when(C::AssignParticipant(assigned(STRANGER, Role::Auditor))).then_err("not_a_participant_role");
    g().when(C::AssignParticipant(ParticipantAssigned { relation: None, ..assigned(STRANGER, Role::Network) }))
        .then_err("missing_field");
    g().when(C::AssignParticipant(ParticipantAssigned { company_id: None, ..assigned(STRANGER, Role::Mentor) }))
        .then_err("missing_field");
    g().when(C::AssignParticipant(ParticipantAssigned {
        relation: Some(s("uncle")),
        ..assigned(STRANGER, Role::Teacher)
    }))
    .then_err("unexpected_field");
    g().when(C::AssignParticipant(assigned(STRANGER, Role::Teacher))).by(teacher()).then_err("not_permitted");
    g().when(C::AssignParticipant(assigned(STRANGER, Role::Teacher)))
        .by(actor(STRANGER, Role::YouthCoordinator))
        .then_err("not_a_participant");
}

#[test]
fn the_opener_may_staff_the_course() {
    // The opener is a caseworker who is not (or no longer) assigned.
    let mut h = staffed();
    h.push(ParticipantUnassigned { account_id: CW, role: Role::Caseworker, reason: None }.into());
    given(h).when(C::AssignParticipant(assigned(STRANGER, Role::Caseworker))).then_ok();
}

#[test]
fn unassign() {
    let cmd = |account_id, role| {
        C::UnassignParticipant(ParticipantUnassigned { account_id, role, reason: Some(l("Left the provider.")) })
    };
    given(staffed()).when(cmd(TEACHER, Role::Teacher)).then_ok();
    given(staffed()).when(cmd(TEACHER, Role::Mentor)).then_err("not_assigned");
    given(staffed()).when(cmd(YP, Role::YoungPerson)).then_err("young_person_is_fixed");
    given(staffed()).when(cmd(TEACHER, Role::Teacher)).by(mentor()).then_err("not_permitted");
}

// -- contacts, check-ins, guidance

#[test]
fn log_contact() {
    given(staffed()).when(C::LogContact(contact())).then_ok();
    given(staffed()).when(C::LogContact(contact())).by(mentor()).then_ok();
    given(staffed()).when(C::LogContact(contact())).at(T0 - Duration::days(3)).then_err("occurred_before_course");
    given(staffed()).when(C::LogContact(contact())).at(NOW + Duration::minutes(5)).then_ok();
    given(staffed())
        .when(C::LogContact(contact()))
        .at(NOW + Duration::minutes(5) + Duration::seconds(1))
        .then_err("occurred_in_future");
    given(staffed()).when(C::LogContact(contact())).by(actor(NET, Role::Network)).then_err("not_permitted");
    given(staffed()).when(C::LogContact(contact())).by(actor(STRANGER, Role::Teacher)).then_err("not_a_participant");
    given(staffed())
        .when(C::LogContact(ContactLogged { with: vec![STRANGER], ..contact() }))
        .then_err("unknown_participant");
    given(staffed()).when(C::LogContact(ContactLogged { with: vec![], ..contact() })).then_err("missing_field");
    given(staffed())
        .when(C::LogContact(ContactLogged { duration_minutes: 24 * 60 + 1, ..contact() }))
        .then_err("out_of_range");
    given(staffed()).when(C::LogContact(ContactLogged { with: vec![YP; 51], ..contact() })).then_err("too_many_items");
}

#[test]
fn log_check_in() {
    let g = || given(with_placement());
    g().when(C::LogCheckIn(check_in())).by(mentor()).then_ok();
    g().when(C::LogCheckIn(check_in())).by(teacher()).then_err("not_course_mentor");
    g().when(C::LogCheckIn(check_in())).by(actor(STRANGER, Role::Mentor)).then_err("not_course_mentor");
    for wellbeing in [0, 6, 255] {
        g().when(C::LogCheckIn(CheckInLogged { wellbeing, ..check_in() })).by(mentor()).then_err("out_of_range");
    }
    g().when(C::LogCheckIn(CheckInLogged { placement_id: PlacementId(id(0x99)), ..check_in() }))
        .by(mentor())
        .then_err("unknown_placement");
    let mut ended = with_placement();
    ended.push(placement_ended().into());
    given(ended).when(C::LogCheckIn(check_in())).by(mentor()).then_err("placement_not_active");
}

#[test]
fn hold_guidance_session() {
    let g = || given(with_goal());
    g().when(C::HoldGuidanceSession(guidance())).by(teacher()).then_ok();
    g().when(C::HoldGuidanceSession(guidance())).by(coordinator()).then_ok();
    g().when(C::HoldGuidanceSession(guidance())).then_err("not_permitted");
    g().when(C::HoldGuidanceSession(GuidanceSessionHeld { work_tasks: vec![], ..guidance() }))
        .by(teacher())
        .then_err("missing_field");
    given(staffed()).when(C::HoldGuidanceSession(guidance())).by(teacher()).then_err("unknown_goal");
}

// -- goals

#[test]
fn goals() {
    given(staffed()).when(C::SetGoal(goal())).then_ok();
    given(staffed()).when(C::SetGoal(goal())).by(actor(YP, Role::YoungPerson)).then_err("not_permitted");
    given(with_goal()).when(C::SetGoal(goal())).then_err("duplicate_id");
    given(with_goal()).when(C::SetSubGoal(sub_goal())).then_ok();
    given(staffed()).when(C::SetSubGoal(sub_goal())).then_err("unknown_goal");
    given(with_goal()).when(C::SetSubGoal(SubGoalSet { goal_id: GOAL, ..sub_goal() })).then_err("duplicate_id");
    given(with_goal()).when(C::RecordGoalProgress(progress())).by(teacher()).then_ok();
    given(with_goal())
        .when(C::RecordGoalProgress(GoalProgressRecorded { percent: Some(101), ..progress() }))
        .then_err("out_of_range");
    let achieve = C::AchieveGoal(GoalAchieved { goal_id: GOAL, note: None });
    given(with_goal()).when(achieve.clone()).then_ok();
    let mut done = with_goal();
    done.push(echo(&achieve));
    given(done.clone()).when(achieve).then_err("goal_not_open");
    given(done.clone()).when(C::SetSubGoal(sub_goal())).then_err("goal_not_open");
    let drop = C::DropGoal(GoalDropped { goal_id: GOAL, reason: l("Changed direction.") });
    given(with_goal()).when(drop.clone()).then_ok();
    given(done).when(drop.clone()).then_err("goal_not_open");
    given(staffed()).when(drop).then_err("unknown_goal");
}

// -- actions

#[test]
fn agree_action() {
    let g = || given(with_goal());
    g().when(C::AgreeAction(action())).then_ok();
    g().when(C::AgreeAction(ActionAgreed { owner: STRANGER, ..action() })).then_err("unknown_participant");
    g().when(C::AgreeAction(ActionAgreed { agreed_by: vec![YP, STRANGER], ..action() }))
        .then_err("unknown_participant");
    g().when(C::AgreeAction(ActionAgreed { due: date!(2025 - 06 - 02), ..action() })).then_err("due_before_agreement");
    // Same day as agreed is fine.
    g().when(C::AgreeAction(ActionAgreed { due: NOW.date(), ..action() })).then_ok();
    g().when(C::AgreeAction(ActionAgreed { goal_id: Some(GoalId(id(0x66))), ..action() })).then_err("unknown_goal");
    g().when(C::AgreeAction(ActionAgreed { action_id: ActionId(GOAL.0), ..action() })).then_err("duplicate_id");
    g().when(C::AgreeAction(ActionAgreed { due: date!(2200 - 01 - 01), ..action() })).then_err("date_out_of_range");
}

#[test]
fn complete_reschedule_cancel_action() {
    let mut h = with_goal();
    h.push(action().into()); // agreed on T0's date (2025-06-02)
    let complete = C::CompleteAction(ActionCompleted { action_id: ACTION, note: None });
    let cancel = C::CancelAction(ActionCancelled { action_id: ACTION, reason: l("Not needed.") });
    let reschedule = |due| C::RescheduleAction(ActionRescheduled { action_id: ACTION, due, reason: l("Holiday.") });
    given(h.clone()).when(complete.clone()).by(teacher()).then_ok();
    given(h.clone()).when(cancel.clone()).then_ok();
    given(h.clone()).when(reschedule(date!(2025 - 07 - 01))).then_ok();
    given(h.clone()).when(reschedule(date!(2025 - 06 - 01))).then_err("due_before_agreement");
    given(with_goal()).when(complete.clone()).then_err("unknown_action");
    let mut cancelled = h.clone();
    cancelled.push(echo(&cancel));
    given(cancelled.clone()).when(complete).then_err("action_not_open");
    given(cancelled.clone()).when(cancel).then_err("action_not_open");
    given(cancelled).when(reschedule(date!(2025 - 07 - 01))).then_err("action_not_open");
}

// -- placements and mentor agreements

#[test]
fn start_placement() {
    given(with_goal()).when(C::StartPlacement(placement())).then_ok();
    given(with_goal())
        .when(C::StartPlacement(PlacementStarted { mentor: None, ..placement() }))
        .by(teacher())
        .then_ok();
    given(with_placement())
        .when(C::StartPlacement(PlacementStarted { placement_id: PlacementId(id(0x91)), ..placement() }))
        .then_err("placement_already_active");
    given(with_placement()).when(C::StartPlacement(placement())).then_err("duplicate_id");
    given(with_goal())
        .when(C::StartPlacement(PlacementStarted { mentor: Some(TEACHER), ..placement() }))
        .then_err("not_a_mentor");
    given(with_goal())
        .when(C::StartPlacement(PlacementStarted { hours_per_week: 0, ..placement() }))
        .then_err("out_of_range");
    given(staffed()).when(C::StartPlacement(placement())).then_err("unknown_goal");
}

#[test]
fn end_placement() {
    given(with_placement()).when(C::EndPlacement(placement_ended())).then_ok();
    given(with_placement())
        .when(C::EndPlacement(PlacementEnded { end_date: date!(2025 - 06 - 01), ..placement_ended() }))
        .then_err("date_order");
    given(with_goal()).when(C::EndPlacement(placement_ended())).then_err("unknown_placement");
    let mut ended = with_placement();
    ended.push(placement_ended().into());
    given(ended.clone()).when(C::EndPlacement(placement_ended())).then_err("placement_not_active");
    // A new placement may start once the old one has ended.
    given(ended)
        .when(C::StartPlacement(PlacementStarted { placement_id: PlacementId(id(0x91)), ..placement() }))
        .then_ok();
}

#[test]
fn mentor_agreement() {
    let g = || given(with_placement());
    g().when(C::MakeMentorAgreement(agreement())).then_ok();
    g().when(C::MakeMentorAgreement(MentorAgreementMade { valid_to: date!(2025 - 12 - 02), ..agreement() }))
        .then_err("agreement_too_long");
    g().when(C::MakeMentorAgreement(MentorAgreementMade { valid_to: date!(2025 - 06 - 01), ..agreement() }))
        .then_err("date_order");
    g().when(C::MakeMentorAgreement(MentorAgreementMade { mentor: TEACHER, ..agreement() })).then_err("not_a_mentor");
    g().when(C::MakeMentorAgreement(MentorAgreementMade { hours_per_week: 61, ..agreement() }))
        .then_err("out_of_range");
    given(with_goal()).when(C::MakeMentorAgreement(agreement())).then_err("unknown_placement");
    g().when(C::MakeMentorAgreement(agreement())).by(actor(NET, Role::Network)).then_err("not_permitted");

    let mut h = with_placement();
    h.push(agreement().into()); // to 2025-12-01
    let renew = |valid_to| C::RenewMentorAgreement(MentorAgreementRenewed { agreement_id: AGREEMENT, valid_to });
    given(h.clone()).when(renew(date!(2026 - 06 - 01))).then_ok();
    given(h.clone()).when(renew(date!(2026 - 06 - 02))).then_err("agreement_too_long");
    given(h.clone()).when(renew(date!(2025 - 12 - 01))).then_err("date_order");
    given(with_placement()).when(renew(date!(2026 - 01 - 01))).then_err("unknown_agreement");
}

// -- assessments, support needs, meetings, contact plans

#[test]
fn assessments_and_support_needs() {
    let assessment = AssessmentRecorded {
        kind: AssessmentKind::IndustryClarification,
        placement_id: Some(PLACEMENT),
        findings: l("Likes routine tasks."),
        recommendation: None,
    };
    given(with_placement()).when(C::RecordAssessment(assessment.clone())).by(coordinator()).then_ok();
    given(with_goal()).when(C::RecordAssessment(assessment)).then_err("unknown_placement");
    let need = SupportNeedRecorded {
        area: SupportArea::Personal,
        life_domain: LifeDomain::LeisureLife,
        description: l("Needs help to join a club."),
    };
    given(staffed()).when(C::RecordSupportNeed(need.clone())).by(teacher()).then_ok();
    given(staffed()).when(C::RecordSupportNeed(need)).by(actor(YP, Role::YoungPerson)).then_err("not_permitted");
}

#[test]
fn meetings_and_contact_plans() {
    given(staffed()).when(C::RecordMeeting(meeting())).then_ok();
    given(staffed()).when(C::RecordMeeting(MeetingHeld { attendees: vec![], ..meeting() })).then_err("missing_field");
    given(staffed())
        .when(C::RecordMeeting(MeetingHeld { attendees: vec![STRANGER], ..meeting() }))
        .then_err("unknown_participant");
    given(staffed())
        .when(C::RecordMeeting(MeetingHeld { decisions: vec![l("d"); 51], ..meeting() }))
        .then_err("too_many_items");
    given(staffed()).when(C::RecordMeeting(meeting())).by(actor(STRANGER, Role::Auditor)).then_err("not_permitted");
    given(staffed()).when(C::AgreeContactPlan(contact_plan())).then_ok();
    given(staffed())
        .when(C::AgreeContactPlan(ContactPlanAgreed { every_days: 0, ..contact_plan() }))
        .then_err("out_of_range");
    given(staffed())
        .when(C::AgreeContactPlan(ContactPlanAgreed { by: vec![], ..contact_plan() }))
        .then_err("missing_field");
}

// -- corrections and retractions

/// staffed (ev 0–4), a goal (ev 5), a placement (ev 6), a contact by the teacher (ev 7), a
/// check-in by the mentor (ev 8).
fn with_records() -> crate::domain::testing::Given {
    given(with_placement()).and_by(teacher(), [contact().into()]).and_by(mentor(), [check_in().into()])
}

fn correction(target: usize, replacement: CourseEvent) -> CourseCommand {
    C::CorrectEvent(EventCorrected {
        target_event_id: ev(target),
        reason: l("Typo."),
        replacement: Box::new(replacement),
    })
}

fn retraction(target: usize) -> CourseCommand {
    C::RetractEvent(EventRetracted { target_event_id: ev(target), reason: l("Wrong course.") })
}

#[test]
fn correct_event() {
    let better = ContactLogged { duration_minutes: 35, ..contact() };
    with_records().when(correction(7, better.clone().into())).by(teacher()).then_ok();
    // A coordinator on the course may correct someone else's entry.
    with_records().when(correction(7, better.clone().into())).by(coordinator()).then_ok();
    // A mentor may not correct the teacher's.
    with_records().when(correction(7, better.clone().into())).by(mentor()).then_err("not_permitted");
    with_records().when(correction(8, better.clone().into())).by(mentor()).then_err("correction_type_mismatch");
    with_records()
        .when(correction(8, CheckInLogged { wellbeing: 9, ..check_in() }.into()))
        .by(mentor())
        .then_err("out_of_range");
    with_records().when(correction(99, better.clone().into())).then_err("unknown_event");
    with_records().when(correction(0, opened().into())).then_err("not_correctable");
}

#[test]
fn corrections_and_retractions_cannot_be_corrected_and_retracted_events_stay_retracted() {
    let better = ContactLogged { duration_minutes: 35, ..contact() };
    let corrected = with_records().and_by(
        teacher(),
        [echo(&correction(7, better.clone().into()))], // ev 9
    );
    corrected.when(correction(9, better.clone().into())).by(teacher()).then_err("not_correctable");
    // Correcting a corrected event again is fine: the latest correction stands.
    with_records()
        .and_by(teacher(), [echo(&correction(7, better.clone().into()))])
        .when(correction(7, contact().into()))
        .by(teacher())
        .then_ok();
    let retracted = || with_records().and_by(teacher(), [echo(&retraction(7))]); // ev 9
    retracted().when(correction(7, better.into())).by(teacher()).then_err("event_retracted");
    retracted().when(retraction(7)).by(teacher()).then_err("event_retracted");
    retracted().when(retraction(9)).by(teacher()).then_err("not_correctable");
}

#[test]
fn retract_event() {
    with_records().when(retraction(8)).by(mentor()).then_ok();
    with_records().when(retraction(8)).then_ok();
    with_records().when(retraction(8)).by(teacher()).then_err("not_permitted");
    with_records().when(retraction(6)).then_err("not_correctable");
    with_records().when(retraction(42)).then_err("unknown_event");
}

// -- texts are bounded where they are parsed

#[test]
fn texts_are_bounded_at_the_edge() {
    assert_eq!(ShortText::try_from("x".repeat(200)).map(|t| t.as_str().len()), Ok(200));
    assert_eq!(ShortText::try_from("x".repeat(201)).unwrap_err().code(), "text_too_long");
    // Characters, not bytes.
    assert!(ShortText::try_from("æ".repeat(200)).is_ok());
    assert_eq!(LongText::try_from("  \n").unwrap_err().code(), "text_blank");
    assert!(LongText::try_from("x".repeat(4001)).is_err());

    let mut json = serde_json::to_value(C::LogContact(contact())).unwrap();
    json["data"]["summary"] = "x".repeat(4001).into();
    let err = serde_json::from_value::<CourseCommand>(json).unwrap_err();
    assert!(err.to_string().contains("at most 4000"), "{err}");
}

// -- the state

#[test]
fn apply_records_what_decisions_need() {
    let mut h = with_placement();
    h.push(action().into());
    let state = given(h).state();
    assert_eq!(state.status, state::CourseStatus::Open);
    assert_eq!(state.version, 8);
    assert_eq!(state.start_date, Some(date!(2025 - 06 - 01)));
    assert_eq!(state.active_placement, Some(PLACEMENT));
    assert!(state.is_assigned(MENTOR, Role::Mentor));
    assert_eq!(state.actions[&ACTION].agreed_on, date!(2025 - 06 - 02));
    assert_eq!(state.events.len(), 8);
    // The state itself round-trips through JSON (for snapshots and debugging).
    let json = serde_json::to_string(&state).unwrap();
    assert_eq!(serde_json::from_str::<CourseState>(&json).unwrap(), state);
}
