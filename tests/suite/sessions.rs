//! Cross-channel sessions: a session begun on the web continues in the app
//! by another identifier of the same customer, changes never overwrite each
//! other silently, and the session is shared by replicas, survives a
//! restart, expires when idle and goes with the person on erasure.

use std::sync::Arc;
use std::time::Duration;

use cairn_contract::common::v1::{Channel, CustomerRef, Identifier, IdentifierType, customer_ref};
use cairn_contract::journey::v1::journey_service_client::JourneyServiceClient;
use cairn_contract::journey::v1::{
    CartItem, GetSessionRequest, RecordTouchpointRequest, ResumeSessionRequest, Session,
    TouchpointType, UpdateSessionRequest,
};
use cairn_contract::profile::v1::{ErasePersonalDataRequest, IdentifyProfileRequest};
use cairn_tests::{
    AuthedChannel, Options, by_identifier, eventually, identifier, spawn_app, spawn_app_with,
    spawn_on, touchpoint,
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

/// A journey replica beside `app`'s, on its database and Redis prefix,
/// calling `app`'s profile service: a second front door to the same sessions.
async fn journey_replica(app: &cairn_tests::TestApp) -> cairn_tests::TestApp {
    use cairn_runtime::ServiceKind;
    let profile = app.addresses[&ServiceKind::Profile];
    let recommendation = app.addresses[&ServiceKind::Recommendation];
    spawn_on(
        Arc::clone(&app.database),
        app.redis_prefix.clone(),
        Options {
            services: vec![ServiceKind::Journey],
            adjust: Box::new(move |settings| {
                settings.profile_addr = Some(format!("http://{profile}"));
                settings.recommendation_addr = Some(format!("http://{recommendation}"));
            }),
            ..Default::default()
        },
    )
    .await
}

/// Signs the visitor of `cookie` in as the customer of `email`: the
/// visitor's profile is merged into the customer's.
async fn log_in(app: &cairn_tests::TestApp, cookie: &Identifier, email: &Identifier) {
    let login = app
        .profile()
        .await
        .identify_profile(IdentifyProfileRequest {
            identifiers: vec![cookie.clone(), email.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(login.merges.len(), 1, "the visitor was merged: {login:?}");
}

fn offerings(session: &Session) -> Vec<(String, i32)> {
    session
        .cart
        .iter()
        .map(|line| (line.product_offering_id.clone(), line.quantity))
        .collect()
}

fn owned(items: &[(&str, i32)]) -> Vec<(String, i32)> {
    items.iter().map(|(o, q)| (o.to_string(), *q)).collect()
}

/// A visitor's web session with `items` in the cart; returns it.
async fn web_cart(
    journey: &mut JourneyServiceClient<AuthedChannel>,
    cookie: &Identifier,
    step: &str,
    items: &[(&str, i32)],
) -> Session {
    let started = journey
        .resume_session(ResumeSessionRequest {
            customer: Some(by_identifier(cookie.clone())),
            channel: Channel::Web as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    journey
        .update_session(UpdateSessionRequest {
            customer: Some(by_identifier(cookie.clone())),
            channel: Channel::Web as i32,
            session: Some(Session {
                journey_id: "guided_shopping".into(),
                current_step: step.into(),
                cart: cart(items),
                etag: started.etag,
                ..Default::default()
            }),
            update_mask: mask(&["journey_id", "current_step", "cart"]),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap()
}

#[tokio::test]
async fn right_after_a_login_the_web_and_the_app_on_another_replica_continue_the_web_cart() {
    let app = spawn_app().await;
    let replica = journey_replica(&app).await;
    let mut web = app.journey().await;
    let mut phone_app = replica.journey().await;
    // Several customers, so that today's race (the merge event handled 20
    // to 40 ms after the login) cannot pass by luck.
    for customer in 0..6 {
        let cookie = identifier(
            IdentifierType::CookieId,
            &format!("login-visitor-{customer}"),
        );
        let email = identifier(
            IdentifierType::Email,
            &format!("login-customer-{customer}@example.com"),
        );
        let phone = identifier(
            IdentifierType::PhoneNumber,
            &format!("+4670123450{customer}"),
        );
        app.create_profile(vec![email.clone(), phone.clone()], &[])
            .await;
        let before = web_cart(
            &mut web,
            &cookie,
            "configure_plan",
            &[("phone-x", 1), ("plan-unlimited", 1)],
        )
        .await;

        log_in(&app, &cookie, &email).await;
        // No pause: the web front end's own next change, with the etag it
        // read before the login.
        let changed = web
            .update_session(UpdateSessionRequest {
                customer: Some(by_identifier(cookie.clone())),
                channel: Channel::Web as i32,
                session: Some(Session {
                    current_step: "checkout".into(),
                    cart: cart(&[("phone-x", 1), ("plan-unlimited", 1), ("case", 1)]),
                    etag: before.etag.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&["current_step", "cart"]),
            })
            .await
            .unwrap_or_else(|status| panic!("customer {customer}: {status:?}"))
            .into_inner()
            .session
            .unwrap();
        assert_eq!(changed.session_id, before.session_id);
        // And at once the app, by the phone number, on the other replica.
        let resumed = phone_app
            .resume_session(ResumeSessionRequest {
                customer: Some(by_identifier(phone.clone())),
                channel: Channel::MobileApp as i32,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!resumed.started, "customer {customer}: a new empty session");
        let resumed = resumed.session.unwrap();
        assert_eq!(resumed.session_id, before.session_id);
        assert_eq!(resumed.profile_id, changed.profile_id);
        assert_eq!(resumed.current_step, "checkout");
        assert_eq!(
            offerings(&resumed),
            owned(&[("phone-x", 1), ("plan-unlimited", 1), ("case", 1)])
        );
        assert_eq!(
            resumed.channels,
            [Channel::Web as i32, Channel::MobileApp as i32]
        );
    }
    let mut replica = replica;
    replica.stop_services().await;
    app.stop().await;
}

#[tokio::test]
async fn right_after_a_login_the_app_resumes_the_web_cart_and_the_web_changes_it_still() {
    let app = spawn_app().await;
    let replica = journey_replica(&app).await;
    let mut web = app.journey().await;
    let mut phone_app = replica.journey().await;
    for customer in 0..6 {
        let cookie = identifier(IdentifierType::CookieId, &format!("app-first-{customer}"));
        let email = identifier(
            IdentifierType::Email,
            &format!("app-first-{customer}@example.com"),
        );
        let phone = identifier(
            IdentifierType::PhoneNumber,
            &format!("+4670223450{customer}"),
        );
        app.create_profile(vec![email.clone(), phone.clone()], &[])
            .await;
        let before = web_cart(&mut web, &cookie, "configure_plan", &[("phone-x", 1)]).await;

        log_in(&app, &cookie, &email).await;
        let resumed = phone_app
            .resume_session(ResumeSessionRequest {
                customer: Some(by_identifier(phone.clone())),
                channel: Channel::MobileApp as i32,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!resumed.started, "customer {customer}: a new empty session");
        let resumed = resumed.session.unwrap();
        assert_eq!(resumed.session_id, before.session_id);
        assert_eq!(offerings(&resumed), owned(&[("phone-x", 1)]));
        // The web's etag is stale now (the app touched the session), and
        // its change without one lands on the same session.
        let stale = web
            .update_session(UpdateSessionRequest {
                customer: Some(by_identifier(cookie.clone())),
                channel: Channel::Web as i32,
                session: Some(Session {
                    current_step: "checkout".into(),
                    etag: before.etag.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&["current_step"]),
            })
            .await
            .unwrap_err();
        assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
        let changed = web
            .update_session(UpdateSessionRequest {
                customer: Some(by_identifier(cookie.clone())),
                channel: Channel::Web as i32,
                session: Some(Session {
                    current_step: "checkout".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["current_step"]),
            })
            .await
            .unwrap_or_else(|status| panic!("customer {customer}: {status:?}"))
            .into_inner()
            .session
            .unwrap();
        assert_eq!(changed.session_id, before.session_id);
        assert_eq!(offerings(&changed), owned(&[("phone-x", 1)]));
    }
    let mut replica = replica;
    replica.stop_services().await;
    app.stop().await;
}

#[tokio::test]
async fn when_both_profiles_had_a_session_a_login_combines_them_by_the_rule() {
    let app = spawn_app().await;
    let replica = journey_replica(&app).await;
    let mut web = app.journey().await;
    let mut phone_app = replica.journey().await;
    let cookie = identifier(IdentifierType::CookieId, "two-sessions-visitor");
    let email = identifier(IdentifierType::Email, "two-sessions@example.com");
    let phone = identifier(IdentifierType::PhoneNumber, "+46703234501");
    app.create_profile(vec![email.clone(), phone.clone()], &[])
        .await;
    // The app's session, changed first.
    let app_started = phone_app
        .resume_session(ResumeSessionRequest {
            customer: Some(by_identifier(phone.clone())),
            channel: Channel::MobileApp as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let app_before = phone_app
        .update_session(UpdateSessionRequest {
            customer: Some(by_identifier(phone.clone())),
            channel: Channel::MobileApp as i32,
            session: Some(Session {
                current_step: "browse".into(),
                cart: cart(&[("case", 1), ("phone-x", 1)]),
                etag: app_started.etag,
                ..Default::default()
            }),
            update_mask: mask(&["current_step", "cart"]),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The visitor's web session, changed last.
    let web_before = web_cart(
        &mut web,
        &cookie,
        "checkout",
        &[("phone-x", 2), ("plan-unlimited", 1)],
    )
    .await;

    log_in(&app, &cookie, &email).await;
    // An etag read from either session before the login is refused, on
    // either replica, by either identifier.
    for (client, who, etag) in [
        (&mut web, &cookie, &web_before.etag),
        (&mut phone_app, &phone, &app_before.etag),
    ] {
        let refused = client
            .update_session(UpdateSessionRequest {
                customer: Some(by_identifier(who.clone())),
                channel: Channel::Web as i32,
                session: Some(Session {
                    cart: Vec::new(),
                    etag: etag.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&["cart"]),
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Aborted, "{refused:?}");
    }
    let combined = web
        .get_session(GetSessionRequest {
            customer: Some(by_identifier(cookie.clone())),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(
        combined.session_id, app_before.session_id,
        "the customer's session continues"
    );
    assert_eq!(
        offerings(&combined),
        owned(&[("case", 1), ("phone-x", 2), ("plan-unlimited", 1)]),
        "cart lines united, the larger quantity kept"
    );
    assert_eq!(combined.current_step, "checkout", "the latest step");
    assert_eq!(combined.journey_id, "guided_shopping");
    assert_eq!(
        combined.channels,
        [Channel::MobileApp as i32, Channel::Web as i32]
    );
    assert_eq!(combined.last_channel, Channel::Web as i32);

    // The merge event, handled later by either replica, combines nothing more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = phone_app
        .get_session(GetSessionRequest {
            customer: Some(by_identifier(phone)),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(later.etag, combined.etag);
    assert_eq!(offerings(&later), offerings(&combined));
    let mut replica = replica;
    replica.stop_services().await;
    app.stop().await;
}

#[tokio::test]
async fn an_etag_read_from_another_session_is_aborted() {
    let app = spawn_app().await;
    let mut journey = app.journey().await;
    let first = identifier(IdentifierType::CookieId, "etag-first");
    let second = identifier(IdentifierType::CookieId, "etag-second");
    // Two sessions, both at their second revision.
    let read_from_first = web_cart(&mut journey, &first, "browse", &[("phone-x", 1)]).await;
    let second_session = web_cart(&mut journey, &second, "browse", &[("plan", 1)]).await;
    assert_ne!(read_from_first.session_id, second_session.session_id);
    let refused = journey
        .update_session(UpdateSessionRequest {
            customer: Some(by_identifier(second.clone())),
            channel: Channel::Web as i32,
            session: Some(Session {
                cart: Vec::new(),
                etag: read_from_first.etag,
                ..Default::default()
            }),
            update_mask: mask(&["cart"]),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Aborted, "{refused:?}");
    let kept = journey
        .get_session(GetSessionRequest {
            customer: Some(by_identifier(second)),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(offerings(&kept), owned(&[("plan", 1)]), "the cart is kept");
    app.stop().await;
}

#[tokio::test]
async fn two_replicas_combining_at_once_and_the_merge_event_drop_and_double_nothing() {
    let app = spawn_app().await;
    let replica = journey_replica(&app).await;
    let mut web = app.journey().await;
    let mut phone_app = replica.journey().await;
    let mut rounds = 0;
    for customer in 0..4 {
        let cookie = identifier(
            IdentifierType::CookieId,
            &format!("race-visitor-{customer}"),
        );
        let email = identifier(
            IdentifierType::Email,
            &format!("race-{customer}@example.com"),
        );
        let phone = identifier(
            IdentifierType::PhoneNumber,
            &format!("+4670423450{customer}"),
        );
        app.create_profile(vec![email.clone(), phone.clone()], &[])
            .await;
        let app_session = web_cart(
            &mut phone_app,
            &phone,
            "browse",
            &[("case", 1), ("phone-x", 1)],
        )
        .await;
        web_cart(&mut web, &cookie, "checkout", &[("phone-x", 3), ("sim", 1)]).await;
        log_in(&app, &cookie, &email).await;
        // Both replicas read at once, by either identifier, while the merge
        // event is being handled.
        let mut reads = Vec::new();
        for attempt in 0..8 {
            let (mut client, who) = if attempt % 2 == 0 {
                (web.clone(), cookie.clone())
            } else {
                (phone_app.clone(), phone.clone())
            };
            reads.push(tokio::spawn(async move {
                client
                    .get_session(GetSessionRequest {
                        customer: Some(by_identifier(who)),
                    })
                    .await
                    .map(|answer| answer.into_inner().session.unwrap_or_default())
            }));
        }
        for read in reads {
            let session = read.await.unwrap().unwrap();
            assert_eq!(session.session_id, app_session.session_id);
            assert_eq!(
                offerings(&session),
                owned(&[("case", 1), ("phone-x", 3), ("sim", 1)]),
                "customer {customer}"
            );
            rounds += 1;
        }
    }
    assert_eq!(rounds, 32);
    // Once the events are handled, the merged-away sessions are gone from
    // Redis: nothing is left to be combined twice.
    let client = redis::Client::open(cairn_tests::redis_url()).unwrap();
    let redis = client.get_multiplexed_async_connection().await.unwrap();
    let pattern = format!("{}journey:session:*", app.redis_prefix);
    eventually(Duration::from_secs(10), "one session per customer", || {
        let mut redis = redis.clone();
        let pattern = pattern.clone();
        async move {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query_async(&mut redis)
                .await
                .ok()?;
            (keys.len() == 4).then_some(())
        }
    })
    .await;
    let mut replica = replica;
    replica.stop_services().await;
    app.stop().await;
}
