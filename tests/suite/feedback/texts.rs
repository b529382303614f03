//! Comments in many languages: detected, analysed per language and joined
//! in themes; trends with volume over time and growth; churn reasons;
//! feature requests deduplicated across languages.

use std::time::{Duration, SystemTime};

use cairn_contract::common::v1::{Channel, TimeRange};
use cairn_contract::feedback::v1 as pb;

use super::*;

const DAY: u64 = 24 * 3600;

/// A second after midnight (UTC) `days_ago` days ago: inside that day's
/// bucket whenever the test runs.
fn day_start(days_ago: u64) -> SystemTime {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(now - now % DAY - days_ago * DAY + 1)
}

async fn comment(
    client: &mut FeedbackServiceClient<AuthedChannel>,
    text: &str,
    days_ago: u64,
) -> pb::Comment {
    comment_in(client, text, days_ago, "").await
}

async fn comment_in(
    client: &mut FeedbackServiceClient<AuthedChannel>,
    text: &str,
    days_ago: u64,
    language: &str,
) -> pb::Comment {
    client
        .create_comment(pb::CreateCommentRequest {
            comment: Some(pb::Comment {
                source: pb::CommentSource::AppReview as i32,
                channel: Channel::MobileApp as i32,
                text: text.into(),
                rating: 2,
                language: language.into(),
                write_time: Some(prost_types::Timestamp::from(day_start(days_ago))),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .comment
        .unwrap()
}

#[tokio::test]
async fn trends_are_found_in_comments_in_many_languages() {
    let (app, _budget) = spawn_feedback().await;
    let mut client = feedback(&app).await;

    // Billing complaints grow: one two days ago, one yesterday, four today,
    // in English, Swedish, Greek, Serbian and Danish.
    let english = comment(
        &mut client,
        "My bill was wrong again, I was charged twice this month",
        2,
    )
    .await;
    assert_eq!(english.language, "en");
    assert_eq!(english.themes, ["billing"]);
    comment(
        &mut client,
        "Fakturan är fel igen och ingen på kundtjänst svarar",
        1,
    )
    .await;
    let greek = comment(
        &mut client,
        "Ο λογαριασμός είναι πάλι λάθος και πολύ ακριβός",
        0,
    )
    .await;
    assert_eq!(greek.language, "el");
    let serbian = comment(
        &mut client,
        "Рачун је поново погрешан, наплатили су ми двапут",
        0,
    )
    .await;
    assert_eq!(serbian.language, "sr");
    assert!(
        serbian.themes.contains(&"billing".to_string()),
        "{:?}",
        serbian.themes
    );
    let swedish = comment(
        &mut client,
        "Räkningen för mobilen är alldeles för hög den här månaden",
        0,
    )
    .await;
    assert_eq!(swedish.language, "sv");
    // A Danish comment whose language the connector knows.
    let danish = comment_in(
        &mut client,
        "Regningen er forkert igen og jeg har ventet en time",
        0,
        "da",
    )
    .await;
    assert_eq!(danish.language, "da");
    // Network complaints stay flat: one a day.
    for days_ago in [2, 1, 0] {
        comment(
            &mut client,
            "The network coverage at home is terrible, no signal at all",
            days_ago,
        )
        .await;
    }

    let trends = client
        .list_trends(pb::ListTrendsRequest {
            time_range: Some(TimeRange {
                start_time: Some(prost_types::Timestamp::from(day_start(2))),
                end_time: None,
            }),
            bucket: pb::Bucket::Day as i32,
            limit: 10,
        })
        .await
        .unwrap()
        .into_inner()
        .trends;
    let billing = trends
        .iter()
        .find(|t| t.theme == "billing")
        .expect("billing trend");
    let network = trends
        .iter()
        .find(|t| t.theme == "network")
        .expect("network trend");
    assert_eq!(billing.volume.iter().sum::<i64>(), 6, "{billing:?}");
    assert_eq!(*billing.volume.last().unwrap(), 4, "{billing:?}");
    // Growth: (4 + 1) / (mean of 1 and 1, + 1) = 2.5.
    assert!((billing.growth - 2.5).abs() < 1e-9, "{billing:?}");
    assert!((network.growth - 1.0).abs() < 1e-9, "{network:?}");
    assert!(
        trends.iter().position(|t| t.theme == "billing")
            < trends.iter().position(|t| t.theme == "network"),
        "fastest growing first: {trends:?}"
    );
    for language in ["da", "el", "en", "sr", "sv"] {
        assert!(
            billing.languages.contains(&language.to_string()),
            "{language} in {:?}",
            billing.languages
        );
    }
    assert_eq!(billing.examples.len(), 3);

    // Comments by theme, whatever their language.
    let billing_comments = client
        .list_comments(pb::ListCommentsRequest {
            theme: "billing".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .comments;
    assert_eq!(billing_comments.len(), 6);
    app.stop().await;
}

#[tokio::test]
async fn ticket_categories_count_in_trends() {
    let (app, _budget) = spawn_feedback().await;
    let mut client = feedback(&app).await;
    let anna = new_customer(&app, "crm-trend-ticket").await;
    for _ in 0..2 {
        client
            .create_ticket(pb::CreateTicketRequest {
                ticket: Some(pb::Ticket {
                    customer: customer(&anna),
                    channel: Channel::Chatbot as i32,
                    category: "Roaming".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .unwrap();
    }
    comment(
        &mut client,
        "Roaming abroad did not work at all on my holiday",
        0,
    )
    .await;
    let trends = client
        .list_trends(pb::ListTrendsRequest {
            time_range: Some(TimeRange {
                start_time: Some(prost_types::Timestamp::from(
                    SystemTime::now() - Duration::from_secs(DAY),
                )),
                end_time: None,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .trends;
    let roaming = trends
        .iter()
        .find(|t| t.theme == "roaming")
        .expect("roaming trend");
    assert_eq!(roaming.volume, [3], "two tickets and a comment");
    assert_eq!(roaming.examples.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn feature_requests_are_deduplicated_across_languages() {
    let (app, _budget) = spawn_feedback().await;
    let mut client = feedback(&app).await;
    let anna = new_customer(&app, "crm-feature-anna").await;
    let sven = new_customer(&app, "crm-feature-sven").await;
    let ask = |who: Option<String>, text: &'static str| {
        let mut client = client.clone();
        async move {
            client
                .create_feature_request(pb::CreateFeatureRequestRequest {
                    customer: who.as_deref().and_then(customer),
                    text: text.into(),
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let first = ask(Some(anna.clone()), "Please add a dark mode to the app").await;
    assert!(!first.merged);
    let swedish = ask(Some(sven.clone()), "Lägg till mörkt läge i appen, tack").await;
    assert!(swedish.merged);
    let id = first.feature_request.unwrap().feature_request_id;
    assert_eq!(
        swedish.feature_request.as_ref().unwrap().feature_request_id,
        id
    );
    assert_eq!(swedish.feature_request.unwrap().votes, 2);
    // Anna asking again is no new vote.
    let again = ask(Some(anna.clone()), "Dark mode in the app please!").await;
    assert_eq!(again.feature_request.unwrap().votes, 2);
    let other = ask(None, "Support for eSIM on watches").await;
    assert!(!other.merged);
    let listed = client
        .list_feature_requests(pb::ListFeatureRequestsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .feature_requests;
    let votes: Vec<(String, i64)> = listed
        .iter()
        .map(|f| (f.feature_request_id.clone(), f.votes))
        .collect();
    assert_eq!(votes[0], (id, 2));
    assert_eq!(votes.len(), 2);
    let status = client
        .create_feature_request(pb::CreateFeatureRequestRequest {
            customer: None,
            text: "x".repeat(1025),
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "text");
    app.stop().await;
}

#[tokio::test]
async fn churn_reasons_come_from_records_and_exit_surveys() {
    let (app, _budget) = spawn_feedback().await;
    let mut client = feedback(&app).await;
    let exit = create_survey(
        &mut client,
        pb::Survey {
            questions: vec![pb::Question {
                options: vec![
                    pb::Option {
                        option_id: "price".into(),
                        texts: [("en".to_string(), "Price".to_string())].into(),
                    },
                    pb::Option {
                        option_id: "coverage".into(),
                        texts: [("en".to_string(), "Coverage".to_string())].into(),
                    },
                ],
                ..question("churn_reason", pb::QuestionType::SingleChoice, true)
            }],
            ..survey("exit")
        },
    )
    .await;
    for (index, reason) in ["Price", "price ", "Moved abroad"].iter().enumerate() {
        let who = new_customer(&app, &format!("crm-churn-{index}")).await;
        client
            .record_churn(pb::RecordChurnRequest {
                customer: customer(&who),
                reason: reason.to_string(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let leaver = new_customer(&app, "crm-churn-exit").await;
    client
        .submit_survey_response(pb::SubmitSurveyResponseRequest {
            response: Some(pb::SurveyResponse {
                survey_id: exit,
                customer: customer(&leaver),
                answers: vec![pb::Answer {
                    question_id: "churn_reason".into(),
                    value: Some(pb::answer::Value::Choices(pb::ChoiceList {
                        option_ids: vec!["coverage".into()],
                    })),
                }],
                ..Default::default()
            }),
            request_id: "exit-1".into(),
        })
        .await
        .unwrap();
    let reasons = client
        .list_churn_reasons(pb::ListChurnReasonsRequest {
            time_range: Some(TimeRange {
                start_time: Some(prost_types::Timestamp::from(
                    SystemTime::now() - Duration::from_secs(3600),
                )),
                end_time: None,
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .reasons;
    let reasons: Vec<(String, i64)> = reasons.into_iter().map(|r| (r.reason, r.count)).collect();
    assert_eq!(
        reasons,
        [
            ("Price".to_string(), 2),
            ("Coverage".to_string(), 1),
            ("Moved abroad".to_string(), 1)
        ]
    );
    app.stop().await;
}
