//! The company stream (`company-{uuid}`): companies and social-economic enterprises that offer
//! placements, their mentors, and assessments of their relational capacity, so courses can be
//! matched to them. Same shape as the course: events, commands, state, `apply`, `decide`.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{AccountId, CommandContext, CompanyId, LongText, MAX_ITEMS, Role, ShortText};
use super::error::{DecodeError, DomainError};
use super::events_macro::event_enum;
use super::{EventMeta, course::Workplace};

/// Relational capacity is scored 1 (little) to 5 (great).
pub const RELATIONAL_CAPACITY: (u8, u8) = (1, 5);

/// A company was registered as a place for placements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompanyRegistered {
    pub company_id: CompanyId,
    pub name: ShortText,
    pub industry: ShortText,
    /// The provider's own social-economic enterprise, or an ordinary company.
    pub kind: Workplace,
    /// Danish CVR number, if known.
    pub cvr: Option<ShortText>,
}

/// An account was registered as a mentor at the company.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MentorRegistered {
    pub account_id: AccountId,
    /// The mentor's job at the company, e.g. "kitchen manager".
    pub position: Option<ShortText>,
}

/// The company's ability to hold a relationship with a young person was assessed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RelationalCapacityAssessed {
    /// 1–5.
    #[schemars(range(min = 1, max = 5))]
    pub score: u8,
    pub notes: LongText,
    /// Work tasks the company can offer.
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub tasks_offered: Vec<ShortText>,
}

event_enum! {
    /// Everything that can happen to a company.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum CompanyEvent {
        CompanyRegistered = 1,
        MentorRegistered = 1,
        RelationalCapacityAssessed = 1,
    }
}

impl CompanyEvent {
    /// Reads a stored payload (no company event has an older version yet).
    pub fn decode(event_type: &str, schema_version: u16, data: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_current_version(event_type, schema_version, data)
    }
}

/// Every write to a company.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "command", content = "data", rename_all = "snake_case")]
pub enum CompanyCommand {
    RegisterCompany(CompanyRegistered),
    RegisterMentor(MentorRegistered),
    AssessRelationalCapacity(RelationalCapacityAssessed),
}

/// What company decisions need. `Default` is "not registered".
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CompanyState {
    pub company_id: Option<CompanyId>,
    pub kind: Option<Workplace>,
    pub mentors: BTreeSet<AccountId>,
    pub latest_score: Option<u8>,
    pub version: u64,
}

/// Folds one event. No logic.
pub fn apply_company(state: &mut CompanyState, event: &CompanyEvent, meta: &EventMeta) {
    state.version = meta.stream_version;
    match event {
        CompanyEvent::CompanyRegistered(e) => {
            state.company_id = Some(e.company_id);
            state.kind = Some(e.kind);
        }
        CompanyEvent::MentorRegistered(e) => {
            state.mentors.insert(e.account_id);
        }
        CompanyEvent::RelationalCapacityAssessed(e) => state.latest_score = Some(e.score),
    }
}

/// Decides a company command. Registering companies and mentors and assessing them is the
/// provider's and the municipality's work: teacher, youth coordinator, caseworker (and admin
/// for registration, to seed the network of companies).
pub fn decide_company(
    state: &CompanyState,
    cmd: &CompanyCommand,
    ctx: &CommandContext,
) -> Result<Vec<CompanyEvent>, DomainError> {
    let role = ctx.actor.role;
    let staff = matches!(role, Role::Teacher | Role::YouthCoordinator | Role::Caseworker);
    match cmd {
        CompanyCommand::RegisterCompany(e) => {
            if !(staff || role == Role::Admin) {
                return Err(DomainError::not_permitted(role));
            }
            if state.company_id.is_some() {
                return Err(DomainError::CompanyAlreadyRegistered);
            }
            Ok(vec![e.clone().into()])
        }
        CompanyCommand::RegisterMentor(e) => {
            if !(staff || role == Role::Admin) {
                return Err(DomainError::not_permitted(role));
            }
            if state.company_id.is_none() {
                return Err(DomainError::CompanyNotRegistered);
            }
            if state.mentors.contains(&e.account_id) {
                return Err(DomainError::MentorAlreadyRegistered { account_id: e.account_id.0 });
            }
            Ok(vec![e.clone().into()])
        }
        CompanyCommand::AssessRelationalCapacity(e) => {
            if !staff {
                return Err(DomainError::not_permitted(role));
            }
            if state.company_id.is_none() {
                return Err(DomainError::CompanyNotRegistered);
            }
            let (min, max) = RELATIONAL_CAPACITY;
            if !(min..=max).contains(&e.score) {
                return Err(DomainError::OutOfRange {
                    field: "score",
                    value: e.score.into(),
                    min: min.into(),
                    max: max.into(),
                });
            }
            if e.tasks_offered.len() > MAX_ITEMS {
                return Err(DomainError::TooManyItems {
                    field: "tasks_offered",
                    max: MAX_ITEMS,
                    len: e.tasks_offered.len(),
                });
            }
            Ok(vec![e.clone().into()])
        }
    }
}
