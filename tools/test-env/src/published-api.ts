import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/** One entry point of a published package: its name as imported, and its built declarations. */
export interface EntryPoint {
  /** `@backy/core`, `@backy/core/source`, … */
  specifier: string;
  packageDir: string;
  /** The `types` file of the entry, absolute. */
  types: string;
}

/** Every entry point with declarations of every package under `packages/` that is not private. */
export function publishedEntryPoints(repo: string): EntryPoint[] {
  const out: EntryPoint[] = [];
  const packagesDir = join(repo, 'packages');
  for (const name of readdirSync(packagesDir).sort()) {
    const file = join(packagesDir, name, 'package.json');
    if (!existsSync(file)) continue;
    const pkg = JSON.parse(readFileSync(file, 'utf8')) as {
      name: string;
      private?: boolean;
      exports?: Record<string, unknown>;
      publishConfig?: { exports?: Record<string, unknown> };
    };
    if (pkg.private === true) continue;
    const exports = pkg.publishConfig?.exports ?? pkg.exports ?? {};
    for (const [key, value] of Object.entries(exports)) {
      const types = (value as { types?: string } | null)?.types;
      if (typeof types !== 'string') continue;
      out.push({
        specifier: key === '.' ? pkg.name : `${pkg.name}/${key.replace(/^\.\//, '')}`,
        packageDir: join(packagesDir, name),
        types: resolve(packagesDir, name, types),
      });
    }
  }
  return out;
}

/** Declaration text without comments (JSDoc may well mention zod; what counts is what the types name). */
export function withoutComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"])\/\/.*$/gm, '$1');
}

/** The declaration files an entry's types file reaches through relative imports and re-exports. */
export function reachableDeclarations(types: string): string[] {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = withoutComments(readFileSync(file, 'utf8'));
    for (const m of text.matchAll(/(?:from|import)\s*['"](\.{1,2}\/[^'"]+)['"]/g)) {
      const target = resolve(dirname(file), m[1]!.replace(/\.js$/, '.d.ts'));
      if (existsSync(target)) visit(target);
    }
  };
  visit(types);
  return [...seen];
}

/** The places a declaration file names zod: `import … 'zod'`, `z.ZodObject<…>`, `ZodType`, … */
export function zodMentions(text: string): string[] {
  return [...withoutComments(text).matchAll(/\bzod\b|\w*Zod\w*/g)].map((m) => m[0]);
}

/**
 * The names an entry's declarations export (types and values alike): what a user of the entry can
 * import. Throws on `export *`, whose names this cannot count without resolving.
 */
export function exportedNames(declarations: string): string[] {
  const text = withoutComments(declarations);
  if (/export\s*\*/.test(text)) throw new Error('export * cannot be counted');
  const names = new Set<string>();
  for (const m of text.matchAll(/export\s+(?:type\s+)?\{([^}]*)\}/g)) {
    for (const item of m[1]!.split(',')) {
      const name = item
        .trim()
        .replace(/^type\s+/, '')
        .split(/\s+as\s+/)
        .pop()!
        .trim();
      if (name !== '') names.add(name);
    }
  }
  const declared =
    /export\s+(?:declare\s+)?(?:abstract\s+)?(?:const|let|var|function|class|interface|type|enum|namespace)\s+([A-Za-z_$][\w$]*)/g;
  for (const m of text.matchAll(declared)) names.add(m[1]!);
  if (/export\s+default\b/.test(text)) names.add('default');
  return [...names].sort();
}
