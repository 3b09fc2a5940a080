import {
  isSourceDefinition,
  resolveSourcePaths,
  type SourceConfig,
  type SourceDefinition,
  sourceOptionsOf,
  validateSourceOptions,
} from '@backy/core';
import fileSource from '@backy/source-file';
import { loadPlugin, type PluginKind } from './plugins.js';

/** Sources: `source: {type: …}` in an archive config, the TYPE argument of `init`. */
const SOURCES: PluginKind<SourceDefinition<unknown>> = {
  noun: 'source',
  thing: 'a source',
  define: 'defineSource',
  entry: '@backy/core/source',
  method: 'create',
  unknown: 'SOURCE_UNKNOWN',
  invalid: 'SOURCE_INVALID',
  builtins: {
    file: async () => fileSource as SourceDefinition<unknown>,
    'ceph-rbd': async () => (await import('@backy/source-ceph-rbd')).default as SourceDefinition<unknown>,
    flyingcircus: async () =>
      (await import('@backy/source-flyingcircus')).default as SourceDefinition<unknown>,
    nbd: async () => (await import('@backy/source-nbd')).default as SourceDefinition<unknown>,
    qcow2: async () => (await import('@backy/source-nbd/qcow2')).default as SourceDefinition<unknown>,
    qemu: async () => (await import('@backy/source-qemu')).default as SourceDefinition<unknown>,
  },
  is: (value): value is SourceDefinition<unknown> => isSourceDefinition(value),
};

/** The source module for `type`: a built-in, a package installed beside backy, or a module path. */
export function loadSourceDefinition(type: string): Promise<SourceDefinition<unknown>> {
  return loadPlugin(SOURCES, type);
}

/**
 * Loads the source module and validates its options; errors name `source.<key>` in `where`. Relative
 * paths among them are relative to `archiveDir`, like every path in an archive config.
 */
export async function loadSource(config: SourceConfig, where: string, archiveDir: string) {
  const definition = await loadSourceDefinition(config.type);
  const raw = sourceOptionsOf(config);
  const options = await validateSourceOptions(definition.optionsSchema, raw, where, ['source']);
  return { definition, options: resolveSourcePaths(definition, options, archiveDir) };
}
