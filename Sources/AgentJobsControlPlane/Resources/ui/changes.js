// The run change feed: one long poll per tab on GET /api/v1/runs/changes, shared by the views that
// show runs. A poll waits until runs change (any run, on any replica), then the views fetch what
// they show again. When the feed is not live (an older server, a database outage, a shutdown, a
// network error) the views go back to polling every 2 s, and the feed tries again later.

import { api } from './api.js';

const WAIT_SECONDS = 25;
/** The least time between two polls: on a busy fleet runs change all the time, and each answer
 *  would otherwise be followed at once by the next request (the feed never costs more requests
 *  than the 2 s polling it replaces). */
const MIN_POLL_GAP_MS = 2000;
/** How long the feed stays away after it was refused or failed: 2 s, doubling up to 30 s. */
const RETRY_MS = [2000, 4000, 8000, 16000, 30000];

const subscribers = new Set();
let token = null;
/** When `token` was received (`performance.now()`, a clock that never jumps): its age goes with the
 *  next poll, so that another replica behind the load balancer can take it as current. */
let tokenAt = 0;
let live = false;
let failures = 0;
let controller = null;
let retryTimer = null;

function setLive(value) {
  if (live === value) return;
  live = value;
  for (const subscriber of subscribers) subscriber.mode(live);
}

function retryLater() {
  setLive(false);
  const delay = RETRY_MS[Math.min(failures, RETRY_MS.length - 1)];
  failures += 1;
  retryTimer = setTimeout(() => { retryTimer = null; loop(); }, delay);
}

async function loop() {
  if (controller || retryTimer || subscribers.size === 0 || document.hidden) return;
  controller = new AbortController();
  const signal = controller.signal;
  try {
    for (;;) {
      const started = Date.now();
      const tokenAgeMs = token === null ? null : Math.max(0, Math.round(performance.now() - tokenAt));
      const answer = await api('GET', '/runs/changes', { query: { after: token, tokenAgeMs, waitSeconds: WAIT_SECONDS }, signal });
      if (signal.aborted) return;
      const first = token === null;
      token = answer.token;
      tokenAt = performance.now();
      if (!answer.live) { controller = null; retryLater(); return; }
      failures = 0;
      setLive(true);
      if (answer.changed && !first) for (const subscriber of subscribers) subscriber.changed();
      const gap = started + MIN_POLL_GAP_MS - Date.now();
      if (gap > 0) await new Promise((resolve) => { setTimeout(resolve, gap); });
      if (signal.aborted) return;
    }
  } catch (error) {
    if (signal.aborted || error?.name === 'AbortError') return;
    controller = null;
    retryLater();
  } finally {
    if (controller?.signal === signal) controller = null;
  }
}

function stop() {
  controller?.abort();
  controller = null;
  if (retryTimer !== null) { clearTimeout(retryTimer); retryTimer = null; }
}

// A hidden tab waits on nothing; shown again, its first poll (with the token it had) answers at
// once when runs changed meanwhile.
document.addEventListener('visibilitychange', () => {
  if (document.hidden) stop();
  else loop();
});

/**
 * Calls `changed()` when runs change, and `mode(live)` when the feed becomes live or stops being
 * live (the view then polls on its own). Returns `unsubscribe`.
 */
export function subscribeRunChanges({ changed, mode }) {
  const subscriber = { changed, mode };
  subscribers.add(subscriber);
  if (live) mode(true);
  loop();
  return () => {
    subscribers.delete(subscriber);
    if (subscribers.size === 0) { stop(); setLive(false); }
  };
}
