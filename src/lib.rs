//! vivirk: an event-sourced record of long programmes for young people with disabilities.
//!
//! Layers, from the bottom up (see ARCHITECTURE.md):
//! - [`clock`]: injected time.
//! - [`log`]: the append-only segment log (the truth) and its sled index (derived).
//! - [`domain`]: typed, versioned events and pure decisions; knows nothing of storage or HTTP.
//! - [`audit`]: signed checkpoints, exports and their offline verification, the access log.
//! - [`api`]: the HTTP API; [`settings`], [`serve`] and [`cli`] wire it to the command line.

pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod domain;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
pub mod log;
pub mod projections;
pub mod serve;
pub mod settings;
