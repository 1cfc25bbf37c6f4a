// "Add a video": the first thing an empty room offers, and the top of the queue tab once
// something plays. A pasted link plays now or joins the queue; other sources (uploads, the
// server's media library) mount into the panel's `media-sources` slot through
// `registerMediaSource`, so that they appear in every room without this file knowing them.

import type { Api } from "./api";
import { button, h, replace, setEnabled, setText } from "./dom";
import { type Shown, t } from "./i18n";
import { field } from "./ui";

/** A video to play or queue. */
export interface MediaChoice {
  url: string;
  title: string;
  /** Length in milliseconds, 0 when unknown (the players learn it). */
  durationMs?: bigint;
  /** A media library item (then `url` is empty: each viewer gets a signed URL of their own). */
  libraryItemId?: string;
}

/** What a media source gets from the room it is mounted in. */
export interface MediaSourceHost {
  api: Api;
  roomId: string;
  /** Loads `media` for everyone now; false when the room refused (the person was told why). */
  playNow: (media: MediaChoice) => Promise<boolean>;
  /** Appends `media` to the queue; false when the room refused (the person was told why). */
  addToQueue: (media: MediaChoice) => Promise<boolean>;
  /** Why the caller may not change what plays, or undefined when they may. */
  deniedReason: () => Shown | undefined;
  /** Calls `listener` whenever `deniedReason` may have changed. */
  onChange: (listener: () => void) => void;
  notify: (text: Shown, kind?: "error" | "info") => void;
  /** The person's own user id, and anyone's name, for saying who added what. */
  myUserId: string;
  nameOf: (userId: string) => Shown;
}

/** Mounts a media source into `slot`; returns what to run when the room page closes. */
export type MediaSourceMount = (slot: HTMLElement, host: MediaSourceHost) => (() => void) | void;

const sources: { id: string; mount: MediaSourceMount }[] = [];

/**
 * Adds a way to pick a video (e.g. "Upload a file", "From the library") to every room's
 * "Add a video" panel. Call once per source at module load; a second call with the same id
 * replaces the first.
 */
export function registerMediaSource(id: string, mount: MediaSourceMount): void {
  const existing = sources.findIndex((source) => source.id === id);
  if (existing >= 0) {
    sources.splice(existing, 1);
  }
  sources.push({ id, mount });
}

export class AddVideo {
  readonly element: HTMLElement;
  readonly url = h("input", { attrs: { id: "media-url", type: "url", inputmode: "url", autocomplete: "off", placeholder: t("add.urlPlaceholder"), required: "" } });
  readonly title = h("input", { attrs: { id: "media-title", maxlength: "200", autocomplete: "off", placeholder: t("add.titlePlaceholder") } });
  private readonly playNowButton: HTMLButtonElement;
  private readonly addButton: HTMLButtonElement;
  private readonly heading = h("h2", { attrs: { id: "add-video-title" } }, t("add.title"));
  private readonly lead = h("p", { class: "hint" });
  private readonly reason = h("p", { class: "notice small", attrs: { id: "add-video-reason" } });
  private readonly sourcesSlot = h("div", { class: "media-sources", attrs: { id: "media-sources", "data-slot": "media-sources" } });
  private readonly unmounts: (() => void)[] = [];

  constructor(private readonly host: MediaSourceHost) {
    this.playNowButton = button(t("add.playNow"), () => this.submit("play"), { kind: "primary", icon: "play", attrs: { id: "media-play-now" } });
    this.addButton = button(t("add.addToQueue"), () => this.submit("queue"), { kind: "secondary", icon: "queue", attrs: { id: "media-add" } });
    const form = h(
      "form",
      { class: "add-video-form", attrs: { id: "media-form", novalidate: "" } },
      field(t("add.urlLabel"), this.url),
      field(t("add.titleLabel"), this.title),
      h("div", { class: "row" }, this.playNowButton, this.addButton),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.submit("play");
    });
    this.element = h("section", { class: "add-video", attrs: { id: "add-video", "aria-labelledby": "add-video-title" } }, this.heading, this.lead, this.reason, form, this.sourcesSlot);
    for (const source of sources) {
      const slot = h("div", { class: "media-source", attrs: { "data-source": source.id } });
      this.sourcesSlot.appendChild(slot);
      const unmount = source.mount(slot, host);
      if (unmount) {
        this.unmounts.push(unmount);
      }
    }
    this.sourcesSlot.hidden = sources.length === 0;
    host.onChange(() => this.render());
    this.render();
  }

  /** Shown as the room's first step (large) or above the queue (compact). */
  setMode(mode: "empty" | "queue"): void {
    this.element.classList.toggle("compact", mode === "queue");
    setText(this.heading, mode === "empty" ? t("add.title") : t("add.titleMore"));
    setText(this.lead, mode === "empty" ? t("add.leadEmpty") : t("add.lead"));
  }

  render(): void {
    const denied = this.host.deniedReason();
    for (const control of [this.url, this.title, this.playNowButton, this.addButton]) {
      setEnabled(control, denied === undefined, denied);
    }
    replace(this.reason, denied ?? null);
    this.reason.hidden = denied === undefined;
  }

  stop(): void {
    for (const unmount of this.unmounts) {
      unmount();
    }
  }

  private async submit(how: "play" | "queue"): Promise<void> {
    const url = this.url.value.trim();
    if (url === "") {
      this.url.setAttribute("aria-invalid", "true");
      this.host.notify(t("error.field.urlMissing"), "error");
      this.url.focus();
      return;
    }
    this.url.removeAttribute("aria-invalid");
    const media = { url, title: this.title.value, durationMs: 0n };
    const done = how === "play" ? await this.host.playNow(media) : await this.host.addToQueue(media);
    if (done) {
      this.url.value = "";
      this.title.value = "";
      if (how === "queue") {
        this.host.notify(t("add.queued"));
      }
    }
  }
}
