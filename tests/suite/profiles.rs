//! The profile service: identify, merge, unmerge, erasure.

use std::time::Duration;

use cairn_contract::common::v1::{
    CustomerRef, Identifier, IdentifierType, Value, customer_ref, value,
};
use cairn_contract::profile::v1::{
    ErasePersonalDataRequest, GetProfileRequest, IdentifyProfileRequest, LiftSuppressionRequest,
    ListMergesRequest, MergeProfilesRequest, ResolveProfileRequest, UnmergeProfileRequest,
};
use cairn_tests::{TestApp, eventually, spawn_app};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use tonic::Code;
use tonic_types::StatusExt;

fn id(kind: IdentifierType, value: &str) -> Identifier {
    cairn_tests::identifier(kind, value)
}

fn text(value: &str) -> Value {
    Value {
        kind: Some(value::Kind::StringValue(value.into())),
    }
}

async fn create(
    app: &TestApp,
    identifiers: Vec<Identifier>,
    attributes: &[(&str, &str)],
) -> String {
    app.create_profile(identifiers, attributes).await
}

async fn get(app: &TestApp, profile_id: &str) -> cairn_contract::profile::v1::Profile {
    app.profile()
        .await
        .get_profile(GetProfileRequest {
            customer: Some(CustomerRef {
                customer: Some(customer_ref::Customer::ProfileId(profile_id.into())),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let db = app.database.connect().await;
    let row = db
        .query_one_raw(Statement::from_string(DatabaseBackend::Postgres, sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

#[tokio::test]
async fn two_concurrent_identify_calls_leave_one_survivor_and_lose_nothing() {
    let app = spawn_app().await;
    let cookie = id(IdentifierType::CookieId, "cookie-race");
    let email = id(IdentifierType::Email, "Race@Example.com");
    // A visitor browsed anonymously; the same person has a known profile.
    let anonymous = app
        .profile()
        .await
        .resolve_profile(ResolveProfileRequest {
            identifier: Some(cookie.clone()),
            create_if_missing: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap()
        .profile_id;
    let known = create(&app, vec![email.clone()], &[("plan", "gold")]).await;

    // They log in on two tabs at once.
    let calls = (0..2).map(|_| {
        let app = &app;
        let identifiers = vec![cookie.clone(), email.clone()];
        async move {
            app.profile()
                .await
                .identify_profile(IdentifyProfileRequest { identifiers })
                .await
        }
    });
    let outcomes = futures::future::join_all(calls).await;
    let survivors: Vec<String> = outcomes
        .into_iter()
        .map(|o| o.unwrap().into_inner().profile.unwrap().profile_id)
        .collect();
    assert_eq!(survivors[0], survivors[1], "one survivor");
    assert_eq!(
        survivors[0], known,
        "the email's profile survives (stronger evidence)"
    );

    let merged = get(&app, &anonymous).await;
    assert_eq!(
        merged.profile_id, known,
        "the merged-away id resolves to the survivor"
    );
    let values: Vec<String> = merged
        .identifiers
        .iter()
        .map(|i| i.identifier.as_ref().unwrap().value.clone())
        .collect();
    assert!(
        values.contains(&"cookie-race".to_string())
            && values.contains(&"race@example.com".to_string()),
        "{values:?}"
    );
    assert_eq!(merged.attributes["plan"], text("gold"));
    let merges = app
        .profile()
        .await
        .list_merges(ListMergesRequest {
            profile_id: known.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .merges;
    assert_eq!(merges.len(), 1, "merged once");
    assert_eq!(merges[0].reason, "identify");
    app.stop().await;
}

#[tokio::test]
async fn weak_evidence_never_merges_a_stronger_profile() {
    let app = spawn_app().await;
    let laptop_cookie = id(IdentifierType::CookieId, "family-laptop");
    let anna = create(
        &app,
        vec![id(IdentifierType::CrmId, "crm-anna"), laptop_cookie.clone()],
        &[],
    )
    .await;
    let bo = create(&app, vec![id(IdentifierType::CrmId, "crm-bo")], &[]).await;
    // Bo logs in on Anna's laptop: the cookie links the two, weakly.
    let outcome = app
        .profile()
        .await
        .identify_profile(IdentifyProfileRequest {
            identifiers: vec![laptop_cookie, id(IdentifierType::CrmId, "crm-bo")],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome.profile.unwrap().profile_id, bo);
    assert!(outcome.merges.is_empty());
    assert_eq!(outcome.refused_merges.len(), 1);
    assert_eq!(outcome.refused_merges[0].profile_id, anna);
    assert_eq!(
        get(&app, &anna).await.profile_id,
        anna,
        "Anna stays herself"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_merge_is_undone() {
    let app = spawn_app().await;
    let first = create(
        &app,
        vec![id(IdentifierType::CrmId, "crm-1")],
        &[("plan", "basic")],
    )
    .await;
    let second = create(
        &app,
        vec![id(IdentifierType::CrmId, "crm-2")],
        &[("device", "phone-x")],
    )
    .await;
    let mut profile = app.profile().await;

    let itself = profile
        .merge_profiles(MergeProfilesRequest {
            survivor_profile_id: first.clone(),
            merged_profile_id: first.clone(),
            reason: "oops".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(itself.code(), Code::InvalidArgument);
    assert_eq!(
        itself.get_details_bad_request().unwrap().field_violations[0].field,
        "merged_profile_id"
    );

    let merge = profile
        .merge_profiles(MergeProfilesRequest {
            survivor_profile_id: first.clone(),
            merged_profile_id: second.clone(),
            reason: "agent said same person".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .merge
        .unwrap();
    assert_eq!(get(&app, &second).await.profile_id, first);
    let again = profile
        .merge_profiles(MergeProfilesRequest {
            survivor_profile_id: first.clone(),
            merged_profile_id: second.clone(),
            reason: "twice".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);

    let undone = profile
        .unmerge_profile(UnmergeProfileRequest {
            merge_id: merge.merge_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let restored = undone.restored.unwrap();
    assert_eq!(restored.profile_id, second);
    assert_eq!(restored.attributes["device"], text("phone-x"));
    assert_eq!(restored.identifiers.len(), 1);
    let survivor = undone.survivor.unwrap();
    assert!(
        !survivor.attributes.contains_key("device"),
        "what the merged profile brought goes back"
    );
    assert_eq!(survivor.identifiers.len(), 1);
    assert_eq!(
        get(&app, &second).await.profile_id,
        second,
        "the id resolves to itself again"
    );
    let twice = profile
        .unmerge_profile(UnmergeProfileRequest {
            merge_id: merge.merge_id,
        })
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition);
    app.stop().await;
}

#[tokio::test]
async fn an_erasure_reaches_every_store_and_suppresses_the_person() {
    use cairn_contract::common::v1::Channel;
    use cairn_contract::journey::v1::{RecordTouchpointRequest, Touchpoint, TouchpointType};

    let app = spawn_app().await;
    let crm = id(IdentifierType::CrmId, "crm-erase-me");
    let person = create(
        &app,
        vec![crm.clone(), id(IdentifierType::Email, "erase@example.com")],
        &[("plan", "gold")],
    )
    .await;
    let cookie = id(IdentifierType::CookieId, "cookie-erase-me");
    // A merged-in anonymous profile is part of the person too.
    app.profile()
        .await
        .identify_profile(IdentifyProfileRequest {
            identifiers: vec![cookie.clone(), crm.clone()],
        })
        .await
        .unwrap();
    app.journey()
        .await
        .record_touchpoint(RecordTouchpointRequest {
            touchpoint: Some(Touchpoint {
                touchpoint_id: "erase-1".into(),
                customer: Some(CustomerRef {
                    customer: Some(customer_ref::Customer::Identifier(crm.clone())),
                }),
                channel: Channel::Web as i32,
                r#type: TouchpointType::PageView as i32,
                occurred_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let touchpoints_sql =
        format!("SELECT COUNT(*) FROM journey_touchpoints WHERE profile_id = '{person}'");
    assert_eq!(count(&app, &touchpoints_sql).await, 1);

    let erasure = app
        .profile()
        .await
        .erase_personal_data(ErasePersonalDataRequest {
            customer: Some(CustomerRef {
                customer: Some(customer_ref::Customer::Identifier(crm.clone())),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .erasure_request
        .unwrap();
    assert!(erasure.receive_time.is_some() && erasure.complete_time.is_some());

    // The profile service's stores hold nothing readable of the person.
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM profile_profiles").await,
        0
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM profile_identifiers").await,
        0
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM profile_merges").await, 0);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM profile_suppressions").await,
        3
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM profile_suppressions WHERE identifier_hash LIKE '%erase%'"
        )
        .await,
        0,
        "suppressions are hashes, not values"
    );
    let gone = app
        .profile()
        .await
        .get_profile(GetProfileRequest {
            customer: Some(CustomerRef {
                customer: Some(customer_ref::Customer::ProfileId(person.clone())),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);

    // The journey service consumed profile.erased and erased its touchpoints.
    eventually(
        Duration::from_secs(15),
        "journey erasing the person's touchpoints",
        || async { (count(&app, &touchpoints_sql).await == 0).then_some(()) },
    )
    .await;

    // A late event cannot re-create the person...
    let late = app
        .profile()
        .await
        .resolve_profile(ResolveProfileRequest {
            identifier: Some(crm.clone()),
            create_if_missing: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition, "{late:?}");
    // ...until the operator lifts the suppression.
    app.profile()
        .await
        .lift_suppression(LiftSuppressionRequest {
            identifier: Some(crm.clone()),
        })
        .await
        .unwrap();
    let fresh = app
        .profile()
        .await
        .resolve_profile(ResolveProfileRequest {
            identifier: Some(crm),
            create_if_missing: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(fresh.created);
    assert_ne!(fresh.profile.unwrap().profile_id, person);
    app.stop().await;
}

#[tokio::test]
async fn a_shared_identifier_does_not_merge() {
    use cairn_contract::profile::v1::UpdateIdentifierRequest;
    let app = spawn_app().await;
    let family_email = id(IdentifierType::Email, "family@example.com");
    let parent = create(
        &app,
        vec![
            id(IdentifierType::CrmId, "crm-parent"),
            family_email.clone(),
        ],
        &[],
    )
    .await;
    let child = create(&app, vec![id(IdentifierType::CrmId, "crm-child")], &[]).await;
    app.profile()
        .await
        .update_identifier(UpdateIdentifierRequest {
            identifier: Some(family_email.clone()),
            shared: true,
        })
        .await
        .unwrap();
    let outcome = app
        .profile()
        .await
        .identify_profile(IdentifyProfileRequest {
            identifiers: vec![family_email, id(IdentifierType::CrmId, "crm-child")],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome.profile.unwrap().profile_id, child);
    assert!(outcome.merges.is_empty(), "a shared email links nothing");
    assert_eq!(outcome.refused_merges[0].profile_id, parent);
    assert!(
        outcome.refused_merges[0].reason.contains("shared"),
        "{}",
        outcome.refused_merges[0].reason
    );
    assert_eq!(get(&app, &parent).await.profile_id, parent);
    app.stop().await;
}

#[tokio::test]
async fn a_released_phone_number_is_claimed_by_a_new_subscriber_without_the_old_ones_consent() {
    use cairn_contract::common::v1::Channel;
    use cairn_contract::profile::v1::{
        CheckContactRequest, Consent, ContactVerdict, RecordConsentRequest,
        ReleaseIdentifierRequest,
    };
    let app = spawn_app().await;
    let number = id(IdentifierType::PhoneNumber, "+46 70 123 45 67");
    let old = create(
        &app,
        vec![
            id(IdentifierType::CrmId, "crm-old-subscriber"),
            number.clone(),
        ],
        &[("plan", "gold")],
    )
    .await;
    let by_number = || {
        Some(CustomerRef {
            customer: Some(customer_ref::Customer::Identifier(number.clone())),
        })
    };
    app.profile()
        .await
        .record_consent(RecordConsentRequest {
            customer: by_number(),
            consent: Some(Consent {
                purpose: "marketing".into(),
                channel: Channel::Sms as i32,
                granted: true,
                source: "shop".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();

    // The operator reassigns the number.
    let released = app
        .profile()
        .await
        .release_identifier(ReleaseIdentifierRequest {
            identifier: Some(number.clone()),
            release_time: None,
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(released.profile_id, old);
    let held = released
        .identifiers
        .iter()
        .find(|i| i.identifier.as_ref().unwrap().value == "+46701234567")
        .unwrap();
    assert!(
        held.valid_until.is_some(),
        "the old profile keeps the number in its history, ended"
    );

    let fresh = app
        .profile()
        .await
        .resolve_profile(ResolveProfileRequest {
            identifier: Some(number.clone()),
            create_if_missing: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        fresh.created,
        "the new subscriber gets a profile of their own"
    );
    let fresh = fresh.profile.unwrap();
    assert_ne!(fresh.profile_id, old);
    assert!(
        fresh.attributes.is_empty(),
        "nothing of the old subscriber is inherited"
    );
    let verdict = app
        .profile()
        .await
        .check_contact(CheckContactRequest {
            customer: by_number(),
            channel: Channel::Sms as i32,
            purpose: "marketing".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .verdict;
    assert_eq!(
        verdict,
        ContactVerdict::NoConsent as i32,
        "the old subscriber's consent does not carry over"
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_profile_input_gets_the_right_status_naming_the_field() {
    use cairn_contract::profile::v1::CreateProfileRequest;
    let app = spawn_app().await;
    let mut profile = app.profile().await;
    let first = profile
        .create_profile(CreateProfileRequest {
            identifiers: vec![id(IdentifierType::CrmId, "crm-dup")],
            request_id: "sync-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    let retried = profile
        .create_profile(CreateProfileRequest {
            identifiers: vec![id(IdentifierType::CrmId, "crm-dup")],
            request_id: "sync-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(
        retried.profile_id, first.profile_id,
        "a retry with the same request_id returns the first profile"
    );
    let owned = profile
        .create_profile(CreateProfileRequest {
            identifiers: vec![id(IdentifierType::CrmId, "crm-dup")],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(owned.code(), Code::AlreadyExists);
    assert!(
        owned.message().contains("identifiers[0]"),
        "{}",
        owned.message()
    );

    let bad = profile
        .create_profile(CreateProfileRequest {
            identifiers: vec![
                Identifier {
                    r#type: 99,
                    value: "x".into(),
                    custom_type: String::new(),
                },
                id(IdentifierType::Email, "anna@"),
                id(IdentifierType::PhoneNumber, "070 123 45 67"),
            ],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let fields: Vec<String> = bad
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(
        fields,
        [
            "identifiers[0].type",
            "identifiers[1].value",
            "identifiers[2].value"
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_known_identifier_makes_an_anonymous_profile_known() {
    use cairn_contract::profile::v1::ProfileState;
    let app = spawn_app().await;
    let visitor = app
        .profile()
        .await
        .resolve_profile(ResolveProfileRequest {
            identifier: Some(id(IdentifierType::CookieId, "c-anon")),
            create_if_missing: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(visitor.state, ProfileState::Anonymous as i32);
    let known = app
        .profile()
        .await
        .identify_profile(IdentifyProfileRequest {
            identifiers: vec![
                id(IdentifierType::CookieId, "c-anon"),
                id(IdentifierType::Email, "newcomer@example.com"),
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(
        known.profile_id, visitor.profile_id,
        "the identifier is attached, no new profile"
    );
    assert_eq!(known.state, ProfileState::Known as i32);
    app.stop().await;
}

#[tokio::test]
async fn a_merge_over_the_cap_of_identifiers_per_kind_is_refused() {
    use cairn_tests::{Options, spawn_app_with};
    let app = spawn_app_with(Options {
        adjust: Box::new(|settings| settings.merge_max_identifiers_per_kind = 2),
        ..Default::default()
    })
    .await;
    // A shop's kiosk: one profile that many devices' cookies ended up on.
    let kiosk = create(
        &app,
        vec![
            id(IdentifierType::DeviceId, "kiosk-1"),
            id(IdentifierType::CookieId, "k-a"),
            id(IdentifierType::CookieId, "k-b"),
        ],
        &[],
    )
    .await;
    let visitor = create(&app, vec![id(IdentifierType::CookieId, "k-c")], &[]).await;
    let outcome = app
        .profile()
        .await
        .identify_profile(IdentifyProfileRequest {
            identifiers: vec![
                id(IdentifierType::DeviceId, "kiosk-1"),
                id(IdentifierType::CookieId, "k-c"),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(outcome.merges.is_empty());
    assert_eq!(outcome.refused_merges.len(), 1);
    assert!(
        outcome.refused_merges[0].reason.contains("more than 2"),
        "{}",
        outcome.refused_merges[0].reason
    );
    assert_ne!(get(&app, &visitor).await.profile_id, kiosk);
    app.stop().await;
}
