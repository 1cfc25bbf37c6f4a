// What the parts of a room page share: the room, the caller's role in it, the members' names,
// and the permission rules the server enforces (mirrored here only to grey out controls).

import { ControlMode, type Member, Role, type Room, RoomStatus } from "./gen/xiaowo/room/v1/room_pb";
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

  nameOf(userId: string): string {
    if (userId === this.myUserId) {
      return this.app.session.displayName;
    }
    return this.members.get(userId)?.displayName || `guest ${userId.slice(0, 4)}`;
  }

  roleOf(userId: string): Role {
    return this.members.get(userId)?.role ?? Role.UNSPECIFIED;
  }

  /** Why the caller may not control playback and the queue, or undefined when they may. */
  controlDeniedReason(): string | undefined {
    if (this.room.status !== RoomStatus.ACTIVE) {
      return "The room is closed.";
    }
    if (this.role === Role.UNSPECIFIED) {
      return "You are not a member of this room.";
    }
    switch (this.room.controlMode) {
      case ControlMode.MODERATORS:
        return this.role >= Role.MODERATOR ? undefined : "Only moderators control playback in this room.";
      case ControlMode.OWNER:
        return this.role === Role.OWNER ? undefined : "Only the owner controls playback in this room.";
      case ControlMode.EVERYONE:
      case ControlMode.UNSPECIFIED:
        return undefined;
    }
  }

  canModerate(): boolean {
    return this.room.status === RoomStatus.ACTIVE && this.role >= Role.MODERATOR;
  }
}

export function roleName(role: Role): string {
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
