import type { StandardSchemaV1 } from '@standard-schema/spec';
import { BackyError } from './errors.js';

/**
 * Validates a plugin's options (a source's, a store driver's) with its `optionsSchema` (any Standard
 * Schema). A failure becomes one CONFIG_INVALID error naming `where` and the key path under `prefix`,
 * followed by `context` where the caller has one (e.g. which store type's options they are).
 */
export async function validateOptions<T>(
  schema: StandardSchemaV1<unknown, T>,
  value: unknown,
  where: string,
  prefix: readonly PropertyKey[],
  context?: string,
): Promise<T> {
  let result = schema['~standard'].validate(value);
  if (result instanceof Promise) result = await result;
  if (result.issues == null) return result.value;
  throw configError(where, result.issues, prefix, context);
}

/**
 * CONFIG_INVALID for the first of `issues`: `where: key.path: message (context) (and N more problems)`.
 */
export function configError(
  where: string,
  issues: readonly StandardSchemaV1.Issue[],
  prefix: readonly PropertyKey[] = [],
  context?: string,
): BackyError {
  const more =
    issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? 's' : ''})` : '';
  const about = context == null ? '' : ` (${context})`;
  return new BackyError('CONFIG_INVALID', `${where}: ${formatIssue(issues[0]!, prefix)}${about}${more}`);
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
