// Create / edit a job. The API is the judge of validity: its 422 answers name the field at fault, and
// the message is shown next to that field. The only checks made here are the ones that shape the
// form itself (which hosts can run the chosen agent type, which parameters it takes).
import { api, ApiError, HOST_PAGE, hosts as loadHosts, schedulePreview } from './api.js';
import { h, replace, announce } from './dom.js';
import {
  AGENT_TYPES, BATCH_TYPES, PERSISTENT_TYPES, agentLabel, formatDelay, formatInZone, relativeTime, retryDelays, scheduleDescription,
} from './format.js';
import { field, inlineAlert, pageHeader } from './components.js';
import { jobPath } from './actions.js';

const CRON_PRESETS = [
  ['Every hour', '0 * * * *'],
  ['Daily at 02:30', '30 2 * * *'],
  ['Weekdays at 09:00', '0 9 * * 1-5'],
  ['Mondays at 06:00', '0 6 * * 1'],
];

export async function jobFormView(ctx) {
  const jobId = ctx.params.jobId;
  const editing = Boolean(jobId);
  ctx.setTitle(editing ? 'Edit job' : 'Create job');
  let [hostList, job] = await Promise.all([
    loadHosts({ maxAgeMs: 0 }),
    editing ? api('GET', `/jobs/${encodeURIComponent(jobId)}`) : Promise.resolve(null),
  ]);
  // The job's host, when it is not among the hosts the console lists at once.
  if (job && !hostList.some((host) => host.id === job.hostId)) hostList = await loadHosts({ ids: [job.hostId] });
  if (ctx.stale) return;

  const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  // Values typed for each agent type's parameters survive switching the type back and forth.
  const paramValues = {
    connectorTypes: job?.parameters?.connectorTypes?.join(', ') ?? '',
    connectionName: job?.parameters?.connectionName ?? '',
    fileName: job?.parameters?.fileName ?? '',
  };

  // --- Fields -------------------------------------------------------------------------------------
  const fields = {};
  const add = (key, options) => { fields[key] = field(options); return fields[key]; };

  add('name', {
    id: 'job-name', label: 'Name', hint: 'Shown in lists and run history, e.g. “nightly-lineage”.',
    control: h('input', { class: 'input', type: 'text', name: 'name', autocomplete: 'off', value: job?.name ?? '' }),
  });
  add('agentType', {
    id: 'job-agent-type', label: 'Agent type',
    hint: ['Batch agents only. ', PERSISTENT_TYPES.map(agentLabel).join(', '), ' are persistent agents: they run continuously on their hosts and cannot run as jobs.'],
    control: h('select', { class: 'select', name: 'agentType', value: job?.agentType ?? BATCH_TYPES[0] },
      BATCH_TYPES.map((type) => h('option', { value: type }, `${agentLabel(type)} — ${AGENT_TYPES[type].summary}`))),
  });
  const hostHint = h('div', { class: 'host-hint' });
  add('hostId', {
    id: 'job-host', label: 'Host', hint: hostHint,
    control: h('select', { class: 'select', name: 'hostId' }),
  });
  add('parameters.connectorTypes', {
    id: 'job-connector-types', label: 'Connector types', hint: 'One or more, separated by commas, e.g. “snowflake, bigquery”.',
    control: h('input', { class: 'input mono', type: 'text', name: 'connectorTypes', autocomplete: 'off', spellcheck: 'false' }),
  });
  add('parameters.connectionName', {
    id: 'job-connection-name', label: 'Connection name', optional: true, hint: 'Run for this one connection only; leave empty for all connections of these types.',
    control: h('input', { class: 'input', type: 'text', name: 'connectionName', autocomplete: 'off' }),
  });
  add('parameters.fileName', {
    id: 'job-file-name', label: 'File name', hint: 'The checks file the DataHealth agent reads on the host, e.g. “checks.yaml”.',
    control: h('input', { class: 'input mono', type: 'text', name: 'fileName', autocomplete: 'off', spellcheck: 'false' }),
  });
  const scheduleToggle = h('input', { type: 'checkbox', id: 'job-schedule-enabled', name: 'scheduleEnabled', checked: Boolean(job?.schedule) });
  add('schedule.cron', {
    id: 'job-cron', label: 'Cron expression',
    hint: ['Five fields: minute hour day-of-month month day-of-week, or a macro such as ', h('code', null, '@daily'), '.'],
    control: h('input', { class: 'input mono', type: 'text', name: 'cron', autocomplete: 'off', spellcheck: 'false', placeholder: '30 2 * * *', value: job?.schedule?.cron ?? '' }),
  });
  const zoneList = h('datalist', { id: 'job-timezones' }, timeZones().map((zone) => h('option', { value: zone })));
  add('schedule.timezone', {
    id: 'job-timezone', label: 'Time zone', hint: 'IANA name; fire times follow its daylight-saving changes.',
    control: h('input', { class: 'input', type: 'text', name: 'timezone', list: 'job-timezones', autocomplete: 'off', value: job?.schedule?.timezone ?? browserZone }),
  });
  const pausedBox = h('input', { type: 'checkbox', id: 'job-paused', name: 'paused', checked: Boolean(job?.schedule?.paused) });
  add('schedule.missedPolicy', {
    id: 'job-missed-policy', label: 'Missed occurrences',
    hint: 'What happens to occurrences that could not fire on time (control plane down, schedule paused).',
    control: h('select', { class: 'select', name: 'missedPolicy', value: job?.schedule?.missedPolicy ?? 'latest' },
      h('option', { value: 'latest' }, 'Catch up the most recent one (within the catch-up window)'),
      h('option', { value: 'skip' }, 'Skip them (recorded as missed)')),
  });
  add('schedule.catchUpWindowSeconds', {
    id: 'job-catch-up', label: 'Catch-up window (seconds)',
    control: h('input', { class: 'input', type: 'text', inputmode: 'numeric', name: 'catchUpWindowSeconds', value: String(job?.schedule?.catchUpWindowSeconds ?? 3600) }),
  });
  add('schedule.jitterSeconds', {
    id: 'job-jitter', label: 'Jitter (seconds)', hint: 'Spread the start of many jobs with the same cron by up to this much.',
    control: h('input', { class: 'input', type: 'text', inputmode: 'numeric', name: 'jitterSeconds', value: String(job?.schedule?.jitterSeconds ?? 0) }),
  });
  add('timeoutSeconds', {
    id: 'job-timeout', label: 'Run timeout (seconds)', hint: 'A run still going after this long is stopped and ends as “Timed out”. Default 3600.',
    control: h('input', { class: 'input', type: 'text', inputmode: 'numeric', name: 'timeoutSeconds', value: String(job?.timeoutSeconds ?? 3600) }),
  });
  add('queueTimeoutSeconds', {
    id: 'job-queue-timeout', label: 'Queue timeout (seconds)', hint: 'A run the host has not started after this long is given up (“Timed out”, never launched). Default 600.',
    control: h('input', { class: 'input', type: 'text', inputmode: 'numeric', name: 'queueTimeoutSeconds', value: String(job?.queueTimeoutSeconds ?? 600) }),
  });
  const retry = job?.retry ?? null;
  const retryToggle = h('input', { type: 'checkbox', id: 'job-retry-enabled', name: 'retryEnabled', checked: Boolean(retry) });
  add('retry.maxAttempts', {
    id: 'job-retry-max-attempts', label: 'Max attempts', hint: 'The first run included: 3 means up to two retries. 2 to 10.',
    control: h('input', { class: 'input', type: 'number', inputmode: 'numeric', min: 2, max: 10, step: 1, name: 'maxAttempts', value: String(retry?.maxAttempts ?? 3) }),
  });
  add('retry.initialDelaySeconds', {
    id: 'job-retry-initial-delay', label: 'First delay (seconds)', hint: 'The wait before the first retry. Default 60.',
    control: h('input', { class: 'input', type: 'number', inputmode: 'numeric', min: 0, max: 86400, step: 1, name: 'initialDelaySeconds', value: String(retry?.initialDelaySeconds ?? 60) }),
  });
  add('retry.backoffFactor', {
    id: 'job-retry-backoff', label: 'Backoff factor', hint: 'Each further delay is the previous one times this; 1 keeps it the same. 1 to 10.',
    control: h('input', { class: 'input', type: 'number', inputmode: 'decimal', min: 1, max: 10, step: 0.1, name: 'backoffFactor', value: String(retry?.backoffFactor ?? 2) }),
  });
  add('retry.maxDelaySeconds', {
    id: 'job-retry-max-delay', label: 'Max delay (seconds)', hint: 'No delay is longer than this; at least the first delay. Default 3600.',
    control: h('input', { class: 'input', type: 'number', inputmode: 'numeric', min: 0, max: 86400, step: 1, name: 'maxDelaySeconds', value: String(retry?.maxDelaySeconds ?? 3600) }),
  });
  const retryOnFailed = h('input', { type: 'checkbox', id: 'job-retry-on-failed', name: 'retryOnFailed', checked: retry ? retry.on.includes('failed') : true });
  const retryOnTimedOut = h('input', { type: 'checkbox', id: 'job-retry-on-timed-out', name: 'retryOnTimedOut', checked: retry ? retry.on.includes('timed_out') : true });
  fields['parameters.connectorTypes'].control.value = paramValues.connectorTypes;
  fields['parameters.connectionName'].control.value = paramValues.connectionName;
  fields['parameters.fileName'].control.value = paramValues.fileName;

  const agentSelect = fields.agentType.control;
  const hostSelect = fields.hostId.control;

  // --- Host list follows the agent type ------------------------------------------------------------
  // A fleet larger than the console lists at once (HOST_PAGE) is searched by the start of a host's
  // name instead: the API filters by agent type and name and answers a page with the total.
  const bigFleet = !hostList.complete;
  const hostSearch = h('input', {
    type: 'search', class: 'input host-search', id: 'job-host-search', autocomplete: 'off',
    placeholder: 'Start of a host name', 'aria-label': 'Find a host by the start of its name',
  });
  let chosenHost = hostList.find((host) => host.id === job?.hostId) ?? null;
  let found = null;
  let searchSerial = 0;
  let searchTimer = null;
  async function searchHosts() {
    const serial = ++searchSerial;
    const type = agentSelect.value;
    const prefix = hostSearch.value.trim();
    try {
      const page = await api('GET', '/hosts', { query: { agentType: type, namePrefix: prefix, limit: HOST_PAGE } });
      if (serial !== searchSerial || ctx.stale) return;
      found = { type, prefix, hosts: page.hosts, total: page.total };
      updateHosts();
    } catch (error) {
      if (serial !== searchSerial || ctx.stale) return;
      replace(hostHint, h('span', { class: 'warning-text' }, `Hosts could not be listed: ${error.message}`));
    }
  }
  function updateBigFleetHosts() {
    const type = agentSelect.value;
    const hosts = found?.type === type ? found.hosts : [];
    // The chosen host stays selectable while the search shows others.
    const keep = chosenHost && chosenHost.managedAgents.includes(type) && !hosts.some((host) => host.id === chosenHost.id);
    const eligible = keep ? [chosenHost, ...hosts] : hosts;
    replace(hostSelect,
      eligible.length === 0 && h('option', { value: '' }, found?.type === type ? `No host managing ${agentLabel(type)} matches` : 'Searching…'),
      eligible.map((host) => h('option', { value: host.id }, `${host.name}${host.status === 'online' ? '' : ` (${host.status})`}`)));
    hostSelect.disabled = eligible.length === 0;
    if (chosenHost && eligible.some((host) => host.id === chosenHost.id)) hostSelect.value = chosenHost.id;
    if (found?.type !== type) return;
    const matching = `${found.total} ${found.total === 1 ? 'host manages' : 'hosts manage'} ${agentLabel(type)}${found.prefix ? ` with a name starting “${found.prefix}”` : ''}`;
    replace(hostHint, h('span', null, found.total > hosts.length
      ? `${matching}; the first ${hosts.length} by name are listed. Type the start of a name to find another.`
      : `${matching}.`));
  }
  if (bigFleet) {
    fields.hostId.el.insertBefore(hostSearch, hostSelect);
    hostSearch.addEventListener('input', () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(searchHosts, 250);
    });
    hostSelect.addEventListener('change', () => {
      chosenHost = [...(found?.hosts ?? []), chosenHost].find((host) => host?.id === hostSelect.value) ?? chosenHost;
    });
  }

  function updateHosts({ announceChange = false } = {}) {
    if (bigFleet) {
      if (found?.type !== agentSelect.value) searchHosts();
      updateBigFleetHosts();
      return;
    }
    const type = agentSelect.value;
    const previous = hostSelect.value || job?.hostId || '';
    const eligible = hostList.filter((host) => host.managedAgents.includes(type));
    const missing = hostList.filter((host) => !host.managedAgents.includes(type));
    replace(hostSelect,
      eligible.length === 0 && h('option', { value: '' }, `No host manages ${agentLabel(type)}`),
      eligible.map((host) => h('option', { value: host.id }, `${host.name}${host.status === 'online' ? '' : ` (${host.status})`}`)));
    hostSelect.disabled = eligible.length === 0;
    if (eligible.some((host) => host.id === previous)) hostSelect.value = previous;
    const lost = previous && !eligible.some((host) => host.id === previous) && hostList.find((host) => host.id === previous);
    replace(hostHint,
      eligible.length === 0
        ? h('span', { class: 'warning-text' }, `No registered host manages ${agentLabel(type)}. A host lists the agent types its orchestrator manages when it registers.`)
        : h('span', null, `Hosts whose orchestrator manages ${agentLabel(type)}.`),
      missing.length > 0 && h('span', { class: 'missing-hosts' }, ' Not listed: ',
        missing.slice(0, 5).map((host, index) => [index > 0 && '; ', h('strong', null, host.name), ` — manages ${host.managedAgents.filter((t) => AGENT_TYPES[t]?.kind === 'batch').map(agentLabel).join(', ') || 'no batch agents'}`]),
        missing.length > 5 && `; and ${missing.length - 5} more`, '.'));
    if (announceChange && lost) announce(`Host ${lost.name} does not manage ${agentLabel(type)}; choose another host.`);
  }

  // --- Parameters follow the agent type ------------------------------------------------------------
  const paramsBox = h('div', { class: 'params-fields' });
  const paramsLegend = h('legend', { class: 'fieldset-legend' });
  const paramsError = h('p', { class: 'field-error', id: 'job-parameters-error', hidden: true });
  function updateParams() {
    const type = agentSelect.value;
    paramsLegend.textContent = `${agentLabel(type)} parameters`;
    if (type === 'datahealth') replace(paramsBox, fields['parameters.fileName'].el);
    else replace(paramsBox, fields['parameters.connectorTypes'].el, fields['parameters.connectionName'].el);
  }

  // --- Schedule and its preview --------------------------------------------------------------------
  const previewBox = h('div', { class: 'schedule-preview', id: 'job-schedule-preview', 'aria-live': 'polite' });
  const scheduleFields = h('div', { class: 'schedule-fields', id: 'job-schedule-fields' },
    h('div', { class: 'presets', role: 'group', 'aria-label': 'Common schedules' },
      h('span', { class: 'presets-label', 'aria-hidden': 'true' }, 'Presets:'),
      CRON_PRESETS.map(([label, cron]) => h('button', {
        type: 'button', class: 'btn btn-small btn-ghost', onclick: () => { fields['schedule.cron'].control.value = cron; schedulePreviewSoon(0); },
      }, label))),
    h('div', { class: 'grid-2' }, fields['schedule.cron'].el, fields['schedule.timezone'].el),
    zoneList,
    previewBox,
    h('div', { class: 'checkbox-field' },
      h('div', { class: 'checkbox-row' }, pausedBox, h('label', { for: 'job-paused' }, 'Paused')),
      h('p', { class: 'hint', id: 'job-paused-hint' }, 'A paused schedule fires nothing; the occurrences it passes follow the missed-occurrences rule when it resumes.')));
  pausedBox.setAttribute('aria-describedby', 'job-paused-hint');

  let previewTimer = null;
  let previewSerial = 0;
  function schedulePreviewSoon(delay = 350) {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(updatePreview, delay);
  }
  async function updatePreview() {
    const serial = ++previewSerial;
    const cron = fields['schedule.cron'].control.value.trim();
    const zone = fields['schedule.timezone'].control.value.trim() || 'UTC';
    if (!scheduleToggle.checked) return;
    if (!cron) {
      replace(previewBox, h('p', { class: 'muted' }, 'Enter a cron expression to see the next fire times.'));
      return;
    }
    try {
      const preview = await schedulePreview(cron, zone, 5);
      if (serial !== previewSerial || ctx.stale) return;
      fields['schedule.cron'].setError(null);
      fields['schedule.timezone'].setError(null);
      replace(previewBox,
        h('p', { class: 'preview-description' }, h('strong', null, scheduleDescription(preview.description, zone))),
        h('p', { class: 'preview-label', id: 'job-preview-label' }, 'Next fire times'),
        h('ol', { class: 'preview-times', 'aria-labelledby': 'job-preview-label' }, preview.nextFireTimes.map((time) => h('li', null,
          h('time', { datetime: time }, formatInZone(time, zone)), h('span', { class: 'muted small' }, ` · ${relativeTime(time)}`)))));
    } catch (error) {
      if (serial !== previewSerial || ctx.stale) return;
      if (error instanceof ApiError && error.status === 422) {
        const target = /timezone$/.test(error.field ?? '') ? fields['schedule.timezone'] : fields['schedule.cron'];
        target.setError(error.fieldMessage);
        replace(previewBox, h('p', { class: 'muted' }, 'No preview until the schedule is valid.'));
      } else {
        replace(previewBox, h('p', { class: 'muted' }, `Preview unavailable: ${error.message}`));
      }
    }
  }
  function updateScheduleVisibility() {
    scheduleFields.hidden = !scheduleToggle.checked;
    if (scheduleToggle.checked) schedulePreviewSoon(0);
  }

  // --- Retries and their delays -------------------------------------------------------------------
  const retryOnError = h('p', { class: 'field-error', id: 'job-retry-on-error', hidden: true });
  const retryDelaysHint = h('p', { class: 'hint', id: 'job-retry-delays' });
  const retryFields = h('div', { class: 'retry-fields', id: 'job-retry-fields' },
    h('div', { class: 'grid-2' }, fields['retry.maxAttempts'].el, fields['retry.initialDelaySeconds'].el),
    h('div', { class: 'grid-2' }, fields['retry.backoffFactor'].el, fields['retry.maxDelaySeconds'].el),
    retryDelaysHint,
    h('fieldset', { class: 'fieldset', 'aria-describedby': 'job-retry-on-error job-retry-on-hint' },
      h('legend', { class: 'fieldset-legend' }, 'Retry on'),
      retryOnError,
      h('div', { class: 'checkbox-row' },
        retryOnFailed, h('label', { for: 'job-retry-on-failed' }, 'Failed'),
        retryOnTimedOut, h('label', { for: 'job-retry-on-timed-out' }, 'Timed out')),
      h('p', { class: 'hint', id: 'job-retry-on-hint' }, 'Canceled runs, runs a host rejected and runs given up as host lost are never retried.')));

  /** The delays the policy as typed gives (the API still judges the values on save). */
  function updateRetryDelays() {
    const value = (key) => (fields[key].control.value.trim() === '' ? NaN : Number(fields[key].control.value));
    const policy = {
      maxAttempts: value('retry.maxAttempts'), initialDelaySeconds: value('retry.initialDelaySeconds'),
      backoffFactor: value('retry.backoffFactor'), maxDelaySeconds: value('retry.maxDelaySeconds'),
    };
    // The hint is worked out only within the API's limits (a huge attempt count would be a huge list).
    const inRange = Number.isInteger(policy.maxAttempts) && policy.maxAttempts >= 2 && policy.maxAttempts <= 10
      && Number.isInteger(policy.initialDelaySeconds) && policy.initialDelaySeconds >= 0 && policy.initialDelaySeconds <= 86400
      && policy.backoffFactor >= 1 && policy.backoffFactor <= 10
      && Number.isInteger(policy.maxDelaySeconds) && policy.maxDelaySeconds >= policy.initialDelaySeconds && policy.maxDelaySeconds <= 86400;
    retryDelaysHint.textContent = inRange
      ? `Delays: ${retryDelays(policy).map(formatDelay).join(', ')}.`
      : 'Delays: shown once the values above are within their limits.';
  }
  function updateRetryVisibility() {
    retryFields.hidden = !retryToggle.checked;
  }

  // --- Layout --------------------------------------------------------------------------------------
  const formAlert = h('div', { class: 'form-alert', id: 'job-form-alert' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, editing ? 'Save changes' : 'Create job');
  const cancelLink = h('a', { class: 'btn', href: editing ? jobPath(jobId) : '/settings/agents/jobs' }, 'Cancel');
  const form = h('form', { class: 'form job-form', novalidate: true, 'aria-describedby': 'job-form-alert' },
    formAlert,
    h('section', { class: 'form-section', 'aria-labelledby': 'sec-basics' },
      h('div', { class: 'form-section-head' }, h('h2', { id: 'sec-basics', class: 'form-section-title' }, 'What to run'),
        h('p', { class: 'form-section-lead' }, 'The job’s name and the batch agent it runs.')),
      h('div', { class: 'form-section-body' }, fields.name.el, fields.agentType.el)),
    h('section', { class: 'form-section', 'aria-labelledby': 'sec-host' },
      h('div', { class: 'form-section-head' }, h('h2', { id: 'sec-host', class: 'form-section-title' }, 'Where'),
        h('p', { class: 'form-section-lead' }, 'The host whose orchestrator launches the agent.')),
      h('div', { class: 'form-section-body' }, fields.hostId.el)),
    h('section', { class: 'form-section', 'aria-labelledby': 'sec-params' },
      h('div', { class: 'form-section-head' }, h('h2', { id: 'sec-params', class: 'form-section-title' }, 'Parameters'),
        h('p', { class: 'form-section-lead' }, 'What the agent works on; these fields depend on the agent type.')),
      h('div', { class: 'form-section-body' },
        h('fieldset', { class: 'fieldset', 'aria-describedby': 'job-parameters-error' }, paramsLegend, paramsError, paramsBox))),
    h('section', { class: 'form-section', 'aria-labelledby': 'sec-schedule' },
      h('div', { class: 'form-section-head' }, h('h2', { id: 'sec-schedule', class: 'form-section-title' }, 'When'),
        h('p', { class: 'form-section-lead' }, 'Run now from the console at any time; optionally also on a schedule.')),
      h('div', { class: 'form-section-body' },
        h('div', { class: 'checkbox-row' }, scheduleToggle, h('label', { for: 'job-schedule-enabled' }, 'Run on a schedule')),
        scheduleFields)),
    h('section', { class: 'form-section', 'aria-labelledby': 'sec-limits' },
      h('div', { class: 'form-section-head' }, h('h2', { id: 'sec-limits', class: 'form-section-title' }, 'Limits'),
        h('p', { class: 'form-section-lead' }, 'Deadlines the host enforces, and how the schedule treats missed occurrences.')),
      h('div', { class: 'form-section-body' },
        h('div', { class: 'grid-2' }, fields.timeoutSeconds.el, fields.queueTimeoutSeconds.el),
        h('details', { class: 'advanced', open: Boolean(job?.schedule && (job.schedule.missedPolicy !== 'latest' || job.schedule.jitterSeconds > 0)) },
          h('summary', null, 'Schedule options'),
          fields['schedule.missedPolicy'].el,
          h('div', { class: 'grid-2' }, fields['schedule.catchUpWindowSeconds'].el, fields['schedule.jitterSeconds'].el)))),
    h('section', { class: 'form-section', 'aria-labelledby': 'sec-retries' },
      h('div', { class: 'form-section-head' }, h('h2', { id: 'sec-retries', class: 'form-section-title' }, 'Retries'),
        h('p', { class: 'form-section-lead' }, 'Run a failed or timed-out run again after a delay: each retry is a new run with the same definition and trigger.')),
      h('div', { class: 'form-section-body' },
        h('div', { class: 'checkbox-row' }, retryToggle, h('label', { for: 'job-retry-enabled' }, 'Retry failed runs')),
        retryFields)),
    h('div', { class: 'form-footer' },
      editing && h('p', { class: 'hint' }, `Saving creates version ${job.version + 1}. Runs already started keep the definition they started with.`),
      h('div', { class: 'form-buttons' }, cancelLink, submit)));

  ctx.content.replaceChildren(
    pageHeader({
      crumbs: [['Jobs', '/settings/agents/jobs'], ...(editing ? [[job.name, jobPath(jobId)]] : []), [editing ? 'Edit' : 'Create job']],
      title: editing ? `Edit ${job.name}` : 'Create job',
      subtitle: editing ? `Version ${job.version} · ${agentLabel(job.agentType)}` : 'A job runs a batch agent on a host, now or on a schedule.',
    }),
    form);

  agentSelect.addEventListener('change', () => {
    updateHosts({ announceChange: true });
    updateParams();
    announce(`Parameters for ${agentLabel(agentSelect.value)} shown.`);
  });
  scheduleToggle.addEventListener('change', updateScheduleVisibility);
  retryToggle.addEventListener('change', updateRetryVisibility);
  for (const key of ['retry.maxAttempts', 'retry.initialDelaySeconds', 'retry.backoffFactor', 'retry.maxDelaySeconds']) {
    fields[key].control.addEventListener('input', updateRetryDelays);
  }
  fields['schedule.cron'].control.addEventListener('input', () => schedulePreviewSoon());
  fields['schedule.timezone'].control.addEventListener('input', () => schedulePreviewSoon());
  // Editing a field clears its error: the message described the old value. (Only edits: leaving a
  // field must not hide the message of a value that is still wrong.)
  for (const [key, entry] of Object.entries(fields)) {
    entry.control.addEventListener(entry.control.tagName === 'SELECT' ? 'change' : 'input', () => {
      entry.setError(null);
      if (key.startsWith('parameters') || key === 'agentType') paramsError.hidden = true;
      clearSummaryIfResolved();
    });
  }
  for (const box of [retryOnFailed, retryOnTimedOut]) {
    box.addEventListener('change', () => { retryOnError.hidden = true; clearSummaryIfResolved(); });
  }
  // The summary at the top goes once nothing it pointed at is wrong any more.
  function clearSummaryIfResolved() {
    if (!form.querySelector('.field-invalid') && paramsError.hidden && retryOnError.hidden) formAlert.replaceChildren();
  }
  updateHosts();
  updateParams();
  updateScheduleVisibility();
  updateRetryVisibility();
  updateRetryDelays();

  // --- Submit --------------------------------------------------------------------------------------
  function clearErrors() {
    for (const entry of Object.values(fields)) entry.setError(null);
    paramsError.hidden = true;
    retryOnError.hidden = true;
    formAlert.replaceChildren();
  }

  function buildBody() {
    const type = agentSelect.value;
    const parameters = type === 'datahealth'
      ? { fileName: fields['parameters.fileName'].control.value }
      : {
        connectorTypes: fields['parameters.connectorTypes'].control.value.split(',').map((s) => s.trim()).filter((s) => s.length > 0),
        ...(fields['parameters.connectionName'].control.value.trim() ? { connectionName: fields['parameters.connectionName'].control.value } : {}),
      };
    const body = {
      name: fields.name.control.value,
      hostId: hostSelect.value,
      agentType: type,
      parameters,
      timeoutSeconds: numberOrText(fields.timeoutSeconds.control.value),
      queueTimeoutSeconds: numberOrText(fields.queueTimeoutSeconds.control.value),
    };
    if (scheduleToggle.checked) {
      body.schedule = {
        cron: fields['schedule.cron'].control.value,
        timezone: fields['schedule.timezone'].control.value.trim() || 'UTC',
        paused: pausedBox.checked,
        missedPolicy: fields['schedule.missedPolicy'].control.value,
        catchUpWindowSeconds: numberOrText(fields['schedule.catchUpWindowSeconds'].control.value),
        jitterSeconds: numberOrText(fields['schedule.jitterSeconds'].control.value),
      };
    } else if (editing) {
      body.schedule = null;
    }
    if (retryToggle.checked) {
      // The whole policy, also on an edit: a PATCH object changes the fields it names, and names them all.
      body.retry = {
        maxAttempts: numberOrText(fields['retry.maxAttempts'].control.value),
        initialDelaySeconds: numberOrText(fields['retry.initialDelaySeconds'].control.value),
        backoffFactor: numberOrText(fields['retry.backoffFactor'].control.value, { decimals: true }),
        maxDelaySeconds: numberOrText(fields['retry.maxDelaySeconds'].control.value),
        on: [retryOnFailed.checked && 'failed', retryOnTimedOut.checked && 'timed_out'].filter(Boolean),
      };
    } else if (editing && job.retry) {
      body.retry = null;
    }
    return body;
  }

  /** Shows an API validation error next to its field (or at the top when no field matches). */
  function showFieldError(error) {
    const apiField = error.field ?? '';
    const index = /\[(\d+)\]$/.exec(apiField);
    const key = apiField.replace(/\[\d+\]$/, '');
    let target = fields[key];
    let message = error.fieldMessage;
    if (index && target) {
      const items = target.control.value.split(',').map((s) => s.trim()).filter(Boolean);
      message = `“${items[Number(index[1])] ?? ''}” ${message}`;
    }
    // Errors of a group of controls (the parameters, the retried ends) show above the group.
    const group = target ? null
      : key.startsWith('parameters') ? { error: paramsError, label: 'Parameters', focus: paramsBox.querySelector('input') }
        : key === 'retry.on' ? { error: retryOnError, label: 'Retry on', focus: retryOnFailed }
          : null;
    // The API's words for an empty list name its JSON; here the user has cleared both boxes.
    if (key === 'retry.on' && !retryOnFailed.checked && !retryOnTimedOut.checked) {
      message = 'select Failed, Timed out or both; to stop retrying, clear “Retry failed runs”.';
    }
    if (group) {
      group.error.textContent = message;
      group.error.hidden = false;
    }
    if (!target && key.startsWith('schedule')) target = fields['schedule.cron'];
    if (!target && !group && key.startsWith('retry')) target = fields['retry.maxAttempts'];
    if (target) {
      if (target.el.closest('details')) target.el.closest('details').open = true;
      target.setError(message);
    }
    const label = target?.el.querySelector('label')?.firstChild?.textContent ?? group?.label ?? null;
    const focusTarget = target?.control ?? group?.focus;
    formAlert.replaceChildren(inlineAlert('error',
      h('strong', null, editing ? 'The changes were not saved. ' : 'The job was not created. '),
      label ? [h('a', { href: `#${target?.control.id ?? group?.error.id}`, class: 'alert-link', onclick: (event) => { event.preventDefault(); focusTarget?.focus(); } }, label), `: ${message}`] : error.message));
    (focusTarget ?? paramsBox.querySelector('input') ?? formAlert).focus?.();
  }

  let saving = false;
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (saving) return;
    clearErrors();
    saving = true;
    submit.disabled = true;
    submit.textContent = editing ? 'Saving…' : 'Creating…';
    try {
      const saved = editing
        ? await api('PATCH', `/jobs/${encodeURIComponent(jobId)}`, { body: buildBody() })
        : await api('POST', '/jobs', { body: buildBody() });
      if (ctx.stale) return;
      announce(editing ? `Job ${saved.name} saved as version ${saved.version}.` : `Job ${saved.name} created.`);
      ctx.navigate(jobPath(saved.id), { state: { flash: editing ? `Saved. The next run uses version ${saved.version}.` : 'Job created. Run it now or wait for its schedule.' } });
    } catch (error) {
      if (ctx.stale) return;
      saving = false;
      submit.disabled = false;
      submit.textContent = editing ? 'Save changes' : 'Create job';
      if (error instanceof ApiError && error.status === 422) {
        showFieldError(error);
      } else if (error instanceof ApiError && error.code === 'conflict') {
        formAlert.replaceChildren(inlineAlert('error', h('strong', null, 'Someone else changed this job while you were editing. '),
          'Reload to see the current definition, then make your change again. ', h('a', { href: location.pathname, class: 'alert-link' }, 'Reload')));
        formAlert.querySelector('a')?.focus();
      } else {
        formAlert.replaceChildren(inlineAlert('error', h('strong', null, 'Could not save. '), error.message));
      }
    }
  });

  fields.name.control.focus();
  return () => clearTimeout(previewTimer);
}

/**
 * Whole numbers (and with `decimals`, decimal numbers) go as numbers; anything else goes as typed, so
 * the API names the field and says why.
 */
function numberOrText(text, { decimals = false } = {}) {
  const trimmed = text.trim();
  return (decimals ? /^-?\d+(\.\d+)?$/ : /^-?\d+$/).test(trimmed) ? Number(trimmed) : trimmed;
}

function timeZones() {
  let zones = [];
  try { zones = Intl.supportedValuesOf('timeZone'); } catch { zones = []; }
  return ['UTC', ...zones.filter((zone) => zone !== 'UTC')];
}
