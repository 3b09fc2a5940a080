import {
  DEFAULT_CENTRAL_CONFIG,
  PASSPHRASE_COMMAND_ENV,
  PASSPHRASE_ENV,
  PASSPHRASE_FILE_ENV,
} from '@backy/core';
import {
  BACKY_API_TOKEN_ENV,
  BACKY_CONFIG_ENV,
  BACKY_DIR_ENV,
  EXIT_CODES,
  EXIT_PIPE_CLOSED,
} from './global-options.js';

export interface ReferenceEntry {
  /** What is looked up: a status, a variable, a spec form. */
  term: string;
  meaning: string;
}

export const EXIT_STATUSES: readonly ReferenceEntry[] = [
  { term: '0', meaning: 'success' },
  {
    term: '1',
    meaning:
      'failure, said in one line on stderr; also a backup whose new revision failed its verification and a verify that found damage',
  },
  {
    term: String(EXIT_CODES.USAGE),
    meaning: 'usage error: unknown command or option, wrong arguments or values',
  },
  {
    term: String(EXIT_CODES.LOCKED),
    meaning: 'the archive is locked by another backy process (EX_UNAVAILABLE); try again later',
  },
  {
    term: String(EXIT_CODES.SUPERSEDED),
    meaning:
      "`backup --if-newest`: the archive's newest revision is another one (EX_TEMPFAIL); another server backed it up meanwhile and nothing was done",
  },
  {
    term: String(EXIT_CODES.ABORTED),
    meaning: 'interrupted by SIGINT (Ctrl-C) or SIGTERM; nothing half-written stays',
  },
  {
    term: String(EXIT_PIPE_CLOSED),
    meaning: "stdout's reader closed the pipe (`backy status | head -1`), as a tool killed by SIGPIPE",
  },
  {
    term: '0-3 (check)',
    meaning: '`backy check` answers as a Nagios plugin: OK, WARNING, CRITICAL, UNKNOWN',
  },
];

export const ENVIRONMENT: readonly ReferenceEntry[] = [
  {
    term: BACKY_DIR_ENV,
    meaning: 'the archive directory when -b is not given (-b wins; without either: the current directory)',
  },
  {
    term: 'NO_COLOR',
    meaning: 'when set and not empty: no ANSI colors in any output (https://no-color.org)',
  },
  {
    term: BACKY_CONFIG_ENV,
    meaning: `the central config of scheduler, check, jobs and run when -c is not given (-c wins; without either: ${DEFAULT_CENTRAL_CONFIG})`,
  },
  {
    term: BACKY_API_TOKEN_ENV,
    meaning:
      "the token check, jobs and run send to the daemon's HTTP API when --token-file is not given (without either: the config's first api token this user can read)",
  },
  {
    term: PASSPHRASE_FILE_ENV,
    meaning:
      "a file whose first line is the passphrase of an encryption key file (as restic's RESTIC_PASSWORD_FILE)",
  },
  {
    term: PASSPHRASE_COMMAND_ENV,
    meaning:
      "a shell command that prints the key file's passphrase, e.g. `pass show backy` (as RESTIC_PASSWORD_COMMAND)",
  },
  {
    term: PASSPHRASE_ENV,
    meaning:
      "the passphrase of an encryption key file itself; a config's or --passphrase-file's file wins over all three, and only one of the three may be set",
  },
  {
    term: 'AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY',
    meaning:
      'credentials of an S3 store without a credentials file of its own (the environment, then ~/.aws/credentials)',
  },
  { term: 'BACKY_DEBUG', meaning: 'when set: the stack trace of an internal error on stderr' },
  { term: 'UV_THREADPOOL_SIZE', meaning: "Node's I/O and hashing threads (default here: 8)" },
];

/** The forms of a revision spec (`-r SPEC`), as packages/core/src/revision-spec.ts resolves them. */
export const REVISION_SPECS: readonly ReferenceEntry[] = [
  { term: 'last, latest', meaning: 'the newest revision' },
  { term: '0, 1, 2, ...', meaning: 'by age: 0 is the newest, 1 the one before it' },
  { term: 'ID', meaning: 'a revision ID in full, or a unique prefix of one' },
  { term: 'PATH', meaning: 'the image path `backy find` prints for the revision' },
  { term: 'TAG', meaning: 'the newest revision with that tag (e.g. daily)' },
  { term: 'tag:TAG', meaning: 'every revision with that tag' },
  { term: 'trust:STATE', meaning: 'every revision whose trust is STATE: trusted, verified or distrusted' },
  { term: 'all', meaning: 'every revision' },
];

export const REVISION_SPEC_NOTES: readonly string[] = [
  'A name that is both a tag and an ID prefix is refused as ambiguous: write tag:NAME or a longer ID.',
  'A revision that failed its own verification when it was made is named only by its full ID or a set (all, tag:, trust:).',
  'Commands that delete by a set (forget -r all, tag:, trust:, or a spec matching several) ask first, or need --force.',
];

/** A reference page: `backy help TOPIC`, a section of `backy --help` and of the man page. */
export interface ReferenceSection {
  topic: string;
  /** The man page's section heading. */
  heading: string;
  /** The heading in help texts. */
  title: string;
  entries: readonly ReferenceEntry[];
  notes?: readonly string[];
}

export const REFERENCE_SECTIONS: readonly ReferenceSection[] = [
  {
    topic: 'specs',
    heading: 'REVISION SPECS',
    title: 'revision specs (-r SPEC)',
    entries: REVISION_SPECS,
    notes: REVISION_SPEC_NOTES,
  },
  { topic: 'exit-codes', heading: 'EXIT STATUS', title: 'exit statuses', entries: EXIT_STATUSES },
  { topic: 'environment', heading: 'ENVIRONMENT', title: 'environment variables', entries: ENVIRONMENT },
];

export const CENTRAL_CONFIG_NOTE = `The scheduler daemon (\`backy scheduler\`), \`backy check\`, \`jobs\` and \`run\` read the central config: -c CONFIG, else $${BACKY_CONFIG_ENV}, else ${DEFAULT_CENTRAL_CONFIG}; see docs/scheduler.md.`;
