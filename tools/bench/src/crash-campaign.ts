// Crash campaign: SIGKILLs backy at random points of backup, verify, forget, expire, tags and purge,
// then checks that no revision was lost or corrupted. Not part of the default test run (it takes a few
// minutes); run it after changes to the archive's write paths:
//
//   pnpm bench:crash [ROUNDS (default 60)]
//
// After every kill the next command must work, every revision that the killed command could not have
// removed must still be there, and every revision must restore to the image it was made from.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MiB } from './measure.js';
import { BACKY_BIN as BIN } from './paths.js';

const rounds = Number(process.argv[2] ?? 60);
const dir = mkdtempSync(join(tmpdir(), 'backy-crash-'));
const arch = join(dir, 'archive');
const image = join(dir, 'disk.img');
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function backy(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [BIN, '-b', arch, ...args], { encoding: 'utf8', maxBuffer: 1 << 30 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
const must = (...args: string[]) => {
  const r = backy(...args);
  if (r.code !== 0) throw new Error(`backy ${args.join(' ')} failed (${r.code}): ${r.err}`);
  return r;
};
const revisions = (): { uuid: string }[] => JSON.parse(must('status', '--json').out).revisions;

function newImage(): string {
  const data = Buffer.alloc(24 * MiB);
  randomBytes(8 * MiB).copy(data, randomInt(0, 8) * MiB);
  writeFileSync(image, data);
  return sha(data);
}

const content = new Map<string, string>(); // revision → sha of the image it was made from
function backupNow(tags: string): void {
  const s = newImage();
  must('backup', tags);
  const newest = revisions().at(-1)!.uuid;
  content.set(newest, s);
}

newImage();
must('init', 'file', image);
// Replace the default schedule: daily revisions beyond the newest two, older than 2 s, expire.
const config = readFileSync(join(arch, 'config'), 'utf8').replace(/^schedule:\n(?: .*\n)*/m, '');
writeFileSync(join(arch, 'config'), `${config}schedule:\n  daily: {interval: 1s, keep: 2}\n`);
for (let i = 0; i < 3; i++) backupNow(`manual:seed${i}`);

const ops = ['backup', 'verify', 'forget', 'expire', 'tags', 'purge'] as const;
let kills = 0;
let lost = 0;
let corrupt = 0;
for (let round = 1; round <= rounds; round++) {
  backupNow('daily');
  const before = revisions().map((r) => r.uuid);
  const op = ops[randomInt(ops.length)]!;
  const target = before[randomInt(before.length)]!;
  const pending = newImage();
  const args = {
    backup: ['backup', `manual:r${round}`],
    verify: ['verify'],
    forget: ['forget', '-r', target],
    expire: ['expire'],
    tags: ['tags', 'add', '-r', 'all', `manual:t${round}`],
    purge: ['purge'],
  }[op];
  const child = spawn(process.execPath, [BIN, '-b', arch, ...args], { stdio: 'ignore' });
  const delay = randomInt(50, 1500);
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve(signal ?? code)));
  const timer = setTimeout(() => child.kill('SIGKILL'), delay);
  const how = await exited;
  clearTimeout(timer);
  if (how === 'SIGKILL') kills++;
  // The next command repairs what the killed one left (a backup cleans up), and must work.
  backupNow('daily');
  const after = revisions().map((r) => r.uuid);
  const status = backy('status');
  if (/damaged revision/.test(status.err)) {
    console.error(`round ${round} (${op}): ${status.err.trim()}`);
    corrupt++;
  }
  for (const id of before) {
    const mayGo = (op === 'forget' && id === target) || op === 'expire' || !content.get(id);
    if (!after.includes(id) && !mayGo) {
      console.error(`round ${round} (${op}, killed after ${delay} ms): revision ${id} was lost`);
      lost++;
    }
  }
  for (const id of after) {
    // A backup killed after its commit: its content is the image written for this round.
    if (!content.has(id)) content.set(id, pending);
  }
  // Restore a sample each round (all of them in the last one), so rounds stay cheap as history grows.
  const sample = round === rounds ? after : after.filter(() => randomInt(after.length) < 3);
  for (const id of sample) {
    const out = join(dir, 'restored.img');
    const r = backy('restore', '-r', id, '--force', out);
    if (r.code !== 0 || sha(readFileSync(out)) !== content.get(id)) {
      console.error(`round ${round} (${op}): revision ${id} does not restore: ${r.err.trim()}`);
      corrupt++;
    }
  }
  process.stdout.write(
    `round ${round}/${rounds}: ${op} ${how === 'SIGKILL' ? `killed after ${delay} ms` : `exited ${how}`}; ${after.length} revisions\n`,
  );
}
rmSync(dir, { recursive: true, force: true });
console.log(
  `crash campaign: ${rounds} rounds, ${kills} SIGKILLs, ${lost} revisions lost, ${corrupt} corrupt`,
);
process.exit(lost + corrupt > 0 ? 1 : 0);
