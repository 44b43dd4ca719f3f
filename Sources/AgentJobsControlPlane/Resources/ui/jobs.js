// Settings → Agents → Jobs: every job with its schedule and last run, "Create job" and per-row "Run now";
// search by name and filters by agent type, host and last status, kept in the URL.
import { api, hosts as loadHosts, hostName, schedulePreview } from './api.js';
import { h, patch } from './dom.js';
import { BATCH_TYPES, RUN_STATUSES, agentLabel, statusBadge, statusLabel, timeEl, plural, relativeTime, scheduleDescription } from './format.js';
import { cell, dataTable, emptyState, inlineAlert, liveIndicator, pageHeader, startPolling } from './components.js';
import { jobPath, runNow, runNowBlockedReason, runPath } from './actions.js';

const FILTERS = ['q', 'agentType', 'hostId', 'lastStatus'];

/** Whether `job` passes the filters; `lastStatus` 'never' matches jobs that have not run. */
function matches(job, filters) {
  if (filters.q && !job.name.toLowerCase().includes(filters.q.toLowerCase())) return false;
  if (filters.agentType && job.agentType !== filters.agentType) return false;
  if (filters.hostId && job.hostId !== filters.hostId) return false;
  if (filters.lastStatus === 'never') return !job.lastRun;
  if (filters.lastStatus && job.lastRun?.status !== filters.lastStatus) return false;
  return true;
}

