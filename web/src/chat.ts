// Room chat: history, live messages from chat-svc's WatchMessages stream (resumed after the last
// sequence number seen, so a reconnect neither loses nor repeats a message), own messages shown
// at once and reconciled by their client message id, moderation for owners and moderators.
// Every message text goes into the page through textContent only.

import { timestampDate } from "@bufbuild/protobuf/wkt";

import type { RoomContext } from "./context";
import { button, h, replace, setText } from "./dom";
import { sentenceFor } from "./errors";
import { type Message, MessageStatus } from "./gen/xiaowo/chat/v1/chat_pb";
import { Role } from "./gen/xiaowo/room/v1/room_pb";
import { formatDateTime, formatTime, t, userText } from "./i18n";
import { openMuteDialog, outranks } from "./moderation";
import { ReconnectingStream, type StreamState } from "./stream";
import { actionMenu, confirmAction } from "./ui";

const HISTORY_PAGE = 50;

function newClientMessageId(): string {
  // getRandomValues works on plain-HTTP LAN addresses too, where randomUUID does not.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

export class Chat {
  readonly element: HTMLElement;
  private readonly list = h("ol", { class: "messages", attrs: { id: "chat-messages", "aria-label": t("chat.log") } });
  private readonly emptyNote = h("p", { class: "chat-empty", attrs: { id: "chat-empty" } }, t("chat.empty"));
  private readonly input = h("textarea", { attrs: { id: "chat-input", rows: "1", maxlength: "1000", placeholder: t("chat.placeholder"), "aria-label": t("chat.inputLabel"), enterkeyhint: "send" } });
  private readonly error = h("p", { class: "error small", attrs: { id: "chat-error", role: "alert" } });
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
    /** Called for each new message from someone else (for an unread count). */
    private readonly onIncoming: () => void = () => undefined,
  ) {
    this.olderButton = button(t("chat.older"), () => this.loadOlder(), { kind: "quiet", small: true, attrs: { id: "chat-older" } });
    this.olderButton.hidden = true;
    const send = h("button", { class: "btn primary icon-only send", attrs: { type: "submit", id: "chat-send", "aria-label": t("chat.send"), title: t("chat.send") } }, h("span", { class: "icon icon-send", attrs: { "aria-hidden": "true" } }));
    const form = h("form", { class: "chat-form", attrs: { id: "chat-form" } }, this.input, send);
    // The field grows with what is typed, up to a few lines.
    this.input.addEventListener("input", () => {
      this.input.style.height = "auto";
      this.input.style.height = `${Math.min(this.input.scrollHeight, 120)}px`;
    });
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
    this.element = h("section", { class: "chat", attrs: { id: "chat", "aria-label": t("chat.title") } }, h("div", { class: "chat-scroll", attrs: { role: "log", "aria-live": "polite", "aria-label": t("chat.log"), tabindex: "0" } }, this.olderButton, this.emptyNote, this.list), this.error, form);
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
      replace(this.error, sentenceFor(error, "chat"));
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
      if (this.historyLoaded && message.senderId !== this.ctx.myUserId) {
        this.onIncoming();
      }
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
      h(
        "div",
        { class: "message-head" },
        h("span", { class: "sender" }, this.ctx.nameOf(message.senderId)),
        h("time", { attrs: { datetime: time.toISOString(), title: formatDateTime(time) } }, formatTime(time)),
        // Shown by the stylesheet once the row's data-status says delivered.
        h("span", { class: "delivered", attrs: { title: t("chat.delivered") } }, h("span", { class: "visually-hidden" }, t("chat.delivered"))),
      ),
      h("div", { class: "text" }, deleted ? t("chat.deleted") : userText(message.text)),
    );
    if (this.ctx.canModerate() && !deleted) {
      const items = [
        {
          label: t("chat.delete"),
          id: "delete",
          danger: true,
          action: async () => {
            const sure = await confirmAction({ title: t("chat.deleteTitle"), text: t("chat.deleteText"), confirm: t("chat.delete"), danger: true, id: "delete-dialog" });
            if (!sure) {
              return;
            }
            try {
              const { message: tombstone } = await this.ctx.app.api.chat.deleteMessage({ roomId: this.ctx.roomId, seq: message.seq });
              if (tombstone) {
                this.show(tombstone);
              }
            } catch (error) {
              this.ctx.app.fail(error, "moderation");
            }
          },
        },
      ];
      if (!mine && this.ctx.roleOf(message.senderId) !== Role.OWNER && outranks(this.ctx, this.ctx.roleOf(message.senderId))) {
        items.push({ label: t("member.mute"), id: "mute", danger: false, action: async () => openMuteDialog(this.ctx, message.senderId) });
      }
      row.appendChild(h("div", { class: "actions" }, actionMenu(t("chat.actionsFor", { name: this.ctx.nameOf(message.senderId) }), items)));
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
      setText(text, t("chat.deleted"));
    }
    row.querySelector(".actions")?.remove();
  }

  private async send(): Promise<void> {
    const text = this.input.value;
    if (text.trim() === "") {
      return;
    }
    this.input.value = "";
    this.input.style.height = "auto";
    const clientMessageId = newClientMessageId();
    const row = h(
      "li",
      { class: "message mine pending", attrs: { "data-client-id": clientMessageId } },
      h("div", { class: "message-head" }, h("span", { class: "sender" }, userText(this.ctx.app.session.displayName)), h("span", { class: "state" }, t("chat.sending"))),
      h("div", { class: "text" }, userText(text)),
    );
    this.pending.set(clientMessageId, row);
    this.list.appendChild(row);
    this.scrollToEnd();
    await this.deliver(text, clientMessageId, row);
  }

  private async deliver(text: string, clientMessageId: string, row: HTMLElement): Promise<void> {
    replace(this.error);
    row.classList.remove("failed");
    row.querySelector(".retry")?.remove();
    row.querySelector(".reason")?.remove();
    try {
      const { message } = await this.ctx.app.api.chat.sendMessage({ roomId: this.ctx.roomId, text, clientMessageId });
      if (message && this.pending.has(clientMessageId)) {
        this.show(message);
      }
    } catch (error) {
      replace(this.error, sentenceFor(error, "chat"));
      row.classList.add("failed");
      const state = row.querySelector(".state");
      if (state) {
        setText(state, t("chat.notSent"));
      }
      // The reason stays with the message: a later send that goes through clears the line
      // under the chat, not why this one was refused.
      row.appendChild(h("p", { class: "reason small" }, sentenceFor(error, "chat")));
      // The same client id makes the retry safe even if the first attempt was stored after all.
      row.appendChild(button(t("chat.retry"), () => this.deliver(text, clientMessageId, row), { kind: "secondary", small: true, class: "retry" }));
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
    this.emptyNote.hidden = this.list.childElementCount > 0;
    const scroller = this.list.parentElement;
    if (scroller) {
      scroller.scrollTop = scroller.scrollHeight;
    }
  }

  /** Puts the cursor in the message field. */
  focus(): void {
    this.input.focus();
  }

  private refreshNames(): void {
    for (const row of this.list.querySelectorAll<HTMLElement>("li.message[data-sender]")) {
      const sender = row.querySelector(".sender");
      const userId = row.dataset.sender;
      if (sender && userId) {
        setText(sender, this.ctx.nameOf(userId));
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
