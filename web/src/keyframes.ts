// Where in a media file the decoder can start: the keyframe times from the file's own index
// (MP4: the video track's sync-sample table; WebM: the cues), read with a few HTTP Range
// requests, so that the seek planner (seek.ts) knows how much each seek target costs to decode.
// Browsers do not say where their decoder can land; the index does. Files without an index,
// fragmented MP4 and servers without Range support simply have none (the planner then predicts
// from past seeks alone).

import type { KeyframeIndex } from "./seek";

/** Reads `length` bytes at `offset` (fewer at the end of the file). */
export type RangeReader = (offset: number, length: number) => Promise<Uint8Array>;

/** What is read first: enough for a WebM's header and index, or an MP4's leading boxes. */
const HEAD_BYTES = 64 * 1024;
/** The largest index read (a few hours of media; a larger one is not worth it). */
const MAX_INDEX_BYTES = 16 * 1024 * 1024;

/** The keyframe index of the media at `url`, or undefined when it cannot be had. */
export async function loadKeyframes(url: string, signal?: AbortSignal): Promise<KeyframeIndex | undefined> {
  const read: RangeReader = async (offset, length) => {
    const response = await fetch(url, {
      headers: { Range: `bytes=${offset}-${offset + length - 1}` },
      credentials: "same-origin",
      ...(signal ? { signal } : {}),
    });
    if (response.status !== 206) {
      // A server that ignores Range would send the whole file.
      await response.body?.cancel();
      throw new Error(`no range support (${response.status})`);
    }
    return new Uint8Array(await response.arrayBuffer());
  };
  try {
    return await readKeyframes(read);
  } catch {
    return undefined;
  }
}

/** The keyframe index of an MP4 or WebM file read through `read`. */
export async function readKeyframes(read: RangeReader): Promise<KeyframeIndex | undefined> {
  const head = await read(0, HEAD_BYTES);
  if (head.length >= 8 && ascii(head, 4, 4) === "ftyp") {
    return mp4Keyframes(read, head);
  }
  if (head.length >= 4 && u32(head, 0) === 0x1a45dfa3) {
    return webmKeyframes(read, head);
  }
  return undefined;
}

// -------------------------------------------------------------------------------------------
// MP4 (ISO BMFF)

interface Box {
  type: string;
  /** The box's payload (after its header). */
  body: Uint8Array;
}

function* boxes(bytes: Uint8Array): Generator<Box> {
  let offset = 0;
  while (offset + 8 <= bytes.length) {
    let size = u32(bytes, offset);
    const type = ascii(bytes, offset + 4, 4);
    let header = 8;
    if (size === 1) {
      size = u64(bytes, offset + 8);
      header = 16;
    } else if (size === 0) {
      size = bytes.length - offset;
    }
    if (size < header || offset + size > bytes.length) {
      return;
    }
    yield { type, body: bytes.subarray(offset + header, offset + size) };
    offset += size;
  }
}

function child(bytes: Uint8Array, type: string): Uint8Array | undefined {
  for (const box of boxes(bytes)) {
    if (box.type === type) {
      return box.body;
    }
  }
  return undefined;
}

async function mp4Keyframes(read: RangeReader, head: Uint8Array): Promise<KeyframeIndex | undefined> {
  // ffmpeg writes the index (moov) after the media (mdat) unless told to move it: walk the
  // top-level box headers to it.
  let offset = 0;
  for (let index = 0; index < 64; index += 1) {
    const header = offset + 16 <= head.length ? head.subarray(offset, offset + 16) : await read(offset, 16);
    if (header.length < 8) {
      return undefined;
    }
    let size = u32(header, 0);
    const type = ascii(header, 4, 4);
    if (size === 1) {
      size = u64(header, 8);
    } else if (size === 0) {
      return undefined;
    }
    if (type === "moov") {
      if (size > MAX_INDEX_BYTES) {
        return undefined;
      }
      const moov = offset + size <= head.length ? head.subarray(offset, offset + size) : await read(offset, size);
      const [box] = [...boxes(moov)];
      return box ? moovKeyframes(box.body) : undefined;
    }
    if (size < 8) {
      return undefined;
    }
    offset += size;
  }
  return undefined;
}

function moovKeyframes(moov: Uint8Array): KeyframeIndex | undefined {
  for (const trak of boxes(moov)) {
    if (trak.type !== "trak") {
      continue;
    }
    const mdia = child(trak.body, "mdia");
    const hdlr = mdia && child(mdia, "hdlr");
    if (!mdia || !hdlr || ascii(hdlr, 8, 4) !== "vide") {
      continue;
    }
    const mdhd = child(mdia, "mdhd");
    const stbl = child(child(mdia, "minf") ?? new Uint8Array(), "stbl");
    const stts = stbl && child(stbl, "stts");
    if (!mdhd || !stbl || !stts) {
      return undefined;
    }
    const timescale = mdhd[0] === 1 ? u32(mdhd, 20) : u32(mdhd, 12);
    const stss = child(stbl, "stss");
    if (!stss) {
      return { times: [], everyFrame: true };
    }
    const ctts = child(stbl, "ctts");
    const mediaTime = editStart(child(trak.body, "edts"));
    const syncSamples = table(stss, 1).map((entry) => entry[0] ?? 0);
    const decodeTimes = sampleTimes(table(stts, 2), syncSamples);
    const offsets = ctts ? compositionOffsets(ctts, syncSamples) : syncSamples.map(() => 0);
    const times = decodeTimes.map((time, index) => (time + (offsets[index] ?? 0) - mediaTime) / timescale);
    return { times: times.filter((time) => time >= 0).sort((a, b) => a - b), everyFrame: false };
  }
  return undefined;
}

