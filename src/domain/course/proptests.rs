//! Properties: replays agree however they are done, and nothing panics on any input.

use proptest::collection::vec;
use proptest::prelude::*;
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

use crate::domain::common::*;
use crate::domain::course::*;
use crate::domain::programme::ProgrammeKind;
use crate::domain::testing::*;

/// Raw material for one command; `build` turns it into a command, valid or not.
#[derive(Debug, Clone)]
struct Seed {
    kind: u8,
    a: u8,
    b: u8,
    c: u8,
    n: u16,
    flag: bool,
    text: String,
    day: i32,
    actor: u8,
    role: u8,
    ago_minutes: i64,
}

fn seed() -> impl Strategy<Value = Seed> {
    (
        any::<u8>(),
        (any::<u8>(), any::<u8>(), any::<u8>()),
        prop_oneof![0u16..200, any::<u16>()],
        any::<bool>(),
        prop_oneof![
            3 => "[a-z ]{1,20}",
            1 => "\\PC{0,40}",
            1 => "[a-z]{195,205}",
            1 => any::<String>(),
        ],
        prop_oneof![4 => -30i32..400, 1 => any::<i32>()],
        (any::<u8>(), any::<u8>()),
        prop_oneof![4 => -10i64..3000, 1 => any::<i64>()],
    )
        .prop_map(|(kind, (a, b, c), n, flag, text, day, (actor, role), ago)| Seed {
            kind,
            a,
            b,
            c,
            n,
            flag,
            text,
            day,
            actor,
            role,
            ago_minutes: ago,
        })
}

const ACCOUNTS: [AccountId; 7] = [YP, CW, YC, TEACHER, MENTOR, NET, STRANGER];

fn account(i: u8) -> AccountId {
    ACCOUNTS[usize::from(i) % ACCOUNTS.len()]
}
fn accounts(i: u8) -> Vec<AccountId> {
    (0..i % 4).map(|k| account(i.wrapping_add(k))).collect()
}
/// A small pool, so ids collide and references hit.
fn uid(i: u8) -> Uuid {
    id(0x60 + u128::from(i % 5))
}
fn text<const N: usize>(s: &str) -> Text<N> {
    Text::try_from(s).unwrap_or_else(|_| Text::try_from("fallback").unwrap())
}
fn date(day: i32) -> Date {
    T0.date().checked_add(Duration::days(day.into())).unwrap_or(T0.date())
}

fn actor_of(s: &Seed) -> Actor {
    // Mostly the people on the course in their own role; sometimes anyone in any role.
    let staff = [caseworker(), coordinator(), teacher(), mentor()];
    if !s.role.is_multiple_of(4) {
        staff[usize::from(s.actor) % staff.len()]
    } else {
        actor(account(s.actor), Role::ALL[usize::from(s.role) % Role::ALL.len()])
    }
}

fn correctable(s: &Seed) -> CourseEvent {
    if s.flag {
        ContactLogged { duration_minutes: s.n, ..contact() }.into()
    } else {
        CheckInLogged { wellbeing: s.c % 7, placement_id: PlacementId(uid(s.b)), ..check_in() }.into()
    }
}

