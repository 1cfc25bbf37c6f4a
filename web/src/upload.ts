// Uploading a file into the room's library: picked or dropped, sent in chunks with the tus
// protocol (tus-js-client, loaded only when an upload starts), with a progress bar and a
// cancel. A dropped connection resumes by itself when the network is back; after a reload the
// unfinished upload is listed, and picking the same file again resumes it from the last byte
// the server stored.

import type { DetailedError, Upload } from "tus-js-client";

import { type MediaSourceHost, registerMediaSource } from "./addvideo";
import { conversionWatch, playsNow } from "./conversion";
import { button, h, replace, setText } from "./dom";
import { describeError } from "./errors";
import { ConversionState, type MediaItem } from "./gen/xiaowo/media/v1/media_pb";
import { formatBytes, formatNumber, type MessageKey, t, userText } from "./i18n";
import { checkbox } from "./ui";

/** What each refusal media-svc names (its `Xiaowo-Error` header) says to the person. */
const REASONS: Record<string, MessageKey> = {
  "not-media": "upload.reason.notMedia",
  damaged: "upload.reason.damaged",
  "probe-timeout": "upload.reason.probeTimeout",
  empty: "upload.reason.empty",
  "too-large": "upload.reason.tooLarge",
  quota: "upload.reason.quota",
  "too-many-uploads": "upload.reason.tooManyUploads",
  "disk-full": "upload.reason.diskFull",
  unauthenticated: "upload.reason.unauthenticated",
  forbidden: "upload.reason.forbidden",
};

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
  private readonly status = h("p", { class: "upload-status", attrs: { id: "upload-status", role: "status" } });
  private readonly limits = h("p", { class: "hint", attrs: { id: "upload-limits" } });
  private readonly pendingList = h("ul", { class: "pending-uploads", attrs: { id: "upload-pending" } });
  private readonly cancelButton: HTMLButtonElement;
  private upload: Upload | undefined;
  private file: File | undefined;
  private readonly online = (): void => {
    if (this.upload && this.file) {
      this.upload.start();
    }
  };

  constructor(private readonly host: MediaSourceHost) {
    this.input = h("input", { class: "visually-hidden", attrs: { id: "upload-file", type: "file", accept: "video/*,audio/*,.mkv,.avi,.mov,.webm,.mp4,.m4v,.ts,.flv,.wmv" } });
    this.input.addEventListener("change", () => {
      const file = this.input.files?.[0];
      if (file) {
        void this.begin(file);
      }
    });
    this.queueToggle = h("input", { attrs: { id: "upload-queue", type: "checkbox" } });
    this.queueToggle.checked = true;
    this.cancelButton = button(t("upload.cancel"), () => this.cancel(), { kind: "quiet", small: true, icon: "close", attrs: { id: "upload-cancel" } });
    const zone = h(
      "label",
      { class: "drop-zone", attrs: { id: "upload-drop", for: "upload-file" } },
      h("span", { class: "drop-zone-button" }, t("upload.chooseButton")),
      h("span", { class: "drop-zone-text" }, t("upload.choose")),
      this.input,
    );
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
      { class: "upload", attrs: { id: "upload-panel", "aria-labelledby": "upload-title" } },
      h("h3", { attrs: { id: "upload-title" } }, t("upload.source")),
      zone,
      this.limits,
      checkbox(t("upload.addToQueue"), this.queueToggle),
      h("div", { class: "upload-progress" }, this.progress, this.cancelButton),
      this.status,
      this.pendingList,
    );
    this.progress.setAttribute("aria-labelledby", "upload-status");
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
      const quota = await this.host.api.media.getUploadQuota({});
      setText(this.limits, t("upload.limits", { maxFile: formatBytes(Number(quota.maxFileBytes)), used: formatBytes(Number(quota.usedBytes)), quota: formatBytes(Number(quota.quotaBytes)) }));
    } catch {
      replace(this.limits);
    }
  }

  private renderPending(): void {
    const pending = loadPending().filter((entry) => entry.uploadUrl && !(this.file && sameFile(entry, this.file)));
    replace(
      this.pendingList,
      ...pending.map((entry) =>
        h(
          "li",
          {},
          t("upload.resumeHint", { name: userText(entry.name), percent: formatNumber(percent(entry.sent, entry.size)) }),
          button(t("upload.forget"), () => this.forget(entry), { kind: "quiet", small: true }),
        ),
      ),
    );
  }

  private remember(file: File, uploadUrl: string, sent: number): void {
    const list = loadPending().filter((entry) => !sameFile(entry, file));
    list.push({ name: file.name, size: file.size, lastModified: file.lastModified, roomId: this.host.roomId, uploadUrl, sent });
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
      setText(this.status, t("upload.busy"));
      return;
    }
    this.file = file;
    this.input.value = "";
    const previous = loadPending().find((entry) => sameFile(entry, file));
    setText(this.status, t("upload.starting", { name: userText(file.name) }));
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
      metadata: { filename: file.name, filetype: file.type, room: this.host.roomId },
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
        const name = userText(file.name);
        setText(this.status, sent === total ? t("upload.checking", { name }) : t("upload.progress", { name, percent: formatNumber(done), sent: formatBytes(sent), total: formatBytes(total) }));
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
      const { mediaItem } = await this.host.api.media.getMediaItem({ mediaItemId, roomId: this.host.roomId });
      if (mediaItem) {
        setText(this.status, t("upload.done", { title: userText(mediaItem.title) }));
        if (this.queueToggle.checked && this.host.deniedReason() === undefined) {
          if (playsNow(mediaItem)) {
            await this.host.addToQueue({ url: "", title: mediaItem.title, durationMs: mediaItem.durationMs, libraryItemId: mediaItem.mediaItemId });
          } else {
            setText(this.status, t("upload.doneConverting", { title: userText(mediaItem.title) }));
            this.queueWhenPlayable(mediaItem);
          }
        }
        for (const listener of uploadListeners) {
          listener();
        }
      }
    } catch (error) {
      setText(this.status, describeError(error));
    }
    void this.showLimits();
  }

  /** A file browsers cannot play joins the queue once its conversion's start is ready. */
  private queueWhenPlayable(mediaItem: MediaItem): void {
    const stop = conversionWatch(this.host.api, this.host.roomId).follow([mediaItem.mediaItemId], (_id, item) => {
      if (!item || item.conversionState === ConversionState.FAILED) {
        stop();
      } else if (playsNow(item)) {
        stop();
        void this.host.addToQueue({ url: "", title: item.title, durationMs: item.durationMs, libraryItemId: item.mediaItemId }).then((queued) => {
          if (queued) {
            setText(this.status, t("library.queued", { title: userText(item.title) }));
          }
        });
      }
    });
  }

  private failed(file: File, error: Error | DetailedError): void {
    const response = "originalResponse" in error ? error.originalResponse : null;
    if (!response) {
      // No answer at all: the network went away. The bytes so far are on the server.
      setText(this.status, t("upload.offline"));
      return;
    }
    const reason = response.getHeader("Xiaowo-Error") ?? "";
    const known = REASONS[reason];
    // The server's own sentence is English; a reason this page does not know gets its own words.
    setText(this.status, known ? t(known) : t("upload.failed"));
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
    setText(this.status, t("upload.cancelled"));
    // Terminates it on the server: its bytes are deleted at once.
    await upload?.abort(true).catch(() => undefined);
    void this.showLimits();
    this.renderPending();
  }
}

/** Called whenever an upload of this page became a library item (the library lists it). */
const uploadListeners = new Set<() => void>();

export function onUploaded(listener: () => void): () => void {
  uploadListeners.add(listener);
  return () => uploadListeners.delete(listener);
}

registerMediaSource("upload", (slot: HTMLElement, host: MediaSourceHost) => {
  const panel = new UploadPanel(host);
  slot.appendChild(panel.element);
  panel.start();
  return () => panel.stop();
});
