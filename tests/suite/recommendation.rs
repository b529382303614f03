//! Next best action: the catalogue, Decide within consent and the contact
//! policy (caps, quiet hours, cool-down, complaints, volume limits), the
//! shared contact budget, outcomes, learning that is shared by replicas and
//! survives restarts, offline evaluation, shadow policies and erasure.

use std::sync::Arc;
use std::time::Duration;

use cairn_contract::common::v1::{Channel, CustomerRef, IdentifierType, customer_ref};
use cairn_contract::events::v1::change_event::Payload;
use cairn_contract::events::v1::{TicketChanged, TouchpointRecorded};
use cairn_contract::profile::v1::{
    Consent, ErasePersonalDataRequest, Preferences, RecordConsentRequest, UpdatePreferencesRequest,
};
use cairn_contract::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
use cairn_contract::recommendation::v1::*;
use cairn_runtime::ServiceKind;
use cairn_runtime::bus::{EventBus, RedisBus};
use cairn_runtime::outbox;
use cairn_tests::{
    AuthedChannel, Options, TestApp, eventually, spawn_app, spawn_app_with, spawn_on,
};
use chrono::{Timelike, Utc};
use prost_types::FieldMask;
use tonic::Code;
use tonic_types::StatusExt;

type Client = RecommendationServiceClient<AuthedChannel>;

async fn client(app: &TestApp) -> Client {
    RecommendationServiceClient::new(
        app.authed(
            ServiceKind::Recommendation,
            &[
                "recommendation.read",
                "recommendation.write",
                "recommendation.decide",
                "recommendation.outcome",
            ],
        )
        .await,
    )
}

fn by_id(profile_id: &str) -> Option<CustomerRef> {
    Some(CustomerRef {
        customer: Some(customer_ref::Customer::ProfileId(profile_id.into())),
    })
}

/// A known customer with `purpose` consent granted on `channels`.
async fn customer(app: &TestApp, crm: &str, purpose: &str, channels: &[Channel]) -> String {
    let id = app
        .create_profile(
            vec![cairn_tests::identifier(IdentifierType::CrmId, crm)],
            &[("plan", "gold")],
        )
        .await;
    for channel in channels {
        consent(app, &id, purpose, *channel, true).await;
    }
    id
}

