// Settings → Agents → Access: API tokens (create with a scope, shown once, revoke) and registration
// tokens (create with an expiry, shown once with the command that registers a host, revoke).
// Needs an admin token; anyone else is told so.
import { api, ApiError } from './api.js';
import { h, patch, replace, announce, confirmDialog, copyButton, toast } from './dom.js';
import { plural, timeEl } from './format.js';
import { card, cell, dataTable, emptyState, field, inlineAlert, pageHeader } from './components.js';
import { hostPath } from './host-detail.js';

const SCOPES = [
  ['read', 'Read: list and show hosts, jobs and runs'],
  ['write', 'Write: also create, edit, trigger and cancel'],
  ['admin', 'Admin: also tokens and host credentials'],
];
const LIFETIMES = [[3600, '1 hour'], [86400, '24 hours'], [7 * 86400, '7 days'], [30 * 86400, '30 days']];
const REGISTRATION_STATES = { active: 'Active', used: 'Used', expired: 'Expired', revoked: 'Revoked' };

export async function accessView(ctx) {
  ctx.setTitle('Access');
  const header = pageHeader({ title: 'Access', subtitle: 'API tokens for people and scripts; registration tokens for hosts joining.' });
  let tokens;
  let registrationTokens;
  try {
    [{ tokens }, { registrationTokens }] = await Promise.all([api('GET', '/tokens'), api('GET', '/registration-tokens')]);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 403) throw error;
    if (ctx.stale) return;
    replace(ctx.content, header, inlineAlert('warning',
      h('p', null, h('strong', null, 'Managing tokens needs an admin token. '), error.message),
      h('p', null, 'Sign out and sign in with an admin token, or ask an admin (', h('code', null, 'agentjobs tokens create --scope admin'), ').')));
    return;
  }
  if (ctx.stale) return;

  /** The secret just created, shown once: { kind: 'api' | 'registration', ... }. */
  let created = null;
  const apiBox = h('div');
  const registrationBox = h('div');
  // Not a live region: it would read the secret aloud. What was created is announced in words.
  const createdBox = h('div');

  const name = field({
    id: 'token-name', label: 'Name', hint: 'Who or what uses it, e.g. ci-deploy or alice.',
    control: h('input', { class: 'input', name: 'name', autocomplete: 'off', maxlength: 200, required: true }),
  });
  const scope = field({
    id: 'token-scope', label: 'Scope',
    control: h('select', { class: 'select', name: 'scope', value: 'read' }, SCOPES.map(([value, text]) => h('option', { value }, text))),
  });
  const apiCreate = h('button', { type: 'submit', class: 'btn btn-primary', dataset: { action: 'create-token' } }, 'Create API token');
  const apiForm = h('form', { class: 'form-inline', novalidate: true, 'aria-label': 'Create an API token' }, name.el, scope.el, h('div', { class: 'form-inline-submit' }, apiCreate));
  apiForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    name.setError(null);
    const tokenName = name.control.value.trim();
    if (!tokenName) { name.setError('Enter a name.'); name.control.focus(); return; }
    apiCreate.disabled = true;
    try {
      const answer = await api('POST', '/tokens', { body: { name: tokenName, scope: scope.control.value } });
      created = { kind: 'api', id: answer.token.id, name: answer.token.name, scope: answer.token.scope, secret: answer.secret };
      name.control.value = '';
    } catch (error) {
      if (error instanceof ApiError && error.field === 'name') name.setError(error.fieldMessage);
      else toast(error.message, 'error');
      return;
    } finally {
      apiCreate.disabled = false;
    }
    // The secret is shown before anything else can fail: it cannot be read back later.
    draw();
    announce('API token created. Copy it now; it is shown only this once.');
    await refreshQuietly();
  });

  const lifetime = field({
    id: 'registration-lifetime', label: 'Expires after', hint: 'A registration token registers one host, once.',
    control: h('select', { class: 'select', name: 'expiresInSeconds', value: '86400' }, LIFETIMES.map(([value, text]) => h('option', { value }, text))),
  });
  const registrationCreate = h('button', { type: 'submit', class: 'btn btn-primary', dataset: { action: 'create-registration-token' } }, 'Create registration token');
  const registrationForm = h('form', { class: 'form-inline', novalidate: true, 'aria-label': 'Create a registration token' }, lifetime.el, h('div', { class: 'form-inline-submit' }, registrationCreate));
  registrationForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    registrationCreate.disabled = true;
    try {
      const answer = await api('POST', '/registration-tokens', { body: { expiresInSeconds: Number(lifetime.control.value) } });
      created = { kind: 'registration', id: answer.id, secret: answer.token, expiresAt: answer.expiresAt };
    } catch (error) {
      toast(error.message, 'error');
      return;
    } finally {
      registrationCreate.disabled = false;
    }
    draw();
    announce('Registration token created. Copy it now; it is shown only this once.');
    await refreshQuietly();
  });

  replace(ctx.content,
    header,
    createdBox,
    card('API tokens', [apiForm, apiBox], { id: 'api-tokens' }),
    card('Registration tokens', [registrationForm, registrationBox], { id: 'registration-tokens' }));

  async function revokeToken(token) {
    const confirmed = await confirmDialog({
      title: `Revoke the API token ${token.name}?`,
      body: [h('p', null, 'Every request with it is refused: at once on this control plane, within 5 seconds on other replicas — scripts, the CLI, and this console if you signed in with it.'),
        h('p', null, 'This cannot be undone; create a new token instead.')],
      confirmLabel: 'Revoke token',
      danger: true,
    });
    if (!confirmed) return;
    try {
      await api('DELETE', `/tokens/${encodeURIComponent(token.id)}`);
      toast(['API token ', h('strong', null, token.name), ' revoked.']);
    } catch (error) {
      toast(error.message, 'error');
    }
    if (created?.kind === 'api' && created.id === token.id) created = null;
    await refreshQuietly();
  }

  async function revokeRegistration(token) {
    const confirmed = await confirmDialog({
      title: 'Revoke this registration token?',
      body: h('p', null, 'No host can register with ', h('code', null, token.id), ' from now on. Hosts it already registered keep their own credentials.'),
      confirmLabel: 'Revoke token',
      danger: true,
    });
    if (!confirmed) return;
    try {
      await api('POST', `/registration-tokens/${encodeURIComponent(token.id)}/revoke`);
      toast(['Registration token ', h('code', null, token.id), ' revoked.']);
    } catch (error) {
      toast(error.message, 'error');
    }
    if (created?.kind === 'registration' && created.id === token.id) created = null;
    await refreshQuietly();
  }

  function createdPanel() {
    if (!created) return null;
    const dismiss = h('button', { type: 'button', class: 'btn btn-small btn-ghost', dataset: { action: 'dismiss-secret' }, onclick: () => { created = null; draw(); } }, 'Done, I saved it');
    const secret = h('div', { class: 'secret-row' }, h('code', { class: 'secret', dataset: { secret: created.kind } }, created.secret), copyButton(created.secret, 'Copy the token', { secret: true }));
    if (created.kind === 'api') {
      return inlineAlert('success',
        h('p', null, h('strong', null, `API token ${created.name} (${created.scope}) created. `), 'Copy it now: it is shown only this once and cannot be read back.'),
        secret,
        h('p', { class: 'hint' }, 'Use it as ', h('code', null, 'Authorization: Bearer …'), ', or for the CLI put it in ', h('code', null, '~/.config/agentjobs/config'), ' or ', h('code', null, 'AGENTJOBS_TOKEN'), ' — not on a command line, where ', h('code', null, 'ps'), ' shows it.'),
        dismiss);
    }
    const commands = [
      'read -rs AGENTJOBS_REGISTRATION_TOKEN && export AGENTJOBS_REGISTRATION_TOKEN',
      `agentjobs host register --control-plane ${location.origin} --name "$(hostname)" --agents lineage-plus,external-monitors,datahealth`,
    ].join('\n');
    return inlineAlert('success',
      h('p', null, h('strong', null, 'Registration token created. '), 'It registers one host until ', timeEl(created.expiresAt), '. Copy it now: it is shown only this once.'),
      secret,
      h('p', null, 'On the host, run the first command and paste the token (it is not echoed, and stays out of the shell history and ', h('code', null, 'ps'), '), then register:'),
      h('div', { class: 'command-block' }, h('pre', { class: 'command', dataset: { command: 'register' } }, commands), copyButton(commands, 'Copy the commands')),
      h('p', { class: 'hint' }, 'Then start ', h('code', null, 'agentjobs orchestrate'), ' with the same data dir. Change ', h('code', null, '--agents'), ' to the agent types the host runs.'),
      dismiss);
  }

  function draw() {
    // The signature names the secret by id: the secret itself stays out of attributes.
    patch(createdBox, JSON.stringify(created && [created.kind, created.id]), createdPanel);
    const active = tokens.filter((token) => !token.revokedAt).length;
    patch(apiBox, JSON.stringify(tokens), () => (tokens.length === 0
      ? emptyState('No API tokens', 'Create one above.')
      : [h('p', { class: 'muted small table-note' }, `${plural(active, 'active token')}, ${tokens.length - active} revoked.`),
        dataTable({
          caption: 'API tokens',
          className: 'table-tokens',
          columns: [{ label: 'Name' }, { label: 'Scope' }, { label: 'Created' }, { label: 'State' }, { label: 'Actions', className: 'col-actions' }],
          rows: tokens.map((token) => h('tr', { dataset: { tokenId: token.id } },
            cell('Name', h('div', { class: 'stack' }, h('strong', null, token.name), h('span', { class: 'mono muted small' }, token.id))),
            cell('Scope', h('span', { class: 'chip' }, token.scope)),
            cell('Created', timeEl(token.createdAt)),
            cell('State', token.revokedAt ? h('span', { class: 'muted' }, 'Revoked ', timeEl(token.revokedAt, { relative: true })) : 'Active'),
            cell('Actions', token.revokedAt ? null : h('button', {
              type: 'button', class: 'btn btn-small btn-danger-outline', dataset: { action: 'revoke-token', focusKey: `revoke-${token.id}` },
              'aria-label': `Revoke the API token ${token.name}`, onclick: () => revokeToken(token),
            }, 'Revoke'), 'col-actions'))),
        })]));
    patch(registrationBox, JSON.stringify(registrationTokens), () => (registrationTokens.length === 0
      ? emptyState('No registration tokens', 'Create one to register a host.')
      : dataTable({
        caption: 'Registration tokens, newest first',
        className: 'table-tokens',
        columns: [{ label: 'Token' }, { label: 'State' }, { label: 'Created' }, { label: 'Expires' }, { label: 'Actions', className: 'col-actions' }],
        rows: registrationTokens.map((token) => h('tr', { dataset: { registrationTokenId: token.id, state: token.state } },
          cell('Token', h('span', { class: 'mono' }, token.id)),
          cell('State', h('div', { class: 'stack' },
            h('span', { class: ['chip', token.state !== 'active' && 'chip-muted'] }, REGISTRATION_STATES[token.state] ?? token.state),
            token.usedByHostId && h('span', { class: 'muted small' }, 'registered ', h('a', { href: hostPath(token.usedByHostId), class: 'mono' }, token.usedByHostId)))),
          cell('Created', timeEl(token.createdAt)),
          cell('Expires', timeEl(token.expiresAt, { relative: true })),
          cell('Actions', token.state === 'active' ? h('button', {
            type: 'button', class: 'btn btn-small btn-danger-outline', dataset: { action: 'revoke-registration-token', focusKey: `revoke-${token.id}` },
            'aria-label': `Revoke the registration token ${token.id}`, onclick: () => revokeRegistration(token),
          }, 'Revoke') : null, 'col-actions'))),
      })));
  }

  /** A refresh whose failure is only reported: the page keeps what it shows (a 401 signs out). */
  async function refreshQuietly() {
    try {
      await refresh();
    } catch (error) {
      if (!ctx.stale) toast(`Could not refresh the lists: ${error.message}`, 'error');
    }
  }

  async function refresh() {
    const [next, nextRegistration] = await Promise.all([api('GET', '/tokens'), api('GET', '/registration-tokens')]);
    if (ctx.stale) return;
    tokens = next.tokens;
    registrationTokens = [...nextRegistration.registrationTokens].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
    draw();
  }

  registrationTokens = [...registrationTokens].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  draw();
}
