// The player: an HTML5 <video> that follows the room's timeline from sync-svc's WatchRoom
// stream. The server's clock is mapped onto ours from GetClock samples and the stream's own
// timestamps (clock.ts); every tick, and at the instants it asks for, the sync controller
// (drift.ts) compares where the room is with where the video is and seeks, holds, nudges the
// rate or switches it. The player reports ready/buffering/ended and its measured offset with
// its uncertainty, and shows the controls the room's control mode allows. What people see of
// the sync is one indicator (in sync, catching up, buffering, waiting for someone); the numbers,
// with how far they may be off, are in its tooltip and behind "Advanced".

import { create } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";

import { AddVideo, type MediaChoice } from "./addvideo";
import { ClockSync, type ClockEstimate } from "./clock";
import { ConversionStatus, conversionWatch, convertedShare, playsNow } from "./conversion";
import type { RoomContext } from "./context";
import { button, h, icon, replace, setButtonLabel, setEnabled, setLabel, setText } from "./dom";
import { type DriftDecision, type DriftPriors, type DriftState, decideDrift, initialDriftState } from "./drift";
import { describeError, errorCode } from "./errors";
import { InOrder } from "./inorder";
import { loadKeyframes } from "./keyframes";
import type { KeyframeIndex } from "./seek";
import { judgeOffset, offsetDetail } from "./sync-text";
import {
  Action,
  type LoadError,
  LoadErrorKind,
  LoadErrorSchema,
  type Media,
  PlayerState,
  type RoomState,
  RoomStateSchema,
  type Watcher,
} from "./gen/xiaowo/sync/v1/sync_pb";
import { ConversionState, type MediaItem } from "./gen/xiaowo/media/v1/media_pb";
import { formatClock, formatList, formatNumber, type Shown, t, userText } from "./i18n";
import { thumbnail } from "./thumbnail";
import { checkSeeking, describeAddedLoadError, describeOwnLoadError, diagnose } from "./loaderror";
import { PresenceList } from "./presence";
import { ReconnectingStream, type StreamState } from "./stream";
import { positionAt, startTimerDelayMs, startsIn, type Timeline } from "./timeline";
import { Subtitles } from "./subtitles";
import { checkbox } from "./ui";

const TICK_MS = 250;
const REPORT_EVERY_MS = 2_000;
/** Loading this long without a byte arriving is shown with its reason. */
const SLOW_SERVER_MS = 15_000;
const NUDGE_SETTING = "xiaowo.nudge";
/** What this device learned about its seeks and start/switch latencies (the next media's priors). */
const SYNC_DEVICE_SETTING = "xiaowo.syncDevice";
/** A clock estimate this close needs a new sample only every `CLOCK_INTERVAL_MS`… */
const CLOCK_GOOD_ENOUGH_MS = 5;
const CLOCK_INTERVAL_MS = 15_000;
/** …a less certain one every `CLOCK_RETRY_MS`. */
const CLOCK_RETRY_MS = 2_000;
/** Entries the sync-debug trace keeps. */
const TRACE_ENTRIES = 20_000;
const IGNORE_WAIT_SETTING = "xiaowo.ignoreWait";
const MUTED_SETTING = "xiaowo.muted";
/** The room URL's query parameter that exposes `window.__xiaowoSync` to measuring tools. */
const SYNC_DEBUG_PARAMETER = "sync-debug";
/** How far the arrow keys move the shared position, in seconds. */
export const SEEK_STEP_S = 5;
/** The MIME type of an HLS playlist (what media-svc hands out for a converted item). */
const HLS_CONTENT_TYPE = "application/vnd.apple.mpegurl";
/**
 * While a conversion is under way, the player holds when less than this much of it lies ahead of
 * the room's position (s), and goes on once this much more is converted: two segments, so that it
 * does not stop and start with every new one.
 */
const CONVERTED_HOLD_S = 1;
const CONVERTED_RESUME_S = 4;
/** How often a playback URL refused for a conversion is asked for again when its progress cannot be followed. */
const CONVERSION_RETRY_MS = 5_000;

/**
 * What the sync-quality benchmark (web/bench/sync-quality.mjs) reads from each page: the video,
 * and the clock offset and timeline the player steers by, so that every page can be sampled at
 * the same server-clock instant. Only present when the room is opened with `?sync-debug`.
 */
export interface SyncDebugHandle {
  video: HTMLVideoElement;
  /** server time − local time (`performance.timeOrigin + performance.now()`), in ms. */
  clockOffsetMs(): number | undefined;
  /** How far the true offset may be from `clockOffsetMs()`, in ms. */
  clockUncertaintyMs(): number | undefined;
  /**
   * What the player saw and did, oldest first: clock samples, and every look of the controller
   * with its commands (the benchmark keeps some as test fixtures).
   */
  trace(): readonly SyncTraceEntry[];
  /** Where the room's timeline is at server time `serverTime` (ms); undefined without media. */
  expectedPosition(serverTime: number): number | undefined;
  /** The version of the room's state the player follows (0 before the first). */
  stateVersion(): number;
}

export type SyncTraceEntry =
  | { kind: "exchange"; clientSend: number; serverReceive: number; serverSend: number; clientReceive: number }
  | { kind: "oneWay"; serverSend: number; clientReceive: number }
  | {
      kind: "look";
      /** performance.now(), ms. */
      at: number;
      serverNow: number;
      expected: number;
      position: number;
      rate: number;
      paused: boolean;
      mode: DriftState["mode"];
      commands: DriftDecision["commands"];
      plan?: DriftDecision["plan"];
      latencies: DriftState["latencies"];
      nudge: number;
      trim: number;
    };

type DebugWindow = Window & { __xiaowoSync?: SyncDebugHandle };

/** A monotonic clock on the epoch's scale, in milliseconds: wall-clock jumps do not move it. */
function localNow(): number {
  return performance.timeOrigin + performance.now();
}

/** How this device is doing against the room, for the indicator. */
type SyncStatus =
  | { kind: "starting"; seconds: number }
  | { kind: "waiting"; names: string[] }
  | { kind: "buffering" }
  | { kind: "slow"; seconds: number }
  | { kind: "failed" }
  | { kind: "converting" }
  | { kind: "catchingUp" }
  | { kind: "inSync" }
  | { kind: "unsure" }
  | { kind: "paused" };

