//! KPIs over gRPC, checked against figures computed by hand on a fixed
//! data set: NPS of a known mix of promoters, passives and detractors,
//! CSAT, CES, FCR and churn, with their confidence intervals, by channel,
//! segment and journey stage.

use std::time::{Duration, SystemTime};

use cairn_contract::common::v1::{Channel, TimeRange};
use cairn_contract::feedback::v1 as pb;
use cairn_contract::profile::v1::{CreateSegmentRequest, Segment, UpdateSegmentMembersRequest};

use super::*;

fn close(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() < 0.01,
        "{what}: {actual} is not {expected}"
    );
}

fn last_hour() -> Option<TimeRange> {
    Some(TimeRange {
        start_time: Some(prost_types::Timestamp::from(
            SystemTime::now() - Duration::from_secs(3600),
        )),
        end_time: Some(prost_types::Timestamp::from(
            SystemTime::now() + Duration::from_secs(60),
        )),
    })
}

async fn kpis(
    client: &mut FeedbackServiceClient<AuthedChannel>,
    breakdown: pb::Breakdown,
    customers_at_start: i64,
) -> Vec<pb::KpiRow> {
    client
        .get_kpis(pb::GetKpisRequest {
            time_range: last_hour(),
            bucket: pb::Bucket::Unspecified as i32,
            breakdown: breakdown as i32,
            customers_at_start,
        })
        .await
        .unwrap()
        .into_inner()
        .rows
}

