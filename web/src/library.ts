// The media library as a source of the "Add a video" panel: the media folder's files, your
// uploads and those made in this room, with thumbnails, search, and buttons to play an item now
// or queue it. Your own uploads can be renamed and deleted here. Files browsers cannot play show
// their conversion (waiting, its progress, "Ready to start", converted, or why it failed), live
// from the page's conversion watch; they can be played and queued once their start is ready.

import { type MediaSourceHost, registerMediaSource } from "./addvideo";
import { ConversionStatus, conversionWatch, notPlayableReason, playsNow, unfinished } from "./conversion";
import { button, h, replace, setEnabled } from "./dom";
import { describeError } from "./errors";
import { type MediaItem, Playability, Source } from "./gen/xiaowo/media/v1/media_pb";
import { formatBytes, formatClock, t, userText } from "./i18n";
import { thumbnail } from "./thumbnail";
import { onUploaded } from "./upload";
import { confirmAction, field, openDialog } from "./ui";

const REFRESH_MS = 15_000;

export class LibraryPanel {
  readonly element: HTMLElement;
  private readonly list = h("ul", { class: "library", attrs: { id: "library" } });
  private readonly search: HTMLInputElement;
  private timer = 0;
  private query = "";
  private items: MediaItem[] = [];
  /** Each shown item's row and conversion status, to redraw one row when its conversion moves. */
  private readonly rows = new Map<string, { row: HTMLElement; status: ConversionStatus; plays: boolean }>();
  private unfollow: () => void = () => undefined;

  constructor(private readonly host: MediaSourceHost) {
    this.search = h("input", { attrs: { id: "library-search", type: "search", placeholder: t("library.search"), "aria-label": t("library.search"), maxlength: "100", autocomplete: "off" } });
    let debounce = 0;
    this.search.addEventListener("input", () => {
      window.clearTimeout(debounce);
      debounce = window.setTimeout(() => {
        this.query = this.search.value;
        void this.refresh();
      }, 250);
    });
    this.element = h(
      "section",
      { class: "library-panel", attrs: { id: "library-panel", "aria-labelledby": "library-title" } },
      h("h3", { attrs: { id: "library-title" } }, t("library.source")),
      this.search,
      this.list,
    );
    host.onChange(() => this.render());
  }

  start(): () => void {
    void this.refresh();
    this.timer = window.setInterval(() => {
      if (document.visibilityState === "visible") {
        void this.refresh();
      }
    }, REFRESH_MS);
    return onUploaded(() => void this.refresh());
  }

  stop(): void {
    window.clearInterval(this.timer);
    this.unfollow();
  }

  async refresh(): Promise<void> {
    try {
      const { mediaItems } = await this.host.api.media.listMediaItems({ roomId: this.host.roomId, query: this.query, pageSize: 100 });
      this.items = mediaItems;
      const watch = conversionWatch(this.host.api, this.host.roomId);
      for (const item of mediaItems) {
        watch.remember(item);
      }
      this.unfollow();
      const converting = mediaItems.filter((item) => item.playability === Playability.NEEDS_CONVERSION && unfinished(item.conversionState));
      this.unfollow = watch.follow(
        converting.map((item) => item.mediaItemId),
        (id, item) => this.conversionMoved(id, item),
      );
      this.render();
    } catch (error) {
      replace(this.list, h("li", { class: "error" }, describeError(error)));
    }
  }

  /** One item's conversion moved: its status is redrawn, its whole row when it starts or stops being playable. */
  private conversionMoved(mediaItemId: string, item: MediaItem | undefined): void {
    if (!item) {
      void this.refresh();
      return;
    }
    const index = this.items.findIndex((known) => known.mediaItemId === mediaItemId);
    if (index < 0) {
      return;
    }
    this.items[index] = item;
    const shown = this.rows.get(mediaItemId);
    if (shown && shown.plays === playsNow(item)) {
      shown.status.update(item);
    } else if (shown) {
      shown.row.replaceWith(this.row(item));
    }
  }

  private render(): void {
    this.rows.clear();
    if (this.items.length === 0) {
      replace(this.list, h("li", { class: "empty-state" }, this.query ? t("library.noMatch") : t("library.empty")));
      return;
    }
    replace(this.list, ...this.items.map((item) => this.row(item)));
  }

