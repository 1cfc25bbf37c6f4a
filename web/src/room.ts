// A room page: joins (asking for the password when the room has one), then lays out the room
// as people know it from watch-party sites: the video large with its controls, and beside it
// (under it on a phone) tabs for the chat, the queue, the people and the settings. Theater
// mode and fullscreen put the chat over the video. The keyboard drives the player (space,
// arrows, m, f, t), and the page shows the connection state of its two live streams.

import { Code } from "@connectrpc/connect";

import { Chat } from "./chat";
import { RoomContext, roleId, roleLabel } from "./context";
import { button, h, icon, replace, setButtonLabel, setDocumentTitle, setLabel, setText } from "./dom";
import { errorCode, explain, sentenceFor } from "./errors";
import { type GetRoomResponse, type Room, Role, RoomStatus } from "./gen/xiaowo/room/v1/room_pb";
import type { Watcher } from "./gen/xiaowo/sync/v1/sync_pb";
import { formatNumber, type MessageKey, type Shown, t, userText } from "./i18n";
import type { App } from "./main";
import "./library";
import { renderMembers } from "./members";
import { SEEK_STEP_S, Player } from "./player";
import { settingsPanel } from "./settings";
import { openShareDialog } from "./share";
import type { StreamState } from "./stream";
import "./upload";
import { tabs } from "./ui";

const REFRESH_MS = 10_000;
const THEATER_SETTING = "xiaowo.theater";

/** Opens a room; `prefetched` is a GetRoom answer asked for while the page was starting. */
export function showRoom(app: App, main: HTMLElement, roomId: string, prefetched?: Promise<GetRoomResponse>): () => void {
  let left = false;
  let teardown: (() => void) | undefined;
  replace(main, h("p", { class: "loading", attrs: { role: "status" } }, t("room.opening")));

  const enter = async (password?: string): Promise<void> => {
    try {
      const first = prefetched;
      prefetched = undefined;
      const { room, role } = await (first ?? app.api.room.getRoom({ roomId })).catch(() => app.api.room.getRoom({ roomId }));
      if (!room) {
        throw new Error("no room");
      }
      if (room.status !== RoomStatus.ACTIVE) {
        showGone(app, main, "closed");
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
        main.classList.add("page-room");
        teardown = openRoom(app, main, new RoomContext(app, roomId, room, myRole));
      }
    } catch (error) {
      const code = errorCode(error);
      if (code === Code.NotFound) {
        showGone(app, main, "notFound");
      } else if (password !== undefined && (code === Code.PermissionDenied || code === Code.InvalidArgument || code === Code.ResourceExhausted)) {
        const room = (await app.api.room.getRoom({ roomId }).catch(() => undefined))?.room;
        if (room) {
          askPassword(app, main, room, (given) => enter(given), sentenceFor(error, "join"));
        }
      } else if (explain(error, "join").key === "error.kicked") {
        showGone(app, main, "kicked", sentenceFor(error, "join"));
      } else {
        showGone(app, main, "error", sentenceFor(error, "join"));
      }
    }
  };
  void enter();
  return () => {
    left = true;
    main.classList.remove("page-room");
    teardown?.();
  };
}

type GoneReason = "closed" | "kicked" | "notFound" | "sessionEnded" | "error";

/** The page after a room is gone for the caller: what happened, and the way back. */
function showGone(app: App, main: HTMLElement, reason: GoneReason, text?: Shown): void {
  main.classList.remove("page-room");
  const titles: Record<GoneReason, [MessageKey, MessageKey]> = {
    closed: ["gone.closedTitle", "gone.closedText"],
    kicked: ["gone.kickedTitle", "gone.kickedText"],
    notFound: ["gone.notFoundTitle", "gone.notFoundText"],
    sessionEnded: ["gone.sessionTitle", "gone.sessionText"],
    error: ["gone.errorTitle", "error.unreachable"],
  };
  const [title, sentence] = titles[reason];
  setDocumentTitle(t("room.pageTitle", { name: t(title) }));
  const back = button(t("gone.back"), () => app.navigate("/"), { kind: "primary", icon: "back", attrs: { id: "back-to-lobby" } });
  replace(
    main,
    h(
      "section",
      { class: "card narrow notice", attrs: { id: "room-gone", "data-reason": reason, "aria-labelledby": "gone-title" } },
      icon(reason === "kicked" ? "door" : reason === "closed" ? "lock" : "film"),
      h("h1", { attrs: { id: "gone-title", tabindex: "-1" } }, t(title)),
      h("p", { attrs: { id: "room-error" } }, text ?? t(sentence)),
      back,
    ),
  );
  // The heading takes the focus, so that a screen reader reads what happened first.
  main.querySelector<HTMLElement>("#gone-title")?.focus();
}

