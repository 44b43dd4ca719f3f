// Display names and formatting of the API's values.
import { h } from './dom.js';

/** The agent types (wire name → display name and kind); mirrors `AgentType` in AgentJobsCore. */
export const AGENT_TYPES = {
  'lineage-plus': { label: 'Lineage+', kind: 'batch', summary: 'Lineage for the listed connector types' },
  'external-monitors': { label: 'External Monitors', kind: 'batch', summary: 'External monitors for the listed connector types' },
  datahealth: { label: 'DataHealth', kind: 'batch', summary: 'Data health checks from one file' },
  'data-source': { label: 'Data Source', kind: 'persistent' },
  sds: { label: 'SDS', kind: 'persistent' },
  'cross-source': { label: 'Cross-Source', kind: 'persistent' },
};

export const BATCH_TYPES = Object.keys(AGENT_TYPES).filter((t) => AGENT_TYPES[t].kind === 'batch');
export const PERSISTENT_TYPES = Object.keys(AGENT_TYPES).filter((t) => AGENT_TYPES[t].kind === 'persistent');

export function agentLabel(type) {
  return AGENT_TYPES[type]?.label ?? type;
}

export const RUN_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'timed_out', 'canceled'];
const STATUS_LABELS = {
  queued: 'Queued', running: 'Running', succeeded: 'Succeeded', failed: 'Failed', timed_out: 'Timed out', canceled: 'Canceled',
};

export function statusLabel(status) {
  return STATUS_LABELS[status] ?? status;
}

export function isActive(status) {
  return status === 'queued' || status === 'running';
}

/** True while a cancel was asked for and the host has not confirmed yet. */
export function isCanceling(run) {
  return Boolean(run && run.cancelRequestedAt && isActive(run.status));
}

/** The status badge of a run ("Canceling…" while a cancel request is pending). */
export function statusBadge(run) {
  if (isCanceling(run)) {
    return h('span', { class: 'badge badge-canceling', dataset: { status: 'canceling' } }, h('span', { class: 'badge-dot', 'aria-hidden': 'true' }), 'Canceling…');
  }
  return h('span', { class: `badge badge-${run.status}`, dataset: { status: run.status } },
    h('span', { class: 'badge-dot', 'aria-hidden': 'true' }), statusLabel(run.status));
}

/** The attempt of a run in its retry chain (1 for a first run), and the most the chain may have. */
export function runAttempt(run) {
  return { attempt: run.attempt ?? 1, maxAttempts: run.maxAttempts ?? run.retryPolicy?.maxAttempts ?? 1 };
}

/** A small "attempt 2/3" marker for a retry (null for a first attempt), for lists of runs. */
export function attemptMarker(run) {
  const { attempt, maxAttempts } = runAttempt(run);
  if (attempt <= 1) return null;
  return h('span', { class: 'chip chip-muted', title: `Retry: attempt ${attempt} of ${maxAttempts}` },
    h('span', { 'aria-hidden': 'true' }, `attempt ${attempt}/${maxAttempts}`), h('span', { class: 'visually-hidden' }, `attempt ${attempt} of ${maxAttempts}`));
}

const TRIGGER_LABELS = { manual: 'Manual', schedule: 'Schedule', api: 'API', rerun: 'Run again' };
export function triggerLabel(trigger) {
  return TRIGGER_LABELS[trigger] ?? trigger;
}

/** Who asked for a run or its cancel (`triggeredBy`, `cancelRequestedBy`), in words; its id as a tooltip. */
export function requesterLabel(requester) {
  if (!requester) return null;
  if (requester.kind === 'schedule') return 'The job\u2019s schedule';
  const what = requester.kind === 'token' ? 'API token' : requester.kind === 'host' ? 'Host' : requester.kind;
  return h('span', { title: requester.id ?? null }, `${what} `, h('strong', null, requester.name ?? requester.id ?? 'unknown'));
}

const dateTime = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dateTimeWithYear = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
const fullDate = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'long' });

/** A compact local date-time ("Mar 5, 14:03:22"; with the year when it is not this year). */
export function formatDateTime(iso) {
  if (!iso) return '—';
  const date = new Date(iso);
  return (date.getFullYear() === new Date().getFullYear() ? dateTime : dateTimeWithYear).format(date);
}

/** A date-time in a given IANA time zone, with the zone's short name. */
export function formatInZone(iso, timeZone) {
  try {
    return new Intl.DateTimeFormat(undefined, {
      weekday: 'short', year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', timeZone, timeZoneName: 'short',
    }).format(new Date(iso));
  } catch {
    return formatDateTime(iso);
  }
}

