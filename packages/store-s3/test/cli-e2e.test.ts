import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeleteObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { Archive, type Revision } from '@backy/core';
import { Repository } from '@backy/core/store';
import { MiB } from '@backy/core/testing';
import { BACKY_BIN, skipWithoutCli } from '@backy/test-env/cli';
import { rgwSkip } from '@backy/test-env/rgw';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { s3StoreDriver } from '../src/index.js';
import { S3Objects } from '../src/objects.js';
import { S3Backend } from '../src/s3-backend.js';
import { credentialsEnv, s3Options, testBucket } from './fixture.js';

// The CLI end to end on a real Ceph RGW: what an operator does with an archive in object storage.
const rgw = inject('rgw');
const skip = skipWithoutCli('store-s3 cli', rgw.skip != null ? rgwSkip('store-s3 cli') : null);

let dir = '';
let bucket = '';
let client: S3Client;
let env: NodeJS.ProcessEnv;

function backy(args: string[], extraEnv: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BACKY_BIN, ...args], {
    env: { ...env, ...extraEnv },
    encoding: 'utf8',
    maxBuffer: 64 * MiB,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function backyChild(args: string[]): {
  child: ChildProcess;
  done: Promise<{ code: number | null; stderr: string }>;
} {
  const child = spawn(process.execPath, [BACKY_BIN, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  const done = new Promise<{ code: number | null; stderr: string }>((resolve) =>
    child.on('exit', (code) => resolve({ code, stderr })),
  );
  return { child, done };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A VM-like image: compressible text, random blocks and zeros, in 1 MiB pieces. */
function image(size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let off = 0; off < size; off += MiB) {
    const kind = (off / MiB) % 3;
    if (kind === 0) out.write(`block ${off} of a VM disk\n`.repeat(MiB / 24).slice(0, MiB), off);
    else if (kind === 1) randomBytes(MiB).copy(out, off);
  }
  return out;
}

async function writeAt(path: string, offset: number, data: Buffer): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    await handle.write(data, 0, data.length, offset);
  } finally {
    await handle.close();
  }
}

/** The archive's revisions as `status --json` shows them, oldest first. */
function revisions(archive: string): { uuid: string; tags: string[] }[] {
  const r = backy(['-b', archive, 'status', '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout).revisions;
}

async function restoreSha(archive: string, id: string): Promise<string> {
  const out = join(dir, `restore-${id}-${randomBytes(3).toString('hex')}.img`);
  const r = backy(['-b', archive, 'restore', '-r', id, out]);
  expect(r.code, r.stderr).toBe(0);
  const hash = sha(await readFile(out));
  await rm(out);
  return hash;
}

async function initArchive(name: string, img: string, prefix: string): Promise<string> {
  const archive = join(dir, name);
  const r = backy([
    '-b',
    archive,
    'init',
    '--store',
    'type=s3',
    '--store',
    `endpoint=${rgw.skip == null ? rgw.endpoint : ''}`,
    '--store',
    `bucket=${bucket}`,
    '--store',
    `prefix=${prefix}`,
    'file',
    img,
  ]);
  expect(r.code, r.stderr).toBe(0);
  return archive;
}

async function countObjects(prefix: string): Promise<number> {
  let count = 0;
  let token: string | undefined;
  do {
    const out = await client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    count += out.KeyCount ?? 0;
    token = out.IsTruncated ? out.NextContinuationToken : undefined;
  } while (token != null);
  return count;
}

beforeAll(async () => {
  if (skip != null || rgw.skip != null) return;
  dir = join(tmpdir(), `backy-s3-e2e-${randomBytes(4).toString('hex')}`);
  await mkdir(dir, { recursive: true });
  ({ bucket, client } = await testBucket(rgw));
  env = { ...process.env, ...credentialsEnv(rgw) };
  // For the leases this test takes itself, as another host would.
  Object.assign(process.env, credentialsEnv(rgw));
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe.skipIf(skip != null)('backy with an archive on S3 (Ceph RGW)', () => {
  it('backs up, incrementally, restores; then a new host with only the config restores every revision and continues', async () => {
    const img = join(dir, 'vm1.img');
    const data = image(24 * MiB + 4321);
    await writeFile(img, data);
    const archive = await initArchive('vm1', img, 'vm1/');
    const full = backy(['-b', archive, 'backup', 'daily']);
    expect(full.code, full.stderr).toBe(0);
    const sums = [sha(data)];
    await writeAt(img, 5 * MiB + 77, randomBytes(3 * MiB));
    const incremental = backy(['-b', archive, 'backup', 'daily']);
    expect(incremental.code, incremental.stderr).toBe(0);
    // Only the changed chunks went to the store (4 MiB chunks: a 3 MiB write at 5 MiB touches two).
    expect(incremental.stdout).toMatch(/, 2 new \/ 5 reused \/ 0 zero chunks/);
    sums.push(sha(await readFile(img)));
    const revs = revisions(archive);
    expect(revs).toHaveLength(2);
    for (const [i, rev] of revs.entries()) expect(await restoreSha(archive, rev.uuid)).toBe(sums[i]);
    // The store has everything: chunks, maps and .revs.
    expect(await countObjects('vm1/revisions/')).toBe(4);

    // The backup host is lost: a new one has only the archive's config (and the credentials).
    const fresh = join(dir, 'vm1-new-host');
    await mkdir(fresh);
    await writeFile(join(fresh, 'config'), await readFile(join(archive, 'config')));
    // It becomes the archive the prefix holds only when told so (else a second archive's config given
    // the same prefix by mistake would take over the first one's history).
    const unattached = backy(['-b', fresh, 'status']);
    expect(unattached.code).not.toBe(0);
    expect(unattached.stderr.trim().split('\n')).toHaveLength(1);
    expect(unattached.stderr).toMatch(/has no archive ID: .*`backy -b .* init --attach`/);
    const attach = backy(['-b', fresh, 'init', '--attach']);
    expect(attach.code, attach.stderr).toBe(0);
    expect(attach.stdout).toMatch(/\(2 revisions\)/);
    expect(await readFile(join(fresh, 'archive-id'), 'utf8')).toBe(
      await readFile(join(archive, 'archive-id'), 'utf8'),
    );
    expect(revisions(fresh).map((r) => r.uuid)).toEqual(revs.map((r) => r.uuid));
    for (const [i, rev] of revs.entries()) expect(await restoreSha(fresh, rev.uuid)).toBe(sums[i]);
    const verify = backy(['-b', fresh, 'verify', '-r', 'all']);
    expect(verify.code, verify.stderr).toBe(0);
    // It continues the history incrementally, and the old host sees the new revision too.
    await writeAt(img, 20 * MiB, randomBytes(1000));
    const next = backy(['-b', fresh, 'backup', 'daily']);
    expect(next.code, next.stderr).toBe(0);
    expect(next.stdout).toMatch(/, 1 new \/ 6 reused \/ 0 zero chunks/);
    expect(revisions(archive)).toHaveLength(3);
    // A revision forgotten on one host is gone on the other; purge there frees its chunks.
    const forget = backy(['-b', archive, 'forget', '-r', revs[0]!.uuid]);
    expect(forget.code, forget.stderr).toBe(0);
    expect(revisions(fresh).map((r) => r.uuid)).not.toContain(revs[0]!.uuid);
    const purge = backy(['-b', fresh, 'purge']);
    expect(purge.code, purge.stderr).toBe(0);
    expect(purge.stdout).toMatch(/^purged [1-9]\d* chunks/);
    expect(await restoreSha(archive, revs[1]!.uuid)).toBe(sums[1]);
  });

  it('refuses a second archive on the same bucket and prefix (init and open), unless it is attached', async () => {
    const img = join(dir, 'vm20.img');
    const data = image(8 * MiB);
    await writeFile(img, data);
    const first = await initArchive('vm20', img, 'vm20/');
    expect(backy(['-b', first, 'backup', 'daily']).code).toBe(0);
    const id = (await readFile(join(first, 'archive-id'), 'utf8')).trim();
    const [rev] = revisions(first);

    // Another VM's archive given the same prefix: refused, and nothing of it is left.
    const other = join(dir, 'vm21.img');
    await writeFile(other, image(4 * MiB));
    const second = join(dir, 'vm21');
    const store = ['--store', 'type=s3', '--store', `endpoint=${rgw.skip == null ? rgw.endpoint : ''}`];
    const init = backy([
      '-b',
      second,
      'init',
      ...store,
      '--store',
      `bucket=${bucket}`,
      '--store',
      'prefix=vm20/',
      'file',
      other,
    ]);
    expect(init.code).not.toBe(0);
    const lines = init.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^backy: error: /);
    expect(lines[0]).toContain(`already holds the history of archive ${id}`);
    expect(lines[0]).toContain('--attach');
    expect(await readdir(dir)).not.toContain('vm21');

    // Made anyway (a config written by hand, or by the daemon) or with its own ID: every command refuses.
    await mkdir(second);
    await writeFile(join(second, 'config'), await readFile(join(first, 'config')));
    for (const command of [['status'], ['backup', 'daily'], ['restore', '-r', 'last', join(dir, 'x.img')]]) {
      const r = backy(['-b', second, ...command]);
      expect(r.code, command.join(' ')).not.toBe(0);
      expect(r.stderr).toContain(`holds the revisions of archive ${id}`);
    }
    await writeFile(join(second, 'archive-id'), 'AAAAAAAAAAAAAAAAAAAAAA\n');
    const mismatch = backy(['-b', second, 'backup', 'daily']);
    expect(mismatch.code).not.toBe(0);
    expect(mismatch.stderr).toContain(
      `belongs to another archive (ID ${id}, this one is AAAAAAAAAAAAAAAAAAAAAA)`,
    );

    // The first archive's history is untouched.
    expect(revisions(first).map((r) => r.uuid)).toEqual([rev!.uuid]);
    expect(await restoreSha(first, rev!.uuid)).toBe(sha(data));

    // --attach to a prefix no archive holds is refused: a typo in the prefix must not start a new history.
    const nobody = join(dir, 'vm22');
    const attachNothing = backy([
      '-b',
      nobody,
      'init',
      '--attach',
      ...store,
      '--store',
      `bucket=${bucket}`,
      '--store',
      'prefix=vm22-typo/',
      'file',
      other,
    ]);
    expect(attachNothing.code).not.toBe(0);
    expect(attachNothing.stderr).toMatch(/holds no archive to attach to/);
    expect(await readdir(dir)).not.toContain('vm22');
  });

  it('refuses a second writer from another host with one line while the archive is being written', async () => {
    const img = join(dir, 'vm2.img');
    await writeFile(img, image(4 * MiB));
    const archive = await initArchive('vm2', img, 'vm2/');
    const other = new Repository(new S3Backend(new S3Objects(s3Options(rgw as never, bucket, 'vm2/'), null)));
    const held = await other.catalog!.lockWriter();
    try {
      const r = backy(['-b', archive, 'backup', 'daily']);
      expect(r.code).toBe(69);
      expect(r.stderr.trim().split('\n')).toEqual([
        expect.stringMatching(
          /^backy: error: s3:\/\/\S+\/vm2\/ is being written by host \S+ \(pid \d+\) since \S+; try again when it has finished$/,
        ),
      ]);
    } finally {
      await held.release();
    }
    expect(backy(['-b', archive, 'backup', 'daily']).code).toBe(0);
  });

  it('purge racing backups keeps every revision restorable', async () => {
    const img = join(dir, 'vm3.img');
    await writeFile(img, image(12 * MiB));
    const archive = await initArchive('vm3', img, 'vm3/');
    expect(backy(['-b', archive, 'backup', 'daily']).code).toBe(0);
    const sums = new Map<string, string>([[revisions(archive)[0]!.uuid, sha(await readFile(img))]]);
    for (let round = 0; round < 4; round++) {
      await writeAt(img, (round % 3) * 4 * MiB + 999, randomBytes(2 * MiB));
      const current = sha(await readFile(img));
      // Forget the oldest, so purge has chunks to delete while the backup reuses others.
      const old = revisions(archive);
      if (old.length > 2) {
        expect(backy(['-b', archive, 'forget', '-r', old[0]!.uuid]).code).toBe(0);
        sums.delete(old[0]!.uuid);
      }
      const before = new Set(revisions(archive).map((r) => r.uuid));
      const p = backyChild(['-b', archive, 'purge', '--wait', '60']);
      const b = backyChild(['-b', archive, 'backup', 'daily']);
      const [rb, rp] = await Promise.all([b.done, p.done]);
      expect(rp.code, rp.stderr).toBe(0);
      // Purge and a backup never run at once: one of them waits (purge) or is refused (the backup).
      if (rb.code === 69) {
        // "another host" when purge ended just as the backup read its lease (the lease was gone).
        expect(rb.stderr).toMatch(/is being purged by (host|another host)/);
        expect(backy(['-b', archive, 'backup', 'daily']).code).toBe(0);
      } else expect(rb.code, rb.stderr).toBe(0);
      const added = revisions(archive).filter((r) => !before.has(r.uuid));
      expect(added).toHaveLength(1);
      sums.set(added[0]!.uuid, current);
    }
    for (const [id, hash] of sums) expect(await restoreSha(archive, id)).toBe(hash);
    expect(backy(['-b', archive, 'verify', '-r', 'all']).code).toBe(0);
  });

  it('a backup killed with -9 leaves no revision in the bucket, and the next one runs at once', async () => {
    const img = join(dir, 'vm6.img');
    await writeFile(img, image(8 * MiB));
    const archive = await initArchive('vm6', img, 'vm6/');
    expect(backy(['-b', archive, 'backup', 'daily']).code).toBe(0);
    const before = revisions(archive).map((r) => r.uuid);
    // A bigger image of new data, killed once its first chunks are in the bucket.
    const data = randomBytes(160 * MiB);
    await writeFile(img, data);
    const chunksBefore = await countObjects('vm6/chunks/');
    const killed = backyChild(['-b', archive, 'backup', 'daily']);
    const deadline = Date.now() + 60_000;
    while ((await countObjects('vm6/chunks/')) === chunksBefore && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    killed.child.kill('SIGKILL');
    expect((await killed.done).code).toBeNull();
    expect(await countObjects('vm6/chunks/')).toBeGreaterThan(chunksBefore);
    expect(await countObjects('vm6/revisions/')).toBe(2 * before.length);
    expect(revisions(archive).map((r) => r.uuid)).toEqual(before);
    // Its leases are a dead process's of this host: the next backup does not wait for them to lapse.
    const next = backy(['-b', archive, 'backup', 'daily']);
    expect(next.code, next.stderr).toBe(0);
    const newest = revisions(archive).at(-1)!.uuid;
    expect(await restoreSha(archive, newest)).toBe(sha(data));
  });

  it('an update from a stale copy (verify on one host) never brings back what another host forgot, nor undoes its tags', async () => {
    const img = join(dir, 'vm7.img');
    await writeFile(img, image(4 * MiB));
    const archive = await initArchive('vm7', img, 'vm7/');
    for (let i = 0; i < 2; i++) expect(backy(['-b', archive, 'backup', 'daily']).code).toBe(0);
    const [gone, kept] = revisions(archive).map((r) => r.uuid) as [string, string];
    // Host A has the archive open (as a long verify does) while host B forgets one revision and tags the other.
    const hostB = join(dir, 'vm7-host-b');
    await mkdir(hostB);
    await writeFile(join(hostB, 'config'), await readFile(join(archive, 'config')));
    // A second host attaches to the archive's history once (the store knows whose it is).
    expect(backy(['-b', hostB, 'init', '--attach']).code).toBe(0);
    const a = await Archive.open(archive, { stores: { s3: s3StoreDriver } });
    expect(backy(['-b', hostB, 'forget', '-r', gone]).code).toBe(0);
    expect(backy(['-b', hostB, 'tags', 'add', '-r', kept, 'manual:keep']).code).toBe(0);
    const verified = (rev: Revision): Revision => ({ ...rev, trust: 'verified' });
    expect(await a.updateRevision(gone, verified)).toBeNull();
    const updated = await a.updateRevision(kept, verified);
    expect(updated?.trust).toBe('verified');
    expect(updated?.tags).toContain('manual:keep');
    // What every host sees: the forgotten revision stays gone, the other has both changes.
    const seen = revisions(hostB);
    expect(seen.map((r) => r.uuid)).toEqual([kept]);
    expect(await countObjects(`vm7/revisions/${gone}`)).toBe(0);
    expect(seen[0]).toMatchObject({
      trust: 'verified',
      tags: expect.arrayContaining(['daily', 'manual:keep']),
    });
  });

  it('says in one line what is wrong with the endpoint, the credentials and the bucket, and keeps what is stored', async () => {
    const img = join(dir, 'vm4.img');
    await writeFile(img, image(4 * MiB));
    const archive = await initArchive('vm4', img, 'vm4/');
    expect(backy(['-b', archive, 'backup', 'daily']).code).toBe(0);
    const config = await readFile(join(archive, 'config'), 'utf8');
    const closed = await new Promise<number>((resolve) => {
      const server = createServer();
      server.listen(0, '127.0.0.1', () => {
        const port = (server.address() as { port: number }).port;
        server.close(() => resolve(port));
      });
    });
    const cases: [string, Record<string, string>, RegExp][] = [
      [
        config.replace(/endpoint: .*/, `endpoint: http://127.0.0.1:${closed}`),
        {},
        /connection refused: is the S3 endpoint right and the service running\?$/,
      ],
      [config, { AWS_SECRET_ACCESS_KEY: 'wrong-secret' }, /the secret key is wrong: check the credentials$/],
      [
        config,
        { AWS_ACCESS_KEY_ID: 'NOSUCHKEY' },
        /the access key is not known to the store: check the credentials$/,
      ],
      [config.replace(/bucket: .*/, 'bucket: no-such-bucket'), {}, /the bucket does not exist/],
      [
        config.replace(/endpoint: .*/, 'endpoint: ftp://x'),
        {},
        /store\.endpoint: must be an http:\/\/ or https:\/\/ URL \(store type s3\)$/,
      ],
    ];
    for (const [text, extra, message] of cases) {
      await writeFile(join(archive, 'config'), text);
      // With the endpoint down, status shows the revisions mirrored in the directory, with one warning.
      const down = message.source.startsWith('connection refused');
      if (down) {
        const r = backy(['-b', archive, 'status', '--json'], extra);
        expect(r.code, r.stderr).toBe(0);
        expect(JSON.parse(r.stdout).revisions).toHaveLength(1);
        const lines = r.stderr.trim().split('\n');
        expect(lines).toHaveLength(1);
        expect(lines[0]).toMatch(
          /^backy: warning: .*connection refused: is the S3 endpoint right and the service running\?; showing the revisions as last copied into /,
        );
      }
      for (const command of down ? [['backup', 'daily']] : [['status'], ['backup', 'daily']]) {
        const r = backy(['-b', archive, ...command], extra);
        expect(r.code, `${command}: ${r.stderr}`).not.toBe(0);
        const lines = r.stderr.trim().split('\n');
        expect(lines, r.stderr).toHaveLength(1);
        expect(lines[0]).toMatch(/^backy: error: /);
        expect(lines[0]).toMatch(message);
        expect(r.stderr).not.toContain(rgw.skip == null ? rgw.secretAccessKey : '-');
      }
    }
    await writeFile(join(archive, 'config'), config);
    expect(revisions(archive)).toHaveLength(1);
    expect(backy(['-b', archive, 'verify']).code).toBe(0);
  });

  it('finds a chunk deleted behind its back, and the next backup writes it anew', async () => {
    const img = join(dir, 'vm5.img');
    const data = image(12 * MiB);
    await writeFile(img, data);
    const archive = await initArchive('vm5', img, 'vm5/');
    expect(backy(['-b', archive, 'backup', 'daily']).code).toBe(0);
    const chunks = (
      await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'vm5/chunks/' }))
    ).Contents!.map((c) => c.Key!);
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: chunks[0]! }));
    const verify = backy(['-b', archive, 'verify']);
    expect(verify.code).not.toBe(0);
    expect(verify.stdout + verify.stderr).toMatch(/missing/);
    const again = backy(['-b', archive, 'backup', 'daily']);
    expect(again.code, again.stderr).toBe(0);
    const newest = revisions(archive).at(-1)!.uuid;
    expect(await restoreSha(archive, newest)).toBe(sha(data));
    expect((await readdir(archive)).filter((n) => n.endsWith('.rev'))).toHaveLength(2);
  });
});
