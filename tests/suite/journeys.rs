//! Journey definitions and customers' positions: the built-in journeys,
//! a customer walking the guided journey with every transition recorded and
//! streamed, versions that leave customers on the version they entered, and
//! definitions that are refused with the field that is wrong.

use std::time::Duration;

use cairn_contract::common::v1::{Channel, IdentifierType};
use cairn_contract::journey::v1::{
    CreateJourneyDefinitionRequest, GetJourneyDefinitionRequest, GetJourneyStateRequest,
    JourneyDefinition, JourneyStatus, ListJourneyDefinitionsRequest, ListJourneyStatesRequest,
    RecordTouchpointRequest, Stage, TouchpointType, UpdateJourneyDefinitionRequest,
    ValidateJourneyDefinitionRequest, WatchTransitionsRequest,
};
use cairn_tests::{by_identifier, identifier, spawn_app, touchpoint};
use tonic::Code;
use tonic_types::StatusExt;

fn stage(name: &str, condition: &str) -> Stage {
    Stage {
        name: name.into(),
        condition: condition.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_two_built_in_journeys_are_there_from_the_start() {
    let app = spawn_app().await;
    let listed = app
        .journey()
        .await
        .list_journey_definitions(ListJourneyDefinitionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = listed
        .definitions
        .iter()
        .map(|d| d.journey_id.as_str())
        .collect();
    assert_eq!(ids, ["guided_shopping", "lifecycle"]);
    let lifecycle = &listed.definitions[1];
    let stages: Vec<&str> = lifecycle.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        stages,
        [
            "awareness",
            "consideration",
            "research",
            "purchase",
            "loyalty",
            "like",
            "advocate",
            "buy_again"
        ]
    );
    assert_eq!(lifecycle.loop_to_stage, "loyalty");
    assert_eq!(lifecycle.version, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_customer_walks_the_guided_journey_and_a_watcher_sees_each_step() {
    let app = spawn_app().await;
    let mut journey = app.journey().await;
    let cookie = identifier(IdentifierType::CookieId, "guided-walker");
    journey
        .record_touchpoint(RecordTouchpointRequest {
            touchpoint: Some(touchpoint(
                "g-1",
                cookie.clone(),
                Channel::Web,
                TouchpointType::ProductView,
                10,
                &[],
            )),
        })
        .await
        .unwrap();
    let mut watch = journey
        .watch_transitions(WatchTransitionsRequest {
            customer: Some(by_identifier(cookie.clone())),
            journey_ids: vec!["guided_shopping".into()],
            cursor: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    journey
        .record_touchpoint(RecordTouchpointRequest {
            touchpoint: Some(touchpoint(
                "g-2",
                cookie.clone(),
                Channel::MobileApp,
                TouchpointType::AddToCart,
                5,
                &[("cart_id", "cart-1")],
            )),
        })
        .await
        .unwrap();
    // The watch starts at the live end; g-1's entry into the journey may be
    // relayed to the bus only after that, and is then streamed first.
    let (seen, transition) = loop {
        let seen = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("no transition streamed within 10 s")
            .unwrap()
            .expect("the watch ended");
        let transition = seen.transition.clone().unwrap();
        if transition.touchpoint_id == "g-1" {
            assert_eq!(transition.to_stage, "choose_product");
            continue;
        }
        break (seen, transition);
    };
    assert_eq!(transition.journey_id, "guided_shopping");
    assert_eq!(transition.from_stage, "choose_product");
    assert_eq!(transition.to_stage, "cart");
    assert_eq!(transition.touchpoint_id, "g-2");
    assert!(!seen.cursor.is_empty());

    let state = journey
        .get_journey_state(GetJourneyStateRequest {
            customer: Some(by_identifier(cookie.clone())),
            journey_id: "guided_shopping".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .state
        .unwrap();
    assert_eq!(state.current_stage, "cart");
    assert_eq!(state.status, JourneyStatus::Active as i32);
    let moves: Vec<(&str, &str)> = state
        .transitions
        .iter()
        .map(|t| (t.from_stage.as_str(), t.to_stage.as_str()))
        .collect();
    assert_eq!(moves, [("", "choose_product"), ("choose_product", "cart")]);

    // A retried touchpoint moves nobody twice; the lifecycle journey saw both too.
    journey
        .record_touchpoint(RecordTouchpointRequest {
            touchpoint: Some(touchpoint(
                "g-2",
                cookie.clone(),
                Channel::MobileApp,
                TouchpointType::AddToCart,
                5,
                &[("cart_id", "cart-1")],
            )),
        })
        .await
        .unwrap();
    let states = journey
        .list_journey_states(ListJourneyStatesRequest {
            customer: Some(by_identifier(cookie)),
        })
        .await
        .unwrap()
        .into_inner()
        .states;
    let positions: Vec<(&str, &str, usize)> = states
        .iter()
        .map(|s| {
            (
                s.journey_id.as_str(),
                s.current_stage.as_str(),
                s.transitions.len(),
            )
        })
        .collect();
    assert_eq!(
        positions,
        [("guided_shopping", "cart", 2), ("lifecycle", "research", 2)]
    );
    app.stop().await;
}

#[tokio::test]
async fn customers_stay_on_the_version_they_entered() {
    let app = spawn_app().await;
    let mut journey = app.journey().await;
    let created = journey
        .create_journey_definition(CreateJourneyDefinitionRequest {
            definition: Some(JourneyDefinition {
                journey_id: "upgrade".into(),
                display_name: "Plan upgrade".into(),
                stages: vec![
                    stage("looked", r#"touchpoint.type == "product_view""#),
                    stage("carted", r#"touchpoint.type == "add_to_cart""#),
                ],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .definition
        .unwrap();
    assert_eq!(created.version, 1);
    let early = identifier(IdentifierType::CookieId, "early-upgrader");
    journey
        .record_touchpoint(RecordTouchpointRequest {
            touchpoint: Some(touchpoint(
                "u-1",
                early.clone(),
                Channel::Web,
                TouchpointType::ProductView,
                10,
                &[],
            )),
        })
        .await
        .unwrap();

    let updated = journey
        .update_journey_definition(UpdateJourneyDefinitionRequest {
            definition: Some(JourneyDefinition {
                journey_id: "upgrade".into(),
                etag: created.etag.clone(),
                stages: vec![
                    stage("browsing", r#"touchpoint.type == "product_view""#),
                    stage("paying", r#"touchpoint.type == "checkout""#),
                ],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["stages".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .definition
        .unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(
        updated.display_name, "Plan upgrade",
        "the mask kept the name"
    );

    // The early customer moves by version 1's stages; a new one enters version 2.
    let late = identifier(IdentifierType::CookieId, "late-upgrader");
    for (id, who, kind) in [
        ("u-2", early.clone(), TouchpointType::AddToCart),
        ("u-3", late.clone(), TouchpointType::ProductView),
    ] {
        journey
            .record_touchpoint(RecordTouchpointRequest {
                touchpoint: Some(touchpoint(id, who, Channel::Web, kind, 5, &[])),
            })
            .await
            .unwrap();
    }
    for (who, version, stage) in [(early, 1, "carted"), (late, 2, "browsing")] {
        let state = journey
            .get_journey_state(GetJourneyStateRequest {
                customer: Some(by_identifier(who)),
                journey_id: "upgrade".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .state
            .unwrap();
        assert_eq!(
            (state.version, state.current_stage.as_str()),
            (version, stage)
        );
    }
    let first = journey
        .get_journey_definition(GetJourneyDefinitionRequest {
            journey_id: "upgrade".into(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .definition
        .unwrap();
    assert_eq!(first.stages[1].name, "carted");

    // Updating from the stale etag is refused.
    let stale = journey
        .update_journey_definition(UpdateJourneyDefinitionRequest {
            definition: Some(JourneyDefinition {
                journey_id: "upgrade".into(),
                etag: created.etag,
                display_name: "Lost update".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    app.stop().await;
}

#[tokio::test]
async fn bad_definitions_are_refused_with_the_field_that_is_wrong() {
    let app = spawn_app().await;
    let mut journey = app.journey().await;
    let broken = JourneyDefinition {
        journey_id: "broken".into(),
        stages: vec![
            stage("start", r#"touchpoint.type == "page_view""#),
            stage("next", "touchpoint.type == "),
        ],
        ..Default::default()
    };
    let refused = journey
        .create_journey_definition(CreateJourneyDefinitionRequest {
            definition: Some(broken.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let fields: Vec<String> = refused
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["definition.stages[1].condition"]);
    assert!(
        refused.message().contains("line 1"),
        "{}",
        refused.message()
    );

    let checked = journey
        .validate_journey_definition(ValidateJourneyDefinitionRequest {
            definition: Some(broken),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!checked.valid);
    assert!(checked.problems[0].starts_with("stages[1].condition: does not parse"));

    let taken = journey
        .create_journey_definition(CreateJourneyDefinitionRequest {
            definition: Some(JourneyDefinition {
                journey_id: "lifecycle".into(),
                stages: vec![stage("only", "true")],
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);

    let unknown_variable = journey
        .create_journey_definition(CreateJourneyDefinitionRequest {
            definition: Some(JourneyDefinition {
                journey_id: "typo".into(),
                stages: vec![stage("only", r#"touchpont.type == "page_view""#)],
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown_variable.code(), Code::InvalidArgument);
    assert!(unknown_variable.message().contains("touchpont"));

    let customer = identifier(IdentifierType::Email, "never-journeyed@example.com");
    app.create_profile(vec![customer.clone()], &[]).await;
    let missing = journey
        .get_journey_state(GetJourneyStateRequest {
            customer: Some(by_identifier(customer)),
            journey_id: "guided_shopping".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    app.stop().await;
}
