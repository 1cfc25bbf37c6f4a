// A room page: joins (asking for the password when the room has one), then lays out the player,
// the queue, the members with their drift, the chat and the owner's settings, and shows the
// connection state of the two live streams.

import { Code } from "@connectrpc/connect";

import { describeError, errorCode } from "./api";
import { Chat } from "./chat";
import { RoomContext, roleName } from "./context";
import { button, h, replace } from "./dom";
import { ControlMode, type Room, Role, RoomStatus, Visibility } from "./gen/xiaowo/room/v1/room_pb";
import { PlayerState, type Watcher } from "./gen/xiaowo/sync/v1/sync_pb";
import { LibraryPanel } from "./library";
import { describeMemberLoadError } from "./loaderror";
import type { App } from "./main";
import { Player } from "./player";
import { UploadPanel } from "./upload";
import type { StreamState } from "./stream";

const REFRESH_MS = 10_000;

export function showRoom(app: App, main: HTMLElement, roomId: string): () => void {
  let left = false;
  let teardown: (() => void) | undefined;
  replace(main, h("p", { class: "muted" }, "Opening the room…"));

  const enter = async (password?: string): Promise<void> => {
    try {
      const { room, role } = await app.api.room.getRoom({ roomId });
      if (!room) {
        throw new Error("no room");
      }
      if (room.status !== RoomStatus.ACTIVE) {
        showGone(app, main, "This room is closed.");
        return;
      }
      let myRole = role;
      if (myRole === Role.UNSPECIFIED) {
        if (room.hasPassword && password === undefined) {
          askPassword(app, main, room, (given) => enter(given));
          return;
        }
        const joined = await app.api.room.joinRoom({ roomId, password: password ?? "" });
        myRole = joined.member?.role ?? Role.MEMBER;
      }
      if (!left) {
        teardown = openRoom(app, main, new RoomContext(app, roomId, room, myRole));
      }
    } catch (error) {
      const code = errorCode(error);
      if (code === Code.NotFound) {
        showGone(app, main, "There is no such room (the link may be wrong, or the room was closed).");
      } else if (password !== undefined && (code === Code.PermissionDenied || code === Code.InvalidArgument || code === Code.ResourceExhausted)) {
        const room = (await app.api.room.getRoom({ roomId }).catch(() => undefined))?.room;
        if (room) {
          askPassword(app, main, room, (given) => enter(given), describeError(error));
        }
      } else {
        showGone(app, main, describeError(error));
      }
    }
  };
  void enter();
  return () => {
    left = true;
    teardown?.();
  };
}

function showGone(app: App, main: HTMLElement, text: string): void {
  const back = button("Back to the lobby", () => app.navigate("/"));
  replace(main, h("section", { class: "card narrow" }, h("p", { class: "error", attrs: { id: "room-error" } }, text), back));
}

function askPassword(app: App, main: HTMLElement, room: Room, submit: (password: string) => Promise<void>, failure = ""): void {
  const input = h("input", { attrs: { id: "join-password", type: "password", autocomplete: "current-password", required: "" } });
  const error = h("p", { class: "error", attrs: { id: "join-error" } }, failure);
  const form = h(
    "form",
    { class: "card narrow", attrs: { id: "join-form" } },
    h("h1", {}, room.name),
    room.description ? h("p", {}, room.description) : null,
    h("label", { attrs: { for: "join-password" } }, "This room needs a password"),
    input,
    error,
    h("div", { class: "row" }, h("button", { attrs: { type: "submit" } }, "Join"), button("Cancel", () => app.navigate("/"), { class: "link" })),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    error.textContent = "";
    void submit(input.value);
  });
  replace(main, form);
  input.focus();
}

