import { BackyError } from '@backy/core/source';

/** Where an NBD export is: `nbd://host[:port]/export` or `nbd+unix:///export?socket=PATH`. */
export type NbdAddress =
  | { transport: 'tcp'; host: string; port: number; exportName: string }
  | { transport: 'unix'; socket: string; exportName: string };

export const DEFAULT_NBD_PORT = 10809;

/** Parses an NBD URI (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/uri.md); TLS is not supported. */
export function parseNbdUrl(url: string): NbdAddress {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new BackyError('USAGE', `NBD URL ${JSON.stringify(url)} is not a URL (nbd://host:port/export)`);
  }
  const exportName = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (u.protocol === 'nbd:') {
    if (u.hostname === '')
      throw new BackyError('USAGE', `NBD URL ${JSON.stringify(url)} names no host (nbd://host:port/export)`);
    const port = u.port === '' ? DEFAULT_NBD_PORT : Number(u.port);
    return { transport: 'tcp', host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port, exportName };
  }
  if (u.protocol === 'nbd+unix:') {
    const socket = u.searchParams.get('socket');
    if (socket == null || socket === '')
      throw new BackyError(
        'USAGE',
        `NBD URL ${JSON.stringify(url)} names no socket (nbd+unix:///export?socket=PATH)`,
      );
    return { transport: 'unix', socket, exportName };
  }
  if (u.protocol === 'nbds:' || u.protocol === 'nbds+unix:')
    throw new BackyError('USAGE', `NBD URL ${JSON.stringify(url)}: TLS (${u.protocol}) is not supported`);
  throw new BackyError(
    'USAGE',
    `NBD URL ${JSON.stringify(url)}: scheme must be nbd: or nbd+unix:, not ${u.protocol}`,
  );
}

export function describeAddress(address: NbdAddress): string {
  const name = encodeURIComponent(address.exportName);
  return address.transport === 'tcp'
    ? `nbd://${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}/${name}`
    : `nbd+unix:///${name}?socket=${address.socket}`;
}
