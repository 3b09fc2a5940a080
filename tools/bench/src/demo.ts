// The README's first command: back up a sample VM image, change it, back up again, show status,
// restore the older revision and prove it is byte-identical.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { changeBlocks, writeVmImage } from '@backy/core/testing/helpers';
import { BACKY_BIN as bin, REPO } from './paths.js';

const demo = join(REPO, '.demo');
const image = join(demo, 'vm-disk.img');
const archive = join(demo, 'archive');
const SIZE = 256 * 1024 * 1024;

const show = (p: string) => relative(process.cwd(), p) || '.';
function backy(...args: string[]): void {
  console.log(`\n$ backy ${args.map((a) => (a.startsWith('/') ? show(a) : a)).join(' ')}`);
  const r = spawnSync(process.execPath, [bin, ...args], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`demo failed: backy ${args.join(' ')} exited with ${r.status}`);
    process.exit(1);
  }
}
async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk);
  return hash.digest('hex');
}

await rm(demo, { recursive: true, force: true });
await mkdir(demo, { recursive: true });
console.log(`Making a 256 MiB VM-like disk image at ${show(image)} (random data, zeros and text)`);
await writeVmImage(image, SIZE);
const original = await sha256(image);

backy('-b', archive, 'init', 'file', image);
backy('-b', archive, 'backup', 'daily');
console.log('\nChanging 5 blocks of the image, as a running VM would');
await changeBlocks(image, SIZE, 5);
backy('-b', archive, 'backup', 'daily');
backy('-b', archive, 'status');
const restored = join(demo, 'restored.img');
backy('-b', archive, 'restore', '-r', '1', restored);
backy('-b', archive, 'verify');

const got = await sha256(restored);
console.log(`\nsha256 of the image at the first backup: ${original}`);
console.log(`sha256 of the restored older revision:   ${got}`);
if (got !== original) {
  console.error('MISMATCH: the restored image differs from the original');
  process.exit(1);
}
console.log(
  `Identical. Everything is under ${show(demo)}; try \`node ${show(bin)} -b ${show(archive)} --help\`.`,
);
