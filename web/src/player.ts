// The player: an HTML5 <video> that follows the room's timeline from sync-svc's WatchRoom
// stream. The server's clock is mapped onto ours from GetClock samples; every tick the drift
// controller compares where the room is with where the video is and nudges the rate or seeks.
// The player reports ready/buffering/ended and its measured offset, and shows the controls the
// room's control mode allows.

import { create } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";

import { describeError, errorCode } from "./api";
import { ClockSync, type ClockEstimate } from "./clock";
import type { RoomContext } from "./context";
import { button, formatDuration, h, replace } from "./dom";
import { type DriftState, decideDrift, initialDriftState } from "./drift";
import type { MediaItem } from "./gen/xiaowo/media/v1/media_pb";
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
import { thumbnail } from "./library";
import { checkSeeking, describeAddedLoadError, describeOwnLoadError, describeSlowServer, diagnose } from "./loaderror";
import { ReconnectingStream, type StreamState } from "./stream";
import { positionAt, startTimerDelayMs, startsIn, type Timeline } from "./timeline";

const TICK_MS = 250;
const REPORT_EVERY_MS = 2_000;
/** Buffering this long without a byte arriving is shown with its reason. */
const SLOW_SERVER_MS = 15_000;
const NUDGE_SETTING = "xiaowo.nudge";
const IGNORE_WAIT_SETTING = "xiaowo.ignoreWait";
/** The room URL's query parameter that exposes `window.__xiaowoSync` to measuring tools. */
const SYNC_DEBUG_PARAMETER = "sync-debug";

/**
 * What the sync-quality benchmark (web/bench/sync-quality.mjs) reads from each page: the video,
 * and the clock offset and timeline the player steers by, so that every page can be sampled at
 * the same server-clock instant. Only present when the room is opened with `?sync-debug`.
 */
export interface SyncDebugHandle {
  video: HTMLVideoElement;
  /** server time − local time (`performance.timeOrigin + performance.now()`), in ms. */
  clockOffsetMs(): number | undefined;
  /** Where the room's timeline is at server time `serverTime` (ms); undefined without media. */
  expectedPosition(serverTime: number): number | undefined;
  /** The version of the room's state the player follows (0 before the first). */
  stateVersion(): number;
}

type DebugWindow = Window & { __xiaowoSync?: SyncDebugHandle };

/** A monotonic clock on the epoch's scale, in milliseconds: wall-clock jumps do not move it. */
function localNow(): number {
  return performance.timeOrigin + performance.now();
}

export class Player {
  readonly element: HTMLElement;
  readonly queueElement: HTMLElement;
  private readonly video: HTMLVideoElement;
  private readonly status = h("div", { class: "player-status", attrs: { id: "player-status" } });
  private readonly nowPlaying = h("div", { class: "now-playing", attrs: { id: "now-playing" } });
  private readonly controls = h("div", { class: "controls" });
  private readonly reason = h("p", { class: "muted small", attrs: { id: "control-reason" } });
  private readonly seekBar: HTMLInputElement;
  private readonly timeLabel = h("span", { class: "time", attrs: { id: "time-label" } }, "0:00");
  private readonly playButton: HTMLButtonElement;
  private readonly rateSelect: HTMLSelectElement;
  private readonly waitToggle: HTMLInputElement;
  private readonly unmuteButton: HTMLButtonElement;
  private readonly queueList = h("ol", { class: "queue", attrs: { id: "queue" } });
  private readonly controlElements: (HTMLButtonElement | HTMLInputElement | HTMLSelectElement)[] = [];

  private state: RoomState | undefined;
  private timeline: Timeline | undefined;
  private loadedMediaId = "";
  private readonly clock = new ClockSync(8);
  private estimate: ClockEstimate | undefined;
  private drift: DriftState = initialDriftState();
  private nudgeEnabled = localStorage.getItem(NUDGE_SETTING) !== "off";
  private ignoreWait = localStorage.getItem(IGNORE_WAIT_SETTING) === "on";
  private measuredOffsetMs = 0;
  private lastReportAt = 0;
  private lastReportedState = PlayerState.UNSPECIFIED;
  private endedMediaId = "";
  private seeking = false;
  private readonly stream: ReconnectingStream;
  private readonly timers: number[] = [];
  private hls: { destroy(): void } | undefined;
  /** Starts a scheduled play on time rather than at the next tick. */
  private startTimer = 0;
  private startScheduledFor = 0;
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

