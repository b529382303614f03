//! A ticket or a touchpoint affects only decisions of its own customer. A
//! customer's token that names another customer's decision on a complaint
//! is refused with the answer an unknown decision gets; and whatever reaches
//! the bus naming another customer's decision (a complaint an operator
//! filed, an offer touchpoint a customer's front end recorded) changes
//! nothing for that other customer: no outcome, no decline cool-down, no
//! learning data.

use std::time::Duration;

use cairn_contract::common::v1::{
    Channel, CustomerRef, IdentifierType, Value, customer_ref, value,
};
use cairn_contract::feedback::v1 as feedback;
use cairn_contract::feedback::v1::feedback_service_client::FeedbackServiceClient;
use cairn_contract::journey::v1::journey_service_client::JourneyServiceClient;
use cairn_contract::journey::v1::{RecordTouchpointRequest, Touchpoint, TouchpointType};
use cairn_contract::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
use cairn_contract::recommendation::v1::{
    Action, ActionKind, CreateActionRequest, DecideRequest, GetDecisionRequest,
    GetScorerStatusRequest, OutcomeType,
};
use cairn_runtime::ServiceKind;
use cairn_tests::{AuthedChannel, TestApp, eventually, identifier, spawn_app};
use tonic::Code;

fn by_id(profile_id: &str) -> Option<CustomerRef> {
    Some(CustomerRef {
        customer: Some(customer_ref::Customer::ProfileId(profile_id.into())),
    })
}