#[tokio::test]
async fn kpis_match_figures_computed_by_hand() {
    let (app, _budget) = spawn_feedback().await;
    let mut client = feedback(&app).await;
    let survey_id = create_survey(&mut client, survey("relationship")).await;

    // Ten customers: 5 promoters, 3 passives, 2 detractors. The first six
    // answer on the web (5 promoters, 1 passive), the last four by SMS
    // (2 passives, 2 detractors).
    let nps = [10, 9, 9, 10, 9, 7, 8, 8, 3, 6];
    let csat = [5, 4, 4, 3, 1];
    let effort = [2, 4, 6];
    let mut customers = Vec::new();
    for (index, nps_score) in nps.iter().enumerate() {
        let profile_id = new_customer(&app, &format!("crm-kpi-{index}")).await;
        let mut answers = vec![score("nps", *nps_score)];
        if let Some(value) = csat.get(index) {
            answers.push(score("csat", *value));
        }
        if let Some(value) = effort.get(index) {
            answers.push(score("effort", *value));
        }
        let channel = if index < 6 {
            Channel::Web
        } else {
            Channel::Sms
        };
        client
            .submit_survey_response(pb::SubmitSurveyResponseRequest {
                response: Some(pb::SurveyResponse {
                    survey_id: survey_id.clone(),
                    customer: customer(&profile_id),
                    channel: channel as i32,
                    answers,
                    journey_stage: if index < 5 { "purchase" } else { "loyalty" }.into(),
                    ..Default::default()
                }),
                request_id: format!("kpi-{index}"),
            })
            .await
            .unwrap();
        customers.push(profile_id);
    }

    // Four resolved tickets, three of them on the first contact.
    for (index, contacts) in [1, 1, 1, 2].iter().enumerate() {
        let opened = client
            .create_ticket(pb::CreateTicketRequest {
                ticket: Some(pb::Ticket {
                    customer: customer(&customers[index]),
                    channel: Channel::CallCentre as i32,
                    category: "billing".into(),
                    ..Default::default()
                }),
                request_id: format!("t-{index}"),
            })
            .await
            .unwrap()
            .into_inner()
            .ticket
            .unwrap();
        for _ in 1..*contacts {
            client
                .add_ticket_contact(pb::AddTicketContactRequest {
                    ticket_id: opened.ticket_id.clone(),
                    contact: Some(pb::TicketContact {
                        channel: Channel::Chatbot as i32,
                        ..Default::default()
                    }),
                })
                .await
                .unwrap();
        }
        client
            .update_ticket(pb::UpdateTicketRequest {
                ticket: Some(pb::Ticket {
                    ticket_id: opened.ticket_id,
                    status: pb::TicketStatus::Resolved as i32,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["status".into()],
                }),
                reason: String::new(),
            })
            .await
            .unwrap();
    }

    // Three of 200 customers left (one reported twice, counted once).
    for (index, request_id) in ["c-1", "c-2", "c-3", "c-3"].iter().enumerate() {
        client
            .record_churn(pb::RecordChurnRequest {
                customer: customer(&customers[index.min(2)]),
                reason: "price".into(),
                request_id: request_id.to_string(),
                churn_time: None,
            })
            .await
            .unwrap();
    }

    let rows = kpis(&mut client, pb::Breakdown::Unspecified, 200).await;
    assert_eq!(rows.len(), 1, "one bucket: {rows:?}");
    let row = &rows[0];
    // NPS = 50% - 20% = 30. Each answer scores +1/0/-1: variance of the
    // mean = (p + d - (p - d)^2) / n = (0.5 + 0.2 - 0.09) / 10 = 0.061;
    // half width = 1.96 * sqrt(0.061) * 100 = 48.407.
    let nps = row.nps.unwrap();
    assert_eq!(nps.count, 10);
    close(nps.value, 30.0, "NPS");
    close(nps.lower, 30.0 - 48.407, "NPS lower");
    close(nps.upper, 30.0 + 48.407, "NPS upper");
    // CSAT: 3 of 5 are 4 or 5 = 60%; Wilson 95%: 23.07% to 88.24%.
    let csat = row.csat.unwrap();
    assert_eq!(csat.count, 5);
    close(csat.value, 60.0, "CSAT");
    close(csat.lower, 23.07, "CSAT lower");
    close(csat.upper, 88.24, "CSAT upper");
    // CES: mean of 2, 4, 6 = 4; t(2) interval 4 ± 4.303 * 2 / sqrt(3) spans the scale.
    let ces = row.ces.unwrap();
    assert_eq!(ces.count, 3);
    close(ces.value, 4.0, "CES");
    close(ces.lower, 1.0, "CES lower");
    close(ces.upper, 7.0, "CES upper");
    // FCR: 3 of 4 = 75%; Wilson 95%: 30.06% to 95.44%.
    let fcr = row.fcr.unwrap();
    assert_eq!(fcr.count, 4);
    close(fcr.value, 75.0, "FCR");
    close(fcr.lower, 30.06, "FCR lower");
    close(fcr.upper, 95.44, "FCR upper");
    // Churn: 3 of 200 = 1.5%; Wilson 95%: 0.51% to 4.32%.
    let churn = row.churn_rate.unwrap();
    assert_eq!(churn.count, 200);
    close(churn.value, 1.5, "churn");
    close(churn.lower, 0.51, "churn lower");
    close(churn.upper, 4.32, "churn upper");

    // By channel: web 5 promoters and 1 passive of 6 = 83.33; SMS 2 detractors of 4 = -50.
    let by_channel = kpis(&mut client, pb::Breakdown::Channel, 0).await;
    let group = |rows: &[pb::KpiRow], name: &str| {
        rows.iter()
            .find(|r| r.group == name)
            .cloned()
            .unwrap_or_else(|| panic!("no group {name} in {rows:?}"))
    };
    let web = group(&by_channel, "CHANNEL_WEB").nps.unwrap();
    close(web.value, 500.0 / 6.0, "web NPS");
    assert_eq!(web.count, 6);
    let sms = group(&by_channel, "CHANNEL_SMS").nps.unwrap();
    close(sms.value, -50.0, "SMS NPS");
    assert_eq!(sms.count, 4);
    // FCR by the ticket's channel.
    close(
        group(&by_channel, "CHANNEL_CALL_CENTRE").fcr.unwrap().value,
        75.0,
        "call centre FCR",
    );
    assert!(
        by_channel.iter().all(|r| r.churn_rate.is_none()),
        "churn has no breakdown"
    );

    // By journey stage: the first five (all promoters) bought, the rest are in loyalty.
    let by_stage = kpis(&mut client, pb::Breakdown::JourneyStage, 0).await;
    close(
        group(&by_stage, "purchase").nps.unwrap().value,
        100.0,
        "purchase NPS",
    );
    // loyalty: 7, 8, 8, 3, 6 → 0 promoters, 2 detractors of 5 = -40.
    close(
        group(&by_stage, "loyalty").nps.unwrap().value,
        -40.0,
        "loyalty NPS",
    );

    // By survey: one survey holds every answer.
    let by_survey = kpis(&mut client, pb::Breakdown::Survey, 0).await;
    assert_eq!(group(&by_survey, &survey_id).nps.unwrap().count, 10);
    app.stop().await;
}

