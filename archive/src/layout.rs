//! Every object key of the archive, built here and nowhere else: the layout is a contract
//! between the writers (every origin replica) and the readers (start-over, VOD playback,
//! VOD jobs, retention), documented in `docs/archive.md`. Keys start with the layout
//! version (`v1/`), so a future layout can live beside this one in the same bucket.
//!
//! ```text
//! v1/events/{event_id}/renditions/{rendition}/descriptor.json
//! v1/events/{event_id}/renditions/{rendition}/init/{version}.mp4
//! v1/events/{event_id}/renditions/{rendition}/segments/{msn}.m4s
//! v1/events/{event_id}/renditions/{rendition}/index/head.json
//! v1/events/{event_id}/renditions/{rendition}/index/{chunk}.jsonl
//! ```
//!
//! Numbers are decimal without leading zeros (one spelling per object, as in the origin's
//! URLs). Event ids and rendition names are checked before any key is built
//! ([`EventId::new`], [`RenditionName::new`]): a component outside `[A-Za-z0-9_-]` could
//! escape its folder (`..`, `/`) or be spelled two ways once percent-encoded.

use std::fmt;

use object_store::path::Path;
use serde::{Deserialize, Serialize};

/// The layout version, the first component of every key.
pub const LAYOUT_VERSION: &str = "v1";

/// The longest event id or rendition name, as the push API and the transcoder accept them.
pub const MAX_COMPONENT_LEN: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayoutError {
    #[error("{what} {value:?} must be 1 to {MAX_COMPONENT_LEN} of [A-Za-z0-9_-]")]
    InvalidComponent { what: &'static str, value: String },
}

/// Checks one key component; the error quotes at most 80 characters of it.
pub(crate) fn check_component(what: &'static str, value: &str) -> Result<(), LayoutError> {
    let valid = (1..=MAX_COMPONENT_LEN).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(LayoutError::InvalidComponent {
            what,
            value: value.chars().take(80).collect(),
        })
    }
}

/// An event's public id, checked to be a safe key component.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventId(String);

impl TryFrom<String> for EventId {
    type Error = LayoutError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        EventId::new(value)
    }
}

impl From<EventId> for String {
    fn from(id: EventId) -> String {
        id.0
    }
}

