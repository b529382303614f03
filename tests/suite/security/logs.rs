//! No personal data or secret in logs or traces: a person goes through all
//! four services (and is exported and erased), with every Cairn crate
//! logging at debug level into a capture; then the captured log lines and
//! every finished span (names, attributes, events) are searched for the
//! person's email, phone number and CRM id, the token key and the bearer
//! tokens used. Occurrences: 0.

use cairn_contract::common::v1::{CustomerRef, customer_ref};
use cairn_contract::profile::v1::{ErasePersonalDataRequest, ExportPersonalDataRequest};
use cairn_tests::{TEST_KEY, spawn_app, telemetry};

use super::erasure::{catalogue, person_everywhere};

#[tokio::test]
async fn logs_and_traces_hold_no_personal_data_or_secret() {
    let app = spawn_app().await;
    let survey = catalogue(&app).await;
    let start = telemetry::captured_logs().len();
    let person = person_everywhere(&app, "karin.berg", "+46731112233", &survey).await;
    let customer = Some(CustomerRef {
        customer: Some(customer_ref::Customer::ProfileId(person.id.clone())),
    });
    app.profile()
        .await
        .export_personal_data(ExportPersonalDataRequest {
            customer: customer.clone(),
        })
        .await
        .unwrap();
    // A refused call with the person's identifier in a bad request: errors
    // are logged too.
    let _ = app
        .profile()
        .await
        .get_profile(cairn_contract::profile::v1::GetProfileRequest {
            customer: Some(cairn_tests::by_identifier(cairn_tests::identifier(
                cairn_contract::common::v1::IdentifierType::Email,
                "karin.berg@example.com-not-an-email",
            ))),
        })
        .await;
    app.profile()
        .await
        .erase_personal_data(ErasePersonalDataRequest { customer })
        .await
        .unwrap();
    // Let the other services log their part of the erasure.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;

    // Anything logged in this process reaches the capture, whatever the crate.
    tracing::warn!(probe = "capture-probe-7731", "the capture sees this line");
    let logs = String::from_utf8_lossy(&telemetry::captured_logs()[start..]).to_string();
    assert!(
        logs.contains("capture-probe-7731"),
        "the capture misses lines"
    );
    // The capture works: it holds the services' own lines about this person.
    assert!(
        logs.contains("erased a person") && logs.contains("erased a person's touchpoints"),
        "the capture holds the services' logs: {logs}"
    );
    let spans: Vec<String> = telemetry::finished_spans()
        .iter()
        .map(|span| format!("{} {:?} {:?}", span.name, span.attributes, span.events))
        .collect();
    assert!(!spans.is_empty(), "spans were recorded");
    let secrets = [
        ("email", person.email.clone()),
        ("phone number", person.phone.clone()),
        (
            "phone digits",
            person.phone.trim_start_matches('+').to_string(),
        ),
        ("CRM id", "crm-karin.berg-7731".to_string()),
        ("token key", TEST_KEY.to_string()),
        // Every JWT starts with the encoded `{"alg":`: a bearer token of any
        // of the test's calls would show here.
        ("a bearer token", "eyJhbGciOi".to_string()),
    ];
    let mut found = Vec::new();
    for (what, secret) in &secrets {
        let in_logs = logs.matches(secret.as_str()).count();
        let in_spans = spans
            .iter()
            .filter(|span| span.contains(secret.as_str()))
            .count();
        if in_logs + in_spans > 0 {
            let line = logs
                .lines()
                .find(|line| line.contains(secret.as_str()))
                .unwrap_or_default();
            found.push(format!(
                "{what}: {in_logs} log lines, {in_spans} spans, e.g. {line}"
            ));
        }
    }
    assert!(
        found.is_empty(),
        "personal data or secrets in logs or traces: {found:#?}"
    );
    app.stop().await;
}
