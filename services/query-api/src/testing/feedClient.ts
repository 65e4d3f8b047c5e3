import { WebSocket } from 'ws';
import type { SessionDocument } from '@rpa/shared';
import type { ServerMessage } from '../feed/feedMessages.js';

const DEADLINE_MS = 5_000;

/** A feed client that records every frame and waits for the next one with a deadline. */
export class FeedClient {
  readonly received: ServerMessage[] = [];
  private cursor = 0;
  private waiter: (() => void) | null = null;
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      this.received.push(JSON.parse(String(data)) as ServerMessage);
      this.waiter?.();
    });
    this.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => {
        resolve({ code, reason: reason.toString() });
        this.waiter?.();
      }),
    );
  }

  static async connect(url: string): Promise<FeedClient> {
    const ws = new WebSocket(url);
    const client = new FeedClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return client;
  }

  send(message: unknown): void {
    this.ws.send(typeof message === 'string' ? message : JSON.stringify(message));
  }

  /** The next frame not yet taken, waiting for it up to the deadline. */
  async next(): Promise<ServerMessage> {
    const deadline = Date.now() + DEADLINE_MS;
    while (this.cursor >= this.received.length) {
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error('connection closed while waiting');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame within ${DEADLINE_MS} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          this.waiter = null;
          resolve();
        };
      });
    }
    return this.received[this.cursor++]!;
  }

  /** The next frame, which must be a session document; returns it. */
  async nextDocument(): Promise<SessionDocument> {
    const message = await this.next();
    if (message.type !== 'session')
      throw new Error(`expected a session frame, got ${JSON.stringify(message)}`);
    return message.document;
  }

  close(): void {
    this.ws.close();
  }
}
