//! The gRPC face of the recommendation service.

use cairn_contract::recommendation::v1::recommendation_service_server::RecommendationService;
use cairn_runtime::auth::ScopeTable;

/// The protobuf name of the service.
pub const SERVICE_NAME: &str = "cairn.recommendation.v1.RecommendationService";

/// The scope each method needs, as the contract documents it.
pub fn scopes() -> ScopeTable {
    ScopeTable::from_contract(SERVICE_NAME)
}

/// The gRPC handlers; every method answers UNIMPLEMENTED until the
/// recommendation issue builds it.
pub struct RecommendationApi;

#[tonic::async_trait]
impl RecommendationService for RecommendationApi {}
