//! Rules in CEL, the Common Expression Language: dynamic segments, journey
//! stage conditions and action eligibility all use this one language, with a
//! maintained Rust implementation (the `cel` crate) instead of one of our own.
//!
//! A rule is checked once, when it is defined: it must parse (the error says
//! where it does not) and may only name the variables its use offers (a typo
//! such as `atributes` is refused then, not silently false forever).

use std::sync::Arc;

use crate::error::{Error, Result};

thread_local! {
    /// The CEL context holding the standard library, one per thread.
    static STANDARD_LIBRARY: cel::Context<'static, 'static> = cel::Context::default();
}

/// Longest rule source accepted.
pub const MAX_RULE_BYTES: usize = 4096;

/// A compiled rule.
#[derive(Clone)]
pub struct Rule {
    source: String,
    program: Arc<cel::Program>,
    variables: Vec<String>,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("source", &self.source)
            .finish()
    }
}

impl Rule {
    /// Compiles `source`, which may name only `variables`. Errors are
    /// INVALID_ARGUMENT on `field`, with the line and column of a syntax error.
    pub fn compile(field: &str, source: &str, variables: &[&str]) -> Result<Self> {
        if source.trim().is_empty() {
            return Err(Error::invalid(field, "required: a CEL expression"));
        }
        if source.len() > MAX_RULE_BYTES {
            return Err(Error::invalid(
                field,
                format!("at most {MAX_RULE_BYTES} bytes"),
            ));
        }
        let program = match std::panic::catch_unwind(|| cel::Program::compile(source)) {
            Ok(Ok(program)) => program,
            Ok(Err(errors)) => {
                let description = errors
                    .errors
                    .first()
                    .map(|error| {
                        format!(
                            "does not parse at line {}, column {}: {}",
                            error.pos.0,
                            error.pos.1 + 1,
                            error.msg
                        )
                    })
                    .unwrap_or_else(|| "does not parse".to_string());
                return Err(Error::invalid(field, description));
            }
            Err(_) => return Err(Error::invalid(field, "does not parse")),
        };
        let unknown: Vec<String> = program
            .references()
            .variables()
            .into_iter()
            .filter(|name| !variables.contains(name))
            .map(str::to_string)
            .collect();
        // Comprehension variables (`x` in `list.exists(x, x > 1)`) are
        // references too; they are bound inside the rule, so allow names the
        // source introduces as the first argument of a macro.
        let unknown: Vec<String> = unknown
            .into_iter()
            .filter(|name| !binds(source, name))
            .collect();
        if !unknown.is_empty() {
            return Err(Error::invalid(
                field,
                format!(
                    "names unknown variables {}; a rule here may use {}",
                    unknown.join(", "),
                    variables.join(", ")
                ),
            ));
        }
        let used = program
            .references()
            .variables()
            .into_iter()
            .filter(|name| variables.contains(name))
            .map(str::to_string)
            .collect();
        Ok(Self {
            source: source.to_string(),
            program: Arc::new(program),
            variables: used,
        })
    }

    /// The rule as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True when the rule reads `variable`: callers skip gathering values
    /// (a call to another service, say) that no rule needs.
    pub fn uses(&self, variable: &str) -> bool {
        self.variables.iter().any(|name| name == variable)
    }

    /// Evaluates the rule with `variables` (a JSON object of name → value).
    /// A rule that does not yield a boolean, or fails on these values (a
    /// missing key, a type mismatch), is an error naming why.
    pub fn evaluate(
        &self,
        variables: &serde_json::Map<String, serde_json::Value>,
    ) -> std::result::Result<bool, String> {
        // The standard library's declarations (hundreds of overloads) are
        // built once per thread; each evaluation adds its variables in a
        // scope of its own. Building them per evaluation was most of the
        // CPU time of ingestion (a stage condition per touchpoint).
        STANDARD_LIBRARY.with(|root| {
            let mut context = root.new_inner_scope();
            for (name, value) in variables {
                let value =
                    cel::to_value(value).map_err(|error| format!("variable {name}: {error}"))?;
                context.add_variable_from_value(name.clone(), value);
            }
            match self.program.execute(&context) {
                Ok(cel::Value::Bool(outcome)) => Ok(outcome),
                Ok(other) => Err(format!(
                    "the rule yields {:?}, not a boolean",
                    other.type_of()
                )),
                Err(error) => Err(error.to_string()),
            }
        })
    }
}

