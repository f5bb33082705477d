//! The call history against a real database: a SQLite file in a temporary directory, and, when
//! `SWITCHBOARD_TEST_POSTGRES_URL` is set, the same scenarios against PostgreSQL (each in a
//! fresh schema, so runs never see each other's rows).

use std::collections::HashSet;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use sqlx::Connection;
use switchboard_signaling::history::{
    http, CallState, HistoryConfig, HistoryError, HistoryStore, ListQuery, Outcome,
    ParticipantRole, QualitySummary, Recording, RecordingId, RecordingState, Timestamp,
};
use switchboard_signaling::identity::TokenIssuer;
use switchboard_signaling::{CallId, CallKind, User, UserId};
use tempfile::TempDir;
use tower::ServiceExt;

/// One empty database for one scenario.
struct Db {
    url: String,
    _dir: Option<TempDir>,
}

impl Db {
    fn sqlite() -> Db {
        let dir = tempfile::tempdir().expect("temp dir");
        // A subdirectory that does not exist yet: `open` must create it.
        let path = dir.path().join("data").join("history.sqlite");
        Db {
            url: format!("sqlite://{}?mode=rwc", path.display()),
            _dir: Some(dir),
        }
    }

    async fn postgres(base: &str) -> Db {
        sqlx::any::install_default_drivers();
        let schema = format!("history_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::AnyConnection::connect(base)
            .await
            .expect("connect to SWITCHBOARD_TEST_POSTGRES_URL");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .expect("create schema");
        let sep = if base.contains('?') { '&' } else { '?' };
        Db {
            url: format!("{base}{sep}options[search_path]={schema}"),
            _dir: None,
        }
    }

    fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        self._dir
            .as_ref()
            .map(|d| d.path().join("data").join("history.sqlite"))
    }

    async fn open(&self) -> HistoryStore {
        HistoryStore::open(HistoryConfig {
            database_url: self.url.clone(),
        })
        .await
        .expect("open history")
    }
}

fn user(name: &str) -> User {
    User {
        id: UserId::random(),
        name: name.to_owned(),
    }
}

fn ts(millis: i64) -> Timestamp {
    Timestamp::from_millis(millis)
}

const T0: i64 = 1_760_000_000_000;

/// Starts a call from `caller` to `callee` at `at` and returns its id.
async fn start(store: &HistoryStore, caller: &User, callee: &User, at: i64) -> CallId {
    let id = CallId::random();
    store
        .call_started(
            &id,
            CallKind::Video,
            caller,
            std::slice::from_ref(callee),
            ts(at),
        )
        .await
        .expect("call_started");
    id
}

// --- scenarios -----------------------------------------------------------------------------

async fn migrates_fresh_database_and_reopens(db: &Db) {
    if let Some(file) = db.sqlite_file() {
        assert!(!file.exists());
    }
    let store = db.open().await;
    if let Some(file) = db.sqlite_file() {
        assert!(file.exists(), "open creates the SQLite file");
    }
    let (alice, bob) = (user("Alice"), user("Bob"));
    let id = start(&store, &alice, &bob, T0).await;
    store.close().await;
    drop(store);

    // Reopening re-runs the migrator, which must skip what is applied and keep the data.
    let store = db.open().await;
    let again = db.open().await;
    let call = store.get_for_user(&alice.id, &id).await.unwrap().unwrap();
    assert_eq!(call.state, CallState::Ringing);
    assert!(again.get_for_user(&bob.id, &id).await.unwrap().is_some());
}