function openRoom(app: App, main: HTMLElement, ctx: RoomContext): () => void {
  const connection = h("span", { class: "connection", attrs: { id: "connection", "data-state": "connecting" } }, "connecting…");
  const streams: Record<"sync" | "chat", StreamState> = {
    sync: { kind: "connecting", attempt: 1 },
    chat: { kind: "connecting", attempt: 1 },
  };
  let ended = false;
  const onStreamState = (which: "sync" | "chat") => (state: StreamState) => {
    streams[which] = state;
    renderConnection(connection, streams);
    if (state.kind === "ended" && !ended) {
      ended = true;
      const text =
        state.code === Code.PermissionDenied
          ? "You are no longer a member of this room."
          : state.code === Code.Unauthenticated
            ? "Your session has ended."
            : "This room has been closed.";
      stop();
      showGone(app, main, text);
    }
  };

  const members = h("ul", { class: "members", attrs: { id: "members" } });
  let watchers: Watcher[] = [];
  const chat = new Chat(ctx, onStreamState("chat"));
  const player = new Player(
    ctx,
    (latest) => {
      watchers = latest;
      // Someone new is watching: fetch their name and role, at most every few seconds.
      if (latest.some((watcher) => !ctx.members.has(watcher.userId)) && performance.now() - lastRefresh > 3_000) {
        void refresh();
      }
      renderMembers(ctx, members, watchers, chat, player.currentMediaId());
    },
    onStreamState("sync"),
  );
  const library = new LibraryPanel(ctx, player);
  const upload = new UploadPanel(ctx, async (item, addToQueue) => {
    if (addToQueue && !ctx.controlDeniedReason()) {
      await player.addLibraryItem(item, false);
    }
    await library.refresh();
  });

  const title = h("h1", { attrs: { id: "room-name" } });
  const description = h("p", { class: "muted" });
  const myRole = h("span", { class: "badge", attrs: { id: "my-role" } });
  const settings = h("div", { attrs: { id: "settings-slot" } });
  // Rebuilt only when the role changes, so that a periodic refresh never wipes an edit.
  let settingsFor: Role | undefined;
  const renderHeader = (): void => {
    title.textContent = ctx.room.name;
    description.textContent = ctx.room.description;
    myRole.textContent = roleName(ctx.role);
    document.title = `${ctx.room.name} · Xiaowo`;
    if (settingsFor !== ctx.role) {
      settingsFor = ctx.role;
      replace(settings, ctx.role >= Role.MODERATOR ? settingsPanel(ctx) : null);
    }
  };
  ctx.onChange(() => {
    renderHeader();
    renderMembers(ctx, members, watchers, chat, player.currentMediaId());
  });

  const share = button("Copy link", async () => {
    const link = `${window.location.origin}/room/${ctx.roomId}`;
    try {
      await navigator.clipboard.writeText(link);
      app.notify("Link copied.");
    } catch {
      app.notify(link);
    }
  });
  const leave = button("Leave room", async () => {
    try {
      await app.api.room.leaveRoom({ roomId: ctx.roomId });
      app.navigate("/");
    } catch (error) {
      app.notify(describeError(error), "error");
    }
  }, { class: "link", attrs: { id: "leave-room" } });

  replace(
    main,
    h(
      "div",
      { class: "room" },
      h("div", { class: "room-head" }, h("div", {}, title, description), h("div", { class: "row" }, myRole, connection, share, leave)),
      h("div", { class: "room-main" }, player.element, player.queueElement, upload.element, library.element, settings),
      h("div", { class: "room-side" }, h("section", { class: "card" }, h("h2", {}, "Members"), members), chat.element),
    ),
  );

  let lastRefresh = -Infinity;
  const refresh = async (): Promise<void> => {
    lastRefresh = performance.now();
    try {
      const [{ room, role }, { members: list }] = await Promise.all([
        ctx.app.api.room.getRoom({ roomId: ctx.roomId }),
        ctx.app.api.room.listMembers({ roomId: ctx.roomId }),
      ]);
      if (room) {
        ctx.room = room;
      }
      if (role > ctx.role) {
        // Promoted (moderator, or handed the room): a new session token from here on, so a
        // token anyone saw before cannot act with the new role. Best effort: the old one
        // keeps working if this fails.
        await ctx.app.api.session.rotateSession({}).catch(() => undefined);
      }
      ctx.role = role;
      ctx.setMembers(list);
      ctx.changed();
    } catch (error) {
      if (errorCode(error) === Code.PermissionDenied && !ended) {
        ended = true;
        stop();
        showGone(app, main, "You are no longer a member of this room.");
      }
    }
  };

  // The browser knows about a lost network before a stream does: drop the streams at once (the
  // state shows it) and reconnect as soon as the network is back.
  const online = (): void => {
    player.reconnectNow();
    chat.reconnectNow();
  };
  window.addEventListener("online", online);
  window.addEventListener("offline", online);
  const timer = window.setInterval(() => void refresh(), REFRESH_MS);
  const stop = (): void => {
    window.removeEventListener("online", online);
    window.removeEventListener("offline", online);
    window.clearInterval(timer);
    player.stop();
    chat.stop();
    upload.stop();
    library.stop();
  };

  renderHeader();
  void refresh();
  player.start();
  chat.start();
  upload.start();
  library.start();
  return stop;
}

