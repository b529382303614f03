//! A property of the real profile service, checked over generated sequences
//! of merges and unmerges (proptest): whatever the sequence, every
//! identifier is held by exactly one live profile, resolving it finds that
//! profile, and every profile id still leads to the live profile that holds
//! its identifiers. Refusals are allowed only where the contract names them
//! (merging a profile with itself or with its own survivor, undoing a merge
//! twice or after the survivor was merged again).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cairn_contract::common::v1::{CustomerRef, IdentifierType, customer_ref};
use cairn_contract::profile::v1::{
    GetProfileRequest, MergeProfilesRequest, ResolveProfileRequest, UnmergeProfileRequest,
};
use cairn_runtime::ServiceKind;
use cairn_tests::{Options, TestApp, identifier, spawn_app_with};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tonic::Code;

/// Profiles in each generated case, and identifiers each starts with.
const PROFILES: usize = 4;

#[derive(Debug, Clone)]
enum Step {
    /// Merge profile `merged` (by its original id) into profile `survivor`.
    Merge { survivor: usize, merged: usize },
    /// Undo the `nth` merge made so far in the case (modulo their number).
    Unmerge { nth: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..PROFILES, 0..PROFILES).prop_map(|(survivor, merged)| Step::Merge { survivor, merged }),
        2 => (0..16usize).prop_map(|nth| Step::Unmerge { nth }),
    ]
}

fn by_id(profile_id: &str) -> Option<CustomerRef> {
    Some(CustomerRef {
        customer: Some(customer_ref::Customer::ProfileId(profile_id.into())),
    })
}

/// Runs `steps` on fresh profiles and checks the property after each one.
async fn check(app: &TestApp, case: usize, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut client = app.profile().await;
    let mut profiles = Vec::new();
    let mut identifiers = Vec::new();
    for n in 0..PROFILES {
        let own = vec![
            identifier(
                IdentifierType::Email,
                &format!("p{n}.case{case}@example.com"),
            ),
            identifier(IdentifierType::CookieId, &format!("case{case}-cookie-{n}")),
        ];
        identifiers.extend(own.iter().cloned());
        profiles.push(app.create_profile(own, &[]).await);
    }
    let mut merges: Vec<String> = Vec::new();
    let mut unmerged = 0;
    for step in steps {
        match step {
            Step::Merge { survivor, merged } => {
                let outcome = client
                    .merge_profiles(MergeProfilesRequest {
                        survivor_profile_id: profiles[survivor].clone(),
                        merged_profile_id: profiles[merged].clone(),
                        reason: "property test".into(),
                    })
                    .await;
                match outcome {
                    Ok(response) => merges.push(response.into_inner().merge.unwrap().merge_id),
                    Err(status) => prop_assert!(
                        matches!(
                            status.code(),
                            Code::InvalidArgument | Code::FailedPrecondition
                        ),
                        "merge {survivor} ← {merged}: {status:?}"
                    ),
                }
            }
            Step::Unmerge { nth } => {
                if merges.is_empty() {
                    continue;
                }
                let merge_id = merges[nth % merges.len()].clone();
                match client
                    .unmerge_profile(UnmergeProfileRequest { merge_id })
                    .await
                {
                    Ok(_) => unmerged += 1,
                    Err(status) => {
                        prop_assert_eq!(status.code(), Code::FailedPrecondition, "{:?}", status)
                    }
                }
            }
        }
        // Every original id leads to a live profile; together they hold
        // every identifier exactly once.
        let mut live = BTreeMap::<String, Vec<String>>::new();
        for profile_id in &profiles {
            let profile = client
                .get_profile(GetProfileRequest {
                    customer: by_id(profile_id),
                })
                .await
                .map_err(|status| TestCaseError::fail(format!("{profile_id}: {status:?}")))?
                .into_inner()
                .profile
                .unwrap();
            live.insert(
                profile.profile_id.clone(),
                profile
                    .identifiers
                    .iter()
                    .filter_map(|held| held.identifier.as_ref())
                    .map(|identifier| identifier.value.clone())
                    .collect(),
            );
        }
        for identifier in &identifiers {
            let holders: BTreeSet<&String> = live
                .iter()
                .filter(|(_, held)| held.contains(&identifier.value))
                .map(|(profile_id, _)| profile_id)
                .collect();
            prop_assert_eq!(
                holders.len(),
                1,
                "{} is held by {:?}",
                identifier.value,
                holders
            );
            let resolved = client
                .resolve_profile(ResolveProfileRequest {
                    identifier: Some(identifier.clone()),
                    create_if_missing: false,
                })
                .await
                .map_err(|status| TestCaseError::fail(format!("{status:?}")))?
                .into_inner()
                .profile
                .unwrap()
                .profile_id;
            prop_assert!(
                holders.contains(&resolved),
                "{} resolves to {} but is held by {:?}",
                identifier.value,
                resolved,
                holders
            );
        }
    }
    STEPS.fetch_add(merges.len() + unmerged, std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

/// Merges and unmerges carried out over all cases (refused ones not counted).
static STEPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[test]
fn any_sequence_of_merges_and_unmerges_keeps_every_identifier_on_one_live_profile() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(spawn_app_with(Options {
        services: vec![ServiceKind::Profile],
        ..Default::default()
    }));
    let mut runner = TestRunner::new(Config {
        cases: 24,
        max_shrink_iters: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let case = std::sync::atomic::AtomicUsize::new(0);
    let outcome = runner.run(&prop::collection::vec(step(), 1..10), |steps| {
        let number = case.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), check(&app, number, steps))
                .await
                .unwrap_or_else(|_| Err(TestCaseError::fail("a case hung")))
        })
    });
    runtime.block_on(app.stop());
    eprintln!(
        "merge properties: {} cases, {} merges and unmerges carried out, identifiers checked after each",
        case.load(std::sync::atomic::Ordering::SeqCst),
        STEPS.load(std::sync::atomic::Ordering::SeqCst)
    );
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}
