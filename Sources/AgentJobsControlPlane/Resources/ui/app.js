// The console's entry point: the page shell, sign-in, and the client-side router.
//
// Paths are real URLs (`/settings/agents/runs?status=failed`), so reloads, bookmarks and shared links
// open the same view; the control plane serves the same shell for every `/settings/...` path.
import { api, ApiError, session } from './api.js';
import { h, replace, announce } from './dom.js';
import { errorPanel } from './components.js';
import { hostsView } from './hosts.js';
import { hostDetailView } from './host-detail.js';
import { jobsView } from './jobs.js';
import { jobFormView } from './job-form.js';
import { jobDetailView } from './job-detail.js';
import { runsView } from './runs.js';
import { runDetailView } from './run-detail.js';
import { accessView } from './access.js';
import { auditView } from './audit.js';

const AGENTS = '/settings/agents';

/** Route table: pattern → view. A view renders into `ctx.content` and may return a cleanup function. */
const routes = [
  { pattern: /^\/settings\/agents\/hosts\/?$/, tab: 'hosts', view: hostsView },
  { pattern: /^\/settings\/agents\/hosts\/([^/]+)\/?$/, tab: 'hosts', view: hostDetailView, names: ['hostId'] },
  { pattern: /^\/settings\/agents\/jobs\/?$/, tab: 'jobs', view: jobsView },
  { pattern: /^\/settings\/agents\/jobs\/new\/?$/, tab: 'jobs', view: jobFormView },
  { pattern: /^\/settings\/agents\/jobs\/([^/]+)\/edit\/?$/, tab: 'jobs', view: jobFormView, names: ['jobId'] },
  { pattern: /^\/settings\/agents\/jobs\/([^/]+)\/?$/, tab: 'jobs', view: jobDetailView, names: ['jobId'] },
  { pattern: /^\/settings\/agents\/runs\/?$/, tab: 'runs', view: runsView },
  { pattern: /^\/settings\/agents\/runs\/([^/]+)\/?$/, tab: 'runs', view: runDetailView, names: ['runId'] },
  { pattern: /^\/settings\/agents\/access\/?$/, tab: 'access', view: accessView },
  { pattern: /^\/settings\/agents\/audit\/?$/, tab: 'audit', view: auditView },
];

const TABS = [
  { id: 'hosts', label: 'Hosts', path: `${AGENTS}/hosts` },
  { id: 'jobs', label: 'Jobs', path: `${AGENTS}/jobs` },
  { id: 'runs', label: 'Runs', path: `${AGENTS}/runs` },
  { id: 'access', label: 'Access', path: `${AGENTS}/access` },
  { id: 'audit', label: 'Audit', path: `${AGENTS}/audit` },
];

const root = document.getElementById('app');
let cleanup = null;
let renderSerial = 0;

/** Goes to `path` inside the console without reloading. */
export function navigate(path, { replace: replaceEntry = false, state = null } = {}) {
  if (replaceEntry) history.replaceState(state, '', path);
  else history.pushState(state, '', path);
  render({ focus: true });
}

function matchRoute(pathname) {
  for (const route of routes) {
    const match = route.pattern.exec(pathname);
    if (match) {
      const params = {};
      (route.names ?? []).forEach((name, index) => { params[name] = decodeURIComponent(match[index + 1]); });
      return { route, params };
    }
  }
  return null;
}

async function render({ focus = false } = {}) {
  const serial = ++renderSerial;
  if (cleanup) { try { cleanup(); } catch { /* a view's cleanup must not stop navigation */ } cleanup = null; }
  if (!session.token) {
    renderSignIn();
    return;
  }
  if (location.pathname === '/' || location.pathname === '/settings' || location.pathname === `${AGENTS}` || location.pathname === `${AGENTS}/`) {
    history.replaceState(null, '', `${AGENTS}/jobs`);
  }
  const found = matchRoute(location.pathname);
  const shell = renderShell(found?.route.tab);
  if (!found) {
    replace(shell.content, notFound());
    finishRender(focus);
    return;
  }
  const ctx = {
    content: shell.content,
    params: found.params,
    query: new URLSearchParams(location.search),
    navigate,
    reload: () => render(),
    setTitle: (title) => { document.title = `${title} · AgentJobs`; },
    /** True once the user navigated elsewhere: async work must stop touching the page. */
    get stale() { return serial !== renderSerial; },
  };
  try {
    const result = await found.route.view(ctx);
    if (serial !== renderSerial) { if (typeof result === 'function') result(); return; }
    cleanup = typeof result === 'function' ? result : null;
  } catch (error) {
    if (serial !== renderSerial) return;
    replace(shell.content, errorPanel(error, { onRetry: () => render() }));
  }
  finishRender(focus);
}

function finishRender(focus) {
  root.removeAttribute('aria-busy');
  if (focus) {
    const heading = root.querySelector('h1');
    if (heading) {
      heading.setAttribute('tabindex', '-1');
      heading.focus({ preventScroll: true });
      window.scrollTo(0, 0);
    }
  }
}

