// Uploading a file into the room's library: picked or dropped, sent in chunks with the tus
// protocol (tus-js-client, loaded only when an upload starts), with a progress bar and a
// cancel. A dropped connection resumes by itself when the network is back; after a reload the
// unfinished upload is listed, and picking the same file again resumes it from the last byte
// the server stored.

import type { DetailedError, Upload } from "tus-js-client";

import { describeError } from "./api";
import type { RoomContext } from "./context";
import { button, h, replace } from "./dom";
import type { MediaItem } from "./gen/xiaowo/media/v1/media_pb";
import { formatBytes, pick } from "./lang";

export const UPLOAD_TEXT = {
  en: {
    heading: "Upload a video",
    choose: "Choose or drop a video or audio file",
    addToQueue: "Add to the queue when done",
    limits: (maxFile: string, used: string, quota: string) => `Up to ${maxFile} per file · ${used} of your ${quota} used`,
    starting: (name: string) => `Starting ${name}…`,
    progress: (name: string, percent: number, sent: string, total: string) => `${name}: ${percent} % (${sent} of ${total})`,
    checking: (name: string) => `${name}: uploaded, checking the file…`,
    done: (title: string) => `“${title}” is in the library.`,
    cancel: "Cancel",
    cancelled: "Upload cancelled.",
    offline: "Connection lost: the upload continues when the network is back.",
    resumeHint: (name: string, percent: number) => `${name}: ${percent} % uploaded. Choose the same file again to resume.`,
    forget: "Forget",
    busy: "An upload is already running here; wait for it or cancel it.",
    reasons: {
      "not-media": "This is not a video or audio file, so it was not kept.",
      damaged: "The file is incomplete or damaged and cannot be played, so it was not kept.",
      "probe-timeout": "The file took too long to read, so it was not kept.",
      empty: "The file is empty.",
      "too-large": "The file is larger than this server accepts.",
      quota: "This file would take you past your upload quota.",
      "too-many-uploads": "You have too many unfinished uploads; finish or cancel one first.",
      "disk-full": "The server does not have enough free disk space for this file.",
      unauthenticated: "Your session has ended; reload the page.",
      forbidden: "You may not upload into this room.",
    } as Record<string, string>,
    failed: "The upload failed.",
  },
  zh: {
    heading: "上传视频",
    choose: "选择或拖入一个视频或音频文件",
    addToQueue: "上传完成后加入队列",
    limits: (maxFile: string, used: string, quota: string) => `单个文件最大 ${maxFile} · 已用 ${used}，共 ${quota}`,
    starting: (name: string) => `正在开始上传 ${name}…`,
    progress: (name: string, percent: number, sent: string, total: string) => `${name}：${percent}%（${sent} / ${total}）`,
    checking: (name: string) => `${name}：已上传，正在检查文件…`,
    done: (title: string) => `「${title}」已加入媒体库。`,
    cancel: "取消",
    cancelled: "已取消上传。",
    offline: "连接已断开：网络恢复后将继续上传。",
    resumeHint: (name: string, percent: number) => `${name}：已上传 ${percent}%。再次选择同一文件即可继续。`,
    forget: "放弃",
    busy: "已有上传在进行；请等待或取消它。",
    reasons: {
      "not-media": "这不是视频或音频文件，未保留。",
      damaged: "文件不完整或已损坏，无法播放，未保留。",
      "probe-timeout": "读取文件超时，未保留。",
      empty: "文件是空的。",
      "too-large": "文件超过了服务器允许的大小。",
      quota: "此文件会超出你的上传配额。",
      "too-many-uploads": "未完成的上传太多；请先完成或取消一个。",
      "disk-full": "服务器磁盘空间不足，无法保存此文件。",
      unauthenticated: "会话已结束；请刷新页面。",
      forbidden: "你不能向这个房间上传。",
    } as Record<string, string>,
    failed: "上传失败。",
  },
};

const text = pick(UPLOAD_TEXT);
/** Bytes per PATCH: small enough for proxies and quick resumes, large enough to be efficient. */
const CHUNK_BYTES = 8 * 1024 * 1024;
const RETRY_DELAYS_MS = [0, 1_000, 3_000, 5_000, 10_000, 20_000];
const PENDING_KEY = "xiaowo.uploads";