fn build(s: &Seed) -> CourseCommand {
    use CourseCommand as C;
    let t = s.text.as_str();
    let goal_id = GoalId(uid(s.a));
    match s.kind % 27 {
        0 => C::OpenCourse(CourseOpened {
            start_date: date(s.day),
            programme: [ProgrammeKind::Ressourceforloeb, ProgrammeKind::Fgu][usize::from(s.flag)],
            ..opened()
        }),
        1 => C::ChangePhase(PhaseChanged {
            phase: [Phase::Intake, Phase::Assessment, Phase::Practice][usize::from(s.a % 3)],
        }),
        2 => C::CloseCourse(CourseClosed { outcome: Outcome::Job, note: None }),
        3 => C::AssignParticipant(ParticipantAssigned {
            account_id: account(s.a),
            role: Role::ALL[usize::from(s.b) % 8],
            relation: s.flag.then(|| text(t)),
            company_id: s.c.is_multiple_of(2).then_some(COMPANY),
        }),
        4 => C::UnassignParticipant(ParticipantUnassigned {
            account_id: account(s.a),
            role: Role::ALL[usize::from(s.b) % 8],
            reason: None,
        }),
        5 => C::LogContact(ContactLogged {
            with: accounts(s.a),
            duration_minutes: s.n,
            summary: text(t),
            individual: s.flag,
            ..contact()
        }),
        6 => C::LogCheckIn(CheckInLogged {
            placement_id: PlacementId(uid(s.a)),
            wellbeing: s.b % 7,
            tasks_done: vec![text(t); usize::from(s.c % 3)],
            ..check_in()
        }),
        7 => C::HoldGuidanceSession(GuidanceSessionHeld {
            goal_ids: vec![goal_id; usize::from(s.b % 2)],
            duration_minutes: s.n,
            ..guidance()
        }),
        8 => C::SetGoal(GoalSet { goal_id, title: text(t), ..goal() }),
        9 => C::SetSubGoal(SubGoalSet { goal_id, parent_goal_id: GoalId(uid(s.b)), ..sub_goal() }),
        10 => C::RecordGoalProgress(GoalProgressRecorded { goal_id, percent: Some(s.b), ..progress() }),
        11 => C::AchieveGoal(GoalAchieved { goal_id, note: None }),
        12 => C::DropGoal(GoalDropped { goal_id, reason: text(t) }),
        13 => C::AgreeAction(ActionAgreed {
            action_id: ActionId(uid(s.a)),
            owner: account(s.b),
            due: date(s.day),
            goal_id: s.flag.then_some(GoalId(uid(s.c))),
            agreed_by: accounts(s.c),
            ..action()
        }),
        14 => C::CompleteAction(ActionCompleted { action_id: ActionId(uid(s.a)), note: None }),
        15 => {
            C::RescheduleAction(ActionRescheduled { action_id: ActionId(uid(s.a)), due: date(s.day), reason: text(t) })
        }
        16 => C::CancelAction(ActionCancelled { action_id: ActionId(uid(s.a)), reason: text(t) }),
        17 => C::StartPlacement(PlacementStarted {
            placement_id: PlacementId(uid(s.a)),
            mentor: s.flag.then(|| account(s.b)),
            hours_per_week: s.c,
            start_date: date(s.day),
            tasks: vec![],
            ..placement()
        }),
        18 => C::EndPlacement(PlacementEnded {
            placement_id: PlacementId(uid(s.a)),
            end_date: date(s.day),
            ..placement_ended()
        }),
        19 => C::MakeMentorAgreement(MentorAgreementMade {
            agreement_id: AgreementId(uid(s.a)),
            placement_id: PlacementId(uid(s.b)),
            mentor: account(s.c),
            valid_from: date(s.day),
            valid_to: date(s.day.saturating_add(i32::from(s.n))),
            goal_ids: vec![],
            ..agreement()
        }),
        20 => C::RenewMentorAgreement(MentorAgreementRenewed {
            agreement_id: AgreementId(uid(s.a)),
            valid_to: date(s.day),
        }),
        21 => C::RecordAssessment(AssessmentRecorded {
            kind: AssessmentKind::WorkTrial,
            placement_id: s.flag.then_some(PlacementId(uid(s.a))),
            findings: text(t),
            recommendation: None,
        }),
        22 => C::RecordSupportNeed(SupportNeedRecorded {
            area: SupportArea::Work,
            life_domain: LifeDomain::WorkLife,
            description: text(t),
        }),
        23 => C::RecordMeeting(MeetingHeld {
            attendees: accounts(s.a),
            decisions: vec![text(t); usize::from(s.b % 60)],
            ..meeting()
        }),
        24 => C::AgreeContactPlan(ContactPlanAgreed { every_days: s.n, by: accounts(s.a), note: None }),
        25 => C::CorrectEvent(EventCorrected {
            target_event_id: id(2000 + u128::from(s.a % 40)),
            reason: text(t),
            replacement: Box::new(correctable(s)),
        }),
        _ => C::RetractEvent(EventRetracted { target_event_id: id(2000 + u128::from(s.a % 40)), reason: text(t) }),
    }
}

type History = Vec<(CourseEvent, EventMeta)>;

/// Runs the commands through `decide`, applying what is accepted one event at a time.
fn run(cmds: impl IntoIterator<Item = (CourseCommand, CommandContext)>) -> (CourseState, History) {
    let mut state = CourseState::default();
    let mut history = History::new();
    for (cmd, ctx) in cmds {
        // Must return, never panic; refusals are simply skipped.
        if let Ok(events) = decide(&state, &cmd, &ctx) {
            for event in events {
                let n = history.len();
                let meta = EventMeta {
                    event_id: id(2000 + n as u128),
                    stream_version: n as u64 + 1,
                    occurred_at: ctx.occurred_at,
                    recorded_at: ctx.now,
                    actor: ctx.actor,
                };
                apply(&mut state, &event, &meta);
                history.push((event, meta));
            }
        }
    }
    (state, history)
}

