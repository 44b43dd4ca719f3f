// Settings → Agents → Hosts: registered hosts by name, whether they are heard from, and what they run;
// 50 a page, with a search by the start of the name and filters by status and agent type, kept in the
// URL and applied by the API (`GET /api/v1/hosts?namePrefix=&status=&agentType=&cursor=&limit=`).
import { api } from './api.js';
import { h, patch } from './dom.js';
import { AGENT_TYPES, BATCH_TYPES, agentLabel, relativeTime, timeEl, plural } from './format.js';
import { cell, dataTable, emptyState, pageHeader, pagerButtons } from './components.js';
import { hostPath } from './host-detail.js';

const FILTERS = ['namePrefix', 'status', 'agentType'];
const PAGE_SIZE = 50;
const SEARCH_DELAY_MS = 250;

export async function hostsView(ctx) {
  ctx.setTitle('Hosts');
  const filters = Object.fromEntries(FILTERS.map((name) => [name, ctx.query.get(name) ?? '']));
  let cursor = ctx.query.get('cursor') ?? '';
  let pageIndex = Number(history.state?.page ?? (cursor ? 1 : 0));
  const filtered = () => FILTERS.some((key) => filters[key]);
  /** The page shown, and the fleet's size (the page's own total when nothing is filtered). */
  async function load() {
    const [page, all] = await Promise.all([
      api('GET', '/hosts', { query: { ...filters, cursor, limit: PAGE_SIZE } }),
      filtered() ? api('GET', '/hosts', { query: { limit: 1 } }).then((answer) => answer.total) : Promise.resolve(null),
    ]);
    return { page, all: all ?? page.total };
  }
  let { page, all } = await load();
  if (ctx.stale) return;

  function urlFor(nextCursor = '') {
    const params = new URLSearchParams();
    for (const key of FILTERS) if (filters[key]) params.set(key, filters[key]);
    if (nextCursor) params.set('cursor', nextCursor);
    const text = params.toString();
    return `/settings/agents/hosts${text ? `?${text}` : ''}`;
  }
  /** Filters change the URL in place (focus stays in the search box), start again at the first
   *  page, and ask the API (typing waits for a pause first). */
  let timer = null;
  let serial = 0;
  function setFilter(name, value, { delay = 0 } = {}) {
    if (filters[name] === value) return;
    filters[name] = value;
    serial += 1; // an answer already on its way is for the old filters
    cursor = '';
    pageIndex = 0;
    history.replaceState(null, '', urlFor());
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const mine = ++serial;
      try {
        const loaded = await load();
        if (ctx.stale || mine !== serial) return;
        ({ page, all } = loaded);
        draw();
      } catch (error) {
        if (!ctx.stale) summary.textContent = `Could not load hosts: ${error.message}`;
      }
    }, delay);
  }
  const search = h('input', {
    id: 'filter-namePrefix', type: 'search', class: 'input', name: 'namePrefix', value: filters.namePrefix, placeholder: 'Name starts with…', autocomplete: 'off',
    oninput: (event) => setFilter('namePrefix', event.target.value.trim(), { delay: SEARCH_DELAY_MS }),
    onchange: (event) => setFilter('namePrefix', event.target.value.trim()),
  });
  const select = (name, label, options) => h('div', { class: 'filter' },
    h('label', { class: 'label', for: `filter-${name}` }, label),
    h('select', { id: `filter-${name}`, name, class: 'select', value: filters[name], onchange: (event) => setFilter(name, event.target.value) },
      h('option', { value: '' }, 'All'), options.map(([value, text]) => h('option', { value }, text))));
  const clear = h('div', { class: 'filter filter-clear' }, h('a', { href: '/settings/agents/hosts', class: 'btn btn-ghost btn-small', dataset: { action: 'clear-filters' } }, 'Clear filters'));
  const filterBar = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter hosts', onsubmit: (event) => event.preventDefault() },
    h('div', { class: 'filter filter-search' }, h('label', { class: 'label', for: 'filter-namePrefix' }, 'Search'), search),
    select('status', 'Status', Object.entries(HOST_STATUS_LABELS)),
    select('agentType', 'Manages', BATCH_TYPES.map((type) => [type, agentLabel(type)])),
    clear);
  const subtitle = h('span');
  const summary = h('p', { class: 'results-summary', id: 'hosts-summary', 'aria-live': 'polite' });
  const body = h('div', { class: 'hosts-body' });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of hosts' });
  ctx.content.replaceChildren(pageHeader({ title: 'Hosts', subtitle }), filterBar, summary, body, pager);

  function draw() {
    subtitle.textContent = all === 0 ? 'No hosts registered yet.' : plural(all, 'host');
    filterBar.hidden = all === 0 && !filtered();
    clear.hidden = !filtered();
    // With a status filter the API judges each page and gives no total.
    const matching = page.total == null ? plural(page.hosts.length, 'host') + (page.nextCursor ? ' on this page' : '') : String(page.total);
    const words = filtered() && all > 0 ? `Showing ${matching} of ${plural(all, 'host')}${pageIndex > 0 ? `, page ${pageIndex + 1}` : ''}.` : '';
    if (summary.textContent !== words) summary.textContent = words;
    patch(body, JSON.stringify([page.hosts, all]), () => (page.hosts.length === 0
      ? (all === 0
        ? emptyState('No hosts yet',
          'A host joins by registering its orchestrator with a one-time registration token (', h('code', null, 'POST /api/v1/registration-tokens'),
          '). ', h('code', null, 'agentjobs dev'), ' registers a host named ', h('code', null, 'local'), ' on first start.')
        : emptyState('No hosts match these filters', h('a', { href: '/settings/agents/hosts' }, 'Clear the filters'), ' to see all hosts.'))
      : dataTable({
        caption: 'Registered hosts',
        className: 'table-hosts',
        columns: [{ label: 'Name' }, { label: 'Status' }, { label: 'Managed agents' }, { label: 'Version' }, { label: 'Registered' }],
        rows: page.hosts.map(hostRow),
      })));
    patch(pager, JSON.stringify([page.nextCursor, cursor, pageIndex]), () => (!page.nextCursor && !cursor ? [] : pagerButtons({
      page: pageIndex,
      labels: ['Previous', 'Next'],
      actions: ['previous', 'next'],
      back: cursor ? () => { if (pageIndex > 0 && history.state?.page) history.back(); else ctx.navigate(urlFor()); } : null,
      forward: page.nextCursor ? () => ctx.navigate(urlFor(page.nextCursor), { state: { page: pageIndex + 1 } }) : null,
    })));
  }
  draw();
  return () => clearTimeout(timer);
}

