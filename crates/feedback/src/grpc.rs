//! The gRPC face of the feedback service.

use cairn_contract::feedback::v1::feedback_service_server::FeedbackService;
use cairn_runtime::auth::ScopeTable;

/// The protobuf name of the service.
pub const SERVICE_NAME: &str = "cairn.feedback.v1.FeedbackService";

/// The scope each method needs, as the contract documents it.
pub fn scopes() -> ScopeTable {
    ScopeTable::from_contract(SERVICE_NAME)
}

/// The gRPC handlers; every method answers UNIMPLEMENTED until the
/// feedback issue builds it.
pub struct FeedbackApi;

#[tonic::async_trait]
impl FeedbackService for FeedbackApi {}