function askPassword(app: App, main: HTMLElement, room: Room, submit: (password: string) => Promise<void>, failure?: Shown): void {
  main.classList.remove("page-room");
  setDocumentTitle(t("room.pageTitle", { name: userText(room.name) }));
  const input = h("input", { attrs: { id: "join-password", type: "password", autocomplete: "current-password", required: "" } });
  const error = h("p", { class: "error", attrs: { id: "join-error", role: "alert" } }, failure ?? null);
  if (failure) {
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", "join-error");
  }
  const form = h(
    "form",
    { class: "card narrow notice", attrs: { id: "join-form", "aria-labelledby": "join-title" } },
    icon("lock"),
    h("h1", { attrs: { id: "join-title" } }, userText(room.name)),
    room.description ? h("p", { class: "muted" }, userText(room.description)) : null,
    h("label", { attrs: { for: "join-password" } }, t("join.needsPassword")),
    input,
    error,
    h(
      "div",
      { class: "row" },
      h("button", { class: "btn primary", attrs: { type: "submit" } }, t("join.submit")),
      button(t("gone.back"), () => app.navigate("/"), { kind: "quiet" }),
    ),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    replace(error);
    void submit(input.value);
  });
  replace(main, form);
  input.focus();
}

function openRoom(app: App, main: HTMLElement, ctx: RoomContext): () => void {
  const connection = h("span", { class: "connection", attrs: { id: "connection", "data-state": "connecting", role: "status" } });
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
      stop();
      showGone(
        app,
        main,
        state.code === Code.PermissionDenied ? "kicked" : state.code === Code.Unauthenticated ? "sessionEnded" : state.code === Code.NotFound ? "notFound" : "closed",
      );
    }
  };

  const members = h("ul", { class: "members", attrs: { id: "members" } });
  const memberCount = h("span", { class: "count", attrs: { id: "member-count" } });
  let watchers: Watcher[] = [];
  // Messages that arrived while another tab was open.
  const unread = h("span", { class: "count unread", attrs: { id: "chat-unread" } });
  let unreadCount = 0;
  const chat = new Chat(ctx, onStreamState("chat"), () => {
    if (!chatInView()) {
      unreadCount += 1;
      replace(unread, formatNumber(unreadCount));
      setLabel(unread, "aria-label", t("chat.unread", { count: unreadCount }));
    }
  });
  const drawMembers = (): void => {
    renderMembers(ctx, members, watchers, refresh, player.currentMediaId());
    replace(memberCount, formatNumber(Math.max(ctx.members.size, watchers.length)));
  };
  const player = new Player(
    ctx,
    (latest) => {
      watchers = latest;
      // Someone new is watching: fetch their name and role, at most every few seconds.
      if (latest.some((watcher) => !ctx.members.has(watcher.userId)) && performance.now() - lastRefresh > 3_000) {
        void refresh();
      }
      drawMembers();
    },
    onStreamState("sync"),
  );

  const title = h("h1", { attrs: { id: "room-name" } });
  const description = h("p", { class: "room-description" });
  const myRole = h("span", { class: "badge", attrs: { id: "my-role" } });
  const settings = h("div", { attrs: { id: "settings-slot" } });
  // Rebuilt only when the role changes, so that a periodic refresh never wipes an edit.
  let settingsFor: Role | undefined;
  const renderHeader = (): void => {
    setText(title, userText(ctx.room.name));
    replace(description, ctx.room.description ? userText(ctx.room.description) : null);
    description.hidden = ctx.room.description === "";
    setText(myRole, roleLabel(ctx.role));
    myRole.setAttribute("data-role", roleId(ctx.role));
    myRole.hidden = ctx.role < Role.MODERATOR;
    setDocumentTitle(t("room.pageTitle", { name: userText(ctx.room.name) }));
    renderSettings();
  };
  // Built when the tab is first opened (a smaller first render), rebuilt when the role changes.
  const renderSettings = (): void => {
    if (settingsFor !== ctx.role && panels.selected() === "settings") {
      settingsFor = ctx.role;
      replace(settings, settingsPanel(ctx, { playback: player.roomSettingsElement, device: player.deviceSettingsElement }));
    }
  };
  ctx.onChange(() => {
    renderHeader();
    drawMembers();
  });

  const invite = button(t("share.invite"), () => openShareDialog(app, ctx.roomId, ctx.room.name), { kind: "secondary", small: true, icon: "share", attrs: { id: "invite" } });
  const leave = button(
    t("room.leave"),
    async () => {
      try {
        await app.api.room.leaveRoom({ roomId: ctx.roomId });
        app.navigate("/");
      } catch (error) {
        app.fail(error, "room");
      }
    },
    { kind: "quiet", small: true, icon: "leave", attrs: { id: "leave-room" } },
  );

  // The chat lives in its tab, or over the video in theater mode and fullscreen.
  const overlayNote = h(
    "div",
    { class: "overlay-note" },
    h("p", {}, t("room.chatOverVideo")),
    button(t("room.chatBackHere"), () => setOverlay(false), { kind: "secondary", small: true }),
  );
  const chatHome = h("div", { class: "chat-home" }, chat.element, overlayNote);
  const panels = tabs(
    t("room.panels"),
    [
      { id: "chat", label: t("tab.chat"), panel: chatHome, badge: unread },
      { id: "queue", label: t("tab.queue"), panel: h("div", {}, player.queueElement), badge: player.queueCount },
      { id: "people", label: t("tab.people"), panel: h("div", {}, members), badge: memberCount },
      { id: "settings", label: t("tab.settings"), panel: settings },
    ],
    "room-tabs",
  );
  const chatInView = (): boolean => panels.selected() === "chat" || chat.element.parentElement === player.overlaySlot;
  panels.onSelect((id) => {
    if (id === "settings") {
      renderSettings();
    }
    if (id === "chat") {
      unreadCount = 0;
      replace(unread);
      setLabel(unread, "aria-label", undefined);
    }
  });
  const side = h("aside", { class: "side", attrs: { "aria-label": t("room.panels") } }, panels.element);
  const roomBar = h(
    "div",
    { class: "room-bar" },
    h("div", { class: "room-title" }, h("div", { class: "room-title-line" }, title, myRole), description),
    h("div", { class: "room-actions" }, connection, invite, leave),
  );
  const layout = h("div", { class: "room", attrs: { id: "room" } }, roomBar, player.element, side);

  let theater = localStorage.getItem(THEATER_SETTING) === "on";
  let overlay = true;
  const theaterButton = button(t("player.theater"), () => setTheater(!theater), { kind: "quiet", icon: "theater", iconOnly: true, class: "theater-toggle", attrs: { id: "theater-toggle" } });
  const overlayButton = button(t("player.hideChat"), () => setOverlay(!overlay), { kind: "quiet", icon: "chat", iconOnly: true, attrs: { id: "overlay-chat-toggle" } });
  const canFullscreen = typeof player.element.requestFullscreen === "function" && document.fullscreenEnabled;
  const fullscreenButton = button(t("player.fullscreen"), () => toggleFullscreen(), { kind: "quiet", icon: "fullscreen", iconOnly: true, attrs: { id: "fullscreen-toggle" } });
  fullscreenButton.hidden = !canFullscreen;
  player.layoutControls.append(overlayButton, theaterButton, fullscreenButton);

  const isFullscreen = (): boolean => document.fullscreenElement === player.element;
  const placeChat = (): void => {
    const fullscreen = isFullscreen();
    const over = (theater || fullscreen) && overlay;
    layout.classList.toggle("theater", theater);
    player.element.classList.toggle("with-overlay", over);
    theaterButton.setAttribute("aria-pressed", String(theater));
    setButtonLabel(theaterButton, theater ? t("player.theaterOff") : t("player.theater"));
    fullscreenButton.setAttribute("aria-pressed", String(fullscreen));
    setButtonLabel(fullscreenButton, fullscreen ? t("player.fullscreenOff") : t("player.fullscreen"));
    overlayButton.hidden = !(theater || fullscreen);
    overlayButton.setAttribute("aria-pressed", String(overlay));
    setButtonLabel(overlayButton, overlay ? t("player.hideChat") : t("player.showChat"));
    if (over && chat.element.parentElement !== player.overlaySlot) {
      player.overlaySlot.appendChild(chat.element);
    } else if (!over && chat.element.parentElement !== chatHome) {
      chatHome.prepend(chat.element);
    }
    player.overlaySlot.hidden = !over;
    overlayNote.hidden = !over;
  };
  const setTheater = (on: boolean): void => {
    theater = on;
    localStorage.setItem(THEATER_SETTING, on ? "on" : "off");
    placeChat();
  };
  const setOverlay = (on: boolean): void => {
    overlay = on;
    placeChat();
  };
  const toggleFullscreen = async (): Promise<void> => {
    try {
      if (isFullscreen()) {
        await document.exitFullscreen();
      } else {
        await player.element.requestFullscreen();
      }
    } catch {
      // Refused (e.g. not from a gesture): nothing changes, which the button shows.
    }
  };
  document.addEventListener("fullscreenchange", placeChat);

  // The keyboard: space (or k) plays and pauses, the arrows seek, m mutes this device's sound,
  // c turns this device's subtitles off and on, f is fullscreen, t theater mode. Keys typed into fields and buttons keep their own meaning.
  const onKey = (event: KeyboardEvent): void => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || document.querySelector("dialog[open]")) {
      return;
    }
    const target = event.target instanceof Element ? event.target : null;
    if (target?.closest("input, textarea, select, button, a, summary, [role=tab], [contenteditable], .menu")) {
      return;
    }
    const control = (run: () => Promise<void>): void => {
      event.preventDefault();
      const denied = ctx.controlDeniedReason();
      if (denied) {
        app.notify(denied, "error");
      } else if (player.hasMedia()) {
        void run();
      }
    };
    switch (event.key) {
      case " ":
      case "k":
        control(() => player.togglePlay());
        break;
      case "ArrowLeft":
        control(() => player.seekBy(-SEEK_STEP_S));
        break;
      case "ArrowRight":
        control(() => player.seekBy(SEEK_STEP_S));
        break;
      case "m":
        event.preventDefault();
        player.toggleSound();
        break;
      case "c":
        event.preventDefault();
        player.subtitles.toggle();
        break;
      case "f":
        if (canFullscreen) {
          event.preventDefault();
          void toggleFullscreen();
        }
        break;
      case "t":
        event.preventDefault();
        setTheater(!theater);
        break;
      default:
        break;
    }
  };
  document.addEventListener("keydown", onKey);

  replace(main, layout);
  placeChat();

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
        showGone(app, main, "kicked");
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
    document.removeEventListener("keydown", onKey);
    document.removeEventListener("fullscreenchange", placeChat);
    if (isFullscreen()) {
      void document.exitFullscreen().catch(() => undefined);
    }
    window.clearInterval(timer);
    player.stop();
    chat.stop();
  };

  renderHeader();
  renderConnection(connection, streams);
  void refresh();
  player.start();
  chat.start();
  return stop;
}

function renderConnection(element: HTMLElement, streams: Record<"sync" | "chat", StreamState>): void {
  const states = Object.values(streams);
  let state: string;
  let text: Shown;
  if (states.every((stream) => stream.kind === "live")) {
    state = "live";
    text = t("connection.live");
  } else if (states.some((stream) => stream.kind === "retrying")) {
    state = "retrying";
    const retrying = states.find((stream) => stream.kind === "retrying");
    text = retrying && retrying.kind === "retrying" ? t("connection.retryingIn", { count: Math.ceil(retrying.inSeconds) }) : t("connection.retrying");
  } else if (states.some((stream) => stream.kind === "ended")) {
    state = "ended";
    text = t("connection.ended");
  } else {
    state = "connecting";
    text = t("connection.connecting");
  }
  element.setAttribute("data-state", state);
  setText(element, text);
  setLabel(element, "title", state === "live" ? t("connection.liveHint") : undefined);
}
