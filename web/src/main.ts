// Xiaowo's browser client: the entry point. Picks the language, finds (or creates) the session,
// then routes between the lobby (`/`) and a room (`/room/<id>`); the server answers every
// unknown path with this page, so a room link opens the room directly and a reload stays where
// it was. The room page (player, chat and the sync and chat clients) is a separate chunk,
// fetched when a room is opened, so the lobby's first load stays small.

import { Code } from "@connectrpc/connect";

import { createApi, type Api } from "./api";
import { button, h, initial, replace, setDocumentTitle, setLabel, setText } from "./dom";
import { errorCode, sentenceFor, type ErrorContext } from "./errors";
import type { GetRoomResponse } from "./gen/xiaowo/room/v1/room_pb";
import type { Session } from "./gen/xiaowo/session/v1/session_pb";
import { initLanguage, type Language, language, languageTag, onLanguageChange, setLanguage, type Shown, t, userText } from "./i18n";
import { fetchLobbyLists, type LobbyLists, showLobby } from "./lobby";
import { actionMenu, field, openDialog } from "./ui";

export interface App {
  api: Api;
  session: Session;
  /** Navigates within the client (pushes history) and renders the new page. */
  navigate: (path: string) => void;
  /** Shows a passing message to the person (errors, confirmations). */
  notify: (text: Shown, kind?: "error" | "info") => void;
  /** Tells the person, in a sentence, why `error` happened; details go to the console. */
  fail: (error: unknown, context?: ErrorContext) => void;
}

const ROOM_PATH = /^\/room\/([0-9a-fA-F-]{36})\/?$/;
/** The operator console: its own chunk, and no viewer session needed. */
const ADMIN_PATH = /^\/admin\/?$/;

async function boot(): Promise<void> {
  const root = document.getElementById("app");
  if (!root) {
    return;
  }
  initLanguage();
  if (ADMIN_PATH.test(window.location.pathname)) {
    bootAdmin(root);
    return;
  }
  const api = createApi();
  // Started beside the session lookup rather than after it, each saving a round trip on the
  // first load; used once, by the first page drawn, and redone if it failed.
  let early = prefetch(api);
  const main = h("main", { class: "page", attrs: { id: "main" } });
  const who = h("div", { class: "who" });
  const { notify, renderChrome, brand } = chrome(root, main, who);
  const fail = (error: unknown, context: ErrorContext = "generic"): void => notify(sentenceFor(error, context), "error");

  let session: Session;
  try {
    session = await currentSession(api, main, () => renderChrome());
  } catch (error) {
    replace(
      main,
      h(
        "section",
        { class: "card narrow notice", attrs: { id: "boot-error" } },
        h("h1", {}, t("boot.failedTitle")),
        h("p", { class: "error", attrs: { role: "alert" } }, sentenceFor(error, "session")),
        button(t("action.tryAgain"), () => window.location.reload(), { kind: "primary" }),
      ),
    );
    return;
  }

  let leavePage: (() => void) | undefined;
  let generation = 0;
  const render = (): void => {
    leavePage?.();
    leavePage = undefined;
    generation += 1;
    const mine = generation;
    renderChrome();
    renderWho(app, who);
    const match = ROOM_PATH.exec(window.location.pathname);
    const prefetched = early;
    early = {};
    if (match?.[1]) {
      const roomId = match[1];
      replace(main, h("p", { class: "loading", attrs: { role: "status" } }, t("room.opening")));
      void (prefetched.roomPage ?? import("./room"))
        .then(({ showRoom }) => {
          if (mine === generation) {
            leavePage = showRoom(app, main, roomId, prefetched.room?.id === roomId ? prefetched.room.call : undefined);
          }
        })
        .catch((error: unknown) => {
          console.warn("xiaowo: the room page did not load", error);
          replace(main, h("p", { class: "error", attrs: { role: "alert" } }, t("error.unreachable")));
        });
    } else {
      leavePage = showLobby(app, main, prefetched.lobby);
    }
  };
  const app: App = {
    api,
    session,
    notify,
    fail,
    navigate: (path) => {
      window.history.pushState(null, "", path);
      render();
      window.scrollTo(0, 0);
    },
  };
  brand.addEventListener("click", (event) => {
    event.preventDefault();
    app.navigate("/");
  });
  window.addEventListener("popstate", render);
  onLanguageChange(() => render());
  render();
}