export class Player {
  /** The stage: the screen (video, empty state, chat overlay) and the control bar. */
  readonly element: HTMLElement;
  /** The queue tab's content: "Add a video" (once something plays) and the queue. */
  readonly queueElement: HTMLElement;
  /** The room's playback setting ("wait for everyone"), for the settings tab. */
  readonly roomSettingsElement: HTMLElement;
  /** This device's sync settings, for the settings tab's "Advanced" disclosure. */
  readonly deviceSettingsElement: HTMLElement;
  /** Where the room page puts its layout buttons (theater, fullscreen, chat overlay). */
  readonly layoutControls = h("div", { class: "control-group layout-controls" });
  /** Where the chat goes over the video in theater and fullscreen modes. */
  readonly overlaySlot = h("div", { class: "chat-overlay", attrs: { id: "chat-overlay" } });
  readonly addVideo: AddVideo;
  /** The subtitle button and menu, and the <track> elements of the item playing. */
  readonly subtitles: Subtitles;
  /** The number of items in the queue, for the tab's badge. */
  readonly queueCount = h("span", { class: "count", attrs: { id: "queue-count" } });
  private readonly video: HTMLVideoElement;
  private readonly screen: HTMLElement;
  private readonly emptyState = h("div", { class: "screen-empty", attrs: { id: "no-media" } });
  private readonly screenMessage = h("div", { class: "screen-message", attrs: { id: "screen-message", role: "alert" } });
  /** What a conversion still under way means for this viewer ("converted up to …"). */
  private readonly conversionMessage = h("div", { class: "screen-message conversion-message", attrs: { id: "conversion-message", role: "status" } });
  /** The converted part of the item, under the seek bar. */
  private readonly convertedPart = h("div", { class: "converted-part", attrs: { id: "converted-part", "aria-hidden": "true" } });
  private readonly syncIndicator = h("span", { class: "sync-indicator", attrs: { id: "sync-status", role: "status", tabindex: "0" } });
  /** The indicator's numbers, shown in "Advanced": this device's offset and its uncertainty. */
  private readonly offsetLine = h("p", { class: "hint sync-offset", attrs: { id: "sync-offset" } });
  private readonly nowPlaying = h("span", { class: "now-playing", attrs: { id: "now-playing" } });
  private readonly reason = h("p", { class: "control-reason", attrs: { id: "control-reason" } });
  /** The video plays but cannot follow the room's jumps (a server without Range support). */
  private readonly seekWarning = h("p", { class: "seek-warning", attrs: { id: "seek-warning", role: "status" } });
  private readonly seekBar: HTMLInputElement;
  private readonly timeLabel = h("span", { class: "time", attrs: { id: "time-label" } });
  private readonly playButton: HTMLButtonElement;
  private readonly rateSelect: HTMLSelectElement;
  private readonly waitToggle: HTMLInputElement;
  private readonly soundButton: HTMLButtonElement;
  private readonly nextButton: HTMLButtonElement;
  private readonly queueList = h("ol", { class: "queue", attrs: { id: "queue" } });
  private readonly queueSlot = h("div", { class: "queue-add" });
  private queueKey = "";

  private state: RoomState | undefined;
  private timeline: Timeline | undefined;
  private loadedMediaId = "";
  private readonly clock = new ClockSync(32);
  /** This page's playback commands, sent in the order given; one unanswered for 5 s no longer holds the next. */
  private readonly commands = new InOrder(5_000);
  private estimate: ClockEstimate | undefined;
  private drift: DriftState = initialDriftState(1, loadDevicePriors());
  private keyframes: KeyframeIndex | undefined;
  private keyframesFor = "";
  private nudgeEnabled = localStorage.getItem(NUDGE_SETTING) !== "off";
  private ignoreWait = localStorage.getItem(IGNORE_WAIT_SETTING) === "on";
  private measuredOffsetMs = 0;
  /** Set when the page is opened with `?sync-debug`. */
  private trace: SyncTraceEntry[] | undefined;
  private lastReportAt = 0;
  private lastReportedState = PlayerState.UNSPECIFIED;
  private endedMediaId = "";
  private seeking = false;
  /** The URL the video loads (a signed one for library items). */
  private currentUrl = "";
  /** Why the current media cannot play (or, for missing Range support, cannot seek). */
  private loadError: LoadError | undefined;
  private lastReportedError = "";
  /** A library item's URL was fetched again after an error (an expired URL): once per load. */
  private urlRefreshed = false;
  private lastDataAt = 0;
  /** Who added each media id this page has seen in the queue or as a change of media. */
  private readonly addedBy = new Map<string, string>();
  /** Load errors of others already told to the person who added the media. */
  private readonly toldErrors = new Set<string>();
  private readonly stream: ReconnectingStream;
  private readonly presence = new PresenceList();
  private readonly timers: number[] = [];
  private hls: { destroy(): void } | undefined;
  /** The end of what a growing HLS playlist lists (s); Infinity for a complete one or anything else. */
  private hlsEdge = Infinity;
  /** The room is past what is converted: the video holds until that part exists. */
  private convertHold = false;
  /** The current library item's conversion, followed while it matters. */
  private conversion: MediaItem | undefined;
  private unfollowConversion: () => void = () => undefined;
  /** The current media's playback URL was refused until its conversion's start is ready. */
  private waitingForConversion = false;
  /** The queue's library items' conversion statuses, by item id, and the ids followed. */
  private readonly queueStatuses = new Map<string, ConversionStatus[]>();
  private queueFollowed = "";
  private unfollowQueue: () => void = () => undefined;
  /** Wakes the controller at the instant it asked for (a start, a switch, a release, a nudge's end). */
  private wakeTimer = 0;
  private wakeAt = Infinity;
  private clockTimer = 0;
  private running = false;

