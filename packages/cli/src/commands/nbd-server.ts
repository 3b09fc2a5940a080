import { BackyError } from '@backy/core';
import { archiveExports, NbdServer } from '@backy/nbd-server';
import type { Command } from '../command.js';

export const nbdServerCommand: Command = {
  name: 'nbd-server',
  summary: 'serve the revisions over NBD (export name = revision spec) until interrupted',
  usage: 'nbd-server [-H ADDR] [-p PORT] [--cow] [--tmpdir DIR]',
  options: {
    host: {
      type: 'string',
      short: 'H',
      default: '127.0.0.1',
      valueName: 'ADDR',
      description: 'the address to listen on (NBD has no authentication: keep it local)',
    },
    port: {
      type: 'string',
      short: 'p',
      default: '10809',
      valueName: 'PORT',
      description: 'the TCP port (0: any free one)',
    },
    cow: { type: 'boolean', description: 'accept writes into a per-client overlay, discarded at disconnect' },
    tmpdir: {
      type: 'string',
      valueName: 'DIR',
      description: 'where --cow keeps its overlays',
      defaultText: "the system's temporary directory",
      complete: 'dir',
    },
  },
  positionals: [0, 0],
  abortable: true,
  async run(ctx) {
    const port = Number(ctx.values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new BackyError('USAGE', `nbd-server: invalid port ${JSON.stringify(ctx.values.port)}`);
    }
    const host = String(ctx.values.host);
    const cow = ctx.values.cow === true;
    const archive = await ctx.openArchive();
    const revisions = await archive.revisions();
    const server = new NbdServer({
      exports: archiveExports(archive),
      logger: ctx.logger().child({ command: 'nbd-server' }),
      signal: ctx.signal,
      cow,
      overlayDir: ctx.values.tmpdir == null ? undefined : String(ctx.values.tmpdir),
    });
    const address = await server.listen(port, host);
    if (!/^(127\.|::1$|localhost$)/.test(host)) {
      ctx.warn(
        `NBD has no authentication and no encryption here; anyone who can reach ${host}:${address.port} can read these backups`,
      );
    }
    const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    ctx.stderr.write(
      `Serving ${revisions.length} revision${revisions.length === 1 ? '' : 's'} of ${archive.path} on nbd://${shown}:${address.port}/SPEC ` +
        `(${cow ? 'writes go to a per-client overlay, discarded at disconnect' : 'read-only'}), e.g. nbd://${shown}:${address.port}/last. ` +
        'Stop with Ctrl-C.\n',
    );
    await server.closed();
    return 0;
  },
};
