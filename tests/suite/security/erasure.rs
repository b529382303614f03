//! Erasure end to end: a person with data in all four services and in
//! Redis is erased at the profile service; then every column of every
//! table (all services' tables, text and bytes) and every Redis key under
//! the test's prefix (names and values of every type) is searched for the
//! person's identifiers and profile id. Residual records: 0. A second
//! person, not erased, is found by the same search, which proves it looks.

use std::time::Duration;

use cairn_contract::common::v1::{Channel, CustomerRef, IdentifierType, customer_ref};
use cairn_contract::feedback::v1 as feedback;
use cairn_contract::feedback::v1::feedback_service_client::FeedbackServiceClient;
use cairn_contract::journey::v1::{RecordTouchpointRequest, ResumeSessionRequest, TouchpointType};
use cairn_contract::profile::v1::{
    Consent, ErasePersonalDataRequest, Preferences, RecordConsentRequest, UpdatePreferencesRequest,
};
use cairn_contract::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
use cairn_contract::recommendation::v1::{
    Action, ActionKind, CreateActionRequest, DecideRequest, OutcomeType, RecordOutcomeRequest,
};
use cairn_runtime::ServiceKind;
use cairn_tests::{TestApp, identifier, spawn_app, touchpoint};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

/// What identifies one person.
pub struct Person {
    /// Profile id.
    pub id: String,
    /// Every identifier as stored and as sent.
    pub needles: Vec<String>,
    /// Email.
    pub email: String,
    /// Phone number, E.164.
    pub phone: String,
}

fn by_id(profile_id: &str) -> Option<CustomerRef> {
    Some(CustomerRef {
        customer: Some(customer_ref::Customer::ProfileId(profile_id.into())),
    })
}