async fn records_every_outcome(db: &Db) {
    let store = db.open().await;
    let (alice, bob) = (user("Alice"), user("Bob"));
    for (i, outcome) in Outcome::ALL.into_iter().enumerate() {
        let at = T0 + i as i64 * 100_000;
        let id = start(&store, &alice, &bob, at).await;
        let answered = outcome == Outcome::Completed || (outcome == Outcome::Failed && i % 2 == 0);
        if answered {
            store.call_answered(&id, ts(at + 5_000)).await.unwrap();
            store
                .participant_joined(&id, &alice.id, ts(at + 5_100))
                .await
                .unwrap();
            store
                .participant_joined(&id, &bob.id, ts(at + 5_200))
                .await
                .unwrap();
        }
        store
            .call_ended(&id, outcome, ts(at + 65_000))
            .await
            .unwrap();

        let call = store.get_for_user(&bob.id, &id).await.unwrap().unwrap();
        assert_eq!(call.outcome, Some(outcome));
        assert_eq!(call.state, CallState::Ended);
        assert_eq!(call.kind, CallKind::Video);
        assert_eq!(call.created_by, alice.id);
        assert_eq!(call.ringing_at, ts(at));
        assert_eq!(call.ended_at, Some(ts(at + 65_000)));
        assert!(!call.interrupted);
        assert_eq!(call.participants.len(), 2);
        assert_eq!(call.participants[0].user_id, alice.id);
        assert_eq!(call.participants[0].role, ParticipantRole::Caller);
        assert_eq!(call.participants[0].name, "Alice");
        assert_eq!(call.participants[1].role, ParticipantRole::Callee);
        if answered {
            assert_eq!(call.answered_at, Some(ts(at + 5_000)));
            assert_eq!(call.duration_ms, Some(60_000));
            assert_eq!(call.participants[1].joined_at, Some(ts(at + 5_200)));
            // Still in the call when it ended: left at the end.
            assert_eq!(call.participants[1].left_at, Some(ts(at + 65_000)));
        } else {
            assert_eq!(call.answered_at, None);
            assert_eq!(call.duration_ms, None);
            assert_eq!(call.participants[1].joined_at, None);
            assert_eq!(call.participants[1].left_at, None);
        }
    }
}

async fn group_calls_list_everyone_invited(db: &Db) {
    let store = db.open().await;
    let (alice, bob, carol, dave) = (user("Alice"), user("Bob"), user("Carol"), user("Dave"));
    let id = CallId::random();
    store
        .call_started(
            &id,
            CallKind::Voice,
            &alice,
            &[bob.clone(), carol.clone()],
            ts(T0),
        )
        .await
        .unwrap();
    store.call_answered(&id, ts(T0 + 1_000)).await.unwrap();
    // Invited during the call; inviting again (after leaving) keeps the one row.
    store.participant_invited(&id, &dave).await.unwrap();
    store
        .participant_joined(&id, &dave.id, ts(T0 + 2_000))
        .await
        .unwrap();
    store
        .participant_left(&id, &dave.id, ts(T0 + 3_000))
        .await
        .unwrap();
    store.participant_invited(&id, &dave).await.unwrap();
    store
        .call_ended(&id, Outcome::Completed, ts(T0 + 10_000))
        .await
        .unwrap();

    let call = store.get_for_user(&dave.id, &id).await.unwrap().unwrap();
    let names: Vec<_> = call.participants.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Alice", "Bob", "Carol", "Dave"]);
    assert_eq!(call.participants[3].role, ParticipantRole::Callee);
    assert_eq!(call.participants[3].joined_at, Some(ts(T0 + 2_000)));
    assert_eq!(call.participants[3].left_at, Some(ts(T0 + 3_000)));
    // Nobody can be added to an ended or unknown call.
    let late = store.participant_invited(&id, &user("Erin")).await;
    assert!(matches!(late, Err(HistoryError::CallEnded(_))), "{late:?}");
    let unknown = store.participant_invited(&CallId::random(), &bob).await;
    assert!(
        matches!(unknown, Err(HistoryError::UnknownCall(_))),
        "{unknown:?}"
    );
}

