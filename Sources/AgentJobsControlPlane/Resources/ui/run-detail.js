// A run: status timeline, the definition snapshot it ran with, its error summary (per failed
// connection, with the host log paths) and the command to read the full logs on the host.
import { api, ApiError, hosts as loadHosts, hostName } from './api.js';
import { h, patch, announce, copyButton } from './dom.js';
import {
  agentLabel, formatDateTime, formatSeconds, isActive, isCanceling, parameterRows, requesterLabel, retrySummary, runAttempt, runDuration, statusBadge,
  statusLabel, timeEl, triggerLabel,
} from './format.js';
import { card, definitionList, inlineAlert, liveIndicator, pageHeader, startPolling } from './components.js';
import { cancelRun, jobPath, runAgain, runPath } from './actions.js';

export async function runDetailView(ctx) {
  const runId = ctx.params.runId;
  let [run, hostList] = await Promise.all([api('GET', `/runs/${encodeURIComponent(runId)}`), loadHosts()]);
  // The run's host, when it is not among the hosts the console lists at once.
  if (!hostList.some((host) => host.id === run.hostId)) hostList = await loadHosts({ ids: [run.hostId] });
  // The job may have changed (or be gone) since the run started; the run's own snapshot is what it ran with.
  let job = await api('GET', `/jobs/${encodeURIComponent(run.jobId)}`).catch((error) => (error instanceof ApiError && error.status === 404 ? null : undefined));
  if (ctx.stale) return;
  ctx.setTitle(`Run ${run.id}`);

  let message = null;
  const live = liveIndicator('Live');
  const headerBox = h('div');
  const noteBox = h('div');
  const timelineBox = h('div');
  const summaryBox = h('div');
  const detailsBox = h('div');
  const snapshotBox = h('div');
  const summaryCard = card('Error summary', summaryBox, { id: 'run-error-summary', className: 'card-summary' });

  ctx.content.replaceChildren(
    headerBox,
    noteBox,
    h('div', { class: 'run-grid' },
      h('div', { class: 'run-main' },
        card('Status timeline', timelineBox, { id: 'run-timeline', actions: live.el }),
        summaryCard),
      h('div', { class: 'run-side' },
        card('Details', detailsBox, { id: 'run-details' }),
        card('Definition snapshot', snapshotBox, { id: 'run-snapshot' }))));

  let rerunning = false;
  async function onRunAgain() {
    rerunning = true;
    message = null;
    draw();
    const result = await runAgain(run);
    rerunning = false;
    if (ctx.stale) return;
    if (result.ok) { ctx.navigate(runPath(result.run.id)); return; }
    message = result.message;
    draw();
  }

  async function onCancel() {
    message = null;
    const result = await cancelRun(run);
    if (result && !result.ok) message = result.message;
    if (result?.run) run = result.run;
    draw();
    restartPolling();
  }

  function draw() {
    const canceling = isCanceling(run);
    patch(headerBox, JSON.stringify([run.status, run.cancelRequestedAt, Boolean(job), rerunning]), () => pageHeader({
      crumbs: [['Runs', '/settings/agents/runs'], [run.id]],
      title: ['Run ', h('span', { class: 'mono title-id' }, run.id)],
      badge: statusBadge(run),
      subtitle: [job ? h('a', { href: jobPath(run.jobId) }, run.jobName) : h('span', null, run.jobName, job === null ? ' (job deleted)' : ''),
        ` · ${agentLabel(run.agentType)} on `, h('strong', null, hostName(hostList, run.hostId))],
      actions: isActive(run.status)
        ? h('button', {
          type: 'button', class: 'btn btn-danger-outline', disabled: canceling, dataset: { focusKey: 'cancel', action: 'cancel' }, onclick: onCancel,
        }, canceling ? 'Canceling…' : 'Cancel run')
        // A deleted job has nothing to run again (job === null); unknown (undefined) lets the API say.
        : job !== null && h('button', {
          type: 'button', class: 'btn btn-primary', disabled: rerunning, dataset: { focusKey: 'run-again', action: 'run-again' }, onclick: onRunAgain,
          title: 'Runs the job again with its current definition',
        }, rerunning ? 'Starting…' : 'Run again'),
    }));
    patch(noteBox, JSON.stringify([canceling, message !== null]), () => [
      canceling && inlineAlert('info', h('strong', null, 'Canceling… '), `Cancel requested ${formatDateTime(run.cancelRequestedAt)}. The run ends as “Canceled” once the host confirms the agent stopped.`),
      message && inlineAlert('warning', message),
    ]);
    patch(timelineBox, JSON.stringify(run), () => timeline(run, hostList));
    const hasSummary = Boolean(run.errorSummary) || run.status === 'failed' || run.status === 'timed_out';
    summaryCard.hidden = !hasSummary;
    patch(summaryBox, JSON.stringify([run.errorSummary, run.status]), () => errorSummary(run, hostName(hostList, run.hostId)));
    const chain = runAttempt(run);
    patch(detailsBox, JSON.stringify(run), () => definitionList([
      ['Run id', h('span', { class: 'with-copy' }, h('span', { class: 'mono copy-text' }, run.id), copyButton(run.id, 'Copy run id'))],
      ['Job', job ? h('a', { href: jobPath(run.jobId) }, run.jobName) : [run.jobName, h('span', { class: 'muted' }, job === null ? ' (deleted)' : '')]],
      ['Host', hostName(hostList, run.hostId)],
      ['Trigger', triggerLabel(run.trigger)],
      run.rerunOf && ['Rerun of', h('a', { href: runPath(run.rerunOf), class: 'mono' }, run.rerunOf)],
      chain.maxAttempts > 1 && ['Attempt', `${chain.attempt} of ${chain.maxAttempts}`],
      run.retryOf && ['Retry of', h('a', { href: runPath(run.retryOf), class: 'mono' }, run.retryOf)],
      run.heldUntil && ['Retry due', timeEl(run.heldUntil)],
      run.triggeredBy && ['Triggered by', requesterLabel(run.triggeredBy)],
      run.cancelRequestedBy && ['Cancel asked by', requesterLabel(run.cancelRequestedBy)],
      run.scheduledAt && ['Scheduled for', timeEl(run.scheduledAt)],
      ['Queued', timeEl(run.queuedAt)],
      ['Started', run.startedAt ? timeEl(run.startedAt) : h('span', { class: 'muted' }, isActive(run.status) ? 'not yet' : 'never')],
      ['Finished', run.finishedAt ? timeEl(run.finishedAt) : h('span', { class: 'muted' }, '—')],
      ['Duration', runDuration(run)],
      ['Exit code', run.exitCode === null ? h('span', { class: 'muted' }, '—') : h('code', null, String(run.exitCode))],
      ['Dispatch epoch', String(run.dispatchEpoch)],
    ]));
    patch(snapshotBox, JSON.stringify([run.jobVersion, run.parameters, run.retryPolicy, job?.version]), () => [
      h('p', { class: 'muted small snapshot-note' }, `The definition of job version ${run.jobVersion}, as this run was dispatched with it.`,
        job && job.version !== run.jobVersion ? [' The job has since been edited (now version ', String(job.version), ').'] : ''),
      definitionList([
        ['Agent type', agentLabel(run.agentType)],
        ...parameterRows(run.parameters),
        ['Run timeout', formatSeconds(run.timeoutSeconds)],
        ['Queue timeout', formatSeconds(run.queueTimeoutSeconds)],
        ['Retries', run.retryPolicy ? retrySummary(run.retryPolicy) : h('span', { class: 'muted' }, 'None')],
        ['Job version', String(run.jobVersion)],
      ]),
    ]);
  }

  let lastState = stateOf(run);
  async function refresh() {
    const next = await api('GET', `/runs/${encodeURIComponent(runId)}`);
    if (ctx.stale) return;
    run = next;
    const state = stateOf(run);
    if (state !== lastState) {
      announce(isCanceling(run) ? 'Run is canceling.' : `Run is ${statusLabel(run.status).toLowerCase()}.`);
      lastState = state;
    }
    draw();
    if (!isActive(run.status)) stopPolling();
  }

  let stop = () => {};
  function stopPolling() {
    stop();
    live.stopped(`Final status: ${statusLabel(run.status)}`);
  }
  function restartPolling() {
    stop();
    if (!isActive(run.status)) { stopPolling(); return; }
    stop = startPolling(refresh, 2000, {
      onError: (error) => live.error(error),
      onSuccess: () => { if (isActive(run.status)) live.ok(); },
      runChanges: true,
      onFeed: (isLive) => live.feed(isLive),
    });
  }

  draw();
  restartPolling();
  return () => stop();
}

