// Why a player cannot play the current media, found out and put into words: the browser's
// media error, sharpened by a small request for the same URL where the page may make one (the
// HTTP status, a web page instead of a video, a server without Range support). Players report
// it to the room; every member sees it beside the member who has it.

import { create } from "@bufbuild/protobuf";

import { type LoadError, LoadErrorKind, LoadErrorSchema } from "./gen/xiaowo/sync/v1/sync_pb";
import { pick } from "./lang";

export const LOAD_ERROR_TEXT = {
  en: {
    memberCannotPlay: (name: string) => `${name} can't play this: `,
    youCannotPlay: "Can't play this: ",
    addedByYou: (name: string, title: string) => `${name} can't play “${title}”, which you added: `,
    httpStatus: (status: number) => `the server answered ${status}${status === 404 ? " (not found)" : status === 403 ? " (forbidden)" : ""}`,
    network: "the file could not be fetched (the server is unreachable or refused it)",
    decode: "the file is damaged or uses a format this browser cannot decode",
    unsupported: "the address is not a video this browser can play (perhaps a web page)",
    noRange: "the server does not support seeking (no HTTP Range support), so jumps cannot follow the room",
    unknown: "the video could not be loaded",
    slow: (seconds: number) => `Buffering… the video's server has sent nothing for ${seconds} s`,
  },
  zh: {
    memberCannotPlay: (name: string) => `${name} 无法播放：`,
    youCannotPlay: "无法播放：",
    addedByYou: (name: string, title: string) => `${name} 无法播放你添加的「${title}」：`,
    httpStatus: (status: number) => `服务器返回 ${status}${status === 404 ? "（未找到）" : status === 403 ? "（禁止访问）" : ""}`,
    network: "无法获取文件（服务器无法连接或拒绝了请求）",
    decode: "文件已损坏，或使用了此浏览器无法解码的格式",
    unsupported: "该地址不是此浏览器能播放的视频（可能是网页）",
    noRange: "服务器不支持跳转（不支持 HTTP Range），无法跟上房间的进度跳转",
    unknown: "视频无法加载",
    slow: (seconds: number) => `缓冲中… 视频服务器已 ${seconds} 秒没有发送数据`,
  },
};

const text = pick(LOAD_ERROR_TEXT);

/** The reason of a load error in words (without whose it is). */
export function describeLoadError(error: LoadError): string {
  switch (error.kind) {
    case LoadErrorKind.HTTP_STATUS:
      return text.httpStatus(error.httpStatus);
    case LoadErrorKind.NETWORK:
      return text.network;
    case LoadErrorKind.DECODE:
      return text.decode;
    case LoadErrorKind.UNSUPPORTED:
      return text.unsupported;
    case LoadErrorKind.NO_RANGE_SUPPORT:
      return text.noRange;
    case LoadErrorKind.UNSPECIFIED:
      return text.unknown;
  }
}

/** "Bob can't play this: …" */
export function describeMemberLoadError(name: string, error: LoadError): string {
  return text.memberCannotPlay(name) + describeLoadError(error);
}

export function describeOwnLoadError(error: LoadError): string {
  return text.youCannotPlay + describeLoadError(error);
}

export function describeAddedLoadError(name: string, title: string, error: LoadError): string {
  return text.addedByYou(name, title) + describeLoadError(error);
}

export function describeSlowServer(seconds: number): string {
  return text.slow(seconds);
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
