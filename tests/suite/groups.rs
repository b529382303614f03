//! Households, families and companies, referrals, and a restart between writes.

use std::sync::Arc;

use cairn_contract::common::v1::{CustomerRef, IdentifierType, customer_ref};
use cairn_contract::profile::v1::{
    AddGroupMemberRequest, CreateGroupRequest, ExportPersonalDataRequest, GetProfileRequest, Group,
    GroupRole, GroupType, ListGroupsRequest, ListReferralsRequest, MergeProfilesRequest,
    RecordReferralRequest, Referral,
};
use cairn_tests::{Options, identifier, spawn_app, spawn_on};
use tonic::Code;

fn by_id(id: &str) -> Option<CustomerRef> {
    Some(CustomerRef {
        customer: Some(customer_ref::Customer::ProfileId(id.into())),
    })
}

#[tokio::test]
async fn a_family_with_roles_and_a_referral_survive_a_merge_and_show_in_the_export() {
    let app = spawn_app().await;
    let parent = app
        .create_profile(vec![identifier(IdentifierType::CrmId, "crm-parent-g")], &[])
        .await;
    let teen = app
        .create_profile(vec![identifier(IdentifierType::CrmId, "crm-teen-g")], &[])
        .await;
    let teen_app = app
        .create_profile(vec![identifier(IdentifierType::CrmId, "crm-teen-app")], &[])
        .await;
    let mut profile = app.profile().await;
    let family = profile
        .create_group(CreateGroupRequest {
            group: Some(Group {
                r#type: GroupType::Family as i32,
                display_name: "The Svenssons".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    profile
        .add_group_member(AddGroupMemberRequest {
            group_id: family.group_id.clone(),
            customer: by_id(&parent),
            role: GroupRole::Payer as i32,
        })
        .await
        .unwrap();
    let group = profile
        .add_group_member(AddGroupMemberRequest {
            group_id: family.group_id.clone(),
            customer: by_id(&teen_app),
            role: GroupRole::Member as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert_eq!(group.members.len(), 2);
    let no_role = profile
        .add_group_member(AddGroupMemberRequest {
            group_id: family.group_id.clone(),
            customer: by_id(&teen),
            role: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(no_role.code(), Code::InvalidArgument);

    profile
        .record_referral(RecordReferralRequest {
            referral: Some(Referral {
                referrer: by_id(&parent),
                referred: by_id(&teen_app),
                outcome: "joined".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();

    // The teen's app profile turns out to be the teen: the membership and the referral follow.
    profile
        .merge_profiles(MergeProfilesRequest {
            survivor_profile_id: teen.clone(),
            merged_profile_id: teen_app.clone(),
            reason: "same teen".into(),
        })
        .await
        .unwrap();
    let groups = profile
        .list_groups(ListGroupsRequest {
            customer: by_id(&teen),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .groups;
    assert_eq!(groups.len(), 1);
    assert!(groups[0].members.iter().any(|m| m.profile_id == teen));
    let referrals = profile
        .list_referrals(ListReferralsRequest {
            customer: by_id(&teen),
        })
        .await
        .unwrap()
        .into_inner()
        .referrals;
    assert_eq!(referrals.len(), 1);
    assert_eq!(referrals[0].referred_profile_id, teen);

    let export = profile
        .export_personal_data(ExportPersonalDataRequest {
            customer: by_id(&parent),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(export.groups.len(), 1);
    assert_eq!(export.referrals.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn profiles_survive_a_restart_between_writes() {
    let mut first = spawn_app().await;
    let anna = first
        .create_profile(
            vec![identifier(IdentifierType::CrmId, "crm-restart")],
            &[("plan", "gold")],
        )
        .await;
    first.stop_services().await;

    let database = Arc::clone(&first.database);
    let second = spawn_on(database, first.redis_prefix.clone(), Options::default()).await;
    let found = second
        .profile()
        .await
        .get_profile(GetProfileRequest {
            customer: by_id(&anna),
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(found.attributes.len(), 1);
    let bo = second
        .create_profile(
            vec![identifier(IdentifierType::CrmId, "crm-restart-2")],
            &[],
        )
        .await;
    assert_ne!(bo, anna);
    second.stop().await;
}