  constructor(
    private readonly ctx: RoomContext,
    private readonly onWatchers: (watchers: Watcher[]) => void,
    onStreamState: (state: StreamState) => void,
  ) {
    this.video = h("video", { attrs: { id: "video", playsinline: "", preload: "auto" } });
    this.video.muted = localStorage.getItem(MUTED_SETTING) === "on";
    this.video.controls = false;
    // Rate nudges must not be heard as a change of pitch.
    this.video.preservesPitch = true;

    this.playButton = button(t("player.play"), () => this.togglePlay(), {
      kind: "primary",
      icon: "play",
      iconOnly: true,
      class: "play-toggle",
      attrs: { id: "play-toggle", "data-action": "play" },
    });
    this.seekBar = h("input", { class: "seek", attrs: { id: "seek", type: "range", min: "0", max: "0", step: "0.1", value: "0", "aria-label": t("player.position") } });
    this.seekBar.addEventListener("input", () => {
      this.seeking = true;
      setText(this.timeLabel, this.timeText(Number(this.seekBar.value)));
    });
    this.seekBar.addEventListener("change", () => {
      this.seeking = false;
      void this.seekTo(Number(this.seekBar.value));
    });
    this.rateSelect = h(
      "select",
      { class: "rate", attrs: { id: "rate", "aria-label": t("player.speed"), title: t("player.speed") } },
      ...["0.5", "0.75", "1", "1.25", "1.5", "2"].map((rate) => h("option", { attrs: { value: rate } }, t("player.rate", { rate: formatNumber(Number(rate)) }))),
    );
    this.rateSelect.value = "1";
    this.rateSelect.addEventListener("change", () => void this.setRate(Number(this.rateSelect.value)));
    this.waitToggle = h("input", { attrs: { id: "wait-toggle", type: "checkbox" } });
    this.waitToggle.addEventListener("change", () => void this.setWaitForEveryone(this.waitToggle.checked));
    this.soundButton = button(t("player.muteSound"), () => this.toggleSound(), { kind: "quiet", icon: "sound", iconOnly: true, attrs: { id: "mute-toggle" } });
    this.renderSound();

    const nudgeToggle = h("input", { attrs: { id: "nudge-toggle" } });
    nudgeToggle.type = "checkbox";
    nudgeToggle.checked = this.nudgeEnabled;
    nudgeToggle.addEventListener("change", () => {
      this.nudgeEnabled = nudgeToggle.checked;
      localStorage.setItem(NUDGE_SETTING, this.nudgeEnabled ? "on" : "off");
    });
    const ignoreWaitToggle = h("input", { attrs: { id: "ignore-wait-toggle" } });
    ignoreWaitToggle.type = "checkbox";
    ignoreWaitToggle.checked = this.ignoreWait;
    ignoreWaitToggle.addEventListener("change", () => {
      this.ignoreWait = ignoreWaitToggle.checked;
      localStorage.setItem(IGNORE_WAIT_SETTING, this.ignoreWait ? "on" : "off");
      void this.report(true);
    });
    this.deviceSettingsElement = h(
      "div",
      { class: "device-sync" },
      checkbox(t("advanced.smooth"), nudgeToggle, t("advanced.smoothHint")),
      checkbox(t("advanced.ignoreWait"), ignoreWaitToggle, t("advanced.ignoreWaitHint")),
      this.offsetLine,
    );
    this.roomSettingsElement = checkbox(t("settings.waitForEveryone"), this.waitToggle, t("settings.waitForEveryoneHint"));

    this.addVideo = new AddVideo({
      api: ctx.app.api,
      roomId: ctx.roomId,
      playNow: (media) => this.playNow(media),
      addToQueue: (media) => this.addToQueue(media),
      deniedReason: () => ctx.controlDeniedReason(),
      onChange: (listener) => ctx.onChange(listener),
      notify: ctx.app.notify,
      myUserId: ctx.myUserId,
      nameOf: (userId) => ctx.nameOf(userId),
    });

    this.screen = h("div", { class: "screen" }, this.video, this.emptyState, this.screenMessage, this.conversionMessage, this.overlaySlot);
    this.screenMessage.hidden = true;
    this.conversionMessage.hidden = true;
    this.convertedPart.hidden = true;
    // A click on the picture plays or pauses, as in every video player.
    this.video.addEventListener("click", () => {
      if (!this.playButton.disabled) {
        void this.togglePlay();
      }
    });
    this.subtitles = new Subtitles(ctx, this.video, this.screen);
    const controlBar = h(
      "div",
      { class: "control-bar", attrs: { role: "group", "aria-label": t("player.controls") } },
      this.playButton,
      this.timeLabel,
      h("div", { class: "seek-wrap" }, this.seekBar, this.convertedPart),
      h("div", { class: "control-group" }, this.soundButton, this.subtitles.element, this.rateSelect),
      this.layoutControls,
    );
    const info = h("div", { class: "stage-info" }, this.nowPlaying, this.syncIndicator);
    this.element = h("section", { class: "stage", attrs: { id: "stage", "aria-label": t("player.region") } }, this.screen, controlBar, info, this.seekWarning, this.reason);
    this.seekWarning.hidden = true;

    this.nextButton = button(t("queue.playNext"), () => this.playNext(), { kind: "secondary", small: true, icon: "next", attrs: { id: "queue-next" } });
    this.queueElement = h(
      "div",
      { class: "queue-panel" },
      this.queueSlot,
      h("div", { class: "panel-head" }, h("h2", {}, t("queue.title")), this.nextButton),
      this.queueList,
    );

    for (const event of ["waiting", "stalled", "playing", "canplay", "ended", "loadedmetadata"]) {
      this.video.addEventListener(event, () => void this.report(true));
    }
    this.video.addEventListener("loadedmetadata", () => {
      this.renderSeekBar();
      void this.checkRange();
    });
    // A seek has landed: the controller decides at once whether to hold or play.
    for (const event of ["seeked", "canplay"]) {
      this.video.addEventListener(event, () => this.tick());
    }
    this.video.addEventListener("error", () => void this.onVideoError());
    for (const event of ["progress", "timeupdate", "loadeddata"]) {
      this.video.addEventListener(event, () => {
        this.lastDataAt = performance.now();
      });
    }
    this.video.addEventListener("playing", () => {
      this.urlRefreshed = false;
    });

    this.stream = new ReconnectingStream({
      onState: onStreamState,
      run: async (signal, live) => {
        // Presence counts only with an open stream; a fresh clock estimate helps after a network change.
        void this.sampleClock(3);
        for await (const response of this.ctx.app.api.sync.watchRoom({ roomId: this.ctx.roomId }, { signal })) {
          const receivedAt = localNow();
          this.stream.touch();
          live();
          if (response.serverTime) {
            // Every message bounds the clock offset from below (the server stamped it before it
            // left); until GetClock answers, that is the estimate.
            const oneWay = { serverSend: timestampMs(response.serverTime), clientReceive: receivedAt };
            this.estimate = this.clock.addOneWay(oneWay);
            this.trace?.push({ kind: "oneWay", ...oneWay });
          }
          switch (response.event.case) {
            case "snapshot":
              if (response.event.value.state) {
                this.applyState(response.event.value.state, true);
              }
              this.presence.replace(response.event.value.watchers);
              this.onWatchers(this.presence.list());
              this.tellAdder(response.event.value.watchers);
              break;
            case "state":
              this.applyState(response.event.value, false);
              break;
            case "presenceDelta":
              if (!this.presence.apply(response.event.value)) {
                // A delta went missing: a fresh stream starts from a snapshot again.
                this.stream.reconnectNow();
              }
              this.onWatchers(this.presence.list());
              this.tellAdder(response.event.value.watchers);
              break;
            case "presence":
            case "heartbeat":
            case undefined:
              break;
          }
        }
      },
    });
    ctx.onChange(() => this.renderControls());
    this.renderScreen();
    this.renderControls();
    if (new URLSearchParams(window.location.search).has(SYNC_DEBUG_PARAMETER)) {
      this.trace = [];
      (window as DebugWindow).__xiaowoSync = {
        video: this.video,
        clockOffsetMs: () => this.estimate?.offset,
        clockUncertaintyMs: () => this.estimate?.uncertainty,
        expectedPosition: (serverTime) => (this.timeline ? positionAt(this.timeline, serverTime) : undefined),
        stateVersion: () => Number(this.state?.version ?? 0n),
        trace: () => this.trace ?? [],
      };
    }
  }

  start(): void {
    this.running = true;
    this.stream.start();
    void this.sampleClock(8).finally(() => this.scheduleClockSample());
    this.timers.push(window.setInterval(() => this.tick(), TICK_MS));
  }

  stop(): void {
    this.stream.stop();
    for (const timer of this.timers) {
      window.clearInterval(timer);
    }
    window.clearTimeout(this.wakeTimer);
    this.running = false;
    window.clearTimeout(this.clockTimer);
    this.unload();
    this.subtitles.clear();
    this.unfollowQueue();
    this.addVideo.stop();
    delete (window as DebugWindow).__xiaowoSync;
  }

  /** The media id the player has loaded ("" for none). */
  currentMediaId(): string {
    return this.loadedMediaId;
  }

  /** Whether something is loaded (the room is not empty). */
  hasMedia(): boolean {
    return this.timeline !== undefined;
  }

  /** Whether the caller may play, pause and seek now. */
  canControl(): boolean {
    return this.ctx.controlDeniedReason() === undefined && this.timeline !== undefined;
  }

