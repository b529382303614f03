//! What the scorer sees of a customer and a moment: named features derived
//! from profile attributes, segments, groups, journey stage, channel and
//! context.
//!
//! Every feature is a name with a number; categorical facts are one-hot
//! ("segment:high_value" = 1) and numeric attributes are bucketed on a
//! doubling scale ("tenure_months:16-31" = 1), so that a linear model can
//! learn effects that are not straight lines (a contract's last months, a
//! device that is old enough to replace). Names never carry identifiers or
//! free text: string attributes become features only when the operator
//! lists them as categorical (`CAIRN_RECOMMENDATION_CATEGORICAL_ATTRIBUTES`),
//! which keeps the learned model free of personal data.

use std::collections::BTreeMap;

use cairn_runtime::common::TypedValue;
use serde::{Deserialize, Serialize};

/// Longest categorical value that becomes a feature.
const MAX_CATEGORY_BYTES: usize = 64;

/// The feature every decision has: the model's intercept.
pub const BIAS: &str = "bias";

/// What is known of the customer when a decision is made.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CustomerView {
    /// Profile attributes by name.
    pub attributes: BTreeMap<String, TypedValue>,
    /// Segment ids.
    pub segments: Vec<String>,
    /// Groups as (id, type).
    pub groups: Vec<(String, String)>,
    /// Current stage in each journey, from journey events.
    pub stages: BTreeMap<String, String>,
}

/// Where the customer is, as the caller tells it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DecisionContext {
    /// The journey of the interaction.
    pub journey_id: String,
    /// The stage in it.
    pub stage: String,
    /// The page or screen.
    pub page: String,
    /// The device.
    pub device: String,
    /// Anything else.
    pub properties: BTreeMap<String, TypedValue>,
}

/// A customer's features: name → value.
pub type Features = BTreeMap<String, f64>;

/// The bucket of a number on a doubling scale: "0", "1", "2-3", "4-7", …,
/// "256+", or "<0".
pub fn bucket(number: f64) -> String {
    if number < 0.0 {
        return "<0".into();
    }
    let whole = number.floor() as u64;
    match whole {
        0 => "0".into(),
        1 => "1".into(),
        256.. => "256+".into(),
        _ => {
            let low = 1u64 << (63 - whole.leading_zeros());
            format!("{low}-{}", low * 2 - 1)
        }
    }
}

/// The features of `customer` on `channel` (its lower-case name) in `context`.
pub fn extract(
    customer: &CustomerView,
    context: &DecisionContext,
    channel: &str,
    categorical: &[String],
) -> Features {
    let mut features = Features::new();
    features.insert(BIAS.into(), 1.0);
    features.insert(format!("channel:{channel}"), 1.0);
    for segment in &customer.segments {
        features.insert(format!("segment:{segment}"), 1.0);
    }
    for (_, kind) in &customer.groups {
        features.insert(format!("group:{kind}"), 1.0);
    }
    if !context.journey_id.is_empty() && !context.stage.is_empty() {
        features.insert(
            format!("stage:{}/{}", context.journey_id, context.stage),
            1.0,
        );
    }
    if !context.device.is_empty() && context.device.len() <= MAX_CATEGORY_BYTES {
        features.insert(format!("device:{}", context.device.to_lowercase()), 1.0);
    }
    for (name, value) in &customer.attributes {
        match value {
            TypedValue::Number(number) => {
                features.insert(format!("{name}:{}", bucket(*number)), 1.0);
            }
            TypedValue::Bool(true) => {
                features.insert(name.clone(), 1.0);
            }
            TypedValue::String(text)
                if categorical.contains(name)
                    && !text.is_empty()
                    && text.len() <= MAX_CATEGORY_BYTES =>
            {
                features.insert(format!("{name}={}", text.to_lowercase()), 1.0);
            }
            _ => {}
        }
    }
    features
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_double() {
        assert_eq!(bucket(0.0), "0");
        assert_eq!(bucket(1.5), "1");
        assert_eq!(bucket(3.0), "2-3");
        assert_eq!(bucket(26.0), "16-31");
        assert_eq!(bucket(1000.0), "256+");
        assert_eq!(bucket(-2.0), "<0");
    }

    #[test]
    fn features_are_one_hot_and_free_of_free_text() {
        let customer = CustomerView {
            attributes: BTreeMap::from([
                ("tenure_months".into(), TypedValue::Number(26.0)),
                ("plan".into(), TypedValue::String("Gold".into())),
                ("name".into(), TypedValue::String("Anna Svensson".into())),
                ("student".into(), TypedValue::Bool(true)),
            ]),
            segments: vec!["high_value".into()],
            groups: vec![("g1".into(), "family".into())],
            stages: BTreeMap::new(),
        };
        let context = DecisionContext {
            journey_id: "guided_shopping".into(),
            stage: "checkout".into(),
            device: "iOS".into(),
            ..Default::default()
        };
        let features = extract(&customer, &context, "web", &["plan".to_string()]);
        let names: Vec<&str> = features.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "bias",
                "channel:web",
                "device:ios",
                "group:family",
                "plan=gold",
                "segment:high_value",
                "stage:guided_shopping/checkout",
                "student",
                "tenure_months:16-31",
            ]
        );
    }
}
