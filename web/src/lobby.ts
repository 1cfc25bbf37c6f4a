// The lobby: public rooms (refreshed every few seconds), the caller's own rooms, a form to
// open a room, and a field to paste a room link.

import { describeError } from "./api";
import { h, replace } from "./dom";
import { ControlMode, type Room, Visibility } from "./gen/xiaowo/room/v1/room_pb";
import type { NowPlaying } from "./gen/xiaowo/sync/v1/sync_pb";
import { nowPlayingLine } from "./library";
import type { App } from "./main";

const REFRESH_MS = 5_000;

export function showLobby(app: App, main: HTMLElement): () => void {
  document.title = "Xiaowo";
  const publicList = h("ul", { class: "rooms", attrs: { id: "public-rooms" } });
  const myList = h("ul", { class: "rooms", attrs: { id: "my-rooms" } });
  const listError = h("p", { class: "error" });

  const refresh = async (): Promise<void> => {
    try {
      const [publicRooms, myRooms] = await Promise.all([
        app.api.room.listRooms({ pageSize: 50 }),
        app.api.room.listMyRooms({ pageSize: 50 }),
      ]);
      // What the caller's rooms play (only members are told), beside each of them.
      const roomIds = [...new Set([...myRooms.rooms, ...publicRooms.rooms].map((room) => room.roomId))].slice(0, 50);
      const playing = new Map<string, NowPlaying>();
      if (roomIds.length > 0) {
        const { nowPlaying } = await app.api.sync.listNowPlaying({ roomIds }).catch(() => ({ nowPlaying: [] as NowPlaying[] }));
        for (const entry of nowPlaying) {
          playing.set(entry.roomId, entry);
        }
      }
      renderRooms(app, publicList, publicRooms.rooms, "No public rooms yet: open one.", playing);
      renderRooms(app, myList, myRooms.rooms, "You have not joined a room yet.", playing);
      listError.textContent = "";
    } catch (error) {
      listError.textContent = describeError(error);
    }
  };

  replace(
    main,
    h(
      "div",
      { class: "lobby" },
      h("section", { class: "card" }, h("h2", {}, "Public rooms"), listError, publicList),
      h("section", { class: "card" }, h("h2", {}, "Your rooms"), myList, joinByLink(app)),
      createRoomForm(app),
    ),
  );
  void refresh();
  const timer = window.setInterval(() => {
    if (document.visibilityState === "visible") {
      void refresh();
    }
  }, REFRESH_MS);
  return () => window.clearInterval(timer);
}

function renderRooms(app: App, list: HTMLElement, rooms: Room[], empty: string, playing: Map<string, NowPlaying>): void {
  if (rooms.length === 0) {
    replace(list, h("li", { class: "muted" }, empty));
    return;
  }
  replace(
    list,
    ...rooms.map((room) => {
      const link = h("a", { attrs: { href: `/room/${room.roomId}`, class: "room-link" } }, room.name);
      link.addEventListener("click", (event) => {
        event.preventDefault();
        app.navigate(`/room/${room.roomId}`);
      });
      return h(
        "li",
        {},
        link,
        room.hasPassword ? h("span", { class: "badge", attrs: { title: "Needs a password" } }, "password") : null,
        h("span", { class: "muted" }, ` ${room.memberCount} ${room.memberCount === 1 ? "member" : "members"}`),
        room.description ? h("div", { class: "muted small" }, room.description) : null,
        nowPlayingLine(playing.get(room.roomId)),
      );
    }),
  );
}

function joinByLink(app: App): HTMLElement {
  const input = h("input", { attrs: { id: "room-link", placeholder: "Paste a room link", autocomplete: "off" } });
  const form = h("form", { class: "inline" }, input, h("button", { attrs: { type: "submit" } }, "Open"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const match = /([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})/.exec(input.value);
    if (match?.[1]) {
      app.navigate(`/room/${match[1]}`);
    } else {
      app.notify("That does not look like a room link.", "error");
    }
  });
  return form;
}

function createRoomForm(app: App): HTMLElement {
  const name = h("input", { attrs: { id: "room-name", maxlength: "64", required: "" } });
  const description = h("textarea", { attrs: { id: "room-description", maxlength: "500", rows: "2" } });
  const visibility = h(
    "select",
    { attrs: { id: "room-visibility" } },
    h("option", { attrs: { value: String(Visibility.PUBLIC) } }, "Public (listed)"),
    h("option", { attrs: { value: String(Visibility.UNLISTED) } }, "Unlisted (link only)"),
  );
  const password = h("input", { attrs: { id: "room-password", type: "password", autocomplete: "new-password", placeholder: "Optional, 8+ characters" } });
  const control = h(
    "select",
    { attrs: { id: "room-control" } },
    h("option", { attrs: { value: String(ControlMode.EVERYONE) } }, "Everyone controls playback"),
    h("option", { attrs: { value: String(ControlMode.MODERATORS) } }, "Moderators control playback"),
    h("option", { attrs: { value: String(ControlMode.OWNER) } }, "Only I control playback"),
  );
  const error = h("p", { class: "error", attrs: { id: "create-error" } });
  const form = h(
    "form",
    { class: "card", attrs: { id: "create-room" } },
    h("h2", {}, "Open a room"),
    h("label", { attrs: { for: "room-name" } }, "Name"),
    name,
    h("label", { attrs: { for: "room-description" } }, "Description"),
    description,
    h("label", { attrs: { for: "room-visibility" } }, "Visibility"),
    visibility,
    h("label", { attrs: { for: "room-password" } }, "Password"),
    password,
    h("label", { attrs: { for: "room-control" } }, "Control"),
    control,
    error,
    h("button", { attrs: { type: "submit" } }, "Open room"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      const { room } = await app.api.room.createRoom({
        name: name.value,
        description: description.value,
        visibility: Number(visibility.value) as Visibility,
        password: password.value,
        controlMode: Number(control.value) as ControlMode,
      });
      if (room) {
        // Owning a room is a privilege: a new session token (and cookie) from here on, so a
        // token anyone saw before cannot act as this room's owner.
        await app.api.session.rotateSession({});
        app.navigate(`/room/${room.roomId}`);
      }
    } catch (failure) {
      error.textContent = describeError(failure);
    }
  });
  return form;
}
