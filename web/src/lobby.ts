// The lobby: the caller's rooms and the public rooms as cards (picture, what is playing, how
// many are in, whether it needs a password), refreshed every few seconds; creating a room is a
// dialog; a field takes a pasted room link.

import { timestampDate } from "@bufbuild/protobuf/wkt";

import { button, h, icon, initial, replace, setDocumentTitle, setLabel } from "./dom";
import { sentenceFor } from "./errors";
import type { Api } from "./api";
import { controlModeSelect } from "./context";
import { ControlMode, type ListMyRoomsResponse, type ListRoomsResponse, type Room, Visibility } from "./gen/xiaowo/room/v1/room_pb";
import { formatDateTime, type Shown, t, userText } from "./i18n";
import { thumbnail } from "./thumbnail";
import type { App } from "./main";
import { checkbox, field, openDialog } from "./ui";

const REFRESH_MS = 5_000;
/** What is playing in a room is asked for at most this often, for at most this many rooms. */
const NOW_PLAYING_MS = 30_000;
const NOW_PLAYING_ROOMS = 50;
const ROOM_LINK = /([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})/;

interface NowPlaying {
  title: string;
  paused: boolean;
  /** A media library item's id: its thumbnail is the room's picture. */
  libraryItemId: string;
  at: number;
}

/** What is playing, by room id (kept across visits to the lobby). */
const nowPlaying = new Map<string, NowPlaying>();

export type LobbyLists = [ListRoomsResponse, ListMyRoomsResponse];

export function fetchLobbyLists(api: Api): Promise<LobbyLists> {
  return Promise.all([api.room.listRooms({ pageSize: 50 }), api.room.listMyRooms({ pageSize: 50 })]);
}

