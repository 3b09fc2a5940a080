// Apart from json-output.ts, whose zod schemas (built when the module loads) only the build and the tests
// need: `status --json` and `backup --json` convert revisions without constructing them.

/** `snake_case` and `kebab-case` keys, at every depth, in camelCase: one key style in every output. */
export function camelKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(camelKeys);
  if (value == null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, v]) => [
      key.replace(/[_-]+([a-z0-9])/g, (_, c: string) => c.toUpperCase()),
      camelKeys(v),
    ]),
  );
}

/** A revision as `--json` prints it: its record with camelCase keys. */
export function revisionJson(rev: object): Record<string, unknown> {
  return camelKeys(rev) as Record<string, unknown>;
}
