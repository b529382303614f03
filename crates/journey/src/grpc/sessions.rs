//! Cross-channel sessions over gRPC: the wire forms and the handlers' bodies.

use std::collections::BTreeMap;

use cairn_contract::common::v1::Money;
use cairn_contract::journey::v1 as pb;
use cairn_runtime::common::{
    CustomerReference, TypedValue, channel, check_name, timestamp_to_proto,
};
use cairn_runtime::{Error, Result, Violations};

use super::JourneyApi;
use crate::domain::session::{
    CartItem, MAX_CART_ITEMS, MAX_CONTEXT_ENTRIES, MAX_TEXT_BYTES, Session, SessionChange,
};
use crate::domain::touchpoint::MAX_PROPERTY_VALUE_BYTES;
use cairn_runtime::auth::Principal;

/// The wire form of a session that expires `idle` after its last change.
pub fn session_to_proto(session: &Session, idle: std::time::Duration) -> pb::Session {
    let expires = session.updated_at
        + chrono::Duration::from_std(idle).unwrap_or_else(|_| chrono::Duration::days(1));
    pb::Session {
        session_id: session.id.clone(),
        profile_id: session.profile_id.clone(),
        journey_id: session.journey_id.clone(),
        current_step: session.current_step.clone(),
        cart: session
            .cart
            .iter()
            .map(|item| pb::CartItem {
                product_offering_id: item.product_offering_id.clone(),
                quantity: item.quantity,
                unit_price: item
                    .unit_price
                    .as_ref()
                    .map(|(currency_code, units, nanos)| Money {
                        currency_code: currency_code.clone(),
                        units: *units,
                        nanos: *nanos,
                    }),
            })
            .collect(),
        context: session
            .context
            .iter()
            .map(|(name, value)| (name.clone(), value.to_proto()))
            .collect(),
        channels: session.channels.clone(),
        last_channel: session.last_channel,
        start_time: Some(timestamp_to_proto(session.started_at)),
        update_time: Some(timestamp_to_proto(session.updated_at)),
        expire_time: Some(timestamp_to_proto(expires)),
        etag: session.etag(),
    }
}

fn text(violations: &mut Violations, field: &str, value: String) -> String {
    if value.len() > MAX_TEXT_BYTES {
        violations.add(field, format!("at most {MAX_TEXT_BYTES} bytes"));
    }
    value
}

/// The change an UpdateSession request asks for, every field checked.
fn change_from_proto(wire: pb::Session, mask: &[String]) -> Result<SessionChange> {
    const PATHS: &[&str] = &["journey_id", "current_step", "cart", "context"];
    let mut violations = Violations::new();
    let wanted = |path: &str| mask.is_empty() || mask.iter().any(|named| named == path);
    for (index, path) in mask.iter().enumerate() {
        if !PATHS.contains(&path.as_str()) {
            violations.add(
                format!("update_mask.paths[{index}]"),
                format!(
                    "\"{path}\" cannot be changed; use one of {}",
                    PATHS.join(", ")
                ),
            );
        }
    }
    let mut change = SessionChange::default();
    if wanted("journey_id") {
        change.journey_id = Some(text(&mut violations, "session.journey_id", wire.journey_id));
    }
    if wanted("current_step") {
        change.current_step = Some(text(
            &mut violations,
            "session.current_step",
            wire.current_step,
        ));
    }
    if wanted("cart") {
        if wire.cart.len() > MAX_CART_ITEMS {
            violations.add("session.cart", format!("at most {MAX_CART_ITEMS} items"));
        }
        let mut cart = Vec::with_capacity(wire.cart.len());
        for (index, item) in wire.cart.into_iter().enumerate() {
            let field = format!("session.cart[{index}]");
            if item.product_offering_id.is_empty() {
                violations.add(format!("{field}.product_offering_id"), "required");
            }
            if item.quantity < 1 {
                violations.add(format!("{field}.quantity"), "at least 1");
            }
            cart.push(CartItem {
                product_offering_id: text(
                    &mut violations,
                    &format!("{field}.product_offering_id"),
                    item.product_offering_id,
                ),
                quantity: item.quantity,
                unit_price: item
                    .unit_price
                    .map(|money| (money.currency_code, money.units, money.nanos)),
            });
        }
        change.cart = Some(cart);
    }
    if wanted("context") {
        if wire.context.len() > MAX_CONTEXT_ENTRIES {
            violations.add(
                "session.context",
                format!("at most {MAX_CONTEXT_ENTRIES} entries"),
            );
        }
        let mut context = BTreeMap::new();
        for (name, value) in wire.context {
            let field = format!("session.context[{name}]");
            if violations.check(check_name(&field, &name)).is_none() {
                continue;
            }
            match TypedValue::from_proto(&field, value) {
                Ok(value) if value.size() > MAX_PROPERTY_VALUE_BYTES => {
                    violations.add(field, format!("at most {MAX_PROPERTY_VALUE_BYTES} bytes"));
                }
                outcome => {
                    if let Some(value) = violations.check(outcome) {
                        context.insert(name, value);
                    }
                }
            }
        }
        change.context = Some(context);
    }
    violations.finish()?;
    Ok(change)
}

