// The settings tab: the room's settings (editable by its owner and moderators, read-only for
// everyone else), the room's playback rule, this device's sync options behind "Advanced", and
// closing the room (owner only, confirmed).

import { type RoomContext, controlModeLabel, controlModeSelect } from "./context";
import { button, h } from "./dom";
import { ControlMode, Role, Visibility } from "./gen/xiaowo/room/v1/room_pb";
import { t } from "./i18n";
import { checkbox, confirmAction, field } from "./ui";

export interface SettingsParts {
  /** The room's "wait for everyone" switch (from the player). */
  playback: HTMLElement;
  /** This device's sync options (from the player). */
  device: HTMLElement;
}

export function settingsPanel(ctx: RoomContext, parts: SettingsParts): HTMLElement {
  const owner = ctx.role === Role.OWNER;
  const room = ctx.room;
  const sections: HTMLElement[] = [];

  if (ctx.role >= Role.MODERATOR) {
    const name = h("input", { attrs: { id: "settings-name", maxlength: "64", autocomplete: "off" } });
    name.value = room.name;
    const description = h("textarea", { attrs: { id: "settings-description", maxlength: "500", rows: "2" } });
    description.value = room.description;
    const visibility = h(
      "select",
      { attrs: { id: "settings-visibility" } },
      h("option", { attrs: { value: String(Visibility.PUBLIC) } }, t("create.public")),
      h("option", { attrs: { value: String(Visibility.UNLISTED) } }, t("create.unlisted")),
    );
    visibility.value = String(room.visibility === Visibility.UNLISTED ? Visibility.UNLISTED : Visibility.PUBLIC);
    const control = controlModeSelect("settings-control", room.controlMode);
    const password = h("input", {
      attrs: { id: "settings-password", type: "password", autocomplete: "new-password", placeholder: room.hasPassword ? t("settings.passwordKeep") : t("settings.passwordNone") },
    });
    const clearPassword = h("input", { attrs: { id: "settings-clear-password" } });
    const save = button(
      t("settings.save"),
      async () => {
        try {
          const { room: updated } = await ctx.app.api.room.updateRoom({
            roomId: ctx.roomId,
            name: name.value,
            description: description.value,
            ...(owner
              ? {
                  visibility: Number(visibility.value) as Visibility,
                  controlMode: Number(control.value) as ControlMode,
                  ...(password.value ? { password: password.value } : {}),
                  clearPassword: clearPassword.checked,
                }
              : {}),
          });
          if (updated) {
            ctx.room = updated;
            ctx.changed();
          }
          password.value = "";
          ctx.app.notify(t("settings.saved"));
        } catch (error) {
          ctx.app.fail(error, "room");
        }
      },
      { kind: "primary", attrs: { id: "settings-save" } },
    );
    sections.push(
      h(
        "section",
        { class: "settings-section", attrs: { id: "room-settings", "aria-labelledby": "room-settings-title" } },
        h("h2", { attrs: { id: "room-settings-title" } }, t("settings.room")),
        field(t("create.name"), name),
        field(t("create.description"), description),
        owner ? field(t("create.visibility"), visibility) : null,
        owner ? field(t("create.control"), control) : null,
        owner ? field(t("settings.newPassword"), password, t("create.passwordHint")) : null,
        owner && room.hasPassword ? checkbox(t("settings.removePassword"), clearPassword) : null,
        h("div", { class: "row" }, save),
      ),
    );
  } else {
    sections.push(
      h(
        "section",
        { class: "settings-section", attrs: { id: "room-settings", "aria-labelledby": "room-settings-title" } },
        h("h2", { attrs: { id: "room-settings-title" } }, t("settings.room")),
        h(
          "dl",
          { class: "facts" },
          h("dt", {}, t("create.control")),
          h("dd", {}, controlModeLabel(room.controlMode)),
          h("dt", {}, t("create.visibility")),
          h("dd", {}, room.visibility === Visibility.UNLISTED ? t("create.unlisted") : t("create.public")),
        ),
      ),
    );
  }

  sections.push(
    h("section", { class: "settings-section" }, h("h2", {}, t("settings.playback")), parts.playback),
    h(
      "section",
      { class: "settings-section" },
      h("h2", {}, t("settings.device")),
      h(
        "details",
        { class: "disclosure", attrs: { id: "advanced-sync" } },
        h("summary", {}, t("advanced.title")),
        h("p", { class: "hint" }, t("advanced.lead")),
        parts.device,
      ),
    ),
  );

  if (owner) {
    const close = button(
      t("settings.close"),
      async () => {
        const sure = await confirmAction({ title: t("settings.closeTitle"), text: t("settings.closeText"), confirm: t("settings.close"), danger: true, id: "close-dialog" });
        if (!sure) {
          return;
        }
        try {
          await ctx.app.api.room.closeRoom({ roomId: ctx.roomId });
          ctx.app.navigate("/");
        } catch (error) {
          ctx.app.fail(error, "room");
        }
      },
      { kind: "danger", attrs: { id: "close-room" } },
    );
    sections.push(h("section", { class: "settings-section danger-zone" }, h("h2", {}, t("settings.dangerZone")), h("p", { class: "hint" }, t("settings.closeHint")), close));
  }
  return h("div", { class: "settings" }, ...sections);
}
