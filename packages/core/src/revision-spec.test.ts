import { describe, expect, it } from 'vitest';
import { BackyError } from './errors.js';
import { resolveRevisionSpec, resolveSingleRevision } from './revision-spec.js';

const revs = [
  { uuid: 'AAAAbbbbCCCCddddEEEEff', tags: ['daily'], trust: 'trusted' as const },
  { uuid: 'AAAAxxxxCCCCddddEEEEff', tags: ['daily', 'weekly'], trust: 'verified' as const },
  { uuid: 'ZZZZbbbbCCCCddddEEEEff', tags: ['daily'], trust: 'distrusted' as const },
];
const ids = (spec: string) => resolveRevisionSpec(revs, spec).map((r) => r.uuid.slice(0, 8));

describe('revision specs', () => {
  it('counts from the newest', () => {
    expect(ids('0')).toEqual(['ZZZZbbbb']);
    expect(ids('2')).toEqual(['AAAAbbbb']);
    expect(ids('last')).toEqual(['ZZZZbbbb']);
    expect(ids('latest')).toEqual(['ZZZZbbbb']);
  });

  it('finds full ids, unique prefixes and tags', () => {
    expect(ids('AAAAxxxxCCCCddddEEEEff')).toEqual(['AAAAxxxx']);
    expect(ids('AAAAx')).toEqual(['AAAAxxxx']);
    expect(ids('Z')).toEqual(['ZZZZbbbb']);
    expect(ids('weekly')).toEqual(['AAAAxxxx']);
    expect(ids('daily')).toEqual(['ZZZZbbbb']);
  });

  it('selects sets', () => {
    expect(ids('tag:daily')).toEqual(['AAAAbbbb', 'AAAAxxxx', 'ZZZZbbbb']);
    expect(ids('trust:verified')).toEqual(['AAAAxxxx']);
    expect(ids('all')).toHaveLength(3);
    expect(ids('tag:none')).toEqual([]);
  });

  it('reports ambiguous and unknown specs', () => {
    expect(() => ids('AAAA')).toThrowError(/ambiguous.*AAAAbbbb.*AAAAxxxx/);
    expect(() => ids('nope')).toThrowError(/no revision has that ID/);
    expect(() => ids('7')).toThrowError(/only 3 revisions/);
    expect(() => ids('trust:bogus')).toThrowError(/trust must be one of/);
    expect(() => resolveRevisionSpec([], 'last')).toThrowError(BackyError);
    expect(() => resolveSingleRevision(revs, 'all')).toThrowError(/matches 3 revisions/);
  });
});