function stateOf(run) {
  return `${run.status}:${Boolean(run.cancelRequestedAt)}`;
}

/** queued → started → (cancel requested) → terminal, each with its time, as an ordered list. */
function timeline(run, hostList) {
  const host = hostName(hostList, run.hostId);
  const { attempt, maxAttempts } = runAttempt(run);
  const steps = [];
  const origin = `${triggerLabel(run.trigger)} trigger${run.scheduledAt ? `, for the occurrence at ${formatDateTime(run.scheduledAt)}` : ''}${attempt > 1 ? `; retry, attempt ${attempt} of ${maxAttempts}` : ''}`;
  if (run.heldUntil && isActive(run.status)) {
    // A held retry is queued in name only: nothing goes to the host before its delay is over, and its
    // queuedAt is that future time, so the step is current and shows no time of its own.
    steps.push({ state: 'current', label: 'Queued', detail: [`${origin}. Waiting out its retry delay until `, timeEl(run.heldUntil), '.'] });
  } else {
    steps.push({ state: 'done', label: 'Queued', time: run.queuedAt, detail: origin });
  }
  if (run.startedAt) {
    steps.push({ state: 'done', label: 'Started', time: run.startedAt, detail: `The agent was launched on ${host}.` });
  } else if (isActive(run.status)) {
    // For a held retry too: its queuedAt is the end of its delay, where its queue timeout starts.
    const deadline = new Date(new Date(run.queuedAt).getTime() + run.queueTimeoutSeconds * 1000).toISOString();
    if (run.heldUntil) {
      steps.push({ state: 'pending', label: 'Waiting to start', detail: [`Sent to ${host} once the delay is over. Given up (timed out, never launched) if not started by `, timeEl(deadline), '.'] });
    } else {
      // The API explains a queued run that is not starting (host offline, cancel pending, …).
      const detail = run.waitingReason
        ? run.waitingReason
        : [`Waiting for ${host} to start the agent. Given up (timed out, never launched) if not started by `, timeEl(deadline), '.'];
      steps.push({ state: 'current', label: 'Waiting to start', detail });
    }
  } else {
    steps.push({ state: 'skipped', label: 'Never started', detail: 'The run ended before the host launched the agent.' });
  }
  if (run.cancelRequestedAt) {
    steps.push({
      state: isActive(run.status) ? 'current' : 'done', label: 'Cancel requested', time: run.cancelRequestedAt,
      detail: isActive(run.status) ? 'Canceling… waiting for the host to confirm the agent stopped.' : null,
    });
  }
  if (isActive(run.status)) {
    if (run.status === 'running' && !run.cancelRequestedAt) {
      const deadline = new Date(new Date(run.startedAt).getTime() + run.timeoutSeconds * 1000).toISOString();
      steps.push({ state: 'current', label: 'Running', detail: ['Stopped and timed out if still running at ', timeEl(deadline), '.'] });
    }
    steps.push({ state: 'pending', label: 'Finished', detail: 'Succeeded, failed, timed out or canceled.' });
  } else {
    steps.push({
      state: 'done', terminal: run.status, label: statusLabel(run.status), time: run.finishedAt,
      detail: [run.durationMs !== null ? `after ${runDuration(run)}` : null, run.exitCode !== null ? `exit code ${run.exitCode}` : null].filter(Boolean).join(', ') || null,
    });
  }
  return h('ol', { class: 'timeline' }, steps.map((step) => h('li', {
    class: ['timeline-step', `timeline-${step.state}`, step.terminal && `timeline-terminal-${step.terminal}`],
    'aria-current': step.state === 'current' ? 'step' : null,
  },
  h('span', { class: 'timeline-marker', 'aria-hidden': 'true' }),
  h('div', { class: 'timeline-content' },
    h('p', { class: 'timeline-label' }, step.label, step.time ? [' ', h('span', { class: 'timeline-time' }, timeEl(step.time))] : '',
      h('span', { class: 'visually-hidden' }, { done: ' (done)', current: ' (current)', pending: ' (not yet)', skipped: ' (skipped)' }[step.state])),
    step.detail && h('p', { class: 'timeline-detail' }, step.detail)))));
}

