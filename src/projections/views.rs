//! Read models rendered from a [`CourseView`] at read time, against "now" from the injected
//! clock. Nothing here is stored: overdue, due soon and warnings change with the calendar, not
//! with events, so baking them in at apply time would make them wrong by tomorrow.
//!
//! # What counts as contact with the young person
//!
//! - a `ContactLogged` whose `with` includes the young person (either direction, any channel);
//! - a mentor's `CheckInLogged` where the young person was `present` or `late` (an absence is
//!   not contact);
//! - a `GuidanceSessionHeld` (guidance is given to the young person, at the work task);
//! - a `MeetingHeld` whose attendees include the young person.
//!
//! Retracted observations never count; corrected ones count as corrected. Check-ins, guidance
//! and meetings are face to face, so they are bucketed under channel `in_person` and have no
//! direction. The programme's statutory requirement (e.g. LAB § 31, stk. 3) counts only
//! `ContactLogged` with the young person by a participant in the required role, and only
//! individual conversations where the requirement says so. An agreed contact plan counts any
//! contact with the young person by one of the participants it names.
//!
//! All calendar arithmetic uses Copenhagen local dates ([`super::cph`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

use super::course::*;
use super::cph;
use super::digest::Tally;
use super::obs_list::CHUNK_OBS;
use crate::domain::common::{add_months, iso_date};
use crate::domain::course::state::GoalStatus;
use crate::domain::course::{Attendance, MeetingKind, Outcome, Phase, SupportArea};
use crate::domain::{AccountId, Actor, Channel, CourseEvent, CourseId, Direction, GoalId, LifeDomain, LongText, Role};
use crate::domain::{ProgrammeKind, ShortText};

/// "Due soon": at most this many days left.
pub const DUE_SOON_DAYS: i64 = 3;
/// A mentor agreement ending within this many days is flagged.
pub const AGREEMENT_WARNING_DAYS: i64 = 14;

// ---------------------------------------------------------------------------------------------
// contact with the young person

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InteractionKind {
    Contact,
    CheckIn,
    Guidance,
    Meeting,
}

impl InteractionKind {
    pub(super) fn of(o: &Obs) -> Option<Self> {
        match o {
            Obs::Contact { .. } => Some(Self::Contact),
            Obs::CheckIn { .. } => Some(Self::CheckIn),
            Obs::Guidance { .. } => Some(Self::Guidance),
            Obs::Meeting { .. } => Some(Self::Meeting),
            _ => None,
        }
    }
}

pub(super) fn channel_of(o: &Obs) -> Option<Channel> {
    match o {
        Obs::Contact { channel, .. } => Some(*channel),
        Obs::CheckIn { .. } | Obs::Guidance { .. } | Obs::Meeting { .. } => Some(Channel::InPerson),
        _ => None,
    }
}

pub(super) fn direction_of(o: &Obs) -> Option<Direction> {
    match o {
        Obs::Contact { direction, .. } => Some(*direction),
        _ => None,
    }
}

/// Is this standing observation contact with the young person (see the module docs)?
pub fn is_young_person_contact(o: &Observation, young_person: Option<AccountId>) -> bool {
    if !o.standing() {
        return false;
    }
    match &o.obs {
        Obs::Contact { with, .. } => young_person.is_some_and(|yp| with.contains(&yp)),
        Obs::CheckIn { attendance, .. } => matches!(attendance, Attendance::Present | Attendance::Late),
        Obs::Guidance { .. } => true,
        Obs::Meeting { attendees, .. } => young_person.is_some_and(|yp| attendees.contains(&yp)),
        _ => false,
    }
}

pub fn channel_str(c: Channel) -> &'static str {
    match c {
        Channel::InPerson => "in_person",
        Channel::Phone => "phone",
        Channel::Video => "video",
        Channel::Text => "text",
        Channel::Email => "email",
        Channel::App => "app",
    }
}

pub fn direction_str(d: Direction) -> &'static str {
    match d {
        Direction::ToYoungPerson => "to_young_person",
        Direction::FromYoungPerson => "from_young_person",
    }
}

