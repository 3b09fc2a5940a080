import { describe, expect, it } from 'vitest';
import { type FleetServer, ownerOf, unitHash } from './rendezvous.js';

const servers = (n: number, workers = 2): FleetServer[] =>
  Array.from({ length: n }, (_, i) => ({
    name: `s${i}`,
    labels: { site: i % 2 === 0 ? 'a' : 'b' },
    workers,
  }));
const jobs = Array.from({ length: 2000 }, (_, i) => `vm${i}`);

describe('rendezvous hashing of jobs over live servers', () => {
  it('gives every server the same answer whatever the order of the list', () => {
    const list = servers(7);
    const reversed = [...list].reverse();
    for (const job of jobs.slice(0, 200))
      expect(ownerOf(job, undefined, reversed)).toBe(ownerOf(job, undefined, list));
  });

  it('moves only the jobs of a server that leaves, and spreads them over the others', () => {
    const list = servers(10);
    const before = new Map(jobs.map((j) => [j, ownerOf(j, undefined, list)!.name]));
    const after = new Map(
      jobs.map((j) => [
        j,
        ownerOf(
          j,
          undefined,
          list.filter((s) => s.name !== 's3'),
        )!.name,
      ]),
    );
    const moved = jobs.filter((j) => before.get(j) !== after.get(j));
    expect(moved.every((j) => before.get(j) === 's3')).toBe(true);
    expect(moved.length).toBe(jobs.filter((j) => before.get(j) === 's3').length);
    expect(new Set(moved.map((j) => after.get(j))).size).toBeGreaterThanOrEqual(7);
  });

  it('spreads jobs about evenly, and by worker limit when the limits differ', () => {
    const count = (list: FleetServer[]) => {
      const n = new Map<string, number>();
      for (const j of jobs)
        n.set(ownerOf(j, undefined, list)!.name, (n.get(ownerOf(j, undefined, list)!.name) ?? 0) + 1);
      return n;
    };
    const even = count(servers(4));
    for (const c of even.values()) expect(c).toBeGreaterThan(400);
    const weighted = count([
      { name: 'big', labels: {}, workers: 4 },
      { name: 'small', labels: {}, workers: 1 },
    ]);
    // Expected 4:1, i.e. 1600:400.
    expect(weighted.get('big')).toBeGreaterThan(1450);
    expect(weighted.get('small')).toBeGreaterThan(250);
  });

  it("honours a job's labels, and has no owner when no live server satisfies them", () => {
    const list = servers(6);
    for (const job of jobs.slice(0, 300)) expect(ownerOf(job, { site: 'b' }, list)!.labels.site).toBe('b');
    expect(ownerOf('vm1', { site: 'c' }, list)).toBeNull();
    expect(ownerOf('vm1', undefined, [])).toBeNull();
  });

  it('hashes into (0, 1)', () => {
    for (const job of jobs) {
      const u = unitHash('s', job);
      expect(u > 0 && u < 1).toBe(true);
    }
  });
});
