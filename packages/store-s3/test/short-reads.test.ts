import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, request, type Server } from 'node:http';
import type { S3Client } from '@aws-sdk/client-s3';
import { hashChunk, isBackyError, Repository } from '@backy/core/store';
import { rgwSkip } from '@backy/test-env/rgw';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { S3Objects } from '../src/objects.js';
import { s3OptionsSchema } from '../src/options.js';
import { S3Backend } from '../src/s3-backend.js';
import { credentialsEnv, openTestBackend, testBucket } from './fixture.js';

// A GET whose body does not arrive whole: a proxy in front of the real gateway passes the gateway's
// answer through but cuts the connection after some bytes (what a dying link or a restarted load
// balancer does), or shortens a range answer while keeping its headers consistent. The Node SDK hands
// over the body as a stream after the request resolved: its own retries do not cover a body that
// breaks off, and a short chunk read as the chunk would fail its hash check and be moved aside as
// damaged.
const rgw = inject('rgw');
const skip = rgw.skip != null ? rgwSkip('store-s3 short reads') : null;
let bucket = '';
let client: S3Client;

/** What the proxy does to the answer of a GET: cut it after `bytes`, or shorten a range answer by `bytes`. */
type Fault = { cut: number } | { shorten: number };

/** A proxy to the gateway that spoils the bodies of the first `times` GETs of keys containing `key`. */
async function cuttingProxy(
  key: string,
  fault: Fault,
  times: number,
): Promise<{ backend: S3Backend; spoiled: () => number; close: () => Promise<void> }> {
  if (rgw.skip != null) throw new Error(rgw.skip);
  const target = new URL(rgw.endpoint);
  let spoiled = 0;
  const server: Server = createServer((req, res) => {
    const spoil = req.method === 'GET' && (req.url ?? '').includes(key) && spoiled < times;
    const upstream = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        if (!spoil || (up.statusCode !== 200 && up.statusCode !== 206)) {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
          return;
        }
        spoiled++;
        const chunks: Buffer[] = [];
        up.on('data', (part: Buffer) => chunks.push(part));
        up.on('end', () => {
          const body = Buffer.concat(chunks);
          if ('cut' in fault) {
            res.writeHead(up.statusCode!, up.headers);
            res.write(body.subarray(0, fault.cut), () => res.socket?.destroy());
            return;
          }
          res.writeHead(up.statusCode!, shortened(up.headers, fault.shorten));
          res.end(body.subarray(0, body.length - fault.shorten));
        });
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  Object.assign(process.env, credentialsEnv(rgw));
  const options = s3OptionsSchema.parse({
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    prefix: 'short/',
    region: rgw.region,
  });
  return {
    backend: new S3Backend(new S3Objects(options, null)),
    spoiled: () => spoiled,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A range answer's headers for `by` bytes fewer, as consistent as a real one (not at the object's end). */
function shortened(headers: IncomingHttpHeaders, by: number): IncomingHttpHeaders {
  const length = Number(headers['content-length']) - by;
  const [, start, , total] = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(String(headers['content-range']))!;
  return {
    ...headers,
    'content-length': String(length),
    'content-range': `bytes ${start}-${Number(start) + length - 1}/${total}`,
  };
}

beforeAll(async () => {
  if (rgw.skip != null) return;
  ({ bucket, client } = await testBucket(rgw));
});

describe.skipIf(skip != null)('an S3 GET whose body does not arrive whole', () => {
  const closeAll: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const close of closeAll) await close();
    client?.destroy();
  });

  it('reads a chunk again when the connection is cut mid-body: it arrives intact and stays in place', async () => {
    const direct = new Repository(openTestBackend(rgw as never, bucket, 'short/'), { codec: 'zstd' });
    await direct.init();
    const data = randomBytes(256 * 1024);
    const hash = await hashChunk(data);
    await direct.put(hash, data);
    const proxy = await cuttingProxy(hash, { cut: 64 * 1024 }, 2);
    closeAll.push(proxy.close);
    const store = new Repository(proxy.backend, { codec: 'zstd' });
    expect((await store.get(hash)).equals(data)).toBe(true);
    expect(proxy.spoiled()).toBe(2);
    // Not taken for a damaged chunk: nothing was moved aside.
    expect(await direct.has(hash)).toBe(true);
  });

  it('fails a GET cut every time with one IO error naming the object, after the retries', async () => {
    const direct = openTestBackend(rgw as never, bucket, 'short/');
    const data = randomBytes(200_000);
    await direct.save('cut-always', data);
    const proxy = await cuttingProxy('cut-always', { cut: 1000 }, Number.POSITIVE_INFINITY);
    closeAll.push(proxy.close);
    for (const pooled of [true, false]) {
      const before = proxy.spoiled();
      const error = await proxy.backend.load('cut-always', { pooled }).catch((e: unknown) => e);
      expect(isBackyError(error, 'IO')).toBe(true);
      expect((error as Error).message).toMatch(
        new RegExp(
          `^reading cut-always: s3://${bucket}/short/cut-always \\(http://127\\.0\\.0\\.1:\\d+\\): the body broke off \\(ECONNRESET\\), still after 6 attempts$`,
        ),
      );
      expect(proxy.spoiled() - before).toBe(6);
    }
  });

  it('never takes a range answer that is short before the object ends for the range', async () => {
    const direct = openTestBackend(rgw as never, bucket, 'short/');
    const data = randomBytes(10_000);
    await direct.save('ranged', data);
    const once = await cuttingProxy('ranged', { shorten: 100 }, 1);
    closeAll.push(once.close);
    const range = { offset: 1000, length: 4000 };
    expect((await once.backend.load('ranged', { range }))?.equals(data.subarray(1000, 5000))).toBe(true);
    expect(once.spoiled()).toBe(1);
    const always = await cuttingProxy('ranged', { shorten: 100 }, Number.POSITIVE_INFINITY);
    closeAll.push(always.close);
    const error = await always.backend.load('ranged', { range }).catch((e: unknown) => e);
    expect(isBackyError(error, 'IO')).toBe(true);
    expect((error as Error).message).toMatch(
      new RegExp(
        `^reading ranged: s3://${bucket}/short/ranged \\(http://127\\.0\\.0\\.1:\\d+\\): asked for bytes 1000-4999, the answer holds bytes 1000-4899/10000 \\(3900 bytes\\), still after 6 attempts$`,
      ),
    );
  });
});
