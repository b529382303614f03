//! Touchpoint ids sent with a customer's own token are that customer's
//! namespace: a front end can neither squat an id another system will send
//! for someone else (the later touchpoint would be taken for a retry and
//! dropped) nor learn from the answer that another customer's touchpoint
//! holds an id.

use cairn_contract::common::v1::{Channel, CustomerRef, IdentifierType, customer_ref};
use cairn_contract::journey::v1::journey_service_client::JourneyServiceClient;
use cairn_contract::journey::v1::{
    ListTimelineRequest, RecordTouchpointRequest, RecordTouchpointsRequest, TouchpointOutcome,
    TouchpointType,
};
use cairn_runtime::ServiceKind;
use cairn_tests::{identifier, spawn_app, touchpoint};

fn by_id(profile_id: &str) -> Option<CustomerRef> {
    Some(CustomerRef {
        customer: Some(customer_ref::Customer::ProfileId(profile_id.into())),
    })
}

#[tokio::test]
async fn a_customer_token_can_neither_squat_nor_probe_another_customers_touchpoint_ids() {
    let app = spawn_app().await;
    let alice = app
        .create_profile(vec![identifier(IdentifierType::CrmId, "crm-alice")], &[])
        .await;
    let bob = app
        .create_profile(vec![identifier(IdentifierType::CrmId, "crm-bob")], &[])
        .await;
    let mut operator = app.journey().await;
    let purchase = |id: &str, crm: &str| {
        touchpoint(
            id,
            identifier(IdentifierType::CrmId, crm),
            Channel::Store,
            TouchpointType::Purchase,
            1,
            &[("order_id", "order-1")],
        )
    };
    // Bob's touchpoint from the operator's store system, before the attack.
    operator
        .record_touchpoint(RecordTouchpointRequest {
            touchpoint: Some(purchase("store-0001", "crm-bob")),
        })
        .await
        .unwrap();

    let token = app.customer_token(&alice, &["journey.ingest", "journey.read"]);
    let mut front_end =
        JourneyServiceClient::new(app.with_token(ServiceKind::Journey, &token).await);

    // Probing: Bob's id and a never-used id get the same answer.
    let bobs = front_end
        .record_touchpoint(RecordTouchpointRequest {
            touchpoint: Some(purchase("store-0001", "crm-alice")),
        })
        .await
        .map(|response| response.into_inner().duplicate);
    let unused = front_end
        .record_touchpoint(RecordTouchpointRequest {
            touchpoint: Some(purchase("store-9999", "crm-alice")),
        })
        .await
        .map(|response| response.into_inner().duplicate);
    assert_eq!(
        bobs.as_ref().map_err(|status| status.code()),
        Ok(&false),
        "Bob's id must be answered as a new one: {bobs:?}"
    );
    assert_eq!(unused.map_err(|status| status.code()), Ok(false));

    // Squatting: Alice claims an id first, in a batch, then the store system
    // sends it for Bob; his purchase must be stored, not taken for a retry.
    let claimed = front_end
        .record_touchpoints(RecordTouchpointsRequest {
            touchpoints: vec![purchase("store-0002", "crm-alice")],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        claimed.results[0].outcome,
        TouchpointOutcome::Stored as i32,
        "{claimed:?}"
    );
    let bobs_purchase = operator
        .record_touchpoint(RecordTouchpointRequest {
            touchpoint: Some(purchase("store-0002", "crm-bob")),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        !bobs_purchase.duplicate,
        "Bob's purchase was taken for a retry of Alice's: {bobs_purchase:?}"
    );
    assert_eq!(bobs_purchase.touchpoint.unwrap().profile_id, bob);

    // Alice's own retry still counts once.
    let retry = front_end
        .record_touchpoint(RecordTouchpointRequest {
            touchpoint: Some(purchase("store-0002", "crm-alice")),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(retry.duplicate, "a retry of her own touchpoint counts once");

    let timeline = |profile_id: String| {
        let mut operator = operator.clone();
        async move {
            operator
                .list_timeline(ListTimelineRequest {
                    customer: by_id(&profile_id),
                    page_size: 50,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .touchpoints
        }
    };
    let bobs_timeline = timeline(bob.clone()).await;
    assert_eq!(
        bobs_timeline.len(),
        2,
        "Bob keeps both his purchases: {bobs_timeline:?}"
    );
    assert!(bobs_timeline.iter().all(|tp| tp.profile_id == bob));
    let alices_timeline = timeline(alice.clone()).await;
    assert_eq!(alices_timeline.len(), 3, "{alices_timeline:?}");
    assert!(
        alices_timeline
            .iter()
            .all(|tp| tp.touchpoint_id.starts_with(&format!("{alice}/"))),
        "her ids are kept under her profile id: {alices_timeline:?}"
    );
    println!(
        "Bob's id and an unused one answered alike; squatted ids: 0 of 1; Bob's touchpoints kept: {}",
        bobs_timeline.len()
    );
}
