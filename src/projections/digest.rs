//! What course status, compliance, contact frequency, "my courses" and the worklist need of a
//! course's observations, kept up to date as observations arrive, are corrected or retracted —
//! so those views never walk the history.
//!
//! Why: they are the most frequent reads (a caseworker's worklist renders compliance for each of
//! their ~40 courses), and walking every observation made each of them cost O(history) and kept
//! every sealed chunk of every read course decoded in memory (`obs_list`'s sweep could drop
//! nothing the soak's mix touched). With the digest, only contact-history pages read chunks, and
//! those mostly the newest.
//!
//! - **Tallies**: standing contacts with the young person (as [`views`](super::views) defines
//!   them), counted per Copenhagen local date, actor and the attributes the views count by
//!   (kind, channel, direction, outreach, individual). 16 bytes per distinct combination, and a
//!   course has about one per contact day; sorted, so a date range is a slice.
//! - **The latest contact** with the young person (by time, then log position). A correction or
//!   retraction that takes it away makes the course look for the next one
//!   ([`Digest::replace`] says when).
//! - **Notes**: the few observations status and compliance list one by one (goal progress,
//!   support needs, contact plans), as copies, in stream order.
//!
//! The digest is derived from the observations and never stored: a view makes it on first use
//! (`CourseView::digest`) and keeps it up to date from then on. `PartialEq` compares what it
//! says, not how it is laid out, so a digest kept up to date equals one built afresh.

use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::course::{Obs, Observation};
use super::cph;
use super::views::{InteractionKind, channel_of, direction_of, is_young_person_contact};
use crate::domain::{AccountId, Actor, Channel, Direction};

/// Standing contacts with the young person that share a day, an actor and what the views count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tally {
    pub date: Date,
    /// Index into the digest's actors.
    actor: u16,
    pub kind: InteractionKind,
    pub channel: Option<Channel>,
    pub direction: Option<Direction>,
    pub outreach: bool,
    pub individual: bool,
}

impl Tally {
    /// One standing contact with the young person as a tally of its own (actor number 0);
    /// `None` for anything else.
    pub(super) fn of(o: &Observation, young_person: Option<AccountId>) -> Option<Tally> {
        if !is_young_person_contact(o, young_person) {
            return None;
        }
        Some(Tally {
            date: cph::local_date(o.occurred_at),
            actor: 0,
            kind: InteractionKind::of(&o.obs)?,
            channel: channel_of(&o.obs),
            direction: direction_of(&o.obs),
            outreach: matches!(o.obs, Obs::Contact { outreach: true, .. }),
            individual: matches!(o.obs, Obs::Contact { individual: true, .. }),
        })
    }
}

/// The latest contact with the young person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latest {
    pub at: OffsetDateTime,
    pub position: u64,
    pub event_id: Uuid,
    pub kind: InteractionKind,
    pub actor: Actor,
}

#[derive(Debug, Clone, Default)]
pub struct Digest {
    actors: Vec<Actor>,
    /// Sorted by tally; every count is at least 1.
    tallies: Vec<(Tally, u32)>,
    latest: Option<Latest>,
    notes: Vec<Observation>,
}

/// Observations status and compliance list one by one.
fn is_note(o: &Obs) -> bool {
    matches!(o, Obs::GoalProgress { .. } | Obs::SupportNeed { .. } | Obs::ContactPlan { .. })
}

