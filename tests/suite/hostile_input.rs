//! Bad bytes, forged page tokens, page sizes, item limits and phone numbers
//! that are not numbers: each is INVALID_ARGUMENT naming the field, never
//! INTERNAL, and never silently accepted.

use cairn_contract::common::v1::{
    Channel, CustomerRef, Identifier, IdentifierType, Value, customer_ref, value,
};
use cairn_contract::feedback::v1 as feedback;
use cairn_contract::feedback::v1::feedback_service_client::FeedbackServiceClient;
use cairn_contract::journey::v1 as journey;
use cairn_contract::journey::v1::journey_service_client::JourneyServiceClient;
use cairn_contract::profile::v1 as profile;
use cairn_contract::profile::v1::profile_service_client::ProfileServiceClient;
use cairn_contract::recommendation::v1 as recommendation;
use cairn_contract::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
use cairn_runtime::ServiceKind;
use cairn_tests::{AuthedChannel, Options, TestApp, identifier, spawn_app, spawn_app_with};
use tonic::{Code, Status};
use tonic_types::StatusExt;

fn text(value: &str) -> Value {
    Value {
        kind: Some(value::Kind::StringValue(value.into())),
    }
}

fn by_profile_id(id: &str) -> CustomerRef {
    CustomerRef {
        customer: Some(customer_ref::Customer::ProfileId(id.into())),
    }
}

