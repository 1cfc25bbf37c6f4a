// The people tab: who is in the room, their role, whether their player is in sync (a word and a
// colour; the milliseconds in the tooltip), and, for owners and moderators, a menu of what they
// may do to each person.

import { type RoomContext, roleId, roleLabel } from "./context";
import { h, initial, replace, setLabel, setText } from "./dom";
import { Role } from "./gen/xiaowo/room/v1/room_pb";
import { PlayerState, type Watcher } from "./gen/xiaowo/sync/v1/sync_pb";
import { type Shown, t } from "./i18n";
import { describeMemberLoadError } from "./loaderror";
import { judgeOffset, offsetDetail } from "./sync-text";
import { kick, openMuteDialog, outranks, setRole, transferOwnership } from "./moderation";
import { actionMenu, type MenuItem } from "./ui";

/** The rows drawn last time, by user id, with what they were drawn from. */
const drawn = new WeakMap<HTMLElement, Map<string, MemberRow>>();

/**
 * Draws the people list. Presence changes every few seconds, so rows are kept and only their
 * sync state is updated; a row is rebuilt only when what it shows otherwise changed, so that an
 * open menu or the keyboard focus in it survives.
 */
export function renderMembers(ctx: RoomContext, list: HTMLElement, watchers: Watcher[], refresh: () => Promise<void>, mediaId = ""): void {
  const watching = new Map(watchers.map((watcher) => [watcher.userId, watcher]));
  const userIds = [...ctx.members.keys()];
  for (const watcher of watchers) {
    if (!ctx.members.has(watcher.userId)) {
      userIds.push(watcher.userId);
    }
  }
  if (userIds.length === 0) {
    drawn.delete(list);
    replace(list, h("li", { class: "empty-state" }, t("member.loading")));
    return;
  }
  // The owner first, then moderators, then everyone else; yourself first within your group.
  userIds.sort((a, b) => ctx.roleOf(b) - ctx.roleOf(a) || Number(b === ctx.myUserId) - Number(a === ctx.myUserId));
  const previous = drawn.get(list) ?? new Map();
  const next = new Map<string, MemberRow>();
  const rows = userIds.map((userId) => {
    const role = ctx.roleOf(userId);
    const me = userId === ctx.myUserId;
    const key = [ctx.nameOf(userId), role, ctx.role, ctx.canModerate(), ctx.members.has(userId)].join("|");
    const watcher = watching.get(userId);
    const sync = syncOf(watcher);
    // "Bob can't play this: …" beside Bob, for the media playing now; one's own trouble is on
    // one's own screen already.
    const trouble = !me && watcher?.loadError && watcher.loadError.mediaId === mediaId ? describeMemberLoadError(ctx.nameOf(userId), watcher.loadError) : undefined;
    let entry = previous.get(userId);
    if (!entry || entry.key !== key) {
      const syncElement = h("span", { class: "member-sync" });
      const row = h(
        "li",
        { class: "member", attrs: { "data-user-id": userId, "data-role": roleId(role) } },
        h("span", { class: "avatar", attrs: { "aria-hidden": "true" } }, initial(ctx.nameOf(userId))),
        h(
          "div",
          { class: "member-text" },
          h("span", { class: "member-name" }, ctx.nameOf(userId), me ? h("span", { class: "you" }, t("member.you")) : null),
          h("span", { class: "member-sub" }, role >= Role.MODERATOR ? h("span", { class: `badge role-${roleId(role)}` }, roleLabel(role)) : null, syncElement),
        ),
        me ? null : memberActions(ctx, userId, role, refresh),
      );
      entry = { row, key, sync: syncElement, problem: h("span", { class: "load-error" }) };
      row.querySelector(".member-text")?.appendChild(entry.problem);
    }
    entry.problem.hidden = trouble === undefined;
    replace(entry.problem, trouble ?? null);
    entry.sync.setAttribute("data-sync", sync.state);
    setText(entry.sync, sync.label);
    setLabel(entry.sync, "title", sync.detail);
    next.set(userId, entry);
    return entry.row;
  });
  drawn.set(list, next);
  const current = [...list.children];
  if (current.length !== rows.length || rows.some((row, index) => current[index] !== row)) {
    replace(list, ...rows);
  }
}

interface MemberRow {
  row: HTMLElement;
  key: string;
  sync: HTMLElement;
  problem: HTMLElement;
}

interface MemberSync {
  state: "in-sync" | "catching-up" | "unsure" | "buffering" | "finished" | "failed" | "idle" | "away";
  label: Shown;
  detail?: Shown;
}

/** How a member's player is doing, in a word, with the numbers for the tooltip. */
function syncOf(watcher: Watcher | undefined): MemberSync {
  if (!watcher) {
    return { state: "away", label: t("member.notWatching") };
  }
  const offset = Number(watcher.offsetMs);
  const uncertainty = Number(watcher.offsetUncertaintyMs);
  const detail = offsetDetail(offset, uncertainty);
  switch (watcher.state) {
    case PlayerState.BUFFERING:
      return { state: "buffering", label: t("sync.buffering"), detail };
    case PlayerState.ENDED:
      return { state: "finished", label: t("member.finished") };
    case PlayerState.FAILED:
      return { state: "failed", label: t("member.cannotPlay") };
    case PlayerState.READY:
      switch (judgeOffset(offset, uncertainty)) {
        case "in-sync":
          return { state: "in-sync", label: t("sync.inSync"), detail };
        case "catching-up":
          return { state: "catching-up", label: t("sync.catchingUp"), detail };
        case "unsure":
          return { state: "unsure", label: t("sync.unsure"), detail };
      }
    case PlayerState.UNSPECIFIED:
      return { state: "idle", label: t("member.watching") };
  }
}

function memberActions(ctx: RoomContext, userId: string, role: Role, refresh: () => Promise<void>): HTMLElement | null {
  const after = (action: () => Promise<boolean>) => async () => {
    if (await action()) {
      await refresh();
    }
  };
  const items: MenuItem[] = [];
  if (ctx.role === Role.OWNER && role !== Role.OWNER) {
    items.push(
      role === Role.MODERATOR
        ? { label: t("member.makeMember"), id: "make-member", action: after(() => setRole(ctx, userId, Role.MEMBER)) }
        : { label: t("member.makeModerator"), id: "make-moderator", action: after(() => setRole(ctx, userId, Role.MODERATOR)) },
      { label: t("member.makeOwner"), id: "make-owner", action: after(() => transferOwnership(ctx, userId)) },
    );
  }
  if (ctx.canModerate() && outranks(ctx, role) && ctx.members.has(userId)) {
    items.push(
      { label: t("member.mute"), id: "mute", action: () => openMuteDialog(ctx, userId) },
      { label: t("member.kick"), id: "kick", danger: true, action: after(() => kick(ctx, userId)) },
    );
  }
  return items.length > 0 ? actionMenu(t("member.actionsFor", { name: ctx.nameOf(userId) }), items) : null;
}