/** A full box's table: entry count, then `width` 32-bit fields per entry. */
function table(body: Uint8Array, width: number): number[][] {
  const count = u32(body, 4);
  const entries: number[][] = [];
  for (let index = 0; index < count && 8 + (index + 1) * width * 4 <= body.length; index += 1) {
    const entry: number[] = [];
    for (let field = 0; field < width; field += 1) {
      entry.push(u32(body, 8 + (index * width + field) * 4));
    }
    entries.push(entry);
  }
  return entries;
}

/** Decode times (in the track's timescale) of the 1-based `samples`, ascending, from stts runs. */
function sampleTimes(runs: number[][], samples: readonly number[]): number[] {
  const times: number[] = [];
  let sample = 1;
  let time = 0;
  let next = 0;
  for (const [count = 0, delta = 0] of runs) {
    while (next < samples.length && (samples[next] ?? 0) < sample + count) {
      times.push(time + ((samples[next] ?? 0) - sample) * delta);
      next += 1;
    }
    sample += count;
    time += count * delta;
  }
  return times;
}

/** The composition offsets of the 1-based `samples` (signed in version 1 of ctts). */
function compositionOffsets(ctts: Uint8Array, samples: readonly number[]): number[] {
  const signed = ctts[0] === 1;
  const offsets: number[] = [];
  let sample = 1;
  let next = 0;
  for (const [count = 0, offset = 0] of table(ctts, 2)) {
    const value = signed ? offset | 0 : offset;
    while (next < samples.length && (samples[next] ?? 0) < sample + count) {
      offsets.push(value);
      next += 1;
    }
    sample += count;
  }
  return offsets;
}

/** Where the presentation starts in the media (the first non-empty edit), 0 without edits. */
function editStart(edts: Uint8Array | undefined): number {
  const elst = edts && child(edts, "elst");
  if (!elst) {
    return 0;
  }
  const version = elst[0];
  const count = u32(elst, 4);
  const entrySize = version === 1 ? 20 : 12;
  for (let index = 0; index < count; index += 1) {
    const at = 8 + index * entrySize;
    const mediaTime = version === 1 ? i64(elst, at + 8) : u32(elst, at + 4) | 0;
    if (mediaTime >= 0) {
      return mediaTime;
    }
  }
  return 0;
}

// -------------------------------------------------------------------------------------------
// WebM (Matroska)

const SEGMENT = 0x18538067;
const SEEK_HEAD = 0x114d9b74;
const SEEK = 0x4dbb;
const SEEK_ID = 0x53ab;
const SEEK_POSITION = 0x53ac;
const INFO = 0x1549a966;
const TIMESTAMP_SCALE = 0x2ad7b1;
const TRACKS = 0x1654ae6b;
const TRACK_ENTRY = 0xae;
const TRACK_NUMBER = 0xd7;
const TRACK_TYPE = 0x83;
const CUES = 0x1c53bb6b;
const CUE_POINT = 0xbb;
const CUE_TIME = 0xb3;
const CUE_TRACK_POSITIONS = 0xb7;
const CUE_TRACK = 0xf7;
const CLUSTER = 0x1f43b675;

interface Element {
  id: number;
  /** Offset of the payload in the buffer, and its size (Infinity: unknown, to the end). */
  start: number;
  size: number;
}

/** The element header at `offset`, or undefined when it does not fit. */
function element(bytes: Uint8Array, offset: number): Element | undefined {
  const id = vint(bytes, offset, false);
  if (!id) {
    return undefined;
  }
  const size = vint(bytes, offset + id.length, true);
  if (!size) {
    return undefined;
  }
  return { id: id.value, start: offset + id.length + size.length, size: size.value };
}

/** The children of the payload `bytes[start, end)`. */
function* elements(bytes: Uint8Array, start: number, end: number): Generator<Element> {
  let offset = start;
  while (offset < end) {
    const found = element(bytes, offset);
    if (!found) {
      return;
    }
    yield found;
    if (!Number.isFinite(found.size)) {
      return;
    }
    offset = found.start + found.size;
  }
}

function uint(bytes: Uint8Array, start: number, size: number): number {
  let value = 0;
  for (let index = 0; index < size && start + index < bytes.length; index += 1) {
    value = value * 256 + (bytes[start + index] ?? 0);
  }
  return value;
}

