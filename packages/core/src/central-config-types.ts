import type { ApiConfig } from './api-config.js';
import type { ArchiveLayout, SourceConfig, StoreConfig } from './config.js';
import type { FleetConfig } from './fleet-config.js';
import type { NotificationTargetConfig } from './notification-config.js';
import type { Retention } from './retention.js';
import type { Schedule } from './schedule.js';

// The central config's types, written out (not `z.infer`) so that the published declarations do not
// name zod; central-config.ts has the schemas, and config-types.test.ts holds each schema to its type.

/** `/etc/backy.conf`. */
export interface CentralConfig {
  global: GlobalConfig;
  /** Schedule name → tag → {interval, keep}. */
  schedules: Record<string, Schedule>;
  /** Job name → job; the name is the archive's directory under `base-dir`. */
  jobs: Record<string, JobConfig>;
  /** Where failures, recoveries, missed SLAs and damage are sent (docs/notifications.md). */
  notifications: NotificationTargetConfig[];
  /** The daemon's HTTP API, metrics and page (docs/api.md); off without it. */
  api?: ApiConfig | undefined;
  fleet?: FleetConfig | undefined;
}

/** A verify job's settings (docs/scheduler.md); durations in seconds. */
export interface VerifyJobConfig {
  /** How often the verify job runs (default 7d). */
  interval?: number;
  /** It re-reads the revisions not verified within this long (default 30d). */
  'outdated-after'?: number;
}

/** The central config's `global` section. */
export interface GlobalConfig {
  /** Directory that holds one archive per job (default /srv/backy). */
  'base-dir': string;
  /** Backups running at the same time (default 1). */
  'worker-limit': number;
  /** Status file for `backy check` (default `{base-dir}/status`). */
  'status-file'?: string;
  /** How often the status file is written (seconds; default 30 s). */
  'status-interval': number;
  /** Addresses the telnet shell listens on (default `::1, 127.0.0.1`). */
  'telnet-addrs': string[];
  /** Port of the telnet shell (default 6023; 0 picks a free port). */
  'telnet-port': number;
  /**
   * The telnet shell's Unix socket, where every command works for whoever may connect (mode 0600, or
   * 0660 with `telnet-socket-group`); `false`: none (default `{base-dir}/.shell.sock`).
   */
  'telnet-socket'?: string | false;
  /** A group (name or ID) whose members may connect to `telnet-socket` too (default: none). */
  'telnet-socket-group'?: string | number;
  /**
   * A file whose first line is a token: TCP clients that send `auth TOKEN` may then `run`, `runall` and
   * `reload` (default: none, and those commands work only on the Unix socket).
   */
  'telnet-token-file'?: string;
  /** `run`, `runall` and `reload` on TCP without a token, as in backy 2.x (default false). */
  'telnet-insecure-tcp'?: boolean;
  /**
   * A node_exporter textfile (`…/textfile_collector/backy.prom`) the daemon writes its metrics to after
   * each job and every minute, atomically (default: none). Read anew at each write.
   */
  'metrics-textfile'?: string;
  /**
   * `backy check` is CRITICAL for a job whose runs failed this many times in a row (default 3; a
   * single failure is a WARNING).
   */
  'critical-failures'?: number;
  /**
   * Program run after each backup (successful or not) with the job name as argument, its revisions as
   * YAML on stdin and the outcome in BACKY_OUTCOME, BACKY_REASON, … (docs/scheduler.md).
   */
  'backup-completed-callback'?: string;
  /** Default layout of the jobs' archives (`chunked` or `images`; see an archive's `layout`). */
  layout?: ArchiveLayout;
  /**
   * Default chunk store of the jobs' archives (see an archive's `store`); a relative path is per archive,
   * and an object store (`type: s3`) puts each job under `<prefix><job>/`.
   */
  store?: StoreConfig;
  /**
   * After each successful backup (and expire, purge), copy the job's revisions to the archive
   * `{copy-to}/{job}` (`backy copy`); that archive must exist. Default: no copies.
   */
  'copy-to'?: string;
  /**
   * Default verify job of every job: `{interval, outdated-after}` (default `{interval: 7d,
   * outdated-after: 30d}`), or `false` for none.
   */
  verify?: false | VerifyJobConfig;
  /** Every job's calendar retention and expiry guards (docs/retention.md), unless the job has its own. */
  retention?: Retention;
}

/** One job of the central config. */
export interface JobConfig {
  /** Name of an entry in `schedules`. */
  schedule: string;
  /** `{type, ...options}` as in an archive's config. */
  source: SourceConfig;
  /** This job's archive layout (default: `global.layout`, else `chunked`). */
  layout?: ArchiveLayout;
  /** This job's chunk store (default: `global.store`, else `chunks/` in the archive). */
  store?: StoreConfig;
  /**
   * The archive directory this job's revisions are copied to after each successful backup (it must
   * exist: `backy -b DIR init …`); `false`: no copies even with `global.copy-to`.
   */
  'copy-to'?: string | false;
  /** This job's verify job; keys it leaves out come from `global.verify`; `false`: none. */
  verify?: false | VerifyJobConfig;
  /** This job's calendar retention and expiry guards (default: `global.retention`; docs/retention.md). */
  retention?: Retention;
  labels?: Record<string, string>;
}
