//! Attributes: typed values, registered definitions, masks and batch upserts.

use cairn_contract::common::v1::{CustomerRef, IdentifierType, Value, customer_ref, value};
use cairn_contract::profile::v1::{
    AttributeDefinition, AttributeType, AttributeUpsert, BatchUpsertAttributesRequest,
    CreateAttributeDefinitionRequest, CreateProfileRequest, Profile, UpdateProfileRequest,
};
use cairn_tests::{identifier, spawn_app};
use tonic::Code;
use tonic_types::StatusExt;

fn text(value: &str) -> Value {
    Value {
        kind: Some(value::Kind::StringValue(value.into())),
    }
}

fn number(value: f64) -> Value {
    Value {
        kind: Some(value::Kind::NumberValue(value)),
    }
}

#[tokio::test]
async fn registered_attributes_refuse_values_of_the_wrong_type() {
    let app = spawn_app().await;
    let mut profile = app.profile().await;
    profile
        .create_attribute_definition(CreateAttributeDefinitionRequest {
            definition: Some(AttributeDefinition {
                name: "tenure_months".into(),
                r#type: AttributeType::Number as i32,
                description: "months since the first contract".into(),
                personal_data: false,
            }),
        })
        .await
        .unwrap();
    let again = profile
        .create_attribute_definition(CreateAttributeDefinitionRequest {
            definition: Some(AttributeDefinition {
                name: "tenure_months".into(),
                r#type: AttributeType::String as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);

    let wrong = profile
        .create_profile(CreateProfileRequest {
            identifiers: vec![identifier(IdentifierType::CrmId, "crm-typed")],
            attributes: [("tenure_months".to_string(), text("twelve"))].into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::InvalidArgument);
    let violation = &wrong.get_details_bad_request().unwrap().field_violations[0];
    assert_eq!(violation.field, "attributes[tenure_months]");
    assert!(
        violation.description.contains("number"),
        "{}",
        violation.description
    );
    app.stop().await;
}

#[tokio::test]
async fn a_mask_changes_only_the_named_attributes() {
    let app = spawn_app().await;
    let id = app
        .create_profile(
            vec![identifier(IdentifierType::CrmId, "crm-mask")],
            &[("plan", "basic"), ("device", "old-phone"), ("city", "Lund")],
        )
        .await;
    let mut profile = app.profile().await;
    let updated = profile
        .update_profile(UpdateProfileRequest {
            profile: Some(Profile {
                profile_id: id.clone(),
                attributes: [("plan".to_string(), text("gold"))].into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["attributes.plan".into(), "attributes.device".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(updated.attributes["plan"], text("gold"));
    assert!(
        !updated.attributes.contains_key("device"),
        "a masked attribute absent from the request is removed"
    );
    assert_eq!(updated.attributes["city"], text("Lund"), "others stay");

    let bad = profile
        .update_profile(UpdateProfileRequest {
            profile: Some(Profile {
                profile_id: id,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["state".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(
        bad.get_details_bad_request().unwrap().field_violations[0].field,
        "update_mask.paths[0]"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_batch_upsert_reports_each_entry() {
    let app = spawn_app().await;
    app.create_profile(
        vec![identifier(IdentifierType::BillingAccountId, "ba-1")],
        &[],
    )
    .await;
    let by = |value: &str| {
        Some(CustomerRef {
            customer: Some(customer_ref::Customer::Identifier(identifier(
                IdentifierType::BillingAccountId,
                value,
            ))),
        })
    };
    let results = app
        .profile()
        .await
        .batch_upsert_attributes(BatchUpsertAttributesRequest {
            upserts: vec![
                AttributeUpsert {
                    customer: by("ba-1"),
                    attributes: [("spend".to_string(), number(412.5))].into(),
                },
                AttributeUpsert {
                    customer: by("ba-unknown"),
                    attributes: [("spend".to_string(), number(1.0))].into(),
                },
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(results[0].ok);
    assert!(!results[1].ok);
    assert_eq!(results[1].error_code, Code::NotFound as i32);
    app.stop().await;
}
