//! The internal APIs (session-svc's `SessionInternalService`, room-svc's `RoomInternalService`)
//! answer only callers presenting the install's internal token, and room-svc presents it to
//! session-svc. session-svc and room-svc run on separate servers here, each given its token
//! through its configuration, as `xiaowo serve` does.

use std::time::Duration;

use proto::room::v1 as pb;
use proto::room::v1::room_internal_service_client::RoomInternalServiceClient;
use proto::room::v1::room_service_client::RoomServiceClient;
use proto::session::v1 as session_pb;
use proto::session::v1::session_internal_service_client::SessionInternalServiceClient;
use proto::session::v1::session_service_client::SessionServiceClient;
use svc_kit::auth::{INTERNAL_TOKEN_HEADER, InternalToken};
use svc_kit::testing::with_bearer;
use tonic::Code;
use xiaowo::node::Target;
use xiaowo::testing::{Node, Stack};

const TOKEN: &str = "internal-test-token";

/// How an internal call authenticates itself.
#[derive(Debug, Clone, Copy)]
enum Credential {
    Missing,
    Wrong,
    Right,
}

const ALL: [Credential; 3] = [Credential::Missing, Credential::Wrong, Credential::Right];

fn request<T>(message: T, credential: Credential) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    match credential {
        Credential::Missing => {}
        Credential::Wrong => {
            request.metadata_mut().insert(INTERNAL_TOKEN_HEADER, "internal-test-tokeN".parse().unwrap());
        }
        Credential::Right => InternalToken::new(TOKEN).unwrap().attach(&mut request),
    }
    request
}

/// session-svc and room-svc on separate servers, as `xiaowo serve` runs them: session-svc
/// guarded by `TOKEN`, room-svc guarded by and presenting `room_token`.
struct Servers {
    _stack: Stack,
    session: Node,
    room: Node,
}

async fn start(room_token: &str) -> Servers {
    let stack = Stack::new().await.on_system_clock();
    let session = stack.start_with(&[Target::Session], |common| common.internal_token = Some(TOKEN.to_owned())).await;
    let room = stack.start_with(&[Target::Room], |common| common.internal_token = Some(room_token.to_owned())).await;
    Servers { _stack: stack, session, room }
}

impl Servers {
    async fn user(&self, name: &str) -> session_pb::CreateSessionResponse {
        SessionServiceClient::new(self.session.channel())
            .create_session(session_pb::CreateSessionRequest { display_name: name.to_owned() })
            .await
            .unwrap()
            .into_inner()
    }
}

#[tokio::test]
async fn session_internal_api_requires_the_token() {
    let servers = start(TOKEN).await;
    let alice = servers.user("Alice").await;
    let user_id = alice.session.clone().unwrap().user_id;
    let mut internal = SessionInternalServiceClient::new(servers.session.channel());
    for credential in ALL {
        let validated = internal
            .validate_session(request(session_pb::ValidateSessionRequest { token: alice.token.clone() }, credential))
            .await;
        let names = internal
            .batch_get_display_names(request(
                session_pb::BatchGetDisplayNamesRequest { user_ids: vec![user_id.clone()] },
                credential,
            ))
            .await;
        match credential {
            Credential::Missing | Credential::Wrong => {
                assert_eq!(validated.unwrap_err().code(), Code::Unauthenticated, "{credential:?}");
                assert_eq!(names.unwrap_err().code(), Code::Unauthenticated, "{credential:?}");
            }
            Credential::Right => {
                assert_eq!(validated.unwrap().into_inner().session.unwrap().user_id, user_id);
                assert_eq!(names.unwrap().into_inner().display_names.get(&user_id).map(String::as_str), Some("Alice"));
            }
        }
    }
}

#[tokio::test]
async fn room_internal_api_requires_the_token_and_room_svc_presents_it() {
    let servers = start(TOKEN).await;
    let alice = servers.user("Alice").await;
    let user_id = alice.session.clone().unwrap().user_id;
    let mut rooms = RoomServiceClient::new(servers.room.channel());
    // Creating a room validates the caller with session-svc; listing members asks it for names.
    let room = rooms
        .create_room(with_bearer(
            pb::CreateRoomRequest { name: "Film night".to_owned(), ..Default::default() },
            &alice.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .room
        .unwrap();
    let members = rooms
        .list_members(with_bearer(pb::ListMembersRequest { room_id: room.room_id.clone() }, &alice.token))
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(members.iter().map(|member| member.display_name.as_str()).collect::<Vec<_>>(), ["Alice"]);

    let mut internal = RoomInternalServiceClient::new(servers.room.channel());
    for credential in ALL {
        let access = internal
            .check_access(request(
                pb::CheckAccessRequest { room_id: room.room_id.clone(), user_id: user_id.clone() },
                credential,
            ))
            .await;
        let activity = internal
            .record_activity(request(pb::RecordActivityRequest { room_id: room.room_id.clone() }, credential))
            .await;
        let events = internal.watch_room_events(request(pb::WatchRoomEventsRequest {}, credential)).await;
        match credential {
            Credential::Missing | Credential::Wrong => {
                assert_eq!(access.unwrap_err().code(), Code::Unauthenticated, "{credential:?}");
                assert_eq!(activity.unwrap_err().code(), Code::Unauthenticated, "{credential:?}");
                assert_eq!(events.unwrap_err().code(), Code::Unauthenticated, "{credential:?}");
            }
            Credential::Right => {
                assert_eq!(access.unwrap().into_inner().role(), pb::Role::Owner);
                activity.unwrap();
                let mut events = events.unwrap().into_inner();
                let first = tokio::time::timeout(Duration::from_secs(10), events.message()).await.unwrap().unwrap();
                assert!(first.is_some(), "the event stream opens with a message");
            }
        }
    }
}

#[tokio::test]
async fn a_room_svc_with_another_token_cannot_reach_session_svc() {
    let servers = start("a-different-token").await;
    let alice = servers.user("Alice").await;
    let created = RoomServiceClient::new(servers.room.channel())
        .create_room(with_bearer(
            pb::CreateRoomRequest { name: "Film night".to_owned(), ..Default::default() },
            &alice.token,
        ))
        .await;
    // session-svc refuses room-svc's validation call, so the caller cannot be identified.
    assert_eq!(created.unwrap_err().code(), Code::Unauthenticated);
}
