// The generated gRPC-web clients for every service the browser talks to, on the page's own
// origin so that the HttpOnly session cookie travels with every call.

import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

import { ChatService } from "./gen/xiaowo/chat/v1/chat_pb";
import { MediaService } from "./gen/xiaowo/media/v1/media_pb";
import { RoomService } from "./gen/xiaowo/room/v1/room_pb";
import { SessionService } from "./gen/xiaowo/session/v1/session_pb";
import { SyncService } from "./gen/xiaowo/sync/v1/sync_pb";

export interface Api {
  session: Client<typeof SessionService>;
  room: Client<typeof RoomService>;
  sync: Client<typeof SyncService>;
  chat: Client<typeof ChatService>;
  media: Client<typeof MediaService>;
}

export function createApi(baseUrl = window.location.origin): Api {
  const transport = createGrpcWebTransport({ baseUrl, fetch: (input, init) => fetch(input, { ...init, credentials: "same-origin" }) });
  return {
    session: createClient(SessionService, transport),
    room: createClient(RoomService, transport),
    sync: createClient(SyncService, transport),
    chat: createClient(ChatService, transport),
    media: createClient(MediaService, transport),
  };
}
