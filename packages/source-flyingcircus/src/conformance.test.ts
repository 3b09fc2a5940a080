/**
 * The core's source conformance suite against the flyingcircus source, with every snapshot requested
 * through Consul and made by the host-agent stand-in.
 */
import { testSource } from '@backy/core/testing';
import { TEST_POOL } from '@backy/test-env/ceph';
import pino from 'pino';
import { backendSkip, ceph, consul } from '../test/env.js';
import { HostAgent } from '../test/host-agent.js';
import flyingcircusSource, { createFlyingcircusSource, type SnapshotOutcome } from './index.js';
import { flyingcircusSourceOptions } from './options.js';

const pool = TEST_POOL;
const image = 'conformance.root';
const vm = 'conformance';

testSource({
  definition: flyingcircusSource,
  skip: backendSkip,
  sizeUnit: 512,
  async makeFixture(initial) {
    const cluster = ceph!;
    await cluster.importImage(image, initial);
    const agent = new HostAgent({
      consulAddress: consul!.address,
      vms: { [vm]: `${pool}/${image}` },
      cephConf: cluster.conf,
    }).start();
    await agent.ready;
    const outcomes: SnapshotOutcome[] = [];
    const raw = { pool, image, vm, conf: cluster.conf, consul_address: consul!.address };
    const options = flyingcircusSourceOptions.parse(raw);
    const source = createFlyingcircusSource(
      options,
      { logger: pino({ level: process.env.BACKY_TEST_LOG ? 'debug' : 'silent' }) },
      {
        pollMs: { first: 100, max: 500 },
        onSnapshot: (outcome) => {
          // Every snapshot of the suite must come from the agent; a fallback would hide a broken handshake.
          if (outcome.method !== 'agent')
            throw new Error(`snapshot made ${outcome.method}ly (${outcome.reason})`);
          outcomes.push(outcome);
        },
      },
    );
    return {
      options: raw,
      source,
      write: (offset, data) => cluster.writeImage(image, offset, data),
      resize: (size) => cluster.resizeImage(image, size),
      content: () => cluster.exportImage(image),
      async cleanup() {
        await agent.stop();
        if (outcomes.length === 0)
          throw new Error('the conformance suite made no snapshot through the agent');
      },
    };
  },
});
