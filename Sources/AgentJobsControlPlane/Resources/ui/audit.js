// Settings → Agents → Audit: every change made through the API and who made it, newest first
// (admin tokens only). Filters live in the URL; pages follow the API's cursor.
import { api, ApiError } from './api.js';
import { h, replace } from './dom.js';
import { plural, requesterLabel, shortId, timeEl } from './format.js';
import { cell, dataTable, emptyState, inlineAlert, pageHeader, pagerButtons } from './components.js';
import { jobPath, runPath } from './actions.js';
import { hostPath } from './host-detail.js';

const PAGE_SIZE = 50;
const FILTERS = ['kind', 'actorId', 'targetId'];
const KINDS = [['job', 'Jobs'], ['run', 'Runs'], ['api_token', 'API tokens'], ['registration_token', 'Registration tokens'], ['host', 'Hosts']];
const ACTIONS = {
  'job.created': 'Created the job',
  'job.updated': 'Edited the job',
  'job.paused': 'Paused the schedule',
  'job.resumed': 'Resumed the schedule',
  'job.deleted': 'Deleted the job',
  'run.triggered': 'Ran the job',
  'run.rerun': 'Ran it again',
  'run.cancel_requested': 'Asked to cancel the run',
  'api_token.created': 'Created an API token',
  'api_token.revoked': 'Revoked an API token',
  'registration_token.created': 'Created a registration token',
  'registration_token.revoked': 'Revoked a registration token',
  'host.registered': 'Registered',
  'host.agents_updated': 'Re-synced its agents',
  'host.credential_replaced': 'Gave the host a new credential',
  'host.revoked': 'Revoked the host',
};

/** Where a target is shown in the console, when it is (a job deleted since is not). */
function targetLink(entry, label, deletedJobs) {
  const { target } = entry;
  if (target.kind === 'job' && deletedJobs.has(target.id)) return h('span', null, label);
  const path = target.kind === 'job' ? jobPath(target.id) : target.kind === 'run' ? runPath(target.id) : target.kind === 'host' ? hostPath(target.id) : null;
  return path ? h('a', { href: path }, label) : h('span', null, label);
}

export async function auditView(ctx) {
  ctx.setTitle('Audit log');
  const header = pageHeader({ title: 'Audit log', subtitle: 'Every change made through the API, and who made it, newest first.' });
  const filters = Object.fromEntries(FILTERS.map((name) => [name, ctx.query.get(name) ?? '']));
  if (filters.kind && !KINDS.some(([kind]) => kind === filters.kind)) filters.kind = '';
  const cursor = ctx.query.get('cursor') ?? '';
  const pageIndex = Number(history.state?.page ?? (cursor ? 1 : 0));
  let page;
  try {
    page = await api('GET', '/audit', { query: { ...filters, cursor, limit: PAGE_SIZE } });
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 403) throw error;
    if (ctx.stale) return;
    replace(ctx.content, header, inlineAlert('warning',
      h('p', null, h('strong', null, 'Reading the audit log needs an admin token. '), error.message),
      h('p', null, 'Sign out and sign in with an admin token, or ask an admin.')));
    return;
  }
  if (ctx.stale) return;

  function urlWith(changes, { keepCursor = false } = {}) {
    const params = new URLSearchParams();
    for (const name of FILTERS) {
      const value = name in changes ? changes[name] : filters[name];
      if (value) params.set(name, value);
    }
    if (keepCursor && changes.cursor) params.set('cursor', changes.cursor);
    const text = params.toString();
    return `/settings/agents/audit${text ? `?${text}` : ''}`;
  }

  const chip = (name, label) => filters[name] && h('div', { class: 'filter filter-chip' },
    h('span', { class: 'label' }, label),
    h('span', { class: 'chip chip-removable' }, shortId(filters[name]),
      h('a', { href: urlWith({ [name]: '' }), class: 'chip-remove', 'aria-label': `Remove the filter ${label} ${filters[name]}` }, '×')));
  const anyFilter = FILTERS.some((name) => filters[name]);
  const filterBar = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter the audit log', onsubmit: (event) => event.preventDefault() },
    h('div', { class: 'filter' },
      h('label', { class: 'label', for: 'filter-kind' }, 'Changes to'),
      h('select', {
        id: 'filter-kind', name: 'kind', class: 'select', value: filters.kind,
        onchange: (event) => ctx.navigate(urlWith({ kind: event.target.value })),
      }, h('option', { value: '' }, 'Everything'), KINDS.map(([value, text]) => h('option', { value }, text)))),
    chip('actorId', 'By'),
    chip('targetId', 'History of'),
    anyFilter && h('div', { class: 'filter filter-clear' }, h('a', { href: '/settings/agents/audit', class: 'btn btn-ghost btn-small' }, 'Clear filters')));

  // Jobs this page shows deleted: their other entries are not links to a page that is gone.
  const deletedJobs = new Set(page.entries.filter((entry) => entry.action === 'job.deleted').map((entry) => entry.target.id));
  const summary = h('p', { class: 'results-summary', id: 'audit-summary' },
    page.entries.length === 0 ? '' : `Showing ${plural(page.entries.length, 'change')}${pageIndex > 0 ? `, page ${pageIndex + 1}` : ''}.`);
  const table = page.entries.length === 0
    ? emptyState(anyFilter ? 'No changes match these filters' : 'No changes recorded yet',
      anyFilter ? [h('a', { href: '/settings/agents/audit' }, 'Clear the filters'), ' to see every change.'] : 'Creating a job, running it or creating a token adds an entry here.')
    : dataTable({
      caption: 'Audit log, newest first',
      className: 'table-audit',
      columns: [{ label: 'When' }, { label: 'Who' }, { label: 'What' }, { label: 'Details' }],
      rows: page.entries.map((entry) => h('tr', { dataset: { action: entry.action, sequence: String(entry.sequence) } },
        cell('When', timeEl(entry.at)),
        cell('Who', entry.actor
          ? h('div', { class: 'stack' }, requesterLabel(entry.actor),
            entry.actor.id && h('a', { href: urlWith({ actorId: entry.actor.id }), class: 'muted small', 'aria-label': `Only changes by ${entry.actor.name ?? entry.actor.id}` }, 'only theirs'))
          : h('span', { class: 'muted', title: 'Without a token: agentjobs tokens create, or the first start of agentjobs dev' }, 'A local command')),
        cell('What', h('div', { class: 'stack' },
          h('span', null, ACTIONS[entry.action] ?? entry.action),
          h('span', { class: 'small' }, targetLink(entry, entry.target.name ?? shortId(entry.target.id), deletedJobs),
            ' ', h('a', { href: urlWith({ targetId: entry.target.id }), class: 'muted', 'aria-label': `Only changes of ${entry.target.name ?? entry.target.id}` }, 'history')))),
        cell('Details', entry.summary ?? h('span', { class: 'muted' }, '—')))),
    });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of the audit log' }, pagerButtons({
    page: pageIndex,
    back: cursor ? () => { if (pageIndex > 0 && history.state?.page) history.back(); else ctx.navigate(urlWith({})); } : null,
    forward: page.nextCursor ? () => ctx.navigate(urlWith({ cursor: page.nextCursor }, { keepCursor: true }), { state: { page: pageIndex + 1 } }) : null,
  }));
  replace(ctx.content, header, filterBar, summary, h('div', { class: 'audit-table' }, table), pager);
}