const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
/** "3 minutes ago", "in 2 hours". */
export function relativeTime(iso, now = Date.now()) {
  if (!iso) return '';
  const seconds = Math.round((new Date(iso).getTime() - now) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 5) return 'just now';
  if (abs < 60) return relativeFormat.format(seconds, 'second');
  if (abs < 3600) return relativeFormat.format(Math.round(seconds / 60), 'minute');
  if (abs < 86400) return relativeFormat.format(Math.round(seconds / 3600), 'hour');
  return relativeFormat.format(Math.round(seconds / 86400), 'day');
}

/** A `<time>` element showing the compact local time, with the full date as its title. */
export function timeEl(iso, { relative = false } = {}) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const date = new Date(iso);
  return h('time', { datetime: iso, title: fullDate.format(date) }, relative ? relativeTime(iso) : formatDateTime(iso));
}

/** "350 ms", "4.2 s", "3 min 05 s", "2 h 04 min". */
export function formatDuration(ms) {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1000) return `${ms} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${String(Math.floor(seconds % 60)).padStart(2, '0')} s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${String(minutes % 60).padStart(2, '0')} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** "1 hour", "10 minutes", "45 seconds" for a timeout in seconds. */
export function formatSeconds(seconds) {
  if (seconds % 86400 === 0) return plural(seconds / 86400, 'day');
  if (seconds % 3600 === 0) return plural(seconds / 3600, 'hour');
  if (seconds % 60 === 0) return plural(seconds / 60, 'minute');
  return plural(seconds, 'second');
}

/** The waits before attempts 2…maxAttempts of a retry policy, in whole seconds (as `RetryPolicy.delaySeconds` computes them). */
export function retryDelays(policy) {
  const delays = [];
  for (let attempt = 2; attempt <= policy.maxAttempts; attempt += 1) {
    const grown = policy.initialDelaySeconds * policy.backoffFactor ** (attempt - 2);
    delays.push(grown >= policy.maxDelaySeconds ? policy.maxDelaySeconds : Math.round(grown));
  }
  return delays;
}

/** A retry delay in words ("no delay" for 0, which `formatSeconds` would call "0 days"). */
export function formatDelay(seconds) {
  return seconds === 0 ? 'no delay' : formatSeconds(seconds);
}

/** "Up to 3 attempts, 1 minute then ×2 (max 1 hour), on failed, timed out"; "None" without a policy. */
export function retrySummary(policy) {
  if (!policy) return 'None';
  const delays = retryDelays(policy);
  const grows = delays.some((delay) => delay !== delays[0]);
  const wait = delays[0] === 0 && !grows ? 'retried at once'
    : grows ? `${formatDelay(delays[0])} then ×${policy.backoffFactor} (max ${formatDelay(policy.maxDelaySeconds)})`
      : delays.length === 1 ? `${formatDelay(delays[0])} before the retry` : `${formatDelay(delays[0])} apart`;
  return `Up to ${policy.maxAttempts} attempts, ${wait}, on ${policy.on.map((status) => statusLabel(status).toLowerCase()).join(', ')}`;
}

export function plural(count, noun, nouns = `${noun}s`) {
  return `${count} ${count === 1 ? noun : nouns}`;
}

/** The run's duration so far: final duration, or elapsed time while running. */
export function runDuration(run, now = Date.now()) {
  if (run.durationMs !== null && run.durationMs !== undefined) return formatDuration(run.durationMs);
  if (run.status === 'running' && run.startedAt) return `${formatDuration(now - new Date(run.startedAt).getTime())} so far`;
  return '—';
}

/** The parameters of a job or run as label/value rows (literal values in monospace). */
export function parameterRows(parameters) {
  if (!parameters) return [];
  const rows = [];
  const literal = (text) => h('span', { class: 'mono' }, text);
  if (Array.isArray(parameters.connectorTypes)) {
    rows.push(['Connector types', literal(parameters.connectorTypes.join(', '))]);
    rows.push(['Connection', parameters.connectionName ? literal(parameters.connectionName) : h('span', { class: 'muted' }, 'All connections')]);
  }
  if (parameters.fileName !== undefined) rows.push(['File name', literal(parameters.fileName)]);
  return rows;
}

/**
 * A schedule description as the preview endpoint gives it ("every day at 02:30 (Europe/Berlin)"),
 * capitalised, with the time zone added when the description does not name it.
 */
export function scheduleDescription(description, timezone) {
  if (!description) return null;
  const text = description.charAt(0).toUpperCase() + description.slice(1);
  return timezone && !text.includes(timezone) ? `${text} (${timezone})` : text;
}

/** A short id for tables ("run_k3v9…bc"), with the full id kept for copying and screen readers. */
export function shortId(id) {
  if (!id || id.length <= 14) return id ?? '';
  return `${id.slice(0, 9)}…${id.slice(-4)}`;
}
