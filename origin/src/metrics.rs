//! The origin's Prometheus metrics: names in one place, described once.

pub(crate) const PARTS_RECEIVED: &str = "floodlight_origin_parts_received_total";
pub(crate) const PART_BYTES_RECEIVED: &str = "floodlight_origin_part_bytes_received_total";
pub(crate) const PART_READY_LATENCY: &str = "floodlight_origin_part_ready_latency_seconds";
pub(crate) const BLOCKING_WAIT: &str = "floodlight_origin_blocking_wait_seconds";
pub(crate) const HTTP_RESPONSES: &str = "floodlight_origin_http_responses_total";
pub(crate) const ACTIVE_STREAMS: &str = "floodlight_origin_active_streams";
pub(crate) const SEGMENTS_OVER_TARGET: &str =
    "floodlight_origin_segments_over_target_duration_total";
pub(crate) const STREAMS_ENDED_IDLE: &str = "floodlight_origin_streams_ended_idle_total";
pub(crate) const PLAYBACK_REFUSED: &str = "floodlight_origin_playback_refused_total";
pub(crate) const PLAYBACK_TOKENS_VERIFIED: &str =
    "floodlight_origin_playback_tokens_verified_total";
pub(crate) const GAP_SEGMENTS: &str = "floodlight_origin_gap_segments_total";
pub(crate) const RENDITIONS_SHED: &str = "floodlight_origin_renditions_shed_total";
pub(crate) const ARCHIVE_CACHE_BYTES: &str = "floodlight_origin_archive_cache_bytes";
pub(crate) const ARCHIVE_READS: &str = "floodlight_origin_archive_reads_total";

/// Registers help texts with whatever recorder the binary installed.
pub(crate) fn describe() {
    metrics::describe_gauge!(
        ARCHIVE_CACHE_BYTES,
        metrics::Unit::Bytes,
        "Bytes of archive objects (segments, index, manifests) cached for start-over and VOD"
    );
    metrics::describe_counter!(
        ARCHIVE_READS,
        "Archive objects read from the object store for start-over and VOD, by result (hit = from the cache)"
    );
    metrics::describe_counter!(PARTS_RECEIVED, "CMAF parts stored from the push API");
    metrics::describe_counter!(
        PART_BYTES_RECEIVED,
        metrics::Unit::Bytes,
        "Bytes of the parts stored"
    );
    metrics::describe_histogram!(
        PART_READY_LATENCY,
        metrics::Unit::Seconds,
        "Ingest-to-playable latency: from the last frame of a part reaching ingest to the part being servable"
    );
    metrics::describe_histogram!(
        BLOCKING_WAIT,
        metrics::Unit::Seconds,
        "Time a blocking playlist reload or preload-hinted part request was held (RFC 8216bis §6.2.5.2, §6.2.6)"
    );
    metrics::describe_counter!(HTTP_RESPONSES, "HTTP responses by status class");
    metrics::describe_counter!(
        SEGMENTS_OVER_TARGET,
        "Complete segments whose EXTINF, rounded, exceeded the fixed EXT-X-TARGETDURATION (RFC 8216bis §4.4.3.1): the publisher's keyframe interval is too long"
    );
    metrics::describe_counter!(
        STREAMS_ENDED_IDLE,
        "Streams ended by the origin after no push for idle_end_secs (no POST end came)"
    );
    metrics::describe_counter!(
        PLAYBACK_REFUSED,
        "Token stream requests refused, by reason (missing_token, expired, wrong_event, revoked, bad_signature, unknown_key, malformed_token)"
    );
    metrics::describe_counter!(
        PLAYBACK_TOKENS_VERIFIED,
        "Playback token signatures computed (cache misses); requests with a remembered token skip the HMAC"
    );
    metrics::describe_counter!(
        GAP_SEGMENTS,
        "Segment numbers a rendition skipped, listed as EXT-X-GAP (RFC 8216bis §4.4.4.7): a rendition behind the others when a transcoder took over, or parts this origin never received"
    );
    metrics::describe_counter!(
        RENDITIONS_SHED,
        "Renditions the transcoder shed from a ladder (DELETE /push/v1/{event_id}/{rendition})"
    );
    metrics::describe_gauge!(
        ACTIVE_STREAMS,
        "Streams that are live (pushed and not ended)"
    );
}
