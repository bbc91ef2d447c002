//! The course record: typed, versioned events and pure decisions.
//!
//! # Invariants
//!
//! - **Events are facts.** Each event type is a closed enum variant with its own payload type,
//!   named in the past tense, with a schema version. Stored events are never edited or
//!   deleted: a later `EventCorrected` or `EventRetracted` supersedes a recorded observation.
//! - **`decide` is pure.** `decide(state, command, ctx) -> Result<Vec<Event>, DomainError>`
//!   reads nothing but its arguments: the clock and the actor come in through
//!   [`CommandContext`], ids of new things come in the command. It never panics on any input.
//! - **`apply` has no logic.** It folds an accepted event into the state with no validation and
//!   no clock, so replaying a stream always gives the same state, whatever the code has since
//!   learned to refuse.
//! - **Old versions keep loading.** `decode(event_type, schema_version, data)` upcasts
//!   superseded versions to the current type; `events/schemas` publishes every version.
//! - **The programme is data.** Kinds of programme, their legal basis, admission window and
//!   contact requirement are rows of [`programme::CATALOGUE`], not branches in code.
//! - **The domain knows nothing of HTTP, sled or the log.** It performs no I/O, except the
//!   schema generation helpers in [`schema`], which tests and tooling call.
//!
//! Role and visibility checks of the API come on top of the domain's own "who may do what",
//! which only depends on the actor's role and their assignments on the course.

pub mod common;
pub mod company;
pub mod course;
pub mod error;
pub(crate) mod events_macro;
pub mod programme;
pub mod schema;

#[cfg(test)]
mod schema_tests;
#[cfg(any(test, fuzzing))]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod testing;

pub use common::{
    AccountId, ActionId, Actor, AgreementId, Channel, CommandContext, CompanyId, CourseId, Direction, EventMeta,
    GoalId, LifeDomain, LongText, PlacementId, Role, ShortText, Text,
};
pub use company::{CompanyCommand, CompanyEvent, CompanyState, apply_company, decide_company};
pub use course::{CourseCommand, CourseEvent, CourseState, apply, decide};
pub use error::{DecodeError, DomainError, ERROR_CODES};
pub use programme::{CATALOGUE, ProgrammeKind, ProgrammeSpec};
