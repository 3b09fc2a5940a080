/**
 * The numbers of the NBD protocol (fixed newstyle handshake, simple and structured replies, block
 * status), after the NBD project's doc/proto.md, and their names for messages.
 */

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags (server). */
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
/** Client flags. */
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;

/** Transmission flags. */
export const TF = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

export const OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  PEEK_EXPORT: 4,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const;

const REP_ERR = (n: number) => (0x80000000 | n) >>> 0;
export const REP = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: REP_ERR(1),
  ERR_POLICY: REP_ERR(2),
  ERR_INVALID: REP_ERR(3),
  ERR_PLATFORM: REP_ERR(4),
  ERR_TLS_REQD: REP_ERR(5),
  ERR_UNKNOWN: REP_ERR(6),
  ERR_SHUTDOWN: REP_ERR(7),
  ERR_BLOCK_SIZE_REQD: REP_ERR(8),
  ERR_TOO_BIG: REP_ERR(9),
} as const;

export const INFO = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;

export const CMD = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

export const CMD_FLAG = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
  FAST_ZERO: 1 << 4,
} as const;

export const REPLY_FLAG_DONE = 1 << 0;
export const REPLY_TYPE = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: (1 << 15) + 1,
  ERROR_OFFSET: (1 << 15) + 2,
} as const;

/** base:allocation flags. */
export const STATE_HOLE = 1 << 0;
export const STATE_ZERO = 1 << 1;

export const BASE_ALLOCATION = 'base:allocation';

/** Error values of the transmission phase (errno-like, but fixed by the protocol). */
export const NBD_ERR = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

/** Strings in the protocol (export names, messages) must not exceed this. */
export const MAX_STRING = 4096;
/** The size of a transmission request header. */
export const REQUEST_BYTES = 28;

/** The key of `value` in one of the tables above. */
function keyOf(table: Record<string, number>, value: number): string | undefined {
  return Object.entries(table).find(([, v]) => v === value)?.[0];
}

export function optionName(option: number): string {
  const key = keyOf(OPT, option);
  return key == null ? `option ${option}` : `NBD_OPT_${key}`;
}

export function commandName(type: number): string {
  const key = keyOf(CMD, type);
  return key == null ? `command ${type}` : `NBD_CMD_${key}`;
}

export function replyName(type: number): string {
  const key = keyOf(REP, type);
  return key == null ? `reply ${type}` : `NBD_REP_${key}`;
}

/** The name of an error value of the transmission phase (`EIO`); undefined for a value the protocol does not name. */
export function errorName(error: number): string | undefined {
  return keyOf(NBD_ERR, error);
}
