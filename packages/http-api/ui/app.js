// backy's web page: a client of the daemon's JSON API (docs/api.md) with the token the user enters.
// Everything from the API is put into the page as text (textContent), never as markup, and the
// Content-Security-Policy the daemon sends allows no inline script: a hostile job name or failure
// reason shows as the characters it is.

const TOKEN_KEY = 'backy-api-token';
const POLL_MS = 2000;
/** Outcomes that mean the job is not being backed up as it should (docs/scheduler.md). */
const FAILED = new Set(['failed', 'verification-failed', 'copy-failed']);

const $ = (id) => document.getElementById(id);

/** An element with `props` (class, title, …) and children, strings among them as text. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'data') for (const [k, v] of Object.entries(value)) node.dataset[k] = v;
    else node[key] = value;
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    node.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return node;
}

// Formatting --------------------------------------------------------------------------------------

function bytes(n) {
  if (n == null) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

function seconds(s) {
  if (s == null) return '–';
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

const pad = (n) => String(n).padStart(2, '0');

/** Local time as `2026-12-05 14:03:22` (absolute: a row stays as it is while its job does not change). */
function when(iso) {
  if (iso == null) return '–';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

// The API -----------------------------------------------------------------------------------------

class Unauthorized extends Error {}

/** Calls the API relative to the page (`/ui/` → `/v1/…`), so a path prefix of a proxy in front works. */
async function api(path, method = 'GET') {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const response = await fetch(`../v1/${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
    cache: 'no-store',
  });
  if (response.status === 401) {
    const body = await response.json().catch(() => ({}));
    throw new Unauthorized(body.error ?? 'unauthorized');
  }
  const body = await response.json().catch(() => null);
  return { status: response.status, body };
}

// State -------------------------------------------------------------------------------------------

const state = {
  /** `read` or `operator`; null until /v1/whoami answered. */
  role: null,
  /** The job whose revisions are shown. */
  selected: null,
  /** What the shown revisions were read after: the job's newest revision time and state. */
  revisionsKey: null,
  /** Rows by job name, with the JSON they were made from, so an unchanged row is kept as it is. */
  rows: new Map(),
  /** Bumped on sign-out so that a poll still under way stops. */
  session: 0,
  timer: null,
};

// Sign in and out ---------------------------------------------------------------------------------

function showSignIn(message = '') {
  clearTimeout(state.timer);
  state.session++;
  state.role = null;
  state.selected = null;
  state.revisionsKey = null;
  state.rows.clear();
  sessionStorage.removeItem(TOKEN_KEY);
  $('jobs').tBodies[0].replaceChildren();
  $('revisions').hidden = true;
  $('dashboard').hidden = true;
  $('sign-out').hidden = true;
  $('who').textContent = '';
  $('daemon').textContent = '';
  $('sign-in').hidden = false;
  $('sign-in-error').textContent = message;
  $('token').value = '';
  $('token').focus();
}

async function signIn() {
  const session = ++state.session;
  try {
    const who = await api('whoami');
    if (session !== state.session) return;
    // A daemon without /v1/whoami: the token is checked by the first status call; no operator buttons.
    state.role = who.status === 200 ? who.body.role : 'read';
    $('who').textContent = who.status === 200 ? `${who.body.name} (${who.body.role})` : '';
  } catch (error) {
    if (error instanceof Unauthorized) return showSignIn('The daemon refused this token.');
    return showSignIn(`Cannot reach the daemon: ${error.message}`);
  }
  $('sign-in').hidden = true;
  $('dashboard').hidden = false;
  $('sign-out').hidden = false;
  document.body.dataset.role = state.role;
  await poll(session);
}

// Jobs --------------------------------------------------------------------------------------------

function progressCell(progress) {
  const { phase, done, total, rate, eta_seconds: eta } = progress;
  const bar = el('progress', total > 0 ? { max: total, value: done } : {});
  const parts = [`${phase}: ${bytes(done)}${total > 0 ? ` of ${bytes(total)}` : ''}`];
  if (rate > 0) parts.push(`${bytes(rate)}/s`);
  if (eta != null) parts.push(`${seconds(eta)} left`);
  return el('div', { class: 'progress' }, bar, el('span', { class: 'progress-text' }, parts.join(' · ')));
}

function outcomeCell(job) {
  const outcome = job.last_outcome;
  if (outcome == null) return el('td', { class: 'outcome' }, 'no run yet');
  const times = job.consecutive_failures > 1 ? ` ×${job.consecutive_failures}` : '';
  return el(
    'td',
    { class: 'outcome' },
    el('span', { class: FAILED.has(outcome) ? 'badge bad' : 'badge' }, `${outcome}${times}`),
    ' ',
    el('span', { class: 'time' }, when(job.last_run)),
    job.last_reason != null ? el('div', { class: 'reason' }, job.last_reason) : null,
  );
}

function jobRow(job) {
  const failing = FAILED.has(job.last_outcome) || job.history_lost === true;
  const busy = job.status === 'running' || job.status === 'queued' || job.status === 'finishing';
  const name = el('button', { type: 'button', class: 'link', title: 'Show its revisions' }, job.job);
  name.addEventListener('click', () => selectJob(job.job));
  let action = null;
  if (state.role === 'operator') {
    action = el('button', { type: 'button', class: 'run', disabled: busy }, 'Run now');
    action.addEventListener('click', () => runNow(job.job));
  }
  return el(
    'tr',
    {
      class: [failing ? 'failing' : '', job.job === state.selected ? 'selected' : ''].join(' ').trim(),
      data: { job: job.job },
    },
    el('td', { class: 'job' }, name),
    el(
      'td',
      { class: 'state' },
      el('span', { class: 'status' }, job.status),
      job.progress ? progressCell(job.progress) : null,
    ),
    outcomeCell(job),
    el(
      'td',
      { class: job.sla === 'OK' ? 'sla' : 'sla bad' },
      job.sla === 'OK' ? 'OK' : `${job.sla} (${seconds(job.sla_overdue)} over)`,
    ),
    el(
      'td',
      { class: 'newest' },
      job.last_time == null ? 'none' : when(job.last_time),
      job.last_tags ? el('div', { class: 'tags' }, job.last_tags) : null,
      job.last_trust != null && job.last_trust !== 'trusted'
        ? el('div', { class: 'trust' }, job.last_trust)
        : null,
    ),
    el(
      'td',
      { class: 'next' },
      when(job.next_time),
      job.next_tags ? el('div', { class: 'tags' }, job.next_tags) : null,
    ),
    el('td', { class: 'actions' }, action),
  );
}

function showJobs(jobs) {
  const body = $('jobs').tBodies[0];
  const rows = [];
  const seen = new Set();
  for (const job of jobs) {
    // An unchanged row is kept, so that a button is not replaced under the pointer.
    const key = `${JSON.stringify(job)}|${state.role}|${state.selected === job.job}`;
    const cached = state.rows.get(job.job);
    const row = cached?.key === key ? cached.row : jobRow(job);
    state.rows.set(job.job, { key, row });
    seen.add(job.job);
    rows.push(row);
  }
  for (const name of [...state.rows.keys()]) if (!seen.has(name)) state.rows.delete(name);
  body.replaceChildren(...rows);
  if (jobs.length === 0) body.append(el('tr', {}, el('td', { colSpan: 7 }, 'No jobs configured.')));
}

function showSummary(status) {
  const { summary, version } = status;
  const states = Object.entries(summary.states ?? {})
    .filter(([, n]) => n > 0)
    .map(([s, n]) => `${n} ${s}`)
    .join(', ');
  $('summary').textContent =
    `${summary.jobs} jobs${states ? `: ${states}` : ''} · workers ${summary.busyWorkers} of ${summary.workerLimit} busy` +
    ` · updated ${when(new Date().toISOString()).slice(11)}`;
  $('daemon').textContent = version ? `daemon ${version}` : '';
}

async function poll(session) {
  clearTimeout(state.timer);
  try {
    const { status, body } = await api('status');
    if (session !== state.session) return;
    if (status !== 200) throw new Error(body?.error ?? `HTTP ${status}`);
    $('problem').hidden = true;
    showSummary(body);
    showJobs(body.jobs);
    const selected = body.jobs.find((j) => j.job === state.selected);
    // New revisions come with a new newest-revision time or a change of state (a run ended).
    const key = selected == null ? null : `${selected.last_time}|${selected.status}|${selected.last_trust}`;
    if (selected != null && key !== state.revisionsKey) await showRevisions(selected.job, key);
  } catch (error) {
    if (session !== state.session) return;
    if (error instanceof Unauthorized)
      return showSignIn(`The daemon no longer accepts this token: ${error.message}`);
    $('problem').textContent = `Cannot read the daemon's status: ${error.message}`;
    $('problem').hidden = false;
  }
  if (session !== state.session) return;
  // A poll started by a click may end after the timer's: one timer, so one chain of polls.
  clearTimeout(state.timer);
  state.timer = setTimeout(() => poll(session), POLL_MS);
}

async function runNow(job) {
  const session = state.session;
  $('notice').textContent = `Starting ${job}…`;
  try {
    const { status, body } = await api(`jobs/${encodeURIComponent(job)}/run`, 'POST');
    $('notice').textContent =
      status === 202
        ? `${job}: ${body.result}`
        : `${job} not started: ${body?.error ?? body?.result ?? `HTTP ${status}`}`;
  } catch (error) {
    $('notice').textContent = `${job} not started: ${error.message}`;
  }
  if (session === state.session) await poll(session);
}

// Revisions ---------------------------------------------------------------------------------------

async function selectJob(job) {
  state.selected = job;
  state.revisionsKey = null;
  await poll(state.session);
}

async function showRevisions(job, key) {
  const session = state.session;
  $('revisions').hidden = false;
  $('revisions-job').textContent = job;
  const body = $('revisions').querySelector('tbody');
  let answer;
  try {
    answer = await api(`backups/${encodeURIComponent(job)}`);
  } catch (error) {
    if (error instanceof Unauthorized) throw error;
    answer = { status: 0, body: { error: error.message } };
  }
  if (session !== state.session || job !== state.selected) return;
  state.revisionsKey = key;
  const table = $('revisions').querySelector('table');
  if (answer.status !== 200) {
    body.replaceChildren();
    table.hidden = true;
    $('revisions-state').textContent =
      answer.status === 404
        ? 'Revisions not available.'
        : `Revisions not available: ${answer.body?.error ?? `HTTP ${answer.status}`}`;
    return;
  }
  const revisions = [...answer.body.revisions].reverse();
  table.hidden = revisions.length === 0;
  $('revisions-state').textContent = `${revisions.length} revisions, newest first.`;
  body.replaceChildren(
    ...revisions.map((r) =>
      el(
        'tr',
        { class: r.trust === 'distrusted' ? 'failing' : '', data: { uuid: r.uuid } },
        el('td', {}, when(r.timestamp)),
        el('td', { class: 'uuid', title: r.uuid }, r.uuid.slice(0, 8)),
        el('td', { class: 'tags' }, r.tags.join(', ')),
        el('td', { class: r.trust === 'distrusted' ? 'trust bad' : 'trust' }, r.trust),
        el('td', { class: 'num' }, bytes(r.size)),
        el('td', { class: 'num' }, bytes(r.bytes_written)),
        el('td', { class: 'num' }, seconds(r.duration)),
      ),
    ),
  );
}

// Start -------------------------------------------------------------------------------------------

$('sign-in').addEventListener('submit', (event) => {
  event.preventDefault();
  const token = $('token').value.trim();
  if (token === '') return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $('token').value = '';
  $('sign-in-error').textContent = '';
  signIn();
});
$('sign-out').addEventListener('click', () => showSignIn());

if (sessionStorage.getItem(TOKEN_KEY) != null) signIn();
else showSignIn();