const HOST_STATUS_LABELS = { online: 'Online', offline: 'Offline', unknown: 'Unknown' };

/** A host clock more than 5 s away from the control plane's is worth a note (liveness uses receive times). */
function skewNote(host) {
  if (host.clockSkewSeconds == null || Math.abs(host.clockSkewSeconds) < 5) return null;
  const seconds = Math.round(Math.abs(host.clockSkewSeconds));
  return h('span', { class: 'muted small' }, `clock ${seconds} s ${host.clockSkewSeconds > 0 ? 'ahead' : 'behind'}`);
}

function hostRow(host) {
  const seen = host.lastSeenAt
    ? h('span', { class: 'muted' }, 'last seen ', timeEl(host.lastSeenAt, { relative: true }))
    : h('span', { class: 'muted' }, 'never heard from');
  return h('tr', { dataset: { hostId: host.id } },
    cell('Name', h('div', { class: 'stack' }, h('a', { href: hostPath(host.id) }, h('strong', null, host.name)), h('span', { class: 'mono muted small' }, host.id))),
    cell('Status', h('div', { class: 'stack' },
      h('span', { class: `host-status host-${host.status}`, title: host.statusReason || null }, h('span', { class: 'status-dot', 'aria-hidden': 'true' }), HOST_STATUS_LABELS[host.status] || host.status),
      seen,
      host.statusReason ? h('span', { class: 'muted small' }, host.statusReason) : null,
      skewNote(host))),
    cell('Managed agents', host.managedAgents.length === 0
      ? h('span', { class: 'muted' }, 'none')
      : h('ul', { class: 'chips', 'aria-label': `Agent types managed by ${host.name}` }, host.managedAgents.map((type) =>
        h('li', { class: ['chip', AGENT_TYPES[type]?.kind === 'persistent' && 'chip-muted'], title: AGENT_TYPES[type]?.kind === 'persistent' ? 'Persistent agent: runs continuously, not as jobs' : 'Batch agent: can run as jobs' },
          agentLabel(type))))),
    cell('Version', host.version ? h('span', { class: 'mono' }, host.version) : h('span', { class: 'muted nowrap' }, 'not reported')),
    cell('Registered', h('span', { title: relativeTime(host.registeredAt) }, timeEl(host.registeredAt))));
}
