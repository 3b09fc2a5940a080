/** Stable error codes. The CLI maps them to exit statuses and one-line messages. */
export type BackyErrorCode =
  | 'CONFIG_INVALID'
  | 'CONFIG_NOT_FOUND'
  | 'CONFIG_EXISTS'
  | 'ARCHIVE_NOT_FOUND'
  | 'REVISION_NOT_FOUND'
  | 'REVISION_AMBIGUOUS'
  | 'REVISION_INVALID'
  /** The revision is protected (`backy protect`): no deletion touches it until `backy unprotect`. */
  | 'REVISION_PROTECTED'
  /** The store's Object Lock retains the object or revision until a date: nobody may delete it before. */
  | 'RETAINED'
  /** The store's credentials are append-only: deleting needs the admin credentials (expire, forget, purge). */
  | 'APPEND_ONLY'
  | 'LOCKED'
  /**
   * The archive's newest revision is not the one the caller expected (`backup --if-newest`): another
   * server made one meanwhile (fleet mode), so nothing was done.
   */
  | 'SUPERSEDED'
  | 'SOURCE_UNAVAILABLE'
  | 'SOURCE_FAILED'
  | 'SOURCE_UNKNOWN'
  | 'SOURCE_INVALID'
  /** A store driver by package name or module path cannot be found, or its module does not load or has the wrong shape. */
  | 'STORE_UNKNOWN'
  | 'STORE_INVALID'
  | 'CHUNK_CORRUPT'
  | 'CHUNK_MISSING'
  | 'TARGET_INVALID'
  | 'TARGET_EXISTS'
  | 'NO_SPACE'
  | 'IO'
  | 'ABORTED'
  | 'USAGE'
  | 'VERIFY_FAILED'
  /** A compiled dependency (zstd, BLAKE3) cannot be loaded; the message says which and what to do. */
  | 'NATIVE_MODULE_UNAVAILABLE';

/**
 * Marks every BackyError, whichever copy of @backy/core made it: a plugin loaded by path, or installed
 * with its own copy, throws errors of another class object, and `instanceof` must still see them.
 */
const BRAND = Symbol.for('backy.BackyError');

export class BackyError extends Error {
  readonly code: BackyErrorCode;

  constructor(code: BackyErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BackyError';
    this.code = code;
    Object.defineProperty(this, BRAND, { value: true });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    // Subclasses (e.g. RbdError) keep the usual prototype check; `this` is the class asked about.
    // biome-ignore lint/complexity/noThisInStatic: which class `instanceof` names is the point
    if (this !== BackyError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === 'object' && value != null && (value as Record<symbol, unknown>)[BRAND] === true;
  }
}

export function isBackyError(error: unknown, code?: BackyErrorCode): error is BackyError {
  return error instanceof BackyError && (code == null || error.code === code);
}

/** Turns an operating-system error into a BackyError that names the path involved. */
export function ioError(error: unknown, what: string): BackyError {
  if (error instanceof BackyError) return error;
  const err = error as NodeJS.ErrnoException;
  if (err?.code === 'ENOSPC' || err?.code === 'EDQUOT') {
    return new BackyError('NO_SPACE', `${what}: no space left on device`, { cause: error });
  }
  if (err?.code === 'ABORT_ERR' || err?.name === 'AbortError') {
    return new BackyError('ABORTED', `${what}: aborted`, { cause: error });
  }
  const reason = err?.code
    ? `${err.code}${err.message ? ` (${err.message.replace(/^\w+: /, '')})` : ''}`
    : String(err?.message ?? error);
  return new BackyError('IO', `${what}: ${reason}`, { cause: error });
}
