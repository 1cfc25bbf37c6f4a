import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";

import { explain } from "../src/errors";
import { BadRequestSchema } from "../src/gen/google/rpc/error_details_pb";
import { LANGUAGES, setLanguage, translate } from "../src/i18n";

/** A status as the services send it: code, message and, for bad input, field violations. */
function status(code: Code, message: string, violations: [string, string][] = []): ConnectError {
  const details = violations.length
    ? [{ desc: BadRequestSchema, value: create(BadRequestSchema, { fieldViolations: violations.map(([field, description]) => ({ field, description })) }) }]
    : [];
  return new ConnectError(message, code, undefined, details);
}

/** What the services answer, with the server's own words (from their error.rs files). */
const SERVER_ERRORS: [ConnectError, string][] = [
  [status(Code.InvalidArgument, "display_name: must not be empty", [["display_name", "must not be empty"]]), "error.field.required"],
  [status(Code.InvalidArgument, "name: must have at most 64 characters", [["name", "must have at most 64 characters"]]), "error.field.tooLong"],
  [status(Code.InvalidArgument, "text: must not contain control characters", [["text", "must not contain control characters"]]), "error.field.control"],
  [status(Code.InvalidArgument, "password: must be 8 to 72 bytes (UTF-8)", [["password", "must be 8 to 72 bytes (UTF-8)"]]), "error.field.password"],
  [status(Code.InvalidArgument, "url: must be an http or https URL", [["url", "must be an http or https URL"]]), "error.field.url"],
  [status(Code.InvalidArgument, "rate: must be a number from 0.25 to 4", [["rate", "must be a number from 0.25 to 4"]]), "error.field.rate"],
  [status(Code.InvalidArgument, "position_ms: must not be past the end of the media", [["position_ms", "must not be past the end of the media"]]), "error.field.position"],
  [status(Code.InvalidArgument, "page_token: not a token from a previous page", [["page_token", "not a token from a previous page"]]), "error.invalid"],
  [status(Code.InvalidArgument, "bad"), "error.invalid"],
  [status(Code.InvalidArgument, "content: must not be empty", [["content", "must not be empty"]]), "subtitles.error.empty"],
  [status(Code.InvalidArgument, "content", [["content", "must be at most 921600 bytes"]]), "subtitles.error.tooLarge"],
  [status(Code.InvalidArgument, "content", [["content", "is binary data, not a text subtitle file"]]), "subtitles.error.binary"],
  [status(Code.InvalidArgument, "content", [["content", "is not SRT, WebVTT, ASS or SSA subtitles"]]), "subtitles.error.unknownFormat"],
  [status(Code.InvalidArgument, "content", [["content", "must have at most 20000 cues"]]), "subtitles.error.tooManyCues"],
  [status(Code.InvalidArgument, "content", [["content", "has no valid cues (3 with bad timestamps or no text)"]]), "subtitles.error.noValidCues"],
  [status(Code.InvalidArgument, "language", [["language", "must be a language tag such as zh, zh-Hant or en-US"]]), "error.field.language"],
  [status(Code.InvalidArgument, "label", [["label", "must have at most 100 characters"]]), "error.field.tooLong"],
  [status(Code.Unauthenticated, "session expired"), "error.unauthenticated"],
  [status(Code.PermissionDenied, "wrong room password"), "error.wrongPassword"],
  [status(Code.PermissionDenied, "kicked from this room; rejoin in 540s"), "error.kicked"],
  [status(Code.PermissionDenied, "muted until 1796512718034 (Unix ms)"), "error.muted"],
  [status(Code.PermissionDenied, "the room's control mode does not allow you to control it"), "error.noControl"],
  [status(Code.PermissionDenied, "not a member of the room"), "error.notMember"],
  [status(Code.PermissionDenied, "cannot moderate this member"), "error.outranked"],
  [status(Code.PermissionDenied, "moderator rights required"), "error.needsModerator"],
  [status(Code.PermissionDenied, "your role in this room does not allow this"), "error.needsModerator"],
  [status(Code.PermissionDenied, "admin token required"), "error.denied"],
  [
    status(Code.PermissionDenied, "only the item's uploader, an operator, or the owner or a moderator of a room that plays it may change its subtitles"),
    "error.subtitlesDenied",
  ],
  [status(Code.PermissionDenied, "only the room's owner may set the room's default subtitles"), "error.subtitleDefaultOwner"],
  [status(Code.ResourceExhausted, "an item may have at most 50 subtitle tracks"), "error.tooManyTracks"],
  [status(Code.ResourceExhausted, "too many wrong passwords; retry in 30s"), "error.tooManyPasswords"],
  [status(Code.ResourceExhausted, "room is full"), "error.roomFull"],
  [status(Code.ResourceExhausted, "sending too fast; retry in 850ms"), "error.chatFlood"],
  [status(Code.ResourceExhausted, "too many commands; retry in 2s"), "error.slowDownFor"],
  [status(Code.ResourceExhausted, "too many new sessions; retry in 5s"), "error.slowDownFor"],
  [status(Code.ResourceExhausted, "the request message is larger than this server accepts"), "error.tooLarge"],
  [status(Code.ResourceExhausted, "too many requests, slow down"), "error.slowDown"],
  [status(Code.FailedPrecondition, "room is closed"), "error.roomClosed"],
  [status(Code.FailedPrecondition, "room closed"), "error.roomClosed"],
  [status(Code.FailedPrecondition, "no media loaded"), "error.noMedia"],
  [status(Code.FailedPrecondition, "the queue is full"), "error.queueFull"],
  [status(Code.FailedPrecondition, "the queue is empty"), "error.queueEmpty"],
  [status(Code.FailedPrecondition, "already the owner"), "error.alreadyOwner"],
  [status(Code.FailedPrecondition, "the owner's role changes only through TransferOwnership"), "error.ownerRole"],
  [status(Code.FailedPrecondition, "something new"), "error.notNow"],
  [status(Code.NotFound, "room not found"), "error.notFound"],
  [status(Code.Aborted, "stale version"), "error.aborted"],
  [status(Code.AlreadyExists, "exists"), "error.alreadyExists"],
  [status(Code.Unavailable, "connection refused"), "error.unreachable"],
  [status(Code.DeadlineExceeded, "deadline"), "error.unreachable"],
  [status(Code.Internal, "internal error"), "error.server"],
  [status(Code.Unimplemented, "unknown method"), "error.server"],
];

