//! Bulk import from a BSS/CRM and the export of a person's data.

use cairn_contract::common::v1::{
    Channel, CustomerRef, IdentifierType, Value, customer_ref, value,
};
use cairn_contract::profile::v1::{
    Consent, ExportPersonalDataRequest, ImportProfilesRequest, RecordConsentRequest,
};
use cairn_tests::{identifier, spawn_app};
use tokio_stream::StreamExt;
use tonic::Code;

fn text(value: &str) -> Value {
    Value {
        kind: Some(value::Kind::StringValue(value.into())),
    }
}

#[tokio::test]
async fn an_import_reports_each_record_and_applies_each_once() {
    let app = spawn_app().await;
    let records = vec![
        ImportProfilesRequest {
            record_id: "crm-row-1".into(),
            identifiers: vec![
                identifier(IdentifierType::CrmId, "crm-imp-1"),
                identifier(IdentifierType::Email, "imp1@example.com"),
            ],
            attributes: [("plan".to_string(), text("family"))].into(),
        },
        ImportProfilesRequest {
            record_id: "crm-row-2".into(),
            identifiers: vec![identifier(IdentifierType::Email, "not an email")],
            ..Default::default()
        },
        // The first record again (a re-sent batch).
        ImportProfilesRequest {
            record_id: "crm-row-1".into(),
            identifiers: vec![identifier(IdentifierType::CrmId, "crm-imp-1")],
            attributes: [("plan".to_string(), text("changed"))].into(),
        },
    ];
    let mut answers = app
        .profile()
        .await
        .import_profiles(tokio_stream::iter(records))
        .await
        .unwrap()
        .into_inner();
    let mut results = Vec::new();
    while let Some(answer) = answers.next().await {
        results.push(answer.unwrap().result.unwrap());
    }
    assert_eq!(
        results.len(),
        3,
        "one answer per record; the bad one did not stop the stream"
    );
    assert!(results[0].ok);
    assert!(!results[1].ok);
    assert_eq!(results[1].error_code, Code::InvalidArgument as i32);
    assert!(
        results[1].error_message.contains("identifiers[0].value"),
        "{}",
        results[1].error_message
    );
    assert!(results[2].ok);
    assert_eq!(results[2].profile_id, results[0].profile_id);

    let export = app
        .profile()
        .await
        .export_personal_data(ExportPersonalDataRequest {
            customer: Some(CustomerRef {
                customer: Some(customer_ref::Customer::ProfileId(
                    results[0].profile_id.clone(),
                )),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        export.profile.unwrap().attributes["plan"],
        text("family"),
        "the re-sent record changed nothing"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_export_holds_everything_and_records_its_times() {
    let app = spawn_app().await;
    let id = app
        .create_profile(
            vec![identifier(IdentifierType::CrmId, "crm-export")],
            &[("plan", "gold")],
        )
        .await;
    let customer = Some(CustomerRef {
        customer: Some(customer_ref::Customer::ProfileId(id.clone())),
    });
    app.profile()
        .await
        .record_consent(RecordConsentRequest {
            customer: customer.clone(),
            consent: Some(Consent {
                purpose: "marketing".into(),
                channel: Channel::Email as i32,
                granted: true,
                source: "web_form".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let cookie = app
        .profile()
        .await
        .identify_profile(cairn_contract::profile::v1::IdentifyProfileRequest {
            identifiers: vec![
                identifier(IdentifierType::CookieId, "c-export"),
                identifier(IdentifierType::CrmId, "crm-export"),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cookie.profile.unwrap().profile_id, id);

    let export = app
        .profile()
        .await
        .export_personal_data(ExportPersonalDataRequest { customer })
        .await
        .unwrap()
        .into_inner();
    assert!(!export.export_request_id.is_empty());
    assert!(export.receive_time.is_some() && export.complete_time.is_some());
    assert_eq!(export.profile.unwrap().profile_id, id);
    assert_eq!(export.identifier_history.len(), 2);
    assert_eq!(export.consent_history.len(), 1);
    assert_eq!(export.consent_history[0].purpose, "marketing");
    assert!(export.preferences.is_some());
    app.stop().await;
}