const TRUNCATION_LINE = '… [truncated; the full logs are on the host]';

/**
 * Reads an error summary as the orchestrator writes it (see `ErrorSummary` in AgentJobsCore): either
 * per failed connection (`Connection "name" — log on host: path` followed by indented error lines,
 * `  (×n)` for repeats), or the agent's message with an optional `Full output on host: path` line.
 */
export function parseSummary(text) {
  const result = { intro: [], connections: [], other: [], outputPath: null, truncated: false };
  let current = null;
  for (const line of text.split('\n')) {
    if (line === TRUNCATION_LINE) { result.truncated = true; continue; }
    const connection = /^Connection "(.*)" — log on host: (.+)$/.exec(line);
    if (connection) {
      current = { name: connection[1], logPath: connection[2].trim(), lines: [] };
      result.connections.push(current);
      continue;
    }
    const output = /^Full output on host: (.+)$/.exec(line);
    if (output) { result.outputPath = output[1].trim(); continue; }
    if (current && line.startsWith('  ')) {
      const counted = /^(.*?)\s+\(×(\d+)\)$/.exec(line.slice(2));
      current.lines.push(counted ? { text: counted[1], count: Number(counted[2]) } : { text: line.slice(2), count: 1 });
      continue;
    }
    if (current && line.trim() === '') continue;
    (current ? result.other : result.intro).push(line);
  }
  while (result.intro.length > 0 && result.intro[result.intro.length - 1].trim() === '') result.intro.pop();
  return result;
}

