// The one list of external programs the test suite runs (`../test-tools.txt`), read by the tests'
// skip checks here and by `.ci/run`'s `apt-get install`. Asking for a tool that is not on the list
// throws, so a test that starts needing a new program fails on the developer's machine until the
// program and its Debian package are added to the list, and CI then installs it.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const TOOLS_FILE = fileURLToPath(new URL('../test-tools.txt', import.meta.url));

export interface TestTool {
  /** The program's name on PATH, or `-` for a package that ships no program of its own. */
  tool: string;
  /** The Debian package that provides it; `NAME@SUITE` comes from another Debian suite via a script. */
  package: string;
  usedBy: string;
}

/** Parses the list's text: one `TOOL PACKAGE [used by…]` line each, `#` comments, blank lines. */
export function parseTestTools(text: string): TestTool[] {
  const tools: TestTool[] = [];
  const seen = new Set<string>();
  text.split('\n').forEach((raw, index) => {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') return;
    const [tool, pkg, ...rest] = line.split(/\s+/);
    if (tool == null || pkg == null)
      throw new Error(`${TOOLS_FILE}:${index + 1}: expected "TOOL PACKAGE [used by]"`);
    if (!/^[a-z0-9][a-z0-9+.-]*(@[a-z]+)?$/.test(pkg)) {
      throw new Error(`${TOOLS_FILE}:${index + 1}: "${pkg}" is not a Debian package name`);
    }
    if (tool !== '-' && seen.has(tool))
      throw new Error(`${TOOLS_FILE}:${index + 1}: ${tool} is listed twice`);
    seen.add(tool);
    tools.push({ tool, package: pkg, usedBy: rest.join(' ') });
  });
  return tools;
}

let cached: Map<string, TestTool> | undefined;

/** The list, by program name. */
export function testTools(): Map<string, TestTool> {
  cached ??= new Map(
    parseTestTools(readFileSync(TOOLS_FILE, 'utf8'))
      .filter((t) => t.tool !== '-')
      .map((t) => [t.tool, t]),
  );
  return cached;
}

/** PATH with the system's directories first, so `nbdsh` finds the system python that has libnbd. */
export const SYSTEM_PATH_ENV: NodeJS.ProcessEnv = {
  ...process.env,
  PATH: `/usr/bin:/bin:/usr/sbin:/sbin:${process.env.PATH ?? ''}`,
};

/** Tools whose presence on PATH does not prove they work: how to ask them. */
const probes: Record<string, string[]> = {
  // nbdsh is a python script; it needs the python3 module of python3-libnbd.
  nbdsh: ['nbdsh', '-c', 'pass'],
  // python3 is only wanted here with the lzo module that backy 2.x compressed its chunks with.
  python3: ['python3', '-c', 'import lzo'],
};

export interface ToolChecker {
  /** The Debian package of a listed tool; throws for a tool that is not on the list. */
  packageOf(tool: string): string;
  /** Whether a listed tool is installed and runs (cached); throws for a tool not on the list. */
  haveTool(tool: string): boolean;
  /**
   * Why a test that runs these tools must skip, or null when all are there: "nbdsh is not installed
   * (Debian package python3-libnbd)". Throws for a tool that is not on the list.
   */
  missingTools(...tools: string[]): string | null;
}

/** Checks for the tools of a list (the repository's list by default). */
export function toolChecker(list: () => Map<string, TestTool> = testTools): ToolChecker {
  const present = new Map<string, boolean>();
  const packageOf = (tool: string): string => {
    const entry = list().get(tool);
    if (entry == null) {
      throw new Error(
        `the tests run "${tool}", which is not in ${TOOLS_FILE}: add it with its Debian package so that .ci/run installs it`,
      );
    }
    return entry.package;
  };
  const haveTool = (tool: string): boolean => {
    packageOf(tool);
    let have = present.get(tool);
    if (have == null) {
      const probe = probes[tool];
      const r =
        probe != null
          ? spawnSync(probe[0]!, probe.slice(1), { env: SYSTEM_PATH_ENV, stdio: 'ignore', timeout: 30_000 })
          : spawnSync('sh', ['-c', 'command -v "$1"', 'sh', tool], { env: SYSTEM_PATH_ENV, stdio: 'ignore' });
      have = r.status === 0;
      present.set(tool, have);
    }
    return have;
  };
  const missingTools = (...tools: string[]): string | null => {
    const missing = tools.filter((t) => !haveTool(t));
    if (missing.length === 0) return null;
    return missing.map((t) => `${t} is not installed (Debian package ${packageOf(t)})`).join('; ');
  };
  return { packageOf, haveTool, missingTools };
}

const checker = toolChecker();
export const { packageOf, haveTool, missingTools } = checker;

/** The Debian packages `.ci/run` installs with apt-get: every listed package from this suite. */
export function debianPackages(): string[] {
  const all = parseTestTools(readFileSync(TOOLS_FILE, 'utf8'));
  return [...new Set(all.map((t) => t.package).filter((p) => !p.includes('@')))].sort();
}

/**
 * `missingTools`, printing the reason when the test will skip: `skipIf(skipWithout('x', 'telnet'))`.
 * Vitest prints no reason of its own for `skipIf`, and a skip without a printed reason is a defect.
 */
export function skipWithout(label: string, ...tools: string[]): string | null {
  const reason = missingTools(...tools);
  if (reason != null) console.warn(`[${label}] skipped: ${reason}`);
  return reason;
}
