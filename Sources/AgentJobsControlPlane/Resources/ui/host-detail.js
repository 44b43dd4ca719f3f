// A host: whether it is heard from and why not, what it runs, its jobs and recent runs, and
// revoking its credential.
import { api, ApiError } from './api.js';
import { h, patch, replace, confirmDialog, toast } from './dom.js';
import { AGENT_TYPES, agentLabel, attemptMarker, relativeTime, runDuration, shortId, statusBadge, timeEl, triggerLabel } from './format.js';
import { card, cell, dataTable, definitionList, emptyState, inlineAlert, liveIndicator, pageHeader, startPolling } from './components.js';
import { jobPath, runPath } from './actions.js';

const RECENT_RUNS = 10;
const HOST_STATUS_LABELS = { online: 'Online', offline: 'Offline', unknown: 'Unknown' };

export function hostPath(hostId) {
  return `/settings/agents/hosts/${encodeURIComponent(hostId)}`;
}

export async function hostDetailView(ctx) {
  const hostId = ctx.params.hostId;
  const path = `/hosts/${encodeURIComponent(hostId)}`;
  const load = () => Promise.all([
    api('GET', path),
    api('GET', '/jobs', { query: { hostId } }),
    api('GET', '/runs', { query: { hostId, limit: RECENT_RUNS } }),
  ]);
  let [host, { jobs }, runPage] = await load();
  if (ctx.stale) return;
  ctx.setTitle(host.name);

  let actionMessage = null;
  let busy = false;
  // Bumped by every action: a poll that began before one carries older state and is dropped.
  let actionSerial = 0;
  const live = liveIndicator('Live');
  const titleBlock = h('div');
  const actionNote = h('div', { class: 'action-note', 'aria-live': 'polite' });
  const summaryBox = h('div');
  const jobsBox = h('div');
  const runsBox = h('div');
  const runsOfHost = `/settings/agents/runs?hostId=${encodeURIComponent(hostId)}`;

  replace(ctx.content,
    titleBlock,
    actionNote,
    card('Host', summaryBox, { id: 'host-summary' }),
    card('Jobs on this host', jobsBox, { id: 'host-jobs', flush: true }),
    card('Recent runs', runsBox, {
      id: 'host-runs',
      flush: true,
      actions: [live.el, h('a', { class: 'btn btn-small btn-ghost', href: runsOfHost }, 'All runs on this host')],
    }));

  async function onRevoke() {
    const confirmed = await confirmDialog({
      title: `Revoke the credential of ${host.name}?`,
      body: [
        h('p', null, 'Its orchestrator is refused from now on: its heartbeats and run events are dropped, so the host goes offline and its active runs end as host lost once the grace period passes.'),
        h('p', null, 'Agents it already started are not stopped by the control plane. To let the host back, give it a new credential (', h('code', null, `POST /api/v1/hosts/${host.id}/credential`), ') and restart its orchestrator with it.'),
      ],
      confirmLabel: 'Revoke credential',
      danger: true,
    });
    if (!confirmed) return;
    busy = true;
    actionMessage = null;
    actionSerial += 1;
    draw();
    try {
      host = await api('POST', `${path}/revoke`);
      actionSerial += 1;
      toast(['Credential of ', h('strong', null, host.name), ' revoked.']);
    } catch (error) {
      actionMessage = error instanceof ApiError && error.status === 403
        ? 'Revoking a host needs a token with the admin scope.'
        : error.message;
    }
    busy = false;
    draw();
  }

  function draw() {
    patch(titleBlock, JSON.stringify([host.name, host.status, host.id, host.version, host.revokedAt, busy]), () => pageHeader({
      crumbs: [['Hosts', '/settings/agents/hosts'], [host.name]],
      title: host.name,
      badge: HOST_STATUS_LABELS[host.status] ?? host.status,
      subtitle: [h('span', { class: 'mono' }, host.id), host.version ? ` · version ${host.version}` : ''],
      actions: host.revokedAt ? null : h('button', {
        type: 'button', class: 'btn btn-danger-outline', disabled: busy,
        dataset: { focusKey: 'revoke', action: 'revoke' }, onclick: onRevoke,
      }, busy ? 'Revoking…' : 'Revoke credential'),
    }));
    patch(actionNote, JSON.stringify([actionMessage, host.revokedAt]), () => [
      host.revokedAt && inlineAlert('warning', 'This host\'s credential was revoked ', timeEl(host.revokedAt), '. Its orchestrator is refused until it gets a new credential.'),
      actionMessage && inlineAlert('warning', actionMessage),
    ]);
    patch(summaryBox, JSON.stringify(host), () => definitionList([
      ['Status', h('div', { class: 'stack' },
        h('span', { class: `host-status host-${host.status}` }, h('span', { class: 'status-dot', 'aria-hidden': 'true' }), HOST_STATUS_LABELS[host.status] ?? host.status),
        host.statusReason ? h('span', { class: 'muted small' }, host.statusReason) : null)],
      ['Last seen', host.lastSeenAt ? [timeEl(host.lastSeenAt), h('span', { class: 'muted small' }, ` · ${relativeTime(host.lastSeenAt)}`)] : h('span', { class: 'muted' }, 'never heard from')],
      host.clockSkewSeconds != null && ['Clock', Math.abs(host.clockSkewSeconds) < 1
        ? 'in step with the control plane'
        : `${Math.round(Math.abs(host.clockSkewSeconds))} s ${host.clockSkewSeconds > 0 ? 'ahead of' : 'behind'} the control plane`],
      ['Managed agents', host.managedAgents.length === 0
        ? h('span', { class: 'muted' }, 'none')
        : h('ul', { class: 'chips', 'aria-label': `Agent types managed by ${host.name}` }, host.managedAgents.map((type) =>
          h('li', { class: ['chip', AGENT_TYPES[type]?.kind === 'persistent' && 'chip-muted'] }, agentLabel(type))))],
      ['Version', host.version ? h('span', { class: 'mono' }, host.version) : h('span', { class: 'muted' }, 'not reported')],
      ['Capacity', host.maxConcurrentRuns
        ? `${host.runningRuns ?? 0} of ${host.maxConcurrentRuns} runs running${(host.runningRuns ?? 0) >= host.maxConcurrentRuns ? ' (at capacity: new runs wait on the host)' : ''}`
        : h('span', { class: 'muted' }, 'no limit')],
      ['Registered', timeEl(host.registeredAt)],
      ['Credential', host.revokedAt ? ['Revoked ', timeEl(host.revokedAt)] : 'Active'],
    ]));
    patch(jobsBox, JSON.stringify(jobs), () => (jobs.length === 0
      ? emptyState('No jobs on this host', h('a', { href: '/settings/agents/jobs/new' }, 'Create a job'), ' and choose this host.')
      : dataTable({
        caption: `Jobs on ${host.name}`,
        className: 'table-host-jobs',
        columns: [{ label: 'Job' }, { label: 'Agent type' }, { label: 'Schedule' }, { label: 'Last run' }],
        rows: jobs.map((job) => h('tr', { dataset: { jobId: job.id } },
          cell('Job', h('a', { href: jobPath(job.id) }, job.name)),
          cell('Agent type', agentLabel(job.agentType)),
          cell('Schedule', job.schedule
            ? [h('code', null, job.schedule.cron), job.schedule.paused ? h('span', { class: 'chip chip-warning' }, 'Paused') : null]
            : h('span', { class: 'muted' }, 'manual')),
          cell('Last run', job.lastRun
            ? [statusBadge(job.lastRun), ' ', h('a', { href: runPath(job.lastRun.id), class: 'mono small' }, shortId(job.lastRun.id))]
            : h('span', { class: 'muted' }, 'none yet')))),
      })));
    patch(runsBox, JSON.stringify(runPage.runs), () => (runPage.runs.length === 0
      ? emptyState('No runs on this host yet')
      : dataTable({
        caption: `Most recent runs on ${host.name}`,
        className: 'table-runs-compact',
        columns: [{ label: 'Run' }, { label: 'Job' }, { label: 'Status' }, { label: 'Trigger' }, { label: 'Queued' }, { label: 'Duration' }],
        rows: runPage.runs.map((run) => h('tr', { dataset: { runId: run.id } },
          cell('Run', h('a', { href: runPath(run.id), class: 'mono', 'aria-label': `Run ${run.id}` }, shortId(run.id))),
          cell('Job', jobs.some((job) => job.id === run.jobId)
            ? h('a', { href: jobPath(run.jobId) }, run.jobName ?? run.jobId)
            : (run.jobName ?? h('span', { class: 'mono' }, run.jobId))),
          cell('Status', statusBadge(run)),
          cell('Trigger', [triggerLabel(run.trigger), run.attempt > 1 && ' ', attemptMarker(run)]),
          cell('Queued', timeEl(run.queuedAt)),
          cell('Duration', runDuration(run)))),
      })));
  }

  draw();
  return startPolling(async () => {
    const serial = actionSerial;
    const [nextHost, nextJobs, nextRuns] = await load();
    if (ctx.stale || serial !== actionSerial) return;
    host = nextHost;
    jobs = nextJobs.jobs;
    runPage = nextRuns;
    draw();
  }, 2000, {
    onSuccess: () => live.ok(),
    onError: (error) => {
      if (error instanceof ApiError && error.status === 404) live.stopped('This host is no longer registered.');
      else live.error(error);
    },
  });
}
