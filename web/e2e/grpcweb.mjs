// A minimal gRPC-web client for the browser tests (protobuf by hand: strings, varints and nested
// messages suffice), so that seeding rows does not go through the page.

export function varint(value) {
  const out = [];
  let rest = value;
  while (rest > 127) {
    out.push((rest % 128) | 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

/** One field: a string or bytes (length-delimited) or a number (varint). */
export function field(number, value) {
  if (typeof value === "number") {
    return [...varint(number * 8), ...varint(value)];
  }
  const bytes = typeof value === "string" ? new TextEncoder().encode(value) : value;
  return [...varint(number * 8 + 2), ...varint(bytes.length), ...bytes];
}

export function encode(...fields) {
  return Uint8Array.from(fields.flat());
}

export function readVarint(bytes, start) {
  let value = 0;
  let scale = 1;
  let index = start;
  for (;;) {
    const byte = bytes[index++];
    value += (byte & 127) * scale;
    scale *= 128;
    if (byte < 128) {
      return [value, index];
    }
  }
}

/** Field number → values (numbers or byte arrays). */
export function decode(bytes) {
  const fields = new Map();
  let index = 0;
  while (index < bytes.length) {
    const [key, next] = readVarint(bytes, index);
    index = next;
    let value;
    switch (key % 8) {
      case 0:
        [value, index] = readVarint(bytes, index);
        break;
      case 2: {
        let length;
        [length, index] = readVarint(bytes, index);
        value = bytes.subarray(index, index + length);
        index += length;
        break;
      }
      case 1:
        value = bytes.subarray(index, index + 8);
        index += 8;
        break;
      case 5:
        value = bytes.subarray(index, index + 4);
        index += 4;
        break;
      default:
        throw new Error(`wire type ${key % 8}`);
    }
    const number = Math.floor(key / 8);
    fields.set(number, [...(fields.get(number) ?? []), value]);
  }
  return fields;
}

export const text = (bytes) => new TextDecoder().decode(bytes);

/** One unary gRPC-web call: the grpc-status and the response message's bytes. */
export async function call(base, path, body, token) {
  const frame = new Uint8Array(5 + body.length);
  new DataView(frame.buffer).setUint32(1, body.length);
  frame.set(body, 5);
  const headers = { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" };
  if (token) {
    headers.authorization = `Bearer ${token}`;
  }
  const response = await fetch(`${base}${path}`, { method: "POST", headers, body: frame });
  const bytes = new Uint8Array(await response.arrayBuffer());
  let status = response.headers.get("grpc-status");
  let data = new Uint8Array();
  for (let index = 0; index + 5 <= bytes.length; ) {
    const length = new DataView(bytes.buffer, bytes.byteOffset + index + 1, 4).getUint32(0);
    const payload = bytes.subarray(index + 5, index + 5 + length);
    if (bytes[index] & 0x80) {
      status = /grpc-status:\s*(\d+)/i.exec(text(payload))?.[1] ?? status;
    } else {
      data = payload;
    }
    index += 5 + length;
  }
  return { code: Number(status ?? -1), data };
}

export const OK = 0;
export const INVALID_ARGUMENT = 3;

export async function createSession(base, displayName) {
  const { code, data } = await call(base, "/xiaowo.session.v1.SessionService/CreateSession", encode(field(1, displayName)));
  return code === OK ? text(decode(data).get(2)[0]) : undefined;
}

/** A room's id, or undefined when refused. `password` makes it need one. */
export async function createRoom(base, token, name, description, { password = "" } = {}) {
  const body = encode(field(1, name), field(2, description), ...(password ? [field(4, password)] : []));
  const { code, data } = await call(base, "/xiaowo.room.v1.RoomService/CreateRoom", body, token);
  return code === OK ? text(decode(decode(data).get(1)[0]).get(1)[0]) : undefined;
}

/** Joins a room; the status code. */
export async function joinRoom(base, token, roomId, password = "") {
  return (await call(base, "/xiaowo.room.v1.RoomService/JoinRoom", encode(field(1, roomId), ...(password ? [field(2, password)] : [])), token)).code;
}

/** Loads a video into a room (paused at 0); the status code. */
export async function changeMedia(base, token, roomId, url, title) {
  const body = encode(field(1, roomId), field(2, 0), field(3, url), field(4, title), field(5, 60_000));
  return (await call(base, "/xiaowo.sync.v1.SyncService/ChangeMedia", body, token)).code;
}
