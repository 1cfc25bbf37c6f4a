// Keeps one server stream open: reconnects with backoff after a drop, and reports its state so
// that the page can show it. Each attempt is a fresh call, and every Xiaowo stream starts from a
// snapshot or a resume point, so a reconnect never depends on what was missed.

import { Code, ConnectError } from "@connectrpc/connect";

export type StreamState =
  | { kind: "connecting"; attempt: number }
  | { kind: "live" }
  | { kind: "retrying"; attempt: number; inSeconds: number; reason: string }
  | { kind: "ended"; code: Code; reason: string };

/** Codes after which reconnecting cannot help: the caller lost access or the room is gone. */
const FINAL_CODES = new Set([Code.PermissionDenied, Code.FailedPrecondition, Code.NotFound, Code.Unauthenticated]);

export interface StreamOptions {
  /**
   * Opens the stream and consumes it; calls `live()` once it has its first message. Returns
   * (or throws) when the stream ends.
   */
  run: (signal: AbortSignal, live: () => void) => Promise<void>;
  onState: (state: StreamState) => void;
  /** A stream with no message for this long is treated as dropped (heartbeats arrive ≤ 20 s). */
  idleTimeoutMs?: number;
}

export class ReconnectingStream {
  private controller = new AbortController();
  private stopped = false;
  private lastMessageAt = 0;
  /** Set by reconnectNow to cut a backoff wait short. */
  private wake = false;

  constructor(private readonly options: StreamOptions) {}

  /** Call on every message, so that a stalled stream is noticed. */
  touch(): void {
    this.lastMessageAt = performance.now();
  }

  start(): void {
    void this.loop();
  }

  stop(): void {
    this.stopped = true;
    this.controller.abort();
  }

  /** Drops the current connection and reconnects at once (e.g. the network came back). */
  reconnectNow(): void {
    this.wake = true;
    this.controller.abort();
  }

  private async loop(): Promise<void> {
    const idleTimeout = this.options.idleTimeoutMs ?? 45_000;
    let attempt = 0;
    while (!this.stopped) {
      attempt += 1;
      this.controller = new AbortController();
      const { signal } = this.controller;
      this.options.onState({ kind: "connecting", attempt });
      this.touch();
      const watchdog = window.setInterval(() => {
        if (performance.now() - this.lastMessageAt > idleTimeout) {
          this.controller.abort();
        }
      }, 5_000);
      let reason = "the stream ended";
      try {
        await this.options.run(signal, () => {
          attempt = 0;
          this.options.onState({ kind: "live" });
        });
      } catch (error) {
        const connectError = ConnectError.from(error);
        if (this.stopped) {
          break;
        }
        if (FINAL_CODES.has(connectError.code)) {
          this.options.onState({ kind: "ended", code: connectError.code, reason: connectError.rawMessage });
          return;
        }
        reason = connectError.code === Code.Canceled ? "connection reset" : connectError.rawMessage || "connection lost";
      } finally {
        window.clearInterval(watchdog);
      }
      if (this.stopped) {
        break;
      }
      const inSeconds = Math.min(15, 0.5 * 2 ** Math.min(attempt, 5)) * (0.75 + Math.random() * 0.5);
      this.options.onState({ kind: "retrying", attempt, inSeconds, reason });
      this.wake = false;
      await sleep(inSeconds * 1000, () => this.stopped || this.wake);
    }
  }
}

function sleep(ms: number, cancelled: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const started = performance.now();
    const timer = window.setInterval(() => {
      if (cancelled() || performance.now() - started >= ms) {
        window.clearInterval(timer);
        resolve();
      }
    }, 100);
  });
}
