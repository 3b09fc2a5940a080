/**
 * Real receivers for notifications, on loopback: an HTTP server that records webhook POSTs and an SMTP
 * server (nodemailer's smtp-server, a full SMTP implementation) that records mails. Each test closes
 * what it started with `close()`.
 */
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';

export interface WebhookRequest {
  headers: IncomingHttpHeaders;
  body: Record<string, unknown>;
}

export interface WebhookReceiver {
  url: string;
  /** What arrived, in order. */
  got: WebhookRequest[];
  close(): Promise<void>;
}

/** Answers each POST with the next status of `statuses` (then 200); a 503 carries `Retry-After: 0`. */
export async function webhookReceiver(statuses: number[] = []): Promise<WebhookReceiver> {
  const got: WebhookRequest[] = [];
  const server = createServer((req, res) => {
    let text = '';
    req.on('data', (c) => {
      text += c;
    });
    req.on('end', () => {
      got.push({ headers: req.headers, body: JSON.parse(text) });
      const status = statuses.shift() ?? 200;
      res.writeHead(status, status === 503 ? { 'retry-after': '0' } : {});
      res.end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  let closed: Promise<void> | null = null;
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    got,
    close: () => {
      closed ??= new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
      return closed;
    },
  };
}

export interface ReceivedMail {
  from: string;
  to: string[];
  /** Who logged in, if anyone. */
  user: string | undefined;
  /** The message as sent: headers and body. */
  data: string;
}

export interface SmtpReceiver {
  port: number;
  mails: ReceivedMail[];
  close(): Promise<void>;
}

/**
 * Without STARTTLS (the tests use `tls: none`); with `login`, only `backy`/`pw` may send. Recipients at
 * `refused.example` get a 550.
 */
export async function smtpReceiver(options: { login?: boolean } = {}): Promise<SmtpReceiver> {
  const mails: ReceivedMail[] = [];
  const login = options.login ?? false;
  const server = new SMTPServer({
    disabledCommands: login ? ['STARTTLS'] : ['STARTTLS', 'AUTH'],
    authOptional: !login,
    allowInsecureAuth: true,
    logger: false,
    onAuth(auth, _session, done) {
      if (auth.username === 'backy' && auth.password === 'pw') done(null, { user: 'backy' });
      else done(new Error('535 bad login'));
    },
    onRcptTo(address, _session, done) {
      if (!address.address.endsWith('@refused.example')) return done();
      const error = new Error('no such user') as Error & { responseCode: number };
      error.responseCode = 550;
      done(error);
    },
    onData(stream, session, done) {
      let data = '';
      stream.on('data', (c) => {
        data += c;
      });
      stream.on('end', () => {
        mails.push({
          from: (session.envelope.mailFrom as { address: string }).address,
          to: session.envelope.rcptTo.map((r) => r.address),
          user: session.user as string | undefined,
          data,
        });
        done();
      });
    },
  });
  server.listen(0, '127.0.0.1');
  await once(server.server, 'listening');
  return {
    port: (server.server.address() as AddressInfo).port,
    mails,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
