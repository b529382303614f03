//! Calls to any method by its path, with the request as raw protobuf bytes:
//! what a table-driven test over the whole contract needs, since it cannot
//! name each generated client.

use bytes::{Buf, BufMut};
use cairn_runtime::ServiceKind;
use cairn_tests::TestApp;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

/// A codec that passes message bytes through untouched.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

/// Encodes bytes as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawEncoder;

/// Decodes bytes as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, buffer: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buffer.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, buffer: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut bytes = vec![0; buffer.remaining()];
        buffer.copy_to_slice(&mut bytes);
        Ok(Some(bytes))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// One method of the contract.
#[derive(Debug, Clone)]
pub struct Method {
    /// `/cairn.profile.v1.ProfileService/GetProfile`.
    pub path: String,
    /// The service that serves it (the event hub is served by all; this is one).
    pub served_by: Vec<ServiceKind>,
}

/// Every method of every Cairn service in the contract's descriptor set.
pub fn every_method() -> Vec<Method> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(cairn_contract::FILE_DESCRIPTOR_SET).unwrap();
    let mut methods = Vec::new();
    for file in set
        .file
        .iter()
        .filter(|f| f.package().starts_with("cairn."))
    {
        for service in &file.service {
            let served_by = match file.package() {
                "cairn.profile.v1" => vec![ServiceKind::Profile],
                "cairn.journey.v1" => vec![ServiceKind::Journey],
                "cairn.recommendation.v1" => vec![ServiceKind::Recommendation],
                "cairn.feedback.v1" => vec![ServiceKind::Feedback],
                "cairn.events.v1" => ServiceKind::ALL.to_vec(),
                other => panic!("package {other} is served by no known service: add it here"),
            };
            for method in &service.method {
                methods.push(Method {
                    path: format!("/{}.{}/{}", file.package(), service.name(), method.name()),
                    served_by: served_by.clone(),
                });
            }
        }
    }
    methods
}

/// Calls the method at `path` on `service` with `request` (protobuf bytes)
/// and a bearer `token`; Ok when the server accepted the call (its answer
/// started), else the status it refused with. Streams are dropped at once.
pub async fn call(
    app: &TestApp,
    service: ServiceKind,
    path: &str,
    token: Option<&str>,
    request: Vec<u8>,
) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(app.channel(service).await);
    grpc.ready()
        .await
        .map_err(|error| Status::unavailable(error.to_string()))?;
    let mut call = tonic::Request::new(tokio_stream::once(request));
    call.set_timeout(std::time::Duration::from_secs(5));
    if let Some(token) = token {
        call.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let path = http::uri::PathAndQuery::try_from(path.to_string()).unwrap();
    let response = grpc.streaming(call, path, RawCodec).await?;
    let mut stream = response.into_inner();
    // The first message when one comes quickly; a stream that stays open
    // (a watch) has been accepted all the same.
    match tokio::time::timeout(std::time::Duration::from_millis(300), stream.message()).await {
        Ok(Ok(Some(message))) => Ok(message),
        Ok(Ok(None)) | Err(_) => Ok(Vec::new()),
        Ok(Err(status)) => Err(status),
    }
}

/// True when `status` is the authentication layer's refusal, not a handler's answer.
pub fn is_refusal(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::PermissionDenied | Code::Unauthenticated
    )
}
