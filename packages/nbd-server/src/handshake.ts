import { isBackyError } from '@backy/core';
import {
  BASE_ALLOCATION,
  decodeInfoRequest,
  decodeMetaContextRequest,
  decodeOptionHeader,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoString,
  encodeMetaContextReply,
  encodeOptionReply,
  encodeServerReply,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  INFO,
  MAX_STRING,
  OPT,
  OptionSyntaxError,
  optionName,
  ProtocolViolation,
  REP,
  TF,
} from '@backy/nbd-protocol';
import type { Logger } from 'pino';
import type { NbdExportInfo } from './exports.js';
import { ExportImage } from './image.js';
import { ConnectionClosed, type SocketReader } from './socket-reader.js';
import type { SocketWriter } from './socket-writer.js';
import { ALLOCATION_CONTEXT_ID, type Negotiated, type ServerSettings } from './types.js';

/** Option data beyond this is skipped and refused with NBD_REP_ERR_TOO_BIG; far beyond it, dropped. */
const MAX_OPTION_BYTES = 64 * 1024;
const MAX_SKIPPED_OPTION_BYTES = 16 * 1024 * 1024;
/**
 * The fixed newstyle handshake of one connection: greeting, client flags, then option haggling until the
 * client enters transmission (NBD_OPT_GO, NBD_OPT_EXPORT_NAME) or leaves.
 */
export class Handshake {
  private structured = false;
  private noZeroes = false;
  /** The export name the last NBD_OPT_SET_META_CONTEXT selected base:allocation for, if any. */
  private allocationFor: string | null = null;
  /** The export this handshake opened; whoever runs the connection releases it, also after an error. */
  attached: Negotiated | null = null;

  /** TLS is in place (after NBD_OPT_STARTTLS). */
  private tlsActive = false;

  constructor(
    /** The connection's reader and writer; NBD_OPT_STARTTLS replaces them by ones over TLS. */
    private readonly io: { reader: SocketReader; writer: SocketWriter },
    private readonly settings: ServerSettings,
    private readonly log: Logger,
    /** True once the server is shutting down: options are then refused with NBD_REP_ERR_SHUTDOWN. */
    private readonly stopping: () => boolean,
    /**
     * Runs the TLS handshake over the connection (after the ACK of NBD_OPT_STARTTLS was sent) and
     * swaps `io`; null when the server has no TLS configured.
     */
    private readonly startTls: (() => Promise<void>) | null = null,
  ) {}

  /** Resolves with the export to serve, or null when the client aborted or asked for an unknown name. */
  async run(): Promise<Negotiated | null> {
    this.io.writer.write(encodeGreeting(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES));
    const clientFlags = (await this.io.reader.read(4)).readUInt32BE(0);
    if ((clientFlags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) !== 0) {
      throw new ProtocolViolation(`unknown client flags 0x${clientFlags.toString(16)}`);
    }
    this.noZeroes = (clientFlags & FLAG_C_NO_ZEROES) !== 0;
    return this.negotiate();
  }

