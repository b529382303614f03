//! Every RPC of every service, from the contract's descriptor set, refuses
//! a token that holds every scope but its own, and lets a token with its
//! scope past authentication: a new RPC without a scope fails here.

use std::collections::BTreeSet;

use cairn_runtime::auth::documented_scopes;
use cairn_tests::spawn_app;
use tonic::Code;

use super::raw::{call, every_method, is_refusal};

#[tokio::test]
async fn every_rpc_of_every_service_refuses_a_token_without_its_scope() {
    let methods = every_method();
    let mut scope_of = std::collections::BTreeMap::new();
    for method in &methods {
        let (service, name) = method.path[1..].split_once('/').unwrap();
        let scope = documented_scopes(service)
            .into_iter()
            .find(|(documented, _)| documented == name)
            .map(|(_, scope)| scope)
            .unwrap_or_else(|| {
                panic!(
                    "{} names no scope: its proto comment must say \"Requires the scope \\\"x\\\"\"",
                    method.path
                )
            });
        scope_of.insert(method.path.clone(), scope);
    }
    let every_scope: BTreeSet<&str> = scope_of.values().copied().collect();

    let app = spawn_app().await;
    let mut refused = 0;
    for method in &methods {
        let scope = scope_of[&method.path];
        let others: Vec<&str> = every_scope
            .iter()
            .copied()
            .filter(|s| *s != scope)
            .collect();
        let without = app.token(&others);
        let with = app.token(&[scope]);
        for &service in &method.served_by {
            let status = call(&app, service, &method.path, Some(&without), Vec::new())
                .await
                .expect_err(&format!(
                    "{} on {service} answered without its scope",
                    method.path
                ));
            assert_eq!(
                status.code(),
                Code::PermissionDenied,
                "{} on {service}: {status:?}",
                method.path
            );
            assert!(
                status.message().contains(&format!("\"{scope}\"")),
                "{} on {service} refused for another reason: {}",
                method.path,
                status.message()
            );
            refused += 1;

            let status = call(&app, service, &method.path, None, Vec::new())
                .await
                .expect_err(&format!(
                    "{} on {service} answered without a token",
                    method.path
                ));
            assert_eq!(status.code(), Code::Unauthenticated, "{}", method.path);

            // With its scope the call gets past authentication: whatever the
            // handler says of an empty request, it is not a refusal.
            if let Err(status) = call(&app, service, &method.path, Some(&with), Vec::new()).await {
                assert!(
                    !is_refusal(&status),
                    "{} on {service} refused a token with its scope \"{scope}\": {status:?}",
                    method.path
                );
            }
        }
    }
    assert!(refused >= 100, "every method was tried ({refused} calls)");
    println!(
        "methods: {}, calls refused without their scope: {refused}, answered: 0",
        methods.len()
    );
    app.stop().await;
}
