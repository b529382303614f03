//! A journey service stopped in the middle of a touchpoint stream loses no
//! acknowledged touchpoint: the client resends what was not acknowledged
//! (and, to be safe, the last acknowledged message) to the restarted
//! service, and every touchpoint is stored exactly once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use cairn_contract::common::v1::{Channel, IdentifierType};
use cairn_contract::journey::v1::{StreamTouchpointsRequest, TouchpointOutcome, TouchpointType};
use cairn_tests::process::ServiceProcess;
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
        // Only what was stored counts; a touchpoint refused while the
        // service went down is simply sent again.
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
        "the resent acknowledged message counted once: {duplicates} duplicates, {acknowledged_messages} messages acknowledged"
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

/// Touchpoints of the killed stream, and touchpoints per message.
const KILLED_EVENTS: usize = 50_000;
const KILLED_PER_MESSAGE: usize = 100;

fn killed_message(number: usize) -> StreamTouchpointsRequest {
    StreamTouchpointsRequest {
        touchpoints: (0..KILLED_PER_MESSAGE)
            .map(|n| {
                touchpoint(
                    &format!("killed-{number}-{n}"),
                    identifier(
                        IdentifierType::CookieId,
                        &format!("killed-visitor-{}", (number * KILLED_PER_MESSAGE + n) % 50),
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

/// The message number of a touchpoint id `killed-<message>-<n>`.
fn message_of(touchpoint_id: &str) -> usize {
    touchpoint_id
        .split('-')
        .nth(1)
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("unexpected touchpoint id {touchpoint_id}"))
}

/// Streams `messages` to the journey service at `address` and returns the
/// messages acknowledged and the duplicates reported. With `kill`, kills that
/// process with SIGKILL once that many messages are acknowledged (with more
/// in flight), and returns what was acknowledged before the stream broke.
async fn stream_until(
    address: std::net::SocketAddr,
    token: &str,
    messages: Vec<usize>,
    mut kill: Option<(usize, ServiceProcess)>,
) -> (BTreeSet<usize>, usize) {
    use cairn_contract::journey::v1::journey_service_client::JourneyServiceClient;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    let mut client =
        JourneyServiceClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
            Ok(request)
        });
    // The client hands messages over as fast as the stream takes them.
    let outgoing = tokio_stream::iter(messages.into_iter().map(killed_message));
    let mut acks = client
        .stream_touchpoints(outgoing)
        .await
        .unwrap()
        .into_inner();
    let mut acknowledged = BTreeSet::new();
    let mut duplicates = 0;
    let mut killed = false;
    loop {
        let ack = match acks.message().await {
            Ok(Some(ack)) => ack,
            Ok(None) => break,
            // The server went away: what was not acknowledged is resent.
            Err(_) if killed => break,
            Err(status) => panic!("the stream failed: {status:?}"),
        };
        let number = message_of(&ack.results[0].touchpoint_id);
        assert_eq!(ack.results.len(), KILLED_PER_MESSAGE);
        for result in &ack.results {
            assert_eq!(message_of(&result.touchpoint_id), number);
            match TouchpointOutcome::try_from(result.outcome) {
                Ok(TouchpointOutcome::Stored) => {}
                Ok(TouchpointOutcome::Duplicate) => duplicates += 1,
                other => panic!(
                    "{} was not stored: {other:?} {result:?}",
                    result.touchpoint_id
                ),
            }
        }
        acknowledged.insert(number);
        if kill
            .as_ref()
            .is_some_and(|(after, _)| acknowledged.len() >= *after)
            && let Some((_, process)) = kill.take()
        {
            process.kill().await;
            killed = true;
        }
    }
    assert!(kill.is_none(), "the stream ended before the kill");
    (acknowledged, duplicates)
}

#[tokio::test]
async fn a_journey_service_killed_in_the_middle_of_a_large_stream_loses_and_doubles_nothing() {
    let messages = KILLED_EVENTS / KILLED_PER_MESSAGE;
    // The profile service in this process; the journey service in its own.
    let profile = spawn_app_with(Options {
        services: vec![cairn_runtime::ServiceKind::Profile],
        ..Default::default()
    })
    .await;
    let environment = vec![
        ("DATABASE_URL", profile.database.url.clone()),
        ("REDIS_URL", cairn_tests::redis_url()),
        ("CAIRN_REDIS_PREFIX", profile.redis_prefix.clone()),
        ("CAIRN_AUTH_HS256_KEY", cairn_tests::TEST_KEY.to_string()),
        ("CAIRN_JOURNEY_PORT", "0".to_string()),
        ("CAIRN_HOST", "127.0.0.1".to_string()),
        (
            "CAIRN_PROFILE_ADDR",
            format!(
                "http://{}",
                profile.addresses[&cairn_runtime::ServiceKind::Profile]
            ),
        ),
        ("CAIRN_DATABASE_MAX_CONNECTIONS", "10".to_string()),
    ];
    let token = profile.token(&["journey.ingest", "journey.read"]);

    let first = ServiceProcess::start("journey", &environment).await;
    let address = first.address;
    let started = std::time::Instant::now();
    let (before_kill, _) = stream_until(
        address,
        &token,
        (0..messages).collect(),
        Some((messages * 2 / 5, first)),
    )
    .await;
    assert!(before_kill.len() >= messages * 2 / 5);
    assert!(before_kill.len() < messages, "killed before the end");

    // The client resends every message it holds no acknowledgement for.
    let second = ServiceProcess::start("journey", &environment).await;
    let unacknowledged: Vec<usize> = (0..messages).filter(|m| !before_kill.contains(m)).collect();
    let (after_restart, duplicates) =
        stream_until(second.address, &token, unacknowledged.clone(), None).await;
    assert_eq!(after_restart.len(), unacknowledged.len());
    let took = started.elapsed();

    let db = profile.database.connect().await;
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
                .await
                .unwrap()
                .unwrap()
                .try_get_by_index::<i64>(0)
                .unwrap()
        }
    };
    let stored = count("SELECT COUNT(*) FROM journey_touchpoints WHERE id LIKE 'killed-%'").await;
    let distinct =
        count("SELECT COUNT(DISTINCT id) FROM journey_touchpoints WHERE id LIKE 'killed-%'").await;
    assert_eq!(stored, KILLED_EVENTS as i64, "every touchpoint stored");
    assert_eq!(distinct, stored, "none twice");
    // Each stored touchpoint has exactly one change event (the transactional
    // outbox: a touchpoint and its event commit together or not at all; the
    // relay may publish an event twice after a crash, under the same id).
    let bus = {
        let client = redis::Client::open(cairn_tests::redis_url()).unwrap();
        let connection = redis::aio::ConnectionManager::new(client).await.unwrap();
        cairn_runtime::bus::RedisBus::new(connection, &profile.redis_prefix, 1_000_000)
    };
    let events = cairn_tests::eventually(
        Duration::from_secs(120),
        "every touchpoint's event on the bus",
        || async {
            let events = touchpoint_events(&bus).await;
            (events.len() == KILLED_EVENTS).then_some(events)
        },
    )
    .await;
    let doubled_events = events.values().filter(|ids| ids.len() != 1).count();
    assert_eq!(doubled_events, 0, "one event per touchpoint");
    eprintln!(
        "SIGKILL during a stream of {KILLED_EVENTS} touchpoints: {} messages acknowledged before the kill, \
         {} resent, {duplicates} resent touchpoints reported as duplicates (stored before the kill, \
         acknowledgement lost), {stored} stored, {} doubled, {} lost, in {took:?}",
        before_kill.len(),
        unacknowledged.len(),
        stored - distinct,
        KILLED_EVENTS as i64 - distinct,
    );
    eprintln!(
        "events: {} touchpoints with one event each, {doubled_events} with more",
        events.len()
    );
    second.kill().await;
    profile.stop().await;
}

/// The event ids published for each `killed-` touchpoint.
async fn touchpoint_events(
    bus: &dyn cairn_runtime::bus::EventBus,
) -> std::collections::BTreeMap<String, BTreeSet<String>> {
    use cairn_contract::events::v1::change_event::Payload;
    let mut found = std::collections::BTreeMap::<String, BTreeSet<String>>::new();
    let mut after = None;
    loop {
        let batch = bus.read(after, 5000, Duration::ZERO).await.unwrap();
        let Some(last) = batch.last() else {
            return found;
        };
        after = Some(last.position);
        for delivery in batch {
            if let Some(Payload::TouchpointRecorded(recorded)) = &delivery.event.payload
                && recorded.touchpoint_id.starts_with("killed-")
            {
                found
                    .entry(recorded.touchpoint_id.clone())
                    .or_default()
                    .insert(delivery.event.event_id.clone());
            }
        }
    }
}
