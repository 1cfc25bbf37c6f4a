// What to tell a person when a call fails: one sentence in their language for every gRPC status
// and every field violation the services return. The server's own words (English, for
// operators) stay in the console; the person reads a sentence, never a code or a field path.
//
// The services say what went wrong in `grpc-message` and, for bad input, in google.rpc.BadRequest
// field violations. Where the message carries a number the person needs (how long a mute or a
// wait lasts), it is read from the message's stable wording below; anything unrecognised falls
// back to the sentence for its status code.

import { Code, ConnectError } from "@connectrpc/connect";

import { BadRequestSchema } from "./gen/google/rpc/error_details_pb";
import { formatBytes, formatMoment, formatSpan, type MessageKey, type Params, type Shown, t } from "./i18n";

/** What the person was doing, which decides the sentence for some codes. */
export type ErrorContext = "generic" | "session" | "room" | "join" | "chat" | "playback" | "moderation";

export interface Explanation {
  key: MessageKey;
  params?: Params;
}

/** The catalog key (and its parameters) that explains `error` to a person. */
export function explain(error: unknown, context: ErrorContext = "generic", now = Date.now()): Explanation {
  const connectError = ConnectError.from(error);
  const raw = connectError.rawMessage;
  const violations = connectError.findDetails(BadRequestSchema).flatMap((badRequest) => badRequest.fieldViolations);
  if (violations.length > 0) {
    // One sentence, about the first problem: the person fixes one field at a time.
    const [first] = violations;
    if (first) {
      return explainViolation(first.field, first.description);
    }
  }
  switch (connectError.code) {
    case Code.InvalidArgument:
      return { key: "error.invalid" };
    case Code.Unauthenticated:
      return { key: "error.unauthenticated" };
    case Code.PermissionDenied:
      return explainDenied(raw, context, now);
    case Code.ResourceExhausted:
      return explainExhausted(raw);
    case Code.FailedPrecondition:
      return explainPrecondition(raw);
    case Code.NotFound:
      return { key: context === "room" || context === "join" ? "error.roomNotFound" : "error.notFound" };
    case Code.Aborted:
      return { key: "error.aborted" };
    case Code.AlreadyExists:
      return { key: "error.alreadyExists" };
    case Code.Unavailable:
    case Code.DeadlineExceeded:
    case Code.Canceled:
    case Code.Unknown:
      return { key: "error.unreachable" };
    case Code.Internal:
    case Code.DataLoss:
    case Code.Unimplemented:
    case Code.OutOfRange:
      return { key: "error.server" };
  }
}

function seconds(text: string, pattern: RegExp): number | undefined {
  const match = pattern.exec(text);
  return match?.[1] ? Number(match[1]) : undefined;
}

function explainDenied(raw: string, context: ErrorContext, now: number): Explanation {
  if (/wrong room password/.test(raw)) {
    return { key: "error.wrongPassword" };
  }
  const kickedFor = seconds(raw, /kicked.*?rejoin in (\d+)\s*s/);
  if (kickedFor !== undefined) {
    return { key: "error.kicked", params: { wait: formatSpan(kickedFor) } };
  }
  const mutedUntil = seconds(raw, /muted until (\d+)/);
  if (mutedUntil !== undefined) {
    const until = new Date(mutedUntil);
    return { key: "error.muted", params: { time: formatMoment(until, new Date(now)), wait: formatSpan((mutedUntil - now) / 1000) } };
  }
  if (/control mode/.test(raw)) {
    return { key: "error.noControl" };
  }
  if (/default subtitles/.test(raw)) {
    return { key: "error.subtitleDefaultOwner" };
  }
  if (/change its subtitles/.test(raw)) {
    return { key: "error.subtitlesDenied" };
  }
  if (/not a member|no longer a member/.test(raw)) {
    return { key: "error.notMember" };
  }
  if (/cannot moderate/.test(raw)) {
    return { key: "error.outranked" };
  }
  if (/moderator|role/.test(raw) || context === "moderation") {
    return { key: "error.needsModerator" };
  }
  return { key: "error.denied" };
}

function explainExhausted(raw: string): Explanation {
  if (/wrong passwords/.test(raw)) {
    return { key: "error.tooManyPasswords", params: { wait: formatSpan(seconds(raw, /retry in (\d+)\s*s/) ?? 60) } };
  }
  if (/room is full/.test(raw)) {
    return { key: "error.roomFull" };
  }
  if (/sending too fast/.test(raw)) {
    return { key: "error.chatFlood", params: { wait: formatSpan((seconds(raw, /retry in (\d+)\s*ms/) ?? 1000) / 1000) } };
  }
  if (/larger than/.test(raw)) {
    return { key: "error.tooLarge" };
  }
  if (/subtitle tracks/.test(raw)) {
    return { key: "error.tooManyTracks" };
  }
  const wait = seconds(raw, /retry in (\d+)\s*s/);
  return wait === undefined ? { key: "error.slowDown" } : { key: "error.slowDownFor", params: { wait: formatSpan(wait) } };
}

