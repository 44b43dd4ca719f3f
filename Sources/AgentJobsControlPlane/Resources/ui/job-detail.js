// A job: its definition, actions (Run now, Edit, Delete), schedule occurrences and run history.
import { api, ApiError, hosts as loadHosts, hostName } from './api.js';
import { h, patch, replace, confirmDialog, toast, announce } from './dom.js';
import {
  agentLabel, attemptMarker, formatInZone, formatSeconds, isActive, parameterRows, relativeTime, requesterLabel, retrySummary, runDuration, scheduleDescription, shortId,
  statusBadge, statusLabel, timeEl, triggerLabel,
} from './format.js';
import { card, cell, dataTable, definitionList, emptyState, inlineAlert, liveIndicator, pageHeader, startPolling } from './components.js';
import { jobPath, runNow, runNowBlockedReason, runPath } from './actions.js';
import { durationChart } from './chart.js';

const HISTORY_SIZE = 10;
/** Runs in the duration chart (the table shows the newest HISTORY_SIZE of them). */
const CHART_SIZE = 30;
/** Changes of the job shown (from the audit log). */
const CHANGES_SIZE = 20;
const CHANGE_LABELS = { 'job.created': 'Created', 'job.updated': 'Edited', 'job.paused': 'Paused', 'job.resumed': 'Resumed', 'job.deleted': 'Deleted' };

