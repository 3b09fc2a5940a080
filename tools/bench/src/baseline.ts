// `--baseline REV`: another commit of backy, built in a temporary git worktree, run beside this checkout
// in the same invocation so that an A/B comparison sees the same disk, page cache and load.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO } from './paths.js';

export interface Baseline {
  /** The revision as given, for the tables. */
  rev: string;
  /** Its `backy` binary. */
  bin: string;
  remove(): Promise<void>;
}

/** The `--baseline REV` argument, or null. */
export function baselineArg(argv: string[]): string | null {
  const at = argv.indexOf('--baseline');
  if (at < 0) return null;
  const rev = argv[at + 1];
  if (rev == null || rev.startsWith('--'))
    throw new Error('--baseline needs a git revision, e.g. --baseline HEAD~1');
  return rev;
}

function step(what: string, cmd: string, args: string[], cwd: string): void {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0)
    throw new Error(
      `baseline: ${what} failed (${r.status}): ${(r.stderr || r.stdout).trim().split('\n').slice(-5).join(' | ')}`,
    );
}

/** Checks out `rev` into a temporary worktree, installs (from pnpm's store where it can) and builds it. */
export async function buildBaseline(rev: string): Promise<Baseline> {
  const parent = await mkdtemp(join(tmpdir(), 'backy-baseline-'));
  const tree = join(parent, 'tree');
  const pnpm = ['-y', 'pnpm@9.15.9'];
  console.log(`baseline: building ${rev} in ${tree}`);
  step('git worktree add', 'git', ['worktree', 'add', '--detach', tree, rev], REPO);
  const remove = async () => {
    spawnSync('git', ['worktree', 'remove', '--force', tree], { cwd: REPO, stdio: 'ignore' });
    await rm(parent, { recursive: true, force: true });
  };
  try {
    step('pnpm install', 'npx', [...pnpm, 'install', '--prefer-offline', '--frozen-lockfile'], tree);
    step('pnpm build', 'npx', [...pnpm, 'build'], tree);
    const bin = join(tree, 'packages/cli/bin/backy.js');
    if (!existsSync(bin)) throw new Error(`baseline: ${rev} has no packages/cli/bin/backy.js`);
    return { rev, bin, remove };
  } catch (error) {
    await remove();
    throw error;
  }
}
