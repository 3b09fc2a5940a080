import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ChildProcessRunner, runProcess } from './runner.js';

const never = new AbortController().signal;

describe('runProcess', () => {
  it('gives the child a progress channel and hears its lines, ignoring what is not progress', async () => {
    const heard: unknown[] = [];
    const script = [
      "const fs = require('node:fs');",
      'const fd = Number(process.env.BACKY_PROGRESS_FD);',
      "fs.writeSync(fd, JSON.stringify({ phase: 'backup', done: 1, total: 4 }) + '\\n');",
      "fs.writeSync(fd, 'not json\\n' + JSON.stringify({ phase: 'backup', done: 4, total: 4 }) + '\\n');",
    ].join('');
    const r = await runProcess([process.execPath, '-e', script], {
      signal: never,
      killGraceMs: 1000,
      onProgress: (p) => heard.push(p),
    });
    expect(r).toMatchObject({ ok: true, stderr: '' });
    expect(heard).toEqual([
      { phase: 'backup', done: 1, total: 4 },
      { phase: 'backup', done: 4, total: 4 },
    ]);
    // Without a listener there is no channel.
    const none = await runProcess(
      [process.execPath, '-e', 'process.exit(process.env.BACKY_PROGRESS_FD ? 1 : 0)'],
      {
        signal: never,
        killGraceMs: 1000,
      },
    );
    expect(none.exitCode).toBe(0);
  });

  it('reports the exit status and the tail of stderr', async () => {
    const ok = await runProcess(['sh', '-c', 'exit 0'], { signal: never, killGraceMs: 1000 });
    expect(ok).toMatchObject({ ok: true, exitCode: 0, signal: null });
    const bad = await runProcess(
      ['sh', '-c', 'yes x | head -c 100000 >&2; echo "backy: error: it broke" >&2; exit 75'],
      {
        signal: never,
        killGraceMs: 1000,
      },
    );
    expect(bad.ok).toBe(false);
    expect(bad.exitCode).toBe(75);
    expect(bad.stderr.endsWith('backy: error: it broke')).toBe(true);
    expect(bad.stderr.length).toBeLessThanOrEqual(4096);
  });

  it('feeds stdin and says why a program cannot start', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'backy-run-'));
    const r = await runProcess(['sh', '-c', `cat > ${dir}/in`], {
      signal: never,
      killGraceMs: 1000,
      input: '- a\n- b\n',
    });
    expect(r.ok).toBe(true);
    expect(await readFile(join(dir, 'in'), 'utf8')).toBe('- a\n- b\n');
    const missing = await runProcess(['/nonexistent/program'], { signal: never, killGraceMs: 1000 });
    expect(missing).toMatchObject({
      ok: false,
      exitCode: null,
      stderr: 'cannot run /nonexistent/program: ENOENT',
    });
  });

  it('terminates on abort with SIGTERM, and with SIGKILL after the grace period', async () => {
    const polite = new AbortController();
    const p1 = runProcess(['sleep', '30'], { signal: polite.signal, killGraceMs: 5000 });
    setTimeout(() => polite.abort(), 100);
    expect(await p1).toMatchObject({ ok: false, signal: 'SIGTERM' });

    const stubborn = new AbortController();
    const started = Date.now();
    const p2 = runProcess(['sh', '-c', 'trap "" TERM; sleep 30 & wait; sleep 30'], {
      signal: stubborn.signal,
      killGraceMs: 300,
    });
    setTimeout(() => stubborn.abort(), 100);
    const r = await p2;
    expect(r.signal).toBe('SIGKILL');
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

describe('runProcess and stray helpers', () => {
  it('does not wait for a background process that keeps stderr open', async () => {
    const started = Date.now();
    const r = await runProcess(['sh', '-c', 'sleep 30 & echo done >&2; exit 3'], {
      signal: never,
      killGraceMs: 1000,
    });
    expect(r.exitCode).toBe(3);
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

describe('ChildProcessRunner', () => {
  it('runs the backy command with -b DIR -l DIR/backy.log and the subcommand', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'backy-run-'));
    const argsFile = join(dir, 'args');
    // A stand-in for the backy binary that records its arguments.
    const runner = new ChildProcessRunner({
      command: ['sh', '-c', `printf '%s\\n' "$@" >> ${argsFile}`, 'backy'],
    });
    await runner.backup({ job: 'j', dir, tags: ['daily', 'weekly'], signal: never });
    await runner.expire({ job: 'j', dir, signal: never });
    await runner.purge({ job: 'j', dir, signal: never });
    await runner.copy({ job: 'j', dir, target: '/mnt/offsite/j', signal: never });
    const lines = (await readFile(argsFile, 'utf8')).trim().split('\n');
    const log = join(dir, 'backy.log');
    expect(lines).toEqual([
      ...['-b', dir, '-l', log, 'backup', 'daily,weekly'],
      ...['-b', dir, '-l', log, 'expire'],
      ...['-b', dir, '-l', log, 'purge', '--wait', '10'],
      ...['-b', dir, '-l', log, 'copy', '/mnt/offsite/j'],
    ]);
    const cb = await runner.callback({ job: 'j', dir, signal: never, program: 'sh', input: '' });
    expect(cb.ok).toBe(false); // `sh j` looks for a script named j in the job directory: proof of argv and cwd
    expect(cb.stderr).toMatch(/j/);
    // A daemon run with -v runs its jobs with -v: their backy.log gets debug lines as its own log does.
    const verbose = new ChildProcessRunner({
      command: ['sh', '-c', `printf '%s\\n' "$@" > ${argsFile}`, 'backy'],
      verbose: true,
    });
    await verbose.backup({ job: 'j', dir, tags: ['daily'], signal: never });
    expect((await readFile(argsFile, 'utf8')).trim().split('\n')).toEqual([
      ...['-v', '-b', dir, '-l', log, 'backup', 'daily'],
    ]);
  });
});
