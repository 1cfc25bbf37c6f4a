// The generated gRPC-web clients for every service the browser talks to, on the page's own
// origin so that the HttpOnly session cookie travels with every call.

import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

import { BadRequestSchema } from "./gen/google/rpc/error_details_pb";
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

export function errorCode(error: unknown): Code {
  return ConnectError.from(error).code;
}

/**
 * What to tell a person about a failed call: the field violations when the input was refused,
 * otherwise a sentence for the status code.
 */
export function describeError(error: unknown): string {
  const connectError = ConnectError.from(error);
  const violations = connectError.findDetails(BadRequestSchema).flatMap((badRequest) => badRequest.fieldViolations);
  if (violations.length > 0) {
    return violations.map((violation) => `${violation.field.replaceAll("_", " ")}: ${violation.description}`).join("; ");
  }
  switch (connectError.code) {
    case Code.Unauthenticated:
      return "Your session has ended; pick a name again.";
    case Code.PermissionDenied:
      return connectError.rawMessage || "You are not allowed to do that.";
    case Code.NotFound:
      return "Not found (it may have been closed).";
    case Code.ResourceExhausted:
      return "Slow down a little and try again.";
    case Code.FailedPrecondition:
      return connectError.rawMessage || "Not possible right now.";
    case Code.Aborted:
      return "Someone else changed it first; try again.";
    case Code.InvalidArgument:
      return connectError.rawMessage || "That was not accepted.";
    case Code.Unavailable:
    case Code.DeadlineExceeded:
    case Code.Canceled:
    case Code.Unknown:
      return "The server cannot be reached right now.";
    default:
      return "Something went wrong on the server.";
  }
}
