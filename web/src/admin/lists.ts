// The console's lists: alerts (live from WatchAlerts, and their history), sessions with revoke,
// every room with close, and the audit log with its filters. Each is one paged list: a page at a
// time, "Load more" while the server has more.

import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";

import type { AdminContext, MountedSection } from "../admin";
import { button, h, initial, replace } from "../dom";
import { type Alert, AlertState, Severity } from "../gen/xiaowo/monitor/v1/monitor_pb";
import { type AuditLog, type Room, RoomStatus, Visibility } from "../gen/xiaowo/room/v1/room_pb";
import type { Session } from "../gen/xiaowo/session/v1/session_pb";
import { formatDateTime, formatMoment, formatNumber, type MessageKey, type Shown, t, userText } from "../i18n";
import { confirmAction, field } from "../ui";

const PAGE_SIZE = 50;

const when = (time: Timestamp | undefined): Shown => (time ? formatMoment(timestampDate(time)) : t("admin.never"));

/** A user or room id shortened for reading; the full id is in the title and in the filters. */
function shortId(id: string): HTMLElement {
  return h("code", { class: "admin-id", attrs: { title: userText(id) } }, userText(id.slice(0, 8)));
}

export interface Page<T> {
  items: T[];
  next: string;
}

export interface PagedList {
  element: HTMLElement;
  /** Drops what is shown and fetches the first page again. */
  reload: () => Promise<void>;
}

/** A list read a page at a time: `fetch` gets a page after `token` (empty for the first). */
export function pagedList<T>(context: AdminContext, id: string, fetch: (token: string) => Promise<Page<T>>, render: (item: T) => HTMLElement): PagedList {
  const list = h("ul", { class: "admin-list", attrs: { id } });
  const empty = h("p", { class: "admin-empty" }, t("admin.empty"));
  let next = "";
  let generation = 0;
  const more = button(t("admin.loadMore"), () => load(false), { kind: "secondary", small: true, attrs: { "data-action": "load-more" } });
  const load = async (fresh: boolean): Promise<void> => {
    generation += 1;
    const mine = generation;
    try {
      const page = await fetch(fresh ? "" : next);
      if (mine !== generation) {
        return;
      }
      if (fresh) {
        replace(list);
      }
      for (const item of page.items) {
        list.appendChild(render(item));
      }
      next = page.next;
      more.hidden = next === "";
      empty.hidden = list.childElementCount > 0;
      context.updated();
    } catch (error) {
      context.fail(error);
    }
  };
  more.hidden = true;
  empty.hidden = true;
  return { element: h("div", { class: "admin-paged" }, list, empty, h("div", { class: "admin-more" }, more)), reload: () => load(true) };
}

/** A paged list read again whenever `filter` changes; `fetch` gets the filter's value. */
function filteredList<T>(
  context: AdminContext,
  id: string,
  filter: HTMLSelectElement,
  fetch: (value: string, token: string) => Promise<Page<T>>,
  render: (item: T) => HTMLElement,
): PagedList {
  const list = pagedList(context, id, (token) => fetch(filter.value, token), render);
  filter.addEventListener("change", () => void list.reload());
  return list;
}

function select(id: string, options: [string, Shown][]): HTMLSelectElement {
  return h("select", { attrs: { id } }, ...options.map(([value, label]) => h("option", { attrs: { value } }, label)));
}

// ---------------------------------------------------------------------------------------------
// Alerts

const STATE_KEYS: Record<AlertState, MessageKey> = {
  [AlertState.UNSPECIFIED]: "admin.alerts.all",
  [AlertState.PENDING]: "admin.alerts.pending",
  [AlertState.FIRING]: "admin.alerts.firing",
  [AlertState.RESOLVED]: "admin.alerts.resolved",
};
const SEVERITY_KEYS: Record<Severity, MessageKey | undefined> = {
  [Severity.UNSPECIFIED]: undefined,
  [Severity.INFO]: "admin.severity.info",
  [Severity.WARNING]: "admin.severity.warning",
  [Severity.CRITICAL]: "admin.severity.critical",
};
const STATE_CLASS: Record<AlertState, string> = {
  [AlertState.UNSPECIFIED]: "",
  [AlertState.PENDING]: "pending",
  [AlertState.FIRING]: "firing",
  [AlertState.RESOLVED]: "resolved",
};

