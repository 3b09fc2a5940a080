/**
 * What a running QEMU has: its block nodes with their dirty bitmaps, its devices, and which block jobs
 * work on a node. Read through QMP queries only.
 */
import { BackyError } from '@backy/core/source';
import type { QmpClient } from './qmp.js';

export interface DirtyBitmap {
  name: string;
  recording: boolean;
  persistent: boolean;
  busy: boolean;
  /** Not saved cleanly (QEMU crashed with it in use): QEMU refuses to use it. */
  inconsistent: boolean;
}

export interface BlockNode {
  nodeName: string;
  driver: string;
  size: number;
  bitmaps: DirtyBitmap[];
}

interface RawNode {
  'node-name': string;
  drv: string;
  image?: { 'virtual-size'?: number };
  'dirty-bitmaps'?: {
    name?: string;
    recording?: boolean;
    persistent?: boolean;
    busy?: boolean;
    inconsistent?: boolean;
  }[];
}

interface RawDevice {
  device: string;
  qdev?: string;
  inserted?: { 'node-name'?: string };
}

export async function blockNodes(qmp: QmpClient): Promise<BlockNode[]> {
  const raw = await qmp.execute<RawNode[]>('query-named-block-nodes', { flat: true });
  return raw.map((n) => ({
    nodeName: n['node-name'],
    driver: n.drv,
    size: n.image?.['virtual-size'] ?? 0,
    bitmaps: (n['dirty-bitmaps'] ?? [])
      .filter((b) => typeof b.name === 'string')
      .map((b) => ({
        name: b.name!,
        recording: b.recording ?? false,
        persistent: b.persistent ?? false,
        busy: b.busy ?? false,
        inconsistent: b.inconsistent ?? false,
      })),
  }));
}

/** The block node of `drive`: a node name, a `-drive` id, or a device's qdev id (or its path). */
export async function resolveDrive(qmp: QmpClient, drive: string): Promise<BlockNode> {
  const nodes = await blockNodes(qmp);
  const byName = new Map(nodes.map((n) => [n.nodeName, n]));
  const direct = byName.get(drive);
  if (direct != null) return direct;
  const devices = await qmp.execute<RawDevice[]>('query-block');
  const device = devices.find(
    (d) =>
      (d.device !== '' && d.device === drive) ||
      d.qdev === drive ||
      d.qdev?.replace(/^\/machine\/peripheral\//, '').replace(/\/virtio-backend$/, '') === drive,
  );
  const node = device?.inserted?.['node-name'];
  if (node != null && byName.has(node)) return byName.get(node)!;
  const known = [
    ...nodes.map((n) => n.nodeName).filter((n) => !n.startsWith('#')),
    ...devices.map((d) => d.device || d.qdev || '').filter((d) => d !== ''),
  ];
  throw new BackyError(
    'SOURCE_UNAVAILABLE',
    `drive ${drive} not found in the QEMU at ${qmp.where.replace(/^QMP socket /, '')}${device != null ? ' (the device has no medium)' : ''} (source.drive; it has: ${known.join(', ') || 'no block nodes'})`,
  );
}

interface Graph {
  nodes: { id: number; type: string; name: string }[];
  edges: { parent: number; child: number; name: string }[];
}

/**
 * The block jobs that work on `node` (their main node is it, or a filter right on top of it), or null
 * when this QEMU cannot tell (no `x-debug-query-block-graph`).
 */
export async function jobsOnNode(qmp: QmpClient, node: string): Promise<string[] | null> {
  let graph: Graph;
  try {
    graph = await qmp.execute<Graph>('x-debug-query-block-graph');
  } catch (error) {
    if ((error as { errorClass?: string }).errorClass === 'CommandNotFound') return null;
    throw error;
  }
  const target = graph.nodes.find((n) => n.type === 'block-driver' && n.name === node);
  if (target == null) return [];
  const childOf = (parent: number, name: string) =>
    graph.edges.find((e) => e.parent === parent && e.name === name)?.child;
  const jobs: string[] = [];
  for (const job of graph.nodes.filter((n) => n.type === 'block-job')) {
    const main = childOf(job.id, 'main node');
    if (main == null) continue;
    if (main === target.id || childOf(main, 'file') === target.id) jobs.push(job.name);
  }
  return jobs;
}
