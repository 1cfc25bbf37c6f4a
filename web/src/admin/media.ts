// The console's media library: every item media-svc holds (the media folder's files and
// everyone's uploads) with its facts, search, rename and delete, the library's totals, and the
// uploads still in progress. Calls MediaAdminService with the console's token.

import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";

import type { AdminContext, MountedSection } from "../admin";
import { button, h, replace } from "../dom";
import { type MediaItem, Playability, Source, type Upload } from "../gen/xiaowo/media/v1/media_pb";
import { formatBytes, formatClock, formatMoment, formatNumber, type Shown, t, userText } from "../i18n";
import { confirmAction, field, openDialog } from "../ui";
import { pagedList } from "./lists";

const PAGE_SIZE = 50;

const when = (time: Timestamp | undefined): Shown => (time ? formatMoment(timestampDate(time)) : t("admin.never"));

function shortId(id: string): HTMLElement {
  return h("code", { class: "admin-id", attrs: { title: userText(id) } }, userText(id.slice(0, 8)));
}

/** The codecs and picture size as one line ("h264 · aac · 1920×1080"). */
function technical(item: MediaItem): Shown {
  const parts = [item.videoCodec, item.audioCodec].filter((codec) => codec !== "");
  if (item.width > 0 && item.height > 0) {
    parts.push(`${item.width}×${item.height}`);
  }
  return userText(parts.join(" · "));
}

function uploadRow(upload: Upload): HTMLElement {
  const length = Number(upload.lengthBytes);
  const percent = length > 0 ? Math.floor((Number(upload.offsetBytes) * 100) / length) : 0;
  return h(
    "li",
    { class: "admin-row", attrs: { "data-upload-id": upload.uploadId } },
    h(
      "div",
      { class: "admin-row-main" },
      h("p", { class: "admin-row-title" }, h("span", {}, userText(upload.fileName || upload.uploadId))),
      h("progress", { class: "admin-progress", attrs: { max: "100", value: String(percent), "aria-label": t("admin.media.uploadProgress", { percent: formatNumber(percent) }) } }),
      h(
        "p",
        { class: "admin-row-meta" },
        h("span", {}, t("admin.media.uploaded", { done: formatBytes(Number(upload.offsetBytes)), total: formatBytes(length) })),
        h("span", {}, t("admin.media.started", { time: when(upload.createTime) })),
        h("span", {}, t("admin.media.expires", { time: when(upload.expireTime) })),
        shortId(upload.userId),
      ),
    ),
  );
}

export function mountMedia(panel: HTMLElement, context: AdminContext): MountedSection {
  const search = h("input", { attrs: { id: "media-search", type: "search", maxlength: "100", autocomplete: "off", spellcheck: "false" } });
  const totals = h("p", { class: "admin-lead", attrs: { id: "media-totals" } });
  const uploads = h("ul", { class: "admin-list", attrs: { id: "media-uploads" } });
  const noUploads = h("p", { class: "admin-empty" }, t("admin.media.noUploads"));

  const rename = (item: MediaItem, row: HTMLElement): void => {
    const input = h("input", { attrs: { id: "media-rename", maxlength: "200", autocomplete: "off", required: "" } });
    input.value = item.title;
    const save = async (): Promise<void> => {
      try {
        const response = await context.api.media.renameLibraryItem({ mediaItemId: item.mediaItemId, title: input.value });
        dialog.close();
        row.replaceWith(render(response.mediaItem ?? item));
        context.notify(t("admin.media.renamed"));
      } catch (error) {
        context.fail(error);
      }
    };
    const form = h("form", { attrs: { id: "media-rename-form" } }, field(t("library.renameLabel"), input));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void save();
    });
    const dialog = openDialog({
      title: t("library.renameTitle", { title: userText(item.title) }),
      id: "media-rename-dialog",
      body: [form],
      actions: [
        button(t("action.cancel"), () => dialog.close(), { kind: "secondary" }),
        button(t("action.save"), save, { kind: "primary", attrs: { "data-action": "confirm" } }),
      ],
      initialFocus: input,
    });
  };

  const remove = async (item: MediaItem, row: HTMLElement): Promise<void> => {
    const title = userText(item.title);
    const confirmed = await confirmAction({
      title: t("library.deleteTitle", { title }),
      text: t("admin.media.deleteText"),
      confirm: t("library.delete"),
      danger: true,
      id: "media-delete-dialog",
    });
    if (!confirmed) {
      return;
    }
    try {
      await context.api.media.deleteLibraryItem({ mediaItemId: item.mediaItemId });
      row.remove();
      context.notify(t("admin.media.deleted", { title }));
      void items.reload();
    } catch (error) {
      context.fail(error);
    }
  };

  const render = (item: MediaItem): HTMLElement => {
    const convert = item.playability === Playability.NEEDS_CONVERSION;
    const origin = item.source === Source.DIRECTORY ? t("library.fromFolder") : t("admin.media.uploadedBy");
    const row: HTMLElement = h(
      "li",
      { class: "admin-row media-row", attrs: { "data-media-item-id": item.mediaItemId } },
      h(
        "div",
        { class: "admin-row-main" },
        h(
          "p",
          { class: "admin-row-title" },
          h("span", { class: "media-title" }, userText(item.title)),
          convert ? h("span", { class: "pill warn" }, t("library.needsConversion")) : null,
        ),
        h(
          "p",
          { class: "admin-row-meta" },
          h("span", {}, formatClock(Number(item.durationMs) / 1000)),
          h("span", {}, formatBytes(Number(item.sizeBytes))),
          h("span", {}, technical(item)),
          h("span", {}, origin),
          item.addedByUserId ? shortId(item.addedByUserId) : null,
          h("span", {}, t("admin.media.added", { time: when(item.createTime) })),
        ),
      ),
      h(
        "div",
        { class: "admin-row-actions" },
        button(t("library.rename"), () => rename(item, row), { kind: "quiet", small: true, attrs: { "data-action": "rename" } }),
        button(t("library.delete"), () => remove(item, row), { kind: "danger-quiet", small: true, attrs: { "data-action": "delete" } }),
      ),
    );
    return row;
  };

  // The first page also brings the library's totals and the uploads in progress.
  const items = pagedList(context, "media-list", async (token) => {
    const response = await context.api.media.listLibrary({ query: search.value.trim(), pageSize: PAGE_SIZE, pageToken: token });
    if (token === "") {
      replace(uploads, ...response.uploads.map(uploadRow));
      noUploads.hidden = response.uploads.length > 0;
      replace(totals, t("admin.media.totals", { count: Number(response.totalItems), size: formatBytes(Number(response.totalBytes)) }));
    }
    return { items: response.mediaItems, next: response.nextPageToken };
  }, render);
  noUploads.hidden = true;

  let debounce = 0;
  search.addEventListener("input", () => {
    window.clearTimeout(debounce);
    debounce = window.setTimeout(() => void items.reload(), 250);
  });

  replace(
    panel,
    h(
      "section",
      { class: "admin-block" },
      h(
        "div",
        { class: "admin-block-head" },
        h("div", { class: "admin-filters" }, field(t("admin.media.search"), search)),
        button(t("admin.refresh"), () => items.reload(), { kind: "secondary", small: true, attrs: { id: "media-refresh" } }),
      ),
      totals,
      items.element,
    ),
    h("section", { class: "admin-block" }, h("h2", {}, t("admin.media.uploads")), uploads, noUploads),
  );
  void items.reload();
  return {
    shown: () => void items.reload(),
    stop: () => window.clearTimeout(debounce),
  };
}
