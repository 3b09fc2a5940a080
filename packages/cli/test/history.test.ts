// Never lose history, end to end with the real binary: the data-loss paths of the issue, and a
// concurrency matrix of every pair of commands that touch one archive (docs/storage.md, lock table).
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MiB } from '@backy/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { backy, backyAsync, oneLineError, tempDir } from './helpers.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
let dir: { path: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  dir = await tempDir();
});
afterAll(() => dir.cleanup());

async function setUp(name: string, config = ''): Promise<{ arch: string; image: string; b: typeof backy }> {
  const arch = join(dir.path, name);
  const image = join(dir.path, `${name}.img`);
  await writeFile(image, Buffer.concat([randomBytes(5 * MiB), Buffer.alloc(4 * MiB), randomBytes(77)]));
  const b = (args: string[], options?: Parameters<typeof backy>[1]) => backy(['-b', arch, ...args], options);
  const init = b(['init', 'file', image]);
  expect(init.code, init.stderr).toBe(0);
  if (config !== '') {
    const current = parse(await readFile(join(arch, 'config'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(arch, 'config'), stringify({ ...current, ...(parse(config) as object) }));
  }
  return { arch, image, b };
}

const ids = (b: typeof backy): string[] =>
  (JSON.parse(b(['status', '--json']).stdout).revisions as { uuid: string }[]).map((r) => r.uuid);

describe('backy never loses history', () => {
  it('purge after moving an archive keeps every chunk', async () => {
    const { arch, b } = await setUp('moved-from');
    expect(b(['backup', 'manual:a']).code).toBe(0);
    const moved = join(dir.path, 'moved-to');
    await rename(arch, moved);
    const p = backy(['-b', moved, 'purge']);
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout).toMatch(/purged 0 chunks .* in use by 1 archive/);
    expect(backy(['-b', moved, 'restore', join(dir.path, 'after-move.img')]).code).toBe(0);
  });

  it('a .rev it cannot parse is shown as damaged, kept with its map and chunks, and makes the rest work', async () => {
    const { image, b } = await setUp('damaged-rev');
    expect(b(['backup', 'manual:one']).code).toBe(0);
    const first = ids(b)[0]!;
    const v1 = await readFile(image);
    await writeFile(image, randomBytes(9 * MiB));
    expect(b(['backup', 'manual:two']).code).toBe(0);
    const arch = join(dir.path, 'damaged-rev');
    const revText = await readFile(join(arch, `${first}.rev`), 'utf8');
    await writeFile(join(arch, `${first}.rev`), 'garbage: [');
    const status = b(['status']);
    expect(status.code).toBe(0);
    expect(status.stderr).toContain(
      `backy: warning: damaged revision ${first}: ${join(arch, `${first}.rev`)}`,
    );
    expect(b(['backup', 'manual:three']).code).toBe(0);
    expect(b(['purge']).code).toBe(0);
    expect((await readdir(arch)).filter((f) => f.startsWith(first)).sort()).toEqual([
      `${first}.map`,
      `${first}.rev`,
    ]);
    await writeFile(join(arch, `${first}.rev`), revText);
    const out = join(dir.path, 'damaged-rev-restored.img');
    expect(b(['restore', '-r', first, out]).code).toBe(0);
    expect(sha(await readFile(out))).toBe(sha(v1));
  });

  it('an unknown top-level key in an archive config is an error naming it', async () => {
    const { arch, b } = await setUp('typo');
    await writeFile(
      join(arch, 'config'),
      `${await readFile(join(arch, 'config'), 'utf8')}shedule:\n  daily: {interval: 1d, keep: 7}\n`,
    );
    const r = b(['status']);
    expect(r.code).not.toBe(0);
    expect(oneLineError(r)).toMatch(/config: unknown key "shedule"/);
  });

  it('bad purge options are one-line errors that change nothing', async () => {
    const { arch, b } = await setUp('purge-errors');
    expect(b(['backup', 'manual:one']).code).toBe(0);
    const before = await readdir(join(arch, 'chunks'), { recursive: true });
    const wait = b(['purge', '--wait', 'abc']);
    expect(wait.code).toBe(2);
    expect(oneLineError(wait)).toBe(
      'backy: error: purge --wait "abc": expected a number of seconds (0 or more, e.g. 30)',
    );
    const live = b(['purge', '--forget-archive', arch]);
    expect(live.code).toBe(2);
    expect(oneLineError(live)).toContain('the archive is still there; refusing to forget it');
    const unknown = b(['purge', '--forget-archive', join(dir.path, 'never-registered')]);
    expect(unknown.code).toBe(2);
    expect(oneLineError(unknown)).toContain('no such archive is registered');
    expect((await readdir(join(arch, 'chunks'), { recursive: true })).sort()).toEqual(before.sort());
    expect(b(['restore', join(dir.path, 'purge-errors-restored.img')]).code).toBe(0);
  });

  it('a backup whose reused chunk was deleted writes it again and restores', async () => {
    const { arch, image, b } = await setUp('missing-chunk');
    const first = b(['backup', 'manual:one']);
    expect(first.code, first.stderr).toBe(0);
    const fans = (await readdir(join(arch, 'chunks'))).filter((f) => /^[0-9a-f]{2}$/.test(f));
    const fan = join(arch, 'chunks', fans[0]!);
    const { rm } = await import('node:fs/promises');
    await rm(join(fan, (await readdir(fan))[0]!));
    const r = b(['backup', 'manual:two']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/ [1-9]\d* new \//);
    const out = join(dir.path, 'missing-chunk-restored.img');
    const restored = b(['restore', '-r', '0', out]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(sha(await readFile(out))).toBe(sha(await readFile(image)));
  });
});

/** Runs `backy -b arch ARGS` without waiting. */
function start(
  arch: string,
  args: string[],
): { child: ChildProcess; done: Promise<{ code: number | null; out: string; err: string }> } {
  const child = backyAsync(['-b', arch, ...args]);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    err += d;
  });
  const done = new Promise<{ code: number | null; out: string; err: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, out, err })),
  );
  return { child, done };
}