  private async negotiate(): Promise<Negotiated | null> {
    for (;;) {
      const header = decodeOptionHeader(await this.io.reader.read(16));
      if (header.magic !== IHAVEOPT) throw new ProtocolViolation('bad option magic');
      const { option, length } = header;
      if (length > MAX_OPTION_BYTES) {
        if (length > MAX_SKIPPED_OPTION_BYTES) throw new ProtocolViolation(`option of ${length} bytes`);
        await this.io.reader.skip(length);
        this.replyError(option, REP.ERR_TOO_BIG, `option data of ${length} bytes is too large`);
        continue;
      }
      const data = await this.io.reader.read(length);
      this.log.debug({ option: optionName(option), length }, 'option');
      if (this.stopping() && option !== OPT.ABORT) {
        if (option === OPT.EXPORT_NAME) throw new ConnectionClosed('server shutting down');
        this.replyError(option, REP.ERR_SHUTDOWN, 'the server is shutting down');
        continue;
      }
      // With TLS configured nothing but STARTTLS is answered in the clear (proto.md, "FORCEDTLS"): no
      // export list, no sizes, no data.
      if (this.startTls != null && !this.tlsActive && option !== OPT.STARTTLS && option !== OPT.ABORT) {
        if (option === OPT.EXPORT_NAME) {
          this.log.warn('client asked for an export without TLS, which is required; closing');
          return null;
        }
        this.replyError(option, REP.ERR_TLS_REQD, 'TLS is required: negotiate NBD_OPT_STARTTLS first');
        continue;
      }
      try {
        switch (option) {
          case OPT.EXPORT_NAME:
            return await this.exportName(data);
          case OPT.ABORT:
            this.reply(option, REP.ACK);
            this.io.writer.end();
            return null;
          case OPT.LIST:
            await this.listExports(option, length);
            break;
          case OPT.STRUCTURED_REPLY:
            if (length !== 0) throw new OptionSyntaxError('NBD_OPT_STRUCTURED_REPLY takes no data');
            this.structured = true;
            this.reply(option, REP.ACK);
            break;
          case OPT.INFO:
          case OPT.GO: {
            const attached = await this.infoOrGo(option, data);
            if (attached != null) return attached;
            break;
          }
          case OPT.LIST_META_CONTEXT:
          case OPT.SET_META_CONTEXT:
            await this.metaContext(option, data);
            break;
          case OPT.STARTTLS:
            await this.startTlsOption(option, length);
            break;
          default:
            this.replyError(option, REP.ERR_UNSUP, `${optionName(option)} is not supported`);
        }
      } catch (error) {
        if (error instanceof OptionSyntaxError) {
          this.replyError(option, REP.ERR_INVALID, `${optionName(option)}: ${error.message}`);
          continue;
        }
        throw error;
      }
    }
  }

  /** NBD_OPT_EXPORT_NAME: the export, or null (it cannot report an error: an unknown name ends the session). */
  private async exportName(data: Buffer): Promise<Negotiated | null> {
    if (data.length > MAX_STRING) throw new ProtocolViolation('export name too long');
    const name = data.toString('utf8');
    const attached = await this.openExport(name).catch((error) => {
      this.log.info({ export: name, reason: (error as Error).message }, 'unknown export requested; closing');
      return null;
    });
    if (attached == null) return null;
    this.io.writer.write(
      encodeExportNameReply(attached.opened.size, this.transmissionFlags(), this.noZeroes),
    );
    return attached;
  }

  private async listExports(option: number, length: number): Promise<void> {
    if (length !== 0) throw new OptionSyntaxError('NBD_OPT_LIST takes no data');
    let exports: NbdExportInfo[];
    try {
      exports = await this.settings.exports.list();
    } catch (error) {
      this.log.warn({ err: error }, 'listing exports failed');
      this.replyError(option, REP.ERR_POLICY, `cannot list revisions: ${(error as Error).message}`);
      return;
    }
    for (const e of exports) this.reply(option, REP.SERVER, encodeServerReply(e.name, e.description));
    this.reply(option, REP.ACK);
  }

  /** NBD_OPT_INFO and NBD_OPT_GO: the export's facts; for GO the opened export (null: go on negotiating). */
  private async infoOrGo(option: number, data: Buffer): Promise<Negotiated | null> {
    const request = decodeInfoRequest(data);
    const go = option === OPT.GO;
    let info: NbdExportInfo;
    let attached: Negotiated | null = null;
    try {
      if (go) {
        attached = await this.openExport(request.name);
        info = attached.opened;
      } else {
        info = await this.settings.exports.describe(request.name);
      }
    } catch (error) {
      this.replyExportError(option, request.name, error);
      return null;
    }
    this.reply(option, REP.INFO, encodeInfoExport(info.size, this.transmissionFlags()));
    if (request.requests.includes(INFO.NAME))
      this.reply(option, REP.INFO, encodeInfoString(INFO.NAME, info.name));
    if (request.requests.includes(INFO.DESCRIPTION)) {
      this.reply(option, REP.INFO, encodeInfoString(INFO.DESCRIPTION, info.description));
    }
    if (request.requests.includes(INFO.BLOCK_SIZE)) {
      this.reply(option, REP.INFO, encodeInfoBlockSize(1, 4096, this.settings.maxRequestBytes));
    }
    this.reply(option, REP.ACK);
    return go ? attached : null;
  }

