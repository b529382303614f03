//! The feedback service over gRPC against real PostgreSQL and Redis:
//! surveys and the once-per-period rule, tickets and the shared queue,
//! KPIs checked against figures computed by hand, trends in several
//! languages, follow-up tasks, erasure and export.
//!
//! Most tests stand a small recording stand-in in front of the shared
//! contact budget (the recommendation service's ReserveContact), so that
//! they see exactly what feedback asked for and can make it grant, refuse
//! or vanish; `surveys::surveys_share_the_contact_budget` runs against the
//! real recommendation service.

mod imports;
mod into_recommendation;
mod measures;
mod people;
mod surveys;
mod texts;
mod tickets;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_contract::common::v1::{Channel, CustomerRef, customer_ref};
use cairn_contract::events::v1::ChangeEvent;
use cairn_contract::events::v1::event_hub_service_client::EventHubServiceClient;
use cairn_contract::feedback::v1 as pb;
use cairn_contract::feedback::v1::feedback_service_client::FeedbackServiceClient;
use cairn_contract::recommendation::v1 as rec;
use cairn_contract::recommendation::v1::recommendation_service_server::{
    RecommendationService, RecommendationServiceServer,
};
use cairn_runtime::ServiceKind;
use cairn_tests::{AuthedChannel, Options, TestApp, spawn_app_with};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};
use tonic_types::StatusExt;

/// What the stand-in of the contact budget saw and how it answers.
#[derive(Default)]
pub struct Budget {
    /// Refuse every reservation when true.
    pub refuse: AtomicBool,
    /// Request ids of the reservations it granted.
    pub granted: Mutex<Vec<String>>,
    seen: Mutex<BTreeSet<String>>,
}

impl Budget {
    /// How many distinct reservations were granted.
    pub fn granted_count(&self) -> usize {
        self.granted.lock().unwrap().len()
    }
}

struct StandIn(Arc<Budget>);

#[tonic::async_trait]
impl RecommendationService for StandIn {
    async fn reserve_contact(
        &self,
        request: Request<rec::ReserveContactRequest>,
    ) -> Result<Response<rec::ReserveContactResponse>, Status> {
        let request = request.into_inner();
        let duplicate = !self
            .0
            .seen
            .lock()
            .unwrap()
            .insert(request.request_id.clone());
        let granted = !self.0.refuse.load(Ordering::SeqCst);
        if granted && !duplicate {
            self.0
                .granted
                .lock()
                .unwrap()
                .push(request.request_id.clone());
        }
        Ok(Response::new(rec::ReserveContactResponse {
            granted,
            budget: Some(rec::ContactBudget {
                allowed: granted,
                reason: if granted {
                    0
                } else {
                    rec::ExclusionReason::Capped as i32
                },
                detail: if granted {
                    String::new()
                } else {
                    "email: 1 of 1 today".into()
                },
                ..Default::default()
            }),
            reservation_id: if granted {
                uuid::Uuid::new_v4().to_string()
            } else {
                String::new()
            },
            duplicate,
        }))
    }
}

/// Starts the stand-in on an ephemeral port; returns its address.
async fn start_budget(budget: Arc<Budget>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(RecommendationServiceServer::new(StandIn(budget)))
            .serve_with_incoming(incoming)
            .await;
    });
    format!("http://{address}")
}

/// Profile, journey and feedback, with the contact budget answered by a stand-in.
pub async fn spawn_feedback() -> (TestApp, Arc<Budget>) {
    let budget = Arc::new(Budget::default());
    let address = start_budget(budget.clone()).await;
    let app = spawn_app_with(Options {
        services: vec![
            ServiceKind::Profile,
            ServiceKind::Journey,
            ServiceKind::Feedback,
        ],
        adjust: Box::new(move |settings| settings.recommendation_addr = Some(address)),
        ..Default::default()
    })
    .await;
    (app, budget)
}

/// A feedback client with every feedback scope.
pub async fn feedback(app: &TestApp) -> FeedbackServiceClient<AuthedChannel> {
    FeedbackServiceClient::new(
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
    )
}