const OPS = ['backup', 'verify', 'restore', 'forget', 'expire', 'tags', 'purge'] as const;
type Op = (typeof OPS)[number];

describe('a concurrency matrix on one archive', () => {
  it('runs every pair of commands at once; every revision that should exist restores, nothing forgotten comes back', async () => {
    const rounds = Number(process.env.BACKY_MATRIX_ROUNDS ?? '1');
    // `daily` revisions beyond the newest one older than a second are expired; manual: ones never.
    const { arch, image, b } = await setUp('matrix', 'schedule:\n  daily: {interval: 1s, keep: 1}\n');
    const content = new Map<string, string>(); // revision → sha of its image
    const gone = new Set<string>();
    let n = 0;
    const backupNow = async (tags: string) => {
      await writeFile(image, randomBytes(5 * MiB + 77));
      const r = b(['backup', tags]);
      expect(r.code, r.stderr).toBe(0);
      content.set(ids(b).at(-1)!, sha(await readFile(image)));
    };
    for (let i = 0; i < 3; i++) await backupNow(`manual:seed${i}`);
    for (let round = 0; round < rounds; round++) {
      for (const [i, x] of OPS.entries()) {
        for (const y of OPS.slice(i)) {
          n++;
          // Something to forget and something for expire, made before the pair starts.
          const pair = [x, y] as Op[];
          if (pair.includes('forget') || n === 1) await backupNow(`manual:forget-${n}`);
          const forgetId = ids(b).at(-1)!;
          if (pair.includes('expire')) await backupNow('daily');
          const before = ids(b);
          await writeFile(image, randomBytes(5 * MiB + 77));
          const imageSha = sha(await readFile(image));
          const lastBefore = before.filter((id) => id !== forgetId).at(-1)!;
          const argsOf = (op: Op, k: number): string[] => {
            switch (op) {
              case 'backup':
                return ['backup', `manual:pair-${n}-${k}`];
              case 'verify':
                return ['verify'];
              case 'restore':
                return ['restore', '-r', lastBefore, '--force', join(dir.path, `matrix-${n}-${k}.img`)];
              case 'forget':
                return ['forget', '-r', forgetId];
              case 'expire':
                return ['expire'];
              case 'tags':
                return ['tags', 'add', '--force', '-r', 'all', `manual:t${n}`];
              case 'purge':
                return ['purge'];
            }
          };
          const runs = [start(arch, argsOf(x, 0)), start(arch, argsOf(y, 1))];
          const results = await Promise.all(runs.map((r) => r.done));
          for (const [k, op] of [x, y].entries()) {
            const r = results[k]!;
            // Busy is a fine answer (exit 69: a lock it does not wait for); failing otherwise is not.
            if (r.code === 69) {
              expect(r.err).toMatch(/already running|in use by|being purged/);
              continue;
            }
            // Two forgets of one revision: the one that comes second finds it gone, which is right.
            if (x === 'forget' && y === 'forget' && results[1 - k]!.code === 0) {
              expect(r.err).toMatch(new RegExp(`revision "${forgetId}": no revision has that ID`));
              continue;
            }
            expect(r.code, `${x}+${y}: ${op}: ${r.err}`).toBe(0);
            if (op === 'backup') {
              const added = ids(b).filter((id) => !before.includes(id) && !content.has(id));
              for (const id of added) content.set(id, imageSha);
            }
            if (op === 'forget') gone.add(forgetId);
            if (op === 'expire') for (const m of r.out.matchAll(/^(\S+): removed$/gm)) gone.add(m[1]!);
            if (op === 'restore') {
              const restored = await readFile(join(dir.path, `matrix-${n}-${k}.img`));
              expect(sha(restored), `${x}+${y}: restore`).toBe(content.get(lastBefore));
            }
            if (op === 'tags') {
              const tagged = JSON.parse(b(['status', '--json']).stdout).revisions as {
                uuid: string;
                tags: string[];
              }[];
              for (const rev of tagged.filter((t) => before.includes(t.uuid)))
                expect(rev.tags, `${x}+${y}: tags of ${rev.uuid}`).toContain(`manual:t${n}`);
            }
          }
          const now = ids(b);
          for (const id of gone) expect(now, `${x}+${y}: ${id} came back`).not.toContain(id);
        }
      }
    }
    // Every revision that should exist restores byte-identical.
    const remaining = ids(b);
    expect(remaining.length).toBeGreaterThan(3);
    for (const id of remaining) {
      expect(content.has(id), `unknown revision ${id}`).toBe(true);
      const out = join(dir.path, 'matrix-final.img');
      const r = b(['restore', '-r', id, '--force', out]);
      expect(r.code, r.stderr).toBe(0);
      expect(sha(await readFile(out)), `revision ${id}`).toBe(content.get(id));
    }
    for (const id of content.keys()) if (!gone.has(id)) expect(remaining).toContain(id);
    // Some pairs find the other command holding the lock (exit 69); under load more of them do.
    expect(gone.size).toBeGreaterThanOrEqual(3);
  }, 600_000);
});

