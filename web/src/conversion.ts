// Conversions to HLS as the room page shows them. One WatchMedia stream per room page follows
// every library item that some part of the page shows (the library, the queue, the player)
// while its conversion may still move; each part draws the same small status: a word, the
// progress and, once the start plays, "Ready to start" — or why the conversion failed.

import { Code } from "@connectrpc/connect";

import type { Api } from "./api";
import { h, replace, setLabel, setText } from "./dom";
import { errorCode } from "./errors";
import { ConversionState, type MediaItem, Playability } from "./gen/xiaowo/media/v1/media_pb";
import { formatNumber, type Shown, t, userText } from "./i18n";

/** Called with an item's newest state, or `undefined` when it went (deleted, or not visible). */
export type ConversionListener = (mediaItemId: string, item: MediaItem | undefined) => void;

/** Whether the conversion may still move. */
export function unfinished(state: ConversionState): boolean {
  return state === ConversionState.QUEUED || state === ConversionState.CONVERTING || state === ConversionState.PLAYABLE;
}

/** Whether the item plays now: browsers play it as it is, or its conversion's start is ready. */
export function playsNow(item: MediaItem): boolean {
  return (
    item.playability !== Playability.NEEDS_CONVERSION ||
    item.conversionState === ConversionState.PLAYABLE ||
    item.conversionState === ConversionState.COMPLETE
  );
}

/** Why the item cannot be played or queued yet; undefined when it can. */
export function notPlayableReason(item: MediaItem): Shown | undefined {
  if (playsNow(item)) {
    return undefined;
  }
  if (item.conversionState === ConversionState.FAILED) {
    return t("conversion.failedReason", { reason: item.conversionError });
  }
  return item.conversionState === ConversionState.UNSPECIFIED ? t("library.needsConversionReason") : t("conversion.notReadyReason");
}

/** How much is converted, 0 to 1. */
export function convertedShare(item: MediaItem): number {
  const duration = Number(item.durationMs);
  return duration > 0 ? Math.min(1, Math.max(0, Number(item.convertedMs) / duration)) : 0;
}

function percent(item: MediaItem): Shown {
  return formatNumber(convertedShare(item), { style: "percent", maximumFractionDigits: 0 });
}

const RETRY_MAX_MS = 15_000;

/** Follows the conversions of the items the page shows, over one stream. */
export class ConversionWatch {
  private readonly interests = new Map<number, { ids: Set<string>; listener: ConversionListener }>();
  private nextKey = 0;
  private readonly latest = new Map<string, MediaItem>();
  /** Items the server no longer shows this person. */
  private readonly gone = new Set<string>();
  private controller: AbortController | undefined;
  private watching = "";
  private timer = 0;
  private failures = 0;

  constructor(
    private readonly api: Api,
    private readonly roomId: string,
  ) {}

  /** Calls `listener` with each of `ids` as known now and on every change, until the returned function is called. */
  follow(ids: readonly string[], listener: ConversionListener): () => void {
    const key = this.nextKey++;
    this.interests.set(key, { ids: new Set(ids), listener });
    for (const id of ids) {
      const known = this.latest.get(id);
      if (known || this.gone.has(id)) {
        queueMicrotask(() => this.interests.get(key)?.listener(id, known));
      }
    }
    this.schedule(0);
    return () => {
      this.interests.delete(key);
      this.schedule(0);
    };
  }

  /** The newest state seen of an item. */
  get(mediaItemId: string): MediaItem | undefined {
    return this.latest.get(mediaItemId);
  }

  /** Takes what another call (e.g. ListMediaItems) said of an item. */
  remember(item: MediaItem): void {
    this.gone.delete(item.mediaItemId);
    if (Number(item.updateTime?.seconds ?? 0) >= Number(this.latest.get(item.mediaItemId)?.updateTime?.seconds ?? 0)) {
      this.latest.set(item.mediaItemId, item);
    }
  }

  /** Ids worth a stream: not seen yet, or seen unfinished. */
  private wanted(): string[] {
    const ids = new Set<string>();
    for (const { ids: followed } of this.interests.values()) {
      for (const id of followed) {
        const known = this.latest.get(id);
        if (!this.gone.has(id) && (!known || unfinished(known.conversionState))) {
          ids.add(id);
        }
      }
    }
    return [...ids].sort().slice(0, 100);
  }

