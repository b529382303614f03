//! A journey service stopped in the middle of a touchpoint stream loses no
//! acknowledged touchpoint: the client resends what was not acknowledged
//! (and, to be safe, the last acknowledged message) to the restarted
//! service, and every touchpoint is stored exactly once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use cairn_contract::common::v1::{Channel, IdentifierType};
use cairn_contract::journey::v1::{StreamTouchpointsRequest, TouchpointOutcome, TouchpointType};
use cairn_tests::{Options, identifier, spawn_app_with, spawn_on, touchpoint};
use sea_orm::{ConnectionTrait, Statement};

/// Messages in the stream, and touchpoints per message.
const MESSAGES: usize = 10;
const PER_MESSAGE: usize = 20;

fn message(number: usize) -> StreamTouchpointsRequest {
    StreamTouchpointsRequest {
        touchpoints: (0..PER_MESSAGE)
            .map(|n| {
                touchpoint(
                    &format!("restart-{number}-{n}"),
                    identifier(
                        IdentifierType::CookieId,
                        &format!("restart-visitor-{}", n % 4),
                    ),
                    Channel::Web,
                    TouchpointType::PageView,
                    1,
                    &[],
                )
            })
            .collect(),
    }
}

#[tokio::test]
async fn a_restart_in_the_middle_of_a_stream_loses_no_acknowledged_touchpoint() {
    let quick_stop = |settings: &mut cairn_runtime::Settings| settings.shutdown_grace_ms = 200;
    let mut first = spawn_app_with(Options {
        adjust: Box::new(quick_stop),
        ..Default::default()
    })
    .await;
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let mut acks = first
        .journey()
        .await
        .stream_touchpoints(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    let mut acknowledged = BTreeSet::new();
    for number in 0..MESSAGES / 2 {
        sender.send(message(number)).await.unwrap();
        let ack = acks.message().await.unwrap().expect("an acknowledgement");
        for result in ack.results {
            assert_eq!(result.outcome, TouchpointOutcome::Stored as i32);
            acknowledged.insert(result.touchpoint_id);
        }
    }
    // One more message is in flight when the service goes away.
    sender.send(message(MESSAGES / 2)).await.unwrap();
    first.stop_services().await;
    while let Ok(Ok(Some(ack))) =
        tokio::time::timeout(Duration::from_millis(200), acks.message()).await
    {
        // A touchpoint refused while the services stop (UNAVAILABLE) was
        // not acknowledged: the client sends it again.
        acknowledged.extend(
            ack.results
                .into_iter()
                .filter(|r| r.outcome != TouchpointOutcome::Refused as i32)
                .map(|r| r.touchpoint_id),
        );
    }
    let acknowledged_messages = acknowledged.len() / PER_MESSAGE;
    assert!(acknowledged_messages >= MESSAGES / 2);

    // The client resends from its last acknowledged message on.
    let second = spawn_on(
        Arc::clone(&first.database),
        first.redis_prefix.clone(),
        Options::default(),
    )
    .await;
    let resend: Vec<_> = (acknowledged_messages - 1..MESSAGES).map(message).collect();
    let mut acks = second
        .journey()
        .await
        .stream_touchpoints(tokio_stream::iter(resend))
        .await
        .unwrap()
        .into_inner();
    let mut duplicates = 0;
    while let Some(ack) = acks.message().await.unwrap() {
        for result in ack.results {
            assert_ne!(
                result.outcome,
                TouchpointOutcome::Refused as i32,
                "{result:?}"
            );
            if result.outcome == TouchpointOutcome::Duplicate as i32 {
                duplicates += 1;
            }
        }
    }
    assert!(
        duplicates >= PER_MESSAGE,
        "the resent acknowledged message counted once"
    );

    let db = second.database.connect().await;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS stored, COUNT(DISTINCT id) AS distinct_ids \
             FROM journey_touchpoints WHERE id LIKE 'restart-%'",
        ))
        .await
        .unwrap()
        .unwrap();
    let stored: i64 = row.try_get("", "stored").unwrap();
    let distinct: i64 = row.try_get("", "distinct_ids").unwrap();
    assert_eq!(
        stored,
        (MESSAGES * PER_MESSAGE) as i64,
        "every touchpoint once"
    );
    assert_eq!(distinct, stored);
    for id in &acknowledged {
        let found = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT 1 AS found FROM journey_touchpoints WHERE id = '{id}'"),
            ))
            .await
            .unwrap();
        assert!(found.is_some(), "acknowledged {id} was lost");
    }
    second.stop().await;
}
