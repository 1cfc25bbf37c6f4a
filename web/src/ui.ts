// The few interactive patterns every page shares, built to the WAI-ARIA practices: modal
// dialogs (focus moves in, stays in, Esc closes, focus returns to the opener), confirmation of
// destructive actions, tabs (arrow keys move between them), and small action menus.

import { button, h, icon, replace, setText, uniqueId } from "./dom";
import { type Shown, t } from "./i18n";

const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

function focusables(root: Element): HTMLElement[] {
  return [...root.querySelectorAll<HTMLElement>(FOCUSABLE)].filter((element) => !element.hidden && element.offsetParent !== null);
}

export interface DialogOptions {
  title: Shown;
  id?: string;
  /** A sentence under the title, read out as the dialog's description. */
  description?: Shown;
  body?: Node[];
  actions?: Node[];
  /** Where focus goes first (the first field, or the safe choice); default the first focusable. */
  initialFocus?: HTMLElement;
  onClose?: () => void;
  wide?: boolean;
}

export interface DialogHandle {
  element: HTMLDialogElement;
  close: () => void;
  closed: Promise<void>;
}

/** Opens a modal dialog. Everything outside is inert while it is open. */
export function openDialog(options: DialogOptions): DialogHandle {
  const titleId = uniqueId("dialog-title");
  const descriptionId = options.description ? uniqueId("dialog-description") : undefined;
  const opener = document.activeElement instanceof HTMLElement ? document.activeElement : null;
  let resolveClosed: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => {
    resolveClosed = resolve;
  });
  const element = h("dialog", {
    class: `dialog${options.wide ? " wide" : ""}`,
    attrs: { "aria-labelledby": titleId, "aria-describedby": descriptionId, id: options.id },
  });
  const close = (): void => {
    if (element.open) {
      element.close();
    }
  };
  const closeButton = button(t("action.close"), close, { kind: "quiet", icon: "close", iconOnly: true, class: "dialog-close" });
  replace(
    element,
    h("div", { class: "dialog-head" }, h("h2", { attrs: { id: titleId } }, options.title), closeButton),
    options.description ? h("p", { class: "dialog-description", attrs: { id: descriptionId } }, options.description) : null,
    h("div", { class: "dialog-body" }, ...(options.body ?? [])),
    options.actions?.length ? h("div", { class: "dialog-actions" }, ...options.actions) : null,
  );
  element.addEventListener("close", () => {
    element.remove();
    options.onClose?.();
    opener?.focus();
    resolveClosed();
  });
  // Tab and Shift+Tab cycle inside the dialog rather than reaching the browser's own controls.
  element.addEventListener("keydown", (event) => {
    if (event.key !== "Tab") {
      return;
    }
    const items = focusables(element);
    const first = items[0];
    const last = items[items.length - 1];
    if (!first || !last) {
      return;
    }
    if (event.shiftKey && document.activeElement === first) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && document.activeElement === last) {
      event.preventDefault();
      first.focus();
    }
  });
  // A click on the backdrop (outside the dialog's box) closes it, as people expect.
  element.addEventListener("click", (event) => {
    if (event.target !== element) {
      return;
    }
    const box = element.getBoundingClientRect();
    const { clientX: x, clientY: y } = event as MouseEvent;
    if (x < box.left || x > box.right || y < box.top || y > box.bottom) {
      close();
    }
  });
  document.body.appendChild(element);
  element.showModal();
  (options.initialFocus ?? focusables(element.querySelector(".dialog-body") ?? element)[0] ?? closeButton).focus();
  return { element, close, closed };
}

export interface ConfirmOptions {
  title: Shown;
  text: Shown;
  confirm: Shown;
  /** Destructive (red), which also puts the initial focus on Cancel. */
  danger?: boolean;
  id?: string;
}

/** Asks before doing something that cannot be undone; resolves true when confirmed. */
export function confirmAction(options: ConfirmOptions): Promise<boolean> {
  let confirmed = false;
  return new Promise((resolve) => {
    const cancel = button(t("action.cancel"), () => dialog.close(), { kind: "secondary", attrs: { "data-action": "cancel" } });
    const ok = button(
      options.confirm,
      () => {
        confirmed = true;
        dialog.close();
      },
      { kind: options.danger ? "danger" : "primary", attrs: { "data-action": "confirm" } },
    );
    const dialog = openDialog({
      title: options.title,
      description: options.text,
      id: options.id ?? "confirm-dialog",
      actions: [cancel, ok],
      initialFocus: options.danger ? cancel : ok,
      onClose: () => resolve(confirmed),
    });
  });
}

export interface TabItem {
  id: string;
  label: Shown;
  panel: HTMLElement;
  /** A small count beside the label (members, queue length). */
  badge?: HTMLElement;
}

export interface Tabs {
  element: HTMLElement;
  list: HTMLElement;
  select: (id: string, focus?: boolean) => void;
  selected: () => string;
  onSelect: (listener: (id: string) => void) => void;
  setLabel: (id: string, label: Shown) => void;
}