/// A person with data in every service: profile, consent, preferences,
/// touchpoints and a session, a decision with an outcome (contact counters
/// in Redis), a survey answer with a comment, a ticket.
pub async fn person_everywhere(app: &TestApp, name: &str, phone: &str, survey_id: &str) -> Person {
    let email = format!("{name}@example.com");
    let crm = format!("crm-{name}-7731");
    let id = app
        .create_profile(
            vec![
                identifier(IdentifierType::Email, &email),
                identifier(IdentifierType::PhoneNumber, phone),
                identifier(IdentifierType::CrmId, &crm),
            ],
            &[("plan", "family")],
        )
        .await;
    let mut profile = app.profile().await;
    for channel in [Channel::Web, Channel::Email, Channel::Sms] {
        profile
            .record_consent(RecordConsentRequest {
                customer: by_id(&id),
                consent: Some(Consent {
                    purpose: "marketing".into(),
                    channel: channel as i32,
                    granted: true,
                    source: "web_form".into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }
    profile
        .update_preferences(UpdatePreferencesRequest {
            customer: by_id(&id),
            preferences: Some(Preferences {
                language: "sv-SE".into(),
                time_zone: "Europe/Stockholm".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let mut journey = app.journey().await;
    for (index, kind) in [TouchpointType::PageView, TouchpointType::Purchase]
        .into_iter()
        .enumerate()
    {
        journey
            .record_touchpoint(RecordTouchpointRequest {
                touchpoint: Some(touchpoint(
                    &format!("{name}-touch-{index}"),
                    identifier(IdentifierType::Email, &email),
                    Channel::Web,
                    kind,
                    10 - index as u64,
                    &[("page", "/checkout")],
                )),
            })
            .await
            .unwrap();
    }
    journey
        .resume_session(ResumeSessionRequest {
            customer: by_id(&id),
            channel: Channel::Web as i32,
        })
        .await
        .unwrap();
    let mut recommendation = RecommendationServiceClient::new(
        app.authed(
            ServiceKind::Recommendation,
            &["recommendation.decide", "recommendation.outcome"],
        )
        .await,
    );
    let decision = recommendation
        .decide(DecideRequest {
            customer: by_id(&id),
            channel: Channel::Web as i32,
            request_id: format!("{name}-decide"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    if let Some(action) = decision.actions.first() {
        recommendation
            .record_outcome(RecordOutcomeRequest {
                decision_id: decision.decision_id.clone(),
                action_id: action.action.as_ref().unwrap().action_id.clone(),
                outcome: OutcomeType::Accepted as i32,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let mut feedback = feedback_client(app).await;
    feedback
        .submit_survey_response(feedback::SubmitSurveyResponseRequest {
            response: Some(feedback::SurveyResponse {
                survey_id: survey_id.into(),
                customer: by_id(&id),
                channel: Channel::Web as i32,
                answers: vec![
                    feedback::Answer {
                        question_id: "nps".into(),
                        value: Some(feedback::answer::Value::Score(3)),
                    },
                    feedback::Answer {
                        question_id: "why".into(),
                        value: Some(feedback::answer::Value::Text(format!(
                            "Call me on {phone} or write to {email}"
                        ))),
                    },
                ],
                ..Default::default()
            }),
            request_id: format!("{name}-answer"),
        })
        .await
        .unwrap();
    feedback
        .create_ticket(feedback::CreateTicketRequest {
            ticket: Some(feedback::Ticket {
                customer: by_id(&id),
                channel: Channel::CallCentre as i32,
                category: "billing".into(),
                description: format!("Customer {email} disputes the bill"),
                ..Default::default()
            }),
            request_id: format!("{name}-ticket"),
        })
        .await
        .unwrap();
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    Person {
        needles: vec![id.clone(), email.clone(), phone.to_string(), digits, crm],
        id,
        email,
        phone: phone.to_string(),
    }
}

pub async fn feedback_client(app: &TestApp) -> FeedbackServiceClient<cairn_tests::AuthedChannel> {
    FeedbackServiceClient::new(
        app.authed(
            ServiceKind::Feedback,
            &["feedback.read", "feedback.write", "feedback.respond"],
        )
        .await,
    )
}

/// Sets up what every person-everywhere test needs: an action to decide
/// and a survey to answer; returns the survey id.
pub async fn catalogue(app: &TestApp) -> String {
    RecommendationServiceClient::new(
        app.authed(ServiceKind::Recommendation, &["recommendation.write"])
            .await,
    )
    .create_action(CreateActionRequest {
        action: Some(Action {
            action_id: "bill-help".into(),
            name: "Help with the bill".into(),
            kind: ActionKind::Service as i32,
            category: "care".into(),
            channels: vec![Channel::Web as i32],
            ..Default::default()
        }),
        request_id: String::new(),
    })
    .await
    .unwrap();
    let question = |id: &str, kind: feedback::QuestionType| feedback::Question {
        question_id: id.into(),
        r#type: kind as i32,
        texts: [("en".to_string(), format!("{id}?"))].into(),
        ..Default::default()
    };
    feedback_client(app)
        .await
        .create_survey(feedback::CreateSurveyRequest {
            survey: Some(feedback::Survey {
                display_name: "After the bill".into(),
                questions: vec![
                    question("nps", feedback::QuestionType::Nps),
                    question("why", feedback::QuestionType::FreeText),
                ],
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
        .survey_id
}

/// Every place in PostgreSQL (table.column) and Redis (key) where one of
/// `needles` appears.
pub async fn residues(app: &TestApp, needles: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let db = app.database.connect().await;
    let columns = db
        .query_all_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
        ))
        .await
        .unwrap();
    for row in columns {
        let table: String = row.try_get("", "table_name").unwrap();
        let column: String = row.try_get("", "column_name").unwrap();
        let kind: String = row.try_get("", "data_type").unwrap();
        for needle in needles {
            // Text of any column (jsonb, arrays, uuids included), and bytes
            // (protobuf events) searched as bytes.
            let condition = if kind == "bytea" {
                format!("position(convert_to($1, 'UTF8') in \"{column}\") > 0")
            } else {
                format!("\"{column}\"::text ILIKE '%' || $1 || '%'")
            };
            let count = db
                .query_one_raw(Statement::from_sql_and_values(
                    DatabaseBackend::Postgres,
                    format!("SELECT count(*) AS n FROM \"{table}\" WHERE {condition}"),
                    [needle.clone().into()],
                ))
                .await
                .unwrap()
                .map(|row| row.try_get::<i64>("", "n").unwrap())
                .unwrap_or(0);
            if count > 0 {
                found.push(format!("{table}.{column} holds {needle} ({count} rows)"));
            }
        }
    }

    let client = redis::Client::open(cairn_tests::redis_url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", app.redis_prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .unwrap();
        let value: redis::Value = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&key).query_async(&mut redis).await,
            "hash" => {
                redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(&mut redis)
                    .await
            }
            "list" => {
                redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut redis)
                    .await
            }
            "set" => {
                redis::cmd("SMEMBERS")
                    .arg(&key)
                    .query_async(&mut redis)
                    .await
            }
            "zset" => {
                redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(&mut redis)
                    .await
            }
            "stream" => {
                redis::cmd("XRANGE")
                    .arg(&key)
                    .arg("-")
                    .arg("+")
                    .query_async(&mut redis)
                    .await
            }
            _ => Ok(redis::Value::Nil),
        }
        .unwrap_or(redis::Value::Nil);
        let mut bytes = key.clone().into_bytes();
        flatten(&value, &mut bytes);
        for needle in needles {
            if bytes
                .windows(needle.len())
                .any(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
            {
                found.push(format!("Redis key {key} ({kind}) holds {needle}"));
            }
        }
    }
    found
}

fn flatten(value: &redis::Value, into: &mut Vec<u8>) {
    match value {
        redis::Value::BulkString(bytes) => {
            into.push(0);
            into.extend_from_slice(bytes);
        }
        redis::Value::SimpleString(text) => {
            into.push(0);
            into.extend_from_slice(text.as_bytes());
        }
        redis::Value::Int(number) => into.extend_from_slice(number.to_string().as_bytes()),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            items.iter().for_each(|item| flatten(item, into))
        }
        redis::Value::Map(pairs) => pairs.iter().for_each(|(key, value)| {
            flatten(key, into);
            flatten(value, into);
        }),
        _ => {}
    }
}

#[tokio::test]
async fn an_erased_person_leaves_no_record_in_any_table_or_redis_key() {
    let app = spawn_app().await;
    let survey = catalogue(&app).await;
    let anna = person_everywhere(&app, "anna.lind", "+46701234567", &survey).await;
    let bo = person_everywhere(&app, "bo.ek", "+46707654321", &survey).await;
    // The search finds a person who is there, everywhere it should.
    let held = residues(&app, &bo.needles).await;
    for place in [
        "profile_identifiers",
        "journey_touchpoints",
        "recommendation_decisions",
        "feedback_tickets",
        "Redis key",
    ] {
        assert!(
            held.iter().any(|residue| residue.starts_with(place)),
            "the search did not find bo in {place}: {held:#?}"
        );
    }
    let before = residues(&app, &anna.needles).await;
    assert!(!before.is_empty());

    app.profile()
        .await
        .erase_personal_data(ErasePersonalDataRequest {
            customer: by_id(&anna.id),
        })
        .await
        .unwrap();

    // Every service erases on the event; wait until they all have.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut left = residues(&app, &anna.needles).await;
    while !left.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        left = residues(&app, &anna.needles).await;
    }
    assert!(
        left.is_empty(),
        "residual records after erasure: {} (of {} before)\n{left:#?}",
        left.len(),
        before.len()
    );
    println!(
        "places holding the person before erasure: {}; residual records after: {}",
        before.len(),
        left.len()
    );
    // Bo is untouched.
    assert_eq!(residues(&app, &bo.needles).await.len(), held.len());
    let _ = (&anna.email, &anna.phone);
    app.stop().await;
}

#[tokio::test]
async fn the_export_holds_everything_from_all_four_services_and_nothing_of_others() {
    use cairn_contract::profile::v1::ExportPersonalDataRequest;
    let app = spawn_app().await;
    let survey = catalogue(&app).await;
    let anna = person_everywhere(&app, "anna.lind", "+46701234567", &survey).await;
    let bo = person_everywhere(&app, "bo.ek", "+46707654321", &survey).await;
    let export = app
        .profile()
        .await
        .export_personal_data(ExportPersonalDataRequest {
            customer: by_id(&anna.id),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        export.missing_parts.is_empty(),
        "{:?}",
        export.missing_parts
    );
    // The profile service's part.
    assert_eq!(export.profile.as_ref().unwrap().profile_id, anna.id);
    assert_eq!(export.identifier_history.len(), 3);
    assert_eq!(export.consent_history.len(), 3);
    assert_eq!(export.preferences.as_ref().unwrap().language, "sv-SE");
    // The journey service's part.
    let journeys = export.journeys.as_ref().expect("the journey part");
    assert_eq!(journeys.touchpoints.len(), 2, "both touchpoints");
    assert!(journeys.session.is_some(), "the active session");
    // The recommendation service's part.
    let recommendations = export
        .recommendations
        .as_ref()
        .expect("the recommendation part");
    assert_eq!(recommendations.decisions.len(), 1, "the decision");
    assert!(
        recommendations
            .decisions
            .iter()
            .all(|d| d.profile_id == anna.id),
        "{recommendations:?}"
    );
    // The feedback service's part.
    let feedback = export.feedback.as_ref().expect("the feedback part");
    assert_eq!(feedback.responses.len(), 1, "the survey answer");
    assert!(!feedback.comments.is_empty(), "the answer's comment");
    assert_eq!(feedback.tickets.len(), 1, "the ticket");
    // One document with all of Anna and none of Bo.
    let document = format!("{export:?}");
    for needle in &anna.needles {
        assert!(
            document.contains(needle.as_str()),
            "the export lacks {needle}"
        );
    }
    for needle in &bo.needles {
        assert!(
            !document.contains(needle.as_str()),
            "the export holds bo's {needle}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn an_erased_authors_feature_request_loses_their_words_and_keeps_its_votes() {
    let app = spawn_app().await;
    let anna_email = "anna.lind@example.com";
    let anna = app
        .create_profile(vec![identifier(IdentifierType::Email, anna_email)], &[])
        .await;
    let bo = app
        .create_profile(
            vec![identifier(IdentifierType::Email, "bo.ek@example.com")],
            &[],
        )
        .await;
    let mut client = feedback_client(&app).await;
    let ask = |profile_id: &str, text: &str| feedback::CreateFeatureRequestRequest {
        customer: by_id(profile_id),
        text: text.into(),
    };
    // Anna's words carry her email address; Bo asks for the same thing.
    let first = client
        .create_feature_request(ask(
            &anna,
            "Let me pay my monthly bill by card in the app, answer me at anna.lind@example.com",
        ))
        .await
        .unwrap()
        .into_inner();
    let request = first.feature_request.unwrap();
    let second = client
        .create_feature_request(ask(&bo, "Let me pay my monthly bill by card in the app"))
        .await
        .unwrap()
        .into_inner();
    assert!(second.merged, "bo's request counts as a vote for anna's");
    assert_eq!(second.feature_request.unwrap().votes, 2);
    let needles = vec![anna_email.to_string(), anna.clone()];
    assert!(
        residues(&app, &needles)
            .await
            .iter()
            .any(|place| place.starts_with("feedback_feature_requests")),
        "the search finds her words before the erasure"
    );

    app.profile()
        .await
        .erase_personal_data(ErasePersonalDataRequest {
            customer: by_id(&anna),
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut left = residues(&app, &needles).await;
    while !left.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        left = residues(&app, &needles).await;
    }
    assert!(left.is_empty(), "her data is left in: {left:#?}");
    let listed = client
        .list_feature_requests(feedback::ListFeatureRequestsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .feature_requests;
    let kept = listed
        .iter()
        .find(|kept| kept.feature_request_id == request.feature_request_id)
        .expect("the request itself stays");
    assert!(
        !kept.text.contains("anna") && !kept.text.contains("card in the app"),
        "her words are gone: {:?}",
        kept.text
    );
    assert_eq!(kept.votes, 2, "the votes stay counted");
    println!(
        "feature request after its author's erasure: {:?}, votes {}",
        kept.text, kept.votes
    );
    app.stop().await;
}
