// The console's write actions on runs, shared by the views: Run now, Run again and Cancel.
import { api, ApiError } from './api.js';
import { h, confirmDialog, toast, announce } from './dom.js';
import { isActive, isCanceling, statusLabel, shortId } from './format.js';

/**
 * Triggers a job ("Run now").
 * @returns {Promise<{ ok: true, run: any } | { ok: false, message: any, activeRunId?: string }>}
 *   a refusal is returned, not thrown: a 409 from a race is an expected answer, shown as a message.
 */
export async function runNow(job) {
  try {
    const run = await api('POST', `/jobs/${encodeURIComponent(job.id)}/runs`, { body: { trigger: 'manual' } });
    toast(['Run queued for ', h('strong', null, job.name), '. ', h('a', { href: runPath(run.id) }, 'View run')]);
    return { ok: true, run };
  } catch (error) {
    if (error instanceof ApiError && error.code === 'active_run') {
      const message = ['This job already has an active run',
        error.activeRunId ? [' (', h('a', { href: runPath(error.activeRunId), class: 'mono' }, shortId(error.activeRunId)), ')'] : '',
        ', started a moment ago from elsewhere. A job runs one at a time; wait for that run to finish or cancel it.'];
      announce('Run now refused: this job already has an active run.');
      return { ok: false, message, activeRunId: error.activeRunId };
    }
    if (error instanceof ApiError && error.status === 404) {
      return { ok: false, message: 'This job no longer exists; it was deleted elsewhere.' };
    }
    return { ok: false, message: error.message };
  }
}

/**
 * Runs an ended run's job again ("Run again"): a new run with trigger `rerun` that names this one.
 * @returns {Promise<{ ok: true, run: any } | { ok: false, message: any }>} a refusal is returned, not thrown
 */
export async function runAgain(run) {
  try {
    const next = await api('POST', `/runs/${encodeURIComponent(run.id)}/rerun`);
    toast(['Run queued again for ', h('strong', null, run.jobName), '. ', h('a', { href: runPath(next.id) }, 'View the new run')]);
    return { ok: true, run: next };
  } catch (error) {
    if (error instanceof ApiError && error.code === 'active_run') {
      return { ok: false, message: ['The job already has an active run',
        error.activeRunId ? [' (', h('a', { href: runPath(error.activeRunId), class: 'mono' }, shortId(error.activeRunId)), ')'] : '',
        '. A job runs one at a time; wait for that run to finish or cancel it.'] };
    }
    if (error instanceof ApiError && (error.status === 410 || error.status === 404)) {
      return { ok: false, message: `Cannot run again: ${error.message}.` };
    }
    return { ok: false, message: error.message };
  }
}

/** Why "Run now" is unavailable for a job, or null when it is available. */
export function runNowBlockedReason(job) {
  const last = job.lastRun;
  if (!last || !isActive(last.status)) return null;
  return last.status === 'queued' ? 'A run is queued; a job runs one at a time.' : 'A run is in progress; a job runs one at a time.';
}

/**
 * Asks to cancel a run (after confirmation).
 * @returns {Promise<{ ok: boolean, run?: any, message?: any } | null>} null when the user kept the run
 */
export async function cancelRun(run) {
  const confirmed = await confirmDialog({
    title: 'Cancel this run?',
    body: [
      h('p', null, 'Run ', h('code', null, run.id), ' of ', h('strong', null, run.jobName), ' is ', statusLabel(run.status).toLowerCase(), '.'),
      h('p', null, run.status === 'running'
        ? 'The host stops the agent (SIGTERM, then SIGKILL after the grace period); the run shows “Canceling…” until the host confirms.'
        : 'If the host has not started it yet, it will not start.'),
    ],
    confirmLabel: 'Cancel run',
    danger: true,
  });
  if (!confirmed) return null;
  try {
    const updated = await api('POST', `/runs/${encodeURIComponent(run.id)}/cancel`);
    if (updated.status === 'canceled') toast(['Run ', h('code', null, shortId(run.id)), ' canceled.']);
    else if (isCanceling(updated)) toast(['Cancel requested for ', h('code', null, shortId(run.id)), '. It shows “Canceling…” until the host confirms the agent stopped.'], 'info');
    return { ok: true, run: updated };
  } catch (error) {
    if (error instanceof ApiError && error.code === 'run_finished') {
      return { ok: false, message: `Nothing to cancel: ${error.message}` };
    }
    return { ok: false, message: error.message };
  }
}

export function runPath(runId) {
  return `/settings/agents/runs/${encodeURIComponent(runId)}`;
}

export function jobPath(jobId) {
  return `/settings/agents/jobs/${encodeURIComponent(jobId)}`;
}
