/**
 * A stand-in for the Flying Circus host agent (fc.qemu), just as far as snapshots go. It follows the real
 * agent's protocol:
 *
 * - it watches the KV prefix `snapshot/` with blocking queries (`?recurse&index=N`), as a Consul
 *   `keyprefix` watch does, and on every change looks at all requests under the prefix;
 * - a request is the JSON `{"vm": NAME, "snapshot": SNAP}`; empty values, values that are not such JSON,
 *   and VMs that do not run on this host are ignored;
 * - if the snapshot exists already, nothing happens; otherwise it "freezes" the guest (here: waits
 *   `freezeMs`, standing in for the guest agent's fsfreeze), runs `rbd snap create`, and "thaws";
 * - it answers nothing through Consul and deletes nothing: removing requests is backy's job.
 *
 * It talks to Consul with plain `fetch`, independently of the client under test.
 */
import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface HostAgentOptions {
  consulAddress: string;
  token?: string | null;
  /** VMs running on this host → their root image, `pool/image`. */
  vms: Record<string, string>;
  cephConf: string;
  /** Time the freeze takes before the snapshot is made (a slow guest agent). Default 0. */
  freezeMs?: number;
}

export type HostAgentEvent =
  | { type: 'created' | 'exists'; key: string; vm: string; snapshot: string; raw: string; at: number }
  | {
      type: 'ignored';
      key: string;
      reason: 'empty' | 'not a request' | 'VM not on this host';
      raw: string;
      at: number;
    }
  | { type: 'failed'; key: string; vm: string; snapshot: string; error: string; at: number };

interface KvItem {
  Key: string;
  Value: string | null;
  ModifyIndex: number;
}

export class HostAgent {
  readonly events: HostAgentEvent[] = [];
  /** Blocking queries answered, for tests that want to see the watch work. */
  watchRounds = 0;
  private readonly controller = new AbortController();
  private readonly inFlight = new Set<string>();
  private loop: Promise<void> | null = null;
  private readyResolve!: () => void;
  /** Resolves after the first (non-blocking) read of the prefix. */
  readonly ready = new Promise<void>((resolve) => {
    this.readyResolve = resolve;
  });

  constructor(private readonly options: HostAgentOptions) {}

  start(): this {
    this.loop = this.watch();
    return this;
  }

  /**
   * Waits for an event (up to `timeoutMs`). Backy sees a snapshot as soon as Ceph has it, which can be
   * before the agent's `rbd snap create` process has exited and the agent has recorded it.
   */
  async waitFor(predicate: (event: HostAgentEvent) => boolean, timeoutMs = 30_000): Promise<HostAgentEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.find(predicate);
      if (found != null) return found;
      if (Date.now() > deadline)
        throw new Error(`the host-agent stand-in recorded no such event within ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  async stop(): Promise<void> {
    this.controller.abort();
    await this.loop;
    // Let a snapshot in progress finish, as a real agent would before exiting.
    for (let i = 0; i < 1200 && this.inFlight.size > 0; i++) await sleep(50);
  }

  private async watch(): Promise<void> {
    const { signal } = this.controller;
    let index = 0;
    while (!signal.aborted) {
      let items: KvItem[];
      let next: number;
      try {
        const query = index > 0 ? `&index=${index}&wait=5s` : '';
        const headers: Record<string, string> = {};
        if (this.options.token) headers['X-Consul-Token'] = this.options.token;
        const response = await fetch(`${this.options.consulAddress}/v1/kv/snapshot/?recurse${query}`, {
          headers,
          signal: AbortSignal.any([signal, AbortSignal.timeout(15_000)]),
        });
        next = Number(response.headers.get('x-consul-index') ?? 0);
        if (response.status === 404) items = [];
        else if (response.ok) items = (await response.json()) as KvItem[];
        else throw new Error(`HTTP ${response.status}`);
      } catch {
        if (signal.aborted) break;
        await sleep(500, undefined, { signal }).catch(() => {});
        continue;
      }
      this.watchRounds++;
      // Like a Consul watch, act when the index moved (and on the first read). Consul's rules for blocking
      // clients: an index that goes backwards resets to 0, and one that is not positive becomes 1.
      const fire = this.watchRounds === 1 || next !== index;
      index = !(next > 0) ? 1 : next < index ? 0 : next;
      this.readyResolve();
      if (!fire) continue;
      for (const item of items.sort((a, b) => a.Key.localeCompare(b.Key))) void this.handle(item);
    }
    this.readyResolve();
  }

  private async handle(item: KvItem): Promise<void> {
    const raw = item.Value == null ? '' : Buffer.from(item.Value, 'base64').toString('utf8');
    const at = Date.now();
    if (raw === '') {
      this.events.push({ type: 'ignored', key: item.Key, reason: 'empty', raw, at });
      return;
    }
    let request: { vm?: unknown; snapshot?: unknown };
    try {
      request = JSON.parse(raw);
    } catch {
      this.events.push({ type: 'ignored', key: item.Key, reason: 'not a request', raw, at });
      return;
    }
    if (typeof request?.vm !== 'string' || typeof request.snapshot !== 'string') {
      this.events.push({ type: 'ignored', key: item.Key, reason: 'not a request', raw, at });
      return;
    }
    const { vm, snapshot } = request as { vm: string; snapshot: string };
    const volume = this.options.vms[vm];
    if (volume == null) {
      this.events.push({ type: 'ignored', key: item.Key, reason: 'VM not on this host', raw, at });
      return;
    }
    // The real agent holds a per-VM lock; one snapshot of a VM at a time, repeated events are no-ops.
    const job = `${vm}@${snapshot}`;
    if (this.inFlight.has(job)) return;
    this.inFlight.add(job);
    try {
      if (await this.snapshotExists(volume, snapshot)) {
        this.events.push({ type: 'exists', key: item.Key, vm, snapshot, raw, at: Date.now() });
        return;
      }
      if (this.options.freezeMs) await sleep(this.options.freezeMs); // fsfreeze of the guest
      await run('rbd', ['--conf', this.options.cephConf, 'snap', 'create', `${volume}@${snapshot}`], {
        timeout: 60_000,
      });
      this.events.push({ type: 'created', key: item.Key, vm, snapshot, raw, at: Date.now() });
      // thaw
    } catch (error) {
      this.events.push({
        type: 'failed',
        key: item.Key,
        vm,
        snapshot,
        error: String((error as Error).message ?? error),
        at: Date.now(),
      });
    } finally {
      this.inFlight.delete(job);
    }
  }

  private async snapshotExists(volume: string, snapshot: string): Promise<boolean> {
    const { stdout } = await run(
      'rbd',
      ['--conf', this.options.cephConf, 'snap', 'ls', '--format', 'json', volume],
      { timeout: 60_000 },
    );
    return (JSON.parse(stdout) as { name: string }[]).some((s) => s.name === snapshot);
  }
}
