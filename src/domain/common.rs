//! Types shared by every stream: ids, roles, the actor, bounded texts, calendar dates,
//! the envelope metadata handed to `apply`, and the context handed to `decide`.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::error::DomainError;

macro_rules! id_newtype {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {$(
        $(#[$m])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    )*};
}

id_newtype!(
    /// A user account (any role). Names and contact details live in the account stream, not here.
    AccountId,
    /// A course: one young person's programme (stream `course-{uuid}`).
    CourseId,
    /// A company or social-economic enterprise (stream `company-{uuid}`).
    CompanyId,
    /// A goal or sub-goal within a course.
    GoalId,
    /// An agreed action within a course.
    ActionId,
    /// A placement (practice arena, work trial, internship, employment) within a course.
    PlacementId,
    /// A mentor agreement within a course.
    AgreementId,
);

/// Every role an account can hold. Participant roles are the first six; `auditor` and `admin`
/// exist for the API's access control and are never course participants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    YoungPerson,
    Teacher,
    YouthCoordinator,
    Caseworker,
    Network,
    Mentor,
    Auditor,
    Admin,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::YoungPerson,
        Role::Teacher,
        Role::YouthCoordinator,
        Role::Caseworker,
        Role::Network,
        Role::Mentor,
        Role::Auditor,
        Role::Admin,
    ];

    /// Roles a person can hold *on a course*.
    pub fn is_participant_role(self) -> bool {
        !matches!(self, Role::Auditor | Role::Admin)
    }

    /// Professionals on a course: they may record contacts, goals, actions, placements …
    pub fn is_professional(self) -> bool {
        matches!(self, Role::Teacher | Role::YouthCoordinator | Role::Caseworker | Role::Mentor)
    }

    /// Roles that coordinate the course: they assign people, change phase, close, and may
    /// correct other people's entries.
    pub fn is_coordinator(self) -> bool {
        matches!(self, Role::Caseworker | Role::YouthCoordinator)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::YoungPerson => "young_person",
            Role::Teacher => "teacher",
            Role::YouthCoordinator => "youth_coordinator",
            Role::Caseworker => "caseworker",
            Role::Network => "network",
            Role::Mentor => "mentor",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

/// Who is acting: the authenticated account and the role it acts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Actor {
    pub account_id: AccountId,
    pub role: Role,
}

/// A non-blank text of at most `MAX` characters (Unicode scalar values, not bytes).
///
/// It can only be built through `TryFrom<String>` (serde uses the same path), so a payload that
/// exists is already within bounds: limits are enforced at the edge, once.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Text<const MAX: usize>(String);

/// Names, titles, task labels: ≤ 200 characters.
pub type ShortText = Text<200>;
/// Summaries, notes, descriptions: ≤ 4000 characters.
pub type LongText = Text<4000>;

/// At most this many items in any list inside an event.
pub const MAX_ITEMS: usize = 50;

impl<const MAX: usize> Text<MAX> {
    pub const MAX: usize = MAX;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<const MAX: usize> TryFrom<String> for Text<MAX> {
    type Error = DomainError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.trim().is_empty() {
            return Err(DomainError::TextBlank);
        }
        let len = s.chars().count();
        if len > MAX {
            return Err(DomainError::TextTooLong { max: MAX, len });
        }
        Ok(Self(s))
    }
}

impl<const MAX: usize> TryFrom<&str> for Text<MAX> {
    type Error = DomainError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::try_from(s.to_owned())
    }
}

impl<const MAX: usize> From<Text<MAX>> for String {
    fn from(t: Text<MAX>) -> Self {
        t.0
    }
}

impl<const MAX: usize> fmt::Display for Text<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<const MAX: usize> JsonSchema for Text<MAX> {
    fn schema_name() -> Cow<'static, str> {
        format!("Text{MAX}").into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": MAX,
            "description": format!("Non-blank text, at most {MAX} characters.")
        })
    }
}

