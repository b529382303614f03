//! Consent and contact: answers with history, quiet hours in the customer's
//! time zone, and the most restrictive answer after a merge.

use cairn_contract::common::v1::{Channel, CustomerRef, IdentifierType, customer_ref};
use cairn_contract::profile::v1::{
    CheckContactRequest, Consent, ContactVerdict, ListConsentsRequest, MergeProfilesRequest,
    Preferences, RecordConsentRequest, UnmergeProfileRequest, UpdatePreferencesRequest,
};
use cairn_tests::{TestApp, spawn_app};
use chrono::{Timelike, Utc};
use tonic::Code;
use tonic_types::StatusExt;

fn by_id(profile_id: &str) -> Option<CustomerRef> {
    Some(CustomerRef {
        customer: Some(customer_ref::Customer::ProfileId(profile_id.into())),
    })
}

async fn create(app: &TestApp, crm: &str) -> String {
    app.create_profile(
        vec![cairn_tests::identifier(IdentifierType::CrmId, crm)],
        &[],
    )
    .await
}

async fn consent(app: &TestApp, profile_id: &str, purpose: &str, granted: bool) {
    app.profile()
        .await
        .record_consent(RecordConsentRequest {
            customer: by_id(profile_id),
            consent: Some(Consent {
                purpose: purpose.into(),
                channel: Channel::Sms as i32,
                granted,
                source: "web_form".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
}

async fn verdict(app: &TestApp, profile_id: &str, purpose: &str) -> ContactVerdict {
    let response = app
        .profile()
        .await
        .check_contact(CheckContactRequest {
            customer: by_id(profile_id),
            channel: Channel::Sms as i32,
            purpose: purpose.into(),
        })
        .await
        .unwrap()
        .into_inner();
    ContactVerdict::try_from(response.verdict).unwrap()
}

#[tokio::test]
async fn consent_gates_contact_and_quiet_hours_hold_in_the_customers_zone() {
    let app = spawn_app().await;
    let anna = create(&app, "crm-consent-1").await;
    assert_eq!(
        verdict(&app, &anna, "marketing").await,
        ContactVerdict::NoConsent,
        "opt-in"
    );
    assert_eq!(
        verdict(&app, &anna, "service").await,
        ContactVerdict::ServicePurpose
    );
    consent(&app, &anna, "marketing", true).await;
    assert_eq!(
        verdict(&app, &anna, "marketing").await,
        ContactVerdict::Granted
    );
    consent(&app, &anna, "marketing", false).await;
    assert_eq!(
        verdict(&app, &anna, "marketing").await,
        ContactVerdict::Denied,
        "the newest answer is in force"
    );
    let listed = app
        .profile()
        .await
        .list_consents(ListConsentsRequest {
            customer: by_id(&anna),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.current.len(), 1);
    assert_eq!(listed.history.len(), 2, "history is kept");

    // Quiet hours around the current hour in Tokyo.
    let tokyo_hour = (Utc::now().hour() + 9) % 24;
    let preferences = Preferences {
        time_zone: "Asia/Tokyo".into(),
        quiet_hours_start: format!("{:02}:00", tokyo_hour),
        quiet_hours_end: format!("{:02}:00", (tokyo_hour + 2) % 24),
        language: "ja-JP".into(),
        ..Default::default()
    };
    app.profile()
        .await
        .update_preferences(UpdatePreferencesRequest {
            customer: by_id(&anna),
            preferences: Some(preferences),
        })
        .await
        .unwrap();
    let quiet = app
        .profile()
        .await
        .check_contact(CheckContactRequest {
            customer: by_id(&anna),
            channel: Channel::Sms as i32,
            purpose: "service".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!quiet.allowed);
    assert_eq!(quiet.verdict, ContactVerdict::QuietHours as i32);
    assert!(quiet.allowed_from.is_some());
    assert_eq!(quiet.preferences.unwrap().language, "ja-JP");

    let bad = app
        .profile()
        .await
        .update_preferences(UpdatePreferencesRequest {
            customer: by_id(&anna),
            preferences: Some(Preferences {
                time_zone: "Mars/Olympus".into(),
                quiet_hours_start: "25:00".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let fields: Vec<_> = bad
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert!(
        fields.contains(&"preferences.time_zone".to_string()),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"preferences.quiet_hours_start".to_string()),
        "{fields:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_merge_keeps_the_most_restrictive_answer_and_an_unmerge_restores_each() {
    let app = spawn_app().await;
    let yes = create(&app, "crm-consent-yes").await;
    let no = create(&app, "crm-consent-no").await;
    consent(&app, &yes, "marketing", true).await;
    consent(&app, &no, "marketing", false).await;
    let merge = app
        .profile()
        .await
        .merge_profiles(MergeProfilesRequest {
            survivor_profile_id: yes.clone(),
            merged_profile_id: no.clone(),
            reason: "same person".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .merge
        .unwrap();
    assert_eq!(
        verdict(&app, &yes, "marketing").await,
        ContactVerdict::Denied,
        "a no beats a yes"
    );
    app.profile()
        .await
        .unmerge_profile(UnmergeProfileRequest {
            merge_id: merge.merge_id,
        })
        .await
        .unwrap();
    assert_eq!(
        verdict(&app, &yes, "marketing").await,
        ContactVerdict::Granted
    );
    assert_eq!(
        verdict(&app, &no, "marketing").await,
        ContactVerdict::Denied
    );
    app.stop().await;
}

/// What a next-best-action decision needs, in one call: the profile, its
/// segments and groups, and one contact answer per distinct purpose in the
/// order asked; bad input names its fields.
#[tokio::test]
async fn a_decision_context_answers_every_purpose_in_one_call() {
    use cairn_contract::profile::v1::{
        AddGroupMemberRequest, CreateGroupRequest, CreateSegmentRequest, GetDecisionContextRequest,
        Group, GroupRole, GroupType, Segment,
    };
    let app = spawn_app().await;
    let anna = app
        .create_profile(
            vec![cairn_tests::identifier(
                IdentifierType::CrmId,
                "crm-context-1",
            )],
            &[("plan", "gold")],
        )
        .await;
    let mut profiles = app.profile().await;
    profiles
        .create_segment(CreateSegmentRequest {
            segment: Some(Segment {
                segment_id: "gold".into(),
                display_name: "Gold".into(),
                rule: r#"attributes.plan == "gold""#.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let family = profiles
        .create_group(CreateGroupRequest {
            group: Some(Group {
                r#type: GroupType::Family as i32,
                display_name: "Svensson".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    profiles
        .add_group_member(AddGroupMemberRequest {
            group_id: family.group_id.clone(),
            customer: by_id(&anna),
            role: GroupRole::Member as i32,
        })
        .await
        .unwrap();
    consent(&app, &anna, "marketing", true).await;

    let context = profiles
        .get_decision_context(GetDecisionContextRequest {
            customer: Some(cairn_tests::by_identifier(cairn_tests::identifier(
                IdentifierType::CrmId,
                "crm-context-1",
            ))),
            channel: Channel::Sms as i32,
            purposes: vec![
                "marketing".into(),
                "service".into(),
                "marketing".into(),
                "analytics".into(),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(context.profile.unwrap().profile_id, anna);
    assert_eq!(context.segment_ids, ["gold"]);
    assert_eq!(context.groups.len(), 1);
    assert_eq!(context.groups[0].group_id, family.group_id);
    let answers: Vec<(&str, ContactVerdict)> = context
        .contacts
        .iter()
        .map(|contact| {
            let answer = contact.answer.as_ref().unwrap();
            (
                contact.purpose.as_str(),
                ContactVerdict::try_from(answer.verdict).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        answers,
        [
            ("marketing", ContactVerdict::Granted),
            ("service", ContactVerdict::ServicePurpose),
            ("analytics", ContactVerdict::NoConsent),
        ],
        "one answer per distinct purpose, in the order asked"
    );
    assert_eq!(
        verdict(&app, &anna, "marketing").await,
        ContactVerdict::Granted,
        "the same answer as CheckContact"
    );

    let bad = profiles
        .get_decision_context(GetDecisionContextRequest {
            customer: by_id(&anna),
            channel: Channel::Unspecified as i32,
            purposes: vec!["marketing".into(), "Not A Purpose".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let fields: Vec<String> = bad
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|violation| violation.field)
        .collect();
    assert!(fields.contains(&"channel".to_string()), "{fields:?}");
    assert!(fields.contains(&"purposes[1]".to_string()), "{fields:?}");

    let unknown = profiles
        .get_decision_context(GetDecisionContextRequest {
            customer: by_id(&uuid::Uuid::new_v4().to_string()),
            channel: Channel::Sms as i32,
            purposes: vec!["marketing".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
}