  private schedule(delayMs: number): void {
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => this.reconcile(), delayMs);
  }

  private reconcile(): void {
    const ids = this.wanted();
    const key = ids.join(",");
    if (key === this.watching && this.controller) {
      return;
    }
    this.controller?.abort();
    this.controller = undefined;
    this.watching = key;
    if (ids.length > 0) {
      void this.run(ids);
    }
  }

  private async run(ids: string[]): Promise<void> {
    const controller = new AbortController();
    this.controller = controller;
    let retry = false;
    try {
      for await (const response of this.api.media.watchMedia({ mediaItemIds: ids, roomId: this.roomId }, { signal: controller.signal })) {
        this.failures = 0;
        const event = response.event;
        if (event.case === "mediaItem") {
          this.latest.set(event.value.mediaItemId, event.value);
          this.tell(event.value.mediaItemId, event.value);
        } else if (event.case === "removedMediaItemId") {
          this.latest.delete(event.value);
          this.gone.add(event.value);
          this.tell(event.value, undefined);
        }
      }
    } catch (error) {
      if (controller.signal.aborted) {
        return;
      }
      const code = errorCode(error);
      if (code === Code.NotFound) {
        // None of them is this person's to see.
        for (const id of ids) {
          this.gone.add(id);
          this.tell(id, undefined);
        }
      } else if (code !== Code.PermissionDenied && code !== Code.Unauthenticated && code !== Code.InvalidArgument) {
        retry = true;
      }
    } finally {
      if (this.controller === controller) {
        this.controller = undefined;
        this.watching = "";
      }
    }
    if (retry) {
      this.failures += 1;
      this.schedule(Math.min(RETRY_MAX_MS, 500 * 2 ** this.failures));
    } else {
      // Finished items drop out; what is still wanted (new ids) gets a new stream.
      this.schedule(0);
    }
  }

  private tell(id: string, item: MediaItem | undefined): void {
    for (const { ids, listener } of this.interests.values()) {
      if (ids.has(id)) {
        listener(id, item);
      }
    }
  }
}

const watches = new Map<string, ConversionWatch>();

/** The room page's one conversion watch (the library, the queue and the player share it). */
export function conversionWatch(api: Api, roomId: string): ConversionWatch {
  let watch = watches.get(roomId);
  if (!watch) {
    watch = new ConversionWatch(api, roomId);
    watches.set(roomId, watch);
  }
  return watch;
}

/** An item's conversion as a line (a word, its progress, a bar), redrawn in place. */
export class ConversionStatus {
  readonly element = h("span", { class: "conversion", attrs: { "data-state": "none" } });
  private readonly word = h("span", { class: "pill" });
  private readonly detail = h("span", { class: "conversion-detail" });
  private readonly bar = h("progress", { class: "conversion-bar", attrs: { max: "1", value: "0" } });

  constructor(item?: MediaItem) {
    this.element.append(this.word, this.detail, this.bar);
    this.element.hidden = true;
    if (item) {
      this.update(item);
    }
  }

  update(item: MediaItem): void {
    const state = item.playability === Playability.NEEDS_CONVERSION ? item.conversionState : undefined;
    this.element.hidden = state === undefined;
    if (state === undefined) {
      return;
    }
    const share = convertedShare(item);
    let word: Shown;
    let detail: Shown | undefined;
    let name: string;
    switch (state) {
      case ConversionState.QUEUED:
        [name, word] = ["queued", t("conversion.queued")];
        break;
      case ConversionState.CONVERTING:
        [name, word, detail] = ["converting", t("conversion.converting"), percent(item)];
        break;
      case ConversionState.PLAYABLE:
        [name, word, detail] = ["playable", t("conversion.readyToStart"), t("conversion.convertingPercent", { percent: percent(item) })];
        break;
      case ConversionState.COMPLETE:
        [name, word] = ["complete", t("conversion.complete")];
        break;
      case ConversionState.FAILED:
        [name, word, detail] = ["failed", t("conversion.failed"), userText(item.conversionError)];
        break;
      default:
        [name, word] = ["unknown", t("library.needsConversion")];
    }
    this.element.setAttribute("data-state", name);
    setText(this.word, word);
    replace(this.detail, detail ?? null);
    this.detail.hidden = detail === undefined;
    const moving = state === ConversionState.CONVERTING || state === ConversionState.PLAYABLE;
    this.bar.hidden = !moving;
    this.bar.value = share;
    setLabel(this.bar, "aria-label", t("conversion.progressLabel", { percent: percent(item) }));
  }
}
