// Subtitles for the library item the player shows: a button on the control bar opens a menu of
// the item's tracks (and Off) and three sizes. Cues are drawn by the browser itself from <track>
// elements (WebVTT from media-svc, signed for this viewer), so they follow the video's own time,
// which the sync controller keeps on the room's timeline: everyone sees the same cue at the same
// moment with nothing more to send. Each viewer's choice is theirs: the track per item and the
// size are remembered in this browser; an item nobody here chose a track for starts with the
// room's default, which the room's owner sets from the same menu. People who may (the item's
// uploader, the room's owner and moderators) add a subtitle file there too; the server converts
// it and says what it repaired or left out, or why it refused the file.

import type { RoomContext } from "./context";
import { button, h, replace, setText, uniqueId } from "./dom";
import { describeError } from "./errors";
import { type SubtitleTrack, SubtitleSource } from "./gen/xiaowo/media/v1/media_pb";
import { formatBytes, formatLanguage, language as uiLanguage, type MessageKey, type Shown, t, userText } from "./i18n";
import { field, openDialog } from "./ui";

/** The track chosen per library item ("off" for none), and the size for every item. */
const TRACK_SETTING = "xiaowo.subtitles.";
const SIZE_SETTING = "xiaowo.subtitleSize";
const OFF = "off";

export type SubtitleSize = "small" | "medium" | "large";
const SIZES: readonly [SubtitleSize, MessageKey][] = [
  ["small", "subtitles.small"],
  ["medium", "subtitles.medium"],
  ["large", "subtitles.large"],
];

/** The languages offered first when adding a file; any other BCP 47 tag can be typed. */
const LANGUAGES = ["zh-Hans", "zh-Hant", "en", "ja", "ko", "fr", "de", "es", "ru", "pt", "it", "th", "vi"];
const OTHER_LANGUAGE = "other";

