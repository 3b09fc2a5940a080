import { type ApiConfig, DEFAULT_CENTRAL_CONFIG, loadCentralConfig } from '@backy/core';
import {
  type CheckOptions,
  type CheckResult,
  checkJobs,
  checkStatusFile,
  DEFAULT_CRITICAL_FAILURES,
  type JobStatus,
  NAGIOS,
} from '@backy/scheduler';
import { API_TOKEN_FILE_OPTION, type Command, JSON_OPTION } from '../command.js';
import { centralConfigOption, centralConfigPath, validateJobSources } from './scheduler.js';

export const checkCommand: Command = {
  name: 'check',
  summary:
    'Nagios check of the scheduler (its HTTP API, else its status file): SLA, failed runs, jobs missing',
  usage: `check [-c CONFIG] [--token-file FILE] [--json]   (CONFIG default $BACKY_CONFIG, else ${DEFAULT_CENTRAL_CONFIG})`,
  options: {
    config: centralConfigOption('the central config (its api section, else its status file)'),
    'token-file': API_TOKEN_FILE_OPTION,
    json: JSON_OPTION,
  },
  positionals: [0, 0],
  async run(ctx) {
    const configPath = centralConfigPath(ctx.values.config);
    const report = (result: CheckResult, where: { statusFile?: string; api?: string }) => {
      if (ctx.values.json) ctx.printJson(checkJson(result, where));
      else for (const line of result.lines) ctx.print(line);
      return result.exitCode;
    };
    let statusFile: string;
    let api: ApiConfig | undefined;
    let options: CheckOptions;
    try {
      const loaded = await loadCentralConfig(configPath);
      // As the daemon would reject it: a config the daemon cannot run says so, not "no status file".
      await validateJobSources(loaded);
      statusFile = loaded.statusFile;
      api = loaded.config.api;
      // The daemon's jobs are compared with the config's: a job added without a reload never runs.
      options = {
        configuredJobs: Object.keys(loaded.config.jobs),
        configPath: loaded.path,
        criticalFailures: loaded.config.global['critical-failures'] ?? DEFAULT_CRITICAL_FAILURES,
      };
    } catch (error) {
      // Nagios expects its one line on stdout and UNKNOWN for a check that cannot judge.
      return report({ exitCode: NAGIOS.UNKNOWN, lines: [`UNKNOWN: ${(error as Error).message}`] }, {});
    }
    if (api != null) {
      const { result, url } = await checkThroughApi(
        api,
        ctx.values['token-file'] as string | undefined,
        options,
      );
      return report(result, { api: url });
    }
    return report(await checkStatusFile(statusFile, Date.now(), options), { statusFile });
  },
};

/**
 * The check through the daemon's HTTP API (docs/api.md): its jobs judged as the status file's would be.
 * A daemon that does not answer is CRITICAL (nothing is being backed up); a token it refuses, or none
 * to send, is UNKNOWN (the check cannot judge).
 */
async function checkThroughApi(
  api: ApiConfig,
  tokenFile: string | undefined,
  options: CheckOptions,
): Promise<{ result: CheckResult; url: string }> {
  // Loaded only here: a check of the status file needs no HTTP client.
  const { apiRequest, apiTarget, apiUrl, ApiUnreachable, answerError } = await import('../api-client.js');
  const url = apiUrl(api);
  const unknown = (line: string) => ({
    result: { exitCode: NAGIOS.UNKNOWN, lines: [`UNKNOWN: ${line}`] },
    url,
  });
  const critical = (line: string) => ({
    result: { exitCode: NAGIOS.CRITICAL, lines: [`CRITICAL: ${line}`] },
    url,
  });
  try {
    const target = await apiTarget(api, { role: 'read', tokenFile });
    const answer = await apiRequest(target, 'GET', '/v1/status');
    if (answer.status === 401)
      return unknown(
        `the daemon's HTTP API at ${url} refused the token of ${target.tokenSource}: ${answerError(answer)}`,
      );
    if (answer.status !== 200)
      return critical(`the daemon's HTTP API at ${url} answered ${answerError(answer)}`);
    const jobs = (answer.body as { jobs?: unknown } | null)?.jobs;
    if (!Array.isArray(jobs))
      return critical(`the daemon's HTTP API at ${url} answered without a list of jobs`);
    return { result: checkJobs(jobs as JobStatus[], Date.now(), options), url };
  } catch (error) {
    if (error instanceof ApiUnreachable) return critical(error.message);
    return unknown((error as Error).message);
  }
}

/** The check's result as `--json` prints it (docs/json.md): the Nagios state, its summary line and details. */
function checkJson(result: CheckResult, where: { statusFile?: string; api?: string }) {
  const state = (Object.keys(NAGIOS) as (keyof typeof NAGIOS)[]).find((k) => NAGIOS[k] === result.exitCode);
  return {
    status: state ?? 'UNKNOWN',
    exitCode: result.exitCode,
    summary: result.lines[0] ?? '',
    details: result.lines.slice(1),
    statusFile: where.statusFile ?? null,
    api: where.api ?? null,
  };
}
