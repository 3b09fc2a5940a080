import { type ApiConfig, type ApiRole, BackyError, formatDuration, loadCentralConfig } from '@backy/core';
import type { JobStatus } from '@backy/scheduler';
import Table from 'cli-table3';
import { API_TOKEN_FILE_OPTION, type Command } from '../command.js';
import { centralConfigOption, centralConfigPath } from './scheduler.js';

// `backy jobs` and `backy run`: the telnet shell's `jobs` and `run` as clients of the daemon's HTTP API
// (docs/api.md), for scripts and for operators who have a token but no shell on the daemon's socket.

const CONFIG_OPTION = centralConfigOption(
  'the central config (its api section says where the daemon listens)',
);

/** What a command needs to talk to the API: the target, and the client's functions. */
async function connect(ctx: Parameters<Command['run']>[0], command: string, role: ApiRole) {
  const loaded = await loadCentralConfig(centralConfigPath(ctx.values.config));
  const api: ApiConfig | undefined = loaded.config.api;
  if (api == null)
    throw new BackyError(
      'CONFIG_INVALID',
      `${loaded.path} has no api section: \`backy ${command}\` talks to the daemon's HTTP API (docs/api.md); without it, use the telnet shell`,
    );
  const client = await import('../api-client.js');
  const target = await client.apiTarget(api, {
    role,
    tokenFile: ctx.values['token-file'] as string | undefined,
  });
  /** One request; no answer at all is an error naming the URL. */
  const request = async (method: 'GET' | 'POST', path: string) => {
    try {
      return await client.apiRequest(target, method, path);
    } catch (error) {
      if (error instanceof client.ApiUnreachable) throw new BackyError('IO', error.message, { cause: error });
      throw error;
    }
  };
  /** The error of an answer the command cannot use: a refused token says which one was sent. */
  const refused = (answer: { status: number; body: unknown }) =>
    new BackyError(
      'CONFIG_INVALID',
      `the daemon's HTTP API at ${target.url} refused the token of ${target.tokenSource}: ${client.answerError(answer)}`,
    );
  return { target, request, refused, answerError: client.answerError };
}

/** `2026-01-05 10:00:00`, or `-`. */
function formatTime(iso: string | null | undefined): string {
  if (iso == null) return '-';
  const date = new Date(iso);
  return Number.isNaN(date.getTime())
    ? iso
    : date
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, '');
}

/** `running (backup 45%, 17s left)` while a backup runs, else the state. */
function formatState(job: JobStatus): string {
  const p = job.progress;
  if (p == null) return job.status;
  const share = p.total > 0 ? ` ${Math.floor((100 * Math.min(p.done, p.total)) / p.total)}%` : '';
  const eta = p.eta_seconds != null ? `, ${formatDuration(p.eta_seconds)} left` : '';
  return `${job.status} (${p.phase}${share}${eta})`;
}

/** The `jobs` table: the shell's columns an operator looks at first, the reason in full. */
export function renderJobs(jobs: readonly JobStatus[]): string {
  const table = new Table({
    head: ['Job', 'State', 'Last Run', 'Reason', 'SLA', 'Next Backup (UTC)'],
    style: { head: [], border: [] },
    chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
  });
  for (const j of jobs) {
    const count = j.consecutive_failures ?? 0;
    const outcome = j.last_outcome == null ? '-' : count > 1 ? `${j.last_outcome} ×${count}` : j.last_outcome;
    table.push([
      j.job,
      formatState(j),
      outcome,
      j.last_outcome != null && j.last_outcome !== 'ok' ? (j.last_reason ?? '-') : '-',
      j.sla_overdue > 0 ? `${j.sla} (${formatDuration(j.sla_overdue)} overdue)` : j.sla,
      `${formatTime(j.next_time)}${j.next_tags != null ? ` ${j.next_tags}` : ''}`,
    ]);
  }
  return `${table.toString()}\n${jobs.length} jobs shown`;
}

export const jobsCommand: Command = {
  name: 'jobs',
  summary:
    "list the scheduler's jobs (through its HTTP API): state, last run and why it failed, SLA, next run",
  usage: "jobs [REGEX] [-c CONFIG] [--token-file FILE]   (REGEX: RE2, as the telnet shell's `jobs`)",
  options: { config: CONFIG_OPTION, 'token-file': API_TOKEN_FILE_OPTION },
  positionals: [0, 1],
  async run(ctx) {
    const api = await connect(ctx, 'jobs', 'read');
    const [pattern] = ctx.positionals;
    const answer = await api.request(
      'GET',
      `/v1/status${pattern != null && pattern !== '' ? `?filter=${encodeURIComponent(pattern)}` : ''}`,
    );
    if (answer.status === 401) throw api.refused(answer);
    if (answer.status === 400)
      throw new BackyError(
        'USAGE',
        `jobs: invalid regular expression ${JSON.stringify(pattern)}: ${api.answerError(answer)}`,
      );
    const jobs = (answer.body as { jobs?: unknown } | null)?.jobs;
    if (answer.status !== 200 || !Array.isArray(jobs))
      throw new BackyError(
        'IO',
        `the daemon's HTTP API at ${api.target.url} answered ${api.answerError(answer)}`,
      );
    ctx.print(renderJobs(jobs as JobStatus[]));
    return 0;
  },
};

export const runJobCommand: Command = {
  name: 'run',
  summary: 'start a job of the scheduler now (through its HTTP API; needs an operator token)',
  usage: 'run JOB [-c CONFIG] [--token-file FILE]',
  options: { config: CONFIG_OPTION, 'token-file': API_TOKEN_FILE_OPTION },
  positionals: [1, 1],
  async run(ctx) {
    const [job] = ctx.positionals as [string];
    const api = await connect(ctx, 'run', 'operator');
    const answer = await api.request('POST', `/v1/jobs/${encodeURIComponent(job)}/run`);
    const result = (answer.body as { result?: unknown } | null)?.result;
    if (answer.status === 202) {
      ctx.print(result === 'queued' ? `${job}: queued, waiting for a free worker` : `${job}: started`);
      return 0;
    }
    if (answer.status === 401) throw api.refused(answer);
    if (answer.status === 404) throw new BackyError('USAGE', `run: unknown job ${JSON.stringify(job)}`);
    // The job runs already: busy, as a locked archive is (exit status 69).
    if (answer.status === 409) throw new BackyError('LOCKED', `run: ${job} is already running`);
    throw new BackyError(
      'IO',
      `run: the daemon's HTTP API at ${api.target.url} answered ${api.answerError(answer)}`,
    );
  },
};
