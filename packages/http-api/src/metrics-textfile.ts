import { writeFileAtomic } from '@backy/core';
import type { Logger } from 'pino';
import { createMetrics, type MetricsSource } from './metrics.js';

export interface MetricsTextfileOptions {
  source: MetricsSource;
  /** Where to write, asked anew at each write (a reload may change it); null: nowhere. */
  path: () => string | null;
  logger: Logger;
  /** Milliseconds between writes (default 60 s). */
  intervalMs?: number;
}

/**
 * The metrics of `/metrics` (without the process ones, see MetricsOptions) as a node_exporter textfile,
 * for hosts that are not scraped: written every minute and on `write()`, atomically (temp, fsync,
 * rename), so node_exporter never reads half a file. Failures are logged, never thrown.
 */
export class MetricsTextfile {
  private readonly registry;
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> | null = null;
  private again = false;

  constructor(private readonly options: MetricsTextfileOptions) {
    this.registry = createMetrics(options.source, { processMetrics: false });
  }

  /** Writes now and then every interval, until `close()`. */
  start(): void {
    void this.write();
    this.timer = setInterval(() => void this.write(), this.options.intervalMs ?? 60_000);
    this.timer.unref();
  }

  /** Writes the file; a write asked for while one is under way follows it, so the last state is written. */
  write(): Promise<void> {
    if (this.writing != null) {
      this.again = true;
      return this.writing;
    }
    this.writing = (async () => {
      do {
        this.again = false;
        const path = this.options.path();
        if (path == null) break;
        try {
          // Readable by node_exporter, which runs as a user of its own.
          await writeFileAtomic(path, await this.registry.metrics(), { mode: 0o644 });
        } catch (error) {
          this.options.logger.error({ path, err: error }, 'cannot write the metrics textfile');
        }
      } while (this.again);
      this.writing = null;
    })();
    return this.writing;
  }

  /** No more periodic writes; waits for a write under way. */
  async close(): Promise<void> {
    if (this.timer != null) clearInterval(this.timer);
    this.timer = null;
    await this.writing;
  }
}
