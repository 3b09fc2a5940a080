import { parseCentralConfig } from '@backy/core';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { JobTable } from './job-table.js';

const log = pino({ level: 'silent' });
const fileJob = (filename: string) => ({ schedule: 's', source: { type: 'file', filename } });
const config = (jobs: Record<string, unknown>, global: Record<string, unknown> = {}) =>
  parseCentralConfig(
    {
      global: { 'base-dir': '/srv/b', ...global },
      schedules: { s: { daily: { interval: '1d', keep: 7 } } },
      jobs,
    },
    'test.conf',
  );

describe('JobTable', () => {
  it('builds the jobs from the central config, with the archive config as the user wrote it', () => {
    const table = new JobTable({ log, slowThresholdSeconds: 600 });
    const changes = table.apply(
      config(
        { a: fileJob('/a'), b: { ...fileJob('/b'), layout: 'images' } },
        { store: { path: '../store' } },
      ),
    );
    expect(changes).toEqual({ added: ['a', 'b'], removed: [], changed: [] });
    const a = table.get('a')!;
    expect(a).toMatchObject({ dir: '/srv/b/a', state: 'waiting', failures: 0, removed: false });
    // The schedule's durations stay as written ('1d'), not as the parsed seconds.
    expect(a.archiveConfig).toEqual({
      source: { type: 'file', filename: '/a' },
      schedule: { daily: { interval: '1d', keep: 7 } },
      store: { path: '../store' },
    });
    expect(table.get('b')!.archiveConfig).toMatchObject({ layout: 'images', store: { path: '../store' } });
  });

  it("passes retention to the archive config: the job's own, else the global one, as written", () => {
    const table = new JobTable({ log, slowThresholdSeconds: 600 });
    table.apply(
      config(
        { a: fileJob('/a'), b: { ...fileJob('/b'), retention: { 'keep-last': 3 } } },
        { retention: { 'keep-daily': 7, 'keep-within': '2d' } },
      ),
    );
    expect(table.get('a')!.archiveConfig.retention).toEqual({ 'keep-daily': 7, 'keep-within': '2d' });
    expect(table.get('b')!.archiveConfig.retention).toEqual({ 'keep-last': 3 });
    expect(() => config({ a: { ...fileJob('/a'), retention: { 'keep-daily': 'many' } } })).toThrow(
      /jobs\.a\.retention\.keep-daily/,
    );
  });

  it('on reload: changes what changed, drops idle jobs at once and running ones after their run', () => {
    const table = new JobTable({ log, slowThresholdSeconds: 600 });
    table.apply(config({ a: fileJob('/a'), b: fileJob('/b'), c: fileJob('/c') }));
    const a = table.get('a')!;
    a.failures = 2;
    table.get('b')!.state = 'running';
    const changes = table.apply(config({ a: fileJob('/a2'), d: fileJob('/d') }));
    expect(changes).toEqual({ added: ['d'], removed: ['b', 'c'], changed: ['a'] });
    // The same job object, its history kept.
    expect(table.get('a')).toBe(a);
    expect(a.failures).toBe(2);
    expect(a.archiveConfig.source).toEqual({ type: 'file', filename: '/a2' });
    expect(table.get('c')).toBeUndefined();
    expect(table.get('b')!.removed).toBe(true);
    // Back in the config before its run ended: kept, neither added nor changed.
    const again = table.apply(config({ a: fileJob('/a2'), b: fileJob('/b'), d: fileJob('/d') }));
    expect(again).toEqual({ added: [], removed: [], changed: [] });
    expect(table.get('b')!.removed).toBe(false);
    expect(table.size).toBe(3);
  });

  it('on reload: a job moved to other fleet labels takes them (a labels-only change counts)', () => {
    const table = new JobTable({ log, slowThresholdSeconds: 600 });
    table.apply(config({ a: { ...fileJob('/a'), labels: { site: 'x' } } }));
    const changes = table.apply(config({ a: { ...fileJob('/a'), labels: { site: 'y' } } }));
    expect(changes.changed).toEqual(['a']);
    expect(table.get('a')!.config.labels).toEqual({ site: 'y' });
  });
});