function logPathRow(label, path) {
  return h('div', { class: 'log-path' },
    h('span', { class: 'log-path-label' }, `${label}:`),
    h('span', { class: 'mono log-path-value' }, path),
    copyButton(path, 'Copy log path'));
}

function shellQuote(path) {
  return /^[\w./@%+=:,-]+$/.test(path) ? path : `'${path.replaceAll("'", "'\\''")}'`;
}

function errorSummary(run, host) {
  if (!run.errorSummary) {
    if (run.status === 'failed' || run.status === 'timed_out') {
      return h('p', { class: 'muted' }, `The host reported no error summary for this ${statusLabel(run.status).toLowerCase()} run.`);
    }
    return null;
  }
  const parsed = parseSummary(run.errorSummary);
  const logPaths = [...parsed.connections.map((connection) => connection.logPath), parsed.outputPath].filter(Boolean);
  const body = [];
  if (parsed.connections.length > 0) {
    if (parsed.intro.length > 0) body.push(h('p', { class: 'summary-intro' }, parsed.intro.join(' ')));
    body.push(h('ul', { class: 'connections', 'aria-label': 'Failed connections' }, parsed.connections.map((connection) => h('li', { class: 'connection' },
      h('div', { class: 'connection-head' },
        h('h3', { class: 'connection-name' }, h('span', { class: 'connection-icon', 'aria-hidden': 'true' }, '!'), connection.name),
        logPathRow('Log on host', connection.logPath)),
      connection.lines.length === 0
        ? h('p', { class: 'muted small' }, 'No error lines in its log.')
        : h('ol', { class: 'error-lines', 'aria-label': `Top error lines of ${connection.name}` }, connection.lines.map((line) => h('li', null,
          h('code', { class: 'error-line' }, line.text),
          line.count > 1 && h('span', { class: 'count', title: `${line.count} similar lines`, 'aria-label': `${line.count} times` }, `×${line.count}`))))))));
    if (parsed.other.length > 0) body.push(h('pre', { class: 'summary-text' }, parsed.other.join('\n')));
  } else {
    body.push(h('pre', { class: 'summary-text' }, parsed.intro.join('\n')));
    if (parsed.outputPath) body.push(logPathRow('Full output on host', parsed.outputPath));
  }
  if (parsed.truncated) body.push(h('p', { class: 'muted small' }, 'This summary was cut at 4096 bytes; the full logs are on the host.'));

  const commands = logPaths.map((path) => `less +G ${shellQuote(path)}`);
  body.push(h('div', { class: 'logs-howto' },
    h('h3', { class: 'subsection-title' }, 'Full logs'),
    commands.length > 0
      ? [h('p', null, 'The full logs never leave the host. On ', h('strong', null, host), ', run:'),
        h('div', { class: 'command-block' }, h('pre', { class: 'command' }, commands.join('\n')), copyButton(commands.join('\n'), 'Copy commands'))]
      : h('p', null, 'The full logs never leave the host; this summary names no log file. Look on ', h('strong', null, host), ' in the orchestrator’s run log directory for run ', h('code', null, run.id), '.'),
    h('p', { class: 'muted small' }, 'The same summary from any machine: ', h('code', null, `agentjobs runs show ${run.id}`))));
  return body;
}
