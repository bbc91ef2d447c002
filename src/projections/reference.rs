//! The contact views as they were computed before the digest: by walking every observation.
//! Kept, test-only, as the oracle the digest-based views are checked against
//! (`views_agree_with_a_walk_over_every_observation` in `tests.rs`).

use std::collections::BTreeMap;

use time::{Date, Duration, OffsetDateTime};

use super::course::*;
use super::cph;
use super::views::*;
use crate::domain::common::add_months;

fn yp_contacts(view: &CourseView) -> impl Iterator<Item = &Observation> {
    view.observations.iter().filter(|o| is_young_person_contact(o, view.young_person))
}

pub fn compliance(view: &CourseView, today: Date) -> Compliance {
    let mut rules = Vec::new();
    let open = view.is_open();
    if let (Some(req), Some(start)) = (view.programme.and_then(|p| p.spec().contact_requirement), view.start_date)
        && let Some(end) = add_months(start, req.within_months)
    {
        let last_day = end.previous_day().unwrap_or(end);
        let counted_dates: Vec<Date> = yp_contacts(view)
            .filter(|o| match &o.obs {
                Obs::Contact { individual, .. } => {
                    o.actor.role == req.with_role && (*individual || !req.individual_only)
                }
                _ => false,
            })
            .map(|o| cph::local_date(o.occurred_at))
            .filter(|d| (start..=last_day).contains(d))
            .collect();
        let counted = counted_dates.len() as u32;
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
            last_counted: counted_dates.iter().max().copied(),
            next_due,
            state,
            days_overdue,
            in_force,
        });
    }
    // The plan in force is the latest one agreed (and not retracted).
    if let Some((plan, every_days, by)) = view.observations.iter().rev().find_map(|o| match &o.obs {
        Obs::ContactPlan { every_days, by } if o.standing() => Some((o, *every_days, by)),
        _ => None,
    }) {
        let agreed_on = cph::local_date(plan.occurred_at);
        let dates: Vec<Date> = yp_contacts(view)
            .filter(|o| by.contains(&o.actor.account_id))
            .map(|o| cph::local_date(o.occurred_at))
            .filter(|d| *d >= agreed_on)
            .collect();
        let last = dates.iter().max().copied();
        let due = last.unwrap_or(agreed_on) + Duration::days(every_days.into());
        let (state, days_overdue) = due_state(today, due);
        rules.push(RuleCompliance {
            rule: "contact_plan".into(),
            description: format!(
                "a contact every {every_days} days by one of {} agreed participants; {} since {agreed_on}",
                by.len(),
                dates.len()
            ),
            legal_basis: None,
            counted: dates.len() as u32,
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

fn bucket_add(b: &mut Bucket, o: &Observation, kind: InteractionKind) {
    b.total += 1;
    if matches!(o.obs, Obs::Contact { outreach: true, .. }) {
        b.outreach += 1;
    }
    *b.by_role.entry(o.actor.role.as_str().to_owned()).or_default() += 1;
    if let Some(c) = channel_of(&o.obs) {
        *b.by_channel.entry(channel_str(c).to_owned()).or_default() += 1;
    }
    if let Some(d) = direction_of(&o.obs) {
        *b.by_direction.entry(direction_str(d).to_owned()).or_default() += 1;
    }
    let k = match kind {
        InteractionKind::Contact => "contact",
        InteractionKind::CheckIn => "check_in",
        InteractionKind::Guidance => "guidance",
        InteractionKind::Meeting => "meeting",
    };
    *b.by_kind.entry(k.to_owned()).or_default() += 1;
}

pub fn contact_frequency(view: &CourseView, now: OffsetDateTime) -> ContactFrequency {
    let today = cph::local_date(now);
    let mut weeks: BTreeMap<String, Bucket> = BTreeMap::new();
    let mut months: BTreeMap<String, Bucket> = BTreeMap::new();
    let mut dates = Vec::new();
    for o in yp_contacts(view) {
        let Some(kind) = InteractionKind::of(&o.obs) else { continue };
        let d = cph::local_date(o.occurred_at);
        dates.push(d);
        let wk = cph::week_key(d);
        bucket_add(weeks.entry(wk.clone()).or_insert_with(|| Bucket { key: wk, ..Bucket::default() }), o, kind);
        let mk = cph::month_key(d);
        bucket_add(months.entry(mk.clone()).or_insert_with(|| Bucket { key: mk, ..Bucket::default() }), o, kind);
    }
    dates.sort_unstable();
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
        total: dates.len() as u32,
        per_week: weeks.into_values().collect(),
        per_month: months.into_values().collect(),
        last_contact: last,
        days_since_last_contact: last.map(|l| days(l, today)),
        longest_gap: longest,
        compliance: compliance(view, today),
    }
}