/** The page frame (brand, language switch, toasts) around `main`, shared by every page. */
function chrome(root: HTMLElement, main: HTMLElement, who: HTMLElement | null): { notify: App["notify"]; renderChrome: () => void; brand: HTMLElement } {
  // Polite for confirmations; errors are announced at once (role=alert on each).
  const toasts = h("div", { class: "toasts", attrs: { role: "status", "aria-live": "polite" } });
  const brand = h("a", { class: "brand", attrs: { href: "/" } });
  const languageSwitch = h("div", { class: "lang" });
  const header = h("header", { class: "topbar" }, brand, h("div", { class: "topbar-end" }, languageSwitch, who));
  const skip = h("a", { class: "skip-link", attrs: { href: "#main" } });
  replace(root, skip, header, main, toasts);
  const notify = (text: Shown, kind: "error" | "info" = "info"): void => {
    const toast = h("div", { class: `toast ${kind}`, attrs: kind === "error" ? { role: "alert" } : {} }, text);
    toasts.appendChild(toast);
    window.setTimeout(() => toast.remove(), kind === "error" ? 7000 : 3500);
  };
  const renderChrome = (): void => {
    replace(brand, h("span", { class: "brand-mark", attrs: { "aria-hidden": "true" } }), h("span", { class: "brand-name" }, t("brand.name")));
    setLabel(brand, "title", t("brand.home"));
    setText(skip, t("nav.skip"));
    renderLanguageSwitch(languageSwitch);
  };
  renderChrome();
  return { notify, renderChrome, brand };
}

/** The operator console at /admin, fetched as a chunk of its own. */
function bootAdmin(root: HTMLElement): void {
  const main = h("main", { class: "page", attrs: { id: "main" } });
  const { notify, renderChrome } = chrome(root, main, null);
  onLanguageChange(() => renderChrome());
  replace(main, h("p", { class: "loading", attrs: { role: "status" } }, t("admin.loading")));
  import("./admin")
    .then(({ showAdmin }) => showAdmin(main, notify))
    .catch((error: unknown) => {
      console.warn("xiaowo: the operator console did not load", error);
      replace(main, h("p", { class: "error", attrs: { role: "alert" } }, t("error.unreachable")));
    });
}

interface Prefetched {
  lobby?: Promise<LobbyLists>;
  roomPage?: Promise<typeof import("./room")>;
  room?: { id: string; call: Promise<GetRoomResponse> };
}

/** What the page at the current address will ask for first. */
function prefetch(api: Api): Prefetched {
  const quiet = <T>(promise: Promise<T>): Promise<T> => {
    // A failure (e.g. no session yet) is handled where the result is used.
    promise.catch(() => undefined);
    return promise;
  };
  const roomId = ROOM_PATH.exec(window.location.pathname)?.[1];
  if (roomId) {
    return { roomPage: import("./room"), room: { id: roomId, call: quiet(api.room.getRoom({ roomId })) } };
  }
  return { lobby: quiet(fetchLobbyLists(api)) };
}

/** The button that switches to the other language, labelled in that language. */
function renderLanguageSwitch(slot: HTMLElement): void {
  const other: Language = language() === "zh" ? "en" : "zh";
  const switchButton = button(t(other === "zh" ? "lang.nameZh" : "lang.nameEn"), () => setLanguage(other), {
    kind: "quiet",
    small: true,
    icon: "language",
    attrs: { id: "lang-switch", lang: languageTag(other), "data-lang": other, "aria-label": t(other === "zh" ? "lang.switchToZh" : "lang.switchToEn") },
  });
  replace(slot, switchButton);
}

