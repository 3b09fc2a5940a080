export { readTokenFile, type ShellSession } from './auth.js';
export {
  formatTime,
  type ShellBackend,
  type ShellJob,
  TelnetShell,
  type TelnetShellOptions,
} from './shell.js';
export { TelnetDecoder, type TelnetEvent } from './telnet.js';
