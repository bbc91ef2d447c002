//! The published contract in `events/`: one JSON Schema per event type and version, generated
//! from the payload types. This is the domain's only I/O, used by tests and tooling (bless with
//! `VIVIRK_BLESS=1 cargo test --lib domain`).

use std::path::{Path, PathBuf};

use super::company::CompanyEvent;
use super::course::CourseEvent;

/// The stream an event type belongs to.
pub const COURSE: &str = "course";
pub const COMPANY: &str = "company";

/// One schema file: `{event_type}.v{version}.json`.
#[derive(Debug, Clone)]
pub struct SchemaFile {
    pub stream: &'static str,
    pub event_type: &'static str,
    pub version: u16,
    /// Pretty-printed JSON with a trailing newline, as committed.
    pub json: String,
}

impl SchemaFile {
    pub fn file_name(&self) -> String {
        format!("{}.v{}.json", self.event_type, self.version)
    }
}

/// Every schema the code defines: current versions of both streams and superseded versions
/// that stored events may still be written in.
pub fn schema_files() -> Result<Vec<SchemaFile>, serde_json::Error> {
    let course = CourseEvent::current_schemas().into_iter().chain(CourseEvent::legacy_schemas()).map(|s| (COURSE, s));
    let company = CompanyEvent::current_schemas().into_iter().map(|s| (COMPANY, s));
    let mut files = course
        .chain(company)
        .map(|(stream, (event_type, version, schema))| {
            let mut value = schema.to_value();
            if let Some(obj) = value.as_object_mut() {
                obj.insert(
                    "$id".into(),
                    format!("https://vivirk.dk/events/schemas/{event_type}.v{version}.json").into(),
                );
                obj.insert("x-stream".into(), stream.into());
                obj.insert("x-event-type".into(), event_type.into());
                obj.insert("x-schema-version".into(), version.into());
            }
            Ok(SchemaFile { stream, event_type, version, json: serde_json::to_string_pretty(&value)? + "\n" })
        })
        .collect::<Result<Vec<_>, serde_json::Error>>()?;
    files.sort_by_key(SchemaFile::file_name);
    Ok(files)
}

/// `events/` of this crate.
pub fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("events")
}
