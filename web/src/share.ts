// Inviting people: the room's link to copy (or hand to the phone's share sheet) and a QR code
// to scan with a phone. The QR encoder is loaded only when the dialog opens.

import { button, h } from "./dom";
import { t, userText } from "./i18n";
import type { App } from "./main";
import { openDialog } from "./ui";

const SVG = "http://www.w3.org/2000/svg";

export function openShareDialog(app: App, roomId: string, roomName: string): void {
  const link = `${window.location.origin}/room/${roomId}`;
  const input = h("input", { attrs: { id: "share-link", type: "text", readonly: "", "aria-label": t("share.linkLabel") } });
  input.value = link;
  input.addEventListener("focus", () => input.select());
  const copy = button(
    t("share.copy"),
    async () => {
      try {
        await navigator.clipboard.writeText(link);
        app.notify(t("share.copied"));
      } catch {
        // No clipboard permission (plain HTTP on a LAN address): select it for Ctrl+C.
        input.focus();
        input.select();
        app.notify(t("share.copyByHand"));
      }
    },
    { kind: "primary", icon: "copy", attrs: { id: "copy-link" } },
  );
  const share =
    typeof navigator.share === "function"
      ? button(t("share.system"), () => navigator.share({ title: roomName, url: link }).catch(() => undefined), { kind: "secondary", icon: "share" })
      : null;
  const qr = h("div", { class: "qr", attrs: { id: "share-qr", role: "img", "aria-label": t("share.qrLabel") } });
  openDialog({
    title: t("share.title"),
    description: t("share.lead", { name: userText(roomName) }),
    id: "share-dialog",
    body: [h("div", { class: "share-link" }, input, copy), ...(share ? [share] : []), h("figure", { class: "qr-figure" }, qr, h("figcaption", { class: "hint" }, t("share.qrHint")))],
    initialFocus: copy,
  });
  void drawQr(qr, link);
}

/** Draws `text` as a QR code: one SVG path of dark modules on a light square. */
async function drawQr(target: HTMLElement, text: string): Promise<void> {
  const { encode } = await import("uqr");
  const { data, size } = encode(text, { ecc: "M", border: 2 });
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${size} ${size}`);
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("shape-rendering", "crispEdges");
  const background = document.createElementNS(SVG, "rect");
  background.setAttribute("width", String(size));
  background.setAttribute("height", String(size));
  background.setAttribute("fill", "#fff");
  const path = document.createElementNS(SVG, "path");
  let d = "";
  data.forEach((row, y) => {
    row.forEach((dark, x) => {
      if (dark) {
        d += `M${x} ${y}h1v1h-1z`;
      }
    });
  });
  path.setAttribute("d", d);
  path.setAttribute("fill", "#000");
  svg.append(background, path);
  target.appendChild(svg);
}
