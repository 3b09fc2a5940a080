// The workspace's shape, read with the TypeScript compiler's parser (not regular expressions, which
// miss `export … from`, dynamic `import()` and `import type`, and match words in strings): every
// workspace package's files, their imports resolved to files or package names, and the length of
// every function. structure.test.ts holds the rules (file and function sizes, import cycles, declared
// dependencies, no import from a folder above) against it.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

export interface Import {
  specifier: string;
  /** `import type`, `export type`, or an `import('x').T` type: erased, so no load at run time. */
  typeOnly: boolean;
  /** The file a relative import names (repository-relative), or null for a package or a builtin. */
  file: string | null;
  /** The package a bare specifier names (`@scope/name` or `name`), or null. */
  packageName: string | null;
}

export interface FunctionSpan {
  name: string;
  line: number;
  lines: number;
}

export interface ScannedFile {
  /** Repository-relative, with `/`. */
  path: string;
  /** The workspace package's folder, repository-relative (`packages/core`). */
  packageDir: string;
  /** Code under the package's src/ that is not a test: what the package ships or runs. */
  isSource: boolean;
  lines: number;
  imports: Import[];
  functions: FunctionSpan[];
}

export interface WorkspacePackage {
  dir: string;
  name: string;
  private: boolean;
  dependencies: Set<string>;
  devDependencies: Set<string>;
}

export interface Workspace {
  packages: WorkspacePackage[];
  files: ScannedFile[];
  /** The root package.json's devDependencies: the tools every package's tests and builds use. */
  rootDevDependencies: Set<string>;
}

const CODE = /\.(ts|mts|js|mjs)$/;
const BUILTINS = new Set(builtinModules);

export const isTestFile = (path: string): boolean =>
  /\.test\.(ts|mts|js)$/.test(path) || /(^|\/)test\//.test(path);

/** The package a bare specifier names, or null for a relative path or a Node builtin. */
export function packageOf(specifier: string): string | null {
  if (specifier.startsWith('.') || specifier.startsWith('/') || specifier.startsWith('node:')) return null;
  const name = specifier.startsWith('@')
    ? specifier.split('/').slice(0, 2).join('/')
    : specifier.split('/')[0]!;
  return BUILTINS.has(name) ? null : name;
}

function readPackage(repo: string, dir: string): WorkspacePackage {
  const json = JSON.parse(readFileSync(join(repo, dir, 'package.json'), 'utf8')) as {
    name: string;
    private?: boolean;
    dependencies?: Record<string, string>;
    peerDependencies?: Record<string, string>;
    optionalDependencies?: Record<string, string>;
    devDependencies?: Record<string, string>;
  };
  return {
    dir,
    name: json.name,
    private: json.private === true,
    dependencies: new Set([
      ...Object.keys(json.dependencies ?? {}),
      ...Object.keys(json.peerDependencies ?? {}),
      ...Object.keys(json.optionalDependencies ?? {}),
    ]),
    devDependencies: new Set(Object.keys(json.devDependencies ?? {})),
  };
}

function codeFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist' || name.startsWith('.')) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) codeFiles(path, out);
    else if (CODE.test(name) && !name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

/** The file a relative specifier names: `./x.js` is `x.ts` in the sources (NodeNext's convention). */
function resolveRelative(from: string, specifier: string): string | null {
  const base = resolve(dirname(from), specifier);
  const candidates = [
    base,
    base.replace(/\.js$/, '.ts'),
    base.replace(/\.mjs$/, '.mts'),
    `${base}.ts`,
    join(base, 'index.ts'),
  ];
  return candidates.find((c) => existsSync(c) && statSync(c).isFile()) ?? null;
}

function functionName(node: ts.Node): string {
  const named = node as { name?: ts.Node };
  if (named.name != null && ts.isIdentifier(named.name)) return named.name.text;
  if (named.name != null && ts.isStringLiteral(named.name)) return named.name.text;
  if (ts.isConstructorDeclaration(node)) return 'constructor';
  const parent = node.parent;
  if (parent != null && ts.isVariableDeclaration(parent) && ts.isIdentifier(parent.name))
    return parent.name.text;
  if (parent != null && ts.isPropertyAssignment(parent) && ts.isIdentifier(parent.name))
    return parent.name.text;
  if (parent != null && ts.isCallExpression(parent)) return `(callback of ${parent.expression.getText()})`;
  return '(anonymous)';
}

/** One file's imports (relative ones resolved from `path`), functions and line count. */
export function scanText(path: string, text: string): Pick<ScannedFile, 'imports' | 'functions' | 'lines'> {
  const source = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true);
  const imports: Import[] = [];
  const functions: FunctionSpan[] = [];
  const add = (specifier: string, typeOnly: boolean) => {
    imports.push({
      specifier,
      typeOnly,
      file: specifier.startsWith('.') ? resolveRelative(path, specifier) : null,
      packageName: packageOf(specifier),
    });
  };
  const lineOf = (pos: number) => source.getLineAndCharacterOfPosition(pos).line + 1;
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      // `import { type A, type B } from` is erased as well as `import type { A, B } from`.
      const allTypes =
        clause != null &&
        (clause.isTypeOnly ||
          (clause.name == null &&
            clause.namedBindings != null &&
            ts.isNamedImports(clause.namedBindings) &&
            clause.namedBindings.elements.length > 0 &&
            clause.namedBindings.elements.every((e) => e.isTypeOnly)));
      add(node.moduleSpecifier.text, allTypes);
    } else if (
      ts.isExportDeclaration(node) &&
      node.moduleSpecifier != null &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) {
      add(node.moduleSpecifier.text, node.isTypeOnly);
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] != null &&
      ts.isStringLiteral(node.arguments[0])
    ) {
      add(node.arguments[0].text, false);
    } else if (
      ts.isImportTypeNode(node) &&
      ts.isLiteralTypeNode(node.argument) &&
      ts.isStringLiteral(node.argument.literal)
    ) {
      add(node.argument.literal.text, true);
    }
    if (ts.isFunctionLike(node) && (node as { body?: ts.Node }).body != null) {
      const start = lineOf(node.getStart(source));
      functions.push({ name: functionName(node), line: start, lines: lineOf(node.end) - start + 1 });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  // A final newline ends the last line; it does not start another.
  const lines = text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
  return { imports, functions, lines };
}

