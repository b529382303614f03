//! Segments: dynamic ones follow profile changes and reported facts,
//! static ones hold who they are given; bad rules are refused at definition.

use std::time::Duration;

use cairn_contract::common::v1::{CustomerRef, IdentifierType, Value, customer_ref, value};
use cairn_contract::events::v1::SubscribeRequest;
use cairn_contract::events::v1::event_hub_service_client::EventHubServiceClient;
use cairn_contract::profile::v1::{
    CreateSegmentRequest, ListProfileSegmentsRequest, ListSegmentMembersRequest, Profile,
    ReportFactsRequest, Segment, UpdateProfileRequest, UpdateSegmentMembersRequest,
};
use cairn_runtime::ServiceKind;
use cairn_tests::{TestApp, identifier, spawn_app};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_types::StatusExt;

fn text(value: &str) -> Value {
    Value {
        kind: Some(value::Kind::StringValue(value.into())),
    }
}

async fn segments_of(app: &TestApp, profile_id: &str) -> Vec<String> {
    app.profile()
        .await
        .list_profile_segments(ListProfileSegmentsRequest {
            customer: Some(CustomerRef {
                customer: Some(customer_ref::Customer::ProfileId(profile_id.into())),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .segment_ids
}

async fn create_segment(app: &TestApp, id: &str, rule: &str) -> Result<Segment, tonic::Status> {
    app.profile()
        .await
        .create_segment(CreateSegmentRequest {
            segment: Some(Segment {
                segment_id: id.into(),
                display_name: id.into(),
                rule: rule.into(),
                ..Default::default()
            }),
        })
        .await
        .map(|r| r.into_inner().segment.unwrap())
}

#[tokio::test]
async fn a_dynamic_segment_follows_attributes_and_facts() {
    let app = spawn_app().await;
    let before = app
        .create_profile(
            vec![identifier(IdentifierType::CrmId, "crm-seg-0")],
            &[("plan", "gold")],
        )
        .await;
    let gold = create_segment(&app, "gold", r#"attributes.plan == "gold""#)
        .await
        .unwrap();
    assert_eq!(
        gold.member_count, 1,
        "existing profiles are evaluated when the segment is created"
    );
    let anna = app
        .create_profile(
            vec![identifier(IdentifierType::CrmId, "crm-seg-1")],
            &[("plan", "gold")],
        )
        .await;
    assert_eq!(segments_of(&app, &anna).await, ["gold"]);
    assert_eq!(segments_of(&app, &before).await, ["gold"]);

    app.profile()
        .await
        .update_profile(UpdateProfileRequest {
            profile: Some(Profile {
                profile_id: anna.clone(),
                attributes: [("plan".to_string(), text("basic"))].into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["attributes.plan".into()],
            }),
        })
        .await
        .unwrap();
    assert!(
        segments_of(&app, &anna).await.is_empty(),
        "she left the segment"
    );

    create_segment(&app, "complaining", "facts.open_tickets > 0")
        .await
        .unwrap();
    let segments = app
        .profile()
        .await
        .report_facts(ReportFactsRequest {
            customer: Some(CustomerRef {
                customer: Some(customer_ref::Customer::ProfileId(anna.clone())),
            }),
            facts: [(
                "open_tickets".to_string(),
                Value {
                    kind: Some(value::Kind::NumberValue(2.0)),
                },
            )]
            .into(),
        })
        .await
        .unwrap()
        .into_inner()
        .segment_ids;
    assert_eq!(segments, ["complaining"]);

    // The changes were published for the other services.
    let mut hub = EventHubServiceClient::new(
        app.authed(ServiceKind::Profile, &["events.subscribe"])
            .await,
    );
    let mut events = hub
        .subscribe(SubscribeRequest {
            topics: vec![
                "profile.segment_entered".into(),
                "profile.segment_left".into(),
            ],
            cursor: String::new(),
            from_oldest: true,
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("events arrive")
            .unwrap()
            .unwrap()
            .event
            .unwrap();
        if event.profile_id == anna {
            seen.push(event.topic);
        }
        if seen.len() == 3 {
            break;
        }
    }
    assert_eq!(
        seen,
        [
            "profile.segment_entered",
            "profile.segment_left",
            "profile.segment_entered"
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_rule_that_does_not_parse_or_names_unknown_fields_is_refused() {
    let app = spawn_app().await;
    let broken = create_segment(&app, "broken", "attributes.plan == ")
        .await
        .unwrap_err();
    assert_eq!(broken.code(), Code::InvalidArgument);
    let violation = &broken.get_details_bad_request().unwrap().field_violations[0];
    assert_eq!(violation.field, "segment.rule");
    assert!(
        violation.description.contains("line 1, column"),
        "{}",
        violation.description
    );
    let unknown = create_segment(&app, "typo", r#"atributes.plan == "gold""#)
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert!(
        unknown.message().contains("atributes"),
        "{}",
        unknown.message()
    );
    app.stop().await;
}

#[tokio::test]
async fn a_static_segment_holds_its_members_page_by_page() {
    let app = spawn_app().await;
    create_segment(&app, "pilot-group", "").await.unwrap();
    let mut members = Vec::new();
    for index in 0..3 {
        members.push(
            app.create_profile(
                vec![identifier(
                    IdentifierType::CrmId,
                    &format!("crm-static-{index}"),
                )],
                &[],
            )
            .await,
        );
    }
    let mut profile = app.profile().await;
    let segment = profile
        .update_segment_members(UpdateSegmentMembersRequest {
            segment_id: "pilot-group".into(),
            add_profile_ids: members.clone(),
            remove_profile_ids: vec![members[1].clone()],
        })
        .await
        .unwrap()
        .into_inner()
        .segment
        .unwrap();
    assert_eq!(segment.member_count, 2);
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = profile
            .list_segment_members(ListSegmentMembersRequest {
                segment_id: "pilot-group".into(),
                page_size: 1,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        listed.extend(page.profile_ids);
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let mut expected = vec![members[0].clone(), members[2].clone()];
    expected.sort();
    assert_eq!(listed, expected);

    let filtered = profile
        .list_profiles(cairn_contract::profile::v1::ListProfilesRequest {
            segment_id: "pilot-group".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .profiles;
    assert_eq!(filtered.len(), 2, "ListProfiles filters by segment");
    let with_crm = profile
        .list_profiles(cairn_contract::profile::v1::ListProfilesRequest {
            identifier_type: IdentifierType::CrmId as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .profiles;
    assert_eq!(with_crm.len(), 3, "and by the kind of identifier held");

    let dynamic = create_segment(&app, "dyn", "attributes.plan == 'x'")
        .await
        .unwrap();
    let refused = profile
        .update_segment_members(UpdateSegmentMembersRequest {
            segment_id: dynamic.segment_id,
            add_profile_ids: vec![members[0].clone()],
            remove_profile_ids: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    app.stop().await;
}
