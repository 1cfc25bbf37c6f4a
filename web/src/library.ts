// The media library in a room: the media folder's files, your uploads and those made in this
// room, with thumbnails, search, and buttons to play an item now or queue it. Your own uploads
// can be renamed and deleted here.

import { describeError } from "./api";
import type { RoomContext } from "./context";
import { button, formatDuration, h, replace } from "./dom";
import { type MediaItem, Playability, Source } from "./gen/xiaowo/media/v1/media_pb";
import type { NowPlaying } from "./gen/xiaowo/sync/v1/sync_pb";
import { formatBytes, pick } from "./lang";
import type { Player } from "./player";

export const LIBRARY_TEXT = {
  en: {
    heading: "Library",
    search: "Search the library",
    empty: "Nothing here yet: upload a video, or put files in the server's media folder.",
    noMatch: "Nothing matches.",
    playNow: "Play now",
    addToQueue: "Add to queue",
    rename: "Rename",
    renamePrompt: "New title",
    delete: "Delete",
    deleteConfirm: (title: string) => `Delete “${title}” from the library for everyone?`,
    deleted: "Deleted.",
    queued: (title: string) => `“${title}” is in the queue.`,
    needsConversion: "needs conversion",
    needsConversionReason: "Browsers cannot play this file until it is converted.",
    fromFolder: "media folder",
    uploadedByYou: "your upload",
    uploadedBy: (name: string) => `uploaded by ${name}`,
    nowPlaying: (title: string) => `Now playing: ${title}`,
    nowPaused: (title: string) => `Paused: ${title}`,
  },
  zh: {
    heading: "媒体库",
    search: "搜索媒体库",
    empty: "还没有内容：上传一个视频，或把文件放进服务器的媒体文件夹。",
    noMatch: "没有匹配的内容。",
    playNow: "立即播放",
    addToQueue: "加入队列",
    rename: "重命名",
    renamePrompt: "新标题",
    delete: "删除",
    deleteConfirm: (title: string) => `要为所有人从媒体库删除「${title}」吗？`,
    deleted: "已删除。",
    queued: (title: string) => `「${title}」已加入队列。`,
    needsConversion: "需要转换",
    needsConversionReason: "此文件需转换后浏览器才能播放。",
    fromFolder: "媒体文件夹",
    uploadedByYou: "你的上传",
    uploadedBy: (name: string) => `${name} 上传`,
    nowPlaying: (title: string) => `正在播放：${title}`,
    nowPaused: (title: string) => `已暂停：${title}`,
  },
};

const text = pick(LIBRARY_TEXT);
const REFRESH_MS = 15_000;

/** A library item's thumbnail; it hides itself when there is none (yet). */
export function thumbnail(libraryItemId: string, url = ""): HTMLImageElement {
  const image = h("img", {
    class: "thumb",
    attrs: { src: url || `/media/${encodeURIComponent(libraryItemId)}/thumbnail`, alt: "", loading: "lazy", "data-library-item-id": libraryItemId },
  });
  image.addEventListener("error", () => image.classList.add("missing"));
  return image;
}

/** What a room plays, for room lists: the thumbnail of a library item and its title. */
export function nowPlayingLine(nowPlaying: NowPlaying | undefined): HTMLElement | null {
  const media = nowPlaying?.media;
  if (!nowPlaying || !media) {
    return null;
  }
  const title = media.title || media.url;
  return h(
    "div",
    { class: "now-playing-line muted small" },
    media.libraryItemId ? thumbnail(media.libraryItemId) : null,
    nowPlaying.paused ? text.nowPaused(title) : text.nowPlaying(title),
  );
}

export class LibraryPanel {
  readonly element: HTMLElement;
  private readonly list = h("ul", { class: "library", attrs: { id: "library" } });
  private readonly search: HTMLInputElement;
  private timer = 0;
  private query = "";

