import { resolve } from 'node:path';
import { DEFAULT_CENTRAL_CONFIG, loadCentralConfig } from '@backy/core';
import { checkStatusFile, NAGIOS } from '@backy/scheduler';
import type { Command } from '../command.js';
import { validateJobSources } from './scheduler.js';

export const checkCommand: Command = {
  name: 'check',
  summary: 'Nagios check of the scheduler status file (SLA of every job)',
  usage: `check [-c CONFIG]   (CONFIG default ${DEFAULT_CENTRAL_CONFIG})`,
  options: { config: { type: 'string', short: 'c' } },
  positionals: [0, 0],
  async run(ctx) {
    const configPath = resolve((ctx.values.config as string | undefined) ?? DEFAULT_CENTRAL_CONFIG);
    let statusFile: string;
    try {
      const loaded = await loadCentralConfig(configPath);
      // As the daemon would reject it: a config the daemon cannot run says so, not "no status file".
      await validateJobSources(loaded);
      statusFile = loaded.statusFile;
    } catch (error) {
      // Nagios expects its one line on stdout and UNKNOWN for a check that cannot judge.
      ctx.print(`UNKNOWN: ${(error as Error).message}`);
      return NAGIOS.UNKNOWN;
    }
    const result = await checkStatusFile(statusFile);
    for (const line of result.lines) ctx.print(line);
    return result.exitCode;
  },
};
