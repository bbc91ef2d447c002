//! The course record: events, state, decisions.
