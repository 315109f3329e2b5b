//! What only SQLite needs: the click writer (one thread beside the database that writes
//! batches of clicks), its click log, and short links read on the caller's thread.

pub(super) mod click_log;
pub(super) mod click_writer;
pub(super) mod link_reader;
