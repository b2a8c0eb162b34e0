import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import path from "node:path";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";

/**
 * Launches a real N-node nats-server JetStream cluster on loopback, the way
 * `npm start` and the tests both need it. Each server's store survives
 * restarts of the same `dir`; readiness is polled (no fixed sleeps) until the
 * JetStream meta leader answers.
 */
export interface ClusterOptions {
  /** nats-server binary. */
  readonly binary: string;
  /** Folder for configs, stores and logs (kept across restarts). */
  readonly dir: string;
  /** Number of servers. @default 3 */
  readonly size?: number;
  /** Client ports; 0 or absent = pick free ports. */
  readonly clientPorts?: readonly number[];
  /**
   * `always` fsyncs every write before acknowledging it; a Go duration (`2m`, `500ms`) fsyncs that often.
   * Written quoted into the config: nats-server reads a bare `2m` as the number 2,000,000 (a size suffix),
   * then as seconds (23 days). @default "always"
   */
  readonly syncInterval?: "always" | string;
  /** Extra config text put into every server's config (e.g. accounts). */
  readonly extraConfig?: string;
  /** Max payload in bytes. @default 16 MiB */
  readonly maxPayload?: number;
  /**
   * Environment of the server processes (merged over this process's), e.g.
   * the `$VAR` passwords an included `authorization` block refers to.
   */
  readonly env?: Readonly<Record<string, string>>;
  /** TLS on the client port (PEM files); clients then need the CA. Routes stay on loopback. */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** Servers (indexes) configured but not launched; `restart(i)` launches one later. */
  readonly held?: readonly number[];
  /** Serve Go's pprof on a loopback port per server (`ServerHandle.profPort`), for benchmarks. @default false */
  readonly profiling?: boolean;
  /**
   * Each server in a process group of its own, so a terminal's Ctrl-C (sent
   * to the whole foreground group) reaches only the supervisor, which stops
   * the servers after the nodes that use them. @default false
   */
  readonly ownProcessGroup?: boolean;
}

/** How `waitReady` connects: credentials and, for a TLS cluster, the CA (PEM text). */
export interface ReadyProbeOptions {
  readonly user?: string;
  readonly pass?: string;
  readonly tls?: { readonly ca: string };
}

export interface ServerHandle {
  readonly name: string;
  readonly port: number;
  readonly monitorPort: number;
  /** Go pprof port (`/debug/pprof/profile?seconds=N`), with `profiling` only. */
  readonly profPort?: number;
  readonly url: string;
  process: ChildProcess | undefined;
}

export interface NatsCluster {
  readonly servers: readonly ServerHandle[];
  /** Comma-separated client URLs of every server. */
  readonly urls: string[];
  /** Resolves when JetStream answers and the meta group has every running server current. */
  waitReady(timeoutMs?: number, creds?: ReadyProbeOptions): Promise<void>;
  /** SIGKILL one server (index). */
  kill(i: number): Promise<void>;
  /** Start a stopped or killed server again with the same store. */
  restart(i: number): Promise<void>;
  /** Stop every server gracefully (SIGTERM, then SIGKILL after 5 s). */
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (racy by nature; fine for tests). */
export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

/**
 * `n` distinct free TCP ports on 127.0.0.1: all are held open until every
 * one is found, so no two are the same. Another process can still take one
 * before its user binds it (see `waitReady`, which fails fast then).
 */
export async function freePorts(n: number): Promise<number[]> {
  const held = await Promise.all(Array.from({ length: n }, () => new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => resolve(srv));
  })));
  const ports = held.map((srv) => {
    const addr = srv.address();
    if (typeof addr !== "object" || !addr) throw new Error("no port");
    return addr.port;
  });
  await Promise.all(held.map((srv) => new Promise((r) => srv.close(r))));
  return ports;
}

/**
 * The client limits every FastEmailNet nats-server runs with (here and in the chart's bundled NATS, which a
 * test keeps equal). `max_payload`: a request carrying a mail of the default 10 MiB limit is up to ~15 MB of JSON (maxRequestBytesFor).
 * `max_pending`: what the server buffers for one client connection before cutting it off as a slow consumer.
 * The 64 MB default cut the processing nodes and the gateway off under 40 concurrent 5–8 MB requests (their
 * handlers hold the socket reader for ~75–110 ms per such request), and clients got timeouts or "no
 * responders"; with 512 MB the same bursts were answered in full (a probe on this machine).
 */
