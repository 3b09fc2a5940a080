import { isAbsolute, resolve } from 'node:path';
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { BackyError } from '../errors.js';

/**
 * Validates a source's options with its `optionsSchema` (any Standard Schema). A failure becomes one
 * CONFIG_INVALID error naming `where` and the key path, e.g. `/srv/backy/vm1/config: source.filename:
 * required`.
 */
export async function validateSourceOptions<T>(
  schema: StandardSchemaV1<unknown, T>,
  value: unknown,
  where: string,
  prefix: readonly PropertyKey[] = ['source'],
): Promise<T> {
  let result = schema['~standard'].validate(value);
  if (result instanceof Promise) result = await result;
  if (result.issues == null) return result.value;
  throw configError(where, result.issues, prefix);
}

/** CONFIG_INVALID for the first of `issues`: `where: key.path: message (and N more problems)`. */
export function configError(
  where: string,
  issues: readonly StandardSchemaV1.Issue[],
  prefix: readonly PropertyKey[] = [],
): BackyError {
  const more =
    issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? 's' : ''})` : '';
  return new BackyError('CONFIG_INVALID', `${where}: ${formatIssue(issues[0]!, prefix)}${more}`);
}

/** One issue as `key.path: message`; zod's own issue codes get the wording of backy's config errors. */
export function formatIssue(issue: StandardSchemaV1.Issue, prefix: readonly PropertyKey[] = []): string {
  const keys = (issue.path ?? []).map((segment) => (typeof segment === 'object' ? segment.key : segment));
  const path = [...prefix, ...keys].map(String).join('.');
  const zod = issue as StandardSchemaV1.Issue & { code?: string; keys?: string[] };
  let message = issue.message;
  if (zod.code === 'invalid_type' && /received undefined/.test(message)) message = 'required';
  if (zod.code === 'unrecognized_keys' && Array.isArray(zod.keys)) {
    message = `unknown key${zod.keys.length > 1 ? 's' : ''} ${zod.keys.map((k) => JSON.stringify(k)).join(', ')}`;
  }
  return path ? `${path}: ${message}` : message;
}

/**
 * `options` with each of the source's `paths` that is a relative string resolved against `archiveDir`:
 * one rule for every path in an archive config, whatever directory backy runs in.
 */
export function resolveSourcePaths<T>(
  definition: { paths?: readonly string[] },
  options: T,
  archiveDir: string,
): T {
  if (definition.paths == null || options == null || typeof options !== 'object') return options;
  const out = { ...(options as Record<string, unknown>) };
  for (const key of definition.paths) {
    const value = out[key];
    if (typeof value === 'string' && value !== '' && !isAbsolute(value))
      out[key] = resolve(archiveDir, value);
  }
  return out as T;
}