/** An unfinished upload this browser started, kept so that it can resume after a reload. */
interface Pending {
  name: string;
  size: number;
  lastModified: number;
  roomId: string;
  uploadUrl: string;
  sent: number;
}

function loadPending(): Pending[] {
  try {
    const parsed: unknown = JSON.parse(localStorage.getItem(PENDING_KEY) ?? "[]");
    return Array.isArray(parsed) ? (parsed as Pending[]) : [];
  } catch {
    return [];
  }
}

function savePending(list: Pending[]): void {
  localStorage.setItem(PENDING_KEY, JSON.stringify(list));
}

function sameFile(pending: Pending, file: File): boolean {
  return pending.name === file.name && pending.size === file.size && pending.lastModified === file.lastModified;
}

function percent(sent: number, total: number): number {
  return total > 0 ? Math.floor((sent / total) * 100) : 0;
}

export class UploadPanel {
  readonly element: HTMLElement;
  private readonly input: HTMLInputElement;
  private readonly queueToggle: HTMLInputElement;
  private readonly progress = h("progress", { attrs: { id: "upload-progress", max: "100", value: "0" } });
  private readonly status = h("p", { class: "small", attrs: { id: "upload-status", role: "status" } });
  private readonly limits = h("p", { class: "muted small", attrs: { id: "upload-limits" } });
  private readonly pendingList = h("ul", { class: "pending-uploads", attrs: { id: "upload-pending" } });
  private readonly cancelButton: HTMLButtonElement;
  private upload: Upload | undefined;
  private file: File | undefined;
  private readonly online = (): void => {
    if (this.upload && this.file) {
      this.upload.start();
    }
  };