function renderConnection(element: HTMLElement, streams: Record<"sync" | "chat", StreamState>): void {
  const states = Object.values(streams);
  let state: string;
  let text: string;
  if (states.every((stream) => stream.kind === "live")) {
    state = "live";
    text = "● connected";
  } else if (states.some((stream) => stream.kind === "retrying")) {
    state = "retrying";
    const retrying = states.find((stream) => stream.kind === "retrying");
    text = retrying && retrying.kind === "retrying" ? `reconnecting in ${Math.ceil(retrying.inSeconds)} s…` : "reconnecting…";
  } else if (states.some((stream) => stream.kind === "ended")) {
    state = "ended";
    text = "disconnected";
  } else {
    state = "connecting";
    text = "connecting…";
  }
  element.setAttribute("data-state", state);
  element.textContent = text;
}

function renderMembers(ctx: RoomContext, list: HTMLElement, watchers: Watcher[], chat: Chat, mediaId: string): void {
  const watching = new Map(watchers.map((watcher) => [watcher.userId, watcher]));
  const userIds = [...ctx.members.keys()];
  for (const watcher of watchers) {
    if (!ctx.members.has(watcher.userId)) {
      userIds.push(watcher.userId);
    }
  }
  if (userIds.length === 0) {
    replace(list, h("li", { class: "muted" }, "Loading members…"));
    return;
  }
  replace(
    list,
    ...userIds.map((userId) => {
      const role = ctx.roleOf(userId);
      const watcher = watching.get(userId);
      const me = userId === ctx.myUserId;
      return h(
        "li",
        { attrs: { "data-user-id": userId } },
        h("span", { class: "member-name" }, ctx.nameOf(userId), me ? " (you)" : ""),
        h("span", { class: `badge role-${roleName(role)}` }, roleName(role)),
        h("span", { class: "drift muted small" }, watcher ? describeWatcher(watcher) : "not watching"),
        // One's own trouble is in the player's status line already.
        !me && watcher?.loadError && watcher.loadError.mediaId === mediaId
          ? h("span", { class: "load-error small" }, describeMemberLoadError(ctx.nameOf(userId), watcher.loadError))
          : null,
        me ? null : memberActions(ctx, userId, role, chat),
      );
    }),
  );
}

function describeWatcher(watcher: Watcher): string {
  const offset = Number(watcher.offsetMs);
  const drift = `${offset >= 0 ? "+" : ""}${offset} ms`;
  switch (watcher.state) {
    case PlayerState.BUFFERING:
      return `buffering · ${drift}`;
    case PlayerState.ENDED:
      return "finished";
    case PlayerState.FAILED:
      return "cannot play";
    case PlayerState.READY:
      return drift;
    case PlayerState.UNSPECIFIED:
      return "watching";
  }
}

function memberActions(ctx: RoomContext, userId: string, role: Role, chat: Chat): HTMLElement | null {
  const api = ctx.app.api.room;
  const roomId = ctx.roomId;
  const run = (action: () => Promise<unknown>, done: string) => async () => {
    try {
      await action();
      ctx.app.notify(done);
      const { members } = await api.listMembers({ roomId });
      ctx.setMembers(members);
      ctx.changed();
    } catch (error) {
      ctx.app.notify(describeError(error), "error");
    }
  };
  const name = ctx.nameOf(userId);
  const actions: HTMLElement[] = [];
  if (ctx.role === Role.OWNER && role !== Role.OWNER) {
    actions.push(
      role === Role.MODERATOR
        ? button("Make member", run(() => api.setMemberRole({ roomId, userId, role: Role.MEMBER }), `${name} is a member now.`), { class: "link small" })
        : button("Make moderator", run(() => api.setMemberRole({ roomId, userId, role: Role.MODERATOR }), `${name} is a moderator now.`), { class: "link small" }),
      button("Make owner", run(() => api.transferOwnership({ roomId, userId }), `${name} owns the room now.`), { class: "link small" }),
    );
  }
  const outranks = ctx.role === Role.OWNER ? role !== Role.OWNER : ctx.role === Role.MODERATOR && role === Role.MEMBER;
  if (ctx.canModerate() && outranks && ctx.members.has(userId)) {
    actions.push(
      button("Mute", () => chat.mute(userId), { class: "link small" }),
      button("Kick", run(() => api.kickMember({ roomId, userId }), `${name} was removed.`), { class: "link small" }),
    );
  }
  return actions.length > 0 ? h("span", { class: "actions" }, ...actions) : null;
}

