import { describe, expect, it } from 'vitest';
import { parseCentralConfig } from './central-config.js';
import { labelsSatisfy } from './fleet-config.js';

const schedules = { s: { daily: { interval: '1d', keep: 3 } } };
const job = { schedule: 's', source: { type: 'file', filename: '/dev/null' } };

function problem(raw: unknown): string {
  try {
    parseCentralConfig(raw, 'backy.conf');
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('config was accepted');
}

describe('the fleet section of the central config', () => {
  it('fills in defaults; durations as the rest of the config writes them', () => {
    const loaded = parseCentralConfig(
      {
        schedules,
        jobs: { vm1: { ...job, labels: { site: 'rz1' } } },
        fleet: { server: 'b1', 'session-ttl': '30s' },
      },
      'x',
    );
    expect(loaded.config.fleet).toEqual({
      consul: 'http://127.0.0.1:8500',
      server: 'b1',
      labels: {},
      'session-ttl': 30,
      'lock-delay': 15,
      'key-prefix': 'backy/fleet',
    });
    expect(loaded.config.jobs.vm1!.labels).toEqual({ site: 'rz1' });
    expect(parseCentralConfig({ schedules, jobs: {} }, 'x').config.fleet).toBeUndefined();
  });

  it('refuses mistakes in one line naming the key path', () => {
    for (const [fleet, path] of [
      [{ 'session-ttl': '2d' }, 'fleet.session-ttl'],
      [{ 'lock-delay': '5m' }, 'fleet.lock-delay'],
      [{ 'token-file': 'token' }, 'fleet.token-file'],
      [{ server: '../x' }, 'fleet.server'],
      [{ 'key-prefix': '/backy/' }, 'fleet.key-prefix'],
      [{ consul: 'x', serverr: 'a' }, 'fleet'],
    ] as const) {
      const message = problem({ schedules, jobs: {}, fleet });
      expect(message).toContain(path);
      expect(message).not.toContain('\n');
    }
    const bad = problem({ schedules, jobs: { vm1: { ...job, labels: { site: 3 } } } });
    expect(bad).toContain('jobs.vm1.labels.site');
  });

  it('a server satisfies a job when it has every label the job names, with the same value', () => {
    expect(labelsSatisfy({ site: 'a', ssd: 'yes' }, { site: 'a' })).toBe(true);
    expect(labelsSatisfy({ site: 'a' }, undefined)).toBe(true);
    expect(labelsSatisfy({ site: 'a' }, { site: 'b' })).toBe(false);
    expect(labelsSatisfy({}, { site: 'a' })).toBe(false);
  });
});
