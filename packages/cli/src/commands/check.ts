import { DEFAULT_CENTRAL_CONFIG, loadCentralConfig } from '@backy/core';
import {
  type CheckOptions,
  type CheckResult,
  checkStatusFile,
  DEFAULT_CRITICAL_FAILURES,
  NAGIOS,
} from '@backy/scheduler';
import { type Command, JSON_OPTION } from '../command.js';
import { centralConfigOption, centralConfigPath, validateJobSources } from './scheduler.js';

export const checkCommand: Command = {
  name: 'check',
  summary: 'Nagios check of the scheduler status file: SLA, failed runs, jobs missing',
  usage: `check [-c CONFIG] [--json]   (CONFIG default $BACKY_CONFIG, else ${DEFAULT_CENTRAL_CONFIG})`,
  options: {
    config: centralConfigOption('the central config (it names the status file)'),
    json: JSON_OPTION,
  },
  positionals: [0, 0],
  async run(ctx) {
    const configPath = centralConfigPath(ctx.values.config);
    const report = (result: CheckResult, statusFile: string | null) => {
      if (ctx.values.json) ctx.printJson(checkJson(result, statusFile));
      else for (const line of result.lines) ctx.print(line);
      return result.exitCode;
    };
    let statusFile: string;
    let options: CheckOptions;
    try {
      const loaded = await loadCentralConfig(configPath);
      // As the daemon would reject it: a config the daemon cannot run says so, not "no status file".
      await validateJobSources(loaded);
      statusFile = loaded.statusFile;
      // The daemon's jobs are compared with the config's: a job added without a reload never runs.
      options = {
        configuredJobs: Object.keys(loaded.config.jobs),
        configPath: loaded.path,
        criticalFailures: loaded.config.global['critical-failures'] ?? DEFAULT_CRITICAL_FAILURES,
      };
    } catch (error) {
      // Nagios expects its one line on stdout and UNKNOWN for a check that cannot judge.
      return report({ exitCode: NAGIOS.UNKNOWN, lines: [`UNKNOWN: ${(error as Error).message}`] }, null);
    }
    return report(await checkStatusFile(statusFile, Date.now(), options), statusFile);
  },
};

/** The check's result as `--json` prints it (docs/json.md): the Nagios state, its summary line and details. */
function checkJson(result: CheckResult, statusFile: string | null) {
  const state = (Object.keys(NAGIOS) as (keyof typeof NAGIOS)[]).find((k) => NAGIOS[k] === result.exitCode);
  return {
    status: state ?? 'UNKNOWN',
    exitCode: result.exitCode,
    summary: result.lines[0] ?? '',
    details: result.lines.slice(1),
    statusFile,
  };
}