async fn refuses_reports_that_do_not_fit(db: &Db) {
    let store = db.open().await;
    let (alice, bob, eve) = (user("Alice"), user("Bob"), user("Eve"));
    let id = start(&store, &alice, &bob, T0).await;

    assert!(matches!(
        store
            .call_started(
                &id,
                CallKind::Voice,
                &alice,
                std::slice::from_ref(&bob),
                ts(T0)
            )
            .await,
        Err(HistoryError::CallExists(_))
    ));
    assert!(matches!(
        store
            .call_started(&CallId::random(), CallKind::Voice, &alice, &[], ts(T0))
            .await,
        Err(HistoryError::InvalidParticipants(_))
    ));
    assert!(matches!(
        store
            .call_started(
                &CallId::random(),
                CallKind::Voice,
                &alice,
                std::slice::from_ref(&alice),
                ts(T0)
            )
            .await,
        Err(HistoryError::InvalidParticipants(_))
    ));
    // Completed needs an answer; missed must not have one.
    assert!(matches!(
        store.call_ended(&id, Outcome::Completed, ts(T0 + 1)).await,
        Err(HistoryError::OutcomeMismatch {
            answered: false,
            ..
        })
    ));
    assert!(matches!(
        store.participant_joined(&id, &eve.id, ts(T0 + 1)).await,
        Err(HistoryError::NotAParticipant { .. })
    ));
    assert!(matches!(
        store.call_answered(&CallId::random(), ts(T0 + 1)).await,
        Err(HistoryError::UnknownCall(_))
    ));
    store.call_answered(&id, ts(T0 + 10)).await.unwrap();
    // A repeated answer keeps the first time.
    store.call_answered(&id, ts(T0 + 20)).await.unwrap();
    assert!(matches!(
        store.call_ended(&id, Outcome::Missed, ts(T0 + 30)).await,
        Err(HistoryError::OutcomeMismatch { answered: true, .. })
    ));
    store
        .call_ended(&id, Outcome::Completed, ts(T0 + 1_010))
        .await
        .unwrap();
    assert!(matches!(
        store
            .call_ended(&id, Outcome::Completed, ts(T0 + 2_000))
            .await,
        Err(HistoryError::CallEnded(_))
    ));
    assert!(matches!(
        store.call_answered(&id, ts(T0 + 2_000)).await,
        Err(HistoryError::CallEnded(_))
    ));
    let call = store.get_for_user(&alice.id, &id).await.unwrap().unwrap();
    assert_eq!(call.answered_at, Some(ts(T0 + 10)));
    assert_eq!(call.duration_ms, Some(1_000));
}