// ---------------------------------------------------------------------------------------------
// compliance

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComplianceState {
    /// No rule in force (no requirement and no plan, or the course is closed).
    NotApplicable,
    Ok,
    DueSoon,
    Overdue,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCompliance {
    /// `programme_requirement` or `contact_plan`.
    pub rule: String,
    /// What counted, for people: "3 of 4 individual conversations with the caseworker …".
    pub description: String,
    pub legal_basis: Option<String>,
    pub counted: u32,
    pub required: Option<u32>,
    #[serde(default, with = "iso_date::option")]
    pub window_from: Option<Date>,
    /// Last day of the window (inclusive).
    #[serde(default, with = "iso_date::option")]
    pub window_to: Option<Date>,
    #[serde(default, with = "iso_date::option")]
    pub last_counted: Option<Date>,
    /// The next contact is due by this day (inclusive).
    #[serde(default, with = "iso_date::option")]
    pub next_due: Option<Date>,
    pub state: ComplianceState,
    pub days_overdue: i64,
    /// Whether the rule applies today (a requirement's window may be over; then the plan rules).
    pub in_force: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compliance {
    /// The worst state of the rules in force.
    pub state: ComplianceState,
    #[serde(default, with = "iso_date::option")]
    pub next_due: Option<Date>,
    pub days_overdue: i64,
    pub rules: Vec<RuleCompliance>,
}

impl Compliance {
    /// Sort key: most overdue first, then the soonest due, then courses with no rule.
    pub fn urgency(&self) -> (u8, i64) {
        match self.state {
            ComplianceState::Overdue => (0, -self.days_overdue),
            ComplianceState::DueSoon | ComplianceState::Ok => {
                (1, self.next_due.map_or(i64::MAX, |d| d.to_julian_day().into()))
            }
            ComplianceState::NotApplicable => (2, 0),
        }
    }
}

pub(super) fn days(a: Date, b: Date) -> i64 {
    (b - a).whole_days()
}

pub(super) fn due_state(today: Date, due: Date) -> (ComplianceState, i64) {
    let left = days(today, due);
    if left < 0 {
        (ComplianceState::Overdue, -left)
    } else if left <= DUE_SOON_DAYS {
        (ComplianceState::DueSoon, 0)
    } else {
        (ComplianceState::Ok, 0)
    }
}

pub(super) fn role_name(r: Role) -> &'static str {
    match r {
        Role::YouthCoordinator => "youth coordinator",
        Role::YoungPerson => "young person",
        other => other.as_str(),
    }
}

/// Compliance with the programme's contact requirement and the agreed contact plan, today.
pub fn compliance(view: &CourseView, today: Date) -> Compliance {
    let mut rules = Vec::new();
    let open = view.is_open();
    if let (Some(req), Some(start)) = (view.programme.and_then(|p| p.spec().contact_requirement), view.start_date)
        && let Some(end) = add_months(start, req.within_months)
    {
        let last_day = end.previous_day().unwrap_or(end);
        let (mut counted, mut last_counted) = (0u32, None);
        for (actor, t, n) in view.digest().contacts() {
            if t.kind == InteractionKind::Contact
                && actor.role == req.with_role
                && (t.individual || !req.individual_only)
                && (start..=last_day).contains(&t.date)
            {
                counted += n;
                last_counted = last_counted.max(Some(t.date));
            }
        }
        let in_force = open && today <= last_day;
        let (state, days_overdue, next_due) = if counted >= req.count {
            (ComplianceState::Ok, 0, None)
        } else {
            // Paced so the requirement can still be met: the k-th contact is due by
            // start + k/count of the window. The last one is due on the window's last day.
            let span = days(start, last_day);
            let k = i64::from(counted + 1);
            let due = start + Duration::days(k * span / i64::from(req.count.max(1)));
            let (s, d) = due_state(today, due);
            (s, d, Some(due))
        };
        let kind = if req.individual_only { "individual conversations" } else { "contacts" };
        rules.push(RuleCompliance {
            rule: "programme_requirement".into(),
            description: format!(
                "{counted} of {} {kind} with the {} in the first {} months",
                req.count,
                role_name(req.with_role),
                req.within_months
            ),
            legal_basis: Some(req.legal_basis.to_owned()),
            counted,
            required: Some(req.count),
            window_from: Some(start),
            window_to: Some(last_day),
            last_counted,
            next_due,
            state,
            days_overdue,
            in_force,
        });
    }
    // The plan in force is the latest one agreed (and not retracted).
    if let Some((plan, every_days, by)) = view.digest().notes().iter().rev().find_map(|o| match &o.obs {
        Obs::ContactPlan { every_days, by } if o.standing() => Some((o, *every_days, by)),
        _ => None,
    }) {
        let agreed_on = cph::local_date(plan.occurred_at);
        let (mut count, mut last) = (0u32, None);
        for (actor, t, n) in view.digest().contacts() {
            if t.date >= agreed_on && by.contains(&actor.account_id) {
                count += n;
                last = last.max(Some(t.date));
            }
        }
        let due = last.unwrap_or(agreed_on) + Duration::days(every_days.into());
        let (state, days_overdue) = due_state(today, due);
        rules.push(RuleCompliance {
            rule: "contact_plan".into(),
            description: format!(
                "a contact every {every_days} days by one of {} agreed participants; {} since {agreed_on}",
                by.len(),
                count
            ),
            legal_basis: None,
            counted: count,
            required: None,
            window_from: Some(agreed_on),
            window_to: None,
            last_counted: last,
            next_due: Some(due),
            state,
            days_overdue,
            in_force: open,
        });
    }
    let in_force = rules.iter().filter(|r| r.in_force);
    let worst = in_force.clone().max_by_key(|r| (r.state, r.days_overdue));
    Compliance {
        state: worst.map_or(ComplianceState::NotApplicable, |r| r.state),
        next_due: in_force.clone().filter_map(|r| r.next_due).min(),
        days_overdue: worst.map_or(0, |r| r.days_overdue),
        rules,
    }
}

// ---------------------------------------------------------------------------------------------
// contact frequency

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// `2025-W23` or `2025-06`.
    pub key: String,
    pub total: u32,
    pub outreach: u32,
    pub by_role: BTreeMap<String, u32>,
    pub by_channel: BTreeMap<String, u32>,
    pub by_direction: BTreeMap<String, u32>,
    pub by_kind: BTreeMap<String, u32>,
}

