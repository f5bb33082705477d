//! Prometheus metrics of the signaling layer, in the process's default registry (the same
//! registry the server's `/metrics` endpoint encodes).
//!
//! Only bounded label values: event names come from the fixed list of handlers (unknown
//! events are counted as `unknown`), results are stable error codes or `ok`, end reasons are
//! the protocol's fixed list. Never a user or call id.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    register_histogram_with_registry, register_int_counter_vec_with_registry,
    register_int_counter_with_registry, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts,
};

pub(crate) struct SignalingMetrics {
    events: IntCounterVec,
    calls_ended: IntCounterVec,
    call_setup_seconds: Histogram,
    call_duration_seconds: Histogram,
    hub_lock_hold_seconds: Histogram,
    sockets_evicted: IntCounter,
}

static METRICS: LazyLock<SignalingMetrics> = LazyLock::new(|| {
    let registry = prometheus::default_registry();
    SignalingMetrics {
        events: register_int_counter_vec_with_registry!(
            Opts::new(
                "switchboard_signaling_events_total",
                "Socket.IO events handled, by event name and result (ok or the error code)."
            ),
            &["event", "result"],
            registry
        )
        .expect("metric names are unique"),
        calls_ended: register_int_counter_vec_with_registry!(
            Opts::new(
                "switchboard_signaling_calls_ended_total",
                "Calls ended, by reason."
            ),
            &["reason"],
            registry
        )
        .expect("metric names are unique"),
        call_setup_seconds: register_histogram_with_registry!(
            HistogramOpts::new(
                "switchboard_signaling_call_setup_seconds",
                "From initiate_call to the first media forwarded in the call (ringing included)."
            )
            .buckets(vec![0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 30.0, 60.0]),
            registry
        )
        .expect("metric names are unique"),
        call_duration_seconds: register_histogram_with_registry!(
            HistogramOpts::new(
                "switchboard_signaling_call_duration_seconds",
                "From accept to end, for answered calls."
            )
            .buckets(vec![
                5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0
            ]),
            registry
        )
        .expect("metric names are unique"),
        hub_lock_hold_seconds: register_histogram_with_registry!(
            HistogramOpts::new(
                "switchboard_signaling_hub_lock_hold_seconds",
                "How long each acquisition of the signaling hub's lock was held."
            )
            .buckets(vec![
                1e-6, 4e-6, 16e-6, 64e-6, 256e-6, 1e-3, 4e-3, 16e-3, 64e-3, 0.25, 1.0
            ]),
            registry
        )
        .expect("metric names are unique"),
        sockets_evicted: register_int_counter_with_registry!(
            Opts::new(
                "switchboard_signaling_sockets_evicted_total",
                "Sockets disconnected because their send queue was full when an event was due."
            ),
            registry
        )
        .expect("metric names are unique"),
    }
});

/// Every client event `namespace.rs` handles (their `ok` series are pre-created).
const EVENTS: [&str; 12] = [
    "initiate_call",
    "accept_call",
    "reject_call",
    "end_call",
    "leave_call",
    "invite_participant",
    "webrtc_offer",
    "webrtc_answer",
    "webrtc_ice_candidate",
    "media_state",
    "start_recording",
    "stop_recording",
];

/// Makes the metrics exist (with zero values) before the first event, so a scrape right
/// after start already lists them.
pub fn init() {
    LazyLock::force(&METRICS);
    for reason in crate::EndReason::ALL {
        METRICS.calls_ended.with_label_values(&[reason.as_str()]);
    }
    // A fresh server's dashboard shows 0 events instead of "No data" (ops review D13).
    for event in EVENTS {
        METRICS.events.with_label_values(&[event, "ok"]);
    }
}

/// One handled client event: `error_code` is `None` on success.
pub(crate) fn event_handled(event: &str, error_code: Option<&str>) {
    METRICS
        .events
        .with_label_values(&[event, error_code.unwrap_or("ok")])
        .inc();
}

pub(crate) fn call_ended(reason: &str, answered_for: Option<Duration>) {
    METRICS.calls_ended.with_label_values(&[reason]).inc();
    if let Some(duration) = answered_for {
        METRICS
            .call_duration_seconds
            .observe(duration.as_secs_f64());
    }
}

pub(crate) fn call_media_started(since_initiate: Duration) {
    METRICS
        .call_setup_seconds
        .observe(since_initiate.as_secs_f64());
}

/// One release of the hub's lock, held for `held`.
pub(crate) fn hub_lock_held(held: Duration) {
    METRICS.hub_lock_hold_seconds.observe(held.as_secs_f64());
}

pub(crate) fn socket_evicted() {
    METRICS.sockets_evicted.inc();
}