export async function jobDetailView(ctx) {
  const jobId = ctx.params.jobId;
  const path = `/jobs/${encodeURIComponent(jobId)}`;
  let [job, hostList, runPage] = await Promise.all([
    api('GET', path), loadHosts(), api('GET', '/runs', { query: { jobId, limit: CHART_SIZE } }),
  ]);
  // The job's host, when it is not among the hosts the console lists at once.
  if (!hostList.some((host) => host.id === job.hostId)) hostList = await loadHosts({ ids: [job.hostId] });
  let schedule = job.schedule ? await api('GET', `${path}/schedule`, { query: { limit: 20 } }).catch(() => null) : null;
  // The job's changes and who made them, from the audit log: admin tokens only (null otherwise).
  // Another error than the scope's leaves the card with what it had (or an empty list).
  const loadChanges = () => api('GET', '/audit', { query: { kind: 'job', targetId: jobId, limit: CHANGES_SIZE } }).then((page) => page.entries)
    .catch((error) => (error instanceof ApiError && error.status === 403 ? null : []));
  let changes = await loadChanges();
  let changesVersion = job.version;
  if (ctx.stale) return;
  ctx.setTitle(job.name);

  const flash = history.state?.flash;
  if (flash) history.replaceState(null, '', location.pathname + location.search);

  let actionMessage = null;
  let busy = false;
  const live = liveIndicator('Live');
  const actions = h('div', { class: 'page-actions-inner' });
  const actionNote = h('div', { class: 'action-note', 'aria-live': 'polite' });
  const titleBlock = h('div');
  const definitionBox = h('div');
  const scheduleBox = h('div');
  const historyBox = h('div');
  const chartBox = h('div');
  const changesBox = h('div');

  replace(ctx.content,
    titleBlock,
    flash ? inlineAlert('success', flash) : null,
    actionNote,
    h('div', { class: 'detail-grid' },
      card('Definition', definitionBox, { id: 'job-definition' }),
      card('Schedule', scheduleBox, { id: 'job-schedule' })),
    card('Recent durations', chartBox, { id: 'job-durations' }),
    card('Run history', historyBox, {
      id: 'job-runs',
      flush: true,
      actions: [live.el, h('a', { class: 'btn btn-small btn-ghost', href: `/settings/agents/runs?jobId=${encodeURIComponent(jobId)}` }, 'All runs of this job')],
    }),
    changes && card('Changes', changesBox, {
      id: 'job-changes',
      actions: [h('a', { class: 'btn btn-small btn-ghost', href: `/settings/agents/audit?targetId=${encodeURIComponent(jobId)}` }, 'In the audit log')],
    }));

  function drawChanges() {
    if (!changes) return;
    patch(changesBox, JSON.stringify(changes), () => (changes.length === 0
      ? h('p', { class: 'muted' }, 'No change recorded (the job is older than the audit log, or its entries passed their retention).')
      : h('ol', { class: 'change-list', 'aria-label': 'Changes of this job, newest first' }, changes.map((entry) => h('li', { class: 'change-item', dataset: { action: entry.action } },
        h('span', { class: 'strong' }, CHANGE_LABELS[entry.action] ?? entry.action),
        entry.summary && h('span', null, ' \u2014 ', entry.summary),
        h('span', { class: 'muted small' }, ' by ', entry.actor ? requesterLabel(entry.actor) : 'a local command', ', ', timeEl(entry.at, { relative: true })))))));
  }

  async function onRunNow() {
    busy = true;
    actionMessage = null;
    draw();
    const result = await runNow(job);
    busy = false;
    actionMessage = result.ok ? null : result.message;
    await refresh();
  }

  async function onDelete() {
    const confirmed = await confirmDialog({
      title: `Delete ${job.name}?`,
      body: [h('p', null, 'Its definition and schedule are removed. Its runs stay in the run history until they are older than the run retention (90 days after they ended, unless your operator changed it).'),
        h('p', null, 'This cannot be undone.')],
      confirmLabel: 'Delete job',
      danger: true,
    });
    if (!confirmed) return;
    try {
      await api('DELETE', path);
      toast(['Job ', h('strong', null, job.name), ' deleted. Its runs stay in the ', h('a', { href: `/settings/agents/runs?jobId=${encodeURIComponent(jobId)}` }, 'Runs tab'), '.']);
      ctx.navigate('/settings/agents/jobs');
    } catch (error) {
      if (error instanceof ApiError && error.code === 'active_run') {
        actionMessage = ['This job cannot be deleted while a run is active',
          error.activeRunId ? [' (', h('a', { href: runPath(error.activeRunId), class: 'mono' }, shortId(error.activeRunId)), ')'] : '',
          '. Cancel the run or wait for it to finish, then delete the job.'];
      } else {
        actionMessage = error.message;
      }
      await refresh();
    }
  }

  function draw() {
    drawChanges();
    const blocked = runNowBlockedReason(job);
    const active = job.lastRun && isActive(job.lastRun.status) ? job.lastRun : null;
    patch(titleBlock, JSON.stringify([job, busy, hostList.length]), () => pageHeader({
      crumbs: [['Jobs', '/settings/agents/jobs'], [job.name]],
      title: job.name,
      subtitle: [agentLabel(job.agentType), ' on ', h('strong', null, hostName(hostList, job.hostId)), ` · version ${job.version} · `, h('span', { class: 'mono' }, job.id)],
      actions: [
        h('div', { class: 'action-with-reason' },
          h('button', {
            type: 'button', class: 'btn btn-primary', disabled: Boolean(blocked) || busy, 'aria-describedby': blocked ? 'run-now-reason' : null,
            dataset: { focusKey: 'run-now', action: 'run-now' }, onclick: onRunNow,
          }, busy ? 'Starting…' : 'Run now')),
        h('a', { class: 'btn', href: `${jobPath(job.id)}/edit`, dataset: { focusKey: 'edit', action: 'edit' } }, 'Edit'),
        h('button', {
          type: 'button', class: 'btn btn-danger-outline', disabled: Boolean(active), 'aria-describedby': active ? 'delete-reason' : null,
          dataset: { focusKey: 'delete', action: 'delete' }, onclick: onDelete,
        }, 'Delete'),
      ],
    }));
    patch(actionNote, JSON.stringify([job.lastRun, Boolean(actionMessage), busy]), () => [
      active && h('div', { class: 'callout' },
        h('p', { id: 'run-now-reason' }, h('strong', null, `Run now is unavailable: `), blocked, ' ',
          h('a', { href: runPath(active.id) }, `View the ${statusLabel(active.status).toLowerCase()} run`), '.'),
        h('p', { id: 'delete-reason' }, h('strong', null, 'Delete is unavailable: '), 'a job with an active run cannot be deleted. Cancel the run or wait for it to finish.')),
      actionMessage && inlineAlert('warning', actionMessage),
    ]);
    patch(definitionBox, JSON.stringify([job, hostList.length]), () => definitionList([
      ['Agent type', agentLabel(job.agentType)],
      ['Host', hostName(hostList, job.hostId)],
      ...parameterRows(job.parameters),
      ['Run timeout', formatSeconds(job.timeoutSeconds)],
      ['Queue timeout', formatSeconds(job.queueTimeoutSeconds)],
      ['Retries', job.retry ? retrySummary(job.retry) : h('span', { class: 'muted' }, 'None')],
      ['Version', String(job.version)],
      ['Created', timeEl(job.createdAt)],
      ['Updated', timeEl(job.updatedAt)],
    ]));
    patch(scheduleBox, JSON.stringify([job.schedule, schedule]), scheduleSection);
    // Redrawn when a run changes, and every 10 s while one runs (its bar grows).
    const running = runPage.runs.some((run) => run.status === 'running');
    patch(chartBox, JSON.stringify([runPage.runs, running && Math.floor(Date.now() / 10000)]), () => (runPage.runs.length === 0
      ? emptyState('No runs yet', 'Each run shows here as a bar: its height the duration, its colour the outcome.')
      : durationChart(runPage.runs)));
    const recent = runPage.runs.slice(0, HISTORY_SIZE);
    patch(historyBox, JSON.stringify(recent), () => (recent.length === 0
      ? emptyState('No runs yet', 'Use Run now, or wait for the schedule.')
      : dataTable({
        caption: `Most recent runs of ${job.name}`,
        className: 'table-runs-compact',
        columns: [{ label: 'Run' }, { label: 'Status' }, { label: 'Trigger' }, { label: 'Queued' }, { label: 'Duration' }, { label: 'Version' }],
        rows: recent.map((run) => h('tr', { dataset: { runId: run.id } },
          cell('Run', h('a', { href: runPath(run.id), class: 'mono', 'aria-label': `Run ${run.id}` }, shortId(run.id))),
          cell('Status', statusBadge(run)),
          cell('Trigger', [triggerLabel(run.trigger), run.attempt > 1 && ' ', attemptMarker(run)]),
          cell('Queued', timeEl(run.queuedAt)),
          cell('Duration', runDuration(run)),
          cell('Version', `v${run.jobVersion}`))),
      })));
  }

  function scheduleSection() {
    if (!job.schedule) {
      return emptyState('No schedule', 'This job runs only when triggered. ', h('a', { href: `${jobPath(job.id)}/edit` }, 'Add a schedule'), '.');
    }
    const zone = job.schedule.timezone;
    return [
      definitionList([
        ['When', scheduleDescription(schedule?.description, zone) ?? h('code', null, job.schedule.cron)],
        ['Cron', h('code', null, job.schedule.cron)],
        ['Time zone', zone],
        ['State', job.schedule.paused ? h('span', { class: 'chip chip-warning' }, 'Paused') : 'Active'],
        ['Missed occurrences', job.schedule.missedPolicy === 'skip' ? 'Skipped' : `Latest caught up within ${formatSeconds(job.schedule.catchUpWindowSeconds)}`],
      ]),
      !job.schedule.paused && schedule?.nextFireTimes?.length > 0 && h('div', { class: 'subsection' },
        h('h3', { class: 'subsection-title', id: 'next-fires' }, 'Next fire times'),
        h('ol', { class: 'preview-times', 'aria-labelledby': 'next-fires' }, schedule.nextFireTimes.map((time) =>
          h('li', null, h('time', { datetime: time }, formatInZone(time, zone)), h('span', { class: 'muted small' }, ` · ${relativeTime(time)}`))))),
      h('div', { class: 'subsection' },
        h('h3', { class: 'subsection-title' }, 'Recent occurrences'),
        !schedule || schedule.occurrences.length === 0
          ? h('p', { class: 'muted' }, 'None recorded yet. Each time the schedule comes due, the outcome is listed here.')
          : dataTable({
            caption: 'Recent schedule occurrences',
            className: 'table-occurrences',
            columns: [{ label: 'Scheduled for' }, { label: 'Outcome' }, { label: 'Details' }],
            rows: schedule.occurrences.map((occurrence) => h('tr', null,
              cell('Scheduled for', h('time', { datetime: occurrence.scheduledAt }, formatInZone(occurrence.scheduledAt, zone))),
              cell('Outcome', h('span', { class: `chip chip-${occurrence.outcome}` }, { started: 'Started', skipped: 'Skipped', missed: 'Missed' }[occurrence.outcome] ?? occurrence.outcome)),
              cell('Details', occurrence.runId
                ? h('a', { href: runPath(occurrence.runId), class: 'mono' }, shortId(occurrence.runId))
                : [occurrence.reason ?? '', occurrence.activeRunId ? [' (active run ', h('a', { href: runPath(occurrence.activeRunId), class: 'mono' }, shortId(occurrence.activeRunId)), ')'] : '']))),
          })),
    ];
  }

  let lastStatus = job.lastRun?.status;
  async function refresh() {
    const [nextJob, nextRuns, nextSchedule] = await Promise.all([
      api('GET', path),
      api('GET', '/runs', { query: { jobId, limit: CHART_SIZE } }),
      job.schedule ? api('GET', `${path}/schedule`, { query: { limit: 20 } }).catch(() => schedule) : Promise.resolve(null),
    ]);
    if (ctx.stale) return;
    job = nextJob;
    runPage = nextRuns;
    schedule = nextSchedule;
    if (changes && job.version !== changesVersion) {
      changesVersion = job.version;
      changes = (await loadChanges()) ?? changes;
      if (ctx.stale) return;
    }
    if (job.lastRun && job.lastRun.status !== lastStatus) {
      announce(`Latest run is ${statusLabel(job.lastRun.status).toLowerCase()}.`);
      lastStatus = job.lastRun.status;
    }
    draw();
  }

  draw();
  return startPolling(refresh, 2000, {
    runChanges: true,
    onFeed: (isLive) => live.feed(isLive),
    onSuccess: () => live.ok(),
    onError: (error) => {
      if (error instanceof ApiError && error.status === 404) {
        live.stopped('This job was deleted.');
        actionMessage = 'This job was deleted elsewhere. Its runs stay in the Runs tab.';
      } else {
        live.error(error);
      }
    },
  });
}
