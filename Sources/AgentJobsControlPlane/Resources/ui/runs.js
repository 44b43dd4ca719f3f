// Settings → Agents → Runs: every run, newest first; filters live in the URL, pages follow the API's
// cursor, and the page refreshes itself every 2 seconds.
import { api, hosts as loadHosts, hostName } from './api.js';
import { h, patch, announce } from './dom.js';
import { BATCH_TYPES, RUN_STATUSES, agentLabel, attemptMarker, formatDateTime, isActive, isCanceling, runDuration, shortId, statusBadge, statusLabel, timeEl, triggerLabel, plural } from './format.js';
import { cell, dataTable, emptyState, inlineAlert, liveIndicator, pageHeader, pagerButtons, startPolling } from './components.js';
import { cancelRun, jobPath, runPath } from './actions.js';

const PAGE_SIZE = 25;
const FILTERS = ['hostId', 'agentType', 'status', 'jobId', 'since', 'until'];

/** An instant (RFC 3339) as the value of a datetime-local input, in the browser's time zone. */
function localInputValue(iso) {
  const date = new Date(iso);
  if (!iso || Number.isNaN(date.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

export async function runsView(ctx) {
  ctx.setTitle('Runs');
  const filters = Object.fromEntries(FILTERS.map((name) => [name, ctx.query.get(name) ?? '']));
  // A hand-edited link with a time that is not one, or a range that ends before it starts, would
  // make the API refuse the whole listing: such a bound is left out.
  // A bound the browser can read is normalised to the API's form (UTC RFC 3339); others are dropped.
  for (const name of ['since', 'until']) {
    if (!filters[name]) continue;
    const time = Date.parse(filters[name]);
    filters[name] = Number.isNaN(time) ? '' : new Date(time).toISOString();
  }
  if (filters.since && filters.until && Date.parse(filters.until) <= Date.parse(filters.since)) filters.until = '';
  const cursor = ctx.query.get('cursor') ?? '';
  const pageIndex = Number(history.state?.page ?? (cursor ? 1 : 0));
  const query = () => ({ ...filters, cursor, limit: PAGE_SIZE });

  let [page, hostList] = await Promise.all([api('GET', '/runs', { query: query() }), loadHosts()]);
  /** The hosts listed, with those of the runs shown and of the filter (a big fleet is not listed whole). */
  const hostIds = () => [filters.hostId, ...page.runs.map((run) => run.hostId)].filter(Boolean);
  const withShownHosts = () => (hostIds().every((id) => hostList.some((host) => host.id === id)) ? hostList : loadHosts({ ids: hostIds() }));
  hostList = await withShownHosts();
  let jobName = null;
  if (filters.jobId) {
    jobName = page.runs[0]?.jobName ?? (await api('GET', `/jobs/${encodeURIComponent(filters.jobId)}`).then((job) => job.name).catch(() => null));
  }
  if (ctx.stale) return;

  const messages = new Map();
  const live = liveIndicator('Live');
  const tableBox = h('div', { class: 'runs-table', id: 'runs-results' });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of runs' });
  const summary = h('p', { class: 'results-summary', id: 'runs-summary' });

  /** The URL of this view with some filters changed; any change of filters starts again at the newest runs. */
  function urlWith(changes, { keepCursor = false } = {}) {
    const params = new URLSearchParams();
    for (const name of FILTERS) {
      const value = name in changes ? changes[name] : filters[name];
      if (value) params.set(name, value);
    }
    if (keepCursor && changes.cursor) params.set('cursor', changes.cursor);
    const text = params.toString();
    return `/settings/agents/runs${text ? `?${text}` : ''}`;
  }

  const select = (name, label, options) => {
    const id = `filter-${name}`;
    return h('div', { class: 'filter' },
      h('label', { class: 'label', for: id }, label),
      h('select', {
        id, name, class: 'select', value: filters[name],
        onchange: (event) => ctx.navigate(urlWith({ [name]: event.target.value })),
      }, h('option', { value: '' }, `All`), options.map(([value, text]) => h('option', { value }, text))));
  };
  // The queued-time range: local date and time in the inputs, UTC instants in the URL and the API.
  // A value is applied when the field is left or Enter is pressed, not on each `change`: typing a
  // date changes it once per segment, and each change would reload the view under the typing.
  const rangeError = h('p', { class: 'field-error', id: 'filter-range-error', hidden: true });
  const applyTime = (name, input) => {
    // Left without an edit (the field shows minutes only; the bound may hold seconds), or the view
    // already replaced by the navigation this field started: nothing to apply.
    if (ctx.stale || input.value === localInputValue(filters[name])) return;
    const value = input.value ? new Date(input.value).toISOString() : '';
    const since = name === 'since' ? value : filters.since;
    const until = name === 'until' ? value : filters.until;
    if (since && until && Date.parse(until) <= Date.parse(since)) {
      rangeError.textContent = 'The end of the range must be after its start.';
      rangeError.hidden = false;
      input.setAttribute('aria-invalid', 'true');
      input.setAttribute('aria-describedby', 'filter-range-error');
      return;
    }
    ctx.navigate(urlWith({ [name]: value }));
  };
  const timeInput = (name, label) => h('div', { class: 'filter' },
    h('label', { class: 'label', for: `filter-${name}` }, label),
    h('input', {
      id: `filter-${name}`, name, type: 'datetime-local', class: 'input', value: localInputValue(filters[name]),
      onblur: (event) => applyTime(name, event.target),
      onkeydown: (event) => { if (event.key === 'Enter') { event.preventDefault(); applyTime(name, event.target); } },
    }));
  const anyFilter = FILTERS.some((name) => filters[name]);
  const filterBar = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter runs', onsubmit: (event) => event.preventDefault() },
    select('hostId', 'Host', hostList.map((host) => [host.id, host.name])),
    select('agentType', 'Job type', BATCH_TYPES.map((type) => [type, agentLabel(type)])),
    select('status', 'Status', RUN_STATUSES.map((status) => [status, statusLabel(status)])),
    timeInput('since', 'Queued from'),
    timeInput('until', 'Queued before'),
    rangeError,
    filters.jobId && h('div', { class: 'filter filter-chip' },
      h('span', { class: 'label' }, 'Job'),
      h('span', { class: 'chip chip-removable' }, jobName ?? shortId(filters.jobId),
        h('a', { href: urlWith({ jobId: '' }), class: 'chip-remove', 'aria-label': `Remove the job filter (${jobName ?? filters.jobId})` }, '×'))),
    anyFilter && h('div', { class: 'filter filter-clear' }, h('a', { href: '/settings/agents/runs', class: 'btn btn-ghost btn-small' }, 'Clear filters')));

  ctx.content.replaceChildren(
    pageHeader({ title: 'Runs', subtitle: ['Every run across all jobs, newest first. ', live.el] }),
    filterBar,
    summary,
    tableBox,
    pager);

  async function onCancel(run) {
    messages.delete(run.id);
    const result = await cancelRun(run);
    if (result && !result.ok) messages.set(run.id, result.message);
    await refresh();
  }

  function draw() {
    const described = [filters.status && statusLabel(filters.status).toLowerCase(), filters.agentType && agentLabel(filters.agentType),
      filters.hostId && `on ${hostName(hostList, filters.hostId)}`, filters.jobId && `of ${jobName ?? filters.jobId}`,
      filters.since && `queued from ${formatDateTime(filters.since)}`, filters.until && `${filters.since ? 'to' : 'queued before'} ${formatDateTime(filters.until)}`].filter(Boolean).join(' ');
    summary.textContent = page.runs.length === 0 ? '' : `Showing ${plural(page.runs.length, 'run')}${described ? ` (${described})` : ''}${pageIndex > 0 ? `, page ${pageIndex + 1}` : ''}.`;
    patch(tableBox, JSON.stringify([page.runs, [...messages.keys()], hostList.length]), () => (page.runs.length === 0
      ? emptyState(anyFilter ? 'No runs match these filters' : 'No runs yet',
        anyFilter ? [h('a', { href: '/settings/agents/runs' }, 'Clear the filters'), ' to see all runs.'] : ['Runs appear here when a job is run — ', h('a', { href: '/settings/agents/jobs' }, 'go to Jobs'), '.'])
      : dataTable({
        caption: 'Runs, newest first',
        className: 'table-runs',
        columns: [{ label: 'Run' }, { label: 'Job type' }, { label: 'Host' }, { label: 'Trigger' }, { label: 'Started' }, { label: 'Duration' }, { label: 'Status' }, { label: 'Actions', className: 'col-actions' }],
        rows: page.runs.flatMap(runRows),
      })));
    patch(pager, JSON.stringify([page.nextCursor, pageIndex]), () => pagerButtons({
      page: pageIndex,
      back: cursor ? () => { if (pageIndex > 0 && history.state?.page) history.back(); else ctx.navigate(urlWith({})); } : null,
      forward: page.nextCursor ? () => ctx.navigate(urlWith({ cursor: page.nextCursor }, { keepCursor: true }), { state: { page: pageIndex + 1 } }) : null,
    }));
  }

  function runRows(run) {
    const canceling = isCanceling(run);
    const rows = [h('tr', { dataset: { runId: run.id, status: run.status } },
      cell('Run', h('div', { class: 'stack' },
        h('a', { href: runPath(run.id), class: 'mono strong-link', 'aria-label': `Run ${run.id} of ${run.jobName}` }, shortId(run.id)),
        h('a', { href: jobPath(run.jobId), class: 'muted small' }, run.jobName))),
      cell('Job type', agentLabel(run.agentType)),
      cell('Host', hostName(hostList, run.hostId)),
      cell('Trigger', [triggerLabel(run.trigger), run.attempt > 1 && ' ', attemptMarker(run)]),
      cell('Started', run.startedAt ? timeEl(run.startedAt)
        : run.heldUntil ? h('span', { class: 'muted' }, 'Retry due ', timeEl(run.heldUntil))
          : h('span', { class: 'muted' }, isActive(run.status) ? 'Waiting for host' : 'Never started')),
      cell('Duration', runDuration(run)),
      cell('Status', h('div', { class: 'stack' }, statusBadge(run),
        run.finishedAt && h('span', { class: 'muted small' }, 'ended ', timeEl(run.finishedAt, { relative: true })))),
      cell('Actions', isActive(run.status)
        ? h('button', {
          type: 'button', class: 'btn btn-small btn-danger-outline', disabled: canceling,
          dataset: { focusKey: `cancel-${run.id}`, action: 'cancel', runId: run.id },
          'aria-label': canceling ? `Canceling run ${run.id}` : `Cancel run ${run.id}`,
          onclick: () => onCancel(run),
        }, canceling ? 'Canceling…' : 'Cancel')
        : h('a', { href: runPath(run.id), class: 'btn btn-small btn-ghost', 'aria-label': `Details of run ${run.id}` }, 'Details'), 'col-actions'))];
    if (messages.has(run.id)) rows.push(h('tr', { class: 'row-message' }, h('td', { colspan: 8 }, inlineAlert('warning', messages.get(run.id)))));
    return rows;
  }

  let known = new Map(page.runs.map((run) => [run.id, run.status + (isCanceling(run) ? ':canceling' : '')]));
  async function refresh() {
    const next = await api('GET', '/runs', { query: query() });
    if (ctx.stale) return;
    const changes = [];
    let added = 0;
    for (const run of next.runs) {
      const state = run.status + (isCanceling(run) ? ':canceling' : '');
      if (!known.has(run.id)) added += 1;
      else if (known.get(run.id) !== state) changes.push(`Run ${shortId(run.id)} of ${run.jobName} is ${isCanceling(run) ? 'canceling' : statusLabel(run.status).toLowerCase()}.`);
    }
    known = new Map(next.runs.map((run) => [run.id, run.status + (isCanceling(run) ? ':canceling' : '')]));
    page = next;
    hostList = await withShownHosts();
    if (ctx.stale) return;
    if (added > 0 && !cursor) changes.unshift(`${plural(added, 'new run')}.`);
    if (changes.length > 0) announce(changes.slice(0, 3).join(' '));
    draw();
  }

  draw();
  return startPolling(refresh, 2000, {
    onError: (error) => live.error(error), onSuccess: () => live.ok(), runChanges: true, onFeed: (isLive) => live.feed(isLive),
  });
}
