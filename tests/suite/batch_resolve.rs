//! BatchResolveProfiles: many customers resolved in one call, each answered
//! as ResolveProfile or GetProfile would answer it alone (known, created,
//! suppressed, merged away, released, malformed), a bounded request, one
//! profile per new identifier under concurrent batches, the same scopes and
//! audit rules as ResolveProfile; and journey's batches resolved with it.

use cairn_contract::common::v1::{Channel, CustomerRef, Identifier, IdentifierType, customer_ref};
use cairn_contract::journey::v1::{
    RecordTouchpointsRequest, TouchpointOutcome, TouchpointResult, TouchpointType,
};
use cairn_contract::profile::v1::profile_service_client::ProfileServiceClient;
use cairn_contract::profile::v1::{
    BatchResolveProfilesRequest, ErasePersonalDataRequest, GetProfileRequest, MergeProfilesRequest,
    ProfileState, ReleaseIdentifierRequest, ResolveProfileRequest, ResolvedCustomer,
};
use cairn_runtime::ServiceKind;
use cairn_tests::{TestApp, by_identifier, identifier, spawn_app, touchpoint};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use tonic::Code;

fn by_id(profile_id: &str) -> CustomerRef {
    CustomerRef {
        customer: Some(customer_ref::Customer::ProfileId(profile_id.into())),
    }
}

fn cookie(value: &str) -> Identifier {
    identifier(IdentifierType::CookieId, value)
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let db = app.database.connect().await;
    db.query_one_raw(Statement::from_string(DatabaseBackend::Postgres, sql))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap()
}

async fn batch(
    app: &TestApp,
    customers: Vec<CustomerRef>,
    create_if_missing: bool,
) -> Vec<ResolvedCustomer> {
    app.profile()
        .await
        .batch_resolve_profiles(BatchResolveProfilesRequest {
            customers,
            create_if_missing,
        })
        .await
        .unwrap()
        .into_inner()
        .results
}