  /**
   * Loads a media item: a library item through a signed URL from media-svc, a URL natively
   * when the browser plays it, through hls.js (loaded only when needed) for HLS playlists
   * where it does not.
   */
  private async load(media: Media): Promise<void> {
    this.unload();
    void this.subtitles.load(media.libraryItemId, media.title || media.url);
    this.lastDataAt = performance.now();
    let url = media.url;
    let contentType = "";
    if (media.libraryItemId) {
      try {
        const signed = await this.ctx.app.api.media.createPlaybackUrl({ roomId: this.ctx.roomId, mediaItemId: media.libraryItemId });
        url = signed.url;
        contentType = signed.contentType;
      } catch (error) {
        if (media.mediaId === this.loadedMediaId && errorCode(error) === Code.FailedPrecondition) {
          // Not playable yet (or its conversion failed): the conversion says which, and when.
          this.waitingForConversion = true;
          this.followConversion(media);
          return;
        }
        if (media.mediaId === this.loadedMediaId) {
          const code = errorCode(error);
          const status = code === Code.NotFound ? 404 : code === Code.PermissionDenied ? 403 : 0;
          const kind = status ? LoadErrorKind.HTTP_STATUS : code === Code.FailedPrecondition ? LoadErrorKind.UNSUPPORTED : LoadErrorKind.NETWORK;
          this.fail(create(LoadErrorSchema, { mediaId: media.mediaId, kind, httpStatus: status, detail: describeError(error).slice(0, 200) }));
        }
        return;
      }
      if (media.mediaId !== this.loadedMediaId) {
        return;
      }
    }
    this.currentUrl = url;
    // The file's index once per media (a refreshed URL serves the same file).
    if (!this.urlRefreshed) {
      void this.loadKeyframes(url);
    }
    const isPlaylist =
      contentType === HLS_CONTENT_TYPE || (URL.canParse(url, window.location.href) && new URL(url, window.location.href).pathname.toLowerCase().endsWith(".m3u8"));
    if (contentType === HLS_CONTENT_TYPE) {
      // A conversion: followed for its progress (the native player's only measure of it).
      this.followConversion(media);
    }
    if (isPlaylist) {
      const { default: Hls } = await import("hls.js");
      if (media.mediaId !== this.loadedMediaId) {
        return;
      }
      // hls.js wherever the browser has Media Source Extensions, even where it plays HLS itself:
      // it says how far a growing (EVENT) playlist reaches, which holds the player at the
      // converted part's end rather than letting it jump to the live edge or hang.
      if (Hls.isSupported()) {
        const timeline = this.timeline;
        const hls = new Hls({
          // No worker: the content security policy allows no blob: workers.
          enableWorker: false,
          // A growing playlist looks live to hls.js, which would start at its newest segment:
          // start where the room is instead (the sync controller takes over from there).
          startPosition: timeline ? Math.max(0, positionAt(timeline, this.serverNow())) : 0,
        });
        hls.on(Hls.Events.LEVEL_UPDATED, (_event, { details }) => {
          this.hlsEdge = details.live ? details.edge : Infinity;
          this.renderSeekBar();
        });
        hls.on(Hls.Events.ERROR, (_event, data) => {
          if (data.fatal && media.mediaId === this.loadedMediaId) {
            void this.onHlsFailure(media, data.type === Hls.ErrorTypes.MEDIA_ERROR ? LoadErrorKind.DECODE : LoadErrorKind.NETWORK, data.details);
          }
        });
        hls.loadSource(url);
        hls.attachMedia(this.video);
        this.hls = hls;
        return;
      }
      if (this.video.canPlayType(HLS_CONTENT_TYPE) === "") {
        this.ctx.app.notify(t("player.noHls"), "error");
      }
    }
    this.video.src = url;
    this.video.load();
  }

  /** hls.js gave up: an expired library URL is fetched once more (as for a file), anything else reported. */
  private async onHlsFailure(media: Media, kind: LoadErrorKind, detail: string): Promise<void> {
    if (media.libraryItemId && !this.urlRefreshed) {
      this.urlRefreshed = true;
      await this.load(media);
      return;
    }
    this.fail(create(LoadErrorSchema, { mediaId: media.mediaId, kind, httpStatus: 0, detail: detail.slice(0, 200) }));
  }

  /**
   * Follows the current library item's conversion: a playback URL refused until its start is
   * ready is asked for again once it is; a failed conversion is this player's failure.
   */
  private followConversion(media: Media): void {
    this.unfollowConversion();
    const mediaId = media.mediaId;
    this.unfollowConversion = conversionWatch(this.ctx.app.api, this.ctx.roomId).follow([media.libraryItemId], (_id, item) => {
      if (mediaId !== this.loadedMediaId) {
        return;
      }
      this.conversion = item;
      if (this.waitingForConversion && item && playsNow(item)) {
        this.waitingForConversion = false;
        void this.load(media);
      } else if (this.waitingForConversion && item?.conversionState === ConversionState.FAILED) {
        this.waitingForConversion = false;
        const detail = t("conversion.failedReason", { reason: item.conversionError });
        this.fail(create(LoadErrorSchema, { mediaId, kind: LoadErrorKind.UNSUPPORTED, httpStatus: 0, detail: detail.slice(0, 200) }));
      } else if (this.waitingForConversion && !item) {
        // An item this person may play in the room but not look up (another room's upload
        // queued here): its URL is asked for again in a moment instead.
        window.setTimeout(() => {
          if (mediaId === this.loadedMediaId && this.waitingForConversion) {
            void this.load(media);
          }
        }, CONVERSION_RETRY_MS);
      }
      this.renderConversion();
    });
  }

  /** The end of the converted part the player may play up to (s); Infinity when all of it is there. */
  private convertedEnd(): number {
    if (this.hls) {
      return this.hlsEdge;
    }
    // The browser's own HLS player says nothing of a growing playlist: the conversion's progress,
    // less a segment that may not be listed yet, stands in.
    const item = this.conversion;
    if (this.currentUrl && item?.conversionState === ConversionState.PLAYABLE) {
      return Math.max(0, Number(item.convertedMs) / 1000 - 2);
    }
    return Infinity;
  }

  /** The converted part on the seek bar, and what waiting for the conversion means, on the picture. */
  private renderConversion(expected?: number): void {
    const end = this.convertedEnd();
    const duration = this.duration();
    const growing = Number.isFinite(end) && duration > 0;
    this.convertedPart.hidden = !growing;
    if (growing) {
      this.convertedPart.style.width = `${Math.min(100, (end / duration) * 100)}%`;
    }
    let message: Shown | undefined;
    if (this.waitingForConversion && this.conversion) {
      message = t("player.converting", { percent: formatNumber(convertedShare(this.conversion), { style: "percent", maximumFractionDigits: 0 }) });
    } else if (this.convertHold && expected !== undefined) {
      message = t("player.convertedUpTo", { converted: formatClock(Math.max(0, end)), position: formatClock(expected) });
    }
    this.conversionMessage.hidden = message === undefined;
    if (message !== undefined) {
      setText(this.conversionMessage, message);
    }
  }

  /** The video failed: an expired library URL is fetched once more, anything else reported. */
  private async onVideoError(): Promise<void> {
    const media = this.state?.timeline?.media;
    if (!media || media.mediaId !== this.loadedMediaId || !this.video.error) {
      return;
    }
    if (media.libraryItemId && !this.urlRefreshed) {
      this.urlRefreshed = true;
      await this.load(media);
      return;
    }
    const error = await diagnose(media.mediaId, this.currentUrl, this.video);
    if (media.mediaId === this.loadedMediaId) {
      this.fail(error);
    }
  }

  /** A server without Range support: the video plays, but seeks cannot follow the room. */
  private async checkRange(): Promise<void> {
    const mediaId = this.loadedMediaId;
    if (!mediaId || this.hls || this.loadError) {
      return;
    }
    const warning = await checkSeeking(mediaId, this.currentUrl, this.video);
    if (warning && mediaId === this.loadedMediaId) {
      this.fail(warning);
    }
  }

  private fail(error: LoadError): void {
    this.loadError = error;
    void this.report(true);
    this.renderScreen();
    this.tick();
  }

