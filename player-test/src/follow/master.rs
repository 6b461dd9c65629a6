//! The master playlist's side of following: which variant, audio rendition and I-frame
//! playlist a player takes, and whether a start-over or time-shift URL's range reaches
//! the media playlists.

use reqwest::Url;

use super::{PlayerError, VariantChoice};
use crate::playlist::{MasterPlaylist, Variant};

pub(super) fn choose_variant<'a>(
    master: &'a MasterPlaylist,
    choice: &VariantChoice,
    master_url: &Url,
) -> Result<&'a Variant, PlayerError> {
    let variants = master.variants.iter();
    let chosen = match choice {
        VariantChoice::HighestBandwidth => variants.max_by_key(|v| v.bandwidth),
        VariantChoice::LowestBandwidth => variants.min_by_key(|v| v.bandwidth),
        VariantChoice::UriContains(wanted) => {
            return master
                .variants
                .iter()
                .find(|v| v.uri.contains(wanted.as_str()))
                .ok_or_else(|| PlayerError::VariantNotFound {
                    wanted: wanted.clone(),
                });
        }
    };
    chosen.ok_or_else(|| PlayerError::NoVariant {
        url: master_url.to_string(),
    })
}

/// The audio rendition a player picks for `variant`: in its AUDIO group, with a URI of its
/// own, DEFAULT=YES first (RFC 8216bis §4.4.6.1.1).
pub(super) fn audio_rendition_uri<'a>(
    master: &'a MasterPlaylist,
    variant: &Variant,
) -> Option<&'a str> {
    let group = variant.audio_group.as_deref()?;
    let mut candidates = master
        .audio
        .iter()
        .filter(|a| a.group_id == group && a.uri.is_some());
    let first = candidates.clone().next();
    candidates
        .find(|a| a.default)
        .or(first)
        .and_then(|a| a.uri.as_deref())
}

/// The I-frame playlist (EXT-X-I-FRAME-STREAM-INF, RFC 8216bis §4.4.6.3) a player scrubbing
/// through `variant_url` reads: the one beside it (same directory), else the one with its
/// RESOLUTION. `None` when the master lists none.
pub(super) fn iframe_uri_for<'a>(
    master: &'a MasterPlaylist,
    variant: &Variant,
    variant_url: &Url,
    master_url: &Url,
) -> Option<&'a str> {
    let directory = |url: &Url| url.join(".").ok();
    let beside = master.iframe_variants.iter().find(|i| {
        master_url
            .join(&i.uri)
            .ok()
            .is_some_and(|url| directory(&url) == directory(variant_url))
    });
    beside
        .or_else(|| {
            master
                .iframe_variants
                .iter()
                .find(|i| i.resolution.is_some() && i.resolution == variant.resolution)
        })
        .map(|i| i.uri.as_str())
}

/// `start` and `end` of a start-over or time-shift URL (`?start=T[&end=T2]`, T as RFC 3339
/// or epoch seconds), as Unix milliseconds when they parse, else as written; both `None`
/// in other URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TimeShift {
    start: Option<TimeValue>,
    end: Option<TimeValue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TimeValue {
    UnixMs(i64),
    Written(String),
}

impl std::fmt::Display for TimeValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TimeValue::UnixMs(ms) => {
                write!(f, "{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
            }
            TimeValue::Written(text) => write!(f, "{text:?}"),
        }
    }
}

impl TimeShift {
    pub(super) fn of(url: &Url) -> Self {
        let mut shift = TimeShift {
            start: None,
            end: None,
        };
        for (name, value) in url.query_pairs() {
            match name.as_ref() {
                "start" => shift.start = Some(TimeValue::parse(&value)),
                "end" => shift.end = Some(TimeValue::parse(&value)),
                _ => {}
            }
        }
        shift
    }

    /// The URL asks for recorded media from a point in time.
    pub(super) fn is_set(&self) -> bool {
        self.start.is_some()
    }

    /// When `self` is the master's range and set: an error unless `media_url` asks for
    /// the same range, as every playlist URI of a start-over master must for the player to
    /// play what it asked for.
    pub(super) fn check_carried(&self, media_url: &Url) -> Option<String> {
        if !self.is_set() {
            return None;
        }
        let carried = TimeShift::of(media_url);
        (carried != *self).then(|| {
            format!(
                "master: {media_url} does not carry the master URL's range ({self}; it has {carried}): \
                 it plays another part of the event"
            )
        })
    }
}