async function webmKeyframes(read: RangeReader, head: Uint8Array): Promise<KeyframeIndex | undefined> {
  const ebml = element(head, 0);
  const segment = ebml && Number.isFinite(ebml.size) ? element(head, ebml.start + ebml.size) : undefined;
  if (!segment || segment.id !== SEGMENT) {
    return undefined;
  }
  let timestampScale = 1_000_000;
  let videoTrack: number | undefined;
  let cuesAt: number | undefined;
  let cues: Uint8Array | undefined;
  const segmentEnd = Math.min(head.length, segment.start + segment.size);
  for (const top of elements(head, segment.start, segmentEnd)) {
    const end = Math.min(head.length, top.start + top.size);
    if (top.id === SEEK_HEAD) {
      for (const seek of elements(head, top.start, end)) {
        if (seek.id !== SEEK) {
          continue;
        }
        let id = 0;
        let position = 0;
        for (const field of elements(head, seek.start, seek.start + seek.size)) {
          if (field.id === SEEK_ID) {
            id = uint(head, field.start, field.size);
          } else if (field.id === SEEK_POSITION) {
            position = uint(head, field.start, field.size);
          }
        }
        if (id === CUES) {
          cuesAt = segment.start + position;
        }
      }
    } else if (top.id === INFO) {
      for (const field of elements(head, top.start, end)) {
        if (field.id === TIMESTAMP_SCALE) {
          timestampScale = uint(head, field.start, field.size);
        }
      }
    } else if (top.id === TRACKS) {
      videoTrack = videoTrackNumber(head, top.start, end);
    } else if (top.id === CUES && top.start + top.size <= head.length) {
      cues = head.subarray(top.start, top.start + top.size);
    } else if (top.id === CLUSTER) {
      break;
    }
  }
  if (!cues && cuesAt !== undefined) {
    const header = await read(cuesAt, 12);
    const found = element(header, 0);
    if (!found || found.id !== CUES || !Number.isFinite(found.size) || found.size > MAX_INDEX_BYTES) {
      return undefined;
    }
    cues = await read(cuesAt + found.start, found.size);
  }
  if (!cues) {
    return undefined;
  }
  const times: number[] = [];
  for (const point of elements(cues, 0, cues.length)) {
    if (point.id !== CUE_POINT) {
      continue;
    }
    let time: number | undefined;
    let forVideo = videoTrack === undefined;
    for (const field of elements(cues, point.start, point.start + point.size)) {
      if (field.id === CUE_TIME) {
        time = uint(cues, field.start, field.size);
      } else if (field.id === CUE_TRACK_POSITIONS) {
        for (const position of elements(cues, field.start, field.start + field.size)) {
          if (position.id === CUE_TRACK && uint(cues, position.start, position.size) === videoTrack) {
            forVideo = true;
          }
        }
      }
    }
    if (time !== undefined && forVideo) {
      times.push((time * timestampScale) / 1e9);
    }
  }
  return times.length > 0 ? { times: times.sort((a, b) => a - b), everyFrame: false } : undefined;
}

function videoTrackNumber(bytes: Uint8Array, start: number, end: number): number | undefined {
  for (const entry of elements(bytes, start, end)) {
    if (entry.id !== TRACK_ENTRY) {
      continue;
    }
    let number: number | undefined;
    let type = 0;
    for (const field of elements(bytes, entry.start, Math.min(end, entry.start + entry.size))) {
      if (field.id === TRACK_NUMBER) {
        number = uint(bytes, field.start, field.size);
      } else if (field.id === TRACK_TYPE) {
        type = uint(bytes, field.start, field.size);
      }
    }
    if (type === 1 && number !== undefined) {
      return number;
    }
  }
  return undefined;
}

/**
 * An EBML variable-length integer at `offset`: an element id keeps its length marker, a size
 * drops it (all ones meaning unknown: Infinity).
 */
function vint(bytes: Uint8Array, offset: number, isSize: boolean): { value: number; length: number } | undefined {
  const first = bytes[offset];
  if (first === undefined || first === 0) {
    return undefined;
  }
  const length = Math.clz32(first) - 23;
  if (offset + length > bytes.length || length > 8) {
    return undefined;
  }
  let value = isSize ? first & (0xff >> length) : first;
  let allOnes = value === 0xff >> length;
  for (let index = 1; index < length; index += 1) {
    const byte = bytes[offset + index] ?? 0;
    value = value * 256 + byte;
    allOnes &&= byte === 0xff;
  }
  return { value: isSize && allOnes ? Infinity : value, length };
}

// -------------------------------------------------------------------------------------------

function u32(bytes: Uint8Array, offset: number): number {
  return offset + 4 <= bytes.length ? new DataView(bytes.buffer, bytes.byteOffset + offset, 4).getUint32(0) : 0;
}

function u64(bytes: Uint8Array, offset: number): number {
  return u32(bytes, offset) * 2 ** 32 + u32(bytes, offset + 4);
}

function i64(bytes: Uint8Array, offset: number): number {
  return offset + 8 <= bytes.length ? Number(new DataView(bytes.buffer, bytes.byteOffset + offset, 8).getBigInt64(0)) : 0;
}

function ascii(bytes: Uint8Array, offset: number, length: number): string {
  return String.fromCharCode(...bytes.subarray(offset, offset + length));
}
