//! Tickets: one case across channels with its history and first-contact
//! resolution, TMF621 transitions, external ids, the events recommendation
//! acts on, and the shared queue that two agents never claim twice from.

use std::collections::BTreeSet;
use std::time::Duration;

use cairn_contract::common::v1::Channel;
use cairn_contract::events::v1::change_event::Payload;
use cairn_contract::feedback::v1 as pb;
use tonic::Code;

use super::*;

fn ticket(profile_id: &str, channel: Channel, category: &str) -> pb::Ticket {
    pb::Ticket {
        customer: customer(profile_id),
        channel: channel as i32,
        category: category.into(),
        description: "no signal at home".into(),
        ..Default::default()
    }
}

async fn open(client: &mut FeedbackServiceClient<AuthedChannel>, ticket: pb::Ticket) -> pb::Ticket {
    client
        .create_ticket(pb::CreateTicketRequest {
            ticket: Some(ticket),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap()
}

async fn set_status(
    client: &mut FeedbackServiceClient<AuthedChannel>,
    ticket_id: &str,
    status: pb::TicketStatus,
) -> Result<pb::Ticket, Status> {
    client
        .update_ticket(pb::UpdateTicketRequest {
            ticket: Some(pb::Ticket {
                ticket_id: ticket_id.into(),
                status: status as i32,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["status".into()],
            }),
            reason: "test".into(),
        })
        .await
        .map(|r| r.into_inner().ticket.unwrap())
}

async fn contact(
    client: &mut FeedbackServiceClient<AuthedChannel>,
    ticket_id: &str,
    channel: Channel,
    outbound: bool,
) -> pb::Ticket {
    client
        .add_ticket_contact(pb::AddTicketContactRequest {
            ticket_id: ticket_id.into(),
            contact: Some(pb::TicketContact {
                channel: channel as i32,
                handled_by: "agent-7".into(),
                outbound,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap()
}

#[tokio::test]
async fn a_case_across_channels_with_history_fcr_and_events() {
    let (app, _budget) = spawn_feedback().await;
    let mut client = feedback(&app).await;
    let anna = new_customer(&app, "crm-ticket").await;

    // Opened by chat, followed up by a call: one case, two customer contacts.
    let chat = open(
        &mut client,
        pb::Ticket {
            complaint: true,
            external_id: "TT-1001".into(),
            decision_id: "decision-1".into(),
            action_id: "upgrade-5g".into(),
            ..ticket(&anna, Channel::Chatbot, "Network")
        },
    )
    .await;
    assert_eq!(chat.status, pb::TicketStatus::Acknowledged as i32);
    assert_eq!(chat.category, "network");
    assert_eq!(chat.contacts.len(), 1);
    contact(&mut client, &chat.ticket_id, Channel::CallCentre, false).await;
    let answered = contact(&mut client, &chat.ticket_id, Channel::CallCentre, true).await;
    assert!(answered.first_response.is_some());
    set_status(&mut client, &chat.ticket_id, pb::TicketStatus::InProgress)
        .await
        .unwrap();
    let resolved = set_status(&mut client, &chat.ticket_id, pb::TicketStatus::Resolved)
        .await
        .unwrap();
    assert!(
        !resolved.first_contact_resolution,
        "two contacts is not first-contact resolution"
    );
    assert!(resolved.resolution.is_some());
    let statuses: Vec<i32> = resolved.status_history.iter().map(|h| h.status).collect();
    assert_eq!(
        statuses,
        [
            pb::TicketStatus::Acknowledged as i32,
            pb::TicketStatus::InProgress as i32,
            pb::TicketStatus::Resolved as i32
        ]
    );
    let channels: Vec<i32> = resolved.contacts.iter().map(|c| c.channel).collect();
    assert_eq!(
        channels,
        [
            Channel::Chatbot as i32,
            Channel::CallCentre as i32,
            Channel::CallCentre as i32
        ]
    );

    // Solved on the first call, with the agent's answer.
    let call = open(&mut client, ticket(&anna, Channel::CallCentre, "billing")).await;
    contact(&mut client, &call.ticket_id, Channel::CallCentre, true).await;
    let solved = set_status(&mut client, &call.ticket_id, pb::TicketStatus::Resolved)
        .await
        .unwrap();
    assert!(solved.first_contact_resolution);

    // The external system's id finds the ticket; reusing it is ALREADY_EXISTS.
    let found = client
        .get_ticket(pb::GetTicketRequest {
            ticket_id: "external:TT-1001".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(found.ticket_id, chat.ticket_id);
    let status = client
        .create_ticket(pb::CreateTicketRequest {
            ticket: Some(pb::Ticket {
                external_id: "TT-1001".into(),
                ..ticket(&anna, Channel::Web, "network")
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");

    // Closed is final in TMF621: reopening is FAILED_PRECONDITION.
    set_status(&mut client, &chat.ticket_id, pb::TicketStatus::Closed)
        .await
        .unwrap();
    let status = set_status(&mut client, &chat.ticket_id, pb::TicketStatus::InProgress)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("ticket.status"),
        "{}",
        status.message()
    );

    // Missing customer and channel name their fields.
    let status = client
        .create_ticket(pb::CreateTicketRequest {
            ticket: Some(pb::Ticket::default()),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "ticket.customer");
    assert_invalid(&status, "ticket.channel");

    // Recommendation sees the complaint open, then no longer open.
    let published = events(
        &app,
        &["feedback.ticket_changed"],
        20,
        Duration::from_secs(3),
    )
    .await;
    let complaint: Vec<(String, bool)> = published
        .iter()
        .filter_map(|event| match &event.payload {
            Some(Payload::TicketChanged(changed)) if changed.ticket_id == chat.ticket_id => {
                assert_eq!(changed.decision_id, "decision-1");
                assert_eq!(changed.action_id, "upgrade-5g");
                assert_eq!(changed.channel, Channel::Chatbot as i32);
                assert_eq!(event.profile_id, anna);
                Some((changed.status.clone(), changed.open_complaint))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        complaint,
        [
            ("acknowledged".to_string(), true),
            ("inProgress".to_string(), true),
            ("resolved".to_string(), false),
            ("closed".to_string(), false),
        ]
    );
    app.stop().await;
}

async fn claim(
    client: &mut FeedbackServiceClient<AuthedChannel>,
    agent: &str,
    channels: Vec<Channel>,
    languages: Vec<&str>,
    skills: Vec<&str>,
) -> Result<pb::Ticket, Status> {
    client
        .claim_next_ticket(pb::ClaimNextTicketRequest {
            agent_id: agent.into(),
            channels: channels.into_iter().map(|c| c as i32).collect(),
            languages: languages.into_iter().map(String::from).collect(),
            skills: skills.into_iter().map(String::from).collect(),
        })
        .await
        .map(|r| r.into_inner().ticket.unwrap())
}

#[tokio::test]
async fn the_queue_serves_by_priority_and_due_time_and_routes() {
    let (app, _budget) = spawn_feedback().await;
    let mut client = feedback(&app).await;
    let anna = new_customer(&app, "crm-queue").await;
    let soon =
        prost_types::Timestamp::from(std::time::SystemTime::now() + Duration::from_secs(600));
    let later =
        prost_types::Timestamp::from(std::time::SystemTime::now() + Duration::from_secs(6000));
    let normal_later = open(
        &mut client,
        pb::Ticket {
            due_time: Some(later),
            ..ticket(&anna, Channel::Email, "billing")
        },
    )
    .await;
    let normal_soon = open(
        &mut client,
        pb::Ticket {
            due_time: Some(soon),
            ..ticket(&anna, Channel::Email, "billing")
        },
    )
    .await;
    let critical = open(
        &mut client,
        pb::Ticket {
            priority: pb::TicketPriority::Critical as i32,
            ..ticket(&anna, Channel::Email, "network")
        },
    )
    .await;
    let swedish_tech = open(
        &mut client,
        pb::Ticket {
            priority: pb::TicketPriority::High as i32,
            language: "sv-SE".into(),
            required_skills: vec!["fiber".into()],
            ..ticket(&anna, Channel::CallCentre, "network")
        },
    )
    .await;

    // An English agent without the fiber skill never gets the Swedish fiber case.
    let order: Vec<String> = [
        claim(&mut client, "a1", vec![], vec!["en"], vec![])
            .await
            .unwrap(),
        claim(&mut client, "a1", vec![], vec!["en"], vec![])
            .await
            .unwrap(),
        claim(&mut client, "a1", vec![], vec!["en"], vec![])
            .await
            .unwrap(),
    ]
    .into_iter()
    .map(|t| t.ticket_id)
    .collect();
    assert_eq!(
        order,
        [
            critical.ticket_id,
            normal_soon.ticket_id,
            normal_later.ticket_id
        ]
    );
    let status = claim(&mut client, "a1", vec![], vec!["en"], vec![])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // Only on the right channel, in Swedish, with the skill.
    assert_eq!(
        claim(
            &mut client,
            "a2",
            vec![Channel::Email],
            vec!["sv"],
            vec!["fiber"]
        )
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    let taken = claim(
        &mut client,
        "a2",
        vec![Channel::CallCentre],
        vec!["sv"],
        vec!["fiber", "billing"],
    )
    .await
    .unwrap();
    assert_eq!(taken.ticket_id, swedish_tech.ticket_id);
    assert_eq!(taken.assignee, "a2");
    assert_eq!(taken.status, pb::TicketStatus::InProgress as i32);

    // Released by someone else: refused; by its agent: back in the queue.
    let status = client
        .release_ticket(pb::ReleaseTicketRequest {
            ticket_id: taken.ticket_id.clone(),
            agent_id: "a1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let released = client
        .release_ticket(pb::ReleaseTicketRequest {
            ticket_id: taken.ticket_id.clone(),
            agent_id: "a2".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(released.status, pb::TicketStatus::Acknowledged as i32);
    assert!(released.assignee.is_empty());
    let again = claim(&mut client, "a3", vec![], vec![], vec!["fiber"])
        .await
        .unwrap();
    assert_eq!(again.ticket_id, taken.ticket_id);
    app.stop().await;
}

#[tokio::test]
async fn two_agents_never_claim_the_same_ticket() {
    let (app, _budget) = spawn_feedback().await;
    let mut client = feedback(&app).await;
    let anna = new_customer(&app, "crm-claims").await;
    let mut opened = BTreeSet::new();
    for index in 0..24 {
        let channel = if index % 2 == 0 {
            Channel::Email
        } else {
            Channel::Chatbot
        };
        opened.insert(
            open(&mut client, ticket(&anna, channel, "billing"))
                .await
                .ticket_id,
        );
    }
    let mut agents = Vec::new();
    for agent in 0..6 {
        let mut client = feedback(&app).await;
        agents.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                match claim(
                    &mut client,
                    &format!("agent-{agent}"),
                    vec![],
                    vec![],
                    vec![],
                )
                .await
                {
                    Ok(ticket) => {
                        assert_eq!(ticket.assignee, format!("agent-{agent}"));
                        mine.push(ticket.ticket_id);
                    }
                    Err(status) if status.code() == Code::NotFound => break,
                    Err(status) => panic!("claim failed: {status:?}"),
                }
            }
            mine
        }));
    }
    let mut claimed = Vec::new();
    for agent in agents {
        claimed.extend(agent.await.unwrap());
    }
    let distinct: BTreeSet<String> = claimed.iter().cloned().collect();
    assert_eq!(claimed.len(), distinct.len(), "a ticket was claimed twice");
    assert_eq!(distinct, opened, "every ticket claimed once");
    app.stop().await;
}

#[tokio::test]
async fn a_resolved_ticket_triggers_a_csat_survey() {
    let (app, budget) = spawn_feedback().await;
    let mut client = feedback(&app).await;
    let anna = new_customer(&app, "crm-resolved").await;
    let survey_id = create_survey(
        &mut client,
        pb::Survey {
            triggers: vec![pb::Trigger {
                touchpoint_type: "ticket_resolved".into(),
                condition: "touchpoint.channel == 'chatbot'".into(),
                sampling_rate: 1.0,
                delay: None,
            }],
            ..survey("after a resolution")
        },
    )
    .await;
    let chat = open(&mut client, ticket(&anna, Channel::Chatbot, "billing")).await;
    let call = open(&mut client, ticket(&anna, Channel::CallCentre, "billing")).await;
    set_status(&mut client, &chat.ticket_id, pb::TicketStatus::Resolved)
        .await
        .unwrap();
    set_status(&mut client, &call.ticket_id, pb::TicketStatus::Resolved)
        .await
        .unwrap();
    let invited = events(
        &app,
        &["feedback.survey_invited"],
        1,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(invited.len(), 1);
    let Some(Payload::SurveyInvited(invitation)) = &invited[0].payload else {
        panic!("not an invitation");
    };
    assert_eq!(invitation.survey_id, survey_id);
    assert_eq!(
        invitation.touchpoint_id,
        format!("ticket:{}", chat.ticket_id)
    );
    assert_eq!(invited[0].profile_id, anna);
    // The call-centre resolution does not match the condition: still one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(budget.granted_count(), 1);
    app.stop().await;
}