impl std::fmt::Display for TimeShift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<TimeValue>| v.as_ref().map_or("none".to_string(), |v| v.to_string());
        write!(f, "start {}, end {}", show(&self.start), show(&self.end))
    }
}

impl TimeValue {
    /// RFC 3339 (`2026-12-07T20:15:00Z`) or epoch seconds (`1765138500.25`).
    fn parse(text: &str) -> Self {
        use time::format_description::well_known::Rfc3339;
        if let Ok(at) = time::OffsetDateTime::parse(text, &Rfc3339)
            && let Ok(ms) = i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        {
            return TimeValue::UnixMs(ms);
        }
        match text.parse::<f64>() {
            Ok(seconds) if seconds.is_finite() => {
                TimeValue::UnixMs((seconds * 1000.0).round() as i64)
            }
            _ => TimeValue::Written(text.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playlist::parse_master;

    #[test]
    fn variant_and_audio_choice() {
        let master = parse_master(
            "#EXTM3U
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"muxed\"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"alt\",URI=\"alt/index.m3u8\"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"main\",DEFAULT=YES,URI=\"audio/index.m3u8\"
#EXT-X-STREAM-INF:BANDWIDTH=800000,AUDIO=\"a\"
low/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=3000000,AUDIO=\"a\"
source/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=100000
audio-free/index.m3u8
",
        )
        .expect("parses");
        let url = Url::parse("http://h/master.m3u8").expect("url");
        let highest =
            choose_variant(&master, &VariantChoice::HighestBandwidth, &url).expect("variant");
        assert_eq!(highest.uri, "source/index.m3u8");
        assert_eq!(
            audio_rendition_uri(&master, highest),
            Some("audio/index.m3u8")
        );
        let lowest =
            choose_variant(&master, &VariantChoice::LowestBandwidth, &url).expect("variant");
        assert_eq!(audio_rendition_uri(&master, lowest), None);
        let low = choose_variant(&master, &VariantChoice::UriContains("low/".into()), &url)
            .expect("variant");
        assert_eq!(low.bandwidth, 800_000);
        assert!(matches!(
            choose_variant(&master, &VariantChoice::UriContains("nope".into()), &url),
            Err(PlayerError::VariantNotFound { .. })
        ));
    }

    #[test]
    fn iframe_playlist_beside_the_variant() {
        let master = parse_master(
            "#EXTM3U
#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1280x720
source/index.m3u8?start=10
#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360
low/index.m3u8?start=10
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=300000,RESOLUTION=1280x720,URI=\"source/iframes.m3u8?start=10\"
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,RESOLUTION=640x360,URI=\"low/iframes.m3u8?start=10\"
",
        )
        .expect("parses");
        let url = Url::parse("http://h/live/e/master.m3u8?start=10").expect("url");
        for variant in &master.variants {
            let variant_url = url.join(&variant.uri).expect("joins");
            let directory = variant.uri.split('/').next().expect("directory");
            assert_eq!(
                iframe_uri_for(&master, variant, &variant_url, &url),
                Some(format!("{directory}/iframes.m3u8?start=10").as_str())
            );
        }
        let elsewhere = Url::parse("http://cdn/x/index.m3u8").expect("url");
        assert_eq!(
            iframe_uri_for(&master, &master.variants[1], &elsewhere, &url),
            Some("low/iframes.m3u8?start=10"),
            "by RESOLUTION"
        );
    }

    #[test]
    fn time_shift_must_reach_the_media_playlists() {
        let master = Url::parse("http://h/live/e/master.m3u8?start=2025-12-07T20:15:00Z&token=t")
            .expect("url");
        let shift = TimeShift::of(&master);
        assert!(shift.is_set());
        // The origin rewrites the time as epoch seconds: the same instant.
        let same = master
            .join("source/index.m3u8?start=1765138500.000&token=t")
            .expect("url");
        assert_eq!(shift.check_carried(&same), None);
        let dropped = master.join("source/index.m3u8?token=t").expect("url");
        let error = shift.check_carried(&dropped).expect("an error");
        assert!(
            error.contains("start 1765138500.000, end none; it has start none"),
            "{error}"
        );
        let other = master
            .join("source/index.m3u8?start=1765138501")
            .expect("url");
        assert!(shift.check_carried(&other).is_some());
        let live = Url::parse("http://h/live/e/master.m3u8").expect("url");
        assert!(!TimeShift::of(&live).is_set());
        assert_eq!(TimeShift::of(&live).check_carried(&dropped), None);
    }
}