  /** The person who added the current media hears at once when someone cannot play it. */
  private tellAdder(watchers: Watcher[]): void {
    const media = this.state?.timeline?.media;
    if (!media || this.addedBy.get(media.mediaId) !== this.ctx.myUserId) {
      return;
    }
    for (const watcher of watchers) {
      const error = watcher.loadError;
      const key = `${watcher.userId}/${error?.mediaId}/${error?.kind}`;
      if (watcher.userId === this.ctx.myUserId || !error || error.mediaId !== media.mediaId || this.toldErrors.has(key)) {
        continue;
      }
      this.toldErrors.add(key);
      this.ctx.app.notify(describeAddedLoadError(this.ctx.nameOf(watcher.userId), media.title || media.url, error), "error");
    }
  }

  /** The player cannot play the current media at all (not merely seek in it). */
  private failed(): boolean {
    return this.loadError !== undefined && this.loadError.kind !== LoadErrorKind.NO_RANGE_SUPPORT;
  }

  private unload(): void {
    this.hls?.destroy();
    this.hls = undefined;
    this.hlsEdge = Infinity;
    this.convertHold = false;
    this.waitingForConversion = false;
    this.unfollowConversion();
    this.unfollowConversion = () => undefined;
    this.conversion = undefined;
    this.renderConversion();
    this.video.pause();
    this.video.removeAttribute("src");
    this.video.load();
    this.loadError = undefined;
    this.currentUrl = "";
  }

  reconnectNow(): void {
    this.stream.reconnectNow();
  }

  private async sampleClock(count: number): Promise<void> {
    for (let index = 0; index < count; index += 1) {
      const clientSend = localNow();
      try {
        const { receiveTime, sendTime } = await this.ctx.app.api.sync.getClock({});
        const clientReceive = localNow();
        if (receiveTime && sendTime) {
          const exchange = { clientSend, serverReceive: timestampMs(receiveTime), serverSend: timestampMs(sendTime), clientReceive };
          this.estimate = this.clock.add(exchange);
          this.trace?.push({ kind: "exchange", ...exchange });
        }
      } catch {
        return;
      }
      if (index + 1 < count) {
        await new Promise((resolve) => window.setTimeout(resolve, 200));
      }
    }
  }

  /**
   * One more clock sample soon while the estimate is uncertain (a loaded or slow device delays
   * most exchanges: it takes many to find one that was not), else every 15 s.
   */
  private scheduleClockSample(): void {
    if (!this.running) {
      return;
    }
    const uncertain = (this.estimate?.uncertainty ?? Infinity) > CLOCK_GOOD_ENOUGH_MS;
    this.clockTimer = window.setTimeout(
      () => void this.sampleClock(1).finally(() => this.scheduleClockSample()),
      uncertain ? CLOCK_RETRY_MS : CLOCK_INTERVAL_MS,
    );
  }

  private serverNow(): number {
    return localNow() + (this.estimate?.offset ?? 0);
  }

  /**
   * Takes a state from the stream or a command's answer; older versions are ignored unless the
   * stream says to replace everything (a snapshot).
   */
  private applyState(state: RoomState, replaceAll: boolean): void {
    if (!replaceAll && this.state && state.version < this.state.version) {
      return;
    }
    this.state = state;
    const timeline = state.timeline;
    const media = timeline?.media;
    for (const item of state.queue) {
      this.addedBy.set(item.itemId, item.addedByUserId);
    }
    if (media && state.lastAction === Action.CHANGE_MEDIA && !this.addedBy.has(media.mediaId)) {
      this.addedBy.set(media.mediaId, state.lastActionUserId);
    }
    if (!timeline || !media) {
      this.timeline = undefined;
      if (this.loadedMediaId) {
        this.loadedMediaId = "";
        this.unload();
        this.subtitles.clear();
      }
    } else {
      this.timeline = {
        paused: timeline.paused,
        position: Number(timeline.positionMs) / 1000,
        rate: timeline.rate || 1,
        anchorServerTime: timeline.anchorTime ? timestampMs(timeline.anchorTime) : this.serverNow(),
        leadInRate: timeline.leadInRate,
        duration: Number(media.durationMs) / 1000,
      };
      if (media.mediaId !== this.loadedMediaId) {
        this.loadedMediaId = media.mediaId;
        this.endedMediaId = "";
        // What this device learned stays; what this media taught starts afresh.
        this.drift = initialDriftState(this.timeline.rate, devicePriors(this.drift));
        this.urlRefreshed = false;
        void this.load(media);
      }
    }
    replace(this.nowPlaying, media?.libraryItemId ? thumbnail(media.libraryItemId) : null, media ? userText(media.title || media.url) : null);
    this.rateSelect.value = String(this.timeline?.rate ?? 1);
    this.waitToggle.checked = state.waitForEveryone;
    this.renderScreen();
    this.renderQueue();
    this.renderControls();
    this.tick();
  }

  private tick(): void {
    const timeline = this.timeline;
    if (!timeline) {
      this.renderSync(undefined);
      setText(this.timeLabel, this.timeText(0));
      return;
    }
    // The clock and the video are read back to back: anything in between (on a slow phone the
    // page can be suspended for tens of ms at any point) would count as sync error.
    const nowMs = performance.now();
    const position = this.video.currentTime;
    const serverNow = performance.timeOrigin + nowMs + (this.estimate?.offset ?? 0);
    const countdown = startsIn(timeline, serverNow);
    const expected = positionAt(timeline, serverNow);
    const duration = this.duration();

    // Past what is converted: hold (the room's position is not there yet) until it is.
    const converted = this.convertedEnd();
    const ahead = converted - expected;
    // Once holding, only a good stretch converted ahead releases it (also while the room waits
    // for this player, paused): otherwise each new segment would start and stop it again.
    const threshold = this.convertHold ? CONVERTED_RESUME_S : timeline.paused ? 0 : CONVERTED_HOLD_S;
    const hold = Number.isFinite(converted) && ahead < threshold;
    if (hold !== this.convertHold) {
      this.convertHold = hold;
      void this.report(true);
    }
    if (hold && !this.video.paused) {
      this.video.pause();
    }
    this.renderConversion(expected);

    if (!hold && this.video.readyState >= HTMLMediaElement.HAVE_METADATA) {
      const previous = this.drift;
      const decision = decideDrift(this.drift, {
        now: nowMs / 1000,
        serverNow,
        timeline,
        position,
        paused: this.video.paused,
        seeking: this.video.seeking,
        ready: this.video.readyState >= HTMLMediaElement.HAVE_FUTURE_DATA,
        duration,
        nudgeEnabled: this.nudgeEnabled,
        keyframes: this.keyframes,
        buffered: (at) => isBuffered(this.video.buffered, at),
        canFastSeek: typeof this.video.fastSeek === "function",
      });
      this.drift = decision.state;
      this.measuredOffsetMs = Math.round((position - expected) * 1000);
      this.trace?.push({
        kind: "look",
        at: nowMs,
        serverNow,
        expected,
        position,
        rate: this.video.playbackRate,
        paused: this.video.paused,
        mode: decision.state.mode,
        commands: decision.commands,
        latencies: decision.state.latencies,
        nudge: decision.state.nudge,
        trim: decision.state.appliedTrim,
        ...(decision.plan ? { plan: decision.plan } : {}),
      });
      if (this.trace && this.trace.length > TRACE_ENTRIES) {
        this.trace.splice(0, this.trace.length - TRACE_ENTRIES);
      }
      this.execute(decision);
      if (decision.state.seekModel !== previous.seekModel || decision.state.latencies !== previous.latencies) {
        saveDevicePriors(decision.state);
      }
    }

    if (!this.seeking) {
      this.seekBar.value = String(expected);
      setLabel(this.seekBar, "aria-valuetext", t("player.positionOf", { position: formatClock(expected), duration: formatClock(duration) }));
      setText(this.timeLabel, this.timeText(expected));
    }
    this.renderSync(this.syncStatus(timeline, countdown));
    this.renderPlayButton(timeline.paused);
    if (performance.now() - this.lastReportAt > REPORT_EVERY_MS) {
      void this.report(false);
    }
  }

