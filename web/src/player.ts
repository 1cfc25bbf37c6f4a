// The player: an HTML5 <video> that follows the room's timeline from sync-svc's WatchRoom
// stream. The server's clock is mapped onto ours from GetClock samples and the stream's own
// timestamps (clock.ts); every tick, and at the instants it asks for, the sync controller
// (drift.ts) compares where the room is with where the video is and seeks, holds, nudges the
// rate or switches it. The player reports ready/buffering/ended and its measured offset with
// its uncertainty, and shows the controls the room's control mode allows.

import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";

import { describeError, errorCode } from "./api";
import { ClockSync, type ClockEstimate } from "./clock";
import type { RoomContext } from "./context";
import { button, formatDuration, h, replace } from "./dom";
import { type DriftDecision, type DriftPriors, type DriftState, decideDrift, initialDriftState } from "./drift";
import { loadKeyframes } from "./keyframes";
import type { KeyframeIndex } from "./seek";
import { syncText } from "./sync-text";
import {
  PlayerState,
  type RoomState,
  RoomStateSchema,
  type Watcher,
} from "./gen/xiaowo/sync/v1/sync_pb";
import { ReconnectingStream, type StreamState } from "./stream";
import { positionAt, startTimerDelayMs, startsIn, type Timeline } from "./timeline";

const TICK_MS = 250;
const REPORT_EVERY_MS = 2_000;
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
  private readonly clock = new ClockSync(32);
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
  private readonly stream: ReconnectingStream;
  private readonly timers: number[] = [];
  private hls: { destroy(): void } | undefined;
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
    this.video.muted = localStorage.getItem("xiaowo.muted") === "on";
    this.video.controls = false;
    // Rate nudges must not be heard as a change of pitch.
    this.video.preservesPitch = true;

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

    for (const event of ["waiting", "stalled", "playing", "canplay", "ended", "loadedmetadata", "error"]) {
      this.video.addEventListener(event, () => void this.report(true));
    }
    this.video.addEventListener("loadedmetadata", () => this.renderSeekBar());
    // A seek has landed: the controller decides at once whether to hold or play.
    for (const event of ["seeked", "canplay"]) {
      this.video.addEventListener(event, () => this.tick());
    }

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
              this.onWatchers(response.event.value.watchers);
              break;
            case "state":
              this.applyState(response.event.value, false);
              break;
            case "presence":
              this.onWatchers(response.event.value.watchers);
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
    delete (window as DebugWindow).__xiaowoSync;
  }

  /**
   * Loads a media URL: natively when the browser plays it, through hls.js (loaded only when
   * needed) for HLS playlists where it does not.
   */
  private async load(url: string): Promise<void> {
    this.unload();
    const isPlaylist = URL.canParse(url) && new URL(url).pathname.toLowerCase().endsWith(".m3u8");
    if (isPlaylist && this.video.canPlayType("application/vnd.apple.mpegurl") === "") {
      const { default: Hls } = await import("hls.js");
      if (url !== this.state?.timeline?.media?.url) {
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
    if (!timeline || !media) {
      this.timeline = undefined;
      if (this.loadedMediaId) {
        this.loadedMediaId = "";
        this.unload();
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
        void this.load(media.url);
        void this.loadKeyframes(media.url);
      }
    }
    this.element.classList.toggle("has-media", Boolean(this.timeline));
    this.nowPlaying.textContent = media ? media.title || media.url : "";
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
    // The clock and the video are read back to back: anything in between (on a slow phone the
    // page can be suspended for tens of ms at any point) would count as sync error.
    const nowMs = performance.now();
    const position = this.video.currentTime;
    const serverNow = performance.timeOrigin + nowMs + (this.estimate?.offset ?? 0);
    const countdown = startsIn(timeline, serverNow);
    const expected = positionAt(timeline, serverNow);
    const duration = this.duration();

    if (this.video.readyState >= HTMLMediaElement.HAVE_METADATA) {
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
      this.timeLabel.textContent = `${formatDuration(expected)} / ${duration > 0 ? formatDuration(duration) : "–:––"}`;
    }
    this.status.textContent = this.describeStatus(timeline, countdown);
    this.playButton.textContent = timeline.paused ? "Play" : "Pause";
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
          this.video.play().catch((error: unknown) => this.playRefused(error));
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

  private describeStatus(timeline: Timeline, countdown: number): string {
    if (countdown > 0) {
      return `Starting in ${countdown.toFixed(1)} s`;
    }
    const waitingFor = this.state?.waitingForUserIds ?? [];
    if (waitingFor.length > 0) {
      return `Waiting for ${waitingFor.map((userId) => this.ctx.nameOf(userId)).join(", ")}`;
    }
    if (this.video.readyState < HTMLMediaElement.HAVE_FUTURE_DATA && !timeline.paused) {
      return "Buffering…";
    }
    if (this.drift.mode !== "idle") {
      return "Catching up with the room…";
    }
    const sync = syncText().offset(this.measuredOffsetMs, this.offsetUncertaintyMs());
    const nudged = this.drift.nudge !== 0 ? this.drift.appliedRate : undefined;
    const correcting = nudged !== undefined ? ` · adjusting speed ${nudged.toFixed(2)}×` : "";
    return `${timeline.paused ? "Paused" : "Playing"} · ${sync}${correcting}`;
  }

  /** How far the measured offset may be off: the clock estimate's uncertainty, whole ms up. */
  private offsetUncertaintyMs(): number {
    const uncertainty = this.estimate?.uncertainty;
    return uncertainty === undefined ? 60_000 : Math.min(60_000, Math.max(1, Math.ceil(uncertainty)));
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
    if (this.video.ended || (this.duration() > 0 && positionAt(timeline, this.serverNow()) >= this.duration() && !timeline.paused)) {
      state = PlayerState.ENDED;
    } else if (this.video.readyState < HTMLMediaElement.HAVE_FUTURE_DATA) {
      state = PlayerState.BUFFERING;
    }
    if (onChange && state === this.lastReportedState) {
      return;
    }
    if (state === PlayerState.ENDED && this.endedMediaId === media.mediaId) {
      return;
    }
    this.lastReportAt = performance.now();
    this.lastReportedState = state;
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
    } | null;
    const numbers = (value: unknown, count: number) =>
      Array.isArray(value) && value.length === count && value.every((item) => typeof item === "number" && Number.isFinite(item));
    const priors: DriftPriors = {};
    if (saved && numbers(saved.weights, 3) && typeof saved.spread === "number" && Number.isFinite(saved.spread)) {
      const [a, b, c] = saved.weights as number[];
      priors.seekModel = { weights: [a ?? 0, b ?? 0, c ?? 0], spread: saved.spread, observations: [] };
    }
    if (saved && numbers([saved.start, saved.rateSwitch], 2)) {
      priors.latencies = { start: saved.start as number, rateSwitch: saved.rateSwitch as number };
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
