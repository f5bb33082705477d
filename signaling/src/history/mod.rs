//! # Call history: every call, its participants, quality and recordings, kept in SQL
//!
//! Owns the durable record of calls. The live call state machine ([`crate::call`]) stays in
//! memory; it reports each transition here (`call_started` → `call_answered` →
//! `participant_joined`/`participant_left` → `call_ended`), and the HTTP API ([`http`]) lets a
//! signed-in user read back their own calls.
//!
//! ## Storage
//! An embedded SQLite file by default ([`HistoryConfig::default`]), or PostgreSQL when the
//! database URL says `postgres://`. Both go through sqlx's `Any` driver so that **one** set of
//! migrations (`signaling/migrations/`, embedded in the binary with `sqlx::migrate!`) and one
//! set of queries serve both. The price is portable SQL only: TEXT ids, BIGINT timestamps in
//! milliseconds since the Unix epoch ([`Timestamp`]), DOUBLE PRECISION measurements, `$n`
//! placeholders (SQLite accepts them too), no BOOLEAN.
//!
//! ## Concurrency
//! [`HistoryStore`] is a cheap-to-clone handle on a connection pool; every method is one
//! statement or one short transaction, and no lock of ours is held across an `.await`.
//! Transactions always **write first**: on SQLite a transaction that reads and then writes can
//! fail with "database is locked" when another connection got there in between, whereas one
//! that writes first simply waits for the write lock (sqlx's 5 s busy timeout).
//!
//! ## Invariants
//! - A call has an outcome exactly when it has ended (a CHECK constraint enforces it).
//! - `duration_ms` is `ended_at - answered_at` (never negative) and NULL for unanswered calls.
//! - Reads are always scoped to a user: a call, or a recording, that the user did not take part
//!   in is indistinguishable from one that does not exist.
//! - One server process per database: [`HistoryStore::close_interrupted`] closes *every* call
//!   that is not ended, so it must run once at start, before calls are accepted.

pub mod http;
mod recordings;
mod rows;
mod store;
mod types;

pub use recordings::{maintain_recordings, ReconcileReport};
pub use store::HistoryStore;
pub use types::{
    CallRecord, CallState, Cursor, CursorError, HistoryConfig, HistoryError, ListQuery,
    NewRecording, Outcome, Page, ParticipantRecord, ParticipantRole, QualitySummary, Recording,
    RecordingId, RecordingState, Timestamp,
};