export const SERVER_LIMITS = { maxPayload: 16 * 1024 * 1024, maxPending: 512 * 1024 * 1024 } as const;

function serverConfig(o: {
  name: string; port: number; monitorPort: number; clusterPort: number; routes: number[]; store: string;
  sync: string; extra: string; maxPayload: number; tls: ClusterOptions["tls"]; profPort: number | undefined;
}): string {
  return `# generated by nodes/local/nats-cluster.ts
server_name: ${o.name}
listen: 127.0.0.1:${o.port}
http: 127.0.0.1:${o.monitorPort}
${o.profPort ? `prof_port: ${o.profPort}\n` : ""}max_payload: ${o.maxPayload}
max_pending: ${SERVER_LIMITS.maxPending}
${o.tls ? `tls {\n  cert_file: ${JSON.stringify(o.tls.cert)}\n  key_file: ${JSON.stringify(o.tls.key)}\n}\n` : ""}jetstream {
  store_dir: "${o.store}"
  sync_interval: ${JSON.stringify(o.sync)}
}
cluster {
  name: fen
  listen: 127.0.0.1:${o.clusterPort}
  routes: [${o.routes.map((p) => `nats-route://127.0.0.1:${p}`).join(", ")}]
}
${o.extra}
`;
}

interface JszMeta {
  readonly meta_cluster?: {
    readonly leader?: string;
    readonly cluster_size?: number;
    readonly replicas?: readonly { readonly name: string; readonly current?: boolean; readonly offline?: boolean }[];
  };
  readonly account_details?: readonly {
    readonly stream_detail?: readonly {
      readonly name: string;
      readonly cluster?: { readonly leader?: string };
      readonly consumer_detail?: readonly { readonly name: string; readonly cluster?: { readonly leader?: string } }[];
    }[];
  }[];
}

/** A stream or consumer this server holds that has no leader yet (after a restart), if any. */
function leaderless(jsz: JszMeta): string | undefined {
  for (const a of jsz.account_details ?? []) {
    for (const st of a.stream_detail ?? []) {
      if (st.cluster && !st.cluster.leader) return `stream ${st.name}`;
      for (const c of st.consumer_detail ?? []) if (c.cluster && !c.cluster.leader) return `consumer ${st.name} > ${c.name}`;
    }
  }
  return undefined;
}

/**
 * Why the cluster is not yet fit to serve and place R=N assets, or
 * undefined when it is: every server's /healthz is ok, all agree on a leader,
 * the leader sees every other server current and online, and every stream
 * and consumer a server holds has a leader. Without the meta checks an early
 * `streams.add(R3)` often fails with "no suitable peers for placement" (it
 * still can after: the leader may not have a peer's stats yet, which no
 * endpoint shows, so `provision` waits that out itself); without the last
 * one, a restart on existing data answers the first `streams.info` only
 * after the stream's election (seconds; provisioning timed out).
 */
async function clusterReadiness(servers: readonly ServerHandle[]): Promise<string | undefined> {
  const get = async (port: number, p: string) => {
    const res = await fetch(`http://127.0.0.1:${port}${p}`, { signal: AbortSignal.timeout(2000) });
    return { ok: res.ok, body: await res.json() as unknown };
  };
  const leaders = new Set<string>();
  let leaderMeta: JszMeta["meta_cluster"];
  for (const s of servers) {
    if (!s.process) continue; // a deliberately stopped server
    const health = await get(s.monitorPort, "/healthz");
    if (!health.ok) return `${s.name} /healthz: ${JSON.stringify(health.body)}`;
    const jsz = (await get(s.monitorPort, "/jsz?streams=true&consumers=true")).body as JszMeta;
    const meta = jsz.meta_cluster;
    if (!meta?.leader) return `${s.name} has no meta leader yet`;
    const waiting = leaderless(jsz);
    if (waiting) return `${s.name}: ${waiting} has no leader yet`;
    leaders.add(meta.leader);
    if (meta.leader === s.name) leaderMeta = meta;
  }
  if (leaders.size !== 1) return `servers disagree on the meta leader: ${[...leaders].join(", ")}`;
  if (!leaderMeta) return "the meta leader is not one of ours";
  const peers = leaderMeta.replicas ?? [];
  const up = servers.filter((s) => s.process).length;
  const ready = peers.filter((r) => r.current && !r.offline).length;
  if (ready < up - 1) return `meta leader sees ${ready} of ${up - 1} peers current`;
  return undefined;
}

