//! The ids every service passes around, as types: a [`RoomId`] cannot be handed where a
//! [`UserId`] is expected, and a value of either has been checked once, where it came in — at
//! a service's gRPC edge for what callers send, or from this install's own records.
//!
//! Both are UUIDs in their canonical form (lower-case, hyphenated), as room-svc and
//! session-svc issue them.

use std::fmt;

use crate::status::Violation;

/// The id of a room.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(String);

/// The public id of a user (a session's `user_id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

/// `value` as a UUID in canonical form, or the violation of `field`.
fn uuid(field: &str, value: &str, what: &str) -> Result<String, Violation> {
    uuid::Uuid::parse_str(value.trim()).map(|id| id.to_string()).map_err(|_| {
        let description =
            if value.trim().is_empty() { "required".to_owned() } else { format!("must be {what} (a UUID)") };
        Violation::new(field, description)
    })
}

macro_rules! id_type {
    ($type:ident, $what:literal) => {
        impl $type {
            /// The id a caller sent in request field `field`, checked and normalised.
            ///
            /// # Errors
            /// A violation of `field` when it is empty or not a UUID.
            pub fn parse(field: &str, value: &str) -> Result<Self, Violation> {
                uuid(field, value, $what).map(Self)
            }

            /// An id this install issued, read back from its own records or a peer's answer;
            /// not checked again.
            #[must_use]
            pub fn issued(value: String) -> Self {
                Self(value)
            }

            /// A fresh random id.
            #[must_use]
            pub fn generate() -> Self {
                Self(uuid::Uuid::new_v4().to_string())
            }

            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }

            #[must_use]
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $type {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$type> for String {
            fn from(id: $type) -> Self {
                id.0
            }
        }

        // Ids go into queries as the text they are.
        impl From<&$type> for sea_orm::Value {
            fn from(id: &$type) -> Self {
                Self::from(id.0.clone())
            }
        }

        impl From<$type> for sea_orm::Value {
            fn from(id: $type) -> Self {
                Self::from(id.0)
            }
        }
    };
}

id_type!(RoomId, "a room id");
id_type!(UserId, "a user id");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_and_normalised_once() {
        let upper = "0B9F2C1E-6F1D-4C3A-9A53-2F0C8D1E7B4A";
        let room = RoomId::parse("room_id", &format!(" {upper} ")).unwrap();
        assert_eq!(room.as_str(), "0b9f2c1e-6f1d-4c3a-9a53-2f0c8d1e7b4a");
        assert_eq!(RoomId::parse("room_id", "").unwrap_err().description, "required");
        assert_eq!(UserId::parse("user_id", "' OR 1=1 --").unwrap_err().field, "user_id");
        assert_ne!(UserId::generate(), UserId::generate());
    }
}
