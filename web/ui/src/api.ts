// Types of the node's HTTP API (see /api/v1/openapi.json) and the calls the
// dashboard makes. Every call goes to the node that served the page.

export type Breaker = 'closed' | 'open' | 'half-open' | '';
export type MemberStatus = 'alive' | 'suspect' | 'dead' | 'left';
export type RaftRole = 'leader' | 'voter' | 'nonvoter' | 'none';
/** A server runs Raft; a worker is a gossip member and lease client only. */
export type NodeRole = 'server' | 'worker';

export interface GossipHealth {
  batch_size: number;
  throughput_rps: number;
  p99_ms: number;
  cpu_percent: number;
  mem_percent: number;
  rss_bytes: number;
  queue_depth: number;
  breaker: Breaker;
  want_bytes: number;
  has_bytes: number;
}

export interface Lease {
  epoch: number;
  grant_bytes: number;
  fresh: boolean;
  baseline_bytes: number;
  age_ms: number;
}

export interface Member {
  id: string;
  name: string;
  status: MemberStatus;
  /** Absent from older servers, whose every node was a Raft member. */
  role?: NodeRole;
  raft_role: RaftRole;
  http_addr: string;
  gossip_addr?: string;
  raft_addr?: string;
  health: GossipHealth;
  budget: { grant_bytes: number; want_bytes: number; has_bytes: number; baseline_bytes?: number; lease_fresh?: boolean; lease?: Lease };
}

export interface Limits {
  max_batch_size: number;
  cluster_budget_bytes: number;
  node_floor_bytes: number;
  max_growth_percent: number;
  max_growing_nodes: number;
  slo_ms: number;
  cpu_limit_percent: number;
  mem_limit_percent: number;
  epoch_ms: number;
  lease_ttl_ms: number;
}

export interface Cluster {
  cluster_id: string;
  leader: { id: string; name: string; http_addr: string };
  term: number;
  members: Member[];
  limits: Limits;
  epoch: number;
  learning: boolean;
  budget_bytes: number;
  granted_bytes: number;
  floor_bytes: number;
  /** cluster_budget_bytes, the learned budget's ceiling, and the mode. */
  ceiling_bytes?: number;
  budget_mode?: 'learned' | 'fixed';
  /** "leader": every node's health and lease; "local": what one node knows. */
  view?: 'leader' | 'local';
  servers?: number;
  workers?: number;
}

/** A "snapshot" event of /api/v1/events. */
export interface Snapshot extends Cluster {
  time: string;
  served_by: string;
}

/** A "decision" event, and one entry of /api/v1/decisions. */
export interface Decision {
  time: string;
  node: string;
  controller: string;
  old_size: number;
  new_size: number;
  reason: string;
  arrival_rps: number;
  throughput_rps: number;
  goodput_rps: number;
  p99_ms: number;
  cpu_percent: number;
  mem_percent: number;
  queue_depth: number;
  breaker: Breaker;
  // The batches the node may write at once after this decision, when it
  // changed them (arc); absent otherwise.
  flush_limit?: number;
  // What a write took in the interval decided on (at the old size), and
  // what the controller expects one to take at the new size (gradient's
  // cost model); absent when unknown.
  write_ms?: number;
  expected_write_ms?: number;
}

export interface DecisionsAnswer {
  decisions: Decision[];
  unreachable: { node: string; error: string }[];
}

/** The limits in the order the editor shows them. */
export const LIMIT_KEYS: (keyof Limits)[] = [
  'max_batch_size',
  'slo_ms',
  'cpu_limit_percent',
  'mem_limit_percent',
  'cluster_budget_bytes',
  'node_floor_bytes',
  'max_growth_percent',
  'max_growing_nodes',
  'epoch_ms',
  'lease_ttl_ms',
];

/** An API answer other than 2xx, with the server's message. */
export class APIError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly retryAfter?: number,
  ) {
    super(message);
  }
}

