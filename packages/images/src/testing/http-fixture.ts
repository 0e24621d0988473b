import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * How the fixture answers one path.
 *
 * @example
 * ```ts
 * import { HttpFixture, type Route } from '@execenv/images/testing';
 * const server = await new HttpFixture().start();
 * const flaky: Route = { body: rootfs, failTimes: 2 }; // two 500s, then the file
 * server.routes.set('/rootfs.tar.xz', flaky);
 * server.routes.set('/cut.tar.xz', { body: rootfs, truncateAt: 1024 }); // the full Content-Length, then cut
 * server.routes.set('/hung.tar.xz', { body: rootfs, stallAt: 1024 }); // a download to abort mid-way
 * server.routes.set('/meta/1.0/index-system', { silent: true }); // no headers, ever: a client must time out
 * ```
 */
export interface Route {
  body?: Buffer | string;
  status?: number;
  /** Send the full Content-Length but cut the connection after this many bytes. */
  truncateAt?: number;
  /** Answer 500 this many times before answering properly. */
  failTimes?: number;
  /** Send the full Content-Length but only this many bytes, then hold the connection open until stop(). */
  stallAt?: number;
  /** Accept the request and answer nothing, holding the connection open until stop(). */
  silent?: boolean;
}

/**
 * A loopback HTTP server serving fixed routes and counting requests per path.
 *
 * @example
 * ```ts
 * import { download, ImageCache } from '@execenv/images';
 * import { HttpFixture } from '@execenv/images/testing';
 * const server = await new HttpFixture().start();
 * server.routes.set('/r.tar', { body: Buffer.alloc(1024), failTimes: 1 });
 * await download(`${server.url}/r.tar`, { cache: new ImageCache({ dir: tmpDir }), backoffMs: 10 });
 * console.log(server.hits.get('/r.tar')); // 2: a 500, then the retry
 * await server.stop();
 * ```
 */
export class HttpFixture {
  /** What each path answers; anything else is a 404. */
  readonly routes = new Map<string, Route>();
  /** Requests received per path. */
  readonly hits = new Map<string, number>();
  #server: Server | undefined;
  /** Base URL, set by start(). */
  url = '';

  /** Listens on a free loopback port. */
  async start(): Promise<this> {
    this.#server = createServer((req, res) => {
      const path = req.url ?? '/';
      this.hits.set(path, (this.hits.get(path) ?? 0) + 1);
      const route = this.routes.get(path);
      if (!route) {
        res.writeHead(404).end('not found');
        return;
      }
      if (route.silent) return;
      if (route.failTimes && route.failTimes > 0) {
        route.failTimes--;
        res.writeHead(500).end('try again');
        return;
      }
      const body = Buffer.from(route.body ?? '');
      res.writeHead(route.status ?? 200, { 'content-length': body.length });
      if (route.stallAt !== undefined) {
        res.write(body.subarray(0, route.stallAt));
        return;
      }
      if (route.truncateAt !== undefined) {
        res.write(body.subarray(0, route.truncateAt), () => res.destroy());
        return;
      }
      res.end(body);
    });
    await new Promise<void>((r) => this.#server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return this;
  }

  /** Closes the server and every open connection. */
  async stop(): Promise<void> {
    this.#server?.closeAllConnections();
    await new Promise((r) => this.#server?.close(r));
  }
}
