// Small DOM helpers. Every piece of data reaches the page as text nodes or attribute values, never as
// HTML, so names, parameters and error summaries from the API cannot inject markup.

/**
 * Creates an element.
 * @param {string} tag
 * @param {Record<string, any>} [props] attributes; `class`, `text`, `dataset`, `on<event>` handlers,
 *   `value`/`checked`/`selected` (set as properties); `true` sets an empty attribute, null/false skip it.
 * @param {...any} children strings, nodes, arrays of them; null/false/undefined are skipped.
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  let value;
  for (const [key, v] of Object.entries(props ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    if (key === 'class') el.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
    else if (key === 'text') el.textContent = String(v);
    else if (key === 'dataset') Object.assign(el.dataset, v);
    else if (key.startsWith('on') && typeof v === 'function') el.addEventListener(key.slice(2).toLowerCase(), v);
    else if (key === 'value') value = v;
    else if (key === 'checked' || key === 'selected') el[key] = Boolean(v);
    else if (v === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(v));
  }
  append(el, children);
  // A select's value can only be set once its options exist.
  if (value !== undefined) el.value = value;
  return el;
}

/** Appends children (strings, nodes, nested arrays; skips null/false). */
export function append(parent, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false || child === true) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replaces all children of `parent`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

let idCounter = 0;
/** A document-unique id with a readable prefix. */
export function uid(prefix = 'id') {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/**
 * Re-renders `container` only when `signature` differs from the last render, keeping keyboard focus:
 * an element with `data-focus-key` that had focus gets it back in the new content. Used by views that
 * poll, so a refresh every two seconds does not yank focus or re-read content to screen readers.
 */
export function patch(container, signature, build) {
  if (container.dataset.signature === signature) return false;
  const active = document.activeElement;
  const focusKey = active && container.contains(active) ? active.dataset.focusKey : undefined;
  replace(container, build());
  container.dataset.signature = signature;
  if (focusKey) {
    const again = container.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`);
    if (again && !again.disabled) again.focus();
  }
  return true;
}

/** Says `message` to screen readers (polite live region). */
export function announce(message) {
  const region = document.getElementById('announcer');
  if (!region) return;
  region.textContent = '';
  // A fresh text node after a tick makes screen readers repeat an identical message.
  setTimeout(() => { region.textContent = message; }, 30);
}

/**
 * Shows a short notification (also announced politely).
 * @param {string | Node | Array<string | Node>} message
 * @param {'success' | 'info' | 'error'} [kind]
 */
export function toast(message, kind = 'success') {
  const host = document.getElementById('toasts');
  if (!host) return;
  const close = h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss notification' }, '×');
  const item = h('div', { class: `toast toast-${kind}` }, h('div', { class: 'toast-body' }, message), close);
  const remove = () => item.remove();
  close.addEventListener('click', remove);
  host.append(item);
  setTimeout(remove, kind === 'error' ? 12000 : 6000);
}

/**
 * Asks for confirmation in a modal dialog (native `<dialog>`: focus stays inside, Esc cancels).
 * @returns {Promise<boolean>}
 */
export function confirmDialog({ title, body, confirmLabel, danger = false }) {
  return new Promise((resolve) => {
    const titleId = uid('dialog-title');
    const bodyId = uid('dialog-body');
    const cancel = h('button', { type: 'button', class: 'btn', value: 'cancel' }, 'Keep it');
    const confirm = h('button', { type: 'button', class: danger ? 'btn btn-danger' : 'btn btn-primary' }, confirmLabel);
    const dialog = h('dialog', { class: 'dialog', 'aria-labelledby': titleId, 'aria-describedby': bodyId },
      h('h2', { id: titleId, class: 'dialog-title' }, title),
      h('div', { id: bodyId, class: 'dialog-body' }, body),
      h('div', { class: 'dialog-actions' }, cancel, confirm));
    let answer = false;
    cancel.addEventListener('click', () => dialog.close());
    confirm.addEventListener('click', () => { answer = true; dialog.close(); });
    dialog.addEventListener('close', () => { dialog.remove(); resolve(answer); });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

/**
 * A copy-to-clipboard button for `text`. Its accessible name includes the text unless `secret`:
 * a secret is not read aloud whenever the button gets focus.
 */
export function copyButton(text, label = 'Copy', { secret = false } = {}) {
  const button = h('button', { type: 'button', class: 'btn btn-small btn-ghost copy-btn', 'aria-label': secret ? label : `${label}: ${text}` }, 'Copy');
  button.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = 'Copied';
      announce('Copied to the clipboard');
    } catch {
      button.textContent = 'Select and copy';
    }
    setTimeout(() => { button.textContent = 'Copy'; }, 2000);
  });
  return button;
}
