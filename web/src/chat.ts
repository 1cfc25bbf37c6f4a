// Room chat: history, live messages from chat-svc's WatchMessages stream (resumed after the last
// sequence number seen, so a reconnect neither loses nor repeats a message), own messages shown
// at once and reconciled by their client message id, moderation for owners and moderators.
// Every message text goes into the page through textContent only.

import { durationFromMs, timestampDate } from "@bufbuild/protobuf/wkt";

import { describeError } from "./api";
import type { RoomContext } from "./context";
import { button, h, replace } from "./dom";
import { type Message, MessageStatus } from "./gen/xiaowo/chat/v1/chat_pb";
import { Role } from "./gen/xiaowo/room/v1/room_pb";
import { ReconnectingStream, type StreamState } from "./stream";

const HISTORY_PAGE = 50;
const MUTE_MS = 10 * 60 * 1000;

function newClientMessageId(): string {
  // getRandomValues works on plain-HTTP LAN addresses too, where randomUUID does not.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

export class Chat {
  readonly element: HTMLElement;
  private readonly list = h("ol", { class: "messages", attrs: { id: "chat-messages", "aria-live": "polite" } });
  private readonly input = h("textarea", { attrs: { id: "chat-input", rows: "2", maxlength: "1000", placeholder: "Say something…", "aria-label": "Message" } });
  private readonly error = h("p", { class: "error small", attrs: { id: "chat-error" } });
  private readonly olderButton: HTMLButtonElement;
  /** Rendered messages by seq. */
  private readonly rows = new Map<bigint, HTMLElement>();
  /** Own messages not yet confirmed, by client message id. */
  private readonly pending = new Map<string, HTMLElement>();
  /** The highest seq shown: where a reconnect resumes. */
  private lastSeq = 0n;
  /** Where the next "older" page starts; 0 when there is nothing older. */
  private nextBeforeSeq = 0n;
  private historyLoaded = false;
  private readonly stream: ReconnectingStream;
  private cursorTimer = 0;

  constructor(
    private readonly ctx: RoomContext,
    onStreamState: (state: StreamState) => void,
  ) {
    this.olderButton = button("Load older messages", () => this.loadOlder(), { class: "link", attrs: { id: "chat-older" } });
    this.olderButton.hidden = true;
    const form = h("form", { class: "chat-form", attrs: { id: "chat-form" } }, this.input, h("button", { attrs: { type: "submit", id: "chat-send" } }, "Send"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.send();
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        void this.send();
      }
    });
    this.element = h("section", { class: "card chat" }, h("h2", {}, "Chat"), this.olderButton, this.list, this.error, form);
    this.stream = new ReconnectingStream({
      onState: onStreamState,
      run: async (signal, live) => {
        if (!this.historyLoaded) {
          await this.loadHistory();
        }
        const responses = this.ctx.app.api.chat.watchMessages({ roomId: this.ctx.roomId, afterSeq: this.lastSeq }, { signal });
        for await (const response of responses) {
          this.stream.touch();
          live();
          const event = response.event;
          switch (event.case) {
            case "message":
              this.show(event.value);
              break;
            case "messageDeleted":
              this.markDeleted(event.value.seq);
              break;
            case "messageStatusChanged":
              this.rows.get(event.value.seq)?.setAttribute("data-status", statusName(event.value.status));
              break;
            case "tooFarBehind":
              // The gap is larger than the server replays: start again from recent history.
              this.clear();
              await this.loadHistory();
              this.lastSeq = event.value.latestSeq > this.lastSeq ? event.value.latestSeq : this.lastSeq;
              break;
            case "caughtUp":
            case "cursorUpdated":
            case "heartbeat":
            case undefined:
              break;
          }
        }
      },
    });
    ctx.onChange(() => this.refreshNames());
  }

  start(): void {
    this.stream.start();
  }

  stop(): void {
    this.stream.stop();
    window.clearTimeout(this.cursorTimer);
  }

  reconnectNow(): void {
    this.stream.reconnectNow();
  }

  private clear(): void {
    this.rows.clear();
    replace(this.list);
    for (const row of this.pending.values()) {
      this.list.appendChild(row);
    }
  }

  private async loadHistory(): Promise<void> {
    const page = await this.ctx.app.api.chat.listMessages({ roomId: this.ctx.roomId, pageSize: HISTORY_PAGE });
    for (const message of [...page.messages].reverse()) {
      this.show(message);
    }
    if (page.latestSeq > this.lastSeq) {
      this.lastSeq = page.latestSeq;
    }
    this.nextBeforeSeq = page.nextBeforeSeq;
    this.olderButton.hidden = this.nextBeforeSeq === 0n;
    this.historyLoaded = true;
  }

  private async loadOlder(): Promise<void> {
    if (this.nextBeforeSeq === 0n) {
      return;
    }
    try {
      const page = await this.ctx.app.api.chat.listMessages({ roomId: this.ctx.roomId, beforeSeq: this.nextBeforeSeq, pageSize: HISTORY_PAGE });
      for (const message of page.messages) {
        if (!this.rows.has(message.seq)) {
          const row = this.render(message);
          this.rows.set(message.seq, row);
          this.list.insertBefore(row, this.list.firstChild);
        }
      }
      this.nextBeforeSeq = page.nextBeforeSeq;
      this.olderButton.hidden = this.nextBeforeSeq === 0n;
    } catch (error) {
      this.error.textContent = describeError(error);
    }
  }

  /**
   * Shows a message in seq order, replacing the pending copy of our own message or an earlier
   * rendering of the same seq.
   */
  private show(message: Message): void {
    const row = this.render(message);
    const existing = this.rows.get(message.seq);
    const pending = message.senderId === this.ctx.myUserId ? this.pending.get(message.clientMessageId) : undefined;
    if (existing) {
      existing.replaceWith(row);
    } else if (pending) {
      pending.replaceWith(row);
    } else {
      this.insertInOrder(row, message.seq);
    }
    if (pending) {
      this.pending.delete(message.clientMessageId);
      // Sent rows stay at the bottom until confirmed; a confirmed one belongs at its seq.
      row.remove();
      this.insertInOrder(row, message.seq);
    }
    this.rows.set(message.seq, row);
    if (message.seq > this.lastSeq) {
      this.lastSeq = message.seq;
      this.scheduleCursor();
    }
    this.scrollToEnd();
  }

  private insertInOrder(row: HTMLElement, seq: bigint): void {
    let before: HTMLElement | null = null;
    for (const [otherSeq, other] of this.rows) {
      if (otherSeq > seq && (before === null || Number(other.dataset.seq) < Number(before.dataset.seq))) {
        before = other;
      }
    }
    if (before === null) {
      // After every confirmed message, before the pending ones.
      const firstPending = this.list.querySelector<HTMLElement>("li.pending");
      this.list.insertBefore(row, firstPending);
    } else {
      this.list.insertBefore(row, before);
    }
  }

  private render(message: Message): HTMLElement {
    const mine = message.senderId === this.ctx.myUserId;
    const deleted = message.status === MessageStatus.DELETED;
    const time = message.createTime ? timestampDate(message.createTime) : new Date();
    const row = h(
      "li",
      {
        class: `message${mine ? " mine" : ""}${deleted ? " deleted" : ""}`,
        attrs: { "data-seq": String(message.seq), "data-sender": message.senderId, "data-status": statusName(message.status) },
      },
      h("span", { class: "sender" }, this.ctx.nameOf(message.senderId)),
      h("time", { attrs: { datetime: time.toISOString() } }, time.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })),
      h("div", { class: "text" }, deleted ? "message deleted" : message.text),
    );
    if (this.ctx.canModerate() && !deleted) {
      const actions = h("span", { class: "actions" });
      actions.appendChild(
        button("Delete", async () => {
          try {
            const { message: tombstone } = await this.ctx.app.api.chat.deleteMessage({ roomId: this.ctx.roomId, seq: message.seq });
            if (tombstone) {
              this.show(tombstone);
            }
          } catch (error) {
            this.ctx.app.notify(describeError(error), "error");
          }
        }, { class: "link small" }),
      );
      if (!mine && this.ctx.roleOf(message.senderId) !== Role.OWNER) {
        actions.appendChild(button("Mute 10 min", () => this.mute(message.senderId), { class: "link small" }));
      }
      row.appendChild(actions);
    }
    return row;
  }

  private markDeleted(seq: bigint): void {
    const row = this.rows.get(seq);
    if (!row) {
      return;
    }
    row.classList.add("deleted");
    row.setAttribute("data-status", "deleted");
    const text = row.querySelector(".text");
    if (text) {
      text.textContent = "message deleted";
    }
    row.querySelector(".actions")?.remove();
  }

  async mute(userId: string): Promise<void> {
    try {
      await this.ctx.app.api.chat.muteMember({ roomId: this.ctx.roomId, userId, duration: durationFromMs(MUTE_MS) });
      this.ctx.app.notify(`${this.ctx.nameOf(userId)} is muted for 10 minutes.`);
    } catch (error) {
      this.ctx.app.notify(describeError(error), "error");
    }
  }

  private async send(): Promise<void> {
    const text = this.input.value;
    if (text.trim() === "") {
      return;
    }
    this.input.value = "";
    const clientMessageId = newClientMessageId();
    const row = h(
      "li",
      { class: "message mine pending", attrs: { "data-client-id": clientMessageId } },
      h("span", { class: "sender" }, this.ctx.app.session.displayName),
      h("span", { class: "state small" }, "sending…"),
      h("div", { class: "text" }, text),
    );
    this.pending.set(clientMessageId, row);
    this.list.appendChild(row);
    this.scrollToEnd();
    await this.deliver(text, clientMessageId, row);
  }

  private async deliver(text: string, clientMessageId: string, row: HTMLElement): Promise<void> {
    this.error.textContent = "";
    row.classList.remove("failed");
    row.querySelector(".retry")?.remove();
    try {
      const { message } = await this.ctx.app.api.chat.sendMessage({ roomId: this.ctx.roomId, text, clientMessageId });
      if (message && this.pending.has(clientMessageId)) {
        this.show(message);
      }
    } catch (error) {
      const reason = describeError(error);
      this.error.textContent = reason;
      row.classList.add("failed");
      const state = row.querySelector(".state");
      if (state) {
        state.textContent = "not sent";
      }
      // The same client id makes the retry safe even if the first attempt was stored after all.
      row.appendChild(button("Retry", () => this.deliver(text, clientMessageId, row), { class: "link small retry" }));
    }
  }

  /** Tells the server how far we have read, at most once a second. */
  private scheduleCursor(): void {
    if (this.cursorTimer) {
      return;
    }
    this.cursorTimer = window.setTimeout(() => {
      this.cursorTimer = 0;
      const read = document.visibilityState === "visible";
      this.ctx.app.api.chat
        .updateCursor({ roomId: this.ctx.roomId, receivedSeq: this.lastSeq, readSeq: read ? this.lastSeq : 0n })
        .catch(() => undefined);
    }, 1_000);
  }

  private scrollToEnd(): void {
    this.list.scrollTop = this.list.scrollHeight;
  }

  private refreshNames(): void {
    for (const row of this.list.querySelectorAll<HTMLElement>("li.message[data-sender]")) {
      const sender = row.querySelector(".sender");
      const userId = row.dataset.sender;
      if (sender && userId) {
        sender.textContent = this.ctx.nameOf(userId);
      }
    }
  }
}

function statusName(status: MessageStatus): string {
  switch (status) {
    case MessageStatus.STORED:
      return "stored";
    case MessageStatus.DELIVERED:
      return "delivered";
    case MessageStatus.DELETED:
      return "deleted";
    case MessageStatus.UNSPECIFIED:
      return "unknown";
  }
}
