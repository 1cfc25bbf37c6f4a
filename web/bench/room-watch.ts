// The room's timeline as the server stores it, for the sync-quality benchmark: a WatchRoom
// stream from Node (the benchmark bundles this file with esbuild at start-up), so that every
// page is measured against the server's state and not against one page's estimate of it.

import { timestampMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

import { Action, SyncService } from "../src/gen/xiaowo/sync/v1/sync_pb";

export interface StoredState {
  version: number;
  action: string;
  /** Server time the change was accepted, ms. */
  updateTime: number;
  mediaId: string;
  paused: boolean;
  /** Seconds. */
  position: number;
  rate: number;
  /** Server time, ms. */
  anchorTime: number;
  leadInRate: number;
  /** Seconds; 0 when unknown. */
  duration: number;
}

/** Calls `onState` with every state of the room until `signal` aborts; resolves when it ends. */
export async function watchRoom(
  baseUrl: string,
  token: string,
  roomId: string,
  onState: (state: StoredState) => void,
  signal: AbortSignal,
): Promise<void> {
  const transport = createGrpcWebTransport({
    baseUrl,
    interceptors: [
      (next) => (request) => {
        request.header.set("authorization", `Bearer ${token}`);
        return next(request);
      },
    ],
  });
  const client = createClient(SyncService, transport);
  try {
    for await (const response of client.watchRoom({ roomId }, { signal })) {
      const state =
        response.event.case === "snapshot" ? response.event.value.state : response.event.case === "state" ? response.event.value : undefined;
      const timeline = state?.timeline;
      if (!state || !timeline) {
        continue;
      }
      onState({
        version: Number(state.version),
        action: Action[state.lastAction] ?? "UNSPECIFIED",
        updateTime: state.updateTime ? timestampMs(state.updateTime) : 0,
        mediaId: timeline.media?.mediaId ?? "",
        paused: timeline.paused,
        position: Number(timeline.positionMs) / 1000,
        rate: timeline.rate || 1,
        anchorTime: timeline.anchorTime ? timestampMs(timeline.anchorTime) : 0,
        // Absent from servers before rate changes were scheduled: 0, a held start, as then.
        leadInRate: timeline.leadInRate ?? 0,
        duration: Number(timeline.media?.durationMs ?? 0n) / 1000,
      });
    }
  } catch (error) {
    if (!signal.aborted) {
      throw error;
    }
  }
}
