//! A ticket's lifecycle with TMF621's statuses, and first-contact resolution.

use cairn_runtime::{Error, Result};

/// TMF621 statuses, with the contract's enum numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TicketStatus {
    /// Received, waiting in the queue.
    Acknowledged = 1,
    /// An agent works on it.
    InProgress = 2,
    /// Waiting for the customer or a third party.
    Pending = 3,
    /// Put on hold.
    Held = 4,
    /// Solved; may be reopened.
    Resolved = 5,
    /// Final.
    Closed = 6,
    /// Not a valid ticket.
    Rejected = 7,
    /// Withdrawn.
    Cancelled = 8,
}

impl TicketStatus {
    /// The status with enum number `raw`.
    pub fn from_number(raw: i32) -> Option<Self> {
        Some(match raw {
            1 => Self::Acknowledged,
            2 => Self::InProgress,
            3 => Self::Pending,
            4 => Self::Held,
            5 => Self::Resolved,
            6 => Self::Closed,
            7 => Self::Rejected,
            8 => Self::Cancelled,
            _ => return None,
        })
    }

    /// TMF621's name, as events carry it.
    pub fn tmf_name(self) -> &'static str {
        match self {
            Self::Acknowledged => "acknowledged",
            Self::InProgress => "inProgress",
            Self::Pending => "pending",
            Self::Held => "held",
            Self::Resolved => "resolved",
            Self::Closed => "closed",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
        }
    }

    /// True while the case needs work (a complaint in it suppresses offers).
    pub fn is_open(self) -> bool {
        !matches!(
            self,
            Self::Resolved | Self::Closed | Self::Rejected | Self::Cancelled
        )
    }

    /// True for the statuses nothing follows.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Closed | Self::Rejected | Self::Cancelled)
    }

    /// Checks the move to `next`: a final status is never left, a resolved
    /// ticket may be closed or reopened (back to in progress or the queue),
    /// and an open one may go anywhere but back from the queue's point of view.
    pub fn check_transition(self, next: Self) -> Result<()> {
        if self == next {
            return Ok(());
        }
        let allowed = match self {
            Self::Closed | Self::Rejected | Self::Cancelled => false,
            Self::Resolved => matches!(next, Self::Closed | Self::InProgress | Self::Acknowledged),
            Self::Acknowledged => true,
            Self::InProgress | Self::Pending | Self::Held => next != Self::Rejected,
        };
        if allowed {
            Ok(())
        } else {
            Err(Error::FailedPrecondition(format!(
                "ticket.status: a {} ticket cannot become {} (TMF621)",
                self.tmf_name(),
                next.tmf_name()
            )))
        }
    }
}

/// First-contact resolution: the case was resolved, never reopened, and the
/// customer contacted the operator once, on whatever channel (the opening
/// contact). A chat followed by a call about the same case is two inbound
/// contacts, so not resolved on the first. Outbound contacts (the
/// operator's answers) do not count against it.
pub fn first_contact_resolution(resolved: bool, reopened: bool, inbound_contacts: i32) -> bool {
    resolved && !reopened && inbound_contacts <= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        use TicketStatus::*;
        assert!(Acknowledged.check_transition(InProgress).is_ok());
        assert!(Resolved.check_transition(InProgress).is_ok());
        assert!(Resolved.check_transition(Closed).is_ok());
        assert!(Closed.check_transition(InProgress).is_err());
        assert!(Cancelled.check_transition(Acknowledged).is_err());
        assert!(InProgress.check_transition(Rejected).is_err());
    }

    #[test]
    fn fcr() {
        assert!(first_contact_resolution(true, false, 1));
        assert!(!first_contact_resolution(true, false, 2));
        assert!(!first_contact_resolution(true, true, 1));
        assert!(!first_contact_resolution(false, false, 1));
    }
}
