//! Test-only: what the contact views must count, found by walking every observation of a course
//! one by one — how those views worked before the digest. The proptest
//! `views_agree_with_a_walk_over_every_observation` holds the digest-based views to it.
//!
//! Only the counting is redone here (which contacts count, how many, on which days, in which
//! buckets); the wording and pacing the views build on those counts are theirs, and are checked
//! by the example tests.

use std::collections::BTreeMap;

use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::course::{Obs, Observation};
use super::cph;
use super::digest::Tally;
use super::views::{Bucket, InteractionKind, is_young_person_contact};
use crate::domain::{AccountId, Role};

/// Contacts with the young person, one observation at a time.
fn contacts(observations: &[Observation], yp: Option<AccountId>) -> impl Iterator<Item = (&Observation, Tally)> {
    observations.iter().filter_map(move |o| Some((o, Tally::of(o, yp)?)))
}

/// (how many, the last day) of the contacts `keep` accepts.
pub fn count(
    observations: &[Observation],
    yp: Option<AccountId>,
    keep: impl Fn(&Observation, &Tally) -> bool,
) -> (u32, Option<Date>) {
    contacts(observations, yp)
        .filter(|(o, t)| keep(o, t))
        .fold((0, None), |(n, last), (_, t)| (n + 1, last.max(Some(t.date))))
}

/// The contact plan in force: the last standing one, its day and who it names.
pub fn plan(observations: &[Observation]) -> Option<(Date, Vec<AccountId>)> {
    observations.iter().rev().find_map(|o| match &o.obs {
        Obs::ContactPlan { by, .. } if o.standing() => Some((cph::local_date(o.occurred_at), by.clone())),
        _ => None,
    })
}

/// Per-week and per-month buckets and the contact days, in order.
pub fn buckets(observations: &[Observation], yp: Option<AccountId>) -> (Vec<Bucket>, Vec<Bucket>, Vec<Date>) {
    let (mut weeks, mut months) = (BTreeMap::<String, Bucket>::new(), BTreeMap::<String, Bucket>::new());
    let mut days = Vec::new();
    for (o, t) in contacts(observations, yp) {
        for (map, key) in [(&mut weeks, cph::week_key(t.date)), (&mut months, cph::month_key(t.date))] {
            map.entry(key.clone()).or_insert_with(|| Bucket { key, ..Bucket::default() }).add(o.actor.role, &t, 1);
        }
        days.push(t.date);
    }
    days.sort_unstable();
    days.dedup();
    (weeks.into_values().collect(), months.into_values().collect(), days)
}

/// The latest contact: (event, time).
pub fn latest(observations: &[Observation], yp: Option<AccountId>) -> Option<(Uuid, OffsetDateTime)> {
    observations
        .iter()
        .filter(|o| is_young_person_contact(o, yp))
        .max_by_key(|o| (o.occurred_at, o.position))
        .map(|o| (o.event_id, o.occurred_at))
}

/// Is this a programme-requirement contact: a conversation logged by the role it requires?
pub fn counts_for_programme(o: &Observation, t: &Tally, role: Role, individual_only: bool) -> bool {
    t.kind == InteractionKind::Contact && o.actor.role == role && (t.individual || !individual_only)
}
