/**
 * What the server hands its connections (settings) and what a handshake hands the transmission phase
 * (the negotiated export): here, so that server, handshake and transmission import them from below
 * instead of from each other.
 */
import type { Logger } from 'pino';
import type { NbdExportProvider, OpenedExport } from './exports.js';
import type { ExportImage } from './image.js';
import type { NbdTlsOptions } from './tls.js';

export interface NbdServerOptions {
  exports: NbdExportProvider;
  logger: Logger;
  /** Aborting closes the server like `close()`. */
  signal?: AbortSignal;
  /** Accept writes into a per-connection copy-on-write overlay, discarded at disconnect (default false: read-only). */
  cow?: boolean;
  /** Directory for the copy-on-write overlay files (default: the OS temp directory). */
  overlayDir?: string;
  /** Largest NBD_CMD_READ/NBD_CMD_WRITE accepted, advertised as the maximum block size (default 32 MiB). */
  maxRequestBytes?: number;
  /** Chunks each connection keeps in its LRU cache (default 8). */
  cacheChunks?: number;
  /** Requests one connection may have in progress at once (default 16). */
  maxInflight?: number;
  /** Bytes of reads and writes one connection may have in progress at once (default 64 MiB). */
  maxInflightBytes?: number;
  /** Clients served at once; more are refused (default 64). */
  maxConnections?: number;
  /** A client that has not entered transmission within this many ms is dropped (default 30000). */
  handshakeTimeoutMs?: number;
  /**
   * On close, how long a client may take to disconnect after its running requests are answered; new
   * requests meanwhile get ESHUTDOWN, which tells a client to disconnect (default 2000 ms).
   */
  shutdownGraceMs?: number;
  /**
   * Require TLS (NBD_OPT_STARTTLS) with these credentials before anything else is negotiated (default:
   * no TLS; STARTTLS is refused).
   */
  tls?: NbdTlsOptions;
}

/** The options with their defaults filled in, as the connections see them. */
export type ServerSettings = Required<Omit<NbdServerOptions, 'signal' | 'overlayDir' | 'tls'>> & {
  overlayDir?: string;
};

/** The ID of base:allocation, the only metadata context; block status replies carry it. */
export const ALLOCATION_CONTEXT_ID = 1;

/** What a client chose in the handshake: the export it entered transmission with, and how to talk. */
export interface Negotiated {
  opened: OpenedExport;
  image: ExportImage;
  /** NBD_OPT_STRUCTURED_REPLY was negotiated. */
  structured: boolean;
  /** base:allocation was selected for this export, so NBD_CMD_BLOCK_STATUS may be used. */
  blockStatus: boolean;
}