async fn state_of(app: &TestApp, profile_id: &str) -> i32 {
    app.profile()
        .await
        .get_profile(GetProfileRequest {
            customer: Some(by_id(profile_id)),
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap()
        .state
}

#[tokio::test]
async fn a_batch_resolve_answers_each_customer_on_its_own() {
    let app = spawn_app().await;
    let mut profile = app.profile().await;
    // Known: a profile holding an email.
    let email = identifier(IdentifierType::Email, "Known.Person@Example.com");
    let known = app.create_profile(vec![email.clone()], &[]).await;
    // Merged away: a visitor's anonymous profile merged into a known one.
    let visitor = profile
        .resolve_profile(ResolveProfileRequest {
            identifier: Some(cookie("cookie-merged-away")),
            create_if_missing: true,
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap()
        .profile_id;
    let survivor = app
        .create_profile(vec![identifier(IdentifierType::CrmId, "crm-survivor")], &[])
        .await;
    profile
        .merge_profiles(MergeProfilesRequest {
            survivor_profile_id: survivor.clone(),
            merged_profile_id: visitor.clone(),
            reason: "same person".into(),
        })
        .await
        .unwrap();
    // Suppressed: an erased person's identifier.
    let erased_crm = identifier(IdentifierType::CrmId, "crm-erased");
    app.create_profile(vec![erased_crm.clone()], &[]).await;
    profile
        .erase_personal_data(ErasePersonalDataRequest {
            customer: Some(by_identifier(erased_crm.clone())),
        })
        .await
        .unwrap();
    // Released: a phone number the operator reassigned.
    let number = identifier(IdentifierType::PhoneNumber, "+46 70 765 43 21");
    let old_subscriber = app
        .create_profile(
            vec![
                identifier(IdentifierType::CrmId, "crm-old-subscriber"),
                number.clone(),
            ],
            &[],
        )
        .await;
    profile
        .release_identifier(ReleaseIdentifierRequest {
            identifier: Some(number.clone()),
            release_time: None,
        })
        .await
        .unwrap();
    let profiles_before = count(&app, "SELECT COUNT(*) FROM profile_profiles").await;
    let new_email = identifier(IdentifierType::Email, "new.person@example.com");
    let unknown_id = uuid::Uuid::now_v7().to_string();

    let customers = vec![
        by_identifier(email.clone()),                // 0 known
        by_identifier(cookie("cookie-first-sight")), // 1 created
        by_identifier(erased_crm.clone()),           // 2 suppressed
        by_id(&visitor),                             // 3 merged away, by id
        by_identifier(cookie("cookie-merged-away")), // 4 merged away, by identifier
        by_identifier(number.clone()),               // 5 released: a new subscriber
        by_id(&unknown_id),                          // 6 unknown id
        by_identifier(identifier(IdentifierType::Email, "not an email")), // 7 malformed identifier
        by_id("not-a-uuid"),                         // 8 malformed id
        CustomerRef { customer: None },              // 9 empty
        by_identifier(cookie("cookie-first-sight")), // 10 repeated
        by_identifier(new_email.clone()),            // 11 created, known
        by_id(&known),                               // 12 known, by id
    ];
    let results = batch(&app, customers.clone(), true).await;
    assert_eq!(results.len(), customers.len());
    for (index, result) in results.iter().enumerate() {
        assert_eq!(result.index, index as i32, "{result:?}");
    }
    let ok = |index: usize| {
        let result = &results[index];
        assert_eq!(result.error_code, Code::Ok as i32, "{index}: {result:?}");
        result.profile_id.clone()
    };
    let refused = |index: usize, code: Code| {
        let result = &results[index];
        assert_eq!(result.error_code, code as i32, "{index}: {result:?}");
        assert!(result.profile_id.is_empty(), "{index}: {result:?}");
        assert!(!result.error_message.is_empty(), "{index}: {result:?}");
        result
    };
    assert_eq!(ok(0), known);
    assert!(!results[0].created);
    let first_sight = ok(1);
    assert!(results[1].created, "the first sight creates a profile");
    assert_eq!(
        state_of(&app, &first_sight).await,
        ProfileState::Anonymous as i32
    );
    let suppressed = refused(2, Code::FailedPrecondition);
    assert!(
        suppressed.error_message.contains("erased"),
        "{suppressed:?}"
    );
    assert_eq!(ok(3), survivor, "a merged-away id resolves to the survivor");
    assert_eq!(
        ok(4),
        survivor,
        "so does the merged-away profile's identifier"
    );
    let new_subscriber = ok(5);
    assert!(results[5].created);
    assert_ne!(
        new_subscriber, old_subscriber,
        "a released number goes to a new profile, not to its old holder"
    );
    refused(6, Code::NotFound);
    let malformed = refused(7, Code::InvalidArgument);
    assert_eq!(malformed.field_violations.len(), 1, "{malformed:?}");
    assert_eq!(malformed.field_violations[0].field, "identifier.value");
    let malformed = refused(8, Code::InvalidArgument);
    assert_eq!(malformed.field_violations[0].field, "profile_id");
    refused(9, Code::InvalidArgument);
    assert_eq!(
        ok(10),
        first_sight,
        "a repeated identifier gets the same profile"
    );
    assert!(!results[10].created, "created is said once per identifier");
    let known_by_email = ok(11);
    assert!(results[11].created);
    assert_eq!(
        state_of(&app, &known_by_email).await,
        ProfileState::Known as i32,
        "a personal identifier makes a known profile, as ResolveProfile does"
    );
    assert_eq!(ok(12), known);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM profile_profiles").await,
        profiles_before + 3,
        "exactly the three new identifiers got profiles"
    );
    assert!(
        count(
            &app,
            "SELECT COUNT(*) FROM profile_outbox WHERE topic = 'profile.created'"
        )
        .await
            >= 3,
        "each new profile announces itself"
    );

    // Read by a system's token: audited like ResolveProfile, one entry per profile.
    let audited = count(
        &app,
        "SELECT COUNT(*) FROM profile_audit_log WHERE action = 'batch_resolve_profiles'",
    )
    .await;
    assert_eq!(
        audited, 5,
        "one entry per profile returned: known, first sight, survivor, new subscriber, new email"
    );

    // Without create_if_missing, nothing is created.
    let results = batch(
        &app,
        vec![
            by_identifier(cookie("cookie-never-seen")),
            by_identifier(email.clone()),
        ],
        false,
    )
    .await;
    assert_eq!(results[0].error_code, Code::NotFound as i32, "{results:?}");
    assert_eq!(results[1].profile_id, known);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM profile_profiles").await,
        profiles_before + 3
    );
    app.stop().await;
}

#[tokio::test]
async fn an_empty_or_oversized_batch_is_refused_naming_customers() {
    let app = spawn_app().await;
    let mut profile = app.profile().await;
    for size in [0, 1001] {
        let status = profile
            .batch_resolve_profiles(BatchResolveProfilesRequest {
                customers: (0..size)
                    .map(|index| by_identifier(cookie(&format!("cookie-{index}"))))
                    .collect(),
                create_if_missing: true,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{size}: {status:?}");
        assert!(
            status.message().contains("customers") && status.message().contains("1000"),
            "{size}: {}",
            status.message()
        );
    }
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM profile_profiles").await,
        0,
        "a refused batch creates nothing"
    );
    // The bound itself is accepted.
    let results = batch(
        &app,
        (0..1000)
            .map(|index| by_identifier(cookie(&format!("cookie-{index}"))))
            .collect(),
        true,
    )
    .await;
    assert!(results.iter().all(|result| result.created), "1000 created");
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM profile_profiles").await,
        1000
    );
    app.stop().await;
}

#[tokio::test]
async fn concurrent_batches_naming_the_same_new_identifiers_end_with_one_profile_each() {
    let app = spawn_app().await;
    let shared: Vec<String> = (0..50)
        .map(|index| format!("cookie-race-{index}"))
        .collect();
    // Eight batches at once, each naming the shared cookies in its own order
    // (and one cookie of its own), so their inserts interleave.
    let calls = (0..8).map(|caller| {
        let app = &app;
        let mut names = shared.clone();
        names.rotate_left(caller * 7);
        if caller % 2 == 1 {
            names.reverse();
        }
        names.push(format!("cookie-own-{caller}"));
        async move {
            let results = batch(
                app,
                names
                    .iter()
                    .map(|name| by_identifier(cookie(name)))
                    .collect(),
                true,
            )
            .await;
            names.into_iter().zip(results).collect::<Vec<_>>()
        }
    });
    let answers: Vec<(String, ResolvedCustomer)> = futures::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .collect();
    let mut owner = std::collections::HashMap::new();
    let mut created = std::collections::HashMap::new();
    for (name, result) in &answers {
        assert_eq!(result.error_code, Code::Ok as i32, "{name}: {result:?}");
        let first = owner
            .entry(name.clone())
            .or_insert_with(|| result.profile_id.clone());
        assert_eq!(
            *first, result.profile_id,
            "{name}: every batch got one profile"
        );
        *created.entry(name.clone()).or_insert(0) += usize::from(result.created);
    }
    assert!(
        created.values().all(|times| *times == 1),
        "each profile was created by exactly one batch: {created:?}"
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM profile_profiles").await,
        58,
        "one profile per distinct cookie, none left over from a lost insert"
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM profile_outbox WHERE topic = 'profile.created'"
        )
        .await,
        58,
        "one profile.created event per profile"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_batch_resolve_needs_resolves_scopes_and_refuses_a_customers_token() {
    let app = spawn_app().await;
    let customer = app
        .create_profile(
            vec![identifier(IdentifierType::Email, "own@example.com")],
            &[],
        )
        .await;
    let request = |create_if_missing| BatchResolveProfilesRequest {
        customers: vec![by_id(&customer)],
        create_if_missing,
    };
    // ResolveProfile is not open to a customer's token: neither is the batch.
    let token = app.customer_token(&customer, &["profile.read", "profile.write"]);
    for create in [false, true] {
        let status = ProfileServiceClient::new(app.with_token(ServiceKind::Profile, &token).await)
            .batch_resolve_profiles(request(create))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    // Reading needs "profile.read"; creating also "profile.write".
    let reader =
        ProfileServiceClient::new(app.authed(ServiceKind::Profile, &["profile.read"]).await)
            .batch_resolve_profiles(request(false))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(reader.results[0].profile_id, customer);
    let status =
        ProfileServiceClient::new(app.authed(ServiceKind::Profile, &["profile.read"]).await)
            .batch_resolve_profiles(request(true))
            .await
            .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("profile.write"),
        "{}",
        status.message()
    );
    let status =
        ProfileServiceClient::new(app.authed(ServiceKind::Profile, &["profile.write"]).await)
            .batch_resolve_profiles(request(false))
            .await
            .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("profile.read"),
        "{}",
        status.message()
    );
    app.stop().await;
}

fn result_of<'a>(results: &'a [TouchpointResult], id: &str) -> &'a TouchpointResult {
    results
        .iter()
        .find(|result| result.touchpoint_id == id)
        .unwrap_or_else(|| panic!("no result for {id}: {results:?}"))
}

