import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { MiB } from '@backy/core/testing';
import { s3ClientConfig } from '@backy/test-env/rgw';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';
import { backy, oneLineError, tempDir } from './helpers.js';

const rgw = inject('rgw');

let dir: { path: string; cleanup: () => Promise<void> };
let image: string;
let source: string;
/** The image of each revision of `source`, by uuid. */
const images = new Map<string, Buffer>();

/** Three random chunks, a zero chunk and a text chunk: four distinct chunks to store. */
const v1 = Buffer.concat([randomBytes(12 * MiB), Buffer.alloc(4 * MiB), Buffer.from('log\n'.repeat(MiB))]);

beforeAll(async () => {
  dir = await tempDir();
  image = join(dir.path, 'disk.img');
  source = join(dir.path, 'source');
  await writeFile(image, v1);
  expect(backy(['-b', source, 'init', 'file', image]).code).toBe(0);
  await backupAs(v1);
});
afterAll(() => dir.cleanup());

/** Writes `data` to the image and backs it up; returns the new revision's uuid. */
async function backupAs(data: Buffer): Promise<string> {
  await writeFile(image, data);
  const r = backy(['-b', source, 'backup', '-f', 'manual:copy']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const uuid = r.stdout.split(' ')[0]!;
  images.set(uuid, Buffer.from(data));
  return uuid;
}

/** `copy` lines as [uuid, rest]. */
const lines = (stdout: string) =>
  stdout
    .trim()
    .split('\n')
    .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)]);

/** Restores every revision of `archive` and compares it with what was backed up. */
async function expectRestores(archive: string, uuids: string[], env?: NodeJS.ProcessEnv) {
  for (const uuid of uuids) {
    const out = join(dir.path, `restored-${uuid}`);
    await rm(out, { force: true });
    const r = backy(['-b', archive, 'restore', '-r', uuid, out], { env });
    expect(r.stderr).toMatch(new RegExp(`^Restored revision ${uuid} `));
    expect(r.code).toBe(0);
    expect((await readFile(out)).equals(images.get(uuid)!)).toBe(true);
    await rm(out);
  }
}

describe('backy copy between local archives', () => {
  it('copies to an existing archive, sending only what it lacks, and restores from the copy', async () => {
    const target = join(dir.path, 'local-target');
    const missing = backy(['-b', source, 'copy', target]);
    expect(missing.code).toBe(1);
    expect(oneLineError(missing)).toBe(
      `backy: error: copy: the target ${target} is not a backy archive (no config file); create it with \`backy -b ${target} init …\` or pass --init-from-source`,
    );
    expect(backy(['-b', target, 'init', 'file', image]).code).toBe(0);
    const [first] = [...images.keys()];
    const copied = backy(['-b', source, 'copy', '-r', 'last', target]);
    expect(copied.stderr).toBe('');
    expect(copied.code).toBe(0);
    expect(lines(copied.stdout)).toEqual([[first, 'copied, 4 chunks sent (16.0 MiB), 0 already there']]);
    const again = backy(['-b', source, 'copy', target]);
    expect(lines(again.stdout)).toEqual([[first, 'already in the target']]);
    await expectRestores(target, [first!]);
  });

  it('says so in one line when the spec matches nothing, and prints JSON with --json', async () => {
    const target = join(dir.path, 'json-target');
    const none = backy(['-b', source, 'copy', '-r', 'tag:nothing', target]);
    expect(none.code).toBe(1);
    expect(oneLineError(none)).toBe(
      `backy: error: copy: revision spec "tag:nothing" matches no revision of ${source}`,
    );
    const storeWithoutInit = backy(['-b', source, 'copy', '--store', 'type=s3', target]);
    expect(storeWithoutInit.code).toBe(2);
    expect(oneLineError(storeWithoutInit)).toMatch(/--store is for --init-from-source/);
    const json = backy(['-b', source, 'copy', '--init-from-source', '--json', target]);
    expect(json.stderr).toBe('');
    const parsed = JSON.parse(json.stdout);
    expect(parsed.target).toBe(target);
    expect(parsed.revisions).toEqual([
      expect.objectContaining({ status: 'copied', chunksSent: 4, chunksPresent: 0, bytesSent: 16 * MiB }),
    ]);
    // bytesStored: what the target's store holds of the chunks sent (all of them were sent).
    let stored = 0;
    for (const entry of await readdir(join(target, 'chunks'), { recursive: true, withFileTypes: true }))
      if (entry.isFile() && /^[0-9a-f]{64}$/.test(entry.name))
        stored += (await stat(join(entry.parentPath, entry.name))).size;
    expect(parsed.revisions[0].bytesStored).toBe(stored);
    // The target got the source's config, and a store of its own.
    expect(await readdir(join(target, 'chunks'))).not.toEqual([]);
    expect(await readFile(join(target, 'config'), 'utf8')).toContain(`filename: ${image}`);
  });

  it('leaves nothing at the target when --init-from-source fails, so the retry with the right options works', async () => {
    const key = join(dir.path, 'copy.key');
    expect(backy(['key', 'create', key]).code).toBe(0);
    const encrypted = join(dir.path, 'encrypted-source');
    expect(
      backy(['-b', encrypted, 'init', '--store', `encryption.key-file=${key}`, 'file', image]).code,
    ).toBe(0);
    expect(backy(['-b', encrypted, 'backup', '-f', 'manual:copy']).code).toBe(0);
    const target = join(dir.path, 'encrypted-target');
    // No key for the target: its store would name chunks differently.
    const wrong = backy(['-b', encrypted, 'copy', '--init-from-source', target]);
    expect(wrong.code).not.toBe(0);
    expect(oneLineError(wrong)).toMatch(/names chunks differently from the source/);
    expect(await readdir(dir.path)).not.toContain('encrypted-target');
    const right = backy([
      '-b',
      encrypted,
      'copy',
      '--init-from-source',
      '--store',
      `encryption.key-file=${key}`,
      target,
    ]);
    expect(right.stderr).toBe('');
    expect(right.code).toBe(0);
    const out = join(dir.path, 'encrypted-restored');
    expect(backy(['-b', target, 'restore', '-r', 'last', out]).code).toBe(0);
    expect((await readFile(out)).equals(await readFile(image))).toBe(true);
  });

  it('names the target when its store cannot be reached', async () => {
    const target = join(dir.path, 'unreachable');
    await rm(target, { recursive: true, force: true });
    await mkdir(target);
    await writeFile(
      join(target, 'config'),
      stringify({
        source: { type: 'file', filename: image },
        store: { type: 's3', endpoint: 'http://127.0.0.1:1', bucket: 'nowhere' },
      }),
    );
    const r = backy(['-b', source, 'copy', target], {
      env: { AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'y' },
    });
    expect(r.code).toBe(1);
    expect(oneLineError(r)).toMatch(/^backy: error: copy: target .*unreachable.*connection refused/);
  });
});