export async function jobsView(ctx) {
  ctx.setTitle('Jobs');
  const filters = Object.fromEntries(FILTERS.map((name) => [name, ctx.query.get(name) ?? '']));
  let [{ jobs }, hostList] = await Promise.all([api('GET', '/jobs'), loadHosts()]);
  if (ctx.stale) return;
  /** Per-job messages (a refused Run now), kept across refreshes until the next action. */
  const messages = new Map();
  const busy = new Set();
  const subtitle = h('p', { class: 'page-subtitle' });
  const live = liveIndicator('Live');
  const body = h('div', { class: 'jobs-body' });
  const summary = h('p', { class: 'results-summary', id: 'jobs-summary', 'aria-live': 'polite' });

  /** Filters change the URL in place (no reload, focus stays in the search box) and redraw. */
  function setFilter(name, value) {
    filters[name] = value;
    const params = new URLSearchParams();
    for (const key of FILTERS) if (filters[key]) params.set(key, filters[key]);
    const text = params.toString();
    history.replaceState(history.state, '', `/settings/agents/jobs${text ? `?${text}` : ''}`);
    clear.hidden = !FILTERS.some((key) => filters[key]);
    draw();
  }
  const search = h('input', {
    id: 'filter-q', type: 'search', class: 'input', name: 'q', value: filters.q, placeholder: 'Name contains…', autocomplete: 'off',
    oninput: (event) => setFilter('q', event.target.value.trim()),
    onchange: (event) => setFilter('q', event.target.value.trim()),
  });
  const select = (name, label, options) => h('div', { class: 'filter' },
    h('label', { class: 'label', for: `filter-${name}` }, label),
    h('select', { id: `filter-${name}`, name, class: 'select', value: filters[name], onchange: (event) => setFilter(name, event.target.value) },
      h('option', { value: '' }, 'All'), options.map(([value, text]) => h('option', { value }, text))));
  const clear = h('div', { class: 'filter filter-clear', hidden: !FILTERS.some((key) => filters[key]) },
    h('a', { href: '/settings/agents/jobs', class: 'btn btn-ghost btn-small', dataset: { action: 'clear-filters' } }, 'Clear filters'));
  const filterBar = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter jobs', onsubmit: (event) => event.preventDefault() },
    h('div', { class: 'filter filter-search' }, h('label', { class: 'label', for: 'filter-q' }, 'Search'), search),
    select('agentType', 'Agent type', BATCH_TYPES.map((type) => [type, agentLabel(type)])),
    select('hostId', 'Host', hostList.map((host) => [host.id, host.name])),
    select('lastStatus', 'Last run', [...RUN_STATUSES.map((status) => [status, statusLabel(status)]), ['never', 'Never run']]),
    clear);

  const header = pageHeader({
    title: 'Jobs',
    subtitle: [subtitle, live.el],
    actions: h('a', { class: 'btn btn-primary', href: '/settings/agents/jobs/new' }, h('span', { 'aria-hidden': 'true' }, '+ '), 'Create job'),
  });
  ctx.content.replaceChildren(header, filterBar, summary, body);

  async function onRunNow(job) {
    busy.add(job.id);
    messages.delete(job.id);
    draw();
    const result = await runNow(job);
    busy.delete(job.id);
    if (!result.ok) messages.set(job.id, result.message);
    await refresh();
  }

  function draw() {
    subtitle.textContent = jobs.length === 0 ? 'No jobs yet.' : `${plural(jobs.length, 'job')} · ${jobs.filter((j) => j.schedule && !j.schedule.paused).length} scheduled`;
    const shown = jobs.filter((job) => matches(job, filters));
    const filtered = FILTERS.some((key) => filters[key]);
    // A live region: written only when the words change, so a refresh does not repeat them.
    const words = filtered && jobs.length > 0 ? `Showing ${shown.length} of ${plural(jobs.length, 'job')}.` : '';
    if (summary.textContent !== words) summary.textContent = words;
    const signature = JSON.stringify([shown, hostList.map((x) => [x.id, x.name]), [...messages.keys()], [...busy], scheduleRevision, filtered]);
    patch(body, signature, () => (shown.length === 0
      ? (jobs.length === 0
        ? emptyState('No jobs yet', 'A job runs a batch agent (Lineage+, External Monitors or DataHealth) on a host, now or on a schedule. ',
          h('a', { href: '/settings/agents/jobs/new' }, 'Create the first job'), '.')
        : emptyState('No jobs match these filters', h('a', { href: '/settings/agents/jobs' }, 'Clear the filters'), ' to see all jobs.'))
      : dataTable({
        caption: 'Jobs',
        className: 'table-jobs',
        columns: [{ label: 'Job' }, { label: 'Agent type' }, { label: 'Host' }, { label: 'Schedule' }, { label: 'Last run' }, { label: 'Actions', className: 'col-actions' }],
        rows: shown.flatMap((job) => jobRows(job)),
      })));
  }

  function jobRows(job) {
    const blocked = runNowBlockedReason(job);
    const reasonId = `run-now-reason-${job.id}`;
    const button = h('button', {
      type: 'button', class: 'btn btn-small', disabled: Boolean(blocked) || busy.has(job.id),
      'aria-describedby': blocked ? reasonId : null, dataset: { focusKey: `run-now-${job.id}`, action: 'run-now', jobId: job.id },
      onclick: () => onRunNow(job),
    }, busy.has(job.id) ? 'Starting…' : 'Run now');
    const rows = [h('tr', { dataset: { jobId: job.id } },
      cell('Job', h('div', { class: 'stack' }, h('a', { href: jobPath(job.id), class: 'strong-link' }, job.name), h('span', { class: 'mono muted small' }, job.id))),
      cell('Agent type', agentLabel(job.agentType)),
      cell('Host', hostName(hostList, job.hostId)),
      cell('Schedule', scheduleCell(job)),
      cell('Last run', job.lastRun
        ? h('div', { class: 'stack' }, h('a', { href: runPath(job.lastRun.id), class: 'badge-link', 'aria-label': `Last run: ${job.lastRun.status}, view run` }, statusBadge(job.lastRun)),
          h('span', { class: 'muted small' }, timeEl(job.lastRun.finishedAt ?? job.lastRun.queuedAt, { relative: true })))
        : h('span', { class: 'muted' }, 'Never run')),
      cell('Actions', h('div', { class: 'row-actions' }, button, blocked && h('span', { class: 'reason', id: reasonId }, blocked)), 'col-actions'))];
    if (messages.has(job.id)) {
      rows.push(h('tr', { class: 'row-message' }, h('td', { colspan: 6 }, inlineAlert('warning', messages.get(job.id)))));
    }
    return rows;
  }

  // Schedules are described by the preview endpoint; descriptions arrive after the first draw.
  const descriptions = new Map();
  let scheduleRevision = 0;
  function scheduleCell(job) {
    const schedule = job.schedule;
    if (!schedule) return h('span', { class: 'muted' }, 'Manual only');
    const preview = descriptions.get(`${schedule.cron}\u0000${schedule.timezone}`);
    const next = job.nextFireAt ?? (schedule.paused ? null : preview?.nextFireTimes?.[0]);
    return h('div', { class: 'stack' },
      preview ? h('span', null, scheduleDescription(preview.description, schedule.timezone)) : h('span', null, h('code', null, schedule.cron), h('span', { class: 'muted small' }, ` · ${schedule.timezone}`)),
      schedule.paused
        ? h('span', { class: 'chip chip-warning' }, 'Paused')
        : next && h('span', { class: 'muted small' }, 'Next ', h('time', { datetime: next, title: new Date(next).toString() }, relativeTime(next))));
  }
  async function describeSchedules() {
    const pending = jobs.filter((job) => job.schedule && !descriptions.has(`${job.schedule.cron}\u0000${job.schedule.timezone}`));
    await Promise.all(pending.map(async (job) => {
      try {
        descriptions.set(`${job.schedule.cron}\u0000${job.schedule.timezone}`, await schedulePreview(job.schedule.cron, job.schedule.timezone, 1));
        scheduleRevision += 1;
      } catch { /* the cron expression stays visible as written */ }
    }));
  }

  async function refresh() {
    [{ jobs }, hostList] = await Promise.all([api('GET', '/jobs'), loadHosts()]);
    if (ctx.stale) return;
    await describeSchedules();
    draw();
  }

  draw();
  describeSchedules().then(() => { if (!ctx.stale) draw(); });
  // Run-now availability and last-run badges follow the runs without a reload.
  return startPolling(refresh, 2000, { onError: (error) => live.error(error), onSuccess: () => live.ok() });
}
