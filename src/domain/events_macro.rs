//! `event_enum!` writes the closed event enum of a stream from a list of payload types and their
//! current schema versions: the enum itself, `event_type`, `schema_version`, `to_data`, decoding
//! of the current versions, and the list of schemas. Old versions are decoded by hand-written
//! upcasts in front of it (see `course::events::CourseEvent::decode_value`).

macro_rules! event_enum {
    (
        $(#[$meta:meta])*
        pub enum $Enum:ident { $( $(#[$vmeta:meta])* $Variant:ident = $ver:literal ),* $(,)? }
    ) => {
        $(#[$meta])*
        pub enum $Enum {
            $( $(#[$vmeta])* $Variant($Variant), )*
        }

        impl $Enum {
            /// Every event type of this stream with its current schema version.
            pub const TYPES: &'static [(&'static str, u16)] = &[ $( (stringify!($Variant), $ver), )* ];

            /// The stored type name: PascalCase, past tense.
            pub fn event_type(&self) -> &'static str {
                match self { $( Self::$Variant(_) => stringify!($Variant), )* }
            }

            /// The version of the payload's schema this value is written in (always the current
            /// one: old versions are upcast when decoded).
            pub fn schema_version(&self) -> u16 {
                match self { $( Self::$Variant(_) => $ver, )* }
            }

            /// The payload alone, as compact JSON.
            pub fn to_data(&self) -> Vec<u8> {
                let bytes = match self { $( Self::$Variant(p) => serde_json::to_vec(p), )* };
                // Payloads are plain structs of strings, numbers, uuids, enums, dates written by
                // `iso_date` and string-keyed maps: serde_json cannot fail on them.
                #[allow(clippy::expect_used)]
                bytes.expect("event payloads always serialise to JSON")
            }

            /// The payload as a JSON value.
            pub fn to_value(&self) -> serde_json::Value {
                match self { $( Self::$Variant(p) => serde_json::to_value(p), )* }
                    .unwrap_or(serde_json::Value::Null)
            }

            // From a parsed value: the course stream needs it for corrections' replacements.
            #[allow(dead_code)]
            fn decode_current(
                event_type: &str,
                value: serde_json::Value,
            ) -> Option<Result<Self, serde_json::Error>> {
                match event_type {
                    $( stringify!($Variant) => Some(serde_json::from_value(value).map(Self::$Variant)), )*
                    _ => None,
                }
            }

            /// As `decode_current`, straight from the stored bytes: no intermediate
            /// `serde_json::Value`, which roughly halves the cost of a replay.
            fn decode_current_bytes(event_type: &str, data: &[u8]) -> Option<Result<Self, serde_json::Error>> {
                match event_type {
                    $( stringify!($Variant) => Some(serde_json::from_slice(data).map(Self::$Variant)), )*
                    _ => None,
                }
            }

            /// Decodes a payload stored in the current schema version of its type. Older versions
            /// are each stream's own upcasting business, before it calls this.
            pub fn decode_current_version(
                event_type: &str,
                schema_version: u16,
                data: &[u8],
            ) -> Result<Self, $crate::domain::DecodeError> {
                use $crate::domain::DecodeError;
                let current = Self::TYPES
                    .iter()
                    .find(|(t, _)| *t == event_type)
                    .map(|(_, v)| *v)
                    .ok_or_else(|| DecodeError::UnknownEventType(event_type.to_owned()))?;
                if current != schema_version {
                    return Err(DecodeError::UnsupportedVersion { event_type: event_type.to_owned(), version: schema_version });
                }
                match Self::decode_current_bytes(event_type, data) {
                    Some(result) => result.map_err(|source| DecodeError::Malformed {
                        event_type: event_type.to_owned(),
                        version: schema_version,
                        source,
                    }),
                    None => Err(DecodeError::UnknownEventType(event_type.to_owned())),
                }
            }

            /// JSON Schemas of the current versions: `(event_type, version, schema)`.
            pub fn current_schemas() -> Vec<(&'static str, u16, schemars::Schema)> {
                vec![ $( (stringify!($Variant), $ver, schemars::schema_for!($Variant)), )* ]
            }
        }

        $(
            impl From<$Variant> for $Enum {
                fn from(p: $Variant) -> Self {
                    Self::$Variant(p)
                }
            }
        )*
    };
}

pub(crate) use event_enum;