function settingsPanel(ctx: RoomContext): HTMLElement {
  const owner = ctx.role === Role.OWNER;
  const room = ctx.room;
  const name = h("input", { attrs: { id: "settings-name", maxlength: "64" } });
  name.value = room.name;
  const description = h("textarea", { attrs: { id: "settings-description", maxlength: "500", rows: "2" } });
  description.value = room.description;
  const visibility = h(
    "select",
    { attrs: { id: "settings-visibility" } },
    h("option", { attrs: { value: String(Visibility.PUBLIC) } }, "Public"),
    h("option", { attrs: { value: String(Visibility.UNLISTED) } }, "Unlisted"),
  );
  visibility.value = String(room.visibility === Visibility.UNLISTED ? Visibility.UNLISTED : Visibility.PUBLIC);
  const control = h(
    "select",
    { attrs: { id: "settings-control" } },
    h("option", { attrs: { value: String(ControlMode.EVERYONE) } }, "Everyone"),
    h("option", { attrs: { value: String(ControlMode.MODERATORS) } }, "Moderators"),
    h("option", { attrs: { value: String(ControlMode.OWNER) } }, "Owner only"),
  );
  control.value = String(room.controlMode === ControlMode.UNSPECIFIED ? ControlMode.EVERYONE : room.controlMode);
  const password = h("input", { attrs: { id: "settings-password", type: "password", autocomplete: "new-password", placeholder: room.hasPassword ? "Leave empty to keep it" : "None" } });
  const clearPassword = h("input", { attrs: { id: "settings-clear-password", type: "checkbox" } });

  const save = button("Save settings", async () => {
    try {
      const { room: updated } = await ctx.app.api.room.updateRoom({
        roomId: ctx.roomId,
        name: name.value,
        description: description.value,
        ...(owner
          ? {
              visibility: Number(visibility.value) as Visibility,
              controlMode: Number(control.value) as ControlMode,
              ...(password.value ? { password: password.value } : {}),
              clearPassword: clearPassword.checked,
            }
          : {}),
      });
      if (updated) {
        ctx.room = updated;
        ctx.changed();
      }
      ctx.app.notify("Settings saved.");
    } catch (error) {
      ctx.app.notify(describeError(error), "error");
    }
  }, { attrs: { id: "settings-save" } });
  const close = owner
    ? button("Close the room", async () => {
        if (!window.confirm("Close this room for everyone?")) {
          return;
        }
        try {
          await ctx.app.api.room.closeRoom({ roomId: ctx.roomId });
          ctx.app.navigate("/");
        } catch (error) {
          ctx.app.notify(describeError(error), "error");
        }
      }, { class: "danger" })
    : null;

  return h(
    "details",
    { class: "card settings", attrs: { id: "room-settings" } },
    h("summary", {}, "Room settings"),
    h("label", { attrs: { for: "settings-name" } }, "Name"),
    name,
    h("label", { attrs: { for: "settings-description" } }, "Description"),
    description,
    owner ? h("label", { attrs: { for: "settings-visibility" } }, "Visibility") : null,
    owner ? visibility : null,
    owner ? h("label", { attrs: { for: "settings-control" } }, "Who controls playback") : null,
    owner ? control : null,
    owner ? h("label", { attrs: { for: "settings-password" } }, "New password") : null,
    owner ? password : null,
    owner && room.hasPassword ? h("label", {}, clearPassword, " Remove the password") : null,
    h("div", { class: "row" }, save, close),
  );
}
