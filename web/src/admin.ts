// The operator console at /admin: a chunk of its own (with uPlot), fetched only when that address
// is opened, so viewers never download it. It needs no viewer session: the operator pastes the
// server's admin token, which is sent as `authorization: Bearer …` on every admin call and kept
// in this tab's sessionStorage at most (never localStorage or a cookie), so that a reload stays
// unlocked and closing the tab or pressing Lock forgets it.
//
// The console is a list of sections (ADMIN_SECTIONS), each a tab that mounts its panel when first
// shown; a new part is one more entry there and a client for its admin service in AdminApi.

import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

import { button, h, replace, setDocumentTitle, setText } from "./dom";
import { sentenceFor } from "./errors";
import { MediaAdminService } from "./gen/xiaowo/media/v1/media_pb";
import { MonitorService } from "./gen/xiaowo/monitor/v1/monitor_pb";
import { RoomAdminService } from "./gen/xiaowo/room/v1/room_pb";
import { SessionAdminService } from "./gen/xiaowo/session/v1/session_pb";
import { formatTime, type MessageKey, onLanguageChange, type Shown, t, userText } from "./i18n";
import { field, tabs } from "./ui";
import { mountAlerts, mountAudit, mountRooms, mountSessions } from "./admin/lists";
import { mountMedia } from "./admin/media";
import { mountOverview } from "./admin/overview";

/** The admin services, every call carrying the token. */
export interface AdminApi {
  media: Client<typeof MediaAdminService>;
  monitor: Client<typeof MonitorService>;
  rooms: Client<typeof RoomAdminService>;
  sessions: Client<typeof SessionAdminService>;
}

/** What a section gets from the console. */
export interface AdminContext {
  api: AdminApi;
  /** A passing message (confirmations, failures). */
  notify: (text: Shown, kind?: "error" | "info") => void;
  /** Reports a failed call: a refused token locks the console, anything else is a sentence. */
  fail: (error: unknown) => void;
  /** Marks the data as fresh (the "Live · updated …" line). */
  updated: () => void;
  /** Shows another section, optionally with a filter for it (e.g. the audit log of one room). */
  show: (section: string, filter?: Record<string, string>) => void;
}

/** A mounted section: shown again (refresh), given a filter, and stopped when the console closes. */
export interface MountedSection {
  shown?: () => void;
  filter?: (filter: Record<string, string>) => void;
  stop?: () => void;
}

/** One tab of the console. */
export interface AdminSection {
  id: string;
  label: MessageKey;
  mount: (panel: HTMLElement, context: AdminContext) => MountedSection;
}

/** The console's sections in tab order. */
export const ADMIN_SECTIONS: readonly AdminSection[] = [
  { id: "overview", label: "admin.tab.overview", mount: mountOverview },
  { id: "alerts", label: "admin.tab.alerts", mount: mountAlerts },
  { id: "sessions", label: "admin.tab.sessions", mount: mountSessions },
  { id: "rooms", label: "admin.tab.rooms", mount: mountRooms },
  { id: "media", label: "admin.tab.media", mount: mountMedia },
  { id: "audit", label: "admin.tab.audit", mount: mountAudit },
];

const STORAGE_KEY = "xiaowo.adminToken";

function storedToken(): string {
  try {
    return window.sessionStorage.getItem(STORAGE_KEY) ?? "";
  } catch {
    return "";
  }
}

function storeToken(token: string | undefined): void {
  try {
    if (token) {
      window.sessionStorage.setItem(STORAGE_KEY, token);
    } else {
      window.sessionStorage.removeItem(STORAGE_KEY);
    }
  } catch {
    // Storage refused (private mode): the token lives in memory only, until a reload.
  }
}

function createAdminApi(token: string): AdminApi {
  const bearer: Interceptor = (next) => (request) => {
    request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };
  // No cookie: admin calls are the token's, not a viewer session's.
  const transport = createGrpcWebTransport({
    baseUrl: window.location.origin,
    interceptors: [bearer],
    fetch: (input, init) => fetch(input, { ...init, credentials: "omit" }),
  });
  return {
    media: createClient(MediaAdminService, transport),
    monitor: createClient(MonitorService, transport),
    rooms: createClient(RoomAdminService, transport),
    sessions: createClient(SessionAdminService, transport),
  };
}

/** Whether `error` is the server refusing the admin token (none, wrong, or admin disabled). */
export function isTokenRefusal(error: unknown): boolean {
  const code = ConnectError.from(error).code;
  return code === Code.Unauthenticated || code === Code.PermissionDenied;
}

/** The console's stylesheet (uPlot's and its own), added to the page once. */
function loadStylesheet(): void {
  if (!document.querySelector('link[href="/admin.css"]')) {
    document.head.appendChild(h("link", { attrs: { rel: "stylesheet", href: "/admin.css" } }));
  }
}

/** Shows the console in `main`; returns what stops it. */
export function showAdmin(main: HTMLElement, notify: AdminContext["notify"]): () => void {
  loadStylesheet();
  let stopConsole: (() => void) | undefined;
  let refusal: unknown;
  /** Whether the refusal came while the console was open (the token stopped working). */
  let lockedOut = false;
  const render = (): void => {
    stopConsole?.();
    stopConsole = undefined;
    const token = storedToken();
    if (token) {
      // Leaving: locked by the operator (no error) or the token refused (the error).
      stopConsole = showConsole(main, createAdminApi(token), notify, (error) => {
        storeToken(undefined);
        refusal = error;
        lockedOut = error !== undefined;
        render();
      });
    } else {
      showUnlock(main, refusal, lockedOut, async (candidate) => {
        const api = createAdminApi(candidate);
        // The cheapest admin call proves the token before the console opens.
        await api.monitor.listRules({});
        storeToken(candidate);
        refusal = undefined;
        lockedOut = false;
        render();
      });
    }
  };
  onLanguageChange(() => {
    if (main.isConnected) {
      render();
    }
  });
  render();
  return () => stopConsole?.();
}