function explainPrecondition(raw: string): Explanation {
  if (/room (is )?closed/.test(raw)) {
    return { key: "error.roomClosed" };
  }
  if (/no media loaded|no longer playing/.test(raw)) {
    return { key: "error.noMedia" };
  }
  if (/queue is full/.test(raw)) {
    return { key: "error.queueFull" };
  }
  if (/queue is empty/.test(raw)) {
    return { key: "error.queueEmpty" };
  }
  if (/already the owner/.test(raw)) {
    return { key: "error.alreadyOwner" };
  }
  if (/not a member/.test(raw)) {
    return { key: "error.notMember" };
  }
  if (/TransferOwnership|owner's role/.test(raw)) {
    return { key: "error.ownerRole" };
  }
  return { key: "error.notNow" };
}

/** The sentence for one field violation, from the field and the kind of problem. */
export function explainViolation(field: string, description: string): Explanation {
  const name = field.split(".").pop() ?? field;
  const max = seconds(description, /at most (\d+)/);
  if (name === "password") {
    return { key: "error.field.password" };
  }
  if (name === "url") {
    return { key: /empty|required/.test(description) ? "error.field.urlMissing" : "error.field.url" };
  }
  if (name === "rate") {
    return { key: "error.field.rate" };
  }
  if (name === "position_ms") {
    return { key: "error.field.position" };
  }
  if (name === "duration") {
    return { key: "error.field.duration" };
  }
  if (name === "language") {
    return { key: "error.field.language" };
  }
  if (name === "content") {
    return explainSubtitleFile(description);
  }
  const label = fieldLabel(name);
  if (!label) {
    return { key: "error.invalid" };
  }
  const params = { field: t(label) };
  if (/required|must not be empty|must be set/.test(description)) {
    return { key: "error.field.required", params };
  }
  if (/control characters/.test(description)) {
    return { key: "error.field.control", params };
  }
  if (max !== undefined) {
    return { key: "error.field.tooLong", params: { ...params, count: max } };
  }
  return { key: "error.field.invalid", params };
}

/** Why media-svc refused a subtitle file (its violation on `content`). */
function explainSubtitleFile(description: string): Explanation {
  const count = (pattern: RegExp): number => Number(pattern.exec(description)?.[1] ?? 0);
  if (/binary/.test(description)) {
    return { key: "subtitles.error.binary" };
  }
  if (/not SRT/.test(description)) {
    return { key: "subtitles.error.unknownFormat" };
  }
  if (/bytes/.test(description)) {
    return { key: "subtitles.error.tooLarge", params: { size: formatBytes(count(/at most (\d+) bytes/)) } };
  }
  if (/cues/.test(description) && /at most/.test(description)) {
    return { key: "subtitles.error.tooManyCues", params: { count: count(/at most (\d+) cues/) } };
  }
  if (/no valid cues/.test(description)) {
    return { key: "subtitles.error.noValidCues", params: { count: count(/\((\d+) /) } };
  }
  return { key: "subtitles.error.empty" };
}

function fieldLabel(field: string): MessageKey | undefined {
  switch (field) {
    case "display_name":
      return "field.displayName";
    case "name":
      return "field.roomName";
    case "description":
      return "field.description";
    case "title":
      return "field.title";
    case "text":
      return "field.message";
    case "label":
      return "field.label";
    default:
      return undefined;
  }
}

/** The sentence for `error`, in the person's language. */
export function describeError(error: unknown, context: ErrorContext = "generic"): Shown {
  const { key, params } = explain(error, context);
  return t(key, params);
}

/** What an operator needs to know about `error` (code and the server's own words). */
export function errorDetails(error: unknown): string {
  const connectError = ConnectError.from(error);
  const violations = connectError.findDetails(BadRequestSchema).flatMap((badRequest) => badRequest.fieldViolations);
  const fields = violations.map((violation) => `${violation.field}: ${violation.description}`).join("; ");
  return `${Code[connectError.code]}: ${connectError.rawMessage}${fields && !connectError.rawMessage.includes(fields) ? ` (${fields})` : ""}`;
}

/** The sentence for `error`; the details go to the console for whoever investigates. */
export function sentenceFor(error: unknown, context: ErrorContext = "generic"): Shown {
  console.warn(`xiaowo: ${errorDetails(error)}`);
  return describeError(error, context);
}

export function errorCode(error: unknown): Code {
  return ConnectError.from(error).code;
}
