// Building blocks shared by the views.
import { subscribeRunChanges } from './changes.js';
import { h, uid } from './dom.js';
import { ApiError } from './api.js';

/** A page-level error: what went wrong and what to do about it. */
export function errorPanel(error, { title = 'Could not load this page', onRetry } = {}) {
  const notFound = error instanceof ApiError && error.status === 404;
  return h('div', { class: 'alert alert-error', role: 'alert' },
    h('h1', { class: 'alert-title' }, notFound ? 'Not found' : title),
    h('p', null, error?.message ?? String(error)),
    notFound
      ? h('p', null, h('a', { href: '/settings/agents/jobs' }, 'Back to Jobs'), ' · ', h('a', { href: '/settings/agents/runs' }, 'Back to Runs'))
      : onRetry && h('p', null, h('button', { type: 'button', class: 'btn btn-small', onclick: onRetry }, 'Try again')));
}

/** An inline message inside a page (role=alert for errors so it is read at once). */
export function inlineAlert(kind, ...content) {
  return h('div', { class: `alert alert-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, content);
}

/**
 * The heading block of a page: breadcrumbs, title (h1), optional subtitle and actions.
 * @param {{ crumbs?: Array<[string, string?]>, title: any, subtitle?: any, actions?: any, badge?: any }} options
 */
export function pageHeader({ crumbs = [], title, subtitle, actions, badge }) {
  return h('div', { class: 'page-header' },
    crumbs.length > 0 && h('nav', { class: 'breadcrumbs', 'aria-label': 'Breadcrumb' },
      h('ol', null, crumbs.map(([label, href], index) => h('li', null,
        href && index < crumbs.length - 1 ? h('a', { href }, label) : h('span', { 'aria-current': index === crumbs.length - 1 ? 'page' : null }, label))))),
    h('div', { class: 'page-header-row' },
      h('div', { class: 'page-heading' },
        h('h1', { class: 'page-title' }, title, badge && h('span', { class: 'title-badge' }, badge)),
        subtitle && h('p', { class: 'page-subtitle' }, subtitle)),
      actions && h('div', { class: 'page-actions' }, actions)));
}

/** A titled card section. */
export function card(title, body, { actions, id, className, flush = false } = {}) {
  const headingId = id ?? uid('card');
  return h('section', { class: ['card', className], 'aria-labelledby': headingId },
    h('div', { class: 'card-header' }, h('h2', { class: 'card-title', id: headingId }, title), actions && h('div', { class: 'card-actions' }, actions)),
    h('div', { class: ['card-body', flush && 'card-body-flush'] }, body));
}

/** A description list from label/value pairs (values may be nodes). */
export function definitionList(entries, className = '') {
  return h('dl', { class: ['deflist', className] },
    entries.filter(Boolean).map(([term, value]) => h('div', { class: 'deflist-row' }, h('dt', null, term), h('dd', null, value))));
}

export function emptyState(title, ...body) {
  return h('div', { class: 'empty-state' }, h('p', { class: 'empty-title' }, title), body.length > 0 && h('p', { class: 'empty-body' }, body));
}

/** A table with a caption for screen readers; rows are `<tr>` nodes. Narrow screens show each row as a card. */
export function dataTable({ caption, columns, rows, className }) {
  return h('div', { class: 'table-wrap' },
    h('table', { class: ['table', className] },
      h('caption', { class: 'visually-hidden' }, caption),
      h('thead', null, h('tr', null, columns.map((column) => h('th', { scope: 'col', class: column.className }, column.label)))),
      h('tbody', null, rows)));
}

/** A table cell that carries its column label for the stacked narrow layout. */
export function cell(label, content, className) {
  return h('td', { 'data-label': label, class: className }, content);
}

/** With the run change feed live, how often a view refreshes anyway (durations, host names). */
const LIVE_BACKSTOP_MS = 15000;
/** The least time between two refreshes the feed asks for: a busy fleet changes runs constantly,
 *  and the feed must never cost more than the 2 s polling it replaces. */
const LIVE_MIN_GAP_MS = 2000;

/**
 * Runs `task` every `intervalMs` while the page is visible, one call at a time; returns `stop`.
 * Errors go to `onError` (the next tick retries); `onSuccess` is called after each good tick.
 * With `runChanges`, the view shows runs: while the run change feed is live (`onFeed(true)`) it
 * refreshes when runs change (at most every 2 s) and otherwise every 15 s only.
 */
export function startPolling(task, intervalMs, { onError, onSuccess, runChanges = false, onFeed } = {}) {
  let timer = null;
  let stopped = false;
  let running = false;
  let again = false;
  let lastStart = 0;
  let feedLive = false;
  const interval = () => (feedLive ? LIVE_BACKSTOP_MS : intervalMs);
  function schedule(delayMs) {
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(tick, delayMs);
  }
  async function tick() {
    timer = null;
    if (stopped) return;
    if (running) { again = true; return; }
    if (!document.hidden) {
      running = true;
      lastStart = Date.now();
      try {
        await task();
        if (!stopped) onSuccess?.();
      } catch (error) {
        if (!stopped && error?.name !== 'AbortError') onError?.(error);
      }
      running = false;
    }
    if (stopped) return;
    if (again) { again = false; schedule(Math.max(0, lastStart + LIVE_MIN_GAP_MS - Date.now())); }
    else schedule(interval());
  }
  const onVisibility = () => {
    if (!document.hidden && timer !== null) { clearTimeout(timer); tick(); }
  };
  document.addEventListener('visibilitychange', onVisibility);
  timer = setTimeout(tick, intervalMs);
  const unsubscribe = runChanges ? subscribeRunChanges({
    changed() {
      if (stopped) return;
      if (running) { again = true; return; }
      schedule(Math.max(0, lastStart + LIVE_MIN_GAP_MS - Date.now()));
    },
    mode(isLive) {
      feedLive = isLive;
      onFeed?.(isLive);
      // Back to polling: the next tick comes after the short interval, not the long backstop.
      if (!isLive && !stopped && !running) schedule(intervalMs);
    },
  }) : null;
  return () => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
    document.removeEventListener('visibilitychange', onVisibility);
    unsubscribe?.();
  };
}

/** "Live · updated 14:03:22" / "Live updates interrupted — retrying": the state of a view's polling.
 *  `data-feed` says how updates come: `changes` (as runs change) or `polling` (every 2 s). */
export function liveIndicator(label = 'Live') {
  const text = h('span', { class: 'live-text' }, `${label} · updates every 2 s`);
  const el = h('span', { class: 'live', dataset: { state: 'ok', feed: 'polling' }, title: 'Refreshed every 2 s' },
    h('span', { class: 'live-dot', 'aria-hidden': 'true' }), text);
  return {
    el,
    feed(isLive) {
      el.dataset.feed = isLive ? 'changes' : 'polling';
      el.title = isLive ? 'Updated as runs change' : 'Refreshed every 2 s';
    },
    ok() {
      el.dataset.state = 'ok';
      text.textContent = `${label} · updated ${new Date().toLocaleTimeString()}`;
    },
    error(error) {
      el.dataset.state = 'error';
      text.textContent = `Live updates interrupted (${error.message}) — retrying`;
    },
    stopped(message) {
      el.dataset.state = 'stopped';
      text.textContent = message;
    },
  };
}

/**
 * A labelled form control with its hint and error slot wired up for assistive technology
 * (`aria-describedby`, `aria-invalid` when an error is shown).
 */
export function field({ id, label, control, hint, optional = false, className }) {
  const hintId = hint ? `${id}-hint` : null;
  const errorId = `${id}-error`;
  control.id = id;
  if (hintId) control.setAttribute('aria-describedby', hintId);
  const error = h('p', { class: 'field-error', id: errorId, hidden: true });
  const wrapper = h('div', { class: ['field', className], dataset: { field: id } },
    h('label', { class: 'label', for: id }, label, optional && h('span', { class: 'optional' }, ' (optional)')),
    control,
    error,
    hint && h('p', { class: 'hint', id: hintId }, hint));
  return {
    el: wrapper,
    control,
    setError(message) {
      if (message) {
        error.textContent = message;
        error.hidden = false;
        control.setAttribute('aria-invalid', 'true');
        control.setAttribute('aria-describedby', [errorId, hintId].filter(Boolean).join(' '));
        wrapper.classList.add('field-invalid');
      } else {
        error.textContent = '';
        error.hidden = true;
        control.removeAttribute('aria-invalid');
        if (hintId) control.setAttribute('aria-describedby', hintId);
        else control.removeAttribute('aria-describedby');
        wrapper.classList.remove('field-invalid');
      }
    },
  };
}

/**
 * The buttons of a paged list: back, the page number, forward. `back` and `forward` are what a
 * click does, or null when there is no page that way (the button is disabled).
 */
export function pagerButtons({ page, back, forward, labels = ['Newer', 'Older'], actions = ['newer', 'older'] }) {
  return [
    h('button', { type: 'button', class: 'btn btn-small', disabled: !back, dataset: { focusKey: actions[0], action: actions[0] }, onclick: back },
      h('span', { 'aria-hidden': 'true' }, '← '), labels[0]),
    h('span', { class: 'pager-label' }, `Page ${page + 1}`),
    h('button', { type: 'button', class: 'btn btn-small', disabled: !forward, dataset: { focusKey: actions[1], action: actions[1] }, onclick: forward },
      labels[1], h('span', { 'aria-hidden': 'true' }, ' →')),
  ];
}
