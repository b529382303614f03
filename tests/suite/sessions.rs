//! Cross-channel sessions: a session begun on the web continues in the app
//! by another identifier of the same customer, changes never overwrite each
//! other silently, and the session is shared by replicas, survives a
//! restart, expires when idle and goes with the person on erasure.

use std::sync::Arc;
use std::time::Duration;

use cairn_contract::common::v1::{Channel, CustomerRef, IdentifierType, customer_ref};
use cairn_contract::journey::v1::{
    CartItem, GetSessionRequest, RecordTouchpointRequest, ResumeSessionRequest, Session,
    TouchpointType, UpdateSessionRequest,
};
use cairn_contract::profile::v1::ErasePersonalDataRequest;
use cairn_tests::{
    Options, by_identifier, eventually, identifier, spawn_app, spawn_app_with, spawn_on, touchpoint,
};
use sea_orm::{ConnectionTrait, Statement};
use tonic::Code;
use tonic_types::StatusExt;

fn cart(items: &[(&str, i32)]) -> Vec<CartItem> {
    items
        .iter()
        .map(|(offering, quantity)| CartItem {
            product_offering_id: offering.to_string(),
            quantity: *quantity,
            unit_price: None,
        })
        .collect()
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

#[tokio::test]
async fn a_session_started_on_the_web_is_resumed_in_the_app_by_another_identifier() {
    let app = spawn_app().await;
    let email = identifier(IdentifierType::Email, "session-walker@example.com");
    let phone = identifier(IdentifierType::PhoneNumber, "+46701234567");
    app.create_profile(vec![email.clone(), phone.clone()], &[])
        .await;
    let mut journey = app.journey().await;
    let started = journey
        .resume_session(ResumeSessionRequest {
            customer: Some(by_identifier(email.clone())),
            channel: Channel::Web as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(started.started);
    let session = started.session.unwrap();
    let updated = journey
        .update_session(UpdateSessionRequest {
            customer: Some(by_identifier(email)),
            channel: Channel::Web as i32,
            session: Some(Session {
                journey_id: "guided_shopping".into(),
                current_step: "configure_plan".into(),
                cart: cart(&[("phone-x", 1), ("plan-unlimited", 1)]),
                etag: session.etag.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["journey_id", "current_step", "cart"]),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_ne!(updated.etag, session.etag);

    let resumed = journey
        .resume_session(ResumeSessionRequest {
            customer: Some(by_identifier(phone.clone())),
            channel: Channel::MobileApp as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!resumed.started, "the app continued the web session");
    let resumed = resumed.session.unwrap();
    assert_eq!(resumed.session_id, session.session_id);
    assert_eq!(resumed.current_step, "configure_plan");
    assert_eq!(resumed.cart.len(), 2);
    assert_eq!(
        resumed.channels,
        [Channel::Web as i32, Channel::MobileApp as i32]
    );
    assert_eq!(resumed.last_channel, Channel::MobileApp as i32);

    // A change from a stale read is refused instead of silently overwriting.
    let stale = journey
        .update_session(UpdateSessionRequest {
            customer: Some(by_identifier(phone.clone())),
            channel: Channel::MobileApp as i32,
            session: Some(Session {
                current_step: "cart".into(),
                etag: updated.etag,
                ..Default::default()
            }),
            update_mask: mask(&["current_step"]),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");

    let bad = journey
        .update_session(UpdateSessionRequest {
            customer: Some(by_identifier(phone)),
            channel: Channel::MobileApp as i32,
            session: Some(Session {
                cart: cart(&[("phone-x", 0)]),
                ..Default::default()
            }),
            update_mask: mask(&["cart", "profile_id"]),
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
    assert_eq!(fields, ["update_mask.paths[1]", "session.cart[0].quantity"]);
    app.stop().await;
}

#[tokio::test]
async fn a_session_is_shared_by_replicas_and_survives_a_restart() {
    let mut first = spawn_app().await;
    let crm = identifier(IdentifierType::CrmId, "crm-session-restart");
    first.create_profile(vec![crm.clone()], &[]).await;
    first
        .journey()
        .await
        .resume_session(ResumeSessionRequest {
            customer: Some(by_identifier(crm.clone())),
            channel: Channel::Store as i32,
        })
        .await
        .unwrap();

    let mut second = spawn_on(
        Arc::clone(&first.database),
        first.redis_prefix.clone(),
        Options::default(),
    )
    .await;
    let seen = second
        .journey()
        .await
        .get_session(GetSessionRequest {
            customer: Some(by_identifier(crm.clone())),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(seen.last_channel, Channel::Store as i32);
    second.stop_services().await;

    first.stop_services().await;
    let restarted = spawn_on(
        Arc::clone(&first.database),
        first.redis_prefix.clone(),
        Options::default(),
    )
    .await;
    let after_restart = restarted
        .journey()
        .await
        .get_session(GetSessionRequest {
            customer: Some(by_identifier(crm)),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(after_restart.session_id, seen.session_id);
    restarted.stop().await;
}

#[tokio::test]
async fn an_idle_session_expires() {
    let app = spawn_app_with(Options {
        adjust: Box::new(|settings| settings.session_idle_seconds = 1),
        ..Default::default()
    })
    .await;
    let cookie = identifier(IdentifierType::CookieId, "idle-visitor");
    let mut journey = app.journey().await;
    journey
        .resume_session(ResumeSessionRequest {
            customer: Some(by_identifier(cookie.clone())),
            channel: Channel::Web as i32,
        })
        .await
        .unwrap();
    journey
        .get_session(GetSessionRequest {
            customer: Some(by_identifier(cookie.clone())),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let expired = journey
        .get_session(GetSessionRequest {
            customer: Some(by_identifier(cookie)),
        })
        .await
        .unwrap_err();
    assert_eq!(expired.code(), Code::NotFound);
    app.stop().await;
}

#[tokio::test]
async fn erasure_deletes_the_session_from_redis_and_every_journey_row() {
    let app = spawn_app().await;
    let email = identifier(IdentifierType::Email, "forget-my-session@example.com");
    let profile_id = app.create_profile(vec![email.clone()], &[]).await;
    app.journey()
        .await
        .record_touchpoint(RecordTouchpointRequest {
            touchpoint: Some(touchpoint(
                "forget-1",
                email.clone(),
                Channel::Web,
                TouchpointType::AddToCart,
                1,
                &[("cart_id", "forget-cart")],
            )),
        })
        .await
        .unwrap();
    app.journey()
        .await
        .resume_session(ResumeSessionRequest {
            customer: Some(by_identifier(email)),
            channel: Channel::Web as i32,
        })
        .await
        .unwrap();
    let db = app.database.connect().await;
    let rows_of_the_person = || {
        let db = db.clone();
        let profile_id = profile_id.clone();
        async move {
            let mut total = 0i64;
            for table in [
                "journey_touchpoints",
                "journey_states",
                "journey_transitions",
                "journey_abandonments",
            ] {
                let row = db
                    .query_one_raw(Statement::from_string(
                        db.get_database_backend(),
                        format!(
                            "SELECT COUNT(*) AS n FROM {table} \
                             WHERE customer_id = '{profile_id}' OR profile_id = '{profile_id}'"
                        ),
                    ))
                    .await
                    .unwrap()
                    .unwrap();
                total += row.try_get::<i64>("", "n").unwrap();
            }
            total
        }
    };
    assert!(
        rows_of_the_person().await >= 4,
        "a touchpoint, two positions and their transitions"
    );
    let key = format!("{}journey:session:{profile_id}", app.redis_prefix);
    let client = redis::Client::open(cairn_tests::redis_url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let exists: bool = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(exists, "the session is kept under {key}");
    app.profile()
        .await
        .erase_personal_data(ErasePersonalDataRequest {
            customer: Some(CustomerRef {
                customer: Some(customer_ref::Customer::ProfileId(profile_id.clone())),
            }),
        })
        .await
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the journey rows are erased",
        || async { (rows_of_the_person().await == 0).then_some(()) },
    )
    .await;
    eventually(Duration::from_secs(10), "the session is erased", || {
        let key = key.clone();
        let mut redis = redis.clone();
        async move {
            let exists: bool = redis::cmd("EXISTS")
                .arg(&key)
                .query_async(&mut redis)
                .await
                .ok()?;
            (!exists).then_some(())
        }
    })
    .await;
    app.stop().await;
}
