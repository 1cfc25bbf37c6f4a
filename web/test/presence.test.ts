import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { create } from "@bufbuild/protobuf";

import { PresenceDeltaSchema, WatcherSchema } from "../src/gen/xiaowo/sync/v1/sync_pb";
import { PresenceList } from "../src/presence";

const watcher = (userId: string, offsetMs = 0n) => create(WatcherSchema, { userId, displayName: userId, offsetMs });

describe("presence", () => {
  it("applies joins, changes and departures by user id onto the snapshot", () => {
    const presence = new PresenceList();
    presence.replace([watcher("b"), watcher("a")]);
    const ok = presence.apply(create(PresenceDeltaSchema, { watchers: [watcher("c"), watcher("a", 40n)], leftUserIds: ["b"], watcherCount: 2 }));
    assert.equal(ok, true);
    assert.deepEqual(
      presence.list().map((entry) => [entry.userId, entry.offsetMs]),
      [
        ["a", 40n],
        ["c", 0n],
      ],
    );
  });

  it("says when its list disagrees with the server's count", () => {
    const presence = new PresenceList();
    presence.replace([watcher("a")]);
    assert.equal(presence.apply(create(PresenceDeltaSchema, { watchers: [watcher("b")], watcherCount: 3 })), false);
  });

  it("checks the count once the last page of a large list is in", () => {
    const presence = new PresenceList();
    presence.replace([watcher("a"), watcher("b")]);
    const page = (users: string[], more: boolean) =>
      create(PresenceDeltaSchema, { watchers: users.map((user) => watcher(user)), watcherCount: 5, more });
    assert.equal(presence.apply(page(["c", "d"], true)), true);
    assert.equal(presence.apply(page(["e"], false)), true);
    assert.deepEqual(presence.list().map((entry) => entry.userId), ["a", "b", "c", "d", "e"]);
    // A last page that leaves the list short means one went missing.
    presence.replace([watcher("a"), watcher("b")]);
    assert.equal(presence.apply(page(["c", "d"], true)), true);
    assert.equal(presence.apply(page([], false)), false);
  });

  it("a departure of someone it never saw changes nothing", () => {
    const presence = new PresenceList();
    presence.replace([watcher("a")]);
    assert.equal(presence.apply(create(PresenceDeltaSchema, { leftUserIds: ["z"], watcherCount: 1 })), true);
    assert.deepEqual(presence.list().map((entry) => entry.userId), ["a"]);
  });
});