  constructor(
    private readonly ctx: RoomContext,
    private readonly onWatchers: (watchers: Watcher[]) => void,
    onStreamState: (state: StreamState) => void,
  ) {
    this.video = h("video", { attrs: { id: "video", playsinline: "", preload: "auto" } });
    this.video.muted = localStorage.getItem("xiaowo.muted") === "on";
    this.video.controls = false;

    this.playButton = button("Play", () => this.togglePlay(), { attrs: { id: "play-toggle" } });
    this.seekBar = h("input", { attrs: { id: "seek", type: "range", min: "0", max: "0", step: "0.1", value: "0", "aria-label": "Position" } });
    this.seekBar.addEventListener("input", () => {
      this.seeking = true;
      this.timeLabel.textContent = formatDuration(Number(this.seekBar.value));
    });
    this.seekBar.addEventListener("change", () => {
      this.seeking = false;
      void this.seekTo(Number(this.seekBar.value));
    });
    this.rateSelect = h(
      "select",
      { attrs: { id: "rate", "aria-label": "Playback rate" } },
      ...["0.5", "0.75", "1", "1.25", "1.5", "2"].map((rate) => h("option", { attrs: { value: rate } }, `${rate}×`)),
    );
    this.rateSelect.value = "1";
    this.rateSelect.addEventListener("change", () => void this.setRate(Number(this.rateSelect.value)));
    this.waitToggle = h("input", { attrs: { id: "wait-toggle", type: "checkbox" } });
    this.waitToggle.addEventListener("change", () => void this.setWaitForEveryone(this.waitToggle.checked));
    this.controlElements.push(this.playButton, this.seekBar, this.rateSelect, this.waitToggle);

    const nudgeToggle = h("input", { attrs: { id: "nudge-toggle", type: "checkbox" } });
    nudgeToggle.checked = this.nudgeEnabled;
    nudgeToggle.addEventListener("change", () => {
      this.nudgeEnabled = nudgeToggle.checked;
      localStorage.setItem(NUDGE_SETTING, this.nudgeEnabled ? "on" : "off");
    });
    const ignoreWaitToggle = h("input", { attrs: { id: "ignore-wait-toggle", type: "checkbox" } });
    ignoreWaitToggle.checked = this.ignoreWait;
    ignoreWaitToggle.addEventListener("change", () => {
      this.ignoreWait = ignoreWaitToggle.checked;
      localStorage.setItem(IGNORE_WAIT_SETTING, this.ignoreWait ? "on" : "off");
      void this.report(true);
    });
    this.unmuteButton = button("Unmute", () => {
      this.video.muted = !this.video.muted;
      localStorage.setItem("xiaowo.muted", this.video.muted ? "on" : "off");
      this.renderMute();
    }, { attrs: { id: "mute-toggle" } });
    this.renderMute();

    replace(
      this.controls,
      this.playButton,
      this.seekBar,
      this.timeLabel,
      this.rateSelect,
      this.unmuteButton,
    );
    this.element = h(
      "section",
      { class: "player card" },
      this.nowPlaying,
      h("div", { class: "screen" }, this.video, h("div", { class: "screen-empty", attrs: { id: "no-media" } }, "Nothing is playing. Add a video below.")),
      this.controls,
      this.status,
      this.reason,
      h(
        "div",
        { class: "switches" },
        h("label", {}, this.waitToggle, " Wait for everyone"),
        h("label", { attrs: { title: "Correct small drift by briefly changing the speed (this device only)" } }, nudgeToggle, " Smooth sync"),
        h("label", { attrs: { title: "Do not hold the room while this device buffers" } }, ignoreWaitToggle, " Don't wait for me"),
      ),
    );
    this.queueElement = h("section", { class: "card" }, h("h2", {}, "Queue"), this.mediaForm(), this.queueList);

    for (const event of ["waiting", "stalled", "playing", "canplay", "ended", "loadedmetadata"]) {
      this.video.addEventListener(event, () => void this.report(true));
    }
    this.video.addEventListener("loadedmetadata", () => {
      this.renderSeekBar();
      void this.checkRange();
    });
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
          this.stream.touch();
          live();
          const serverTime = response.serverTime ? timestampMs(response.serverTime) : undefined;
          if (serverTime !== undefined && this.estimate === undefined) {
            // Until GetClock answers, the stream's own timestamps give a rough offset.
            this.estimate = { offset: serverTime - localNow(), roundTrip: 1000 };
          }
          switch (response.event.case) {
            case "snapshot":
              if (response.event.value.state) {
                this.applyState(response.event.value.state, true);
              }
              this.onWatchers(response.event.value.watchers);
              break;
            case "state":
              this.applyState(response.event.value, false);
              break;
            case "presence":
              this.onWatchers(response.event.value.watchers);
              this.tellAdder(response.event.value.watchers);
              break;
            case "heartbeat":
            case undefined:
              break;
          }
        }
      },
    });
    ctx.onChange(() => this.renderControls());
    this.renderControls();
    if (new URLSearchParams(window.location.search).has(SYNC_DEBUG_PARAMETER)) {
      (window as DebugWindow).__xiaowoSync = {
        video: this.video,
        clockOffsetMs: () => this.estimate?.offset,
        expectedPosition: (serverTime) => (this.timeline ? positionAt(this.timeline, serverTime) : undefined),
        stateVersion: () => Number(this.state?.version ?? 0n),
      };
    }
  }

  start(): void {
    this.stream.start();
    void this.sampleClock(8);
    this.timers.push(window.setInterval(() => this.tick(), TICK_MS));
    this.timers.push(window.setInterval(() => void this.sampleClock(1), 15_000));
  }

  stop(): void {
    this.stream.stop();
    for (const timer of this.timers) {
      window.clearInterval(timer);
    }
    window.clearTimeout(this.startTimer);
    this.unload();
    delete (window as DebugWindow).__xiaowoSync;
  }

  /** The media id the player has loaded ("" for none). */
  currentMediaId(): string {
    return this.loadedMediaId;
  }

  /** Plays a library item now, or appends it to the queue. */
  async addLibraryItem(item: MediaItem, now: boolean): Promise<boolean> {
    const roomId = this.ctx.roomId;
    const fields = { libraryItemId: item.mediaItemId, title: item.title, durationMs: item.durationMs, url: "" };
    if (now) {
      return this.command((expectedVersion) => this.ctx.app.api.sync.changeMedia({ roomId, expectedVersion, ...fields }));
    }
    try {
      const { state } = await this.ctx.app.api.sync.addQueueItem({ roomId, ...fields });
      if (state) {
        this.applyState(state, false);
      }
      return true;
    } catch (error) {
      this.ctx.app.notify(describeError(error), "error");
      return false;
    }
  }

  /**
   * Loads a media item: a library item through a signed URL from media-svc, a URL natively
   * when the browser plays it, through hls.js (loaded only when needed) for HLS playlists
   * where it does not.
   */
  private async load(media: Media): Promise<void> {
    this.unload();
    this.loadError = undefined;
    this.lastDataAt = performance.now();
    let url = media.url;
    if (media.libraryItemId) {
      try {
        const signed = await this.ctx.app.api.media.createPlaybackUrl({ roomId: this.ctx.roomId, mediaItemId: media.libraryItemId });
        url = signed.url;
      } catch (error) {
        if (media.mediaId === this.loadedMediaId) {
          const code = errorCode(error);
          const status = code === Code.NotFound ? 404 : code === Code.PermissionDenied ? 403 : 0;
          this.fail(
            create(LoadErrorSchema, {
              mediaId: media.mediaId,
              kind: status ? LoadErrorKind.HTTP_STATUS : code === Code.FailedPrecondition ? LoadErrorKind.UNSUPPORTED : LoadErrorKind.NETWORK,
              httpStatus: status,
              detail: describeError(error).slice(0, 200),
            }),
          );
        }
        return;
      }
      if (media.mediaId !== this.loadedMediaId) {
        return;
      }
    }
    this.currentUrl = url;
    const isPlaylist = URL.canParse(url) && new URL(url).pathname.toLowerCase().endsWith(".m3u8");
    if (isPlaylist && this.video.canPlayType("application/vnd.apple.mpegurl") === "") {
      const { default: Hls } = await import("hls.js");
      if (media.mediaId !== this.loadedMediaId) {
        return;
      }
      if (Hls.isSupported()) {
        // No worker: the content security policy allows no blob: workers.
        const hls = new Hls({ enableWorker: false });
        hls.loadSource(url);
        hls.attachMedia(this.video);
        this.hls = hls;
        return;
      }
      this.ctx.app.notify("This browser cannot play HLS streams.", "error");
    }
    this.video.src = url;
    this.video.load();
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

  private unload(): void {
    this.hls?.destroy();
    this.hls = undefined;
    this.video.pause();
    this.video.removeAttribute("src");
    this.video.load();
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
          this.estimate = this.clock.add({
            clientSend,
            serverReceive: timestampMs(receiveTime),
            serverSend: timestampMs(sendTime),
            clientReceive,
          });
        }
      } catch {
        return;
      }
      if (index + 1 < count) {
        await new Promise((resolve) => window.setTimeout(resolve, 200));
      }
    }
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
      }
    } else {
      const previous = this.timeline;
      this.timeline = {
        paused: timeline.paused,
        position: Number(timeline.positionMs) / 1000,
        rate: timeline.rate || 1,
        anchorServerTime: timeline.anchorTime ? timestampMs(timeline.anchorTime) : this.serverNow(),
        duration: Number(media.durationMs) / 1000,
      };
      if (media.mediaId !== this.loadedMediaId) {
        this.loadedMediaId = media.mediaId;
        this.endedMediaId = "";
        this.drift = initialDriftState(this.timeline.rate, this.drift.seekLead);
        this.urlRefreshed = false;
        void this.load(media);
      }
      if (!previous || !sameTimeline(previous, this.timeline)) {
        // A new target: the cooldowns belonged to corrections toward the old one.
        this.drift = { ...initialDriftState(this.drift.appliedRate, this.drift.seekLead), nudging: this.drift.nudging };
      }
    }
    this.element.classList.toggle("has-media", Boolean(this.timeline));
    replace(this.nowPlaying, media?.libraryItemId ? thumbnail(media.libraryItemId) : null, media ? media.title || media.url : "");
    this.rateSelect.value = String(this.timeline?.rate ?? 1);
    this.waitToggle.checked = state.waitForEveryone;
    this.renderQueue();
    this.renderControls();
    this.tick();
  }

  private tick(): void {
    const timeline = this.timeline;
    if (!timeline) {
      this.status.textContent = "";
      return;
    }
    const serverNow = this.serverNow();
    const countdown = startsIn(timeline, serverNow);
    const running = !timeline.paused && countdown === 0;
    const expected = positionAt(timeline, serverNow);
    const duration = this.duration();
    const atEnd = duration > 0 && expected >= duration - 0.05;

    if (this.video.readyState >= HTMLMediaElement.HAVE_METADATA) {
      const decision = decideDrift(this.drift, {
        now: performance.now() / 1000,
        expectedPosition: duration > 0 ? Math.min(expected, duration) : expected,
        actualPosition: this.video.currentTime,
        roomRate: timeline.rate,
        paused: !running || atEnd,
        nudgeEnabled: this.nudgeEnabled,
      });
      this.drift = decision.state;
      this.measuredOffsetMs = Math.round(-decision.error * 1000);
      switch (decision.action.kind) {
        case "seek":
          this.video.currentTime = decision.action.position;
          this.video.playbackRate = decision.action.rate;
          break;
        case "rate":
          this.video.playbackRate = decision.action.rate;
          break;
        case "none":
          break;
      }
      if (running && !atEnd && this.video.paused && !this.failed()) {
        this.video.play().catch((error: unknown) => this.playRefused(error));
      } else if ((!running || atEnd) && !this.video.paused) {
        this.video.pause();
      }
    }

    if (countdown > 0 && countdown * 1000 < TICK_MS * 2 && this.startScheduledFor !== timeline.anchorServerTime) {
      this.startScheduledFor = timeline.anchorServerTime;
      window.clearTimeout(this.startTimer);
      this.startTimer = window.setTimeout(() => {
        // A timer that still finds the start ahead schedules the rest rather than leaving the
        // start to the next tick, up to a whole tick late.
        this.startScheduledFor = 0;
        this.tick();
      }, startTimerDelayMs(countdown));
    }

    if (!this.seeking) {
      this.seekBar.value = String(expected);
      this.timeLabel.textContent = `${formatDuration(expected)} / ${duration > 0 ? formatDuration(duration) : "–:––"}`;
    }
    this.status.textContent = this.describeStatus(timeline, countdown);
    this.playButton.textContent = timeline.paused ? "Play" : "Pause";
    if (performance.now() - this.lastReportAt > REPORT_EVERY_MS) {
      void this.report(false);
    }
  }

  /** The player cannot play the current media at all (not merely seek in it). */
  private failed(): boolean {
    return this.loadError !== undefined && this.loadError.kind !== LoadErrorKind.NO_RANGE_SUPPORT;
  }

  private describeStatus(timeline: Timeline, countdown: number): string {
    if (this.failed() && this.loadError) {
      return describeOwnLoadError(this.loadError);
    }
    if (countdown > 0) {
      return `Starting in ${countdown.toFixed(1)} s`;
    }
    const waitingFor = this.state?.waitingForUserIds ?? [];
    if (waitingFor.length > 0) {
      return `Waiting for ${waitingFor.map((userId) => this.ctx.nameOf(userId)).join(", ")}`;
    }
    if (this.video.readyState < HTMLMediaElement.HAVE_FUTURE_DATA && !timeline.paused) {
      const silent = performance.now() - this.lastDataAt;
      return silent > SLOW_SERVER_MS ? describeSlowServer(Math.round(silent / 1000)) : "Buffering…";
    }
    if (this.loadError) {
      return describeOwnLoadError(this.loadError);
    }
    if (performance.now() / 1000 - this.drift.lastSeekAt < 1) {
      return "Catching up with the room…";
    }
    const offset = this.measuredOffsetMs;
    const sync = `${offset >= 0 ? "+" : ""}${offset} ms`;
    const correcting = this.drift.appliedRate !== timeline.rate ? ` · adjusting speed ${this.drift.appliedRate.toFixed(2)}×` : "";
    return `${timeline.paused ? "Paused" : "Playing"} · offset ${sync}${correcting}`;
  }

  private playRefused(error: unknown): void {
    // Browsers refuse audible autoplay without a gesture (e.g. after a reload): play muted and
    // let the person unmute.
    if (error instanceof DOMException && error.name === "NotAllowedError" && !this.video.muted) {
      this.video.muted = true;
      this.renderMute();
      this.ctx.app.notify("Playing muted: press Unmute for sound.");
    }
  }

  private renderMute(): void {
    this.unmuteButton.textContent = this.video.muted ? "Unmute" : "Mute";
  }

  private duration(): number {
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
      await this.ctx.app.api.sync.reportStatus({
        roomId: this.ctx.roomId,
        state,
        offsetMs: BigInt(this.measuredOffsetMs),
        roundTripMs: BigInt(Math.round(this.estimate?.roundTrip ?? 0)),
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
  private async command(run: (expectedVersion: bigint) => Promise<{ state?: RoomState }>): Promise<boolean> {
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
        this.ctx.app.notify(describeError(error), "error");
        return false;
      }
    }
    this.ctx.app.notify("The room is changing quickly; try again.", "error");
    return false;
  }

  private async togglePlay(): Promise<void> {
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

  private mediaForm(): HTMLElement {
    const url = h("input", { attrs: { id: "media-url", type: "url", placeholder: "https://…/video.mp4 (mp4, webm, m3u8)", required: "" } });
    const title = h("input", { attrs: { id: "media-title", placeholder: "Title (optional)", maxlength: "200" } });
    const roomId = this.ctx.roomId;
    const playNow = button("Play now", async () => {
      const done = await this.command((expectedVersion) =>
        this.ctx.app.api.sync.changeMedia({ roomId, expectedVersion, url: url.value, title: title.value, durationMs: 0n }),
      );
      if (done) {
        url.value = "";
        title.value = "";
      }
    }, { attrs: { id: "media-play-now" } });
    const addToQueue = button("Add to queue", async () => {
      try {
        const { state } = await this.ctx.app.api.sync.addQueueItem({ roomId, url: url.value, title: title.value, durationMs: 0n });
        if (state) {
          this.applyState(state, false);
        }
        url.value = "";
        title.value = "";
      } catch (error) {
        this.ctx.app.notify(describeError(error), "error");
      }
    }, { attrs: { id: "media-add" } });
    const skip = button("Play next", async () => {
      await this.command((expectedVersion) => this.ctx.app.api.sync.playNext({ roomId, expectedVersion }));
    }, { attrs: { id: "queue-next" } });
    this.controlElements.push(playNow, addToQueue, skip, url, title);
    return h("div", { class: "media-form" }, url, title, h("div", { class: "row" }, playNow, addToQueue, skip));
  }

  private renderQueue(): void {
    const queue = this.state?.queue ?? [];
    const denied = this.ctx.controlDeniedReason();
    const roomId = this.ctx.roomId;
    if (queue.length === 0) {
      replace(this.queueList, h("li", { class: "muted" }, "The queue is empty."));
      return;
    }
    replace(
      this.queueList,
      ...queue.map((item, index) => {
        const move = (newIndex: number) =>
          this.command((expectedVersion) =>
            this.ctx.app.api.sync.moveQueueItem({ roomId, expectedVersion, itemId: item.itemId, newIndex }),
          ).then(() => undefined);
        const actions = denied
          ? []
          : [
              index > 0 ? button("↑", () => move(index - 1), { attrs: { title: "Move up", "aria-label": "Move up" } }) : null,
              index < queue.length - 1 ? button("↓", () => move(index + 1), { attrs: { title: "Move down", "aria-label": "Move down" } }) : null,
              button("✕", () =>
                this.command((expectedVersion) =>
                  this.ctx.app.api.sync.removeQueueItem({ roomId, expectedVersion, itemId: item.itemId }),
                ).then(() => undefined), { attrs: { title: "Remove", "aria-label": "Remove" } }),
            ];
        return h(
          "li",
          { attrs: { "data-item-id": item.itemId } },
          item.media?.libraryItemId ? thumbnail(item.media.libraryItemId) : null,
          h("span", { class: "queue-title" }, item.media?.title || item.media?.url || ""),
          h("span", { class: "muted small" }, ` added by ${this.ctx.nameOf(item.addedByUserId)}`),
          h("span", { class: "actions" }, ...actions),
        );
      }),
    );
  }

  private renderControls(): void {
    const denied = this.ctx.controlDeniedReason();
    for (const element of this.controlElements) {
      element.disabled = denied !== undefined;
      if (denied) {
        element.title = denied;
      } else {
        element.removeAttribute("title");
      }
    }
    const hasMedia = this.timeline !== undefined;
    if (!denied && !hasMedia) {
      this.playButton.disabled = true;
      this.seekBar.disabled = true;
    }
    this.reason.textContent = denied ?? "";
    this.renderQueue();
  }
}

function sameTimeline(a: Timeline, b: Timeline): boolean {
  return a.paused === b.paused && a.position === b.position && a.rate === b.rate && a.anchorServerTime === b.anchorServerTime;
}
