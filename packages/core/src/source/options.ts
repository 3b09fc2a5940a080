import { isAbsolute, resolve } from 'node:path';
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { validateOptions } from '../plugin-options.js';

/**
 * Validates a source's options with its `optionsSchema` (any Standard Schema). A failure becomes one
 * CONFIG_INVALID error naming `where` and the key path, e.g. `/srv/backy/vm1/config: source.filename:
 * required`.
 */
export function validateSourceOptions<T>(
  schema: StandardSchemaV1<unknown, T>,
  value: unknown,
  where: string,
  prefix: readonly PropertyKey[] = ['source'],
): Promise<T> {
  return validateOptions(schema, value, where, prefix);
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
