import type { Socket } from 'node:net';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { BackyError } from '@backy/core';

export interface NbdTlsOptions {
  /** The server's certificate chain (PEM); with `key`, clients authenticate the server by it. */
  cert?: string | Buffer;
  /** The private key of `cert` (PEM). */
  key?: string | Buffer;
  /** CA certificates (PEM): when given, a client must present a certificate signed by one of them. */
  ca?: string | Buffer;
  /** Pre-shared keys by identity (user name), as `parsePskKeys` reads them from a `keys.psk` file. */
  psk?: ReadonlyMap<string, Buffer>;
}

/**
 * Reads a PSK file in the format qemu's `tls-creds-psk` (`keys.psk`), nbdkit's `--tls-psk` and
 * GnuTLS's `psktool` share: one `identity:hexkey` per line.
 */
export function parsePskKeys(text: string, file = 'the PSK file'): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '') continue;
    const colon = line.lastIndexOf(':');
    const identity = line.slice(0, colon);
    const hex = line.slice(colon + 1);
    if (colon <= 0 || !/^(?:[0-9a-fA-F]{2})+$/.test(hex)) {
      throw new BackyError('CONFIG_INVALID', `${file}:${i + 1}: expected IDENTITY:HEXKEY`);
    }
    keys.set(identity, Buffer.from(hex, 'hex'));
  }
  if (keys.size === 0) throw new BackyError('CONFIG_INVALID', `${file}: no keys`);
  return keys;
}

// GnuTLS clients (qemu, libnbd) offer these; TLS 1.3 uses a PSK with its SHA-256 suites.
const PSK_CIPHERS = [
  'TLS_AES_256_GCM_SHA384',
  'TLS_AES_128_GCM_SHA256',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-PSK-CHACHA20-POLY1305',
  'DHE-PSK-AES256-GCM-SHA384',
  'DHE-PSK-AES128-GCM-SHA256',
  'PSK-AES256-GCM-SHA384',
  'PSK-AES128-GCM-SHA256',
].join(':');

/** What a client proved in the TLS handshake, for the log. */
export interface TlsPeer {
  protocol: string | null;
  /** The PSK identity, or the subject of the client certificate. */
  identity?: string;
}

/**
 * Turns a plain connection into a TLS session after NBD_OPT_STARTTLS. It hands the socket to a
 * `tls.Server` that never listens, so Node's own server-side checks (client certificates against the
 * CA, PSK lookup) apply exactly as for a TLS listener.
 */
export class TlsUpgrader {
  private readonly server: Server;
  private readonly pending = new Map<
    Socket,
    { resolve: (s: { socket: TLSSocket; peer: TlsPeer }) => void; reject: (e: Error) => void }
  >();
  private readonly pskIdentities = new WeakMap<TLSSocket, string>();
  readonly clientCertificates: boolean;
  readonly psk: boolean;

  constructor(options: NbdTlsOptions) {
    this.psk = options.psk != null;
    this.clientCertificates = options.ca != null;
    if (this.psk === (options.cert != null)) {
      throw new BackyError('USAGE', 'TLS needs either a certificate and key or pre-shared keys (not both)');
    }
    if ((options.cert == null) !== (options.key == null)) {
      throw new BackyError('USAGE', 'a TLS certificate needs its key, and a key its certificate');
    }
    if (options.ca != null && options.cert == null) {
      throw new BackyError('USAGE', 'client certificates (a CA) need a server certificate too');
    }
    const psk = options.psk;
    this.server = createServer(
      psk != null
        ? {
            ciphers: PSK_CIPHERS,
            pskCallback: (socket, identity) => {
              const key = psk.get(identity);
              if (key != null) this.pskIdentities.set(socket, identity);
              return key ?? null;
            },
          }
        : {
            cert: options.cert,
            key: options.key,
            ca: options.ca,
            requestCert: options.ca != null,
            rejectUnauthorized: options.ca != null,
          },
    );
    this.server.on('secureConnection', (socket: TLSSocket) => {
      const raw = (socket as unknown as { _parent: Socket })._parent;
      const waiter = this.pending.get(raw);
      if (waiter == null) {
        socket.destroy();
        return;
      }
      this.pending.delete(raw);
      const peer: TlsPeer = { protocol: socket.getProtocol() };
      const identity = this.pskIdentities.get(socket);
      if (identity != null) peer.identity = identity;
      else if (this.clientCertificates) {
        const subject = socket.getPeerCertificate().subject;
        if (subject?.CN != null) peer.identity = String(subject.CN);
      }
      waiter.resolve({ socket, peer });
    });
    this.server.on('tlsClientError', (error: Error, socket: TLSSocket) => {
      const raw = (socket as unknown as { _parent: Socket })._parent;
      const waiter = this.pending.get(raw);
      this.pending.delete(raw);
      waiter?.reject(new TlsFailed(error.message));
    });
  }

  /** Runs the TLS handshake on `raw`; rejects with TlsFailed when the client fails it. */
  upgrade(raw: Socket): Promise<{ socket: TLSSocket; peer: TlsPeer }> {
    return new Promise((resolve, reject) => {
      const closed = () => {
        if (this.pending.delete(raw)) reject(new TlsFailed('connection closed during the TLS handshake'));
      };
      raw.once('close', closed);
      this.pending.set(raw, {
        resolve: (s) => {
          raw.off('close', closed);
          resolve(s);
        },
        reject: (e) => {
          raw.off('close', closed);
          reject(e);
        },
      });
      this.server.emit('connection', raw);
    });
  }
}

/** The TLS handshake failed (wrong key, untrusted certificate, not TLS at all). */
export class TlsFailed extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TlsFailed';
  }
}
