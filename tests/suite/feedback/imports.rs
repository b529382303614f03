//! Answers brought over from another survey tool keep their original time
//! (ImportSurveyResponse, scope "feedback.import"), so KPIs over past weeks
//! count them; a customer's own token and a token without the scope cannot
//! back-date an answer.

use std::time::{Duration, SystemTime};

use cairn_contract::common::v1::TimeRange;
use cairn_contract::feedback::v1 as pb;
use cairn_contract::feedback::v1::feedback_service_client::FeedbackServiceClient;
use cairn_runtime::ServiceKind;
use tonic::Code;

use super::{create_survey, customer, feedback, new_customer, score, spawn_feedback, survey};

const DAY: u64 = 24 * 3600;

fn import(
    survey_id: &str,
    profile_id: &str,
    nps: i32,
    request_id: &str,
    at: SystemTime,
) -> pb::ImportSurveyResponseRequest {
    pb::ImportSurveyResponseRequest {
        response: Some(pb::SurveyResponse {
            survey_id: survey_id.into(),
            customer: customer(profile_id),
            answers: vec![score("nps", nps)],
            ..Default::default()
        }),
        request_id: request_id.into(),
        submit_time: Some(at.into()),
    }
}

#[tokio::test]
async fn imported_answers_keep_their_time_and_count_in_past_kpis() {
    let (app, _budget) = spawn_feedback().await;
    let mut operator = feedback(&app).await;
    let survey_id = create_survey(&mut operator, survey("Relationship NPS")).await;
    let anna = new_customer(&app, "crm-anna").await;
    let bo = new_customer(&app, "crm-bo").await;
    let week_start = SystemTime::now() - Duration::from_secs(21 * DAY);
    let week_end = week_start + Duration::from_secs(7 * DAY);
    let mut importer = FeedbackServiceClient::new(
        app.authed(ServiceKind::Feedback, &["feedback.import"])
            .await,
    );
    // Three answers of that week (two promoters, one detractor), one of the
    // week before; one is sent twice.
    let answers = [
        (&anna, 10, "legacy-1", week_start + Duration::from_secs(DAY)),
        (
            &bo,
            9,
            "legacy-2",
            week_start + Duration::from_secs(2 * DAY),
        ),
        (
            &anna,
            3,
            "legacy-3",
            week_start + Duration::from_secs(5 * DAY),
        ),
        (
            &bo,
            0,
            "legacy-4",
            week_start - Duration::from_secs(2 * DAY),
        ),
    ];
    for (who, nps, key, at) in answers {
        let stored = importer
            .import_survey_response(import(&survey_id, who, nps, key, at))
            .await
            .unwrap()
            .into_inner();
        assert!(!stored.duplicate);
        let submitted = stored.response.unwrap().submit_time.unwrap();
        let expected = prost_types::Timestamp::from(at);
        assert_eq!(
            submitted.seconds, expected.seconds,
            "the original time is kept"
        );
    }
    let again = importer
        .import_survey_response(import(
            &survey_id,
            &anna,
            10,
            "legacy-1",
            week_start + Duration::from_secs(DAY),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(again.duplicate, "a repeated import counts once");
    // An answer given today through the ordinary path is not in that week.
    operator
        .submit_survey_response(pb::SubmitSurveyResponseRequest {
            response: Some(pb::SurveyResponse {
                survey_id: survey_id.clone(),
                customer: customer(&bo),
                answers: vec![score("nps", 10)],
                ..Default::default()
            }),
            request_id: "today".into(),
        })
        .await
        .unwrap();

    let rows = operator
        .get_kpis(pb::GetKpisRequest {
            time_range: Some(TimeRange {
                start_time: Some(week_start.into()),
                end_time: Some(week_end.into()),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let nps = rows[0].nps.unwrap();
    assert_eq!(nps.count, 3, "the week's imported answers: {nps:?}");
    // (2 promoters - 1 detractor) / 3 answers.
    assert!((nps.value - 100.0 / 3.0).abs() < 1e-6, "{nps:?}");
    println!(
        "answers imported into a week three weeks back: 3, counted by its KPIs: {}",
        nps.count
    );

    // Nobody else may back-date: a customer's own token, a token without
    // the import scope, and a time in the future.
    let token = app.customer_token(&anna, &["feedback.import", "feedback.respond"]);
    let mut front = FeedbackServiceClient::new(app.with_token(ServiceKind::Feedback, &token).await);
    let refused = front
        .import_survey_response(import(&survey_id, &anna, 10, "mine", week_start))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let mut writer = FeedbackServiceClient::new(
        app.authed(
            ServiceKind::Feedback,
            &["feedback.write", "feedback.respond"],
        )
        .await,
    );
    let refused = writer
        .import_survey_response(import(&survey_id, &anna, 10, "w", week_start))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("feedback.import"), "{refused:?}");
    let refused = importer
        .import_survey_response(import(
            &survey_id,
            &anna,
            10,
            "future",
            SystemTime::now() + Duration::from_secs(DAY),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    app.stop().await;
}