/// Life domains the practice balances (arbejdsliv, hverdagsliv, fritidsliv).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LifeDomain {
    WorkLife,
    EverydayLife,
    LeisureLife,
}

/// How a contact happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    InPerson,
    Phone,
    Video,
    Text,
    Email,
    App,
}

/// Seen from the young person: a contact *to* them (a professional reached out) or *from* them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    ToYoungPerson,
    FromYoungPerson,
}

/// Envelope metadata of a stored event, as the log hands it to `apply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMeta {
    pub event_id: Uuid,
    /// 1-based position in its stream.
    pub stream_version: u64,
    /// When it happened (the client may backdate, e.g. an offline check-in).
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// When the server stored it.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    pub actor: Actor,
}

/// What `decide` knows besides state and command. The API fills it; the domain never reads a
/// clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandContext {
    /// The server's clock at the time of the request.
    pub now: OffsetDateTime,
    pub actor: Actor,
    /// When the thing happened; the API defaults it to `now`.
    pub occurred_at: OffsetDateTime,
}

impl CommandContext {
    /// A context for something happening now.
    pub fn now(now: OffsetDateTime, actor: Actor) -> Self {
        Self { now, actor, occurred_at: now }
    }
}

/// The earliest and latest calendar dates accepted in any event. They keep dates inside what
/// ISO 8601 `YYYY-MM-DD` can write, so encoding never fails, and catch typos like year 20026.
pub const MIN_DATE: Date = time::macros::date!(1900 - 01 - 01);
pub const MAX_DATE: Date = time::macros::date!(2199 - 12 - 31);

/// Serde for `time::Date` as ISO 8601 `YYYY-MM-DD`. Writing is plain formatting and cannot
/// fail; reading parses strictly.
pub mod iso_date {
    use super::*;

    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
        time::macros::format_description!("[year]-[month]-[day]");

    pub fn serialize<S: Serializer>(d: &Date, s: S) -> Result<S::Ok, S::Error> {
        // `{:04}` of -1 is "-001", which does not parse back: the sign goes before the padding.
        let sign = if d.year() < 0 { "-" } else { "" };
        s.collect_str(&format_args!("{sign}{:04}-{:02}-{:02}", d.year().unsigned_abs(), u8::from(d.month()), d.day()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        Date::parse(&s, FORMAT).map_err(serde::de::Error::custom)
    }

    /// The same for `Option<Date>` (`null` for `None`).
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(d: &Option<Date>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Date>, D::Error> {
            match Option::<Cow<'de, str>>::deserialize(d)? {
                Some(s) => Date::parse(&s, FORMAT).map(Some).map_err(serde::de::Error::custom),
                None => Ok(None),
            }
        }
    }
}

/// Schema stand-in for `time::Date` fields (`#[schemars(with = "IsoDate")]`).
pub struct IsoDate;

impl JsonSchema for IsoDate {
    fn schema_name() -> Cow<'static, str> {
        "IsoDate".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "format": "date" })
    }
}

/// Adds calendar months, clamping the day to the end of the target month (31 Aug + 6 months =
/// 28/29 Feb). `None` if the result leaves `time`'s range.
pub fn add_months(d: Date, months: u32) -> Option<Date> {
    let zero_based = i64::from(u8::from(d.month())) - 1 + i64::from(months);
    let year = i64::from(d.year()) + zero_based.div_euclid(12);
    let month = u8::try_from(zero_based.rem_euclid(12) + 1).ok()?;
    let month = time::Month::try_from(month).ok()?;
    let year = i32::try_from(year).ok()?;
    let last = time::util::days_in_month(month, year);
    Date::from_calendar_date(year, month, d.day().min(last)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_read_back_what_they_write() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct D(#[serde(with = "iso_date")] Date);
        for text in ["2025-06-01", "0000-01-01", "-0001-06-01", "-9999-01-01", "9999-12-31"] {
            let d: D = serde_json::from_str(&format!("\"{text}\"")).unwrap();
            assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{text}\""));
        }
    }
}
