import { BackyError } from './errors.js';
import { failedOwnVerification, type Revision, TRUST_STATES } from './revision.js';

/**
 * Resolves a revision spec against complete revisions sorted oldest first. Accepted forms:
 * `0`, `1`, … (newest first), a full ID, a unique ID prefix, `last`/`latest`, a tag name (newest with
 * that tag), `tag:NAME` and `trust:STATE` (all matching), and `all`.
 * Returns the matching revisions oldest first.
 */
export function resolveRevisionSpec<
  R extends Pick<Revision, 'uuid' | 'tags' | 'trust'> & Partial<Pick<Revision, 'verification'>>,
>(revisions: readonly R[], spec: string): R[] {
  const text = spec.trim();
  if (text === '') throw new BackyError('REVISION_NOT_FOUND', 'empty revision spec');
  // Revisions that failed their own verification are only named by their full ID or a set.
  const usable = revisions.filter((r) => !failedOwnVerification(r));
  const newestFirst = [...usable].reverse();
  const notFound = (why: string) =>
    new BackyError('REVISION_NOT_FOUND', `revision ${JSON.stringify(spec)}: ${why}`);

  if (text === 'all') return [...revisions];
  if (text === 'last' || text === 'latest') {
    if (newestFirst.length === 0) throw notFound('the archive has no revisions');
    return [newestFirst[0]!];
  }
  if (/^-\d+$/.test(text)) throw notFound('revision numbers count from 0 (the newest) upwards');
  if (/^\d+$/.test(text)) {
    const index = Number(text);
    const rev = newestFirst[index];
    if (rev == null) throw notFound(`there are only ${newestFirst.length} revisions (0 is the newest)`);
    return [rev];
  }
  if (text.startsWith('tag:')) {
    const tag = text.slice(4);
    return revisions.filter((r) => r.tags.includes(tag));
  }
  if (text.startsWith('trust:')) {
    const trust = text.slice(6);
    if (!(TRUST_STATES as readonly string[]).includes(trust)) {
      throw new BackyError(
        'REVISION_NOT_FOUND',
        `revision ${JSON.stringify(spec)}: trust must be one of ${TRUST_STATES.join(', ')}`,
      );
    }
    return revisions.filter((r) => r.trust === trust);
  }
  const exact = revisions.find((r) => r.uuid === text);
  if (exact) return [exact];
  const tagged = newestFirst.find((r) => r.tags.includes(text));
  const prefixed = usable.filter((r) => r.uuid.startsWith(text));
  if (tagged && prefixed.length > 0) {
    throw new BackyError(
      'REVISION_AMBIGUOUS',
      `revision ${JSON.stringify(spec)} is both a tag and an ID prefix; use tag:${text} or a longer ID`,
    );
  }
  if (tagged) return [tagged];
  if (prefixed.length > 1) {
    throw new BackyError(
      'REVISION_AMBIGUOUS',
      `revision ${JSON.stringify(spec)} is ambiguous: it is a prefix of ${prefixed.map((r) => r.uuid).join(', ')}`,
    );
  }
  if (prefixed.length === 1) return prefixed;
  throw notFound('no revision has that ID, ID prefix or tag');
}

/** Resolves a spec that must name exactly one revision. */
export function resolveSingleRevision<
  R extends Pick<Revision, 'uuid' | 'tags' | 'trust'> & Partial<Pick<Revision, 'verification'>>,
>(revisions: readonly R[], spec: string): R {
  const found = resolveRevisionSpec(revisions, spec);
  if (found.length === 0)
    throw new BackyError('REVISION_NOT_FOUND', `revision ${JSON.stringify(spec)}: no revision matches`);
  if (found.length > 1) {
    throw new BackyError(
      'REVISION_AMBIGUOUS',
      `revision ${JSON.stringify(spec)} matches ${found.length} revisions; name one`,
    );
  }
  return found[0]!;
}
