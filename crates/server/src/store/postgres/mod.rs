//! What only PostgreSQL needs: hearing of the links that other instances change
//! (`LISTEN botlink_links`).

pub mod link_changes;