async fn stores_quality_and_recordings(db: &Db) {
    let store = db.open().await;
    let (alice, bob, eve) = (user("Alice"), user("Bob"), user("Eve"));
    let id = start(&store, &alice, &bob, T0).await;
    store.call_answered(&id, ts(T0 + 1_000)).await.unwrap();
    store
        .participant_joined(&id, &bob.id, ts(T0 + 1_000))
        .await
        .unwrap();
    store
        .participant_left(&id, &bob.id, ts(T0 + 9_000))
        .await
        .unwrap();
    store
        .call_ended(&id, Outcome::Completed, ts(T0 + 10_000))
        .await
        .unwrap();

    let quality = QualitySummary {
        loss_avg_pct: Some(0.25),
        loss_worst_pct: Some(4.5),
        jitter_avg_ms: Some(3.5),
        jitter_worst_ms: Some(21.0),
        rtt_avg_ms: Some(48.0),
        rtt_worst_ms: Some(130.0),
        mos: Some(4.1),
    };
    store.record_quality(&id, &bob.id, quality).await.unwrap();
    assert!(matches!(
        store.record_quality(&id, &eve.id, quality).await,
        Err(HistoryError::NotAParticipant { .. })
    ));
    assert!(matches!(
        store
            .record_quality(
                &id,
                &bob.id,
                QualitySummary {
                    mos: Some(9.0),
                    ..quality
                }
            )
            .await,
        Err(HistoryError::InvalidQuality(_))
    ));

    let recording = Recording {
        id: RecordingId::random(),
        call_id: id.clone(),
        participant: bob.id.clone(),
        path: "/var/lib/switchboard/recordings/x.webm".into(),
        bytes: 1_234_567,
        duration_ms: 8_000,
        started_by: alice.id.clone(),
        created_at: ts(T0 + 10_500),
        started_at: ts(T0 + 2_500),
        state: RecordingState::Finished,
        session_id: None,
    };
    store.add_recording(&recording).await.unwrap();
    assert!(matches!(
        store.add_recording(&recording).await,
        Err(HistoryError::RecordingExists(_))
    ));
    assert!(matches!(
        store
            .add_recording(&Recording {
                id: RecordingId::random(),
                participant: eve.id.clone(),
                ..recording.clone()
            })
            .await,
        Err(HistoryError::NotAParticipant { .. })
    ));

    let call = store.get_for_user(&alice.id, &id).await.unwrap().unwrap();
    assert_eq!(call.participants[0].quality, None, "alice has no summary");
    assert_eq!(call.participants[1].quality, Some(quality));
    assert_eq!(call.participants[1].left_at, Some(ts(T0 + 9_000)));
    // Never joined: no join or leave time, even after the call ended.
    assert_eq!(call.participants[0].joined_at, None);
    assert_eq!(call.participants[0].left_at, None);
    // Alice never joined (finding 7): the recording is not hers to see.
    assert_eq!(call.recordings, vec![]);
    let call = store.get_for_user(&bob.id, &id).await.unwrap().unwrap();
    assert_eq!(call.recordings, vec![recording.clone()]);

    // A participant who was in the call while it was recorded may see the recording; nobody
    // else can tell it exists.
    assert_eq!(
        store
            .recording_for_user(&bob.id, &recording.id)
            .await
            .unwrap(),
        Some(recording.clone())
    );
    assert_eq!(
        store
            .recording_for_user(&alice.id, &recording.id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .recording_for_user(&eve.id, &recording.id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .recording_for_user(&alice.id, &RecordingId::random())
            .await
            .unwrap(),
        None
    );
}

async fn pages_newest_first_without_duplicates(db: &Db) {
    let store = db.open().await;
    let (alice, bob, carol) = (user("Alice"), user("Bob"), user("Carol"));
    let mut expected = Vec::new();
    for i in 0..45 {
        // Pairs of calls share a start time so the id tie-break is exercised too.
        let at = T0 + (i / 2) * 1_000;
        let callee = if i % 3 == 0 { &carol } else { &bob };
        expected.push((at, start(&store, &alice, callee, at).await));
    }
    // Bob and Carol's call that Alice is not in must not show up.
    start(&store, &bob, &carol, T0 + 500).await;
    expected.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    let expected: Vec<CallId> = expected.into_iter().map(|(_, id)| id).collect();

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut query = ListQuery::default();
    loop {
        let page = store.list_for_user(&alice.id, &query).await.unwrap();
        sizes.push(page.calls.len());
        seen.extend(page.calls.iter().map(|c| c.id.clone()));
        assert!(page.calls.iter().all(|c| c.participants.len() == 2));
        match page.next_cursor {
            // The cursor is an opaque string on the wire: round-trip it like a client would.
            Some(cursor) => query.before = Some(cursor.to_string().parse().unwrap()),
            None => break,
        }
    }
    assert_eq!(sizes, vec![20, 20, 5]);
    assert_eq!(seen, expected, "newest first, every call exactly once");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 45);

    // A limit that divides evenly ends without an empty extra page.
    let page = store
        .list_for_user(
            &alice.id,
            &ListQuery {
                limit: 45,
                ..ListQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.calls.len(), 45);
    assert_eq!(page.next_cursor, None);

    for limit in [0, 101] {
        assert!(matches!(
            store
                .list_for_user(
                    &alice.id,
                    &ListQuery {
                        limit,
                        ..ListQuery::default()
                    }
                )
                .await,
            Err(HistoryError::InvalidLimit(_))
        ));
    }
}

async fn filters_by_outcome(db: &Db) {
    let store = db.open().await;
    let (alice, bob) = (user("Alice"), user("Bob"));
    let mut missed = Vec::new();
    for i in 0..12 {
        let at = T0 + i * 1_000;
        let id = start(&store, &alice, &bob, at).await;
        if i % 3 == 0 {
            store
                .call_ended(&id, Outcome::Missed, ts(at + 30_000))
                .await
                .unwrap();
            missed.push(id);
        } else if i % 3 == 1 {
            store
                .call_ended(&id, Outcome::Rejected, ts(at + 2_000))
                .await
                .unwrap();
        }
        // i % 3 == 2: still ringing, no outcome.
    }
    missed.reverse();
    let query = ListQuery {
        limit: 3,
        outcome: Some(Outcome::Missed),
        ..ListQuery::default()
    };
    let first = store.list_for_user(&bob.id, &query).await.unwrap();
    let second = store
        .list_for_user(
            &bob.id,
            &ListQuery {
                before: first.next_cursor.clone(),
                ..query.clone()
            },
        )
        .await
        .unwrap();
    let got: Vec<CallId> = first
        .calls
        .iter()
        .chain(&second.calls)
        .map(|c| c.id.clone())
        .collect();
    assert_eq!(got, missed);
    assert_eq!(second.next_cursor, None);
    let completed = ListQuery {
        outcome: Some(Outcome::Completed),
        ..ListQuery::default()
    };
    assert!(store
        .list_for_user(&bob.id, &completed)
        .await
        .unwrap()
        .calls
        .is_empty());
}

async fn users_only_see_their_own_calls(db: &Db) {
    let store = db.open().await;
    let (alice, bob, eve) = (user("Alice"), user("Bob"), user("Eve"));
    let private = start(&store, &alice, &bob, T0).await;
    let own = start(&store, &eve, &bob, T0 + 1_000).await;

    let page = store
        .list_for_user(&eve.id, &ListQuery::default())
        .await
        .unwrap();
    assert_eq!(page.calls.iter().map(|c| &c.id).collect::<Vec<_>>(), [&own]);
    assert_eq!(store.get_for_user(&eve.id, &private).await.unwrap(), None);
    assert!(store
        .get_for_user(&alice.id, &private)
        .await
        .unwrap()
        .is_some());
    assert!(store
        .get_for_user(&bob.id, &private)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        store
            .list_for_user(&bob.id, &ListQuery::default())
            .await
            .unwrap()
            .calls
            .len(),
        2
    );
}

async fn closes_interrupted_calls_after_restart(db: &Db) {
    let (alice, bob, carol) = (user("Alice"), user("Bob"), user("Carol"));
    let (ringing, active, ended);
    {
        let store = db.open().await;
        ringing = start(&store, &alice, &bob, T0).await;
        active = start(&store, &carol, &bob, T0 + 1_000).await;
        store.call_answered(&active, ts(T0 + 3_000)).await.unwrap();
        store
            .participant_joined(&active, &carol.id, ts(T0 + 3_000))
            .await
            .unwrap();
        ended = start(&store, &alice, &carol, T0 + 2_000).await;
        store
            .call_ended(&ended, Outcome::Cancelled, ts(T0 + 4_000))
            .await
            .unwrap();
        // The server stops without ending anything.
        drop(store);
    }

    let store = db.open().await;
    let restart = ts(T0 + 60_000);
    assert_eq!(store.close_interrupted(restart).await.unwrap(), 2);
    // Idempotent: nothing is left to close.
    assert_eq!(store.close_interrupted(restart).await.unwrap(), 0);

    let call = store
        .get_for_user(&alice.id, &ringing)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(call.outcome, Some(Outcome::Failed));
    assert_eq!(call.ended_at, Some(restart));
    assert_eq!(call.duration_ms, None);
    assert!(call.interrupted);

    let call = store.get_for_user(&bob.id, &active).await.unwrap().unwrap();
    assert_eq!(call.outcome, Some(Outcome::Completed));
    assert_eq!(call.ended_at, Some(restart));
    assert_eq!(call.duration_ms, Some(57_000));
    assert!(call.interrupted);
    assert_eq!(call.participants[0].left_at, Some(restart));

    let call = store
        .get_for_user(&carol.id, &ended)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(call.outcome, Some(Outcome::Cancelled));
    assert_eq!(call.ended_at, Some(ts(T0 + 4_000)));
    assert!(!call.interrupted);
}

/// Signaling reports from many tasks at once; SQLite serializes writers, and every report must
/// still land (waiting for the write lock, never failing with "database is locked").
async fn concurrent_reports_all_land(db: &Db) {
    let store = db.open().await;
    let bob = user("Bob");
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let (store, bob) = (store.clone(), bob.clone());
            tokio::spawn(async move {
                let caller = user("Caller");
                let at = T0 + i * 10;
                let id = start(&store, &caller, &bob, at).await;
                store.call_answered(&id, ts(at + 1)).await.unwrap();
                store
                    .participant_joined(&id, &bob.id, ts(at + 2))
                    .await
                    .unwrap();
                store
                    .call_ended(&id, Outcome::Completed, ts(at + 5))
                    .await
                    .unwrap();
                store
                    .record_quality(&id, &bob.id, QualitySummary::default())
                    .await
                    .unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("report task");
    }
    let page = store
        .list_for_user(
            &bob.id,
            &ListQuery {
                limit: 100,
                ..ListQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.calls.len(), 24);
    assert!(page
        .calls
        .iter()
        .all(|c| c.outcome == Some(Outcome::Completed) && c.duration_ms == Some(4)));
}

// --- HTTP ----------------------------------------------------------------------------------

async fn get(app: &Router, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::get(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, json)
}

async fn http_serves_only_the_callers_own_calls(db: &Db) {
    let store = db.open().await;
    let issuer = TokenIssuer::new(b"history-test-secret-0123456789", Duration::from_secs(600));
    let (alice_token, alice) = issuer.issue("Alice").unwrap();
    let (eve_token, eve) = issuer.issue("Eve").unwrap();
    let bob = user("Bob");
    let verifier = issuer.clone();
    let app: Router = http::router(store.clone(), move |token| verifier.verify(token));

    let mut ids = Vec::new();
    for i in 0..3 {
        let id = start(&store, &alice, &bob, T0 + i * 1_000).await;
        store
            .call_ended(&id, Outcome::Missed, ts(T0 + i * 1_000 + 30_000))
            .await
            .unwrap();
        ids.push(id);
    }
    let eves = start(&store, &eve, &bob, T0 + 10_000).await;

    // Signed in: own calls, newest first, paged with the returned cursor.
    let (status, body) = get(&app, "/api/calls?limit=2", Some(&alice_token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed: Vec<&str> = body["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str()]);
    assert_eq!(body["calls"][0]["outcome"], "missed");
    assert_eq!(body["calls"][0]["participants"][1]["name"], "Bob");
    let cursor = body["next_cursor"].as_str().unwrap().to_owned();
    let uri = format!("/api/calls?limit=2&before={cursor}&outcome=missed");
    let (status, body) = get(&app, &uri, Some(&alice_token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["calls"][0]["id"], ids[0].as_str());
    assert_eq!(body["next_cursor"], Value::Null);

    // Detail of her own call; someone else's is exactly like a missing one.
    let (status, body) = get(&app, &format!("/api/calls/{}", ids[0]), Some(&alice_token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["state"], "ended");
    let (status, body) = get(&app, &format!("/api/calls/{eves}"), Some(&alice_token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "unknown_call");
    let (missing_status, missing) = get(&app, "/api/calls/no-such-call", Some(&alice_token)).await;
    assert_eq!((missing_status, &missing), (status, &body));

    // Eve's list holds only her call.
    let (status, body) = get(&app, "/api/calls", Some(&eve_token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["calls"].as_array().unwrap().len(), 1);
    assert_eq!(body["calls"][0]["id"], eves.as_str());
    let (status, _) = get(&app, &format!("/api/calls/{}", ids[0]), Some(&eve_token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // No, bad or expired token: 401 before anything else is looked at.
    let expired = issuer.issue_expired_for_tests("Alice");
    for (token, code) in [
        (None, "missing_token"),
        (Some("not-a-jwt"), "invalid_token"),
        (Some(expired.as_str()), "expired_token"),
    ] {
        for uri in ["/api/calls?limit=0", &format!("/api/calls/{}", ids[0])] {
            let (status, body) = get(&app, uri, token).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri} {token:?}");
            assert_eq!(body["error"]["code"], code);
            assert!(body["error"]["message"].is_string());
        }
    }
    let basic = app
        .clone()
        .oneshot(
            Request::get("/api/calls")
                .header(header::AUTHORIZATION, format!("Basic {alice_token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
    assert!(basic.headers().contains_key(header::WWW_AUTHENTICATE));

    // Bad parameters: 400 with a reason.
    for uri in [
        "/api/calls?limit=0",
        "/api/calls?limit=101",
        "/api/calls?limit=ten",
        "/api/calls?outcome=lost",
        "/api/calls?before=garbage",
    ] {
        let (status, body) = get(&app, uri, Some(&alice_token)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(body["error"]["code"], "invalid_query", "{uri}");
    }
}

/// `sqlite::memory:` (handy for demos) is one connection kept forever: every other connection
/// would be a different, empty database.
#[tokio::test]
async fn history_in_memory_sqlite_keeps_its_data() {
    let store = HistoryStore::open(HistoryConfig {
        database_url: "sqlite::memory:".into(),
    })
    .await
    .unwrap();
    let (alice, bob) = (user("Alice"), user("Bob"));
    let id = start(&store, &alice, &bob, T0).await;
    store
        .call_ended(&id, Outcome::Cancelled, ts(T0 + 1))
        .await
        .unwrap();
    let call = store.get_for_user(&bob.id, &id).await.unwrap().unwrap();
    assert_eq!(call.outcome, Some(Outcome::Cancelled));
}

#[tokio::test]
async fn history_refuses_unknown_database_urls() {
    let result = HistoryStore::open(HistoryConfig {
        database_url: "mysql://localhost/switchboard".into(),
    })
    .await;
    assert!(matches!(result, Err(HistoryError::InvalidConfig(_))));
}

// --- runners -------------------------------------------------------------------------------

macro_rules! suite {
    ($($scenario:ident),* $(,)?) => {
        /// Every scenario on its own SQLite file.
        mod history_sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(&super::Db::sqlite()).await;
                }
            )*
        }

        /// Every scenario on PostgreSQL, one after another, each in a fresh schema. Skipped
        /// unless `SWITCHBOARD_TEST_POSTGRES_URL` names a database the tests may create
        /// schemas in.
        #[tokio::test]
        async fn history_postgres_suite() {
            let Ok(base) = std::env::var("SWITCHBOARD_TEST_POSTGRES_URL") else {
                eprintln!("SWITCHBOARD_TEST_POSTGRES_URL is not set: skipping PostgreSQL");
                return;
            };
            $(
                eprintln!("postgres: {}", stringify!($scenario));
                $scenario(&Db::postgres(&base).await).await;
            )*
        }
    };
}

suite!(
    migrates_fresh_database_and_reopens,
    records_every_outcome,
    group_calls_list_everyone_invited,
    refuses_reports_that_do_not_fit,
    stores_quality_and_recordings,
    pages_newest_first_without_duplicates,
    filters_by_outcome,
    users_only_see_their_own_calls,
    closes_interrupted_calls_after_restart,
    concurrent_reports_all_land,
    http_serves_only_the_callers_own_calls,
);
