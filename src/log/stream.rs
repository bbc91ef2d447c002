//! Stream ids: `course-{uuid}`, `company-{uuid}`, `accounts`, … parsed once at the edge.

use uuid::Uuid;

pub const MAX_STREAM_LEN: usize = 128;

/// A stream id: a category of lower-case letters, digits and `_`, optionally followed by `-` and
/// an id made of lower-case letters, digits and `-`. At most 128 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid stream id: {0}")]
pub struct InvalidStreamId(pub &'static str);

/// A stream name's category (`course` of `course-{uuid}`), for names not parsed into a
/// [`StreamId`] (records read in place).
pub fn category_of(stream: &str) -> &str {
    stream.split_once('-').map_or(stream, |(c, _)| c)
}

/// A stream name's entity id, when it is `{category}-{uuid}`.
pub fn entity_id_of(stream: &str) -> Option<Uuid> {
    let (_, id) = stream.split_once('-')?;
    Uuid::try_parse(id).ok()
}

impl StreamId {
    pub fn parse(s: &str) -> Result<Self, InvalidStreamId> {
        if s.is_empty() || s.len() > MAX_STREAM_LEN {
            return Err(InvalidStreamId("must be 1..=128 bytes"));
        }
        let (category, id) = match s.split_once('-') {
            Some((c, i)) => (c, Some(i)),
            None => (s, None),
        };
        let cat_ok = category.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && category.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !cat_ok {
            return Err(InvalidStreamId("category must be lower-case letters, digits or '_'"));
        }
        if let Some(id) = id
            && (id.is_empty() || !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
        {
            return Err(InvalidStreamId("id must be lower-case letters, digits or '-'"));
        }
        Ok(StreamId(s.to_owned()))
    }

    /// `{category}-{uuid}` with the canonical hyphenated lower-case form.
    pub fn for_entity(category: &str, id: Uuid) -> Self {
        StreamId(format!("{category}-{}", id.hyphenated()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn category(&self) -> &str {
        category_of(&self.0)
    }

    /// The entity id, when the stream is `{category}-{uuid}`.
    pub fn entity_id(&self) -> Option<Uuid> {
        entity_id_of(&self.0)
    }

    /// A compact, unambiguous key for the index: `category 0x00 uuid16` for entity streams
    /// (17–30 bytes instead of 40–50) and `name 0x01` for the rest.
    pub fn index_key(&self) -> Vec<u8> {
        match self.0.split_once('-') {
            Some((cat, id)) if Uuid::try_parse(id).is_ok_and(|u| u.hyphenated().to_string() == id) => {
                let u = Uuid::try_parse(id).unwrap_or_default();
                let mut k = Vec::with_capacity(cat.len() + 17);
                k.extend_from_slice(cat.as_bytes());
                k.push(0);
                k.extend_from_slice(u.as_bytes());
                k
            }
            _ => {
                let mut k = Vec::with_capacity(self.0.len() + 1);
                k.extend_from_slice(self.0.as_bytes());
                k.push(1);
                k
            }
        }
    }
}

impl StreamId {
    /// The inverse of [`StreamId::index_key`].
    pub fn from_index_key(key: &[u8]) -> Option<Self> {
        if let Some(i) = key.iter().position(|b| *b == 0) {
            let category = std::str::from_utf8(&key[..i]).ok()?;
            let id = Uuid::from_slice(key.get(i + 1..)?).ok()?;
            return Some(StreamId::for_entity(category, id));
        }
        let name = std::str::from_utf8(key.strip_suffix(&[1])?).ok()?;
        StreamId::parse(name).ok()
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entity_and_plain_streams() {
        let id = Uuid::new_v4();
        let s = StreamId::for_entity("course", id);
        assert_eq!(StreamId::parse(s.as_str()).unwrap(), s);
        assert_eq!(s.category(), "course");
        assert_eq!(s.entity_id(), Some(id));
        assert_eq!(StreamId::parse("accounts").unwrap().category(), "accounts");
        for bad in ["", "Course-x", "course-", "-x", "course x", "course-ABC", &"a".repeat(129)] {
            assert!(StreamId::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn index_keys_are_unambiguous() {
        let id = Uuid::new_v4();
        let a = StreamId::for_entity("course", id).index_key();
        let b = StreamId::parse(&format!("course-{}", id.simple())).unwrap().index_key();
        let c = StreamId::parse("course").unwrap().index_key();
        assert_eq!(a.len(), 6 + 1 + 16);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(b, c);
        for k in [&a, &b, &c] {
            assert_eq!(StreamId::from_index_key(k).unwrap().index_key(), *k);
        }
    }
}