/** The cluster did not become ready: a server exited, or the meta group never formed. */
export class ClusterStartError extends Error {
  override readonly name = "ClusterStartError";
}

/** Writes configs and starts the cluster; call waitReady() before use. */
export async function startCluster(opts: ClusterOptions): Promise<NatsCluster> {
  const size = opts.size ?? 3;
  const picked = await freePorts((opts.profiling ? 4 : 3) * size);
  const ports = Array.from({ length: size }, (_, i) => opts.clientPorts?.[i] || picked[i]!);
  const clusterPorts = picked.slice(size, 2 * size);
  const monitorPorts = picked.slice(2 * size, 3 * size);
  const profPorts = picked.slice(3 * size);
  await mkdir(opts.dir, { recursive: true });
  const servers: ServerHandle[] = [];
  const confs: string[] = [];
  for (let i = 0; i < size; i++) {
    const name = `n${i + 1}`;
    const store = path.join(opts.dir, name);
    await mkdir(store, { recursive: true });
    const conf = path.join(opts.dir, `${name}.conf`);
    await writeFile(conf, serverConfig({
      name, port: ports[i]!, monitorPort: monitorPorts[i]!, clusterPort: clusterPorts[i]!,
      routes: clusterPorts.filter((_, j) => j !== i), store, sync: opts.syncInterval ?? "always",
      extra: opts.extraConfig ?? "", maxPayload: opts.maxPayload ?? SERVER_LIMITS.maxPayload, tls: opts.tls, profPort: profPorts[i],
    }));
    confs.push(conf);
    servers.push({
      name, port: ports[i]!, monitorPort: monitorPorts[i]!, ...(profPorts[i] ? { profPort: profPorts[i] } : {}),
      url: `nats://127.0.0.1:${ports[i]}`, process: undefined,
    });
  }

  const launch = (i: number) => {
    const s = servers[i]!;
    const log = path.join(opts.dir, `${s.name}.log`);
    const child = spawn(opts.binary, ["-c", confs[i]!, "-l", log], {
      stdio: "ignore", ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}), ...(opts.ownProcessGroup ? { detached: true } : {}),
    });
    s.process = child;
  };
  servers.forEach((_, i) => { if (!opts.held?.includes(i)) launch(i); });

  const exited = (p: ChildProcess) =>
    new Promise<void>((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.once("exit", () => r())));

  const cluster: NatsCluster = {
    servers,
    urls: servers.map((s) => s.url),
    async waitReady(timeoutMs = 60_000, creds) {
      const deadline = Date.now() + timeoutMs;
      let last: unknown;
      while (Date.now() < deadline) {
        // A server that exited (e.g. a port taken by another process between
        // picking and binding it) will not come back by waiting.
        const dead = servers.find((s) => s.process && (s.process.exitCode !== null || s.process.signalCode !== null));
        if (dead) {
          throw new ClusterStartError(`nats-server ${dead.name} exited (code ${String(dead.process!.exitCode ?? dead.process!.signalCode)}); see ${opts.dir}/${dead.name}.log`);
        }
        try {
          const nc = await connect({ servers: cluster.urls, timeout: 1000, ...(creds ?? {}) });
          try {
            const jsm = await jetstreamManager(nc, { timeout: 2000 });
            await jsm.getAccountInfo();
            const why = await clusterReadiness(servers);
            if (why === undefined) return;
            last = new Error(why);
          } finally {
            await nc.close();
          }
        } catch (err) {
          last = err;
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new ClusterStartError(`nats cluster not ready after ${timeoutMs} ms (see ${opts.dir}/*.log)`, { cause: last });
    },
    async kill(i) {
      const p = servers[i]?.process;
      if (!p) return;
      p.kill("SIGKILL");
      await exited(p);
      servers[i]!.process = undefined;
    },
    async restart(i) {
      if (servers[i]?.process) await cluster.kill(i);
      launch(i);
    },
    async stop() {
      await Promise.all(servers.map(async (s) => {
        const p = s.process;
        if (!p) return;
        p.kill("SIGTERM");
        const t = setTimeout(() => p.kill("SIGKILL"), 5000);
        await exited(p);
        clearTimeout(t);
        s.process = undefined;
      }));
    },
  };
  return cluster;
}
