//! What a customer's own token may not set, and what it may not learn.
//! The operator's fields of a ticket (its ticketing-system id, status,
//! priority, severity, due time, skills) are refused on a customer's token,
//! naming the field. Another customer's invitation id, idempotency key or
//! external id is answered exactly as one that never existed: keys are kept
//! apart per customer, so one customer's key never meets another's.

use cairn_contract::common::v1::{Channel, CustomerRef, customer_ref};
use cairn_contract::feedback::v1 as pb;
use cairn_contract::feedback::v1::feedback_service_client::FeedbackServiceClient;
use cairn_contract::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
use cairn_contract::recommendation::v1::{Action, ActionKind, CreateActionRequest, DecideRequest};
use cairn_runtime::ServiceKind;
use cairn_tests::{AuthedChannel, TestApp, spawn_app};
use tonic::{Code, Status};

use crate::feedback::{create_survey, feedback, new_customer, score, spawn_feedback, survey};

fn by_id(profile_id: &str) -> Option<CustomerRef> {
    Some(CustomerRef {
        customer: Some(customer_ref::Customer::ProfileId(profile_id.into())),
    })
}

/// A feedback client with `profile_id`'s own token.
async fn front_end(app: &TestApp, profile_id: &str) -> FeedbackServiceClient<AuthedChannel> {
    let token = app.customer_token(
        profile_id,
        &["feedback.read", "feedback.write", "feedback.respond"],
    );
    FeedbackServiceClient::new(app.with_token(ServiceKind::Feedback, &token).await)
}

fn ticket(profile_id: &str) -> pb::Ticket {
    pb::Ticket {
        customer: by_id(profile_id),
        channel: Channel::MobileApp as i32,
        category: "billing".into(),
        description: "charged twice".into(),
        ..Default::default()
    }
}

async fn open(
    client: &mut FeedbackServiceClient<AuthedChannel>,
    ticket: pb::Ticket,
    request_id: &str,
) -> Result<pb::Ticket, Status> {
    client
        .create_ticket(pb::CreateTicketRequest {
            ticket: Some(ticket),
            request_id: request_id.into(),
        })
        .await
        .map(|response| response.into_inner().ticket.unwrap())
}