/// The fields a status's BadRequest names.
fn named_fields(status: &Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|violation| violation.field.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Ok when `outcome` is INVALID_ARGUMENT naming `field`; else what it was.
fn refused_naming<T: std::fmt::Debug>(
    outcome: Result<T, Status>,
    field: &str,
) -> Result<(), String> {
    match outcome {
        Err(status)
            if status.code() == Code::InvalidArgument
                && named_fields(&status).iter().any(|named| named == field) =>
        {
            Ok(())
        }
        Err(status) => Err(format!(
            "{:?} naming {:?}: {}",
            status.code(),
            named_fields(&status),
            status.message()
        )),
        Ok(answer) => Err(format!("accepted: {answer:?}")),
    }
}

struct Clients {
    profile: ProfileServiceClient<AuthedChannel>,
    journey: JourneyServiceClient<AuthedChannel>,
    recommendation: RecommendationServiceClient<AuthedChannel>,
    feedback: FeedbackServiceClient<AuthedChannel>,
}

async fn clients(app: &TestApp) -> Clients {
    Clients {
        profile: app.profile().await,
        journey: app.journey().await,
        recommendation: RecommendationServiceClient::new(
            app.authed(
                ServiceKind::Recommendation,
                &[
                    "recommendation.decide",
                    "recommendation.outcome",
                    "recommendation.read",
                    "recommendation.write",
                ],
            )
            .await,
        ),
        feedback: FeedbackServiceClient::new(
            app.authed(
                ServiceKind::Feedback,
                &[
                    "feedback.read",
                    "feedback.write",
                    "feedback.respond",
                    "feedback.agent",
                ],
            )
            .await,
        ),
    }
}

/// Every text field the outside test found reaching PostgreSQL with a NUL
/// byte, on each service, is refused with INVALID_ARGUMENT naming the
/// field's path: one check in the contract's codec covers every string of
/// every request (`cairn_contract::checked`).
#[tokio::test]
async fn a_nul_byte_in_any_text_field_is_invalid_argument_naming_the_field() {
    let app = spawn_app().await;
    let mut c = clients(&app).await;
    let known = app
        .create_profile(
            vec![identifier(IdentifierType::Email, "nul@example.com")],
            &[],
        )
        .await;
    let id = |kind, value: &str| Identifier {
        r#type: kind as i32,
        value: value.into(),
        custom_type: String::new(),
    };
    let create =
        |identifiers: Vec<Identifier>, attributes: &[(&str, &str)]| profile::CreateProfileRequest {
            identifiers,
            attributes: attributes
                .iter()
                .map(|(name, value)| (name.to_string(), text(value)))
                .collect(),
            ..Default::default()
        };
    let touchpoint = |touchpoint_id: &str, product: &str| journey::Touchpoint {
        touchpoint_id: touchpoint_id.into(),
        customer: Some(by_profile_id(&known)),
        channel: Channel::Web as i32,
        r#type: journey::TouchpointType::ProductView as i32,
        occurred_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
        properties: [("product_id".to_string(), text(product))].into(),
        ..Default::default()
    };
    let mut failures = Vec::new();
    let mut tried = 0;
    let mut check = |what: &str, outcome: Result<(), String>| {
        tried += 1;
        if let Err(answer) = outcome {
            failures.push(format!("{what}: {answer}"));
        }
    };

    check(
        "cookie id",
        refused_naming(
            c.profile
                .create_profile(create(vec![id(IdentifierType::CookieId, "c-\0-1")], &[]))
                .await,
            "identifiers[0].value",
        ),
    );
    check(
        "social handle",
        refused_naming(
            c.profile
                .create_profile(create(
                    vec![
                        id(IdentifierType::Email, "fine@example.com"),
                        id(IdentifierType::SocialHandle, "x:@an\0na"),
                    ],
                    &[],
                ))
                .await,
            "identifiers[1].value",
        ),
    );
    check(
        "CRM id",
        refused_naming(
            c.profile
                .create_profile(create(vec![id(IdentifierType::CrmId, "crm\0-9")], &[]))
                .await,
            "identifiers[0].value",
        ),
    );
    check(
        "attribute value",
        refused_naming(
            c.profile
                .create_profile(create(
                    vec![id(IdentifierType::CrmId, "crm-nul-attribute")],
                    &[("plan", "go\0ld")],
                ))
                .await,
            "attributes[plan].string_value",
        ),
    );
    check(
        "identify",
        refused_naming(
            c.profile
                .identify_profile(profile::IdentifyProfileRequest {
                    identifiers: vec![id(IdentifierType::CookieId, "\0")],
                })
                .await,
            "identifiers[0].value",
        ),
    );
    check(
        "group name",
        refused_naming(
            c.profile
                .create_group(profile::CreateGroupRequest {
                    group: Some(profile::Group {
                        r#type: profile::GroupType::Family as i32,
                        display_name: "The \0 Svenssons".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await,
            "group.display_name",
        ),
    );
    check(
        "touchpoint id",
        refused_naming(
            c.journey
                .record_touchpoint(journey::RecordTouchpointRequest {
                    touchpoint: Some(touchpoint("web-\0", "phone-x")),
                })
                .await,
            "touchpoint.touchpoint_id",
        ),
    );
    check(
        "touchpoint property",
        refused_naming(
            c.journey
                .record_touchpoint(journey::RecordTouchpointRequest {
                    touchpoint: Some(touchpoint("web-nul-property", "phone\0x")),
                })
                .await,
            "touchpoint.properties[product_id].string_value",
        ),
    );
    check(
        "touchpoint id in a batch",
        refused_naming(
            c.journey
                .record_touchpoints(journey::RecordTouchpointsRequest {
                    touchpoints: vec![
                        touchpoint("web-nul-batch-0", "phone-x"),
                        touchpoint("web-nul-\0batch-1", "phone-x"),
                    ],
                })
                .await,
            "touchpoints[1].touchpoint_id",
        ),
    );
    let ticket = |category: &str, description: &str| feedback::CreateTicketRequest {
        ticket: Some(feedback::Ticket {
            customer: Some(by_profile_id(&known)),
            channel: Channel::Web as i32,
            category: category.into(),
            description: description.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    check(
        "ticket description",
        refused_naming(
            c.feedback
                .create_ticket(ticket("billing", "charged tw\0ice"))
                .await,
            "ticket.description",
        ),
    );
    check(
        "ticket category",
        refused_naming(
            c.feedback
                .create_ticket(ticket("bill\0ing", "charged twice"))
                .await,
            "ticket.category",
        ),
    );
    check(
        "free-text answer",
        refused_naming(
            c.feedback
                .submit_survey_response(feedback::SubmitSurveyResponseRequest {
                    response: Some(feedback::SurveyResponse {
                        survey_id: "nps".into(),
                        customer: Some(by_profile_id(&known)),
                        channel: Channel::Web as i32,
                        answers: vec![
                            feedback::Answer {
                                question_id: "score".into(),
                                value: Some(feedback::answer::Value::Score(9)),
                            },
                            feedback::Answer {
                                question_id: "why".into(),
                                value: Some(feedback::answer::Value::Text("gre\0at".into())),
                            },
                        ],
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await,
            "response.answers[1].text",
        ),
    );
    check(
        "Decide context",
        refused_naming(
            c.recommendation
                .decide(recommendation::DecideRequest {
                    customer: Some(by_profile_id(&known)),
                    channel: Channel::Web as i32,
                    context: Some(recommendation::DecisionContext {
                        page: "/plans\0".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await,
            "context.page",
        ),
    );
    println!(
        "NUL bytes sent in {tried} text fields; answered other than INVALID_ARGUMENT naming the field: {}",
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");

    // Nothing of it was stored: the one profile created above is all there is.
    let listed = c
        .profile
        .list_profiles(profile::ListProfilesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .profiles;
    assert_eq!(listed.len(), 1);
    app.stop().await;
}

/// One List call of each of the fifteen list RPCs, with `page_size` and
/// `page_token`; the answer's shape does not matter here.
async fn list(
    c: &mut Clients,
    which: usize,
    customer: &str,
    page_size: i32,
    page_token: &str,
) -> Option<Result<(), Status>> {
    let page_token = page_token.to_string();
    let who = || Some(by_profile_id(customer));
    let outcome = match which {
        0 => c
            .profile
            .list_profiles(profile::ListProfilesRequest {
                page_size,
                page_token,
                ..Default::default()
            })
            .await
            .map(drop),
        1 => c
            .profile
            .list_segments(profile::ListSegmentsRequest {
                page_size,
                page_token,
            })
            .await
            .map(drop),
        2 => c
            .profile
            .list_segment_members(profile::ListSegmentMembersRequest {
                segment_id: "gold".into(),
                page_size,
                page_token,
            })
            .await
            .map(drop),
        3 => c
            .profile
            .list_groups(profile::ListGroupsRequest {
                customer: who(),
                page_size,
                page_token,
            })
            .await
            .map(drop),
        4 => c
            .journey
            .list_timeline(journey::ListTimelineRequest {
                customer: who(),
                page_size,
                page_token,
                ..Default::default()
            })
            .await
            .map(drop),
        5 => c
            .journey
            .list_journey_definitions(journey::ListJourneyDefinitionsRequest {
                page_size,
                page_token,
                ..Default::default()
            })
            .await
            .map(drop),
        6 => c
            .journey
            .list_abandonments(journey::ListAbandonmentsRequest {
                page_size,
                page_token,
                ..Default::default()
            })
            .await
            .map(drop),
        7 => c
            .recommendation
            .list_actions(recommendation::ListActionsRequest {
                page_size,
                page_token,
                ..Default::default()
            })
            .await
            .map(drop),
        8 => c
            .recommendation
            .list_decisions(recommendation::ListDecisionsRequest {
                page_size,
                page_token,
                ..Default::default()
            })
            .await
            .map(drop),
        9 => c
            .recommendation
            .list_policies(recommendation::ListPoliciesRequest {
                page_size,
                page_token,
                ..Default::default()
            })
            .await
            .map(drop),
        10 => c
            .feedback
            .list_surveys(feedback::ListSurveysRequest {
                page_size,
                page_token,
            })
            .await
            .map(drop),
        11 => c
            .feedback
            .list_survey_responses(feedback::ListSurveyResponsesRequest {
                page_size,
                page_token,
                ..Default::default()
            })
            .await
            .map(drop),
        12 => c
            .feedback
            .list_comments(feedback::ListCommentsRequest {
                page_size,
                page_token,
                ..Default::default()
            })
            .await
            .map(drop),
        13 => c
            .feedback
            .list_tickets(feedback::ListTicketsRequest {
                page_size,
                page_token,
                ..Default::default()
            })
            .await
            .map(drop),
        14 => c
            .feedback
            .list_feature_requests(feedback::ListFeatureRequestsRequest {
                page_size,
                page_token,
            })
            .await
            .map(drop),
        15 => c
            .feedback
            .list_follow_up_tasks(feedback::ListFollowUpTasksRequest {
                page_size,
                page_token,
                ..Default::default()
            })
            .await
            .map(drop),
        _ => return None,
    };
    Some(outcome)
}

/// The first page of ListProfiles, one profile long.
async fn first_profile_page(c: &mut Clients) -> profile::ListProfilesResponse {
    c.profile
        .list_profiles(profile::ListProfilesRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// Page tokens are signed (HMAC with the page-token key): on every list RPC
/// a made-up token, one in the unsigned form tokens used to have, a real
/// token with one character changed, and a real token of another listing
/// are refused with INVALID_ARGUMENT naming `page_token`; a negative or
/// too large page size names `page_size`. A real token still pages, also
/// on another replica with the same key.
#[tokio::test]
async fn forged_and_tampered_page_tokens_and_bad_page_sizes_are_refused_on_every_list() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let app = spawn_app().await;
    let mut c = clients(&app).await;
    let first = app
        .create_profile(
            vec![identifier(IdentifierType::Email, "page-1@example.com")],
            &[],
        )
        .await;
    app.create_profile(
        vec![identifier(IdentifierType::Email, "page-2@example.com")],
        &[],
    )
    .await;
    c.profile
        .create_segment(profile::CreateSegmentRequest {
            segment: Some(profile::Segment {
                segment_id: "gold".into(),
                rule: "attributes.plan == \"gold\"".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let page = first_profile_page(&mut c).await;
    let real = page.next_page_token.clone();
    assert!(!real.is_empty(), "two profiles, pages of one");
    let tampered = {
        let mut bytes = real.clone().into_bytes();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    };
    let forged = [
        URL_SAFE_NO_PAD.encode("v1:2026-11-22T10:00:00Z|00000000-0000-0000-0000-000000000000"),
        URL_SAFE_NO_PAD.encode("v1:zzz"),
        URL_SAFE_NO_PAD.encode("v1:"),
        "not a token".to_string(),
        format!("{}.AAAA", URL_SAFE_NO_PAD.encode("v1:x")),
    ];
    let mut failures = Vec::new();
    let mut tried = 0;
    let mut which = 0;
    while let Some(outcome) = list(&mut c, which, &first, 0, "").await {
        outcome.unwrap_or_else(|status| panic!("list {which} without a token: {status:?}"));
        let mut tokens: Vec<String> = forged.to_vec();
        tokens.push(tampered.clone());
        if which != 0 {
            // ListProfiles' token on another listing.
            tokens.push(real.clone());
        }
        for token in &tokens {
            tried += 1;
            let outcome = list(&mut c, which, &first, 0, token).await.unwrap();
            if let Err(answer) = refused_naming(outcome, "page_token") {
                failures.push(format!("list {which}, token {token:?}: {answer}"));
            }
        }
        for size in [-1, i32::MIN, 1001] {
            tried += 1;
            let outcome = list(&mut c, which, &first, size, "").await.unwrap();
            if let Err(answer) = refused_naming(outcome, "page_size") {
                failures.push(format!("list {which}, page_size {size}: {answer}"));
            }
        }
        which += 1;
    }
    println!(
        "list RPCs: {which}; forged, tampered, foreign tokens and bad page sizes tried: {tried}; \
         answered other than INVALID_ARGUMENT naming the field: {}",
        failures.len()
    );
    assert_eq!(which, 16);
    assert!(failures.is_empty(), "{failures:#?}");

    // The real token pages, here and on a second replica with the same key.
    let second = c
        .profile
        .list_profiles(profile::ListProfilesRequest {
            page_size: 1,
            page_token: real.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.profiles.len(), 1);
    assert_ne!(second.profiles[0].profile_id, page.profiles[0].profile_id);
    let mut replica = cairn_tests::spawn_on(
        app.database.clone(),
        app.redis_prefix.clone(),
        Options {
            services: vec![ServiceKind::Profile],
            ..Options::default()
        },
    )
    .await;
    let on_replica = replica
        .profile()
        .await
        .list_profiles(profile::ListProfilesRequest {
            page_size: 1,
            page_token: real,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        on_replica.profiles[0].profile_id,
        second.profiles[0].profile_id
    );
    replica.stop_services().await;
    app.stop().await;
}

/// A page token resumes only the listing it was issued for: the same List
/// method with the same filters. One customer's timeline token does not page
/// another customer's timeline, and a token of one filter does not page
/// another filter's listing (both INVALID_ARGUMENT naming `page_token`); the
/// page size alone may change between pages.
#[tokio::test]
async fn a_page_token_is_bound_to_the_filters_it_was_issued_for() {
    use cairn_tests::touchpoint;
    let app = spawn_app().await;
    let mut c = clients(&app).await;
    let mut customers = Vec::new();
    for name in ["bound-a", "bound-b"] {
        let email = identifier(IdentifierType::Email, &format!("{name}@example.com"));
        let created = app.create_profile(vec![email.clone()], &[]).await;
        let touchpoints = (0..3)
            .map(|minute| {
                touchpoint(
                    &format!("{name}-{minute}"),
                    email.clone(),
                    Channel::Web,
                    journey::TouchpointType::PageView,
                    minute + 1,
                    &[],
                )
            })
            .collect();
        c.journey
            .record_touchpoints(journey::RecordTouchpointsRequest {
                touchpoints,
                ..Default::default()
            })
            .await
            .unwrap();
        customers.push(created);
    }
    let timeline =
        |customer: &str, page_size: i32, page_token: &str| journey::ListTimelineRequest {
            customer: Some(by_profile_id(customer)),
            page_size,
            page_token: page_token.to_string(),
            ..Default::default()
        };
    let first = c
        .journey
        .list_timeline(timeline(&customers[0], 1, ""))
        .await
        .unwrap()
        .into_inner();
    let token = first.next_page_token;
    assert!(!token.is_empty(), "three touchpoints, pages of one");
    // Another customer's timeline.
    let foreign = c
        .journey
        .list_timeline(timeline(&customers[1], 1, &token))
        .await;
    refused_naming(foreign, "page_token").unwrap_or_else(|answer| panic!("{answer}"));
    // The same customer with another filter.
    let filtered = c
        .journey
        .list_timeline(journey::ListTimelineRequest {
            channels: vec![Channel::Web as i32],
            ..timeline(&customers[0], 1, &token)
        })
        .await;
    refused_naming(filtered, "page_token").unwrap_or_else(|answer| panic!("{answer}"));
    // The same listing with a larger page: the rest of the timeline.
    let rest = c
        .journey
        .list_timeline(timeline(&customers[0], 10, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.touchpoints.len(), 2);
    assert!(rest.next_page_token.is_empty());

    // ListProfiles: a token of the unfiltered listing on a filtered one.
    let page = first_profile_page(&mut c).await;
    let filtered = c
        .profile
        .list_profiles(profile::ListProfilesRequest {
            page_size: 1,
            page_token: page.next_page_token,
            identifier_type: IdentifierType::Email as i32,
            ..Default::default()
        })
        .await;
    refused_naming(filtered, "page_token").unwrap_or_else(|answer| panic!("{answer}"));
    app.stop().await;
}

/// CreateProfile takes at most 20 identifiers and ReportFacts at most 256
/// facts, as the contract's comments say; 10,000 were accepted before.
#[tokio::test]
async fn too_many_identifiers_or_facts_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let mut c = clients(&app).await;
    let many = |count: usize| -> Vec<Identifier> {
        (0..count)
            .map(|index| identifier(IdentifierType::CookieId, &format!("limit-cookie-{index}")))
            .collect()
    };
    for count in [21, 10_000] {
        let outcome = c
            .profile
            .create_profile(profile::CreateProfileRequest {
                identifiers: many(count),
                ..Default::default()
            })
            .await;
        refused_naming(outcome, "identifiers").unwrap_or_else(|answer| panic!("{count}: {answer}"));
    }
    let created = c
        .profile
        .create_profile(profile::CreateProfileRequest {
            identifiers: many(20),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(created.identifiers.len(), 20);

    let facts = |count: usize| {
        (0..count)
            .map(|index| (format!("fact_{index}"), text("x")))
            .collect()
    };
    for count in [257, 10_000] {
        let outcome = c
            .profile
            .report_facts(profile::ReportFactsRequest {
                customer: Some(by_profile_id(&created.profile_id)),
                facts: facts(count),
            })
            .await;
        refused_naming(outcome, "facts").unwrap_or_else(|answer| panic!("{count}: {answer}"));
    }
    c.profile
        .report_facts(profile::ReportFactsRequest {
            customer: Some(by_profile_id(&created.profile_id)),
            facts: facts(256),
        })
        .await
        .unwrap();
    app.stop().await;
}

/// A phone number with letters or a doubled `+` is not a number and is
/// refused (it used to be normalised into somebody's number); vanity
/// letters are read as keypad digits only where `CAIRN_PHONE_ALLOW_LETTERS`
/// is on.
#[tokio::test]
async fn phone_numbers_with_letters_or_a_doubled_plus_are_refused() {
    let app = spawn_app().await;
    let mut c = clients(&app).await;
    for junk in [
        "+46 70 ABC 1234",
        "++46701234567",
        "+46+701234567",
        "+1 800 FLOWERS",
    ] {
        let outcome = c
            .profile
            .create_profile(profile::CreateProfileRequest {
                identifiers: vec![identifier(IdentifierType::PhoneNumber, junk)],
                ..Default::default()
            })
            .await;
        refused_naming(outcome, "identifiers[0].value")
            .unwrap_or_else(|answer| panic!("{junk}: {answer}"));
    }
    let fine = c
        .profile
        .create_profile(profile::CreateProfileRequest {
            identifiers: vec![identifier(IdentifierType::PhoneNumber, "+46 70-123 45 67")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(
        fine.identifiers[0].identifier.as_ref().unwrap().value,
        "+46701234567"
    );
    app.stop().await;

    let vanity = spawn_app_with(Options {
        services: vec![ServiceKind::Profile],
        adjust: Box::new(|settings| settings.phone_allow_letters = true),
        ..Options::default()
    })
    .await;
    let mut profiles = vanity.profile().await;
    let created = profiles
        .create_profile(profile::CreateProfileRequest {
            identifiers: vec![identifier(IdentifierType::PhoneNumber, "+1 800 FLOWERS")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(
        created.identifiers[0].identifier.as_ref().unwrap().value,
        "+18003569377"
    );
    let doubled = profiles
        .create_profile(profile::CreateProfileRequest {
            identifiers: vec![identifier(IdentifierType::PhoneNumber, "++18003569377")],
            ..Default::default()
        })
        .await;
    refused_naming(doubled, "identifiers[0].value").unwrap();
    vanity.stop().await;
}

/// ListGroups pages by its page size now (it ignored it, and took negative
/// sizes): three groups in pages of two, each group once.
#[tokio::test]
async fn list_groups_pages_by_its_page_size() {
    let app = spawn_app_with(Options {
        services: vec![ServiceKind::Profile],
        ..Options::default()
    })
    .await;
    let mut profiles = app.profile().await;
    let member = app
        .create_profile(
            vec![identifier(IdentifierType::Email, "groups-page@example.com")],
            &[],
        )
        .await;
    let mut created = Vec::new();
    for name in ["One", "Two", "Three"] {
        let group = profiles
            .create_group(profile::CreateGroupRequest {
                group: Some(profile::Group {
                    r#type: profile::GroupType::Household as i32,
                    display_name: name.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .group
            .unwrap();
        profiles
            .add_group_member(profile::AddGroupMemberRequest {
                group_id: group.group_id.clone(),
                customer: Some(by_profile_id(&member)),
                role: profile::GroupRole::Payer as i32,
            })
            .await
            .unwrap();
        created.push(group.group_id);
    }
    let first = profiles
        .list_groups(profile::ListGroupsRequest {
            customer: Some(by_profile_id(&member)),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.groups.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let second = profiles
        .list_groups(profile::ListGroupsRequest {
            customer: Some(by_profile_id(&member)),
            page_size: 2,
            page_token: first.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.groups.len(), 1);
    assert!(second.next_page_token.is_empty());
    let mut seen: Vec<String> = first
        .groups
        .iter()
        .chain(&second.groups)
        .map(|group| group.group_id.clone())
        .collect();
    seen.sort();
    created.sort();
    assert_eq!(seen, created);
    app.stop().await;
}
