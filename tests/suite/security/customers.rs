//! A customer's own token (the operator's app or web front end acting for
//! one signed-in customer) reaches that customer's data and nothing else:
//! on every RPC it may call, other profile ids, identifiers, decision ids
//! and touchpoint ids are answered PERMISSION_DENIED or NOT_FOUND, never
//! data; every other RPC refuses it outright.

use cairn_contract::common::v1::{Channel, CustomerRef, IdentifierType, customer_ref};
use cairn_contract::journey::v1::journey_service_client::JourneyServiceClient;
use cairn_contract::journey::v1::{
    EndSessionRequest, GetJourneyStateRequest, GetSessionRequest, ListTimelineRequest,
    RecordTouchpointRequest, RecordTouchpointsRequest, ResumeSessionRequest, Session,
    TouchpointType, UpdateSessionRequest,
};
use cairn_contract::profile::v1::profile_service_client::ProfileServiceClient;
use cairn_contract::profile::v1::{
    Consent, GetProfileRequest, ListConsentsRequest, Preferences, RecordConsentRequest,
    UpdatePreferencesRequest,
};
use cairn_contract::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
use cairn_contract::recommendation::v1::{
    Action, ActionKind, CreateActionRequest, DecideRequest, GetDecisionRequest,
    ListDecisionsRequest, OutcomeType, RecordOutcomeRequest,
};
use cairn_runtime::ServiceKind;
use cairn_runtime::auth::documented_customer_methods;
use cairn_tests::{TestApp, by_identifier, identifier, spawn_app, touchpoint};
use tonic::{Code, Status};

use super::raw::{call, every_method};

/// Every scope a front end's token may carry.
const FRONT_END_SCOPES: &[&str] = &[
    "profile.read",
    "profile.write",
    "journey.ingest",
    "journey.read",
    "journey.write",
    "recommendation.decide",
    "recommendation.read",
    "recommendation.outcome",
    "feedback.read",
    "feedback.write",
    "feedback.respond",
];

fn by_id(profile_id: &str) -> Option<CustomerRef> {
    Some(CustomerRef {
        customer: Some(customer_ref::Customer::ProfileId(profile_id.into())),
    })
}

/// A customer in the test: profile id, email, phone and a CRM id.
struct Person {
    id: String,
    email: String,
}

async fn person(app: &TestApp, name: &str) -> Person {
    let email = format!("{name}@example.com");
    let id = app
        .create_profile(
            vec![
                identifier(IdentifierType::Email, &email),
                identifier(IdentifierType::CrmId, &format!("crm-{name}")),
            ],
            &[("plan", "gold")],
        )
        .await;
    Person { id, email }
}

/// The references a customer's token might try for someone else's data.
fn references_of_others(bob: &Person) -> Vec<(String, Option<CustomerRef>)> {
    vec![
        ("bob's profile id".into(), by_id(&bob.id)),
        (
            "bob's email".into(),
            Some(by_identifier(identifier(IdentifierType::Email, &bob.email))),
        ),
        (
            "bob's CRM id".into(),
            Some(by_identifier(identifier(IdentifierType::CrmId, "crm-bob"))),
        ),
        (
            "an unknown email".into(),
            Some(by_identifier(identifier(
                IdentifierType::Email,
                "nobody@example.com",
            ))),
        ),
        (
            "an unknown profile id".into(),
            by_id(&uuid::Uuid::now_v7().to_string()),
        ),
    ]
}

/// Asserts that `outcome` is a refusal, never data.
#[track_caller]
fn refused<T: std::fmt::Debug>(what: &str, outcome: Result<tonic::Response<T>, Status>) {
    match outcome {
        Ok(response) => panic!("{what}: a customer's token got data: {response:?}"),
        Err(status) => assert!(
            matches!(status.code(), Code::PermissionDenied | Code::NotFound),
            "{what}: {status:?}"
        ),
    }
}

