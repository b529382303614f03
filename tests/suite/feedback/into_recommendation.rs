//! Feedback flows into next best action: a promoter's answer becomes a fact
//! of their profile, puts them in a dynamic segment, and so makes a referral
//! offer that only promoters may get eligible for them.

use std::time::Duration;

use cairn_contract::common::v1::{Channel, IdentifierType};
use cairn_contract::profile::v1::{Consent, CreateSegmentRequest, RecordConsentRequest, Segment};
use cairn_contract::recommendation::v1 as rec;
use cairn_contract::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
use cairn_runtime::ServiceKind;
use cairn_tests::{eventually, identifier, spawn_app};

use super::{answer, create_survey, customer, feedback, score, survey};

#[tokio::test]
async fn a_promoter_becomes_eligible_for_the_referral_offer() {
    let app = spawn_app().await;
    let profile_id = app
        .create_profile(vec![identifier(IdentifierType::CrmId, "crm-promoter")], &[])
        .await;
    let mut profile = app.profile().await;
    profile
        .record_consent(RecordConsentRequest {
            customer: customer(&profile_id),
            consent: Some(Consent {
                purpose: "marketing".into(),
                channel: Channel::Email as i32,
                granted: true,
                source: "web_form".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    profile
        .create_segment(CreateSegmentRequest {
            segment: Some(Segment {
                segment_id: "promoters".into(),
                display_name: "Promoters".into(),
                rule: r#"has(facts.nps_category) && facts.nps_category == "promoter""#.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();

    let mut recommendation = RecommendationServiceClient::new(
        app.authed(
            ServiceKind::Recommendation,
            &[
                "recommendation.read",
                "recommendation.write",
                "recommendation.decide",
            ],
        )
        .await,
    );
    recommendation
        .update_contact_policy(rec::UpdateContactPolicyRequest {
            contact_policy: Some(rec::ContactPolicy {
                quiet_hours: Some(rec::QuietHours {
                    start_time: "00:00".into(),
                    end_time: "00:00".into(),
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["quiet_hours".into()],
            }),
        })
        .await
        .unwrap();
    recommendation
        .create_action(rec::CreateActionRequest {
            action: Some(rec::Action {
                action_id: "refer-a-friend".into(),
                name: "Bring a friend, both get a month free".into(),
                kind: rec::ActionKind::SalesOffer as i32,
                category: "referral".into(),
                channels: vec![Channel::Email as i32],
                eligibility_rule: r#""promoters" in segments"#.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let decide = |mut client: RecommendationServiceClient<cairn_tests::AuthedChannel>| {
        let profile_id = profile_id.clone();
        async move {
            client
                .decide(rec::DecideRequest {
                    customer: customer(&profile_id),
                    channel: Channel::Email as i32,
                    max_actions: 1,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .actions
                .into_iter()
                .filter_map(|chosen| chosen.action.map(|action| action.action_id))
                .collect::<Vec<_>>()
        }
    };
    assert!(
        decide(recommendation.clone()).await.is_empty(),
        "not a promoter yet"
    );

    let mut feedback = feedback(&app).await;
    let survey_id = create_survey(&mut feedback, survey("Relationship NPS")).await;
    answer(
        &mut feedback,
        &survey_id,
        &profile_id,
        Channel::Email,
        vec![score("nps", 10)],
        "promoter-answer",
    )
    .await
    .unwrap();
    let chosen = eventually(Duration::from_secs(15), "the referral offer", || {
        let client = recommendation.clone();
        let decide = &decide;
        async move {
            let chosen = decide(client).await;
            (!chosen.is_empty()).then_some(chosen)
        }
    })
    .await;
    assert_eq!(chosen, ["refer-a-friend"]);
    app.stop().await;
}