  /** Does what the controller decided, and wakes it when it asked to be. */
  private execute(decision: DriftDecision): void {
    for (const command of decision.commands) {
      switch (command.kind) {
        case "rate":
          this.video.playbackRate = command.rate;
          break;
        case "pause":
          this.video.pause();
          break;
        case "play":
          // A player that cannot play this media stays still (its error is on the screen).
          if (!this.failed()) {
            this.video.play().catch((error: unknown) => this.playRefused(error));
          }
          break;
        case "seek":
          if (command.fast && typeof this.video.fastSeek === "function") {
            this.video.fastSeek(command.position);
          } else {
            this.video.currentTime = command.position;
          }
          break;
      }
    }
    const wakeAt = decision.wakeAt;
    if (wakeAt !== undefined && wakeAt * 1000 < this.wakeAt) {
      this.wakeAt = wakeAt * 1000;
      window.clearTimeout(this.wakeTimer);
      // Rounded up: a timer that fires a fraction early finds the instant still ahead.
      this.wakeTimer = window.setTimeout(() => {
        this.wakeAt = Infinity;
        this.tick();
      }, startTimerDelayMs(wakeAt - performance.now() / 1000));
    }
  }

  private async loadKeyframes(url: string): Promise<void> {
    this.keyframes = undefined;
    this.keyframesFor = url;
    // Only this site's media: elsewhere the content security policy refuses the requests.
    const sameOrigin = URL.canParse(url, window.location.href) && new URL(url, window.location.href).origin === window.location.origin;
    if (!sameOrigin || new URL(url, window.location.href).pathname.toLowerCase().endsWith(".m3u8")) {
      return;
    }
    const keyframes = await loadKeyframes(url);
    if (this.keyframesFor === url) {
      this.keyframes = keyframes;
    }
  }

  private timeText(position: number): Shown {
    const duration = this.duration();
    return t("player.time", { position: formatClock(position), duration: duration > 0 ? formatClock(duration) : t("player.unknownLength") });
  }

  private syncStatus(timeline: Timeline, countdown: number): SyncStatus {
    if (this.failed()) {
      return { kind: "failed" };
    }
    if (this.convertHold || this.waitingForConversion) {
      return { kind: "converting" };
    }
    if (countdown > 0) {
      return { kind: "starting", seconds: Math.ceil(countdown) };
    }
    const waitingFor = this.state?.waitingForUserIds ?? [];
    if (waitingFor.length > 0) {
      return { kind: "waiting", names: waitingFor.map((userId) => this.ctx.nameOf(userId)) };
    }
    if (this.video.readyState < HTMLMediaElement.HAVE_FUTURE_DATA && !timeline.paused) {
      const silent = performance.now() - this.lastDataAt;
      return silent > SLOW_SERVER_MS ? { kind: "slow", seconds: Math.round(silent / 1000) } : { kind: "buffering" };
    }
    if (timeline.paused) {
      return { kind: "paused" };
    }
    if (this.drift.mode !== "idle") {
      return { kind: "catchingUp" };
    }
    // "In sync" only when the offset is known to be small: with its uncertainty counted.
    switch (judgeOffset(this.measuredOffsetMs, this.offsetUncertaintyMs())) {
      case "in-sync":
        return { kind: "inSync" };
      case "catching-up":
        return { kind: "catchingUp" };
      case "unsure":
        return { kind: "unsure" };
    }
  }

  /** How far the measured offset may be off: the clock estimate's uncertainty, whole ms up. */
  private offsetUncertaintyMs(): number {
    const uncertainty = this.estimate?.uncertainty;
    return uncertainty === undefined ? 60_000 : Math.min(60_000, Math.max(1, Math.ceil(uncertainty)));
  }

  /** The indicator: a word or two for everyone, the numbers in its tooltip. */
  private renderSync(status: SyncStatus | undefined): void {
    this.syncIndicator.hidden = status === undefined;
    if (!status) {
      return;
    }
    let text: Shown;
    switch (status.kind) {
      case "starting":
        text = t("sync.starting", { count: status.seconds });
        break;
      case "waiting":
        text = t("sync.waiting", { names: formatList(status.names) });
        break;
      case "buffering":
        text = t("sync.buffering");
        break;
      case "slow":
        text = t("loadError.slow", { seconds: status.seconds });
        break;
      case "failed":
        text = t("member.cannotPlay");
        break;
      case "converting":
        text = t("sync.converting");
        break;
      case "catchingUp":
        text = t("sync.catchingUp");
        break;
      case "inSync":
        text = t("sync.inSync");
        break;
      case "unsure":
        text = t("sync.unsure");
        break;
      case "paused":
        text = t("sync.paused");
        break;
    }
    this.syncIndicator.setAttribute("data-state", status.kind);
    setText(this.syncIndicator, text);
    const rate = this.drift.appliedRate;
    const details = offsetDetail(this.measuredOffsetMs, this.offsetUncertaintyMs());
    setText(this.offsetLine, t("advanced.offset", { detail: details }));
    // Only a nudge is told: the trim that takes up a clock difference is a fraction of a percent.
    const speed = this.drift.nudge !== 0 ? t("sync.detailSpeed", { rate: formatNumber(rate, { maximumFractionDigits: 2 }) }) : null;
    setLabel(this.syncIndicator, "title", speed ? t("sync.detailJoin", { first: details, second: speed }) : details);
  }

  private renderPlayButton(paused: boolean): void {
    const action = paused ? "play" : "pause";
    if (this.playButton.getAttribute("data-action") !== action) {
      this.playButton.setAttribute("data-action", action);
      replace(this.playButton, icon(action));
      setButtonLabel(this.playButton, paused ? t("player.play") : t("player.pause"));
    }
  }

  private playRefused(error: unknown): void {
    // Browsers refuse audible autoplay without a gesture (e.g. after a reload): play muted and
    // let the person turn the sound on.
    if (error instanceof DOMException && error.name === "NotAllowedError" && !this.video.muted) {
      this.video.muted = true;
      this.renderSound();
      this.ctx.app.notify(t("player.autoplayMuted"));
    }
  }

  /** This device's sound: the player's own mute, nothing to do with the chat's. */
  toggleSound(): void {
    this.video.muted = !this.video.muted;
    localStorage.setItem(MUTED_SETTING, this.video.muted ? "on" : "off");
    this.renderSound();
  }

  private renderSound(): void {
    const muted = this.video.muted;
    replace(this.soundButton, icon(muted ? "sound-off" : "sound"));
    this.soundButton.setAttribute("aria-pressed", String(muted));
    setButtonLabel(this.soundButton, muted ? t("player.unmuteSound") : t("player.muteSound"));
  }