impl EventId {
    pub fn new(id: impl Into<String>) -> Result<EventId, LayoutError> {
        let id = id.into();
        check_component("event id", &id)?;
        Ok(EventId(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A rendition's name (`720p`, `audio`), checked to be a safe key component.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RenditionName(String);

impl RenditionName {
    pub fn new(name: impl Into<String>) -> Result<RenditionName, LayoutError> {
        let name = name.into();
        check_component("rendition name", &name)?;
        Ok(RenditionName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for RenditionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One rendition of one event: the folder all its objects live under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RenditionKey {
    pub event_id: EventId,
    pub rendition: RenditionName,
}

impl RenditionKey {
    pub fn new(event_id: EventId, rendition: RenditionName) -> RenditionKey {
        RenditionKey {
            event_id,
            rendition,
        }
    }

    /// `v1/events/{event_id}/renditions/{rendition}/descriptor.json`
    pub fn descriptor(&self) -> Path {
        self.object(ObjectKind::Descriptor)
    }

    /// `v1/events/{event_id}/renditions/{rendition}/init/{version}.mp4`
    pub fn init(&self, version: u32) -> Path {
        self.object(ObjectKind::Init(version))
    }

    /// `v1/events/{event_id}/renditions/{rendition}/segments/{msn}.m4s`
    pub fn segment(&self, msn: u64) -> Path {
        self.object(ObjectKind::Segment(msn))
    }

    /// `v1/events/{event_id}/renditions/{rendition}/index/head.json`
    pub fn index_head(&self) -> Path {
        self.object(ObjectKind::IndexHead)
    }

    /// `v1/events/{event_id}/renditions/{rendition}/index/{chunk}.jsonl`
    pub fn index_chunk(&self, chunk: u64) -> Path {
        self.object(ObjectKind::IndexChunk(chunk))
    }

    /// The key of one of this rendition's objects.
    pub fn object(&self, kind: ObjectKind) -> Path {
        let leaf = match kind {
            ObjectKind::Descriptor => "descriptor.json".to_string(),
            ObjectKind::Init(version) => format!("init/{version}.mp4"),
            ObjectKind::Segment(msn) => format!("segments/{msn}.m4s"),
            ObjectKind::IndexHead => "index/head.json".to_string(),
            ObjectKind::IndexChunk(chunk) => format!("index/{chunk}.jsonl"),
        };
        Path::from(format!(
            "{LAYOUT_VERSION}/events/{}/renditions/{}/{leaf}",
            self.event_id, self.rendition
        ))
    }

    /// `v1/events/{event_id}/`: everything archived for an event (what retention deletes).
    pub fn event_prefix(event_id: &EventId) -> Path {
        Path::from(format!("{LAYOUT_VERSION}/events/{event_id}"))
    }

    /// `v1/events/{event_id}/renditions/`: one folder per archived rendition.
    pub fn renditions_prefix(event_id: &EventId) -> Path {
        Path::from(format!("{LAYOUT_VERSION}/events/{event_id}/renditions"))
    }
}

impl fmt::Display for RenditionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.event_id, self.rendition)
    }
}

/// What an object of a rendition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// The rendition's descriptor (codecs, resolution, access) as last pushed: what a
    /// master playlist of the archive says of it.
    Descriptor,
    /// An init segment version (what EXT-X-MAP names).
    Init(u32),
    /// One complete segment, its parts concatenated, by media sequence number.
    Segment(u64),
    /// The index head: which index chunks exist and where each starts in time.
    IndexHead,
    /// One chunk of the segment index (`crate::index::CHUNK_RECORDS` MSNs).
    IndexChunk(u64),
}

/// The rendition and kind of an archive key: the inverse of [`RenditionKey::object`], for
/// tools and retention that meet keys in a listing. `None` for anything this layout
/// version would not have written.
pub fn parse(path: &Path) -> Option<(RenditionKey, ObjectKind)> {
    let parts: Vec<&str> = path.as_ref().split('/').collect();
    if let [
        version,
        "events",
        event,
        "renditions",
        rendition,
        "descriptor.json",
    ] = parts[..]
    {
        let key = RenditionKey::new(
            EventId::new(event).ok()?,
            RenditionName::new(rendition).ok()?,
        );
        return (version == LAYOUT_VERSION).then_some((key, ObjectKind::Descriptor));
    }
    let [
        version,
        "events",
        event,
        "renditions",
        rendition,
        folder,
        leaf,
    ] = parts[..]
    else {
        return None;
    };
    if version != LAYOUT_VERSION {
        return None;
    }
    let key = RenditionKey::new(
        EventId::new(event).ok()?,
        RenditionName::new(rendition).ok()?,
    );
    let kind = match (folder, leaf) {
        ("init", leaf) => ObjectKind::Init(number(leaf.strip_suffix(".mp4")?)?),
        ("segments", leaf) => ObjectKind::Segment(number(leaf.strip_suffix(".m4s")?)?),
        ("index", "head.json") => ObjectKind::IndexHead,
        ("index", leaf) => ObjectKind::IndexChunk(number(leaf.strip_suffix(".jsonl")?)?),
        _ => return None,
    };
    (key.object(kind) == *path).then_some((key, kind))
}

/// A decimal number in its one spelling (no sign, no leading zeros).
fn number<T: std::str::FromStr>(text: &str) -> Option<T> {
    let canonical = text == "0" || (!text.starts_with('0') && !text.is_empty());
    if canonical && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RenditionKey {
        RenditionKey::new(
            EventId::new("cup-final_2026").unwrap(),
            RenditionName::new("720p").unwrap(),
        )
    }

    #[test]
    fn keys_follow_the_documented_layout() {
        let key = key();
        let base = "v1/events/cup-final_2026/renditions/720p";
        assert_eq!(key.init(3).as_ref(), format!("{base}/init/3.mp4"));
        assert_eq!(
            key.segment(1234).as_ref(),
            format!("{base}/segments/1234.m4s")
        );
        assert_eq!(key.index_head().as_ref(), format!("{base}/index/head.json"));
        assert_eq!(key.index_chunk(0).as_ref(), format!("{base}/index/0.jsonl"));
        assert_eq!(
            RenditionKey::event_prefix(&key.event_id).as_ref(),
            "v1/events/cup-final_2026"
        );
    }

    #[test]
    fn unsafe_components_are_refused_before_a_key_exists() {
        let long = "x".repeat(65);
        for bad in ["", "..", "a/b", "a b", "é", "a.b", "%2F", long.as_str()] {
            let err = EventId::new(bad).unwrap_err().to_string();
            assert!(err.starts_with("event id"), "{err}");
            let err = RenditionName::new(bad).unwrap_err().to_string();
            assert!(err.contains("[A-Za-z0-9_-]"), "{err}");
        }
        assert!(EventId::new("x".repeat(64)).is_ok());
    }

    #[test]
    fn keys_parse_back_and_nothing_else_does() {
        let key = key();
        for kind in [
            ObjectKind::Descriptor,
            ObjectKind::Init(0),
            ObjectKind::Segment(18_446_744_073_709_551_615),
            ObjectKind::IndexHead,
            ObjectKind::IndexChunk(7),
        ] {
            assert_eq!(parse(&key.object(kind)), Some((key.clone(), kind)));
        }
        for other in [
            "v2/events/e/renditions/r/segments/1.m4s",
            "v1/events/e/renditions/r/segments/01.m4s",
            "v1/events/e/renditions/r/segments/1.mp4",
            "v1/events/e/renditions/r/segments/-1.m4s",
            "v1/events/e/renditions/r/index/x.jsonl",
            "v1/events/e/r/segments/1.m4s",
        ] {
            assert_eq!(parse(&Path::from(other)), None, "{other}");
        }
    }
}