/// A complaint of `profile_id` about `action_id` of `decision_id`.
fn complaint(profile_id: &str, decision_id: &str) -> feedback::CreateTicketRequest {
    feedback::CreateTicketRequest {
        ticket: Some(feedback::Ticket {
            customer: by_id(profile_id),
            channel: Channel::Web as i32,
            category: "sales".into(),
            description: "I never wanted this offer".into(),
            complaint: true,
            decision_id: decision_id.into(),
            action_id: "upgrade".into(),
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

/// An offer-declined touchpoint of `profile_id` on `decision_id`.
fn declined(id: &str, profile_id: &str, decision_id: &str) -> RecordTouchpointRequest {
    RecordTouchpointRequest {
        touchpoint: Some(Touchpoint {
            touchpoint_id: id.into(),
            customer: by_id(profile_id),
            channel: Channel::Web as i32,
            r#type: TouchpointType::OfferDeclined as i32,
            occurred_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
            properties: [("decision_id", decision_id), ("action_id", "upgrade")]
                .into_iter()
                .map(|(name, value)| {
                    (
                        name.to_string(),
                        Value {
                            kind: Some(value::Kind::StringValue(value.to_string())),
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }),
    }
}

async fn decide(
    recommendations: &mut RecommendationServiceClient<AuthedChannel>,
    profile_id: &str,
) -> String {
    let decision = recommendations
        .decide(DecideRequest {
            customer: by_id(profile_id),
            channel: Channel::Web as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        decision.actions.len(),
        1,
        "the control needs the offer chosen: {decision:?}"
    );
    decision.decision_id
}

/// The outcome types logged on `decision_id`.
async fn outcomes(
    recommendations: &mut RecommendationServiceClient<AuthedChannel>,
    decision_id: &str,
) -> Vec<i32> {
    recommendations
        .get_decision(GetDecisionRequest {
            decision_id: decision_id.into(),
            view: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .decision
        .unwrap()
        .outcomes
        .iter()
        .map(|outcome| outcome.r#type)
        .collect()
}

async fn cooling_down(app: &TestApp, profile_id: &str) -> bool {
    let mut redis = redis::Client::open(cairn_tests::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("EXISTS")
        .arg(format!(
            "{}recommendation:person:{profile_id}:cooldown:upgrade",
            app.redis_prefix
        ))
        .query_async::<bool>(&mut redis)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_complaint_or_touchpoint_naming_another_customers_decision_changes_nothing_for_them() {
    let app = spawn_app().await;
    let alice = app
        .create_profile(
            vec![identifier(IdentifierType::CrmId, "crm-alice")],
            &[("plan", "gold")],
        )
        .await;
    let bob = app
        .create_profile(
            vec![identifier(IdentifierType::CrmId, "crm-bob")],
            &[("plan", "gold")],
        )
        .await;
    let mut recommendations = RecommendationServiceClient::new(
        app.authed(
            ServiceKind::Recommendation,
            &[
                "recommendation.write",
                "recommendation.decide",
                "recommendation.read",
            ],
        )
        .await,
    );
    recommendations
        .create_action(CreateActionRequest {
            action: Some(Action {
                action_id: "upgrade".into(),
                name: "Upgrade".into(),
                kind: ActionKind::Service as i32,
                category: "upgrade".into(),
                channels: vec![Channel::Web as i32],
                decline_cooldown: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let bobs = decide(&mut recommendations, &bob).await;
    let alices_complained = decide(&mut recommendations, &alice).await;
    let alices_declined = decide(&mut recommendations, &alice).await;

    // Alice's front end names Bob's decision on her own complaint: refused,
    // with the very answer an unknown decision and a malformed id get.
    let token = app.customer_token(
        &alice,
        &[
            "feedback.write",
            "feedback.read",
            "journey.ingest",
            "journey.read",
        ],
    );
    let mut front = FeedbackServiceClient::new(app.with_token(ServiceKind::Feedback, &token).await);
    let refusal = front
        .create_ticket(complaint(&alice, &bobs))
        .await
        .expect_err("a complaint naming another customer's decision");
    assert_eq!(refusal.code(), Code::PermissionDenied, "{refusal:?}");
    for unknown in [uuid::Uuid::now_v7().to_string(), "not-a-decision".into()] {
        let other = front
            .create_ticket(complaint(&alice, &unknown))
            .await
            .expect_err("a complaint naming an unknown decision");
        assert_eq!(
            (other.code(), other.message()),
            (refusal.code(), refusal.message()),
            "another customer's decision and {unknown:?} must be answered alike"
        );
    }
    // Her offer touchpoint naming Bob's decision: refused alike.
    let mut journey = JourneyServiceClient::new(app.with_token(ServiceKind::Journey, &token).await);
    let refusal = journey
        .record_touchpoint(declined("alice-declines-bobs", &alice, &bobs))
        .await
        .expect_err("a touchpoint naming another customer's decision");
    assert_eq!(refusal.code(), Code::PermissionDenied, "{refusal:?}");
    let unknown = journey
        .record_touchpoint(declined(
            "alice-declines-nothing",
            &alice,
            &uuid::Uuid::now_v7().to_string(),
        ))
        .await
        .expect_err("a touchpoint naming an unknown decision");
    assert_eq!(
        (unknown.code(), unknown.message()),
        (refusal.code(), refusal.message())
    );
    // The operator's systems are trusted at the door: a touchpoint and a
    // complaint they record for her naming Bob's decision are taken, and
    // the recommendation service checks where it consumes them.
    app.journey()
        .await
        .record_touchpoint(declined("operator-records-bobs", &alice, &bobs))
        .await
        .unwrap();
    let mut operator =
        FeedbackServiceClient::new(app.authed(ServiceKind::Feedback, &["feedback.write"]).await);
    operator
        .create_ticket(complaint(&alice, &bobs))
        .await
        .unwrap();

    // The controls: the same two paths on her own decisions take effect.
    front
        .create_ticket(complaint(&alice, &alices_complained))
        .await
        .unwrap();
    journey
        .record_touchpoint(declined("alice-declines-hers", &alice, &alices_declined))
        .await
        .unwrap();
    for decision in [&alices_complained, &alices_declined] {
        eventually(
            Duration::from_secs(15),
            "her own decline is recorded",
            || {
                let mut client = recommendations.clone();
                let decision = decision.clone();
                async move {
                    outcomes(&mut client, &decision)
                        .await
                        .contains(&(OutcomeType::Declined as i32))
                        .then_some(())
                }
            },
        )
        .await;
    }
    assert!(cooling_down(&app, &alice).await, "the control cools down");
    // Events of one service are consumed in order, but give the others a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let bobs_outcomes = outcomes(&mut recommendations, &bobs).await;
    assert!(
        bobs_outcomes.is_empty(),
        "bob's decision got outcomes: {bobs_outcomes:?}"
    );
    assert!(
        !cooling_down(&app, &bob).await,
        "bob's offer is in a decline cool-down"
    );
    let status = recommendations
        .get_scorer_status(GetScorerStatusRequest {
            action_ids: vec!["upgrade".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let model = status.model.unwrap_or_default();
    let learned = model
        .actions
        .iter()
        .find(|action| action.action_id == "upgrade")
        .expect("the action's learning counts");
    assert_eq!(
        learned.declined_count, 2,
        "only alice's two declines are learned from: {learned:?}"
    );
    println!(
        "references to another customer's decision: 4 (2 refused at the door); outcomes on it: {}, its cool-downs: 0, declines learned: {}",
        bobs_outcomes.len(),
        learned.declined_count
    );
    app.stop().await;
}

#[tokio::test]
async fn a_complaint_about_a_decision_made_before_a_merge_counts_for_the_survivor() {
    let app = spawn_app().await;
    let visitor = app
        .create_profile(
            vec![identifier(IdentifierType::CookieId, "cookie-visit-1")],
            &[],
        )
        .await;
    let anna = app
        .create_profile(
            vec![identifier(IdentifierType::CrmId, "crm-anna")],
            &[("plan", "gold")],
        )
        .await;
    let mut recommendations = RecommendationServiceClient::new(
        app.authed(
            ServiceKind::Recommendation,
            &[
                "recommendation.write",
                "recommendation.decide",
                "recommendation.read",
            ],
        )
        .await,
    );
    recommendations
        .create_action(CreateActionRequest {
            action: Some(Action {
                action_id: "upgrade".into(),
                name: "Upgrade".into(),
                kind: ActionKind::Service as i32,
                category: "upgrade".into(),
                channels: vec![Channel::Web as i32],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    // Offered while she browsed anonymously; then she signs in and the
    // visit is merged into her profile.
    let decision = decide(&mut recommendations, &visitor).await;
    app.profile()
        .await
        .merge_profiles(cairn_contract::profile::v1::MergeProfilesRequest {
            survivor_profile_id: anna.clone(),
            merged_profile_id: visitor.clone(),
            reason: "signed in".into(),
        })
        .await
        .unwrap();
    let token = app.customer_token(&anna, &["feedback.write"]);
    let mut front = FeedbackServiceClient::new(app.with_token(ServiceKind::Feedback, &token).await);
    front
        .create_ticket(complaint(&anna, &decision))
        .await
        .expect("a decision made for a profile merged into hers is hers");
    eventually(
        Duration::from_secs(15),
        "the complaint is the decision's decline",
        || {
            let mut client = recommendations.clone();
            let decision = decision.clone();
            async move {
                outcomes(&mut client, &decision)
                    .await
                    .contains(&(OutcomeType::Declined as i32))
                    .then_some(())
            }
        },
    )
    .await;
    app.stop().await;
}
