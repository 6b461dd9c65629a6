//! Times in API answers as RFC 3339 strings (`2025-01-31T18:30:00.123456Z`), the form JSON
//! clients parse without help. Hand-written because the workspace builds `time` without
//! its `serde` feature.

use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serializer, de::Error as _, ser::Error as _};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub(crate) fn serialize<S: Serializer>(
    at: &OffsetDateTime,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let text = at.format(&Rfc3339).map_err(S::Error::custom)?;
    serializer.serialize_str(&text)
}

/// `Option<OffsetDateTime>` as an RFC 3339 string or `null`.
pub(crate) fn option<S: Serializer>(
    at: &Option<OffsetDateTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serialize(at, serializer),
        None => serializer.serialize_none(),
    }
}

/// Parses an RFC 3339 date-time (`2026-12-01T18:00:00Z`, with an offset or `Z`).
pub(crate) fn parse(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// `Option<SystemTime>` as an RFC 3339 string or `null`.
pub(crate) mod option_system_time {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        at: &Option<SystemTime>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => super::serialize(&OffsetDateTime::from(*at), serializer),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| {
                OffsetDateTime::parse(&text, &Rfc3339)
                    .map(SystemTime::from)
                    .map_err(D::Error::custom)
            })
            .transpose()
    }
}