describe.skipIf(rgw.skip != null)('backy copy to and from an S3 store (RGW)', () => {
  const gateway = rgw.skip == null ? rgw : null;
  const env = {
    AWS_ACCESS_KEY_ID: gateway?.accessKeyId,
    AWS_SECRET_ACCESS_KEY: gateway?.secretAccessKey,
  };
  const bucket = `copy-${randomBytes(4).toString('hex')}`;

  beforeAll(async () => {
    const s3 = new S3Client(s3ClientConfig(gateway!));
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    s3.destroy();
  });

  it('copies local → RGW (only the missing chunks) and RGW → local, each restoring byte-identical', async () => {
    const offsite = join(dir.path, 'offsite');
    const s3 = [
      '--store',
      'type=s3',
      '--store',
      `endpoint=${gateway!.endpoint}`,
      '--store',
      `bucket=${bucket}`,
      '--store',
      'prefix=vm1/',
    ];
    const [first] = [...images.keys()];
    const up = backy(['-b', source, 'copy', '-r', first!, '--init-from-source', ...s3, offsite], { env });
    expect(up.stderr).toBe('');
    expect(up.code).toBe(0);
    expect(lines(up.stdout)).toEqual([[first, 'copied, 4 chunks sent (16.0 MiB), 0 already there']]);

    // An incremental backup changed one chunk: only that one goes to the bucket.
    const v2 = Buffer.from(v1);
    randomBytes(64).copy(v2, 5 * MiB);
    const second = await backupAs(v2);
    const incremental = backy(['-b', source, 'copy', offsite], { env });
    expect(incremental.stderr).toBe('');
    expect(lines(incremental.stdout)).toEqual([
      [first, 'already in the target'],
      [second, 'copied, 1 chunk sent (4.0 MiB), 3 already there'],
    ]);
    await expectRestores(offsite, [first!, second], env);

    // Back from the bucket, on a "new host": the offsite archive's directory has nothing but its config.
    for (const name of await readdir(offsite)) if (name !== 'config') await rm(join(offsite, name));
    // It is the archive the bucket holds only when told so.
    const unattached = backy(['-b', offsite, 'status'], { env });
    expect(unattached.code).not.toBe(0);
    expect(oneLineError(unattached)).toMatch(/has no archive ID: .*init --attach/);
    const attach = backy(['-b', offsite, 'init', '--attach'], { env });
    expect(attach.stderr).toBe('');
    expect(attach.stdout).toMatch(/^Attached .* \(2 revisions\)$/m);
    const back = join(dir.path, 'back');
    const down = backy(['-b', offsite, 'copy', '--init-from-source', back], { env });
    expect(down.stderr).toBe('');
    expect(down.code).toBe(0);
    expect(lines(down.stdout)).toEqual([
      [first, 'copied, 4 chunks sent (16.0 MiB), 0 already there'],
      [second, 'copied, 1 chunk sent (4.0 MiB), 3 already there'],
    ]);
    // The copy back keeps its own store: no S3 in its config, its chunks in its directory.
    expect(await readFile(join(back, 'config'), 'utf8')).not.toContain('s3');
    await expectRestores(back, [first!, second]);
    await expectRestores(offsite, [first!, second], env);
  });
});
