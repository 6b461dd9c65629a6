//! The archive writer's Prometheus metrics: names in one place, described once.

pub(crate) const QUEUE_SEGMENTS: &str = "floodlight_archive_queue_segments";
pub(crate) const OBJECTS_WRITTEN: &str = "floodlight_archive_objects_written_total";
pub(crate) const BYTES_WRITTEN: &str = "floodlight_archive_bytes_written_total";
pub(crate) const PUT_FAILURES: &str = "floodlight_archive_put_failures_total";
pub(crate) const SEGMENTS_FAILED: &str = "floodlight_archive_segments_failed_total";
pub(crate) const SEGMENTS_DROPPED: &str = "floodlight_archive_segments_dropped_total";
pub(crate) const LAG: &str = "floodlight_archive_lag_seconds";
pub(crate) const DIVERGENT_OBJECTS: &str = "floodlight_archive_divergent_objects_total";
pub(crate) const INDEX_CONFLICTS: &str = "floodlight_archive_index_conflicts_total";
pub(crate) const INDEX_REPAIRED: &str = "floodlight_archive_index_objects_repaired_total";
pub(crate) const RETENTION_OBJECTS_DELETED: &str =
    "floodlight_archive_retention_objects_deleted_total";
pub(crate) const RETENTION_BYTES_DELETED: &str = "floodlight_archive_retention_bytes_deleted_total";

/// Registers help texts with whatever recorder the binary installed.
pub(crate) fn describe() {
    metrics::describe_counter!(
        RETENTION_OBJECTS_DELETED,
        "Archive objects retention deleted (events past archive.retention.after_secs)"
    );
    metrics::describe_counter!(
        RETENTION_BYTES_DELETED,
        metrics::Unit::Bytes,
        "Bytes of archive objects retention deleted"
    );
    metrics::describe_gauge!(
        QUEUE_SEGMENTS,
        "Segments accepted by the archive writer and not yet written (the bounded queue's depth)"
    );
    metrics::describe_counter!(
        OBJECTS_WRITTEN,
        "Objects the archive writer stored, by kind (segment, init, index)"
    );
    metrics::describe_counter!(
        BYTES_WRITTEN,
        metrics::Unit::Bytes,
        "Bytes the archive writer stored, by kind (segment, init, index)"
    );
    metrics::describe_counter!(
        PUT_FAILURES,
        "Object store requests of the archive writer that failed (each attempt; retried with backoff)"
    );
    metrics::describe_counter!(
        SEGMENTS_FAILED,
        "Segments whose every attempt failed: indexed as gaps, listed in the archive status"
    );
    metrics::describe_counter!(
        SEGMENTS_DROPPED,
        "Segments dropped because the archive queue was full (the store too slow or down): indexed as gaps"
    );
    metrics::describe_histogram!(
        LAG,
        metrics::Unit::Seconds,
        "From a segment's completion (try_archive) to its object and index record being written"
    );
    metrics::describe_counter!(
        DIVERGENT_OBJECTS,
        "Segments or init versions already stored with another size (another writer's bytes kept): a numbering restart or replicas that disagree"
    );
    metrics::describe_counter!(
        INDEX_CONFLICTS,
        "Index records that differ from the stored record for the same MSN (the stored one kept)"
    );
    metrics::describe_counter!(
        INDEX_REPAIRED,
        "Stored index objects that did not decode and were replaced by the writer's copy"
    );
}
