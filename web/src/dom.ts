// The only way this client builds DOM: elements with attributes and text nodes. Nothing here
// (or anywhere else in the client) assigns innerHTML, so no server- or user-supplied string is
// ever parsed as HTML. Text goes in only as `Shown` (from the catalog, from Intl, or people's
// own words marked with `userText`), so a sentence that skipped the catalog does not compile.

import type { Shown } from "./i18n";

type Child = Node | Shown | null | undefined | false;

/** Attributes; the ones a person reads or hears must be `Shown`. */
export type Attrs = {
  title?: Shown;
  placeholder?: Shown;
  "aria-label"?: Shown;
  "aria-description"?: Shown;
  "aria-valuetext"?: Shown;
  alt?: Shown;
  label?: Shown;
  [name: string]: string | undefined;
};

export interface Props {
  class?: string;
  /** Attributes set with setAttribute (values are plain strings, never markup). */
  attrs?: Attrs;
  /** Event listeners by event name. */
  on?: Record<string, (event: Event) => void>;
}

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Props = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  if (props.class) {
    element.className = props.class;
  }
  for (const [name, value] of Object.entries(props.attrs ?? {})) {
    if (value !== undefined) {
      element.setAttribute(name, value);
    }
  }
  for (const [name, listener] of Object.entries(props.on ?? {})) {
    element.addEventListener(name, listener);
  }
  append(element, ...children);
  return element;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    parent.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
}

/** Replaces all children of `parent`. */
export function replace(parent: Node, ...children: Child[]): void {
  while (parent.firstChild) {
    parent.removeChild(parent.firstChild);
  }
  append(parent, ...children);
}

/** Sets an element's whole text. */
export function setText(element: Element, text: Shown): void {
  if (element.textContent !== text) {
    element.textContent = text;
  }
}

/** Sets (or, with undefined, removes) an attribute a person reads or hears. */
export function setLabel(element: Element, name: "title" | "aria-label" | "placeholder" | "aria-description" | "aria-valuetext", text: Shown | undefined): void {
  if (text === undefined) {
    element.removeAttribute(name);
  } else if (element.getAttribute(name) !== text) {
    element.setAttribute(name, text);
  }
}

export function setDocumentTitle(text: Shown): void {
  document.title = text;
}

/** How much a button weighs: one primary per view, danger only for what cannot be undone. */
export type ButtonKind = "primary" | "secondary" | "quiet" | "danger" | "danger-quiet";

export interface ButtonOptions extends Props {
  kind?: ButtonKind;
  /** An icon name from app.css (`icon-<name>`), drawn before the label. */
  icon?: string;
  /** Icon only: the label becomes the accessible name and the tooltip. */
  iconOnly?: boolean;
  small?: boolean;
}

/** A button that runs an async action, marked busy (and ignoring clicks) while it runs. */
export function button(label: Shown, action: () => Promise<void> | void, options: ButtonOptions = {}): HTMLButtonElement {
  const { kind = "secondary", icon: iconName, iconOnly = false, small = false, ...props } = options;
  const classes = ["btn", kind, small ? "small" : "", iconOnly ? "icon-only" : "", props.class ?? ""].filter(Boolean).join(" ");
  const attrs: Attrs = { type: "button", ...props.attrs };
  if (iconOnly) {
    attrs["aria-label"] = attrs["aria-label"] ?? label;
    attrs.title = attrs.title ?? label;
  }
  const element = h("button", { ...props, class: classes, attrs }, iconName ? icon(iconName) : null, iconOnly ? null : h("span", { class: "label" }, label));
  let busy = false;
  element.addEventListener("click", async () => {
    if (busy || element.disabled) {
      return;
    }
    busy = true;
    element.setAttribute("aria-busy", "true");
    try {
      await action();
    } finally {
      busy = false;
      element.removeAttribute("aria-busy");
    }
  });
  return element;
}

/** Changes a button's visible label (or, for icon-only buttons, its accessible name). */
export function setButtonLabel(element: HTMLButtonElement, label: Shown): void {
  const span = element.querySelector(".label");
  if (span) {
    setText(span, label);
  } else {
    setLabel(element, "aria-label", label);
    setLabel(element, "title", label);
  }
}

/** A decorative icon (a CSS mask from app.css); hidden from assistive technology. */
export function icon(name: string): HTMLElement {
  return h("span", { class: `icon icon-${name}`, attrs: { "aria-hidden": "true" } });
}

/** Enables or disables a control, with the reason as its tooltip when disabled. */
export function setEnabled(element: HTMLButtonElement | HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement, enabled: boolean, reason?: Shown): void {
  element.disabled = !enabled;
  // An icon-only button keeps its name as the tooltip when there is no reason to show.
  const name = element.classList.contains("icon-only") ? (element.getAttribute("aria-label") as Shown | null) ?? undefined : undefined;
  setLabel(element, "title", enabled ? name : reason ?? name);
}

let uniqueCounter = 0;
/** An id unique on this page, for label/aria references. */
export function uniqueId(prefix: string): string {
  uniqueCounter += 1;
  return `${prefix}-${uniqueCounter}`;
}

/** The first letter (or character) of a name, for an avatar. */
export function initial(name: string): Shown {
  const first = [...name.trim()][0] ?? "?";
  return first.toLocaleUpperCase() as Shown;
}