const figure = (value: number): Shown => formatNumber(value, { maximumSignificantDigits: 3 });

/** One alert as a row: its state, rule, service, value against threshold and its times. */
export function alertItem(alert: Alert): HTMLElement {
  const severity = SEVERITY_KEYS[alert.severity];
  const times = [t("admin.alerts.started", { time: when(alert.startTime) })];
  if (alert.fireTime) {
    times.push(t("admin.alerts.fired", { time: when(alert.fireTime) }));
  }
  if (alert.resolveTime) {
    times.push(t("admin.alerts.resolvedAt", { time: when(alert.resolveTime) }));
  }
  return h(
    "li",
    { class: `admin-row alert ${STATE_CLASS[alert.state]}`, attrs: { "data-alert-id": String(alert.alertId), "data-state": STATE_CLASS[alert.state] } },
    h(
      "div",
      { class: "admin-row-main" },
      h(
        "p",
        { class: "admin-row-title" },
        h("span", { class: `admin-state ${STATE_CLASS[alert.state]}` }, t(STATE_KEYS[alert.state])),
        h("span", {}, userText(alert.rule)),
        severity ? h("span", { class: `pill severity-${STATE_CLASS[alert.state]}` }, t(severity)) : null,
      ),
      alert.message ? h("p", { class: "admin-row-text" }, userText(alert.message)) : null,
      h(
        "p",
        { class: "admin-row-meta" },
        h("span", {}, userText(alert.service)),
        h("span", {}, t("admin.alerts.value", { value: figure(alert.value), threshold: figure(alert.threshold) })),
        ...times.map((time) => h("span", {}, time)),
      ),
    ),
  );
}

export function mountAlerts(panel: HTMLElement, context: AdminContext): MountedSection {
  const active = new Map<bigint, Alert>();
  const activeList = h("ul", { class: "admin-list", attrs: { id: "alerts-active" } });
  const activeEmpty = h("p", { class: "admin-empty admin-all-clear" }, t("admin.alerts.none"));
  const showActive = (): void => {
    const alerts = [...active.values()].sort((a, b) => b.state - a.state || Number(b.alertId - a.alertId));
    replace(activeList, ...alerts.map((alert) => alertItem(alert)));
    activeEmpty.hidden = alerts.length > 0;
  };
  const stateSelect = select("alerts-state", [AlertState.UNSPECIFIED, AlertState.FIRING, AlertState.PENDING, AlertState.RESOLVED].map((state) => [String(state), t(STATE_KEYS[state])]));
  const history = filteredList(
    context,
    "alerts-history",
    stateSelect,
    async (state, token) => {
      const response = await context.api.monitor.listAlerts({ state: Number(state) as AlertState, pageSize: PAGE_SIZE, pageToken: token });
      return { items: response.alerts, next: response.nextPageToken };
    },
    alertItem,
  );
  replace(
    panel,
    h("section", { class: "admin-block" }, h("h2", {}, t("admin.alerts.active")), activeList, activeEmpty),
    h(
      "section",
      { class: "admin-block" },
      h("div", { class: "admin-block-head" }, h("h2", {}, t("admin.alerts.history")), h("div", { class: "admin-filters" }, field(t("admin.alerts.state"), stateSelect))),
      history.element,
    ),
  );
  showActive();

  // The live stream: active alerts first, then every change; reopened after a failure.
  const abort = new AbortController();
  const watch = async (): Promise<void> => {
    while (!abort.signal.aborted) {
      try {
        for await (const change of context.api.monitor.watchAlerts({}, { signal: abort.signal })) {
          const alert = change.alert;
          if (!alert) {
            continue;
          }
          if (alert.state === AlertState.RESOLVED) {
            active.delete(alert.alertId);
            if (!change.snapshot) {
              void history.reload();
            }
          } else {
            active.set(alert.alertId, alert);
          }
          showActive();
          context.updated();
        }
      } catch (error) {
        if (abort.signal.aborted) {
          return;
        }
        context.fail(error);
      }
      await new Promise((resolve) => window.setTimeout(resolve, 5_000));
    }
  };
  void watch();
  void history.reload();
  return { shown: () => void history.reload(), stop: () => abort.abort() };
}