/** Tabs with arrow-key navigation (roving tabindex); the panels stay mounted when hidden. */
export function tabs(name: Shown, items: TabItem[], className = ""): Tabs {
  const buttons = new Map<string, HTMLButtonElement>();
  const listeners: ((id: string) => void)[] = [];
  let current = items[0]?.id ?? "";
  const list = h("div", { class: "tablist", attrs: { role: "tablist", "aria-label": name } });
  for (const item of items) {
    const tabId = `tab-${item.id}`;
    const tab = h(
      "button",
      { class: "tab", attrs: { type: "button", role: "tab", id: tabId, "aria-controls": `panel-${item.id}`, "data-tab": item.id } },
      h("span", { class: "label" }, item.label),
      item.badge ?? null,
    );
    tab.addEventListener("click", () => select(item.id));
    buttons.set(item.id, tab);
    list.appendChild(tab);
    item.panel.id = `panel-${item.id}`;
    item.panel.setAttribute("role", "tabpanel");
    item.panel.setAttribute("aria-labelledby", tabId);
    item.panel.classList.add("tabpanel");
  }
  list.addEventListener("keydown", (event) => {
    const ids = items.map((item) => item.id);
    const index = ids.indexOf(current);
    let next: string | undefined;
    switch (event.key) {
      case "ArrowRight":
        next = ids[(index + 1) % ids.length];
        break;
      case "ArrowLeft":
        next = ids[(index - 1 + ids.length) % ids.length];
        break;
      case "Home":
        next = ids[0];
        break;
      case "End":
        next = ids[ids.length - 1];
        break;
      default:
        return;
    }
    event.preventDefault();
    if (next) {
      select(next, true);
    }
  });
  const select = (id: string, focus = false): void => {
    current = id;
    for (const item of items) {
      const active = item.id === id;
      const tab = buttons.get(item.id);
      tab?.setAttribute("aria-selected", String(active));
      tab?.setAttribute("tabindex", active ? "0" : "-1");
      item.panel.hidden = !active;
    }
    if (focus) {
      buttons.get(id)?.focus();
    }
    for (const listener of listeners) {
      listener(id);
    }
  };
  select(current);
  const element = h("div", { class: `tabs ${className}` }, list, ...items.map((item) => item.panel));
  return {
    element,
    list,
    select,
    selected: () => current,
    onSelect: (listener) => listeners.push(listener),
    setLabel: (id, label) => {
      const span = buttons.get(id)?.querySelector(".label");
      if (span) {
        setText(span, label);
      }
    },
  };
}

export interface MenuItem {
  label: Shown;
  action: () => Promise<void> | void;
  danger?: boolean;
  id?: string;
}

/** A small "more actions" menu: a button that shows a list of actions below it. */
export function actionMenu(label: Shown, items: MenuItem[]): HTMLElement {
  const listId = uniqueId("menu");
  const toggle = h(
    "button",
    { class: "btn quiet small icon-only menu-toggle", attrs: { type: "button", "aria-expanded": "false", "aria-controls": listId, "aria-label": label, title: label } },
    icon("more"),
  );
  const list = h("div", { class: "menu-list", attrs: { id: listId } });
  list.hidden = true;
  const wrapper = h("div", { class: "menu" }, toggle, list);
  const setOpen = (open: boolean): void => {
    list.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    if (open) {
      document.addEventListener("click", outside, true);
      list.querySelector<HTMLElement>("button")?.focus();
    } else {
      document.removeEventListener("click", outside, true);
    }
  };
  const outside = (event: Event): void => {
    if (!wrapper.contains(event.target as Node)) {
      setOpen(false);
    }
  };
  toggle.addEventListener("click", () => setOpen(list.hidden === true));
  wrapper.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !list.hidden) {
      event.stopPropagation();
      setOpen(false);
      toggle.focus();
    }
  });
  for (const item of items) {
    list.appendChild(
      button(
        item.label,
        async () => {
          setOpen(false);
          await item.action();
        },
        { kind: item.danger ? "danger-quiet" : "quiet", small: true, attrs: { "data-action": item.id } },
      ),
    );
  }
  return wrapper;
}

/** A field with its label (and an optional hint under it), wired up for assistive technology. */
export function field(label: Shown, control: HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement, hint?: Shown): HTMLElement {
  const id = control.id || uniqueId("field");
  control.id = id;
  let hintElement: HTMLElement | null = null;
  if (hint) {
    const hintId = `${id}-hint`;
    hintElement = h("p", { class: "hint", attrs: { id: hintId } }, hint);
    control.setAttribute("aria-describedby", hintId);
  }
  return h("div", { class: "field" }, h("label", { attrs: { for: id } }, label), control, hintElement);
}

/** A checkbox with its label on the same line (and an optional hint). */
export function checkbox(label: Shown, input: HTMLInputElement, hint?: Shown): HTMLElement {
  input.type = "checkbox";
  const id = input.id || uniqueId("check");
  input.id = id;
  let hintElement: HTMLElement | null = null;
  if (hint) {
    hintElement = h("p", { class: "hint", attrs: { id: `${id}-hint` } }, hint);
    input.setAttribute("aria-describedby", `${id}-hint`);
  }
  return h("div", { class: "check" }, input, h("label", { attrs: { for: id } }, label), hintElement);
}