fn binds(source: &str, name: &str) -> bool {
    ["exists(", "all(", "exists_one(", "map(", "filter("]
        .iter()
        .any(|macro_call| {
            source.contains(&format!("{macro_call}{name},"))
                || source.contains(&format!("{macro_call}{name} ,"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn variables(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn a_rule_evaluates_over_its_variables() {
        let rule = Rule::compile(
            "rule",
            "attributes.plan == 'gold' && attributes.tenure_months > 12",
            &["attributes"],
        )
        .unwrap();
        assert!(
            rule.evaluate(&variables(
                json!({"attributes": {"plan": "gold", "tenure_months": 24}})
            ))
            .unwrap()
        );
        assert!(
            !rule
                .evaluate(&variables(
                    json!({"attributes": {"plan": "basic", "tenure_months": 24}})
                ))
                .unwrap()
        );
    }

    #[test]
    fn a_syntax_error_names_its_position() {
        let error = Rule::compile("rule", "attributes.plan == ", &["attributes"]).unwrap_err();
        let Error::InvalidArgument(violations) = error else {
            panic!("not invalid")
        };
        assert_eq!(violations[0].field, "rule");
        assert!(
            violations[0].description.contains("line 1, column"),
            "{}",
            violations[0].description
        );
    }

    #[test]
    fn unknown_variables_are_refused_and_bound_ones_allowed() {
        assert!(Rule::compile("rule", "atributes.plan == 'gold'", &["attributes"]).is_err());
        let rule = Rule::compile("rule", "segments.exists(s, s == 'vip')", &["segments"]).unwrap();
        assert!(
            rule.evaluate(&variables(json!({"segments": ["vip"]})))
                .unwrap()
        );
    }

    #[test]
    fn a_rule_that_is_not_boolean_fails_evaluation() {
        let rule = Rule::compile("rule", "attributes.plan", &["attributes"]).unwrap();
        assert!(
            rule.evaluate(&variables(json!({"attributes": {"plan": "x"}})))
                .is_err()
        );
    }

    /// Runs `work` on a thread with the stack of a tokio worker (2 MiB),
    /// where the services compile and evaluate rules.
    fn on_worker_stack<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(work)
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn the_standard_library_serves_every_evaluation_on_a_thread() {
        let rule = Rule::compile(
            "rule",
            "attributes.plan.startsWith('go') && size(attributes.devices) == 2 \
             && attributes.devices.exists(d, d == 'phone')",
            &["attributes"],
        )
        .unwrap();
        for (plan, expected) in [("gold", true), ("silver", false), ("gold", true)] {
            let values =
                variables(json!({"attributes": {"plan": plan, "devices": ["phone", "tablet"]}}));
            assert_eq!(rule.evaluate(&values), Ok(expected), "{plan}");
        }
        // Variables of one evaluation do not leak into the next.
        let missing = variables(json!({}));
        assert!(rule.evaluate(&missing).is_err());
    }

    #[test]
    fn deeply_nested_rules_are_refused_without_exhausting_the_stack() {
        let half = MAX_RULE_BYTES / 2 - 4;
        let hostile = [
            format!("{}true{}", "(".repeat(half), ")".repeat(half)),
            format!("{}true", "!".repeat(MAX_RULE_BYTES - 8)),
            format!("{}1 > 0", "-".repeat(MAX_RULE_BYTES - 8)),
            format!("1{} > 0", " + 1".repeat((MAX_RULE_BYTES - 8) / 4)),
            format!("{}1{} == 1", "[".repeat(half), "]".repeat(half)),
            format!("attributes{}", ".a".repeat((MAX_RULE_BYTES - 16) / 2)),
        ];
        for source in hostile {
            let outcome = on_worker_stack(move || {
                Rule::compile("rule", &source, &["attributes"]).map(|rule| {
                    rule.evaluate(&variables(json!({"attributes": {}})))
                        .map(|_| ())
                })
            });
            if let Err(Error::InvalidArgument(violations)) = &outcome {
                assert_eq!(violations[0].field, "rule");
            }
        }
    }
}
