//! The internal token of split deployments: without one configured, services started over the
//! same data directory (as `xiaowo serve` processes of one host are) create and share
//! `<data-dir>/internal.token`, private to its owner, and refuse internal calls without it.

use std::time::Duration;

use proto::room::v1 as room;
use proto::session::v1 as session;
use svc_kit::auth::InternalToken;
use svc_kit::testing::{code, with_bearer};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use xiaowo::node::{self, Common, Peers, Plan, Target};
use xiaowo::testing::any_port;

/// `target` alone, as `xiaowo serve --target <target>` starts it (no token configured unless
/// `common` says; these tests are about the data directory's token file).
async fn start(common: &Common, target: Target, peers: &Peers, shutdown: &CancellationToken) -> String {
    let plan = Plan { groups: vec![(any_port(), vec![target])], peers: peers.clone(), ..Plan::default() };
    let running = node::start(plan, common, svc_kit::clock::system(), shutdown).await.unwrap();
    let url = running.servers[0].url();
    tokio::spawn(running.wait());
    url
}

fn channel(url: &str) -> tonic::transport::Channel {
    svc_kit::peer::channel(url, Duration::from_secs(10)).unwrap()
}

#[tokio::test]
async fn services_sharing_a_data_directory_share_a_generated_token() {
    let data = tempfile::tempdir().unwrap();
    let mut common: Common = svc_kit::testing::from_env();
    common.data_dir = data.path().to_path_buf();
    common.room.bcrypt_cost = 4;
    let shutdown = CancellationToken::new();

    let session_url = start(&common, Target::Session, &Peers::default(), &shutdown).await;
    let path = node::internal_token_path(data.path());
    let secret = std::fs::read_to_string(&path).unwrap().trim().to_owned();
    assert_eq!(secret.len(), 64);
    assert!(secret.bytes().all(|byte| byte.is_ascii_hexdigit()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // A second service of the host reads the same file rather than writing another.
    let peers = Peers { session_url: Some(session_url.clone()), room_url: None, sync_url: None };
    let room_url = start(&common, Target::Room, &peers, &shutdown).await;
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), secret);

    // room-svc validates the caller and looks up names with session-svc: the token works.
    let owner = session::session_service_client::SessionServiceClient::new(channel(&session_url))
        .create_session(session::CreateSessionRequest { display_name: "Owner".to_owned() })
        .await
        .unwrap()
        .into_inner();
    let owner_id = owner.session.unwrap().user_id;
    let mut rooms = room::room_service_client::RoomServiceClient::new(channel(&room_url));
    let created = rooms
        .create_room(with_bearer(
            room::CreateRoomRequest { name: "split".to_owned(), ..Default::default() },
            &owner.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .room
        .unwrap();
    let members = rooms
        .list_members(with_bearer(room::ListMembersRequest { room_id: created.room_id.clone() }, &owner.token))
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(members.iter().map(|member| member.display_name.as_str()).collect::<Vec<_>>(), ["Owner"]);

    // Outsiders are refused; the holder of the file's token is answered.
    let mut internal = room::room_internal_service_client::RoomInternalServiceClient::new(channel(&room_url));
    let check = || room::CheckAccessRequest { room_id: created.room_id.clone(), user_id: owner_id.clone() };
    assert_eq!(code(internal.check_access(check()).await), Code::Unauthenticated);
    let token = InternalToken::new(&secret).unwrap();
    let answered = internal.check_access(InternalToken::request(Some(&token), check())).await.unwrap();
    assert_eq!(answered.into_inner().role(), room::Role::Owner);
    shutdown.cancel();
}

#[tokio::test]
async fn a_configured_token_is_used_and_nothing_is_written() {
    let data = tempfile::tempdir().unwrap();
    let mut common: Common = svc_kit::testing::from_env();
    common.data_dir = data.path().to_path_buf();
    common.internal_token = Some("configured-internal-token".to_owned());
    let shutdown = CancellationToken::new();
    let session_url = start(&common, Target::Session, &Peers::default(), &shutdown).await;
    assert!(!node::internal_token_path(data.path()).exists());
    let mut internal =
        session::session_internal_service_client::SessionInternalServiceClient::new(channel(&session_url));
    let names = || session::BatchGetDisplayNamesRequest { user_ids: vec!["nobody".to_owned()] };
    assert_eq!(code(internal.batch_get_display_names(names()).await), Code::Unauthenticated);
    let token = InternalToken::new("configured-internal-token").unwrap();
    internal.batch_get_display_names(InternalToken::request(Some(&token), names())).await.unwrap();
    shutdown.cancel();
}