/// A customer by profile id.
pub fn customer(profile_id: &str) -> Option<CustomerRef> {
    Some(CustomerRef {
        customer: Some(customer_ref::Customer::ProfileId(profile_id.into())),
    })
}

/// A known customer with a CRM id.
pub async fn new_customer(app: &TestApp, crm_id: &str) -> String {
    app.create_profile(
        vec![cairn_tests::identifier(
            cairn_contract::common::v1::IdentifierType::CrmId,
            crm_id,
        )],
        &[],
    )
    .await
}

/// One question.
pub fn question(id: &str, kind: pb::QuestionType, required: bool) -> pb::Question {
    pb::Question {
        question_id: id.into(),
        r#type: kind as i32,
        texts: [("en".to_string(), format!("{id}?"))].into(),
        options: vec![],
        required,
    }
}

/// A survey asking NPS (required), CSAT, effort and a free-text "why", on email.
pub fn survey(name: &str) -> pb::Survey {
    pb::Survey {
        display_name: name.into(),
        questions: vec![
            question("nps", pb::QuestionType::Nps, false),
            question("csat", pb::QuestionType::Csat, false),
            question("effort", pb::QuestionType::Effort, false),
            question("why", pb::QuestionType::FreeText, false),
        ],
        channel: Channel::Email as i32,
        consent_purpose: "service".into(),
        ..Default::default()
    }
}

/// Creates `survey`; returns its id.
pub async fn create_survey(
    client: &mut FeedbackServiceClient<AuthedChannel>,
    survey: pb::Survey,
) -> String {
    client
        .create_survey(pb::CreateSurveyRequest {
            survey: Some(survey),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .survey
        .unwrap()
        .survey_id
}

/// A score answer.
pub fn score(question_id: &str, value: i32) -> pb::Answer {
    pb::Answer {
        question_id: question_id.into(),
        value: Some(pb::answer::Value::Score(value)),
    }
}

/// A free-text answer.
pub fn text(question_id: &str, value: &str) -> pb::Answer {
    pb::Answer {
        question_id: question_id.into(),
        value: Some(pb::answer::Value::Text(value.into())),
    }
}

/// Submits `answers` of `profile_id` to `survey_id` on `channel`.
pub async fn answer(
    client: &mut FeedbackServiceClient<AuthedChannel>,
    survey_id: &str,
    profile_id: &str,
    channel: Channel,
    answers: Vec<pb::Answer>,
    request_id: &str,
) -> Result<pb::SubmitSurveyResponseResponse, Status> {
    client
        .submit_survey_response(pb::SubmitSurveyResponseRequest {
            response: Some(pb::SurveyResponse {
                survey_id: survey_id.into(),
                customer: customer(profile_id),
                channel: channel as i32,
                answers,
                ..Default::default()
            }),
            request_id: request_id.into(),
        })
        .await
        .map(Response::into_inner)
}

/// The fields a status's BadRequest names.
pub fn fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// Asserts `status` is INVALID_ARGUMENT naming `field`.
pub fn assert_invalid(status: &Status, field: &str) {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        fields(status).iter().any(|f| f == field),
        "{field} not among {:?}: {}",
        fields(status),
        status.message()
    );
    assert!(status.message().contains(field), "{}", status.message());
}

/// Events of `topics` published so far (read from the oldest), waiting up to
/// `within` until `wanted` have arrived.
pub async fn events(
    app: &TestApp,
    topics: &[&str],
    wanted: usize,
    within: Duration,
) -> Vec<ChangeEvent> {
    let mut hub = EventHubServiceClient::new(
        app.authed(ServiceKind::Feedback, &["events.subscribe"])
            .await,
    );
    let mut stream = hub
        .subscribe(cairn_contract::events::v1::SubscribeRequest {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            cursor: String::new(),
            from_oldest: true,
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while seen.len() < wanted {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, stream.next()).await {
            Ok(Some(Ok(item))) => seen.extend(item.event),
            _ => break,
        }
    }
    seen
}
