//! The playback URL layout under `/live/{event_id}/`: file names in, typed resources out,
//! and the relative URIs the playlists use. One spelling per resource, so a CDN caches
//! each exactly once.

use crate::window::PartPosition;

/// The media playlist of a rendition.
pub(crate) const MEDIA_PLAYLIST: &str = "index.m3u8";
/// The I-frame playlist of a video rendition (RFC 8216bis §4.4.3.6).
pub(crate) const IFRAME_PLAYLIST: &str = "iframes.m3u8";
/// The stream's poster, `/live/{event_id}/thumbnail.jpg` (also its push path's last
/// segment, `/push/v1/{event_id}/thumbnail.jpg`).
pub(crate) const THUMBNAIL: &str = "thumbnail.jpg";

/// A file in a rendition's directory, `/live/{event_id}/{rendition}/{file}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RenditionFile {
    /// `index.m3u8`
    Playlist,
    /// `iframes.m3u8`
    IFramePlaylist,
    /// `init{version}.mp4` (immutable), or `init.mp4` for the latest version.
    Init(Option<u32>),
    /// `{msn}.{part}.m4s`
    Part(PartPosition),
    /// `{msn}.m4s`: a whole segment, its parts concatenated.
    Segment(u64),
}

impl RenditionFile {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        if name == MEDIA_PLAYLIST {
            return Some(RenditionFile::Playlist);
        }
        if name == IFRAME_PLAYLIST {
            return Some(RenditionFile::IFramePlaylist);
        }
        if let Some(version) = name
            .strip_prefix("init")
            .and_then(|rest| rest.strip_suffix(".mp4"))
        {
            return if version.is_empty() {
                Some(RenditionFile::Init(None))
            } else {
                canonical_number(version).map(|v| RenditionFile::Init(Some(v)))
            };
        }
        let stem = name.strip_suffix(".m4s")?;
        match stem.split_once('.') {
            Some((msn, part)) => Some(RenditionFile::Part(PartPosition {
                msn: canonical_number(msn)?,
                part: canonical_number(part)?,
            })),
            None => canonical_number(stem).map(RenditionFile::Segment),
        }
    }
}

/// A decimal number as we write it: digits only, no sign, no leading zeros.
fn canonical_number<T: std::str::FromStr>(text: &str) -> Option<T> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical { text.parse().ok() } else { None }
}

pub(crate) fn part_uri(position: PartPosition) -> String {
    format!("{}.{}.m4s", position.msn, position.part)
}

pub(crate) fn segment_uri(msn: u64) -> String {
    format!("{msn}.m4s")
}

pub(crate) fn init_uri(version: u32) -> String {
    format!("init{version}.mp4")
}

/// A rendition's playlist, relative to the master playlist.
pub(crate) fn variant_uri(rendition: &str) -> String {
    format!("{rendition}/{MEDIA_PLAYLIST}")
}

/// A rendition's I-frame playlist, relative to the master playlist.
pub(crate) fn iframe_playlist_uri(rendition: &str) -> String {
    format!("{rendition}/{IFRAME_PLAYLIST}")
}

/// A rendition's playlist, relative to another rendition's playlist (EXT-X-RENDITION-REPORT).
pub(crate) fn sibling_playlist_uri(rendition: &str) -> String {
    format!("../{rendition}/{MEDIA_PLAYLIST}")
}

/// Rendition names become path segments in both the playback and the push URLs: a short
/// token of letters, digits, `-` and `_`, and not `end`, which the push API uses.
pub(crate) fn is_valid_rendition_name(name: &str) -> bool {
    is_path_token(name, 64) && name != "end"
}

/// Event ids become a path segment of every playback and push URL.
pub(crate) fn is_valid_event_id(event_id: &str) -> bool {
    is_path_token(event_id, 128)
}

fn is_path_token(text: &str, max_len: usize) -> bool {
    (1..=max_len).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        let part = PartPosition { msn: 12, part: 3 };
        assert_eq!(
            RenditionFile::parse(&part_uri(part)),
            Some(RenditionFile::Part(part))
        );
        assert_eq!(
            RenditionFile::parse(&segment_uri(12)),
            Some(RenditionFile::Segment(12))
        );
        assert_eq!(
            RenditionFile::parse(&init_uri(0)),
            Some(RenditionFile::Init(Some(0)))
        );
        assert_eq!(
            RenditionFile::parse("init.mp4"),
            Some(RenditionFile::Init(None))
        );
        assert_eq!(
            RenditionFile::parse("index.m3u8"),
            Some(RenditionFile::Playlist)
        );
        assert_eq!(
            RenditionFile::parse("iframes.m3u8"),
            Some(RenditionFile::IFramePlaylist)
        );
    }

    #[test]
    fn only_the_canonical_spelling_is_accepted() {
        for name in [
            "012.m4s",
            "+1.m4s",
            "1.2.3.m4s",
            ".m4s",
            "1..m4s",
            "init01.mp4",
            "initx.mp4",
            "1.mp4",
            "a.m4s",
        ] {
            assert_eq!(RenditionFile::parse(name), None, "{name}");
        }
        assert_eq!(
            RenditionFile::parse("99999999999999999999.m4s"),
            None,
            "overflow"
        );
    }

    #[test]
    fn rendition_names_are_path_safe() {
        assert!(is_valid_rendition_name("source"));
        assert!(is_valid_rendition_name("audio_aac-2"));
        for name in ["", "end", "a/b", "..", "a.b", &"x".repeat(65)] {
            assert!(!is_valid_rendition_name(name), "{name}");
        }
        assert!(is_valid_event_id("3f2a-event_1"));
        assert!(!is_valid_event_id("a b"));
    }
}