/** Why the token was refused, with the server's own words when it says where the token is. */
function refusalNotes(error: unknown, lockedOut = false): HTMLElement[] {
  const sentence = isTokenRefusal(error) ? t(lockedOut ? "admin.refused" : "admin.tokenRefused") : sentenceFor(error);
  const notes = [h("p", { class: "error", attrs: { role: "alert", id: "admin-unlock-error" } }, sentence)];
  if (isTokenRefusal(error)) {
    const message = ConnectError.from(error).rawMessage;
    if (message) {
      notes.push(h("p", { class: "admin-server-says", attrs: { id: "admin-server-message" } }, t("admin.serverSays", { message: userText(message) })));
    }
    notes.push(h("p", { class: "hint" }, t("admin.tokenWhere")));
  }
  return notes;
}

function showUnlock(main: HTMLElement, refusal: unknown, lockedOut: boolean, unlock: (token: string) => Promise<void>): void {
  setDocumentTitle(t("admin.pageTitle"));
  const input = h("input", {
    attrs: { id: "admin-token", name: "admin_token", type: "password", autocomplete: "off", spellcheck: "false", required: "" },
  });
  const problems = h("div", { class: "admin-unlock-problems" });
  if (refusal !== undefined) {
    replace(problems, ...refusalNotes(refusal, lockedOut));
    input.setAttribute("aria-invalid", "true");
  }
  const submit = h("button", { class: "btn primary block", attrs: { type: "submit", id: "admin-unlock" } }, t("admin.unlock"));
  const form = h(
    "form",
    { class: "card narrow admin-unlock", attrs: { id: "admin-unlock-form", "aria-labelledby": "admin-unlock-title" } },
    h("div", { class: "admin-lock-art", attrs: { "aria-hidden": "true" } }),
    h("h1", { attrs: { id: "admin-unlock-title" } }, t("admin.title")),
    h("p", { class: "lead" }, t("admin.unlockLead")),
    field(t("admin.tokenLabel"), input, t("admin.tokenHint")),
    problems,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) {
      replace(problems, h("p", { class: "error", attrs: { role: "alert", id: "admin-unlock-error" } }, t("admin.tokenEmpty")));
      input.focus();
      return;
    }
    submit.disabled = true;
    try {
      await unlock(token);
    } catch (error) {
      replace(problems, ...refusalNotes(error));
      input.setAttribute("aria-invalid", "true");
      input.select();
    } finally {
      submit.disabled = false;
    }
  });
  replace(main, form);
  input.focus();
}

function showConsole(main: HTMLElement, api: AdminApi, notify: AdminContext["notify"], leave: (error?: unknown) => void): () => void {
  setDocumentTitle(t("admin.pageTitle"));
  const freshness = h("p", { class: "admin-freshness", attrs: { id: "admin-freshness", role: "status" } });
  let lastUpdate: Date | undefined;
  let stopped = false;
  const showFreshness = (): void => {
    if (!lastUpdate) {
      return;
    }
    const stale = Date.now() - lastUpdate.getTime() > 60_000;
    freshness.classList.toggle("stale", stale);
    setText(freshness, t(stale ? "admin.stale" : "admin.live", { time: formatTime(lastUpdate) }));
  };
  const ticker = window.setInterval(showFreshness, 15_000);
  const context: AdminContext = {
    api,
    notify,
    fail: (error) => {
      if (stopped) {
        return;
      }
      if (isTokenRefusal(error)) {
        leave(error);
      } else {
        notify(sentenceFor(error), "error");
      }
    },
    updated: () => {
      lastUpdate = new Date();
      showFreshness();
    },
    show: (id, filter) => {
      sections.select(id, true);
      if (filter) {
        mounted.get(id)?.filter?.(filter);
      }
    },
  };
  const mounted = new Map<string, MountedSection>();
  const panels = ADMIN_SECTIONS.map((section) => ({ section, panel: h("section", { class: "admin-panel", attrs: { "data-section": section.id } }) }));
  const sections = tabs(
    t("admin.sections"),
    panels.map(({ section, panel }) => ({ id: section.id, label: t(section.label), panel })),
    "admin-tabs",
  );
  sections.onSelect((id) => {
    const existing = mounted.get(id);
    if (existing) {
      existing.shown?.();
      return;
    }
    const entry = panels.find(({ section }) => section.id === id);
    if (entry) {
      mounted.set(id, entry.section.mount(entry.panel, context));
    }
  });
  const lock = button(t("admin.lock"), () => leave(), { kind: "secondary", small: true, icon: "lock", attrs: { id: "admin-lock" } });
  replace(
    main,
    h(
      "div",
      { class: "admin", attrs: { id: "admin-console" } },
      h("div", { class: "admin-head" }, h("div", {}, h("h1", {}, t("admin.title")), freshness), lock),
      sections.element,
    ),
  );
  main.classList.add("page-admin");
  // The first tab mounts now (tabs() selected it before anyone listened).
  sections.select(sections.selected());
  return () => {
    stopped = true;
    window.clearInterval(ticker);
    main.classList.remove("page-admin");
    for (const section of mounted.values()) {
      section.stop?.();
    }
  };
}
