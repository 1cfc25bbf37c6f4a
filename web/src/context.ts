// What the parts of a room page share: the room, the caller's role in it, the members' names,
// and the permission rules the server enforces (mirrored here only to grey out controls).

import { h } from "./dom";
import { ControlMode, type Member, Role, type Room, RoomStatus } from "./gen/xiaowo/room/v1/room_pb";
import { type Shown, t, userText } from "./i18n";
import type { App } from "./main";

export class RoomContext {
  readonly members = new Map<string, Member>();
  private readonly listeners: (() => void)[] = [];

  constructor(
    readonly app: App,
    readonly roomId: string,
    public room: Room,
    public role: Role,
  ) {}

  get myUserId(): string {
    return this.app.session.userId;
  }

  /** Calls `listener` whenever the room, the role or the members change. */
  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  changed(): void {
    for (const listener of this.listeners) {
      listener();
    }
  }

  setMembers(members: Member[]): void {
    this.members.clear();
    for (const member of members) {
      this.members.set(member.userId, member);
    }
    const me = this.members.get(this.myUserId);
    if (me) {
      this.role = me.role;
    }
  }

  nameOf(userId: string): Shown {
    if (userId === this.myUserId) {
      return userText(this.app.session.displayName);
    }
    const name = this.members.get(userId)?.displayName;
    return name ? userText(name) : t("member.guest", { id: userId.slice(0, 4) });
  }

  roleOf(userId: string): Role {
    return this.members.get(userId)?.role ?? Role.UNSPECIFIED;
  }

  /** Why the caller may not control playback and the queue, or undefined when they may. */
  controlDeniedReason(): Shown | undefined {
    if (this.room.status !== RoomStatus.ACTIVE) {
      return t("error.roomClosed");
    }
    if (this.role === Role.UNSPECIFIED) {
      return t("error.notMember");
    }
    switch (this.room.controlMode) {
      case ControlMode.MODERATORS:
        return this.role >= Role.MODERATOR ? undefined : t("control.deniedModerators");
      case ControlMode.OWNER:
        return this.role === Role.OWNER ? undefined : t("control.deniedOwner");
      case ControlMode.EVERYONE:
      case ControlMode.UNSPECIFIED:
        return undefined;
    }
  }

  canModerate(): boolean {
    return this.room.status === RoomStatus.ACTIVE && this.role >= Role.MODERATOR;
  }
}

/** A stable, untranslated name for a role (for data attributes and CSS). */
export function roleId(role: Role): string {
  switch (role) {
    case Role.OWNER:
      return "owner";
    case Role.MODERATOR:
      return "moderator";
    case Role.MEMBER:
      return "member";
    case Role.UNSPECIFIED:
      return "guest";
  }
}

/** The role's name for people. */
export function roleLabel(role: Role): Shown {
  switch (role) {
    case Role.OWNER:
      return t("role.owner");
    case Role.MODERATOR:
      return t("role.moderator");
    case Role.MEMBER:
      return t("role.member");
    case Role.UNSPECIFIED:
      return t("role.guest");
  }
}

/** Who controls playback, for people. */
export function controlModeLabel(mode: ControlMode): Shown {
  switch (mode) {
    case ControlMode.MODERATORS:
      return t("control.moderators");
    case ControlMode.OWNER:
      return t("control.owner");
    case ControlMode.EVERYONE:
    case ControlMode.UNSPECIFIED:
      return t("control.everyone");
  }
}

/** The "who controls playback" choice, as the create-room dialog and the settings offer it. */
export function controlModeSelect(id: string, mode: ControlMode = ControlMode.EVERYONE): HTMLSelectElement {
  const select = h(
    "select",
    { attrs: { id } },
    h("option", { attrs: { value: String(ControlMode.EVERYONE) } }, t("control.everyone")),
    h("option", { attrs: { value: String(ControlMode.MODERATORS) } }, t("control.moderators")),
    h("option", { attrs: { value: String(ControlMode.OWNER) } }, t("control.ownerMine")),
  );
  select.value = String(mode === ControlMode.UNSPECIFIED ? ControlMode.EVERYONE : mode);
  return select;
}