fn commands(seeds: &[Seed]) -> Vec<(CourseCommand, CommandContext)> {
    let background = staffed().into_iter().enumerate().map(|(n, e)| {
        let at = T0 + Duration::minutes(n as i64);
        (echo_command(e), CommandContext::now(at, caseworker()))
    });
    let random = seeds.iter().enumerate().map(|(n, s)| {
        let now = NOW + Duration::minutes(n as i64);
        let occurred_at =
            s.ago_minutes.checked_mul(60).map(Duration::seconds).and_then(|ago| now.checked_sub(ago)).unwrap_or(now);
        let ctx = CommandContext { now, actor: actor_of(s), occurred_at };
        (build(s), ctx)
    });
    background.chain(random).collect()
}

fn echo_command(e: CourseEvent) -> CourseCommand {
    match e {
        CourseEvent::CourseOpened(p) => CourseCommand::OpenCourse(p),
        CourseEvent::ParticipantAssigned(p) => CourseCommand::AssignParticipant(p),
        other => panic!("not in the background: {other:?}"),
    }
}

fn fold(history: &[(CourseEvent, EventMeta)]) -> CourseState {
    CourseState::from_events(history.iter().map(|(e, m)| (e, m)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_replay_of_accepted_commands_gives_the_same_state(
        seeds in vec(seed(), 0..80),
        split in any::<prop::sample::Index>(),
    ) {
        let (incremental, history) = run(commands(&seeds));
        prop_assert!(history.len() >= 5, "the background is always accepted");

        // All at once.
        prop_assert_eq!(&fold(&history), &incremental);

        // Through storage: payload bytes + type + version, envelope as JSON.
        let stored: History = history
            .iter()
            .map(|(e, m)| {
                let event = CourseEvent::decode(e.event_type(), e.schema_version(), &e.to_data())
                    .expect("an accepted event decodes");
                let meta: EventMeta =
                    serde_json::from_str(&serde_json::to_string(m).unwrap()).unwrap();
                (event, meta)
            })
            .collect();
        prop_assert_eq!(&stored, &history);
        prop_assert_eq!(&fold(&stored), &incremental);

        // From a snapshot taken anywhere, serialised, then the rest.
        let k = split.index(history.len() + 1);
        let snapshot = fold(&history[..k]);
        let mut resumed: CourseState =
            serde_json::from_str(&serde_json::to_string(&snapshot).unwrap()).unwrap();
        for (e, m) in &history[k..] {
            apply(&mut resumed, e, m);
        }
        prop_assert_eq!(&resumed, &incremental);

        // Every accepted event satisfies its own shape rules.
        for (e, _) in &history {
            prop_assert!(validate(e).is_ok());
        }
    }

    #[test]
    fn decide_never_panics_on_a_fresh_or_closed_course(s in seed()) {
        let ctx = CommandContext { now: NOW, actor: actor_of(&s), occurred_at: NOW };
        let _ = decide(&CourseState::default(), &build(&s), &ctx);
        let mut closed = staffed();
        closed.push(CourseClosed { outcome: Outcome::DroppedOut, note: None }.into());
        let _ = decide(&given(closed).state(), &build(&s), &ctx);
    }

    #[test]
    fn texts_never_panic(s in any::<String>()) {
        let short = ShortText::try_from(s.clone());
        prop_assert_eq!(short.is_ok(), !s.trim().is_empty() && s.chars().count() <= 200);
        let _ = LongText::try_from(s);
    }

    #[test]
    fn decoding_garbage_never_panics(
        t in prop_oneof![
            prop::sample::select(CourseEvent::TYPES.iter().map(|t| t.0).collect::<Vec<_>>())
                .prop_map(str::to_owned),
            any::<String>(),
        ],
        v in 0u16..4,
        data in prop_oneof![
            vec(any::<u8>(), 0..64),
            Just(b"{}".to_vec()),
            "\\{\"[a-z_]{1,12}\":(1|null|\"x\"|\\[\\]|\\{\\})\\}".prop_map(String::into_bytes),
        ],
    ) {
        let _ = CourseEvent::decode(&t, v, &data);
        let _ = crate::domain::CompanyEvent::decode(&t, v, &data);
    }
}

#[test]
fn the_generator_reaches_deep_states() {
    // A hand-picked sequence through the generator's own builder, so `build` stays meaningful.
    let s = |kind, a, b, c, day| Seed {
        kind,
        a,
        b,
        c,
        n: 30,
        flag: true,
        text: "ok".into(),
        day,
        actor: 0,
        role: 1,
        ago_minutes: 0,
    };
    let seeds = [
        s(8, 0, 0, 0, 0),   // goal
        s(17, 1, 4, 10, 0), // placement with mentor (account 4 = MENTOR)
        s(13, 2, 3, 0, 30), // action owned by TEACHER
    ];
    let (state, history) = run(commands(&seeds));
    assert_eq!(history.len(), 8, "{history:#?}");
    assert_eq!(state.goals.len(), 1);
    assert_eq!(state.actions.len(), 1);
    assert!(state.active_placement.is_some());
    let _: OffsetDateTime = NOW;
}