  constructor(
    private readonly ctx: RoomContext,
    private readonly onUploaded: (item: MediaItem, addToQueue: boolean) => Promise<void>,
  ) {
    this.input = h("input", { attrs: { id: "upload-file", type: "file", accept: "video/*,audio/*,.mkv,.avi,.mov,.webm,.mp4,.m4v,.ts,.flv,.wmv" } });
    this.input.addEventListener("change", () => {
      const file = this.input.files?.[0];
      if (file) {
        void this.begin(file);
      }
    });
    this.queueToggle = h("input", { attrs: { id: "upload-queue", type: "checkbox" } });
    this.queueToggle.checked = true;
    this.cancelButton = button(text.cancel, () => this.cancel(), { class: "link small", attrs: { id: "upload-cancel" } });
    const zone = h("label", { class: "drop-zone", attrs: { id: "upload-drop", for: "upload-file" } }, text.choose, this.input);
    zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      const file = event.dataTransfer?.files[0];
      if (file) {
        void this.begin(file);
      }
    });
    this.element = h(
      "section",
      { class: "card upload", attrs: { id: "upload-panel" } },
      h("h2", {}, text.heading),
      zone,
      h("label", { class: "small" }, this.queueToggle, ` ${text.addToQueue}`),
      this.limits,
      h("div", { class: "row upload-progress" }, this.progress, this.cancelButton),
      this.status,
      this.pendingList,
    );
    this.showIdle();
    window.addEventListener("online", this.online);
  }

  start(): void {
    void this.showLimits();
    this.renderPending();
  }

  stop(): void {
    window.removeEventListener("online", this.online);
    // An upload left running here resumes after the next visit (its bytes are on the server).
    void this.upload?.abort(false);
  }

  private showIdle(): void {
    this.progress.hidden = true;
    this.cancelButton.hidden = true;
  }

  private async showLimits(): Promise<void> {
    try {
      const quota = await this.ctx.app.api.media.getUploadQuota({});
      this.limits.textContent = text.limits(formatBytes(Number(quota.maxFileBytes)), formatBytes(Number(quota.usedBytes)), formatBytes(Number(quota.quotaBytes)));
    } catch {
      this.limits.textContent = "";
    }
  }

  private renderPending(): void {
    const pending = loadPending().filter((entry) => entry.uploadUrl && !(this.file && sameFile(entry, this.file)));
    replace(
      this.pendingList,
      ...pending.map((entry) =>
        h(
          "li",
          { class: "small" },
          text.resumeHint(entry.name, percent(entry.sent, entry.size)),
          " ",
          button(text.forget, () => this.forget(entry), { class: "link small" }),
        ),
      ),
    );
  }

  private remember(file: File, uploadUrl: string, sent: number): void {
    const list = loadPending().filter((entry) => !sameFile(entry, file));
    list.push({ name: file.name, size: file.size, lastModified: file.lastModified, roomId: this.ctx.roomId, uploadUrl, sent });
    savePending(list);
  }

  private forgetFile(file: File): void {
    savePending(loadPending().filter((entry) => !sameFile(entry, file)));
  }

  private async forget(entry: Pending): Promise<void> {
    savePending(loadPending().filter((other) => other.uploadUrl !== entry.uploadUrl));
    const { Upload } = await import("tus-js-client");
    await Upload.terminate(entry.uploadUrl, {}).catch(() => undefined);
    this.renderPending();
    void this.showLimits();
  }

  private async begin(file: File): Promise<void> {
    if (this.upload) {
      this.status.textContent = text.busy;
      return;
    }
    this.file = file;
    this.input.value = "";
    const previous = loadPending().find((entry) => sameFile(entry, file));
    this.status.textContent = text.starting(file.name);
    this.progress.hidden = false;
    this.progress.value = percent(previous?.sent ?? 0, file.size);
    this.cancelButton.hidden = false;
    this.renderPending();
    const { Upload } = await import("tus-js-client");
    let lastSaved = 0;
    const upload: Upload = new Upload(file, {
      endpoint: "/media/uploads",
      uploadUrl: previous?.uploadUrl ?? null,
      chunkSize: CHUNK_BYTES,
      retryDelays: RETRY_DELAYS_MS,
      metadata: { filename: file.name, filetype: file.type, room: this.ctx.roomId },
      // Resumption is this module's own record (above), not tus-js-client's fingerprints.
      storeFingerprintForResuming: false,
      onUploadUrlAvailable: () => {
        if (upload.url) {
          this.remember(file, upload.url, previous?.sent ?? 0);
        }
      },
      onProgress: (sent, total) => {
        const done = percent(sent, total);
        this.progress.value = done;
        this.status.textContent = sent === total ? text.checking(file.name) : text.progress(file.name, done, formatBytes(sent), formatBytes(total));
        if (upload.url && performance.now() - lastSaved > 1_000) {
          lastSaved = performance.now();
          this.remember(file, upload.url, sent);
        }
      },
      onChunkComplete: (_chunk, accepted) => {
        if (upload.url) {
          this.remember(file, upload.url, accepted);
        }
      },
      onSuccess: ({ lastResponse }) => void this.finished(file, lastResponse.getHeader("Xiaowo-Media-Item-Id") ?? ""),
      onError: (error) => this.failed(file, error),
    });
    this.upload = upload;
    upload.start();
  }

  private async finished(file: File, mediaItemId: string): Promise<void> {
    this.forgetFile(file);
    this.upload = undefined;
    this.file = undefined;
    this.showIdle();
    try {
      const { mediaItem } = await this.ctx.app.api.media.getMediaItem({ mediaItemId, roomId: this.ctx.roomId });
      if (mediaItem) {
        this.status.textContent = text.done(mediaItem.title);
        await this.onUploaded(mediaItem, this.queueToggle.checked);
      }
    } catch (error) {
      this.status.textContent = describeError(error);
    }
    void this.showLimits();
  }

  private failed(file: File, error: Error | DetailedError): void {
    const response = "originalResponse" in error ? error.originalResponse : null;
    if (!response) {
      // No answer at all: the network went away. The bytes so far are on the server.
      this.status.textContent = text.offline;
      return;
    }
    const reason = response.getHeader("Xiaowo-Error") ?? "";
    this.status.textContent = text.reasons[reason] ?? (response.getBody() || text.failed);
    this.forgetFile(file);
    this.upload = undefined;
    this.file = undefined;
    this.showIdle();
    void this.showLimits();
  }

  private async cancel(): Promise<void> {
    const upload = this.upload;
    const file = this.file;
    this.upload = undefined;
    this.file = undefined;
    if (file) {
      this.forgetFile(file);
    }
    this.showIdle();
    this.status.textContent = text.cancelled;
    // Terminates it on the server: its bytes are deleted at once.
    await upload?.abort(true).catch(() => undefined);
    void this.showLimits();
    this.renderPending();
  }
}
