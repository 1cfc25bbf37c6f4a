// The only way this client builds DOM: elements with attributes and text nodes. Nothing here
// (or anywhere else in the client) assigns innerHTML, so no server- or user-supplied string is
// ever parsed as HTML.

type Child = Node | string | null | undefined | false;

export interface Props {
  class?: string;
  /** Attributes set with setAttribute (values are plain strings, never markup). */
  attrs?: Record<string, string>;
  /** Event listeners by event name. */
  on?: Record<string, (event: Event) => void>;
}

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Props = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  if (props.class) {
    element.className = props.class;
  }
  for (const [name, value] of Object.entries(props.attrs ?? {})) {
    element.setAttribute(name, value);
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

/** A button that runs an async action, disabled while it runs. */
export function button(label: string, action: () => Promise<void> | void, props: Props = {}): HTMLButtonElement {
  const element = h("button", { ...props, attrs: { type: "button", ...props.attrs } }, label);
  element.addEventListener("click", async () => {
    if (element.disabled) {
      return;
    }
    element.disabled = true;
    try {
      await action();
    } finally {
      element.disabled = false;
    }
  });
  return element;
}

export function formatDuration(seconds: number): string {
  const whole = Math.max(0, Math.floor(seconds));
  const minutes = Math.floor(whole / 60);
  const rest = String(whole % 60).padStart(2, "0");
  if (minutes >= 60) {
    return `${Math.floor(minutes / 60)}:${String(minutes % 60).padStart(2, "0")}:${rest}`;
  }
  return `${minutes}:${rest}`;
}