  private duration(): number {
    // A growing playlist's length is the converted part's: the item's is the room's.
    if (Number.isFinite(this.convertedEnd()) && this.timeline?.duration) {
      return this.timeline.duration;
    }
    const fromVideo = this.video.duration;
    if (Number.isFinite(fromVideo) && fromVideo > 0) {
      return fromVideo;
    }
    return this.timeline?.duration ?? 0;
  }

  private renderSeekBar(): void {
    this.seekBar.max = String(this.duration());
  }

  private async report(onChange: boolean): Promise<void> {
    const timeline = this.timeline;
    const media = this.state?.timeline?.media;
    if (!timeline || !media) {
      return;
    }
    let state = PlayerState.READY;
    const errorKey = this.loadError ? `${this.loadError.mediaId}/${this.loadError.kind}` : "";
    if (this.failed()) {
      state = PlayerState.FAILED;
    } else if (this.convertHold || this.waitingForConversion) {
      state = PlayerState.BUFFERING;
    } else if (this.video.ended || (this.duration() > 0 && positionAt(timeline, this.serverNow()) >= this.duration() && !timeline.paused)) {
      state = PlayerState.ENDED;
    } else if (this.video.readyState < HTMLMediaElement.HAVE_FUTURE_DATA) {
      state = PlayerState.BUFFERING;
    }
    if (onChange && state === this.lastReportedState && errorKey === this.lastReportedError) {
      return;
    }
    if (state === PlayerState.ENDED && this.endedMediaId === media.mediaId) {
      return;
    }
    this.lastReportAt = performance.now();
    this.lastReportedState = state;
    this.lastReportedError = errorKey;
    if (state === PlayerState.ENDED) {
      this.endedMediaId = media.mediaId;
    }
    try {
      const roundTrip = this.estimate?.roundTrip ?? Infinity;
      await this.ctx.app.api.sync.reportStatus({
        roomId: this.ctx.roomId,
        state,
        offsetMs: BigInt(this.measuredOffsetMs),
        offsetUncertaintyMs: BigInt(this.offsetUncertaintyMs()),
        roundTripMs: BigInt(Number.isFinite(roundTrip) ? Math.min(60_000, Math.round(roundTrip)) : 0),
        ignoreWait: this.ignoreWait,
        mediaId: state === PlayerState.ENDED ? media.mediaId : "",
        ...(this.loadError?.mediaId === media.mediaId ? { loadError: this.loadError } : {}),
      });
    } catch {
      // Reports are advisory; the next one carries the same information.
    }
  }

  /**
   * Runs a command against the version we saw; when someone else got there first, rebases on
   * the state the server sent back and tries once more.
   */
  /** Sends a playback command after this page's earlier ones (inorder.ts), retried once if the room moved on. */
  private command(run: (expectedVersion: bigint) => Promise<{ state?: RoomState }>): Promise<boolean> {
    return this.commands.run(() => this.send(run));
  }

  private async send(run: (expectedVersion: bigint) => Promise<{ state?: RoomState }>): Promise<boolean> {
    for (let attempt = 0; attempt < 2; attempt += 1) {
      try {
        const { state } = await run(this.state?.version ?? 0n);
        if (state) {
          this.applyState(state, false);
        }
        return true;
      } catch (error) {
        if (errorCode(error) === Code.Aborted) {
          const [current] = ConnectError.from(error).findDetails(RoomStateSchema);
          if (current) {
            this.applyState(current, true);
            continue;
          }
        }
        this.ctx.app.fail(error, "playback");
        return false;
      }
    }
    this.ctx.app.notify(t("error.aborted"), "error");
    return false;
  }

  async togglePlay(): Promise<void> {
    const roomId = this.ctx.roomId;
    if (this.timeline?.paused ?? true) {
      await this.command((expectedVersion) => this.ctx.app.api.sync.play({ roomId, expectedVersion }));
    } else {
      // Hold the frame the person saw when they pressed pause; the room pauses on it.
      this.video.pause();
      const positionMs = BigInt(Math.round(this.video.currentTime * 1000));
      await this.command((expectedVersion) => this.ctx.app.api.sync.pause({ roomId, expectedVersion, positionMs }));
    }
  }

  /** Moves the shared position by `delta` seconds (the arrow keys). */
  async seekBy(delta: number): Promise<void> {
    const timeline = this.timeline;
    if (!timeline) {
      return;
    }
    const duration = this.duration();
    const target = positionAt(timeline, this.serverNow()) + delta;
    await this.seekTo(Math.max(0, duration > 0 ? Math.min(target, duration - 0.5) : target));
  }

  private async seekTo(seconds: number): Promise<void> {
    const positionMs = BigInt(Math.round(seconds * 1000));
    await this.command((expectedVersion) => this.ctx.app.api.sync.seek({ roomId: this.ctx.roomId, expectedVersion, positionMs }));
  }

  private async setRate(rate: number): Promise<void> {
    await this.command((expectedVersion) => this.ctx.app.api.sync.setRate({ roomId: this.ctx.roomId, expectedVersion, rate }));
  }

  private async setWaitForEveryone(enabled: boolean): Promise<void> {
    const done = await this.command((expectedVersion) =>
      this.ctx.app.api.sync.setWaitForEveryone({ roomId: this.ctx.roomId, expectedVersion, enabled }),
    );
    if (!done) {
      this.waitToggle.checked = this.state?.waitForEveryone ?? false;
    }
  }

  private async playNow(media: MediaChoice): Promise<boolean> {
    return this.command((expectedVersion) =>
      this.ctx.app.api.sync.changeMedia({ roomId: this.ctx.roomId, expectedVersion, ...mediaFields(media) }),
    );
  }

  private async addToQueue(media: MediaChoice): Promise<boolean> {
    try {
      const { state } = await this.ctx.app.api.sync.addQueueItem({ roomId: this.ctx.roomId, ...mediaFields(media) });
      if (state) {
        this.applyState(state, false);
      }
      return true;
    } catch (error) {
      this.ctx.app.fail(error, "playback");
      return false;
    }
  }

  private async playNext(): Promise<void> {
    await this.command((expectedVersion) => this.ctx.app.api.sync.playNext({ roomId: this.ctx.roomId, expectedVersion }));
  }

  /** The screen: the video, or the room's first step when nothing is loaded. */
  private renderScreen(): void {
    const hasMedia = this.timeline !== undefined;
    this.element.classList.toggle("has-media", hasMedia);
    this.screen.classList.toggle("empty", !hasMedia);
    if (hasMedia) {
      this.addVideo.setMode("queue");
      if (this.addVideo.element.parentElement !== this.queueSlot) {
        this.queueSlot.appendChild(this.addVideo.element);
      }
      replace(this.emptyState);
    } else if (this.ctx.controlDeniedReason() === undefined) {
      this.addVideo.setMode("empty");
      if (this.addVideo.element.parentElement !== this.emptyState) {
        replace(this.emptyState, this.addVideo.element);
      }
    } else {
      replace(
        this.emptyState,
        h(
          "div",
          { class: "waiting-for-video" },
          icon("film"),
          h("h2", {}, t("player.nothingYet")),
          h("p", {}, this.ctx.controlDeniedReason() ?? t("player.waitingForSomeone")),
        ),
      );
      // The form lives in the queue tab, disabled with the reason, for those who cannot add.
      this.addVideo.setMode("queue");
      this.queueSlot.appendChild(this.addVideo.element);
    }
    // The person's own trouble with the video, in words; a server without Range support still
    // plays, so its warning stays off the picture (it is beside the sync indicator).
    const shown = hasMedia && this.loadError ? describeOwnLoadError(this.loadError) : null;
    this.screenMessage.hidden = !(shown && this.failed());
    replace(this.screenMessage, shown && this.failed() ? shown : null);
    this.element.classList.toggle("cannot-seek", shown !== null && !this.failed());
    replace(this.seekWarning, shown && !this.failed() ? shown : null);
    this.seekWarning.hidden = !(shown && !this.failed());
  }