  private row(item: MediaItem): HTMLElement {
    const denied = this.host.deniedReason();
    const blocked = denied ?? notPlayableReason(item);
    const status = new ConversionStatus(item);
    const choice = { url: "", title: item.title, durationMs: item.durationMs, libraryItemId: item.mediaItemId };
    const play = button(t("library.playNow"), async () => void (await this.host.playNow(choice)), { kind: "primary", small: true, icon: "play", attrs: { "data-action": "play" } });
    const queue = button(
      t("library.addToQueue"),
      async () => {
        if (await this.host.addToQueue(choice)) {
          this.host.notify(t("library.queued", { title: userText(item.title) }));
        }
      },
      { kind: "secondary", small: true, icon: "queue", attrs: { "data-action": "queue" } },
    );
    for (const action of [play, queue]) {
      setEnabled(action, blocked === undefined, blocked);
    }
    const mine = item.source === Source.UPLOAD && item.addedByUserId === this.host.myUserId;
    const own = mine
      ? [
          button(t("library.rename"), () => this.rename(item), { kind: "quiet", small: true, attrs: { "data-action": "rename" } }),
          button(t("library.delete"), () => this.remove(item), { kind: "danger-quiet", small: true, attrs: { "data-action": "delete" } }),
        ]
      : [];
    const origin =
      item.source === Source.DIRECTORY ? t("library.fromFolder") : mine ? t("library.uploadedByYou") : t("library.uploadedBy", { name: this.host.nameOf(item.addedByUserId) });
    const row = h(
      "li",
      { class: "library-item", attrs: { "data-media-item-id": item.mediaItemId } },
      thumbnail(item.mediaItemId, item.thumbnailUrl),
      h(
        "div",
        { class: "library-body" },
        h("span", { class: "library-title" }, userText(item.title)),
        h(
          "span",
          { class: "library-facts" },
          h("span", {}, formatClock(Number(item.durationMs) / 1000)),
          h("span", {}, formatBytes(Number(item.sizeBytes))),
          h("span", {}, origin),
        ),
        status.element,
        h("span", { class: "actions" }, play, queue, ...own),
      ),
    );
    this.rows.set(item.mediaItemId, { row, status, plays: playsNow(item) });
    return row;
  }

  private rename(item: MediaItem): void {
    const input = h("input", { attrs: { id: "library-rename", maxlength: "200", autocomplete: "off", required: "" } });
    input.value = item.title;
    const save = async (): Promise<void> => {
      try {
        await this.host.api.media.renameMediaItem({ mediaItemId: item.mediaItemId, title: input.value });
        dialog.close();
        await this.refresh();
      } catch (error) {
        this.host.notify(describeError(error), "error");
      }
    };
    const form = h("form", { attrs: { id: "library-rename-form" } }, field(t("library.renameLabel"), input));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void save();
    });
    const dialog = openDialog({
      title: t("library.renameTitle", { title: userText(item.title) }),
      id: "library-rename-dialog",
      body: [form],
      actions: [
        button(t("action.cancel"), () => dialog.close(), { kind: "secondary" }),
        button(t("action.save"), save, { kind: "primary", attrs: { "data-action": "confirm" } }),
      ],
      initialFocus: input,
    });
  }

  private async remove(item: MediaItem): Promise<void> {
    const confirmed = await confirmAction({
      title: t("library.deleteTitle", { title: userText(item.title) }),
      text: t("library.deleteBody"),
      confirm: t("library.delete"),
      danger: true,
    });
    if (!confirmed) {
      return;
    }
    try {
      await this.host.api.media.deleteMediaItem({ mediaItemId: item.mediaItemId });
      this.host.notify(t("library.deleted"));
      await this.refresh();
    } catch (error) {
      this.host.notify(describeError(error), "error");
    }
  }
}

registerMediaSource("library", (slot: HTMLElement, host: MediaSourceHost) => {
  const panel = new LibraryPanel(host);
  slot.appendChild(panel.element);
  const forget = panel.start();
  return () => {
    forget();
    panel.stop();
  };
});
