//! A service started while its stores are down does not exit: it listens,
//! answers NOT_SERVING (and its calls UNAVAILABLE), applies its migrations
//! once the database appears, and serves once PostgreSQL and Redis answer.

use std::net::SocketAddr;
use std::time::Duration;

use cairn_contract::profile::v1::CreateProfileRequest;
use cairn_contract::profile::v1::profile_service_client::ProfileServiceClient;
use cairn_tests::process::ServiceProcess;
use cairn_tests::proxy::FaultProxy;
use cairn_tests::redis_server::PrivateRedis;
use cairn_tests::{Bearer, TEST_KEY, TestDatabase, identifier};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use secrecy::SecretString;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

async fn health(address: SocketAddr, service: &str) -> Option<i32> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .ok()?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .ok()?;
    let answer = tokio::time::timeout(
        Duration::from_secs(2),
        HealthClient::new(channel).check(HealthCheckRequest {
            service: service.into(),
        }),
    )
    .await
    .ok()?
    .ok()?;
    Some(answer.into_inner().status)
}

async fn create_profile(address: SocketAddr, crm_id: &str) -> Result<String, tonic::Status> {
    let token = cairn_runtime::auth::mint_token(
        &SecretString::from(TEST_KEY),
        "test",
        &["profile.write"],
        Duration::from_secs(600),
        None,
        None,
    )
    .unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut profiles = ProfileServiceClient::with_interceptor(channel, Bearer::token(&token));
    let mut request = tonic::Request::new(CreateProfileRequest {
        identifiers: vec![identifier(
            cairn_contract::common::v1::IdentifierType::CrmId,
            crm_id,
        )],
        ..Default::default()
    });
    request.set_timeout(Duration::from_secs(5));
    Ok(profiles
        .create_profile(request)
        .await?
        .into_inner()
        .profile
        .unwrap_or_default()
        .profile_id)
}

#[tokio::test]
async fn a_service_started_while_postgresql_and_redis_are_down_serves_once_they_answer() {
    let database = TestDatabase::create().await;
    let (postgres, through) = FaultProxy::in_front_of(&database.url).await;
    postgres.cut();
    let mut redis = PrivateRedis::not_started();
    let mut process = ServiceProcess::start_listening(
        "profile",
        &[
            ("DATABASE_URL", through),
            ("REDIS_URL", redis.url()),
            (
                "CAIRN_REDIS_PREFIX",
                format!("cairn-test:{}:", uuid::Uuid::new_v4().simple()),
            ),
            ("CAIRN_AUTH_HS256_KEY", TEST_KEY.to_string()),
            ("CAIRN_PROFILE_PORT", "0".to_string()),
            ("CAIRN_HOST", "127.0.0.1".to_string()),
        ],
    )
    .await;
    let address = process.address;

    // Both stores down: it stays up, alive but not ready, and refuses calls.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        process.is_running(),
        "the process exited while its stores were down"
    );
    assert_eq!(
        health(address, "").await,
        Some(ServingStatus::NotServing as i32)
    );
    assert_eq!(
        health(address, "cairn.profile.v1.ProfileService").await,
        Some(ServingStatus::NotServing as i32)
    );
    assert_eq!(
        health(address, "liveness").await,
        Some(ServingStatus::Serving as i32)
    );
    let refused = create_profile(address, "crm-early").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");

    // PostgreSQL appears: migrations run, but Redis is still down.
    postgres.restore().await;
    let db = database.connect().await;
    let migrated = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let tables = db
            .query_one_raw(Statement::from_string(
                DatabaseBackend::Postgres,
                "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'profile_profiles'",
            ))
            .await
            .unwrap()
            .map(|row| row.try_get::<i64>("", "n").unwrap())
            .unwrap_or(0);
        if tables == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < migrated,
            "no migration within 60 s of PostgreSQL appearing"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        health(address, "").await,
        Some(ServingStatus::NotServing as i32),
        "SERVING while Redis is down"
    );

    // Redis appears: SERVING, and a real call succeeds.
    redis.resume().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let waited = std::time::Instant::now();
    while health(address, "").await != Some(ServingStatus::Serving as i32) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not SERVING within 30 s of both stores answering"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let serving_after = waited.elapsed();
    let profile_id = create_profile(address, "crm-after").await.unwrap();
    assert!(!profile_id.is_empty());
    assert!(process.is_running());
    println!(
        "started with both stores down: stayed up NOT_SERVING; migrated once PostgreSQL appeared; \
         SERVING {serving_after:?} after Redis appeared; CreateProfile then succeeded"
    );
    process.kill().await;
    redis.stop().await;
    database.drop_database().await;
}
