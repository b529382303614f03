//! Surveys: answers checked and counted once, the bad-input list of the
//! issue, the once-per-period rule under concurrent triggers on two
//! replicas, touchpoint triggers, and the shared contact budget.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cairn_contract::common::v1::{Channel, IdentifierType, TimeRange};
use cairn_contract::events::v1::change_event::Payload;
use cairn_contract::feedback::v1 as pb;
use cairn_contract::journey::v1::{RecordTouchpointsRequest, Touchpoint, TouchpointType};
use cairn_contract::profile::v1::{Consent, RecordConsentRequest};
use cairn_runtime::ServiceKind;
use cairn_tests::{Options, eventually, spawn_app, spawn_on};
use sea_orm::{ConnectionTrait, Statement};
use tonic::Code;

use super::*;

#[tokio::test]
async fn answers_are_checked_stored_counted_once_and_published() {
    let (app, _budget) = spawn_feedback().await;
    let mut client = feedback(&app).await;
    let anna = new_customer(&app, "crm-answers").await;
    let survey_id = create_survey(&mut client, survey("after delivery")).await;

    let first = answer(
        &mut client,
        &survey_id,
        &anna,
        Channel::Email,
        vec![
            score("nps", 3),
            score("csat", 2),
            text("why", "The delivery was late and the invoice was wrong"),
        ],
        "answer-1",
    )
    .await
    .unwrap();
    assert!(!first.duplicate);
    let stored = first.response.unwrap();
    assert_eq!(stored.profile_id, anna);
    assert_eq!(stored.answers.len(), 3);

    // The same submission again counts once.
    let again = answer(
        &mut client,
        &survey_id,
        &anna,
        Channel::Email,
        vec![score("nps", 3)],
        "answer-1",
    )
    .await
    .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.response.unwrap().response_id, stored.response_id);
    let listed = client
        .list_survey_responses(pb::ListSurveyResponsesRequest {
            survey_id: survey_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .responses;
    assert_eq!(listed.len(), 1);
    let kpis = client
        .get_kpis(pb::GetKpisRequest {
            time_range: Some(TimeRange {
                start_time: Some(prost_types::Timestamp::from(
                    std::time::SystemTime::now() - Duration::from_secs(3600),
                )),
                end_time: None,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kpis.rows[0].nps.unwrap().count, 1);

    // The free text became a survey comment with its themes.
    let comments = client
        .list_comments(pb::ListCommentsRequest {
            customer: customer(&anna),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .comments;
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0].language, "en");
    assert_eq!(comments[0].themes, ["billing", "delivery"]);

    // The detractor gets a follow-up task.
    let tasks = client
        .list_follow_up_tasks(pb::ListFollowUpTasksRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tasks;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].reason, "detractor (NPS 3), very low CSAT (2)");
    assert_eq!(tasks[0].response_id, stored.response_id);

    // Recommendation hears of the answer, once.
    let published = events(
        &app,
        &["feedback.survey_answered"],
        2,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(published.len(), 1, "{published:?}");
    let Some(Payload::SurveyAnswered(answered)) = &published[0].payload else {
        panic!("not a survey answer: {:?}", published[0]);
    };
    assert_eq!(answered.nps_score, 3);
    assert_eq!(answered.csat_score, 2);
    assert_eq!(answered.effort_score, -1);
    assert_eq!(answered.nps_category, "detractor");
    assert_eq!(published[0].profile_id, anna);
    app.stop().await;
}

#[tokio::test]
async fn bad_input_gets_the_right_status_and_field() {
    let (app, _budget) = spawn_feedback().await;
    let mut client = feedback(&app).await;
    let anna = new_customer(&app, "crm-bad").await;
    let survey_id = create_survey(&mut client, survey("bad input")).await;

    // A score out of range.
    let status = answer(
        &mut client,
        &survey_id,
        &anna,
        Channel::Email,
        vec![score("nps", 11)],
        "b-1",
    )
    .await
    .unwrap_err();
    assert_invalid(&status, "response.answers[0].score");
    let status = answer(
        &mut client,
        &survey_id,
        &anna,
        Channel::Email,
        vec![score("csat", 0)],
        "b-2",
    )
    .await
    .unwrap_err();
    assert_invalid(&status, "response.answers[0].score");

    // An answer to a question the survey does not have, and free text beyond 8 KiB.
    let status = answer(
        &mut client,
        &survey_id,
        &anna,
        Channel::Email,
        vec![score("nope", 1), text("why", &"x".repeat(8 * 1024 + 1))],
        "b-3",
    )
    .await
    .unwrap_err();
    assert_invalid(&status, "response.answers[0].question_id");
    assert_invalid(&status, "response.answers[1].text");

    // An unknown survey, and a closed one.
    let unknown = uuid::Uuid::now_v7().to_string();
    let status = answer(
        &mut client,
        &unknown,
        &anna,
        Channel::Email,
        vec![score("nps", 5)],
        "b-4",
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    client
        .close_survey(pb::CloseSurveyRequest {
            survey_id: survey_id.clone(),
        })
        .await
        .unwrap();
    let status = answer(
        &mut client,
        &survey_id,
        &anna,
        Channel::Email,
        vec![score("nps", 5)],
        "b-5",
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("response.survey_id"),
        "{}",
        status.message()
    );

    // A comment beyond the documented 8 KiB.
    let status = client
        .create_comment(pb::CreateCommentRequest {
            comment: Some(pb::Comment {
                source: pb::CommentSource::AppReview as i32,
                text: "é".repeat(4097),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "comment.text");

    // A window that ends before it starts.
    let now = std::time::SystemTime::now();
    let backwards = Some(TimeRange {
        start_time: Some(prost_types::Timestamp::from(now)),
        end_time: Some(prost_types::Timestamp::from(now - Duration::from_secs(60))),
    });
    let status = client
        .get_kpis(pb::GetKpisRequest {
            time_range: backwards,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "time_range.end_time");
    let status = client
        .list_trends(pb::ListTrendsRequest {
            time_range: backwards,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "time_range.end_time");

    // A survey definition with a bad question and trigger: every field at once.
    let status = client
        .create_survey(pb::CreateSurveyRequest {
            survey: Some(pb::Survey {
                questions: vec![question("Bad Id", pb::QuestionType::Unspecified, false)],
                triggers: vec![pb::Trigger {
                    touchpoint_type: "purchase".into(),
                    sampling_rate: 2.0,
                    condition: "touchpont.channel == 'web'".into(),
                    ..Default::default()
                }],
                ..survey("bad")
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    for field in [
        "survey.questions[0].question_id",
        "survey.questions[0].type",
        "survey.triggers[0].sampling_rate",
        "survey.triggers[0].condition",
    ] {
        assert_invalid(&status, field);
    }

    // A survey sent without consent: marketing is opt-in and Anna never said yes.
    let marketing = create_survey(
        &mut client,
        pb::Survey {
            consent_purpose: "marketing".into(),
            ..survey("marketing")
        },
    )
    .await;
    let refused = client
        .invite_to_survey(pb::InviteToSurveyRequest {
            survey_id: marketing.clone(),
            customer: customer(&anna),
            request_id: "no-consent".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!refused.invited);
    assert_eq!(refused.refusal, pb::InvitationRefusal::NoConsent as i32);
    assert!(
        refused.refusal_detail.starts_with("customer:"),
        "{}",
        refused.refusal_detail
    );
    assert!(refused.invitation_id.is_empty());

    // An invitation to an unknown customer.
    let status = client
        .invite_to_survey(pb::InviteToSurveyRequest {
            survey_id: marketing,
            customer: customer(&uuid::Uuid::now_v7().to_string()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    app.stop().await;
}

#[tokio::test]
async fn the_period_rule_holds_under_concurrent_invitations_on_three_replicas() {
    let (first, budget) = spawn_feedback().await;
    // Two more feedback replicas on the same database and Redis.
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let profile_address = format!("http://{}", first.addresses[&ServiceKind::Profile]);
        let recommendation_address = first.settings.recommendation_addr.clone();
        replicas.push(
            spawn_on(
                first.database.clone(),
                first.redis_prefix.clone(),
                Options {
                    services: vec![ServiceKind::Feedback],
                    adjust: Box::new(move |settings| {
                        settings.profile_addr = Some(profile_address);
                        settings.recommendation_addr = recommendation_address;
                    }),
                    ..Default::default()
                },
            )
            .await,
        );
    }
    let mut client = feedback(&first).await;
    let anna = new_customer(&first, "crm-period").await;
    let survey_id = create_survey(
        &mut client,
        pb::Survey {
            minimum_period: Some(prost_types::Duration {
                seconds: 30 * 24 * 3600,
                nanos: 0,
            }),
            ..survey("period")
        },
    )
    .await;
    let clients = [
        feedback(&first).await,
        feedback(&replicas[0]).await,
        feedback(&replicas[1]).await,
    ];
    let mut calls = Vec::new();
    for attempt in 0..18 {
        let mut client = clients[attempt % 3].clone();
        let survey_id = survey_id.clone();
        let anna = anna.clone();
        calls.push(tokio::spawn(async move {
            client
                .invite_to_survey(pb::InviteToSurveyRequest {
                    survey_id,
                    customer: customer(&anna),
                    request_id: format!("trigger-{attempt}"),
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner())
        }));
    }
    let mut invited = 0;
    for call in calls {
        let answer = call.await.unwrap().unwrap();
        if answer.invited {
            invited += 1;
            assert!(!answer.invitation_id.is_empty());
        } else {
            assert_eq!(
                answer.refusal,
                pb::InvitationRefusal::SurveyedRecently as i32,
                "{answer:?}"
            );
        }
    }
    assert_eq!(invited, 1, "exactly one invitation within the period");
    assert_eq!(budget.granted_count(), 1, "the budget was drawn on once");

    // A retry of a request answers as the first time.
    let retry = client
        .invite_to_survey(pb::InviteToSurveyRequest {
            survey_id: survey_id.clone(),
            customer: customer(&anna),
            request_id: "trigger-0".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let rows = first
        .database
        .connect()
        .await
        .query_all_raw(Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT invited FROM feedback_invitations",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 18, "one decision per request, retries included");
    let _ = retry;

    // A global-period survey sees the invitation of the other survey.
    let global = create_survey(
        &mut client,
        pb::Survey {
            minimum_period: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
            global_period: true,
            ..survey("global")
        },
    )
    .await;
    let refused = client
        .invite_to_survey(pb::InviteToSurveyRequest {
            survey_id: global,
            customer: customer(&anna),
            request_id: "global-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        refused.refusal,
        pb::InvitationRefusal::SurveyedRecently as i32
    );
    for mut replica in replicas {
        replica.stop_services().await;
    }
    first.stop().await;
}

fn purchase(id: &str, profile_id: &str) -> Touchpoint {
    Touchpoint {
        touchpoint_id: id.into(),
        customer: customer(profile_id),
        channel: Channel::Store as i32,
        r#type: TouchpointType::Purchase as i32,
        occurred_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
        ..Default::default()
    }
}

#[tokio::test]
async fn touchpoints_trigger_invitations_once_per_period() {
    let (app, budget) = spawn_feedback().await;
    let mut client = feedback(&app).await;
    let anna = new_customer(&app, "crm-trigger-anna").await;
    let bo = new_customer(&app, "crm-trigger-bo").await;
    create_survey(
        &mut client,
        pb::Survey {
            triggers: vec![pb::Trigger {
                touchpoint_type: "purchase".into(),
                condition: "touchpoint.channel == 'store'".into(),
                sampling_rate: 1.0,
                delay: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
            }],
            minimum_period: Some(prost_types::Duration {
                seconds: 7 * 24 * 3600,
                nanos: 0,
            }),
            ..survey("after a store purchase")
        },
    )
    .await;
    // Three purchases of Anna and one of Bo arrive at once.
    app.journey()
        .await
        .record_touchpoints(RecordTouchpointsRequest {
            touchpoints: vec![
                purchase("p-1", &anna),
                purchase("p-2", &anna),
                purchase("p-3", &anna),
                purchase("p-4", &bo),
            ],
        })
        .await
        .unwrap();
    let db = app.database.connect().await;
    let decisions = eventually(Duration::from_secs(15), "four trigger decisions", || {
        let db = &db;
        async move {
            let rows = db
                .query_all_raw(Statement::from_string(
                    sea_orm::DatabaseBackend::Postgres,
                    "SELECT profile_id, invited, refusal FROM feedback_invitations",
                ))
                .await
                .unwrap();
            (rows.len() == 4).then_some(rows)
        }
    })
    .await;
    let invited: Vec<String> = decisions
        .iter()
        .filter(|row| row.try_get::<bool>("", "invited").unwrap())
        .map(|row| row.try_get::<String>("", "profile_id").unwrap())
        .collect();
    assert_eq!(invited.len(), 2, "one each: {invited:?}");
    assert!(invited.contains(&anna) && invited.contains(&bo));
    assert_eq!(budget.granted_count(), 2);
    let published = events(
        &app,
        &["feedback.survey_invited"],
        3,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(published.len(), 2);
    let Some(Payload::SurveyInvited(invitation)) = &published[0].payload else {
        panic!("not an invitation");
    };
    assert_eq!(invitation.channel, Channel::Email as i32);
    assert_eq!(invitation.language, "en");
    assert!(invitation.touchpoint_id.starts_with("p-"));
    let send_after = invitation.send_after.unwrap().seconds;
    let now = chrono::Utc::now().timestamp();
    assert!(
        (send_after - now - 3600).abs() < 120,
        "sent an hour after the purchase"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_refused_or_unreachable_budget_makes_no_invitation() {
    let (app, budget) = spawn_feedback().await;
    let mut client = feedback(&app).await;
    let anna = new_customer(&app, "crm-budget").await;
    // Anna reads Swedish; the survey asks in English and Swedish.
    app.profile()
        .await
        .update_preferences(cairn_contract::profile::v1::UpdatePreferencesRequest {
            customer: customer(&anna),
            preferences: Some(cairn_contract::profile::v1::Preferences {
                language: "sv-SE".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let mut bilingual = survey("budget");
    bilingual.questions[0].texts.insert(
        "sv".into(),
        "Hur troligt är det att du rekommenderar oss?".into(),
    );
    let survey_id = create_survey(&mut client, bilingual).await;
    budget.refuse.store(true, Ordering::SeqCst);
    let refused = client
        .invite_to_survey(pb::InviteToSurveyRequest {
            survey_id: survey_id.clone(),
            customer: customer(&anna),
            request_id: "budget-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refused.refusal, pb::InvitationRefusal::ContactBudget as i32);
    assert!(
        refused.refusal_detail.contains("1 of 1 today"),
        "{}",
        refused.refusal_detail
    );
    // The refusal gave the period slot back: once the budget allows, she is invited.
    budget.refuse.store(false, Ordering::SeqCst);
    let invited = client
        .invite_to_survey(pb::InviteToSurveyRequest {
            survey_id: survey_id.clone(),
            customer: customer(&anna),
            request_id: "budget-2".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(invited.invited, "{invited:?}");
    assert_eq!(invited.language, "sv", "asked in the customer's language");
    app.stop().await;

    // The recommendation service unreachable: UNAVAILABLE, to retry later.
    let app = cairn_tests::spawn_app_with(Options {
        services: vec![ServiceKind::Profile, ServiceKind::Feedback],
        adjust: Box::new(|settings| {
            settings.recommendation_addr = Some("http://127.0.0.1:9".into());
        }),
        ..Default::default()
    })
    .await;
    let mut client = feedback(&app).await;
    let bo = new_customer(&app, "crm-budget-down").await;
    let survey_id = create_survey(&mut client, survey("down")).await;
    let status = client
        .invite_to_survey(pb::InviteToSurveyRequest {
            survey_id,
            customer: customer(&bo),
            request_id: "down-1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    app.stop().await;
}

/// Against the real recommendation service: a survey invitation and an
/// offer draw on one contact budget. Needs the recommendation service's
/// ReserveContact and contact policy.
#[tokio::test]
async fn surveys_share_the_contact_budget() {
    use cairn_contract::recommendation::v1 as rec;
    use cairn_contract::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
    let app = spawn_app().await;
    let mut recommendation = RecommendationServiceClient::new(
        app.authed(
            ServiceKind::Recommendation,
            &[
                "recommendation.decide",
                "recommendation.read",
                "recommendation.write",
            ],
        )
        .await,
    );
    recommendation
        .update_contact_policy(rec::UpdateContactPolicyRequest {
            contact_policy: Some(rec::ContactPolicy {
                channels: vec![rec::ChannelContactPolicy {
                    channel: Channel::Sms as i32,
                    caps: Some(rec::ContactCaps {
                        max_per_day: 1,
                        max_per_week: 3,
                    }),
                    quiet_hours_apply: false,
                }],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["channels".into()],
            }),
        })
        .await
        .unwrap();
    let mut client = feedback(&app).await;
    let survey_id = create_survey(
        &mut client,
        pb::Survey {
            channel: Channel::Sms as i32,
            ..survey("sms")
        },
    )
    .await;
    let anna = app
        .create_profile(
            vec![cairn_tests::identifier(
                IdentifierType::PhoneNumber,
                "+46701111111",
            )],
            &[],
        )
        .await;
    // A service message takes Anna's one SMS of the day; the survey must wait.
    let reserved = recommendation
        .reserve_contact(rec::ReserveContactRequest {
            customer: customer(&anna),
            channel: Channel::Sms as i32,
            purpose: "service".into(),
            kind: rec::ActionKind::Service as i32,
            reference: "outage notice".into(),
            request_id: "notice-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(reserved.granted, "{reserved:?}");
    let refused = client
        .invite_to_survey(pb::InviteToSurveyRequest {
            survey_id: survey_id.clone(),
            customer: customer(&anna),
            request_id: "sms-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!refused.invited);
    assert_eq!(
        refused.refusal,
        pb::InvitationRefusal::ContactBudget as i32,
        "{refused:?}"
    );

    // The other way round: Bo's survey takes his SMS of the day.
    let bo = app
        .create_profile(
            vec![cairn_tests::identifier(
                IdentifierType::PhoneNumber,
                "+46702222222",
            )],
            &[],
        )
        .await;
    let sms_survey = survey_id.clone();
    let invited = client
        .invite_to_survey(pb::InviteToSurveyRequest {
            survey_id,
            customer: customer(&bo),
            request_id: "sms-2".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(invited.invited, "{invited:?}");
    let budget = recommendation
        .check_contact_budget(rec::CheckContactBudgetRequest {
            customer: customer(&bo),
            channel: Channel::Sms as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .budget
        .unwrap();
    assert_eq!(budget.used_today, 1);
    assert!(!budget.allowed);

    // The contact policy's quiet hours (not the customer's own) refuse an
    // invitation as quiet hours, saying when they end, not as a spent budget.
    use chrono::Timelike;
    let now = chrono::Utc::now();
    let hour = now.hour();
    recommendation
        .update_contact_policy(rec::UpdateContactPolicyRequest {
            contact_policy: Some(rec::ContactPolicy {
                channels: vec![rec::ChannelContactPolicy {
                    channel: Channel::Sms as i32,
                    caps: Some(rec::ContactCaps {
                        max_per_day: 10,
                        max_per_week: 30,
                    }),
                    quiet_hours_apply: true,
                }],
                quiet_hours: Some(rec::QuietHours {
                    start_time: format!("{hour:02}:00"),
                    end_time: format!("{:02}:00", (hour + 2) % 24),
                }),
                time_zone: "UTC".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["channels".into(), "quiet_hours".into(), "time_zone".into()],
            }),
        })
        .await
        .unwrap();
    let cy = app
        .create_profile(
            vec![cairn_tests::identifier(
                IdentifierType::PhoneNumber,
                "+46703333333",
            )],
            &[],
        )
        .await;
    let quiet = client
        .invite_to_survey(pb::InviteToSurveyRequest {
            survey_id: sms_survey,
            customer: customer(&cy),
            request_id: "sms-3".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        quiet.refusal,
        pb::InvitationRefusal::QuietHours as i32,
        "{quiet:?}"
    );
    let allowed_from = quiet.allowed_from.expect("when quiet hours end");
    let end = now
        .with_minute(0)
        .and_then(|time| time.with_second(0))
        .and_then(|time| time.with_nanosecond(0))
        .unwrap()
        + chrono::Duration::hours(2);
    assert_eq!(allowed_from.seconds, end.timestamp(), "{quiet:?}");
    app.stop().await;
}

/// Consent refused for the service purpose on the survey's channel stops invitations.
#[tokio::test]
async fn a_refused_service_consent_stops_invitations() {
    let (app, budget) = spawn_feedback().await;
    let mut client = feedback(&app).await;
    let anna = new_customer(&app, "crm-refused").await;
    app.profile()
        .await
        .record_consent(RecordConsentRequest {
            customer: customer(&anna),
            consent: Some(Consent {
                purpose: "service".into(),
                channel: Channel::Email as i32,
                granted: false,
                source: "web_form".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let survey_id = create_survey(&mut client, survey("consent")).await;
    let refused = client
        .invite_to_survey(pb::InviteToSurveyRequest {
            survey_id,
            customer: customer(&anna),
            request_id: "c-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refused.refusal, pb::InvitationRefusal::NoConsent as i32);
    assert_eq!(budget.granted_count(), 0, "no budget drawn without consent");
    let _ = Arc::clone(&budget);
    app.stop().await;
}

#[tokio::test]
async fn surveys_are_listed_and_changed_within_their_rules() {
    let (app, _budget) = spawn_feedback().await;
    let mut client = feedback(&app).await;
    let anna = new_customer(&app, "crm-update").await;
    let first = create_survey(&mut client, survey("first")).await;
    let again = client
        .create_survey(pb::CreateSurveyRequest {
            survey: Some(survey("second")),
            request_id: "create-second".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .survey
        .unwrap();
    let retried = client
        .create_survey(pb::CreateSurveyRequest {
            survey: Some(survey("second")),
            request_id: "create-second".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .survey
        .unwrap();
    assert_eq!(
        again.survey_id, retried.survey_id,
        "a retried create returns the first"
    );
    let page = client
        .list_surveys(pb::ListSurveysRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.surveys.len(), 1);
    let rest = client
        .list_surveys(pb::ListSurveysRequest {
            page_size: 10,
            page_token: page.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.surveys.len(), 1);
    assert!(rest.next_page_token.is_empty());

    // A new name with a mask; other fields as they were.
    let renamed = client
        .update_survey(pb::UpdateSurveyRequest {
            survey: Some(pb::Survey {
                survey_id: first.clone(),
                display_name: "renamed".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .survey
        .unwrap();
    assert_eq!(renamed.display_name, "renamed");
    assert_eq!(renamed.questions.len(), 4);

    // Once answered, a question keeps its type.
    answer(
        &mut client,
        &first,
        &anna,
        Channel::Email,
        vec![score("nps", 9)],
        "u-1",
    )
    .await
    .unwrap();
    let mut changed = survey("first");
    changed.questions[0].r#type = pb::QuestionType::Csat as i32;
    changed.survey_id = first.clone();
    let status = client
        .update_survey(pb::UpdateSurveyRequest {
            survey: Some(changed),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["questions".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("survey.questions[0].type"),
        "{}",
        status.message()
    );
    // A bad value in the mask names its field; an unknown path is refused.
    let status = client
        .update_survey(pb::UpdateSurveyRequest {
            survey: Some(pb::Survey {
                survey_id: first.clone(),
                channel: 0,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["channel".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "survey.channel");
    let status = client
        .update_survey(pb::UpdateSurveyRequest {
            survey: Some(pb::Survey {
                survey_id: first,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["closed".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "update_mask");
    app.stop().await;
}
