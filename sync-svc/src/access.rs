//! How sync-svc reads room-svc's answers: the shared client (`svc_kit::peer::room`) does the
//! calling, caching and event following; here its errors become sync-svc's.

use svc_kit::peer::room::RoomAccessError;

use crate::Error;

impl From<RoomAccessError> for Error {
    fn from(error: RoomAccessError) -> Self {
        match error {
            RoomAccessError::RoomNotFound => Self::RoomNotFound,
            RoomAccessError::Unavailable(reason) => Self::Unavailable(reason),
        }
    }
}