// ---------------------------------------------------------------------------------------------
// Sessions

function displayName(session: Session): Shown {
  return session.displayName ? userText(session.displayName) : t("admin.sessions.unnamed");
}

export function mountSessions(panel: HTMLElement, context: AdminContext): MountedSection {
  const render = (session: Session): HTMLElement => {
    const row = h(
      "li",
      { class: "admin-row", attrs: { "data-user-id": session.userId } },
      h("span", { class: "avatar small", attrs: { "aria-hidden": "true" } }, initial(session.displayName)),
      h(
        "div",
        { class: "admin-row-main" },
        h("p", { class: "admin-row-title" }, h("span", {}, displayName(session)), shortId(session.userId)),
        h(
          "p",
          { class: "admin-row-meta" },
          h("span", {}, t("admin.sessions.created", { time: when(session.createTime) })),
          h("span", {}, t("admin.sessions.seen", { time: when(session.lastAccessTime) })),
          h("span", {}, t("admin.sessions.expires", { time: when(session.expireTime) })),
        ),
      ),
      h(
        "div",
        { class: "admin-row-actions" },
        button(
          t("admin.sessions.revoke"),
          async () => {
            const name = displayName(session);
            const confirmed = await confirmAction({
              title: t("admin.sessions.revokeTitle", { name }),
              text: t("admin.sessions.revokeText"),
              confirm: t("admin.sessions.revoke"),
              danger: true,
              id: "revoke-dialog",
            });
            if (!confirmed) {
              return;
            }
            try {
              await context.api.sessions.revokeSession({ userId: session.userId });
              row.remove();
              context.notify(t("admin.sessions.revoked", { name }));
            } catch (error) {
              context.fail(error);
            }
          },
          { kind: "danger-quiet", small: true, attrs: { "data-action": "revoke" } },
        ),
      ),
    );
    return row;
  };
  const sessions = pagedList(
    context,
    "sessions-list",
    async (token) => {
      const response = await context.api.sessions.listSessions({ pageSize: PAGE_SIZE, pageToken: token });
      return { items: response.sessions, next: response.nextPageToken };
    },
    render,
  );
  replace(
    panel,
    h(
      "section",
      { class: "admin-block" },
      h(
        "div",
        { class: "admin-block-head" },
        h("p", { class: "muted" }, t("admin.sessions.lead")),
        button(t("admin.refresh"), () => sessions.reload(), { kind: "secondary", small: true, attrs: { id: "sessions-refresh" } }),
      ),
      sessions.element,
    ),
  );
  void sessions.reload();
  return { shown: () => void sessions.reload() };
}

// ---------------------------------------------------------------------------------------------
// Rooms

