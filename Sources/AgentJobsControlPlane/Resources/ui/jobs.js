// Settings → Agents → Jobs: every job with its schedule and last run, "Create job" and per-row "Run now";
// search by name and filters by agent type, host and last status, kept in the URL and applied by the
// API (`GET /api/v1/jobs?q=&agentType=&hostId=&lastStatus=`), 50 jobs a page.
import { api, hosts as loadHosts, hostName, schedulePreview } from './api.js';
import { h, patch } from './dom.js';
import { BATCH_TYPES, RUN_STATUSES, agentLabel, statusBadge, statusLabel, timeEl, plural, relativeTime, scheduleDescription } from './format.js';
import { cell, dataTable, emptyState, inlineAlert, liveIndicator, pageHeader, pagerButtons, startPolling } from './components.js';
import { jobPath, runNow, runNowBlockedReason, runPath } from './actions.js';

const FILTERS = ['q', 'agentType', 'hostId', 'lastStatus'];
const PAGE_SIZE = 50;
/** Typing in the search box asks the API once the typing pauses this long. */
const SEARCH_DELAY_MS = 250;

export async function jobsView(ctx) {
  ctx.setTitle('Jobs');
  const filters = Object.fromEntries(FILTERS.map((name) => [name, ctx.query.get(name) ?? '']));
  let cursor = ctx.query.get('cursor') ?? '';
  let pageIndex = Number(history.state?.page ?? (cursor ? 1 : 0));
  const filtered = () => FILTERS.some((key) => filters[key]);
  const query = () => ({ ...Object.fromEntries(FILTERS.filter((key) => filters[key]).map((key) => [key, filters[key]])), cursor, limit: PAGE_SIZE });
  /** The page shown, and the number of jobs with no filter (for "Showing 1 of 3 jobs"), asked for
   *  again only when the filters change (a poll asks for the page alone). */
  let allKnown = false;
  async function load() {
    const [page, unfiltered] = await Promise.all([
      api('GET', '/jobs', { query: query() }),
      filtered() && !allKnown ? api('GET', '/jobs', { query: { limit: 1 } }).then((answer) => answer.total) : Promise.resolve(null),
    ]);
    const known = filtered() ? (unfiltered ?? all) : page.total;
    allKnown = filtered();
    return { page, all: known };
  }
  let [{ page, all }, hostList] = await Promise.all([load(), loadHosts()]);
  let jobs = page.jobs;
  /** The hosts listed, with those of the jobs shown and of the filter (a big fleet is not listed whole). */
  const hostIds = () => [filters.hostId, ...jobs.map((job) => job.hostId)].filter(Boolean);
  const withShownHosts = (list) => (hostIds().every((id) => list.some((host) => host.id === id)) ? list : loadHosts({ ids: hostIds() }));
  hostList = await withShownHosts(hostList);
  if (ctx.stale) return;
  /** Per-job messages (a refused Run now), kept across refreshes until the next action. */
  const messages = new Map();
  const busy = new Set();
  const subtitle = h('p', { class: 'page-subtitle' });
  const live = liveIndicator('Live');
  const body = h('div', { class: 'jobs-body' });
  const summary = h('p', { class: 'results-summary', id: 'jobs-summary', 'aria-live': 'polite' });

  /** The URL of this view with these filters (and a cursor when paging). */
  function urlFor(nextCursor = '') {
    const params = new URLSearchParams();
    for (const key of FILTERS) if (filters[key]) params.set(key, filters[key]);
    if (nextCursor) params.set('cursor', nextCursor);
    const text = params.toString();
    return `/settings/agents/jobs${text ? `?${text}` : ''}`;
  }
  /** Filters change the URL in place (no reload, focus stays in the search box), start again at the
   *  newest jobs, and ask the API (typing waits for a pause first). */
  let searchTimer = null;
  function setFilter(name, value, { delay = 0 } = {}) {
    if (filters[name] === value) return;
    filters[name] = value;
    serial += 1; // an answer already on its way is for the old filters
    allKnown = false;
    cursor = '';
    pageIndex = 0;
    history.replaceState(null, '', urlFor());
    clear.hidden = !filtered();
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { refresh().catch((error) => live.error(error)); }, delay);
  }
  const search = h('input', {
    id: 'filter-q', type: 'search', class: 'input', name: 'q', value: filters.q, placeholder: 'Name contains…', autocomplete: 'off',
    oninput: (event) => setFilter('q', event.target.value.trim(), { delay: SEARCH_DELAY_MS }),
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
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of jobs' });
  ctx.content.replaceChildren(header, filterBar, summary, body, pager);

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
    subtitle.textContent = all === 0 ? 'No jobs yet.' : plural(all, 'job');
    const shown = jobs;
    const isFiltered = filtered();
    // A live region: written only when the words change, so a refresh does not repeat them.
    const words = isFiltered && all > 0 ? `Showing ${page.total} of ${plural(all, 'job')}${pageIndex > 0 ? `, page ${pageIndex + 1}` : ''}.` : '';
    if (summary.textContent !== words) summary.textContent = words;
    const signature = JSON.stringify([shown, hostList.map((x) => [x.id, x.name]), [...messages.keys()], [...busy], scheduleRevision, isFiltered]);
    patch(pager, JSON.stringify([page.nextCursor, cursor, pageIndex]), () => (!page.nextCursor && !cursor ? [] : pagerButtons({
      page: pageIndex,
      back: cursor ? () => { if (pageIndex > 0 && history.state?.page) history.back(); else ctx.navigate(urlFor()); } : null,
      forward: page.nextCursor ? () => ctx.navigate(urlFor(page.nextCursor), { state: { page: pageIndex + 1 } }) : null,
    })));
    patch(body, signature, () => (shown.length === 0
      ? (all === 0
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

  let serial = 0;
  async function refresh() {
    const mine = ++serial;
    const [loaded, hosts] = await Promise.all([load(), loadHosts()]);
    // An answer overtaken by a later filter change is dropped.
    if (ctx.stale || mine !== serial) return;
    ({ page, all } = loaded);
    jobs = page.jobs;
    hostList = await withShownHosts(hosts);
    if (ctx.stale || mine !== serial) return;
    await describeSchedules();
    draw();
  }

  draw();
  describeSchedules().then(() => { if (!ctx.stale) draw(); });
  // Run-now availability and last-run badges follow the runs without a reload.
  const stopPolling = startPolling(refresh, 2000, {
    onError: (error) => live.error(error), onSuccess: () => live.ok(), runChanges: true, onFeed: (isLive) => live.feed(isLive),
  });
  return () => { clearTimeout(searchTimer); stopPolling(); };
}