/** Shows the lobby; `prefetched` is a first answer asked for while the page was starting. */
export function showLobby(app: App, main: HTMLElement, prefetched?: Promise<LobbyLists>): () => void {
  setDocumentTitle(t("lobby.pageTitle"));
  const publicList = h("ul", { class: "room-grid", attrs: { id: "public-rooms", "aria-labelledby": "public-rooms-title" } });
  const myList = h("ul", { class: "room-grid", attrs: { id: "my-rooms", "aria-labelledby": "my-rooms-title" } });
  const mySection = h("section", { class: "lobby-section", attrs: { id: "my-rooms-section" } }, h("h2", { attrs: { id: "my-rooms-title" } }, t("lobby.yourRooms")), myList);
  mySection.hidden = true;
  const publicSection = h("section", { class: "lobby-section" }, h("h2", { attrs: { id: "public-rooms-title" } }, t("lobby.publicRooms")), publicList);
  publicSection.hidden = true;
  const listError = h("p", { class: "error", attrs: { role: "alert" } });

  const refresh = async (): Promise<void> => {
    try {
      const first = prefetched;
      prefetched = undefined;
      const [publicRooms, myRooms] = await (first ?? fetchLobbyLists(app.api)).catch(() => fetchLobbyLists(app.api));
      // Shown once there is something to show, so that nothing moves when the lists arrive.
      publicSection.hidden = false;
      mySection.hidden = myRooms.rooms.length === 0;
      // A room of yours is listed once, under your rooms.
      const mine = new Set(myRooms.rooms.map((room) => room.roomId));
      const others = publicRooms.rooms.filter((room) => !mine.has(room.roomId));
      const noOthers = mine.size > 0 ? t("lobby.noOtherPublicRooms") : t("lobby.noPublicRooms");
      const draw = (): void => {
        renderRooms(app, myList, myRooms.rooms, t("lobby.noRoomsOfYours"));
        renderRooms(app, publicList, others, noOthers);
      };
      draw();
      replace(listError);
      void fetchNowPlaying(app, myRooms.rooms).then((changed) => {
        if (changed) {
          draw();
        }
      });
    } catch (error) {
      replace(listError, sentenceFor(error));
    }
  };

  const openCreate = button(t("lobby.create"), () => openCreateRoom(app), { kind: "primary", icon: "plus", attrs: { id: "open-create-room" } });
  replace(
    main,
    h(
      "div",
      { class: "lobby" },
      h(
        "section",
        { class: "hero", attrs: { "aria-labelledby": "lobby-title" } },
        h(
          "div",
          { class: "hero-text" },
          h("h1", { attrs: { id: "lobby-title" } }, t("lobby.title")),
          h("p", { class: "lead" }, t("lobby.lead")),
        ),
        h("div", { class: "hero-actions" }, openCreate, joinByLink(app)),
      ),
      listError,
      mySection,
      publicSection,
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

/**
 * Asks what is playing in the rooms the caller belongs to (the sync service answers members
 * only), in one call, not more often than every half minute per room. True when anything
 * changed.
 */
async function fetchNowPlaying(app: App, rooms: Room[]): Promise<boolean> {
  const now = performance.now();
  const due = rooms.filter((room) => now - (nowPlaying.get(room.roomId)?.at ?? -Infinity) > NOW_PLAYING_MS).slice(0, NOW_PLAYING_ROOMS);
  if (due.length === 0) {
    return false;
  }
  let answered: Map<string, NowPlaying>;
  try {
    // One call for every room due; rooms the caller may not see are left out of the answer.
    const { nowPlaying: playing } = await app.api.sync.listNowPlaying({ roomIds: due.map((room) => room.roomId) });
    answered = new Map(
      playing.map((entry) => [entry.roomId, { title: entry.media ? entry.media.title || entry.media.url : "", paused: entry.paused, libraryItemId: entry.media?.libraryItemId ?? "", at: now }]),
    );
  } catch {
    answered = new Map();
  }
  let changed = false;
  for (const room of due) {
    const before = nowPlaying.get(room.roomId);
    const next = answered.get(room.roomId) ?? { title: "", paused: true, libraryItemId: "", at: now };
    changed ||= before?.title !== next.title || before.paused !== next.paused || before.libraryItemId !== next.libraryItemId;
    nowPlaying.set(room.roomId, next);
  }
  return changed;
}

/** A hue for a room's placeholder picture, the same every time for the same room. */
function hueOf(roomId: string): number {
  let hash = 0;
  for (const char of roomId) {
    hash = (hash * 31 + char.charCodeAt(0)) % 360;
  }
  return hash;
}

function renderRooms(app: App, list: HTMLElement, rooms: Room[], empty: Shown): void {
  if (rooms.length === 0) {
    replace(list, h("li", { class: "empty-state" }, h("p", {}, empty)));
    return;
  }
  replace(list, ...rooms.map((room) => h("li", {}, roomCard(app, room))));
}

function roomCard(app: App, room: Room): HTMLElement {
  const playing = nowPlaying.get(room.roomId);
  const thumb = h(
    "div",
    { class: "room-thumb", attrs: { "data-room-id": room.roomId } },
    playing?.libraryItemId
      ? thumbnail(playing.libraryItemId)
      : h("span", { class: "room-thumb-initial", attrs: { "aria-hidden": "true" } }, initial(room.name)),
    playing?.title
      ? h(
          "span",
          { class: "room-thumb-playing" },
          icon(playing.paused ? "pause" : "play"),
          h("span", { class: "visually-hidden" }, playing.paused ? t("lobby.pausedOn") : t("lobby.playing")),
          h("span", { class: "room-thumb-title" }, userText(playing.title)),
        )
      : null,
    room.hasPassword ? h("span", { class: "room-thumb-lock", attrs: { title: t("lobby.locked") } }, icon("lock"), h("span", { class: "visually-hidden" }, t("lobby.locked"))) : null,
  );
  thumb.style.setProperty("--hue", String(hueOf(room.roomId)));
  const meta: (Node | Shown)[] = [h("span", { class: "room-card-count" }, icon("people"), t("lobby.members", { count: room.memberCount }))];
  if (room.visibility === Visibility.UNLISTED) {
    meta.push(h("span", { class: "pill" }, t("lobby.unlisted")));
  }
  const created = room.lastActiveTime ?? room.createTime;
  const link = h(
    "a",
    { class: "room-card room-link", attrs: { href: `/room/${room.roomId}`, "data-room-id": room.roomId } },
    thumb,
    h(
      "div",
      { class: "room-card-body" },
      h("h3", { class: "room-card-name" }, userText(room.name)),
      room.description ? h("p", { class: "room-card-description" }, userText(room.description)) : null,
      h("p", { class: "room-card-meta" }, ...meta),
    ),
  );
  if (created) {
    setLabel(link, "title", t("lobby.lastActive", { time: formatDateTime(timestampDate(created)) }));
  }
  link.addEventListener("click", (event) => {
    if (event instanceof MouseEvent && (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0)) {
      return;
    }
    event.preventDefault();
    app.navigate(`/room/${room.roomId}`);
  });
  return link;
}

function joinByLink(app: App): HTMLElement {
  const input = h("input", { attrs: { id: "room-link", type: "text", placeholder: t("lobby.linkPlaceholder"), autocomplete: "off", "aria-label": t("lobby.linkLabel") } });
  const form = h(
    "form",
    { class: "join-link", attrs: { id: "join-link" } },
    input,
    h("button", { class: "btn secondary", attrs: { type: "submit" } }, t("lobby.open")),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const match = ROOM_LINK.exec(input.value);
    if (match?.[1]) {
      app.navigate(`/room/${match[1]}`);
    } else {
      app.notify(t("lobby.notALink"), "error");
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  });
  return form;
}

/** The create-room dialog. */
export function openCreateRoom(app: App): void {
  const name = h("input", { attrs: { id: "room-name", maxlength: "64", required: "", autocomplete: "off", placeholder: t("create.namePlaceholder") } });
  const description = h("textarea", { attrs: { id: "room-description", maxlength: "500", rows: "2", placeholder: t("create.descriptionPlaceholder") } });
  const isPublic = h("input", { attrs: { id: "visibility-public", name: "visibility", type: "radio", value: String(Visibility.PUBLIC) } });
  isPublic.checked = true;
  const unlisted = h("input", { attrs: { id: "visibility-unlisted", name: "visibility", type: "radio", value: String(Visibility.UNLISTED) } });
  const visibility = h(
    "fieldset",
    { class: "choices", attrs: { id: "room-visibility" } },
    h("legend", {}, t("create.visibility")),
    choice(isPublic, t("create.public"), t("create.publicHint")),
    choice(unlisted, t("create.unlisted"), t("create.unlistedHint")),
  );
  const password = h("input", { attrs: { id: "room-password", type: "password", autocomplete: "new-password", minlength: "8" } });
  const usePassword = h("input", { attrs: { id: "room-use-password" } });
  const passwordField = field(t("create.password"), password, t("create.passwordHint"));
  passwordField.hidden = true;
  usePassword.addEventListener("change", () => {
    passwordField.hidden = !usePassword.checked;
    if (usePassword.checked) {
      password.focus();
    }
  });
  const control = controlModeSelect("room-control");
  const error = h("p", { class: "error", attrs: { id: "create-error", role: "alert" } });
  const form = h(
    "form",
    { attrs: { id: "create-room", novalidate: "" } },
    field(t("create.name"), name),
    field(t("create.description"), description),
    visibility,
    checkbox(t("create.usePassword"), usePassword),
    passwordField,
    field(t("create.control"), control),
    error,
  );
  const submit = h("button", { class: "btn primary", attrs: { type: "submit", form: "create-room", id: "create-room-submit" } }, t("create.submit"));
  const dialog = openDialog({
    title: t("create.title"),
    id: "create-room-dialog",
    body: [form],
    actions: [button(t("action.cancel"), () => dialog.close()), submit],
    initialFocus: name,
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    replace(error);
    name.removeAttribute("aria-invalid");
    if (name.value.trim() === "") {
      replace(error, t("error.field.required", { field: t("field.roomName") }));
      name.setAttribute("aria-invalid", "true");
      name.focus();
      return;
    }
    submit.disabled = true;
    try {
      const { room } = await app.api.room.createRoom({
        name: name.value,
        description: description.value,
        visibility: unlisted.checked ? Visibility.UNLISTED : Visibility.PUBLIC,
        password: usePassword.checked ? password.value : "",
        controlMode: Number(control.value) as ControlMode,
      });
      if (room) {
        // Owning a room is a privilege: a new session token (and cookie) from here on, so a
        // token anyone saw before cannot act as this room's owner.
        await app.api.session.rotateSession({});
        dialog.close();
        app.navigate(`/room/${room.roomId}`);
      }
    } catch (failure) {
      replace(error, sentenceFor(failure, "room"));
    } finally {
      submit.disabled = false;
    }
  });
}

function choice(input: HTMLInputElement, label: Shown, hint: Shown): HTMLElement {
  const hintId = `${input.id}-hint`;
  input.setAttribute("aria-describedby", hintId);
  return h(
    "div",
    { class: "choice" },
    input,
    h("label", { attrs: { for: input.id } }, h("span", { class: "choice-label" }, label), h("span", { class: "hint", attrs: { id: hintId } }, hint)),
  );
}