export function mountRooms(panel: HTMLElement, context: AdminContext): MountedSection {
  const statusSelect = select("rooms-status", [
    [String(RoomStatus.UNSPECIFIED), t("admin.rooms.all")],
    [String(RoomStatus.ACTIVE), t("admin.rooms.open")],
    [String(RoomStatus.CLOSED), t("admin.rooms.closed")],
  ]);
  statusSelect.value = String(RoomStatus.ACTIVE);
  const render = (room: Room): HTMLElement => {
    const open = room.status === RoomStatus.ACTIVE;
    const status = h("span", { class: `admin-state ${open ? "open" : "closed"}` }, t(open ? "admin.rooms.open" : "admin.rooms.closed"));
    const meta = h(
      "p",
      { class: "admin-row-meta" },
      h("span", {}, t("admin.rooms.members", { count: room.memberCount })),
      h("span", {}, open ? t("admin.rooms.active", { time: when(room.lastActiveTime) }) : t("admin.rooms.closedAt", { time: when(room.closeTime) })),
      shortId(room.roomId),
    );
    const close = button(
      t("admin.rooms.close"),
      async () => {
        const name = userText(room.name);
        const confirmed = await confirmAction({
          title: t("admin.rooms.closeTitle", { name }),
          text: t("admin.rooms.closeText"),
          confirm: t("admin.rooms.close"),
          danger: true,
          id: "close-room-dialog",
        });
        if (!confirmed) {
          return;
        }
        try {
          const response = await context.api.rooms.closeRoom({ roomId: room.roomId });
          row.replaceWith(render(response.room ?? room));
          context.notify(t("admin.rooms.closedDone", { name }));
        } catch (error) {
          context.fail(error);
        }
      },
      { kind: "danger-quiet", small: true, attrs: { "data-action": "close-room" } },
    );
    close.hidden = !open;
    const row = h(
      "li",
      { class: "admin-row", attrs: { "data-room-id": room.roomId, "data-status": open ? "open" : "closed" } },
      h(
        "div",
        { class: "admin-row-main" },
        h(
          "p",
          { class: "admin-row-title" },
          status,
          h("span", { class: "admin-room-name" }, userText(room.name)),
          room.visibility === Visibility.UNLISTED ? h("span", { class: "pill" }, t("admin.rooms.unlisted")) : null,
          room.hasPassword ? h("span", { class: "pill" }, t("admin.rooms.password")) : null,
        ),
        meta,
      ),
      h(
        "div",
        { class: "admin-row-actions" },
        button(t("admin.rooms.audit"), () => context.show("audit", { room: room.roomId }), { kind: "quiet", small: true, attrs: { "data-action": "room-audit" } }),
        close,
      ),
    );
    return row;
  };
  const rooms = filteredList(
    context,
    "rooms-list",
    statusSelect,
    async (status, token) => {
      const response = await context.api.rooms.listRooms({ status: Number(status) as RoomStatus, pageSize: PAGE_SIZE, pageToken: token });
      return { items: response.rooms, next: response.nextPageToken };
    },
    render,
  );
  replace(
    panel,
    h(
      "section",
      { class: "admin-block" },
      h(
        "div",
        { class: "admin-block-head" },
        h("div", { class: "admin-filters" }, field(t("admin.rooms.status"), statusSelect)),
        button(t("admin.refresh"), () => rooms.reload(), { kind: "secondary", small: true, attrs: { id: "rooms-refresh" } }),
      ),
      rooms.element,
    ),
  );
  void rooms.reload();
  return { shown: () => void rooms.reload() };
}

// ---------------------------------------------------------------------------------------------
// Audit log

/** The actions the audit log records (room-svc's AUDIT_ACTIONS), with their names. */
const AUDIT_ACTIONS: readonly [string, MessageKey][] = [
  ["room.create", "admin.action.room.create"],
  ["room.update", "admin.action.room.update"],
  ["room.transfer_ownership", "admin.action.room.transfer_ownership"],
  ["room.close", "admin.action.room.close"],
  ["member.join", "admin.action.member.join"],
  ["member.join_refused", "admin.action.member.join_refused"],
  ["member.leave", "admin.action.member.leave"],
  ["member.set_role", "admin.action.member.set_role"],
  ["member.kick", "admin.action.member.kick"],
];

