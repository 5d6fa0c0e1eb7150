import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The echo server of helpers/echo-server.mjs, in a process of its own: its port, and how to stop it. */
export interface EchoServer {
  port: string;
  stop(): Promise<void>;
}

export async function startEchoServer(): Promise<EchoServer> {
  const server: ChildProcess = spawn(process.execPath, [fileURLToPath(new URL('./echo-server.mjs', import.meta.url))], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const port = await new Promise<string>((resolve, reject) => {
    server.once('error', reject);
    server.stdout!.once('data', (data: Buffer) => resolve(String(data).trim()));
  });
  return {
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        server.once('exit', () => resolve());
        server.kill();
      }),
  };
}
