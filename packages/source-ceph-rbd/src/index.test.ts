import { describe, expect, it } from 'vitest';
import { parseImageArgument } from './image-argument.js';
import rbdSource from './index.js';
import { rbdSourceOptions } from './options.js';
import { Rbd, summarizeStderr } from './rbd.js';
import { qemuRbdFilename, qemuRbdImageOpts } from './snapshot-reader.js';
import { sampleIndexes } from './source.js';

describe('ceph-rbd source definition', () => {
  it('turns `backy init ceph-rbd POOL/IMAGE` into options', () => {
    expect(rbdSource.type).toBe('ceph-rbd');
    expect(rbdSource.parseInitArgument!('rbd/vm01.root')).toEqual({ pool: 'rbd', image: 'vm01.root' });
    expect(rbdSource.parseInitArgument!(' pool-2/img_3 ')).toEqual({ pool: 'pool-2', image: 'img_3' });
    for (const bad of ['vm01', 'rbd/', '/img', 'a/b/c', 'rbd/img@snap']) {
      expect(() => rbdSource.parseInitArgument!(bad)).toThrow(
        /^expected POOL\/IMAGE for a ceph-rbd source \(e\.g\. rbd\/vm01\.root\), got/,
      );
    }
    expect(parseImageArgument('a/b')).toEqual({ pool: 'a', image: 'b' });
  });

  it('validates options, with full-always off by default', () => {
    expect(rbdSourceOptions.parse({ pool: 'rbd', image: 'vm' })).toEqual({
      pool: 'rbd',
      image: 'vm',
      'full-always': false,
    });
    expect(
      rbdSourceOptions.parse({
        pool: 'rbd',
        image: 'vm',
        'full-always': true,
        conf: '/c',
        id: 'backy',
        keyring: '/k',
      }),
    ).toMatchObject({
      id: 'backy',
    });
    expect(rbdSourceOptions.safeParse({ pool: 'rbd', image: 'vm@snap' }).success).toBe(false);
    expect(rbdSourceOptions.safeParse({ pool: 'rbd', image: 'vm', unknown: 1 }).success).toBe(false);
    expect(rbdSourceOptions.safeParse({ pool: 'rbd' }).success).toBe(false);
    // flyingcircus builds on it.
    expect(
      rbdSourceOptions.extend({ vm: rbdSourceOptions.shape.image }).parse({ pool: 'p', image: 'i', vm: 'v' }),
    ).toMatchObject({ vm: 'v' });
    expect(rbdSource.describe!({ pool: 'rbd', image: 'vm', 'full-always': false })).toBe('rbd/vm');
  });
});

describe('Rbd', () => {
  it('passes the client settings before the command', () => {
    expect(new Rbd().globalArgs()).toEqual([]);
    expect(new Rbd({ conf: '/etc/ceph/c.conf', id: 'backy', keyring: '/etc/ceph/k' }).globalArgs()).toEqual([
      '--conf',
      '/etc/ceph/c.conf',
      '--id',
      'backy',
      '--keyring',
      '/etc/ceph/k',
    ]);
  });

  it("picks rbd's own message out of its stderr, on one line", () => {
    const stderr = [
      '2026-11-26T06:20:11.453+0000 7f2315c976c0 -1 librbd::Operations: snapshot is protected',
      '',
      'Removing snap: 0% complete...failed.',
      "rbd: snapshot 's1' is protected from removal.",
      '',
    ].join('\n');
    expect(summarizeStderr(stderr)).toBe("rbd: snapshot 's1' is protected from removal.");
    expect(
      summarizeStderr(
        '2026-11-26T06:19:22.169+0000 7ffa956db380 -1 monclient: get_monmap_and_config failed\n',
      ),
    ).toBe('monclient: get_monmap_and_config failed');
    expect(summarizeStderr('')).toBe('');
  });

  it('fails clearly when the executable is missing', async () => {
    const error = await new Rbd({ binary: '/nonexistent/rbd' }).snapList('rbd', 'img').catch((e) => e);
    expect(error.code).toBe('SOURCE_UNAVAILABLE');
    expect(error.message).toBe(
      'rbd snap ls --format json rbd/img: /nonexistent/rbd not found (is ceph-common installed?)',
    );
  });

  it('times out commands that hang', async () => {
    const error = await new Rbd({ binary: 'sleep', timeoutMs: 200 }).run(['10']).catch((e) => e);
    expect(error.code).toBe('SOURCE_UNAVAILABLE');
    expect(error.message).toBe('rbd 10: timed out after 0.2 s');
  });
});

describe('helpers', () => {
  it('escapes qemu rbd file names', () => {
    expect(qemuRbdFilename('rbd', 'vm', 'backy-x', {})).toBe('rbd:rbd/vm@backy-x');
    expect(
      qemuRbdFilename('rbd', 'a:b', 'backy-x', { conf: '/etc/ceph/my:conf', id: 'backy', keyring: '/k' }),
    ).toBe('rbd:rbd/a\\:b@backy-x:conf=\\/etc\\/ceph\\/my\\:conf:id=backy:keyring=\\/k');
  });

  it('builds qemu image options for a window of a snapshot', () => {
    const client = { conf: '/etc/ceph/c.conf', id: 'backy' };
    const target = { pool: 'rbd', image: 'vm,1', snapshot: 'backy-x', client };
    expect(qemuRbdImageOpts(target, 8 * 4194304, 4194304)).toBe(
      'driver=raw,offset=33554432,size=4194304,file.driver=rbd,file.pool=rbd,file.image=vm,,1,file.snapshot=backy-x,file.conf=/etc/ceph/c.conf,file.user=backy',
    );
    expect(qemuRbdImageOpts({ ...target, image: 'vm', client: { keyring: '/k' } }, 0, 512)).toBe(
      'driver=raw,offset=0,size=512,file.driver=rbd,file.filename=rbd:rbd/vm@backy-x:keyring=\\/k',
    );
  });

  it('samples distinct chunk indexes, ascending', () => {
    for (const [total, count] of [
      [10, 1],
      [10, 10],
      [1000, 10],
      [7, 5],
      [3, 9],
    ] as const) {
      const sample = sampleIndexes(total, count);
      expect(sample.length).toBe(Math.min(total, count));
      expect(new Set(sample).size).toBe(sample.length);
      expect([...sample].sort((a, b) => a - b)).toEqual(sample);
      expect(sample.every((i) => i >= 0 && i < total)).toBe(true);
    }
  });
});
