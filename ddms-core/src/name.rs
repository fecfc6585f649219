//! Validated slugs used for entity types, fields and relation types.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, FieldError};

/// Longest name accepted (PostgreSQL identifiers are 63 bytes; we never use names as
/// identifiers, but a bound keeps them sane).
pub const MAX_NAME_LEN: usize = 63;

/// The bytes of `b` (at most 16) zero-padded into a little-endian `u128`, read in two
/// overlapping loads of the widest size that fits (three single bytes below 4) rather
/// than one by one or with a `memcpy` of variable length. Short names and filter
/// operands are packed this way where they are compared or stored inline.
#[inline(always)]
pub fn short_word(b: &[u8]) -> u128 {
    let n = b.len();
    debug_assert!(n <= 16, "short_word of {n} bytes");
    if n >= 8 {
        // Bytes 8.. are the last 8 without the first 16 - n of them.
        let lo = u64::from_le_bytes(b[..8].try_into().unwrap_or_default());
        let last = u64::from_le_bytes(b[n - 8..].try_into().unwrap_or_default());
        let hi = last.checked_shr(8 * (16 - n) as u32).unwrap_or(0);
        u128::from(lo) | u128::from(hi) << 64
    } else if n >= 4 {
        let lo = u32::from_le_bytes(b[..4].try_into().unwrap_or_default());
        let last = u32::from_le_bytes(b[n - 4..].try_into().unwrap_or_default());
        let hi = last.checked_shr(8 * (8 - n) as u32).unwrap_or(0);
        u128::from(lo) | u128::from(hi) << 32
    } else if n > 0 {
        // Bytes 0, n / 2 and n - 1 are all of them (the same byte may come twice).
        u128::from(b[0])
            | u128::from(b[n / 2]) << (8 * (n / 2))
            | u128::from(b[n - 1]) << (8 * (n - 1))
    } else {
        0
    }
}

/// Field names reserved for system fields.
pub const RESERVED_FIELD_NAMES: [&str; 3] = ["id", "created_at", "updated_at"];

/// A validated slug: lower-case ASCII letter first, then letters, digits or `_`,
/// at most 63 characters. Shared, so that clones (checked filters and queries carry
/// their field names) do not allocate.
#[derive(Debug, Clone, Eq, PartialOrd, Ord)]
pub struct Name(Arc<str>);

impl std::hash::Hash for Name {
    /// The text's hash (as `str`, so that a `HashMap<Name, _>` can be read by `&str`).
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.hash(h)
    }
}

impl PartialEq for Name {
    /// Equal texts; clones of one name (a checked filter's and its entity type's) are
    /// recognised without comparing the bytes.
    #[inline]
    fn eq(&self, other: &Name) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl Name {
    /// Checks `s` and wraps it.
    pub fn parse(s: &str) -> Result<Name, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.len() > MAX_NAME_LEN {
            return Err(format!("must be at most {MAX_NAME_LEN} characters"));
        }
        let mut chars = s.chars();
        let first = chars.next().unwrap_or('_');
        if !first.is_ascii_lowercase() {
            return Err("must start with a lower-case letter (a-z)".into());
        }
        if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return Err("may contain only a-z, 0-9 and _".into());
        }
        Ok(Name(Arc::from(s)))
    }

    /// Checks `s` as a user field name (a slug that is not reserved).
    pub fn parse_field(s: &str) -> Result<Name, String> {
        let n = Name::parse(s)?;
        if RESERVED_FIELD_NAMES.contains(&s) {
            return Err(format!("`{s}` is reserved for a system field"));
        }
        Ok(n)
    }

    /// Parses `s` or returns a validation error about `what` (e.g. `name`).
    pub fn parse_for(what: &str, s: &str) -> Result<Name, Error> {
        Name::parse(s).map_err(|m| {
            Error::Validation(vec![FieldError::new(
                what,
                "invalid_name",
                format!("invalid name `{}`: {m}", truncate(s, 80)),
            )])
        })
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Shortens `s` for messages so that huge inputs do not flood logs.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Name::parse(&s).map_err(|m| serde::de::Error::custom(format!("invalid name `{s}`: {m}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "project", "user_2", "a_b_c"] {
            assert!(Name::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "A",
            "1a",
            "_a",
            "a-b",
            "a b",
            "é",
            "a;drop",
            &"a".repeat(64),
        ] {
            assert!(Name::parse(bad).is_err(), "{bad}");
        }
        assert!(Name::parse_field("id").is_err());
        assert!(Name::parse_field("created_at").is_err());
        assert!(Name::parse_field("title").is_ok());
    }

    #[test]
    fn equality_and_hash_follow_the_text() {
        use std::collections::HashSet;
        let a = Name::parse("title").unwrap();
        let b = Name::parse("title").unwrap();
        assert_eq!(a, a.clone());
        assert_eq!(a, b);
        assert_ne!(a, Name::parse("titles").unwrap());
        let set: HashSet<Name> = [a].into_iter().collect();
        assert!(set.contains(&b));
        assert!(set.contains("title"));
    }

    #[test]
    fn short_word_is_the_zero_padded_bytes() {
        for n in 0..=16usize {
            let b: Vec<u8> = (0..n).map(|i| 0xa0 + i as u8).collect();
            let mut padded = [0u8; 16];
            padded[..n].copy_from_slice(&b);
            assert_eq!(
                super::short_word(&b),
                u128::from_le_bytes(padded),
                "{n} bytes"
            );
        }
    }
}
