// A media library item's picture (one frame media-svc made; decorative beside its title), for the library, the queue, the
// player and the lobby's room cards. Its own module so that the lobby can show it without
// loading the room's code.

import { h } from "./dom";

/** A library item's thumbnail; it hides itself when there is none (yet). */
export function thumbnail(libraryItemId: string, url = ""): HTMLImageElement {
  const image = h("img", {
    class: "thumb",
    attrs: { src: url || `/media/${encodeURIComponent(libraryItemId)}/thumbnail`, role: "presentation", loading: "lazy", "data-library-item-id": libraryItemId },
  });
  image.addEventListener("error", () => image.classList.add("missing"));
  return image;
}