impl Digest {
    /// Built from observations in stream order.
    pub fn of<'a>(observations: impl IntoIterator<Item = &'a Observation>, young_person: Option<AccountId>) -> Self {
        let mut d = Digest::default();
        for o in observations {
            d.add(o, young_person);
        }
        d
    }

    /// Counts a new observation (the newest in stream order).
    pub fn add(&mut self, o: &Observation, young_person: Option<AccountId>) {
        if is_note(&o.obs) {
            self.notes.push(o.clone());
        }
        self.count(o, young_person, true);
    }

    /// An observation changed in place (corrected or retracted): `before` as it was, `after` as
    /// it is now; same event, time and position. Returns `true` when the latest contact was taken
    /// away, so the caller must [`Digest::rescan_latest`].
    #[must_use]
    pub fn replace(&mut self, before: &Observation, after: &Observation, young_person: Option<AccountId>) -> bool {
        let was_latest = self.latest.is_some_and(|l| l.event_id == before.event_id);
        self.count(before, young_person, false);
        self.count(after, young_person, true);
        if is_note(&before.obs)
            && let Some(n) = self.notes.iter_mut().rev().find(|n| n.event_id == before.event_id)
        {
            *n = after.clone();
        }
        // `after` has `before`'s time and position: if it still counts, it is still the latest.
        was_latest && !is_young_person_contact(after, young_person)
    }

    /// Finds the latest contact again, over all observations.
    pub fn rescan_latest<'a>(
        &mut self,
        observations: impl IntoIterator<Item = &'a Observation>,
        young_person: Option<AccountId>,
    ) {
        self.latest = None;
        for o in observations {
            if let Some(l) = latest_of(o, young_person) {
                self.offer_latest(l);
            }
        }
    }

    /// Standing contacts with the young person: actor, tally and how many; by date.
    pub fn contacts(&self) -> impl DoubleEndedIterator<Item = (Actor, &Tally, u32)> + '_ {
        self.tallies.iter().map(|(t, n)| (self.actors[usize::from(t.actor)], t, *n))
    }

    pub fn latest(&self) -> Option<&Latest> {
        self.latest.as_ref()
    }

    /// Goal progress, support needs and contact plans, standing or not, in stream order.
    pub fn notes(&self) -> &[Observation] {
        &self.notes
    }

    fn count(&mut self, o: &Observation, young_person: Option<AccountId>, add: bool) {
        let Some(t) = Tally::of(o, young_person) else { return };
        let tally = Tally { actor: self.actor_no(o.actor), ..t };
        if add {
            self.add_tally(tally, 1);
            if let Some(l) = latest_of(o, young_person) {
                self.offer_latest(l);
            }
        } else if let Ok(i) = self.tallies.binary_search_by(|(t, _)| t.cmp(&tally)) {
            // Counted when added, so found; a miss would mean a bug, and leaves the count alone.
            self.tallies[i].1 -= 1;
            if self.tallies[i].1 == 0 {
                self.tallies.remove(i);
            }
        }
    }

    fn add_tally(&mut self, tally: Tally, n: u32) {
        match self.tallies.binary_search_by(|(t, _)| t.cmp(&tally)) {
            Ok(i) => self.tallies[i].1 += n,
            Err(i) => self.tallies.insert(i, (tally, n)),
        }
    }

    fn actor_no(&mut self, actor: Actor) -> u16 {
        match self.actors.iter().position(|a| *a == actor) {
            Some(i) => i as u16,
            None => {
                // Only a course's participants act on it, a handful over years. Past 65,535 the
                // later ones would be counted under the last slot's actor (wrongly, but without
                // a panic or a wrap onto an early one).
                if self.actors.len() < usize::from(u16::MAX) {
                    self.actors.push(actor);
                }
                (self.actors.len() - 1) as u16
            }
        }
    }

    fn offer_latest(&mut self, l: Latest) {
        if self.latest.is_none_or(|cur| (l.at, l.position) > (cur.at, cur.position)) {
            self.latest = Some(l);
        }
    }

    /// What it says, independent of layout: tallies by actor rather than actor number.
    fn canonical(&self) -> Vec<(Date, Actor, Tally, u32)> {
        let mut v: Vec<_> = self.contacts().map(|(actor, t, n)| (t.date, actor, Tally { actor: 0, ..*t }, n)).collect();
        v.sort_by_key(|a| (a.0, a.1.account_id, a.1.role, a.2));
        v
    }
}

fn latest_of(o: &Observation, young_person: Option<AccountId>) -> Option<Latest> {
    if !is_young_person_contact(o, young_person) {
        return None;
    }
    Some(Latest {
        at: o.occurred_at,
        position: o.position,
        event_id: o.event_id,
        kind: InteractionKind::of(&o.obs)?,
        actor: o.actor,
    })
}

impl PartialEq for Digest {
    fn eq(&self, other: &Self) -> bool {
        self.latest == other.latest && self.notes == other.notes && self.canonical() == other.canonical()
    }
}

impl Eq for Digest {}
