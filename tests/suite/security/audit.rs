//! Access to personal data is written to the audit log: reads of profiles
//! (by a system and by a customer's own front end), a list, an export and
//! an erasure, each with who, what and when, the person only as a keyed
//! hash; the log holds no identifier, attribute or profile id. Cairn's own
//! services resolving customers are not logged.

use cairn_contract::common::v1::{Channel, CustomerRef, IdentifierType, customer_ref};
use cairn_contract::journey::v1::{RecordTouchpointRequest, TouchpointType};
use cairn_contract::profile::v1::profile_service_client::ProfileServiceClient;
use cairn_contract::profile::v1::{
    ErasePersonalDataRequest, ExportPersonalDataRequest, GetProfileRequest, ListProfilesRequest,
};
use cairn_runtime::ServiceKind;
use cairn_tests::{Options, identifier, spawn_app, spawn_on, touchpoint};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

#[derive(Debug)]
struct Entry {
    occurred_at: chrono::DateTime<chrono::Utc>,
    subject: String,
    acting_for: Option<String>,
    action: String,
    person_hash: Option<String>,
    row: String,
}

async fn audit_log(app: &cairn_tests::TestApp) -> Vec<Entry> {
    let db = app.database.connect().await;
    db.query_all_raw(Statement::from_string(
        DatabaseBackend::Postgres,
        "SELECT occurred_at, subject, acting_for, action, person_hash, l::text AS row \
         FROM profile_audit_log l ORDER BY id",
    ))
    .await
    .unwrap()
    .into_iter()
    .map(|row| Entry {
        occurred_at: row.try_get("", "occurred_at").unwrap(),
        subject: row.try_get("", "subject").unwrap(),
        acting_for: row.try_get("", "acting_for").unwrap(),
        action: row.try_get("", "action").unwrap(),
        person_hash: row.try_get("", "person_hash").unwrap(),
        row: row.try_get("", "row").unwrap(),
    })
    .collect()
}

#[tokio::test]
async fn reads_exports_and_erasures_are_audited_without_the_data() {
    let app = spawn_app().await;
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);
    let email = "audit.person@example.com";
    let id = app
        .create_profile(
            vec![identifier(IdentifierType::Email, email)],
            &[("plan", "platinum-secret-plan")],
        )
        .await;
    let customer = Some(CustomerRef {
        customer: Some(customer_ref::Customer::ProfileId(id.clone())),
    });
    // Cairn's journey service resolves the customer of a touchpoint: not logged.
    app.journey()
        .await
        .record_touchpoint(RecordTouchpointRequest {
            touchpoint: Some(touchpoint(
                "audit-1",
                identifier(IdentifierType::Email, email),
                Channel::Web,
                TouchpointType::PageView,
                1,
                &[],
            )),
        })
        .await
        .unwrap();
    assert!(
        audit_log(&app).await.is_empty(),
        "the services' own reads are not logged"
    );

    let mut profile = app.profile().await;
    profile
        .get_profile(GetProfileRequest {
            customer: customer.clone(),
        })
        .await
        .unwrap();
    let token = app.customer_token(&id, &["profile.read"]);
    ProfileServiceClient::new(app.with_token(ServiceKind::Profile, &token).await)
        .get_profile(GetProfileRequest {
            customer: customer.clone(),
        })
        .await
        .unwrap();
    profile
        .list_profiles(ListProfilesRequest::default())
        .await
        .unwrap();
    profile
        .export_personal_data(ExportPersonalDataRequest {
            customer: customer.clone(),
        })
        .await
        .unwrap();
    profile
        .erase_personal_data(ErasePersonalDataRequest { customer })
        .await
        .unwrap();

    let log = audit_log(&app).await;
    let actions: Vec<&str> = log.iter().map(|entry| entry.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "get_profile",
            "get_profile",
            "list_profiles",
            "export_personal_data",
            "erase_personal_data"
        ]
    );
    let now = chrono::Utc::now();
    for entry in &log {
        assert!(
            entry.occurred_at >= started && entry.occurred_at <= now,
            "{entry:?}"
        );
        for data in [email, id.as_str(), "platinum-secret-plan"] {
            assert!(
                !entry.row.contains(data),
                "the audit log holds {data}: {entry:?}"
            );
        }
    }
    assert_eq!(log[0].subject, "test");
    assert_eq!(log[0].acting_for, None);
    assert_eq!(log[1].subject, "web-front-end");
    assert!(
        log[1].acting_for.is_some(),
        "the front end acted for the customer"
    );
    assert_eq!(log[2].person_hash, None, "a list names no one");
    let person = log[0].person_hash.clone().unwrap();
    for entry in [&log[1], &log[3], &log[4]] {
        assert_eq!(
            entry.person_hash.as_ref(),
            Some(&person),
            "one person, one hash"
        );
    }
    app.stop().await;
}

/// Reads made at once on three profile replicas of one database.
const CONCURRENT_READS: usize = 200;

/// Audit entries are written in batches (issue 15, item 6), one writer per
/// replica: two hundred GetProfile calls at once, half by a system and half
/// by the customer's own front end, spread over three replicas, leave
/// exactly one entry each, all committed by the time each call is answered.
#[tokio::test]
async fn concurrent_reads_on_three_replicas_leave_one_entry_each() {
    let app = spawn_app().await;
    let replica = || {
        spawn_on(
            std::sync::Arc::clone(&app.database),
            app.redis_prefix.clone(),
            Options {
                services: vec![ServiceKind::Profile],
                ..Default::default()
            },
        )
    };
    let (second, third) = (replica().await, replica().await);
    let id = app
        .create_profile(
            vec![identifier(IdentifierType::Email, "audit.crowd@example.com")],
            &[],
        )
        .await;
    let customer = Some(CustomerRef {
        customer: Some(customer_ref::Customer::ProfileId(id.clone())),
    });
    let customer_token = app.customer_token(&id, &["profile.read"]);
    let mut clients = Vec::new();
    for replica in [&app, &second, &third] {
        clients.push(replica.profile().await);
        clients.push(ProfileServiceClient::new(
            replica
                .with_token(ServiceKind::Profile, &customer_token)
                .await,
        ));
    }
    let reads = (0..CONCURRENT_READS).map(|read| {
        let mut client = clients[read % clients.len()].clone();
        let customer = customer.clone();
        async move { client.get_profile(GetProfileRequest { customer }).await }
    });
    let answers = futures::future::join_all(reads).await;
    let failed: Vec<_> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(failed.is_empty(), "every read is answered: {failed:?}");

    // Answered means committed: the log is read at once, without waiting.
    let log = audit_log(&app).await;
    assert_eq!(log.len(), CONCURRENT_READS, "one entry per read");
    let by_subject = |subject: &str| log.iter().filter(|e| e.subject == subject).count();
    assert_eq!(by_subject("test"), CONCURRENT_READS / 2);
    assert_eq!(by_subject("web-front-end"), CONCURRENT_READS / 2);
    let person = log[0].person_hash.clone();
    assert!(person.is_some());
    for entry in &log {
        assert_eq!(entry.action, "get_profile", "{entry:?}");
        assert_eq!(entry.person_hash, person, "one person, one hash");
        assert_eq!(
            entry.acting_for.is_some(),
            entry.subject == "web-front-end",
            "{entry:?}"
        );
    }
    for replica in [second, third] {
        replica.stop().await;
    }
    app.stop().await;
}