function actionName(action: string): Shown {
  const known = AUDIT_ACTIONS.find(([value]) => value === action);
  return known ? t(known[1]) : userText(action);
}

/** A `datetime-local` value as a timestamp; undefined when empty. */
function timeOf(input: HTMLInputElement): Timestamp | undefined {
  return input.value ? timestampFromDate(new Date(input.value)) : undefined;
}

export function mountAudit(panel: HTMLElement, context: AdminContext): MountedSection {
  const roomInput = h("input", { attrs: { id: "audit-room", autocomplete: "off", spellcheck: "false", inputmode: "text" } });
  const userInput = h("input", { attrs: { id: "audit-user", autocomplete: "off", spellcheck: "false" } });
  const actionSelect = select("audit-action", [["", t("admin.audit.anyAction")], ...AUDIT_ACTIONS.map(([value, key]): [string, Shown] => [value, t(key)])]);
  const fromInput = h("input", { attrs: { id: "audit-from", type: "datetime-local" } });
  const toInput = h("input", { attrs: { id: "audit-to", type: "datetime-local" } });
  const render = (entry: AuditLog): HTMLElement => {
    const detail = entry.detail && entry.detail !== "{}" ? h("code", { class: "admin-detail" }, userText(entry.detail)) : null;
    return h(
      "li",
      { class: "admin-row audit-row", attrs: { "data-action-name": entry.action, "data-room-id": entry.roomId } },
      h(
        "div",
        { class: "admin-row-main" },
        h(
          "p",
          { class: "admin-row-title" },
          h("span", {}, actionName(entry.action)),
          h("time", { class: "admin-row-time", attrs: { datetime: entry.createTime ? timestampDate(entry.createTime).toISOString() : "" } }, entry.createTime ? formatDateTime(timestampDate(entry.createTime)) : t("admin.never")),
        ),
        h(
          "p",
          { class: "admin-row-meta" },
          h("span", {}, entry.userId ? t("admin.audit.by", { user: userText(entry.userId.slice(0, 8)) }) : t("admin.audit.system")),
          entry.targetUserId ? h("span", {}, t("admin.audit.target", { user: userText(entry.targetUserId.slice(0, 8)) })) : null,
          h("span", {}, t("admin.audit.inRoom", { room: userText(entry.roomId.slice(0, 8)) })),
        ),
        detail,
      ),
    );
  };
  const log = pagedList(
    context,
    "audit-list",
    async (token) => {
      const response = await context.api.rooms.listAuditLogs({
        roomId: roomInput.value.trim(),
        userId: userInput.value.trim(),
        action: actionSelect.value,
        startTime: timeOf(fromInput),
        endTime: timeOf(toInput),
        newestFirst: true,
        pageSize: PAGE_SIZE,
        pageToken: token,
      });
      return { items: response.auditLogs, next: response.nextPageToken };
    },
    render,
  );
  const form = h(
    "form",
    { class: "admin-audit-filters", attrs: { id: "audit-filters" } },
    field(t("admin.audit.room"), roomInput),
    field(t("admin.audit.user"), userInput),
    field(t("admin.audit.action"), actionSelect),
    field(t("admin.audit.from"), fromInput),
    field(t("admin.audit.to"), toInput),
    h(
      "div",
      { class: "admin-filter-actions" },
      h("button", { class: "btn primary small", attrs: { type: "submit", id: "audit-apply" } }, t("admin.audit.apply")),
      button(
        t("admin.audit.clear"),
        () => {
          form.reset();
          return log.reload();
        },
        { kind: "quiet", small: true, attrs: { id: "audit-clear" } },
      ),
    ),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void log.reload();
  });
  replace(panel, h("section", { class: "admin-block" }, form, log.element));
  void log.reload();
  return {
    shown: () => void log.reload(),
    filter: (filter) => {
      form.reset();
      roomInput.value = filter["room"] ?? "";
      userInput.value = filter["user"] ?? "";
      void log.reload();
    },
  };
}
