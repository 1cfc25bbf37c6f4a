// Why a player cannot play the current media, found out and put into words (the catalog's
// `loadError.*`): the browser's media error, sharpened by a small request for the same URL
// where the page may make one (the HTTP status, a web page instead of a video, a server without
// Range support). Players report it to the room; every member sees it beside the member.

import { create } from "@bufbuild/protobuf";

import { type LoadError, LoadErrorKind, LoadErrorSchema } from "./gen/xiaowo/sync/v1/sync_pb";
import { type Shown, t, userText } from "./i18n";

/** The reason of a load error in words (without whose it is). */
export function describeLoadError(error: LoadError): Shown {
  switch (error.kind) {
    case LoadErrorKind.HTTP_STATUS:
      return error.httpStatus === 404 ? t("loadError.httpNotFound") : error.httpStatus === 403 ? t("loadError.httpForbidden") : t("loadError.httpStatus", { status: String(error.httpStatus) });
    case LoadErrorKind.NETWORK:
      return t("loadError.network");
    case LoadErrorKind.DECODE:
      return t("loadError.decode");
    case LoadErrorKind.UNSUPPORTED:
      return t("loadError.unsupported");
    case LoadErrorKind.NO_RANGE_SUPPORT:
      return t("loadError.noRange");
    case LoadErrorKind.UNSPECIFIED:
      return t("loadError.unknown");
  }
}

/** "Bob can't play this: …" */
export function describeMemberLoadError(name: string, error: LoadError): Shown {
  const key = error.kind === LoadErrorKind.NO_RANGE_SUPPORT ? "loadError.memberCannotSeek" : "loadError.memberCannotPlay";
  return t(key, { name, reason: describeLoadError(error) });
}

export function describeOwnLoadError(error: LoadError): Shown {
  const key = error.kind === LoadErrorKind.NO_RANGE_SUPPORT ? "loadError.youCannotSeek" : "loadError.youCannotPlay";
  return t(key, { reason: describeLoadError(error) });
}

export function describeAddedLoadError(name: string, title: string, error: LoadError): Shown {
  const key = error.kind === LoadErrorKind.NO_RANGE_SUPPORT ? "loadError.addedByYouSeek" : "loadError.addedByYou";
  return t(key, { name, title: userText(title), reason: describeLoadError(error) });
}

/** What the first bytes of `url` say, when the page may ask (same origin, or CORS allows it). */
interface Probe {
  status: number;
  contentType: string;
  /** The server answered a Range request with 206. */
  ranges: boolean;
}

async function probe(url: string): Promise<Probe | undefined> {
  const target = new URL(url, window.location.href);
  const sameOrigin = target.origin === window.location.origin;
  // The content security policy lets the page fetch only its own origin and https.
  if (!sameOrigin && target.protocol !== "https:") {
    return undefined;
  }
  const controller = new AbortController();
  const timer = window.setTimeout(() => controller.abort(), 5_000);
  try {
    const response = await fetch(url, {
      headers: { Range: "bytes=0-1" },
      credentials: sameOrigin ? "same-origin" : "omit",
      cache: "no-store",
      signal: controller.signal,
    });
    // Only the head matters: a server that ignores Range would send the whole file.
    controller.abort();
    return { status: response.status, contentType: response.headers.get("content-type") ?? "", ranges: response.status === 206 };
  } catch {
    // Refused by CORS or the content security policy, or unreachable: the page cannot tell.
    return undefined;
  } finally {
    window.clearTimeout(timer);
  }
}

function loadError(mediaId: string, kind: LoadErrorKind, httpStatus = 0, detail = ""): LoadError {
  return create(LoadErrorSchema, { mediaId, kind, httpStatus, detail: detail.slice(0, 200) });
}

/** Why `video` failed to load `url`. */
export async function diagnose(mediaId: string, url: string, video: HTMLVideoElement): Promise<LoadError> {
  const mediaError = video.error;
  const detail = mediaError?.message ?? "";
  const probed = await probe(url);
  if (probed && probed.status >= 400) {
    return loadError(mediaId, LoadErrorKind.HTTP_STATUS, probed.status, detail);
  }
  if (probed && /^text\/html|^application\/(json|xhtml)/i.test(probed.contentType)) {
    return loadError(mediaId, LoadErrorKind.UNSUPPORTED, 0, detail || probed.contentType);
  }
  switch (mediaError?.code) {
    case MediaError.MEDIA_ERR_DECODE:
      return loadError(mediaId, LoadErrorKind.DECODE, 0, detail);
    case MediaError.MEDIA_ERR_NETWORK:
      return loadError(mediaId, LoadErrorKind.NETWORK, 0, detail);
    case MediaError.MEDIA_ERR_SRC_NOT_SUPPORTED:
      return loadError(mediaId, LoadErrorKind.UNSUPPORTED, 0, detail);
    default:
      return loadError(mediaId, LoadErrorKind.NETWORK, 0, detail);
  }
}

/**
 * Whether the server of `url` supports seeking: a Range request where the page may make one,
 * else what the browser itself found out (a file it cannot seek in has no seekable range).
 */
export async function checkSeeking(mediaId: string, url: string, video: HTMLVideoElement): Promise<LoadError | undefined> {
  const probed = await probe(url);
  const seekable = video.seekable.length > 0 && video.seekable.end(video.seekable.length - 1) > 0;
  if (probed ? !probed.ranges && probed.status === 200 : !seekable) {
    return loadError(mediaId, LoadErrorKind.NO_RANGE_SUPPORT);
  }
  return undefined;
}