async fn consent(app: &TestApp, profile_id: &str, purpose: &str, channel: Channel, granted: bool) {
    app.profile()
        .await
        .record_consent(RecordConsentRequest {
            customer: by_id(profile_id),
            consent: Some(Consent {
                purpose: purpose.into(),
                channel: channel as i32,
                granted,
                source: "web_form".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
}

fn offer(id: &str, kind: ActionKind, channels: &[Channel]) -> Action {
    Action {
        action_id: id.into(),
        name: format!("Offer {id}"),
        kind: kind as i32,
        category: "upgrade".into(),
        channels: channels.iter().map(|c| *c as i32).collect(),
        ..Default::default()
    }
}

async fn create(client: &mut Client, action: Action) -> Action {
    client
        .create_action(CreateActionRequest {
            action: Some(action),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .action
        .unwrap()
}

async fn decide(client: &mut Client, profile_id: &str, channel: Channel) -> DecideResponse {
    decide_many(client, profile_id, channel, 1).await
}

async fn decide_many(
    client: &mut Client,
    profile_id: &str,
    channel: Channel,
    max_actions: i32,
) -> DecideResponse {
    client
        .decide(DecideRequest {
            customer: by_id(profile_id),
            channel: channel as i32,
            max_actions,
            explain: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

fn chosen(response: &DecideResponse) -> Vec<String> {
    response
        .actions
        .iter()
        .map(|action| action.action.as_ref().unwrap().action_id.clone())
        .collect()
}

fn reason_of(response: &DecideResponse, action_id: &str) -> (ExclusionReason, String) {
    let candidate = response
        .left_out
        .iter()
        .find(|candidate| candidate.action_id == action_id)
        .unwrap_or_else(|| panic!("{action_id} is not among the left-out: {response:?}"));
    (
        ExclusionReason::try_from(candidate.exclusion_reason).unwrap(),
        candidate.detail.clone(),
    )
}

/// No quiet hours and no all-channels cap in the contact policy, so tests
/// of other rules do not depend on the hour or on earlier contacts.
async fn relaxed(client: &mut Client) {
    without_quiet_hours(client).await;
    client
        .update_contact_policy(UpdateContactPolicyRequest {
            contact_policy: Some(ContactPolicy {
                all_channels: Some(ContactCaps::default()),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["all_channels".into()],
            }),
        })
        .await
        .unwrap();
}

/// Makes a greedy policy (upper confidence bound without exploration) live,
/// so arbitration is deterministic.
async fn greedy(client: &mut Client) {
    client
        .create_policy(CreatePolicyRequest {
            policy: Some(Policy {
                policy_id: "greedy-test".into(),
                display_name: "Greedy".into(),
                scorer: Some(ScorerConfig {
                    method: ScoringMethod::LinearUpperConfidenceBound as i32,
                    exploration: Some(0.0),
                    minimum_score: 0.0,
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    client
        .promote_policy(PromotePolicyRequest {
            policy_id: "greedy-test".into(),
            expected_live_policy_id: String::new(),
        })
        .await
        .unwrap();
}

/// No quiet hours in the contact policy, so tests do not depend on the hour.
async fn without_quiet_hours(client: &mut Client) {
    client
        .update_contact_policy(UpdateContactPolicyRequest {
            contact_policy: Some(ContactPolicy {
                quiet_hours: Some(QuietHours {
                    start_time: "00:00".into(),
                    end_time: "00:00".into(),
                }),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["quiet_hours".into()],
            }),
        })
        .await
        .unwrap();
}

fn field_violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

async fn record(
    client: &mut Client,
    decision_id: &str,
    action_id: &str,
    outcome: OutcomeType,
) -> Result<RecordOutcomeResponse, tonic::Status> {
    client
        .record_outcome(RecordOutcomeRequest {
            decision_id: decision_id.into(),
            action_id: action_id.into(),
            outcome: outcome as i32,
            ..Default::default()
        })
        .await
        .map(|response| response.into_inner())
}

async fn event_bus(app: &TestApp) -> Arc<dyn EventBus> {
    let client = redis::Client::open(cairn_tests::redis_url()).unwrap();
    let connection = redis::aio::ConnectionManager::new(client).await.unwrap();
    Arc::new(RedisBus::new(
        connection,
        &app.redis_prefix,
        app.settings.event_retention,
    ))
}

#[tokio::test]
async fn the_catalogue_keeps_actions_and_refuses_bad_ones() {
    let app = spawn_app().await;
    let mut client = client(&app).await;
    let mut upgrade = offer("upgrade-5g", ActionKind::SalesOffer, &[Channel::Web]);
    upgrade.eligibility_rule = "attributes.plan == 'gold'".into();
    upgrade.value = Some(cairn_contract::common::v1::Money {
        currency_code: "EUR".into(),
        units: 120,
        nanos: 0,
    });
    let request = CreateActionRequest {
        action: Some(upgrade.clone()),
        request_id: "create-1".into(),
    };
    let created = client
        .create_action(request.clone())
        .await
        .unwrap()
        .into_inner()
        .action
        .unwrap();
    assert_eq!(
        created.purpose, "marketing",
        "default purpose of a sales offer"
    );
    assert_eq!(created.state, ActionState::Active as i32);
    assert_eq!(created.business_priority, 50);
    // The same request again returns the first answer; another id is taken.
    let again = client.create_action(request).await.unwrap().into_inner();
    assert_eq!(again.action.unwrap().etag, created.etag);
    let taken = client
        .create_action(CreateActionRequest {
            action: Some(upgrade.clone()),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);

    // Bad input names its fields.
    let mut broken = offer("broken", ActionKind::Unspecified, &[]);
    broken.name = String::new();
    broken.eligibility_rule = "attributes.tenure_months >".into();
    let refused = client
        .create_action(CreateActionRequest {
            action: Some(broken),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let fields = field_violations(&refused);
    for field in ["action.kind", "action.name", "action.channels"] {
        assert!(fields.contains(&field.to_string()), "{field} in {fields:?}");
    }
    let mut bad_rule = offer("bad-rule", ActionKind::SalesOffer, &[Channel::Web]);
    bad_rule.eligibility_rule = "attributes.tenure_months >".into();
    let refused = client
        .create_action(CreateActionRequest {
            action: Some(bad_rule),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(field_violations(&refused), ["action.eligibility_rule"]);
    assert!(
        refused.message().contains("line 1"),
        "{}",
        refused.message()
    );
    let mut transactional_offer = offer("t", ActionKind::SalesOffer, &[Channel::Web]);
    transactional_offer.transactional = true;
    let refused = client
        .create_action(CreateActionRequest {
            action: Some(transactional_offer),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(field_violations(&refused), ["action.transactional"]);

    // Get, list with filters, update with an etag.
    create(
        &mut client,
        offer("callback", ActionKind::Service, &[Channel::CallCentre]),
    )
    .await;
    let missing = client
        .get_action(GetActionRequest {
            action_id: "nothing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let listed = client
        .list_actions(ListActionsRequest {
            channel: Channel::CallCentre as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.actions.len(), 1);
    assert_eq!(listed.actions[0].action_id, "callback");
    let page = client
        .list_actions(ListActionsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.actions[0].action_id, "upgrade-5g");
    assert!(!page.next_page_token.is_empty());
    let bad_page = client
        .list_actions(ListActionsRequest {
            page_size: 5000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(field_violations(&bad_page), ["page_size"]);

    let mut change = created.clone();
    change.name = "5G upgrade, 120 EUR".into();
    change.business_priority = 80;
    let updated = client
        .update_action(UpdateActionRequest {
            action: Some(change.clone()),
            update_mask: Some(FieldMask {
                paths: vec!["name".into(), "business_priority".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .action
        .unwrap();
    assert_eq!(updated.name, "5G upgrade, 120 EUR");
    assert_eq!(updated.business_priority, 80);
    assert_ne!(updated.etag, created.etag);
    // The old etag lost the race.
    let stale = client
        .update_action(UpdateActionRequest {
            action: Some(change.clone()),
            update_mask: Some(FieldMask {
                paths: vec!["name".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let bad_path = client
        .update_action(UpdateActionRequest {
            action: Some(updated.clone()),
            update_mask: Some(FieldMask {
                paths: vec!["kind".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(field_violations(&bad_path), ["update_mask"]);

    // Retired: readable, never chosen, never changed.
    let retired = client
        .retire_action(RetireActionRequest {
            action_id: "upgrade-5g".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .action
        .unwrap();
    assert_eq!(retired.state, ActionState::Retired as i32);
    assert!(retired.retire_time.is_some());
    let again = client
        .retire_action(RetireActionRequest {
            action_id: "upgrade-5g".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.action.unwrap().etag, retired.etag);
    let frozen = client
        .update_action(UpdateActionRequest {
            action: Some(retired),
            update_mask: Some(FieldMask {
                paths: vec!["name".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(frozen.code(), Code::FailedPrecondition);
    let anna = customer(&app, "crm-catalogue", "marketing", &[Channel::Web]).await;
    let decision = decide(&mut client, &anna, Channel::Web).await;
    assert!(decision.actions.is_empty());
    assert_eq!(
        reason_of(&decision, "upgrade-5g").0,
        ExclusionReason::Unavailable
    );
    app.stop().await;
}

#[tokio::test]
async fn consent_and_caps_really_block_and_say_why() {
    let app = spawn_app().await;
    let mut client = client(&app).await;
    without_quiet_hours(&mut client).await;
    create(
        &mut client,
        offer("family-plan", ActionKind::SalesOffer, &[Channel::Sms]),
    )
    .await;
    let anna = customer(&app, "crm-caps", "marketing", &[]).await;

    // No marketing consent on SMS: nothing, and why.
    let decision = decide(&mut client, &anna, Channel::Sms).await;
    assert!(decision.actions.is_empty());
    assert_eq!(decision.no_action_reason, NoActionReason::AllLeftOut as i32);
    let (reason, detail) = reason_of(&decision, "family-plan");
    assert_eq!(reason, ExclusionReason::NoConsent);
    assert!(detail.contains("marketing"), "{detail}");
    assert_eq!(
        decision.left_out_counts[0].reason,
        ExclusionReason::NoConsent as i32
    );

    // With consent the offer is chosen and counts one contact on SMS.
    consent(&app, &anna, "marketing", Channel::Sms, true).await;
    let decision = decide(&mut client, &anna, Channel::Sms).await;
    assert_eq!(chosen(&decision), ["family-plan"]);
    let action = &decision.actions[0];
    assert!(action.selection_probability > 0.0 && action.selection_probability <= 1.0);
    assert!(!action.explanation.as_ref().unwrap().summary.is_empty());

    // The initial policy allows one SMS a day: the next is capped.
    let decision = decide(&mut client, &anna, Channel::Sms).await;
    assert!(decision.actions.is_empty());
    let (reason, detail) = reason_of(&decision, "family-plan");
    assert_eq!(reason, ExclusionReason::Capped);
    assert_eq!(detail, "sms: 1 of 1 today");

    // The feedback service sees the same budget, and cannot take more.
    let budget = client
        .check_contact_budget(CheckContactBudgetRequest {
            customer: by_id(&anna),
            channel: Channel::Sms as i32,
            purpose: "marketing".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .budget
        .unwrap();
    assert!(!budget.allowed);
    assert_eq!(budget.reason, ExclusionReason::Capped as i32);
    assert_eq!((budget.used_today, budget.max_per_day), (1, 1));
    assert!(budget.next_allowed_time.is_some());
    let reserve = |request_id: &str, channel: Channel| ReserveContactRequest {
        customer: by_id(&anna),
        channel: channel as i32,
        purpose: "service".into(),
        reference: "survey:nps-q1".into(),
        request_id: request_id.into(),
        ..Default::default()
    };
    let refused = client
        .reserve_contact(reserve("survey-1", Channel::Sms))
        .await
        .unwrap()
        .into_inner();
    assert!(!refused.granted);
    assert_eq!(
        refused.budget.unwrap().reason,
        ExclusionReason::Capped as i32
    );

    // Email has its own cap, and the all-channels cap (2 a day) holds across them.
    let granted = client
        .reserve_contact(reserve("survey-2", Channel::Email))
        .await
        .unwrap()
        .into_inner();
    assert!(granted.granted, "{granted:?}");
    assert!(!granted.reservation_id.is_empty());
    let again = client
        .reserve_contact(reserve("survey-2", Channel::Email))
        .await
        .unwrap()
        .into_inner();
    assert!(again.duplicate && again.granted);
    assert_eq!(again.reservation_id, granted.reservation_id);
    let budget = client
        .check_contact_budget(CheckContactBudgetRequest {
            customer: by_id(&anna),
            channel: Channel::Push as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .budget
        .unwrap();
    assert!(!budget.allowed);
    assert_eq!(budget.detail, "all channels: 2 of 2 today");
    let conflict = client
        .reserve_contact(ReserveContactRequest {
            channel: Channel::Push as i32,
            ..reserve("survey-2", Channel::Email)
        })
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), Code::AlreadyExists);
    let missing = client
        .reserve_contact(ReserveContactRequest {
            request_id: String::new(),
            ..reserve("x", Channel::Email)
        })
        .await
        .unwrap_err();
    assert_eq!(field_violations(&missing), ["request_id"]);
    app.stop().await;
}

#[tokio::test]
async fn quiet_hours_hold_in_the_customers_time_zone() {
    let app = spawn_app().await;
    let mut client = client(&app).await;
    without_quiet_hours(&mut client).await;
    create(
        &mut client,
        offer(
            "tip",
            ActionKind::Information,
            &[Channel::Sms, Channel::Web],
        ),
    )
    .await;
    let anna = customer(&app, "crm-quiet", "service", &[]).await;
    // Quiet hours around now in Tokyo (UTC+9, no daylight saving).
    let tokyo_hour = (Utc::now().hour() + 9) % 24;
    app.profile()
        .await
        .update_preferences(UpdatePreferencesRequest {
            customer: by_id(&anna),
            preferences: Some(Preferences {
                time_zone: "Asia/Tokyo".into(),
                quiet_hours_start: format!("{:02}:00", (tokyo_hour + 23) % 24),
                quiet_hours_end: format!("{:02}:00", (tokyo_hour + 2) % 24),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let decision = decide(&mut client, &anna, Channel::Sms).await;
    let (reason, detail) = reason_of(&decision, "tip");
    assert_eq!(reason, ExclusionReason::QuietHours);
    assert!(detail.starts_with("quiet hours until"), "{detail}");
    // Quiet hours do not apply on the web, where the customer comes to us.
    let decision = decide(&mut client, &anna, Channel::Web).await;
    assert_eq!(chosen(&decision), ["tip"]);
    app.stop().await;
}

#[tokio::test]
async fn a_decline_starts_a_cool_down_and_service_actions_bypass_caps_not_consent() {
    let app = spawn_app().await;
    let mut client = client(&app).await;
    without_quiet_hours(&mut client).await;
    create(
        &mut client,
        offer(
            "upgrade",
            ActionKind::SalesOffer,
            &[Channel::Web, Channel::Sms],
        ),
    )
    .await;
    let mut outage = offer("outage-notice", ActionKind::Service, &[Channel::Sms]);
    outage.transactional = true;
    outage.business_priority = 1;
    create(&mut client, outage).await;
    let anna = customer(&app, "crm-cool", "marketing", &[Channel::Web, Channel::Sms]).await;

    let decision = decide(&mut client, &anna, Channel::Web).await;
    assert_eq!(chosen(&decision), ["upgrade"]);
    let declined = record(
        &mut client,
        &decision.decision_id,
        "upgrade",
        OutcomeType::Declined,
    )
    .await
    .unwrap();
    assert!(!declined.duplicate);
    let decision = decide(&mut client, &anna, Channel::Web).await;
    let (reason, detail) = reason_of(&decision, "upgrade");
    assert_eq!(reason, ExclusionReason::CoolingDown);
    assert!(detail.starts_with("cool-down until"), "{detail}");

    // The SMS budget is spent by a survey; the outage notice still goes.
    let reserved = client
        .reserve_contact(ReserveContactRequest {
            customer: by_id(&anna),
            channel: Channel::Sms as i32,
            request_id: "survey".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(reserved.granted);
    let decision = decide(&mut client, &anna, Channel::Sms).await;
    assert_eq!(chosen(&decision), ["outage-notice"]);
    // But never without consent.
    consent(&app, &anna, "service", Channel::Sms, false).await;
    let decision = decide(&mut client, &anna, Channel::Sms).await;
    assert_eq!(
        reason_of(&decision, "outage-notice").0,
        ExclusionReason::NoConsent
    );
    app.stop().await;
}

#[tokio::test]
async fn a_global_volume_limit_hands_the_slot_to_the_next_best_action() {
    let app = spawn_app().await;
    let mut client = client(&app).await;
    greedy(&mut client).await;
    let mut retention = offer(
        "retention-call",
        ActionKind::RetentionOffer,
        &[Channel::Web],
    );
    retention.business_priority = 100;
    retention.volume_limit = Some(VolumeLimit {
        max_per_day: 2,
        max_per_week: 0,
    });
    create(&mut client, retention).await;
    let mut tip = offer("usage-tip", ActionKind::Information, &[Channel::Web]);
    tip.business_priority = 1;
    create(&mut client, tip).await;
    let mut chosen_first = Vec::new();
    for i in 0..3 {
        let id = customer(
            &app,
            &format!("crm-volume-{i}"),
            "marketing",
            &[Channel::Web],
        )
        .await;
        let decision = decide(&mut client, &id, Channel::Web).await;
        chosen_first.push(chosen(&decision)[0].clone());
        if i == 2 {
            let (reason, detail) = reason_of(&decision, "retention-call");
            assert_eq!(reason, ExclusionReason::VolumeLimitReached);
            assert!(detail.contains("2 a day"), "{detail}");
        }
    }
    assert_eq!(
        chosen_first,
        ["retention-call", "retention-call", "usage-tip"]
    );
    app.stop().await;
}

/// Decides `rounds` times for fresh customers and reports "a" accepted and
/// "b" ignored, so the model learns that "a" is the better action.
async fn teach(app: &TestApp, client: &mut Client, tag: &str, rounds: usize) {
    for i in 0..rounds {
        let id = customer(app, &format!("crm-{tag}-{i}"), "marketing", &[Channel::Web]).await;
        let decision = decide(client, &id, Channel::Web).await;
        let action = chosen(&decision)[0].clone();
        let outcome = if action == "a" {
            OutcomeType::Accepted
        } else {
            OutcomeType::Ignored
        };
        record(client, &decision.decision_id, &action, outcome)
            .await
            .unwrap();
    }
}

/// Propensities (a, b) for a new customer, with both actions scored.
async fn propensities(app: &TestApp, client: &mut Client, crm: &str) -> (f64, f64) {
    let id = customer(app, crm, "marketing", &[Channel::Web]).await;
    let decision = decide_many(client, &id, Channel::Web, 2).await;
    let of = |action_id: &str| {
        decision
            .actions
            .iter()
            .find(|a| a.action.as_ref().unwrap().action_id == action_id)
            .map(|a| a.propensity)
            .unwrap()
    };
    (of("a"), of("b"))
}

async fn outcomes_learned(client: &mut Client) -> i64 {
    client
        .get_scorer_status(GetScorerStatusRequest::default())
        .await
        .unwrap()
        .into_inner()
        .model
        .unwrap()
        .outcomes_learned
}

#[tokio::test]
async fn learning_moves_scores_is_shared_by_replicas_and_survives_a_restart() {
    let mut app = spawn_app().await;
    let mut client = client(&app).await;
    create(
        &mut client,
        offer("a", ActionKind::SalesOffer, &[Channel::Web]),
    )
    .await;
    create(
        &mut client,
        offer("b", ActionKind::SalesOffer, &[Channel::Web]),
    )
    .await;
    let (a, b) = propensities(&app, &mut client, "crm-before").await;
    assert_eq!((a, b), (0.05, 0.05), "nothing learnt yet: the prior");

    teach(&app, &mut client, "first", 40).await;
    eventually(Duration::from_secs(10), "the outcomes are learnt", || {
        let mut client = client.clone();
        async move { (outcomes_learned(&mut client).await == 40).then_some(()) }
    })
    .await;
    let (a, b) = eventually(Duration::from_secs(5), "this replica learns", || {
        let (app, mut client) = (&app, client.clone());
        async move {
            let (a, b) =
                propensities(app, &mut client, &format!("crm-{}", uuid::Uuid::new_v4())).await;
            (a > b + 0.2).then_some((a, b))
        }
    })
    .await;
    assert!(a > 0.5, "accepted every time it was chosen: {a}");
    let status = client
        .get_scorer_status(GetScorerStatusRequest {
            action_ids: vec!["a".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let model = status.model.unwrap();
    assert!(model.model_version > 0);
    assert!(model.feature_names.contains(&"channel:web".to_string()));
    assert!(model.feature_names.contains(&"plan=gold".to_string()));
    assert_eq!(model.actions[0].action_id, "a");
    assert!(model.actions[0].accepted_count > 0);
    assert_eq!(status.live_policy.unwrap().policy_id, "default");

    // A second replica on the same database and Redis sees what the first learnt.
    let replica = spawn_on(
        app.database.clone(),
        app.redis_prefix.clone(),
        Options::default(),
    )
    .await;
    let mut other = self::client(&replica).await;
    let (a2, b2) = eventually(Duration::from_secs(5), "the replica shares it", || {
        let (replica, mut other) = (&replica, other.clone());
        async move {
            let (a, b) = propensities(
                replica,
                &mut other,
                &format!("crm-{}", uuid::Uuid::new_v4()),
            )
            .await;
            (a > b + 0.2).then_some((a, b))
        }
    })
    .await;
    assert!(
        (a2 - a).abs() < 0.05 && (b2 - b).abs() < 0.05,
        "{a2} {b2} vs {a} {b}"
    );
    // And what the replica learns reaches the first.
    teach(&replica, &mut other, "replica", 5).await;
    eventually(
        Duration::from_secs(10),
        "the first replica sees the replica's outcomes",
        || {
            let mut client = client.clone();
            async move { (outcomes_learned(&mut client).await == 45).then_some(()) }
        },
    )
    .await;

    // Both stop; a new process starts with everything learnt.
    let mut replica = replica;
    replica.stop_services().await;
    app.stop_services().await;
    let restarted = spawn_on(
        app.database.clone(),
        app.redis_prefix.clone(),
        Options::default(),
    )
    .await;
    let mut client = self::client(&restarted).await;
    assert_eq!(outcomes_learned(&mut client).await, 45);
    let (a3, b3) = propensities(&restarted, &mut client, "crm-after-restart").await;
    assert!(a3 > b3 + 0.2, "{a3} {b3}");
    restarted.stop().await;
}

#[tokio::test]
async fn outcomes_for_unknown_or_expired_decisions_and_duplicates() {
    let app = spawn_app_with(Options {
        adjust: Box::new(|settings| settings.recommendation_outcome_window_secs = 2),
        ..Default::default()
    })
    .await;
    let mut client = client(&app).await;
    create(
        &mut client,
        offer("a", ActionKind::SalesOffer, &[Channel::Web]),
    )
    .await;
    let anna = customer(&app, "crm-outcome", "marketing", &[Channel::Web]).await;
    let decision = decide(&mut client, &anna, Channel::Web).await;

    let unknown = record(
        &mut client,
        &uuid::Uuid::now_v7().to_string(),
        "a",
        OutcomeType::Accepted,
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let not_returned = record(
        &mut client,
        &decision.decision_id,
        "zzz",
        OutcomeType::Accepted,
    )
    .await
    .unwrap_err();
    assert_eq!(field_violations(&not_returned), ["action_id"]);
    let bad = record(&mut client, "not-a-uuid", "", OutcomeType::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(
        field_violations(&bad),
        ["decision_id", "action_id", "outcome"]
    );

    let shown = record(&mut client, &decision.decision_id, "a", OutcomeType::Shown)
        .await
        .unwrap();
    assert!(!shown.duplicate);
    let first = record(
        &mut client,
        &decision.decision_id,
        "a",
        OutcomeType::Accepted,
    )
    .await
    .unwrap();
    let second = record(
        &mut client,
        &decision.decision_id,
        "a",
        OutcomeType::Accepted,
    )
    .await
    .unwrap();
    assert!(!first.duplicate && second.duplicate);
    assert_eq!(first.outcome, second.outcome);
    let other_final = record(
        &mut client,
        &decision.decision_id,
        "a",
        OutcomeType::Declined,
    )
    .await
    .unwrap_err();
    assert_eq!(other_final.code(), Code::FailedPrecondition);
    let status = client
        .get_scorer_status(GetScorerStatusRequest {
            action_ids: vec!["a".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let counts = &status.model.unwrap().actions[0];
    assert_eq!(
        (counts.accepted_count, counts.shown_count),
        (1, 1),
        "counted once"
    );

    // The decision log has it all.
    let logged = client
        .get_decision(GetDecisionRequest {
            decision_id: decision.decision_id.clone(),
            view: DecisionView::Full as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .decision
        .unwrap();
    assert_eq!(logged.outcomes.len(), 2);
    assert_eq!(logged.candidates[0].outcome, OutcomeType::Accepted as i32);
    assert!(logged.features.contains_key("channel:web"));
    let listed = client
        .list_decisions(ListDecisionsRequest {
            customer: by_id(&anna),
            outcome: OutcomeType::Accepted as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.decisions.len(), 1);

    // After the outcome window: refused, and the open action counts as ignored.
    let late = decide(&mut client, &anna, Channel::Web).await;
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let expired = record(&mut client, &late.decision_id, "a", OutcomeType::Accepted)
        .await
        .unwrap_err();
    assert_eq!(expired.code(), Code::FailedPrecondition);
    eventually(
        Duration::from_secs(15),
        "the expired decision counts as ignored",
        || {
            let mut client = client.clone();
            let id = late.decision_id.clone();
            async move {
                let decision = client
                    .get_decision(GetDecisionRequest {
                        decision_id: id,
                        view: DecisionView::Basic as i32,
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .decision
                    .unwrap();
                decision
                    .outcomes
                    .iter()
                    .any(|o| {
                        o.source == OutcomeSource::Timeout as i32
                            && o.r#type == OutcomeType::Ignored as i32
                    })
                    .then_some(())
            }
        },
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn bad_decide_input_and_unknown_customers() {
    let app = spawn_app().await;
    let mut client = client(&app).await;
    create(
        &mut client,
        offer("upgrade", ActionKind::SalesOffer, &[Channel::Web]),
    )
    .await;
    create(
        &mut client,
        offer("faq", ActionKind::Information, &[Channel::Web]),
    )
    .await;
    let refused = client
        .decide(DecideRequest {
            channel: 0,
            max_actions: 11,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        field_violations(&refused),
        ["customer", "channel", "max_actions"]
    );
    let unknown_channel = client
        .decide(DecideRequest {
            customer: by_id(&uuid::Uuid::now_v7().to_string()),
            channel: 99,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(field_violations(&unknown_channel), ["channel"]);

    // An unknown visitor: decided for as anonymous, so only what needs no
    // opt-in consent.
    let visitor = Some(CustomerRef {
        customer: Some(customer_ref::Customer::Identifier(cairn_tests::identifier(
            IdentifierType::CookieId,
            "never-seen",
        ))),
    });
    let decision = client
        .decide(DecideRequest {
            customer: visitor.clone(),
            channel: Channel::Web as i32,
            explain: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(decision.profile_id.is_empty());
    assert_eq!(chosen(&decision), ["faq"]);
    assert_eq!(
        reason_of(&decision, "upgrade").0,
        ExclusionReason::NoConsent
    );
    // Idempotent by request id.
    let request = DecideRequest {
        customer: visitor.clone(),
        channel: Channel::Web as i32,
        request_id: "decide-1".into(),
        ..Default::default()
    };
    let first = client.decide(request.clone()).await.unwrap().into_inner();
    let again = client.decide(request).await.unwrap().into_inner();
    assert_eq!(first.decision_id, again.decision_id);
    app.stop().await;

    // Configured to refuse unknown customers.
    let app = spawn_app_with(Options {
        adjust: Box::new(|settings| {
            settings.recommendation_unknown_customer =
                cairn_runtime::config::UnknownCustomer::NotFound
        }),
        ..Default::default()
    })
    .await;
    let mut client = self::client(&app).await;
    let refused = client
        .decide(DecideRequest {
            customer: visitor,
            channel: Channel::Web as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);
    app.stop().await;
}

#[tokio::test]
async fn offline_evaluation_shadow_policies_and_promotion() {
    let app = spawn_app().await;
    let mut client = client(&app).await;
    create(
        &mut client,
        offer("a", ActionKind::SalesOffer, &[Channel::Web]),
    )
    .await;
    create(
        &mut client,
        offer("b", ActionKind::SalesOffer, &[Channel::Web]),
    )
    .await;
    let none = client
        .evaluate_policy(EvaluatePolicyRequest {
            candidate: Some(evaluate_policy_request::Candidate::PolicyId(
                "default".into(),
            )),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::FailedPrecondition);
    let shadow = client
        .create_policy(CreatePolicyRequest {
            policy: Some(Policy {
                policy_id: "greedy".into(),
                display_name: "Epsilon-greedy 10%".into(),
                scorer: Some(ScorerConfig {
                    method: ScoringMethod::EpsilonGreedy as i32,
                    exploration: Some(0.1),
                    minimum_score: 0.0,
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .policy
        .unwrap();
    assert_eq!(shadow.state, PolicyState::Shadow as i32);
    let bad = client
        .create_policy(CreatePolicyRequest {
            policy: Some(Policy {
                display_name: String::new(),
                scorer: Some(ScorerConfig {
                    method: ScoringMethod::EpsilonGreedy as i32,
                    exploration: Some(2.0),
                    minimum_score: 0.0,
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        field_violations(&bad),
        ["policy.display_name", "policy.scorer.exploration"]
    );

    teach(&app, &mut client, "shadow", 30).await;
    let logged = client
        .list_decisions(ListDecisionsRequest {
            page_size: 1,
            view: DecisionView::Full as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(logged.decisions[0].shadow_choices[0].policy_id, "greedy");

    let evaluation = client
        .evaluate_policy(EvaluatePolicyRequest {
            candidate: Some(evaluate_policy_request::Candidate::Scorer(ScorerConfig {
                method: ScoringMethod::UniformRandom as i32,
                ..Default::default()
            })),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .evaluation
        .unwrap();
    assert_eq!(evaluation.decisions_evaluated, 30);
    let estimate = evaluation.acceptance_rate.unwrap();
    assert!(
        estimate.value > 0.0
            && estimate.lower <= estimate.value
            && estimate.value <= estimate.upper
    );
    assert!(evaluation.live_acceptance_rate.unwrap().value > 0.0);
    assert_eq!(evaluation.confidence_level, 0.95);

    let report = client
        .get_shadow_report(GetShadowReportRequest {
            policy_id: "greedy".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert_eq!(report.decisions_compared, 30);
    assert_eq!(report.live_policy_ids, ["default"]);
    assert!(report.agreement_rate > 0.0);

    let promoted = client
        .promote_policy(PromotePolicyRequest {
            policy_id: "greedy".into(),
            expected_live_policy_id: "default".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(promoted.policy.unwrap().state, PolicyState::Live as i32);
    assert_eq!(promoted.previous_policy.unwrap().policy_id, "default");
    let anna = customer(&app, "crm-promoted", "marketing", &[Channel::Web]).await;
    assert_eq!(
        decide(&mut client, &anna, Channel::Web).await.policy_id,
        "greedy"
    );
    let live = client
        .retire_policy(RetirePolicyRequest {
            policy_id: "greedy".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(live.code(), Code::FailedPrecondition);
    let listed = client
        .list_policies(ListPoliciesRequest {
            state: PolicyState::Retired as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.policies.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn events_report_outcomes_and_complaints_and_erasure_removes_decisions() {
    let app = spawn_app().await;
    let mut client = client(&app).await;
    relaxed(&mut client).await;
    create(
        &mut client,
        offer(
            "upgrade",
            ActionKind::SalesOffer,
            &[Channel::Web, Channel::Sms],
        ),
    )
    .await;
    let anna = customer(
        &app,
        "crm-events",
        "marketing",
        &[Channel::Web, Channel::Sms],
    )
    .await;
    let bus = event_bus(&app).await;

    // An accepted-offer touchpoint from journey is this decision's outcome.
    let decision = decide(&mut client, &anna, Channel::Web).await;
    let event = outbox::event(
        "journey",
        "journey.touchpoint_recorded",
        &anna,
        Payload::TouchpointRecorded(TouchpointRecorded {
            touchpoint_id: "tp-1".into(),
            channel: Channel::Web as i32,
            r#type: "offer_accepted".into(),
            occurred_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
            decision_id: decision.decision_id.clone(),
            action_id: "upgrade".into(),
        }),
    );
    bus.publish(&event).await.unwrap();
    bus.publish(&event).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "the touchpoint becomes an outcome",
        || {
            let mut client = client.clone();
            let id = decision.decision_id.clone();
            async move {
                let logged = client
                    .get_decision(GetDecisionRequest {
                        decision_id: id,
                        view: 0,
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .decision
                    .unwrap();
                (logged.outcomes.len() == 1
                    && logged.outcomes[0].source == OutcomeSource::JourneyEvent as i32)
                    .then_some(())
            }
        },
    )
    .await;

    // An open complaint suppresses sales offers until it is closed.
    let ticket = |open: bool| {
        outbox::event(
            "feedback",
            "feedback.ticket_changed",
            &anna,
            Payload::TicketChanged(TicketChanged {
                ticket_id: "t-1".into(),
                status: if open { "acknowledged" } else { "resolved" }.into(),
                open_complaint: open,
                category: "billing".into(),
                ..Default::default()
            }),
        )
    };
    bus.publish(&ticket(true)).await.unwrap();
    let suppressed = eventually(Duration::from_secs(10), "the complaint suppresses", || {
        let mut client = client.clone();
        let anna = anna.clone();
        async move {
            let decision = decide(&mut client, &anna, Channel::Web).await;
            decision
                .left_out
                .iter()
                .find(|c| c.exclusion_reason == ExclusionReason::OpenComplaint as i32)
                .map(|c| c.detail.clone())
        }
    })
    .await;
    assert!(suppressed.contains("t-1"), "{suppressed}");
    bus.publish(&ticket(false)).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "closing the complaint lifts it",
        || {
            let mut client = client.clone();
            let anna = anna.clone();
            async move {
                let decision = decide(&mut client, &anna, Channel::Web).await;
                (!decision.actions.is_empty()).then_some(())
            }
        },
    )
    .await;

    // A contact on SMS is counted; erasure removes decisions and counters.
    let sms = decide(&mut client, &anna, Channel::Sms).await;
    assert_eq!(chosen(&sms), ["upgrade"]);
    app.profile()
        .await
        .erase_personal_data(ErasePersonalDataRequest {
            customer: by_id(&anna),
        })
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the decisions are erased", || {
        let mut client = client.clone();
        let id = decision.decision_id.clone();
        async move {
            let gone = client
                .get_decision(GetDecisionRequest {
                    decision_id: id,
                    view: 0,
                })
                .await
                .err()?;
            (gone.code() == Code::NotFound).then_some(())
        }
    })
    .await;
    let listed = client
        .list_decisions(ListDecisionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.decisions.is_empty(), "{:?}", listed.decisions);
    let mut redis = redis::Client::open(cairn_tests::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!(
            "{}recommendation:person:{anna}:*",
            app.redis_prefix
        ))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
    app.stop().await;
}