/** Every package under packages/ and tools/ with its code files, imports and functions. */
export function scanWorkspace(repo: string): Workspace {
  const packages: WorkspacePackage[] = [];
  for (const group of ['packages', 'tools']) {
    for (const name of readdirSync(join(repo, group)).sort()) {
      if (existsSync(join(repo, group, name, 'package.json')))
        packages.push(readPackage(repo, `${group}/${name}`));
    }
  }
  const files: ScannedFile[] = [];
  for (const pkg of packages) {
    for (const absolute of codeFiles(join(repo, pkg.dir)).sort()) {
      const path = relative(repo, absolute);
      const scanned = scanText(absolute, readFileSync(absolute, 'utf8'));
      files.push({
        path,
        packageDir: pkg.dir,
        isSource: path.startsWith(`${pkg.dir}/src/`) && !isTestFile(path),
        ...scanned,
        imports: scanned.imports.map((i) => ({ ...i, file: i.file == null ? null : relative(repo, i.file) })),
      });
    }
  }
  const root = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as {
    devDependencies?: Record<string, string>;
  };
  return { packages, files, rootDevDependencies: new Set(Object.keys(root.devDependencies ?? {})) };
}

/**
 * Import cycles between the folders of a package's src/ (each folder as one node): a folder that imports
 * another which imports it back cannot be understood, tested or moved without the other. The src/ root
 * itself is left out: it assembles the entry points and holds what every folder shares.
 */
export function folderCycles(files: readonly ScannedFile[]): string[][] {
  const folders = new Map<string, Set<string>>();
  const folderOf = (path: string, packageDir: string) => {
    const folder = path.slice(0, path.lastIndexOf('/'));
    return folder === `${packageDir}/src` ? null : folder;
  };
  for (const f of files) {
    const own = folderOf(f.path, f.packageDir);
    if (own == null) continue;
    const targets = folders.get(own) ?? new Set<string>();
    folders.set(own, targets);
    for (const i of f.imports) {
      const target = i.file == null ? null : folderOf(i.file, f.packageDir);
      if (target != null && target !== own) targets.add(target);
    }
  }
  return importCycles(
    [...folders].map(([path, targets]) => ({
      path,
      packageDir: '',
      isSource: true,
      lines: 0,
      imports: [...targets].map((file) => ({ specifier: file, typeOnly: false, file, packageName: null })),
      functions: [],
    })),
  );
}

/**
 * The import cycles among the given files, each once, as the list of its files from its
 * alphabetically first one (so that a cycle reads the same from run to run). Type-only imports count:
 * a type cycle ties the files together for a reader as much as a value one does.
 */
export function importCycles(files: readonly ScannedFile[]): string[][] {
  const edges = new Map<string, string[]>();
  for (const f of files) {
    edges.set(f.path, [...new Set(f.imports.flatMap((i) => (i.file == null ? [] : [i.file])))].sort());
  }
  // Tarjan's strongly connected components; each component of more than one file holds a cycle.
  let index = 0;
  const indices = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const connect = (v: string) => {
    indices.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!edges.has(w)) continue;
      if (!indices.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, indices.get(w)!));
    }
    if (low.get(v) === indices.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (edges.get(v) ?? []).includes(v)) components.push(component.sort());
    }
  };
  for (const v of [...edges.keys()].sort()) if (!indices.has(v)) connect(v);
  return components.sort((a, b) => a[0]!.localeCompare(b[0]!));
}