describe('backup and purge at once on a shared store', () => {
  it('never deletes a chunk a backup of another archive is writing or reusing', async () => {
    const store = join(dir.path, 'shared-store');
    const archives = ['shared-a', 'shared-b'].map((name) => ({
      name,
      arch: join(dir.path, name),
      image: join(dir.path, `${name}.img`),
    }));
    const content = new Map<string, string>();
    const common = randomBytes(4 * MiB); // both images share this chunk: dedup across archives
    const writeImage = async (image: string) => {
      const data = Buffer.concat([common, randomBytes(3 * MiB)]);
      await writeFile(image, data);
      return sha(data);
    };
    for (const a of archives) {
      await writeImage(a.image);
      expect(backy(['-b', a.arch, 'init', 'file', a.image]).code).toBe(0);
      const current = parse(await readFile(join(a.arch, 'config'), 'utf8')) as Record<string, unknown>;
      await writeFile(join(a.arch, 'config'), stringify({ ...current, store: { path: store } }));
    }
    for (let i = 0; i < 6; i++) {
      const [x, y] = i % 2 === 0 ? archives : [archives[1]!, archives[0]!];
      const s = await writeImage(x!.image);
      // y forgets its older revisions so that purge has something to delete.
      for (const id of ids((args) => backy(['-b', y!.arch, ...args])).slice(0, -1))
        expect(backy(['-b', y!.arch, 'forget', '-r', id]).code).toBe(0);
      const [bk, pg] = await Promise.all([
        start(x!.arch, ['backup', `manual:s${i}`]).done,
        start(y!.arch, ['purge', '--wait', '30']).done,
      ]);
      expect(pg.code, pg.err).toBe(0);
      if (bk.code === 69) {
        // Purge took the store first: a backup does not wait for it (docs/storage.md); run it again.
        expect(bk.err).toContain('is being purged');
        const again = backy(['-b', x!.arch, 'backup', `manual:s${i}`]);
        expect(again.code, again.stderr).toBe(0);
      } else expect(bk.code, bk.err).toBe(0);
      content.set(ids((args) => backy(['-b', x!.arch, ...args])).at(-1)!, s);
    }
    for (const a of archives) {
      for (const id of ids((args) => backy(['-b', a.arch, ...args]))) {
        const out = join(dir.path, 'shared-restored.img');
        const r = backy(['-b', a.arch, 'restore', '-r', id, '--force', out]);
        expect(r.code, r.stderr).toBe(0);
        expect(sha(await readFile(out))).toBe(content.get(id));
      }
    }
  }, 300_000);
});
