//! The programme is data, not code. Each kind of programme a course can run under is one row of
//! [`CATALOGUE`]: its legal basis, the window in which *new* courses may start, and its contact
//! requirement. Nothing else in the domain branches on a particular kind.
//!
//! The legal references are as given by the product owner; the law changes (ressourceforløb was
//! closed to new citizens by Lov nr. 1750 af 29/12/2025), so a change of law is a change of
//! this table, reviewed like any other data.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::Date;
use time::macros::date;

use super::common::Role;

/// Which kind of programme a course runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProgrammeKind {
    /// Ressourceforløb.
    Ressourceforloeb,
    /// Jobafklaringsforløb.
    Jobafklaringsforloeb,
    /// Særligt tilrettelagt ungdomsuddannelse.
    Stu,
    /// Forberedende grunduddannelse.
    Fgu,
    /// Any other programme; its terms live in the course's own records.
    Other,
}

/// A minimum number of contacts within the first months of a course.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ContactRequirement {
    /// At least this many contacts …
    pub count: u32,
    /// … with a participant in this role …
    pub with_role: Role,
    /// … counting only individual conversations (not group sessions) …
    pub individual_only: bool,
    /// … within this many months from the course's start date.
    pub within_months: u32,
    /// What applies after that period.
    pub afterwards: &'static str,
    /// Where the requirement comes from.
    pub legal_basis: &'static str,
}

/// One kind of programme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProgrammeSpec {
    pub kind: ProgrammeKind,
    pub name: &'static str,
    pub legal_basis: &'static str,
    /// First start date a *new* course may have (`None`: no lower bound).
    pub valid_from: Option<Date>,
    /// Last start date a *new* course may have (`None`: still open). Running courses continue.
    pub valid_to: Option<Date>,
    pub contact_requirement: Option<ContactRequirement>,
}

/// The catalogue of programme kinds. Requirements not yet confirmed by the product owner are
/// `None` rather than guessed.
pub const CATALOGUE: &[ProgrammeSpec] = &[
    ProgrammeSpec {
        kind: ProgrammeKind::Ressourceforloeb,
        name: "Ressourceforløb",
        legal_basis: "Lov om en aktiv beskæftigelsesindsats (LAB) and lov om aktiv socialpolitik; \
                      closed to new citizens by Lov nr. 1750 af 29/12/2025",
        valid_from: None,
        valid_to: Some(date!(2025 - 12 - 31)),
        contact_requirement: Some(ContactRequirement {
            count: 4,
            with_role: Role::Caseworker,
            individual_only: true,
            within_months: 6,
            afterwards: "the agreed contact plan (LAB § 32)",
            legal_basis: "LAB § 31, stk. 3",
        }),
    },
    ProgrammeSpec {
        kind: ProgrammeKind::Jobafklaringsforloeb,
        name: "Jobafklaringsforløb",
        legal_basis: "Lov om en aktiv beskæftigelsesindsats (LAB) and lov om aktiv socialpolitik",
        valid_from: None,
        valid_to: None,
        contact_requirement: None,
    },
    ProgrammeSpec {
        kind: ProgrammeKind::Stu,
        name: "Særligt tilrettelagt ungdomsuddannelse (STU)",
        legal_basis: "Lov om ungdomsuddannelse for unge med særlige behov",
        valid_from: None,
        valid_to: None,
        contact_requirement: None,
    },
    ProgrammeSpec {
        kind: ProgrammeKind::Fgu,
        name: "Forberedende grunduddannelse (FGU)",
        legal_basis: "Lov om forberedende grunduddannelse",
        valid_from: None,
        valid_to: None,
        contact_requirement: None,
    },
    ProgrammeSpec {
        kind: ProgrammeKind::Other,
        name: "Other programme",
        legal_basis: "As recorded on the course",
        valid_from: None,
        valid_to: None,
        contact_requirement: None,
    },
];

impl ProgrammeKind {
    /// This kind's row in [`CATALOGUE`]. Every kind has exactly one (a test checks it); the
    /// fallback to the `Other` row only keeps this total.
    pub fn spec(self) -> &'static ProgrammeSpec {
        CATALOGUE.iter().find(|s| s.kind == self).unwrap_or(&CATALOGUE[CATALOGUE.len() - 1])
    }
}

impl ProgrammeSpec {
    /// May a *new* course of this kind start on `start`?
    pub fn admits_start(&self, start: Date) -> Result<(), super::DomainError> {
        if let Some(from) = self.valid_from
            && start < from
        {
            return Err(super::DomainError::ProgrammeNotYetOpen { programme: self.name, opens: from });
        }
        if let Some(to) = self.valid_to
            && start > to
        {
            return Err(super::DomainError::ProgrammeClosedToNewCitizens {
                programme: self.name,
                closed_from: to.next_day().unwrap_or(to),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_exactly_one_row() {
        for kind in [
            ProgrammeKind::Ressourceforloeb,
            ProgrammeKind::Jobafklaringsforloeb,
            ProgrammeKind::Stu,
            ProgrammeKind::Fgu,
            ProgrammeKind::Other,
        ] {
            assert_eq!(CATALOGUE.iter().filter(|s| s.kind == kind).count(), 1);
            assert_eq!(kind.spec().kind, kind);
        }
    }

    #[test]
    fn ressourceforloeb_closes_for_new_starts_in_2026() {
        let spec = ProgrammeKind::Ressourceforloeb.spec();
        assert!(spec.admits_start(date!(2025 - 12 - 31)).is_ok());
        let err = spec.admits_start(date!(2026 - 01 - 01)).unwrap_err();
        assert_eq!(err.code(), "programme_closed_to_new_citizens");
        assert!(err.to_string().contains("2026-01-01"));
        let req = spec.contact_requirement.unwrap();
        assert_eq!((req.count, req.within_months), (4, 6));
        assert!(req.individual_only);
    }
}
