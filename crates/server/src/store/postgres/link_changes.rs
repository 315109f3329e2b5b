//! The announcements of changed links on PostgreSQL (migration 0003: a trigger notifies the
//! channel `botlink_links` of every changed or deleted link), which every instance listens to
//! so that its link cache forgets a changed link at once, whichever instance changed it.
//!
//! Notifications are not kept for a listener that is not connected: when the connection is
//! lost, [`LinkChanges::next`] says so ([`LinkChange::Missed`]), and the listener must be
//! started again, after which anything cached may be out of date.

use sqlx::postgres::PgListener;

use crate::store::db::Pool;
use crate::store::{Store, StoreResult};

/// The channel the trigger notifies.
const CHANNEL: &str = "botlink_links";

/// A listening connection (see the module).
pub struct LinkChanges {
    listener: PgListener,
}

/// What [`LinkChanges::next`] heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkChange {
    /// A link changed or was deleted: its code and, when it has one, its slug.
    Changed(Vec<String>),
    /// The connection was lost: changes made since may never be announced. Listen again.
    Missed,
}

impl Store {
    /// Listens to the announcements of changed links: `None` on SQLite, where one instance
    /// makes every change itself.
    pub async fn listen_link_changes(&self) -> StoreResult<Option<LinkChanges>> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(None);
        };
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(CHANNEL).await?;
        Ok(Some(LinkChanges { listener }))
    }
}

impl LinkChanges {
    /// Waits for the next announcement. After [`LinkChange::Missed`] (or an error), start a
    /// new listener rather than call this again: its reconnection would go unnoticed.
    pub async fn next(&mut self) -> StoreResult<LinkChange> {
        Ok(match self.listener.try_recv().await? {
            Some(n) => LinkChange::Changed(n.payload().split(' ').map(str::to_owned).collect()),
            None => LinkChange::Missed,
        })
    }
}
