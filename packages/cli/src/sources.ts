import {
  BackyError,
  isSourceDefinition,
  type SourceConfig,
  type SourceDefinition,
  validateConfig,
} from '@backy/core';
import fileSource from '@backy/source-file';

/** Sources shipped with backy. Any other `type` is imported as a package name. */
const BUILTIN: Record<string, () => Promise<SourceDefinition<never>>> = {
  file: async () => fileSource as SourceDefinition<never>,
  'ceph-rbd': async () => (await import('@backy/source-ceph-rbd')).default as SourceDefinition<never>,
  flyingcircus: async () => (await import('@backy/source-flyingcircus')).default as SourceDefinition<never>,
};

export function registerBuiltinSource(type: string, load: () => Promise<SourceDefinition<never>>): void {
  BUILTIN[type] = load;
}

export async function loadSourceDefinition(type: string): Promise<SourceDefinition<unknown>> {
  const builtin = BUILTIN[type];
  if (builtin) return (await builtin()) as SourceDefinition<unknown>;
  let mod: { default?: unknown };
  try {
    mod = await import(type);
  } catch (error) {
    throw new BackyError(
      'SOURCE_UNKNOWN',
      `unknown source type ${JSON.stringify(type)}: not built in (${Object.keys(BUILTIN).join(', ')}) and no package of that name can be loaded`,
      { cause: error },
    );
  }
  if (!isSourceDefinition(mod.default)) {
    throw new BackyError(
      'SOURCE_UNKNOWN',
      `module ${JSON.stringify(type)} does not export a source (expected a default export made with defineSource)`,
    );
  }
  return mod.default as SourceDefinition<unknown>;
}

/** Loads the source module and validates its options; errors name `source.<key>` in `where`. */
export async function loadSource(config: SourceConfig, where: string) {
  const definition = await loadSourceDefinition(config.type);
  const { type: _type, ...raw } = config;
  const options = validateConfig(definition.optionsSchema, raw, where, ['source']);
  return { definition, options };
}