/** The frame around every signed-in page: brand, Settings navigation, the Agents header and its tabs. */
function renderShell(activeTab) {
  const content = h('div', { class: 'page-content', id: 'page-content' });
  const signOut = h('button', { type: 'button', class: 'btn btn-ghost btn-small signout', onclick: () => {
    session.signOut();
    announce('Signed out');
    render({ focus: true });
  } }, 'Sign out');
  const tabs = h('nav', { class: 'tabs', 'aria-label': 'Agents' },
    h('ul', { class: 'tab-list' }, TABS.map((tab) => h('li', null,
      h('a', { href: tab.path, class: ['tab', tab.id === activeTab && 'tab-active'], 'aria-current': tab.id === activeTab ? 'page' : null, dataset: { tab: tab.id } }, tab.label)))));
  replace(root,
    h('header', { class: 'topbar' },
      h('a', { class: 'brand', href: `${AGENTS}/jobs`, 'aria-label': 'AgentJobs home' },
        h('img', { src: '/ui/favicon.svg', alt: '', width: 26, height: 26 }), h('span', null, 'AgentJobs')),
      h('div', { class: 'topbar-spacer' }),
      h('span', { class: 'session-note', title: 'The token is kept in this browser tab only and is forgotten when the tab closes.' }, 'Signed in with an API token'),
      signOut),
    h('div', { class: 'layout' },
      h('nav', { class: 'sidebar', 'aria-label': 'Console' },
        h('p', { class: 'sidebar-heading', id: 'nav-settings' }, 'Settings'),
        h('ul', { class: 'sidebar-list', 'aria-labelledby': 'nav-settings' },
          h('li', null, h('a', { href: `${AGENTS}/jobs`, class: 'sidebar-link sidebar-link-active', 'aria-current': 'true' }, 'Agents'))),
        h('p', { class: 'sidebar-heading', id: 'nav-reference' }, 'Reference'),
        h('ul', { class: 'sidebar-list', 'aria-labelledby': 'nav-reference' },
          h('li', null, h('a', { href: '/api/v1/openapi.json', class: 'sidebar-link', target: '_blank', rel: 'noopener' }, 'HTTP API (OpenAPI)')))),
      h('main', { id: 'main', class: 'main', tabindex: '-1' },
        h('div', { class: 'section-header' },
          h('p', { class: 'eyebrow' }, 'Settings'),
          h('p', { class: 'section-title' }, 'Agents'),
          h('p', { class: 'section-lead' }, 'Hosts run an orchestrator that launches batch agents. Jobs say what to run where and when; every trigger creates a run.')),
        tabs,
        content)));
  return { content };
}

function renderSignIn() {
  document.title = 'Sign in · AgentJobs';
  const input = h('input', { id: 'token', name: 'token', type: 'password', class: 'input', autocomplete: 'off', spellcheck: 'false', required: true, 'aria-describedby': 'token-hint' });
  const error = h('p', { id: 'token-error', class: 'field-error', hidden: true });
  const button = h('button', { type: 'submit', class: 'btn btn-primary btn-block' }, 'Sign in');
  const form = h('form', { class: 'signin-form', novalidate: true },
    h('div', { class: 'field' },
      h('label', { for: 'token', class: 'label' }, 'API token'),
      input,
      error,
      h('p', { id: 'token-hint', class: 'hint' },
        'Running ', h('code', null, 'agentjobs dev'), '? The admin token is in ', h('code', null, '<data dir>/admin-token'),
        ' (', h('code', null, '.agentjobs/admin-token'), ' by default). Create more with ', h('code', null, 'agentjobs tokens create'), '.')),
    button,
    h('p', { class: 'hint center' }, 'The token stays in this browser tab and is forgotten when you close it.'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    const fail = (message) => {
      error.textContent = message;
      error.hidden = false;
      input.setAttribute('aria-invalid', 'true');
      input.setAttribute('aria-describedby', 'token-error token-hint');
      input.focus();
    };
    if (!token) return fail('Enter an API token.');
    button.disabled = true;
    button.textContent = 'Signing in…';
    try {
      await api('GET', '/hosts', { token });
      session.signIn(token);
      announce('Signed in');
      render({ focus: true });
    } catch (err) {
      button.disabled = false;
      button.textContent = 'Sign in';
      if (err instanceof ApiError && err.status === 401) fail('This token is not valid (unknown or revoked). Check it and try again.');
      else if (err instanceof ApiError && err.status === 403) fail(err.message);
      else fail(err.message);
    }
  });
  replace(root,
    h('main', { id: 'main', class: 'signin' },
      h('div', { class: 'signin-card' },
        h('div', { class: 'signin-brand' }, h('img', { src: '/ui/favicon.svg', alt: '', width: 40, height: 40 }), h('span', null, 'AgentJobs')),
        h('h1', { class: 'signin-title' }, 'Sign in to the console'),
        form)));
  root.removeAttribute('aria-busy');
  input.focus();
}

function notFound() {
  return h('div', { class: 'empty-state' },
    h('h1', { class: 'page-title' }, 'Page not found'),
    h('p', null, 'There is nothing at this address. ', h('a', { href: `${AGENTS}/jobs` }, 'Go to Jobs'), '.'));
}


// Same-origin links navigate inside the console (modifier-clicks and new-tab links behave normally).
document.addEventListener('click', (event) => {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest?.('a[href]');
  if (!link || link.target || link.hasAttribute('download')) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !(url.pathname === '/' || url.pathname.startsWith('/settings'))) return;
  event.preventDefault();
  if (url.pathname + url.search === location.pathname + location.search) return;
  navigate(url.pathname + url.search);
});

window.addEventListener('popstate', () => render({ focus: true }));
window.addEventListener('agentjobs:signed-out', () => {
  if (!session.token) return;
  session.signOut();
  render({ focus: true });
  announce('Your token is no longer accepted; sign in again.');
});

render();