#[tokio::test]
async fn a_customer_token_cannot_set_the_operators_fields_of_a_ticket() {
    let (app, _budget) = spawn_feedback().await;
    let alice = new_customer(&app, "crm-alice").await;
    let mut front = front_end(&app, &alice).await;
    let mut operator = feedback(&app).await;
    let due = prost_types::Timestamp::from(std::time::SystemTime::now());
    let tries: Vec<(&str, pb::Ticket)> = vec![
        (
            "ticket.external_id",
            pb::Ticket {
                external_id: "TT-4242".into(),
                ..ticket(&alice)
            },
        ),
        (
            "ticket.status",
            pb::Ticket {
                status: pb::TicketStatus::Resolved as i32,
                ..ticket(&alice)
            },
        ),
        (
            "ticket.priority",
            pb::Ticket {
                priority: pb::TicketPriority::Critical as i32,
                ..ticket(&alice)
            },
        ),
        (
            "ticket.severity",
            pb::Ticket {
                severity: "critical".into(),
                ..ticket(&alice)
            },
        ),
        (
            "ticket.due_time",
            pb::Ticket {
                due_time: Some(due),
                ..ticket(&alice)
            },
        ),
        (
            "ticket.required_skills",
            pb::Ticket {
                required_skills: vec!["vip".into()],
                ..ticket(&alice)
            },
        ),
    ];
    for (field, attempt) in tries {
        let refused = open(&mut front, attempt, "")
            .await
            .expect_err("an operator's field on a customer's token");
        assert_eq!(
            refused.code(),
            Code::PermissionDenied,
            "{field}: {refused:?}"
        );
        assert!(
            refused.message().contains(field),
            "the refusal names {field}: {}",
            refused.message()
        );
    }
    let listed = operator
        .list_tickets(pb::ListTicketsRequest {
            customer: by_id(&alice),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.tickets.is_empty(), "{:?}", listed.tickets);

    // Her plain ticket is opened as the operator would have it wait.
    let own = open(&mut front, ticket(&alice), "").await.unwrap();
    assert_eq!(own.status, pb::TicketStatus::Acknowledged as i32);
    assert_eq!(own.priority, pb::TicketPriority::Normal as i32);
    assert!(!own.first_contact_resolution);
    // And the real ticket with that external id still comes in.
    let imported = open(
        &mut operator,
        pb::Ticket {
            external_id: "TT-4242".into(),
            ..ticket(&alice)
        },
        "",
    )
    .await
    .unwrap();
    let found = operator
        .get_ticket(pb::GetTicketRequest {
            ticket_id: "external:TT-4242".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(found.ticket_id, imported.ticket_id);
    app.stop().await;
}

#[tokio::test]
async fn another_customers_invitation_keys_and_external_ids_are_answered_as_unknown_ones() {
    let (app, _budget) = spawn_feedback().await;
    let alice = new_customer(&app, "crm-alice").await;
    let bob = new_customer(&app, "crm-bob").await;
    let mut operator = feedback(&app).await;
    let survey_id = create_survey(&mut operator, survey("After the call")).await;
    let invited = operator
        .invite_to_survey(pb::InviteToSurveyRequest {
            survey_id: survey_id.clone(),
            customer: by_id(&bob),
            request_id: "invite-bob".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(invited.invited, "{invited:?}");
    open(
        &mut operator,
        pb::Ticket {
            external_id: "TT-bob".into(),
            ..ticket(&bob)
        },
        "",
    )
    .await
    .unwrap();
    let mut bobs_front = front_end(&app, &bob).await;
    let mut alices_front = front_end(&app, &alice).await;
    let answer =
        |profile_id: &str, invitation_id: &str, request_id: &str| pb::SubmitSurveyResponseRequest {
            response: Some(pb::SurveyResponse {
                survey_id: survey_id.clone(),
                customer: by_id(profile_id),
                invitation_id: invitation_id.into(),
                answers: vec![score("nps", 8)],
                ..Default::default()
            }),
            request_id: request_id.into(),
        };

    // Bob's invitation and an invitation that does not exist, answered for
    // Alice through `client` under the request ids `keys`: one answer.
    let alike = async |client: &mut FeedbackServiceClient<AuthedChannel>, keys: [&str; 2]| {
        let theirs = client
            .submit_survey_response(answer(&alice, &invited.invitation_id, keys[0]))
            .await
            .expect_err("another customer's invitation");
        let none = client
            .submit_survey_response(answer(&alice, &uuid::Uuid::now_v7().to_string(), keys[1]))
            .await
            .expect_err("an unknown invitation");
        assert_eq!(
            (theirs.code(), theirs.message()),
            (none.code(), none.message())
        );
        none
    };
    alike(&mut alices_front, ["a-1", "a-2"]).await;
    // The operator's systems get one answer for both as well.
    let none = alike(&mut operator, ["o-1", "o-2"]).await;
    assert_eq!(none.code(), Code::NotFound, "{none:?}");

    // Keys Bob's own front end used are new keys for Alice's.
    let bobs_answer = bobs_front
        .submit_survey_response(answer(&bob, "", "shared-key"))
        .await
        .unwrap()
        .into_inner();
    let alices_answer = alices_front
        .submit_survey_response(answer(&alice, "", "shared-key"))
        .await
        .expect("a key another customer used answers like a new one")
        .into_inner();
    assert!(!alices_answer.duplicate);
    assert_eq!(alices_answer.response.as_ref().unwrap().profile_id, alice);
    let again = alices_front
        .submit_survey_response(answer(&alice, "", "shared-key"))
        .await
        .unwrap()
        .into_inner();
    assert!(again.duplicate, "her own key still counts once");
    assert_eq!(
        again.response.unwrap().response_id,
        alices_answer.response.unwrap().response_id
    );
    let bobs_ticket = open(&mut bobs_front, ticket(&bob), "shared-ticket")
        .await
        .unwrap();
    let alices_ticket = open(&mut alices_front, ticket(&alice), "shared-ticket")
        .await
        .expect("a ticket key another customer used answers like a new one");
    assert_ne!(alices_ticket.ticket_id, bobs_ticket.ticket_id);
    assert_eq!(alices_ticket.profile_id, alice);
    assert_eq!(bobs_answer.response.unwrap().profile_id, bob);

    // External ids: Bob's and one nobody used get one answer.
    let theirs = open(
        &mut alices_front,
        pb::Ticket {
            external_id: "TT-bob".into(),
            ..ticket(&alice)
        },
        "",
    )
    .await
    .expect_err("an external id on a customer's token");
    let none = open(
        &mut alices_front,
        pb::Ticket {
            external_id: "TT-nobody".into(),
            ..ticket(&alice)
        },
        "",
    )
    .await
    .expect_err("an external id on a customer's token");
    assert_eq!(theirs.code(), none.code());
    assert_eq!(
        theirs.message().replace("TT-bob", ""),
        none.message().replace("TT-nobody", "")
    );
    app.stop().await;
}

#[tokio::test]
async fn another_customers_decide_request_id_is_a_new_key_for_a_customer_token() {
    let app = spawn_app().await;
    let alice = new_customer(&app, "crm-alice").await;
    let bob = new_customer(&app, "crm-bob").await;
    let mut operator = RecommendationServiceClient::new(
        app.authed(ServiceKind::Recommendation, &["recommendation.write"])
            .await,
    );
    operator
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
    let client = |profile_id: String| {
        let app = &app;
        async move {
            let token = app.customer_token(&profile_id, &["recommendation.decide"]);
            RecommendationServiceClient::new(
                app.with_token(ServiceKind::Recommendation, &token).await,
            )
        }
    };
    let decide = |profile_id: &str| DecideRequest {
        customer: by_id(profile_id),
        channel: Channel::Web as i32,
        request_id: "checkout-page".into(),
        ..Default::default()
    };
    let bobs = client(bob.clone())
        .await
        .decide(decide(&bob))
        .await
        .unwrap()
        .into_inner();
    let mut alices_client = client(alice.clone()).await;
    let alices = alices_client
        .decide(decide(&alice))
        .await
        .expect("a key another customer used answers like a new one")
        .into_inner();
    assert_ne!(alices.decision_id, bobs.decision_id);
    // Her own retry is still answered with her first decision.
    let again = alices_client
        .decide(decide(&alice))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.decision_id, alices.decision_id);
    app.stop().await;
}

/// A customer's own token may not ask Decide to `explain` (the left-out
/// candidates list the operator's whole catalogue, with internal names and
/// targeting rules) nor read a decision in DECISION_VIEW_FULL (features,
/// every candidate's score, shadow choices): PERMISSION_DENIED naming what
/// it asked for. The plain decision and its basic view stay open to it.
#[tokio::test]
async fn a_customer_token_may_not_see_the_operators_catalogue_or_model() {
    use cairn_contract::recommendation::v1::{
        DecisionView, GetDecisionRequest, ListDecisionsRequest,
    };
    let app = spawn_app().await;
    let alice = new_customer(&app, "crm-alice-explain").await;
    let mut operator = RecommendationServiceClient::new(
        app.authed(ServiceKind::Recommendation, &["recommendation.write"])
            .await,
    );
    operator
        .create_action(CreateActionRequest {
            action: Some(Action {
                action_id: "vip-save".into(),
                name: "VIP churn save (internal: gold only)".into(),
                kind: ActionKind::SalesOffer as i32,
                category: "retention".into(),
                channels: vec![Channel::Web as i32],
                eligibility_rule: "attributes.plan == \"gold\"".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let token = app.customer_token(&alice, &["recommendation.decide", "recommendation.read"]);
    let mut front =
        RecommendationServiceClient::new(app.with_token(ServiceKind::Recommendation, &token).await);
    let decide = |explain: bool| DecideRequest {
        customer: by_id(&alice),
        channel: Channel::Web as i32,
        explain,
        ..Default::default()
    };
    let refused = front.decide(decide(true)).await.expect_err("explain");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("explain"),
        "{}",
        refused.message()
    );
    let decided = front.decide(decide(false)).await.unwrap().into_inner();
    assert!(decided.left_out.is_empty());
    let get = |view: DecisionView| GetDecisionRequest {
        decision_id: decided.decision_id.clone(),
        view: view as i32,
    };
    let full = front
        .get_decision(get(DecisionView::Full))
        .await
        .expect_err("the full view");
    assert_eq!(full.code(), Code::PermissionDenied, "{full:?}");
    assert!(
        full.message().contains("DECISION_VIEW_FULL"),
        "{}",
        full.message()
    );
    front.get_decision(get(DecisionView::Basic)).await.unwrap();
    let listed = front
        .list_decisions(ListDecisionsRequest {
            customer: by_id(&alice),
            view: DecisionView::Full as i32,
            ..Default::default()
        })
        .await
        .expect_err("the full view of a list");
    assert_eq!(listed.code(), Code::PermissionDenied, "{listed:?}");
    // The operator's agents' screens still get the explanation.
    let mut agent = RecommendationServiceClient::new(
        app.authed(ServiceKind::Recommendation, &["recommendation.decide"])
            .await,
    );
    let explained = agent.decide(decide(true)).await.unwrap().into_inner();
    assert_eq!(explained.left_out.len(), 1, "{explained:?}");
    app.stop().await;
}

/// A customer's own token answers a survey it was not invited to once per
/// period (a day, or the survey's minimum period when longer): a second
/// answer under a new request_id is ALREADY_EXISTS, also when ten arrive at
/// once, so one customer cannot stuff a survey's NPS or raise a follow-up
/// task with every call. A repeated request_id still returns the stored
/// answer, and the operator's systems are not limited.
#[tokio::test]
async fn a_customer_token_answers_an_uninvited_survey_once_per_period() {
    let (app, _budget) = spawn_feedback().await;
    let bob = new_customer(&app, "crm-bob-stuffing").await;
    let carol = new_customer(&app, "crm-carol-stuffing").await;
    let mut operator = feedback(&app).await;
    let survey_id = create_survey(&mut operator, survey("Rate our app")).await;
    let answer = |profile_id: &str, request_id: &str| pb::SubmitSurveyResponseRequest {
        response: Some(pb::SurveyResponse {
            survey_id: survey_id.clone(),
            customer: by_id(profile_id),
            answers: vec![score("nps", 0)],
            ..Default::default()
        }),
        request_id: request_id.into(),
    };
    let mut bobs_front = front_end(&app, &bob).await;
    let first = bobs_front
        .submit_survey_response(answer(&bob, "b-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.duplicate);
    let again = bobs_front
        .submit_survey_response(answer(&bob, "b-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(again.duplicate, "the same request_id returns the answer");
    for key in ["b-2", "b-3"] {
        let refused = bobs_front
            .submit_survey_response(answer(&bob, key))
            .await
            .expect_err("a second uninvited answer in the period");
        assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
        assert!(
            refused.message().contains("again from"),
            "{}",
            refused.message()
        );
    }

    // Ten at once from another customer's token: one is stored.
    let mut calls = Vec::new();
    for index in 0..10 {
        let mut front = front_end(&app, &carol).await;
        let request = answer(&carol, &format!("c-{index}"));
        calls.push(tokio::spawn(async move {
            front.submit_survey_response(request).await
        }));
    }
    let mut stored = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => stored += 1,
            Err(status) => assert_eq!(status.code(), Code::AlreadyExists, "{status:?}"),
        }
    }
    assert_eq!(stored, 1, "ten concurrent uninvited answers");

    // The operator's systems (an IVR, a store tablet) are not limited.
    operator
        .submit_survey_response(answer(&bob, "ivr-1"))
        .await
        .unwrap();
    let listed = |customer: &str| pb::ListSurveyResponsesRequest {
        survey_id: survey_id.clone(),
        customer: by_id(customer),
        ..Default::default()
    };
    let bobs = operator
        .list_survey_responses(listed(&bob))
        .await
        .unwrap()
        .into_inner()
        .responses;
    assert_eq!(bobs.len(), 2, "bob's own answer and the IVR's");
    let carols = operator
        .list_survey_responses(listed(&carol))
        .await
        .unwrap()
        .into_inner()
        .responses;
    assert_eq!(carols.len(), 1);
    app.stop().await;
}
