//! TLS on every listener and mutual TLS between the services: certificates
//! made here with rcgen (nothing secret is kept in the repository), the
//! suite started on them, its services calling each other over mutual TLS,
//! and callers with a wrong client certificate, none, or plain text refused.

use std::path::{Path, PathBuf};

use cairn_contract::common::v1::{Channel, IdentifierType};
use cairn_contract::journey::v1::{ListTimelineRequest, RecordTouchpointRequest, TouchpointType};
use cairn_contract::profile::v1::ListProfilesRequest;
use cairn_contract::profile::v1::profile_service_client::ProfileServiceClient;
use cairn_runtime::ServiceKind;
use cairn_runtime::config::ClientAuth;
use cairn_tests::{
    Bearer, Options, TestApp, by_identifier, identifier, spawn_app_with, touchpoint,
};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// A certificate authority made for one test.
struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn authority(name: &str) -> Authority {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    Authority {
        issuer: Issuer::new(params, key),
        pem,
    }
}

/// A certificate for 127.0.0.1 and localhost signed by `authority`: (cert, key) PEM.
fn leaf(authority: &Authority, name: &str) -> (String, String) {
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &authority.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// The files of one test, in a folder of its own, removed at the end.
struct Files(PathBuf);

impl Files {
    fn new() -> Self {
        let folder = std::env::temp_dir().join(format!("cairn-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&folder).unwrap();
        Self(folder)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn suite_on_tls(files: &Files, trusted: &Authority, client_auth: ClientAuth) -> TestApp {
    let (cert, key) = leaf(trusted, "cairn");
    let cert = files.write("cairn.pem", &cert);
    let key = files.write("cairn-key.pem", &key);
    let ca = files.write("ca.pem", &trusted.pem);
    spawn_app_with(Options {
        adjust: Box::new(move |settings| {
            settings.tls_cert_file = Some(cert);
            settings.tls_key_file = Some(key);
            settings.tls_ca_file = Some(ca);
            settings.tls_client_auth = client_auth;
        }),
        ..Default::default()
    })
    .await
}

/// A profile client to `app` over TLS trusting `ca`, presenting `identity` if any.
async fn client(
    app: &TestApp,
    ca: &str,
    identity: Option<(String, String)>,
) -> Result<ProfileServiceClient<InterceptedService<tonic::transport::Channel, Bearer>>, String> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel =
        Endpoint::from_shared(format!("https://{}", app.addresses[&ServiceKind::Profile]))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .map_err(|error| format!("{error:?}"))?;
    Ok(ProfileServiceClient::new(InterceptedService::new(
        channel,
        Bearer::token(&app.token(&["profile.read"])),
    )))
}

/// Ok when a ListProfiles call over `client` is answered.
async fn answered(
    client: Result<
        ProfileServiceClient<InterceptedService<tonic::transport::Channel, Bearer>>,
        String,
    >,
) -> Result<(), String> {
    client?
        .list_profiles(ListProfilesRequest::default())
        .await
        .map(|_| ())
        .map_err(|status| format!("{status:?}"))
}

#[tokio::test]
async fn the_services_speak_mutual_tls_and_refuse_a_wrong_client_certificate() {
    let files = Files::new();
    let trusted = authority("Cairn test CA");
    let rogue = authority("Someone else's CA");
    let app = suite_on_tls(&files, &trusted, ClientAuth::Required).await;

    // The services call each other over mutual TLS: a touchpoint by email
    // makes the journey service resolve the customer at the profile service.
    let mut journey = app.journey().await;
    journey
        .record_touchpoint(RecordTouchpointRequest {
            touchpoint: Some(touchpoint(
                "tls-1",
                identifier(IdentifierType::Email, "tls@example.com"),
                Channel::Web,
                TouchpointType::PageView,
                1,
                &[],
            )),
        })
        .await
        .expect("journey reached profile over mutual TLS");
    let timeline = journey
        .list_timeline(ListTimelineRequest {
            customer: Some(by_identifier(identifier(
                IdentifierType::Email,
                "tls@example.com",
            ))),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(timeline.touchpoints.len(), 1);

    // A client certificate of the trusted CA is answered.
    answered(client(&app, &trusted.pem, Some(leaf(&trusted, "crm"))).await)
        .await
        .expect("a certificate the CA signed is accepted");
    // One of another CA is refused, so is none, so is plain text.
    let wrong = answered(client(&app, &trusted.pem, Some(leaf(&rogue, "mallory"))).await).await;
    assert!(wrong.is_err(), "a wrong client certificate was accepted");
    let none = answered(client(&app, &trusted.pem, None).await).await;
    assert!(
        none.is_err(),
        "a caller without a client certificate was accepted"
    );
    let plain = Endpoint::from_shared(format!("http://{}", app.addresses[&ServiceKind::Profile]))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plain {
        let outcome = ProfileServiceClient::new(channel)
            .list_profiles(ListProfilesRequest::default())
            .await;
        assert!(outcome.is_err(), "plain text was answered");
    }
    // A client that trusts another CA refuses the server.
    let spoofed = answered(client(&app, &rogue.pem, Some(leaf(&trusted, "crm"))).await).await;
    assert!(
        spoofed.is_err(),
        "the server's certificate passed another CA"
    );
    app.stop().await;
}

#[tokio::test]
async fn with_optional_client_certificates_a_wrong_one_is_still_refused() {
    let files = Files::new();
    let trusted = authority("Cairn test CA");
    let rogue = authority("Someone else's CA");
    let app = suite_on_tls(&files, &trusted, ClientAuth::Optional).await;
    answered(client(&app, &trusted.pem, None).await)
        .await
        .expect("a front end without a certificate is let in");
    let wrong = answered(client(&app, &trusted.pem, Some(leaf(&rogue, "mallory"))).await).await;
    assert!(wrong.is_err(), "a wrong client certificate was accepted");
    app.stop().await;
}

#[tokio::test]
async fn unreadable_or_incomplete_tls_settings_stop_the_start() {
    let files = Files::new();
    let mut settings = cairn_runtime::Settings::defaults();
    settings.tls_cert_file = Some(files.write("cert.pem", "not a certificate"));
    settings.tls_key_file = Some(Path::new("/nonexistent/key.pem").to_path_buf());
    let error = cairn_runtime::tls::TlsMaterial::from_settings(&settings).unwrap_err();
    assert!(error.to_string().contains("CAIRN_TLS_CERT_FILE"), "{error}");
    let trusted = authority("Cairn test CA");
    let (cert, key) = leaf(&trusted, "cairn");
    settings.tls_cert_file = Some(files.write("cert.pem", &cert));
    settings.tls_key_file = Some(files.write("key.pem", &key));
    let error = cairn_runtime::tls::TlsMaterial::from_settings(&settings).unwrap_err();
    assert!(error.to_string().contains("CAIRN_TLS_CA_FILE"), "{error}");
}
