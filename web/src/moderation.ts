// What owners and moderators do to people, each behind a confirmation that names the person
// and says what will happen: mute in the chat (for a chosen time), remove from the room, hand
// the room over, delete a message. Distinct from the player's own sound button on purpose.

import { durationFromMs } from "@bufbuild/protobuf/wkt";

import type { RoomContext } from "./context";
import { button, h } from "./dom";
import { Role } from "./gen/xiaowo/room/v1/room_pb";
import { formatMoment, formatSpan, type Shown, t } from "./i18n";
import { type ConfirmOptions, confirmAction, openDialog } from "./ui";

/** The lengths a mute can be chosen from, in minutes. */
const MUTE_CHOICES_MIN = [10, 60, 24 * 60];

/** Asks for how long, then mutes `userId` in the room's chat. */
export function openMuteDialog(ctx: RoomContext, userId: string): void {
  const name = ctx.nameOf(userId);
  const choices = MUTE_CHOICES_MIN.map((minutes, index) => {
    const input = h("input", { attrs: { type: "radio", name: "mute-length", id: `mute-${minutes}`, value: String(minutes) } });
    input.checked = index === 0;
    return h("div", { class: "choice" }, input, h("label", { attrs: { for: input.id } }, h("span", { class: "choice-label" }, formatSpan(minutes * 60))));
  });
  const group = h("fieldset", { class: "choices inline-choices" }, h("legend", {}, t("mute.howLong")), ...choices);
  const confirm = button(
    t("mute.confirm"),
    async () => {
      const checked = group.querySelector<HTMLInputElement>("input:checked");
      const minutes = Number(checked?.value ?? MUTE_CHOICES_MIN[0]);
      try {
        await ctx.app.api.chat.muteMember({ roomId: ctx.roomId, userId, duration: durationFromMs(minutes * 60_000) });
        dialog.close();
        const until = new Date(Date.now() + minutes * 60_000);
        ctx.app.notify(t("mute.done", { name, wait: formatSpan(minutes * 60), time: formatMoment(until) }));
      } catch (error) {
        ctx.app.fail(error, "moderation");
      }
    },
    { kind: "danger", attrs: { id: "mute-confirm" } },
  );
  const dialog = openDialog({
    title: t("mute.title", { name }),
    description: t("mute.text"),
    id: "mute-dialog",
    body: [group],
    actions: [button(t("action.cancel"), () => dialog.close()), confirm],
  });
}

/** Asks with `question`, then runs `act`; tells the person `done` or why it failed. */
async function confirmed(ctx: RoomContext, question: ConfirmOptions, act: () => Promise<unknown>, done: Shown): Promise<boolean> {
  if (!(await confirmAction(question))) {
    return false;
  }
  try {
    await act();
    ctx.app.notify(done);
    return true;
  } catch (error) {
    ctx.app.fail(error, "moderation");
    return false;
  }
}

/** Removes `userId` from the room after asking. */
export function kick(ctx: RoomContext, userId: string): Promise<boolean> {
  const name = ctx.nameOf(userId);
  return confirmed(
    ctx,
    { title: t("kick.title", { name }), text: t("kick.text"), confirm: t("kick.confirm"), danger: true, id: "kick-dialog" },
    () => ctx.app.api.room.kickMember({ roomId: ctx.roomId, userId }),
    t("kick.done", { name }),
  );
}

/** Hands the room to `userId` after asking. */
export function transferOwnership(ctx: RoomContext, userId: string): Promise<boolean> {
  const name = ctx.nameOf(userId);
  return confirmed(
    ctx,
    { title: t("owner.title", { name }), text: t("owner.text", { name }), confirm: t("owner.confirm"), danger: true, id: "owner-dialog" },
    () => ctx.app.api.room.transferOwnership({ roomId: ctx.roomId, userId }),
    t("owner.done", { name }),
  );
}

/** Makes `userId` a moderator or a plain member again (no confirmation: it is undone as easily). */
export async function setRole(ctx: RoomContext, userId: string, role: Role.MEMBER | Role.MODERATOR): Promise<boolean> {
  const name = ctx.nameOf(userId);
  try {
    await ctx.app.api.room.setMemberRole({ roomId: ctx.roomId, userId, role });
    ctx.app.notify(role === Role.MODERATOR ? t("role.madeModerator", { name }) : t("role.madeMember", { name }));
    return true;
  } catch (error) {
    ctx.app.fail(error, "moderation");
    return false;
  }
}

/** Whether the caller outranks `role` (and so may mute or remove its holder). */
export function outranks(ctx: RoomContext, role: Role): boolean {
  return ctx.role === Role.OWNER ? role !== Role.OWNER : ctx.role === Role.MODERATOR && role === Role.MEMBER;
}
