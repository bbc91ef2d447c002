//! The course stream (`course-{uuid}`).

pub mod commands;
pub mod decide;
pub mod events;
pub mod state;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use commands::CourseCommand;
pub use decide::{decide, validate};
pub use events::*;
pub use state::{CourseState, apply};
