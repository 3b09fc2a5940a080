/**
 * End to end through the real `backy` binary: `backy init flyingcircus POOL/IMAGE,VM`, backups whose
 * snapshots the host-agent stand-in makes after a Consul request, and a restore compared byte for byte.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { MiB, vmLikeData } from '@backy/core/testing';
import { TEST_POOL } from '@backy/test-env/ceph';
import { BACKY_BIN, skipWithoutCli } from '@backy/test-env/cli';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendSkip, ceph, consul } from './env.js';
import { HostAgent } from './host-agent.js';

const run = promisify(execFile);
const skip = skipWithoutCli('source-flyingcircus', backendSkip);

describe.skipIf(skip != null)('backy CLI with a flyingcircus archive', () => {
  const pool = TEST_POOL;
  const image = 'cli-e2e.root';
  const vm = 'cli-e2e';
  let dir: string;
  let agent: HostAgent;
  const backy = async (...args: string[]) => {
    const { stdout, stderr } = await run(process.execPath, [BACKY_BIN, '-b', join(dir, 'archive'), ...args], {
      env: { ...process.env, CEPH_CONF: ceph!.conf },
      timeout: 120_000,
    });
    return { stdout, stderr };
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'backy-fc-cli-'));
    await ceph!.importImage(image, vmLikeData(12 * MiB));
    agent = new HostAgent({
      consulAddress: consul!.address,
      vms: { [vm]: `${pool}/${image}` },
      cephConf: ceph!.conf,
    }).start();
    await agent.ready;
  });
  afterAll(async () => {
    await agent?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('inits from POOL/IMAGE,VM,TOKEN, backs up through the agent and restores byte for byte', async () => {
    const init = await backy('init', 'flyingcircus', `${pool}/${image},${vm},not-needed-here`);
    expect(init.stdout).toContain(`for flyingcircus source ${pool}/${image} (VM ${vm})`);
    expect(init.stdout + init.stderr).not.toContain('not-needed-here'); // the token is not echoed
    // init takes no Consul address (backy 2.x compatible argument): point the config at the test agent.
    const configPath = join(dir, 'archive', 'config');
    const config = await readFile(configPath, 'utf8');
    expect(config).toMatch(/type: flyingcircus/);
    expect(config).toMatch(/vm: cli-e2e/);
    expect(config).toMatch(/consul_acl_token: not-needed-here/);
    await writeFile(
      configPath,
      config.replace(
        /^source:\n/m,
        `source:\n  consul_address: ${consul!.address}\n  snapshot_timeout: 30s\n`,
      ),
    );

    await backy('backup', '-f', 'first');
    await ceph!.writeImage(image, 7 * MiB + 99, randomBytes(10_000));
    await backy('backup', '-f', 'second');
    const id = (await backy('find', '-r', 'last')).stdout.trim();
    await agent.waitFor((e) => e.type === 'created' && e.snapshot === `backy-${id}`);
    expect(agent.events.filter((e) => e.type === 'created')).toHaveLength(2);
    const target = join(dir, 'restored.img');
    await backy('restore', '-r', id, target);
    const expected = await ceph!.exportImage(`${image}@backy-${id}`);
    expect((await readFile(target)).equals(expected)).toBe(true);
  });
});