/** Words a person must never read. */
const JARGON = /\b[A-Z]{3,}_[A-Z_]+\b|\[[a-z_]+\]|\b[a-z]+_[a-z_]+\b|Unix ms|\d{10,}|\{\w+\}|undefined|NaN|grpc/;

describe("error sentences", () => {
  it("map every status and field violation the services send to its sentence", () => {
    for (const [error, key] of SERVER_ERRORS) {
      assert.equal(explain(error).key, key, error.rawMessage);
    }
  });

  it("are whole sentences without codes, field paths or raw numbers, in every language", () => {
    for (const language of LANGUAGES) {
      setLanguage(language, false, [language]);
      for (const [error] of SERVER_ERRORS) {
        const { key, params } = explain(error, "generic", 1796512000000);
        const text = translate(language, key, params);
        assert.doesNotMatch(text, JARGON, `${language}: ${text}`);
        assert.match(text, /[.。!！?？)）]$/, `${language}: not a sentence: ${text}`);
      }
    }
    setLanguage("en", false, ["en-US"]);
  });

  it("say how long a mute lasts and until when, not a Unix timestamp", () => {
    setLanguage("en", false, ["en-GB"]);
    const now = Date.UTC(2026, 0, 5, 12, 0, 0);
    const { key, params } = explain(status(Code.PermissionDenied, `muted until ${now + 10 * 60_000} (Unix ms)`), "chat", now);
    const text = translate("en", key, params);
    assert.match(text, /for 10 minutes more/, text);
    assert.match(text, /until \d{2}:\d{2}/, text);
    setLanguage("en", false, ["en-US"]);
  });

  it("name the field and its limit", () => {
    setLanguage("en", false, ["en-US"]);
    const { key, params } = explain(status(Code.InvalidArgument, "x", [["display_name", "must have at most 32 characters"]]));
    assert.equal(translate("en", key, params), "Your name can be at most 32 characters long.");
    setLanguage("zh", false, ["zh-CN"]);
    const chinese = explain(status(Code.InvalidArgument, "x", [["display_name", "must have at most 32 characters"]]));
    assert.equal(translate("zh", chinese.key, chinese.params), "名字最多 32 个字符。");
    setLanguage("en", false, ["en-US"]);
  });

  it("say when a removed member may come back", () => {
    setLanguage("en", false, ["en-US"]);
    const { key, params } = explain(status(Code.PermissionDenied, "kicked from this room; rejoin in 540s"), "join");
    assert.equal(translate("en", key, params), "You were removed from this room. You can join again in 9 minutes.");
  });
});