async function answer<T>(resp: Response): Promise<T> {
  const text = await resp.text();
  let body: unknown = undefined;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  if (!resp.ok) {
    const msg =
      body && typeof body === 'object' && 'error' in body && typeof body.error === 'string'
        ? body.error
        : `${resp.status} ${resp.statusText || 'error'}`;
    const ra = Number(resp.headers.get('Retry-After'));
    throw new APIError(resp.status, msg, Number.isFinite(ra) && ra > 0 ? ra : undefined);
  }
  return body as T;
}

/** The node's admission (GET /api/v1/nodes/{name}: health.admission). */
export interface AdmissionHealth {
  delay_bound_ms: number;
  expected_delay_ms: number;
  drain_rps: number;
  max_queue: number;
  refused: number;
  refused_by?: Record<string, number>;
  /** Records admitted past the delay bound on its grace (one request after a calm interval). */
  graced?: number;
  why?: string;
  /** "cpu" or "memory" while that resource of the node is over its limit: every new request is refused until it clears. */
  pressure?: string;
  /** The limit that acts, e.g. "cpu 95% of cgroup-v2: 1.50 cores (/sys/fs/cgroup/app/cpu.max) > 90%". */
  pressure_detail?: string;
}

/** The CPU the node's cpu_percent is a share of, and which limit sets it. */
export interface CPUAllowance {
  cores: number;
  source: string; // "host", "cgroup-v2", "cgroup-v1"
  file?: string;
}

/** The part of GET /api/v1/nodes/{name} the dashboard reads. */
export interface NodeView {
  name: string;
  health: {
    queue_depth: number;
    p99_ms: number;
    cpu_percent?: number;
    cpu_allowance?: CPUAllowance;
    admission?: AdmissionHealth;
  };
}

export async function getNode(name: string, signal?: AbortSignal): Promise<NodeView> {
  const resp = await fetch(`/api/v1/nodes/${encodeURIComponent(name)}`, { signal, headers: { Accept: 'application/json' } });
  return answer<NodeView>(resp);
}

export async function getDecisions(limit = 200, signal?: AbortSignal): Promise<DecisionsAnswer> {
  const resp = await fetch(`/api/v1/decisions?limit=${limit}`, { signal, headers: { Accept: 'application/json' } });
  return answer<DecisionsAnswer>(resp);
}

/** One decision of the leader's budget controller (GET /api/v1/budget/decisions). */
export interface BudgetDecision {
  time: string;
  old_bytes: number;
  new_bytes: number;
  ceiling_bytes: number;
  floor_bytes: number;
  reason: string;
  figures: {
    nodes: number;
    want_bytes: number;
    has_bytes: number;
    goodput_rps: number;
    pushback_per_s: number;
    too_large_per_s: number;
    writes_per_s: number;
    p99_ms: number;
    slo_ms: number;
  };
}

export interface BudgetDecisionsAnswer {
  leader: { id: string; name: string; http_addr: string };
  budget_mode: 'learned' | 'fixed';
  budget_bytes: number;
  ceiling_bytes: number;
  decisions: BudgetDecision[];
}

export async function getBudgetDecisions(limit = 20, signal?: AbortSignal): Promise<BudgetDecisionsAnswer> {
  const resp = await fetch(`/api/v1/budget/decisions?limit=${limit}`, { signal, headers: { Accept: 'application/json' } });
  return answer<BudgetDecisionsAnswer>(resp);
}

/** A random id that makes a limits change safe to send twice. */
export function newRequestID(): string {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return 'ui-' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

export async function putLimits(patch: Partial<Limits>, token: string, requestID: string): Promise<Limits> {
  const headers: Record<string, string> = { 'Content-Type': 'application/json', 'X-Request-ID': requestID };
  if (token) headers.Authorization = `Bearer ${token}`;
  const resp = await fetch('/api/v1/limits', { method: 'PUT', headers, body: JSON.stringify(patch) });
  return answer<Limits>(resp);
}