#[tokio::test]
async fn kpis_by_segment_use_the_segments_at_answer_time() {
    let (app, _budget) = spawn_feedback().await;
    let mut client = feedback(&app).await;
    let survey_id = create_survey(&mut client, survey("segments")).await;
    let mut profile = app.profile().await;
    profile
        .create_segment(CreateSegmentRequest {
            segment: Some(Segment {
                segment_id: "gold".into(),
                display_name: "Gold".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let gold = new_customer(&app, "crm-gold").await;
    let plain = new_customer(&app, "crm-plain").await;
    profile
        .update_segment_members(UpdateSegmentMembersRequest {
            segment_id: "gold".into(),
            add_profile_ids: vec![gold.clone()],
            remove_profile_ids: vec![],
        })
        .await
        .unwrap();
    answer(
        &mut client,
        &survey_id,
        &gold,
        Channel::Web,
        vec![score("nps", 10)],
        "g-1",
    )
    .await
    .unwrap();
    answer(
        &mut client,
        &survey_id,
        &plain,
        Channel::Web,
        vec![score("nps", 2)],
        "p-1",
    )
    .await
    .unwrap();
    let rows = kpis(&mut client, pb::Breakdown::Segment, 0).await;
    let groups: Vec<(String, f64)> = rows
        .iter()
        .map(|r| (r.group.clone(), r.nps.unwrap().value))
        .collect();
    assert_eq!(
        groups,
        [("(none)".to_string(), -100.0), ("gold".to_string(), 100.0)]
    );
    app.stop().await;
}

#[tokio::test]
async fn answers_take_the_journey_stage_heard_on_the_bus() {
    use cairn_contract::events::v1::StageChanged;
    use cairn_contract::events::v1::change_event::Payload;
    use cairn_runtime::bus::{EventBus, RedisBus};
    let (app, _budget) = spawn_feedback().await;
    let mut client = feedback(&app).await;
    let survey_id = create_survey(&mut client, survey("stages")).await;
    let anna = new_customer(&app, "crm-stage").await;
    let connection =
        redis::aio::ConnectionManager::new(redis::Client::open(cairn_tests::redis_url()).unwrap())
            .await
            .unwrap();
    let bus = RedisBus::new(connection, &app.redis_prefix, 1000);
    bus.publish(&cairn_runtime::outbox::event(
        "journey",
        "journey.stage_changed",
        &anna,
        Payload::StageChanged(StageChanged {
            journey_id: "lifecycle".into(),
            from_stage: "research".into(),
            to_stage: "purchase".into(),
            ..Default::default()
        }),
    ))
    .await
    .unwrap();
    let db = app.database.connect().await;
    cairn_tests::eventually(Duration::from_secs(10), "the stage heard", || {
        let db = &db;
        let anna = anna.clone();
        async move {
            use sea_orm::ConnectionTrait;
            let rows = db
                .query_all_raw(sea_orm::Statement::from_string(
                    sea_orm::DatabaseBackend::Postgres,
                    format!(
                        "SELECT stage FROM feedback_journey_stages WHERE profile_id = '{anna}'"
                    ),
                ))
                .await
                .unwrap();
            (!rows.is_empty()).then_some(())
        }
    })
    .await;
    let stored = answer(
        &mut client,
        &survey_id,
        &anna,
        Channel::Web,
        vec![score("nps", 9)],
        "s-1",
    )
    .await
    .unwrap()
    .response
    .unwrap();
    assert_eq!(stored.journey_stage, "purchase");
    let rows = kpis(&mut client, pb::Breakdown::JourneyStage, 0).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].group, "purchase");
    app.stop().await;
}