#[tokio::test]
async fn a_customer_token_reaches_only_its_customers_data_on_every_rpc_it_may_call() {
    let app = spawn_app().await;
    let alice = person(&app, "alice").await;
    let bob = person(&app, "bob").await;

    // Bob's data, written by the operator's systems.
    let mut journeys = app.journey().await;
    journeys
        .record_touchpoint(RecordTouchpointRequest {
            touchpoint: Some(touchpoint(
                "bob-visit",
                identifier(IdentifierType::Email, &bob.email),
                Channel::Web,
                TouchpointType::PageView,
                5,
                &[("page", "/plans")],
            )),
        })
        .await
        .unwrap();
    journeys
        .resume_session(ResumeSessionRequest {
            customer: by_id(&bob.id),
            channel: Channel::Web as i32,
        })
        .await
        .unwrap();
    let mut recommendations = RecommendationServiceClient::new(
        app.authed(
            ServiceKind::Recommendation,
            &["recommendation.write", "recommendation.decide"],
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
    let bobs_decision = recommendations
        .decide(DecideRequest {
            customer: by_id(&bob.id),
            channel: Channel::Web as i32,
            request_id: "bob-decision".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    // Alice's front end.
    let token = app.customer_token(&alice.id, FRONT_END_SCOPES);
    let mut profile = ProfileServiceClient::new(app.with_token(ServiceKind::Profile, &token).await);
    let mut journey = JourneyServiceClient::new(app.with_token(ServiceKind::Journey, &token).await);
    let mut recommendation =
        RecommendationServiceClient::new(app.with_token(ServiceKind::Recommendation, &token).await);

    // Her own data: every RPC works (the control that the refusals below
    // are about whose data, not about the token).
    let own = by_id(&alice.id);
    let own_email = Some(by_identifier(identifier(
        IdentifierType::Email,
        &alice.email,
    )));
    let got = profile
        .get_profile(GetProfileRequest {
            customer: own_email.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.profile.unwrap().profile_id, alice.id);
    let consent = |customer: Option<CustomerRef>| RecordConsentRequest {
        customer,
        consent: Some(Consent {
            purpose: "marketing".into(),
            channel: Channel::Email as i32,
            granted: true,
            source: "app".into(),
            ..Default::default()
        }),
    };
    profile.record_consent(consent(own.clone())).await.unwrap();
    profile
        .list_consents(ListConsentsRequest {
            customer: own.clone(),
        })
        .await
        .unwrap();
    let preferences = |customer: Option<CustomerRef>| UpdatePreferencesRequest {
        customer,
        preferences: Some(Preferences {
            language: "sv-SE".into(),
            ..Default::default()
        }),
    };
    profile
        .update_preferences(preferences(own.clone()))
        .await
        .unwrap();
    let own_touchpoint = |id: &str| {
        touchpoint(
            id,
            identifier(IdentifierType::Email, &alice.email),
            Channel::MobileApp,
            TouchpointType::PageView,
            1,
            &[("page", "/home")],
        )
    };
    journey
        .record_touchpoint(RecordTouchpointRequest {
            touchpoint: Some(own_touchpoint("alice-visit")),
        })
        .await
        .unwrap();
    let timeline = journey
        .list_timeline(ListTimelineRequest {
            customer: own.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(timeline.touchpoints.len(), 1, "only her own touchpoint");
    journey
        .resume_session(ResumeSessionRequest {
            customer: own.clone(),
            channel: Channel::MobileApp as i32,
        })
        .await
        .unwrap();
    journey
        .get_session(GetSessionRequest {
            customer: own.clone(),
        })
        .await
        .unwrap();
    journey
        .update_session(UpdateSessionRequest {
            customer: own.clone(),
            channel: Channel::MobileApp as i32,
            session: Some(Session {
                ..Default::default()
            }),
            update_mask: None,
        })
        .await
        .unwrap();
    match journey
        .get_journey_state(GetJourneyStateRequest {
            customer: own.clone(),
            journey_id: "onboarding".into(),
        })
        .await
    {
        Ok(_) => {}
        Err(status) => assert_eq!(status.code(), Code::NotFound, "{status:?}"),
    }
    let decision = recommendation
        .decide(DecideRequest {
            customer: own.clone(),
            channel: Channel::Web as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    recommendation
        .get_decision(GetDecisionRequest {
            decision_id: decision.decision_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let listed = recommendation
        .list_decisions(ListDecisionsRequest {
            customer: own.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.decisions.len(), 1, "only her own decision");
    recommendation
        .record_outcome(RecordOutcomeRequest {
            decision_id: decision.decision_id.clone(),
            action_id: "upgrade".into(),
            outcome: OutcomeType::Accepted as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    journey
        .end_session(EndSessionRequest {
            customer: own.clone(),
        })
        .await
        .unwrap();

    // Everyone else's: every RPC she may call, every way of naming them.
    let mut tries = 0;
    for (what, other) in references_of_others(&bob) {
        let what = what.as_str();
        refused(
            what,
            profile
                .get_profile(GetProfileRequest {
                    customer: other.clone(),
                })
                .await,
        );
        refused(what, profile.record_consent(consent(other.clone())).await);
        refused(
            what,
            profile
                .list_consents(ListConsentsRequest {
                    customer: other.clone(),
                })
                .await,
        );
        refused(
            what,
            profile.update_preferences(preferences(other.clone())).await,
        );
        let mut foreign = own_touchpoint(&format!("alice-for-{what}"));
        foreign.customer = other.clone();
        refused(
            what,
            journey
                .record_touchpoint(RecordTouchpointRequest {
                    touchpoint: Some(foreign.clone()),
                })
                .await,
        );
        let batch = journey
            .record_touchpoints(RecordTouchpointsRequest {
                touchpoints: vec![foreign],
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            batch.results.iter().all(|result| matches!(
                Code::from_i32(result.error_code),
                Code::PermissionDenied | Code::NotFound
            ) && result.profile_id.is_empty()),
            "{what}: {batch:?}"
        );
        refused(
            what,
            journey
                .list_timeline(ListTimelineRequest {
                    customer: other.clone(),
                    ..Default::default()
                })
                .await,
        );
        refused(
            what,
            journey
                .get_session(GetSessionRequest {
                    customer: other.clone(),
                })
                .await,
        );
        refused(
            what,
            journey
                .resume_session(ResumeSessionRequest {
                    customer: other.clone(),
                    channel: Channel::MobileApp as i32,
                })
                .await,
        );
        refused(
            what,
            journey
                .update_session(UpdateSessionRequest {
                    customer: other.clone(),
                    channel: Channel::MobileApp as i32,
                    session: Some(Session::default()),
                    update_mask: None,
                })
                .await,
        );
        refused(
            what,
            journey
                .end_session(EndSessionRequest {
                    customer: other.clone(),
                })
                .await,
        );
        refused(
            what,
            journey
                .get_journey_state(GetJourneyStateRequest {
                    customer: other.clone(),
                    journey_id: "onboarding".into(),
                })
                .await,
        );
        refused(
            what,
            recommendation
                .decide(DecideRequest {
                    customer: other.clone(),
                    channel: Channel::Web as i32,
                    ..Default::default()
                })
                .await,
        );
        refused(
            what,
            recommendation
                .list_decisions(ListDecisionsRequest {
                    customer: other.clone(),
                    ..Default::default()
                })
                .await,
        );
        tries += 14;
    }
    // Bob's records by their ids.
    refused(
        "bob's decision",
        recommendation
            .get_decision(GetDecisionRequest {
                decision_id: bobs_decision.decision_id.clone(),
                ..Default::default()
            })
            .await,
    );
    refused(
        "an outcome of bob's decision",
        recommendation
            .record_outcome(RecordOutcomeRequest {
                decision_id: bobs_decision.decision_id.clone(),
                action_id: "upgrade".into(),
                outcome: OutcomeType::Declined as i32,
                ..Default::default()
            })
            .await,
    );
    refused(
        "bob's request id replayed for bob",
        recommendation
            .decide(DecideRequest {
                customer: by_id(&bob.id),
                channel: Channel::Web as i32,
                request_id: "bob-decision".into(),
                ..Default::default()
            })
            .await,
    );
    refused(
        "all decisions",
        recommendation
            .list_decisions(ListDecisionsRequest::default())
            .await,
    );
    // Bob's touchpoint id re-sent as hers: her ids are her own namespace, so
    // it is a new touchpoint of hers, never a retry answer handing back his.
    let resent = journey
        .record_touchpoint(RecordTouchpointRequest {
            touchpoint: Some(own_touchpoint("bob-visit")),
        })
        .await
        .expect("bob's touchpoint id is a new id of hers")
        .into_inner();
    assert!(!resent.duplicate, "bob's touchpoint id: {resent:?}");
    assert_eq!(resent.touchpoint.unwrap().profile_id, alice.id);
    tries += 5;
    assert!(tries >= 70);
    println!("tries with other customers' data: {tries}, data handed out: 0");

    // Bob's data is untouched by the refused writes.
    let bobs_consents = app
        .profile()
        .await
        .list_consents(ListConsentsRequest {
            customer: by_id(&bob.id),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(bobs_consents.history.is_empty(), "{bobs_consents:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_customer_token_is_refused_by_every_rpc_not_open_to_customers() {
    let app = spawn_app().await;
    let alice = person(&app, "alice").await;
    let every_scope: Vec<&str> = every_method()
        .iter()
        .flat_map(|method| {
            let (service, _) = method.path[1..].split_once('/').unwrap();
            cairn_runtime::auth::documented_scopes(service)
                .into_iter()
                .map(|(_, scope)| scope)
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let token = app.customer_token(&alice.id, &every_scope);
    let mut closed = 0;
    let mut open = 0;
    for method in every_method() {
        let (service, name) = method.path[1..].split_once('/').unwrap();
        if documented_customer_methods(service)
            .iter()
            .any(|m| m == name)
        {
            open += 1;
            continue;
        }
        for &kind in &method.served_by {
            let status = call(&app, kind, &method.path, Some(&token), Vec::new())
                .await
                .expect_err(&format!("{} took a customer's token", method.path));
            assert_eq!(status.code(), Code::PermissionDenied, "{}", method.path);
            assert!(
                status.message().contains("not open to a customer's token"),
                "{}: {}",
                method.path,
                status.message()
            );
            closed += 1;
        }
    }
    assert!(open >= 16 && closed > 80, "open {open}, closed {closed}");
    println!("methods open to a customer's token: {open}; calls refused elsewhere: {closed}");
    app.stop().await;
}

#[tokio::test]
async fn a_customer_token_reaches_only_its_own_tickets_and_survey_answers() {
    use cairn_contract::feedback::v1 as feedback;
    use cairn_contract::feedback::v1::feedback_service_client::FeedbackServiceClient;

    let app = spawn_app().await;
    let alice = person(&app, "alice").await;
    let bob = person(&app, "bob").await;
    let mut operator = FeedbackServiceClient::new(
        app.authed(
            ServiceKind::Feedback,
            &["feedback.read", "feedback.write", "feedback.respond"],
        )
        .await,
    );
    let ticket = |customer: Option<CustomerRef>| feedback::Ticket {
        customer,
        channel: Channel::Web as i32,
        category: "network".into(),
        description: "no signal at home".into(),
        ..Default::default()
    };
    let bobs_ticket = operator
        .create_ticket(feedback::CreateTicketRequest {
            ticket: Some(ticket(by_id(&bob.id))),
            request_id: "bob-ticket".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    let survey_id = operator
        .create_survey(feedback::CreateSurveyRequest {
            survey: Some(feedback::Survey {
                display_name: "After the call".into(),
                questions: vec![feedback::Question {
                    question_id: "nps".into(),
                    texts: [(
                        "en".to_string(),
                        "How likely are you to recommend us?".to_string(),
                    )]
                    .into(),
                    r#type: feedback::QuestionType::Nps as i32,
                    ..Default::default()
                }],
                channel: Channel::Email as i32,
                consent_purpose: "service".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .survey
        .unwrap()
        .survey_id;
    let answer =
        |customer: Option<CustomerRef>, request_id: &str| feedback::SubmitSurveyResponseRequest {
            response: Some(feedback::SurveyResponse {
                survey_id: survey_id.clone(),
                customer,
                channel: Channel::Email as i32,
                answers: vec![feedback::Answer {
                    question_id: "nps".into(),
                    value: Some(feedback::answer::Value::Score(9)),
                }],
                ..Default::default()
            }),
            request_id: request_id.into(),
        };
    operator
        .submit_survey_response(answer(by_id(&bob.id), "bob-answer"))
        .await
        .unwrap();

    let token = app.customer_token(&alice.id, FRONT_END_SCOPES);
    let mut front = FeedbackServiceClient::new(app.with_token(ServiceKind::Feedback, &token).await);
    // Her own: a ticket, reading it back, listing hers.
    let own = front
        .create_ticket(feedback::CreateTicketRequest {
            ticket: Some(ticket(by_id(&alice.id))),
            request_id: "alice-ticket".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    front
        .get_ticket(feedback::GetTicketRequest {
            ticket_id: own.ticket_id.clone(),
        })
        .await
        .unwrap();
    let listed = front
        .list_tickets(feedback::ListTicketsRequest {
            customer: by_id(&alice.id),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tickets.len(), 1, "only her own ticket");
    // (Her own answer is below: a customer's token answers a survey it was
    // not invited to once a day.)

    // Everyone else's.
    for (what, other) in references_of_others(&bob) {
        let what = what.as_str();
        refused(
            what,
            front
                .create_ticket(feedback::CreateTicketRequest {
                    ticket: Some(ticket(other.clone())),
                    request_id: String::new(),
                })
                .await,
        );
        refused(
            what,
            front
                .list_tickets(feedback::ListTicketsRequest {
                    customer: other.clone(),
                    ..Default::default()
                })
                .await,
        );
        refused(
            what,
            front
                .submit_survey_response(answer(other.clone(), &format!("alice-as-{what}")))
                .await,
        );
    }
    refused(
        "bob's ticket",
        front
            .get_ticket(feedback::GetTicketRequest {
                ticket_id: bobs_ticket.ticket_id.clone(),
            })
            .await,
    );
    refused(
        "every ticket",
        front
            .list_tickets(feedback::ListTicketsRequest::default())
            .await,
    );
    // Bob's idempotency keys mean nothing to her token (issue 14: keys are
    // kept apart per customer): each is a new key, for her own data.
    let hers = front
        .create_ticket(feedback::CreateTicketRequest {
            ticket: Some(ticket(by_id(&alice.id))),
            request_id: "bob-ticket".into(),
        })
        .await
        .expect("bob's ticket request id is a new key for her")
        .into_inner()
        .ticket
        .unwrap();
    assert_ne!(hers.ticket_id, bobs_ticket.ticket_id);
    assert_eq!(hers.profile_id, alice.id);
    let her_answer = front
        .submit_survey_response(answer(by_id(&alice.id), "bob-answer"))
        .await
        .expect("bob's answer request id is a new key for her")
        .into_inner();
    assert!(!her_answer.duplicate);
    assert_eq!(her_answer.response.unwrap().profile_id, alice.id);
    let bobs = operator
        .list_tickets(feedback::ListTicketsRequest {
            customer: by_id(&bob.id),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bobs.tickets.len(), 1, "nothing was filed for bob");
    app.stop().await;
}
