import { packageBuild } from '../../tsup.base.js';

// Built, not run through a TypeScript loader: the benchmarks measure time and memory of processes, and
// a loader would add its own to theirs. The workspace packages stay external: their built dist, as a
// user runs them.
export default packageBuild({
  entry: {
    bench: 'src/bench.ts',
    'bench-api': 'src/bench-api.ts',
    'bench-ceph': 'src/bench-ceph.ts',
    'bench-codecs': 'src/bench-codecs.ts',
    'bench-fleet': 'src/bench-fleet.ts',
    'bench-memory': 'src/bench-memory.ts',
    'bench-nbd': 'src/bench-nbd.ts',
    'bench-object-lock': 'src/bench-object-lock.ts',
    'bench-peers': 'src/bench-peers.ts',
    'bench-profile': 'src/bench-profile.ts',
    'bench-qemu': 'src/bench-qemu.ts',
    'bench-restore': 'src/bench-restore.ts',
    'bench-s3': 'src/bench-s3.ts',
    'bench-scheduler': 'src/bench-scheduler.ts',
    'bench-startup': 'src/bench-startup.ts',
    'crash-campaign': 'src/crash-campaign.ts',
    demo: 'src/demo.ts',
    'rss-wrapper': 'src/rss-wrapper.ts',
  },
  dts: false,
});
