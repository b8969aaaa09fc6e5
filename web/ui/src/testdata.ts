// Builders of API values for the component tests.
import type { Cluster, Decision, Member, Snapshot } from './api';
import type { EventSourceLike } from './stream';

export function member(name: string, over: Partial<Member> = {}): Member {
  return {
    id: 'id-' + name,
    name,
    status: 'alive',
    raft_role: 'voter',
    http_addr: '127.0.0.1:' + (8480 + Number(name.replace(/\D/g, '') || 0)),
    health: {
      batch_size: 100,
      throughput_rps: 1000,
      p99_ms: 120,
      cpu_percent: 40,
      mem_percent: 20,
      rss_bytes: 64 << 20,
      queue_depth: 3,
      breaker: 'closed',
      want_bytes: 8 << 20,
      has_bytes: 2 << 20,
    },
    budget: { grant_bytes: 4 << 20, want_bytes: 8 << 20, has_bytes: 2 << 20 },
    ...over,
  };
}

export function cluster(members: Member[], over: Partial<Cluster> = {}): Cluster {
  const leader = members.find((m) => m.raft_role === 'leader');
  return {
    cluster_id: 'c0ffee00c0ffee00',
    leader: leader ? { id: leader.id, name: leader.name, http_addr: leader.http_addr } : { id: '', name: '', http_addr: '' },
    term: 3,
    members,
    limits: {
      max_batch_size: 10000,
      cluster_budget_bytes: 256 << 20,
      node_floor_bytes: 4 << 20,
      max_growth_percent: 50,
      max_growing_nodes: 2,
      slo_ms: 500,
      cpu_limit_percent: 85,
      mem_limit_percent: 85,
      epoch_ms: 2000,
      lease_ttl_ms: 6000,
    },
    epoch: 7,
    learning: false,
    budget_bytes: 256 << 20,
    granted_bytes: members.reduce((s, m) => s + m.budget.grant_bytes, 0),
    floor_bytes: 4 << 20,
    ...over,
  };
}

export function snapshot(at: number, members: Member[], over: Partial<Cluster> = {}): Snapshot {
  return { ...cluster(members, over), time: new Date(at * 1000).toISOString(), served_by: members[0]?.name ?? '' };
}

export function decision(node: string, second: number, over: Partial<Decision> = {}): Decision {
  return {
    time: new Date(Date.UTC(2026, 0, 1, 12, 0, second)).toISOString(),
    node,
    controller: 'gradient',
    old_size: 100,
    new_size: 125,
    reason: 'grow',
    arrival_rps: 900,
    throughput_rps: 880,
    goodput_rps: 870,
    p99_ms: 150,
    cpu_percent: 35,
    mem_percent: 20,
    queue_depth: 4,
    breaker: 'closed',
    ...over,
  };
}

export function threeNodes(): Member[] {
  return [member('node-1', { raft_role: 'leader' }), member('node-2'), member('node-3')];
}

/** A fake EventSource the test drives. */
export class FakeEventSource implements EventSourceLike {
  static all: FakeEventSource[] = [];
  readyState = 0;
  onopen: ((ev: Event) => void) | null = null;
  onerror: ((ev: Event) => void) | null = null;
  closed = false;
  private listeners = new Map<string, ((ev: MessageEvent) => void)[]>();
  constructor(readonly url: string) {
    FakeEventSource.all.push(this);
  }
  addEventListener(type: string, fn: (ev: MessageEvent) => void) {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), fn]);
  }
  emit(type: string, data: unknown) {
    this.readyState = 1;
    for (const fn of this.listeners.get(type) ?? []) fn(new MessageEvent(type, { data: JSON.stringify(data) }));
  }
  fail(permanently: boolean) {
    this.readyState = permanently ? 2 : 0;
    this.onerror?.(new Event('error'));
  }
  close() {
    this.closed = true;
    this.readyState = 2;
  }
}

