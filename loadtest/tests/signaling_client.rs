//! The hand-written Socket.IO client against the real server: the refusal paths a load tester
//! must report precisely (bad token → `connect_error`, refused event → ack error + `error`
//! event), and a clean call lifecycle without media (ring, reject).

mod support;

use std::time::Duration;

use anyhow::{bail, Context, Result};
use loadtest::{
    sign_in, CallKind, EndReason, ServerEvent, SignalingClient, SignalingConfig, SignalingError,
    SignalingEvents,
};
use support::TestServer;

async fn next_matching<T>(
    events: &mut SignalingEvents,
    what: &str,
    mut pick: impl FnMut(&ServerEvent) -> Option<T>,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) => {
                if let Some(found) = pick(&event) {
                    return Ok(found);
                }
                seen.push(event);
            }
            Ok(None) => bail!("stream ended waiting for {what}; saw {seen:#?}"),
            Err(_) => bail!("no {what} within 10 s; saw {seen:#?}"),
        }
    }
}

#[tokio::test]
async fn refusals_are_reported_precisely() -> Result<()> {
    let server = TestServer::start(switchboard::ServerConfig::for_tests()).await?;
    let http = reqwest::Client::new();

    match SignalingClient::connect(&server.base_url, "not-a-jwt", SignalingConfig::default()).await
    {
        Err(SignalingError::ConnectRefused(message)) => assert_eq!(message, "invalid_token"),
        other => bail!("bad token: expected connect_error invalid_token, got {other:?}"),
    }

    match sign_in(&http, &server.base_url, "   ").await {
        Err(SignalingError::SignInRefused { status: 400, body }) => {
            assert!(body.contains("invalid_name"), "body: {body}")
        }
        other => bail!("blank name: expected 400 invalid_name, got {other:?}"),
    }

    let me = sign_in(&http, &server.base_url, "Solo").await?;
    let (client, mut events) =
        SignalingClient::connect(&server.base_url, &me.token, SignalingConfig::default()).await?;
    next_matching(&mut events, "presence with me", |e| match e {
        ServerEvent::Presence { users } if users.iter().any(|u| u.id == me.user.id) => Some(()),
        _ => None,
    })
    .await?;

    match client.initiate_call(&me.user.id, CallKind::Voice).await {
        Err(SignalingError::Refused { code, event, .. }) => {
            assert_eq!((event, code.as_str()), ("initiate_call", "self_call"))
        }
        other => bail!("self call: expected refusal self_call, got {other:?}"),
    }
    let error = next_matching(&mut events, "error event", |e| match e {
        ServerEvent::Error(e) => Some(e.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(error.code, "self_call");
    assert_eq!(error.event.as_deref(), Some("initiate_call"));

    client.close();
    next_matching(&mut events, "disconnected", |e| match e {
        ServerEvent::Disconnected { .. } => Some(()),
        _ => None,
    })
    .await?;
    assert!(matches!(
        client.accept_call(&loadtest::CallId("x".into())).await,
        Err(SignalingError::Closed)
    ));
    server.stop().await
}

#[tokio::test]
async fn rejected_call_ends_for_both() -> Result<()> {
    let server = TestServer::start(switchboard::ServerConfig::for_tests()).await?;
    let http = reqwest::Client::new();
    let a = sign_in(&http, &server.base_url, "Caller").await?;
    let b = sign_in(&http, &server.base_url, "Callee").await?;
    let (a_client, mut a_events) =
        SignalingClient::connect(&server.base_url, &a.token, SignalingConfig::default()).await?;
    let (b_client, mut b_events) =
        SignalingClient::connect(&server.base_url, &b.token, SignalingConfig::default()).await?;

    let call_id = a_client.initiate_call(&b.user.id, CallKind::Voice).await?;
    next_matching(&mut a_events, "call_ringing", |e| match e {
        ServerEvent::CallRinging {
            call_id: id, to, ..
        } if *id == call_id && to.id == b.user.id => Some(()),
        _ => None,
    })
    .await?;
    next_matching(&mut b_events, "incoming_call", |e| match e {
        ServerEvent::IncomingCall {
            call_id: id,
            from,
            kind: CallKind::Voice,
            ..
        } if *id == call_id && from.id == a.user.id => Some(()),
        _ => None,
    })
    .await?;

    b_client.reject_call(&call_id).await?;
    next_matching(&mut a_events, "call_rejected", |e| match e {
        ServerEvent::CallRejected { call_id: id, by } if *id == call_id && by.id == b.user.id => {
            Some(())
        }
        _ => None,
    })
    .await?;
    for (who, events) in [("caller", &mut a_events), ("callee", &mut b_events)] {
        let reason = next_matching(events, "call_ended", |e| match e {
            ServerEvent::CallEnded {
                call_id: id,
                reason,
                ..
            } if *id == call_id => Some(*reason),
            _ => None,
        })
        .await
        .with_context(|| format!("{who} waits for call_ended"))?;
        assert_eq!(reason, EndReason::Rejected, "{who}");
    }

    a_client.close();
    b_client.close();
    server.stop().await
}
