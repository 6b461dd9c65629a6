//! The events' metrics: their names, and their help texts for whatever recorder the
//! binary installed.

pub(super) const EVENTS_CREATED: &str = "floodlight_control_events_created_total";
pub(super) const STREAM_KEY_CHECKS: &str = "floodlight_control_stream_key_checks_total";
pub(super) const TRANSITIONS: &str = "floodlight_control_event_transitions_total";
pub(super) const PUBLISH_CHECKS: &str = "floodlight_control_publish_checks_total";

/// Registers the help texts.
pub(crate) fn describe_metrics() {
    metrics::describe_counter!(EVENTS_CREATED, "Events created through the API");
    metrics::describe_counter!(
        STREAM_KEY_CHECKS,
        "Stream key checks by outcome (accepted, refused); a run of refusals is someone guessing"
    );
    metrics::describe_counter!(
        TRANSITIONS,
        "Event state transitions by target state and cause"
    );
    metrics::describe_counter!(
        PUBLISH_CHECKS,
        "Publish checks by outcome (granted, unknown_key, forbidden, rate_limited, unavailable)"
    );
}