function readSetting(key: string): string | null {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function writeSetting(key: string, value: string): void {
  try {
    localStorage.setItem(key, value);
  } catch {
    // Storage may be off (private mode): the choice lasts for this page.
  }
}

/** How a track is named in the menu: its label, else its language. */
export function trackName(track: Pick<SubtitleTrack, "label" | "language">): Shown {
  if (track.label.trim()) {
    return userText(track.label);
  }
  return track.language && track.language !== "und" ? formatLanguage(track.language) : t("subtitles.unknownLanguage");
}

export class Subtitles {
  /** The control bar's button and its menu. */
  readonly element: HTMLElement;
  private readonly toggleButton: HTMLButtonElement;
  private readonly panel: HTMLElement;
  private readonly trackList = h("div", { class: "subtitle-tracks", attrs: { role: "radiogroup", id: "subtitle-tracks" } });
  private readonly sizeList = h("div", { class: "subtitle-sizes segmented", attrs: { role: "radiogroup", id: "subtitle-sizes" } });
  private readonly actions = h("div", { class: "subtitle-actions" });
  private readonly note = h("p", { class: "hint subtitle-note", attrs: { id: "subtitle-note", role: "status" } });
  private readonly radioName = uniqueId("subtitle-track");
  private mediaItemId = "";
  private itemTitle = "";
  private tracks: SubtitleTrack[] = [];
  private roomDefault = "";
  private canEdit = false;
  private canSetDefault = false;
  private maxFileBytes = 0;
  /** The last track shown, for the `c` key to bring back. */
  private lastShown = "";
  private readonly elements = new Map<string, HTMLTrackElement>();
  /** Loads for a media item that is no longer the player's are dropped when they answer. */
  private generation = 0;
  private reloadedAfterError = false;

  constructor(
    private readonly ctx: RoomContext,
    private readonly video: HTMLVideoElement,
    private readonly stage: HTMLElement,
  ) {
    const panelId = uniqueId("subtitle-panel");
    this.toggleButton = button(t("subtitles.button"), () => this.setOpen(this.panel.hidden === true), {
      kind: "quiet",
      icon: "subtitles",
      iconOnly: true,
      attrs: { id: "subtitle-toggle", "aria-expanded": "false", "aria-controls": panelId, "aria-haspopup": "true" },
    });
    this.panel = h(
      "div",
      { class: "menu-list subtitle-panel", attrs: { id: panelId, role: "group", "aria-labelledby": `${panelId}-title` } },
      h("h3", { attrs: { id: `${panelId}-title` } }, t("subtitles.title")),
      this.trackList,
      h("h3", { attrs: { id: `${panelId}-size` } }, t("subtitles.size")),
      this.sizeList,
      this.actions,
      this.note,
    );
    this.sizeList.setAttribute("aria-labelledby", `${panelId}-size`);
    this.trackList.setAttribute("aria-labelledby", `${panelId}-title`);
    this.panel.hidden = true;
    this.element = h("div", { class: "menu subtitle-menu" }, this.toggleButton, this.panel);
    this.element.hidden = true;
    this.element.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !this.panel.hidden) {
        event.stopPropagation();
        this.setOpen(false);
        this.toggleButton.focus();
      }
    });
    this.applySize(this.size());
    this.renderSizes();
    // The browser may turn a track on by itself (one in the viewer's language, once loaded):
    // only the viewer's own choice shows.
    this.video.textTracks.addEventListener("change", () => this.enforceModes());
  }

  private enforceModes(): void {
    const chosen = this.chosen();
    for (const [trackId, element] of this.elements) {
      const mode = trackId === chosen ? "showing" : "disabled";
      if (element.track.mode !== mode) {
        element.track.mode = mode;
      }
    }
  }

  private readonly outside = (event: Event): void => {
    if (!this.element.contains(event.target as Node) && !(event.target instanceof Element && event.target.closest("dialog"))) {
      this.setOpen(false);
    }
  };

  private setOpen(open: boolean): void {
    this.panel.hidden = !open;
    this.toggleButton.setAttribute("aria-expanded", String(open));
    if (open) {
      document.addEventListener("click", this.outside, true);
      this.panel.querySelector<HTMLInputElement>("input:checked")?.focus();
      // Someone may have added a track since the video loaded.
      void this.refresh();
    } else {
      document.removeEventListener("click", this.outside, true);
    }
  }

  /** Shows the tracks of library item `mediaItemId` ("" for a link: no subtitles). */
  async load(mediaItemId: string, title: string): Promise<void> {
    this.clear();
    this.mediaItemId = mediaItemId;
    this.itemTitle = title;
    this.element.hidden = mediaItemId === "";
    this.reloadedAfterError = false;
    if (mediaItemId) {
      await this.refresh();
    }
  }

  /** Forgets the current item's tracks (the player unloads it). */
  clear(): void {
    this.generation += 1;
    for (const element of this.elements.values()) {
      element.remove();
    }
    this.elements.clear();
    this.tracks = [];
    this.roomDefault = "";
    this.canEdit = false;
    this.canSetDefault = false;
    this.mediaItemId = "";
    this.element.hidden = true;
    this.setOpen(false);
    replace(this.note);
  }

  /** Asks for the item's tracks again (new ones appear; signed URLs are renewed). */
  private async refresh(): Promise<void> {
    const mediaItemId = this.mediaItemId;
    if (!mediaItemId) {
      return;
    }
    const generation = this.generation;
    try {
      const listing = await this.ctx.app.api.media.listSubtitleTracks({ mediaItemId, roomId: this.ctx.roomId });
      if (generation !== this.generation || mediaItemId !== this.mediaItemId) {
        return;
      }
      this.tracks = listing.tracks.filter((track) => track.url !== "");
      this.roomDefault = listing.roomDefaultTrackId;
      this.canEdit = listing.canEdit;
      this.canSetDefault = listing.canSetRoomDefault;
      this.maxFileBytes = Number(listing.maxFileBytes);
      this.syncElements();
      this.apply();
    } catch (error) {
      if (generation === this.generation) {
        setText(this.note, describeError(error));
      }
    }
  }

  /** One <track> per track, in the menu's order; a renewed URL replaces the old element. */
  private syncElements(): void {
    const wanted = new Set(this.tracks.map((track) => track.trackId));
    for (const [trackId, element] of this.elements) {
      if (!wanted.has(trackId)) {
        element.remove();
        this.elements.delete(trackId);
      }
    }
    for (const track of this.tracks) {
      if (this.elements.has(track.trackId)) {
        continue;
      }
      const element = h("track", {
        attrs: { kind: "subtitles", src: track.url, srclang: track.language, label: trackName(track), "data-track-id": track.trackId },
      });
      // A URL that expired before the track was first shown: ask for fresh ones, once.
      element.addEventListener("error", () => void this.trackFailed());
      this.elements.set(track.trackId, element);
      this.video.appendChild(element);
    }
  }

  private async trackFailed(): Promise<void> {
    if (this.reloadedAfterError) {
      setText(this.note, t("subtitles.loadFailed"));
      return;
    }
    this.reloadedAfterError = true;
    for (const element of this.elements.values()) {
      element.remove();
    }
    this.elements.clear();
    await this.refresh();
  }

  /** The track this viewer sees: their own choice for the item, else the room's default. */
  chosen(): string {
    const saved = readSetting(TRACK_SETTING + this.mediaItemId);
    if (saved === OFF) {
      return "";
    }
    if (saved && this.tracks.some((track) => track.trackId === saved)) {
      return saved;
    }
    return this.tracks.some((track) => track.trackId === this.roomDefault) ? this.roomDefault : "";
  }

  private choose(trackId: string): void {
    writeSetting(TRACK_SETTING + this.mediaItemId, trackId || OFF);
    this.apply();
  }

  /** Subtitles off, or back on (the `c` key). */
  toggle(): void {
    if (!this.mediaItemId || this.tracks.length === 0) {
      return;
    }
    const current = this.chosen();
    const back = [this.lastShown, this.roomDefault].find((id) => id && this.tracks.some((track) => track.trackId === id)) ?? this.tracks[0]?.trackId ?? "";
    this.choose(current ? "" : back);
  }

  /** Shows the chosen track (only it: the others are not even fetched) and redraws the menu. */
  private apply(): void {
    const chosen = this.chosen();
    if (chosen) {
      this.lastShown = chosen;
    }
    this.enforceModes();
    this.toggleButton.classList.toggle("active", chosen !== "");
    this.toggleButton.setAttribute("aria-pressed", String(chosen !== ""));
    this.render(chosen);
  }

  private radio(value: string, checked: boolean, label: Shown, extra: Node | null, onPick: () => void): HTMLElement {
    const input = h("input", { attrs: { type: "radio", name: this.radioName, value } });
    input.checked = checked;
    input.addEventListener("change", () => {
      if (input.checked) {
        onPick();
      }
    });
    return h("label", { class: "subtitle-choice", attrs: { "data-track-id": value } }, input, h("span", { class: "subtitle-choice-text" }, label, extra));
  }

  private render(chosen: string): void {
    const choices = [
      this.radio(OFF, chosen === "", t("subtitles.off"), null, () => this.choose("")),
      ...this.tracks.map((track) => {
        const details = [
          track.label.trim() && track.language !== "und" ? formatLanguage(track.language) : null,
          track.source === SubtitleSource.EMBEDDED ? t("subtitles.embedded") : null,
        ].filter((detail): detail is Shown => detail !== null);
        const extra = h(
          "span",
          { class: "subtitle-choice-details" },
          ...details.map((detail) => h("span", { class: "muted" }, detail)),
          track.trackId === this.roomDefault ? h("span", { class: "pill" }, t("subtitles.roomDefault")) : null,
        );
        return this.radio(track.trackId, chosen === track.trackId, trackName(track), extra, () => this.choose(track.trackId));
      }),
    ];
    replace(this.trackList, ...choices, this.tracks.length === 0 ? h("p", { class: "hint" }, t("subtitles.none")) : null);
    const actions: HTMLElement[] = [];
    if (this.canSetDefault && chosen !== this.roomDefault) {
      actions.push(
        button(chosen ? t("subtitles.makeDefault") : t("subtitles.makeDefaultOff"), () => this.setRoomDefault(chosen), {
          kind: "secondary",
          small: true,
          attrs: { id: "subtitle-make-default" },
        }),
      );
    }
    if (this.canEdit) {
      actions.push(button(t("subtitles.add"), () => this.openAddDialog(), { kind: "quiet", small: true, icon: "plus", attrs: { id: "subtitle-add" } }));
    }
    replace(this.actions, ...actions);
  }

  private renderSizes(): void {
    const current = this.size();
    const name = uniqueId("subtitle-size");
    replace(
      this.sizeList,
      ...SIZES.map(([size, key]) => {
        const input = h("input", { attrs: { type: "radio", name, value: size, id: `subtitle-size-${size}` } });
        input.checked = size === current;
        input.addEventListener("change", () => {
          writeSetting(SIZE_SETTING, size);
          this.applySize(size);
        });
        return h("label", { class: "segment" }, input, h("span", {}, t(key)));
      }),
    );
  }

  private size(): SubtitleSize {
    const saved = readSetting(SIZE_SETTING);
    return saved === "small" || saved === "large" ? saved : "medium";
  }

  private applySize(size: SubtitleSize): void {
    this.stage.setAttribute("data-subtitle-size", size);
  }

  private async setRoomDefault(trackId: string): Promise<void> {
    try {
      const { roomDefaultTrackId } = await this.ctx.app.api.media.setRoomSubtitleDefault({ roomId: this.ctx.roomId, mediaItemId: this.mediaItemId, trackId });
      this.roomDefault = roomDefaultTrackId;
      const track = this.tracks.find((candidate) => candidate.trackId === roomDefaultTrackId);
      const text = track ? t("subtitles.defaultSet", { name: trackName(track) }) : t("subtitles.defaultOff");
      setText(this.note, text);
      this.ctx.app.notify(text);
      this.apply();
    } catch (error) {
      setText(this.note, describeError(error));
    }
  }

  /** The "Add subtitles" dialog: a file, its language and an optional name. */
  private openAddDialog(): void {
    this.setOpen(false);
    const file = h("input", { attrs: { id: "subtitle-file", type: "file", accept: ".srt,.vtt,.ass,.ssa,text/vtt,application/x-subrip", required: "" } });
    const language = h(
      "select",
      { attrs: { id: "subtitle-language" } },
      ...LANGUAGES.map((tag) => h("option", { attrs: { value: tag } }, formatLanguage(tag))),
      h("option", { attrs: { value: OTHER_LANGUAGE } }, t("subtitles.languageOther")),
    );
    language.value = uiLanguage() === "zh" ? "zh-Hans" : "en";
    const code = h("input", { attrs: { id: "subtitle-language-code", maxlength: "35", autocomplete: "off", placeholder: t("subtitles.languageCodePlaceholder") } });
    const codeField = field(t("subtitles.languageCode"), code);
    codeField.hidden = true;
    language.addEventListener("change", () => {
      codeField.hidden = language.value !== OTHER_LANGUAGE;
    });
    const label = h("input", { attrs: { id: "subtitle-label", maxlength: "100", autocomplete: "off" } });
    const status = h("p", { class: "subtitle-add-status", attrs: { id: "subtitle-add-status", role: "alert" } });
    const hint = this.maxFileBytes > 0 ? t("subtitles.fileHint", { size: formatBytes(this.maxFileBytes) }) : undefined;
    const form = h(
      "form",
      { attrs: { id: "subtitle-add-form" } },
      field(t("subtitles.file"), file, hint),
      field(t("subtitles.language"), language),
      codeField,
      field(t("subtitles.label"), label, t("subtitles.labelHint")),
      status,
    );
    const submit = button(t("subtitles.submit"), () => this.addFile(file, language.value === OTHER_LANGUAGE ? code.value : language.value, label.value, status, dialog.close), {
      kind: "primary",
      attrs: { id: "subtitle-add-submit" },
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      submit.click();
    });
    const dialog = openDialog({
      title: t("subtitles.addTitle", { title: userText(this.itemTitle) }),
      id: "subtitle-add-dialog",
      body: [form],
      actions: [button(t("action.cancel"), () => dialog.close(), { kind: "secondary" }), submit],
      initialFocus: file,
    });
  }

  private async addFile(input: HTMLInputElement, language: string, label: string, status: HTMLElement, close: () => void): Promise<void> {
    const file = input.files?.[0];
    if (!file) {
      setText(status, t("subtitles.chooseFile"));
      return;
    }
    if (this.maxFileBytes > 0 && file.size > this.maxFileBytes) {
      setText(status, t("subtitles.error.tooLarge", { size: formatBytes(this.maxFileBytes) }));
      return;
    }
    setText(status, t("subtitles.adding", { name: userText(file.name) }));
    try {
      const content = new Uint8Array(await file.arrayBuffer());
      const added = await this.ctx.app.api.media.addSubtitleTrack({ mediaItemId: this.mediaItemId, roomId: this.ctx.roomId, language, label, content });
      const track = added.track;
      if (!track) {
        return;
      }
      const sentences = [t("subtitles.added", { name: trackName(track), count: track.cueCount })];
      if (added.repairedCueCount > 0) {
        sentences.push(t("subtitles.repaired", { count: added.repairedCueCount }));
      }
      if (added.skippedCueCount > 0) {
        sentences.push(t("subtitles.skipped", { count: added.skippedCueCount }));
      }
      const summary = sentences.reduce((first, second) => t("subtitles.join", { first, second }));
      close();
      // The person who added a track sees it at once.
      writeSetting(TRACK_SETTING + this.mediaItemId, track.trackId);
      await this.refresh();
      setText(this.note, summary);
      this.ctx.app.notify(summary);
    } catch (error) {
      setText(status, describeError(error));
    }
  }
}