impl Bucket {
    pub(super) fn add(&mut self, role: Role, t: &Tally, n: u32) {
        self.total += n;
        if t.outreach {
            self.outreach += n;
        }
        *self.by_role.entry(role.as_str().to_owned()).or_default() += n;
        if let Some(c) = t.channel {
            *self.by_channel.entry(channel_str(c).to_owned()).or_default() += n;
        }
        if let Some(d) = t.direction {
            *self.by_direction.entry(direction_str(d).to_owned()).or_default() += n;
        }
        let k = match t.kind {
            InteractionKind::Contact => "contact",
            InteractionKind::CheckIn => "check_in",
            InteractionKind::Guidance => "guidance",
            InteractionKind::Meeting => "meeting",
        };
        *self.by_kind.entry(k.to_owned()).or_default() += n;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    #[serde(with = "iso_date")]
    pub from: Date,
    #[serde(with = "iso_date")]
    pub to: Date,
    pub days: i64,
    /// Still running: no contact since `from` (then `to` is today).
    pub open: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactFrequency {
    pub course_id: Option<CourseId>,
    #[serde(with = "iso_date")]
    pub today: Date,
    /// Contacts with the young person (see module docs for what counts).
    pub total: u32,
    pub per_week: Vec<Bucket>,
    pub per_month: Vec<Bucket>,
    #[serde(default, with = "iso_date::option")]
    pub last_contact: Option<Date>,
    pub days_since_last_contact: Option<i64>,
    /// The longest stretch without contact, from the start date (or the first contact) on; the
    /// running gap up to today counts while the course is open.
    pub longest_gap: Option<Gap>,
    pub compliance: Compliance,
}

pub fn contact_frequency(view: &CourseView, now: OffsetDateTime) -> ContactFrequency {
    let today = cph::local_date(now);
    let mut weeks: BTreeMap<String, Bucket> = BTreeMap::new();
    let mut months: BTreeMap<String, Bucket> = BTreeMap::new();
    // Contact days, in order (the tallies are sorted by date), and how many contacts.
    let mut dates: Vec<Date> = Vec::new();
    let mut total = 0u32;
    for (actor, t, n) in view.digest().contacts() {
        let d = t.date;
        total += n;
        if dates.last() != Some(&d) {
            dates.push(d);
        }
        let wk = cph::week_key(d);
        weeks.entry(wk.clone()).or_insert_with(|| Bucket { key: wk, ..Bucket::default() }).add(actor.role, t, n);
        let mk = cph::month_key(d);
        months.entry(mk.clone()).or_insert_with(|| Bucket { key: mk, ..Bucket::default() }).add(actor.role, t, n);
    }
    let last = dates.last().copied();
    // Gaps between consecutive contact days, starting from the course's start date.
    let mut longest: Option<Gap> = None;
    let mut consider = |from: Date, to: Date, open: bool| {
        let d = days(from, to);
        if d > 0 && longest.as_ref().is_none_or(|g| d > g.days) {
            longest = Some(Gap { from, to, days: d, open });
        }
    };
    let mut prev = view.start_date.filter(|s| dates.first().is_none_or(|f| s <= f));
    for d in &dates {
        if let Some(p) = prev {
            consider(p, *d, false);
        }
        prev = Some(*d);
    }
    if view.is_open()
        && let Some(p) = prev
        && p <= today
    {
        consider(p, today, true);
    }
    ContactFrequency {
        course_id: view.course_id,
        today,
        total,
        per_week: weeks.into_values().collect(),
        per_month: months.into_values().collect(),
        last_contact: last,
        days_since_last_contact: last.map(|l| days(l, today)),
        longest_gap: longest,
        compliance: compliance(view, today),
    }
}

// ---------------------------------------------------------------------------------------------
// actions

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionState {
    Open,
    /// Open and its due date has passed (Copenhagen local date).
    Overdue,
    Done,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionItem {
    pub course_id: Option<CourseId>,
    pub state: ActionState,
    pub days_overdue: i64,
    #[serde(flatten)]
    pub action: Action,
}

pub fn action_item(course_id: Option<CourseId>, a: &Action, today: Date) -> ActionItem {
    let (state, days_overdue) = match a.outcome {
        ActionOutcome::Done => (ActionState::Done, 0),
        ActionOutcome::Cancelled => (ActionState::Cancelled, 0),
        // Due on a day means "by the end of that day": overdue from the next local day.
        ActionOutcome::Open if today > a.due => (ActionState::Overdue, days(a.due, today)),
        ActionOutcome::Open => (ActionState::Open, 0),
    };
    ActionItem { course_id, state, days_overdue, action: a.clone() }
}

/// All actions of a course, open and overdue first by due date, then the closed ones.
pub fn actions(view: &CourseView, now: OffsetDateTime) -> Vec<ActionItem> {
    let today = cph::local_date(now);
    let mut items: Vec<ActionItem> = view.actions.iter().map(|a| action_item(view.course_id, a, today)).collect();
    sort_actions(&mut items);
    items
}

pub fn sort_actions(items: &mut [ActionItem]) {
    let rank = |s: ActionState| match s {
        ActionState::Overdue | ActionState::Open => 0,
        ActionState::Done | ActionState::Cancelled => 1,
    };
    items.sort_by(|a, b| {
        (rank(a.state), a.action.due, a.action.action_id).cmp(&(rank(b.state), b.action.due, b.action.action_id))
    });
}

// ---------------------------------------------------------------------------------------------
// course status

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoalNode {
    pub goal_id: GoalId,
    pub title: ShortText,
    pub status: GoalStatus,
    /// The latest estimate recorded, if any.
    pub percent: Option<u8>,
    pub progress_notes: u32,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_progress_at: Option<OffsetDateTime>,
    pub sub_goals: Vec<GoalNode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportNeed {
    pub event_id: Uuid,
    pub area: SupportArea,
    pub life_domain: LifeDomain,
    pub description: LongText,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastContact {
    pub event_id: Uuid,
    pub kind: InteractionKind,
    pub by: Actor,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(with = "iso_date")]
    pub local_date: Date,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "warning")]
pub enum Warning {
    MentorAgreementEndingSoon {
        agreement_id: crate::domain::AgreementId,
        #[serde(with = "iso_date")]
        valid_to: Date,
        days_left: i64,
    },
    MentorAgreementExpired {
        agreement_id: crate::domain::AgreementId,
        #[serde(with = "iso_date")]
        valid_to: Date,
        days_ago: i64,
    },
    /// An active placement with a mentor but no agreement at all.
    NoMentorAgreement { placement_id: crate::domain::PlacementId },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CourseStatus {
    pub course_id: Option<CourseId>,
    pub version: u64,
    #[serde(with = "iso_date")]
    pub today: Date,
    pub young_person: Option<AccountId>,
    pub programme: Option<ProgrammeKind>,
    pub programme_name: Option<String>,
    pub municipality: Option<ShortText>,
    #[serde(default, with = "iso_date::option")]
    pub start_date: Option<Date>,
    pub phase: Option<Phase>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub phase_since: Option<OffsetDateTime>,
    pub open: bool,
    pub outcome: Option<Outcome>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub closed_at: Option<OffsetDateTime>,
    pub participants: Vec<Participant>,
    /// Who held the caseworker, teacher and youth coordinator roles, from when to when.
    pub role_history: Vec<Tenure>,
    pub goals: BTreeMap<LifeDomain, Vec<GoalNode>>,
    pub active_placement: Option<Placement>,
    /// The active placement's agreement with the latest end date.
    pub mentor_agreement: Option<Agreement>,
    pub open_actions: Vec<ActionItem>,
    pub overdue_actions: u32,
    pub support_needs: Vec<SupportNeed>,
    pub last_contact: Option<LastContact>,
    pub warnings: Vec<Warning>,
}

fn goal_node(view: &CourseView, g: &Goal, depth: u8) -> GoalNode {
    let progress = view
        .digest()
        .notes()
        .iter()
        .filter(|o| o.standing() && matches!(&o.obs, Obs::GoalProgress { goal_id, .. } if *goal_id == g.goal_id));
    let mut percent = None;
    let mut notes = 0;
    let mut last = None;
    for o in progress {
        notes += 1;
        last = Some(o.occurred_at);
        if let Obs::GoalProgress { percent: Some(p), .. } = o.obs {
            percent = Some(p);
        }
    }
    // Sub-goals nest one level in practice; the depth guard keeps a malformed loop finite.
    let sub_goals = if depth < 4 {
        view.goals.iter().filter(|s| s.parent == Some(g.goal_id)).map(|s| goal_node(view, s, depth + 1)).collect()
    } else {
        Vec::new()
    };
    GoalNode {
        goal_id: g.goal_id,
        title: g.title.clone(),
        status: g.status,
        percent,
        progress_notes: notes,
        last_progress_at: last,
        sub_goals,
    }
}

pub fn course_status(view: &CourseView, now: OffsetDateTime) -> CourseStatus {
    let today = cph::local_date(now);
    let mut goals: BTreeMap<LifeDomain, Vec<GoalNode>> = BTreeMap::new();
    for g in view.goals.iter().filter(|g| g.parent.is_none()) {
        if let Some(domain) = g.life_domain {
            goals.entry(domain).or_default().push(goal_node(view, g, 0));
        }
    }
    let active_placement =
        view.active_placement.and_then(|id| view.placements.iter().find(|p| p.placement_id == id)).cloned();
    let mentor_agreement = active_placement.as_ref().and_then(|p| {
        view.agreements.iter().filter(|a| a.placement_id == p.placement_id).max_by_key(|a| a.valid_to).cloned()
    });
    let mut warnings = Vec::new();
    if view.is_open()
        && let Some(p) = &active_placement
    {
        match &mentor_agreement {
            Some(a) if a.valid_to < today => warnings.push(Warning::MentorAgreementExpired {
                agreement_id: a.agreement_id,
                valid_to: a.valid_to,
                days_ago: days(a.valid_to, today),
            }),
            Some(a) if days(today, a.valid_to) <= AGREEMENT_WARNING_DAYS => {
                warnings.push(Warning::MentorAgreementEndingSoon {
                    agreement_id: a.agreement_id,
                    valid_to: a.valid_to,
                    days_left: days(today, a.valid_to),
                })
            }
            Some(_) => {}
            None if p.mentor.is_some() => warnings.push(Warning::NoMentorAgreement { placement_id: p.placement_id }),
            None => {}
        }
    }
    let open_actions: Vec<ActionItem> = actions(view, now)
        .into_iter()
        .filter(|a| matches!(a.state, ActionState::Open | ActionState::Overdue))
        .collect();
    let support_needs = view
        .digest()
        .notes()
        .iter()
        .filter(|o| o.standing())
        .filter_map(|o| match &o.obs {
            Obs::SupportNeed { area, life_domain, description } => Some(SupportNeed {
                event_id: o.event_id,
                area: *area,
                life_domain: *life_domain,
                description: description.clone(),
                recorded_at: o.occurred_at,
            }),
            _ => None,
        })
        .collect();
    let last_contact = view.digest().latest().map(|l| LastContact {
        event_id: l.event_id,
        kind: l.kind,
        by: l.actor,
        at: l.at,
        local_date: cph::local_date(l.at),
    });
    CourseStatus {
        course_id: view.course_id,
        version: view.version,
        today,
        young_person: view.young_person,
        programme: view.programme,
        programme_name: view.programme.map(|p| p.spec().name.to_owned()),
        municipality: view.municipality.clone(),
        start_date: view.start_date,
        phase: view.phase,
        phase_since: view.phase_since,
        open: view.is_open(),
        outcome: view.closed.as_ref().map(|c| c.outcome),
        closed_at: view.closed.as_ref().map(|c| c.at),
        participants: view.participants.clone(),
        role_history: view
            .tenures
            .iter()
            .filter(|t| matches!(t.role, Role::Caseworker | Role::Teacher | Role::YouthCoordinator))
            .cloned()
            .collect(),
        goals,
        active_placement,
        mentor_agreement,
        overdue_actions: open_actions.iter().filter(|a| a.state == ActionState::Overdue).count() as u32,
        open_actions,
        support_needs,
        last_contact,
        warnings,
    }
}

// ---------------------------------------------------------------------------------------------
// contact history

/// Filters of the contact history; all optional, all must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryFilter {
    /// The role the actor acted in.
    pub role: Option<Role>,
    /// The actor, or someone the contact was with / who attended.
    pub participant: Option<AccountId>,
    pub channel: Option<Channel>,
    pub direction: Option<Direction>,
    pub kind: Option<InteractionKind>,
    /// Copenhagen local dates, inclusive.
    #[serde(default, with = "iso_date::option")]
    pub from: Option<Date>,
    #[serde(default, with = "iso_date::option")]
    pub to: Option<Date>,
}

/// A place in the timeline. Items are ordered by `(occurred_at, position)`, newest first; the
/// cursor is the key of the last item returned and the next page holds the items strictly
/// after it in that order. A key is fixed for an item's life (a correction keeps the
/// original's time and position), so pages never repeat or skip an item that existed when the
/// first page was read. An item arriving later lands where its key says: a backdated one in a
/// later page, a new one above the first page (a client refreshes from the top to see it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub occurred_at: OffsetDateTime,
    pub position: u64,
}

impl Cursor {
    /// Opaque text form: `{unix nanoseconds}.{position}`.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.occurred_at.unix_timestamp_nanos(), self.position)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (t, p) = s.split_once('.')?;
        let occurred_at = OffsetDateTime::from_unix_timestamp_nanos(t.parse().ok()?).ok()?;
        Some(Cursor { occurred_at, position: p.parse().ok()? })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryItem {
    pub event_id: Uuid,
    /// The event whose payload is shown (a correction's id when corrected).
    pub source_event_id: Uuid,
    pub position: u64,
    /// Where the item's event sits in its log segment (0: unknown); not part of the page.
    #[serde(skip)]
    pub offset: SegmentOffset,
    pub kind: InteractionKind,
    pub actor: Actor,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    #[serde(with = "iso_date")]
    pub local_date: Date,
    pub corrected: bool,
    pub channel: Option<Channel>,
    pub direction: Option<Direction>,
    pub outreach: bool,
    pub individual: bool,
    pub with: Vec<AccountId>,
    pub minutes: Option<u16>,
    pub attendance: Option<Attendance>,
    pub wellbeing: Option<u8>,
    pub meeting_kind: Option<MeetingKind>,
    /// The full (effective) payload, texts included, read from the log when the page is served.
    pub detail: Option<EventDetail>,
}

/// An event as shown in a page, already written as JSON: `{"event_type", "schema_version",
/// "data"}`, the same shape as a serialised [`CourseEvent`].
///
/// A payload stored in its type's current schema version is served as the log holds it, which
/// is exactly what `CourseEvent::to_data` wrote: decoding it only to encode it again cost more
/// than the rest of a history page. Older versions and corrections go through the decoder (the
/// upcast, the replacement), so a reader always sees the current schema.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventDetail(Box<serde_json::value::RawValue>);

impl EventDetail {
    /// A decoded event, serialised.
    pub fn of(event: &CourseEvent) -> Option<Self> {
        let json = serde_json::to_string(event).ok()?;
        serde_json::value::RawValue::from_string(json).ok().map(Self)
    }

    /// A stored payload that is in the current schema version of its type, without decoding it.
    /// `None` when the type is not a course event in its current version (the caller decodes),
    /// or the bytes are not JSON (a redacted payload is empty).
    pub fn stored(event_type: &str, schema_version: u16, data: &[u8]) -> Option<Self> {
        let current = CourseEvent::TYPES.iter().any(|(t, v)| *t == event_type && *v == schema_version);
        if !current || event_type == "EventCorrected" {
            return None;
        }
        let data = std::str::from_utf8(data).ok()?;
        // Type names are identifiers (`TYPES` above), so they need no escaping. Built by hand at
        // its final size: `format!` and the growth it caused were ~4 % of a history page.
        let mut json = String::with_capacity(56 + event_type.len() + data.len());
        json.push_str(r#"{"event_type":""#);
        json.push_str(event_type);
        json.push_str(r#"","schema_version":"#);
        let _ = std::fmt::Write::write_fmt(&mut json, format_args!("{schema_version}"));
        json.push_str(r#","data":"#);
        json.push_str(data);
        json.push('}');
        // Checks the syntax (a cheap scan, not a decode), so a page is always valid JSON.
        serde_json::value::RawValue::from_string(json).ok().map(Self)
    }

    /// The JSON text.
    pub fn json(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for EventDetail {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPage {
    pub items: Vec<HistoryItem>,
    /// Pass back to get the next page; `None` at the end.
    pub next_cursor: Option<String>,
    /// The course's stream version the page was rendered at (for the ETag; not shown).
    #[serde(skip)]
    pub course_version: u64,
}

impl HistoryPage {
    /// About how many bytes the page takes as JSON: an item's fields are ~300 bytes, plus its
    /// event as stored.
    pub fn json_size_hint(&self) -> usize {
        128 + self.items.iter().map(|i| 320 + i.detail.as_ref().map_or(0, |d| d.json().len())).sum::<usize>()
    }
}

fn matches(view: &CourseView, o: &Observation, f: &HistoryFilter) -> bool {
    let Some(kind) = InteractionKind::of(&o.obs) else { return false };
    if !o.standing() || f.kind.is_some_and(|k| k != kind) || f.role.is_some_and(|r| r != o.actor.role) {
        return false;
    }
    if f.channel.is_some() && channel_of(&o.obs) != f.channel {
        return false;
    }
    if f.direction.is_some() && direction_of(&o.obs) != f.direction {
        return false;
    }
    if f.from.is_some() || f.to.is_some() {
        let d = cph::local_date(o.occurred_at);
        if f.from.is_some_and(|from| d < from) || f.to.is_some_and(|to| d > to) {
            return false;
        }
    }
    if let Some(p) = f.participant {
        let involved = o.actor.account_id == p
            || match &o.obs {
                Obs::Contact { with, .. } => with.contains(&p),
                Obs::Meeting { attendees, .. } => attendees.contains(&p),
                // A check-in or guidance session is about the young person.
                _ => view.young_person == Some(p),
            };
        if !involved {
            return false;
        }
    }
    true
}

fn item(o: &Observation) -> Option<HistoryItem> {
    let mut it = HistoryItem {
        event_id: o.event_id,
        source_event_id: o.source_event_id(),
        position: o.position,
        offset: o.offset,
        kind: InteractionKind::of(&o.obs)?,
        actor: o.actor,
        occurred_at: o.occurred_at,
        local_date: cph::local_date(o.occurred_at),
        corrected: matches!(o.status, ObsStatus::Corrected { .. }),
        channel: channel_of(&o.obs),
        direction: direction_of(&o.obs),
        outreach: false,
        individual: false,
        with: Vec::new(),
        minutes: None,
        attendance: None,
        wellbeing: None,
        meeting_kind: None,
        detail: None,
    };
    match &o.obs {
        Obs::Contact { with, outreach, individual, minutes, .. } => {
            it.with = with.clone();
            it.outreach = *outreach;
            it.individual = *individual;
            it.minutes = Some(*minutes);
        }
        Obs::CheckIn { attendance, wellbeing, .. } => {
            it.attendance = Some(*attendance);
            it.wellbeing = Some(*wellbeing);
        }
        Obs::Guidance { minutes, .. } => it.minutes = Some(*minutes),
        Obs::Meeting { kind, attendees } => {
            it.meeting_kind = Some(*kind);
            it.with = attendees.clone();
        }
        _ => return None,
    }
    Some(it)
}

/// One page of a course's contact history (without `detail`; the engine fills it in).
pub fn history_page(
    view: &CourseView,
    filter: &HistoryFilter,
    after: Option<Cursor>,
    limit: usize,
) -> (Vec<HistoryItem>, Option<Cursor>) {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let key = |o: &Observation| Cursor { occurred_at: o.occurred_at, position: o.position };
    // The newest `limit + 1` matches, without collecting and sorting every observation of a
    // long course: a min-heap of the best so far. Observations are in log order, which is
    // nearly time order, so walking newest first rejects almost everything after the first
    // `limit` at one comparison.
    let mut best: BinaryHeap<Reverse<(Cursor, usize)>> = BinaryHeap::with_capacity(limit + 2);
    let full_above = |best: &BinaryHeap<Reverse<(Cursor, usize)>>, k: Cursor| {
        best.len() > limit && best.peek().is_some_and(|Reverse((min, _))| k <= *min)
    };
    let consider = |best: &mut BinaryHeap<Reverse<(Cursor, usize)>>, i: usize, o: &Observation| {
        let k = key(o);
        if after.is_some_and(|c| k >= c) || full_above(best, k) || !matches(view, o, filter) {
            return;
        }
        best.push(Reverse((k, i)));
        if best.len() > limit + 1 {
            best.pop();
        }
    };
    let obs = &view.observations;
    let sealed = obs.sealed_chunks();
    for (j, o) in obs.tail().iter().enumerate().rev() {
        consider(&mut best, sealed * CHUNK_OBS + j, o);
    }
    for c in (0..sealed).rev() {
        // A sealed chunk with nothing newer than the page's oldest so far is passed by without
        // being decoded: on a long course a first page reads its last chunk or two.
        let (occurred_at, position) = obs.chunk_newest(c);
        if full_above(&best, Cursor { occurred_at, position }) {
            continue;
        }
        for (j, o) in obs.chunk(c).iter().enumerate().rev() {
            consider(&mut best, c * CHUNK_OBS + j, o);
        }
    }
    let mut hits: Vec<(Cursor, usize)> = best.into_iter().map(|Reverse(h)| h).collect();
    hits.sort_unstable_by_key(|h| Reverse(h.0));
    let more = hits.len() > limit;
    hits.truncate(limit);
    let next = if more { hits.last().map(|h| h.0) } else { None };
    (hits.into_iter().filter_map(|(_, i)| item(&view.observations[i])).collect(), next)
}

// ---------------------------------------------------------------------------------------------
// my courses

/// One line of a phone's home screen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MyCourse {
    pub course_id: Option<CourseId>,
    pub young_person: Option<AccountId>,
    pub phase: Option<Phase>,
    /// The roles the account holds on the course.
    pub roles: Vec<Role>,
    /// Up to three open actions, soonest due first.
    pub next_actions: Vec<ActionItem>,
    pub contact: ComplianceState,
    #[serde(default, with = "iso_date::option")]
    pub next_contact_due: Option<Date>,
}

pub fn my_course(view: &CourseView, account: AccountId, now: OffsetDateTime) -> MyCourse {
    let today = cph::local_date(now);
    let c = compliance(view, today);
    MyCourse {
        course_id: view.course_id,
        young_person: view.young_person,
        phase: view.phase,
        roles: view.participants.iter().filter(|p| p.account_id == account).map(|p| p.role).collect(),
        next_actions: actions(view, now)
            .into_iter()
            .filter(|a| matches!(a.state, ActionState::Open | ActionState::Overdue))
            .take(3)
            .collect(),
        contact: c.state,
        next_contact_due: c.next_due,
    }
}
