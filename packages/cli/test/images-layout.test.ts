import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MiB } from '@backy/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backy, tempDir } from './helpers.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
let dir: { path: string; cleanup: () => Promise<void> };
let arch: string;
let image: string;
const b = (...args: string[]) => backy(['-b', arch, ...args]);

beforeAll(async () => {
  dir = await tempDir();
  arch = join(dir.path, 'archive');
  image = join(dir.path, 'disk.img');
  await writeFile(image, Buffer.concat([randomBytes(5 * MiB), Buffer.alloc(4 * MiB), randomBytes(MiB)]));
});
afterAll(() => dir?.cleanup());

describe('backy with layout: images', () => {
  it('init warns on a file system without reflinks; revisions are plain images that dd restores', async () => {
    const init = b('init', '--layout', 'images', 'file', image);
    expect(init.code).toBe(0);
    expect(init.stderr).toMatch(/^backy: warning: .*cannot reflink/m);
    expect(await readFile(join(arch, 'config'), 'utf8')).toContain('layout: images');
    expect(b('backup', 'daily').code).toBe(0);
    const first = await readFile(image);
    const changed = Buffer.from(first);
    randomBytes(4096).copy(changed, 6 * MiB);
    await writeFile(image, changed);
    expect(b('backup', 'daily').code).toBe(0);

    const last = await readlink(join(arch, 'last'));
    const out = join(dir.path, 'dd.img');
    expect(spawnSync('dd', [`if=${join(arch, 'last')}`, `of=${out}`, 'bs=4M', 'status=none']).status).toBe(0);
    expect(sha(await readFile(out))).toBe(sha(changed));
    expect(sha(await readFile(join(arch, last)))).toBe(sha(changed));

    const restored = join(dir.path, 'restored.img');
    expect(b('restore', '-r', '1', restored).code).toBe(0);
    expect(sha(await readFile(restored))).toBe(sha(first));
    const verify = b('verify');
    expect(verify.code).toBe(0);
    expect(verify.stdout).toMatch(/verified[\s\S]*verified/);
  });
});
