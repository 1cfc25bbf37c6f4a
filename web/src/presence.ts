// Who watches the room, as one stream sees it: the snapshot's list with every presence delta
// applied by user id. The server sends a delta of what changed (at most one per presence
// interval), so that one person joining a room of a thousand costs one entry per stream. A
// large list (a big room's snapshot, a crowd arriving at once) comes in pages of up to 50, each
// but the last marked `more`.

import type { PresenceDelta, Watcher } from "./gen/xiaowo/sync/v1/sync_pb";

export class PresenceList {
  private readonly byUser = new Map<string, Watcher>();

  /** Starts again from a snapshot's list. */
  replace(watchers: readonly Watcher[]): void {
    this.byUser.clear();
    for (const watcher of watchers) {
      this.byUser.set(watcher.userId, watcher);
    }
  }

  /**
   * Applies a delta; false when the result disagrees with the count the server sent (this
   * stream missed something, and reopening it brings a fresh snapshot). The count holds once
   * the last page of a change is in.
   */
  apply(delta: PresenceDelta): boolean {
    for (const watcher of delta.watchers) {
      this.byUser.set(watcher.userId, watcher);
    }
    for (const userId of delta.leftUserIds) {
      this.byUser.delete(userId);
    }
    return delta.more || this.byUser.size === delta.watcherCount;
  }

  /** Everyone, in user id order (as the server lists them). */
  list(): Watcher[] {
    return [...this.byUser.values()].sort((a, b) => (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0));
  }
}
