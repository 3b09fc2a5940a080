import { readFile } from 'node:fs/promises';
import {
  BackyError,
  exportKeyFile,
  importKeyFile,
  newKeyFile,
  PASSPHRASE_COMMAND_ENV,
  PASSPHRASE_ENV,
  PASSPHRASE_FILE_ENV,
  parseKeyFile,
  passphraseFrom,
  writeKeyFile,
} from '@backy/core';
import { type Command, JSON_OPTION } from '../command.js';

const ACTIONS = ['create', 'export', 'import'] as const;

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new BackyError('USAGE', `key ${what}: ${path}: ${code === 'ENOENT' ? 'no such file' : code}`);
  }
}

async function readStdin(): Promise<string> {
  const parts: Buffer[] = [];
  for await (const part of process.stdin) parts.push(part as Buffer);
  return Buffer.concat(parts).toString('utf8');
}

/**
 * `backy key create FILE`: a new key file for `store.encryption.key-file` (mode 0600, never over an
 * existing file), protected by a passphrase from `--passphrase-file` or the environment when
 * given. `backy key export FILE` prints it in a form to keep on paper, `backy key import FILE` reads that
 * form (from stdin or `--from`) back into a key file.
 */
export const keyCommand: Command = {
  name: 'key',
  summary: 'create an encryption key file, or export/import it for safekeeping',
  usage: 'key create|export|import FILE [--passphrase-file FILE] [--from FILE] [--json]',
  options: {
    'passphrase-file': {
      type: 'string',
      valueName: 'FILE',
      description: `create: protect the key with the passphrase in FILE`,
      defaultText: `$${PASSPHRASE_FILE_ENV}, $${PASSPHRASE_COMMAND_ENV} or $${PASSPHRASE_ENV}, else no passphrase`,
      complete: 'file',
    },
    from: {
      type: 'string',
      valueName: 'FILE',
      description: 'import: read the exported key from FILE',
      defaultText: 'stdin',
      complete: 'file',
    },
    json: JSON_OPTION,
  },
  positionals: [2, 2],
  completeArguments: ACTIONS,
  async run(ctx) {
    const [action, file] = ctx.positionals as [string, string];
    if (!(ACTIONS as readonly string[]).includes(action))
      throw new BackyError('USAGE', `key ${action}: expected one of ${ACTIONS.join(', ')}`);
    if (action === 'create') {
      const passphraseFile = ctx.values['passphrase-file'] as string | undefined;
      const passphrase = await passphraseFrom(passphraseFile);
      const text = await newKeyFile(passphrase);
      await writeKeyFile(file, text);
      const { id } = parseKeyFile(text, file);
      if (ctx.values.json) ctx.printJson({ action, file, id, passphrase: passphrase != null });
      else
        ctx.print(
          `${file}: new key ${id}${passphrase != null ? ', protected by the passphrase' : ''}. Keep a copy away from the backups (backy key export): without the key they cannot be read.`,
        );
      if (passphrase != null && passphraseFile == null) {
        const from = [PASSPHRASE_FILE_ENV, PASSPHRASE_COMMAND_ENV, PASSPHRASE_ENV].find(
          (n) => process.env[n],
        );
        ctx.note(`the passphrase came from ${from}; backy needs it whenever it opens the key`);
      }
      return 0;
    }
    if (action === 'export') {
      const text = await readText(file, 'export');
      const exported = exportKeyFile(text, file);
      if (ctx.values.json) ctx.printJson({ action, file, id: parseKeyFile(text, file).id, exported });
      else ctx.stdout.write(exported);
      return 0;
    }
    const from = ctx.values.from as string | undefined;
    const paper = from != null ? await readText(from, 'import') : await readStdin();
    const text = importKeyFile(paper, from ?? 'the key read from stdin');
    await writeKeyFile(file, text);
    const { id } = parseKeyFile(text, file);
    if (ctx.values.json) ctx.printJson({ action, file, id });
    else ctx.print(`${file}: key ${id} imported`);
    return 0;
  },
};