/** The caller's session, or a new one after asking for a display name. */
async function currentSession(api: Api, main: HTMLElement, rerenderChrome: () => void): Promise<Session> {
  try {
    const { session } = await api.session.getSession({});
    if (session) {
      return session;
    }
  } catch (error) {
    if (errorCode(error) !== Code.Unauthenticated) {
      throw error;
    }
  }
  return new Promise((resolve) => {
    let typed = "";
    const renderForm = (): void => {
      setDocumentTitle(t("welcome.pageTitle"));
      const input = h("input", {
        attrs: { id: "display-name", name: "display_name", maxlength: "32", required: "", autocomplete: "nickname", placeholder: t("welcome.namePlaceholder") },
      });
      input.value = typed;
      input.addEventListener("input", () => {
        typed = input.value;
      });
      const error = h("p", { class: "error", attrs: { id: "name-error", role: "alert" } });
      const form = h(
        "form",
        { class: "card narrow welcome", attrs: { id: "name-form", "aria-labelledby": "welcome-title" } },
        h("div", { class: "welcome-art", attrs: { "aria-hidden": "true" } }),
        h("h1", { attrs: { id: "welcome-title" } }, t("welcome.title")),
        h("p", { class: "lead" }, t("welcome.lead")),
        field(t("welcome.nameLabel"), input, t("welcome.nameHint")),
        error,
        h("button", { class: "btn primary block", attrs: { type: "submit" } }, t("welcome.start")),
      );
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        replace(error);
        try {
          const { session } = await api.session.createSession({ displayName: input.value });
          if (session) {
            resolve(session);
          }
        } catch (failure) {
          replace(error, sentenceFor(failure, "session"));
          input.setAttribute("aria-invalid", "true");
          input.focus();
        }
      });
      replace(main, form);
      input.focus();
    };
    onLanguageChange(() => {
      if (document.getElementById("name-form")) {
        rerenderChrome();
        renderForm();
      }
    });
    renderForm();
  });
}

function renderWho(app: App, who: HTMLElement): void {
  const rename = (): void => {
    const input = h("input", { attrs: { id: "rename-input", maxlength: "32", autocomplete: "nickname", required: "" } });
    input.value = app.session.displayName;
    const error = h("p", { class: "error", attrs: { role: "alert" } });
    const form = h("form", { attrs: { id: "rename-form" } }, field(t("welcome.nameLabel"), input), error);
    const save = h("button", { class: "btn primary", attrs: { type: "submit", form: "rename-form" } }, t("action.save"));
    const dialog = openDialog({
      title: t("user.renameTitle"),
      id: "rename-dialog",
      body: [form],
      actions: [button(t("action.cancel"), () => dialog.close()), save],
      initialFocus: input,
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const { session } = await app.api.session.updateDisplayName({ displayName: input.value });
        if (session) {
          app.session = session;
          renderWho(app, who);
          dialog.close();
          app.notify(t("user.renamed", { name: session.displayName }));
        }
      } catch (failure) {
        replace(error, sentenceFor(failure, "session"));
        input.setAttribute("aria-invalid", "true");
      }
    });
  };
  const logout = async (): Promise<void> => {
    try {
      await app.api.session.endSession({});
    } finally {
      window.location.assign("/");
    }
  };
  replace(
    who,
    h("span", { class: "avatar small", attrs: { "aria-hidden": "true" } }, initial(app.session.displayName)),
    h("span", { class: "my-name", attrs: { id: "my-name" } }, userText(app.session.displayName)),
    actionMenu(t("user.menu"), [
      { label: t("user.rename"), action: rename, id: "rename" },
      { label: t("user.logout"), action: logout, id: "logout" },
    ]),
  );
}

void boot();
