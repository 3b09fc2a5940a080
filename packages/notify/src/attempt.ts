/** How one delivery attempt ended. */
export type Attempt =
  | { ok: true }
  | {
      ok: false;
      /** Worth trying again (a timeout, a 5xx, a refused connection), or not (a 4xx, a bad secret file). */
      retry: boolean;
      /** One line, never containing a secret. */
      reason: string;
      /** The receiver's `Retry-After`, when it gave one. */
      retryAfterMs?: number;
    };
