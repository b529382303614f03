//! Touchpoints: batches report item by item, and a customer's timeline
//! follows profile merges, newest first, filtered and paginated.

use std::time::Duration;

use cairn_contract::common::v1::{Channel, CustomerRef, Identifier, IdentifierType, customer_ref};
use cairn_contract::journey::v1::{
    ListTimelineRequest, RecordTouchpointsRequest, Touchpoint, TouchpointOutcome, TouchpointType,
};
use cairn_contract::profile::v1::IdentifyProfileRequest;
use cairn_tests::{eventually, identifier, spawn_app};
use tonic::Code;

fn touchpoint(
    id: &str,
    who: Identifier,
    channel: Channel,
    kind: TouchpointType,
    minutes_ago: u64,
) -> Touchpoint {
    cairn_tests::touchpoint(id, who, channel, kind, minutes_ago, &[])
}

#[tokio::test]
async fn a_timeline_follows_a_merge_across_channels() {
    let app = spawn_app().await;
    let cookie = identifier(IdentifierType::CookieId, "c-timeline");
    let email = identifier(IdentifierType::Email, "timeline@example.com");
    app.create_profile(vec![email.clone()], &[]).await;
    let results = app
        .journey()
        .await
        .record_touchpoints(RecordTouchpointsRequest {
            touchpoints: vec![
                touchpoint(
                    "t-1",
                    cookie.clone(),
                    Channel::Web,
                    TouchpointType::ProductView,
                    30,
                ),
                touchpoint(
                    "t-2",
                    email.clone(),
                    Channel::MobileApp,
                    TouchpointType::AddToCart,
                    20,
                ),
                Touchpoint {
                    touchpoint_id: String::new(),
                    ..touchpoint(
                        "bad",
                        email.clone(),
                        Channel::Web,
                        TouchpointType::PageView,
                        1,
                    )
                },
                touchpoint(
                    "t-1",
                    cookie.clone(),
                    Channel::Web,
                    TouchpointType::ProductView,
                    30,
                ),
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let outcomes: Vec<i32> = results.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            TouchpointOutcome::Stored as i32,
            TouchpointOutcome::Stored as i32,
            TouchpointOutcome::Refused as i32,
            TouchpointOutcome::Duplicate as i32
        ]
    );
    assert_eq!(results[2].error_code, Code::InvalidArgument as i32);
    assert!(
        results[2]
            .error_message
            .contains("touchpoints[2].touchpoint_id"),
        "{}",
        results[2].error_message
    );

    // The visitor logs in: the cookie's profile merges into the email's.
    app.profile()
        .await
        .identify_profile(IdentifyProfileRequest {
            identifiers: vec![cookie, email.clone()],
        })
        .await
        .unwrap();
    let by_email = Some(CustomerRef {
        customer: Some(customer_ref::Customer::Identifier(email)),
    });
    let ids = eventually(
        Duration::from_secs(10),
        "the timeline following the merge",
        || async {
            let timeline = app
                .journey()
                .await
                .list_timeline(ListTimelineRequest {
                    customer: by_email.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .touchpoints;
            let ids: Vec<String> = timeline.into_iter().map(|t| t.touchpoint_id).collect();
            (ids.len() == 2).then_some(ids)
        },
    )
    .await;
    assert_eq!(ids, ["t-2", "t-1"], "newest first, across web and app");

    let web_only = app
        .journey()
        .await
        .list_timeline(ListTimelineRequest {
            customer: by_email.clone(),
            channels: vec![Channel::Web as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .touchpoints;
    assert_eq!(web_only.len(), 1);
    let first_page = app
        .journey()
        .await
        .list_timeline(ListTimelineRequest {
            customer: by_email.clone(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first_page.touchpoints[0].touchpoint_id, "t-2");
    let second_page = app
        .journey()
        .await
        .list_timeline(ListTimelineRequest {
            customer: by_email,
            page_size: 1,
            page_token: first_page.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second_page.touchpoints[0].touchpoint_id, "t-1");
    app.stop().await;
}

#[tokio::test]
async fn a_stream_acknowledges_each_message_and_a_bad_touchpoint_does_not_end_it() {
    use cairn_contract::journey::v1::StreamTouchpointsRequest;
    use tokio_stream::StreamExt;
    let app = spawn_app().await;
    let who = identifier(IdentifierType::CrmId, "crm-stream");
    let messages = vec![
        StreamTouchpointsRequest {
            touchpoints: vec![
                touchpoint(
                    "s-1",
                    who.clone(),
                    Channel::Store,
                    TouchpointType::StoreVisit,
                    5,
                ),
                Touchpoint {
                    channel: 0,
                    ..touchpoint(
                        "s-bad",
                        who.clone(),
                        Channel::Store,
                        TouchpointType::StoreVisit,
                        4,
                    )
                },
            ],
        },
        StreamTouchpointsRequest {
            touchpoints: vec![
                touchpoint(
                    "s-2",
                    who.clone(),
                    Channel::CallCentre,
                    TouchpointType::Call,
                    3,
                ),
                touchpoint(
                    "s-1",
                    who.clone(),
                    Channel::Store,
                    TouchpointType::StoreVisit,
                    5,
                ),
            ],
        },
    ];
    let mut acks = app
        .journey()
        .await
        .stream_touchpoints(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    let mut outcomes = Vec::new();
    while let Some(ack) = acks.next().await {
        for result in ack.unwrap().results {
            outcomes.push((result.index, result.outcome));
        }
    }
    assert_eq!(
        outcomes,
        [
            (0, TouchpointOutcome::Stored as i32),
            (1, TouchpointOutcome::Refused as i32),
            (2, TouchpointOutcome::Stored as i32),
            (3, TouchpointOutcome::Duplicate as i32)
        ]
    );
    let timeline = app
        .journey()
        .await
        .list_timeline(ListTimelineRequest {
            customer: Some(CustomerRef {
                customer: Some(customer_ref::Customer::Identifier(who)),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .touchpoints;
    assert_eq!(
        timeline.len(),
        2,
        "every acknowledged touchpoint is stored, once"
    );
    app.stop().await;
}
