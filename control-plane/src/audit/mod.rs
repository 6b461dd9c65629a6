//! The audit log: who did what to which thing, when. Every domain records its changes
//! here ([`record_audit`], in the change's own transaction); admins and ops read the log
//! at `GET /v1/audit`. The log depends on no other domain.

pub(crate) mod api;
mod store;

pub use store::{Actor, AuditCursor, AuditEntry, AuditPage};
pub(crate) use store::{AuditRecord, record_audit};
