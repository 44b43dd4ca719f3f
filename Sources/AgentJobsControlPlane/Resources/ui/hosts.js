// Settings → Agents → Hosts: every registered host, whether it is heard from, and what it runs.
import { api } from './api.js';
import { h } from './dom.js';
import { AGENT_TYPES, agentLabel, relativeTime, timeEl, plural } from './format.js';
import { cell, dataTable, emptyState, pageHeader } from './components.js';
import { hostPath } from './host-detail.js';

export async function hostsView(ctx) {
  ctx.setTitle('Hosts');
  const { hosts } = await api('GET', '/hosts');
  if (ctx.stale) return;
  const online = hosts.filter((host) => host.status === 'online').length;
  ctx.content.replaceChildren(
    pageHeader({
      title: 'Hosts',
      subtitle: hosts.length === 0 ? 'No hosts registered yet.' : `${plural(hosts.length, 'host')} · ${online} online`,
    }),
    hosts.length === 0
      ? emptyState('No hosts yet',
        'A host joins by registering its orchestrator with a one-time registration token (', h('code', null, 'POST /api/v1/registration-tokens'),
        '). ', h('code', null, 'agentjobs dev'), ' registers a host named ', h('code', null, 'local'), ' on first start.')
      : dataTable({
        caption: 'Registered hosts',
        className: 'table-hosts',
        columns: [{ label: 'Name' }, { label: 'Status' }, { label: 'Managed agents' }, { label: 'Version' }, { label: 'Registered' }],
        rows: hosts.map(hostRow),
      }));
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
