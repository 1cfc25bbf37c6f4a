//! The `xiaowo` binary as a library: the command line, and [`node`], which starts any set of
//! services in one process on one port (`xiaowo up`) or each on its own port (`xiaowo serve`)
//! through the same code path that the tests use ([`testing`], with the `testing` feature).

pub mod backup;
pub mod cli;
pub mod logs;
pub mod node;
#[cfg(feature = "testing")]
pub mod testing;
