import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { BackyError, resolveGroup } from '@backy/core';
import { archiveExports, NbdServer, type NbdTlsOptions, parsePskKeys } from '@backy/nbd-server';
import type { Command } from '../command.js';

const DEFAULT_PORT = 10809;

export const nbdServerCommand: Command = {
  name: 'nbd-server',
  summary: 'serve the revisions over NBD (export name = revision spec) until interrupted',
  usage:
    'nbd-server [--socket PATH] [--socket-group GROUP] | [-H ADDR] [-p PORT] (--tls-psk FILE | --tls-cert FILE --tls-key FILE [--tls-ca FILE] | --insecure-tcp) [--cow] [--tmpdir DIR]',
  options: {
    socket: {
      type: 'string',
      valueName: 'PATH',
      description: 'the Unix socket to serve on, mode 0600 (only this user can connect)',
      defaultText: 'nbd.sock in the archive',
      complete: 'file',
    },
    'socket-group': {
      type: 'string',
      valueName: 'GROUP',
      description: 'let this group connect to the socket too (mode 0660)',
    },
    host: {
      type: 'string',
      short: 'H',
      valueName: 'ADDR',
      description: 'serve over TCP on this address (needs TLS or --insecure-tcp)',
      defaultText: '127.0.0.1',
    },
    port: {
      type: 'string',
      short: 'p',
      valueName: 'PORT',
      description: 'serve over TCP on this port, 0: any free one (needs TLS or --insecure-tcp)',
      defaultText: String(DEFAULT_PORT),
    },
    'insecure-tcp': {
      type: 'boolean',
      description: 'serve over TCP without TLS: anyone who can connect can read the backups',
    },
    'tls-psk': {
      type: 'string',
      valueName: 'FILE',
      description: 'require TLS with the pre-shared keys in FILE (IDENTITY:HEXKEY lines, as qemu and nbdkit)',
      complete: 'file',
    },
    'tls-cert': {
      type: 'string',
      valueName: 'FILE',
      description: "require TLS with this certificate (PEM); --tls-key is the certificate's key",
      complete: 'file',
    },
    'tls-key': {
      type: 'string',
      valueName: 'FILE',
      description: 'the key of --tls-cert (PEM)',
      complete: 'file',
    },
    'tls-ca': {
      type: 'string',
      valueName: 'FILE',
      description: 'with --tls-cert: clients must present a certificate signed by this CA (PEM)',
      complete: 'file',
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
    const v = ctx.values;
    const text = (name: string) => (v[name] == null ? undefined : String(v[name]));
    const insecure = v['insecure-tcp'] === true;
    const tcp = v.host != null || v.port != null || insecure;
    const tls = await readTls(text);
    if (tcp && v.socket != null) {
      throw new BackyError(
        'USAGE',
        'nbd-server: --socket and TCP (-H, -p, --insecure-tcp) exclude each other',
      );
    }
    if (tcp && v['socket-group'] != null) {
      throw new BackyError('USAGE', 'nbd-server: --socket-group applies to the Unix socket, not to TCP');
    }
    if (insecure && tls != null) {
      throw new BackyError('USAGE', 'nbd-server: --insecure-tcp contradicts the --tls-* options');
    }
    if (tcp && !insecure && tls == null) {
      throw new BackyError(
        'USAGE',
        'nbd-server: TCP needs TLS (--tls-psk FILE, or --tls-cert FILE --tls-key FILE) or --insecure-tcp; without -H/-p it serves on a Unix socket',
      );
    }
    const port = Number(v.port ?? DEFAULT_PORT);
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new BackyError('USAGE', `nbd-server: invalid port ${JSON.stringify(v.port)}`);
    }
    const host = text('host') ?? '127.0.0.1';
    const group = text('socket-group');
    const gid = group == null ? undefined : await resolveGroup(group);
    const cow = v.cow === true;
    const archive = await ctx.openArchive();
    const revisions = await archive.revisions();
    const server = new NbdServer({
      exports: archiveExports(archive),
      logger: ctx.logger().child({ command: 'nbd-server' }),
      signal: ctx.signal,
      cow,
      overlayDir: text('tmpdir'),
      tls: tls ?? undefined,
    });
    const scheme = tls == null ? 'nbd' : 'nbds';
    let where: string;
    let example: string;
    if (tcp) {
      const address = await server.listen(port, host);
      const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      if (insecure) {
        ctx.warn(
          `NBD over TCP without TLS: anyone who can connect to ${shown}:${address.port} (every local user at least) can read these backups`,
        );
      } else if (tls?.psk == null && tls?.ca == null) {
        ctx.warn(
          `TLS without --tls-ca authenticates only this server: any client that can reach ${shown}:${address.port} can read these backups`,
        );
      }
      where = `${scheme}://${shown}:${address.port}/SPEC`;
      example = `${scheme}://${shown}:${address.port}/last`;
    } else {
      const path = resolve(text('socket') ?? join(archive.path, 'nbd.sock'));
      await server.listenUnix(path, { gid });
      where = `${scheme}+unix:///SPEC?socket=${path}`;
      example = `${scheme}+unix:///last?socket=${path}`;
    }
    const access = tcp
      ? ''
      : group == null
        ? ', only this user can connect'
        : `, this user and group ${group} can connect`;
    ctx.stderr.write(
      `Serving ${revisions.length} revision${revisions.length === 1 ? '' : 's'} of ${archive.path} on ${where} ` +
        `(${cow ? 'writes go to a per-client overlay, discarded at disconnect' : 'read-only'}${access}), e.g. ${example}. ` +
        'Stop with Ctrl-C.\n',
    );
    await server.closed();
    return 0;
  },
};

/** The TLS credentials the options name, or null for none; key files others can read are refused. */
async function readTls(text: (name: string) => string | undefined): Promise<NbdTlsOptions | null> {
  const psk = text('tls-psk');
  const cert = text('tls-cert');
  const key = text('tls-key');
  const ca = text('tls-ca');
  if (psk == null && cert == null && key == null && ca == null) return null;
  if (psk != null && (cert != null || key != null || ca != null)) {
    throw new BackyError(
      'USAGE',
      'nbd-server: --tls-psk and --tls-cert/--tls-key/--tls-ca exclude each other',
    );
  }
  if (psk != null) return { psk: parsePskKeys(await readSecret('--tls-psk', psk), psk) };
  if (cert == null || key == null) {
    throw new BackyError('USAGE', 'nbd-server: --tls-cert and --tls-key go together (--tls-ca needs both)');
  }
  return {
    cert: await readPublic('--tls-cert', cert),
    key: await readSecret('--tls-key', key),
    ca: ca == null ? undefined : await readPublic('--tls-ca', ca),
  };
}

async function readPublic(option: string, file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new BackyError(
      'USAGE',
      `nbd-server: ${option} ${file}: ${(error as NodeJS.ErrnoException).code ?? error}`,
      {
        cause: error,
      },
    );
  }
}

/** Like ssh with a private key: a secret every user can read is no secret, so it is not used. */
async function readSecret(option: string, file: string): Promise<string> {
  const content = await readPublic(option, file);
  const { mode } = await stat(file);
  if ((mode & 0o007) !== 0) {
    throw new BackyError(
      'USAGE',
      `nbd-server: ${option} ${file} is accessible to other users (mode ${(mode & 0o777).toString(8)}); chmod o-rwx it`,
    );
  }
  return content;
}
