//! Closing the loop with unhappy customers (follow-up tasks), and a
//! person's feedback: the export, and erasure on `profile.erased`.

use std::time::Duration;

use cairn_contract::common::v1::Channel;
use cairn_contract::feedback::v1 as pb;
use cairn_contract::profile::v1::ErasePersonalDataRequest;
use cairn_tests::eventually;
use sea_orm::{ConnectionTrait, Statement};
use tonic::Code;

use super::*;

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

#[tokio::test]
async fn unhappy_answers_get_follow_up_tasks_that_are_worked_and_closed() {
    let (app, _budget) = spawn_feedback().await;
    let mut client = feedback(&app).await;
    let survey_id = create_survey(
        &mut client,
        pb::Survey {
            follow_up_due: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            ..survey("quick follow-up")
        },
    )
    .await;
    let detractor = new_customer(&app, "crm-loop-1").await;
    let hard = new_customer(&app, "crm-loop-2").await;
    let happy = new_customer(&app, "crm-loop-3").await;
    answer(
        &mut client,
        &survey_id,
        &detractor,
        Channel::Web,
        vec![score("nps", 0)],
        "l-1",
    )
    .await
    .unwrap();
    answer(
        &mut client,
        &survey_id,
        &hard,
        Channel::Web,
        vec![score("nps", 8), score("effort", 1)],
        "l-2",
    )
    .await
    .unwrap();
    answer(
        &mut client,
        &survey_id,
        &happy,
        Channel::Web,
        vec![score("nps", 10), score("csat", 5)],
        "l-3",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let overdue = client
        .list_follow_up_tasks(pb::ListFollowUpTasksRequest {
            overdue_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tasks;
    let reasons: Vec<(String, String)> = overdue
        .iter()
        .map(|t| (t.profile_id.clone(), t.reason.clone()))
        .collect();
    assert_eq!(
        reasons,
        [
            (detractor.clone(), "detractor (NPS 0)".to_string()),
            (hard.clone(), "very low effort score (1)".to_string())
        ]
    );
    let task = overdue[0].clone();

    // Answered without an answer: INVALID_ARGUMENT naming it.
    let status = client
        .update_follow_up_task(pb::UpdateFollowUpTaskRequest {
            task: Some(pb::FollowUpTask {
                task_id: task.task_id.clone(),
                status: "answered".into(),
                ..Default::default()
            }),
            update_mask: mask(&["status"]),
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "task.answer");
    let answered = client
        .update_follow_up_task(pb::UpdateFollowUpTaskRequest {
            task: Some(pb::FollowUpTask {
                task_id: task.task_id.clone(),
                assignee: "agent-7".into(),
                answer: "Called back; credited the wrong charge.".into(),
                status: "answered".into(),
                ..Default::default()
            }),
            update_mask: mask(&["assignee", "answer", "status"]),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(answered.status, "answered");
    assert_eq!(answered.assignee, "agent-7");
    let mine = client
        .list_follow_up_tasks(pb::ListFollowUpTasksRequest {
            assignee: "agent-7".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tasks;
    assert_eq!(mine.len(), 1);
    let still_overdue = client
        .list_follow_up_tasks(pb::ListFollowUpTasksRequest {
            overdue_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tasks;
    assert_eq!(
        still_overdue.len(),
        1,
        "an answered task is no longer overdue"
    );
    client
        .update_follow_up_task(pb::UpdateFollowUpTaskRequest {
            task: Some(pb::FollowUpTask {
                task_id: task.task_id.clone(),
                status: "closed".into(),
                ..Default::default()
            }),
            update_mask: mask(&["status"]),
        })
        .await
        .unwrap();
    let status = client
        .update_follow_up_task(pb::UpdateFollowUpTaskRequest {
            task: Some(pb::FollowUpTask {
                task_id: task.task_id,
                status: "open".into(),
                ..Default::default()
            }),
            update_mask: mask(&["status"]),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    app.stop().await;
}

async fn rows_of(app: &cairn_tests::TestApp, table: &str, profile_id: &str) -> usize {
    app.database
        .connect()
        .await
        .query_all_raw(Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            format!("SELECT 1 FROM {table} WHERE profile_id = '{profile_id}'"),
        ))
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_persons_feedback_is_exported_and_erased() {
    let (app, _budget) = spawn_feedback().await;
    let mut client = feedback(&app).await;
    let survey_id = create_survey(&mut client, survey("export")).await;
    let anna = new_customer(&app, "crm-export-anna").await;
    let bo = new_customer(&app, "crm-export-bo").await;
    for (who, key) in [(&anna, "e-1"), (&bo, "e-2")] {
        answer(
            &mut client,
            &survey_id,
            who,
            Channel::Web,
            vec![
                score("nps", 2),
                text("why", "The app crashes when I pay my bill"),
            ],
            key,
        )
        .await
        .unwrap();
        client
            .create_ticket(pb::CreateTicketRequest {
                ticket: Some(pb::Ticket {
                    customer: customer(who),
                    channel: Channel::Chatbot as i32,
                    category: "app".into(),
                    complaint: true,
                    ..Default::default()
                }),
                request_id: format!("ticket-{key}"),
            })
            .await
            .unwrap();
        client
            .record_churn(pb::RecordChurnRequest {
                customer: customer(who),
                reason: "price".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    client
        .create_comment(pb::CreateCommentRequest {
            comment: Some(pb::Comment {
                customer: customer(&anna),
                source: pb::CommentSource::Social as i32,
                text: "Still waiting for support".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();

    let export = client
        .export_customer_feedback(pb::ExportCustomerFeedbackRequest {
            customer: customer(&anna),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(export.responses.len(), 1);
    assert_eq!(
        export.comments.len(),
        2,
        "the survey comment and the social post"
    );
    assert_eq!(export.tickets.len(), 1);
    assert!(export.responses.iter().all(|r| r.profile_id == anna));

    app.profile()
        .await
        .erase_personal_data(ErasePersonalDataRequest {
            customer: customer(&anna),
            ..Default::default()
        })
        .await
        .unwrap();
    eventually(
        Duration::from_secs(15),
        "Anna's feedback erased",
        || async { (rows_of(&app, "feedback_responses", &anna).await == 0).then_some(()) },
    )
    .await;
    for table in [
        "feedback_responses",
        "feedback_comments",
        "feedback_tickets",
        "feedback_follow_ups",
        "feedback_churn",
        "feedback_invitations",
    ] {
        assert_eq!(
            rows_of(&app, table, &anna).await,
            0,
            "{table} still holds Anna"
        );
        assert!(
            rows_of(&app, table, &bo).await > 0 || table == "feedback_invitations",
            "{table} lost Bo"
        );
    }
    // Her contacts and history went with her ticket; Bo's stay.
    let contacts = app
        .database
        .connect()
        .await
        .query_all_raw(Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT 1 FROM feedback_ticket_contacts".to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(contacts.len(), 1);
    // The export of an erased person: nobody to export.
    let status = client
        .export_customer_feedback(pb::ExportCustomerFeedbackRequest {
            customer: customer(&anna),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // Bo's measures remain.
    let bo_export = client
        .export_customer_feedback(pb::ExportCustomerFeedbackRequest {
            customer: customer(&bo),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bo_export.responses.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn feedback_follows_a_profile_merge_into_the_export() {
    use cairn_contract::profile::v1::MergeProfilesRequest;
    let (app, _budget) = spawn_feedback().await;
    let mut client = feedback(&app).await;
    let survey_id = create_survey(&mut client, survey("merge")).await;
    let anna = new_customer(&app, "crm-merge-anna").await;
    let duplicate = new_customer(&app, "crm-merge-duplicate").await;
    answer(
        &mut client,
        &survey_id,
        &duplicate,
        Channel::Web,
        vec![score("nps", 9)],
        "m-1",
    )
    .await
    .unwrap();
    app.profile()
        .await
        .merge_profiles(MergeProfilesRequest {
            survivor_profile_id: anna.clone(),
            merged_profile_id: duplicate,
            reason: "agent confirmed".into(),
        })
        .await
        .unwrap();
    let export_client = client.clone();
    let anna_for_check = anna.clone();
    let export = eventually(
        Duration::from_secs(15),
        "the answer following the merge",
        || {
            let mut client = export_client.clone();
            let anna = anna_for_check.clone();
            async move {
                let export = client
                    .export_customer_feedback(pb::ExportCustomerFeedbackRequest {
                        customer: customer(&anna),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                (export.responses.len() == 1).then_some(export)
            }
        },
    )
    .await;
    assert_eq!(export.responses[0].profile_id, anna);
    app.stop().await;
}