#[tokio::test]
async fn journey_resolves_a_batch_of_touchpoints_in_one_call_each_customer_on_its_own() {
    let app = spawn_app().await;
    let erased = identifier(IdentifierType::CrmId, "crm-erased-before-ingestion");
    app.create_profile(vec![erased.clone()], &[]).await;
    app.profile()
        .await
        .erase_personal_data(ErasePersonalDataRequest {
            customer: Some(by_identifier(erased.clone())),
        })
        .await
        .unwrap();
    let audited_before = count(&app, "SELECT COUNT(*) FROM profile_audit_log").await;
    let visit = |id: &str, who: Identifier| {
        touchpoint(id, who, Channel::Web, TouchpointType::PageView, 1, &[])
    };
    let results = app
        .journey()
        .await
        .record_touchpoints(RecordTouchpointsRequest {
            touchpoints: vec![
                visit("b-1", cookie("cookie-batch-new")),
                visit("b-2", cookie("cookie-batch-new")),
                visit("b-3", identifier(IdentifierType::Email, "no at sign")),
                visit("b-4", erased.clone()),
                visit("b-5", cookie("cookie-batch-other")),
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let stored = TouchpointOutcome::Stored as i32;
    let (first, second) = (result_of(&results, "b-1"), result_of(&results, "b-2"));
    assert_eq!(
        (first.outcome, second.outcome),
        (stored, stored),
        "{results:?}"
    );
    assert_eq!(
        first.profile_id, second.profile_id,
        "one new customer, one profile"
    );
    let malformed = result_of(&results, "b-3");
    assert_eq!(
        malformed.error_code,
        Code::InvalidArgument as i32,
        "{malformed:?}"
    );
    assert!(
        malformed
            .error_message
            .contains("touchpoints[2].customer.identifier.value"),
        "the refusal names the touchpoint's field: {}",
        malformed.error_message
    );
    let suppressed = result_of(&results, "b-4");
    assert_eq!(
        suppressed.error_code,
        Code::FailedPrecondition as i32,
        "an erased person's touchpoint is refused: {suppressed:?}"
    );
    let other = result_of(&results, "b-5");
    assert_eq!(other.outcome, stored);
    assert_ne!(other.profile_id, first.profile_id);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM journey_touchpoints").await,
        3
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM profile_profiles").await,
        2,
        "the two new cookies got a profile each"
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM profile_audit_log").await,
        audited_before,
        "journey's own resolves, with its service token, are not audited"
    );
    app.stop().await;
}
