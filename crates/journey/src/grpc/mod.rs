//! The gRPC face of the journey service.

pub mod convert;

use cairn_contract::journey::v1 as pb;
use cairn_contract::journey::v1::journey_service_server::JourneyService;
use cairn_runtime::Error;
use cairn_runtime::auth::ScopeTable;
use tonic::{Request, Response, Status};

use crate::profiles::ProfileDirectory;
use crate::storage::TouchpointStore;

/// The protobuf name of the service.
pub const SERVICE_NAME: &str = "cairn.journey.v1.JourneyService";

/// The scope each method needs, as the contract documents it.
pub fn scopes() -> ScopeTable {
    ScopeTable::from_contract(SERVICE_NAME)
}

/// The gRPC handlers.
pub struct JourneyApi {
    store: TouchpointStore,
    profiles: ProfileDirectory,
}

impl JourneyApi {
    /// Handlers over `store`, resolving customers through `profiles`.
    pub fn new(store: TouchpointStore, profiles: ProfileDirectory) -> Self {
        Self { store, profiles }
    }
}

#[tonic::async_trait]
impl JourneyService for JourneyApi {
    async fn record_touchpoint(
        &self,
        request: Request<pb::RecordTouchpointRequest>,
    ) -> Result<Response<pb::RecordTouchpointResponse>, Status> {
        let wire = request
            .into_inner()
            .touchpoint
            .ok_or_else(|| Error::invalid("touchpoint", "required"))?;
        let incoming =
            convert::IncomingTouchpoint::from_proto("touchpoint", wire, chrono::Utc::now())?;
        // A retry of a stored touchpoint is answered without asking the profile service.
        if let Some(stored) = self.store.find(&incoming.id).await? {
            return Ok(Response::new(pb::RecordTouchpointResponse {
                touchpoint: Some(convert::touchpoint_to_proto(&stored)),
                duplicate: true,
                ..Default::default()
            }));
        }
        let profile_id = self
            .profiles
            .resolve("touchpoint.customer", &incoming.customer)
            .await?;
        let (stored, duplicate) = self
            .store
            .record(incoming.into_touchpoint(profile_id))
            .await?;
        Ok(Response::new(pb::RecordTouchpointResponse {
            touchpoint: Some(convert::touchpoint_to_proto(&stored)),
            duplicate,
            ..Default::default()
        }))
    }
}