  private renderQueue(): void {
    const queue = this.state?.queue ?? [];
    const denied = this.ctx.controlDeniedReason();
    const roomId = this.ctx.roomId;
    // Redrawn only when something it shows changed, so that the focus on a button survives the
    // room's periodic refresh.
    const key = JSON.stringify([denied ?? "", queue.map((item) => [item.itemId, item.media?.title, item.media?.url, this.ctx.nameOf(item.addedByUserId)])]);
    if (key === this.queueKey) {
      return;
    }
    this.queueKey = key;
    this.followQueueConversions(queue.map((item) => item.media?.libraryItemId ?? "").filter((id) => id !== ""));
    this.queueStatuses.clear();
    replace(this.queueCount, queue.length > 0 ? formatNumber(queue.length) : null);
    setEnabled(this.nextButton, denied === undefined && queue.length > 0, denied ?? t("queue.emptyReason"));
    if (queue.length === 0) {
      replace(this.queueList, h("li", { class: "empty-state" }, t("queue.empty")));
      return;
    }
    replace(
      this.queueList,
      ...queue.map((item, index) => {
        const title = userText(item.media?.title || item.media?.url || "");
        const move = (newIndex: number) =>
          this.command((expectedVersion) =>
            this.ctx.app.api.sync.moveQueueItem({ roomId, expectedVersion, itemId: item.itemId, newIndex }),
          ).then(() => undefined);
        const actions = denied
          ? []
          : [
              index > 0 ? button(t("queue.moveUp"), () => move(index - 1), { kind: "quiet", small: true, icon: "up", iconOnly: true, attrs: { "data-action": "up" } }) : null,
              index < queue.length - 1 ? button(t("queue.moveDown"), () => move(index + 1), { kind: "quiet", small: true, icon: "down", iconOnly: true, attrs: { "data-action": "down" } }) : null,
              button(
                t("queue.remove"),
                () =>
                  this.command((expectedVersion) =>
                    this.ctx.app.api.sync.removeQueueItem({ roomId, expectedVersion, itemId: item.itemId }),
                  ).then(() => undefined),
                { kind: "quiet", small: true, icon: "close", iconOnly: true, attrs: { "data-action": "remove" } },
              ),
            ];
        return h(
          "li",
          { class: "queue-item", attrs: { "data-item-id": item.itemId } },
          h("span", { class: "queue-index", attrs: { "aria-hidden": "true" } }, formatNumber(index + 1)),
          item.media?.libraryItemId ? thumbnail(item.media.libraryItemId) : null,
          h(
            "div",
            { class: "queue-text" },
            h("span", { class: "queue-title" }, title),
            h("span", { class: "queue-by" }, t("queue.addedBy", { name: this.ctx.nameOf(item.addedByUserId) })),
            item.media?.libraryItemId ? this.queueStatus(item.media.libraryItemId) : null,
          ),
          h("span", { class: "actions" }, ...actions),
        );
      }),
    );
  }

  /** A queued library item's conversion status, kept current by the conversion watch. */
  private queueStatus(libraryItemId: string): HTMLElement {
    const known = conversionWatch(this.ctx.app.api, this.ctx.roomId).get(libraryItemId);
    const status = new ConversionStatus(known);
    this.queueStatuses.set(libraryItemId, [...(this.queueStatuses.get(libraryItemId) ?? []), status]);
    return status.element;
  }

  /** Follows the conversions of the queue's library items (again only when the set changes). */
  private followQueueConversions(ids: string[]): void {
    const key = [...new Set(ids)].sort().join(",");
    if (key === this.queueFollowed) {
      return;
    }
    this.queueFollowed = key;
    this.unfollowQueue();
    this.unfollowQueue = conversionWatch(this.ctx.app.api, this.ctx.roomId).follow(key ? key.split(",") : [], (id, item) => {
      for (const status of this.queueStatuses.get(id) ?? []) {
        if (item) {
          status.update(item);
        }
      }
    });
  }

  private renderControls(): void {
    const denied = this.ctx.controlDeniedReason();
    const hasMedia = this.timeline !== undefined;
    const noMedia = t("player.noMediaReason");
    setEnabled(this.playButton, denied === undefined && hasMedia, denied ?? noMedia);
    setEnabled(this.seekBar, denied === undefined && hasMedia, denied ?? noMedia);
    setEnabled(this.rateSelect, denied === undefined && hasMedia, denied ?? noMedia);
    setEnabled(this.waitToggle, denied === undefined, denied);
    replace(this.reason, denied ? icon("lock") : null, denied ?? null);
    this.reason.hidden = denied === undefined;
    this.renderScreen();
    this.renderQueue();
  }
}

/** The sync RPCs' fields for a chosen video: a URL, or a library item (its URL is signed per viewer). */
function mediaFields(media: MediaChoice): { url: string; title: string; durationMs: bigint; libraryItemId: string } {
  return { url: media.url, title: media.title, durationMs: media.durationMs ?? 0n, libraryItemId: media.libraryItemId ?? "" };
}

function isBuffered(ranges: TimeRanges, position: number): boolean {
  for (let index = 0; index < ranges.length; index += 1) {
    if (ranges.start(index) <= position && position < ranges.end(index)) {
      return true;
    }
  }
  return false;
}

/** What the controller learned that holds for this device, not just this media. */
function devicePriors(state: DriftState): DriftPriors {
  return { seekModel: state.seekModel.observations.length > 0 ? state.seekModel : state.priorSeekModel, latencies: state.latencies };
}

function loadDevicePriors(): DriftPriors {
  try {
    const saved = JSON.parse(localStorage.getItem(SYNC_DEVICE_SETTING) ?? "null") as {
      weights?: unknown;
      spread?: unknown;
      start?: unknown;
      rateSwitch?: unknown;
      resume?: unknown;
    } | null;
    const numbers = (value: unknown, count: number) =>
      Array.isArray(value) && value.length === count && value.every((item) => typeof item === "number" && Number.isFinite(item));
    const priors: DriftPriors = {};
    if (saved && numbers(saved.weights, 3) && typeof saved.spread === "number" && Number.isFinite(saved.spread)) {
      const [a, b, c] = saved.weights as number[];
      priors.seekModel = { weights: [a ?? 0, b ?? 0, c ?? 0], spread: saved.spread, observations: [] };
    }
    if (saved && numbers([saved.start, saved.rateSwitch], 2)) {
      const start = saved.start as number;
      const resume = typeof saved.resume === "number" && Number.isFinite(saved.resume) ? saved.resume : start;
      priors.latencies = { start, resume, rateSwitch: saved.rateSwitch as number };
    }
    return priors;
  } catch {
    return {};
  }
}

function saveDevicePriors(state: DriftState): void {
  const { seekModel, latencies } = devicePriors(state);
  if (seekModel && latencies) {
    const { weights, spread } = seekModel;
    localStorage.setItem(SYNC_DEVICE_SETTING, JSON.stringify({ weights, spread, ...latencies }));
  }
}
