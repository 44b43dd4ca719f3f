// The console's only way to the control plane: the public HTTP API v1 with the signed-in token.

const TOKEN_KEY = 'agentjobs.apiToken';

/** The API token, kept in sessionStorage: per browser tab, gone when the tab closes, never in a URL. */
export const session = {
  get token() {
    try { return sessionStorage.getItem(TOKEN_KEY); } catch { return null; }
  },
  signIn(token) { sessionStorage.setItem(TOKEN_KEY, token); },
  signOut() {
    try { sessionStorage.removeItem(TOKEN_KEY); } catch { /* storage unavailable: nothing kept */ }
  },
};

/** An error answer of the API (`{"error": {"code", "message", "field"?, "activeRunId"?}}`), or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, body) {
    const error = body?.error ?? {};
    super(error.message || (status ? `The control plane answered ${status}.` : 'The control plane could not be reached.'));
    this.name = 'ApiError';
    this.status = status;
    this.code = error.code ?? (status ? 'http_' + status : 'network');
    this.field = error.field ?? null;
    this.activeRunId = error.activeRunId || null;
  }

  /** The message without the `field: ` prefix that validation errors carry. */
  get fieldMessage() {
    if (this.field && this.message.startsWith(`${this.field}: `)) return this.message.slice(this.field.length + 2);
    return this.message;
  }
}

/**
 * Calls the API.
 * @param {string} method
 * @param {string} path below `/api/v1`, e.g. `/jobs`
 * @param {{ body?: any, query?: Record<string, string | number | null | undefined>, token?: string, signal?: AbortSignal }} [options]
 * @returns {Promise<any>} the decoded JSON body (null for 204)
 * @throws {ApiError}
 */
export async function api(method, path, { body, query, token, signal } = {}) {
  const headers = { Accept: 'application/json' };
  const bearer = token ?? session.token;
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(`/api/v1${path}${queryString(query)}`, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal, cache: 'no-store', credentials: 'omit',
    });
  } catch (error) {
    if (error?.name === 'AbortError') throw error;
    throw new ApiError(0, { error: { code: 'network', message: 'The control plane could not be reached. Check that it is running; the page retries on its own.' } });
  }
  if (response.status === 204) return null;
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401 && token === undefined) window.dispatchEvent(new CustomEvent('agentjobs:signed-out', { detail: error }));
    throw error;
  }
  return data;
}

/** `?a=1&b=2` from an object, leaving out empty values. */
export function queryString(query) {
  if (!query) return '';
  // Percent-encoding throughout (a space is %20, never '+'): the API decodes query values as
  // percent-encoded text, so a cron expression like "30 2 * * *" must not arrive as "30+2+*+*+*".
  const parts = [];
  for (const [key, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== '') parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(String(value))}`);
  }
  return parts.length > 0 ? `?${parts.join('&')}` : '';
}

/** How many hosts the console lists at once; a larger fleet is never fetched whole. */
export const HOST_PAGE = 200;

/** The hosts the console knows (views use them to show host names): the first `HOST_PAGE` of the
 *  fleet by name, fetched at most once per `maxAgeMs`, and each host of `ids` not among them,
 *  looked up by id (and kept as long). The list has `complete` set when it holds the whole fleet. */
let hostCache = { at: 0, hosts: [], complete: true };
const hostsById = new Map();
export async function hosts({ maxAgeMs = 10000, ids = [] } = {}) {
  if (Date.now() - hostCache.at > maxAgeMs) {
    const data = await api('GET', '/hosts', { query: { limit: HOST_PAGE } });
    hostCache = { at: Date.now(), hosts: data.hosts, complete: !data.nextCursor };
  }
  const listed = new Set(hostCache.hosts.map((host) => host.id));
  const missing = [...new Set(ids)].filter((id) => id && !listed.has(id)
    && !(hostsById.has(id) && Date.now() - hostsById.get(id).at <= maxAgeMs));
  // A page of runs or jobs names at most a page of hosts; a host that is gone keeps its id.
  await Promise.all(missing.map((id) => api('GET', `/hosts/${encodeURIComponent(id)}`)
    .then((host) => hostsById.set(id, { at: Date.now(), host }), () => hostsById.set(id, { at: Date.now(), host: null }))));
  const looked = [...new Set(ids)].filter((id) => !listed.has(id)).map((id) => hostsById.get(id)?.host).filter(Boolean);
  const list = [...hostCache.hosts, ...looked];
  list.complete = hostCache.complete;
  return list;
}

export function hostName(hostList, hostId) {
  return hostList.find((host) => host.id === hostId)?.name ?? hostId;
}

/** Human description and next fire times of a cron schedule, cached per (cron, zone) for a minute. */
const previewCache = new Map();
export async function schedulePreview(cron, timezone, count = 5) {
  const key = `${cron}\u0000${timezone}\u0000${count}`;
  const cached = previewCache.get(key);
  if (cached && Date.now() - cached.at < 60000) return cached.value;
  const value = await api('GET', '/schedules/preview', { query: { cron, timezone, count } });
  previewCache.set(key, { at: Date.now(), value });
  return value;
}