  /** NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT: only `base:allocation` is offered. */
  private async metaContext(option: number, data: Buffer): Promise<void> {
    if (!this.structured) {
      this.replyError(option, REP.ERR_INVALID, 'negotiate NBD_OPT_STRUCTURED_REPLY first');
      return;
    }
    const set = option === OPT.SET_META_CONTEXT;
    const request = decodeMetaContextRequest(data);
    if (set) this.allocationFor = null;
    try {
      await this.settings.exports.describe(request.name);
    } catch (error) {
      this.replyExportError(option, request.name, error);
      return;
    }
    const wanted = set
      ? request.queries.includes(BASE_ALLOCATION)
      : request.queries.length === 0 || request.queries.some((q) => q === 'base:' || q === BASE_ALLOCATION);
    if (wanted) {
      this.reply(
        option,
        REP.META_CONTEXT,
        encodeMetaContextReply(set ? ALLOCATION_CONTEXT_ID : 0, BASE_ALLOCATION),
      );
      if (set) this.allocationFor = request.name;
    }
    this.reply(option, REP.ACK);
  }

  private async startTlsOption(option: number, length: number): Promise<void> {
    if (length !== 0) throw new OptionSyntaxError('NBD_OPT_STARTTLS takes no data');
    if (this.startTls == null) {
      this.replyError(option, REP.ERR_POLICY, 'TLS is not configured on this server');
    } else if (this.tlsActive) {
      this.replyError(option, REP.ERR_INVALID, 'TLS is already active');
    } else {
      this.reply(option, REP.ACK);
      await this.startTls();
      this.tlsActive = true;
    }
  }

  private async openExport(name: string): Promise<Negotiated> {
    const opened = await this.settings.exports.open(name);
    let image: ExportImage;
    try {
      image = await ExportImage.open(opened.reader, {
        cacheChunks: this.settings.cacheChunks,
        cow: this.settings.cow,
        overlayDir: this.settings.overlayDir,
      });
    } catch (error) {
      await opened.release().catch(() => {});
      throw error;
    }
    this.attached = {
      opened,
      image,
      structured: this.structured,
      blockStatus: this.structured && this.allocationFor === name,
    };
    this.log.info({ export: opened.name, requested: name, cow: this.settings.cow }, 'NBD client attached');
    return this.attached;
  }

  private replyExportError(option: number, name: string, error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    if (isBackyError(error, 'REVISION_NOT_FOUND') || isBackyError(error, 'REVISION_AMBIGUOUS')) {
      this.log.info({ export: name, reason: message }, 'unknown export requested');
      this.replyError(option, REP.ERR_UNKNOWN, message);
    } else if (isBackyError(error, 'LOCKED')) {
      this.replyError(option, REP.ERR_POLICY, message);
    } else {
      this.log.warn({ export: name, err: error }, 'opening export failed');
      this.replyError(option, REP.ERR_UNKNOWN, `cannot open ${JSON.stringify(name)}: ${message}`);
    }
  }

  private transmissionFlags(): number {
    let flags = TF.HAS_FLAGS;
    if (this.settings.cow) flags |= TF.SEND_FLUSH | TF.SEND_TRIM | TF.SEND_WRITE_ZEROES;
    // Read-only exports have no cache to keep coherent, so clients may spread requests over connections.
    else flags |= TF.READ_ONLY | TF.CAN_MULTI_CONN;
    if (this.structured) flags |= TF.SEND_DF;
    return flags;
  }

  private reply(option: number, type: number, data?: Buffer): void {
    this.io.writer.write(encodeOptionReply(option, type, data));
  }

  private replyError(option: number, type: number, message: string): void {
    this.io.writer.write(encodeOptionReply(option, type, Buffer.from(message.slice(0, MAX_STRING), 'utf8')));
  }
}