fn session_not_found() -> Error {
    Error::not_found(
        "session",
        "the customer has no active session (it ended or expired); start one with ResumeSession",
    )
}

impl JourneyApi {
    /// The profile id of the customer a session call concerns, and the
    /// profiles merged into it whose sessions are combined into theirs on
    /// the spot (the merge event may not have been handled yet).
    async fn session_owner(
        &self,
        caller: &Principal,
        customer: &CustomerReference,
        create: bool,
    ) -> Result<(String, Vec<String>)> {
        let profile_id = self
            .customer_of(caller, "customer", customer, create)
            .await?;
        let merged = self.profiles.merged_into(profile_id).await?;
        Ok((profile_id.to_string(), merged))
    }

    pub(super) async fn get_session_of(
        &self,
        caller: &Principal,
        request: pb::GetSessionRequest,
    ) -> Result<pb::GetSessionResponse> {
        let customer = CustomerReference::from_proto("customer", request.customer)?;
        let (profile_id, merged) = self.session_owner(caller, &customer, false).await?;
        let session = self
            .sessions
            .get(&profile_id, &merged)
            .await?
            .ok_or_else(session_not_found)?;
        Ok(pb::GetSessionResponse {
            session: Some(session_to_proto(&session, self.sessions.idle())),
        })
    }

    pub(super) async fn resume_session_of(
        &self,
        caller: &Principal,
        request: pb::ResumeSessionRequest,
    ) -> Result<pb::ResumeSessionResponse> {
        let mut violations = Violations::new();
        let customer =
            violations.check(CustomerReference::from_proto("customer", request.customer));
        let channel = violations.check(channel("channel", request.channel));
        violations.finish()?;
        let (Some(customer), Some(channel)) = (customer, channel) else {
            return Err(Error::internal("checked fields missing"));
        };
        let (profile_id, merged) = self.session_owner(caller, &customer, true).await?;
        let (session, started) = self
            .sessions
            .resume(&profile_id, &merged, channel as i32)
            .await?;
        Ok(pb::ResumeSessionResponse {
            session: Some(session_to_proto(&session, self.sessions.idle())),
            started,
        })
    }

    pub(super) async fn update_session_of(
        &self,
        caller: &Principal,
        request: pb::UpdateSessionRequest,
    ) -> Result<pb::UpdateSessionResponse> {
        let mut violations = Violations::new();
        let customer =
            violations.check(CustomerReference::from_proto("customer", request.customer));
        let channel = violations.check(channel("channel", request.channel));
        let mask = request
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        let wire = request.session.unwrap_or_default();
        let etag = (!wire.etag.is_empty()).then(|| wire.etag.clone());
        let change = violations.check(change_from_proto(wire, &mask));
        violations.finish()?;
        let (Some(customer), Some(channel), Some(change)) = (customer, channel, change) else {
            return Err(Error::internal("checked fields missing"));
        };
        let (profile_id, merged) = self.session_owner(caller, &customer, false).await?;
        let session = self
            .sessions
            .update(
                &profile_id,
                &merged,
                channel as i32,
                change,
                etag.as_deref(),
            )
            .await?;
        Ok(pb::UpdateSessionResponse {
            session: Some(session_to_proto(&session, self.sessions.idle())),
        })
    }

    pub(super) async fn end_session_of(
        &self,
        caller: &Principal,
        request: pb::EndSessionRequest,
    ) -> Result<pb::EndSessionResponse> {
        let customer = CustomerReference::from_proto("customer", request.customer)?;
        let (profile_id, merged) = self.session_owner(caller, &customer, false).await?;
        if !self.sessions.end(&profile_id, &merged).await? {
            return Err(session_not_found());
        }
        Ok(pb::EndSessionResponse {})
    }
}
