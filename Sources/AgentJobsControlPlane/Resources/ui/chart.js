// A job's recent runs as an inline SVG bar chart: one bar per run, oldest on the left, its height the
// run's duration and its colour the outcome. No library; the numbers are also in the text summary.
import { h } from './dom.js';
import { formatDuration, plural, shortId, statusLabel } from './format.js';

const SVG = 'http://www.w3.org/2000/svg';
const WIDTH = 640;
const HEIGHT = 150;
const TOP = 16;
const BOTTOM = 20;
const LEFT = 4;

function svg(tag, attributes, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes ?? {})) el.setAttribute(key, String(value));
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Milliseconds a run took (or has taken so far); null when it never started. */
function durationOf(run, now) {
  if (run.durationMs !== null && run.durationMs !== undefined) return run.durationMs;
  if (run.status === 'running' && run.startedAt) return Math.max(0, now - new Date(run.startedAt).getTime());
  return null;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/**
 * The chart of `runs` (newest first, as the API lists them).
 * @returns {HTMLElement} a figure with the SVG, a legend and a one-line summary for everyone
 */
export function durationChart(runs, now = Date.now()) {
  const ordered = [...runs].reverse();
  const durations = ordered.map((run) => durationOf(run, now));
  const known = durations.filter((value) => value !== null);
  const longest = Math.max(1, ...known);
  const counts = {};
  for (const run of ordered) counts[run.status] = (counts[run.status] ?? 0) + 1;
  const outcome = Object.entries(counts).map(([status, count]) => `${count} ${statusLabel(status).toLowerCase()}`).join(', ');
  const summary = known.length === 0
    ? `${plural(ordered.length, 'recent run')}: ${outcome}; none has started yet.`
    : `${plural(ordered.length, 'recent run')}: ${outcome}. Median duration ${formatDuration(median(known))}, longest ${formatDuration(Math.max(...known))}.`;

  // At least 10 slots, filled from the right: the newest run always sits next to "newer".
  const slots = Math.max(ordered.length, 10);
  const slot = (WIDTH - LEFT) / slots;
  const barWidth = Math.max(4, Math.min(36, slot * 0.7));
  const plotHeight = HEIGHT - TOP - BOTTOM;
  const bars = ordered.map((run, index) => {
    const duration = durations[index];
    // A run that never started gets a stub, so its outcome (often a timeout in the queue) still shows.
    const height = duration === null ? 3 : Math.max(3, (duration / longest) * plotHeight);
    const x = LEFT + (slots - ordered.length + index) * slot + (slot - barWidth) / 2;
    const label = `Run ${shortId(run.id)} · ${statusLabel(run.status)} · ${duration === null ? 'never started' : formatDuration(duration)}`;
    return svg('rect', {
      class: `bar bar-${run.status}`, x: x.toFixed(1), y: (TOP + plotHeight - height).toFixed(1), width: barWidth.toFixed(1), height: height.toFixed(1), rx: 2,
      'data-run-id': run.id, 'data-status': run.status,
    }, svg('title', null, label));
  });
  const chart = svg('svg', { class: 'duration-chart', viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: 'img', 'aria-label': `Durations of recent runs. ${summary}` },
    svg('line', { class: 'axis', x1: 0, x2: WIDTH, y1: TOP + plotHeight + 0.5, y2: TOP + plotHeight + 0.5 }),
    svg('text', { x: LEFT, y: 11 }, `longest ${formatDuration(longest)}`),
    svg('text', { x: LEFT, y: HEIGHT - 5 }, 'older'),
    svg('text', { x: WIDTH - 4, y: HEIGHT - 5, 'text-anchor': 'end' }, 'newer'),
    bars);
  const legend = h('div', { class: 'chart-legend', 'aria-hidden': 'true' },
    [['succeeded', 'Succeeded'], ['failed', 'Failed or timed out'], ['canceled', 'Canceled, queued or running']].map(([status, text]) =>
      h('span', null, h('span', { class: `legend-swatch swatch-${status}` }), text)));
  return h('figure', { class: 'chart', dataset: { chart: 'durations' } }, chart, legend, h('figcaption', { class: 'muted small' }, summary));
}
