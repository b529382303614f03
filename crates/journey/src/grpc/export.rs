//! Everything the journey service holds on one person, for the personal
//! data export the profile service assembles.

use cairn_contract::journey::v1 as pb;
use cairn_runtime::Result;
use cairn_runtime::common::CustomerReference;

use super::JourneyApi;
use super::convert::touchpoint_to_proto;
use super::definitions::state_to_proto;
use super::sessions::session_to_proto;
use crate::storage::TimelineFilter;

/// Rows read per round.
const PAGE: u64 = 500;

impl JourneyApi {
    pub(super) async fn export_of(
        &self,
        request: pb::ExportCustomerJourneysRequest,
    ) -> Result<pb::ExportCustomerJourneysResponse> {
        let customer = CustomerReference::from_proto("customer", request.customer)?;
        let profile_id = self.profiles.find("customer", &customer).await?;
        let mut touchpoints = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = self
                .store
                .timeline(profile_id, &TimelineFilter::default(), PAGE, after)
                .await?;
            touchpoints.extend(page.iter().map(touchpoint_to_proto));
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let states = self
            .store
            .journeys()
            .states(&profile_id.to_string())
            .await?
            .iter()
            .map(state_to_proto)
            .collect();
        let mut abandonments = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .list_abandonments_of(pb::ListAbandonmentsRequest {
                    customer: Some(CustomerReference::ProfileId(profile_id).to_proto()),
                    page_size: PAGE as i32,
                    page_token,
                    ..Default::default()
                })
                .await?;
            abandonments.extend(page.abandonments);
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        let merged = self.profiles.merged_into(profile_id).await?;
        let session = self
            .sessions
            .get(&profile_id.to_string(), &merged)
            .await?
            .map(|session| session_to_proto(&session, self.sessions.idle()));
        Ok(pb::ExportCustomerJourneysResponse {
            touchpoints,
            states,
            abandonments,
            session,
        })
    }
}
