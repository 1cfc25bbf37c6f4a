// Xiaowo's browser client: the entry point. Finds (or creates) the session, then routes between
// the lobby (`/`) and a room (`/room/<id>`); the server answers every unknown path with this
// page, so a room link opens the room directly and a reload stays where it was.

import { Code } from "@connectrpc/connect";

import { createApi, describeError, errorCode, type Api } from "./api";
import { button, h, replace } from "./dom";
import type { Session } from "./gen/xiaowo/session/v1/session_pb";
import { showLobby } from "./lobby";
import { showRoom } from "./room";

export interface App {
  api: Api;
  session: Session;
  /** Navigates within the client (pushes history) and renders the new page. */
  navigate: (path: string) => void;
  /** Shows a passing message to the person (errors, confirmations). */
  notify: (text: string, kind?: "error" | "info") => void;
}

const ROOM_PATH = /^\/room\/([0-9a-fA-F-]{36})\/?$/;

async function boot(): Promise<void> {
  const root = document.getElementById("app");
  if (!root) {
    return;
  }
  const api = createApi();
  const toasts = h("div", { class: "toasts", attrs: { role: "status", "aria-live": "polite" } });
  const main = h("main", { class: "page" });
  const who = h("span", { class: "who" });
  const header = h(
    "header",
    { class: "topbar" },
    h("a", { class: "brand", attrs: { href: "/" } }, "小窝 Xiaowo"),
    who,
  );
  replace(root, header, main, toasts);

  const notify = (text: string, kind: "error" | "info" = "info"): void => {
    const toast = h("div", { class: `toast ${kind}` }, text);
    toasts.appendChild(toast);
    window.setTimeout(() => toast.remove(), kind === "error" ? 6000 : 3000);
  };

  let session: Session;
  try {
    session = await currentSession(api, main);
  } catch (error) {
    replace(main, h("p", { class: "error" }, describeError(error)), button("Try again", () => window.location.reload()));
    return;
  }

  let leavePage: (() => void) | undefined;
  const render = (): void => {
    leavePage?.();
    leavePage = undefined;
    renderWho(app, who);
    const match = ROOM_PATH.exec(window.location.pathname);
    if (match?.[1]) {
      leavePage = showRoom(app, main, match[1]);
    } else {
      leavePage = showLobby(app, main);
    }
  };
  const app: App = {
    api,
    session,
    notify,
    navigate: (path) => {
      window.history.pushState(null, "", path);
      render();
    },
  };
  header.querySelector("a.brand")?.addEventListener("click", (event) => {
    event.preventDefault();
    app.navigate("/");
  });
  window.addEventListener("popstate", render);
  render();
}

/** The caller's session, or a new one after asking for a display name. */
async function currentSession(api: Api, main: HTMLElement): Promise<Session> {
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
    const input = h("input", {
      attrs: { id: "display-name", name: "display_name", maxlength: "32", required: "", autocomplete: "nickname", placeholder: "e.g. Mei" },
    });
    const error = h("p", { class: "error", attrs: { id: "name-error" } });
    const form = h(
      "form",
      { class: "card narrow", attrs: { id: "name-form" } },
      h("h1", {}, "Welcome to Xiaowo"),
      h("p", {}, "Watch videos together, on the same frame, with chat. Pick a name to start."),
      h("label", { attrs: { for: "display-name" } }, "Your name"),
      input,
      error,
      h("button", { attrs: { type: "submit" } }, "Start"),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      try {
        const { session } = await api.session.createSession({ displayName: input.value });
        if (session) {
          resolve(session);
        }
      } catch (failure) {
        error.textContent = describeError(failure);
      }
    });
    replace(main, form);
    input.focus();
  });
}

function renderWho(app: App, who: HTMLElement): void {
  const rename = button("Rename", async () => {
    const name = window.prompt("New display name", app.session.displayName);
    if (name === null) {
      return;
    }
    try {
      const { session } = await app.api.session.updateDisplayName({ displayName: name });
      if (session) {
        app.session = session;
        renderWho(app, who);
      }
    } catch (error) {
      app.notify(describeError(error), "error");
    }
  }, { class: "link" });
  const logout = button("Log out", async () => {
    try {
      await app.api.session.endSession({});
    } finally {
      window.location.assign("/");
    }
  }, { class: "link" });
  replace(who, h("span", { attrs: { id: "my-name" } }, app.session.displayName), rename, logout);
}

void boot();
