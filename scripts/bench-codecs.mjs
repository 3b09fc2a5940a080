// Compares the chunk codecs on 4 MiB chunks of a VM-like image: ratio, compress and decompress MB/s on
// one core. Used to choose zstd level 1 as the default (see packages/core/src/store/codec.ts).

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { regionKind } from './vm-image.mjs';

const require = createRequire(new URL('../packages/core/package.json', import.meta.url));
const zstd = require('zstd-napi');
const { makeVmImage } = await import('./vm-image.mjs');
const path = '/tmp/backy-codec-bench.img';
await makeVmImage(path, 64 * 1024 * 1024);
const image = readFileSync(path);
const chunks = [];
for (let i = 0; i < 16; i++)
  if (regionKind(i) === 'text') chunks.push(image.subarray(i * 4194304, (i + 1) * 4194304));
const random = randomBytes(4194304);
const codecs = {
  'zstd 1': [(b) => zstd.compress(b, { compressionLevel: 1 }), (b) => zstd.decompress(b)],
  'zstd 3': [(b) => zstd.compress(b, { compressionLevel: 3 }), (b) => zstd.decompress(b)],
  'zstd -3': [(b) => zstd.compress(b, { compressionLevel: -3 }), (b) => zstd.decompress(b)],
  'deflate 1': [(b) => deflateRawSync(b, { level: 1 }), (b) => inflateRawSync(b)],
};
console.log('codec        text ratio  compress MB/s  decompress MB/s  random compress MB/s');
for (const [name, [c, d]] of Object.entries(codecs)) {
  let t = performance.now();
  const packed = chunks.map((b) => c(b));
  const cs = (performance.now() - t) / 1000;
  t = performance.now();
  for (const p of packed) d(p);
  const ds = (performance.now() - t) / 1000;
  t = performance.now();
  for (let i = 0; i < 4; i++) c(random);
  const rs = (performance.now() - t) / 1000;
  const ratio = packed.reduce((s, p) => s + p.length, 0) / (chunks.length * 4194304);
  const mb = (chunks.length * 4194304) / 1e6;
  console.log(
    `${name.padEnd(12)} ${ratio.toFixed(3).padStart(10)} ${(mb / cs).toFixed(0).padStart(14)} ${(mb / ds).toFixed(0).padStart(16)} ${((4 * 4194304) / 1e6 / rs).toFixed(0).padStart(20)}`,
  );
}
