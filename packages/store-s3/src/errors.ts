import { BackyError, type BackyErrorCode } from '@backy/core/store';

/** What an S3 call failed on, as the SDK reports it: an S3 error code, an HTTP status, a socket error. */
interface SdkError {
  name?: string;
  Code?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number; attempts?: number };
  $retryable?: unknown;
  cause?: { code?: string };
}

/** The error's S3 code (`NoSuchKey`, `SlowDown`, …) or socket code, if any. */
export function errorCode(error: unknown): string | undefined {
  const e = error as SdkError;
  return e?.Code ?? e?.code ?? e?.cause?.code ?? (e?.name !== 'Error' ? e?.name : undefined);
}

export function httpStatus(error: unknown): number | undefined {
  return (error as SdkError)?.$metadata?.httpStatusCode;
}

export function isNotFound(error: unknown): boolean {
  const code = errorCode(error);
  return code === 'NoSuchKey' || code === 'NotFound' || httpStatus(error) === 404;
}

export function isPreconditionFailed(error: unknown): boolean {
  const code = errorCode(error);
  return code === 'PreconditionFailed' || httpStatus(error) === 412 || code === 'ConditionalRequestConflict';
}

type Reason = [BackyErrorCode, string | ((code: string, attempts: number | undefined) => string)];

const throttled: Reason = [
  'IO',
  (code, attempts) =>
    `the store is throttling requests (${code}), still after ${attempts ?? 'several'} attempts with back-off`,
];
const credentials = 'check the credentials';

/** What each S3 error code (or socket error) means, in words. */
const REASONS: Record<string, Reason> = {
  ECONNREFUSED: ['IO', 'connection refused: is the S3 endpoint right and the service running?'],
  ENOTFOUND: ['IO', 'the endpoint host name does not resolve'],
  EAI_AGAIN: ['IO', 'the endpoint host name does not resolve'],
  ETIMEDOUT: ['IO', 'the endpoint did not answer in time'],
  TimeoutError: ['IO', 'the endpoint did not answer in time'],
  RequestTimeout: ['IO', 'the endpoint did not answer in time'],
  ECONNRESET: ['IO', 'the endpoint closed the connection'],
  EPIPE: ['IO', 'the endpoint closed the connection'],
  NoSuchBucket: [
    'CONFIG_INVALID',
    'the bucket does not exist (backy does not create buckets: create it first)',
  ],
  InvalidAccessKeyId: ['CONFIG_INVALID', `the access key is not known to the store: ${credentials}`],
  SignatureDoesNotMatch: ['CONFIG_INVALID', `the secret key is wrong: ${credentials}`],
  AccessDenied: ['IO', 'access denied: the credentials may not do this (read-only bucket or policy?)'],
  AllAccessDisabled: ['IO', 'access denied: the credentials may not do this (read-only bucket or policy?)'],
  QuotaExceeded: ['NO_SPACE', (code) => `the bucket is full (${code})`],
  EntityTooLarge: ['NO_SPACE', (code) => `the bucket is full (${code})`],
  InsufficientCapacity: ['NO_SPACE', (code) => `the bucket is full (${code})`],
  SlowDown: throttled,
  ServiceUnavailable: throttled,
  Throttling: throttled,
  ThrottlingException: throttled,
  CredentialsProviderError: [
    'CONFIG_INVALID',
    'no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile in ~/.aws/credentials, or store.credentials-file',
  ],
};

/**
 * One line for an S3 failure: what backy was doing (`what`, e.g. "writing chunk ab12…"), where
 * (`where`: s3://bucket/prefix at the endpoint) and why in words. Never the credentials.
 */
export function s3Error(error: unknown, what: string, where: { url: string; endpoint: string }): BackyError {
  if (error instanceof BackyError) return error;
  const e = error as SdkError;
  const code = errorCode(error);
  const status = httpStatus(error);
  const attempts = e?.$metadata?.attempts;
  const at = `${where.url} (${where.endpoint})`;
  const say = (backyCode: BackyErrorCode, why: string) =>
    new BackyError(backyCode, `${what}: ${at}: ${why}`, { cause: error });
  const known = code != null && Object.hasOwn(REASONS, code) ? REASONS[code] : undefined;
  if (known != null) {
    const [backyCode, why] = known;
    return say(backyCode, typeof why === 'function' ? why(code!, attempts) : why);
  }
  // HEAD answers carry no error document: only the status says what happened.
  if (status === 503)
    return say(
      'IO',
      `the store is throttling requests (HTTP 503), still after ${attempts ?? 'several'} attempts with back-off`,
    );
  if (status === 507)
    return new BackyError('NO_SPACE', `${what}: ${at}: the store is out of space`, { cause: error });
  if (status === 403)
    return say(
      'IO',
      code == null || code === 'Unknown'
        ? 'access denied (HTTP 403): check the credentials and what they may do in this bucket'
        : `access denied (${code})`,
    );
  const detail = code ?? (status != null ? `HTTP ${status}` : (e?.message ?? String(error)).split('\n')[0]);
  return say(
    'IO',
    `${detail}${e?.message && code && !e.message.includes(code) ? ` (${e.message.split('\n')[0]})` : ''}`,
  );
}