  constructor(
    private readonly ctx: RoomContext,
    private readonly player: Player,
  ) {
    this.search = h("input", { attrs: { id: "library-search", type: "search", placeholder: text.search, "aria-label": text.search, maxlength: "100" } });
    let debounce = 0;
    this.search.addEventListener("input", () => {
      window.clearTimeout(debounce);
      debounce = window.setTimeout(() => {
        this.query = this.search.value;
        void this.refresh();
      }, 250);
    });
    this.element = h("section", { class: "card", attrs: { id: "library-panel" } }, h("h2", {}, text.heading), this.search, this.list);
    ctx.onChange(() => void this.refresh());
  }

  start(): void {
    void this.refresh();
    this.timer = window.setInterval(() => {
      if (document.visibilityState === "visible") {
        void this.refresh();
      }
    }, REFRESH_MS);
  }

  stop(): void {
    window.clearInterval(this.timer);
  }

  async refresh(): Promise<void> {
    try {
      const { mediaItems } = await this.ctx.app.api.media.listMediaItems({ roomId: this.ctx.roomId, query: this.query, pageSize: 100 });
      this.render(mediaItems);
    } catch (error) {
      replace(this.list, h("li", { class: "error" }, describeError(error)));
    }
  }

  private render(items: MediaItem[]): void {
    if (items.length === 0) {
      replace(this.list, h("li", { class: "muted" }, this.query ? text.noMatch : text.empty));
      return;
    }
    replace(this.list, ...items.map((item) => this.row(item)));
  }

  private row(item: MediaItem): HTMLElement {
    const denied = this.ctx.controlDeniedReason();
    const convert = item.playability === Playability.NEEDS_CONVERSION;
    const blocked = denied ?? (convert ? text.needsConversionReason : undefined);
    const add = (now: boolean) => async () => {
      const done = await this.player.addLibraryItem(item, now);
      if (done && !now) {
        this.ctx.app.notify(text.queued(item.title));
      }
    };
    const actions: HTMLElement[] = [
      button(text.playNow, add(true), { class: "small", attrs: { "data-action": "play" } }),
      button(text.addToQueue, add(false), { class: "small", attrs: { "data-action": "queue" } }),
    ];
    for (const action of actions) {
      if (blocked) {
        (action as HTMLButtonElement).disabled = true;
        action.title = blocked;
      }
    }
    const mine = item.source === Source.UPLOAD && item.addedByUserId === this.ctx.myUserId;
    if (mine) {
      actions.push(
        button(text.rename, () => this.rename(item), { class: "link small", attrs: { "data-action": "rename" } }),
        button(text.delete, () => this.remove(item), { class: "link small", attrs: { "data-action": "delete" } }),
      );
    }
    const origin =
      item.source === Source.DIRECTORY ? text.fromFolder : mine ? text.uploadedByYou : text.uploadedBy(this.ctx.nameOf(item.addedByUserId));
    const facts = [formatDuration(Number(item.durationMs) / 1000), formatBytes(Number(item.sizeBytes)), origin];
    return h(
      "li",
      { attrs: { "data-media-item-id": item.mediaItemId } },
      thumbnail(item.mediaItemId, item.thumbnailUrl),
      h(
        "div",
        { class: "library-body" },
        h("span", { class: "library-title" }, item.title),
        h("span", { class: "muted small" }, facts.join(" · ")),
        convert ? h("span", { class: "badge warn" }, text.needsConversion) : null,
        h("span", { class: "actions" }, ...actions),
      ),
    );
  }

  private async rename(item: MediaItem): Promise<void> {
    const title = window.prompt(text.renamePrompt, item.title);
    if (title === null) {
      return;
    }
    try {
      await this.ctx.app.api.media.renameMediaItem({ mediaItemId: item.mediaItemId, title });
      await this.refresh();
    } catch (error) {
      this.ctx.app.notify(describeError(error), "error");
    }
  }

  private async remove(item: MediaItem): Promise<void> {
    if (!window.confirm(text.deleteConfirm(item.title))) {
      return;
    }
    try {
      await this.ctx.app.api.media.deleteMediaItem({ mediaItemId: item.mediaItemId });
      this.ctx.app.notify(text.deleted);
      await this.refresh();
    } catch (error) {
      this.ctx.app.notify(describeError(error), "error");
    }
  }
}
