//! Helpers for the clap-derived configuration structs that each crate owns.

use clap::{Args, FromArgMatches};

/// A crate's configuration from its defaults and `XIAOWO_*` environment variables alone, the
/// way the binary would build it with no flags. Tests start from this and change fields.
///
/// # Panics
/// Only if a default or an environment variable does not parse, which is a programming or
/// deployment error that must stop start-up.
#[must_use]
pub fn from_env<T: Args + FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("xiaowo"));
    let matches = command.get_matches_from(["xiaowo"]);
    #[allow(clippy::expect_used)]
    T::from_arg_matches(&matches).expect("configuration defaults parse")
}
