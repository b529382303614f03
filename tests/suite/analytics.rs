//! Funnels and top paths from the stored events of a fixed data set, with
//! every figure worked out by hand in the comments.

use std::time::Duration;

use cairn_contract::common::v1::{Channel, IdentifierType, TimeRange};
use cairn_contract::journey::v1::{
    FunnelOrder, FunnelStep, ListTopPathsRequest, RecordTouchpointsRequest, RunFunnelRequest,
    TouchpointType, funnel_step,
};
use cairn_contract::profile::v1::{CreateSegmentRequest, Segment, UpdateSegmentMembersRequest};
use cairn_tests::{TestApp, identifier, spawn_app, touchpoint};
use tonic::Code;

use TouchpointType::{AddToCart, Call, Checkout, ProductView, Purchase};

/// What a customer did, on which channel, how many minutes ago.
type Visit = (TouchpointType, Channel, u64);

/// Who did what, minutes ago, on which channel:
/// - a and e: web product view (60), app add to cart (50), web checkout (40), web purchase (30);
/// - b: web product view (60), web add to cart (50), then nothing;
/// - c: app product view (60), then nothing;
/// - d: web product view (60), app add to cart (55), a web call (52), web purchase (45).
fn data_set() -> Vec<(&'static str, Vec<Visit>)> {
    let converter = vec![
        (ProductView, Channel::Web, 60),
        (AddToCart, Channel::MobileApp, 50),
        (Checkout, Channel::Web, 40),
        (Purchase, Channel::Web, 30),
    ];
    vec![
        ("a", converter.clone()),
        (
            "b",
            vec![
                (ProductView, Channel::Web, 60),
                (AddToCart, Channel::Web, 50),
            ],
        ),
        ("c", vec![(ProductView, Channel::MobileApp, 60)]),
        (
            "d",
            vec![
                (ProductView, Channel::Web, 60),
                (AddToCart, Channel::MobileApp, 55),
                (Call, Channel::Web, 52),
                (Purchase, Channel::Web, 45),
            ],
        ),
        ("e", converter),
    ]
}

/// Records the data set; returns the profile id of customer b.
async fn record(app: &TestApp) -> String {
    let mut touchpoints = Vec::new();
    for (who, events) in data_set() {
        for (index, (kind, channel, minutes_ago)) in events.into_iter().enumerate() {
            touchpoints.push(touchpoint(
                &format!("{who}-{index}"),
                identifier(IdentifierType::CookieId, &format!("funnel-{who}")),
                channel,
                kind,
                minutes_ago,
                &[],
            ));
        }
    }
    let results = app
        .journey()
        .await
        .record_touchpoints(RecordTouchpointsRequest { touchpoints })
        .await
        .unwrap()
        .into_inner()
        .results;
    results
        .iter()
        .find(|r| r.touchpoint_id == "b-0")
        .unwrap()
        .profile_id
        .clone()
}

fn last_two_hours() -> Option<TimeRange> {
    let now = std::time::SystemTime::now();
    Some(TimeRange {
        start_time: Some((now - Duration::from_secs(7200)).into()),
        end_time: Some(now.into()),
    })
}

fn on_touchpoint(name: &str, condition: &str, optional: bool) -> FunnelStep {
    FunnelStep {
        name: name.into(),
        step: Some(funnel_step::Step::TouchpointCondition(condition.into())),
        optional,
    }
}

#[tokio::test]
async fn a_funnel_counts_every_stored_event_by_hand() {
    let app = spawn_app().await;
    let b = record(&app).await;
    let mut profile = app.profile().await;
    profile
        .create_segment(CreateSegmentRequest {
            segment: Some(Segment {
                segment_id: "hesitant".into(),
                display_name: "Hesitant".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    profile
        .update_segment_members(UpdateSegmentMembersRequest {
            segment_id: "hesitant".into(),
            add_profile_ids: vec![b],
            remove_profile_ids: vec![],
        })
        .await
        .unwrap();

    let funnel = app
        .journey()
        .await
        .run_funnel(RunFunnelRequest {
            steps: vec![
                on_touchpoint("viewed", r#"touchpoint.type == "product_view""#, false),
                on_touchpoint("carted", r#"touchpoint.type == "add_to_cart""#, false),
                on_touchpoint("checked out", r#"touchpoint.type == "checkout""#, true),
                on_touchpoint("bought", r#"touchpoint.type == "purchase""#, false),
            ],
            order: FunnelOrder::Ordered as i32,
            conversion_window: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
            exclusions: vec![r#"touchpoint.type == "call""#.into()],
            time_range: last_two_hours(),
            segment_ids: vec!["hesitant".into()],
        })
        .await
        .unwrap()
        .into_inner();
    // d is excluded (a call between viewing and buying): a, b, c, e remain.
    let entered: Vec<i64> = funnel.steps.iter().map(|s| s.entered).collect();
    let converted: Vec<i64> = funnel.steps.iter().map(|s| s.converted).collect();
    assert_eq!(entered, [4, 3, 2, 2]);
    assert_eq!(converted, [3, 2, 2, 2]);
    assert_eq!(funnel.converted, 2);
    assert_eq!(funnel.steps[0].conversion_rate, 0.75);
    // c stopped after viewing in the app; b after carting on the web.
    assert_eq!(
        funnel.steps[0].drop_off_by_channel.get("mobile_app"),
        Some(&1)
    );
    assert_eq!(funnel.steps[1].drop_off_by_channel.get("web"), Some(&1));
    assert_eq!(
        funnel.steps[1].drop_off_by_segment.get("hesitant"),
        Some(&1)
    );
    // Viewing to carting took 10 minutes for a, b and e.
    assert_eq!(
        funnel.steps[0]
            .median_time_to_next
            .as_ref()
            .map(|d| d.seconds),
        Some(600)
    );

    // A journey stage as a step: entering guided_shopping's cart stage.
    let by_stage = app
        .journey()
        .await
        .run_funnel(RunFunnelRequest {
            steps: vec![
                on_touchpoint("viewed", r#"touchpoint.type == "product_view""#, false),
                FunnelStep {
                    name: "in cart".into(),
                    step: Some(funnel_step::Step::JourneyStage(
                        "guided_shopping/cart".into(),
                    )),
                    optional: false,
                },
            ],
            time_range: last_two_hours(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let entered: Vec<i64> = by_stage.steps.iter().map(|s| s.entered).collect();
    assert_eq!(entered, [5, 4]);
    app.stop().await;
}

#[tokio::test]
async fn top_paths_before_a_purchase_and_bad_requests() {
    let app = spawn_app().await;
    record(&app).await;
    let mut journey = app.journey().await;
    let paths = journey
        .list_top_paths(ListTopPathsRequest {
            end_condition: r#"touchpoint.type == "purchase""#.into(),
            path_length: 2,
            time_range: last_two_hours(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .paths;
    let found: Vec<(Vec<&str>, i64)> = paths
        .iter()
        .map(|p| (p.steps.iter().map(String::as_str).collect(), p.count))
        .collect();
    assert_eq!(
        found,
        [
            (vec!["mobile_app:add_to_cart", "web:checkout"], 2),
            (vec!["mobile_app:add_to_cart", "web:call"], 1),
        ]
    );
    assert_eq!(paths[0].count_by_channel.get("web"), Some(&2));

    let refused = journey
        .run_funnel(RunFunnelRequest {
            steps: vec![on_touchpoint("only", "touchpoint.type ==", false)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    for field in ["steps", "steps[0].touchpoint_condition", "time_range"] {
        assert!(
            refused.message().contains(field),
            "{field}: {}",
            refused.message()
        );
    }
    app.stop().await;
}
